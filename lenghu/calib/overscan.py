"""Overscan level of an amplifier: one number, or one per row.

Methods
-------
``median``
    One sigma-clipped median of the whole overscan region (robust to a few
    cosmic rays in the overscan).
``row_median``
    The median of each row of the overscan, subtracted row by row; this is
    what ccdproc's ``subtract_overscan(median=True)`` does.
``row_poly``
    A Legendre polynomial of ``order`` fitted to the per-row medians, with
    sigma-clipped refits (removes slow bias drifts along the readout without
    adding each row's read noise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from astropy.stats import sigma_clipped_stats

OverscanMethod = Literal["median", "row_median", "row_poly"]


@dataclass(frozen=True)
class OverscanConfig:
    """How the overscan level is estimated.

    Attributes
    ----------
    method : {"median", "row_median", "row_poly"}
        See the module docstring.
    order : int
        Polynomial order for ``row_poly``.
    sigma : float
        Clipping threshold (standard deviations) for ``median`` and ``row_poly``.
    skip_columns : int
        Overscan columns next to the data left out (charge transfer trails).
    """

    method: OverscanMethod = "row_median"
    order: int = 3
    sigma: float = 3.0
    skip_columns: int = 0

    def __post_init__(self):
        if self.method not in ("median", "row_median", "row_poly"):
            raise ValueError(f"overscan method {self.method!r} is not median, row_median or row_poly")
        if self.order < 0 or self.sigma <= 0 or self.skip_columns < 0:
            raise ValueError("overscan order, sigma and skip_columns must be positive")


def overscan_level(overscan: np.ndarray, config: OverscanConfig) -> np.ndarray:
    """The bias level in ADU, shaped ``(ny, 1)`` so it broadcasts over the data rows.

    Parameters
    ----------
    overscan : ndarray, shape (ny, n_overscan_columns)
        The amplifier's overscan pixels, ADU.
    config : OverscanConfig
    """
    region = np.asarray(overscan, dtype=np.float64)[:, config.skip_columns:]
    if region.shape[1] == 0:
        raise ValueError("no overscan columns left after skip_columns")
    ny = region.shape[0]
    if config.method == "median":
        _, median, _ = sigma_clipped_stats(region, sigma=config.sigma, maxiters=5)
        return np.full((ny, 1), median)
    rows = np.median(region, axis=1)
    if config.method == "row_median":
        return rows[:, None]
    return _robust_legendre(rows, config.order, config.sigma)[:, None]


def overscan_level_variance(shape: tuple[int, int], config: OverscanConfig) -> float:
    """Variance of the estimated level of one row, in units of one overscan pixel's variance.

    The level is subtracted from every pixel of its row, so its noise adds to
    each pixel's read noise: for ``row_median`` with 8 overscan columns (a WFST
    CCD at 1/4 size and below) about 17% of the read-noise variance.
    ``shape`` is the overscan's ``(rows, columns)``.
    """
    from lenghu.calib.combine import CombineConfig, noise_factor

    ny, columns = shape[0], shape[1] - config.skip_columns
    if ny <= 0 or columns <= 0:
        return 0.0
    median = CombineConfig(method="median", sigma_lower=None, sigma_upper=None)
    if config.method == "median":
        return (np.pi / 2) / (ny * columns)  # one clipped median of the whole region
    per_row = noise_factor(columns, median) / columns
    if config.method == "row_median":
        return per_row
    return per_row * min(1.0, (config.order + 1) / ny)  # a least-squares fit averages over rows


def _robust_legendre(values: np.ndarray, order: int, sigma: float, iterations: int = 5) -> np.ndarray:
    """Legendre fit to ``values`` against row number, refitted without outliers."""
    x = np.linspace(-1.0, 1.0, values.size)
    keep = np.isfinite(values)
    fit = np.polynomial.legendre.Legendre.fit(x[keep], values[keep], order)
    for _ in range(iterations):
        residual = values - fit(x)
        scale = 1.4826 * np.median(np.abs(residual[keep]))
        new_keep = np.isfinite(values) & (np.abs(residual) <= sigma * max(scale, 1e-12))
        if np.array_equal(new_keep, keep) or new_keep.sum() <= order + 1:
            break
        keep = new_keep
        fit = np.polynomial.legendre.Legendre.fit(x[keep], values[keep], order)
    return fit(x)
