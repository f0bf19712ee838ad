"""Image pyramids: out-of-core build from FITS, tile contents against the source, selection (no GL)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lenghu.viewer.lod import NodeLoader
from lenghu.viewer.model import PanZoomCamera, TiledImageLayer, TurntableCamera
from lenghu.viewer.model.colors import block_reduce, interval
from lenghu.viewer.tiles import (
    PyramidError,
    PyramidOptions,
    PyramidReadError,
    TileStore,
    build_pyramid,
    is_pyramid,
    select_tiles,
)

sys.path.insert(0, str(Path(__file__).parent))
from tiles_data import MARKER_VALUE, image_rows, write_fits  # noqa: E402

NY, NX = 8192, 8192


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """(FITS path, its sha256, pyramid path, traced peak bytes of the build) for an 8k x 8k image."""
    folder = tmp_path_factory.mktemp("tiles")
    fits_path = write_fits(folder / "mosaic.fits", NY, NX)
    digest = hashlib.sha256(fits_path.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        result = build_pyramid(fits_path, folder / "mosaic.pyr")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return fits_path, digest, result.path, peak


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # block_reduce's reference means of the NaN hole
def test_level_zero_is_the_image_and_coarser_levels_are_block_means(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.normal(100, 10, (1500, 2300)).astype(np.float32)  # odd sizes: partial tiles at the edges
    image[700:710, 900:920] = np.nan
    store = TileStore(build_pyramid(image, tmp_path / "a.pyr", PyramidOptions(tile=256, group_tiles=1)).path)
    assert store.shape == (1500, 2300) and [lv.factor for lv in store.levels] == [1, 2, 4, 8, 16]
    assert store.levels[-1].tiles == (1, 1) and store.index(store.top, 0, 0) == 0
    # level 0: the pixels themselves, NaN past the edge
    np.testing.assert_array_equal(store.read_tile(0, 2, 3), image[512:768, 768:1024])
    edge = store.read_tile(0, 5, 8)
    np.testing.assert_array_equal(edge[: 1500 - 1280, : 2300 - 2048], image[1280:, 2048:])
    assert np.isnan(edge[1500 - 1280:]).all() and np.isnan(edge[:, 2300 - 2048:]).all()
    # level 2: 4x4 means (NaN-aware), assembled from its tiles
    lv = store.levels[2]
    full = np.concatenate([np.concatenate([store.read_tile(2, ty, tx) for tx in range(lv.tiles[1])], axis=1)
                           for ty in range(lv.tiles[0])])
    want = block_reduce(image[:1500 - 1500 % 4, :2300 - 2300 % 4], 4)
    np.testing.assert_allclose(full[: want.shape[0], : want.shape[1]], want, rtol=1e-5)
    # blocks wholly inside the hole stay NaN; a block partly in it is the mean of its valid pixels
    assert np.isnan(full[175:177, 225:230]).all()
    np.testing.assert_allclose(full[177, 225:230], image[710:712, 900:920].reshape(2, 5, 4).mean(axis=(0, 2)),
                               rtol=1e-5)
    # parents cover their children
    child = store.index(0, 5, 8)
    level, ty, tx = store.locate(store.parent(child))
    assert (level, ty, tx) == (1, 2, 4)


def test_pyramid_of_a_fits_mosaic_matches_the_file_and_leaves_it_unchanged(mosaic):
    fits_path, digest, pyr, _ = mosaic
    assert hashlib.sha256(fits_path.read_bytes()).hexdigest() == digest  # raw input never modified
    assert is_pyramid(pyr) and not is_pyramid(fits_path.parent)
    store = TileStore(pyr)
    assert store.shape == (NY, NX) and len(store.levels) == 5
    np.testing.assert_array_equal(store.read_tile(0, 2, 12), image_rows(1024, 1536, NX)[:, 6144:6656])
    assert store.read_tile(0, 2, 11)[1200 - 1024, 6100 - 5632] == MARKER_VALUE  # rows grow upwards (FITS order)
    meta = json.loads((pyr / "pyramid.json").read_text())
    assert "synthetic mosaic" in meta["header"] and meta["source"].endswith("mosaic.fits[0]")
    # the limits come from the subsample of the whole image: close to the limits of the whole image
    whole = np.concatenate([image_rows(a, a + 1, NX)[:, ::4] for a in range(0, NY, 8)])
    lo, hi = store.limits("percentile", 99.0)
    want = interval(whole, "percentile", 99.0)
    assert abs(lo - want[0]) < 1.0 and abs(hi - want[1]) < 0.02 * want[1]


def test_pyramid_build_memory_is_a_band_not_the_image(mosaic):
    """8k x 8k float32 is 256 MiB; the build holds about a band of 512 rows (16 MiB) and its copies."""
    *_, peak = mosaic
    assert peak < 96 * 2**20, peak / 2**20


def test_bad_inputs_give_typed_errors(tmp_path):
    from astropy.io import fits

    cube = tmp_path / "cube.fits"
    fits.PrimaryHDU(np.zeros((3, 20, 20), np.float32)).writeto(cube)
    with pytest.raises(PyramidError, match="cube.fits: no 2-D image"):
        build_pyramid(cube, tmp_path / "c.pyr")
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(PyramidError, match="junk.fits"):
        build_pyramid(junk, tmp_path / "j.pyr")
    assert not (tmp_path / "c.pyr").exists() and not list(tmp_path.glob(".*build-*"))  # nothing half-written
    good = build_pyramid(np.ones((600, 700), np.float32), tmp_path / "g.pyr", PyramidOptions(tile=256)).path
    level0 = good / "level_0.f32"
    level0.write_bytes(level0.read_bytes()[:1000])
    with pytest.raises(PyramidReadError, match="level_0.f32"):
        TileStore(good)
    with pytest.raises(ValueError, match="power of two"):
        PyramidOptions(tile=500)


def _frame(camera, size):
    return camera.view_matrix(), camera.projection_matrix(size[0] / size[1]), size


def test_selection_picks_the_level_matching_the_screen(mosaic):
    store = TileStore(mosaic[2])
    size = (800, 600)
    whole = PanZoomCamera().fit((0, 0, 0), (NX, NY, 0), size[0] / size[1])
    sel = select_tiles(store, *_frame(whole, size))
    # 8192 pixels on 600 screen pixels: level pixels of 16 (13.7 image pixels a screen pixel -> level 3, 8 px)
    assert sel.level == 3 and sorted(sel.tiles) == sorted(store.index(3, ty, tx) for ty in range(2) for tx in range(2))
    assert sel.ancestors == [0]
    one_to_one = PanZoomCamera(center=(3000.0, 5000.0), height=600.0)
    sel = select_tiles(store, *_frame(one_to_one, size))
    assert sel.level == 0 and abs(sel.pixels_per_unit - 1.0) < 1e-6
    # the view spans x 2600..3400, y 4700..5300: tile columns 5..6, rows 9..10
    got = {store.locate(i)[1:] for i in sel.tiles}
    assert got == {(ty, tx) for ty in (9, 10) for tx in (5, 6)}
    assert store.locate(sel.tiles[0])[1:] == (9, 5)  # the tile under the screen centre comes first
    assert [store.locate(a)[0] for a in sel.ancestors] == sorted((store.locate(a)[0] for a in sel.ancestors),
                                                                 reverse=True)
    half = PanZoomCamera(center=(3000.0, 5000.0), height=1200.0)
    assert select_tiles(store, *_frame(half, size)).level == 1


def test_tiles_in_flight_are_bounded(mosaic):
    store = TileStore(mosaic[2])
    rng = np.random.default_rng(0)
    for _ in range(60):
        size = (int(rng.integers(100, 3000)), int(rng.integers(100, 3000)))
        if rng.random() < 0.7:
            cam = PanZoomCamera(center=tuple(rng.uniform(-2000, 10000, 2)), height=float(10 ** rng.uniform(1, 4.5)))
        else:  # a tilted perspective view of the plane: many tiles of one level would be in view
            cam = TurntableCamera(center=(4096, 4096, 0), azimuth=rng.uniform(0, 360), elevation=rng.uniform(5, 90),
                                  distance=rng.uniform(500, 20000), fov=60)
        sel = select_tiles(store, *_frame(cam, size), max_tiles=24)
        assert len(sel.tiles) <= 24
        assert len(sel.ancestors) <= 24 * (store.top - sel.level)
        assert all(0 <= i < store.n_tiles for i in sel.wanted)


class SlowStore(TileStore):
    """A pyramid whose tiles (all but the coarsest) take ``delay`` seconds to read."""

    delay = 0.2

    def read_tile(self, level, ty, tx):
        if level != self.top:
            time.sleep(self.delay)
        return super().read_tile(level, ty, tx)


def test_loader_never_blocks_and_keeps_a_bounded_cache(mosaic):
    store = SlowStore(mosaic[2])
    loader = NodeLoader(store, None, capacity_points=6, weight=lambda tile: 1)
    try:
        assert loader.get(0) is not None  # the coarsest tile is there before any frame
        cam = PanZoomCamera(center=(3000.0, 5000.0), height=600.0)
        sel = select_tiles(store, *_frame(cam, (800, 600)))
        start = time.perf_counter()
        loader.request(sel.wanted)
        mask = loader.loaded_mask()
        assert time.perf_counter() - start < 0.05 and mask.sum() == 1
        assert loader.wait(timeout=30)
        assert all(loader.get(i) is not None for i in sel.wanted)
        for centre in ((1000.0, 1000.0), (7000.0, 7000.0)):
            sel = select_tiles(store, *_frame(PanZoomCamera(center=centre, height=600.0), (800, 600)))
            loader.request(sel.wanted)
            assert loader.wait(timeout=30)
            # the cache keeps the root and what the last frame wanted, within its capacity when it can
            assert loader._points <= max(6, len(sel.wanted) + 1)
    finally:
        loader.close()


def test_tiled_layer_limits_come_from_the_whole_image(mosaic):
    layer = TiledImageLayer(mosaic[2], interval="minmax")
    lo, hi = layer.limits()
    assert lo < 0.5 and hi > 4000  # the sample sees the gradient's start and the stars' peaks
    assert layer.bounds()[1][:2].tolist() == [NX, NY]
    tile = layer.store.read_tile(0, 0, 0)
    shown = layer.display_tile(tile)
    assert shown.shape == tile.shape and 0 <= shown.min() and shown.max() <= 1
    assert layer.name == "mosaic.pyr"
