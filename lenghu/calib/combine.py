"""Combine a stack of frames pixel by pixel with sigma clipping.

The algorithm is ccdproc's ``combine`` (astropy ``sigma_clip`` along the
stack axis, then the median or mean of what is left), so a master made here
matches ccdproc's on the same frames; it works on a strip of rows at a time,
so a pipeline bounds memory by the strip size, not the number of frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Literal

import bottleneck as bn
import numpy as np

# Variance of the median of n Gaussian values over the variance of the mean,
# for large n (pi/2); used for the master's statistical noise.
MEDIAN_EFFICIENCY = np.pi / 2
# astropy.stats.mad_std's factor: 1 / Phi^-1(3/4).
MAD_TO_STD = 1.482602218505602


@dataclass(frozen=True)
class CombineConfig:
    """How frames are combined into a master.

    Attributes
    ----------
    method : {"median", "mean"}
        Statistic of the unrejected values.
    sigma_lower, sigma_upper : float or None
        Clipping thresholds in standard deviations (None: no clipping on that side).
    maxiters : int
        Clipping iterations (ccdproc's default is 1).
    center : {"median", "mean"}
        Centre about which values are clipped.
    deviation : {"mad_std", "std"}
        Spread used for clipping.
    reject_low, reject_high : int
        Lowest and highest values dropped per pixel before clipping (min/max rejection).
    strip_megabytes : float
        Target size of one strip of the stack in memory, MB; sets the rows per task.
    """

    method: Literal["median", "mean"] = "median"
    sigma_lower: float | None = 3.0
    sigma_upper: float | None = 3.0
    maxiters: int = 1
    center: Literal["median", "mean"] = "median"
    deviation: Literal["mad_std", "std"] = "mad_std"
    reject_low: int = 0
    reject_high: int = 0
    strip_megabytes: float = 64.0

    def __post_init__(self):
        if self.method not in ("median", "mean"):
            raise ValueError(f"combine method {self.method!r} is not median or mean")
        if self.center not in ("median", "mean") or self.deviation not in ("mad_std", "std"):
            raise ValueError("combine center must be median|mean and deviation mad_std|std")
        if self.maxiters < 1 or self.reject_low < 0 or self.reject_high < 0 or self.strip_megabytes <= 0:
            raise ValueError("combine maxiters >= 1, reject_low/high >= 0 and strip_megabytes > 0 required")

    def rows_per_strip(self, n_frames: int, width: int, itemsize: int = 4) -> int:
        """Rows per strip so that the stack strip is about ``strip_megabytes``."""
        return max(1, int(self.strip_megabytes * 2**20 // max(1, n_frames * width * itemsize)))


@dataclass(frozen=True)
class CombinedStrip:
    """The combined rows, their variance, and how many values each pixel kept.

    ``kept`` marks, per input, the values that were not rejected; ``n_valid``
    counts the finite inputs of each pixel before rejection.
    """

    image: np.ndarray
    variance: np.ndarray
    n_used: np.ndarray
    kept: np.ndarray | None = None
    n_valid: np.ndarray | None = None


def combine_stack(stack: np.ndarray, config: CombineConfig, sample_variance: bool = True) -> CombinedStrip:
    """Combine ``stack`` (n_frames, ny, nx) along the first axis.

    NaN values count as rejected. Clipping follows astropy's ``sigma_clip``
    (values strictly beyond ``center -/+ sigma * deviation`` are rejected,
    repeated up to ``maxiters`` times), as ccdproc's ``combine`` uses it.
    The variance is the clipped sample variance of each pixel divided by the
    number of values kept (times pi/2 for the median). Rejection truncates the
    sample, so it is biased low: by about 1% for 3-sigma clipping, up to about
    20% with min/max rejection of 2 of 16 values. Masters use
    :func:`model_variance` instead (see there why) and pass
    ``sample_variance=False`` to skip it.
    """
    if _sorted_path_applies(np.shape(stack)[0], config, sample_variance):
        return _combine_sorted(np.asarray(stack), config)
    # bottleneck's NaN-aware reductions are about 5x faster than numpy's and
    # avoid masked arrays; the clipping logic itself is astropy's, restated.
    values = np.array(stack, dtype=np.result_type(np.asarray(stack).dtype, np.float32), copy=True)
    n = values.shape[0]
    n_valid = np.isfinite(values).sum(axis=0).astype(np.int16)
    if n == 0:
        raise ValueError("cannot combine an empty stack")
    if config.reject_low or config.reject_high:
        _reject_extremes(values, config.reject_low, config.reject_high)
    clip = config.sigma_lower is not None or config.sigma_upper is not None
    center, changed = None, None
    for _ in range(config.maxiters if clip else 0):
        center = bn.nanmedian(values, axis=0) if config.center == "median" else bn.nanmean(values, axis=0)
        changed = None
        if config.deviation == "mad_std":
            spread = MAD_TO_STD * bn.nanmedian(np.abs(values - center), axis=0)
        else:
            spread = bn.nanstd(values, axis=0)
        with np.errstate(invalid="ignore"):
            out = np.zeros(values.shape, dtype=bool)
            if config.sigma_lower is not None:
                out |= values < center - config.sigma_lower * spread
            if config.sigma_upper is not None:
                out |= values > center + config.sigma_upper * spread
        if not out.any():
            break
        values[out] = np.nan
        changed = out.any(axis=0)
    kept = np.isfinite(values)
    n_used = kept.sum(axis=0).astype(np.int16)
    if config.method == "median" and config.center == "median" and center is not None:
        # The last clipping pass already holds the median of every pixel it left unchanged;
        # only the few pixels it clipped need theirs again (saves a full median pass).
        image = center
        if changed is not None:
            where = np.nonzero(changed)
            image[where] = bn.nanmedian(values[(slice(None),) + where], axis=0)
    else:
        image = bn.nanmedian(values, axis=0) if config.method == "median" else bn.nanmean(values, axis=0)
    factor = MEDIAN_EFFICIENCY if config.method == "median" else 1.0
    if sample_variance:
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = bn.nanvar(values, axis=0, ddof=1) * factor / n_used
    else:
        variance = np.full(n_used.shape, np.nan, dtype=np.float32)
    return CombinedStrip(
        image=np.asarray(image, dtype=np.float32),
        variance=np.nan_to_num(variance, nan=np.inf, posinf=np.inf).astype(np.float32),
        n_used=n_used,
        kept=kept,
        n_valid=n_valid,
    )


#: Most frames combined through a sorting network (beyond, bottleneck's medians are cheaper).
MAX_SORTED_FRAMES = 64


def _sorted_path_applies(n: int, config: CombineConfig, sample_variance: bool) -> bool:
    return (not sample_variance and 1 <= n <= MAX_SORTED_FRAMES and config.method == "median"
            and config.center == "median" and config.deviation == "mad_std"
            and not config.reject_low and not config.reject_high)


@lru_cache(maxsize=None)
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Compare-exchange pairs of Batcher's odd-even merge sort for ``n`` inputs (n log^2 n pairs)."""
    pairs = []
    size = 1
    while size < n:
        size *= 2
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


def _network_sort(planes: list[np.ndarray]) -> list[np.ndarray]:
    """Sort a list of equal-shape arrays elementwise (in place of the list; NaN must be +inf)."""
    # One spare buffer, swapped in by reference: no allocation per compare-exchange. Dask sets
    # MALLOC_TRIM_THRESHOLD_ in its workers, which makes every large allocation a fresh mmap
    # with page faults; allocating here made a combine 1.6x slower in a worker than outside.
    spare = np.empty_like(planes[0]) if planes else None
    for a, b in sorting_network(len(planes)):
        np.minimum(planes[a], planes[b], out=spare)
        np.maximum(planes[a], planes[b], out=planes[b])
        planes[a], spare = spare, planes[a]
    return planes


def _middle(sorted_stack: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Median of ``sorted_stack[lo:hi]`` along axis 0, per pixel (NaN where the range is empty).

    Most pixels keep every value (``lo == 0``, ``hi == n``): their median is two planes'
    mean; only the others are gathered one by one.
    """
    n = sorted_stack.shape[0]
    two = sorted_stack.dtype.type(2)
    with np.errstate(invalid="ignore"):
        middle = (sorted_stack[(n - 1) // 2] + sorted_stack[n // 2]) / two
    where = np.nonzero((lo != 0) | (hi != n))
    if where[0].size:
        first = lo[where]
        m = hi[where] - first
        i1 = np.clip(first + (m - 1) // 2, 0, n - 1)
        i2 = np.clip(first + m // 2, 0, n - 1)
        with np.errstate(invalid="ignore"):
            value = (sorted_stack[(i1,) + where] + sorted_stack[(i2,) + where]) / two
        value[m <= 0] = np.nan
        middle[where] = value
    return middle


def _combine_sorted(stack: np.ndarray, config: CombineConfig) -> CombinedStrip:
    """:func:`combine_stack` for the default (median, median/MAD clipping) by sorting each pixel's values.

    Hand-written because this is where a master spends most of its time: a
    sorting network of elementwise minimum/maximum over whole frames (Batcher,
    32 compare-exchanges for 10 frames) sorts every pixel's values at once,
    about 3x faster than bottleneck's median along the stack axis, and on
    sorted values everything sigma clipping needs is an index: the values
    kept are a contiguous range, their median its middle, and each iteration
    only narrows the range. The same answer as the general path (values
    strictly beyond ``center -/+ sigma * MAD_TO_STD * MAD`` rejected;
    tests/lenghu/test_calib.py compares them).
    """
    dtype = np.result_type(stack.dtype, np.float32)
    inf = dtype.type(np.inf)
    finite = np.isfinite(stack)
    n_valid = finite.sum(axis=0).astype(np.int16)
    planes = [np.where(finite[i], stack[i].astype(dtype, copy=False), inf) for i in range(stack.shape[0])]
    ordered = np.stack(_network_sort(planes))
    lo = np.zeros(n_valid.shape, dtype=np.int64)
    hi = n_valid.astype(np.int64)
    index = np.arange(ordered.shape[0])[:, None, None] if ordered.ndim == 3 else np.arange(ordered.shape[0])[:, None]
    clip = config.sigma_lower is not None or config.sigma_upper is not None
    center = _middle(ordered, lo, hi)
    for _ in range(config.maxiters if clip else 0):
        inside = (index >= lo) & (index < hi)
        deviations = _network_sort([np.where(inside[i], np.abs(ordered[i] - center), inf)
                                    for i in range(ordered.shape[0])])
        spread = dtype.type(MAD_TO_STD) * _middle(np.stack(deviations), np.zeros_like(lo), hi - lo)
        del deviations
        new_lo, new_hi = lo, hi
        with np.errstate(invalid="ignore"):
            if config.sigma_lower is not None:
                low = center - dtype.type(config.sigma_lower) * spread
                new_lo = np.maximum(lo, (ordered < low).sum(axis=0))
            if config.sigma_upper is not None:
                high = center + dtype.type(config.sigma_upper) * spread
                new_hi = np.minimum(hi, (ordered <= high).sum(axis=0))
        new_hi = np.maximum(new_hi, new_lo)
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
        center = _middle(ordered, lo, hi)
    n_used = (hi - lo).astype(np.int16)
    first = np.take_along_axis(ordered, np.minimum(lo, ordered.shape[0] - 1)[None], axis=0)[0]
    last = np.take_along_axis(ordered, np.clip(hi - 1, 0, ordered.shape[0] - 1)[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        kept = finite & (stack >= first) & (stack <= last) & (n_used > 0)
    return CombinedStrip(
        image=np.asarray(center, dtype=np.float32),
        variance=np.full(n_used.shape, np.inf, dtype=np.float32),
        n_used=n_used,
        kept=kept,
        n_valid=n_valid,
    )


#: Gaussian pixels simulated per (frames, config) by :func:`noise_factor` (precision ~0.5%).
NOISE_SAMPLES = 100_000


@lru_cache(maxsize=512)
def noise_factor(n: int, config: CombineConfig) -> float:
    """Variance of the combined value of ``n`` unit-variance Gaussian values, times ``n``.

    1 for a plain mean; for the median 1 (n = 2), 1.35 (n = 3) rising towards
    pi/2; clipping and min/max rejection add to it. Measured once per process
    and ``(n, config)`` by combining :data:`NOISE_SAMPLES` simulated pixels
    with a fixed seed (the same number on every worker, so products are
    reproducible), which covers every combination of options exactly.
    """
    if n <= 1:
        return 1.0 if n == 1 else float("inf")
    clip = config.sigma_lower is not None or config.sigma_upper is not None
    if config.method == "mean" and not clip and not (config.reject_low or config.reject_high):
        return 1.0
    if config.reject_low + config.reject_high >= n:
        return float("inf")
    rng = np.random.Generator(np.random.SFC64(20251120 + n))
    chunk = max(1000, 2_000_000 // n)
    total = 0.0
    for start in range(0, NOISE_SAMPLES, chunk):
        m = min(chunk, NOISE_SAMPLES - start)
        values = rng.standard_normal((n, 1, m), dtype=np.float32)
        image = combine_stack(values, config).image.astype(np.float64)
        total += float(np.sum(image * image))  # the true value is 0
    return total / NOISE_SAMPLES * n


def model_variance(strip: CombinedStrip, read_variances: Iterable[np.ndarray], scales: Iterable[float],
                   poisson: bool, config: CombineConfig) -> np.ndarray:
    """Variance of a combined strip from the noise model of its inputs (not their sample variance).

    Input ``i`` (scaled by ``s_i`` before combining) has the variance
    ``s_i^2 (read_variance_i + signal)``, its signal in electrons estimated
    from the combined image (``image / s_i``; no Poisson term for biases,
    ``poisson=False``). The combined value has ``noise_factor(n) / n`` times
    the mean variance of the values kept, ``n`` the finite inputs. A sample
    variance of a few frames is itself noisy (from 3 frames, ``(master -
    truth) / sqrt(variance)`` has no finite variance at all); this is as
    precise as the model.

    Parameters
    ----------
    strip : CombinedStrip
        From :func:`combine_stack` (its ``kept`` and ``n_valid``).
    read_variances : iterable of ndarray
        Each input's read-noise variance over the strip, electrons^2 (unscaled), in stack order.
    scales : iterable of float
        Each input's scale factor.
    poisson : bool
        Whether the inputs collected charge (darks, flats) or not (biases).
    config : CombineConfig
    """
    image = np.nan_to_num(np.maximum(strip.image.astype(np.float64), 0.0), nan=0.0)
    total = np.zeros(strip.image.shape, dtype=np.float64)
    for kept, read_variance, scale in zip(strip.kept, read_variances, scales):
        term = scale * scale * np.asarray(read_variance, dtype=np.float64)
        if poisson:
            term = term + scale * image
        total += np.where(kept, term, 0.0)
    factor = np.full(strip.image.shape, np.inf)
    for n in np.unique(strip.n_valid):
        if n > 0:
            factor[strip.n_valid == n] = noise_factor(int(n), config) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = factor * total / strip.n_used
    return np.nan_to_num(variance, nan=np.inf, posinf=np.inf).astype(np.float32)


def _reject_extremes(values: np.ndarray, low: int, high: int) -> None:
    """Set the ``low`` lowest and ``high`` highest finite values of each pixel to NaN, in place."""
    n = values.shape[0]
    if low + high >= n:
        raise ValueError(f"min/max rejection of {low}+{high} leaves no frame of {n}")
    finite = np.isfinite(values)
    order = np.argsort(np.where(finite, values, np.inf), axis=0, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(n)[:, None, None], order.shape), axis=0)
    n_valid = finite.sum(axis=0)
    values[(ranks < low) | ((ranks >= n_valid - high) & finite)] = np.nan
