"""``lenghu registry rebuild OUT``: recover a damaged run registry from the products."""

from __future__ import annotations

import argparse

EPILOG = """\
rebuild:
  Reads every master (OUT/masters) and calibrated image (OUT/calibrated): their
  PROVENANCE table (role, path and checksum of each input), CONFHASH and LENGHUV
  cards, and writes a new OUT/registry.sqlite from them, so that the next
  `lenghu reduce` skips what is whole and up to date. The damaged file is kept as
  OUT/registry.sqlite.damaged-<time>. Products that do not open whole (checksums
  fail) are listed and redone by the next run; catalogues, coadds and the report
  are redone too (their keys are not in their files). Refused while a run holds OUT.

exit status:
  0  rebuilt
  1  OUT is not an output folder, or a run is using it

examples:
  lenghu registry rebuild night_out
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "registry",
        help="maintain a run registry (OUT/registry.sqlite): rebuild it from the products",
        description="Maintain the run registry of an output folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    rebuild = actions.add_parser("rebuild", help="recover OUT/registry.sqlite from the products' provenance",
                                 description="Recover OUT/registry.sqlite from the products' provenance.",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    rebuild.add_argument("out", metavar="OUT", help="output folder of `lenghu reduce`")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lenghu.pipelines.registry_rebuild import rebuild_registry

    summary = rebuild_registry(Path(args.out))
    print(f"registry rebuilt: {summary.registry}")
    print(f"  products recovered: {len(summary.products)}; raw frames: {summary.frames}")
    if summary.kept_damaged:
        print(f"  damaged registry kept as {summary.kept_damaged}")
    for path, reason in summary.unreadable.items():
        print(f"  not whole, will be redone: {path} ({reason})")
    if summary.not_recovered:
        print(f"  catalogues/coadds to be redone by the next run: {len(summary.not_recovered)}")
    return 0
