"""Build an image pyramid (``NAME.pyr``, layout in :mod:`.format`) out of core from a FITS image or an exposure.

The input is read through a source of :mod:`.canvas`: one 2-D image, or a
whole exposure (a raw multi-extension file, or the calibrated products of its
CCDs) placed on one canvas by the instrument's mosaic geometry.

Level 0 is read one band of ``tile`` rows at a time (``hdu.section``: only
those rows are read from the file, the file is opened read-only and never
changed) and written as tiles; each coarser level is made from two tile rows
of the level below at a time, ``group_tiles`` tiles across, by NaN-aware 2x2
block means. Peak memory is about one band of the source (``tile x nx``
pixels, a few copies) whatever the number of rows; the page cache is not
counted. A subsample (every ``step``-th row and column, about
``sample_pixels`` pixels) is kept for the stretch limits.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lenghu.viewer.tiles.canvas import PyramidError, open_source
from lenghu.viewer.tiles.format import FORMAT, META, SAMPLE, TILE, VERSION, level_file


@dataclass(frozen=True)
class PyramidOptions:
    """How to build a pyramid.

    Attributes
    ----------
    tile : int
        Tile side, pixels (a power of two, 64 .. 4096).
    hdu : int, str or None
        The FITS HDU (None: the first HDU with 2-D image data).
    sample_pixels : int
        About how many pixels the stretch-limit subsample keeps.
    group_tiles : int
        Tiles across processed at once when making a coarser level (memory: 2 x group_tiles tiles).
    """

    tile: int = TILE
    hdu: int | str | None = None
    sample_pixels: int = 4_000_000
    group_tiles: int = 4

    def __post_init__(self):
        if self.tile < 64 or self.tile > 4096 or self.tile & (self.tile - 1):
            raise ValueError(f"tile must be a power of two in 64..4096, got {self.tile}")
        if self.sample_pixels < 1000:
            raise ValueError("sample_pixels must be >= 1000")
        if self.group_tiles < 1:
            raise ValueError("group_tiles must be >= 1")


@dataclass
class PyramidResult:
    """What :func:`build_pyramid` made."""

    path: Path
    shape: tuple[int, int]
    levels: int
    tiles: int
    seconds: float


def _tiles_of(shape: tuple[int, int], tile: int) -> tuple[int, int]:
    return (max(1, math.ceil(shape[0] / tile)), max(1, math.ceil(shape[1] / tile)))


def _to_tiles(band: np.ndarray, tile: int, tiles_x: int) -> np.ndarray:
    """A band of up to ``tile`` rows -> (tiles_x, tile, tile), NaN-padded, contiguous."""
    padded = np.full((tile, tiles_x * tile), np.nan, dtype=np.float32)
    padded[: band.shape[0], : band.shape[1]] = band
    return np.ascontiguousarray(padded.reshape(tile, tiles_x, tile).transpose(1, 0, 2))


def _half(block: np.ndarray) -> np.ndarray:
    """NaN-aware 2x2 block means of an image with even sides."""
    if not np.isnan(block).any():  # the common case: four strided views, no temporaries of the block's size
        return (block[0::2, 0::2] + block[1::2, 0::2] + block[0::2, 1::2] + block[1::2, 1::2]) * np.float32(0.25)
    h, w = block.shape
    quads = block.reshape(h // 2, 2, w // 2, 2)
    valid = ~np.isnan(quads)
    total = np.where(valid, quads, np.float32(0)).sum(axis=(1, 3), dtype=np.float32)
    count = valid.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.float32(np.nan)).astype(np.float32)


def build_pyramid(source, out: str | Path, options: PyramidOptions | None = None,
                  progress: Callable[[str, float], None] | None = None) -> PyramidResult:
    """Build a ``.pyr`` image pyramid from a FITS image, a 2-D array, or a whole exposure.

    The pyramid appears only whole (built in a temporary folder beside ``out``, then renamed; an
    existing ``out`` is replaced).

    Parameters
    ----------
    source : path, glob, sequence of paths, ndarray or a :mod:`.canvas` source
        A FITS image (the HDU of ``options.hdu``, or the first 2-D one); a 2-D array (numpy or memmap);
        a raw exposure of a mosaic instrument (one HDU per CCD, e.g. WFST: each CCD assembled, placed on
        one canvas); or several calibrated products of one exposure (paths or a glob).
    out : path
        The pyramid folder (conventionally ``NAME.pyr``).
    options : PyramidOptions
    progress : callable, optional
        ``progress(stage, fraction)``.

    Raises
    ------
    PyramidError
        The input is not a readable 2-D image or exposure; products of several exposures, or one CCD twice.
    """
    start = time.perf_counter()
    opt = options or PyramidOptions()
    say = progress or (lambda stage, fraction: None)
    out = Path(out)
    src = open_source(source, opt.hdu)
    t = opt.tile
    ny, nx = src.shape
    if ny < 1 or nx < 1:
        src.close()
        raise PyramidError(f"{src.name}: empty image")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        step = max(1, int(math.sqrt(ny * nx / opt.sample_pixels)))
        samples = []
        # level 0: bands of `tile` rows from the source
        shapes = [(ny, nx)]
        tiles = [_tiles_of((ny, nx), t)]
        with open(work / level_file(0), "wb") as handle:
            for ty in range(tiles[0][0]):
                a, b = ty * t, min(ny, (ty + 1) * t)
                band = src.rows(a, b)
                first = (-a) % step
                samples.append(band[first::step, ::step].ravel().copy())
                _to_tiles(band, t, tiles[0][1]).tofile(handle)
                del band
                say("level 0", (ty + 1) / tiles[0][0])
        src.close()
        # coarser levels, until one tile holds the level
        while tiles[-1] != (1, 1):
            k = len(shapes)
            prev_tiles = tiles[-1]
            shape = ((shapes[-1][0] + 1) // 2, (shapes[-1][1] + 1) // 2)
            new_tiles = _tiles_of(shape, t)
            prev_file = work / level_file(k - 1)

            def prev_tiles_row(cy, c0, c1, _file=prev_file, _n=prev_tiles[1]):
                """Tiles c0 .. c1 of tile row cy of the level below, (c1 - c0, t, t): one read (no memory map)."""
                data = np.fromfile(_file, dtype="<f4", count=(c1 - c0) * t * t, offset=4 * t * t * (cy * _n + c0))
                return data.reshape(c1 - c0, t, t)

            g = opt.group_tiles * 2  # child tiles across per group (even)
            with open(work / level_file(k), "wb") as handle:
                for ty in range(new_tiles[0]):
                    row = np.full((new_tiles[1], t, t), np.nan, dtype=np.float32)
                    for c0 in range(0, prev_tiles[1], g):
                        c1 = min(prev_tiles[1], c0 + g)
                        block = np.full((2 * t, (c1 - c0 + (c1 - c0) % 2) * t), np.nan, dtype=np.float32)
                        for dy in range(2):
                            cy = 2 * ty + dy
                            if cy < prev_tiles[0]:
                                part = prev_tiles_row(cy, c0, c1)
                                block[dy * t:(dy + 1) * t, : (c1 - c0) * t] = part.transpose(1, 0, 2).reshape(
                                    t, (c1 - c0) * t)
                        half = _half(block)  # (t, ceil((c1 - c0) / 2) * t)
                        p0 = c0 // 2
                        n = half.shape[1] // t
                        row[p0:p0 + n] = half.reshape(t, n, t).transpose(1, 0, 2)
                    row.tofile(handle)
            shapes.append(shape)
            tiles.append(new_tiles)
            say(f"level {k}", 1.0)
        sample = np.concatenate(samples) if samples else np.zeros(0, np.float32)
        sample.astype("<f4").tofile(work / SAMPLE)
        from lenghu import __version__

        meta = {
            "format": FORMAT, "version": VERSION, "shape": [ny, nx], "tile": t,
            "levels": [{"factor": 2**k, "shape": list(s), "tiles": list(n), "file": level_file(k)}
                       for k, (s, n) in enumerate(zip(shapes, tiles))],
            "sample": {"file": SAMPLE, "step": step, "count": int(sample.size)},
            "header": src.header, "source": src.name, "created_by": f"lenghu {__version__}",
        }
        if src.mosaic:
            meta["mosaic"] = src.mosaic
        (work / META).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(work, out)
    finally:
        src.close()
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return PyramidResult(out, (ny, nx), len(shapes), sum(a * b for a, b in tiles), time.perf_counter() - start)
