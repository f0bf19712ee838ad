"""``lenghu kiosk --supervise``: a killed (SIGKILL) or frozen (SIGSTOP) kiosk is back within 5 s, on the same scene."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lenghu.viewer.app.kiosk.supervise import Supervisor
from tests.viewer.kiosk.conftest import REPO, make_show


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float, step: float = 0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.reliability(kind="fault", case="SIGKILL and SIGSTOP (hang) of a supervised kiosk",
                         promise="a kiosk is back on the same scene within 5 s")
def test_killed_and_frozen_kiosks_come_back_on_the_same_scene(tmp_path):
    # attract mode from the start: the playlist leaves scene 0 after 1.5 s by itself, so being on
    # scene 1 after a restart shows the position was resumed (a fresh kiosk starts on scene 0)
    show = make_show(tmp_path, idle=1000, web=False, images=2, durations=[1.5, 600])
    work = tmp_path / "work"
    sup = subprocess.Popen([sys.executable, "-m", "lenghu.cli", "kiosk", str(show), "--supervise", "--headless",
                            "--workdir", str(work), "--heartbeat-timeout", "1.5"], cwd=REPO,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file, beat = work / "state.json", work / "heartbeat"
    pids = []
    try:
        first = wait_for(lambda: (s := read_state(state_file)) and s["name"] == "image1" and beat.exists() and s,
                         90)
        assert first, "the supervised kiosk did not reach its second scene"
        pids.append(first["pid"])
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            old = pids[-1]
            os.kill(old, sig)
            t0 = time.time()

            def back():
                s = read_state(state_file)
                try:
                    fresh_beat = beat.stat().st_mtime > t0
                except FileNotFoundError:
                    return None
                return s if s and s["pid"] != old and fresh_beat else None

            state = wait_for(back, 10)
            elapsed = time.time() - t0
            assert state is not None, f"no kiosk back after {sig.name}"
            assert elapsed < 5.0, f"back after {elapsed:.1f} s ({sig.name})"
            assert state["name"] == "image1" and state["scene"] == 1  # resumed, not restarted from scene 0
            assert wait_for(lambda: not alive(old), 5), f"the {sig.name} child was not ended"
            pids.append(state["pid"])
            before = beat.stat().st_mtime
            assert wait_for(lambda: beat.stat().st_mtime > before, 3)  # and it keeps drawing
        log = (work / "supervisor.log").read_text()
        assert "exit status -9" in log and "hung" in log
    finally:
        sup.send_signal(signal.SIGTERM)
        try:
            sup.wait(timeout=20)
        except subprocess.TimeoutExpired:
            sup.kill()
            raise
    assert wait_for(lambda: not any(alive(p) for p in pids), 5)  # stopping the supervisor ends its kiosk


def fake_child(tmp_path: Path, body: str) -> list[str]:
    """A stand-in kiosk: beats on --heartbeat, then runs ``body``."""
    script = tmp_path / "child.py"
    script.write_text(
        "import sys, time, pathlib\n"
        "args = sys.argv[1:]\n"
        "beat = pathlib.Path(args[args.index('--heartbeat') + 1])\n"
        "count = pathlib.Path(beat.parent / 'starts')\n"
        "count.write_text(str(int(count.read_text()) + 1 if count.exists() else 1))\n"
        "n = int(count.read_text())\n"
        + body)
    return [sys.executable, str(script)]


def test_a_clean_exit_stops_the_supervisor_and_a_crash_restarts(tmp_path):
    # the child crashes (status 3) twice, then exits cleanly (the admin chord)
    cmd = fake_child(tmp_path, "beat.touch()\ntime.sleep(0.2)\nsys.exit(3 if n < 3 else 0)\n")
    sup = Supervisor(cmd, tmp_path / "w", heartbeat_timeout=2.0, use_standby=False)
    assert sup.run(max_restarts=10) == 0
    assert sup.restarts == 2 and "exit status 3" in (tmp_path / "w" / "supervisor.log").read_text()


def test_a_child_that_never_draws_is_restarted_after_the_startup_timeout(tmp_path):
    cmd = fake_child(tmp_path, "time.sleep(60)\n")
    sup = Supervisor(cmd, tmp_path / "w", startup_timeout=0.5, use_standby=False)
    t0 = time.monotonic()
    assert sup.run(max_restarts=1) == 1
    assert time.monotonic() - t0 < 10
    assert "no first frame" in (tmp_path / "w" / "supervisor.log").read_text()


def test_a_dead_standby_is_replaced_and_the_active_kiosk_keeps_running(tmp_path):
    body = ("if '--standby' in args:\n    sys.exit(5)\n"
            "end = time.time() + 1.5\n"
            "while time.time() < end:\n    beat.touch()\n    time.sleep(0.05)\n"
            "sys.exit(0)\n")
    sup = Supervisor(fake_child(tmp_path, body), tmp_path / "w", heartbeat_timeout=1.0)
    assert sup.run(max_restarts=0) == 0  # the active one was never restarted
    assert "standby kiosk died (exit status 5)" in (tmp_path / "w" / "supervisor.log").read_text()
