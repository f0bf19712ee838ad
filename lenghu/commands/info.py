"""``lenghu info FILE``: what a file is and what it holds."""

from __future__ import annotations

import argparse

EPILOG = """\
The format is found from the content, not the name. Reported: kind (image,
mef, cube, table, snapshot), shapes and types (stored and physical), BUNIT
and a WCS summary per HDU, table columns with units, particle counts per
type, box size, time/redshift, units and the comoving/little-h scaling of a
snapshot, and the quirks found (non-standard cards, non-zero padding, header
counts that disagree with the data ...).

examples:
  lenghu info night/b21.fits.gz
  lenghu info snapdir_005/ --json
  lenghu info catalogue.parquet
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="describe a FITS file, cube, catalogue, store or snapshot (shapes, WCS, units, counts, quirks)",
        description="Describe any file lenghu reads: FITS (plain, .gz, .fz), Zarr/HDF5 stores, "
        "catalogues (Parquet, VOTable, ECSV, CSV) and particle snapshots (Gadget-2, Gadget-family HDF5).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("file", metavar="FILE", help="file, snapshot folder (snapdir_NNN/) or store (.zarr)")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of text")
    return parser


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from lenghu.io.inspect import describe, format_info

    path = Path(args.file)
    if not path.exists():
        print(f"lenghu info: error: {path}: no such file or folder", file=sys.stderr)
        return 1
    info = describe(path)
    if args.json:
        print(json.dumps(info.as_dict(), indent=2))
    else:
        print(format_info(info))
    return 0 if info.kind != "unknown" else 1
