"""A converted image opens in DS9 (under Xvfb) and looks exactly like the original."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from lenghu.cli import main


def _ds9_png(fits_path, png_path):
    # ds9 and xvfb-run are installed by `make setup` (tools/ensure_system_packages.sh)
    assert shutil.which("ds9") and shutil.which("xvfb-run"), "run `make setup` to install saods9 and xvfb"
    subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", "ds9", str(fits_path), "-zscale", "-cmap",
                    "heat", "-export", "png", str(png_path), "-exit"], check=True, timeout=120,
                   capture_output=True)
    import imageio.v3 as iio

    return iio.imread(png_path)


def test_converted_image_opens_in_ds9(real_data, tmp_path):
    original = real_data / "detection" / "sep_emmi" / "image.fits"
    assert main(["convert", str(original), str(tmp_path / "image.zarr")]) == 0
    assert main(["convert", str(tmp_path / "image.zarr"), str(tmp_path / "back.fits")]) == 0
    want = _ds9_png(original, tmp_path / "original.png")
    got = _ds9_png(tmp_path / "back.fits", tmp_path / "back.png")
    assert got.shape[:2] == (256, 256)
    assert np.unique(got.reshape(-1, got.shape[-1]), axis=0).shape[0] > 50, "DS9 exported a flat image"
    np.testing.assert_array_equal(got, want)
