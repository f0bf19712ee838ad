"""A tap on an image names the point: sky position from the WCS (or the pixel), and the value there."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS

from lenghu.viewer.app.kiosk.image_labels import image_text
from lenghu.viewer.model import ImageLayer, PanZoomCamera, TiledImageLayer, plane_point, project


def _wcs(shape):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.1, 2.2]  # the COSMOS field
    w.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    w.wcs.cdelt = [-0.333 / 3600, 0.333 / 3600]  # WFST's 0.333"/pixel
    return w


def test_plane_point_inverts_project_on_the_image_plane():
    cam = PanZoomCamera(center=(120.5, -33.0), height=77.0)
    rng = np.random.default_rng(3)
    for size in ((320, 180), (1920, 1080)):
        world = np.c_[rng.uniform(50, 190, 20), rng.uniform(-70, 5, 20), np.zeros(20)]
        for (px, py), (wx, wy, _) in zip(project(world, cam, size), world):
            assert plane_point(cam, size, px, py) == pytest.approx((wx, wy), abs=1e-9)


def test_a_point_of_an_image_with_a_wcs_gives_its_sky_position_and_value():
    data = np.arange(60 * 80, dtype=np.float32).reshape(60, 80)
    data[5, 7] = np.nan
    layer = ImageLayer(data, wcs=_wcs(data.shape), unit="e-/s")
    text = image_text(layer, 10.3, 20.7)  # pixel (10, 20): column 10, row 20
    sky = SkyCoord.from_pixel(10.3 - 0.5, 20.7 - 0.5, layer.wcs, origin=0)
    ra = sky.ra.to_string(unit="hourangle", sep="hms", precision=1, pad=True)
    dec = sky.dec.to_string(unit="deg", sep="dms", precision=0, alwayssign=True, pad=True)
    assert text.en == f"RA {ra}, Dec {dec}: brightness {data[20, 10]:.4g} e-/s"
    assert text.zh.startswith(f"赤经 {ra}，赤纬 {dec}") and f"{data[20, 10]:.4g} e-/s" in text.zh
    assert ra.startswith("10h00m") and dec.startswith("+02d")
    assert image_text(layer, 7.5, 5.5).en.endswith("no data here")  # a NaN pixel
    assert image_text(layer, -0.2, 3.0) is None and image_text(layer, 80.0, 3.0) is None  # off the image


def test_without_a_wcs_the_pixel_is_named():
    layer = ImageLayer(np.full((4, 5), 2.5, dtype=np.float32))
    assert image_text(layer, 4.9, 3.1).en == "Pixel (4, 3): brightness 2.5"
    assert image_text(layer, 4.9, 3.1).zh == "像素 (4, 3)：亮度 2.5"


def test_a_tiled_image_reads_the_value_of_its_full_resolution_tile(tmp_path):
    from lenghu.viewer.tiles import PyramidOptions, build_pyramid

    rng = np.random.default_rng(2)
    image = rng.normal(100, 10, (700, 900)).astype(np.float32)
    layer = TiledImageLayer(build_pyramid(image, tmp_path / "a.pyr", PyramidOptions(tile=256, group_tiles=1)).path)
    for i, j in ((0, 0), (899, 699), (300, 520), (257, 255)):
        assert layer.value_at(i, j) == image[j, i]
    assert np.isnan(layer.value_at(900, 10))
    assert image_text(layer, 300.5, 520.5).en == f"Pixel (300, 520): brightness {image[520, 300]:.4g}"
