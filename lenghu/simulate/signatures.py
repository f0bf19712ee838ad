"""Instrument signatures: bias structure, dark current and hot pixels, flat field, bad columns,
cosmic rays, saturation and bleeding.

Everything that is fixed for a night (bias structure, hot pixels, bad columns,
dust, pixel response) is a pure function of ``(seed, detector, amplifier)``:
each comes from its own random stream (:func:`lenghu.simulate.config.rng_for`)
and is cheap to regenerate, so the night writer recreates it for every
exposure instead of holding it for all CCDs (nine full-size flats would be
3 GB). The same call always gives the same pattern, bit for bit.

Assumed values (WFST's are not public; these are typical of e2v CCD290s and
of deep-depletion-free back-illuminated CCDs at a 4200 m site):

- bias structure: a row gradient of up to +-3 ADU across an amplifier plus a
  gentle curvature (also in the overscan, so a row-by-row overscan fit removes
  it), and column-to-column structure of ~1.5 ADU rms (a smooth walk plus
  0.5 ADU white) with a start-up transient of ~5 ADU decaying over the first
  columns read; the overscan has no column structure;
- dark current: the instrument's value everywhere, plus hot pixels (5e-5 of
  the pixels, log-uniform 0.2-20 e-/s) and two hot column segments per CCD
  (1-5 e-/s);
- two dead column segments per CCD (response 2-10%), running from a charge
  trap away from the readout edge;
- flat field: vignetting ``1 - 0.12 (r / r_corner)^2`` over the mosaic (12% at
  its corners), dust donuts (outer radius 25-70 pixels, inner 0.4 of that,
  1-5% deep; about 20 per full-size CCD, on the window and on each filter),
  and white pixel response non-uniformity (1% rms in r, per filter in
  :data:`lenghu.simulate.sky.PRNU`, the same pixels in every filter);
- cosmic rays: ``cosmic_rate`` events per cm^2 per minute (4 by default: the
  sea-level rate of ~1-1.5 raised about three-fold at 4200 m, where the
  hadronic and electronic showers are far less absorbed) through a 40 um thick
  sensor, zenith angles distributed as cos^3 (flux through a horizontal
  plane), depositing 80 e-/um of path times a Landau-like (log-normal) spread:
  tracks of a few pixels holding thousands of electrons;
- saturation: the charge a pixel holds is capped at the full well, set so that
  a full pixel reads 0.5% above the amplifier's ``saturation`` (in ADU,
  including the bias); the excess spills up and down the column (bleed
  trails), conserving charge within the amplifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lenghu.instruments import Amplifier, Detector
from lenghu.simulate.config import rng_for
from lenghu.simulate.optics import FocalPlane

HOT_PIXEL_FRACTION = 5e-5
HOT_PIXEL_RATE = (0.2, 20.0)  # e-/s, log-uniform
VIGNETTING_AT_CORNER = 0.12
DUST_PER_CCD = {"window": 12.0, "filter": 8.0}  # expected donuts on a full-size CCD
FULL_SIZE_PIXELS = 9216 * 9232
SENSOR_THICKNESS_UM = 40.0
CHARGE_PER_UM = 80.0  # electrons per micron of path (minimum-ionising particle in silicon)
#: Cosmic-ray truth masks flag pixels that received more than this, electrons.
COSMIC_MASK_THRESHOLD = 30.0
#: A full pixel reads this factor times the amplifier's saturation (ADU).
FULL_WELL_MARGIN = 1.005


@lru_cache(maxsize=1)
def _gauss_table() -> np.ndarray:
    """65536 equally likely standard-normal values (quantiles), for fast fixed patterns."""
    from scipy.special import ndtri

    return ndtri((np.arange(65536) + 0.5) / 65536).astype(np.float32)


def _amp_index(detector: Detector, amp: Amplifier) -> int:
    return detector.amplifiers.index(amp)


# ---------------------------------------------------------------- bias

@dataclass(frozen=True)
class BiasPattern:
    """The fixed, noiseless bias of one amplifier, ADU.

    Attributes
    ----------
    level : float
        The amplifier's bias level (from the instrument).
    rows : ndarray, float32, (ny,)
        Row-wise structure, in the data and the overscan alike.
    columns : ndarray, float32, (nx,)
        Column-wise structure of the data section (not in the overscan).
    """

    level: float
    rows: np.ndarray
    columns: np.ndarray

    def data(self) -> np.ndarray:
        """The noiseless data section, ``(ny, nx)`` ADU."""
        return (np.float32(self.level) + self.rows[:, None]) + self.columns[None, :]

    def overscan(self, width: int) -> np.ndarray:
        """The noiseless overscan section, ``(ny, width)`` ADU."""
        return np.repeat((np.float32(self.level) + self.rows)[:, None], width, axis=1)


def bias_pattern(seed: int, detector: Detector, amp: Amplifier) -> BiasPattern:
    """The fixed bias structure of ``amp`` for the night (see the module docstring)."""
    ny, nx = amp.data_section.shape
    rng = rng_for(seed, "bias", detector.index, _amp_index(detector, amp))
    t = (np.arange(ny) + 0.5) / ny
    gradient, curvature = rng.uniform(-3.0, 3.0), rng.uniform(-1.0, 1.0)
    rows = gradient * (t - 0.5) + curvature * (t**2 - 1.0 / 3.0)
    walk = np.cumsum(rng.normal(0.0, 1.0, nx))
    walk -= np.linspace(walk[0], walk[-1], nx)  # a walk pinned at both ends: smooth, bounded
    walk *= 1.4 / max(walk.std(), 1e-9)
    columns = walk + rng.normal(0.0, 0.5, nx) + 5.0 * np.exp(-np.arange(nx) / 3.0)
    return BiasPattern(
        level=float(amp.bias_level.value),
        rows=rows.astype(np.float32),
        columns=columns.astype(np.float32),
    )


# ---------------------------------------------------------------- bad columns

@dataclass(frozen=True)
class BadColumn:
    """A defective column segment, in assembled pixels (rows ``y0:y1``).

    ``kind`` is ``"dead"`` (``value`` = remaining response) or ``"hot"``
    (``value`` = extra dark current, e-/s).
    """

    x: int
    y0: int
    y1: int
    kind: str
    value: float


def bad_columns(seed: int, detector: Detector, dead: int = 2, hot: int = 2) -> tuple[BadColumn, ...]:
    """The fixed bad column segments of ``detector``.

    A defect at row ``y_t`` of an amplifier row spoils the part of the column
    on the far side of it from the readout edge (the bottom edge for the
    bottom amplifier row, the top edge for the top one) for dead columns, and
    the part between it and the readout edge for hot ones.
    """
    rng = rng_for(seed, "badcol", detector.index)
    ny, nx = detector.shape
    amps = detector.amplifiers
    out = []
    for kind, count in (("dead", dead), ("hot", hot)):
        for _ in range(count):
            amp = amps[int(rng.integers(len(amps)))]
            sec = amp.detector_section
            x = int(rng.integers(sec.x0, sec.x1))
            yt = int(rng.integers(sec.y0, sec.y1))
            reads_down = sec.y0 < ny / 2  # bottom amplifier row reads out at y = 0
            far = (yt, sec.y1) if reads_down else (sec.y0, yt + 1)
            near = (sec.y0, yt + 1) if reads_down else (yt, sec.y1)
            if kind == "dead":
                out.append(BadColumn(x, *far, "dead", float(rng.uniform(0.02, 0.10))))
            else:
                out.append(BadColumn(x, *near, "hot", float(rng.uniform(1.0, 5.0))))
    return tuple(out)


def _segments_in(cols: tuple[BadColumn, ...], amp: Amplifier, kind: str):
    sec = amp.detector_section
    for col in cols:
        if col.kind == kind and sec.x0 <= col.x < sec.x1:
            y0, y1 = max(col.y0, sec.y0), min(col.y1, sec.y1)
            if y1 > y0:
                yield col.x - sec.x0, y0 - sec.y0, y1 - sec.y0, col.value


# ---------------------------------------------------------------- dark current

@dataclass(frozen=True)
class DarkPattern:
    """Dark current of one amplifier, e-/s: a uniform ``base`` plus sparse extras.

    Attributes
    ----------
    base : float
        Every pixel.
    index : ndarray of int64
        Flat indices (into the amplifier's ``(ny, nx)`` data) of pixels with extra dark current.
    rate : ndarray of float32
        Their extra dark current (hot pixels and hot columns; indices may repeat).
    """

    base: float
    index: np.ndarray
    rate: np.ndarray

    def image(self, shape: tuple[int, int]) -> np.ndarray:
        """The dense dark current map, ``shape`` e-/s, float32."""
        out = np.full(shape[0] * shape[1], self.base, dtype=np.float32)
        np.add.at(out, self.index, self.rate)
        return out.reshape(shape)


def dark_pattern(seed: int, detector: Detector, amp: Amplifier, columns: tuple[BadColumn, ...]) -> DarkPattern:
    """The fixed dark current of ``amp``: base, hot pixels and its parts of hot columns."""
    ny, nx = amp.data_section.shape
    rng = rng_for(seed, "hot", detector.index, _amp_index(detector, amp))
    n = int(rng.poisson(HOT_PIXEL_FRACTION * ny * nx))
    index = [rng.integers(0, ny * nx, n)]
    lo, hi = np.log(HOT_PIXEL_RATE[0]), np.log(HOT_PIXEL_RATE[1])
    rate = [np.exp(rng.uniform(lo, hi, n))]
    for x, y0, y1, value in _segments_in(columns, amp, "hot"):
        index.append(np.arange(y0, y1) * nx + x)
        rate.append(np.full(y1 - y0, value))
    return DarkPattern(
        base=float(detector.dark_current.value),
        index=np.concatenate(index).astype(np.int64),
        rate=np.concatenate(rate).astype(np.float32),
    )


# ---------------------------------------------------------------- flat field

@dataclass(frozen=True)
class Donut:
    """The out-of-focus shadow of a dust grain, assembled pixels of its CCD."""

    x: float
    y: float
    r_out: float
    r_in: float
    depth: float


def dust_donuts(seed: int, detector: Detector, filter_name: str) -> tuple[Donut, ...]:
    """Dust shadows on ``detector`` through ``filter_name``: the window's and the filter's.

    The expected number scales with the CCD's area (at least one per source
    so that scaled-down CCDs still show some).
    """
    ny, nx = detector.shape
    area = ny * nx / FULL_SIZE_PIXELS
    out = []
    for source, per_ccd in DUST_PER_CCD.items():
        rng = rng_for(seed, "dust", detector.index, source if source == "window" else f"filter-{filter_name}")
        for _ in range(int(rng.poisson(max(per_ccd * area, 1.0)))):
            r_out = rng.uniform(25.0, 70.0)
            out.append(Donut(
                x=float(rng.uniform(0, nx)), y=float(rng.uniform(0, ny)),
                r_out=float(r_out), r_in=float(0.4 * r_out), depth=float(rng.uniform(0.01, 0.05)),
            ))
    return tuple(out)


def flat_pattern(
    seed: int,
    detector: Detector,
    amp: Amplifier,
    prnu: float,
    corner_radius: float,
    donuts: tuple[Donut, ...],
    columns: tuple[BadColumn, ...],
) -> np.ndarray:
    """The relative response of ``amp``'s pixels, not yet normalised, ``(ny, nx)`` float32.

    Parameters
    ----------
    seed : int
        Night seed.
    detector, amp : Detector, Amplifier
        Where (the detector's ``offset`` gives the vignetting).
    prnu : float
        rms of the pixel response non-uniformity in this filter.
    corner_radius : float
        Focal-plane radius of the mosaic's corners, pixels.
    donuts : tuple of Donut
        Dust shadows of this detector and filter (:func:`dust_donuts`).
    columns : tuple of BadColumn
        Bad columns of this detector (:func:`bad_columns`).
    """
    sec = amp.detector_section
    ny, nx = sec.shape
    fy, fx = FocalPlane.coordinates(detector, np.arange(sec.y0, sec.y1), np.arange(sec.x0, sec.x1))
    c = VIGNETTING_AT_CORNER / corner_radius**2
    out = (1.0 - c * fx**2).astype(np.float32)[None, :] - (c * fy**2).astype(np.float32)[:, None]
    rng = rng_for(seed, "prnu", detector.index, _amp_index(detector, amp))
    pixels = _gauss_table()[rng.integers(0, 65536, (ny, nx), dtype=np.uint16)]
    pixels *= np.float32(prnu)
    pixels += np.float32(1.0)
    out *= pixels
    del pixels
    for donut in donuts:
        _apply_donut(out, donut, sec.y0, sec.x0)
    for x, y0, y1, value in _segments_in(columns, amp, "dead"):
        out[y0:y1, x] *= np.float32(value)
    return out


def _apply_donut(image: np.ndarray, donut: Donut, oy: int, ox: int) -> None:
    """Multiply ``image`` (whose [0, 0] is assembled pixel (oy, ox)) by a donut's shadow."""
    ny, nx = image.shape
    reach = donut.r_out + 4
    y0, y1 = max(int(donut.y - reach) - oy, 0), min(int(donut.y + reach) + 1 - oy, ny)
    x0, x1 = max(int(donut.x - reach) - ox, 0), min(int(donut.x + reach) + 1 - ox, nx)
    if y1 <= y0 or x1 <= x0:
        return
    yy = np.arange(y0, y1)[:, None] + oy - donut.y
    xx = np.arange(x0, x1)[None, :] + ox - donut.x
    r = np.hypot(yy, xx)
    edge = 1.5  # softness of the shadow's edges, pixels
    shadow = 1.0 / (1.0 + np.exp(-(r - donut.r_in) / edge)) / (1.0 + np.exp(-(donut.r_out - r) / edge))
    image[y0:y1, x0:x1] *= (1.0 - donut.depth * shadow).astype(np.float32)


# ---------------------------------------------------------------- cosmic rays

@dataclass(frozen=True)
class CosmicRays:
    """Charge left by cosmic rays in one CCD exposure, as pixel deposits.

    Attributes
    ----------
    y, x : ndarray of int64
        Assembled pixel of each deposit (a pixel may appear more than once).
    electrons : ndarray of float32
        Charge of each deposit.
    events : int
        Number of particles.
    """

    y: np.ndarray
    x: np.ndarray
    electrons: np.ndarray
    events: int

    def image(self, shape: tuple[int, int]) -> np.ndarray:
        """The charge each pixel received, electrons, ``shape`` float64 (0 where none)."""
        out = np.zeros(shape[0] * shape[1])
        np.add.at(out, self.y * shape[1] + self.x, self.electrons.astype(np.float64))
        return out.reshape(shape)

    def mask_index(self, shape: tuple[int, int]) -> np.ndarray:
        """Flat indices of the pixels that got more than :data:`COSMIC_MASK_THRESHOLD` electrons."""
        if self.electrons.size == 0:
            return np.zeros(0, dtype=np.int64)
        index = self.y * shape[1] + self.x
        unique, inverse = np.unique(index, return_inverse=True)
        total = np.bincount(inverse, weights=self.electrons)
        return unique[total > COSMIC_MASK_THRESHOLD]


def cosmic_rays(
    rng: np.random.Generator,
    shape: tuple[int, int],
    exposure_s: float,
    rate_per_cm2_min: float,
    pixel_size_um: float,
) -> CosmicRays:
    """Cosmic rays hitting a CCD of ``shape`` pixels during ``exposure_s`` seconds.

    Each particle crosses the 40 um sensor at a zenith angle drawn from a
    cos^3 law; its track projects to ``40 um * tan(theta)`` in the pixel
    plane and holds ``80 e-/um * 40 um / cos(theta)`` electrons times a
    log-normal spread (sigma 0.4, a stand-in for the Landau tail). The charge
    is laid down at points every half pixel along the track and split
    bilinearly between the four nearest pixels (charge diffusion).
    """
    ny, nx = shape
    area_cm2 = ny * nx * (pixel_size_um * 1e-4) ** 2
    n = int(rng.poisson(rate_per_cm2_min * area_cm2 * exposure_s / 60.0))
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CosmicRays(empty, empty, np.zeros(0, dtype=np.float32), 0)
    cos_theta = np.clip(rng.random(n) ** 0.25, np.cos(np.radians(85.0)), 1.0)
    tan_theta = np.sqrt(1.0 - cos_theta**2) / cos_theta
    length = SENSOR_THICKNESS_UM * tan_theta / pixel_size_um  # pixels
    charge = CHARGE_PER_UM * SENSOR_THICKNESS_UM / cos_theta * rng.lognormal(0.0, 0.4, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    x0 = rng.uniform(-0.5, nx - 0.5, n)
    y0 = rng.uniform(-0.5, ny - 0.5, n)
    points = np.maximum(np.ceil(2 * length).astype(np.int64), 0) + 1
    track = np.repeat(np.arange(n), points)
    first = np.cumsum(points) - points
    step = np.arange(track.size) - first[track]
    frac = np.where(points[track] > 1, step / np.maximum(points[track] - 1, 1), 0.5)
    px = x0[track] + (frac - 0.5) * length[track] * np.cos(phi[track])
    py = y0[track] + (frac - 0.5) * length[track] * np.sin(phi[track])
    q = charge[track] / points[track]
    fx, fy = np.floor(px), np.floor(py)
    wx, wy = px - fx, py - fy
    ys, xs, es = [], [], []
    for dy, dx, w in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        ys.append(fy.astype(np.int64) + dy)
        xs.append(fx.astype(np.int64) + dx)
        es.append(q * w)
    y, x, e = np.concatenate(ys), np.concatenate(xs), np.concatenate(es)
    keep = (y >= 0) & (y < ny) & (x >= 0) & (x < nx) & (e > 0)
    return CosmicRays(y[keep], x[keep], e[keep].astype(np.float32), n)


# ---------------------------------------------------------------- saturation

def full_well(amp: Amplifier) -> float:
    """Electrons a pixel of ``amp`` holds: it then reads 0.5% above ``saturation`` ADU."""
    return (FULL_WELL_MARGIN * amp.saturation.value - amp.bias_level.value) * amp.gain.value


def bleed(image: np.ndarray, capacity: float) -> int:
    """Cap pixels at ``capacity`` electrons, spilling the excess along their columns (in place).

    The excess of each saturated run goes half up and half down the column,
    filling pixels to capacity until it is used up (what reaches the edge of
    ``image`` is lost). ``image`` is the caller's work buffer.

    Returns
    -------
    int
        Number of columns that bled.
    """
    over_any = image.max(axis=0) > capacity
    columns = np.nonzero(over_any)[0]
    cap = np.float32(capacity)
    for c in columns:
        col = image[:, c].astype(np.float64)
        for _ in range(4):  # spilled charge can meet another run: a few passes settle it
            over = col > capacity
            if not over.any():
                break
            edges = np.diff(np.concatenate(([0], over.view(np.int8), [0])))
            starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
            for s, e in zip(starts, ends):
                excess = float(np.sum(col[s:e] - capacity))
                col[s:e] = capacity
                _spill(col[e:], excess / 2, capacity)
                _spill(col[:s][::-1], excess / 2, capacity)
        image[:, c] = np.minimum(col, cap)
    return int(columns.size)


def _spill(segment: np.ndarray, charge: float, capacity: float) -> None:
    """Fill ``segment`` (a view, ordered away from the source) up to ``capacity`` with ``charge``."""
    if charge <= 0 or segment.size == 0:
        return
    room = np.maximum(capacity - segment, 0.0)
    filled = np.cumsum(room)
    k = int(np.searchsorted(filled, charge))
    segment[:k] += room[:k]
    if k < segment.size:
        segment[k] += charge - (filled[k - 1] if k else 0.0)
