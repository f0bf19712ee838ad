"""The desktop window under Xvfb (skipped where PySide6 or xvfb-run is not installed: `pip install PySide6`)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest

# PySide6 (viewer extra) and xvfb-run are installed by `make setup`: missing, the test fails rather than skips.
assert importlib.util.find_spec("PySide6") is not None and shutil.which("xvfb-run"), \
    "run `make setup` (installs PySide6 with the viewer extra and Debian's xvfb)"

CHILD = """
import time
from lenghu.viewer.app.scenes import build_scene, SceneSpec
from lenghu.viewer.app.window import ViewerWindow
from vispy import app
scene, steps = build_scene(["sample_data/cosmic_web/snapshot_000.hdf5", "sample_data/cosmic_web/snapshot_001.hdf5"],
                           SceneSpec(budget=50000))
w = ViewerWindow(scene, steps, size=(320, 240), backend="pyside6")
a = app.use_app()
w.playing = True
start = time.time()
while time.time() - start < 2.0:
    a.process_events()
scene.camera.orbit(40)
img = w.renderer.render()
print("RESULT", w.panel is not None, len(w.renderer.frame_times), round(w.time, 3), (img.max(-1) > 8).mean())
w.close()
"""


def test_window_draws_plays_and_has_a_panel():
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1024x768x24", sys.executable, "-c", CHILD],
                          capture_output=True, text=True, timeout=120)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT")), None)
    assert line is not None, proc.stdout + proc.stderr
    _, panel, frames, t, lit = line.split()
    assert panel == "True" and int(frames) >= 2 and float(t) > 0 and float(lit) > 0.05
