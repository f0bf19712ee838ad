"""The Qt kiosk window under Xvfb: close requests and Esc/Alt-F4/Ctrl-Q are refused, a tap works, the chord exits."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

from tests.viewer.kiosk.conftest import REPO, make_show

# PySide6 (viewer extra) and xvfb-run are installed by `make setup`: missing, the test fails rather than skips.
assert importlib.util.find_spec("PySide6") is not None and shutil.which("xvfb-run"), \
    "run `make setup` (installs PySide6 with the viewer extra and Debian's xvfb)"

CHILD = r"""
import sys, time, pathlib
from PySide6.QtCore import Qt, QPoint
from PySide6.QtTest import QTest
from lenghu.viewer.app.kiosk.show import load_show
from lenghu.viewer.app.kiosk.controller import KioskController
from lenghu.viewer.app.kiosk.window import KioskWindow
from vispy import app

show = load_show(sys.argv[1])
beat = pathlib.Path(sys.argv[2])
c = KioskController(show, (320, 180))
w = KioskWindow(c, fullscreen=False, heartbeat=beat)
a = app.use_app()

def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        a.process_events()

spin(1.0)
native = w.canvas.native
print("FRAMES", w.view.frames, beat.exists(), flush=True)
w.shell.close()                                   # the window manager's close (what Alt-F4 asks for)
spin(0.2)
print("CLOSE", w.shell.isVisible(), w.shell.refused, w.exit_code, flush=True)
for key, mods in ((Qt.Key_Escape, Qt.NoModifier), (Qt.Key_Q, Qt.ControlModifier), (Qt.Key_F4, Qt.AltModifier)):
    QTest.keyClick(native, key, mods)
    spin(0.1)
print("KEYS", w.shell.isVisible(), c.exit_requested, w.exit_code, flush=True)
x, y = c.machine.buttons["next"].center
QTest.mouseClick(native, Qt.LeftButton, Qt.NoModifier, QPoint(int(x), int(y)))
spin(0.2)
print("TAP", c.state.scene, c.state.attract, flush=True)
QTest.keyClick(native, Qt.Key_K, Qt.ControlModifier | Qt.AltModifier | Qt.ShiftModifier)
spin(0.3)
print("CHORD", w.timer.running, c.exit_requested, w.exit_code, flush=True)
import os
os._exit(0)  # as `lenghu kiosk` does: PySide6 can abort in the interpreter's teardown
"""


@pytest.mark.reliability(kind="security", case="the kiosk's Qt window under Xvfb: close requests, Esc, Ctrl-Q, Alt-F4",
                         promise="the window stays up; only the show's admin chord exits (status 0)")
def test_kiosk_window_refuses_to_close_and_exits_only_by_the_chord(tmp_path):
    show = make_show(tmp_path, idle=100, web=False, images=2)
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", sys.executable, "-c", CHILD, str(show),
                           str(tmp_path / "beat")], capture_output=True, text=True, timeout=120, cwd=REPO)
    out = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines() if line.split()}
    assert "CHORD" in out, proc.stdout + proc.stderr
    frames, beat = out["FRAMES"]
    assert int(frames) >= 2 and beat == "True"  # it draws and beats
    assert out["CLOSE"] == ["True", "1", "None"]  # the close was refused: still shown
    assert out["KEYS"] == ["True", "False", "None"]  # Esc, Ctrl-Q, Alt-F4: nothing
    assert out["TAP"] == ["1", "False"]  # a click on the big next button
    assert out["CHORD"] == ["False", "True", "0"]  # the admin chord ends the event loop, status 0
