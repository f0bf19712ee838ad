"""Which files make one snapshot: a single file, ``NAME.i[.hdf5]`` siblings, or a ``snapdir_NNN/`` folder."""

from __future__ import annotations

import re
from pathlib import Path

from lenghu.io.snapshots.model import SnapshotError

_PIECE = re.compile(r"^(?P<stem>.+)\.(?P<index>\d+)(?P<suffix>\.hdf5|\.h5)?$")


def piece_index(path: Path) -> tuple[str, int, str] | None:
    """``(stem, index, suffix)`` of a multi-file piece name like ``snapshot_003.2.hdf5``, else None."""
    m = _PIECE.match(path.name)
    if m is None:
        return None
    return m["stem"], int(m["index"]), m["suffix"] or ""


def folder_pieces(folder: Path) -> list[Path]:
    """The pieces of the one snapshot in ``folder`` (e.g. ``snapdir_003/``), in index order.

    Raises
    ------
    SnapshotError
        The folder holds no pieces, or pieces of several snapshots.
    """
    pieces = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            parsed = piece_index(p)
            if parsed is not None:
                pieces.append((parsed, p))
    if not pieces:
        raise SnapshotError(folder, "the folder holds no snapshot pieces named NAME.i or NAME.i.hdf5")
    stems = {(stem, suffix) for (stem, _, suffix), _ in pieces}
    if len(stems) > 1:
        raise SnapshotError(folder, f"the folder holds pieces of several snapshots: {sorted(s for s, _ in stems)}")
    pieces.sort(key=lambda item: item[0][1])
    return [p for _, p in pieces]


def sibling_pieces(first: Path, num_files: int) -> list[Path]:
    """All ``num_files`` pieces of the snapshot that ``first`` belongs to.

    Raises
    ------
    SnapshotError
        A piece is missing.
    """
    parsed = piece_index(first)
    if num_files <= 1 or parsed is None:
        return [first]
    stem, _, suffix = parsed
    paths = [first.parent / f"{stem}.{i}{suffix}" for i in range(num_files)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SnapshotError(first, f"the header says {num_files} files, but {', '.join(missing)} is/are missing")
    return paths
