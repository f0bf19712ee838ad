"""``lenghu convert IMAGE.fits OUT.pyr``, and the cache of pyramids ``lenghu view/render`` build for large FITS."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

#: FITS images with more pixels than this are shown tiled by ``lenghu view/render`` (a pyramid is built once).
TILED_PIXELS = 8192 * 8192


def cache_dir() -> Path:
    """Where pyramids of large FITS images are kept: ``$LENGHU_CACHE_DIR/pyramids`` or ``~/.cache/lenghu/pyramids``."""
    base = os.environ.get("LENGHU_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lenghu")
    return Path(base) / "pyramids"


def cached_pyramid(path: str | Path, hdu=None, progress=None) -> Path:
    """The pyramid of FITS image ``path`` in :func:`cache_dir`, built on first use (keyed by path, size, mtime).

    The FITS file is only read; the pyramid appears whole or not at all.
    """
    from lenghu.viewer.tiles.build import PyramidOptions, build_pyramid
    from lenghu.viewer.tiles.format import is_pyramid

    path = Path(path).resolve()
    st = path.stat()
    key = hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}:{hdu}".encode()).hexdigest()[:16]
    out = cache_dir() / f"{path.stem}-{key}.pyr"
    if not is_pyramid(out):
        build_pyramid(path, out, PyramidOptions(hdu=hdu), progress=progress)
    return out


def image_pixels(path: str | Path) -> int:
    """Pixels of the first 2-D image HDU of a FITS file, from its header (no data read)."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings(), fits.open(path, memmap=True) as hdul:
        warnings.simplefilter("ignore", AstropyUserWarning)
        for h in hdul:
            if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) >= 2:
                return int(h.header["NAXIS1"]) * int(h.header["NAXIS2"])
    return 0


def convert_to_pyramid(args) -> int:
    """Build an image pyramid from ``args.input`` into ``args.output`` (argparse namespace of convert)."""
    from lenghu.viewer.tiles.build import PyramidError, PyramidOptions, build_pyramid

    hdu = getattr(args, "hdu", None)
    hdu = int(hdu) if isinstance(hdu, str) and hdu.isdigit() else hdu
    try:
        result = build_pyramid(args.input, args.output, PyramidOptions(hdu=hdu))
    except (PyramidError, ValueError, OSError) as exc:
        print(f"lenghu convert: error: {args.input}: {exc}", file=sys.stderr)
        return 1
    ny, nx = result.shape
    print(f"{args.input} -> {result.path} (lenghu-image-pyramid): {nx} x {ny} pixels, {result.levels} levels, "
          f"{result.tiles:,} tiles, in {result.seconds:.1f} s")
    return 0
