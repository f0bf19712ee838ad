"""Tiled images drawn headless (EGL/OSMesa): the structure of a synthetic 8k x 8k mosaic where expected."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lenghu.viewer.app.headless import use_headless_gl

BACKEND = use_headless_gl()

from lenghu.viewer.model import PanZoomCamera, Scene, TiledImageLayer, project  # noqa: E402
from lenghu.viewer.render import SceneRenderer  # noqa: E402
from lenghu.viewer.tiles import TileStore, build_pyramid  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiles_data import MARKER, STAR_STEP, image_rows, write_fits  # noqa: E402

NY, NX = 8192, 8192
SIZE = (512, 512)


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiles_render")
    return build_pyramid(write_fits(folder / "mosaic.fits", NY, NX), folder / "mosaic.pyr").path


def renderer_for(layer, camera, wait=True, size=SIZE):
    scene = Scene([layer], camera=camera, scale_bar=False, color_bar=False)
    return SceneRenderer(scene, size=size, wait_for_data=wait)


def grey(img):
    return img.astype(float).mean(axis=2) / 255.0


def test_whole_mosaic_shows_the_star_grid_and_the_marker(pyramid):
    layer = TiledImageLayer(pyramid, stretch="linear", interval="minmax")
    camera = PanZoomCamera().fit((0, 0, 0), (NX, NY, 0))
    r = renderer_for(layer, camera)
    try:
        img = grey(r.render())
        adapter = r.adapter(layer)
        assert adapter.last_selection.level == 4  # 16 image pixels a screen pixel: the one-tile level
    finally:
        r.close()
    assert 0.01 < img.mean() < 0.9  # not empty, not saturated
    # the marker block (x 6000..6600, y 1000..1400: lower right, since y grows upwards) is bright
    corners = project(np.array([[6000, 1000, 0], [6600, 1400, 0]], float), camera, SIZE)
    (x0, y1), (x1, y0) = corners.round().astype(int)
    block = img[y0 + 2:y1 - 2, x0 + 2:x1 - 2]
    assert block.size > 50 and block.min() > 0.5
    mirrored = img[SIZE[1] - y1 + 2:SIZE[1] - y0 - 2, x0 + 2:x1 - 2]  # where it would be if y were flipped
    assert mirrored.max() < 0.5
    # the gradient: brighter to the right (100 x / nx over a 0..5000 range: faint, but monotone)
    row = img[SIZE[1] // 2 + 10]
    assert row[SIZE[0] - 20] > row[20]


def test_zoomed_in_at_one_to_one_shows_full_resolution_stars(pyramid):
    layer = TiledImageLayer(pyramid, stretch="asinh", interval="zscale")
    star = (512 + 2 * STAR_STEP, 512 + 5 * STAR_STEP)  # a star at a corner of four level-0 tiles
    camera = PanZoomCamera(center=(star[0] + 100.0, star[1] + 50.0), height=float(SIZE[1]))
    r = renderer_for(layer, camera)
    try:
        img = grey(r.render())
        adapter = r.adapter(layer)
        assert adapter.last_selection.level == 0 and len(adapter.last_drawn) >= 4
    finally:
        r.close()
    (sx, sy), = project(np.array([[star[0] + 0.5, star[1] + 0.5, 0.0]]), camera, SIZE).round().astype(int)
    assert img[sy, sx] > 0.95  # the star's peak, at full resolution
    assert img[sy, sx + 20] < 0.7 and img[sy + 20, sx] < 0.7  # 5 sigma away: background
    # the stretch is the same in every tile: background pixels across the tile seams at x = star[0] follow the
    # source (one set of limits), so the picture equals the source put through the layer's stretch
    lo, hi = layer.limits()
    from lenghu.viewer.model.colors import stretch

    ys = [sy - 60, sy + 60]
    for y_px in ys:
        y_img = int(np.floor(camera.center[1] + (SIZE[1] / 2 - y_px - 0.5)))
        src = image_rows(y_img, y_img + 1, NX)[0]
        xs = np.arange(40, SIZE[0] - 40)
        x_img = np.floor(camera.center[0] - SIZE[0] / 2 + xs + 0.5).astype(int)
        want = stretch(src[x_img], lo, hi, "asinh")
        # 8-bit output of a [0, 1] colormap lookup: within 2/255 plus the colormap's 256 steps
        assert np.abs(img[y_px, xs] - want).max() < 0.012


def test_a_frame_never_waits_for_slow_tiles(pyramid):
    class SlowStore(TileStore):
        def read_tile(self, level, ty, tx):
            if level != self.top:
                time.sleep(0.3)
            return super().read_tile(level, ty, tx)

    layer = TiledImageLayer(SlowStore(pyramid), stretch="linear", interval="minmax")
    camera = PanZoomCamera().fit((0, 0, 0), (NX, NY, 0))
    r = renderer_for(layer, camera, wait=False)
    try:
        r.render()  # warm-up: shaders; the coarsest tile is there
        camera.center, camera.height = (2048.0, 2048.0), 512.0  # zoom in: level-0 tiles wanted, none loaded
        times = []
        for _ in range(3):
            start = time.perf_counter()
            img = grey(r.render())
            times.append(time.perf_counter() - start)
        adapter = r.adapter(layer)
        assert adapter.last_selection.level == 0
        assert max(times) < 0.3, times  # shorter than one tile's read
        assert adapter.last_fallbacks > 0 and img.mean() > 0.001  # drawn from the coarse tile meanwhile
        assert adapter.loader.wait(timeout=60)
        r.render()
        r.render()
        assert adapter.last_fallbacks == 0
    finally:
        r.close()


def test_panning_and_zooming_keep_tiles_and_visuals_bounded(pyramid):
    layer = TiledImageLayer(pyramid, max_tiles=16, cache_tiles=40)
    camera = PanZoomCamera().fit((0, 0, 0), (NX, NY, 0))
    r = renderer_for(layer, camera, wait=False, size=(400, 300))
    rng = np.random.default_rng(2)
    try:
        adapter = r.adapter(layer)
        for _ in range(25):
            camera.center = tuple(rng.uniform(0, NX, 2))
            camera.height = float(10 ** rng.uniform(2, 4))
            img = r.render()
            assert img.any()
            assert len(adapter.last_selection.tiles) <= 16
            assert adapter.loader.pending <= 16 + len(adapter.last_selection.ancestors) + 1
            assert adapter.visuals <= adapter.pool_size
            with adapter.loader._lock:
                wanted = len(adapter.loader._wanted)
                assert adapter.loader._points <= max(layer.cache_tiles, wanted + 1)
    finally:
        r.close()


def test_marker_is_where_a_tile_boundary_cuts_it(pyramid):
    """The marker block straddles level-0 tiles (x 6000..6600 crosses 6144): drawn whole, no seam."""
    layer = TiledImageLayer(pyramid, stretch="linear", interval="minmax")
    camera = PanZoomCamera(center=(6300.0, 1200.0), height=600.0)
    r = renderer_for(layer, camera)
    try:
        img = grey(r.render())
    finally:
        r.close()
    corners = project(np.array([[MARKER[1].start, MARKER[0].start, 0], [MARKER[1].stop, MARKER[0].stop, 0]], float),
                      camera, SIZE).round().astype(int)
    (x0, y1), (x1, y0) = corners
    inside = img[max(y0, 0) + 2:min(y1, SIZE[1]) - 2, max(x0, 0) + 2:min(x1, SIZE[0]) - 2]
    assert inside.size > 1000 and np.ptp(inside) < 0.01 and inside.mean() > 0.5


def test_lenghu_convert_and_render_a_pyramid_and_a_large_fits(pyramid, tmp_path, monkeypatch):
    import hashlib
    import subprocess

    import imageio.v2 as imageio

    from lenghu.viewer.app.render import render_files
    from lenghu.viewer.app.scenes import SceneSpec

    fits_path = pyramid.parent / "mosaic.fits"
    lenghu = [sys.executable, "-m", "lenghu"]
    proc = subprocess.run(lenghu + ["convert", str(fits_path), str(tmp_path / "m.pyr")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "lenghu-image-pyramid" in proc.stdout and "5 levels" in proc.stdout
    proc = subprocess.run(lenghu + ["render", str(tmp_path / "m.pyr"), "--out", str(tmp_path / "m.png"),
                                    "--size", "256x256"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    from_pyr = grey(imageio.imread(tmp_path / "m.png")[..., :3])
    assert 0.01 < from_pyr.mean() < 0.95
    # a FITS image above the tiling threshold: a pyramid is built once in the cache, the file is untouched
    monkeypatch.setenv("LENGHU_CACHE_DIR", str(tmp_path / "cache"))
    digest = hashlib.sha256(fits_path.read_bytes()).hexdigest()
    result = render_files([fits_path], tmp_path / "f.png", size=(256, 256), spec=SceneSpec(tiled_pixels=10**6))
    assert result.frames == 1 and len(list((tmp_path / "cache" / "pyramids").glob("mosaic-*.pyr"))) == 1
    assert hashlib.sha256(fits_path.read_bytes()).hexdigest() == digest
    from_fits = grey(imageio.imread(tmp_path / "f.png")[..., :3])
    assert np.abs(from_fits - from_pyr).mean() < 0.01  # the same picture either way
