"""``lenghu kiosk --supervise``: run the kiosk as a child process and restart it when it crashes or hangs (no GL).

The child touches a heartbeat file after every frame and writes its
playlist position to a state file whenever it changes (atomically). The
supervisor polls every ``poll_seconds``:

- the child exited with status 0: the admin chord was used, the supervisor exits too;
- the child exited otherwise (a crash, a signal): it is started again, resuming at the saved position;
- the heartbeat is older than ``heartbeat_timeout`` seconds (a hang, a frozen process): the child's
  whole process group is killed (SIGKILL also ends a stopped process) and it is started again.

Until its first beat a child has ``startup_timeout`` seconds (loading the show).

Restarting from nothing costs seconds (Python, NumPy, Astropy and VisPy imports, loading the show,
compiling shaders: 3-4 s on a loaded 2-core machine), too close to the 5 s promise. So the supervisor
keeps a **standby** child (``--standby``) that has done all of that and waits on its standard input;
a restart sends it ``go``, it reads the resume state, jumps to that scene and draws (well under a
second), and a new standby is started behind it. Without a ready standby a fresh child is started. A crash loop is slowed
down (``backoff``) so a broken installation does not spin the CPU. SIGTERM/SIGINT to the supervisor
(``systemctl stop``) end the child and the supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class Supervisor:
    """Keeps one child kiosk running.

    Parameters
    ----------
    command : list of str
        The child's command line, without ``--heartbeat``/``--state`` (added here).
    workdir : Path
        Where ``heartbeat``, ``state.json`` and ``supervisor.log`` live.
    heartbeat_timeout : float, s
    startup_timeout : float, s
    poll_seconds : float, s
    env : dict, optional
        Environment of the child (default: this process's).
    use_standby : bool
        Keep a ready standby child for fast restarts.
    """

    command: list[str]
    workdir: Path
    heartbeat_timeout: float = 1.5
    startup_timeout: float = 120.0
    poll_seconds: float = 0.05
    env: dict | None = None
    use_standby: bool = True
    restarts: int = field(default=0, init=False)
    child: subprocess.Popen | None = field(default=None, init=False)
    standby: subprocess.Popen | None = field(default=None, init=False)
    _stop: bool = field(default=False, init=False)
    _crash_times: list = field(default_factory=list, init=False)
    _standby_respawned: float = field(default=0.0, init=False)

    def __post_init__(self):
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.heartbeat = self.workdir / "heartbeat"
        self.state = self.workdir / "state.json"
        self.log_path = self.workdir / "supervisor.log"

    def _note(self, message: str) -> None:
        log.warning("kiosk supervisor: %s", message)
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")

    def _spawn(self, standby: bool) -> subprocess.Popen:
        cmd = list(self.command) + ["--heartbeat", str(self.heartbeat), "--state", str(self.state)]
        if standby:
            cmd.append("--standby")
        return subprocess.Popen(cmd, env=self.env, start_new_session=True,
                                stdin=subprocess.PIPE if standby else None, text=True)

    def start(self) -> subprocess.Popen:
        """Make a child the active kiosk (the standby when one is alive, else a fresh one); start a new standby."""
        if self.heartbeat.exists():
            self.heartbeat.unlink()
        spare = self.standby
        self.standby = None
        if spare is not None and spare.poll() is None:
            try:
                spare.stdin.write("go\n")
                spare.stdin.flush()
                self.child = spare
            except (BrokenPipeError, OSError):
                self._kill(spare)
                self.child = self._spawn(False)
        else:
            self.child = self._spawn(False)
        self._started = time.time()
        if self.use_standby:
            self.standby = self._spawn(True)
        return self.child

    def _check_standby(self) -> None:
        """A standby that died by itself is reaped and replaced (at most once every 10 s)."""
        spare = self.standby
        if spare is None or spare.poll() is None:
            return
        now = time.time()
        if now - self._standby_respawned < 10.0:
            return
        self._note(f"the standby kiosk died (exit status {spare.returncode}): starting another")
        self._standby_respawned = now
        self.standby = self._spawn(True)

    def _kill(self, child: subprocess.Popen | None = None) -> None:
        child = self.child if child is None else child
        if child is None or child.poll() is not None:
            return
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait(timeout=10)

    def _beat_age(self) -> float | None:
        """Seconds since the child's last frame (None before its first)."""
        try:
            mtime = self.heartbeat.stat().st_mtime
        except FileNotFoundError:
            return None
        return time.time() - mtime

    def stop(self, *args) -> None:
        self._stop = True

    def run(self, max_restarts: int | None = None) -> int:
        """Supervise until the child exits cleanly (returns 0), a stop signal, or ``max_restarts`` restarts."""
        old = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)} \
            if _main_thread() else {}
        try:
            self.start()
            while not self._stop:
                time.sleep(self.poll_seconds)
                self._check_standby()
                rc = self.child.poll()
                reason = None
                if rc == 0:
                    self._note("the kiosk exited (admin chord): stopping")
                    return 0
                if rc is not None:
                    reason = f"the kiosk died (exit status {rc})"
                else:
                    age = self._beat_age()
                    if age is None and time.time() - self._started > self.startup_timeout:
                        reason = f"no first frame within {self.startup_timeout:g} s"
                    elif age is not None and age > self.heartbeat_timeout:
                        reason = f"no frame for {age:.1f} s (hung)"
                if reason is None:
                    continue
                if max_restarts is not None and self.restarts >= max_restarts:
                    self._note(f"{reason}; restart limit reached")
                    return 1
                self._kill()
                now = time.time()
                self._crash_times = [t for t in self._crash_times if now - t < 60] + [now]
                delay = 0.0 if len(self._crash_times) <= 5 else min(30.0, 2.0 ** (len(self._crash_times) - 5))
                self._note(f"{reason}: restarting" + (f" in {delay:g} s" if delay else ""))
                if delay:
                    time.sleep(delay)
                self.restarts += 1
                self.start()
            return 0
        finally:
            self._kill()
            self._kill(self.standby)
            for s, handler in old.items():
                signal.signal(s, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def child_command(show_path: str | Path, extra: list[str]) -> list[str]:
    """The command line of a supervised child kiosk."""
    return [sys.executable, "-m", "lenghu.cli", "kiosk", str(show_path), *extra]
