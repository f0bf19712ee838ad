"""Dask worker preload that injects a SIGKILL when a chosen task starts executing.

Loaded by the fault tests with ``dask worker --preload tests/faults/kill_on_task.py``.
Two environment variables arm it:

``LENGHU_FAULT_TASK``
    prefix of the task key (the task function's name, e.g. ``combine_rows``);
``LENGHU_FAULT_MARKER``
    a file created exclusively by the first worker that fires, so the fault
    is injected exactly once per test, whatever the number of workers;
``LENGHU_FAULT_VICTIM_FILE`` (optional)
    a file holding the pid to kill (the driver, written by the test once it has
    started it); default: the worker itself.

The kill happens on the transition to ``executing``, i.e. while the task is
running, which is the moment the tests promise to survive.
"""

from __future__ import annotations

import os
import signal

from distributed import WorkerPlugin


class KillOnTask(WorkerPlugin):
    """SIGKILL the victim when a task whose key starts with ``prefix`` starts executing."""

    name = "lenghu-fault-kill-on-task"

    def __init__(self, prefix: str, marker: str, victim_file: str | None):
        self.prefix = prefix
        self.marker = marker
        self.victim_file = victim_file

    def transition(self, key, start, finish, **kwargs):
        name = key[0] if isinstance(key, tuple) else key
        if finish != "executing" or not str(name).startswith(self.prefix):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # already fired once
        os.write(fd, f"{os.getpid()} {key}\n".encode())
        os.close(fd)
        victim = int(open(self.victim_file).read()) if self.victim_file else os.getpid()
        os.kill(victim, signal.SIGKILL)


async def dask_setup(worker):
    prefix = os.environ.get("LENGHU_FAULT_TASK")
    marker = os.environ.get("LENGHU_FAULT_MARKER")
    if prefix and marker:
        victim_file = os.environ.get("LENGHU_FAULT_VICTIM_FILE")
        await worker.plugin_add(plugin=KillOnTask(prefix, marker, victim_file))
