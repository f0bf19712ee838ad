"""Astrometric calibration of one detector: pattern matching, then a TAN-SIP fit.

Nothing here reads or writes files; the caller hands over detections, the
reference catalogue and the WCS from the header, and gets back an
:class:`AstrometryResult`. The steps:

1. **Projection.** Reference stars near the detector are projected to pixels
   through the initial (header) WCS. When that WCS is off by arcminutes and a
   degree (a pointing error), the projected positions differ from the detected
   ones by a *similarity transform* (rotation, shift, scale ~1) far larger than
   the spacing of the stars, so nearest-neighbour matching would pair the
   wrong stars.
2. **Pattern matching** (:func:`match_pattern`) finds that transform from the
   brightest detections and the brightest projected reference stars, without
   assuming it is small: every pair of bright detections is compared with
   every pair of reference stars of the same length (the scale is known to
   ``max_scale_error``) and orientation (to ``max_rotation``); each such pair
   of pairs votes for one rotation, scale and shift, and the transform most
   votes agree on wins if, applied to all bright stars, it lines up at least
   ``min_pattern_stars`` of them. This is the core of LSST's "optimistic
   pattern matcher B" (Tabur 2007; meas_astrom's ``matchOptimisticB``), made
   simpler by the fixed scale: pair lengths are invariant, so triangles are
   not needed.
3. **Refinement**: nearest-neighbour matching of all stars through the
   current solution, a TAN (first pass) then TAN-SIP fit
   (:func:`astropy.wcs.utils.fit_wcs_from_points`), sigma clipping of the
   residuals, repeated until the matches no longer change. The inverse SIP
   polynomials (``AP``, ``BP``), which astropy's fit leaves at zero, are then
   fitted so other software can go from sky to pixels.
4. **Checks**: too few matches, a residual RMS above ``max_rms``, or a
   solution whose shift, rotation, scale or distortion relative to the initial
   WCS is beyond what the configuration allows give a *failed* result with no
   WCS: the caller must keep the product flagged rather than write a wrong WCS.

Pixel coordinates are 0-based (the centre of the first pixel is 0, 0), as
numpy, sep and the catalogues use them; astropy calls are made with
``origin=0``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.stats import sigma_clip
from astropy.wcs import WCS, Sip
from astropy.wcs.utils import fit_wcs_from_points, proj_plane_pixel_scales
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree

from lenghu.errors import ConfigError

#: Source named in configuration errors of this module.
SOURCE = "lenghu measure astrometry"

__all__ = [
    "AstrometryConfig", "AstrometryResult", "AstrometryStatus", "PatternMatch", "SOURCE",
    "fit_inverse_sip", "match_pattern", "solve_astrometry",
]


# ============================================================================ config

@dataclass(frozen=True)
class AstrometryConfig:
    """How a detector's WCS is found and when it is rejected.

    Attributes
    ----------
    max_shift : Quantity
        Largest offset (angle) of the detector on the sky between the initial
        WCS and the truth. It must include what a rotation error about a
        distant boresight adds: at the corner CCDs of WFST (about 72' from the
        boresight) 1 deg of rotation moves the CCD by 1.3'. Default 4 arcmin
        (2' pointing error plus that).
    max_rotation : Quantity
        Largest rotation between the initial WCS and the truth, deg.
    max_scale_error : float
        Largest relative error of the initial WCS's pixel scale.
    pattern_detections : int
        Brightest usable detections used for pattern matching.
    pattern_references : int
        Most reference stars used for pattern matching (the brightest within
        the detector grown by ``max_shift``; their number otherwise scales
        with that area so the two lists reach about the same depth).
    pattern_tolerance : Quantity
        How far a bright star may lie from where the similarity transform puts
        it (centroid errors, distortion the initial WCS gets wrong), arcsec.
    min_pair_fraction : float
        Pairs of stars closer than this fraction of the detector's shorter side
        do not vote (their direction is too uncertain).
    min_pattern_stars : int
        Bright stars the voted transform must line up for the pattern to count
        as found; a wrong field lines up 0 to 3.
    match_radius_initial : Quantity
        Match radius of the first refinement pass (after pattern matching),
        arcsec.
    match_radius : Quantity
        Match radius of the later passes, arcsec.
    sip_degree : int
        Degree of the SIP distortion polynomial (0: plain TAN).
    sip_min_matches : int
        Fewer matches than this fit a plain TAN (a SIP fit would be poorly
        constrained).
    clip_sigma : float
        Residuals beyond this many (MAD-based) standard deviations in either
        axis are rejected.
    max_iterations : int
        Refinement passes at most.
    max_fit_stars : int
        The fit uses at most this many matches, the brightest (their centroids
        are the best, and the fit's cost grows with their number).
    min_matches : int
        Fewer matches than this: failed.
    min_match_fraction : float
        Matches must be at least this fraction of the smaller of the usable
        detections and the reference stars on the detector: failed otherwise.
    max_rms : Quantity
        Residual RMS (radial, over the kept matches) above this: failed, arcsec.
    max_distortion_change : Quantity
        Largest departure of the fitted WCS from the initial one over the
        detector once a similarity transform is taken out (a SIP polynomial
        running wild where there are no stars), arcsec.
    """

    max_shift: u.Quantity = 4.0 * u.arcmin
    max_rotation: u.Quantity = 3.0 * u.deg
    max_scale_error: float = 0.01
    pattern_detections: int = 40
    pattern_references: int = 300
    pattern_tolerance: u.Quantity = 1.0 * u.arcsec
    min_pair_fraction: float = 0.1
    min_pattern_stars: int = 6
    match_radius_initial: u.Quantity = 2.0 * u.arcsec
    match_radius: u.Quantity = 1.0 * u.arcsec
    sip_degree: int = 3
    sip_min_matches: int = 30
    clip_sigma: float = 3.0
    max_iterations: int = 5
    max_fit_stars: int = 1000
    min_matches: int = 10
    min_match_fraction: float = 0.2
    max_rms: u.Quantity = 0.3 * u.arcsec
    max_distortion_change: u.Quantity = 10.0 * u.arcsec

    def __post_init__(self):
        angles = {
            "max_shift": u.arcmin, "max_rotation": u.deg, "pattern_tolerance": u.arcsec,
            "match_radius_initial": u.arcsec, "match_radius": u.arcsec, "max_rms": u.arcsec,
            "max_distortion_change": u.arcsec,
        }
        for name, unit in angles.items():
            value = getattr(self, name)
            try:
                q = u.Quantity(value, unit) if not isinstance(value, u.Quantity) else value.to(unit)
            except (TypeError, ValueError, u.UnitsError) as exc:
                raise ConfigError(SOURCE, f"{name} = {value!r} is not an angle") from exc
            if not (np.isfinite(q.value) and q.value > 0):
                raise ConfigError(SOURCE, f"{name} must be a positive angle, got {value!r}")
            object.__setattr__(self, name, q)
        if self.max_rotation >= 45 * u.deg:
            raise ConfigError(SOURCE, f"max_rotation must be below 45 deg, got {self.max_rotation}")
        for name in ("pattern_detections", "pattern_references", "min_pattern_stars", "max_iterations",
                     "max_fit_stars", "min_matches", "sip_min_matches"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(SOURCE, f"{name} must be a positive integer, got {value!r}")
        if self.min_pattern_stars < 3:
            raise ConfigError(SOURCE, f"min_pattern_stars must be at least 3, got {self.min_pattern_stars}")
        if self.pattern_detections < self.min_pattern_stars:
            raise ConfigError(SOURCE, "pattern_detections must be at least min_pattern_stars")
        if not isinstance(self.sip_degree, (int, np.integer)) or not 0 <= self.sip_degree <= 7:
            raise ConfigError(SOURCE, f"sip_degree must be an integer 0-7, got {self.sip_degree!r}")
        for name, low, high in (("max_scale_error", 0.0, 0.2), ("min_pair_fraction", 0.0, 0.9),
                                ("min_match_fraction", 0.0, 1.0)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and low <= value <= high):
                raise ConfigError(SOURCE, f"{name} must be in [{low}, {high}], got {value!r}")
        if not (isinstance(self.clip_sigma, (int, float)) and self.clip_sigma >= 1.5):
            raise ConfigError(SOURCE, f"clip_sigma must be at least 1.5, got {self.clip_sigma!r}")
        if self.match_radius > self.match_radius_initial:
            raise ConfigError(SOURCE, "match_radius must not exceed match_radius_initial")


# ============================================================================ results

class AstrometryStatus(str, enum.Enum):
    """Outcome of :func:`solve_astrometry` (``OK`` or why it failed)."""

    OK = "ok"
    TOO_FEW_SOURCES = "too_few_sources"
    NO_PATTERN = "no_pattern"
    TOO_FEW_MATCHES = "too_few_matches"
    HIGH_RMS = "high_rms"
    IMPLAUSIBLE = "implausible"


@dataclass(frozen=True, eq=False)
class PatternMatch:
    """The similarity transform from projected reference pixels to detected pixels.

    ``p = scale * R(rotation) @ (q - centre) + centre + shift``, where ``q`` is
    a reference star projected through the initial WCS and ``p`` its detection.

    Attributes
    ----------
    found : bool
        Whether at least ``min_pattern_stars`` bright stars line up.
    rotation : float
        Radians, counter-clockwise in pixel coordinates.
    scale : float
        Detected over projected lengths.
    shift : ndarray
        ``(dx, dy)`` pixels.
    centre : ndarray
        ``(x, y)`` pixels about which the rotation is made.
    n_stars : int
        Bright stars lined up (within ``2 * pattern_tolerance``).
    votes : int
        Pairs of pairs that voted for this transform.
    detection_index, reference_index : ndarray of int
        The lined-up stars: indices into the arrays given to :func:`match_pattern`.
    """

    found: bool
    rotation: float
    scale: float
    shift: np.ndarray
    centre: np.ndarray
    n_stars: int
    votes: int
    detection_index: np.ndarray
    reference_index: np.ndarray

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Transform projected reference pixels ``xy`` (N x 2) to detected pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        rel = np.asarray(xy, dtype=float) - self.centre
        out = np.empty_like(rel)
        out[:, 0] = self.scale * (c * rel[:, 0] - s * rel[:, 1])
        out[:, 1] = self.scale * (s * rel[:, 0] + c * rel[:, 1])
        return out + self.centre + self.shift


@dataclass(frozen=True, eq=False)
class AstrometryResult:
    """What :func:`solve_astrometry` found.

    Attributes
    ----------
    status : AstrometryStatus
        ``OK`` or the reason for failure.
    reason : str
        A sentence for logs and the night report.
    wcs : astropy.wcs.WCS or None
        The fitted TAN-SIP WCS (with inverse SIP), None unless ``status`` is
        ``OK``. Do not modify it in place (share a ``deepcopy``).
    rms_arcsec : float
        Radial RMS of the residuals of the kept matches, arcsec (NaN when no
        fit was made). Per axis it is this over sqrt(2).
    n_matched : int
        Matches kept by the final fit.
    detection_index, reference_index : ndarray of int
        The kept matches: indices into the detection and reference arrays.
    residuals_arcsec : ndarray
        N x 2: reference minus fitted position of each kept match, along RA
        (times cos Dec) and Dec, arcsec.
    n_pattern : int
        Bright stars the pattern matcher lined up.
    shift_arcsec : float
        How far the fitted WCS moves the detector's centre from the initial
        WCS, arcsec (NaN without a fit).
    rotation_deg : float
        Rotation of the fitted WCS relative to the initial one at the
        detector's centre, deg, counter-clockwise in pixels.
    scale_ratio : float
        Fitted over initial pixel scale.
    sip_degree : int
        Degree of the fitted SIP polynomial (0: plain TAN).
    iterations : int
        Refinement passes made.
    """

    status: AstrometryStatus
    reason: str
    wcs: WCS | None = None
    rms_arcsec: float = math.nan
    n_matched: int = 0
    detection_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    reference_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.intp))
    residuals_arcsec: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    n_pattern: int = 0
    shift_arcsec: float = math.nan
    rotation_deg: float = math.nan
    scale_ratio: float = math.nan
    sip_degree: int = 0
    iterations: int = 0

    @property
    def ok(self) -> bool:
        """Whether a WCS was found."""
        return self.status is AstrometryStatus.OK

    @property
    def matches(self) -> np.ndarray:
        """N x 2 array of ``(detection index, reference index)`` of the kept matches."""
        return np.column_stack([self.detection_index, self.reference_index])


# ============================================================================ pattern matching

def _similarity_fit(q: np.ndarray, p: np.ndarray, centre: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares ``p = s R(theta) (q - c) + c + t``; returns ``(theta, s, t)``.

    Linear in ``a = s cos(theta)``, ``b = s sin(theta)``, ``t``: four unknowns,
    solved with :func:`numpy.linalg.lstsq` (scipy's Procrustes routines give a
    rotation but not the translation and scale together).
    """
    rel = q - centre
    n = len(rel)
    design = np.zeros((2 * n, 4))
    design[:n, 0], design[:n, 1], design[:n, 2] = rel[:, 0], -rel[:, 1], 1.0
    design[n:, 0], design[n:, 1], design[n:, 3] = rel[:, 1], rel[:, 0], 1.0
    rhs = np.concatenate([p[:, 0] - centre[0], p[:, 1] - centre[1]])
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, rhs, rcond=None)
    return math.atan2(b, a), math.hypot(a, b), np.array([tx, ty])


def _pairs(xy: np.ndarray, min_length: float, max_length: float):
    """All pairs ``i < j`` of ``xy`` with length in ``[min_length, max_length]``."""
    i, j = np.triu_indices(len(xy), k=1)
    d = xy[j] - xy[i]
    length = np.hypot(d[:, 0], d[:, 1])
    keep = (length >= min_length) & (length <= max_length)
    return i[keep], j[keep], d[keep], length[keep]


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _nearest_one_to_one(pred: np.ndarray, xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(index into pred, index into xy)`` within ``radius``, each star used once (closest wins)."""
    if len(pred) == 0 or len(xy) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    dist, idx = cKDTree(xy).query(pred, k=1, distance_upper_bound=radius)
    ref = np.nonzero(np.isfinite(dist))[0]
    order = np.argsort(dist[ref], kind="stable")
    ref, det = ref[order], idx[ref][order]
    _, first = np.unique(det, return_index=True)
    first = np.sort(first)
    return ref[first], det[first]


def match_pattern(
    detected_xy: ArrayLike,
    reference_xy: ArrayLike,
    shape: tuple[int, int],
    pixel_scale: u.Quantity,
    config: AstrometryConfig | None = None,
) -> PatternMatch:
    """Find the similarity transform taking projected reference stars onto detections.

    Parameters
    ----------
    detected_xy : array_like
        N x 2 pixel positions of the brightest detections (brightest first is
        not needed).
    reference_xy : array_like
        M x 2 pixel positions of the brightest reference stars, projected
        through the initial WCS (they may lie outside the detector).
    shape : tuple of int
        ``(ny, nx)`` of the detector image.
    pixel_scale : Quantity
        Angle of one pixel, or angle per pixel (converts the configured
        tolerances to pixels).
    config : AstrometryConfig, optional
        Uses ``max_rotation``, ``max_scale_error``, ``max_shift``,
        ``pattern_tolerance``, ``min_pair_fraction`` and ``min_pattern_stars``.

    Returns
    -------
    PatternMatch
        ``found`` is False when no transform lines up ``min_pattern_stars``
        stars.

    Notes
    -----
    Hand-written because no library we depend on has one: astroalign (not a
    dependency) matches triangles without limits on scale and rotation,
    LSST's matcher needs the LSST stack. With the scale known, each pair of
    detections and each pair of reference stars of the same length within
    ``tolerance * sqrt(2) + max_scale_error * length`` and the same direction
    within ``max_rotation`` vote for ``(rotation, scale, shift)``; the votes
    are points in a space where all four axes are in pixels (rotation and
    scale times the detector's half-diagonal), so the densest cluster is found
    with a KD-tree ball count. The five densest clusters are each checked by
    applying their transform to all bright stars; the one lining up the most
    wins.
    """
    config = config or AstrometryConfig()
    det = np.asarray(detected_xy, dtype=float).reshape(-1, 2)
    ref = np.asarray(reference_xy, dtype=float).reshape(-1, 2)
    ny, nx = shape
    centre = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    if pixel_scale.unit.is_equivalent(u.arcsec / u.pixel):
        pixel_scale = pixel_scale * u.pixel
    scale_arcsec = pixel_scale.to_value(u.arcsec)
    tol = config.pattern_tolerance.to_value(u.arcsec) / scale_arcsec
    half_diag = 0.5 * math.hypot(nx, ny)
    min_len = config.min_pair_fraction * min(nx, ny)
    max_rot = config.max_rotation.to_value(u.rad)
    s_err = config.max_scale_error
    max_shift = config.max_shift.to_value(u.arcsec) / scale_arcsec
    none = PatternMatch(False, 0.0, 1.0, np.zeros(2), centre, 0, 0, np.zeros(0, np.intp), np.zeros(0, np.intp))
    if len(det) < config.min_pattern_stars or len(ref) < config.min_pattern_stars:
        return none

    di, dj, dv, dlen = _pairs(det, min_len, 2 * half_diag)
    if len(dlen) == 0:
        return none
    ri, rj, rv, rlen = _pairs(ref, (min_len - tol * 2) / (1 + s_err), (dlen.max() + 2 * tol) / (1 - s_err))
    order = np.argsort(rlen)
    rlen_sorted = rlen[order]
    width = math.sqrt(2) * tol + s_err * dlen
    lo = np.searchsorted(rlen_sorted, dlen - width, side="left")
    hi = np.searchsorted(rlen_sorted, dlen + width, side="right")
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return none
    d_pair = np.repeat(np.arange(len(dlen)), counts)
    r_pair = order[np.arange(total) - np.repeat(np.cumsum(counts) - counts - lo, counts)]

    theta = _wrap(np.arctan2(dv[d_pair, 1], dv[d_pair, 0]) - np.arctan2(rv[r_pair, 1], rv[r_pair, 0]))
    same = np.abs(theta) <= max_rot
    flipped = np.abs(_wrap(theta - np.pi)) <= max_rot
    keep = same | flipped
    d_pair, r_pair, theta, flipped = d_pair[keep], r_pair[keep], theta[keep], flipped[keep]
    theta = np.where(flipped, _wrap(theta - np.pi), theta)
    # Endpoints of the reference pair in the detection pair's order.
    ra_end = np.where(flipped, rj[r_pair], ri[r_pair])
    rb_end = np.where(flipped, ri[r_pair], rj[r_pair])
    da_end, db_end = di[d_pair], dj[d_pair]
    scale = dlen[d_pair] / rlen[r_pair]
    mid_d = 0.5 * (det[da_end] + det[db_end]) - centre
    mid_r = 0.5 * (ref[ra_end] + ref[rb_end]) - centre
    c, s = np.cos(theta), np.sin(theta)
    shift = np.column_stack([mid_d[:, 0] - scale * (c * mid_r[:, 0] - s * mid_r[:, 1]),
                             mid_d[:, 1] - scale * (s * mid_r[:, 0] + c * mid_r[:, 1])])
    plausible = ((np.hypot(shift[:, 0], shift[:, 1]) <= max_shift + 2 * tol)
                 & (np.abs(scale - 1) <= s_err + tol / max(min_len, 1.0)))
    if not plausible.any():
        return none
    votes = np.column_stack([theta * half_diag, (scale - 1) * half_diag, shift])[plausible]
    ends = np.column_stack([da_end, ra_end, db_end, rb_end])[plausible]

    # Spread of a true vote: the direction of a pair of length >= min_len with endpoints off by `tol`
    # is off by up to sqrt(2) tol / min_len, which moves the vote by that times half_diag in rotation
    # and (through the midpoint) in shift.
    radius = math.sqrt(2) * tol * (1.0 + half_diag / max(min_len, 1.0))
    tree = cKDTree(votes)
    density = tree.query_ball_point(votes, radius, return_length=True)
    best = none
    tried: list[np.ndarray] = []
    for k in np.argsort(-density, kind="stable"):
        if len(tried) >= 5 or density[k] < 2:
            break
        if any(np.linalg.norm(votes[k] - t) < radius for t in tried):
            continue
        tried.append(votes[k])
        members = np.asarray(tree.query_ball_point(votes[k], radius), dtype=np.intp)
        candidate = _verify(det, ref, ends[members], centre, tol, len(members))
        if candidate.n_stars > best.n_stars:
            best = candidate
    found = best.n_stars >= config.min_pattern_stars
    return PatternMatch(found, best.rotation, best.scale, best.shift, centre, best.n_stars, best.votes,
                        best.detection_index, best.reference_index)


def _verify(det: np.ndarray, ref: np.ndarray, ends: np.ndarray, centre: np.ndarray, tol: float,
            votes: int) -> PatternMatch:
    """Fit the transform of one cluster of votes and count the bright stars it lines up."""
    corr = np.concatenate([ends[:, :2], ends[:, 2:]])
    # Keep each detection's most frequent reference partner.
    pairs, freq = np.unique(corr, axis=0, return_counts=True)
    order = np.lexsort((-freq, pairs[:, 0]))
    pairs = pairs[order]
    _, first = np.unique(pairs[:, 0], return_index=True)
    pairs = pairs[first]
    if len(pairs) < 2:
        return PatternMatch(False, 0.0, 1.0, np.zeros(2), centre, 0, votes, np.zeros(0, np.intp), np.zeros(0, np.intp))
    theta, scale, shift = _similarity_fit(ref[pairs[:, 1]], det[pairs[:, 0]], centre)
    match = PatternMatch(False, theta, scale, shift, centre, 0, votes, pairs[:, 0], pairs[:, 1])
    for _ in range(2):
        r_idx, d_idx = _nearest_one_to_one(match.apply(ref), det, 2 * tol)
        if len(r_idx) < 2:
            break
        theta, scale, shift = _similarity_fit(ref[r_idx], det[d_idx], centre)
        match = PatternMatch(False, theta, scale, shift, centre, len(r_idx), votes, d_idx, r_idx)
    return match


# ============================================================================ WCS fitting

def _tan_template(initial: WCS) -> WCS:
    """A plain TAN WCS with the initial WCS's CRVAL and CD: the starting point of the fit."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = initial.wcs.crval
    w.wcs.crpix = initial.wcs.crpix
    # As PC with CDELT 1 (fit_wcs_from_points turns PC into CD; a CD here would make astropy warn).
    w.wcs.pc = initial.celestial.pixel_scale_matrix
    w.wcs.cdelt = [1.0, 1.0]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


def _fit(x: np.ndarray, y: np.ndarray, world: SkyCoord, degree: int, template: WCS) -> WCS:
    # fit_wcs_from_points treats x, y as 0-based (its docstring says 1-based, its code passes
    # origin=0). Its SIP stage evaluates the polynomial one pixel off from where the WCS will
    # (u - crpix with 0-based u against 1-based crpix): the error is the polynomial's gradient,
    # below 1e-3 pixel for WFST's distortion, so we use it as it is.
    return fit_wcs_from_points((x, y), world, proj_point="center", projection=template,
                               sip_degree=degree if degree > 0 else None)


def _sky_residuals(w: WCS, x: np.ndarray, y: np.ndarray, world: SkyCoord) -> np.ndarray:
    """Reference minus fitted position along RA (times cos Dec) and Dec, arcsec, N x 2."""
    ra, dec = w.all_pix2world(x, y, 0)
    fitted = SkyCoord(ra, dec, unit="deg", frame=world.frame)
    dlon, dlat = fitted.spherical_offsets_to(world)
    return np.column_stack([dlon.to_value(u.arcsec), dlat.to_value(u.arcsec)])


def _sip_terms(u_: np.ndarray, v_: np.ndarray, degree: int, low: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    powers = [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i) if i + j >= low]
    return np.column_stack([u_**i * v_**j for i, j in powers]), powers


def fit_inverse_sip(w: WCS, shape: tuple[int, int], degree: int | None = None, grid: int = 40) -> WCS:
    """A copy of ``w`` with the inverse SIP polynomials (AP, BP) fitted over the image.

    astropy's :func:`~astropy.wcs.utils.fit_wcs_from_points` fits only the
    forward polynomials A, B; astropy itself inverts them by iteration, but
    other software (ds9, SWarp, SExtractor) needs AP, BP in the header. No
    astropy function fits them, so this is a linear least-squares fit of all
    terms up to ``degree`` (default: the forward degree + 1) on a
    ``grid x grid`` lattice covering the image.

    Parameters
    ----------
    w : WCS
        A WCS with forward SIP (returned unchanged, as a copy, without SIP).
    shape : tuple of int
        ``(ny, nx)`` of the image.
    degree : int, optional
        Degree of AP and BP.
    grid : int
        Lattice points per axis.

    Returns
    -------
    WCS
    """
    out = w.deepcopy()
    sip = out.sip
    if sip is None:
        return out
    degree = (max(sip.a_order, sip.b_order) + 1) if degree is None else degree
    ny, nx = shape
    crpix = np.asarray(sip.crpix, dtype=float)
    gx, gy = np.meshgrid(np.linspace(0.0, nx - 1, grid), np.linspace(0.0, ny - 1, grid))
    uu = gx.ravel() + 1.0 - crpix[0]
    vv = gy.ravel() + 1.0 - crpix[1]
    fa, pa = _sip_terms(uu, vv, sip.a_order, 2)
    big_u = uu + fa @ np.array([sip.a[i, j] for i, j in pa])
    fb, pb = _sip_terms(uu, vv, sip.b_order, 2)
    big_v = vv + fb @ np.array([sip.b[i, j] for i, j in pb])
    norm = max(np.abs(big_u).max(), np.abs(big_v).max(), 1.0)
    design, powers = _sip_terms(big_u / norm, big_v / norm, degree, 0)
    coef_u, *_ = np.linalg.lstsq(design, uu - big_u, rcond=None)
    coef_v, *_ = np.linalg.lstsq(design, vv - big_v, rcond=None)
    ap = np.zeros((degree + 1, degree + 1))
    bp = np.zeros((degree + 1, degree + 1))
    for (i, j), cu, cv in zip(powers, coef_u, coef_v):
        ap[i, j] = cu / norm ** (i + j)
        bp[i, j] = cv / norm ** (i + j)
    out.sip = Sip(sip.a, sip.b, ap, bp, sip.crpix)
    return out


def _compare(initial: WCS, fitted: WCS, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Shift (px), rotation (rad), scale and largest non-similarity departure (px) of ``fitted``.

    A lattice over the detector goes to the sky through ``fitted`` and back to
    pixels through ``initial``; a similarity transform between the lattice and
    those pixels gives the rotation, scale and shift at the centre, what it
    leaves is the change in distortion.
    """
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0.0, nx - 1, 9), np.linspace(0.0, ny - 1, 9))
    p = np.column_stack([gx.ravel(), gy.ravel()])
    ra, dec = fitted.all_pix2world(p[:, 0], p[:, 1], 0)
    qx, qy = initial.all_world2pix(ra, dec, 0, tolerance=1e-6, maxiter=50, quiet=True)
    q = np.column_stack([qx, qy])
    centre = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    if not np.isfinite(q).all():
        return math.inf, math.inf, math.inf, math.inf
    theta, scale, shift = _similarity_fit(q, p, centre)
    c, s = math.cos(theta), math.sin(theta)
    rel = q - centre
    model = np.column_stack([scale * (c * rel[:, 0] - s * rel[:, 1]), scale * (s * rel[:, 0] + c * rel[:, 1])])
    model += centre + shift
    departure = float(np.hypot(*(model - p).T).max())
    return float(np.hypot(*shift)), theta, scale, departure


# ============================================================================ the solver

def solve_astrometry(
    x: ArrayLike,
    y: ArrayLike,
    flux: ArrayLike,
    ref_ra: ArrayLike,
    ref_dec: ArrayLike,
    ref_mag: ArrayLike,
    initial_wcs: WCS,
    shape: tuple[int, int],
    *,
    usable: ArrayLike | None = None,
    config: AstrometryConfig | None = None,
) -> AstrometryResult:
    """Match one detector's detections to a reference catalogue and fit a TAN-SIP WCS.

    Parameters
    ----------
    x, y : array_like
        Detected positions, 0-based pixels of the detector image.
    flux : array_like
        Their fluxes (any unit; only the order matters: the brightest are
        used for pattern matching and the fit).
    ref_ra, ref_dec : array_like
        Reference stars, ICRS deg.
    ref_mag : array_like
        Their magnitudes (only the order matters; NaN counts as faintest).
    initial_wcs : astropy.wcs.WCS
        The WCS from the header (celestial, 2 axes); it may be off by up to
        ``config.max_shift`` and ``config.max_rotation``.
    shape : tuple of int
        ``(ny, nx)`` of the detector image.
    usable : array_like of bool, optional
        Detections fit for astrometry (e.g. not saturated, not blended, not on
        masked pixels); default all with finite positions and flux.
    config : AstrometryConfig, optional

    Returns
    -------
    AstrometryResult
        ``status`` OK with ``wcs``, or failed with ``wcs`` None and the
        reason. Bad inputs of the kind a night produces (no stars, wrong
        field) give a failed result, not an exception.

    Raises
    ------
    ValueError
        Arrays of different lengths, or ``initial_wcs`` not celestial.
    """
    config = config or AstrometryConfig()
    x, y, flux = (np.asarray(a, dtype=float).ravel() for a in (x, y, flux))
    ref_ra, ref_dec, ref_mag = (np.asarray(a, dtype=float).ravel() for a in (ref_ra, ref_dec, ref_mag))
    if not len(x) == len(y) == len(flux):
        raise ValueError(f"x, y and flux differ in length: {len(x)}, {len(y)}, {len(flux)}")
    if not len(ref_ra) == len(ref_dec) == len(ref_mag):
        raise ValueError("ref_ra, ref_dec and ref_mag differ in length")
    if not initial_wcs.has_celestial or initial_wcs.naxis != 2:
        raise ValueError("initial_wcs must be a 2-axis celestial WCS")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    if usable is not None:
        usable = np.asarray(usable, dtype=bool).ravel()
        if len(usable) != len(x):
            raise ValueError("usable differs in length from x")
        ok &= usable
    ny, nx = shape
    det_all = np.nonzero(ok)[0]
    det_all = det_all[np.argsort(-flux[det_all], kind="stable")]
    det_xy = np.column_stack([x[det_all], y[det_all]])

    scale_deg = float(np.mean(proj_plane_pixel_scales(initial_wcs.celestial)))
    pixel_scale = scale_deg * u.deg
    px_per_arcsec = 1.0 / (scale_deg * 3600.0)
    margin = config.max_shift.to_value(u.arcsec) * px_per_arcsec

    # Reference stars that can land on the detector.
    centre_ra, centre_dec = initial_wcs.all_pix2world([(nx - 1) / 2.0], [(ny - 1) / 2.0], 0)
    centre = SkyCoord(centre_ra[0], centre_dec[0], unit="deg")
    reach = (0.5 * math.hypot(nx, ny) + margin) * scale_deg * 1.05
    near = np.nonzero(np.isfinite(ref_ra) & np.isfinite(ref_dec))[0]
    near = near[SkyCoord(ref_ra[near], ref_dec[near], unit="deg").separation(centre).deg <= reach]
    qx, qy = initial_wcs.all_world2pix(ref_ra[near], ref_dec[near], 0, tolerance=1e-6, maxiter=50, quiet=True)
    inside = (np.isfinite(qx) & np.isfinite(qy) & (qx > -margin) & (qx < nx - 1 + margin)
              & (qy > -margin) & (qy < ny - 1 + margin))
    near, ref_q = near[inside], np.column_stack([qx[inside], qy[inside]])
    mag_key = np.where(np.isfinite(ref_mag[near]), ref_mag[near], np.inf)
    by_mag = np.argsort(mag_key, kind="stable")
    near, ref_q = near[by_mag], ref_q[by_mag]

    if len(det_all) < config.min_pattern_stars or len(near) < config.min_pattern_stars:
        return AstrometryResult(
            AstrometryStatus.TOO_FEW_SOURCES,
            f"{len(det_all)} usable detections and {len(near)} reference stars near the detector; "
            f"pattern matching needs {config.min_pattern_stars} of each")

    # Pattern matching on the brightest of each, the reference list as deep as the detections:
    # the faintest pattern detection's rank among all detections (unusable ones, e.g. saturated
    # stars, included) times the ratio of the areas searched, with room for losses.
    n_det = min(config.pattern_detections, len(det_all))
    measured = np.isfinite(x) & np.isfinite(y) & np.isfinite(flux)
    depth = int(np.sum(measured & (flux >= flux[det_all[n_det - 1]])))
    grown = (nx + 2 * margin) * (ny + 2 * margin) / (nx * ny)
    n_ref = int(min(config.pattern_references, len(near), math.ceil(1.5 * depth * grown)))
    pattern = match_pattern(det_xy[:n_det], ref_q[:n_ref], shape, pixel_scale, config)
    if not pattern.found:
        return AstrometryResult(
            AstrometryStatus.NO_PATTERN,
            f"no transform within {config.max_shift} and {config.max_rotation} lines up "
            f"{config.min_pattern_stars} of the {n_det} brightest detections with the {n_ref} brightest "
            f"reference stars (best: {pattern.n_stars}); wrong field or too few stars",
            n_pattern=pattern.n_stars)

    # Refinement.
    world = SkyCoord(ref_ra[near], ref_dec[near], unit="deg", frame="icrs")
    template = _tan_template(initial_wcs)
    pred = pattern.apply(ref_q)
    radius = config.match_radius_initial.to_value(u.arcsec) * px_per_arcsec
    previous: bytes | None = None
    fitted: WCS | None = None
    r_idx = d_idx = np.zeros(0, dtype=np.intp)
    resid = np.zeros((0, 2))
    degree = 0
    iterations = 0
    for iterations in range(1, config.max_iterations + 1):
        on_chip = ((pred[:, 0] > -radius) & (pred[:, 0] < nx - 1 + radius)
                   & (pred[:, 1] > -radius) & (pred[:, 1] < ny - 1 + radius))
        cand = np.nonzero(on_chip)[0]
        r_idx, d_idx = _nearest_one_to_one(pred[cand], det_xy, radius)
        r_idx = cand[r_idx]
        order = np.argsort(d_idx, kind="stable")  # brightest first (det_xy is sorted by flux)
        r_idx, d_idx = r_idx[order], d_idx[order]
        if len(r_idx) < config.min_matches:
            return AstrometryResult(
                AstrometryStatus.TOO_FEW_MATCHES,
                f"{len(r_idx)} matches within {radius / px_per_arcsec:.2f} arcsec in pass {iterations}, "
                f"need {config.min_matches}", n_pattern=pattern.n_stars, iterations=iterations)
        # First pass plain TAN: the pattern's positions may be off by more than SIP can fix robustly.
        final_pass = iterations > 1 or config.sip_degree == 0
        degree = config.sip_degree if (final_pass and len(r_idx) >= config.sip_min_matches) else 0
        keep = np.ones(len(r_idx), dtype=bool)
        for _ in range(2):  # fit, clip, fit again on what is left
            use = np.nonzero(keep)[0][: config.max_fit_stars]
            fitted = _fit(det_xy[d_idx[use], 0], det_xy[d_idx[use], 1], world[r_idx[use]], degree, template)
            resid = _sky_residuals(fitted, det_xy[d_idx, 0], det_xy[d_idx, 1], world[r_idx])
            clipped = sigma_clip(resid, sigma=config.clip_sigma, maxiters=5, stdfunc="mad_std", axis=0,
                                 masked=True, copy=True)
            good = ~np.any(np.ma.getmaskarray(clipped), axis=1)
            if good.sum() < config.min_matches or np.array_equal(good, keep):
                break
            keep = good
        r_idx, d_idx, resid = r_idx[keep], d_idx[keep], resid[keep]
        key = np.sort(r_idx).tobytes() + np.sort(d_idx).tobytes()
        if key == previous and final_pass:
            break
        previous = key
        px, py = fitted.all_world2pix(ref_ra[near], ref_dec[near], 0, tolerance=1e-6, maxiter=50, quiet=True)
        pred = np.column_stack([px, py])
        radius = config.match_radius.to_value(u.arcsec) * px_per_arcsec

    assert fitted is not None  # the loop ran at least once or returned
    keep_r, keep_d = r_idx, d_idx
    n = len(keep_r)
    rms = float(np.sqrt(np.mean(np.sum(resid**2, axis=1))))
    shift_px, rotation, scale, departure = _compare(initial_wcs, fitted, shape)
    common = dict(
        rms_arcsec=rms, n_matched=n, detection_index=det_all[keep_d], reference_index=near[keep_r],
        residuals_arcsec=resid, n_pattern=pattern.n_stars, shift_arcsec=shift_px / px_per_arcsec,
        rotation_deg=math.degrees(rotation), scale_ratio=scale, sip_degree=degree, iterations=iterations,
    )
    on_detector = int(np.sum((ref_q[:, 0] >= 0) & (ref_q[:, 0] <= nx - 1)
                             & (ref_q[:, 1] >= 0) & (ref_q[:, 1] <= ny - 1)))
    expected = max(1, min(len(det_all), on_detector))
    problems = []
    if shift_px / px_per_arcsec > config.max_shift.to_value(u.arcsec) * 1.05:
        problems.append(f"shift {shift_px / px_per_arcsec / 60:.2f} arcmin > {config.max_shift}")
    if abs(rotation) > config.max_rotation.to_value(u.rad):
        problems.append(f"rotation {math.degrees(rotation):.3f} deg > {config.max_rotation}")
    if abs(scale - 1.0) > config.max_scale_error:
        problems.append(f"pixel scale changed by {100 * (scale - 1):.2f}%")
    if departure / px_per_arcsec > config.max_distortion_change.to_value(u.arcsec):
        problems.append(f"distortion differs from the initial WCS's by {departure / px_per_arcsec:.1f} arcsec")
    if n < config.min_matches:
        return AstrometryResult(AstrometryStatus.TOO_FEW_MATCHES,
                                f"{n} matches after clipping, need {config.min_matches}", **common)
    if n < config.min_match_fraction * expected:
        return AstrometryResult(
            AstrometryStatus.TOO_FEW_MATCHES,
            f"{n} matches are under {config.min_match_fraction:.0%} of the {expected} stars expected", **common)
    if rms > config.max_rms.to_value(u.arcsec):
        return AstrometryResult(AstrometryStatus.HIGH_RMS,
                                f"residual RMS {rms:.3f} arcsec > {config.max_rms}", **common)
    if problems:
        return AstrometryResult(AstrometryStatus.IMPLAUSIBLE, "; ".join(problems), **common)
    final = fit_inverse_sip(fitted, shape) if degree else fitted
    final.pixel_shape = (nx, ny)
    return AstrometryResult(
        AstrometryStatus.OK,
        f"{n} matches, RMS {rms:.3f} arcsec, TAN{'-SIP' if degree else ''} degree {degree}",
        wcs=final, **common)
