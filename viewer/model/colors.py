"""Colormaps as lookup tables and image stretches, in numpy (no GL).

Colormaps are matplotlib's by name (``inferno``, ``viridis``, ``magma``,
``gray`` ...), sampled into an (n, 4) float32 table the renderer uploads as
a texture. Stretches map image values to [0, 1] the way DS9 does: an
interval (``zscale``, ``minmax`` or a percentile) and then a stretch
(``linear``, ``sqrt``, ``log``, ``asinh``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

STRETCHES = ("linear", "sqrt", "log", "asinh")
INTERVALS = ("zscale", "minmax", "percentile")


@lru_cache(maxsize=64)
def _lut(name: str, n: int) -> np.ndarray:
    from matplotlib import colormaps

    if name not in colormaps:
        raise ValueError(f"unknown colormap {name!r}")
    return colormaps[name](np.linspace(0, 1, n)).astype(np.float32)


def colormap_lut(name: str, n: int = 256) -> np.ndarray:
    """(n, 4) float32 RGBA table of matplotlib colormap ``name``."""
    return _lut(str(name), int(n)).copy()


def check_colormap(name: str) -> str:
    """Validate a colormap name (a converter for model properties)."""
    from matplotlib import colormaps

    name = str(name)
    if name not in colormaps:
        raise ValueError(f"unknown colormap {name!r} (e.g. inferno, viridis, magma, gray)")
    return name


def interval(data: np.ndarray, kind: str = "zscale", percentile: float = 99.5) -> tuple[float, float]:
    """(vmin, vmax) of ``data`` (finite values only) by ``zscale``, ``minmax`` or a symmetric ``percentile``."""
    v = np.asarray(data)
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0, 1.0
    if kind == "zscale":
        from astropy.visualization import ZScaleInterval

        lo, hi = ZScaleInterval().get_limits(v)
    elif kind == "minmax":
        lo, hi = float(v.min()), float(v.max())
    elif kind == "percentile":
        lo, hi = np.percentile(v, [100 - percentile, percentile])
    else:
        raise ValueError(f"unknown interval {kind!r} ({', '.join(INTERVALS)})")
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def stretch(data: np.ndarray, vmin: float, vmax: float, kind: str = "linear", a: float = 0.1) -> np.ndarray:
    """Values mapped to [0, 1]: clip to (vmin, vmax), scale, then apply the stretch ``kind``.

    ``log`` is DS9's log(a' x + 1)/log(a') with a' = 1000; ``asinh`` is asinh(x/a)/asinh(1/a).
    """
    x = (np.asarray(data, dtype=np.float32) - np.float32(vmin)) / np.float32(vmax - vmin)
    x = np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)
    if kind == "linear":
        return x
    if kind == "sqrt":
        return np.sqrt(x)
    if kind == "log":
        e = np.float32(1000.0)
        return np.log1p(e * x) / np.log1p(e)
    if kind == "asinh":
        return np.arcsinh(x / np.float32(a)) / np.float32(np.arcsinh(1.0 / a))
    raise ValueError(f"unknown stretch {kind!r} ({', '.join(STRETCHES)})")


def block_reduce(data: np.ndarray, factor: int, func=np.mean) -> np.ndarray:
    """Downsample every axis of ``data`` by an integer ``factor`` (edges cropped), NaN-aware mean by default."""
    if factor <= 1:
        return np.asarray(data)
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32)
    shape = tuple(s // factor for s in data.shape)
    crop = data[tuple(slice(0, s * factor) for s in shape)]
    new_shape = []
    for s in shape:
        new_shape += [s, factor]
    blocks = crop.reshape(new_shape)
    axes = tuple(range(1, 2 * data.ndim, 2))
    if func is np.mean:
        with np.errstate(invalid="ignore"):
            return np.nanmean(blocks, axis=axes) if np.isnan(blocks).any() else blocks.mean(axis=axes)
    return func(blocks, axis=axes)
