"""The anonymous usage log: interactions per scene per hour, as CSV (no GL).

Columns: ``hour`` (local time, ``YYYY-MM-DDTHH:00``), ``scene`` (its name in
the show), ``drag``, ``zoom``, ``tap``, ``button``, ``key`` (counts) and
``total``. Nothing about the visitor is recorded: no positions, no times finer
than the hour, no identifiers. Rows already in the file are kept and added
to, so a restarted kiosk continues the same log. The file is rewritten whole
(temporary file, then rename) at most every ``flush_seconds``.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import time
from collections import Counter
from pathlib import Path

from lenghu.io.atomic import atomic_path

log = logging.getLogger(__name__)

KINDS = ("drag", "zoom", "tap", "button", "key")
COLUMNS = ("hour", "scene") + KINDS + ("total",)


def hour_of(timestamp: float) -> str:
    """``YYYY-MM-DDTHH:00`` in local time for a Unix timestamp."""
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%dT%H:00")


class UsageLog:
    """Counts interactions per (hour, scene) and writes them to ``path``.

    Parameters
    ----------
    path : path
    flush_seconds : float
        Least time between two writes (a write also happens on :meth:`close`).
    clock : callable
        Returns Unix time (seconds); tests pass a fake one.
    """

    def __init__(self, path: str | Path, flush_seconds: float = 60.0, clock=time.time):
        self.path = Path(path)
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.counts: dict[tuple[str, str], Counter] = {}
        self._last_flush = clock()
        self._dirty = False
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames is None or list(reader.fieldnames) != list(COLUMNS):
                    raise ValueError(f"unexpected columns {reader.fieldnames}")
                for row in reader:
                    c = self.counts.setdefault((row["hour"], row["scene"]), Counter())
                    for k in KINDS:
                        c[k] += int(row[k])
        except (OSError, ValueError, KeyError) as exc:
            # a damaged log must not stop the exhibit: keep it aside and start a new one
            aside = self.path.with_suffix(self.path.suffix + f".damaged-{int(self.clock())}")
            log.warning("usage log %s unreadable (%s); moved to %s", self.path, exc, aside)
            self.path.replace(aside)
            self.counts.clear()

    def record(self, scene: str, kind: str) -> None:
        """Count one interaction of ``kind`` (one of :data:`KINDS`) on ``scene`` now."""
        if kind not in KINDS:
            raise ValueError(f"unknown interaction {kind!r} ({', '.join(KINDS)})")
        now = self.clock()
        self.counts.setdefault((hour_of(now), scene), Counter())[kind] += 1
        self._dirty = True
        if now - self._last_flush >= self.flush_seconds:
            self.flush()

    def rows(self) -> list[dict]:
        out = []
        for (hour, scene), c in sorted(self.counts.items()):
            row = {"hour": hour, "scene": scene, **{k: int(c[k]) for k in KINDS}}
            row["total"] = sum(row[k] for k in KINDS)
            out.append(row)
        return out

    def flush(self) -> None:
        """Write the whole table now (atomically)."""
        self._last_flush = self.clock()
        if not self._dirty and self.path.exists():
            return
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(self.rows())
        self._dirty = False

    def close(self) -> None:
        if self._dirty:
            self.flush()
