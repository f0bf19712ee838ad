"""Fuzzing the kiosk's two untrusted inputs: show files and what visitors do.

A show file is written by exhibit staff, maybe edited on site; a visitor presses
whatever keys a keyboard has. Show files must load or fail with a ShowError that
names the file and a line, and must never reach data outside the show's folder
unless the file says ``allow_outside = true``; no sequence of visitor input leaves
the kiosk except the admin chord.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenghu.viewer.app.kiosk import machine as m
from lenghu.viewer.app.kiosk.show import Chord, ShowConfig, ShowError, load_show

from ..faults.reliability import counted
from .guard import only_typed_errors
from .mutate import mutate_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "shows" / "lenghu_sample"
#: The example show without ``allow_outside`` and with its cosmic-web scene pointed at a file in
#: the folder, so that a mutation that escapes the folder is a real escape, not the example's own.
BASE = (EXAMPLE / "show.toml").read_text(encoding="utf-8").replace("allow_outside = true", "allow_outside = false")
BASE = BASE.replace('data = ["../../sample_data/cosmic_web/snapshot_000.hdf5",\n'
                    '        "../../sample_data/cosmic_web/snapshot_001.hdf5",\n'
                    '        "../../sample_data/cosmic_web/snapshot_002.hdf5"]', 'data = "wfst_field.fits"')
assert not [line for line in BASE.splitlines() if "../../sample_data" in line.split("#")[0]], \
    "the example show changed: update the fuzzer's base file"

_values = st.one_of(
    st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(repr),
    st.text(max_size=24).map(lambda t: '"' + t.replace("\\", "").replace('"', "").replace("\n", "") + '"'),
    st.sampled_from(['"../../etc/passwd"', '"/etc/passwd"', '"../show.toml"', '"wfst_field.fits/../../x"',
                     '["wfst_field.fits", "/etc/hostname"]', '"disk_cube.fits"', '"."', '""', "[]", "{}",
                     "true", "false", '{ zh = "你好", en = "hi" }', '{ zh = 1 }', '"ctrl+q"', '"esc"',
                     '"ctrl+alt+shift+k"', "[0, 0]", "[-1, 99999999]", "inf", "nan", '"auto"', '"file"']))


@st.composite
def mutated_show(draw) -> str:
    return mutate_lines(draw, BASE.splitlines(), _values)


@pytest.fixture(scope="module")
def show_folder(tmp_path_factory) -> Path:
    """A copy of the example show's data files (the fuzzer writes show files next to them)."""
    folder = tmp_path_factory.mktemp("show")
    for name in ("wfst_field.fits", "disk_cube.fits"):
        shutil.copy(EXAMPLE / name, folder / name)
    return folder


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def test_the_base_show_loads(show_folder):
    """The fuzzer starts from a valid file (else every mutation would only test the first error)."""
    (show_folder / "show.toml").write_text(BASE, encoding="utf-8")
    show = load_show(show_folder / "show.toml")
    assert len(show.scenes) == 3 and not show.allow_outside


@pytest.mark.reliability(kind="fuzz", case="kiosk show files: the example show with lines deleted, duplicated, "
                                           "swapped, garbled, truncated or given hostile values (paths outside "
                                           "the folder, bad chords, NaN, huge numbers)",
                         promise="a show whose every path stays in its folder, or a ShowError naming the "
                                 "file; nothing else")
@given(text=mutated_show())
@counted
def test_mutated_show_files(text, show_folder):
    path = show_folder / "show.toml"
    path.write_text(text, encoding="utf-8")
    result = only_typed_errors(load_show, path)
    if isinstance(result, ShowConfig):
        paths = [p for scene in result.scenes for p in scene.data]
        paths += [scene.tour_file for scene in result.scenes if scene.tour_file is not None]
        if result.usage_log is not None:
            paths.append(result.usage_log)
        if not result.allow_outside:
            assert all(_inside(p, show_folder) for p in paths), paths
        assert result.scenes and all(s.duration > 0 for s in result.scenes)
        assert result.admin_chord.modifiers and result.admin_chord.key
    else:
        assert isinstance(result, ShowError), result
        assert str(path) in str(result), result


@pytest.mark.reliability(kind="fuzz", case="kiosk show files: random bytes and random text",
                         promise="a ShowError naming the file; nothing else")
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "replace"))))
@counted
def test_random_show_files(data, show_folder):
    path = show_folder / "random.toml"
    path.write_bytes(data)
    result = only_typed_errors(load_show, path)
    assert isinstance(result, ShowError) and str(path) in str(result), result


_KEYS = st.sampled_from(["escape", "f4", "q", "w", "tab", "f11", "delete", "backspace", "k", "x", "c", "z",
                         "left", "right", "space", "l", "return", "home", "end", "super", "menu", "f1"])
_MODS = st.frozensets(st.sampled_from(["ctrl", "alt", "shift", "meta"]), max_size=4)
_CHORD = Chord.parse("ctrl+alt+shift+k")
SIZE = (1280, 720)
_xy = st.tuples(st.floats(-50, SIZE[0] + 50), st.floats(-50, SIZE[1] + 50))


@st.composite
def visitor_events(draw) -> list:
    """A visitor's random session: keys with any modifiers, taps, drags, wheels, pinches, close requests."""
    events, t = [], 0.0
    for _ in range(draw(st.integers(1, 60))):
        t += draw(st.floats(0.0, 5.0))
        kind = draw(st.sampled_from(["key", "down", "move", "up", "wheel", "pinch", "close"]))
        if kind == "key":
            key, mods = draw(_KEYS), draw(_MODS)
            if key == _CHORD.key and mods == _CHORD.modifiers:
                mods = mods - {"shift"}  # the admin chord itself is tested below
            events.append(m.Key(t, key, mods))
        elif kind in ("down", "move", "up"):
            x, y = draw(_xy)
            cls = {"down": m.PointerDown, "move": m.PointerMove, "up": m.PointerUp}[kind]
            events.append(cls(t, x, y, draw(st.integers(0, 2))))
        elif kind == "wheel":
            x, y = draw(_xy)
            events.append(m.Wheel(t, x, y, draw(st.floats(-20, 20))))
        elif kind == "pinch":
            events.append(m.Pinch(t, draw(st.floats(0.01, 100))))
        else:
            events.append(m.CloseRequest(t))
    return events


@pytest.mark.reliability(kind="security", case="kiosk input: random sessions of keys with any modifiers "
                                               "(Esc, Alt-F4, Ctrl-Q, Ctrl-W, Super ...), taps, drags, "
                                               "wheels, pinches and window close requests",
                         promise="no way out but the admin chord; the scene and language stay valid")
@given(events=visitor_events())
@counted
def test_no_visitor_input_leaves_the_kiosk(events):
    k = m.KioskMachine([20.0, 10.0, 15.0], SIZE, 30.0, _CHORD)
    for event in events:
        out = k.handle(event) + k.tick(event.t)
        assert not [r for r in out if isinstance(r, m.Exit)], event
        assert 0 <= k.state.scene < 3 and k.state.language in ("zh", "en")
    assert not k.state.exiting
    assert [r for r in k.handle(m.Key(events[-1].t + 1, _CHORD.key, _CHORD.modifiers)) if isinstance(r, m.Exit)]
