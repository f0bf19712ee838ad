"""Local worker processes end with the driver that forked them."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

from lenghu.pipelines.cluster import dask_client, end_with_parent
from lenghu.pipelines.config import ReduceConfig

LINUX = sys.platform.startswith("linux")

PR_GET_PDEATHSIG = 2


def _death_signal_and_parent():
    value = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return value.value, os.getppid()


def test_forked_local_workers_are_killed_when_the_driver_dies():
    if not LINUX:  # no parent-death signal elsewhere: nothing is set, and the process goes on
        assert end_with_parent(os.getpid()) is False
        return
    execution = ReduceConfig().with_execution(workers=2).execution
    assert execution.start_method == "fork"
    with dask_client(execution) as (client, _):
        seen = client.run(_death_signal_and_parent)
    assert len(seen) == 2
    assert all(v == (signal.SIGKILL, os.getpid()) for v in seen.values()), seen


def test_a_process_whose_parent_is_already_gone_ends_at_once():
    if not LINUX:
        assert end_with_parent(1) is False
        return
    code = ("import os, sys; from lenghu.pipelines.cluster import end_with_parent; "
            "end_with_parent(int(sys.argv[1])); print('alive', flush=True)")
    kept = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert kept.returncode == 0 and kept.stdout.strip() == "alive", kept.stderr
    gone = subprocess.run([sys.executable, "-c", code, "1"], capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and gone.stdout == ""  # pid 1 is not its parent: treated as orphaned
