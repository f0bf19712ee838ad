"""The run registry: one SQLite file per output folder.

It records every input frame (path, checksum, type, status, error), every
product (path, checksum, inputs, config hash, quality figures, missing
calibrations) and every run (start, end, resources). A rerun asks
:meth:`Registry.product_is_current` and skips what is done and unchanged.

Only the driver process writes to it (workers return results), so SQLite's
single-writer model is enough; WAL mode lets readers (a report, a second
``lenghu registry`` call) look while a run writes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lenghu.errors import LenghuError
from lenghu.io.checksum import file_checksum  # noqa: F401  (re-exported for the pipeline)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL, ended REAL, command TEXT, config_hash TEXT, software TEXT,
    scheduler TEXT, workers INTEGER, status TEXT, wall_s REAL, cpu_core_hours REAL,
    peak_memory_mb REAL, summary TEXT
);
CREATE TABLE IF NOT EXISTS frames (
    path TEXT PRIMARY KEY, checksum TEXT, size INTEGER, mtime REAL, instrument TEXT,
    frame_type TEXT, filter TEXT, exptime REAL, mjd REAL, object TEXT, detectors TEXT,
    status TEXT NOT NULL, error TEXT, run_id INTEGER
);
CREATE TABLE IF NOT EXISTS products (
    path TEXT PRIMARY KEY, kind TEXT NOT NULL, detector TEXT, filter TEXT, exposure TEXT,
    checksum TEXT, inputs_key TEXT, inputs TEXT, config_hash TEXT, missing TEXT,
    quality TEXT, status TEXT NOT NULL, error TEXT, run_id INTEGER, created REAL
);
"""


class RegistryError(LenghuError):
    """The registry file is damaged or from an incompatible version."""


class RegistryWriteError(RegistryError):
    """The registry could not be written (a full disk, a read-only folder)."""


def _is_full(exc: BaseException) -> bool:
    """True when SQLite's (or the OS's) error means the device is out of space."""
    return ("full" in str(exc).lower() or getattr(exc, "errno", None) == errno.ENOSPC
            or getattr(exc, "sqlite_errorcode", None) == getattr(sqlite3, "SQLITE_FULL", 13))


def _write_error(path: Path, exc: BaseException) -> RegistryWriteError:
    """A clear error naming the folder (and its free space when the disk is full)."""
    folder = path.parent
    if _is_full(exc):
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free"
        except OSError:
            free = "free space unknown"
        return RegistryWriteError(f"{folder}: no space left on the device holding the output folder ({free}; "
                                  f"SQLite: {exc}); free some space and run again: finished products are kept "
                                  "and the run resumes")
    return RegistryWriteError(f"{path}: cannot write the registry ({exc}); check that {folder} is writable")


@dataclass(frozen=True)
class FrameRow:
    """One input frame as the registry holds it."""

    path: str
    checksum: str | None
    frame_type: str | None
    filter: str | None
    exptime: float | None
    mjd: float | None
    detectors: tuple[str, ...]
    status: str
    error: str | None


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None and numpy scalars as Python numbers (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def inputs_key(input_checksums: Iterable[str], config_hash: str, software: str) -> str:
    """A key that changes when any input, the configuration or the software changes."""
    digest = hashlib.sha256()
    for item in sorted(input_checksums):
        digest.update(item.encode())
    digest.update(config_hash.encode())
    digest.update(software.encode())
    return digest.hexdigest()


class Registry:
    """The SQLite registry of one output folder (``OUT/registry.sqlite``)."""

    FILENAME = "registry.sqlite"

    def __init__(self, out: str | Path, filename: str = FILENAME):
        self.path = Path(out) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            self._check_version()
        except sqlite3.OperationalError as exc:
            if _is_full(exc) or "readonly" in str(exc) or "unable to open" in str(exc):
                raise _write_error(self.path, exc) from exc
            raise self._damaged(exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _damaged(self, exc: BaseException) -> RegistryError:
        return RegistryError(f"{self.path}: not a usable registry ({exc}); products are intact: "
                             f"run `lenghu registry rebuild {self.path.parent}` to recover it from them")

    def _write(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        """Execute one writing statement; a full disk or a damaged file becomes a typed error."""
        try:
            return self._db.execute(sql, args)
        except sqlite3.OperationalError as exc:
            raise _write_error(self.path, exc) from exc
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _read(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        """Execute one query; a damaged file becomes a typed error."""
        try:
            return self._db.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc

    def _check_version(self) -> None:
        row = self._read("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self._write("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RegistryError(f"{self.path}: schema version {row[0]}, this lenghu writes {SCHEMA_VERSION}")

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the file and leave WAL mode: the file then stands alone
        (it can be renamed; the next :class:`Registry` opening it turns WAL back on)."""
        self._write("PRAGMA journal_mode=DELETE")

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # runs -----------------------------------------------------------------
    def start_run(self, command: str, config_hash: str, software: str, scheduler: str, workers: int) -> int:
        """Record a run's start; return its id."""
        cur = self._write(
            "INSERT INTO runs (started, command, config_hash, software, scheduler, workers, status) "
            "VALUES (?, ?, ?, ?, ?, ?, 'running')",
            (time.time(), command, config_hash, software, scheduler, workers),
        )
        return int(cur.lastrowid)

    def end_run(self, run_id: int, status: str, resources: dict[str, float], summary: dict[str, Any]) -> None:
        """Record a run's end, the resources it used and its summary."""
        self._write(
            "UPDATE runs SET ended=?, status=?, wall_s=?, cpu_core_hours=?, peak_memory_mb=?, summary=? WHERE id=?",
            (time.time(), status, resources.get("wall_s"), resources.get("cpu_core_hours"),
             resources.get("peak_memory_mb"), json.dumps(summary, default=str), run_id),
        )

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first."""
        cur = self._read("SELECT * FROM runs ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    # frames ---------------------------------------------------------------
    def record_frame(self, path: str, *, checksum: str | None, size: int | None, mtime: float | None,
                     instrument: str | None, record: dict[str, Any] | None, status: str,
                     error: str | None, run_id: int) -> None:
        """Insert or replace one input frame's row."""
        rec = record or {}
        self._write(
            "INSERT OR REPLACE INTO frames VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (path, checksum, size, mtime, instrument, rec.get("frame_type"), rec.get("filter"),
             rec.get("exptime"), rec.get("mjd"), rec.get("object"), json.dumps(rec.get("detectors", [])),
             status, error, run_id),
        )

    def mark_frame_failed(self, path: str, error: str, run_id: int) -> None:
        """Mark a frame that ingest accepted but a later stage could not use."""
        self._write("UPDATE frames SET status='failed', error=?, run_id=? WHERE path=?", (error, run_id, path))

    def frames(self, status: str | None = None) -> list[FrameRow]:
        """Input frames, optionally only those with ``status``."""
        query = "SELECT path, checksum, frame_type, filter, exptime, mjd, detectors, status, error FROM frames"
        rows = self._read(query + (" WHERE status=?" if status else "") + " ORDER BY path",
                                (status,) if status else ()).fetchall()
        return [FrameRow(r[0], r[1], r[2], r[3], r[4], r[5], tuple(json.loads(r[6] or "[]")), r[7], r[8])
                for r in rows]

    def frame(self, path: str) -> FrameRow | None:
        """The row of one frame, or None."""
        for row in self.frames():
            if row.path == path:
                return row
        return None

    # products -------------------------------------------------------------
    def record_product(self, path: str, *, kind: str, detector: str | None, filter: str | None,
                       exposure: str | None, checksum: str | None, key: str | None,
                       inputs: list[dict[str, str]], config_hash: str, missing: Iterable[str] = (),
                       quality: dict[str, Any] | None = None, status: str = "ok",
                       error: str | None = None, run_id: int | None = None) -> None:
        """Insert or replace one product's row."""
        self._write(
            "INSERT OR REPLACE INTO products VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (path, kind, detector, filter, exposure, checksum, key, json.dumps(inputs), config_hash,
             json.dumps(list(missing)), json.dumps(_finite(quality or {})), status, error, run_id,
             time.time()),
        )

    def products(self, kind: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Products as dicts (JSON columns decoded), optionally filtered."""
        clauses, args = [], []
        if kind:
            clauses.append("kind=?")
            args.append(kind)
        if status:
            clauses.append("status=?")
            args.append(status)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        cur = self._read("SELECT * FROM products" + where + " ORDER BY path", args)
        names = [d[0] for d in cur.description]
        out = []
        for row in cur.fetchall():
            item = dict(zip(names, row))
            for key in ("inputs", "missing", "quality"):
                item[key] = json.loads(item[key] or "null")
            out.append(item)
        return out

    def update_checksum(self, path: str, checksum: str) -> None:
        """Record that a product file was rewritten in place (e.g. a fitted WCS added)."""
        self._write("UPDATE products SET checksum=? WHERE path=?", (checksum, path))

    def product_is_current(self, path: str | Path, key: str) -> bool:
        """True if ``path`` exists, is the file the registry recorded, and was made from ``key``."""
        row = self._read("SELECT checksum, inputs_key, status FROM products WHERE path=?",
                               (str(path),)).fetchone()
        if row is None or row[2] != "ok" or row[1] != key or not Path(path).is_file():
            return False
        return file_checksum(path) == row[0]
