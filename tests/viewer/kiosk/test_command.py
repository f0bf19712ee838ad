"""``lenghu kiosk`` on the command line: --check, errors with line numbers, a rehearsal to MP4."""

from __future__ import annotations

import subprocess
import sys

from tests.viewer.kiosk.conftest import REPO, make_show


def lenghu(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "lenghu.cli", "kiosk", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def test_check_reports_the_line_and_field_of_an_error(tmp_path):
    show = make_show(tmp_path, web=False, images=1)
    text = show.read_text().replace("duration = 30.0", "duration = 0")
    show.write_text(text)
    proc = lenghu(show, "--check")
    line = next(i + 1 for i, s in enumerate(text.splitlines()) if s.startswith("duration = 0"))
    assert proc.returncode == 1
    assert f"{show}:{line}: scene[0].duration: must be > 0 s" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rehearsal_to_mp4_with_events(tmp_path):
    import imageio.v2 as imageio

    show = make_show(tmp_path, web=False, images=2, durations=[1.0, 1.0])
    events = tmp_path / "e.jsonl"
    events.write_text('{"t": 0.4, "type": "button", "name": "language"}\n')
    proc = lenghu(show, "--rehearse", "--out", tmp_path / "r", "--format", "mp4", "--fps", "5", "--size", "161x90",
                  "--events", events)
    assert proc.returncode == 0, proc.stderr
    movie = tmp_path / "r" / "rehearsal.mp4"
    reader = imageio.get_reader(str(movie))
    frames = [f for f in reader]
    # every scene once (2 s) or 2 s past the last event (2.4 s), at 5 frames/s; H.264 needs even sizes
    assert len(frames) == 12 and frames[0].shape == (90, 162, 3)
    assert not list((tmp_path / "r").glob(".*part*"))  # no half-written leftovers
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0.4, "type": "button", "name": "language"}\n{"t": 1, "type": "swipe"}\n')
    proc = lenghu(show, "--rehearse", "--out", tmp_path / "r2", "--events", bad)
    assert proc.returncode == 1 and f"{bad}:2: unknown type 'swipe'" in proc.stderr
