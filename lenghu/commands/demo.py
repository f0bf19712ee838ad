"""``lenghu demo``: the main job on the shipped sample data, offline.

Classifies, reduces, measures and coadds the sample night and writes its
report (:mod:`lenghu.pipelines.demo`), then renders the sample cosmic web to
a picture and a movie (``lenghu render``).
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
            "night and a small cosmic-web snapshot series): reduce, measure and coadd the night and\n"
            "write its report, then render the cosmic web to a PNG and an MP4. Where the sample data\n"
            "are missing (an installed wheel), a tiny night is simulated into OUT first."
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

    status = run_demo(args.sample_data, args.out)
    snapshots = sorted((args.sample_data / "cosmic_web").glob("snapshot_*.hdf5"))
    if snapshots:
        from lenghu.cli import main

        picture, movie = args.out / "cosmic_web.png", args.out / "cosmic_web.mp4"
        print(f"\nRendering the sample cosmic web (lenghu render ... --out {picture}) ...")
        rendered = main(["render", str(snapshots[-1]), "--out", str(picture), "--size", "960x720", "--quiet",
                         "--caption", "Zel'dovich cosmic web, z = 0, 100 Mpc/h"])
        print(f"Rendering its growth from z = 3 to 0 as a movie ({movie}) ...")
        rendered |= main(["render", *map(str, snapshots), "--out", str(movie), "--size", "640x480",
                          "--seconds", "4", "--fps", "15", "--quiet"])
        print(f"  picture: {picture}\n  movie:   {movie}")
        status = status or rendered
    return status
