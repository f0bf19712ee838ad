"""The camera's view of the sky: focal-plane geometry, WCS with distortion, Moffat PSF.

Focal plane
    Detector ``offset`` ``(dy, dx)`` is the CCD centre relative to the
    boresight, in pixels. Focal-plane coordinates ``(X, Y)`` of pixel
    ``(x, y)`` (0-based, assembled) are ``X = x - (nx - 1)/2 + dx`` and
    ``Y = y - (ny - 1)/2 + dy``; mosaic pixels (``DETSEC``) put the lower left
    corner of the lowest, leftmost CCD at (1, 1).
WCS
    One gnomonic (TAN) projection about the boresight for the whole mosaic,
    expressed per CCD by moving ``CRPIX`` (which then lies off most CCDs),
    with north up and east left at position angle 0. The optics add a radial,
    cubic pincushion distortion ``dr = k r^3`` in the focal plane, written as
    SIP coefficients (``A_3_0 = A_1_2 = B_0_3 = B_2_1 = k``, inverse ``AP/BP =
    -A/-B``, accurate to 0.02 pixel over the mosaic; astropy iterates to the
    exact inverse). ``k`` is chosen so that the distortion is ``distortion``
    pixels at the mosaic's half-width (3 pixels by default; about 8 at the
    corners), at every ``--scale``, so that scaled-down nights exercise SIP too.
PSF
    A circular Moffat profile ``(1 + r^2/alpha^2)^-beta`` with beta = 3,
    evaluated at pixel centres on a stamp around each star that holds at least
    99.5% of the light and reaches down to 0.5 electron per pixel, then scaled
    so that the stamp holds exactly the star's flux (the truth flux is what the
    image holds before the flat field, Poisson noise and saturation).
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.wcs import WCS, Sip

from lenghu.instruments import Detector, Instrument, Section

#: Moffat index of the PSF.
MOFFAT_BETA = 3.0
#: Stamp half-sizes (pixels) a star may get; grouping by these keeps rendering vectorised.
STAMP_HALF_SIZES = np.array([3, 4, 6, 8, 11, 16, 22, 32, 45, 64, 90, 128, 181, 256])
#: Faintest wing level rendered, electrons per pixel.
STAMP_LEVEL = 0.5
#: Smallest fraction of the flux a stamp must hold.
STAMP_ENCLOSED = 0.995
#: Elements evaluated at once when rendering (bounds temporary memory to ~50 MB).
_CHUNK = 2_000_000


@dataclass(frozen=True)
class FocalPlane:
    """Where the detectors of a mosaic are, in focal-plane pixels from the boresight.

    Attributes
    ----------
    x0, y0 : float
        Focal-plane coordinates of mosaic pixel (1, 1)'s centre.
    size : tuple of int
        Mosaic ``(ny, nx)`` (``DETSIZE``).
    half_width : float
        Largest ``|X|`` or ``|Y|`` reached by a detector edge, pixels.
    corner_radius : float
        Largest distance from the boresight reached by a detector corner, pixels.
    """

    x0: float
    y0: float
    size: tuple[int, int]
    half_width: float
    corner_radius: float

    @classmethod
    def of(cls, instrument: Instrument) -> "FocalPlane":
        """The focal plane of all of ``instrument``'s detectors."""
        lefts, rights, bottoms, tops = [], [], [], []
        for det in instrument.detectors:
            ny, nx = det.shape
            dy, dx = det.offset
            lefts.append(dx - (nx - 1) / 2)
            rights.append(dx + (nx - 1) / 2)
            bottoms.append(dy - (ny - 1) / 2)
            tops.append(dy + (ny - 1) / 2)
        x0, y0 = min(lefts), min(bottoms)
        size = (int(round(max(tops) - y0)) + 1, int(round(max(rights) - x0)) + 1)
        half_width = max(-x0, max(rights), -y0, max(tops)) + 0.5
        corner = max(np.hypot(max(abs(a), abs(b)) + 0.5, max(abs(c), abs(d)) + 0.5)
                     for a, b, c, d in zip(lefts, rights, bottoms, tops))
        return cls(x0=x0, y0=y0, size=size, half_width=float(half_width), corner_radius=float(corner))

    def detsize(self) -> str:
        """``DETSIZE`` of the whole mosaic."""
        return f"[1:{self.size[1]},1:{self.size[0]}]"

    def detsec(self, detector: Detector) -> Section:
        """Where ``detector`` lies in mosaic pixels."""
        ny, nx = detector.shape
        dy, dx = detector.offset
        xs = int(round(dx - (nx - 1) / 2 - self.x0))
        ys = int(round(dy - (ny - 1) / 2 - self.y0))
        return Section(ys, ys + ny, xs, xs + nx)

    @staticmethod
    def coordinates(detector: Detector, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Focal-plane ``(Y, X)`` of assembled pixel rows and columns (0-based)."""
        ny, nx = detector.shape
        dy, dx = detector.offset
        return np.asarray(rows) - (ny - 1) / 2 + dy, np.asarray(cols) - (nx - 1) / 2 + dx

    def distortion_coefficient(self, distortion: u.Quantity) -> float:
        """``k`` of ``dr = k r^3`` giving ``distortion`` pixels at the half-width."""
        return float(distortion.to_value(u.pixel)) / self.half_width**3


def detector_wcs(
    detector: Detector,
    ra: float,
    dec: float,
    rotation: float,
    pixel_scale: u.Quantity,
    k: float,
) -> WCS:
    """The celestial WCS of ``detector``'s assembled image.

    Parameters
    ----------
    detector : Detector
        The CCD (its ``offset`` places it in the focal plane).
    ra, dec : float
        Boresight, ICRS deg.
    rotation : float
        Position angle of the camera's +y axis, deg east of north.
    pixel_scale : Quantity
        arcsec / pixel.
    k : float
        Radial distortion coefficient (pixel^-2), see :meth:`FocalPlane.distortion_coefficient`.

    Returns
    -------
    astropy.wcs.WCS
        ``RA---TAN-SIP``/``DEC--TAN-SIP`` (plain TAN if ``k`` is 0), pixel
        coordinates of the assembled, trimmed CCD.
    """
    ny, nx = detector.shape
    dy, dx = detector.offset
    w = WCS(naxis=2)
    s = pixel_scale.to_value(u.deg / u.pixel)
    th = np.radians(rotation)
    w.wcs.crpix = [(nx - 1) / 2 - dx + 1, (ny - 1) / 2 - dy + 1]
    w.wcs.crval = [ra % 360.0, dec]
    w.wcs.cd = [[-s * np.cos(th), s * np.sin(th)], [s * np.sin(th), s * np.cos(th)]]
    w.wcs.radesys = "ICRS"
    w.wcs.cunit = ["deg", "deg"]
    if k:
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        a = np.zeros((4, 4))
        b = np.zeros((4, 4))
        a[3, 0] = a[1, 2] = k
        b[0, 3] = b[2, 1] = k
        w.sip = Sip(a, b, -a, -b, w.wcs.crpix)
    else:
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.pixel_shape = (nx, ny)
    w.wcs.set()
    return w


def world_to_pixel(w: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """0-based ``(x, y)`` of sky positions, distortion inverted to 1e-9 pixel."""
    if len(ra) == 0:
        return np.zeros(0), np.zeros(0)
    x, y = w.all_world2pix(ra, dec, 0, tolerance=1e-9, maxiter=100, quiet=False)
    return x, y


def gnomonic(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Standard coordinates ``(xi, eta)`` in deg of points about the tangent point ``(ra0, dec0)``.

    Points more than 90 deg away get NaN.
    """
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xi = np.cos(d) * np.sin(a - a0) / cosc
        eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    xi = np.where(cosc > 0, xi, np.nan)
    eta = np.where(cosc > 0, eta, np.nan)
    return np.degrees(xi), np.degrees(eta)


def tangent_offset(ra0: float, dec0: float, xi: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ICRS ``(ra, dec)`` deg of standard coordinates ``(xi, eta)`` (deg, east and north) about ``(ra0, dec0)``."""
    x, y = np.radians(xi), np.radians(eta)
    d0 = np.radians(dec0)
    dec = np.arcsin((np.sin(d0) + y * np.cos(d0)) / np.sqrt(1.0 + x**2 + y**2))
    ra = np.radians(ra0) + np.arctan2(x, np.cos(d0) - y * np.sin(d0))
    return np.degrees(ra) % 360.0, np.degrees(dec)


def moffat_alpha(fwhm: float, beta: float = MOFFAT_BETA) -> float:
    """Moffat core radius ``alpha`` for a FWHM (same units)."""
    return fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))


def moffat_peak_fraction(alpha: float, beta: float = MOFFAT_BETA) -> float:
    """Fraction of a star's flux in one pixel at its centre (continuous profile)."""
    return (beta - 1.0) / (np.pi * alpha**2)


def stamp_half_sizes(flux: np.ndarray, alpha: float, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Half-size (pixels) of each star's stamp, from :data:`STAMP_HALF_SIZES`.

    The stamp reaches at least the radius enclosing :data:`STAMP_ENCLOSED` of
    the flux and the radius where the profile falls to :data:`STAMP_LEVEL`
    electrons per pixel.
    """
    flux = np.asarray(flux, dtype=float)
    r_enclosed = alpha * np.sqrt((1.0 - STAMP_ENCLOSED) ** (-1.0 / (beta - 1.0)) - 1.0)
    peak = np.maximum(flux * moffat_peak_fraction(alpha, beta), 1e-30)
    ratio = np.clip(STAMP_LEVEL / peak, 1e-300, 1.0)
    r_level = alpha * np.sqrt(np.maximum(ratio ** (-1.0 / beta) - 1.0, 0.0))
    need = np.maximum(r_enclosed, r_level)
    index = np.searchsorted(STAMP_HALF_SIZES, need)
    return STAMP_HALF_SIZES[np.minimum(index, len(STAMP_HALF_SIZES) - 1)]


def render_moffat(
    image: np.ndarray,
    origin: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    half: np.ndarray,
    alpha: float,
    beta: float = MOFFAT_BETA,
) -> None:
    """Add Moffat stars to ``image`` (in place: it is the caller's work buffer).

    Parameters
    ----------
    image : ndarray, float32, 2-D
        Covers rows ``origin[0]...`` and columns ``origin[1]...`` of the frame
        in which ``x`` and ``y`` are given.
    origin : tuple of int
        ``(row, column)`` of ``image[0, 0]``.
    x, y : ndarray
        Star centres, 0-based pixel coordinates of the frame.
    flux : ndarray
        Electrons of each star (its whole stamp, including parts outside ``image``).
    half : ndarray of int
        Stamp half-sizes (:func:`stamp_half_sizes`).
    alpha, beta : float
        Moffat parameters, pixels.
    """
    ny, nx = image.shape
    oy, ox = origin
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = (x + half >= ox) & (x - half < ox + nx) & (y + half >= oy) & (y - half < oy + ny)
    if not keep.any():
        return
    x, y, flux, half = x[keep], y[keep], np.asarray(flux, dtype=float)[keep], np.asarray(half)[keep]
    flat_image = image.reshape(-1)
    inv_a2 = np.float32(1.0 / alpha**2)
    integer_beta = float(beta).is_integer()
    for h in np.unique(half):
        group = np.nonzero(half == h)[0]
        offsets = np.arange(-h, h + 1)
        size = offsets.size
        per_chunk = max(1, _CHUNK // (size * size))
        for start in range(0, group.size, per_chunk):
            sel = group[start:start + per_chunk]
            cx = np.rint(x[sel]).astype(np.int64)
            cy = np.rint(y[sel]).astype(np.int64)
            px = cx[:, None] + offsets[None, :]
            py = cy[:, None] + offsets[None, :]
            ddx = (px - x[sel, None]).astype(np.float32)
            ddy = (py - y[sel, None]).astype(np.float32)
            t = ddy[:, :, None] ** 2 + ddx[:, None, :] ** 2
            t *= inv_a2
            t += np.float32(1.0)
            if integer_beta:
                prof = np.reciprocal(t ** int(beta))
            else:
                prof = np.power(t, np.float32(-beta))
            norm = prof.sum(axis=(1, 2), dtype=np.float64)
            prof *= (flux[sel] / norm).astype(np.float32)[:, None, None]
            ly = py - oy
            lx = px - ox
            inside = ((ly >= 0) & (ly < ny))[:, :, None] & ((lx >= 0) & (lx < nx))[:, None, :]
            index = ly[:, :, None] * nx + lx[:, None, :]
            np.add.at(flat_image, index[inside], prof[inside])
