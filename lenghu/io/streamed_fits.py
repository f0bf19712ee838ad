"""FITS files whose image planes are written strip by strip, with checksums, in bounded memory.

astropy writes an image HDU from one array in memory (and its ``add_checksum``
makes a byte-swapped copy of it), so a product of a full-size WFST CCD
(9216 x 9232, three planes) costs over 1 GB per task just to write.
``astropy.io.fits.StreamingHDU`` streams data but has no checksums and cannot
interleave several HDUs. This module lays the file out up front (headers of
known length, data units of known size, a sparse file of the final size),
writes each strip at its place as it is computed, accumulates each data unit's
32-bit ones' complement sum (the FITS checksum convention, which is additive
over 4-byte aligned pieces) and writes the headers with ``DATASUM`` and
``CHECKSUM`` last. The bytes are those astropy writes for the same arrays
(tests/lenghu/test_products_stream.py compares them).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np
from astropy.io import fits

from lenghu.io.atomic import TEMP_MARK, TEMP_PREFIX, atomic_path

BLOCK = 2880
_EXCLUDE = frozenset((0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60))


def ones_complement_sum(data: bytes | np.ndarray, sum32: int = 0) -> int:
    """32-bit ones' complement sum of big-endian words (length a multiple of 4), added to ``sum32``."""
    words = np.frombuffer(data, dtype=">u4") if isinstance(data, (bytes, bytearray, memoryview)) else data.view(">u4")
    total = int(sum32) + int(words.sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a checksum (FITS checksum convention, section A.7.2)."""
    value &= 0xFFFFFFFF
    asc = [0] * 16
    for i in range(4):
        byte = (value >> ((3 - i) * 8)) & 0xFF
        quotient, remainder = byte // 4 + 0x30, byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            asc[4 * j + i] = ch[j]
    return bytes(asc[(i + 15) % 16] for i in range(16)).decode("ascii")


def _padded(n: int) -> int:
    return -(-n // BLOCK) * BLOCK


def image_header(name: str, shape: tuple[int, int], dtype, extra: fits.Header | None) -> fits.Header:
    """The header astropy gives an ``ImageHDU`` of this name, shape and type (no pixels needed)."""
    ghost = np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * len(shape))
    hdu = fits.ImageHDU(ghost, header=extra.copy() if extra is not None else None, name=name)
    return hdu.header.copy()


@dataclass
class _Plane:
    header: fits.Header
    dtype: np.dtype
    shape: tuple[int, int]
    header_offset: int
    data_offset: int
    datasum: int = 0
    rows: np.ndarray | None = None


class StreamedImageFile:
    """A FITS file of a primary HDU, image planes filled by rows, and small trailing HDUs.

    Parameters
    ----------
    handle : binary file
        Open for writing and seeking, empty (see :func:`anonymous_file`).
    primary : astropy.io.fits.PrimaryHDU
        Without data.
    planes : sequence of (header, shape, dtype)
        The image extensions: complete headers (from :func:`image_header`, ``EXTNAME`` naming
        the plane), shapes and pixel types.
    tail : sequence of HDU
        Small extensions written whole after the planes (a provenance table).
    when : str
        Comment of the ``CHECKSUM`` and ``DATASUM`` cards (no timestamp: reruns give identical bytes).
    name : str
        The file's final name, for messages.

    Notes
    -----
    Call :meth:`write_rows` for every row of every plane, then :meth:`close`,
    which refuses to finish a file with rows never written.
    """

    def __init__(self, handle: BinaryIO, primary: fits.PrimaryHDU,
                 planes: Sequence[tuple[fits.Header, tuple[int, int], type]],
                 tail: Sequence[fits.hdu.base.ExtensionHDU] = (), when: str = "HDU checksum", name: str = ""):
        self.path = name
        self._when = when
        primary = primary.copy()
        if "EXTEND" not in primary.header:  # as astropy's HDUList.writeto (update_extend) does
            naxis = primary.header["NAXIS"]
            primary.header.set("EXTEND", True, after=f"NAXIS{naxis}" if naxis else "NAXIS")
        self._primary = primary
        head = self._primary_bytes()
        self._primary_length = offset = len(head)
        self._planes: dict[str, _Plane] = {}
        for header, shape, dtype in planes:
            name = header["EXTNAME"]
            header = header.copy()
            header["DATASUM"] = ("0", when)
            header.set("CHECKSUM", "0" * 16, when, before="DATASUM")
            size = len(header.tostring())
            dt = np.dtype(dtype).newbyteorder(">")
            nbytes = int(np.prod(shape)) * dt.itemsize
            if (shape[-1] * dt.itemsize) % 4:
                raise ValueError(f"plane {name}: rows of {shape[-1] * dt.itemsize} bytes are not 4-byte aligned")
            self._planes[name] = _Plane(header, dt, tuple(shape), offset, offset + size,
                                        rows=np.zeros(shape[0], dtype=bool))
            offset += size + _padded(nbytes)
        buffer = io.BytesIO()
        tail = [hdu.copy() for hdu in tail]
        for hdu in tail:
            hdu.add_checksum(when=when)
        fits.HDUList([fits.PrimaryHDU(), *tail]).writeto(buffer)
        self._tail = buffer.getvalue()[BLOCK:]  # an empty primary header is one block
        self._tail_offset = offset
        self._handle = handle
        self._handle.write(head)
        self._handle.truncate(offset + len(self._tail))  # data padding is zeros, as astropy writes it

    def _primary_bytes(self) -> bytes:
        self._primary.add_checksum(when=self._when)
        return self._primary.header.tostring().encode("ascii")

    def update_primary(self, cards) -> None:
        """Change values of cards already in the primary header (its length must not change)."""
        for key, value in cards.items():
            if key not in self._primary.header:
                raise KeyError(f"{self.path}: primary card {key} must be present from the start")
            self._primary.header[key] = value

    def write_rows(self, name: str, y0: int, rows: np.ndarray) -> None:
        """Write ``rows`` (native or big-endian) at row ``y0`` of plane ``name``."""
        plane = self._planes[name]
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != plane.shape[1] or not 0 <= y0 <= plane.shape[0] - rows.shape[0]:
            raise ValueError(f"plane {name} is {plane.shape}; rows {rows.shape} at {y0} do not fit")
        data = np.ascontiguousarray(rows, dtype=plane.dtype)
        if plane.rows[y0:y0 + rows.shape[0]].any():
            raise ValueError(f"plane {name}: rows from {y0} written twice")
        plane.datasum = ones_complement_sum(data.view(np.uint8).reshape(-1), plane.datasum)
        self._handle.seek(plane.data_offset + y0 * plane.shape[1] * plane.dtype.itemsize)
        self._handle.write(memoryview(data).cast("B"))  # no bytes copy
        plane.rows[y0:y0 + rows.shape[0]] = True

    # --- several processes writing one file: detach, write parts elsewhere, merge, close -------------

    def detach(self) -> "StreamedImageFile":
        """This file's layout and sums without its handle (to send to other processes); the handle is closed."""
        self._handle.close()
        self._handle = None
        return self

    def detach_closed(self) -> None:
        """Forget a handle that its owner has closed."""
        self._handle = None

    def attach(self, handle: BinaryIO) -> "StreamedImageFile":
        """Give a detached layout a handle on the same file (opened ``r+b``); returns self."""
        self._handle = handle
        return self

    def written(self) -> dict[str, tuple[int, np.ndarray]]:
        """Each plane's ones' complement sum and rows written so far here (for :meth:`merge`)."""
        return {name: (plane.datasum, plane.rows.copy()) for name, plane in self._planes.items()}

    def merge(self, parts: Sequence[dict[str, tuple[int, np.ndarray]]]) -> None:
        """Add the sums and rows that other processes wrote (:meth:`written` of their copies)."""
        for part in parts:
            for name, (datasum, rows) in part.items():
                plane = self._planes[name]
                if (plane.rows & rows).any():
                    raise ValueError(f"{self.path}: plane {name}: rows written twice")
                plane.datasum = ones_complement_sum(np.zeros(0, dtype=">u4"), plane.datasum + datasum)
                plane.rows |= rows

    def close(self) -> None:
        """Write the headers with their checksums and the trailing HDUs; the file is then complete."""
        try:
            for name, plane in self._planes.items():
                if not plane.rows.all():
                    raise ValueError(f"{self.path}: plane {name} has {int((~plane.rows).sum())} rows never written")
                header = plane.header
                header["DATASUM"] = str(plane.datasum)
                header["CHECKSUM"] = "0" * 16
                total = ones_complement_sum(header.tostring().encode("ascii"), plane.datasum)
                header["CHECKSUM"] = encode_checksum(~total)
                self._handle.seek(plane.header_offset)
                self._handle.write(header.tostring().encode("ascii"))
            self._handle.seek(self._tail_offset)
            self._handle.write(self._tail)
            head = self._primary_bytes()
            if len(head) != self._primary_length:
                raise ValueError(f"{self.path}: the primary header changed length")
            self._handle.seek(0)
            self._handle.write(head)
            self._handle.flush()
        except BaseException:
            self._handle.close()
            raise


@contextlib.contextmanager
def anonymous_file(final: str | Path) -> Iterator[BinaryIO]:
    """A file that gets a name (``final``) only when the block ends without an exception.

    On Linux the file is made with ``O_TMPFILE``: it has no name while it is
    written, so a process killed mid-write (SIGKILL of a worker whose driver
    died) leaves nothing behind; at the end it is fsynced, linked under a
    temporary name beside ``final`` and renamed onto it. Where the file
    system lacks ``O_TMPFILE``, :func:`lenghu.io.atomic.atomic_path` (a
    named temporary, cleared by the next run) is used instead.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    flag = getattr(os, "O_TMPFILE", None)
    fd = None
    if flag is not None:
        try:
            fd = os.open(final.parent, flag | os.O_RDWR, 0o666)
        except OSError:  # EOPNOTSUPP/EISDIR: the file system cannot; fall back to a named temporary
            fd = None
    if fd is None:
        with atomic_path(final) as tmp, open(tmp, "wb+") as handle:
            yield handle
        return
    with os.fdopen(fd, "wb+") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
        fd_, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{final.name}{TEMP_MARK}", dir=final.parent)
        os.close(fd_)
        os.unlink(name)
        folder = os.open(final.parent, os.O_RDONLY)
        try:
            # a directory fd makes Python call linkat(..., AT_SYMLINK_FOLLOW), which gives the unnamed
            # file behind /proc/self/fd/N a name (plain link() would link the symlink itself)
            os.link(f"/proc/self/fd/{handle.fileno()}", os.path.basename(name), dst_dir_fd=folder,
                    follow_symlinks=True)
            os.replace(name, final)
        finally:
            os.close(folder)
            if os.path.lexists(name):
                os.unlink(name)
