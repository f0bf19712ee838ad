"""A synthetic large image for the tile tests: a gradient, a grid of bright stars and one marker block."""

from __future__ import annotations

from pathlib import Path

import numpy as np

STAR_STEP = 1024  # stars at (x, y) = (512 + i * 1024, 512 + j * 1024)
STAR_PEAK = 5000.0
MARKER = (slice(1000, 1400), slice(6000, 6600))  # rows (y), columns (x): a bright block, lower right
MARKER_VALUE = 3000.0


def image_rows(a: int, b: int, nx: int) -> np.ndarray:
    """Rows a .. b of the image (float32): 100 * x / nx + stars + marker."""
    y = np.arange(a, b, dtype=np.float32)[:, None]
    x = np.arange(nx, dtype=np.float32)[None, :]
    rows = np.broadcast_to(100.0 * x / nx, (b - a, nx)).astype(np.float32)
    dy = (y - 512) % STAR_STEP
    dy = np.minimum(dy, STAR_STEP - dy)
    dx = (x - 512) % STAR_STEP
    dx = np.minimum(dx, STAR_STEP - dx)
    rows += (STAR_PEAK * np.exp(-(dx**2 + dy**2) / (2 * 4.0**2))).astype(np.float32)
    ys, xs = MARKER
    lo, hi = max(a, ys.start), min(b, ys.stop)
    if hi > lo:
        rows[lo - a:hi - a, xs] = MARKER_VALUE
    return rows


def write_fits(path: Path, ny: int, nx: int, band: int = 1024) -> Path:
    """Write the image as a FITS file band by band (never the whole image in memory)."""
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    header["OBJECT"] = "synthetic mosaic"
    head = header.tostring().encode("ascii")
    data_bytes = ny * nx * 4
    with open(path, "wb") as handle:
        handle.write(head)
        handle.truncate(len(head) + data_bytes + (-data_bytes) % 2880)
    out = np.memmap(path, dtype=">f4", mode="r+", offset=len(head), shape=(ny, nx))
    for a in range(0, ny, band):
        b = min(ny, a + band)
        out[a:b] = image_rows(a, b, nx)
    out.flush()
    del out
    return path
