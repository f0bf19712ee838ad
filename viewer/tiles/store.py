"""Read an image pyramid (``.pyr``): tiles on demand, the stretch-limit sample, the WCS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from lenghu.errors import LenghuError
from lenghu.viewer.tiles.format import FORMAT, META, VERSION


class PyramidReadError(LenghuError):
    """A folder is not a readable lenghu image pyramid."""


@dataclass(frozen=True)
class Level:
    """One level of a pyramid: ``factor`` full-resolution pixels per pixel along each axis."""

    index: int
    factor: int
    shape: tuple[int, int]
    tiles: tuple[int, int]
    file: Path
    first: int  # global index of the level's tile (0, 0)


class _Count:
    """What :class:`~lenghu.viewer.lod.NodeLoader` reads of a store's ``tree``: the number of items."""

    def __init__(self, n: int):
        self.n = n


class TileStore:
    """An image pyramid opened for reading.

    Tiles have one global index, coarsest level first: index 0 is the single
    tile of the coarsest level (what a first frame draws), so the store can be
    read by :class:`lenghu.viewer.lod.NodeLoader` (``tree.n``, ``read_node``).

    Parameters
    ----------
    path : path to a ``.pyr`` folder
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            meta = json.loads((self.path / META).read_text())
        except (OSError, ValueError) as exc:
            raise PyramidReadError(f"{self.path}: not a lenghu image pyramid ({exc})") from exc
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise PyramidReadError(f"{self.path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                                   f"expected {FORMAT!r} {VERSION}")
        self.meta = meta
        self.tile = int(meta["tile"])
        self.shape = tuple(int(v) for v in meta["shape"])
        levels = []
        first = 0
        for k in reversed(range(len(meta["levels"]))):
            m = meta["levels"][k]
            tiles = (int(m["tiles"][0]), int(m["tiles"][1]))
            path = self.path / m["file"]
            expected = tiles[0] * tiles[1] * self.tile * self.tile * 4
            if not path.is_file() or path.stat().st_size != expected:
                raise PyramidReadError(f"{path}: missing or not {expected} bytes (truncated pyramid?)")
            levels.append(Level(k, int(m["factor"]), (int(m["shape"][0]), int(m["shape"][1])), tiles, path, first))
            first += tiles[0] * tiles[1]
        self.levels: list[Level] = sorted(levels, key=lambda lv: lv.index)
        if self.levels[-1].tiles != (1, 1):
            raise PyramidReadError(f"{self.path}: the coarsest level is not one tile")
        self.n_tiles = first
        self.tree = _Count(first)
        self._starts = np.array([lv.first for lv in self.levels], dtype=np.int64)

    # ---------------------------------------------------------------- indexing
    @property
    def top(self) -> int:
        """Index of the coarsest level."""
        return len(self.levels) - 1

    def index(self, level: int, ty: int, tx: int) -> int:
        lv = self.levels[level]
        return lv.first + ty * lv.tiles[1] + tx

    def locate(self, index: int) -> tuple[int, int, int]:
        """(level, ty, tx) of a global tile index."""
        for lv in self.levels:
            n = lv.tiles[0] * lv.tiles[1]
            if lv.first <= index < lv.first + n:
                ty, tx = divmod(index - lv.first, lv.tiles[1])
                return lv.index, ty, tx
        raise IndexError(f"no tile {index} in {self.path} ({self.n_tiles} tiles)")

    def parent(self, index: int) -> int:
        """The tile of the next coarser level that covers this one (-1 for the top tile)."""
        level, ty, tx = self.locate(index)
        return -1 if level == self.top else self.index(level + 1, ty // 2, tx // 2)

    def tile_rect(self, level: int, ty: int, tx: int) -> tuple[float, float, float]:
        """(x0, y0, pixel size) of a tile in full-resolution pixel (world) units."""
        f = self.levels[level].factor
        return float(tx * self.tile * f), float(ty * self.tile * f), float(f)

    # ---------------------------------------------------------------- data
    def read_tile(self, level: int, ty: int, tx: int) -> np.ndarray:
        """(tile, tile) float32 pixels of a tile (row i is image row ``ty * tile + i``; NaN off the image)."""
        lv = self.levels[level]
        if not (0 <= ty < lv.tiles[0] and 0 <= tx < lv.tiles[1]):
            raise IndexError(f"no tile ({ty}, {tx}) at level {level} of {self.path}")
        n = self.tile * self.tile
        data = np.fromfile(lv.file, dtype="<f4", count=n, offset=4 * n * (ty * lv.tiles[1] + tx))
        if data.size != n:
            raise PyramidReadError(f"{lv.file}: truncated at tile ({ty}, {tx})")
        return data.reshape(self.tile, self.tile)

    def read_node(self, index: int, field=None) -> np.ndarray:
        """The tile with global index ``index`` (the :class:`~lenghu.viewer.lod.NodeLoader` interface)."""
        return self.read_tile(*self.locate(int(index)))

    @cached_property
    def sample(self) -> np.ndarray:
        """The strided subsample of the full-resolution image (for stretch limits)."""
        return np.fromfile(self.path / self.meta["sample"]["file"], dtype="<f4")

    def limits(self, kind: str = "zscale", percentile: float = 99.5) -> tuple[float, float]:
        """(vmin, vmax) by ``kind`` on the whole-image sample: one pair for every tile."""
        from lenghu.viewer.model.colors import interval

        return interval(self.sample, kind, percentile)

    @cached_property
    def header(self):
        """The source FITS header (astropy Header; empty without one)."""
        from astropy.io import fits

        text = self.meta.get("header") or ""
        return fits.Header.fromstring(text, sep="\n") if text else fits.Header()
