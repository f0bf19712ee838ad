"""``lenghu view PATH...``: open snapshots, .lod stores or FITS files in a desktop window."""

from __future__ import annotations

import argparse

EPILOG = """\
Mouse: drag to orbit (or look around / pan), wheel to zoom. Keys: Tab
turntable <-> fly camera, W A S D Q E fly, Space play/pause a time series,
, . step it, [ ] exposure, F colour field, M colormap, L linear/log, P frame
rate, R reset, S screenshot, Esc quit.

Needs a display and a GUI toolkit (PySide6 from PyPI, or glfw). Without one,
render headless: `lenghu render PATH... --out FILE.png|FILE.mp4`.

examples:
  lenghu view web.lod --budget 3e6
  lenghu view sample_data/cosmic_web/snapshot_*.hdf5
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from lenghu.commands.render import _count, _size

    parser = subparsers.add_parser(
        "view", help="open snapshots, .lod stores or FITS files in a window (Qt)",
        description="Fly through particles, volumes and images in a desktop window.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="snapshot(s), .lod store(s) or FITS file(s)")
    parser.add_argument("--size", type=_size, default=(1024, 768), metavar="WxH", help="window size")
    parser.add_argument("--budget", type=_count, default=1_000_000, metavar="N", help="most points per frame")
    parser.add_argument("--field", help="colour particles by this field")
    parser.add_argument("--colormap", help="matplotlib colormap")
    parser.add_argument("--backend", choices=("pyside6", "pyqt6", "pyqt5", "pyside2", "glfw"), help="GUI toolkit")
    return parser


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from lenghu.viewer.app.scenes import SceneSpec, build_scene

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print("lenghu view: error: no display (DISPLAY is not set); run it under X/Wayland or xvfb-run, "
              "or render headless with `lenghu render`", file=sys.stderr)
        return 1
    from lenghu.viewer.app.window import ViewerWindow, pick_backend

    try:
        backend = pick_backend(args.backend)
    except RuntimeError as exc:
        print(f"lenghu view: error: {exc}", file=sys.stderr)
        return 1
    scene, steps = build_scene(args.paths, SceneSpec(budget=args.budget, field=args.field, colormap=args.colormap))
    window = ViewerWindow(scene, steps, size=args.size, backend=backend)
    window.run()
    return 0
