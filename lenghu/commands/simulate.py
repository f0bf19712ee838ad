"""``lenghu simulate``: make realistic data with known truth (a night, a cosmic web)."""

from __future__ import annotations

import argparse
import importlib

KINDS = {
    "night": "lenghu.commands.simulate_night",
    "cosmic-web": "lenghu.commands.simulate_cosmic_web",
}


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a raw observing night or a cosmic-web snapshot series",
        description="Make realistic data with known truth, to develop on, test against and demonstrate offline.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, module_name in KINDS.items():
        module = importlib.import_module(module_name)
        sub = module.add_parser(kinds)
        sub.set_defaults(_simulate=module.run)
    return parser


def run(args: argparse.Namespace) -> int:
    return args._simulate(args)
