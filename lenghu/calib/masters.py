"""Master calibration frames and their quality figures."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import bottleneck as bn
import numpy as np

from lenghu.calib.masks import MASK_DTYPE, MaskBit

MasterKind = Literal["bias", "dark", "flat"]


@dataclass(frozen=True)
class MasterFrame:
    """One master: image, variance and mask of a detector (flats: of a filter).

    Units: bias in electrons, dark in electrons per second, flat
    dimensionless with mean 1 over the good pixels. ``path`` names the file
    it was read from (provenance), ``quality`` holds its figures.
    """

    kind: MasterKind
    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    path: str = ""
    quality: dict = field(default_factory=dict, compare=False)

    def rows(self, y0: int, y1: int) -> "MasterFrame":
        """The master cut to rows ``y0:y1`` (views; memory-mapped masters stay on disk)."""
        return replace(self, image=self.image[y0:y1], variance=self.variance[y0:y1], mask=self.mask[y0:y1])


@dataclass(frozen=True)
class MasterConfig:
    """Thresholds used when finishing masters.

    Attributes
    ----------
    hot_pixel_rate : float
        Dark current above which a pixel is HOT, electrons / s.
    low_flat : float
        Normalised flat response below which a pixel is LOW_FLAT.
    bad_column_sigma : float
        A column whose median deviates from its neighbours' by more than this
        many robust standard deviations (of the column medians) is BAD.
    """

    hot_pixel_rate: float = 1.0
    low_flat: float = 0.5
    bad_column_sigma: float = 10.0


#: Pixels a robust noise floor is measured on (every n-th row pair beyond that; see :func:`bad_columns`).
SUBSAMPLE_PIXELS = 4_000_000


#: Rows of one band of a large flat's level sample (:func:`level_bands`).
LEVEL_BAND_ROWS = 32


def level_bands(shape: tuple[int, int]) -> list[tuple[int, int]]:
    """The row ranges whose pixels set a flat's level (:func:`level_of`).

    Every row up to 8 Mpixel; above, bands of :data:`LEVEL_BAND_ROWS` rows,
    one every n bands, n = pixels // :data:`SUBSAMPLE_PIXELS`: at least 4
    million pixels spread evenly over the frame. Whole rows, so that a master's
    input assembles only these rows for its level (a quarter of a 4k x 4k flat).
    """
    ny, nx = shape
    step = max(1, (ny * nx) // SUBSAMPLE_PIXELS)
    if step == 1:
        return [(0, ny)]
    return [(y, min(ny, y + LEVEL_BAND_ROWS)) for y in range(0, ny, step * LEVEL_BAND_ROWS)]


def level_of(frame: np.ndarray) -> float:
    """Median of the finite values of the rows :func:`level_bands` picks of ``frame``.

    Exact below 8 Mpixel; above, the median of at least 4 million pixels,
    whose relative error is about ``1.25 spread / 2000`` (1e-5 for a flat
    with 1% pixel scatter): a flat's scale only weights it against the
    others before the combine, and the master is normalised to mean 1
    afterwards.
    """
    return median_of_bands([frame[a:b] for a, b in level_bands(frame.shape)])


def median_of_bands(bands: Sequence[np.ndarray]) -> float:
    """:func:`level_of` from the bands of rows already made (the rows of :func:`level_bands`, in order)."""
    return float(bn.nanmedian(np.concatenate([np.ravel(b) for b in bands])))


def bad_columns(image: np.ndarray, sigma: float, divide_by: float = 1.0,
                columns: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of whole columns whose median stands out from their neighbours.

    ``image`` may be a memory map (it is read by bands of columns); the test is
    made on ``image / divide_by`` (a dark's rate), computed band by band.
    ``columns``: the column medians (:func:`column_medians`) if already known.
    """
    columns = column_medians(image, divide_by) if columns is None else columns
    from scipy.ndimage import median_filter

    smooth = median_filter(columns, size=15, mode="nearest")
    resid = columns - smooth
    scale = 1.4826 * np.nanmedian(np.abs(resid - np.nanmedian(resid)))
    # Masters of integer raw data are quantised, so the medians of many columns land on the same
    # few values and their MAD can collapse far below their real scatter (a master dark of a
    # simulated night had 80 of 576 columns flagged). A column median is never known better than
    # its statistical error, 1.2533 sigma_pixel / sqrt(rows), with sigma_pixel from row-to-row
    # differences (free of the column structure being tested).
    # Row differences of every n-th pair of adjacent rows, n = pixels // 4 million (all pairs below 8 Mpixel):
    # their median sets only this floor, and 4 million differences fix it to about 0.1%, at a
    # fraction of a full-frame median's time (0.55 s of a 4k x 4k bias master's finishing).
    if image.shape[0] > 1:  # one float32 array of row differences, made in place (a full CCD: 16 MB)
        step = max(1, image.size // SUBSAMPLE_PIXELS)
        upper, lower = _scaled(image[1::step], divide_by), _scaled(image[:-1:step], divide_by)
        diff = np.subtract(upper, lower, dtype=np.float32)
        np.abs(diff, out=diff)
        pixel = 1.4826 * float(bn.nanmedian(diff)) / np.sqrt(2.0)
        del diff, upper, lower
    else:
        pixel = 0.0
    floor = 1.2533 * pixel / np.sqrt(image.shape[0])
    bad = np.abs(resid) > sigma * max(scale, floor if np.isfinite(floor) else 0.0, 1e-6)
    return np.broadcast_to(bad[None, :], image.shape)


#: Columns per band when column medians are taken (a band of a full-size CCD is 9 MB of float32).
COLUMN_BAND = 256


def column_medians(image: np.ndarray, divide_by: float = 1.0) -> np.ndarray:
    """NaN-aware median of every column of ``image / divide_by``, band by band (bottleneck: ~10x numpy)."""
    nx = image.shape[1]
    out = np.empty(nx, dtype=np.result_type(image.dtype, np.float32))
    for x0 in range(0, nx, COLUMN_BAND):
        band = _scaled(image[:, x0:x0 + COLUMN_BAND], divide_by)
        out[x0:x0 + COLUMN_BAND] = bn.nanmedian(band, axis=0)
    return out


def _scaled(part: np.ndarray, divide_by: float) -> np.ndarray:
    """``part / divide_by`` in float32 as :func:`finish_master` computes it (``part`` itself when 1)."""
    return part if divide_by == 1.0 else part / np.float32(divide_by)


def _flag(mask: np.ndarray, bit: MaskBit, where: np.ndarray) -> None:
    """Set ``bit`` in ``mask`` where ``where`` is true, in place (no fancy-indexed copies)."""
    np.bitwise_or(mask, MASK_DTYPE(bit), out=mask, where=where)


def _subsample(plane: np.ndarray, mask: np.ndarray, first_index: int, step: int) -> np.ndarray:
    """Every ``step``-th pixel (counted from the frame's first, ``first_index`` being this part's) where
    ``mask`` is 0."""
    offset = (-first_index) % step
    return plane.reshape(-1)[offset::step][mask.reshape(-1)[offset::step] == 0]


@dataclass(frozen=True)
class MasterPlan:
    """What finishing a master needs of the whole combined frame, found before its rows are finished.

    ``divide_by`` divides image (and its square the variance): the exposure
    time of a dark, the mean level of a flat, 1 for a bias; ``bad_columns``
    flags whole columns (biases and darks; None for flats).
    """

    kind: MasterKind
    shape: tuple[int, int]
    n_inputs: int
    divide_by: float
    bad_columns: np.ndarray | None
    config: MasterConfig
    figures: dict


def plan_master(kind: MasterKind, image: np.ndarray, n_used: np.ndarray, n_inputs: int, config: MasterConfig,
                exposure: float = 1.0, rows: int = 512, columns: np.ndarray | None = None) -> MasterPlan:
    """The whole-frame figures of a master: flat level, bad columns (``image`` may be a memory map).

    ``columns``: the medians of the columns of ``image / exposure`` if already known (biases and darks).
    """
    figures: dict = {}
    divide_by, cols = 1.0, None
    if kind == "dark":
        divide_by = float(exposure)
    if kind in ("bias", "dark"):
        cols = bad_columns(image, config.bad_column_sigma, divide_by, columns)[0]
        figures["bad_columns"] = int(cols.sum())
    if kind == "flat":
        # Mean of the good pixels, accumulated in float64 strip by strip (a float32 sum of 85 million
        # pixels, a full-size CCD, drifts in its 5th digit).
        total, count = 0.0, 0
        for y0 in range(0, image.shape[0], rows):
            part = np.asarray(image[y0:y0 + rows])
            good = np.isfinite(part) & (np.asarray(n_used[y0:y0 + rows]) > 0)
            total += float(np.sum(part, where=good, dtype=np.float64))
            count += int(good.sum())
        divide_by = total / count if count else float("nan")
        figures["normalisation_e"] = divide_by
    return MasterPlan(kind, tuple(image.shape), int(n_inputs), divide_by, cols, config, figures)


def finish_rows(plan: MasterPlan, image: np.ndarray, variance: np.ndarray,
                n_used: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Some rows of the master: image and variance scaled, mask set (new arrays)."""
    image = np.asarray(image, dtype=np.float32)
    variance = np.asarray(variance, dtype=np.float32)
    mask = np.zeros(image.shape, dtype=MASK_DTYPE)
    _flag(mask, MaskBit.NO_DATA, np.asarray(n_used) == 0)
    if plan.kind in ("dark", "flat"):
        image = image / np.float32(plan.divide_by)
        variance = variance / np.float32(plan.divide_by ** 2)
    if plan.kind == "dark":
        _flag(mask, MaskBit.HOT, image > plan.config.hot_pixel_rate)
    if plan.bad_columns is not None:
        _flag(mask, MaskBit.BAD, np.broadcast_to(plan.bad_columns[None, :], image.shape))
    if plan.kind == "flat":
        _flag(mask, MaskBit.LOW_FLAT, ~(image > plan.config.low_flat))
    return image, variance, mask


class MasterQuality:
    """Quality figures of a master, accumulated row strip by row strip (:meth:`add`, then :meth:`figures`).

    Medians (noise, level, dark rate) are of every n-th good pixel, n = pixels // :data:`SUBSAMPLE_PIXELS`
    (all pixels below 8 million; above, at least 4 million, which fix a median to 1e-3 of the spread): a
    full-frame median of each plane took 0.2 s of a 4k x 4k master's finishing, for figures of the
    registry.
    """

    def __init__(self, plan: MasterPlan):
        self.plan = plan
        self.step = max(1, plan.shape[0] * plan.shape[1] // SUBSAMPLE_PIXELS)
        self.used = 0
        self.counts = {"hot_pixels": 0, "low_pixels": 0}
        self.samples: dict[str, list[np.ndarray]] = {"variance": [], "image": [], "all": []}

    @classmethod
    def placeholder(cls, kind: MasterKind, n_inputs: int) -> dict:
        """Figures of the right names and types before any is known (a header's cards made up front)."""
        plan = MasterPlan(kind, (1, 1), n_inputs, 1.0, None, MasterConfig(),
                          {"bad_columns": 0, "normalisation_e": float("nan")})
        return cls(plan).figures()

    def merge(self, others: "list[MasterQuality]") -> "MasterQuality":
        """Add what other accumulators of the same master (other rows) collected; returns self."""
        for other in others:
            self.used += other.used
            for key in self.counts:
                self.counts[key] += other.counts[key]
            for key in self.samples:
                self.samples[key].extend(other.samples[key])
        return self

    def add(self, y0: int, image: np.ndarray, variance: np.ndarray, mask: np.ndarray, n_used: np.ndarray) -> None:
        first = y0 * self.plan.shape[1]
        self.used += int(np.sum(n_used, dtype=np.int64))
        if self.plan.kind == "dark":
            self.counts["hot_pixels"] += int(np.count_nonzero(mask & MASK_DTYPE(MaskBit.HOT)))
            self.samples["all"].append(image.reshape(-1)[(-first) % self.step::self.step])
        if self.plan.kind == "flat":
            self.counts["low_pixels"] += int(np.count_nonzero(mask & MASK_DTYPE(MaskBit.LOW_FLAT)))
        self.samples["variance"].append(_subsample(variance, mask, first, self.step))
        self.samples["image"].append(_subsample(image, mask, first, self.step))

    def figures(self) -> dict:
        plan = self.plan
        pixels = plan.shape[0] * plan.shape[1]
        quality = {"n_inputs": plan.n_inputs, "rejected_fraction": float(1 - self.used / (plan.n_inputs * pixels))}
        if plan.kind == "dark":
            quality["hot_pixels"] = self.counts["hot_pixels"]
            quality["median_rate_e_per_s"] = _median(self.samples["all"])
        if plan.kind in ("bias", "dark"):
            quality["bad_columns"] = plan.figures["bad_columns"]
        if plan.kind == "flat":
            quality["normalisation_e"] = plan.figures["normalisation_e"]
            quality["low_pixels"] = self.counts["low_pixels"]
        quality["noise"] = float(np.sqrt(_median(self.samples["variance"])))
        quality["median"] = _median(self.samples["image"])
        return quality


def _median(parts: list[np.ndarray]) -> float:
    values = np.concatenate(parts) if parts else np.empty(0, np.float32)
    return float(bn.nanmedian(values)) if values.size else float("nan")


def finish_master(kind: MasterKind, image: np.ndarray, variance: np.ndarray, n_used: np.ndarray,
                  n_inputs: int, config: MasterConfig, exposure: float = 1.0) -> MasterFrame:
    """Turn a combined stack into a master: normalise, mask, and measure its quality.

    The whole-array form of :func:`plan_master`, :func:`finish_rows` and
    :class:`MasterQuality` (which a pipeline uses strip by strip).

    Parameters
    ----------
    image, variance : ndarray
        The combined image and its variance (electrons; for darks the total
        over ``exposure`` seconds, for flats any level).
    n_used : ndarray
        Values kept per pixel.
    exposure : float
        Exposure time of the combined darks, seconds (darks are divided by it).
    """
    plan = plan_master(kind, image, n_used, n_inputs, config, exposure)
    image, variance, mask = finish_rows(plan, image, variance, n_used)
    quality = MasterQuality(plan)
    quality.add(0, image, variance, mask, n_used)
    return MasterFrame(kind=kind, image=image, variance=variance, mask=mask, quality=quality.figures())
