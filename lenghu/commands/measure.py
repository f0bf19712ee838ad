"""``lenghu measure``: detection, astrometry and photometry of one image you bring."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "measure",
        help="detect and measure the sources of one image; fit its WCS and zeropoint; write a catalogue",
        description=(
            "Detect and measure the sources of one calibrated image (a lenghu product with SCI/VAR/MASK,\n"
            "or any FITS image with a rough WCS), match them to a reference catalogue by pattern, fit a\n"
            "TAN-SIP WCS and a zeropoint, and write a catalogue with units on every column. The image\n"
            "itself is never modified; the fitted WCS goes into the catalogue's positions and header."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=("examples:\n"
                "  lenghu measure night_out/calibrated/wfst_20251120_00010_CCD5.fits --refcat night/refcat.fits "
                "--out ccd5.cat.fits\n"
                "  lenghu measure my_image.fits --out my_image.parquet      # no refcat: pixel positions, "
                "header WCS\n\n"
                "formats: from the extension (.fits, .parquet, .vot/.xml, .ecsv)"),
    )
    parser.add_argument("image", type=Path, help="FITS image")
    parser.add_argument("--refcat", type=Path, help="reference catalogue with ra, dec (deg) and mag_<filter> columns")
    parser.add_argument("--out", type=Path, required=True, help="catalogue to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from lenghu.measure import write_catalog
    from lenghu.pipelines.measure_stage import MeasureStageConfig, load_image, measure_arrays

    table, quality, astro = measure_arrays(*load_image(str(args.image)), str(args.refcat) if args.refcat else None,
                                           MeasureStageConfig())
    write_catalog(table, args.out)
    print(f"{args.image}: {len(table)} sources -> {args.out}")
    if astro is not None:
        rms = f", RMS {quality['astrometry_rms_arcsec']:.3f}\"" if astro.ok else ""
        print(f"  astrometry: {astro.status.value} ({astro.n_matched} matches{rms}); {astro.reason}")
    if quality.get("zeropoint") is not None:
        print(f"  zeropoint: {quality['zeropoint']:.4f} +- {quality['zeropoint_err']:.4f} mag (AB, 1 e-/s)")
    if quality.get("fwhm_arcsec"):
        print(f"  seeing: FWHM {quality['fwhm_arcsec']:.2f} arcsec")
    return 0
