"""``lenghu reduce``: a night of raw frames to masters and calibrated images, on Dask."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """\
what it does:
  1. ingest: finds FITS files below RAW_DIR (.fits, .fz, .gz), classifies each by the
     instrument's header rules and records it in OUT/registry.sqlite;
  2. masters per detector: bias, dark (e-/s), flat (per filter, mean 1), sigma-clipped
     combines streamed over strips of rows (memory per worker stays bounded);
  3. science frames: overscan, trim, gain, bias, dark, flat, masks (saturation, bad
     columns, hot pixels, cosmic rays, no data) and variance, written to
     OUT/calibrated/<raw>_<detector>.fits (SCI, VAR, MASK, PROVENANCE);
  4. measure: sources detected and measured (sep), matched to the reference catalogue by
     pattern, a TAN-SIP WCS fitted (written into the product only when the fit is good;
     ASTSTAT says which), a zeropoint per exposure and detector, and a catalogue
     OUT/catalogs/<raw>_<detector>.cat.fits with units on every column;
  5. coadd: dithered exposures of each field (OBJECT), filter and detector resampled onto a
     common TAN grid, inverse-variance weighted with outlier rejection, masks respected,
     with weight and exposure maps, and a catalogue of each coadd: OUT/coadds/;
  6. report: OUT/report/index.html, one self-contained page: frames and failures, master
     quality, FWHM / sky / zeropoint against time and airmass, astrometric residuals,
     thumbnails of every product, and the resources used (energy estimated from
     [report] watts_per_core, 10 W by default).
  Missing calibrations (no darks, no flats) are skipped and named in each product's
  MISSCAL card, the registry and the summary. Products whose inputs and config are
  unchanged are skipped on a rerun; --force redoes them. Files appear only whole, so
  an interrupted run resumes when run again. Raw files are opened read-only.

exit status:
  0  every frame reduced
  1  the run could not start or failed (message says why)
  3  the run finished but some frames or products failed; they are listed with their
     reasons in the summary and in OUT/registry.sqlite (table frames, column error)

clusters:
  default: a local Dask cluster, one single-threaded worker per core, on localhost.
  --scheduler tcp://host:8786: an existing `dask scheduler` with its workers.
  --cluster slurm|pbs: workers as batch jobs through dask-jobqueue, set in the config:
      [execution]
      cluster = "slurm"
      jobs = 4
      [execution.jobqueue]
      queue = "normal"
      cores = 16
      memory = "64GB"
      walltime = "04:00:00"

examples:
  lenghu reduce sample_data/night/raw --out night_out
  lenghu reduce /data/2026-11-24 --out /scratch/reduced --workers 8 --config wfst.toml
  lenghu reduce raw/ --out out/ --scheduler tcp://head-node:8786
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reduce",
        help="reduce a night of raw frames to masters and calibrated images (Dask)",
        description="Reduce a night of raw CCD frames on Dask workers: ingest, masters, signature removal.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="folder holding the night's raw files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (products, registry.sqlite)")
    parser.add_argument("--instrument", default="auto",
                        help="instrument name (wfst, kast_blue, generic), a TOML path, or auto (default: "
                             "detected from each file's header, generic when unknown)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask scheduler")
    where.add_argument("--cluster", choices=["local", "slurm", "pbs"], help="where workers run (see below)")
    parser.add_argument("--memory-limit", help="memory per local worker, e.g. 4GB (default from config: 4GB)")
    parser.add_argument("--config", type=Path, help="TOML configuration (see docs/reduce.md)")
    parser.add_argument("--refcat", type=Path,
                        help="reference catalogue (ra, dec, mag_<filter>) for astrometry and zeropoints "
                             "(default: refcat.fits in RAW_DIR or its parent, as `lenghu simulate night` writes)")
    parser.add_argument("--stages", default="ingest,bias,dark,flat,science,measure,coadd,report",
                        help="comma-separated stages to run (default: all)")
    parser.add_argument("--force", action="store_true", help="redo products even if up to date")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    from lenghu.pipelines.config import load_config
    from lenghu.pipelines.reduce import STAGES, ReduceRequest, reduce_night
    from lenghu.pipelines.summary import print_summary

    config = load_config(args.config)
    changes = {}
    if args.workers is not None:
        changes["workers"] = args.workers
    if args.scheduler:
        changes["scheduler"] = args.scheduler
    if args.cluster:
        changes["cluster"] = args.cluster
    if args.memory_limit:
        changes["memory_limit"] = args.memory_limit
    if changes:
        config = config.with_execution(**changes)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"lenghu reduce: error: unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    request = ReduceRequest(raw_dir=args.raw_dir, out=args.out, instrument=args.instrument, config=config,
                            force=args.force, progress=not args.quiet, stages=stages, refcat=args.refcat)
    summary = reduce_night(request)
    print_summary(summary)
    return summary.exit_status
