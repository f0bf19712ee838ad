"""Zarr v3 and HDF5 as one small interface: groups, JSON-able attributes, chunked arrays.

The FITS layout (:mod:`lenghu.convert.fits_store`) is written once against
:class:`Store` and lands in either container. Attributes:

- Zarr keeps JSON attributes natively.
- HDF5 keeps numbers and strings as attributes of their own type; lists and
  dicts are written as JSON text, and the group attribute ``lenghu_json``
  names them so that they are decoded on reading. The FITS header (a list of
  80-character cards) is written as a fixed-length ``S80`` array, which
  ``h5dump`` and any HDF5 tool show as the header it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

JSON_MARK = "lenghu_json"
CARD_ATTRS = ("header",)


class Store:
    """A group in a Zarr or HDF5 container (see :func:`open_store`)."""

    def __init__(self, backend: str, group: Any):
        self.backend = backend
        self.group = group

    # --- groups -----------------------------------------------------------------
    def create_group(self, name: str) -> "Store":
        return Store(self.backend, self.group.create_group(name))

    def subgroup(self, name: str) -> "Store":
        return Store(self.backend, self.group[name])

    def group_names(self) -> list[str]:
        if self.backend == "zarr":
            return sorted(name for name, _ in self.group.groups())
        import h5py

        return sorted(k for k, v in self.group.items() if isinstance(v, h5py.Group))

    def has_array(self, name: str) -> bool:
        if self.backend == "zarr":
            return name in {n for n, _ in self.group.arrays()}
        import h5py

        return isinstance(self.group.get(name), h5py.Dataset)

    # --- attributes -------------------------------------------------------------
    def set_attrs(self, values: dict[str, Any]) -> None:
        if self.backend == "zarr":
            self.group.attrs.update(values)
            return
        encoded = []
        for key, value in values.items():
            if key in CARD_ATTRS:
                self.group.attrs[key] = np.array([c.encode("ascii") for c in value], dtype="S80")
            elif isinstance(value, (dict, list, tuple)) or value is None:
                self.group.attrs[key] = json.dumps(value)
                encoded.append(key)
            else:
                self.group.attrs[key] = value
        previous = json.loads(self.group.attrs.get(JSON_MARK, "[]"))
        self.group.attrs[JSON_MARK] = json.dumps(sorted(set(previous) | set(encoded)))

    def attrs(self) -> dict[str, Any]:
        if self.backend == "zarr":
            return dict(self.group.attrs)
        raw = dict(self.group.attrs)
        encoded = set(json.loads(raw.pop(JSON_MARK, "[]")))
        out = {}
        for key, value in raw.items():
            if key in CARD_ATTRS:
                out[key] = [c.decode("ascii") if isinstance(c, bytes) else str(c) for c in np.asarray(value).tolist()]
            elif key in encoded:
                out[key] = json.loads(value)
            elif isinstance(value, np.generic):
                out[key] = value.item()
            elif isinstance(value, bytes):
                out[key] = value.decode("utf-8")
            else:
                out[key] = value
        return out

    # --- arrays -----------------------------------------------------------------
    def create_array(self, name: str, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...],
                     big_endian: bool = False):
        """A new chunked array (Zarr: Blosc/LZ4-compressed; HDF5: chunked, uncompressed for portability).

        Parameters
        ----------
        name : str
        shape, chunks : tuple of int
        dtype : numpy dtype
            The values' type (the byte order of what is written need not be native).
        big_endian : bool
            Zarr: encode the chunks big-endian (the ``bytes`` codec's ``endian = "big"``, which the
            array's metadata declares, so every Zarr reader decodes the right values). Chunks handed
            over as big-endian arrays (FITS data) are then written without a byte swap. HDF5: ignored.

        Notes
        -----
        Zarr arrays are made with ``write_empty_chunks = True``: every chunk is written as it
        comes. Zarr's default first compares each chunk with the fill value to skip empty ones,
        a full extra pass that made a 16 MiB uint16 chunk cost about 35 ms to write instead of
        about 12 ms (and a raw frame has no empty chunks to skip).
        """
        if self.backend == "zarr":
            from zarr.codecs import BytesCodec

            from lenghu.io.snapshots.zarr_store import zarr_compressors

            serializer = BytesCodec(endian="big") if big_endian else "auto"
            return self.group.create_array(name, shape=shape, dtype=dtype, chunks=chunks, compressors=zarr_compressors(),
                                           serializer=serializer, config={"write_empty_chunks": True})
        return self.group.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks if all(shape) else None)

    def array(self, name: str):
        return self.group[name]


def open_store(path: str | Path, backend: str, mode: str) -> Iterator[Store] | Store:
    """The root :class:`Store` of a container (``mode`` ``"w"`` creates, ``"r"`` reads); close with :func:`close_store`."""
    if backend == "zarr":
        import zarr

        return Store("zarr", zarr.open_group(path, mode=mode, zarr_format=3) if mode == "w" else zarr.open_group(path, mode="r"))
    if backend == "hdf5":
        import h5py

        return Store("hdf5", h5py.File(path, mode))
    raise ValueError(f"unknown store backend {backend!r}")


def close_store(store: Store) -> None:
    """Close an HDF5 file (Zarr needs nothing)."""
    if store.backend == "hdf5":
        store.group.file.close()


def read_block(array, index: tuple[slice, ...]) -> np.ndarray:
    """One block of a Zarr array or HDF5 dataset as a numpy array."""
    return np.asarray(array[index])


def block_slices(shape: tuple[int, ...], chunks: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """Slices of the chunk grid in C order (with :func:`slab_chunks` chunks: in storage order)."""
    counts = [max(1, -(-n // c)) for n, c in zip(shape, chunks)]
    for index in np.ndindex(*counts):
        yield tuple(slice(i * c, min(n, (i + 1) * c)) for i, c, n in zip(index, chunks, shape))


def slab_chunks(shape: tuple[int, ...], itemsize: int, target_bytes: int) -> tuple[int, ...]:
    """Chunks of about ``target_bytes`` that are contiguous in C order.

    Leading axes get chunk 1 until one index of an axis fits in the target; that
    axis gets as many indices as fit and the later axes are whole, so that the
    chunk grid in C order walks the array in storage order.

    Examples
    --------
    >>> slab_chunks((9232, 9216), 2, 16 * 2**20)
    (910, 9216)
    >>> slab_chunks((1, 7, 4, 3), 4, 100)
    (1, 2, 4, 3)
    """
    if not shape:
        return ()
    chunks = []
    for axis, n in enumerate(shape):
        below = int(np.prod(shape[axis + 1 :], dtype=np.int64)) * itemsize
        if below <= target_bytes or axis == len(shape) - 1:
            chunks.append(max(1, min(n, target_bytes // max(1, below))))
            chunks.extend(shape[axis + 1 :])
            break
        chunks.append(1)
    return tuple(int(c) for c in chunks)
