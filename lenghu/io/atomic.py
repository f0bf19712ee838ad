"""Files that appear only whole.

Write to a temporary name in the destination folder, flush and fsync, then
``os.replace`` onto the final name: readers see the old file or the new one,
never a half-written one, and an interrupted write leaves only a temporary
file (named ``.NAME.tmp-*``) that :func:`remove_stale_temporaries` clears.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

TEMP_PREFIX = "."
TEMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; on success rename it onto ``final``.

    On any exception the temporary file is removed and ``final`` is untouched.

    Examples
    --------
    >>> with atomic_path(out / "x.fits") as tmp:   # doctest: +SKIP
    ...     hdul.writeto(tmp)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{final.name}{TEMP_MARK}", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # writers such as astropy refuse to overwrite; let them create it
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{final}: the writer did not create {tmp}")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(final: str | Path, data: bytes) -> None:
    """Write ``data`` to ``final`` so that it appears only whole."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries left by interrupted writes below ``folder``; return them."""
    removed = []
    for path in Path(folder).rglob(f"{TEMP_PREFIX}*{TEMP_MARK}*"):
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
