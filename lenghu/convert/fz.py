"""FITS tile compression (``.fz``) and back, with CFITSIO's ``fpack``/``funpack``.

Why CFITSIO's tools and not astropy's ``CompImageHDU``: astropy rebuilds the
image header when it compresses and decompresses, and on real files that loses
cards (duplicate keywords, the comments of BSCALE/BZERO/EXTNAME, non-standard
ESO-LOG cards, blank cards) and drops BSCALE/BZERO from raw integer data.
``fpack``/``funpack`` are the reference implementation of the convention:
they copy every card, restore the original file exactly (headers and data;
padding comes back as zeros), stream tile by tile in little memory, and are
fast. They come with Debian's ``libcfitsio-bin``.

Lossless by default: integer images are Rice-compressed (``-r``); a file
with any floating-point image is GZIP_2-compressed with no quantisation
(``-g2 -q 0``), which is lossless for floats too. Quantised floats only when
asked (``quantize=Q``: ``-r -qS Q`` with a fixed dither seed S, so the output is
reproducible); the quantisation is then recorded in the compressed header
(``ZQUANTIZ = 'SUBTRACTIVE_DITHER_1'``, ``ZDITHER0``), and ``lenghu info``
reports the HDU as quantised.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lenghu.errors import FrameError

#: Dither seed for quantised floats (any fixed value in 1..10000 makes the output reproducible).
DITHER_SEED = 1
ALGORITHMS = {"rice": ["-r"], "gzip1": ["-g1"], "gzip2": ["-g2"], "hcompress": ["-h"]}


class CompressionUnsupportedError(FrameError):
    """The tile-compression convention (as CFITSIO implements it) cannot hold this image."""


class ToolMissingError(FrameError):
    """An external tool the conversion needs is not installed."""


@dataclass(frozen=True)
class FzResult:
    """What :func:`compress` did.

    Attributes
    ----------
    path : Path
    options : tuple of str
        The fpack options used.
    lossless : bool
        False only when floats were quantised.
    quantize : float or None
    """

    path: Path
    options: tuple[str, ...]
    lossless: bool
    quantize: float | None


def _tool(name: str, source: Path) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise ToolMissingError(source, f"{name} is not installed (Debian package libcfitsio-bin; `make setup` installs it)")
    return exe


def has_float_images(path: str | Path) -> bool:
    """True if any image HDU of the FITS file stores floating-point pixels.

    Raises
    ------
    CompressionUnsupportedError
        An image has 64-bit integer pixels, which CFITSIO cannot tile-compress.
    """
    from lenghu.io.fitsfile import FitsFile

    images = FitsFile(path).images()
    wide = [info.index for info in images if info.bitpix == 64]
    if wide:
        raise CompressionUnsupportedError(
            path, f"HDU {wide}: 64-bit integer images cannot be tile-compressed (CFITSIO supports BITPIX 8, 16, 32, -32, -64)"
        )
    return any(info.bitpix < 0 for info in images)


def fpack_options(float_images: bool, quantize: float | None = None, algorithm: str | None = None) -> list[str]:
    """The fpack options for a file (see the module docstring).

    Examples
    --------
    >>> fpack_options(False)
    ['-r']
    >>> fpack_options(True)
    ['-g2', '-q', '0']
    >>> fpack_options(True, quantize=4)
    ['-r', '-q1', '4']
    """
    if quantize is not None:
        if quantize <= 0:
            raise ValueError("quantize must be > 0 (omit it for lossless compression)")
        return [*ALGORITHMS[algorithm or "rice"], f"-q{DITHER_SEED}", f"{quantize:g}"]
    if float_images:
        if algorithm not in (None, "gzip1", "gzip2"):
            raise ValueError("lossless compression of floating-point images needs gzip1 or gzip2")
        return [*ALGORITHMS[algorithm or "gzip2"], "-q", "0"]
    return list(ALGORITHMS[algorithm or "rice"])


def _run(args: list[str], source: Path) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FrameError(source, f"{Path(args[0]).name} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")


def compress(src: str | Path, out: str | Path, quantize: float | None = None, algorithm: str | None = None,
             workers: int | None = None) -> FzResult:
    """Tile-compress the FITS file ``src`` (plain or ``.gz``) into ``out`` (which must not exist yet).

    A plain multi-extension file whose primary HDU holds no data (a raw
    mosaic exposure) is compressed one extension per ``fpack`` process,
    ``workers`` at a time (default: one per core), and the pieces are joined
    in order: ``fpack`` is single-threaded and compresses each HDU on its own,
    so the joined file is byte for byte the one a single ``fpack`` run writes
    (``tests/lenghu/test_convert.py``), in a fraction of the time.
    """
    src, out = Path(src), Path(out)
    floats = has_float_images(src)
    options = fpack_options(floats, quantize, algorithm)
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    plan = _split_plan(src)
    if plan is not None and options == ["-r"]:
        _compress_rice(src, out, options, plan, workers)
    elif plan is None or workers == 1:
        _run([_tool("fpack", src), "-C", *options, "-O", str(out), str(src)], src)
    else:
        _compress_pieces(src, out, options, plan, workers)
    return FzResult(out, tuple(options), quantize is None or not floats, quantize)


def _compress_rice(src: Path, out: Path, options: list[str], plan: list[tuple[int, int]], workers: int) -> None:
    """Lossless Rice compression of a plain multi-extension file, ``workers`` extensions at a time.

    16-bit image extensions with plain headers are coded here (:mod:`lenghu.convert.fz_rice`: fpack's
    bytes at about twice its speed); every other extension, and the primary HDU, through ``fpack`` as in
    :func:`_compress_pieces`. At most ``2 * workers`` coded row ranges are held in memory.
    """
    from concurrent.futures import ThreadPoolExecutor

    from lenghu.convert.fz_rice import PART_BYTES, code_rows, header_cards, why_not_rice
    from lenghu.io.fitsfile import FitsFile

    hdus = FitsFile(src).hdus
    fpack = _tool("fpack", src)

    def primary_bytes() -> bytes:
        raw, packed = out.parent / f".{out.name}.0.fits", out.parent / f".{out.name}.0.fz"
        try:
            with open(raw, "wb") as handle:
                _copy_range(src, *plan[0], handle)
            _run([fpack, "-C", *options, "-O", str(packed), str(raw)], src)
            return packed.read_bytes()
        finally:
            raw.unlink(missing_ok=True)
            packed.unlink(missing_ok=True)

    def fpacked(i: int) -> list:
        packed = _fpack_piece(fpack, src, out, options, plan, i)
        try:
            data = packed.read_bytes()
            return [data[FitsFile(packed).hdus[1].header_offset:]]
        finally:
            packed.unlink(missing_ok=True)

    # One heap buffer per row range in flight, reused: never more are in flight than buffers exist.
    buffers: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(2 * workers):
        buffers.put(None)

    def coded(*args):
        heap = buffers.get()
        try:
            sizes, tiles = code_rows(*args, heap=heap)
        except BaseException:
            buffers.put(heap)
            raise
        return sizes, tiles, tiles.obj  # the buffer goes back to the queue once the tiles are written

    # Jobs: an extension's row ranges (RICE_PARTS each, so that the last extensions keep every thread
    # busy), or a whole extension left to fpack. Each pending entry makes its HDU's pieces when written.
    jobs = []
    for i in range(1, len(plan)):
        info = hdus[i]
        with open(src, "rb") as handle:
            handle.seek(info.header_offset)
            cards = header_cards(handle.read(info.data_offset - info.header_offset))
        if why_not_rice(cards) is None:
            ny, nx = info.image_shape
            parts = max(RICE_PARTS, -(-ny * nx * 2 // PART_BYTES))
            edges = sorted({round(k * ny / parts) for k in range(parts + 1)})
            jobs.append((cards, [(coded, str(src), info.data_offset, info.image_shape, a, b)
                                 for a, b in zip(edges[:-1], edges[1:])]))
        else:
            jobs.append((None, [(fpacked, i)]))
    pool = ThreadPoolExecutor(workers)
    try:
        with open(out, "wb") as handle:
            head = pool.submit(primary_bytes)
            pending, running = [], 0
            for cards, calls in jobs:
                while pending and running + len(calls) > 2 * workers:  # the oldest is written before more start
                    running -= _write_hdu(handle, head, pending.pop(0), buffers)
                pending.append((cards, [pool.submit(*call) for call in calls]))
                running += len(calls)
            while pending:
                _write_hdu(handle, head, pending.pop(0), buffers)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on a failure, nothing more starts


#: Fewest row ranges a Rice-coded extension is split into (each one job for the thread pool; more for
#: images above fz_rice.PART_BYTES).
RICE_PARTS = 2


def _write_hdu(handle, head, entry, buffers) -> int:
    """Write the primary HDU (first time only), then one extension's pieces; return its job count.

    The heap buffers of coded row ranges go back to ``buffers`` once written (or on failure)."""
    from lenghu.convert.fz_rice import compressed_hdu

    cards, futures = entry
    try:
        if handle.tell() == 0:
            handle.write(head.result())
        results = [f.result() for f in futures]
        pieces = compressed_hdu(cards, [r[:2] for r in results]) if cards is not None else results[0]
        start = handle.tell()
        for piece in pieces:
            handle.write(piece)
        handle.flush()
        # Start writing these bytes to the disk now rather than in the final fsync (which then waits
        # for less); the pages are dropped from the cache once written.
        os.posix_fadvise(handle.fileno(), start, handle.tell() - start, os.POSIX_FADV_DONTNEED)
    finally:
        if cards is not None:
            for f in futures:
                if f.done() and f.exception() is None:
                    buffers.put(f.result()[2])
    return len(futures)


def _fpack_piece(fpack: str, src: Path, out: Path, options: list[str], plan, i: int) -> Path:
    """``fpack`` of the primary HDU and extension ``i`` alone (a scratch file next to ``out``)."""
    start, stop = plan[i]
    raw, packed = out.parent / f".{out.name}.{i}.fits", out.parent / f".{out.name}.{i}.fz"
    try:
        with open(raw, "wb") as handle:
            _copy_range(src, *plan[0], handle)
            _copy_range(src, start, stop, handle)
        _run([fpack, "-C", *options, "-O", str(packed), str(raw)], src)
    finally:
        raw.unlink(missing_ok=True)
    return packed


def _split_plan(src: Path) -> list[tuple[int, int]] | None:
    """Byte ranges (start, stop) of the primary HDU and of each extension, or None when the file is
    not one to split: compressed on disk, a single HDU, or a primary HDU with data."""
    from lenghu.io.fitsfile import FitsFile, compression

    if compression(src) is not None:
        return None
    hdus = FitsFile(src).hdus
    if len(hdus) < 3 or hdus[0].data_size > 0:
        return None
    starts = [info.header_offset for info in hdus] + [src.stat().st_size]
    return list(zip(starts[:-1], starts[1:]))


def _copy_range(src: Path, start: int, stop: int, out) -> None:
    """Append bytes ``start:stop`` of ``src`` to the open binary file ``out`` (in-kernel copy)."""
    with open(src, "rb") as handle:
        offset = start
        while offset < stop:
            done = os.copy_file_range(handle.fileno(), out.fileno(), stop - offset, offset)
            if done == 0:
                raise FrameError(src, f"file ended at byte {offset}, expected {stop}")
            offset += done


def _compress_pieces(src: Path, out: Path, options: list[str], plan: list[tuple[int, int]], workers: int) -> None:
    """fpack each extension (with the primary HDU in front) in its own process; join the results.

    Each piece's input and output are scratch files next to ``out``, deleted as soon as they are
    joined, so they live in the page cache only; at most ``workers`` pieces exist at a time.
    """
    from concurrent.futures import ThreadPoolExecutor

    from lenghu.io.fitsfile import FitsFile

    fpack = _tool("fpack", src)
    pending = []
    try:
        with ThreadPoolExecutor(workers) as pool, open(out, "wb") as handle:
            pending = [pool.submit(_fpack_piece, fpack, src, out, options, plan, i) for i in range(1, len(plan))]
            for i, future in enumerate(pending):
                packed = future.result()
                try:
                    # the first piece brings the primary HDU as fpack writes it; the others skip theirs
                    skip = 0 if i == 0 else FitsFile(packed).hdus[1].header_offset
                    _copy_range(packed, skip, packed.stat().st_size, handle)
                finally:
                    packed.unlink(missing_ok=True)
    finally:
        for future in pending:
            if future.done() and future.exception() is None:
                future.result().unlink(missing_ok=True)


def decompress(src: str | Path, out: str | Path) -> Path:
    """Restore the ``.fz`` file ``src`` into the plain FITS file ``out`` (which must not exist yet)."""
    src, out = Path(src), Path(out)
    _run([_tool("funpack", src), "-C", "-O", str(out), str(src)], src)
    return out
