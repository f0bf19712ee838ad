"""Tile-compressed (``RICE_1``) FITS extensions written without ``fpack``, byte for byte as ``fpack -r`` writes them.

For the common case of a raw camera file, 16-bit integer images with plain
headers, :func:`code_rows` codes each row as one tile with
:mod:`lenghu.convert.rice` and lays out the binary table the tile-compression
convention prescribes: the header ``fpack`` writes (its table and ``Z``
keywords, then the image's own cards with the structural ones renamed to
``ZTENSION``, ``ZBITPIX``, ...), one descriptor per row, the heap of tiles
(:func:`compressed_hdu`).
Anything else (other pixel types, checksums, ``BLANK``, keywords of the
convention already present, unusual card order) is left to ``fpack``
(:func:`why_not_rice`). tests/lenghu/test_fz_rice.py compares whole files
with ``fpack``'s output.
"""

from __future__ import annotations

import mmap
import os

import numpy as np
from astropy.io import fits

from lenghu.convert.rice import BLOCK, rice_rows_16_big_endian, tile_bound

CARD = 80
BLOCK_BYTES = 2880
_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "PCOUNT", "GCOUNT")
_RENAMED = {"XTENSION": "ZTENSION", "BITPIX": "ZBITPIX", "NAXIS": "ZNAXIS", "NAXIS1": "ZNAXIS1",
            "NAXIS2": "ZNAXIS2", "PCOUNT": "ZPCOUNT", "GCOUNT": "ZGCOUNT"}
#: Keywords whose presence makes fpack write something else than this module does.
_DECLINED = {"CHECKSUM", "DATASUM", "BLANK", "THEAP", "TFIELDS", "EXTEND", "SIMPLE", "END"}
#: Rows coded per call of the coder.
CHUNK_ROWS = 256
#: Most input bytes coded as one part (one task of the thread pool, one memory map): memory stays
#: bounded whatever the image size.
PART_BYTES = 96 * 2**20


def header_cards(raw: bytes) -> list[str]:
    """The 80-character cards of a header block, up to (not including) END."""
    cards = []
    for i in range(0, len(raw), CARD):
        card = raw[i:i + CARD].decode("ascii")
        if card[:8] == "END     ":
            return cards
        cards.append(card)
    raise ValueError("header without END")


def why_not_rice(cards: list[str]) -> str | None:
    """None if this image extension's header can be compressed here, else why not (fpack does it then)."""
    keys = [c[:8].rstrip() for c in cards]
    if keys[:7] != list(_STRUCTURAL):
        return "structural cards not in the standard order"
    values = {k: c[10:30].strip() for k, c in zip(keys[:7], cards[:7]) if c[8:10] == "= "}
    if values.get("XTENSION", "").strip("'").strip() != "IMAGE" or values.get("BITPIX") != "16" or \
            values.get("NAXIS") != "2" or values.get("PCOUNT") != "0" or values.get("GCOUNT") != "1":
        return "not a 2-D 16-bit image extension"
    if int(values["NAXIS1"]) < 1 or int(values["NAXIS2"]) < 1:
        return "empty image"
    for key in keys[7:]:
        if key in _DECLINED or key in _STRUCTURAL or key.startswith(("Z", "TTYPE", "TFORM", "TUNIT", "TDIM")):
            return f"keyword {key}"
    return None


def _card(key: str, value, comment: str) -> str:
    return fits.Card(key, value, comment).image


def compressed_header(cards: list[str], heap_bytes: int, longest_tile: int) -> bytes:
    """The header fpack writes for the image whose cards are ``cards`` (see :func:`why_not_rice`)."""
    nx, ny = int(cards[3][10:30]), int(cards[4][10:30])
    table = [
        _card("XTENSION", "BINTABLE", "binary table extension"),
        _card("BITPIX", 8, "8-bit bytes"),
        _card("NAXIS", 2, "2-dimensional binary table"),
        _card("NAXIS1", 8, "width of table in bytes"),
        _card("NAXIS2", ny, "number of rows in table"),
        _card("PCOUNT", heap_bytes, "size of special data area"),
        _card("GCOUNT", 1, "one data group (required keyword)"),
        _card("TFIELDS", 1, "number of fields in each row"),
        _card("TTYPE1", "COMPRESSED_DATA", "label for field   1"),
        _card("TFORM1", f"1PB({longest_tile})", "data format of field: variable length array"),
        _card("ZIMAGE", True, "extension contains compressed image"),
        _card("ZTILE1", nx, "size of tiles to be compressed"),
        _card("ZTILE2", 1, "size of tiles to be compressed"),
        _card("ZCMPTYPE", "RICE_1", "compression algorithm"),
        _card("ZNAME1", "BLOCKSIZE", "compression block size"),
        _card("ZVAL1", BLOCK, "pixels per block"),
        _card("ZNAME2", "BYTEPIX", "bytes per pixel (1, 2, 4, or 8)"),
        _card("ZVAL2", 2, "bytes per pixel (1, 2, 4, or 8)"),
    ]
    image = [_RENAMED[c[:8].rstrip()].ljust(8) + c[8:] if i < 7 else c for i, c in enumerate(cards)]
    text = "".join(table + image) + "END".ljust(CARD)
    return (text + " " * (-len(text) % BLOCK_BYTES)).encode("ascii")


def code_rows(path: str, data_offset: int, shape: tuple[int, int], y0: int, y1: int,
              heap: np.ndarray | None = None) -> tuple[np.ndarray, memoryview]:
    """Rows ``y0:y1`` of the 16-bit image at ``data_offset`` coded as tiles: their sizes, and the tiles.

    The rows are coded from a memory map of them (callers bound ``y1 - y0``: see :data:`PART_BYTES`),
    :data:`CHUNK_ROWS` rows per call of the coder; the tiles go into ``heap`` (a uint8 buffer,
    replaced by a new one when smaller than the worst case :func:`heap_bound`), of which only the pages
    used are ever touched. Reusing buffers matters: memory a process touches for the first time costs
    about as much as coding it on this machine.
    """
    ny, nx = shape
    if heap is None or heap.size < heap_bound(y1 - y0, nx):
        heap = np.empty(heap_bound(y1 - y0, nx), dtype=np.uint8)
    sizes = np.empty(y1 - y0, dtype=np.int64)
    row_bytes = 2 * nx
    # The rows are coded straight from a memory map of the file (no copy of 170 MB per CCD); the map is
    # of these rows only, and dropped at the end.
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if data_offset + y1 * row_bytes > size:
            raise OSError(f"{path}: image data end before row {y1}")
        start = data_offset + y0 * row_bytes
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        # MAP_POPULATE: the cached pages are mapped in one call, not fault by fault.
        with mmap.mmap(handle.fileno(), start + (y1 - y0) * row_bytes - aligned, prot=mmap.PROT_READ,
                       flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0), offset=aligned) as mapped:
            rows = np.frombuffer(mapped, dtype=np.uint8, offset=start - aligned, count=(y1 - y0) * row_bytes)
            pos = 0
            for a in range(0, y1 - y0, CHUNK_ROWS):
                b = min(y1 - y0, a + CHUNK_ROWS)
                pos = rice_rows_16_big_endian(rows[a * row_bytes:b * row_bytes], nx, heap, pos, sizes[a:b])
            del rows
    return sizes, memoryview(heap)[:pos]


def heap_bound(rows: int, nx: int) -> int:
    """Most bytes ``rows`` tiles of ``nx`` pixels can take."""
    return rows * tile_bound(nx)


def compressed_hdu(cards: list[str], parts: list[tuple[np.ndarray, memoryview]]) -> list:
    """The pieces of the compressed HDU (header, descriptors, tiles..., padding) from the coded row ranges
    ``parts`` (:func:`code_rows`, in row order), to be written one after another."""
    sizes = np.concatenate([p[0] for p in parts])
    heap_bytes = int(sizes.sum())
    descriptors = np.empty((sizes.size, 2), dtype=">i4")
    descriptors[:, 0] = sizes
    descriptors[0, 1] = 0
    descriptors[1:, 1] = np.cumsum(sizes)[:-1]
    padding = b"\0" * (-(descriptors.nbytes + heap_bytes) % BLOCK_BYTES)
    return [compressed_header(cards, heap_bytes, int(sizes.max())), descriptors.tobytes(),
            *[p[1] for p in parts], padding]
