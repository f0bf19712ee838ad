"""Folders (Zarr stores) that appear only whole: the directory twin of :func:`lenghu.io.atomic.atomic_path`.

Write into a temporary folder ``.NAME.tmp-*`` beside the final one, flush
every file in it to disk (as :func:`~lenghu.io.atomic.atomic_path` does for a
file), then rename it into place. An existing folder of the same name is first renamed
aside and removed only after the new one is in place, so a reader sees the old
store or the new one, never a half-written one. On any exception the temporary
folder is removed and the final name is untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from lenghu.io.atomic import TEMP_MARK, TEMP_PREFIX


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder below ``folder`` to disk (so the rename publishes complete data).

    The files are flushed from a few threads at once (``fsync`` releases the GIL, and the
    filesystem joins concurrent flushes into fewer journal commits); the folders after them,
    deepest first.
    """
    from concurrent.futures import ThreadPoolExecutor

    paths = sorted(folder.rglob("*"), key=lambda p: -len(p.parts))
    files = [p for p in paths if not p.is_dir()]
    with ThreadPoolExecutor(max(4, 2 * (os.cpu_count() or 1))) as pool:
        list(pool.map(_fsync, files))
    for path in [p for p in paths if p.is_dir()] + [folder]:
        _fsync(path)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield a temporary (empty, not yet existing) folder path beside ``final``; rename it onto ``final`` on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}{TEMP_MARK}", dir=final.parent))
    tmp.rmdir()  # writers (zarr) create it themselves
    try:
        yield tmp
        if not tmp.is_dir():
            raise FileNotFoundError(f"{final}: the writer did not create {tmp}")
        fsync_tree(tmp)
        old = None
        if final.exists():
            old = final.parent / f"{TEMP_PREFIX}{final.name}{TEMP_MARK}old-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
