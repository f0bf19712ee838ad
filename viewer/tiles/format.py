"""The on-disk layout of an image pyramid (``NAME.pyr/``), version 1.

A pyramid is a folder::

    NAME.pyr/
      pyramid.json      what the pyramid holds (below)
      level_0.f32       the full-resolution image as tiles (float32 little-endian)
      level_1.f32       2x2 block means of level 0 (NaN-aware), as tiles
      ...
      level_K.f32       the coarsest level: one tile
      sample.f32        a strided subsample of the full-resolution image (float32, 1-D)

Each level file holds ``tiles_y x tiles_x`` tiles of ``tile x tile`` pixels,
tile after tile in row-major tile order (tile (ty, tx) starts at byte
``4 * tile * tile * (ty * tiles_x + tx)``), each tile's pixels row-major
(row i of tile (ty, tx) is image row ``ty * tile + i``; rows grow upwards as
in FITS). Pixels beyond the image edge are NaN. So every tile is one
contiguous read of ``4 * tile^2`` bytes (1 MiB for 512 x 512), and the level
can be memory-mapped.

Why not Zarr: a Zarr array with 512 x 512 chunks stores one file (or one
object) per chunk, 3,000 files for the level 0 of a 0.77 Gpix WFST mosaic,
with a per-chunk metadata path on every read. One flat file per level gives
the same single read per tile with a plain ``numpy.fromfile``.

``pyramid.json`` keys: ``format`` ("lenghu-image-pyramid"), ``version`` (1),
``shape`` ([ny, nx] of the full image), ``tile``, ``levels`` (per level:
``factor`` (2^k), ``shape`` ([ny, nx] of the level), ``tiles`` ([tiles_y,
tiles_x]), ``file``), ``sample`` ({``file``, ``step`` (every step-th row and
column), ``count``}), ``header`` (the source FITS header as text, WCS
included; "" without one), ``source`` (path and HDU), ``created_by``.

Stretch limits (zscale, percentiles) are computed once from ``sample.f32``,
so every tile of every level is shown with the same limits.
"""

from __future__ import annotations

from pathlib import Path

from lenghu.viewer.lod.format import folder_has_format

FORMAT = "lenghu-image-pyramid"
VERSION = 1
META = "pyramid.json"
SAMPLE = "sample.f32"
#: Default tile side (pixels).
TILE = 512


def level_file(level: int) -> str:
    return f"level_{int(level)}.f32"


def is_pyramid(path: str | Path) -> bool:
    """True if ``path`` is a folder with a lenghu image pyramid's ``pyramid.json``."""
    return folder_has_format(path, META, FORMAT)
