"""Lazy, picklable views of on-disk arrays, wrapped as dask arrays.

A dask graph must not hold an open file handle or the data themselves (they
would be copied into every task, and an ``h5py.Dataset`` cannot be pickled
for a distributed worker). The sources here hold only a path and where the
array lies; each ``__getitem__`` opens the file, reads the slice and closes it.
With chunks of about 100 MB the cost of opening is negligible.

- :class:`HDF5Source` reads an HDF5 dataset through h5py;
- :class:`RawSource` reads a block of a binary file through ``np.memmap``
  (Gadget-2 binary snapshots), converting to native byte order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Target bytes per dask chunk (the Dask best-practice size).
CHUNK_BYTES = 100 * 2**20


def rows_per_chunk(row_bytes: int, target_bytes: int = CHUNK_BYTES) -> int:
    """Rows of ``row_bytes`` each that make about ``target_bytes`` (at least 1)."""
    return max(1, target_bytes // max(1, row_bytes))


@dataclass(frozen=True)
class HDF5Source:
    """One HDF5 dataset, opened only while a slice is read.

    Attributes
    ----------
    path : str
    name : str
        Dataset path inside the file, e.g. ``PartType1/Coordinates``.
    shape : tuple of int
    dtype : numpy dtype (native order)
    """

    path: str
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        import h5py

        with h5py.File(self.path, "r") as h5:
            out = h5[self.name][key]
        return np.asarray(out, dtype=self.dtype)


@dataclass(frozen=True)
class RawSource:
    """A C-ordered array of ``shape`` and on-disk ``file_dtype`` at byte ``offset`` of a file.

    Attributes
    ----------
    path : str
    offset : int
        Byte offset of the first element.
    file_dtype : numpy dtype
        As stored (may be big-endian).
    shape : tuple of int
    """

    path: str
    offset: int
    file_dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        """The native-order dtype the slices come in."""
        return np.dtype(self.file_dtype).newbyteorder("=")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        if 0 in self.shape:
            return np.empty(self.shape, dtype=self.dtype)[key]
        mm = np.memmap(self.path, dtype=self.file_dtype, mode="r", offset=self.offset, shape=self.shape)
        return np.array(mm[key], dtype=self.dtype)  # copies: the map is closed when mm goes


def lazy_array(source, target_bytes: int = CHUNK_BYTES):
    """A dask array over ``source`` chunked along the first axis into about ``target_bytes`` pieces."""
    import dask.array as da

    shape = tuple(int(n) for n in source.shape)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(source.dtype).itemsize
    rows = rows_per_chunk(row_bytes, target_bytes)
    chunks = (min(rows, shape[0]) if shape[0] else 1,) + shape[1:]
    meta = np.empty((0,) * len(shape), dtype=source.dtype)
    name = f"lazy-{Path(source.path).name}-{abs(hash(source)):x}"
    return da.from_array(source, chunks=chunks, meta=meta, name=name, asarray=False, fancy=False)


def concatenate(parts: list):
    """Concatenate dask arrays along the first axis (a single part is returned as is)."""
    import dask.array as da

    if len(parts) == 1:
        return parts[0]
    return da.concatenate(parts, axis=0)
