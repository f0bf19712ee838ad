"""The console entry point ends the process quickly without losing anything."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from lenghu.cli import exit_without_teardown
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
print("x" * 100_000, end="")  # more than a pipe's buffer: must be flushed whole
exit_without_teardown(3)
"""


def _run(tmp_path, mode):
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True, text=True,
                          timeout=60)


def test_exit_handlers_run_output_is_flushed_and_the_status_kept(tmp_path):
    proc = _run(tmp_path, "plain")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "x" * 100_000
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_running_thread_is_waited_for(tmp_path):
    proc = _run(tmp_path, "thread")
    assert proc.returncode == 3, proc.stderr
    assert (tmp_path / "thread").read_text() == "done"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_python_m_lenghu_reports_its_status(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lenghu", "info", str(tmp_path / "missing.fits")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "missing.fits" in proc.stderr and "Traceback" not in proc.stderr
