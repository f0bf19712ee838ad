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
    """Flush every file and folder below ``folder`` to disk (so the rename publishes complete data)."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(folder, os.O_RDONLY)
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
