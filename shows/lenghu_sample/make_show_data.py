"""Make the example show's two small FITS files (run from the repository root; deterministic).

- ``wfst_field.fits``: the simulated WFST field of ``sample_data/night`` (RA 330, Dec +30): every star of
  the night's reference catalogue (``sample_data/night/refcat.fits``, r band) drawn as a Gaussian of
  1.5 px sigma on a 640 x 640 grid of 1.2"/px (the CCDs' 0.333"/px binned for a screen), with sky
  noise, and a TAN WCS.
- ``disk_cube.fits``: a synthetic spectral-line cube (48 x 48 pixels x 40 channels) of a rotating,
  inclined exponential disk (flat rotation curve, 200 km/s), with noise: what a radio or IFU cube of
  a galaxy looks like. (The real cube in ../shared/real_data/cubes is 3 x 4 x 7 pixels: too small to show.)

    .venv/bin/python shows/lenghu_sample/make_show_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def field_image(n: int = 640, arcsec_per_px: float = 1.2, sigma_px: float = 1.5, seed: int = 20251120):
    cat = Table.read(REPO / "sample_data" / "night" / "refcat.fits")
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [330.0, 30.0]
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cdelt = [-arcsec_per_px / 3600, arcsec_per_px / 3600]
    w.wcs.cunit = ["deg", "deg"]
    x, y = w.all_world2pix(np.asarray(cat["ra"]), np.asarray(cat["dec"]), 0)
    flux = 10 ** (-0.4 * (np.asarray(cat["mag_r"]) - 28.0))  # electrons for a zeropoint of 28 mag
    rng = np.random.default_rng(seed)
    sky = 400.0
    img = np.full((n, n), sky)
    r = int(np.ceil(5 * sigma_px))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    for xi, yi, f in zip(x, y, flux):
        ix, iy = int(round(xi)), int(round(yi))
        if not (r <= ix < n - r and r <= iy < n - r):
            continue
        psf = np.exp(-((xx - (xi - ix)) ** 2 + (yy - (yi - iy)) ** 2) / (2 * sigma_px**2))
        img[iy - r:iy + r + 1, ix - r:ix + r + 1] += f * psf / psf.sum()
    img = rng.poisson(np.clip(img, 0, None)).astype(np.float32) - sky
    header = w.to_header()
    header["BUNIT"] = "electron"
    header["OBJECT"] = "Simulated WFST field (sample night)"
    header["COMMENT"] = "Made by shows/lenghu_sample/make_show_data.py from sample_data/night/refcat.fits"
    return fits.PrimaryHDU(img, header)


def disk_cube(n: int = 48, channels: int = 40, seed: int = 20251120):
    rng = np.random.default_rng(seed)
    v = np.linspace(-300, 300, channels)  # km/s
    y, x = (np.mgrid[0:n, 0:n] - (n - 1) / 2) / (n / 2)
    inc, pa = np.radians(60), np.radians(30)
    xr = x * np.cos(pa) + y * np.sin(pa)
    yr = (-x * np.sin(pa) + y * np.cos(pa)) / np.cos(inc)
    rad = np.hypot(xr, yr)
    surface = np.exp(-rad / 0.3) * (rad < 1.0)
    vlos = 200.0 * np.sin(inc) * xr / np.maximum(rad, 0.05) * np.tanh(rad / 0.1)
    cube = surface[None] * np.exp(-((v[:, None, None] - vlos[None]) ** 2) / (2 * 25.0**2))
    cube = (cube + rng.normal(0, 0.02, cube.shape)).astype(np.float32)
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"], h["CTYPE3"] = "RA---TAN", "DEC--TAN", "VRAD"
    h["CRVAL1"], h["CRVAL2"], h["CRVAL3"] = 150.0, 2.0, 0.0
    h["CRPIX1"], h["CRPIX2"], h["CRPIX3"] = (n + 1) / 2, (n + 1) / 2, (channels + 1) / 2
    h["CDELT1"], h["CDELT2"], h["CDELT3"] = -1.0 / 3600, 1.0 / 3600, float(v[1] - v[0])
    h["CUNIT1"], h["CUNIT2"], h["CUNIT3"] = "deg", "deg", "km/s"
    h["BUNIT"] = "Jy/beam"
    h["OBJECT"] = "Synthetic rotating disk"
    h["COMMENT"] = "Made by shows/lenghu_sample/make_show_data.py (synthetic, for the example show)"
    return fits.PrimaryHDU(cube, h)


def main() -> None:
    field_image().writeto(HERE / "wfst_field.fits", overwrite=True)
    disk_cube().writeto(HERE / "disk_cube.fits", overwrite=True)


if __name__ == "__main__":
    main()
