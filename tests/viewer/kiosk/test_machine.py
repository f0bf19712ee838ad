"""The input state machine, driven by scripted events on a fake clock (no GL, no data)."""

from __future__ import annotations

import pytest

from lenghu.viewer.app.kiosk import machine as m
from lenghu.viewer.app.kiosk.show import Chord

SIZE = (1280, 720)


def make(idle=30.0, durations=(20.0, 10.0, 15.0), **kw) -> m.KioskMachine:
    return m.KioskMachine(list(durations), SIZE, idle, Chord.parse("ctrl+alt+shift+k"), **kw)


def kinds(requests, cls):
    return [r for r in requests if isinstance(r, cls)]


def tap(k, t, x, y):
    return k.handle(m.PointerDown(t, x, y)) + k.handle(m.PointerUp(t + 0.1, x, y))


def test_drag_orbits_the_camera_in_proportion():
    k = make()
    out = k.handle(m.PointerDown(1.0, 500, 300))
    assert kinds(out, m.Attract) == [m.Attract(False)]  # a touch ends attract mode
    orbit = []
    for i in range(1, 11):
        orbit += kinds(k.handle(m.PointerMove(1.0 + i * 0.05, 500 + 20 * i, 300 - 5 * i)), m.Orbit)
    up = k.handle(m.PointerUp(1.6, 700, 250))
    assert sum(o.d_azimuth for o in orbit) == pytest.approx(-0.3 * 200)
    assert sum(o.d_elevation for o in orbit) == pytest.approx(0.3 * -50)
    assert m.Interaction("drag") in up and not kinds(up, m.Pick)


def test_pinch_and_wheel_zoom():
    k = make()
    k.handle(m.PointerDown(1.0, 600, 360, 0))
    k.handle(m.PointerDown(1.0, 680, 360, 1))
    zooms = []
    zooms += kinds(k.handle(m.PointerMove(1.1, 560, 360, 0)), m.Zoom)
    zooms += kinds(k.handle(m.PointerMove(1.1, 720, 360, 1)), m.Zoom)
    total = 1.0
    for z in zooms:
        total *= z.factor
    assert total == pytest.approx(160 / 80)  # fingers twice as far apart: twice as close
    out = k.handle(m.PointerUp(1.2, 560, 360, 0)) + k.handle(m.PointerUp(1.2, 720, 360, 1))
    assert not kinds(out, m.Pick) and not kinds(out, m.GoTo)  # a pinch is never a tap
    assert kinds(k.handle(m.Wheel(2.0, 10, 10, 2)), m.Zoom)[0].factor == pytest.approx(1.15**2)
    assert kinds(k.handle(m.Pinch(2.5, 0.5)), m.Zoom)[0].factor == 0.5


def test_buttons_change_scene_and_language():
    k = make()
    b = k.buttons
    assert all(r.w >= 96 and r.h >= 96 * 0.7 for r in b.values())  # large enough for a finger
    out = tap(k, 1.0, *b["next"].center)
    assert kinds(out, m.GoTo) == [m.GoTo(1, "next")] and k.state.scene == 1
    tap(k, 2.0, *b["next"].center)
    tap(k, 3.0, *b["next"].center)
    assert k.state.scene == 0  # wraps round
    tap(k, 4.0, *b["previous"].center)
    assert k.state.scene == 2
    out = tap(k, 5.0, *b["language"].center)
    assert kinds(out, m.SetLanguage) == [m.SetLanguage("en")] and k.state.language == "en"
    tap(k, 6.0, *b["language"].center)
    assert k.state.language == "zh"
    assert m.Interaction("button") in out


def test_tap_elsewhere_picks_and_a_slow_press_does_not():
    k = make()
    out = tap(k, 1.0, 640, 300)
    assert kinds(out, m.Pick) == [m.Pick(640, 300)] and m.Interaction("tap") in out
    k.handle(m.PointerDown(2.0, 640, 300))
    assert not kinds(k.handle(m.PointerUp(3.5, 640, 300)), m.Pick)  # held 1.5 s: not a tap


def test_attract_starts_after_idle_and_stops_at_a_touch():
    k = make(idle=30.0, durations=(20.0, 10.0))
    assert k.state.attract  # a kiosk starts in attract mode
    tap(k, 1.0, *k.buttons["language"].center)
    assert not k.state.attract and k.state.language == "en"
    assert k.tick(30.9) == []  # 29.8 s idle: not yet
    out = k.tick(31.2)
    assert m.Attract(True) in out and k.state.attract
    assert m.SetLanguage("zh") in out  # the show's language comes back for the next visitor
    # in attract mode the playlist advances by the scenes' durations
    assert kinds(k.tick(31.2 + 19.9), m.GoTo) == []
    assert kinds(k.tick(31.2 + 20.1), m.GoTo) == [m.GoTo(1, "attract")]
    assert kinds(k.tick(31.2 + 30.3), m.GoTo) == [m.GoTo(0, "attract")]
    out = k.handle(m.PointerDown(70.0, 100, 100))
    assert m.Attract(False) in out and not k.state.attract
    k.handle(m.PointerUp(70.05, 100, 100))
    assert kinds(k.tick(95.0), m.GoTo) == []  # no automatic advance while a visitor is there


def test_hover_is_not_input_and_a_held_finger_keeps_attract_off():
    k = make(idle=5.0)
    k.handle(m.PointerDown(0.5, 10, 10))
    k.handle(m.PointerUp(0.6, 10, 10))
    assert k.handle(m.PointerMove(3.0, 50, 50)) == []  # a mouse moving with no button
    assert m.Attract(True) in k.tick(5.7)
    k.handle(m.PointerDown(10.0, 400, 400))
    assert k.tick(30.0) == []  # finger still down
    assert not k.state.attract


@pytest.mark.parametrize("key,mods", [("escape", ()), ("f4", ("alt",)), ("q", ("ctrl",)), ("w", ("ctrl",)),
                                      ("k", ("ctrl", "alt")), ("k", ("ctrl", "alt", "shift", "meta"))])
def test_common_exit_keys_do_nothing(key, mods):
    k = make()
    out = k.handle(m.Key(1.0, key, frozenset(mods)))
    assert not kinds(out, m.Exit) and not k.state.exiting


def test_only_the_admin_chord_exits_and_close_requests_are_refused():
    k = make()
    assert k.handle(m.CloseRequest(1.0)) == [] and not k.state.exiting
    assert k.state.attract  # a close request is not even an interaction
    out = k.handle(m.Key(2.0, "k", frozenset({"shift", "alt", "ctrl"})))
    assert m.Exit() in out and k.state.exiting


def test_keyboard_controls():
    k = make()
    assert kinds(k.handle(m.Key(1.0, "right")), m.GoTo) == [m.GoTo(1, "next")]
    assert kinds(k.handle(m.Key(1.1, "left")), m.GoTo) == [m.GoTo(0, "previous")]
    assert kinds(k.handle(m.Key(1.2, "l")), m.SetLanguage) == [m.SetLanguage("en")]
    assert kinds(k.handle(m.Key(1.3, "up")), m.Orbit) == [m.Orbit(0.0, 5.0)]
    assert kinds(k.handle(m.Key(1.4, "+")), m.Zoom) == [m.Zoom(1.25)]
    assert m.Attract(True) in k.handle(m.Key(1.5, "space")) and k.state.attract


def test_resize_moves_the_buttons():
    k = make()
    k.resize((640, 360))
    assert k.buttons["next"].x + k.buttons["next"].w <= 640
    assert kinds(tap(k, 1.0, *k.buttons["next"].center), m.GoTo)
