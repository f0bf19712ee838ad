"""``lenghu instruments``: list the shipped instruments or show one."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "instruments",
        help="list shipped instruments, or describe one (detectors, amplifiers, assumed values)",
        description="List the shipped instruments, or describe one given by name or TOML path.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  lenghu instruments\n  lenghu instruments wfst\n  lenghu instruments ./my_camera.toml",
    )
    parser.add_argument("instrument", nargs="?", help="name (wfst, kast_blue, generic) or path to a TOML file")
    return parser


def run(args: argparse.Namespace) -> int:
    from lenghu.instruments import available_instruments, load_instrument

    if args.instrument is None:
        for name in available_instruments():
            inst = load_instrument(name)
            print(f"{name:12s} {inst.telescope} / {inst.camera}: {len(inst.detectors) or 'header'} detector(s)")
        return 0
    inst = load_instrument(args.instrument)
    print(f"{inst.name}: {inst.telescope} / {inst.camera}  ({inst.source})")
    site = inst.site
    print(f"  site: {site.name}, lat {site.latitude:.4f}, lon {site.longitude:.4f}, {site.elevation:.0f}")
    print(f"  pixel scale {inst.pixel_scale:.3f}; filters {', '.join(inst.filters) or '(from header)'}")
    for det in inst.detectors:
        print(f"  {det.name}: {det.shape[1]}x{det.shape[0]} assembled, raw {det.raw_shape[1]}x{det.raw_shape[0]},"
              f" {len(det.amplifiers)} amplifiers")
    for note in inst.assumptions:
        print(f"  ASSUMED: {note}")
    return 0
