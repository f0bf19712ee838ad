"""Compiled master combine: sigma-clipped median and model variance in one pass over the inputs.

The default master combine (median, median/MAD clipping, the noise model's
variance: :func:`lenghu.calib.combine.combine_stack` with
``sample_variance=False`` followed by
:func:`lenghu.calib.combine.model_variance`) written as one numba kernel.
Hand-written because no library combines a stack this way: numpy needs a
dozen full-strip temporaries per step (stacking the inputs, sorting, masks,
float64 variance terms), and a master spent 0.58 s per 64 MB strip in them
against about 0.05 s here. The answer is the same, bit for bit
(tests/lenghu/test_combine_kernel.py): float32 arithmetic where numpy's is
float32, float64 where the variance model's is.

How a row is done: every input's row is scaled into a block of ``n`` rows
(NaN as +inf), a sorting network (Batcher) orders each pixel's values with
elementwise minimum/maximum along the row (vectorised by LLVM), and the
clipping then works per pixel on sorted values: the values kept are a range
of indices, its median the middle, and the median absolute deviation is
found by merging the deviations on both sides of the centre, which are
already sorted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numba import njit

from lenghu.calib.combine import (MAX_SORTED_FRAMES, CombineConfig, _sorted_path_applies, noise_factor,
                                  sorting_network)

_TWO = np.float32(2.0)


@njit(cache=True, nogil=True)
def _middle(values, x, lo, hi):
    """Median of the sorted ``values[lo:hi, x]`` (float32; NaN when empty), as numpy's ``_middle``.

    Columns are addressed by index, not as views: a view per pixel costs a reference count update.
    """
    m = hi - lo
    if m <= 0:
        return np.float32(np.nan)
    return (values[lo + (m - 1) // 2, x] + values[lo + m // 2, x]) / _TWO


@njit(cache=True, nogil=True)
def _kth_deviation(values, x, lo, hi, split, center, k):
    """The ``k``-th smallest ``|values[j, x] - center|`` for ``j`` in ``lo:hi`` (values sorted, ``split`` the
    first index whose value is above ``center``): the deviations below and above the centre are each sorted,
    so the k-th of their union comes from merging the two runs outward from the centre."""
    left = split - 1  # walks down: center - values[left] increases
    right = split  # walks up: values[right] - center increases
    dev = np.float32(0.0)
    for _ in range(k + 1):
        if left >= lo and (right >= hi or center - values[left, x] <= values[right, x] - center):
            dev = center - values[left, x]
            left -= 1
        else:
            dev = values[right, x] - center
            right += 1
    return dev


@njit(cache=True, nogil=True)
def combine_rows_kernel(inputs, n, scales, pairs, sigma_lower, sigma_upper, use_lower, use_upper, maxiters,
                        amp_index, read_variance, factor_by_n, poisson, image, variance, n_used):
    """Combine the rows of ``inputs`` (``n`` equal-shape float32 arrays) into the outputs.

    Parameters
    ----------
    inputs : tuple of :data:`TUPLE_SIZE` read-only C-contiguous float32 ndarrays (rows, nx)
        The prepared inputs' rows (unscaled; NaN where there is no data), padded with empty arrays.
    n : int
        How many of ``inputs`` are real.
    scales : ndarray (n,), float64
        Each input's scale factor (applied in float32, as numpy does with a Python float).
    pairs : ndarray (p, 2), int64
        The sorting network's compare-exchange pairs for ``n`` values.
    sigma_lower, sigma_upper : float32
        Clipping thresholds (used only where ``use_lower``/``use_upper``).
    maxiters : int
    amp_index : ndarray (rows, nx), int16
        Which rectangle of the read-variance layout covers each pixel (``k`` = none).
    read_variance : ndarray (n, k + 1), float64
        Each input's read-noise variance per rectangle, electrons^2 (0 in the last column).
    factor_by_n : ndarray (n + 1,), float64
        ``noise_factor(m) / m`` for ``m`` finite inputs (inf for 0).
    poisson : bool
        Add each kept input's Poisson term ``scale * image``.
    image, variance : ndarray (rows, nx), float32; n_used : ndarray (rows, nx), int16
        Outputs, filled.
    """
    rows, nx = image.shape
    block = np.empty((n, nx), dtype=np.float32)  # each pixel's values, sorted along the first axis
    scaled = np.empty((n, nx), dtype=np.float32)  # the same values in input order
    deviation = np.empty((n, nx), dtype=np.float32)
    n_valid = np.empty(nx, dtype=np.int64)
    lo = np.empty(nx, dtype=np.int64)
    hi = np.empty(nx, dtype=np.int64)
    center = np.empty(nx, dtype=np.float32)
    spread = np.empty(nx, dtype=np.float32)
    total = np.empty(nx, dtype=np.float64)
    level = np.empty(nx, dtype=np.float64)
    first = np.empty(nx, dtype=np.float32)
    last = np.empty(nx, dtype=np.float32)
    inf = np.float32(np.inf)
    mad_to_std = np.float32(1.482602218505602)
    scale32 = scales.astype(np.float32)
    clip = use_lower or use_upper
    for y in range(rows):
        n_valid[:] = 0
        for k in range(n):
            source = inputs[k]
            s = scale32[k]
            for x in range(nx):
                v = source[y, x] * s
                scaled[k, x] = v
                finite = np.isfinite(v)
                block[k, x] = v if finite else inf
                n_valid[x] += finite
        _sort_columns(block, pairs)
        for x in range(nx):
            lo[x] = 0
            hi[x] = n_valid[x]
            center[x] = _middle(block, x, 0, n_valid[x])
        if clip and maxiters > 0:
            # First pass for every pixel at once: deviations from the centre, sorted by the network.
            for k in range(n):
                for x in range(nx):
                    d = abs(block[k, x] - center[x])
                    deviation[k, x] = d if k < n_valid[x] else inf
            _sort_columns(deviation, pairs)
            for x in range(nx):
                spread[x] = mad_to_std * _middle(deviation, x, 0, n_valid[x])
            for x in range(nx):
                m = n_valid[x]
                if m == 0:
                    continue
                # Most pixels lose nothing: their extreme values are within the thresholds.
                c = center[x]
                inside_low = (not use_lower) or block[0, x] >= c - sigma_lower * spread[x]
                inside_high = (not use_upper) or block[m - 1, x] <= c + sigma_upper * spread[x]
                if not (inside_low and inside_high):
                    _clip_pixel(block, x, lo, hi, center, spread[x], sigma_lower, sigma_upper, use_lower,
                                use_upper, maxiters)
        # The variance model: a sum over the values kept, which lie between the first and last kept value.
        for x in range(nx):
            total[x] = 0.0
            used = hi[x] - lo[x]
            first[x] = block[lo[x], x] if used > 0 else inf
            last[x] = block[hi[x] - 1, x] if used > 0 else -inf
            c = np.float64(center[x])
            level[x] = c if c > 0.0 else 0.0  # also for NaN
        for k in range(n):
            s = scales[k]
            s2 = s * s
            for x in range(nx):
                v = scaled[k, x]
                term = s2 * read_variance[k, amp_index[y, x]]
                if poisson:
                    term = term + s * level[x]
                total[x] += term if (v >= first[x]) & (v <= last[x]) else 0.0  # False for NaN
        for x in range(nx):
            used = hi[x] - lo[x]
            image[y, x] = center[x]
            n_used[y, x] = used
            value = factor_by_n[n_valid[x]] * total[x] / used if used > 0 else np.inf
            variance[y, x] = np.float32(value) if np.isfinite(value) else inf


@njit(cache=True, nogil=True)
def _finite_counts_present(inputs, n, rows, nx):
    """Which numbers of finite values (0 to ``n``) some pixel of the rows has."""
    present = np.zeros(n + 1, dtype=np.bool_)
    count = np.zeros(nx, dtype=np.int64)
    for y in range(rows):
        count[:] = 0
        for k in range(n):
            source = inputs[k]
            for x in range(nx):
                count[x] += np.isfinite(source[y, x])
        for x in range(nx):
            present[count[x]] = True
    return present


@njit(cache=True, nogil=True)
def _sort_columns(block, pairs):
    """Sort every column of ``block`` (no NaN) with the compare-exchange ``pairs``, a row at a time."""
    nx = block.shape[1]
    for p in range(pairs.shape[0]):
        a = block[pairs[p, 0]]
        b = block[pairs[p, 1]]
        for x in range(nx):
            u = a[x]
            w = b[x]
            a[x] = u if u < w else w
            b[x] = w if u < w else u


@njit(cache=True, nogil=True)
def _clip_pixel(column, x, lo, hi, center, spread, sigma_lower, sigma_upper, use_lower, use_upper, maxiters):
    """Clipping iterations of pixel ``x`` (its values sorted in ``column[:, x]``), updating ``lo[x]``, ``hi[x]``, ``center[x]``.

    The first iteration's ``spread`` is given; later ones (after values were rejected) find the median
    absolute deviation by merging the sorted deviations on both sides of the centre.
    """
    a = lo[x]
    b = hi[x]
    c = center[x]
    for iteration in range(maxiters):
        if iteration > 0:
            m = b - a
            split = a
            while split < b and column[split, x] <= c:
                split += 1
            d1 = _kth_deviation(column, x, a, b, split, c, (m - 1) // 2)
            d2 = _kth_deviation(column, x, a, b, split, c, m // 2)
            spread = np.float32(1.482602218505602) * ((d1 + d2) / _TWO)
        new_a = a
        new_b = b
        # The kept values are sorted: the rejected ones are runs at either end of a:b. (At least half of
        # them lie on each side of the centre, so neither run reaches past the other end.)
        if use_lower:
            low = c - sigma_lower * spread
            while new_a < b and column[new_a, x] < low:
                new_a += 1
        if use_upper:
            high = c + sigma_upper * spread
            while new_b > a and column[new_b - 1, x] > high:
                new_b -= 1
        new_b = max(new_b, new_a)
        if new_a == a and new_b == b:
            break
        a = new_a
        b = new_b
        c = _middle(column, x, a, b)
        if b - a <= 0:
            break
    lo[x] = a
    hi[x] = b
    center[x] = c


#: Inputs are passed as a tuple of this many arrays (the real ones, then empty ones): one type whatever their
#: number, so the kernel is compiled once (and cached on disk), where a tuple of n arrays would be compiled
#: for every n and numba's typed list costs 0.4 s of set-up in every process.
TUPLE_SIZE = MAX_SORTED_FRAMES
_PAD = np.empty((0, 0), dtype=np.float32)
_PAD.flags.writeable = False


def _readonly(part: np.ndarray) -> np.ndarray:
    """``part`` as a plain read-only C-contiguous float32 array (a view where it already is one)."""
    view = np.ascontiguousarray(np.asarray(part), dtype=np.float32).view()
    view.flags.writeable = False
    return view


def shared_rectangles(layouts: Sequence[Sequence[tuple[int, int, int, int, float]]]) -> bool:
    """Whether every input's read-variance layout has the same rectangles (one detector's amplifiers)."""
    first = [tuple(r[:4]) for r in layouts[0]] if layouts else []
    return all([tuple(r[:4]) for r in layout] == first for layout in layouts)


def kernel_applies(n: int, config: CombineConfig, layouts: Sequence | None, dtype=np.float32) -> bool:
    """Whether :func:`combine_model` can do this combine of inputs of type ``dtype`` (else use the numpy path:
    a float64 reduction, ``precision = "float64"``, keeps numpy's float64 arithmetic)."""
    return (np.dtype(dtype) == np.float32 and layouts is not None and len(layouts) == n
            and _sorted_path_applies(n, config, False) and shared_rectangles(layouts))


def combine_model(inputs: Sequence[np.ndarray], scales: Sequence[float], config: CombineConfig,
                  layouts: Sequence[Sequence[tuple[int, int, int, int, float]]], y0: int, poisson: bool,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combined image, model variance and values used of the rows ``inputs`` (rows ``y0:`` of a detector).

    The same result as ``combine_stack(stack, config, sample_variance=False)`` followed by
    ``model_variance(...)`` on the scaled stack (see :func:`kernel_applies` for when it may be used).

    Parameters
    ----------
    inputs : sequence of ndarray (rows, nx)
        Each input's rows (unscaled float32, NaN where there is no data; memory maps are fine). Other
        types are converted to float32: pass float32 to get numpy's values.
    scales : sequence of float
    config : CombineConfig
    layouts : sequence
        Each input's read-variance layout (``(y0, y1, x0, x1, electrons^2)`` rectangles, detector rows).
    y0 : int
        Detector row of the first input row (places the layout's rectangles).
    poisson : bool
        Whether the inputs collected charge (darks, flats) or not (biases).
    """
    n = len(inputs)
    rows, nx = inputs[0].shape
    padded = tuple(_readonly(part) for part in inputs) + (_PAD,) * (TUPLE_SIZE - n)
    rectangles = layouts[0]
    amp_index = np.full((rows, nx), len(rectangles), dtype=np.int16)
    for i, (a, b, x0, x1, _) in enumerate(rectangles):  # later rectangles win, as in read_variance_rows
        if a < y0 + rows and b > y0:
            amp_index[max(a, y0) - y0:min(b, y0 + rows) - y0, x0:x1] = i
    read_variance = np.zeros((n, len(rectangles) + 1), dtype=np.float64)
    for k, layout in enumerate(layouts):
        read_variance[k, :len(layout)] = [np.float32(r[4]) for r in layout]
    # noise_factor simulates each count once per process (~30 ms each): only the counts that occur.
    present = _finite_counts_present(padded, n, rows, nx)
    factor_by_n = np.array([np.inf] + [noise_factor(m, config) / m if present[m] else np.nan
                                       for m in range(1, n + 1)])
    pairs = np.array(sorting_network(n), dtype=np.int64).reshape(-1, 2)
    image = np.empty((rows, nx), dtype=np.float32)
    variance = np.empty((rows, nx), dtype=np.float32)
    n_used = np.empty((rows, nx), dtype=np.int16)
    lower, upper = config.sigma_lower, config.sigma_upper
    combine_rows_kernel(padded, n, np.asarray(scales, dtype=np.float64), pairs,
                        np.float32(lower if lower is not None else 0.0),
                        np.float32(upper if upper is not None else 0.0), lower is not None, upper is not None,
                        config.maxiters, amp_index, read_variance, factor_by_n, poisson, image, variance, n_used)
    return image, variance, n_used


def warm_up() -> None:
    """Compile the kernels into numba's on-disk cache (a few seconds, once per installation).

    ``make setup`` calls it, so that the first master combine of a night does not pay for it; later
    processes load the cached machine code (about 0.3 s, numba's own start-up).
    """
    inputs = [np.ones((2, 8), dtype=np.float32) for _ in range(3)]
    combine_model(inputs, [1.0, 1.0, 1.0], CombineConfig(), [[(0, 2, 0, 8, 1.0)]] * 3, 0, True)


if __name__ == "__main__":  # python -m lenghu.calib.combine_kernel
    warm_up()
