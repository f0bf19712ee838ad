"""Which tiles a frame draws: the level whose pixels match the screen's, and its tiles in view.

Pure numpy; the camera comes in as matrices (``clip = P @ V @ world``) and the
image lies in the plane z = 0, one world unit per full-resolution pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TileSelection:
    """The tiles one frame wants.

    Attributes
    ----------
    level : int
        The level drawn (0: full resolution).
    tiles : list of int
        Global indices of the level's tiles in view, nearest the screen centre first.
    ancestors : list of int
        The coarser tiles covering them (coarsest first): what is drawn while a tile is not loaded.
    pixels_per_unit : float
        Screen pixels per full-resolution image pixel.
    """

    level: int
    tiles: list[int] = field(default_factory=list)
    ancestors: list[int] = field(default_factory=list)
    pixels_per_unit: float = 0.0

    @property
    def wanted(self) -> list[int]:
        """What to load, most important first: the fallbacks, then the tiles."""
        return self.ancestors + self.tiles


def _project(points: np.ndarray, matrix: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
    """Screen pixels (x right, y up) and w of world points (m, 3)."""
    h = np.c_[points, np.ones(len(points))] @ matrix.T
    w = h[:, 3]
    safe = np.where(np.abs(w) > 1e-12, w, 1e-12)
    ndc = h[:, :2] / safe[:, None]
    return (ndc + 1.0) * 0.5 * np.asarray(size, float), w


def pixels_per_unit(store, view: np.ndarray, projection: np.ndarray, size) -> float:
    """Screen pixels per image pixel near the point of the image nearest the screen centre."""
    m = projection @ view
    ny, nx = store.shape
    # the image point under the screen centre (for a camera looking at the plane), clamped into the image
    try:
        inv = np.linalg.inv(m)
        near = inv @ np.array([0.0, 0.0, -1.0, 1.0])
        far = inv @ np.array([0.0, 0.0, 1.0, 1.0])
        near, far = near[:3] / near[3], far[:3] / far[3]
        d = far - near
        t = -near[2] / d[2] if abs(d[2]) > 1e-12 else 0.0
        centre = near + t * d
    except np.linalg.LinAlgError:
        centre = np.array([nx / 2, ny / 2, 0.0])
    cx, cy = float(np.clip(centre[0], 0, nx)), float(np.clip(centre[1], 0, ny))
    step = max(1.0, 0.01 * max(nx, ny))
    pts = np.array([[cx, cy, 0.0], [cx + step, cy, 0.0], [cx, cy + step, 0.0]])
    px, w = _project(pts, m, size)
    if np.any(w <= 0):
        return 1.0
    return float(max(np.linalg.norm(px[1] - px[0]), np.linalg.norm(px[2] - px[0])) / step)


def select_tiles(store, view: np.ndarray, projection: np.ndarray, size, max_tiles: int = 128,
                 detail: float = 1.0) -> TileSelection:
    """The tiles of the level matching the screen resolution that are in view.

    Parameters
    ----------
    store : TileStore
    view, projection : (4, 4) arrays
    size : (width, height) of the viewport, pixels
    max_tiles : int
        Most tiles of one level drawn; past it a coarser level is used (bounds the tiles in flight).
    detail : float
        Screen pixels per level pixel to aim for (1: the level's pixels are at most one screen pixel).
    """
    m = projection @ view
    ppu = pixels_per_unit(store, view, projection, size)
    # level k has pixels of 2^k units: the coarsest level whose pixels still cover <= 1/detail screen pixel
    # (1e-6: a scale of exactly 2^-k up to rounding picks level k)
    level = int(np.clip(math.floor(math.log2(max(1e-12, 1.0 / (ppu * detail))) + 1e-6), 0, store.top)) if ppu > 0 \
        else store.top
    w_px, h_px = float(size[0]), float(size[1])
    while True:
        lv = store.levels[level]
        t = store.tile * lv.factor
        ty_n, tx_n = lv.tiles
        xs = np.minimum(np.arange(tx_n + 1) * t, store.shape[1]).astype(float)
        ys = np.minimum(np.arange(ty_n + 1) * t, store.shape[0]).astype(float)
        gx, gy = np.meshgrid(xs, ys)
        px, w = _project(np.c_[gx.ravel(), gy.ravel(), np.zeros(gx.size)], m, size)
        px = px.reshape(ty_n + 1, tx_n + 1, 2)
        front = (w > 0).reshape(ty_n + 1, tx_n + 1)
        corners = [px[:-1, :-1], px[1:, :-1], px[:-1, 1:], px[1:, 1:]]
        lo = np.minimum.reduce(corners)
        hi = np.maximum.reduce(corners)
        behind = ~(front[:-1, :-1] & front[1:, :-1] & front[:-1, 1:] & front[1:, 1:])
        visible = behind | ((hi[..., 0] >= 0) & (lo[..., 0] <= w_px) & (hi[..., 1] >= 0) & (lo[..., 1] <= h_px))
        count = int(visible.sum())
        if count <= max_tiles or level == store.top:
            break
        level += 1
    iy, ix = np.nonzero(visible)
    centre = (lo[iy, ix] + hi[iy, ix]) / 2 - np.array([w_px / 2, h_px / 2])
    order = np.argsort(np.hypot(centre[:, 0], centre[:, 1]), kind="stable")[:max_tiles]
    tiles = [store.index(level, int(iy[i]), int(ix[i])) for i in order]
    ancestors: list[int] = []
    seen: set[int] = set()
    for k in range(store.top, level, -1):  # coarsest first
        shift = k - level
        for i in order:
            a = store.index(k, int(iy[i]) >> shift, int(ix[i]) >> shift)
            if a not in seen:
                seen.add(a)
                ancestors.append(a)
    return TileSelection(level, tiles, ancestors, ppu)
