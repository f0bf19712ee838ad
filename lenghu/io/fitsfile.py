"""Open FITS files safely: read-only, headers first, typed errors.

:func:`scan` walks a file's headers without reading its data (seeking over
each data unit in a plain file) and checks that every data unit its header
announces is really there, so a truncated 1.5 GB exposure is caught before any
pixel is read. :func:`read_image` then returns one HDU's raw (unscaled) pixels:
a read-only memory map for plain files, a slice of the decompressed bytes for
``.gz``/``.bz2`` files, and only that HDU decompressed for tile-compressed
(``.fz``) images. Files are never opened for writing.

Everything that can go wrong with the file itself is raised as a
:class:`~lenghu.errors.FrameError` subclass naming the file; astropy's bare
``OSError``/``ValueError``/``VerifyError`` never escape.
"""

from __future__ import annotations

import bz2
import gzip
import io
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyError

from lenghu.errors import MissingExtensionError, TruncatedFileError, UnreadableFileError

BLOCK = 2880
CARD = 80
MAX_HEADER_BLOCKS = 2000  # 72 000 cards: more is garbage, not a header

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
_BITPIX_DTYPES = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_PRINTABLE = bytes(range(32, 127))
_STRUCTURAL = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTEND", "GROUPS", "END")


@dataclass(frozen=True)
class HduInfo:
    """Where one HDU lies in a file and what its header says about its data.

    Attributes
    ----------
    index : int
        0-based HDU number.
    header : astropy.io.fits.Header
        The header as stored (for a tile-compressed image: the binary table's).
    header_offset, data_offset, data_size : int
        Byte positions in the (decompressed) file; ``data_size`` is unpadded.
    """

    index: int
    header: fits.Header
    header_offset: int
    data_offset: int
    data_size: int

    @property
    def is_compressed_image(self) -> bool:
        """True for a tile-compressed image (``ZIMAGE = T``)."""
        return _get(self.header, "ZIMAGE") is True

    @property
    def extname(self) -> str | None:
        """``EXTNAME`` (stripped), or None."""
        value = _get(self.header, "EXTNAME")
        return str(value).strip() if value is not None else None

    @property
    def extver(self) -> int:
        """``EXTVER`` (1 where absent)."""
        value = _get(self.header, "EXTVER")
        return int(value) if isinstance(value, (int, np.integer)) else 1

    @property
    def is_image(self) -> bool:
        """True for the primary HDU, an IMAGE extension or a compressed image."""
        if self.is_compressed_image:
            return True
        if self.index == 0:
            return True
        return str(_get(self.header, "XTENSION") or "").strip().upper() == "IMAGE"

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """The image's numpy shape (``(NAXIS2, NAXIS1)`` for 2-D), or None when it has no pixels."""
        if not self.is_image:
            return None
        prefix = "ZNAXIS" if self.is_compressed_image else "NAXIS"
        naxis = _get(self.header, prefix)
        if not isinstance(naxis, int) or naxis < 1:
            return None
        axes = tuple(_get(self.header, f"{prefix}{i}") for i in range(naxis, 0, -1))
        if not all(isinstance(n, int) and n > 0 for n in axes):
            return None
        return axes

    @property
    def bitpix(self) -> int:
        """``BITPIX`` of the image (``ZBITPIX`` for a compressed one)."""
        return int(_get(self.header, "ZBITPIX" if self.is_compressed_image else "BITPIX"))


def compression(path: str | Path) -> str | None:
    """``"gzip"``, ``"bzip2"`` or None (plain FITS, including ``.fz``), from the file's first bytes."""
    with open(path, "rb") as handle:
        magic = handle.read(3)
    if magic.startswith(_GZIP_MAGIC):
        return "gzip"
    if magic.startswith(_BZIP2_MAGIC):
        return "bzip2"
    return None


def _open_stream(path: Path, kind: str | None) -> BinaryIO:
    if kind == "gzip":
        return gzip.open(path, "rb")
    if kind == "bzip2":
        return bz2.open(path, "rb")
    return open(path, "rb")


_STREAM_ERRORS = (EOFError, zlib.error, OSError)


def _stream_error(path: Path, exc: Exception) -> Exception:
    if isinstance(exc, EOFError):
        return TruncatedFileError(path, f"compressed data end early ({exc})")
    return UnreadableFileError(path, f"cannot decompress or read: {exc}")


class FitsFile:
    """A FITS file opened read-only, its headers walked and its size checked.

    Parameters
    ----------
    path : str or Path
        The file (plain, ``.fz``, ``.gz`` or ``.bz2``).
    load : bool
        For ``.gz``/``.bz2`` files: decompress the whole file into memory now
        (needed to read pixels). Without it the headers are read from the
        decompressing stream and nothing is kept. Plain files are never loaded.

    Raises
    ------
    UnreadableFileError
        Empty, not FITS, a header that cannot be parsed, corrupt compression.
    TruncatedFileError
        The file ends before a header or data unit it announces.
    """

    def __init__(self, path: str | Path, load: bool = False):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            self.compression = compression(self.path)
        except OSError as exc:
            raise UnreadableFileError(self.path, f"cannot open: {exc.strerror or exc}") from exc
        if size == 0:
            raise UnreadableFileError(self.path, "file is empty")
        self._buffer: bytes | None = None
        if self.compression is None:
            self.hdus = self._scan_file(size)
        elif load:
            try:
                with _open_stream(self.path, self.compression) as stream:
                    self._buffer = stream.read()
            except _STREAM_ERRORS as exc:
                raise _stream_error(self.path, exc) from exc
            self.hdus = scan(io.BytesIO(self._buffer), self.path, len(self._buffer))
        else:
            try:
                with _open_stream(self.path, self.compression) as stream:
                    self.hdus = scan(stream, self.path, None)
            except _STREAM_ERRORS as exc:
                raise _stream_error(self.path, exc) from exc

    def _scan_file(self, size: int) -> tuple[HduInfo, ...]:
        try:
            with open(self.path, "rb") as handle:
                return scan(handle, self.path, size)
        except OSError as exc:
            raise UnreadableFileError(self.path, f"cannot read: {exc.strerror or exc}") from exc

    @property
    def primary(self) -> HduInfo:
        """HDU 0."""
        return self.hdus[0]

    def images(self) -> tuple[HduInfo, ...]:
        """The HDUs that hold an image with pixels."""
        return tuple(h for h in self.hdus if h.image_shape is not None)

    def hdu(self, key: int | str) -> HduInfo:
        """The HDU with this index or ``EXTNAME`` (case-insensitive).

        Raises
        ------
        MissingExtensionError
            No such HDU in the file.
        """
        for info in self.hdus:
            if isinstance(key, int) and info.index == key:
                return info
            if isinstance(key, str) and (info.extname or "").upper() == key.strip().upper():
                return info
        names = [h.extname or str(h.index) for h in self.hdus]
        raise MissingExtensionError(self.path, f"no HDU {key!r} (the file has {names})")

    def image_header(self, info: HduInfo) -> fits.Header:
        """The image header of an HDU (decoded from the table header for a compressed image)."""
        if not info.is_compressed_image:
            return info.header
        with self._astropy() as hdul:
            try:
                return hdul[info.index].header.copy()
            except (OSError, ValueError, KeyError, IndexError, VerifyError) as exc:
                raise UnreadableFileError(
                    self.path, f"HDU {info.index}: cannot read the compressed image header: {exc}"
                ) from exc

    def read_image(self, info: HduInfo) -> np.ndarray:
        """The raw pixels of one image HDU, unscaled (BZERO/BSCALE not applied), read-only.

        A plain file gives a memory map (only the pages used are read); a
        tile-compressed image is decompressed alone.
        """
        shape = info.image_shape
        if shape is None:
            raise MissingExtensionError(self.path, f"HDU {info.index} holds no image")
        if info.is_compressed_image:
            return self._decompress(info)
        dtype = np.dtype(_BITPIX_DTYPES[info.bitpix])
        if self._buffer is not None:
            array = np.frombuffer(self._buffer, dtype=dtype, count=math.prod(shape), offset=info.data_offset)
            return array.reshape(shape)
        if self.compression is not None:
            raise RuntimeError("FitsFile(load=True) is needed to read pixels of a compressed stream")
        try:
            return np.memmap(self.path, dtype=dtype, mode="r", offset=info.data_offset, shape=shape)
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(self.path, f"HDU {info.index}: cannot map the data: {exc}") from exc

    def _astropy(self) -> fits.HDUList:
        source: Any = io.BytesIO(self._buffer) if self._buffer is not None else self.path
        if self.compression is not None and self._buffer is None:
            raise RuntimeError("FitsFile(load=True) is needed to read a compressed image in a compressed stream")
        try:
            return fits.open(
                source,
                mode="readonly",
                lazy_load_hdus=True,
                do_not_scale_image_data=True,
                memmap=self._buffer is None,
            )
        except (OSError, ValueError, VerifyError) as exc:
            raise UnreadableFileError(self.path, f"astropy cannot open it: {exc}") from exc

    def _decompress(self, info: HduInfo) -> np.ndarray:
        with self._astropy() as hdul:
            try:
                data = np.array(hdul[info.index].data)
            except (OSError, ValueError, KeyError, IndexError, RuntimeError, VerifyError, EOFError, zlib.error) as exc:
                raise UnreadableFileError(self.path, f"HDU {info.index}: cannot decompress the image: {exc}") from exc
        data.flags.writeable = False
        return data


def scan(stream: BinaryIO, path: str | Path, size: int | None) -> tuple[HduInfo, ...]:
    """Walk the headers of a FITS stream; check each data unit against ``size``.

    Parameters
    ----------
    stream : binary file
        Positioned at the start; must support ``seek`` forward and ``tell``.
    path : str or Path
        For messages.
    size : int or None
        Total bytes where known (plain files). Where None (a decompressing
        stream) each data unit is skipped by seeking, which decompresses it.
    """
    hdus: list[HduInfo] = []
    offset = 0
    while True:
        stream.seek(offset)
        first = stream.read(BLOCK)
        index = len(hdus)
        if index == 0:
            if not first:
                raise UnreadableFileError(path, "file is empty")
            if not first.startswith(b"SIMPLE  ="):
                raise UnreadableFileError(path, "not a FITS file (it does not start with SIMPLE)")
        elif not first.startswith(b"XTENSION="):
            break  # end of file, or trailing bytes after the last HDU (ignored, as astropy does)
        header, header_bytes = _read_header(stream, first, path, index, offset)
        data_offset = offset + header_bytes
        data_size = _data_size(header, path, index)
        info = HduInfo(index, header, offset, data_offset, data_size)
        end = data_offset + data_size
        if size is not None:
            if end > size:
                raise TruncatedFileError(
                    path,
                    f"HDU {index} announces {data_size} bytes of data ending at byte {end}, "
                    f"but the file has only {size} bytes (truncated)",
                )
        elif data_size:
            stream.seek(end)
            if stream.tell() < end:
                raise TruncatedFileError(
                    path, f"HDU {index} announces {data_size} bytes of data, but the file ends at byte {stream.tell()}"
                )
        hdus.append(info)
        offset = data_offset + -(-data_size // BLOCK) * BLOCK
    return tuple(hdus)


def _read_header(stream: BinaryIO, first: bytes, path, index: int, offset: int) -> tuple[fits.Header, int]:
    blocks = [first]
    while True:
        block = blocks[-1]
        if len(block) < BLOCK:
            at = offset + sum(map(len, blocks))
            raise TruncatedFileError(path, f"HDU {index}: the file ends inside the header (at byte {at})")
        if block.translate(None, _PRINTABLE):
            bad = next(i for i, b in enumerate(block) if not 32 <= b <= 126)
            at = offset + (len(blocks) - 1) * BLOCK + bad
            raise UnreadableFileError(path, f"HDU {index}: header has a non-ASCII byte at byte {at} (garbage header)")
        if any(block[i:i + 8] == b"END     " for i in range(0, BLOCK, CARD)):
            break
        if len(blocks) >= MAX_HEADER_BLOCKS:
            raise UnreadableFileError(path, f"HDU {index}: no END card in the first {MAX_HEADER_BLOCKS} header blocks")
        blocks.append(stream.read(BLOCK))
    text = b"".join(blocks).decode("ascii")
    try:
        header = fits.Header.fromstring(text)
    except (ValueError, VerifyError) as exc:
        raise UnreadableFileError(path, f"HDU {index}: header cannot be parsed: {exc}") from exc
    return header, len(blocks) * BLOCK


def _get(header: fits.Header, key: str) -> Any:
    """A header value, or None where absent or unparseable."""
    try:
        value = header.get(key)
    except (VerifyError, ValueError, TypeError, KeyError, IndexError):
        return None
    return None if isinstance(value, fits.card.Undefined) else value


def _data_size(header: fits.Header, path, index: int) -> int:
    def integer(key: str, default: int | None = None) -> int:
        value = _get(header, key)
        if value is None and default is not None:
            return default
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise UnreadableFileError(path, f"HDU {index}: header has no valid {key} (got {value!r})")
        return int(value)

    bitpix = _get(header, "BITPIX")
    if isinstance(bitpix, bool) or bitpix not in _BITPIX_DTYPES:
        raise UnreadableFileError(path, f"HDU {index}: BITPIX = {bitpix!r} is not a FITS value")
    bitpix = int(bitpix)
    naxis = integer("NAXIS")
    if naxis > 999:
        raise UnreadableFileError(path, f"HDU {index}: NAXIS = {naxis}")
    if naxis == 0:
        return 0
    # found by fuzzing: an unparsable BSCALE/BZERO got as far as scaling the pixels (a bare ValueError)
    for key in ("BSCALE", "BZERO"):
        if key in header:
            value = _get(header, key)
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
                    or not math.isfinite(value)):
                raise UnreadableFileError(path, f"HDU {index}: {key} = {value!r} is not a finite number")
    axes = [integer(f"NAXIS{i}") for i in range(1, naxis + 1)]
    if axes[0] == 0 and _get(header, "GROUPS") is True:
        axes = axes[1:]
    return abs(bitpix) // 8 * integer("GCOUNT", 1) * (integer("PCOUNT", 0) + math.prod(axes))


def header_values(header: fits.Header) -> dict[str, Any]:
    """A header as a plain dict: first value of each keyword, strings stripped.

    Cards whose value cannot be parsed are left out (they are then "absent"
    for the instrument's rules); COMMENT, HISTORY and blank cards too.
    """
    values: dict[str, Any] = {}
    for card in header.cards:
        try:
            key = card.keyword
            if not key or key in ("COMMENT", "HISTORY") or key in values:
                continue
            value = card.value
        except (VerifyError, ValueError, TypeError, IndexError):
            continue
        if isinstance(value, fits.card.Undefined):
            continue
        values[key] = value.strip() if isinstance(value, str) else value
    return values


def merged_values(primary: Mapping[str, Any], extension: Mapping[str, Any], extension_wins: bool) -> dict[str, Any]:
    """Primary and extension header values merged; structural keywords from the extension."""
    if extension_wins:
        merged = dict(primary)
        merged.update(extension)
    else:
        merged = dict(extension)
        merged.update({k: v for k, v in primary.items() if k not in _STRUCTURAL and not k.startswith("NAXIS")})
    return merged


def scale_to_adu(raw: np.ndarray, header: fits.Header, section: tuple[slice, slice] | None = None) -> np.ndarray:
    """``raw[section] * BSCALE + BZERO`` as a new native float32 array; BLANK pixels become NaN."""
    part = raw[section] if section is not None else raw
    bscale = _get(header, "BSCALE")
    bzero = _get(header, "BZERO")
    bscale = 1.0 if bscale is None else float(bscale)
    bzero = 0.0 if bzero is None else float(bzero)
    integer = part.dtype.kind in "iu"
    # float32 holds every 16-bit value exactly; wider integers are scaled in float64 first
    work = np.float32 if part.dtype.itemsize <= 2 else np.float64
    out = part.astype(work)
    if bscale != 1.0:
        out *= bscale
    if bzero != 0.0:
        out += bzero
    out = out.astype(np.float32, copy=False)
    blank = _get(header, "BLANK")
    if integer and isinstance(blank, (int, np.integer)):
        out[np.asarray(part) == blank] = np.nan
    return out
