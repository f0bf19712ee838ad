"""``lenghu demo``: the main job on the shipped sample data, offline.

For now it classifies the sample night's raw frames and describes the
sample cosmic web; as the pipeline grows, it reduces the night too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the shipped sample data (what `make demo` does)",
        description=(
            "Run lenghu's main job on the sample data shipped in sample_data/ (a tiny simulated WFST\n"
            "night and a small cosmic-web snapshot series). Where the sample data are missing (an\n"
            "installed wheel), a tiny night is simulated into OUT first."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  lenghu demo --out demo_out",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    parser.add_argument("--sample-data", type=Path, default=DEFAULT_SAMPLE,
                        help=f"sample data folder (default {DEFAULT_SAMPLE})")
    return parser


def run(args: argparse.Namespace) -> int:
    from lenghu.pipelines.demo import run_demo

    return run_demo(args.sample_data, args.out)
