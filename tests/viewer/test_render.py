"""Headless rendering (EGL, or OSMesa): the pictures are looked at, not only produced."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lenghu.viewer.app.headless import use_headless_gl

# Mesa EGL/OSMesa are installed by `make setup`; without them this module fails to import, loudly.
BACKEND = use_headless_gl()

from lenghu.viewer.lod import BuildOptions, LodStore, build_lod  # noqa: E402
from lenghu.viewer.model import (  # noqa: E402
    ImageLayer,
    ParticleData,
    ParticleLayer,
    Scene,
    TurntableCamera,
    VolumeLayer,
    load_particles,
)
from lenghu.viewer.model.metrics import lit_fraction, ssim, white_fraction  # noqa: E402
from lenghu.viewer.render import POINT_DTYPE, SceneRenderer  # noqa: E402

SIZE = (256, 256)


def render(layers, camera=None, size=SIZE, **kwargs):
    """(picture, stats of the first layer's visual: auto_white, last_points)."""
    scene = Scene(layers, camera=camera, scale_bar=False, color_bar=False)
    renderer = SceneRenderer(scene, size=size, **kwargs)
    try:
        img = renderer.render()
        first = renderer.adapter(layers[0])
        stats = {"auto_white": getattr(first, "auto_white", None), "last_points": getattr(first, "last_points", 0)}
        return img, stats
    finally:
        renderer.close()


def front_camera(lo=(0, 0, 0), hi=(1, 1, 1)):
    """Looks along +y: +x to the right, +z up."""
    return TurntableCamera(azimuth=0, elevation=0, fov=30).fit(lo, hi)


def clump_scene(n_background=20_000, n_clump=60_000, centre=(0.8, 0.5, 0.8), sigma=0.03, seed=0):
    rng = np.random.default_rng(seed)
    pos = np.concatenate([rng.random((n_background, 3)), rng.normal(centre, sigma, (n_clump, 3))])
    return ParticleData(pos.astype(np.float32), {"v": rng.random(len(pos))}, box_size=(1, 1, 1))


def test_sixteen_bytes_a_point():
    assert POINT_DTYPE.itemsize == 16


def test_picture_is_not_empty_and_clump_is_where_the_camera_sees_it():
    img, _ = render([ParticleLayer(clump_scene(), point_size=2)], front_camera())
    assert lit_fraction(img, 2) > 0.05  # the faint uniform background shows too
    lum = img.astype(float).sum(axis=2)
    h, w = lum.shape
    quads = {"top-left": lum[: h // 2, : w // 2].sum(), "top-right": lum[: h // 2, w // 2:].sum(),
             "bottom-left": lum[h // 2:, : w // 2].sum(), "bottom-right": lum[h // 2:, w // 2:].sum()}
    assert max(quads, key=quads.get) == "top-right", quads
    y, x = np.unravel_index(np.argmax(lum), lum.shape)
    assert x > w * 0.55 and y < h * 0.45  # the brightest pixel is in the clump, upper right


def test_clump_moves_when_the_camera_turns():
    data = clump_scene()
    cam = front_camera()
    cam.azimuth = 180  # from behind: +x is now on the left
    img, _ = render([ParticleLayer(data)], cam)
    lum = img.astype(float).sum(axis=2)
    y, x = np.unravel_index(np.argmax(lum), lum.shape)
    assert x < 0.45 * 256 and y < 0.45 * 256
    assert lum[:128, :128].sum() > 1.2 * lum[:128, 128:].sum()


def test_tone_mapping_keeps_dense_regions_below_white():
    data = clump_scene(n_background=10_000, n_clump=200_000, sigma=0.02)
    img, renderer = render([ParticleLayer(data, point_size=3)], front_camera())  # white points, no colormap
    assert white_fraction(img) < 0.01
    lum = img.max(axis=2)
    assert lum.max() >= 200  # the clump glows
    assert (lum > 100).sum() > 50
    assert (lum >= 250).sum() < 0.3 * (lum > 100).sum()  # a graded core, not a flat white disk


def test_exposure_brightens():
    data = clump_scene()
    dim, _ = render([ParticleLayer(data, exposure=0.5, white_point=5.0)], front_camera())
    bright, _ = render([ParticleLayer(data, exposure=4.0, white_point=5.0)], front_camera())
    assert bright.mean() > 1.5 * dim.mean()


def test_colour_by_field_uses_the_colormap():
    rng = np.random.default_rng(2)
    pos = rng.random((30_000, 3)).astype(np.float32)
    data = ParticleData(pos, {"x": pos[:, 0]})
    img, _ = render([ParticleLayer(data, field="x", colormap="viridis", scale="linear", clim=(0, 1))],
                    front_camera())
    lit = img.max(axis=2) > 30
    left, right = img[:, :100][lit[:, :100]].mean(axis=0), img[:, 156:][lit[:, 156:]].mean(axis=0)
    assert left[2] > left[1] * 0.9 and right[1] > right[2]  # viridis: purple-blue on the left, green-yellow right


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """A 10^6-particle cosmic web (Gadget-4 HDF5) and its .lod store."""
    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web

    folder = tmp_path_factory.mktemp("web")
    (path,) = simulate_cosmic_web(CosmicWebConfig(particles=10**6, seed=3), folder, progress=False)
    store = build_lod(path, folder / "web.lod", BuildOptions())
    return path, LodStore(store.path)


def test_lod_at_1e5_budget_looks_like_the_full_1e6_render(web):
    path, store = web
    data = load_particles(path)
    assert len(data) == 10**6
    camera = TurntableCamera(azimuth=35, elevation=25).fit(*data.bounds())
    full_layer = ParticleLayer(data, field="grid_density", budget=10**7)
    full, stats = render([full_layer], camera)
    lod_layer = ParticleLayer(store, field="grid_density", budget=10**5, white_point=stats["auto_white"])
    lod, stats = render([lod_layer], camera.copy(), wait_for_data=True)
    drawn = stats["last_points"]
    assert 0.5e5 < drawn <= 1e5
    score = ssim(full, lod)
    assert score >= 0.9, score
    assert white_fraction(full) < 0.01


def test_frames_never_wait_for_a_slow_store(web):
    _, store = web

    class Slow(LodStore):
        def read_node(self, node, field=None):
            if node != 0:
                time.sleep(1.0)
            return super().read_node(node, field)

    slow = Slow(store.path)
    layer = ParticleLayer(slow, field="grid_density", budget=10**5)
    scene = Scene([layer], camera=TurntableCamera().fit(*slow.bounds()))
    renderer = SceneRenderer(scene, size=(128, 128))
    try:
        renderer.render()  # shaders compiled
        start = time.perf_counter()
        img = renderer.render()
        elapsed = time.perf_counter() - start
        adapter = renderer.adapter(layer)
        assert elapsed < 0.8, elapsed  # a node read takes 1 s: the frame did not wait for one
        assert lit_fraction(img) > 0.01  # the root is drawn meanwhile
        assert adapter.loader.pending > 0
        assert adapter.last_points <= 10**5
    finally:
        renderer.close()


def test_volume_renders_off_centre_blob():
    grid = np.zeros((32, 32, 32), np.float32)
    z, y, x = np.mgrid[:32, :32, :32]
    grid += np.exp(-((x - 26) ** 2 + (y - 16) ** 2 + (z - 16) ** 2) / 8.0)  # +x side
    layer = VolumeLayer(grid, extent=((0, 0, 0), (1, 1, 1)), method="mip", colormap="gray", clim=(0, 1))
    img, _ = render([layer], front_camera())
    lum = img.astype(float).sum(axis=2)
    assert lum.max() > 200
    assert lum[:, 128:].sum() > 3 * lum[:, :128].sum()


def test_volume_is_downsampled_past_the_3d_texture_limit():
    layer = VolumeLayer(np.random.default_rng(0).random((40, 40, 40)).astype(np.float32), method="translucent")
    scene = Scene([layer])
    renderer = SceneRenderer(scene, size=(64, 64))
    try:
        renderer.limits["max_3d_texture"] = 16
        renderer._sync_layers()
        renderer.adapters.clear()
        from lenghu.viewer.render import VolumeVisual

        visual = VolumeVisual(layer, renderer)
        assert visual.factor == 3 and max(visual.shape) <= 16
        assert lit_fraction(renderer.render()) > 0.01
    finally:
        renderer.close()


def test_fits_image_with_wcs(real_data):
    layer = ImageLayer.from_fits(real_data / "detection" / "sep_emmi" / "image.fits", stretch="asinh")
    scene = Scene([layer])
    assert scene.camera.kind == "panzoom"
    renderer = SceneRenderer(scene, size=SIZE)
    try:
        img = renderer.render()
    finally:
        renderer.close()
    assert lit_fraction(img, 20) > 0.3 and img.std() > 5


@pytest.mark.parametrize("name", [
    "gadget2_vaex/galaxy_littleendian.dat", "gadget2_vaex/gassphere_littleendian.dat",
    "gadget2_vaex/gassphere_bigendian.dat", "simspin/SimSpin_example_Gadget", "simspin/SimSpin_example_HDF5.hdf5",
    "simspin/SimSpin_example_EAGLE.hdf5", "simspin/SimSpin_example_IllustrisTNG.hdf5"])
def test_real_snapshots_render_through_the_cli(real_data, tmp_path, name):
    import imageio.v2 as imageio

    from lenghu.cli import main

    out = tmp_path / "snap.png"
    assert main(["render", str(real_data / "sims" / name), "--out", str(out), "--size", "160x120"]) == 0
    img = imageio.imread(out)
    assert img.shape[:2] == (120, 160)
    assert lit_fraction(img) > 0.01


def test_time_series_movie(tmp_path):
    import imageio.v2 as imageio

    from lenghu.cli import main

    out = tmp_path / "growth.mp4"
    paths = [f"sample_data/cosmic_web/snapshot_00{i}.hdf5" for i in range(3)]
    assert main(["render", *paths, "--out", str(out), "--size", "96x64", "--seconds", "0.4", "--fps", "10",
                 "--budget", "50000"]) == 0
    frames = [f for f in imageio.get_reader(str(out), format="FFMPEG").iter_data()]
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    assert all(f.mean() > 1 for f in frames)


def test_tour_drives_the_picture(tmp_path):
    import json

    import imageio.v2 as imageio

    from lenghu.cli import main

    tour = tmp_path / "tour.json"
    tour.write_text(json.dumps({"fps": 5, "keyframes": [
        {"t": 0, "camera": {"type": "turntable", "center": [0.8, 0.5, 0.8], "distance": 0.3, "azimuth": 0,
                            "elevation": 0, "fov": 40}},
        {"t": 1, "camera": {"distance": 3}}]}))
    data = clump_scene()
    from lenghu.io.snapshots import write_gadget4  # noqa: F401 (the CLI reads files; write a tiny one)
    from lenghu.viewer.lod import build_lod as build

    store = build(data, tmp_path / "clump.lod")
    out = tmp_path / "close.png"
    assert main(["render", str(store.path), "--out", str(out), "--tour", str(tour), "--size", "128x128"]) == 0
    close = imageio.imread(out)
    assert lit_fraction(close) > 0.5  # zoomed into the clump: it fills the picture


def test_a_removed_layer_lets_go_of_its_visual():
    """Removing a layer closes its visual and disconnects it from the layer's events (a kiosk that swaps
    layers for weeks would otherwise keep every old visual, its GPU buffers and frame buffer alive)."""
    import gc
    import weakref

    grid = np.zeros((8, 8, 8), np.float32)
    layers = [ParticleLayer(clump_scene(500, 500), point_size=2),
              VolumeLayer(grid, extent=((0, 0, 0), (1, 1, 1)), clim=(0, 1))]
    scene = Scene(list(layers), camera=front_camera(), scale_bar=False, color_bar=False)
    renderer = SceneRenderer(scene, size=(64, 64))
    try:
        renderer.render()
        visuals = [weakref.ref(renderer.adapter(layer)) for layer in layers]
        for layer in layers:
            scene.remove(layer)
        gc.collect()
        # no listener left: neither the scene's nor the visual's (the leak kept the visual's)
        assert [len(layer.events.changed) for layer in layers] == [0, 0]
        assert [v() for v in visuals] == [None, None]
    finally:
        renderer.close()
