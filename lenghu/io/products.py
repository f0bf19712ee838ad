"""Calibrated products and masters as FITS: SCI, VAR, MASK and PROVENANCE.

One file per detector per exposure (DESIGN.md's calibrated-product
contract): ``SCI`` float32 electrons, ``VAR`` float32 electrons^2, ``MASK``
int32 bits (``MP_*`` cards name them), a ``PROVENANCE`` table (role, path,
checksum of every input and calibration file), the software version and the
config hash in the primary header. Files appear only whole.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from astropy.io import fits
from astropy.table import Table

from lenghu import __version__
from lenghu.calib.masks import MASK_DTYPE, MaskBit
from lenghu.calib.masters import MasterFrame
from lenghu.errors import FrameError
from lenghu.io.atomic import TEMP_MARK, TEMP_PREFIX, atomic_path
from lenghu.io.checksum import file_checksum
from lenghu.io.streamed_fits import StreamedImageFile, anonymous_file, image_header as plane_header

_SKIP_KEYS = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
              "EXTNAME", "BZERO", "BSCALE", "BUNIT", "CHECKSUM", "DATASUM", "ZIMAGE", "ZBITPIX", "ZCMPTYPE"}


@dataclass(frozen=True)
class ProvenanceEntry:
    """One file a product depends on."""

    role: str       # raw, bias, dark, flat, input
    path: str
    checksum: str


def _mask_header() -> fits.Header:
    header = fits.Header()
    for key, bit, comment in MaskBit.header_cards():
        header[key] = (bit, comment)
    return header


def _primary(cards: Mapping[str, object], provenance_hash: str, config_hash: str) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    for key, value in cards.items():
        primary.header[key] = value
    primary.header["LENGHUV"] = (__version__, "lenghu version that wrote this file")
    # SHA-256 hex digests fill the card: no room for a comment (see docs/reduce.md)
    primary.header["CONFHASH"] = config_hash[:64]
    primary.header["PROVHASH"] = provenance_hash[:64]
    return primary


def copy_cards(source: fits.Header, target: fits.Header, wcs_only: bool = False) -> None:
    """Copy descriptive cards (or only WCS cards) from a raw header, skipping structural ones."""
    from astropy.wcs import WCS

    if wcs_only:
        if "CTYPE1" not in source:
            return
        wcs = WCS(source, relax=True)
        if wcs.has_celestial:
            target.update(wcs.to_header(relax=True))
        return
    for card in source.cards:
        if card.keyword in _SKIP_KEYS or card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        target.append(card, end=True)


def _provenance_table(entries: Sequence[ProvenanceEntry]) -> tuple[fits.BinTableHDU, str]:
    import hashlib

    table = Table(
        {
            "ROLE": [e.role for e in entries] or np.array([], dtype="U8"),
            "PATH": [e.path for e in entries] or np.array([], dtype="U8"),
            "CHECKSUM": [e.checksum for e in entries] or np.array([], dtype="U64"),
        }
    )
    prov_hash = hashlib.sha256("\n".join(f"{e.role} {e.path} {e.checksum}" for e in entries).encode()).hexdigest()
    return fits.BinTableHDU(table, name="PROVENANCE"), prov_hash


#: The image planes of a product: extension name, type, BUNIT.
PLANES = (("SCI", np.float32, "electron"), ("VAR", np.float32, "electron2"), ("MASK", MASK_DTYPE, None))


class ProductWriter:
    """A calibrated product being written strip by strip (see :func:`stream_image_product`)."""

    def __init__(self, stream: StreamedImageFile, shape: tuple[int, int]):
        self._stream = stream
        self.shape = shape

    def write_rows(self, y0: int, sci: np.ndarray, var: np.ndarray, mask: np.ndarray) -> None:
        """Rows ``y0:y0 + len(sci)`` of SCI (electrons), VAR (electrons^2) and MASK."""
        self._stream.write_rows("SCI", y0, np.asarray(sci, dtype=np.float32))
        self._stream.write_rows("VAR", y0, np.asarray(var, dtype=np.float32))
        self._stream.write_rows("MASK", y0, np.asarray(mask, dtype=MASK_DTYPE))

    def update_primary(self, cards: Mapping[str, object]) -> None:
        """Set cards of the primary header known only at the end (they must be present from the start)."""
        self._stream.update_primary(cards)

    def written(self) -> dict:
        """Sums and rows written through this writer (a part of a :class:`SharedProduct`)."""
        return self._stream.written()


@contextlib.contextmanager
def stream_image_product(
    path: str | Path,
    shape: tuple[int, int],
    primary_cards: Mapping[str, object],
    provenance: Iterable[ProvenanceEntry],
    config_hash: str,
    image_header: fits.Header | None = None,
) -> Iterator[ProductWriter]:
    """A product file preallocated under a temporary name, filled by rows, renamed when whole.

    The caller writes every row of SCI/VAR/MASK through the yielded
    :class:`ProductWriter`; memory stays that of one strip. On an exception,
    or when rows are missing, no file appears at ``path``. The bytes equal
    those of :func:`write_image_product` for the same arrays.
    """
    path = Path(path)
    table, prov_hash = _provenance_table(list(provenance))
    planes = _plane_layout(shape, image_header)
    with anonymous_file(path) as handle:
        # no timestamp in the checksum comments: reruns give identical bytes
        stream = StreamedImageFile(handle, _primary(primary_cards, prov_hash, config_hash), planes, [table],
                                   when="HDU checksum", name=str(path))
        yield ProductWriter(stream, tuple(shape))
        stream.close()


@dataclass
class SharedProduct:
    """A product written by several processes at once (see :func:`begin_shared_product`).

    Picklable: it names the temporary file (beside ``final``, a name the next
    run's clean-up removes if this one dies) and carries the file's layout.
    """

    final: str
    temporary: str
    shape: tuple[int, int]
    stream: StreamedImageFile

    def finished(self) -> bool:
        """Whether :func:`finish_shared_product` already gave the file its name (the temporary is gone and
        the final file is there): a task recomputed after that (its worker died holding the result) must
        not write again."""
        return not os.path.exists(self.temporary) and os.path.exists(self.final)

    @contextlib.contextmanager
    def writer(self) -> Iterator[ProductWriter]:
        """Write some rows in this process; the writer's :meth:`ProductWriter.written` is what
        :func:`finish_shared_product` needs of them."""
        stream = copy.deepcopy(self.stream)  # threads of one process may write parts at once
        with open(self.temporary, "r+b") as handle:
            yield ProductWriter(stream.attach(handle), self.shape)
        stream.detach_closed()


def begin_shared_product(path: str | Path, shape: tuple[int, int], primary_cards: Mapping[str, object],
                         provenance: Iterable[ProvenanceEntry], config_hash: str) -> SharedProduct:
    """Lay out a product under a temporary name for workers to fill row ranges of (:meth:`SharedProduct.writer`).

    The primary cards must all be present now (values may change at the end, not their number). Finish with
    :func:`finish_shared_product`, or :func:`abandon_shared_product` on failure.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table, prov_hash = _provenance_table(list(provenance))
    fd, temporary = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}{TEMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb+") as handle:
            stream = StreamedImageFile(handle, _primary(primary_cards, prov_hash, config_hash),
                                       _plane_layout(shape, None), [table], when="HDU checksum", name=str(path))
            stream.detach()
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return SharedProduct(str(path), temporary, tuple(shape), stream)


def finish_shared_product(product: SharedProduct, parts: Sequence[dict], primary_cards: Mapping[str, object]
                          ) -> tuple[Path, str]:
    """Merge the parts the workers wrote, set the final primary cards, and give the file its name;
    returns its path and SHA-256.

    The file's bytes are hashed while the disk syncs them (both wait on something else than this
    thread: a 4k x 4k master is 0.17 s of hashing and up to 0.2 s of syncing here). Refuses (ValueError,
    the temporary removed) if rows were never written.
    """
    from concurrent.futures import ThreadPoolExecutor

    try:
        with open(product.temporary, "r+b") as handle:
            stream = product.stream.attach(handle)
            stream.merge(parts)
            stream.update_primary(primary_cards)
            stream.close()
            with ThreadPoolExecutor(1) as pool:
                synced = pool.submit(os.fsync, handle.fileno())
                checksum = file_checksum(product.temporary)
                synced.result()
        os.replace(product.temporary, product.final)
    except BaseException:
        abandon_shared_product(product)
        raise
    return Path(product.final), checksum


def abandon_shared_product(product: SharedProduct) -> None:
    """Remove the temporary file of a product that will not be finished."""
    Path(product.temporary).unlink(missing_ok=True)


def _plane_layout(shape: tuple[int, int], image_header: fits.Header | None) -> list:
    """(header, shape, dtype) of the SCI, VAR and MASK planes."""
    extra = image_header if image_header is not None else fits.Header()
    planes = []
    for name, dtype, unit in PLANES:
        cards = extra.copy()
        if unit is None:
            cards.update(_mask_header())
        header = plane_header(name, tuple(shape), dtype, cards)
        if unit is not None:
            header["BUNIT"] = unit
        planes.append((header, tuple(shape), dtype))
    return planes


def write_image_product(
    path: str | Path,
    sci: np.ndarray,
    var: np.ndarray,
    mask: np.ndarray,
    primary_cards: Mapping[str, object],
    provenance: Iterable[ProvenanceEntry],
    config_hash: str,
    image_header: fits.Header | None = None,
) -> Path:
    """Write SCI/VAR/MASK/PROVENANCE atomically from whole arrays; return the path.

    ``image_header`` (WCS and other per-image cards) goes into SCI, VAR and MASK.
    Written in strips of :data:`WRITE_ROWS` rows (no full-frame byte-swapped copies).
    """
    with stream_image_product(path, np.shape(sci), primary_cards, provenance, config_hash, image_header) as out:
        for y0 in range(0, np.shape(sci)[0], WRITE_ROWS):
            y1 = y0 + WRITE_ROWS
            out.write_rows(y0, sci[y0:y1], var[y0:y1], mask[y0:y1])
    return Path(path)


#: Rows per write when a product is written from whole arrays.
WRITE_ROWS = 512


def master_cards(kind: str, detector: str, filter_name: str | None, quality: Mapping[str, object]) -> dict:
    """Primary-header cards of a master: its kind, detector, filter and quality figures."""
    cards: dict[str, object] = {
        "OBSTYPE": (f"MASTER_{kind.upper()}", "lenghu master calibration"),
        "CCDNAME": (detector, "detector"),
    }
    if filter_name:
        cards["FILTER"] = (filter_name, "filter")
    cards.update(quality_cards(quality))
    return cards


def quality_cards(quality: Mapping[str, object]) -> dict:
    """Quality figures as ``HIERARCH LH Q NAME`` cards (NaN and infinity, which FITS cannot hold, as
    ``"undefined"``; floats to 6 decimals)."""
    cards = {}
    for key, value in quality.items():
        if isinstance(value, float) and not np.isfinite(value):
            value = "undefined"  # e.g. noise of a 1-frame master
        elif isinstance(value, float):
            value = round(value, 6)
        cards[f"HIERARCH LH Q {key.upper()}"[:40]] = value
    return cards


def read_quality(path: str | Path) -> dict:
    """The quality figures in a master's primary header (:func:`quality_cards`; ``"undefined"`` as NaN)."""
    with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
        header = hdul[0].header
        figures = {}
        for card in header.cards:
            if card.keyword.startswith("LH Q "):
                value = card.value
                figures[card.keyword[5:].lower()] = float("nan") if value == "undefined" else value
    return figures


def write_master(path: str | Path, master: MasterFrame, detector: str, filter_name: str | None,
                 provenance: Iterable[ProvenanceEntry], config_hash: str) -> Path:
    """Write a master frame with its quality figures in the primary header."""
    cards = master_cards(master.kind, detector, filter_name, master.quality)
    return write_image_product(path, master.image, master.variance, master.mask, cards, provenance, config_hash)


def read_master(path: str | Path, kind: str) -> MasterFrame:
    """Read a master written by :func:`write_master`, memory-mapped (rows load when used)."""
    try:
        with fits.open(path, mode="readonly", memmap=True) as hdul:
            return MasterFrame(
                kind=kind,
                image=hdul["SCI"].data,
                variance=hdul["VAR"].data,
                mask=hdul["MASK"].data,
                path=str(path),
            )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise FrameError(path, f"not a readable lenghu master ({exc})") from exc


def update_product_wcs(path: str | Path, wcs, cards: Mapping[str, object]) -> Path:
    """Replace the celestial WCS of a product's image extensions (None: keep it) and add ``cards``
    to its primary header; rewritten atomically, checksums updated."""
    from astropy.wcs import WCS

    path = Path(path)
    with fits.open(path, mode="readonly", memmap=False) as hdul:
        hdul = fits.HDUList([hdu.copy() for hdu in hdul])
    for key, value in cards.items():
        hdul[0].header[key] = value
    if wcs is not None:
        new = wcs.to_header(relax=True)
        for name in ("SCI", "VAR", "MASK"):
            header = hdul[name].header
            old = WCS(header, relax=True).to_header(relax=True) if "CTYPE1" in header else fits.Header()
            for key in list(old.keys()) + [k for k in header if k.startswith(("A_", "B_", "AP_", "BP_"))]:
                header.remove(key, ignore_missing=True, remove_all=True)
            header.update(new)
    for hdu in hdul:
        hdu.add_checksum(when="HDU checksum")
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="exception")
    return path


class MasterFile:
    """A master on disk, read by rows (``rows`` gives a :class:`MasterFrame` of that strip).

    Positioned reads rather than a memory map: the pages of a memory-mapped
    master stay in the process's resident memory once touched (three planes
    of a full-size CCD are 1 GB per master), which Dask's worker memory limit
    counts; a strip read this way is freed with the strip.
    """

    def __init__(self, path: str | Path, kind: str):
        from lenghu.io.fitsfile import _BITPIX_DTYPES, FitsFile

        self.path = str(path)
        self.kind = kind
        fitsfile = FitsFile(path)  # FrameError subclasses name the file
        self._planes = {name: fitsfile.hdu(name) for name in ("SCI", "VAR", "MASK")}
        shapes = {info.image_shape for info in self._planes.values()}
        if len(shapes) != 1 or fitsfile.compression is not None or any(i.is_compressed_image for i in self._planes.values()):
            raise FrameError(path, f"not a lenghu master (planes of shapes {sorted(shapes)}, or compressed)")
        self.shape = shapes.pop()
        self._dtypes = {name: np.dtype(_BITPIX_DTYPES[info.bitpix]) for name, info in self._planes.items()}

    def _read(self, name: str, y0: int, y1: int) -> np.ndarray:
        info, dtype = self._planes[name], self._dtypes[name]
        nx = self.shape[1]
        data = np.fromfile(self.path, dtype=dtype, count=(y1 - y0) * nx, offset=info.data_offset + y0 * nx * dtype.itemsize)
        if data.size != (y1 - y0) * nx:
            raise FrameError(self.path, f"{name} rows {y0}:{y1} cannot be read (file truncated)")
        return data.reshape(y1 - y0, nx).astype(dtype.newbyteorder("="))

    def image_rows(self, y0: int, y1: int) -> MasterFrame:
        """Rows ``y0:y1`` of the image alone (variance and mask empty): what master inputs subtract."""
        y0, y1 = max(0, y0), min(self.shape[0], y1)
        empty = np.empty((0, self.shape[1]), dtype=np.float32)
        return MasterFrame(kind=self.kind, image=self._read("SCI", y0, y1), variance=empty,
                           mask=empty.astype(MASK_DTYPE), path=self.path)

    def rows(self, y0: int, y1: int) -> MasterFrame:
        """Rows ``y0:y1`` of image, variance and mask, in memory."""
        y0, y1 = max(0, y0), min(self.shape[0], y1)
        return MasterFrame(kind=self.kind, image=self._read("SCI", y0, y1), variance=self._read("VAR", y0, y1),
                           mask=self._read("MASK", y0, y1), path=self.path)
