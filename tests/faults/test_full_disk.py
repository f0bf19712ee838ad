"""A full disk under OUT: a clear error naming the folder, no partial file, and the run resumes once
space is freed.

The test mounts a real small ``tmpfs`` as the output folder (the process is root here, or has
CAP_SYS_ADMIN) and frees space by remounting it larger, which keeps its content. Where mounting
is not permitted it falls back to a per-process file-size limit (RLIMIT_FSIZE: writes past the
limit fail with EFBIG) and says so in the reliability table (``method``). ``LENGHU_FAULTS_DISK=rlimit``
forces the fallback.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import run_reduce
from .helpers import assert_three_outcomes, partial_files, reduce_cli

pytestmark = pytest.mark.slow

MB = 1 << 20


def _can_mount(folder: Path) -> bool:
    if os.environ.get("LENGHU_FAULTS_DISK") == "rlimit":
        return False
    probe = folder / "probe"
    probe.mkdir(parents=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                        capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return ok


@contextlib.contextmanager
def small_filesystem(folder: Path, size_mb: int):
    """A tmpfs of ``size_mb`` mounted on ``folder``; yields a function that resizes it."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)], check=True)

    def resize(new_mb: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_mb}m", str(folder)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _limit_file_size(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


#: 8 MB: the registry and the first masters' combined arrays fit, the rest does not (the night's masters,
#: their combined arrays and its calibrated images need more).
SMALL_MB = 8


@pytest.mark.reliability(kind="fault", case="the output folder's disk fills up during the run (masters stage)",
                         promise="exit 1 with an error naming the output folder; no partial file; after space "
                                 "is freed the rerun gives products identical to an undisturbed run")
def test_a_full_disk_is_reported_and_the_run_resumes_when_space_is_freed(night, raw_before, reference, tmp_path,
                                                                          record_property, fitsverify):
    disk = tmp_path / "disk"
    out = disk / "out"
    if _can_mount(tmp_path):
        record_property("method", f"tmpfs of {SMALL_MB} MB, remounted at 200 MB")
        with small_filesystem(disk, SMALL_MB) as resize:
            proc = reduce_cli(night, out, "--instrument", "wfst", "--workers", "2")
            stdout, stderr = proc.communicate(timeout=300)
            message = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            assert proc.returncode == 1, stderr
            assert str(out) in message and "no space left" in message, stderr
            assert "Traceback" not in stderr
            assert not partial_files(out), partial_files(out)
            resize(200)
            summary = run_reduce(night, out)
            assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
            assert not (out / "work").exists()
            assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                                  observed=f"first run: exit 1, '{message[:120]}...'; rerun with space: exit 0")
    else:
        record_property("method", "RLIMIT_FSIZE of 1 MB per file on the run's processes (mount not permitted)")
        proc = reduce_cli(night, out, "--instrument", "wfst", "--workers", "2", preexec_fn=_limit_file_size(MB))
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode in (1, 3), stderr
        assert "File too large" in stderr or "File too large" in stdout
        assert "Traceback" not in stderr
        assert not partial_files(out), partial_files(out)
        summary = run_reduce(night, out)
        assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
        assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                              observed=f"first run: exit {proc.returncode}; rerun without the limit: exit 0")


_COMBINE_ON_A_FULL_DISK = """
import errno, sys
import numpy as np
from lenghu.calib.combine import CombineConfig
from lenghu.pipelines import tasks

full = sys.argv[2]  # (argv[1]: a folder with room, unused since the inputs are made in memory)
strips = [np.full((512, 512), 100.0 + i, dtype=np.float32) for i in range(3)]
try:
    outputs = tasks.create_combine_outputs(full + "/combined", (512, 512))
    tasks.combine_strips(strips, [1.0, 1.0, 1.0], 0, CombineConfig(), outputs)
except OSError as exc:
    print("ENOSPC" if exc.errno == errno.ENOSPC else f"other OSError: {exc}")
    sys.exit(0)
print("no error")
"""


@pytest.mark.reliability(kind="fault", case="the disk fills up while a master's combine fills its output "
                                            "arrays (1 MB tmpfs; the combine's tasks run in a child process)",
                         promise="an OSError (ENOSPC) that the run reports with the folder; no crash")
def test_a_disk_filling_during_the_combine_gives_a_clear_error(tmp_path, record_property):
    if not _can_mount(tmp_path):
        pytest.fail("needs a small tmpfs (mount not permitted here)")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    disk = tmp_path / "disk"
    with small_filesystem(disk, 1):
        proc = subprocess.run([sys.executable, "-c", _COMBINE_ON_A_FULL_DISK, str(scratch), str(disk)],
                              capture_output=True, text=True, timeout=120)
    record_property("method", "tmpfs of 1 MB; 2.6 MB of combine outputs")
    record_property("observed", "killed by SIGBUS" if proc.returncode == -signal.SIGBUS
                    else f"exit {proc.returncode}: {proc.stdout.strip()[:100]}")
    assert proc.returncode == 0, f"the combine crashed (status {proc.returncode})"
    assert proc.stdout.strip() == "ENOSPC"
