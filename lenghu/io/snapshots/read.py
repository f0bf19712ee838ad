"""Read any supported snapshot: the format is found from the content, never from the name."""

from __future__ import annotations

from pathlib import Path

from lenghu.io.snapshots.model import Snapshot, SnapshotError, UnknownSnapshotFormatError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def snapshot_format(path: str | Path) -> str | None:
    """The snapshot format of ``path`` from its content, or None if it is no snapshot lenghu reads.

    Returns one of ``gadget2-binary-1``, ``gadget2-binary-2``, the HDF5 dialects of
    :func:`lenghu.io.snapshots.hdf5.dialect`, or ``lenghu-zarr``. A folder is a
    Zarr snapshot store or a ``snapdir_NNN/`` of pieces (the first piece decides).
    """
    from lenghu.io.snapshots import gadget2, hdf5
    from lenghu.io.snapshots.files import folder_pieces
    from lenghu.io.snapshots.zarr_store import is_snapshot_store

    path = Path(path)
    if path.is_dir():
        if is_snapshot_store(path):
            return "lenghu-zarr"
        try:
            path = folder_pieces(path)[0]
        except SnapshotError:
            return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None
    found = gadget2.sniff(head)
    if found is not None:
        return f"gadget2-binary-{found[1]}"
    if head.startswith(HDF5_MAGIC):
        import h5py

        try:
            with h5py.File(path, "r") as h5:
                return hdf5.dialect(h5)
        except OSError:
            return None
    return None


def read_snapshot(path: str | Path, chunk_bytes: int | None = None) -> Snapshot:
    """Read a snapshot lazily (dask arrays), whatever its format.

    Parameters
    ----------
    path : path
        A file, the first piece of a multi-file snapshot (``NAME.0``,
        ``NAME.0.hdf5``), a ``snapdir_NNN/`` folder, or a lenghu Zarr store.
    chunk_bytes : int, optional
        Bytes per dask chunk along the particle axis (default about 100 MB).
        A converter passes its output's chunk size, so that each task reads
        exactly what it writes. Zarr stores keep their own chunks.

    Raises
    ------
    UnknownSnapshotFormatError
        The content matches no supported format.
    SnapshotError
        The file is one, but cannot be read as it is (truncated, inconsistent counts ...).
    """
    from lenghu.io.snapshots.gadget2 import read_gadget2
    from lenghu.io.snapshots.hdf5 import read_hdf5_snapshot
    from lenghu.io.snapshots.lazy import CHUNK_BYTES
    from lenghu.io.snapshots.zarr_store import read_zarr

    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    path = Path(path)
    if not path.exists():
        raise SnapshotError(path, "no such file or folder")
    kind = snapshot_format(path)
    if kind is None:
        raise UnknownSnapshotFormatError(path, "not a snapshot lenghu reads (Gadget-2 binary, Gadget-family HDF5, lenghu Zarr)")
    if kind == "lenghu-zarr":
        return read_zarr(path)
    if kind.startswith("gadget2-binary"):
        return read_gadget2(path, chunk_bytes)
    return read_hdf5_snapshot(path, chunk_bytes)
