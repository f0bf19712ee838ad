"""Layers of a scene: particles, a volume, an image. Plain data with events; no GL.

Each layer has ``name``, ``visible`` and ``opacity`` and emits
``layer.events.<property>`` then ``layer.events.changed`` when one of its
properties changes; a renderer connects to those (see
:mod:`lenghu.viewer.render`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from lenghu.viewer.model.colors import INTERVALS, STRETCHES, block_reduce, check_colormap, interval, stretch
from lenghu.viewer.model.events import Evented, Prop, choice, optional_range, positive, unit_interval

TONEMAPS = ("exp", "asinh", "linear")


class Layer(Evented):
    """Base class of every layer."""

    name = Prop("", str)
    visible = Prop(True, bool)
    opacity = Prop(1.0, unit_interval)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World-space (lo, hi) corners of what the layer shows."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _optional_str(value: Any) -> str:
    return str(value)


def _budget(value: Any) -> int:
    n = int(value)
    if n < 1:
        raise ValueError(f"the point budget must be >= 1, got {value!r}")
    return n


class ParticleLayer(Layer):
    """Particles drawn as additive splats, tone mapped.

    Parameters
    ----------
    source : ParticleData, TimeSeries or LodStore
        In-memory particles (:mod:`.particles`), several snapshots in time order,
        or an octree store (:class:`lenghu.viewer.lod.LodStore`).
    field : str or None
        Colour by this field (None: one colour, ``color``).
    colormap : str
        Matplotlib colormap name.
    scale : ``linear`` or ``log``
        How field values map to the colormap.
    clim : (float, float) or None
        Field values at the two ends of the colormap (None: 0.5 and 99.5 percentiles).
    point_size : float
        Splat diameter in pixels (at full density; sparser levels of detail draw larger splats).
    exposure : float
        Multiplies the brightness before tone mapping (1: automatic white point).
    white_point : float or None
        Accumulated density (particles per pixel) drawn at full brightness
        (``asinh``) or 95% of it (``exp``); None: from the first frame.
    tonemap : ``asinh``, ``exp`` or ``linear``
        ``asinh``: asinh(x / x_m) / asinh(x_w / x_m) (x_m: median density);
        ``exp``: 1 - exp(-k x); ``linear``: clipped.
    budget : int
        Most points drawn per frame.
    time : float
        For a time series: fractional snapshot index.
    """

    field = Prop(None, _optional_str)
    colormap = Prop("inferno", check_colormap)
    color = Prop((1.0, 1.0, 1.0), lambda v: tuple(float(x) for x in v))
    scale = Prop("log", choice("linear", "log"))
    clim = Prop(None, optional_range)
    point_size = Prop(3.0, positive)
    exposure = Prop(1.0, positive)
    white_point = Prop(None, positive)
    tonemap = Prop("asinh", choice(*TONEMAPS))
    budget = Prop(1_000_000, _budget)
    time = Prop(0.0, float)
    #: Splats of a level-of-detail node that stands for w particles each are w**lod_size_exponent times larger.
    lod_size_exponent = Prop(0.5, float)

    def __init__(self, source: Any, **kwargs: Any):
        super().__init__(**kwargs)
        self.source = source
        if not self.name:
            self.name = getattr(source, "name", "") or "particles"
        if self.field is not None and self.field not in self.field_names():
            raise ValueError(f"no field {self.field!r} (have: {', '.join(self.field_names()) or 'none'})")

    @property
    def kind(self) -> str:
        """``lod``, ``series`` or ``points``."""
        if getattr(self.source, "is_lod", False):
            return "lod"
        if hasattr(self.source, "frames"):
            return "series"
        return "points"

    @property
    def count(self) -> int:
        """Particles in the source (all of them, not only those drawn)."""
        return int(self.source.count)

    def field_names(self) -> list[str]:
        return list(self.source.field_names())

    def color_range(self) -> tuple[float, float]:
        """``clim`` or the automatic range of the colour field."""
        if self.clim is not None:
            return self.clim
        if self.field is None:
            return (0.0, 1.0)
        return self.source.field_range(self.field, self.scale == "log")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.source.bounds()
        return np.asarray(lo, float), np.asarray(hi, float)

    def particles_now(self):
        """The in-memory particles to draw now (a time series is interpolated at ``time``)."""
        if self.kind == "series":
            return self.source.at(self.time)
        if self.kind == "points":
            return self.source
        raise TypeError("a level-of-detail layer is drawn node by node (see lenghu.viewer.lod)")

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """Field values mapped to [0, 1] of the colormap (the renderer does the same on the GPU)."""
        lo, hi = self.color_range()
        v = np.asarray(values, dtype=np.float64)
        if self.scale == "log":
            lo, hi = math.log10(max(lo, 1e-30)), math.log10(max(hi, 1e-30))
            v = np.log10(np.maximum(v, 1e-30))
        return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


class VolumeLayer(Layer):
    """A 3-D grid drawn by ray casting.

    Parameters
    ----------
    data : ndarray
        (nz, ny, nx) values (numpy order: the last axis is x).
    extent : ((x0, y0, z0), (x1, y1, z1)) or None
        World box the grid fills (default: one unit per voxel).
    method : ``mip``, ``translucent``, ``iso``, ``additive`` or ``average``
    clim : (float, float) or None
        Values at the ends of the transfer function (None: 0.5 and 99.8 percentiles).
    colormap : str
    threshold : float
        ``iso``: the surface value (in data units; None: the middle of clim).
    attenuation : float
        ``translucent``: opacity of the transfer function (the colour's alpha is scaled by it).
    """

    method = Prop("mip", choice("mip", "translucent", "iso", "additive", "average"))
    clim = Prop(None, optional_range)
    colormap = Prop("viridis", check_colormap)
    threshold = Prop(None, float)
    attenuation = Prop(0.5, positive)
    gamma = Prop(1.0, positive)

    def __init__(self, data: np.ndarray, extent=None, wcs=None, unit: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        data = np.asarray(data)
        if data.ndim != 3:
            raise ValueError(f"a volume needs a 3-D grid, got shape {data.shape}")
        self.unit = unit
        self.data = np.nan_to_num(data.astype(np.float32, copy=False), nan=0.0)
        nz, ny, nx = self.data.shape
        self.extent = (np.zeros(3), np.array([nx, ny, nz], float)) if extent is None else (
            np.asarray(extent[0], float), np.asarray(extent[1], float))
        self.wcs = wcs
        if not self.name:
            self.name = "volume"

    def bounds(self):
        return self.extent

    def brightest_along(self, origin: np.ndarray, direction: np.ndarray) -> tuple[int, int, int] | None:
        """The voxel (i, j, k) of largest value on the ray ``origin + t direction`` (t >= 0), as a maximum
        intensity projection shows it; None if the ray misses the grid. Sampled at half the smallest voxel."""
        lo, hi = self.extent
        nz, ny, nx = self.data.shape
        voxel = (hi - lo) / np.array([nx, ny, nz], float)
        with np.errstate(divide="ignore", invalid="ignore"):  # slab intersection with the box
            t_a, t_b = (lo - origin) / direction, (hi - origin) / direction
        t_a = np.where(direction == 0, np.where((origin >= lo) & (origin <= hi), -np.inf, np.inf), t_a)
        t_b = np.where(direction == 0, np.where((origin >= lo) & (origin <= hi), np.inf, -np.inf), t_b)
        t0 = max(0.0, float(np.max(np.minimum(t_a, t_b))))
        t1 = float(np.min(np.maximum(t_a, t_b)))
        if not t1 > t0:
            return None
        n = int(min(8192, max(2, np.ceil((t1 - t0) / (0.5 * voxel.min())))))
        points = origin + np.linspace(t0, t1, n)[:, None] * direction
        index = np.clip(np.floor((points - lo) / voxel).astype(int), 0, [nx - 1, ny - 1, nz - 1])
        best = int(np.argmax(self.data[index[:, 2], index[:, 1], index[:, 0]]))
        return tuple(int(v) for v in index[best])

    def color_range(self) -> tuple[float, float]:
        if self.clim is not None:
            return self.clim
        return interval(self.data[:: max(1, self.data.shape[0] // 64)], "percentile", 99.8)

    def iso_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        lo, hi = self.color_range()
        return (lo + hi) / 2

    def grid_for(self, max_size: int) -> tuple[np.ndarray, int]:
        """The grid block-averaged by the smallest integer factor that fits ``max_size`` per side, and the factor."""
        factor = max(1, math.ceil(max(self.data.shape) / max_size))
        return (block_reduce(self.data, factor) if factor > 1 else self.data), factor

    @classmethod
    def from_fits(cls, path: str | Path, hdu: int | str | None = None, **kwargs: Any) -> "VolumeLayer":
        """A volume from a FITS cube (degenerate axes dropped, NaN -> 0); the WCS is kept."""
        data, header = _read_fits_array(path, hdu, ndim=3)
        wcs = _celestial_wcs(header)
        return cls(data, wcs=wcs, unit=str(header.get("BUNIT", "")).strip(), name=kwargs.pop("name", Path(path).name),
                   **kwargs)


class ImageLayer(Layer):
    """A 2-D image (e.g. a FITS frame with a WCS) in the xy plane, one unit per pixel.

    Parameters
    ----------
    data : ndarray
        (ny, nx) values; pixel (0, 0) is at world (0, 0) and y grows upwards (FITS order).
    wcs : astropy.wcs.WCS or None
    stretch : ``linear``, ``sqrt``, ``log`` or ``asinh``
    interval : ``zscale``, ``minmax`` or ``percentile``
    percentile : float
    colormap : str
    """

    stretch = Prop("asinh", choice(*STRETCHES))
    interval = Prop("zscale", choice(*INTERVALS))
    percentile = Prop(99.5, float)
    colormap = Prop("gray", check_colormap)
    clim = Prop(None, optional_range)

    def __init__(self, data: np.ndarray, wcs=None, unit: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        data = np.asarray(data)
        if data.ndim != 2:
            raise ValueError(f"an image needs a 2-D array, got shape {data.shape}")
        self.data = data
        self.wcs = wcs
        self.unit = unit
        if not self.name:
            self.name = "image"
        self._limits: dict[tuple, tuple[float, float]] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the full-resolution image."""
        return tuple(self.data.shape)

    def value_at(self, i: int, j: int) -> float:
        """The value of pixel column ``i``, row ``j`` (0-based, full resolution); NaN outside the image."""
        ny, nx = self.shape
        return float(self.data[j, i]) if 0 <= i < nx and 0 <= j < ny else float("nan")

    def bounds(self):
        ny, nx = self.data.shape
        return np.array([0.0, 0.0, 0.0]), np.array([float(nx), float(ny), 0.0])

    def limits(self) -> tuple[float, float]:
        """(vmin, vmax): ``clim``, else from ``interval`` on (a sample of) the data."""
        if self.clim is not None:
            return self.clim
        key = (self.interval, self.percentile)
        if key not in self._limits:
            step = max(1, int(math.sqrt(self.data.size / 4e6)))
            self._limits[key] = interval(self.data[::step, ::step], self.interval, self.percentile)
        return self._limits[key]

    def levels(self, max_size: int) -> int:
        """The smallest power-of-two downsampling factor that fits ``max_size`` pixels per side."""
        factor = 1
        while max(self.data.shape) / factor > max_size:
            factor *= 2
        return factor

    def display(self, factor: int = 1) -> np.ndarray:
        """float32 [0, 1] after interval and stretch, block-averaged by ``factor``."""
        data = block_reduce(self.data, factor) if factor > 1 else self.data
        lo, hi = self.limits()
        return stretch(data, lo, hi, self.stretch)

    def pixel_scale_arcsec(self) -> float | None:
        """Pixel scale from the WCS, arcsec per pixel (None without a celestial WCS)."""
        if self.wcs is None:
            return None
        from astropy.wcs.utils import proj_plane_pixel_scales

        try:
            return float(np.mean(proj_plane_pixel_scales(self.wcs.celestial)) * 3600.0)
        except Exception:  # a WCS without celestial axes
            return None

    @classmethod
    def from_fits(cls, path: str | Path, hdu: int | str | None = None, **kwargs: Any) -> "ImageLayer":
        data, header = _read_fits_array(path, hdu, ndim=2)
        return cls(data, wcs=_celestial_wcs(header), unit=str(header.get("BUNIT", "")).strip(),
                   name=kwargs.pop("name", Path(path).name), **kwargs)



class TiledImageLayer(ImageLayer):
    """A large image drawn from a tile pyramid (:class:`lenghu.viewer.tiles.TileStore`), e.g. a full WFST mosaic.

    Same properties as :class:`ImageLayer`; the renderer draws the tiles in view at the level whose pixels
    match the screen's, loaded in the background. Stretch limits come from the pyramid's subsample of the
    whole image (:meth:`limits`), so every tile is shown with the same limits.

    Parameters
    ----------
    source : TileStore or path of a ``.pyr`` folder
    max_tiles : int
        Most tiles drawn per frame (past it, a coarser level).
    cache_tiles : int
        Tiles kept in memory (least recently used dropped beyond it; 1 MiB each at 512 x 512).
    """

    def __init__(self, source, wcs=None, max_tiles: int = 96, cache_tiles: int = 384, **kwargs: Any):
        from lenghu.viewer.tiles.store import TileStore

        Layer.__init__(self, **kwargs)
        self.store = source if isinstance(source, TileStore) else TileStore(source)
        if wcs is None and len(self.store.header):
            wcs = _celestial_wcs(self.store.header)
        self.wcs = wcs
        self.unit = str(self.store.header.get("BUNIT", "")).strip() if len(self.store.header) else ""
        self.max_tiles = int(max_tiles)
        self.cache_tiles = max(int(cache_tiles), 2 * self.max_tiles + len(self.store.levels))
        if not self.name:
            self.name = self.store.path.name
        self._limits = {}

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the full-resolution image."""
        return self.store.shape

    @property
    def data(self) -> np.ndarray:
        """The coarsest level (one tile, cropped to the image): a thumbnail, not the full image."""
        top = self.store.levels[-1]
        return self.store.read_tile(top.index, 0, 0)[: top.shape[0], : top.shape[1]]

    def bounds(self):
        ny, nx = self.store.shape
        return np.array([0.0, 0.0, 0.0]), np.array([float(nx), float(ny), 0.0])

    def value_at(self, i: int, j: int) -> float:
        """The value of full-resolution pixel (``i``, ``j``), read from its tile; NaN outside the image."""
        ny, nx = self.store.shape
        if not (0 <= i < nx and 0 <= j < ny):
            return float("nan")
        t = self.store.tile
        return float(self.store.read_tile(0, j // t, i // t)[j % t, i % t])

    def limits(self) -> tuple[float, float]:
        """(vmin, vmax): ``clim``, else ``interval`` on the pyramid's whole-image subsample (once)."""
        if self.clim is not None:
            return self.clim
        key = (self.interval, self.percentile)
        if key not in self._limits:
            self._limits[key] = self.store.limits(self.interval, self.percentile)
        return self._limits[key]

    def levels(self, max_size: int) -> int:
        factor = 1
        while max(self.store.shape) / factor > max_size:
            factor *= 2
        return factor

    def display_tile(self, tile: np.ndarray) -> np.ndarray:
        """float32 [0, 1] of one tile after the layer's limits and stretch (NaN: 0)."""
        lo, hi = self.limits()
        return stretch(tile, lo, hi, self.stretch)

    @classmethod
    def from_path(cls, path: str | Path, **kwargs: Any) -> "TiledImageLayer":
        return cls(path, name=kwargs.pop("name", Path(path).name), **kwargs)


def _read_fits_array(path, hdu, ndim):
    """(data, header) of the first HDU with image data of ``ndim`` dimensions after squeezing (or ``hdu``)."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings(), fits.open(path, memmap=False) as hdul:
        warnings.simplefilter("ignore", AstropyUserWarning)  # non-standard cards of old headers: shown anyway
        candidates = [hdul[hdu]] if hdu is not None else [h for h in hdul if getattr(h, "is_image", False)
                                                           and h.data is not None]
        for h in candidates:
            data = np.squeeze(np.asarray(h.data))
            if data.ndim == ndim:
                return data.astype(np.float32), h.header.copy()
    raise ValueError(f"{path}: no {ndim}-D image HDU")


def _celestial_wcs(header):
    from astropy.wcs import WCS, FITSFixedWarning
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            wcs = WCS(header)
        except Exception:  # a header astropy cannot read as WCS: show the pixels anyway
            return None
    return wcs if wcs.has_celestial else None


def fits_kind(path: str | Path) -> str | None:
    """``image`` or ``cube`` for a FITS file by its first data HDU's squeezed dimensions, else None."""
    import warnings

    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    try:
        with warnings.catch_warnings(), fits.open(path, memmap=True) as hdul:
            warnings.simplefilter("ignore", AstropyUserWarning)
            for h in hdul:
                if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) > 0:
                    dims = [h.header.get(f"NAXIS{i}", 1) for i in range(1, h.header["NAXIS"] + 1)]
                    n = sum(d > 1 for d in dims)
                    return {2: "image", 3: "cube"}.get(n)
    except (OSError, ValueError):
        return None
    return None
