"""Finding raw files in a folder tree."""

from __future__ import annotations

from pathlib import Path

from lenghu.io.atomic import TEMP_MARK

SUFFIXES = (".fits", ".fit", ".fts", ".fits.fz", ".fits.gz", ".fit.gz", ".fts.gz", ".fz", ".fits.bz2")


def find_raw_files(folder: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """FITS files (plain or compressed) below ``folder``, sorted, without temporaries.

    Files below ``exclude`` (an output folder inside the raw folder) are left out.
    """
    folder = Path(folder)
    if not folder.is_dir():
        from lenghu.errors import LenghuError

        raise LenghuError(f"{folder}: not a folder of raw files")
    skip = Path(exclude).resolve() if exclude is not None else None
    found = []
    for path in folder.rglob("*"):
        name = path.name.lower()
        if not path.is_file() or TEMP_MARK in name or not name.endswith(SUFFIXES):
            continue
        if skip is not None and skip in path.resolve().parents:
            continue
        found.append(path)
    return sorted(found)
