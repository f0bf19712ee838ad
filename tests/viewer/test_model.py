"""The viewer model: plain Python, no GL library imported."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lenghu.viewer.model import (
    FlyCamera,
    ImageLayer,
    Keyframe,
    PanZoomCamera,
    ParticleData,
    ParticleLayer,
    Scene,
    TimeSeries,
    Tour,
    TurntableCamera,
    VolumeLayer,
    camera_from_dict,
    camera_from_json,
    project,
    stretch,
)


def test_model_imports_no_gl():
    code = ("import sys, lenghu.viewer.model, lenghu.viewer.lod; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('vispy', 'OpenGL')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_events_fire_on_change_only():
    layer = ParticleLayer(ParticleData(np.zeros((4, 3))))
    seen = []
    layer.events.exposure.connect(lambda e: seen.append(("exposure", e.value, e.old)))
    layer.events.changed.connect(lambda e: seen.append(("changed", e.name)))
    layer.exposure = 2
    layer.exposure = 2  # same value: no event
    assert seen == [("exposure", 2.0, 1.0), ("changed", "exposure")]
    with pytest.raises(ValueError):
        layer.exposure = -1
    with pytest.raises(ValueError):
        layer.colormap = "no-such-map"


def test_scene_relays_layer_and_camera_events():
    scene = Scene()
    names = []
    scene.events.changed.connect(lambda e: names.append(e.name))
    layer = scene.add(ParticleLayer(ParticleData(np.random.default_rng(0).random((50, 3)))))
    layer.point_size = 4
    scene.camera.azimuth = 10
    scene.camera = FlyCamera()
    assert names == ["layers", "layer.point_size", "camera", "camera"]
    assert scene.to_dict()["layers"][0]["point_size"] == 4.0


@pytest.mark.parametrize("cam", [TurntableCamera(azimuth=70, distance=3, fov=30), FlyCamera(yaw=20, pitch=-5),
                                 PanZoomCamera(center=(3, 4), height=7)])
def test_camera_state_round_trips(cam):
    again = camera_from_json(json.dumps(cam.to_dict()))
    assert type(again) is type(cam)
    assert again.to_dict() == cam.to_dict()
    np.testing.assert_allclose(again.view_matrix(), cam.view_matrix())
    np.testing.assert_allclose(again.projection_matrix(1.5), cam.projection_matrix(1.5))


def test_turntable_projects_center_to_image_center_and_right_is_right():
    cam = TurntableCamera(center=(1, 2, 3), azimuth=0, elevation=0, distance=10, fov=40)
    px = project(np.array([[1, 2, 3], [2, 2, 3], [1, 2, 4]]), cam, (200, 100))
    np.testing.assert_allclose(px[0], [100, 50], atol=1e-9)
    assert px[1, 0] > 100  # +x appears to the right when looking along +y
    assert px[2, 1] < 50  # +z appears up


def test_camera_fit_sees_the_whole_box():
    for cam in (TurntableCamera(azimuth=33, elevation=40), FlyCamera(yaw=50, pitch=10)):
        cam.fit((0, 0, 0), (10, 20, 5))
        corners = np.array([[x, y, z] for x in (0, 10) for y in (0, 20) for z in (0, 5)])
        px = project(corners, cam, (300, 300))
        assert np.all(np.isfinite(px)) and np.all(px > -1) and np.all(px < 301)


def test_unknown_camera_type():
    with pytest.raises(ValueError):
        camera_from_dict({"type": "fisheye"})


def test_tour_passes_through_keyframes_and_is_smooth(tmp_path):
    tour = Tour([Keyframe(0, {"type": "turntable", "azimuth": 350, "distance": 100}, "start | 开始"),
                 Keyframe(4, {"azimuth": 10, "distance": 10}),
                 Keyframe(8, {"azimuth": 90, "distance": 50, "center": [1, 2, 3]}, "end")], fps=10)
    path = tmp_path / "tour.json"
    tour.save(path)
    tour = Tour.load(path)
    assert tour.frame_count == 81
    assert tour.camera_at(4).distance == pytest.approx(10)
    assert tour.camera_at(0).azimuth == pytest.approx(350)
    # 350 -> 10 goes the short way through 360, not back through 180
    mid = tour.camera_at(2).azimuth % 360
    assert mid > 340 or mid < 20
    assert tour.state_at(1).caption == "start | 开始" and tour.state_at(8).caption == "end"
    # C1: no jumps in the azimuth's speed around the middle keyframe
    t = np.linspace(3.9, 4.1, 21)
    az = np.unwrap(np.deg2rad([tour.camera_at(x).azimuth for x in t]))
    speed = np.diff(az)
    assert np.max(np.abs(np.diff(speed))) < 0.2 * np.max(np.abs(speed))
    # eases in: no speed at the start
    assert abs(tour.camera_at(0.01).azimuth - 350) < 0.01
    np.testing.assert_allclose(tour.camera_at(8).center, [1, 2, 3])


def test_tour_rejects_mixed_cameras():
    with pytest.raises(ValueError):
        Tour([Keyframe(0, {"type": "turntable"}), Keyframe(1, {"type": "fly"})])


def test_orbit_tour():
    cam = TurntableCamera(azimuth=10)
    tour = Tour.orbit(cam, seconds=2, fps=5, series_times=(0, 2))
    assert tour.frame_count == 11
    assert tour.camera_at(2).azimuth == pytest.approx(370)
    assert tour.state_at(1).series_time == pytest.approx(1)


def test_time_series_interpolates_by_id_across_the_periodic_edge():
    box = (10.0, 10.0, 10.0)
    a = ParticleData(np.array([[9.5, 1, 1], [5, 5, 5], [2, 2, 2]]), {"rho": np.array([1.0, 2, 3])},
                     ids=np.array([7, 8, 9]), box_size=box, time=0.5)
    # shuffled order, particle 9 gone, particle 11 new
    b = ParticleData(np.array([[6, 5, 5], [0.5, 1, 1], [3, 3, 3]]), {"rho": np.array([4.0, 5, 6])},
                     ids=np.array([8, 7, 11]), box_size=box, time=1.0)
    series = TimeSeries([b, a])  # sorted by time
    assert series.times == [0.5, 1.0]
    mid = series.at(0.5)
    order = np.argsort(mid.ids)
    np.testing.assert_array_equal(mid.ids[order], [7, 8])
    pos = mid.positions[order]
    np.testing.assert_allclose(pos[0], [0.0, 1, 1], atol=1e-6)  # 9.5 -> 10.5 (= 0.5): halfway is 10 = 0
    np.testing.assert_allclose(pos[1], [5.5, 5, 5])
    np.testing.assert_allclose(mid.fields["rho"][order], [3.0, 3.0])
    assert mid.time == pytest.approx(0.75)
    assert series.at(0) is a and series.at(1) is b


def test_particle_layer_colour_mapping():
    rng = np.random.default_rng(1)
    data = ParticleData(rng.random((1000, 3)), {"density": 10 ** rng.uniform(0, 4, 1000)})
    layer = ParticleLayer(data, field="density", scale="log", clim=(1, 1e4))
    np.testing.assert_allclose(layer.normalize([1, 100, 1e4, 1e6]), [0, 0.5, 1, 1])
    with pytest.raises(ValueError):
        ParticleLayer(data, field="temperature")
    layer.clim = None
    lo, hi = layer.color_range()
    assert 1 <= lo < hi <= 1e4


def test_image_stretches_and_interval():
    x = np.linspace(0, 1, 5)
    np.testing.assert_allclose(stretch(x, 0, 1, "linear"), x, atol=1e-6)
    for kind in ("sqrt", "log", "asinh"):
        y = stretch(x, 0, 1, kind)
        assert y[0] == 0 and y[-1] == pytest.approx(1) and np.all(np.diff(y) > 0)
        assert y[1] > x[1]  # these lift the faint end
    img = np.random.default_rng(0).normal(100, 5, (64, 64))
    img[30:34, 30:34] = 5000
    layer = ImageLayer(img, stretch="linear", interval="zscale")
    lo, hi = layer.limits()
    assert 80 < lo < 100 < hi < 130  # zscale ignores the bright star
    disp = layer.display()
    assert disp.dtype == np.float32 and disp.min() >= 0 and disp.max() <= 1
    assert layer.display(2).shape == (32, 32)


def test_volume_layer_downsamples_and_reads_fits(real_data):
    vol = VolumeLayer(np.random.default_rng(0).random((40, 30, 20)))
    grid, factor = vol.grid_for(16)
    assert factor == 3 and grid.shape == (13, 10, 6)
    cube = VolumeLayer.from_fits(real_data / "cubes" / "example_cube.fits", method="mip")
    assert cube.data.ndim == 3 and np.isfinite(cube.data).all()
    assert cube.wcs is not None


def test_scene_default_camera_for_images_is_2d():
    scene = Scene([ImageLayer(np.zeros((100, 200)))])
    assert scene.camera.kind == "panzoom"
    assert scene.camera.center == (100.0, 50.0)


def test_view_without_a_display_says_so(monkeypatch, capsys):
    from lenghu.cli import main

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["view", "sample_data/cosmic_web/snapshot_000.hdf5"]) == 1
    assert "no display" in capsys.readouterr().err


def test_cli_help_lists_render_and_view_without_gl():
    code = ("import sys; from lenghu.cli import build_parser; p = build_parser(); "
            "sys.exit(1 if [m for m in sys.modules if m.split('.')[0] in ('vispy', 'OpenGL')] else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    from lenghu.cli import build_parser

    text = build_parser().format_help()
    assert "render" in text and "view" in text
