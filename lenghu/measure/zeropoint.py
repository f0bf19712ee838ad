"""Photometric zeropoints against a reference catalogue, and their trend with airmass.

Definitions (the simulator's, :mod:`lenghu.simulate.sky`, and the usual one):
the zeropoint ``ZP`` of an exposure is the AB magnitude of a source giving
1 electron per second, so a star of ``flux`` electrons in ``exptime`` seconds
has ``mag = ZP - 2.5 log10(flux / exptime)``. Each reference star gives one
estimate ``ZP_i = mag_ref - (-2.5 log10(flux_i / exptime))``; the exposure's
zeropoint is their sigma-clipped, inverse-variance weighted mean.

Across exposures in one filter, ``ZP(X) = ZP_1 - k (X - 1)``: ``ZP_1`` is the
zeropoint at airmass 1 (the simulator's ``ZEROPOINT``) and ``k`` the
extinction in mag per airmass; :func:`fit_airmass_trend` fits both.

Pure functions: no files are read or written.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Literal

import astropy.units as u
import numpy as np
from astropy.stats import mad_std, sigma_clip
from numpy.typing import ArrayLike

from lenghu.errors import ConfigError

#: Source named in configuration errors of this module.
SOURCE = "lenghu measure zeropoint"

#: 2.5 / ln(10): magnitude error per unit relative flux error.
MAG_PER_RELATIVE_FLUX = 2.5 / math.log(10.0)

__all__ = [
    "AirmassTrend", "AirmassTrendConfig", "SOURCE", "ZeropointConfig", "ZeropointResult", "ZeropointStatus",
    "calibrated_magnitudes", "fit_airmass_trend", "measure_zeropoint",
]


def _mag(value, name: str) -> u.Quantity:
    try:
        q = value.to(u.mag) if isinstance(value, u.Quantity) else u.Quantity(value, u.mag)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise ConfigError(SOURCE, f"{name} = {value!r} is not in mag") from exc
    return q


def _seconds(exptime) -> float:
    """Exposure time in s from a Quantity or a number (taken as seconds)."""
    t = exptime.to_value(u.s) if isinstance(exptime, u.Quantity) else float(exptime)
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"exposure time must be positive, got {exptime!r}")
    return t


# ============================================================================ one exposure

@dataclass(frozen=True)
class ZeropointConfig:
    """How an exposure's zeropoint is measured.

    Attributes
    ----------
    min_snr : float
        Stars with a lower flux signal-to-noise ratio are not used.
    clip_sigma : float
        Stars whose zeropoint is further than this many (MAD-based) standard
        deviations from the median are rejected, iteratively.
    max_iterations : int
        Clipping iterations at most.
    min_stars : int
        Fewer stars left: the result is failed.
    error_floor : Quantity
        Added in quadrature to each star's error in the weights (reference
        catalogue errors, colour terms, flat-field residuals), mag; it keeps
        the brightest stars from taking all the weight.
    error_method : {"standard", "bootstrap"}
        ``standard``: the weighted mean's standard error, scaled up by
        sqrt(reduced chi^2) when the scatter exceeds the errors;
        ``bootstrap``: the standard deviation of the weighted means of
        ``n_bootstrap`` resamples of the kept stars.
    n_bootstrap : int
        Resamples for the bootstrap.
    seed : int
        Seed of the bootstrap's generator (results are reproducible).
    """

    min_snr: float = 20.0
    clip_sigma: float = 3.0
    max_iterations: int = 10
    min_stars: int = 5
    error_floor: u.Quantity = 0.005 * u.mag
    error_method: Literal["standard", "bootstrap"] = "standard"
    n_bootstrap: int = 500
    seed: int = 0

    def __post_init__(self):
        floor = _mag(self.error_floor, "error_floor")
        if not (np.isfinite(floor.value) and floor.value >= 0):
            raise ConfigError(SOURCE, f"error_floor must be >= 0 mag, got {self.error_floor!r}")
        object.__setattr__(self, "error_floor", floor)
        if not (isinstance(self.min_snr, (int, float)) and self.min_snr > 0):
            raise ConfigError(SOURCE, f"min_snr must be positive, got {self.min_snr!r}")
        if not (isinstance(self.clip_sigma, (int, float)) and self.clip_sigma >= 1.5):
            raise ConfigError(SOURCE, f"clip_sigma must be at least 1.5, got {self.clip_sigma!r}")
        for name, low in (("max_iterations", 1), ("min_stars", 2), ("n_bootstrap", 10)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ConfigError(SOURCE, f"{name} must be an integer >= {low}, got {value!r}")
        if self.error_method not in ("standard", "bootstrap"):
            raise ConfigError(SOURCE, f"error_method must be 'standard' or 'bootstrap', got {self.error_method!r}")


class ZeropointStatus(str, enum.Enum):
    """Outcome of :func:`measure_zeropoint`."""

    OK = "ok"
    TOO_FEW_STARS = "too_few_stars"


@dataclass(frozen=True, eq=False)
class ZeropointResult:
    """An exposure's (and detector's) zeropoint.

    Attributes
    ----------
    status : ZeropointStatus
    reason : str
    zeropoint_mag : float
        AB magnitude giving 1 electron per second (NaN when failed).
    error_mag : float
        Its standard error.
    scatter_mag : float
        Standard deviation of the kept stars' zeropoints.
    chi2_reduced : float
        Of the kept stars about the mean, with their errors (floor included).
    n_used : int
        Stars kept after clipping.
    n_candidates : int
        Stars that passed the S/N, flag and finiteness cuts.
    used : ndarray of bool
        Per input star, whether it was kept.
    star_zeropoints : ndarray
        Per input star, its zeropoint estimate (NaN where not computable).
    """

    status: ZeropointStatus
    reason: str
    zeropoint_mag: float = math.nan
    error_mag: float = math.nan
    scatter_mag: float = math.nan
    chi2_reduced: float = math.nan
    n_used: int = 0
    n_candidates: int = 0
    used: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    star_zeropoints: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def ok(self) -> bool:
        """Whether a zeropoint was measured."""
        return self.status is ZeropointStatus.OK


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    return float(np.sum(weights * values) / np.sum(weights))


def measure_zeropoint(
    flux: ArrayLike,
    flux_err: ArrayLike,
    ref_mag: ArrayLike,
    exptime: u.Quantity | float,
    *,
    ref_mag_err: ArrayLike | None = None,
    usable: ArrayLike | None = None,
    config: ZeropointConfig | None = None,
) -> ZeropointResult:
    """The zeropoint of one exposure and detector from matched reference stars.

    Parameters
    ----------
    flux, flux_err : array_like
        Measured fluxes of the matched stars and their errors, electrons
        (a total flux: a large aperture, or an aperture-corrected one).
    ref_mag : array_like
        Their reference magnitudes in the image's filter, AB mag.
    exptime : Quantity or float
        Exposure time (a number is taken as seconds).
    ref_mag_err : array_like, optional
        Errors of the reference magnitudes, mag (added in quadrature).
    usable : array_like of bool, optional
        Stars fit for photometry (unsaturated, unflagged); default all.
    config : ZeropointConfig, optional

    Returns
    -------
    ZeropointResult
        Failed (NaN zeropoint, with the reason) when fewer than
        ``config.min_stars`` stars remain.

    Raises
    ------
    ValueError
        Arrays of different lengths or a non-positive exposure time.
    """
    config = config or ZeropointConfig()
    t = _seconds(exptime)
    flux, flux_err, ref_mag = (np.asarray(a, dtype=float).ravel() for a in (flux, flux_err, ref_mag))
    n = len(flux)
    if not len(flux_err) == len(ref_mag) == n:
        raise ValueError(f"flux, flux_err and ref_mag differ in length: {n}, {len(flux_err)}, {len(ref_mag)}")
    ref_err = np.zeros(n) if ref_mag_err is None else np.asarray(ref_mag_err, dtype=float).ravel()
    if len(ref_err) != n:
        raise ValueError("ref_mag_err differs in length from flux")
    ok = np.isfinite(flux) & np.isfinite(flux_err) & np.isfinite(ref_mag) & np.isfinite(ref_err)
    ok &= (flux > 0) & (flux_err > 0)
    if usable is not None:
        usable = np.asarray(usable, dtype=bool).ravel()
        if len(usable) != n:
            raise ValueError("usable differs in length from flux")
        ok &= usable
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(ok, flux / flux_err, 0.0)
        star_zp = np.where(flux > 0, ref_mag + 2.5 * np.log10(flux / t), np.nan)
    ok &= snr >= config.min_snr
    candidates = int(ok.sum())
    # Each star's zeropoint error: photon statistics, the reference's error and the floor.
    sigma_flux = MAG_PER_RELATIVE_FLUX / np.where(ok, snr, 1.0)
    sigma = np.sqrt(sigma_flux**2 + ref_err**2 + config.error_floor.to_value(u.mag) ** 2)

    def failed(kept: int) -> ZeropointResult:
        return ZeropointResult(
            ZeropointStatus.TOO_FEW_STARS,
            f"{kept} stars with S/N >= {config.min_snr:g} left (of {n} matched), need {config.min_stars}",
            n_used=kept, n_candidates=candidates, used=np.zeros(n, dtype=bool), star_zeropoints=star_zp)

    if candidates < config.min_stars:
        return failed(candidates)
    clipped = sigma_clip(star_zp[ok], sigma=config.clip_sigma, maxiters=config.max_iterations,
                         cenfunc="median", stdfunc="mad_std", masked=True)
    used = ok.copy()
    used[ok] = ~np.ma.getmaskarray(clipped)
    k = int(used.sum())
    if k < config.min_stars:
        return failed(k)
    values, weights = star_zp[used], 1.0 / sigma[used] ** 2
    mean = _weighted_mean(values, weights)
    chi2r = float(np.sum(weights * (values - mean) ** 2) / (k - 1))
    if config.error_method == "standard":
        error = math.sqrt(1.0 / np.sum(weights)) * math.sqrt(max(1.0, chi2r))
    else:
        rng = np.random.default_rng(config.seed)
        draws = rng.integers(0, k, size=(config.n_bootstrap, k))
        means = np.sum(weights[draws] * values[draws], axis=1) / np.sum(weights[draws], axis=1)
        error = float(np.std(means, ddof=1))
    return ZeropointResult(
        ZeropointStatus.OK,
        f"{k} of {candidates} stars, scatter {np.std(values, ddof=1):.4f} mag",
        zeropoint_mag=mean, error_mag=error, scatter_mag=float(np.std(values, ddof=1)), chi2_reduced=chi2r,
        n_used=k, n_candidates=candidates, used=used, star_zeropoints=star_zp)


def calibrated_magnitudes(
    flux: ArrayLike, flux_err: ArrayLike, exptime: u.Quantity | float, zeropoint: ZeropointResult
) -> tuple[np.ndarray, np.ndarray]:
    """AB magnitudes and their statistical errors for a catalogue, from a zeropoint.

    ``mag = ZP - 2.5 log10(flux / exptime)``; NaN where the flux is not
    positive or the zeropoint failed. The error is the flux's alone (the
    zeropoint's error is common to all stars of the detector and is recorded
    with the zeropoint).

    Returns
    -------
    mag, mag_err : ndarray
        mag.
    """
    t = _seconds(exptime)
    flux = np.asarray(flux, dtype=float)
    flux_err = np.asarray(flux_err, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, zeropoint.zeropoint_mag - 2.5 * np.log10(flux / t), np.nan)
        err = np.where(flux > 0, MAG_PER_RELATIVE_FLUX * flux_err / flux, np.nan)
    return mag, err


# ============================================================================ across exposures

@dataclass(frozen=True)
class AirmassTrendConfig:
    """How the zeropoint's airmass trend is fitted.

    Attributes
    ----------
    min_exposures : int
        Fewer exposures (after clipping): failed.
    min_airmass_span : float
        A smaller range of airmass gives no useful slope: failed.
    clip_sigma : float or None
        Exposures further than this many errors (times the MAD-based spread of
        the normalised residuals, when above 1) from a robust (Theil-Sen) line
        are rejected, e.g. one taken through a cloud; None: no clipping.
        Clipping needs more than ``min_exposures`` exposures.
    scale_errors : bool
        Multiply the covariance by the reduced chi^2 when it exceeds 1 (the
        zeropoints scatter more than their errors say: the night was not
        photometric, or the errors are underestimated).
    """

    min_exposures: int = 3
    min_airmass_span: float = 0.05
    clip_sigma: float | None = 3.0
    scale_errors: bool = True

    def __post_init__(self):
        if not isinstance(self.min_exposures, (int, np.integer)) or self.min_exposures < 3:
            raise ConfigError(SOURCE, f"min_exposures must be an integer >= 3, got {self.min_exposures!r}")
        if not (isinstance(self.min_airmass_span, (int, float)) and self.min_airmass_span > 0):
            raise ConfigError(SOURCE, f"min_airmass_span must be positive, got {self.min_airmass_span!r}")
        if self.clip_sigma is not None and not (isinstance(self.clip_sigma, (int, float)) and self.clip_sigma >= 1.5):
            raise ConfigError(SOURCE, f"clip_sigma must be None or >= 1.5, got {self.clip_sigma!r}")


@dataclass(frozen=True, eq=False)
class AirmassTrend:
    """``ZP(X) = zeropoint_airmass1 - extinction * (X - 1)`` fitted over exposures in one filter.

    Attributes
    ----------
    ok : bool
        Whether the fit was made.
    reason : str
    extinction : float
        ``k``, mag per airmass (positive: fainter at higher airmass).
    extinction_error : float
    zeropoint_airmass1 : float
        Zeropoint at airmass 1, mag.
    zeropoint_airmass1_error : float
    covariance : ndarray
        2 x 2 covariance of ``(zeropoint_airmass1, extinction)``, mag^2 and
        mag^2/airmass.
    chi2_reduced : float
        Before any scaling of the errors.
    n_used : int
    airmass_span : float
        Largest minus smallest airmass of the exposures used.
    used : ndarray of bool
        Per exposure, whether it was used.
    """

    ok: bool
    reason: str
    extinction: float = math.nan
    extinction_error: float = math.nan
    zeropoint_airmass1: float = math.nan
    zeropoint_airmass1_error: float = math.nan
    covariance: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))
    chi2_reduced: float = math.nan
    n_used: int = 0
    airmass_span: float = math.nan
    used: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def zeropoint_airmass0(self) -> float:
        """Zeropoint above the atmosphere (airmass 0, extrapolated), mag."""
        return self.zeropoint_airmass1 + self.extinction

    def predict(self, airmass: ArrayLike) -> np.ndarray:
        """The fitted zeropoint at ``airmass``, mag."""
        return self.zeropoint_airmass1 - self.extinction * (np.asarray(airmass, dtype=float) - 1.0)


def fit_airmass_trend(
    airmass: ArrayLike,
    zeropoint: ArrayLike,
    zeropoint_error: ArrayLike,
    *,
    config: AirmassTrendConfig | None = None,
) -> AirmassTrend:
    """Fit the zeropoints of several exposures (one filter) linearly against airmass.

    Weighted least squares (:func:`numpy.polyfit` with weights ``1/error``)
    of ``ZP`` on ``X - 1``, so the intercept is the zeropoint at airmass 1 and
    its covariance with the slope is small.

    Parameters
    ----------
    airmass : array_like
        Airmass of each exposure (mid-exposure).
    zeropoint, zeropoint_error : array_like
        Each exposure's zeropoint and its error, mag (non-finite entries are
        left out).
    config : AirmassTrendConfig, optional

    Returns
    -------
    AirmassTrend
        ``ok`` False with the reason when too few exposures or too small an
        airmass range.
    """
    config = config or AirmassTrendConfig()
    x = np.asarray(airmass, dtype=float).ravel()
    zp = np.asarray(zeropoint, dtype=float).ravel()
    err = np.asarray(zeropoint_error, dtype=float).ravel()
    if not len(x) == len(zp) == len(err):
        raise ValueError(f"airmass, zeropoint and zeropoint_error differ in length: {len(x)}, {len(zp)}, {len(err)}")
    used = np.isfinite(x) & np.isfinite(zp) & np.isfinite(err) & (err > 0)

    def check(mask: np.ndarray) -> str | None:
        if mask.sum() < config.min_exposures:
            return f"{int(mask.sum())} exposures with a zeropoint, need {config.min_exposures}"
        span = float(np.ptp(x[mask]))
        if span < config.min_airmass_span:
            return f"airmass spans only {span:.3f} (need {config.min_airmass_span}): the slope is not constrained"
        return None

    problem = check(used)
    if problem:
        return AirmassTrend(False, problem, n_used=int(used.sum()), used=used)
    if config.clip_sigma is not None and used.sum() > config.min_exposures:
        # Outliers (an exposure through a cloud) are judged against a robust line (Theil-Sen, which
        # a least-squares line pulled by the outlier itself would hide), in units of each
        # exposure's error times the robust spread of those normalised residuals when above 1.
        from scipy.stats import theilslopes  # scipy.stats takes 0.4 s to import: only when a trend is fitted

        slope0, intercept0, _, _ = theilslopes(zp[used], x[used] - 1.0)
        z = (zp - (intercept0 + slope0 * (x - 1.0))) / err
        z -= np.median(z[used])  # Theil-Sen's intercept is not a weighted one
        spread = max(1.0, float(mad_std(z[used])))
        clipped = used & (np.abs(z) <= config.clip_sigma * spread)
        if check(clipped) is None:
            used = clipped
    coef, cov = np.polyfit(x[used] - 1.0, zp[used], 1, w=1.0 / err[used], cov="unscaled")
    slope, intercept = coef
    resid = (zp[used] - np.polyval(coef, x[used] - 1.0)) / err[used]
    dof = int(used.sum()) - 2
    chi2r = float(np.sum(resid**2) / dof) if dof > 0 else math.nan
    cov = np.asarray(cov)[::-1, ::-1]  # polyfit orders (slope, intercept); we report (intercept, k)
    cov = cov * np.array([[1.0, -1.0], [-1.0, 1.0]])  # k = -slope
    if config.scale_errors and math.isfinite(chi2r) and chi2r > 1.0:
        cov = cov * chi2r
    return AirmassTrend(
        True,
        f"{int(used.sum())} exposures over airmass {x[used].min():.3f}-{x[used].max():.3f}",
        extinction=float(-slope), extinction_error=float(math.sqrt(cov[1, 1])),
        zeropoint_airmass1=float(intercept), zeropoint_airmass1_error=float(math.sqrt(cov[0, 0])),
        covariance=cov, chi2_reduced=chi2r, n_used=int(used.sum()), airmass_span=float(np.ptp(x[used])),
        used=used)
