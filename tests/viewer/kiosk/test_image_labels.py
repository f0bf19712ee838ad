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


def _cube_header(naxis4: bool = False):
    from astropy.io import fits

    h = fits.Header()
    for n, (ctype, crval, crpix, cdelt, cunit) in enumerate(
            [("RA---TAN", 150.0, 12.5, -1 / 3600, "deg"), ("DEC--TAN", 2.0, 12.5, 1 / 3600, "deg"),
             ("FREQ", 1.4204e9, 1.0, 1.0e5, "Hz")] + ([("STOKES", 1.0, 1.0, 1.0, "")] if naxis4 else []), start=1):
        h[f"CTYPE{n}"], h[f"CRVAL{n}"], h[f"CRPIX{n}"], h[f"CDELT{n}"], h[f"CUNIT{n}"] = ctype, crval, crpix, cdelt, cunit
    h["BUNIT"] = "Jy/beam"
    return h


@pytest.mark.parametrize("naxis4", [False, True])
def test_a_tap_on_a_cube_names_its_brightest_voxel_with_sky_position_and_frequency(tmp_path, naxis4):
    from astropy.io import fits

    from lenghu.viewer.app.kiosk.image_labels import voxel_text
    from lenghu.viewer.model import TurntableCamera, VolumeLayer, pixel_ray

    cube = np.random.default_rng(5).normal(0, 0.01, (10, 24, 24)).astype(np.float32)
    cube[7, 11, 13] = 5.0  # a bright voxel: x 13, y 11, channel 7
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube[None] if naxis4 else cube, header=_cube_header(naxis4)).writeto(path)
    layer = VolumeLayer.from_fits(path)
    cam = TurntableCamera(azimuth=20, elevation=30)
    cam.fit(*layer.bounds())
    size = (320, 180)
    centre = np.array([13.5, 11.5, 7.5])  # the voxel's centre in world units (one unit per voxel)
    x, y = project([centre], cam, size)[0]
    origin, direction = pixel_ray(cam, size, x, y)
    along = origin + np.dot(centre - origin, direction) * direction
    assert np.allclose(along, centre, atol=1e-6)  # the ray goes through the tapped point
    assert layer.brightest_along(origin, direction) == (13, 11, 7)
    assert layer.brightest_along(origin, -direction) is None  # behind the camera: nothing
    assert layer.brightest_along(np.array([100.0, 100.0, 100.0]), np.array([1.0, 0.0, 0.0])) is None  # misses
    text = voxel_text(layer, 13, 11, 7)
    wcs = layer.wcs
    pixel = [13.0, 11.0, 7.0] + ([0.0] if naxis4 else [])
    ra, dec, freq = wcs.all_pix2world([pixel], 0)[0][:3]
    sky = SkyCoord(ra, dec, unit="deg")
    assert text.en == (f"RA {sky.ra.to_string(unit='hourangle', sep='hms', precision=1, pad=True)}, "
                       f"Dec {sky.dec.to_string(unit='deg', sep='dms', precision=0, alwayssign=True, pad=True)}, "
                       f"frequency {freq / 1e9:.6g} GHz: brightness 5 Jy/beam")
    assert "频率 1.42" in text.zh and text.zh.endswith("亮度 5 Jy/beam")
    bare = VolumeLayer(cube)
    assert voxel_text(bare, 13, 11, 7).en == "Voxel (13, 11, 7): brightness 5"


def test_the_kiosk_labels_a_tapped_cube_voxel_and_an_image_point(tmp_path):
    from astropy.io import fits

    from lenghu.viewer.app.kiosk import machine as m
    from lenghu.viewer.app.kiosk.controller import KioskController
    from lenghu.viewer.app.kiosk.show import load_show
    from tests.viewer.kiosk.conftest import SHOW

    cube = np.zeros((10, 24, 24), np.float32)
    cube[4, 12, 6] = 3.0
    fits.PrimaryHDU(cube, header=_cube_header()).writeto(tmp_path / "cube.fits")
    scene = ('\n[[scene]]\nname = "cube"\ndata = "cube.fits"\nduration = 30\ntour = "still"\n'
             'caption = { zh = "立方体", en = "A cube" }\n')
    (tmp_path / "show.toml").write_text(SHOW.format(idle=5.0, outside="false", scenes=scene), encoding="utf-8")
    c = KioskController(load_show(tmp_path / "show.toml"), (320, 180))
    c.advance(1.0)
    x, y = project([[6.5, 12.5, 4.5]], c.scene.camera, (320, 180))[0]
    c.handle(m.PointerDown(1.1, x, y))
    c.handle(m.PointerUp(1.2, x, y))
    assert c.label is not None and c.label.structure == -1
    assert c.overlay_state().label[0].endswith("亮度 3 Jy/beam") and "频率" in c.overlay_state().label[0]
    c.handle(m.PointerDown(2.0, 1, 1))  # the corner: the ray misses the cube
    c.handle(m.PointerUp(2.1, 1, 1))
    assert c.label is None
