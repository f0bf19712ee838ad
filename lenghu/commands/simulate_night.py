"""``lenghu simulate night``: the raw files of a WFST night, with the truth behind them."""

from __future__ import annotations

import argparse
import re

DESCRIPTION = """\
Simulate the raw files a night with a mosaic camera (WFST by default) would
produce: biases, darks and dome flats in the afternoon, then dithered science
exposures of one field from the end of evening twilight, as multi-extension
FITS files laid out as docs/raw_format.md describes, plus the truth behind
them (noiseless bias, dark and flat, star lists, cosmic-ray masks, true WCS,
the plan of the night) and a reference catalogue.

Per amplifier: the instrument's bias level, gain and read noise, a fixed bias
structure, dark current and hot pixels, a flat field with vignetting, dust
donuts and pixel response non-uniformity, bad columns, the moon-free sky of
Lenghu, stars (Moffat PSF) from the reference catalogue, cosmic rays at the
4200 m rate, saturation with bleed trails, Poisson and read noise.

Full size (--scale 1) an exposure is 9 CCDs of 9472 x 9232 raw pixels, about
1.6 GB (plain) per exposure; --scale 1/16 makes each CCD 16 times smaller per
side at the same 0.333"/pixel. The same options and --seed give identical
files."""

EPILOG = """\
examples:
  # a small night to develop on (1/16 scale: 7 MB per exposure)
  lenghu simulate night night_small --scale 1/16 --seed 7 --filters g,r

  # one full-size CCD: 9 biases, 3 darks, 3 flats and 10 science frames in r
  lenghu simulate night night_ccd5 --detectors CCD5 --biases 9 --flats 3 --science 10

  # a field elsewhere, poorer seeing, and a pointing error to test astrometry
  lenghu simulate night night_pe --scale 1/8 --ra 52.5 --dec 31.0 --date 2025-12-18 \\
      --seeing 1.2 --pointing-error 2.5,0.1 --compress

output (OUT/):
  raw/wfst_YYYYMMDD_NNNNN.fits[.fz]   one file per exposure, one extension per CCD
  truth/bias_CCDn.fits, dark_CCDn.fits, flat_CCDn_F.fits, stars_NNNNN.fits,
  truth/cosmics_NNNNN.fits, wcs_NNNNN.fits, night.json (the plan and the seed)
  refcat.fits                          reference catalogue (ra, dec, AB mags)
"""


def _scale(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(?:/\s*(\d+(?:\.\d*)?))?\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a fraction like 1/16")
    value = float(match.group(1)) / float(match.group(2)) if match.group(2) else float(match.group(1))
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1] (1 = full size)")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _sexagesimal(text: str, hours: bool) -> float:
    """Degrees from ``12.5``, ``12:30:00`` (hours if ``hours``) or ``-05:30:00``."""
    text = text.strip()
    if ":" not in text:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an angle in degrees or h:m:s / d:m:s") from None
    match = re.fullmatch(r"([+-]?)(\d+):(\d+)(?::(\d+(?:\.\d*)?))?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an angle in degrees or h:m:s / d:m:s")
    sign = -1.0 if match.group(1) == "-" else 1.0
    value = float(match.group(2)) + float(match.group(3)) / 60 + float(match.group(4) or 0) / 3600
    return sign * value * (15.0 if hours else 1.0)


def _ra(text: str) -> float:
    value = _sexagesimal(text, hours=True)
    if not 0 <= value < 360:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [0, 360) deg or [0, 24) h")
    return value


def _dec(text: str) -> float:
    value = _sexagesimal(text, hours=False)
    if not -90 <= value <= 90:
        raise argparse.ArgumentTypeError(f"{text!r} must be in [-90, 90] deg")
    return value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one name, comma-separated")
    return names


def _pointing_error(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        shift = float(parts[0])
        rotation = float(parts[1]) if len(parts) == 2 else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ARCMIN[,DEG]") from None
    if len(parts) > 2 or shift < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not ARCMIN[,DEG] with ARCMIN >= 0")
    return shift, rotation


def _date(text: str) -> str:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD")
    import datetime

    try:
        datetime.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
    return text


def add_parser(kinds) -> argparse.ArgumentParser:
    """Register ``night`` under ``lenghu simulate``."""
    p = kinds.add_parser(
        "night",
        help="raw files of a WFST observing night with known truth",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (created; must not hold a night unless --overwrite)")
    g = p.add_argument_group("instrument")
    g.add_argument("--instrument", default="wfst", metavar="NAME|TOML",
                   help="shipped instrument name or TOML file (default: wfst)")
    g.add_argument("--scale", type=_scale, default=1.0, metavar="S",
                   help="CCD size relative to the real one per side, e.g. 1/16 or 0.0625; "
                        "the pixel scale (0.333\"/pixel) stays (default: 1, full size)")
    g.add_argument("--detectors", type=_names, default=None, metavar="CCD5,...",
                   help="simulate only these CCDs (default: all nine)")
    g = p.add_argument_group("the night")
    g.add_argument("--seed", type=_count, default=1, metavar="N",
                   help="seed of every random choice; the same seed gives identical files (default: 1)")
    g.add_argument("--date", type=_date, default=None, metavar="YYYY-MM-DD",
                   help="local date of the evening (default: 2025-11-20, a new moon)")
    g.add_argument("--biases", type=_count, default=5, metavar="N", help="bias frames, 0 s (default: 5)")
    g.add_argument("--darks", type=_count, default=3, metavar="N", help="dark frames (default: 3)")
    g.add_argument("--flats", type=_count, default=3, metavar="N", help="dome flats per filter (default: 3)")
    g.add_argument("--science", type=_count, default=5, metavar="N",
                   help="dithered science exposures per filter (default: 5)")
    g.add_argument("--filters", type=_names, default=("r",), metavar="F,...",
                   help="filters of flats and science, in order, from u g r i z w (default: r)")
    g.add_argument("--exptime", type=_positive, default=30.0, metavar="SECONDS",
                   help="science exposure time in s (default: 30)")
    g.add_argument("--dark-exptime", type=_positive, default=300.0, metavar="SECONDS",
                   help="dark exposure time in s (default: 300)")
    g.add_argument("--flat-exptime", type=_positive, default=5.0, metavar="SECONDS",
                   help="dome flat exposure time in s (default: 5)")
    g.add_argument("--flat-level", type=_positive, default=20000.0, metavar="ELECTRONS",
                   help="mean electrons per pixel in a dome flat (default: 20000)")
    g = p.add_argument_group("the field and the sky")
    g.add_argument("--ra", type=_ra, default=None, metavar="DEG|H:M:S",
                   help="field centre right ascension, ICRS, deg or hours h:m:s (default: 330 = 22h, "
                        "on the meridian at the start of the default night)")
    g.add_argument("--dec", type=_dec, default=None, metavar="DEG|D:M:S",
                   help="field centre declination, ICRS, deg (default: +30; galactic latitude -20)")
    g.add_argument("--object", default=None, metavar="NAME", help="OBJECT of the science frames (default: from RA/Dec)")
    g.add_argument("--seeing", type=_positive, default=None, metavar="ARCSEC",
                   help="FWHM at zenith and 500 nm in arcsec; frames scale it by airmass^0.6 and "
                        "wavelength^-0.2 (default: the site's median, 0.75)")
    g.add_argument("--dither", type=_non_negative, default=30.0, metavar="ARCSEC",
                   help="radius of random dither offsets in arcsec (default: 30)")
    g.add_argument("--pointing-error", type=_pointing_error, default=(0.0, 0.0), metavar="ARCMIN,DEG",
                   help="the header WCS is off from the true one by this shift (arcmin, in a direction "
                        "chosen by the seed) and rotation (deg) (default: 0,0)")
    g.add_argument("--distortion", type=_non_negative, default=3.0, metavar="PIXELS",
                   help="radial optical distortion at the mosaic's half-width in pixels, "
                        "written as SIP (default: 3)")
    g.add_argument("--mag-limit", type=_positive, default=24.0, metavar="MAG",
                   help="faintest simulated star, r-band AB mag (default: 24)")
    g.add_argument("--cosmic-rate", type=_non_negative, default=4.0, metavar="PER_CM2_PER_MIN",
                   help="cosmic rays per cm^2 per minute (default: 4, for 4200 m)")
    g = p.add_argument_group("output")
    g.add_argument("--compress", action="store_true",
                   help="write Rice-compressed, lossless .fits.fz raw files")
    g.add_argument("--no-truth-images", dest="truth_images", action="store_false",
                   help="skip the bias/dark/flat truth images (1.4 GB per CCD at full size with one filter)")
    g.add_argument("--overwrite", action="store_true", help="replace a night already in OUT")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return p


def run(args: argparse.Namespace) -> int:
    """Build the config, simulate, print a summary; returns the exit status."""
    import astropy.units as u

    from lenghu.simulate.config import DEFAULT_DATE, DEFAULT_DEC, DEFAULT_RA, NightConfig
    from lenghu.simulate.night import simulate_night

    shift, rotation = args.pointing_error
    config = NightConfig(
        instrument=args.instrument,
        scale=args.scale,
        seed=args.seed,
        n_bias=args.biases,
        n_dark=args.darks,
        n_flat=args.flats,
        n_science=args.science,
        filters=args.filters,
        exptime=args.exptime * u.s,
        dark_exptime=args.dark_exptime * u.s,
        flat_exptime=args.flat_exptime * u.s,
        flat_level=args.flat_level * u.electron,
        date=args.date or DEFAULT_DATE,
        ra=(args.ra if args.ra is not None else DEFAULT_RA) * u.deg,
        dec=(args.dec if args.dec is not None else DEFAULT_DEC) * u.deg,
        object_name=args.object,
        seeing=args.seeing * u.arcsec if args.seeing is not None else None,
        dither=args.dither * u.arcsec,
        pointing_error_shift=shift * u.arcmin,
        pointing_error_rotation=rotation * u.deg,
        distortion=args.distortion * u.pixel,
        mag_limit=args.mag_limit,
        cosmic_rate=args.cosmic_rate / (u.cm**2 * u.min),
        detectors=args.detectors,
        compress=args.compress,
        truth_images=args.truth_images,
        overwrite=args.overwrite,
    )
    summary = simulate_night(config, args.out, progress=not args.quiet)
    if not args.quiet:
        per = summary.exposure_seconds
        print(f"wrote {summary.exposures} exposures x {summary.detectors} CCDs to {summary.out}/raw "
              f"({summary.bytes_written / 1e6:.1f} MB) in {summary.seconds:.1f} s "
              f"(setup {summary.setup_seconds:.1f} s, {sum(per) / max(len(per), 1):.2f} s per exposure)")
        print(f"truth in {summary.truth_dir}, reference catalogue {summary.refcat}")
    return 0
