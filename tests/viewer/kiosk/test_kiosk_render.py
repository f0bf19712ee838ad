"""The kiosk headless: scripted events drive it and the rendered frames are looked at."""

from __future__ import annotations

import csv
import gc

import numpy as np
import pytest

from lenghu.viewer.app.headless import use_headless_gl

BACKEND = use_headless_gl()  # Mesa EGL/OSMesa come with `make setup`: missing, this module fails loudly

from lenghu.viewer.app.kiosk import machine as m  # noqa: E402
from lenghu.viewer.app.kiosk.controller import KioskController  # noqa: E402
from lenghu.viewer.app.kiosk.events_file import parse_events  # noqa: E402
from lenghu.viewer.app.kiosk.fonts import NO_CJK_FACE, cjk_face  # noqa: E402
from lenghu.viewer.app.kiosk.rehearse import rehearse  # noqa: E402
from lenghu.viewer.app.kiosk.show import load_show  # noqa: E402
from lenghu.viewer.app.kiosk.view import KioskView  # noqa: E402
from lenghu.viewer.model import project  # noqa: E402
from tests.viewer.kiosk.conftest import make_show  # noqa: E402

SIZE = (320, 180)


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("show")
    show = load_show(make_show(folder, idle=5.0, images=1))
    controller = KioskController(show, SIZE)
    view = KioskView(controller, wait_for_data=True)
    yield controller, view
    view.close()


def fresh(controller, t):
    """Start from the first scene, attract mode off (a visitor has touched it)."""
    c = controller
    c.machine.state = m.KioskState(scene=0, language="zh", attract=False, scene_started=t, last_input=t, now=t)
    c.apply([m.GoTo(0, "test")])
    c.advance(t)


def diff(a, b):
    return np.abs(a.astype(int) - b.astype(int)).max(axis=-1)


def test_drag_rotates_and_pinch_zooms_the_picture(kiosk):
    c, view = kiosk
    fresh(c, 100.0)
    before_az, before_d = c.scene.camera.azimuth, c.scene.camera.distance
    img0 = view.render()
    for ev in parse_events(['{"t": 100.1, "type": "drag", "from": [160, 90], "to": [220, 90], "seconds": 0.5}']):
        c.handle(ev)
    assert c.scene.camera.azimuth == pytest.approx(before_az - 0.3 * 60)
    img1 = view.render()
    assert (diff(img0, img1) > 30).mean() > 0.05  # the web turned
    for ev in parse_events(['{"t": 101, "type": "pinch", "center": [160, 90], "from": 40, "to": 80}']):
        c.handle(ev)
    assert c.scene.camera.distance == pytest.approx(before_d / 2)
    assert (diff(img1, view.render()) > 30).mean() > 0.05


def test_buttons_change_scene_and_language_on_screen(kiosk):
    c, view = kiosk
    fresh(c, 200.0)
    web = view.render()
    x, y = c.machine.buttons["next"].center
    c.handle(m.PointerDown(200.1, x, y))
    c.handle(m.PointerUp(200.2, x, y))
    shown = [layer for layer in c.scene.layers if layer.visible]
    assert c.state.scene == 1 and [type(layer).__name__ for layer in shown] == ["ImageLayer"]
    image = view.render()
    assert (diff(web, image)[30:140, 100:220] > 30).mean() > 0.1  # the picture in the middle changed
    caption_rows = slice(SIZE[1] - 40, SIZE[1])
    zh = view.render()[caption_rows]
    x, y = c.machine.buttons["language"].center
    c.handle(m.PointerDown(200.3, x, y))
    c.handle(m.PointerUp(200.4, x, y))
    assert c.state.language == "en" and c.overlay_state().caption == "Image 0"
    en = view.render()[caption_rows]
    assert (diff(zh, en) > 60).sum() > 30  # the caption's text changed


def test_attract_mode_starts_after_idle_and_stops_at_a_touch(kiosk):
    c, view = kiosk
    fresh(c, 300.0)
    hint_rows = slice(int(0.14 * SIZE[1]) - 12, int(0.14 * SIZE[1]) + 12)
    quiet = view.render()
    c.advance(304.9)
    assert not c.state.attract
    c.advance(305.1)  # idle_seconds = 5
    assert c.state.attract and c.overlay_state().hint
    attract = view.render()
    assert (diff(quiet, attract)[hint_rows, 80:240] > 60).sum() > 20  # the "touch to explore" hint appears
    cam = c.scene.camera.to_dict()
    c.advance(308.0)
    assert c.scene.camera.to_dict() != cam  # the tour moves the camera by itself
    c.handle(m.PointerDown(308.1, 160, 90))
    assert not c.state.attract and not c.overlay_state().hint
    c.handle(m.PointerUp(308.2, 160, 90))
    cam = c.scene.camera.to_dict()
    c.advance(309.0)
    assert c.scene.camera.to_dict() == cam  # no more touring
    assert (diff(attract, view.render())[hint_rows, 80:240] > 60).sum() > 20  # the hint is gone


def test_a_tap_on_a_structure_shows_its_label_where_tapped(kiosk):
    c, view = kiosk
    fresh(c, 400.0)
    c.scene.camera.zoom(1.3)
    s = c.current.structures[0]
    x, y = project([s.center], c.scene.camera, SIZE)[0]
    assert 40 < x < 280 and 20 < y < 160
    before = view.render()
    c.handle(m.PointerDown(400.1, x, y))
    c.handle(m.PointerUp(400.2, x, y))
    assert c.label is not None and c.label.structure == 0
    text = c.overlay_state().label[0]
    assert text.startswith("结构 1") and "Mpc/h" in text and "太阳质量" in text
    after = view.render()
    changed = diff(before, after) > 40
    ix, iy = int(x), int(y)
    near = changed[max(iy - 12, 0):iy + 12, max(ix - 8, 0):min(ix + 60, SIZE[0])].mean()
    far = changed[:, :max(ix - 40, 1)].mean() if ix > 60 else changed[:, ix + 200:].mean()
    assert near > 0.2 and near > 4 * far  # the label appears at the tap, not elsewhere
    c.advance(400.2 + c.show.label_seconds + 0.1)
    assert c.label is None  # and goes away by itself


def test_a_tap_on_an_image_names_the_point_where_tapped(kiosk):
    from lenghu.viewer.model import plane_point

    c, view = kiosk
    c.machine.state = m.KioskState(scene=1, language="zh", attract=False, scene_started=450.0, last_input=450.0,
                                   now=450.0)
    c.apply([m.GoTo(1, "test")])  # the small FITS image (no WCS)
    c.advance(450.1)
    assert c.scene.camera.kind == "panzoom"
    layer = c.current.layers[-1]
    x, y = 200.0, 70.0
    wx, wy = plane_point(c.scene.camera, SIZE, x, y)
    i, j = int(np.floor(wx)), int(np.floor(wy))
    assert 0 <= i < layer.shape[1] and 0 <= j < layer.shape[0]
    before = view.render()
    c.handle(m.PointerDown(450.2, x, y))
    c.handle(m.PointerUp(450.3, x, y))
    assert c.label is not None and c.label.structure == -1
    assert c.overlay_state().label[0] == f"像素 ({i}, {j})：亮度 {layer.data[j, i]:.4g}"
    changed = diff(before, view.render()) > 40
    assert changed[50:90, 190:260].mean() > 0.1 and changed[:, :120].mean() < 0.01  # drawn at the tap
    wx, wy = plane_point(c.scene.camera, SIZE, 2, 2)  # a corner: the scene is wider than the square image
    assert not (0 <= wx < layer.shape[1] and 0 <= wy < layer.shape[0])
    c.handle(m.PointerDown(451.0, 2, 2))
    c.handle(m.PointerUp(451.1, 2, 2))
    assert c.label is None  # off the image: no label (and the previous one is gone)


def test_tap_on_empty_space_shows_no_label(kiosk):
    c, view = kiosk
    fresh(c, 500.0)
    c.scene.camera.zoom(0.2)  # far away: the whole web is small in the middle
    c.handle(m.PointerDown(500.1, 5, 90))
    c.handle(m.PointerUp(500.2, 5, 90))
    assert c.label is None


def test_chinese_captions_render_as_glyphs_not_boxes(kiosk):
    c, _ = kiosk
    face = cjk_face()
    assert face is not None, "no CJK font: run `make setup` (fonts-wqy-microhei)"
    import freetype
    from vispy.ext.fontconfig import find_font

    assert freetype.Face(find_font(face, False, False)).get_char_index(ord("宇")) > 0  # fontconfig finds a file with 宇
    fresh(c, 600.0)
    crops = {}
    for name in (face, NO_CJK_FACE):
        view = KioskView(c, wait_for_data=True, face=name)
        try:
            crops[name] = view.render()[SIZE[1] - 40:, 60:260].max(axis=-1).astype(int)
        finally:
            view.close()
    glyphs, tofu = crops[face], crops[NO_CJK_FACE]
    assert c.overlay_state().caption == "宇宙网"
    assert (glyphs > 128).sum() > 60  # not empty: strokes are drawn
    assert (np.abs(glyphs - tofu) > 100).sum() > 60  # and they are not what a font without CJK draws


def test_rehearsal_with_scripted_events(tmp_path):
    show = load_show(make_show(tmp_path, idle=3.0, web=False, images=2, durations=[4.0, 4.0]))
    events = tmp_path / "events.jsonl"
    events.write_text("# a visitor\n"
                      '{"t": 1.0, "type": "button", "name": "next"}\n'
                      '{"t": 1.5, "type": "button", "name": "language"}\n'
                      '{"t": 2.0, "type": "key", "key": "escape"}\n'
                      '{"t": 2.2, "type": "close"}\n', encoding="utf-8")
    from lenghu.viewer.app.kiosk.events_file import load_events

    result = rehearse(show, tmp_path / "out", load_events(events), fps=5, seconds=10, size=(160, 90))
    rows = list(csv.DictReader(open(result.timeline, encoding="utf-8")))
    assert result.frames == 50 and len(list((tmp_path / "out").glob("frame_*.png"))) == 50
    at = {round(float(r["t"]), 1): r for r in rows}
    assert at[0.0]["scene"] == "0" and at[0.0]["attract"] == "1"
    assert at[1.2]["scene"] == "1" and at[1.2]["attract"] == "0"  # the next button
    assert at[1.6]["language"] == "en" and at[1.6]["caption"] == "Image 1"
    assert at[4.4]["attract"] == "0"  # 2.9 s after the last touch (Esc counts as one; the close does not)
    assert at[5.2]["attract"] == "1" and at[5.2]["language"] == "zh"  # 3 s idle: attract, in Chinese again
    assert at[8.8]["scene"] == "1" and at[9.2]["scene"] == "0"  # attract began at 5.0: the playlist moves on at 9.0
    import imageio.v2 as imageio

    a, b = (imageio.imread(tmp_path / "out" / f"frame_{i:06d}.png") for i in (0, 7))
    assert a.shape == (90, 160, 3) and (diff(a, b) > 30).mean() > 0.05


def test_soak_random_events_and_frames_memory_bounded(tmp_path):
    """10,000 random input events and 1,000 frames: resident memory grows by less than 50 MB."""
    import psutil

    show = load_show(make_show(tmp_path, idle=2.0, images=2, durations=[3.0, 2.0, 2.0],
                               extra_show="label_seconds = 1"))
    c = KioskController(show, (160, 90))
    c.quality.min_budget = c.quality.budget = 5000
    c.quality.max_budget = 20_000
    c.set_budget(5000)
    view = KioskView(c)
    rng = np.random.default_rng(7)
    proc = psutil.Process()
    t = 0.0
    kinds = ["down", "move", "up", "wheel", "key", "close", "pinch"]
    keys = ["left", "right", "l", "up", "down", "+", "-", "space", "escape", "q", "f4", "a"]
    try:
        baseline = None
        for frame in range(1000):
            for _ in range(10):
                t += 0.01
                k = kinds[rng.integers(len(kinds))]
                x, y = float(rng.uniform(0, 160)), float(rng.uniform(0, 90))
                pid = int(rng.integers(2))
                ev = {"down": lambda: m.PointerDown(t, x, y, pid), "move": lambda: m.PointerMove(t, x, y, pid),
                      "up": lambda: m.PointerUp(t, x, y, pid), "wheel": lambda: m.Wheel(t, x, y, rng.normal()),
                      "key": lambda: m.Key(t, keys[rng.integers(len(keys))],
                                           frozenset(["ctrl"]) if rng.random() < 0.2 else frozenset()),
                      "close": lambda: m.CloseRequest(t), "pinch": lambda: m.Pinch(t, float(rng.uniform(0.8, 1.25)))
                      }[k]()
                c.handle(ev)
            if frame % 50 == 25:
                t += 3.0  # idle stretches: attract mode comes and goes
            c.advance(t, 0.05)
            view.render()
            if frame == 100:
                gc.collect()
                baseline = proc.memory_info().rss
        gc.collect()
        growth = proc.memory_info().rss - baseline
        assert not c.exit_requested
        assert growth < 50 * 2**20, f"memory grew by {growth / 2**20:.1f} MB"
        assert view.frames == 1000
    finally:
        view.close()
