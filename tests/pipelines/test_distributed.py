"""``lenghu reduce --scheduler`` against a real scheduler and worker processes on localhost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

pytestmark = pytest.mark.slow


class LocalDaskProcesses:
    """A ``dask scheduler`` and ``dask worker`` processes bound to 127.0.0.1."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder = folder
        self.scheduler_file = folder / "scheduler.json"
        env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(self.scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self._wait(lambda: self.scheduler_file.exists(), "scheduler")
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--host", "127.0.0.1",
                 "--nthreads", "1", "--no-nanny", "--memory-limit", "2GB", "--no-dashboard"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=folder)
            for _ in range(workers)
        ]
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(workers, timeout=60)

    @staticmethod
    def _wait(condition, what, timeout=60.0):
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"{what} did not start")
            time.sleep(0.1)

    def close(self):
        for proc in self.workers + [self.scheduler]:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers + [self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def dask_processes(tmp_path):
    procs = LocalDaskProcesses(tmp_path)
    yield procs
    procs.close()


def _reduce_cli(raw: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lenghu", "reduce", str(raw), "--out", str(out), "--quiet",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _planes(path: Path) -> dict[str, bytes]:
    with fits.open(path) as hdul:
        return {name: np.ascontiguousarray(hdul[name].data).tobytes() for name in ("SCI", "VAR", "MASK")}


def test_reduce_on_an_existing_scheduler(real_data, tmp_path, dask_processes):
    out = tmp_path / "out"
    proc = _reduce_cli(real_data / "ccd" / "kast_blue", out, "--instrument", "kast_blue",
                       "--scheduler", dask_processes.address)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "calibrated images: 2" in stdout
    assert (out / "calibrated" / "b27_KAST_BLUE.fits").is_file()
