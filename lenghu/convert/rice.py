"""Rice coding of 16-bit images, as the FITS tile-compression convention defines it (``RICE_1``).

Hand-written because the only implementation at hand, CFITSIO's (used by
``fpack`` and astropy), codes about 235 MB/s per core on this machine: a
raw WFST exposure then takes 6.5 s to compress with both cores, more than
five times a plain copy. This one keeps the same bitstream (tests compare
the bytes with ``fpack``'s for the same tiles) and emits each pixel's code
with one shift into a 64-bit accumulator, flushing 32 bits at a time.

The stream of one tile (Pence, White & Seaman 2010; White & Percival's
``rcomp``): the first pixel as 16 bits; then blocks of ``BLOCK`` pixels, each
pixel coded as the difference from the one before (wrapped to 16 bits)
mapped to non-negative ``2d`` or ``-2d - 1``. A block starts with 4 bits:
0 when all its differences are 0, 15 when they are written plainly (16
bits each), else ``fs + 1``, where ``fs`` is the number of low bits written
as they are; the high part ``v >> fs`` is written in unary (that many 0s,
then a 1). The last byte is padded with 0 bits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Pixels per coding block (``ZVAL1`` of ``BLOCKSIZE``; fpack's and CFITSIO's default).
BLOCK = 32
_FS_BITS = 4
_FS_MAX = 14


@njit(cache=True, nogil=True, inline="always")
def _flush64(out, pos, acc):
    """Write the 64 bits of ``acc`` big-endian at ``pos``; return the new position."""
    for k in range(8):
        out[pos + k] = np.uint8((acc >> np.uint64(56 - 8 * k)) & np.uint64(0xFF))
    return pos + 8


@njit(cache=True, nogil=True, inline="always")
def _value(values, big_endian, k):
    """Pixel ``k`` of a tile: ``values`` int16, or (``big_endian``) uint8 FITS bytes."""
    if big_endian:
        return np.int32(np.int16((np.int32(values[2 * k]) << 8) | np.int32(values[2 * k + 1])))
    return np.int32(values[k])


@njit(cache=True, nogil=True, inline="always")
def _put(out, pos, acc, nacc, code, length):
    """Append the ``length`` (1 to 32) low bits of ``code``; returns (pos, acc, nacc)."""
    if nacc + length <= 64:
        return pos, (acc << np.uint64(length)) | np.uint64(code), nacc + length
    room = 64 - nacc  # the high bits of the code that still fit, then 64 bits out
    rest = length - room
    acc = (acc << np.uint64(room)) | (np.uint64(code) >> np.uint64(rest))
    pos = _flush64(out, pos, acc)
    return pos, np.uint64(code) & ((np.uint64(1) << np.uint64(rest)) - np.uint64(1)), rest


@njit(cache=True, nogil=True)
def _rice_tile(values, n, big_endian, out, pos):
    """Code one tile of ``n`` pixels (see :func:`_value`) into ``out`` from ``pos``; return the end position.

    Codes go into a 64-bit accumulator written out 8 bytes at a time: the branch that flushes it is
    taken once every ~9 pixels (32-bit flushes, once every ~4, cost a fifth of the speed in mispredictions).
    """
    diff = np.empty(BLOCK, dtype=np.uint32)
    last = _value(values, big_endian, 0)
    acc = np.uint64(np.uint16(last))  # the first value, as 16 bits
    nacc = 16
    i = 0
    while i < n:
        size = min(BLOCK, n - i)
        total = 0
        for j in range(size):
            nxt = _value(values, big_endian, i + j)
            d = ((nxt - last + 32768) & 0xFFFF) - 32768  # the difference wrapped to 16 bits
            last = nxt
            v = (~(d << 1)) if d < 0 else (d << 1)
            diff[j] = np.uint32(v)
            total += v
        # the split: bits of ((sum - size // 2 - 1) // size) >> 1, as rcomp's truncating division
        numerator = total - size // 2 - 1
        p = (numerator // size if numerator > 0 else 0) >> 1
        fs = 0
        while p > 0:
            p >>= 1
            fs += 1
        if fs >= _FS_MAX:
            pos, acc, nacc = _put(out, pos, acc, nacc, _FS_MAX + 1, _FS_BITS)
            for j in range(size):
                pos, acc, nacc = _put(out, pos, acc, nacc, diff[j], 16)
        elif fs == 0 and total == 0:
            pos, acc, nacc = _put(out, pos, acc, nacc, 0, _FS_BITS)
        else:
            pos, acc, nacc = _put(out, pos, acc, nacc, fs + 1, _FS_BITS)
            mask = np.uint32((1 << fs) - 1)
            lead = np.uint32(1) << np.uint32(fs)
            for j in range(size):
                v = diff[j]
                top = np.int64(v >> np.uint32(fs))
                if top + fs <= 31:  # the whole code at once: top 0s, a 1, fs low bits
                    pos, acc, nacc = _put(out, pos, acc, nacc, lead | (v & mask), top + 1 + fs)
                else:  # a long run of 0s (an outlier): 32 at a time
                    while top > 0:
                        step = min(top, 32)
                        pos, acc, nacc = _put(out, pos, acc, nacc, 0, step)
                        top -= step
                    pos, acc, nacc = _put(out, pos, acc, nacc, lead | (v & mask), fs + 1)
        i += size
    while nacc >= 8:  # whole bytes left
        out[pos] = np.uint8((acc >> np.uint64(nacc - 8)) & np.uint64(0xFF))
        pos += 1
        nacc -= 8
    if nacc > 0:  # the last bits, padded with 0s
        out[pos] = np.uint8((acc << np.uint64(8 - nacc)) & np.uint64(0xFF))
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def rice_tile_16(values, out, pos):
    """Code one tile of int16 ``values`` into ``out`` from byte ``pos``; return the position after it.

    ``out`` must have room for :func:`tile_bound` bytes from ``pos`` (the worst case: every block
    written plainly).
    """
    return _rice_tile(values, values.shape[0], False, out, pos)


@njit(cache=True, nogil=True)
def rice_rows_16(image, out, pos, sizes):
    """Code every row of the 2-D int16 ``image`` as one tile, one after another into ``out`` from ``pos``;
    each tile's length goes to ``sizes`` (one per row). Returns the position after the last tile."""
    for r in range(image.shape[0]):
        start = pos
        pos = rice_tile_16(image[r], out, pos)
        sizes[r] = pos - start
    return pos


@njit(cache=True, nogil=True)
def rice_rows_16_big_endian(raw, nx, out, pos, sizes):
    """:func:`rice_rows_16` of rows given as FITS bytes (big-endian int16, ``2 * nx`` bytes a row)."""
    for r in range(sizes.shape[0]):
        start = pos
        pos = _rice_tile(raw[r * 2 * nx:(r + 1) * 2 * nx], nx, True, out, pos)
        sizes[r] = pos - start
    return pos


def tile_bound(pixels: int) -> int:
    """Most bytes one tile of ``pixels`` 16-bit values can take."""
    return 2 + 2 * pixels + pixels // BLOCK + 8


def warm_up() -> None:
    """Compile the coder into numba's on-disk cache (``make setup`` does it once)."""
    image = np.arange(2 * 70, dtype=np.int16).reshape(2, 70)
    out = np.empty(2 * tile_bound(70), dtype=np.uint8)
    rice_rows_16(image, out, 0, np.empty(2, dtype=np.int64))
    raw = image.astype(">i2").view(np.uint8).reshape(-1)
    rice_rows_16_big_endian(raw, 70, out, 0, np.empty(2, dtype=np.int64))


if __name__ == "__main__":  # python -m lenghu.convert.rice
    warm_up()
