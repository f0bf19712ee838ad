"""``lenghu samp send FILE``: show an image or table in DS9, TOPCAT or Aladin through a SAMP hub."""

from __future__ import annotations

import argparse

EPILOG = """\
The hub is the one the running SAMP applications share (found from ~/.samp
or $SAMP_HUB; TOPCAT and Aladin start one). Images (FITS, cubes, MEF) go
out as image.load.fits, FITS tables as table.load.fits, VOTables as
table.load.votable; other catalogues and lenghu stores are converted first.

examples:
  lenghu samp send test0.fits
  lenghu samp send catalogue.parquet --to topcat
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "samp",
        help="send an image or table to DS9, TOPCAT or Aladin (SAMP)",
        description="Talk to desktop astronomy applications through a running SAMP hub (localhost).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    actions = parser.add_subparsers(dest="samp_action", metavar="ACTION", required=True)
    send = actions.add_parser("send", help="send a file to the applications on the hub",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    send.add_argument("file", metavar="FILE", help="image, cube, MEF, catalogue, or a lenghu store of one")
    send.add_argument("--to", dest="recipient", metavar="NAME", help="only this application (samp.name or client id)")
    send.add_argument("--hub-lockfile", metavar="PATH", help="the hub's lock file (default: the standard one)")
    return parser


def run(args: argparse.Namespace) -> int:
    from lenghu.io.samp import hub_params_from_lockfile, send

    params = hub_params_from_lockfile(args.hub_lockfile) if args.hub_lockfile else None
    sent_to = send(args.file, hub_params=params, recipient=args.recipient)
    print(f"sent {args.file} to {len(sent_to)} application(s): {', '.join(sent_to)}")
    return 0
