"""Photometry, centroids and shapes of detected sources (sep, SExtractor's definitions).

For each source, on the background-subtracted image:

- **Kron (AUTO) flux**: the first-moment radius ``kr`` of the light within
  ``kron_window`` isophotal radii, then the sum within the ellipse of
  ``max(kron_factor * kr, kron_min_radius)`` times the isophotal ``a`` and
  ``b`` (SExtractor's ``PHOT_AUTOPARAMS``), or within a circle of
  ``kron_min_circular_radius`` pixels where that ellipse is smaller
  (``PHOT_AUTOAPERS``). Centred on the isophotal barycentre, as SExtractor.
  With ``mask_neighbours`` (the default) the pixels of other detections are
  left out of it (and of the half-light radius), so that the members of a
  deblended pair do not count each other's light.
- **Half-light radius** (``FLUX_RADIUS``): the circle holding half the Kron
  flux (searched out to the circle around the Kron aperture); **FWHM** =
  2 x half-light radius, exact for a Gaussian profile (a Moffat profile with
  beta = 3 of FWHM f gives 1.26 f: the estimate is a consistent seeing
  measure, not a profile fit).
- **Windowed centroid** (``XWIN_IMAGE``): Gaussian-weighted, iterated, with
  sigma = 2 x half-light radius / 2.35 (SExtractor's choice), at most
  ``window_max_sigma``; where it wanders more than ``window_max_shift`` from
  the barycentre (towards a bright neighbour), the barycentre, flagged 256.
- **Aperture fluxes** in circles of ``aperture_radii`` pixels around the
  windowed centroid.
- **Errors** from the per-pixel noise: VAR of the calibrated product
  (which holds the sources' own Poisson noise), or the background RMS when
  no VAR is given.
- **Flags**: sep's flags of every step, ORed, and ``mask_flags``: the OR of
  the MASK bits of every pixel that touches the Kron ellipse or the largest
  circular aperture.
- **Star/galaxy hint**: the half-light radius relative to the stellar locus
  of the image (the clipped mode of the half-light radii of bright, clean
  sources); ``point_like`` where it lies within the locus' spread.

Pixels with ``exclude_bits`` set (no data) are left out of every sum; sep
fills them with the mean of the other pixels of the aperture and sets
``APER_HASMASKED``. Pixels with ``repair_bits`` set (cosmic rays, bad and hot
pixels, whose values are not sky or star light) are first replaced by the
mean of the good pixels around them (:func:`repair_masked_pixels`, called by
:func:`lenghu.measure.measure_image`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lenghu.calib.masks import MaskBit
from lenghu.errors import ConfigError
from lenghu.measure.background import SOURCE, Background, non_finite
from lenghu.measure.detect import Detections
from lenghu.measure.flagged import FlaggedPixels

#: MASK bits whose pixels are left out of photometric sums by default.
PHOTOMETRY_EXCLUDE_BITS = int(MaskBit.NO_DATA)
#: MASK bits whose pixels are replaced by their neighbours' mean before measuring, by default.
PHOTOMETRY_REPAIR_BITS = int(MaskBit.CR | MaskBit.BAD | MaskBit.HOT)
#: Half-light radii are searched within ``min(kron_window, Kron scale) * a``; beyond this many
#: pixels the search samples whole pixels (sub-pixel sampling changes a radius that large by less
#: than 1/30 of a pixel in 30, and costs 25 times as much where it matters least: saturated stars,
#: large blobs).
FLUX_RADIUS_COARSE_ABOVE = 30.0
#: Flag (beyond sep's eight bits) of a source whose windowed centroid is its isophotal barycentre,
#: the windowed iteration having wandered off (a bright neighbour in the window).
WINDOW_FALLBACK = 256
#: Gaussian FWHM / sigma.
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


@dataclass(frozen=True)
class PhotometryConfig:
    """How sources are measured (SExtractor ``PHOT_*`` settings, and the star/galaxy hint).

    Attributes
    ----------
    aperture_radii : tuple of float
        Radii of the circular apertures, pixels (SExtractor's
        ``PHOT_APERTURES`` are diameters: 10 there is 5 here).
    aperture_subpix : int
        Sub-pixel sampling per axis of the circular apertures (0: exact overlap).
    kron_factor : float
        Kron factor k (``PHOT_AUTOPARAMS`` first value).
    kron_min_radius : float
        Smallest Kron scale, in units of the isophotal a and b
        (``PHOT_AUTOPARAMS`` second value).
    kron_min_circular_radius : float
        Where the Kron ellipse's mean radius is below this, a circle of this
        radius, pixels, is used instead (``PHOT_AUTOAPERS`` second value / 2).
    kron_window : float
        Ellipse within which the Kron radius is computed, in units of the
        isophotal a and b (6 in SExtractor).
    kron_subpix : int
        Sub-pixel sampling of the Kron aperture (1: pixel centres, as SExtractor).
    window_max_sigma : float
        Largest Gaussian sigma of the windowed centroid, pixels: 2 x the
        half-light radius / 2.35 is capped here, so that saturated stars and
        large diffuse sources (whose windows would cover thousands of pixels
        for no gain in precision) cost no more than a seeing disc.
    window_subpix : int
        Sub-pixel sampling of the window's edge (sep's default is 11; 3 is
        3.5 times faster and moves the centroids of a full WFST CCD by
        3e-5 pixel in the median, 1e-3 at the 99th percentile, 3e-5 for
        S/N > 50: far below their statistical errors).
    window_max_shift : float
        Largest distance, pixels, between the windowed centroid and the
        isophotal barycentre; beyond it the barycentre is kept and the source
        flagged :data:`WINDOW_FALLBACK`.
    mask_neighbours : bool
        Leave the pixels of other detections (the segmentation map) out of
        the Kron radius, Kron flux and half-light radius, as SExtractor's
        ``MASK_TYPE`` does (sep replaces them by the aperture's mean, where
        SExtractor's ``CORRECT`` mirrors the source): without it, each of a
        deblended pair counts the other's light. Fixed apertures are not
        affected. Needs detections made with ``segmentation=True``.
    exclude_bits : int
        MASK bits whose pixels are left out of the sums.
    repair_bits : int
        MASK bits whose pixels are replaced by the mean of the good pixels in
        the ``repair_box`` around them before measuring.
    repair_box : int
        Side of the fallback box used to repair a pixel whose 8 neighbours
        are all flagged, pixels, odd.
    locus_snr_min : float
        Least Kron S/N of the sources that define the stellar locus.
    locus_min_sources : int
        Fewest such sources for a locus; with fewer, the hint is not given.
    point_tolerance : float
        Least relative half-width of the locus: a source is ``point_like``
        where ``|size_ratio - 1|`` is below the larger of this and 3 times
        the locus' relative spread.
    noise_without_var : {"map", "global"}
        Per-pixel noise when no VAR is given: the background RMS map, or its
        global value (SExtractor without weight maps uses the RMS at the
        source; "global" spares making the full-size map).
    """

    aperture_radii: tuple[float, ...] = (3.0, 5.0, 8.0)
    aperture_subpix: int = 5
    kron_factor: float = 2.5
    kron_min_radius: float = 3.5
    kron_min_circular_radius: float = 0.0
    kron_window: float = 6.0
    kron_subpix: int = 1
    window_max_sigma: float = 8.0
    window_subpix: int = 3
    window_max_shift: float = 1.0
    mask_neighbours: bool = True
    exclude_bits: int = PHOTOMETRY_EXCLUDE_BITS
    repair_bits: int = PHOTOMETRY_REPAIR_BITS
    repair_box: int = 5
    locus_snr_min: float = 50.0
    locus_min_sources: int = 5
    point_tolerance: float = 0.1
    noise_without_var: Literal["map", "global"] = "map"

    def __post_init__(self):
        radii = tuple(float(r) for r in self.aperture_radii)
        object.__setattr__(self, "aperture_radii", radii)
        if not radii or not all(np.isfinite(r) and r > 0 for r in radii):
            raise ConfigError(SOURCE, f"aperture_radii must be positive pixels, got {self.aperture_radii!r}")
        if self.kron_factor <= 0 or self.kron_window <= 0:
            raise ConfigError(SOURCE, "kron_factor and kron_window must be > 0")
        if self.kron_min_radius < 0 or self.kron_min_circular_radius < 0:
            raise ConfigError(SOURCE, "kron_min_radius and kron_min_circular_radius must be >= 0")
        if not self.window_max_shift > 0:
            raise ConfigError(SOURCE, f"window_max_shift must be > 0 pixels, got {self.window_max_shift!r}")
        if not self.window_max_sigma > 0:
            raise ConfigError(SOURCE, f"window_max_sigma must be > 0 pixels, got {self.window_max_sigma!r}")
        if self.aperture_subpix < 0 or self.kron_subpix < 0 or self.window_subpix < 0:
            raise ConfigError(SOURCE, "aperture_subpix, kron_subpix and window_subpix must be >= 0 (0: exact)")
        if self.exclude_bits < 0 or self.repair_bits < 0:
            raise ConfigError(SOURCE, "exclude_bits and repair_bits must be >= 0")
        if self.repair_box < 3 or self.repair_box % 2 == 0:
            raise ConfigError(SOURCE, f"repair_box must be odd and >= 3 pixels, got {self.repair_box!r}")
        if self.locus_snr_min <= 0 or self.locus_min_sources < 3 or self.point_tolerance <= 0:
            raise ConfigError(SOURCE, "locus_snr_min and point_tolerance must be > 0, locus_min_sources >= 3")
        if self.noise_without_var not in ("map", "global"):
            raise ConfigError(SOURCE, f"noise_without_var must be 'map' or 'global', got {self.noise_without_var!r}")


@dataclass(frozen=True, eq=False)
class Photometry:
    """Measurements of the sources of one :class:`~lenghu.measure.detect.Detections`, same order.

    Attributes
    ----------
    xwin, ywin : ndarray of float64
        Windowed centroid, pixels, 0-based (the isophotal barycentre where
        the windowed iteration did not converge to a finite value).
    aperture_radii : tuple of float
        Radii of the circular apertures, pixels.
    aperture_flux, aperture_flux_err : ndarray of float64, shape (n, len(aperture_radii))
        Fluxes in the circular apertures and their errors, electrons.
    kron_radius : ndarray of float64
        Kron scale used, in units of the isophotal a and b (SExtractor's
        ``KRON_RADIUS``).
    kron_flux, kron_flux_err : ndarray of float64
        AUTO flux and its error, electrons.
    kron_circular : ndarray of bool
        The AUTO flux was measured in the minimum circle.
    flux_radius : ndarray of float64
        Half-light radius, pixels.
    fwhm : ndarray of float64
        2 x ``flux_radius``, pixels (see the module docstring).
    ellipticity : ndarray of float64
        1 - b/a of the isophotal moments.
    flags : ndarray of int32
        OR of sep's detection and photometry flags.
    mask_flags : ndarray of int32
        OR of the MASK bits under the source's apertures.
    size_ratio : ndarray of float64
        ``flux_radius`` over the stellar locus (NaN without a locus).
    point_like : ndarray of bool
        ``size_ratio`` within the locus' spread (False without a locus).
    stellar_locus : float
        Half-light radius of point sources in this image, pixels (NaN when
        fewer than ``locus_min_sources`` sources could define it).
    locus_spread : float
        Relative robust spread (MAD-based sigma) of the locus.
    config : PhotometryConfig
    """

    xwin: np.ndarray
    ywin: np.ndarray
    aperture_radii: tuple[float, ...]
    aperture_flux: np.ndarray
    aperture_flux_err: np.ndarray
    kron_radius: np.ndarray
    kron_flux: np.ndarray
    kron_flux_err: np.ndarray
    kron_circular: np.ndarray
    flux_radius: np.ndarray
    fwhm: np.ndarray
    ellipticity: np.ndarray
    flags: np.ndarray
    mask_flags: np.ndarray
    size_ratio: np.ndarray
    point_like: np.ndarray
    stellar_locus: float
    locus_spread: float
    config: PhotometryConfig

    def __len__(self) -> int:
        return int(self.xwin.size)


def repair_masked_pixels(image: np.ndarray, mask: np.ndarray | FlaggedPixels | None, bits: int, box: int = 5,
                         inplace: bool = False) -> np.ndarray:
    """``image`` with the pixels that have any of ``bits`` replaced by the mean of good pixels nearby.

    Each flagged pixel takes the mean of the unflagged pixels among its 8
    neighbours; where there are none (inside a wide cosmic-ray track or a bad
    column pair), of those in the ``box`` x ``box`` square around it; where
    there are none either, 0 (the background). Nearest neighbours keep a
    star's light: a cosmic ray next to the core of a 2.5-pixel FWHM star costs
    it about 1% of its flux, against 3-5% for the mean of a 5 x 5 box.

    Parameters
    ----------
    image : ndarray of float32, 2-D
        Background-subtracted image; not modified unless ``inplace`` (a copy
        is returned when any pixel is repaired, ``image`` itself otherwise).
    mask : ndarray of int, FlaggedPixels or None
        MASK plane, or its flagged pixels.
    bits : int
        MASK bits of the pixels to repair.
    box : int
        Side of the fallback square, pixels (odd, >= 3).
    inplace : bool
        Repair ``image`` itself (and return it).

    Returns
    -------
    ndarray of float32
    """
    if mask is None or not bits:
        return image
    flagged = mask if isinstance(mask, FlaggedPixels) else FlaggedPixels.from_mask(mask)
    bad = flagged.plane(bits)
    if bad is None:
        return image
    ys, xs = np.unravel_index(flagged.select(bits), flagged.shape)
    values = np.zeros(ys.size, dtype=np.float64)
    todo = np.ones(ys.size, dtype=bool)
    for half in sorted({1, box // 2}):
        sel = np.flatnonzero(todo)
        total, count = _neighbour_sums(image, bad, ys[sel], xs[sel], half)
        found = count > 0
        values[sel[found]] = total[found] / count[found]
        todo[sel[found]] = False
        if not todo.any():
            break
    out = image if inplace else image.copy()
    out[ys, xs] = values.astype(np.float32)
    return out


def _neighbour_sums(image: np.ndarray, bad: np.ndarray, ys: np.ndarray, xs: np.ndarray,
                    half: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and number of the good, finite pixels within ``half`` pixels (a square) of each (ys, xs)."""
    ny, nx = image.shape
    total = np.zeros(ys.size, dtype=np.float64)
    count = np.zeros(ys.size, dtype=np.int64)
    for dy in range(-half, half + 1):
        yy = ys + dy
        for dx in range(-half, half + 1):
            if dx == 0 and dy == 0:
                continue
            xx = xs + dx
            inside = np.flatnonzero((yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx))
            yi, xi = yy[inside], xx[inside]
            pixels = image[yi, xi]
            good = ~bad[yi, xi] & np.isfinite(pixels)
            idx = inside[good]
            total[idx] += pixels[good]
            count[idx] += 1
    return total, count


def noise_arguments(var: np.ndarray | None, background: Background,
                    noise_without_var: Literal["map", "global"] = "map") -> dict[str, np.ndarray | float]:
    """sep's noise keyword for photometry: ``{"var": VAR}``, or else ``{"err": RMS}`` with the
    background RMS map (``"map"``) or its global value (``"global"``).

    VAR is passed as it is when it is already native float32 (no full-size
    copy); its non-finite pixels must be masked by the caller (calibrated
    products mark them ``NO_DATA``, and sep ignores masked pixels' variance).
    """
    if var is None:
        return {"err": background.rms if noise_without_var == "map" else float(background.global_rms)}
    var = np.asarray(var)
    if var.shape != background.shape:
        raise ValueError(f"VAR shape {var.shape} differs from the image's {background.shape}")
    return {"var": np.ascontiguousarray(var, dtype=np.float32)}


def _sane_ellipses(det: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a >= b > 0 and theta in [-pi/2, pi/2], as sep requires (degenerate sources get a 1-pixel circle)."""
    a = np.where(np.isfinite(det.a) & (det.a > 0), det.a, 1.0)
    b = np.where(np.isfinite(det.b) & (det.b > 0), det.b, a)
    b = np.minimum(a, b)
    theta = np.where(np.isfinite(det.theta), det.theta, 0.0)
    theta = np.clip(theta, -np.pi / 2, np.pi / 2)
    return a, b, theta


def stellar_locus(flux_radius: np.ndarray, snr: np.ndarray, clean: np.ndarray, snr_min: float,
                  min_sources: int) -> tuple[float, float]:
    """Half-light radius of point sources and its relative spread, from the bright clean sources.

    Point sources are the smallest sources of an image and, in most fields,
    the most numerous among bright ones: the locus is found by starting at
    the 30th percentile of the radii and iterating a median within 3 robust
    sigma (at least 5% of the locus) of it.

    Returns
    -------
    (float, float)
        Locus radius, pixels, and relative spread; (nan, nan) when fewer than
        ``min_sources`` sources qualify.
    """
    use = clean & (snr >= snr_min) & np.isfinite(flux_radius) & (flux_radius > 0)
    radii = flux_radius[use]
    if radii.size < min_sources:
        return float("nan"), float("nan")
    centre = float(np.percentile(radii, 30))
    spread = max(1.4826 * float(np.median(np.abs(radii - centre))), 0.05 * centre)
    for _ in range(5):
        near = radii[np.abs(radii - centre) <= 3 * spread]
        if near.size < min_sources:
            break
        centre = float(np.median(near))
        spread = max(1.4826 * float(np.median(np.abs(near - centre))), 0.05 * centre)
    near = radii[np.abs(radii - centre) <= 3 * spread]
    relative = 1.4826 * float(np.median(np.abs(near / centre - 1.0))) if near.size else float("nan")
    return centre, relative


def _mask_flags(image: np.ndarray, flagged: FlaggedPixels, x: np.ndarray, y: np.ndarray, a: np.ndarray,
                b: np.ndarray, theta: np.ndarray, kron_r: np.ndarray, circle_r: float) -> np.ndarray:
    """OR of the MASK bits touching the Kron ellipse or the circle of ``circle_r`` around each source."""
    import sep

    out = np.zeros(x.size, dtype=np.int32)
    present = flagged.present
    if present == 0 or x.size == 0:
        return out

    def touched(plane: np.ndarray, sel: np.ndarray) -> np.ndarray:
        _, _, f1 = sep.sum_ellipse(image, x[sel], y[sel], a[sel], b[sel], theta[sel], r=kron_r[sel],
                                   mask=plane, subpix=1)
        _, _, f2 = sep.sum_circle(image, x[sel], y[sel], circle_r, mask=plane, subpix=1)
        return ((f1 | f2) & (sep.APER_HASMASKED | sep.APER_ALLMASKED)) != 0

    # One pass with every bit finds the few sources that touch any flagged pixel; only those are
    # examined bit by bit (each plane is built from the flagged pixels alone).
    hit = np.flatnonzero(touched(flagged.plane(present), np.ones(x.size, dtype=bool)))
    if hit.size == 0:
        return out
    sel = np.zeros(x.size, dtype=bool)
    sel[hit] = True
    for bit in range(present.bit_length()):
        value = 1 << bit
        if present & value:
            has = touched(flagged.plane(value), sel)
            out[hit[has]] |= value
    return out


def measure_photometry(image: np.ndarray, detections: Detections, background: Background,
                       var: np.ndarray | None = None, mask: np.ndarray | FlaggedPixels | None = None,
                       config: PhotometryConfig = PhotometryConfig(), finite: bool = False) -> Photometry:
    """Fluxes, centroids, shapes and flags of detected sources.

    Parameters
    ----------
    image : ndarray of float32, 2-D
        Background-subtracted image, electrons (repaired where wanted, see
        :func:`repair_masked_pixels`); not modified.
    detections : Detections
        The sources, from :func:`lenghu.measure.detect.detect_sources` on ``image``.
    background : Background
        The image's background (its RMS is the noise when ``var`` is None).
    var : ndarray, optional
        Variance per pixel, electrons^2 (the product's VAR). Without it the
        background RMS is the noise (no Poisson noise of the sources).
    mask : ndarray of int or FlaggedPixels, optional
        MASK plane (or its flagged pixels): ``config.exclude_bits`` pixels are
        left out of sums, and every bit under a source's apertures goes to
        ``mask_flags``.
    config : PhotometryConfig
    finite : bool
        Every pixel of ``var`` is known to be finite (or flagged in ``mask``
        with an ``exclude_bits`` bit): skip the full-frame check.

    Returns
    -------
    Photometry
    """
    import sep

    n = len(detections)
    radii = config.aperture_radii
    if image.shape != background.shape:
        raise ValueError(f"image shape {image.shape} differs from the background's {background.shape}")
    noise = noise_arguments(var, background, config.noise_without_var)
    flagged = None
    if mask is not None:
        flagged = mask if isinstance(mask, FlaggedPixels) else FlaggedPixels.from_mask(mask)
        if tuple(flagged.shape) != tuple(image.shape):
            raise ValueError(f"MASK shape {flagged.shape} differs from the image's {image.shape}")
    excluded = None
    if flagged is not None and config.exclude_bits:
        excluded = flagged.plane(config.exclude_bits)
    if var is not None and not finite:
        bad_var = non_finite(np.asarray(var))
        if bad_var is not None:
            excluded = bad_var if excluded is None else (excluded | bad_var)
    if excluded is not None and not excluded.any():
        excluded = None

    x, y = detections.x, detections.y
    a, b, theta = _sane_ellipses(detections)
    flags = detections.flags.astype(np.int32).copy()
    if n == 0:
        empty = np.zeros(0)
        return Photometry(
            xwin=empty, ywin=empty, aperture_radii=radii, aperture_flux=np.zeros((0, len(radii))),
            aperture_flux_err=np.zeros((0, len(radii))), kron_radius=empty, kron_flux=empty,
            kron_flux_err=empty, kron_circular=np.zeros(0, dtype=bool), flux_radius=empty, fwhm=empty,
            ellipticity=empty, flags=np.zeros(0, dtype=np.int32),
            mask_flags=np.zeros(0, dtype=np.int32), size_ratio=empty, point_like=np.zeros(0, dtype=bool),
            stellar_locus=float("nan"), locus_spread=float("nan"), config=config)

    # Pixels of other detections left out of the Kron and half-light measurements.
    ids = np.arange(1, n + 1, dtype=np.int32)
    if config.mask_neighbours:
        if detections.segmentation is None:
            raise ValueError("mask_neighbours needs the segmentation map: detect with "
                             "DetectionConfig(segmentation=True)")
        neighbours = lambda sel=slice(None): {"segmap": detections.segmentation, "seg_id": ids[sel]}  # noqa: E731
    else:
        neighbours = lambda sel=slice(None): {}  # noqa: E731

    # Kron (AUTO) flux.
    kr, kflag = sep.kron_radius(image, x, y, a, b, theta, config.kron_window, mask=excluded, **neighbours())
    kr = np.where(np.isfinite(kr), kr, 0.0)
    kron_scale = np.maximum(config.kron_factor * kr, config.kron_min_radius)
    kron_scale = np.where(kron_scale > 0, kron_scale, 1.0)
    circular = np.sqrt(a * b) * kron_scale < config.kron_min_circular_radius
    kflux, kerr, ksflag = sep.sum_ellipse(image, x, y, a, b, theta, r=kron_scale, mask=excluded,
                                          subpix=config.kron_subpix, **noise, **neighbours())
    if circular.any():
        cflux, cerr, cflag = sep.sum_circle(image, x[circular], y[circular], config.kron_min_circular_radius,
                                            mask=excluded, subpix=config.kron_subpix, **noise,
                                            **neighbours(circular))
        kflux[circular], kerr[circular], ksflag[circular] = cflux, cerr, cflag
    flags |= kflag.astype(np.int32) | ksflag.astype(np.int32)

    # Half-light radius, normalised by the AUTO flux (as SExtractor). Half of the Kron flux lies
    # within the Kron aperture, so the search stops at the circle that holds it (radius: the Kron
    # ellipse's semi-major axis, or the minimum circle) when that is inside the Kron window: for
    # the typical Kron scale of 3.5 against a window of 6, a third of the pixels, and sep's 64
    # radial bins are finer (the radii move by 0.005 pixel in the median on a full WFST CCD).
    rmax = np.minimum(config.kron_window, kron_scale) * a
    rmax = np.where(circular, np.maximum(rmax, config.kron_min_circular_radius), rmax)
    norm = np.where(kflux > 0, kflux, np.nan)
    normflux = np.nan_to_num(norm, nan=1.0)
    rhalf = np.empty(n)
    rflag = np.zeros(n, dtype=np.int32)
    coarse = rmax > FLUX_RADIUS_COARSE_ABOVE
    for sel, subpix in ((~coarse, 5), (coarse, 1)):
        if sel.any():
            r, fl = sep.flux_radius(image, x[sel], y[sel], rmax[sel], 0.5, normflux=normflux[sel],
                                    mask=excluded, subpix=subpix, **neighbours(sel))
            rhalf[sel], rflag[sel] = r, fl
    rhalf = np.where(np.isfinite(norm) & (rhalf > 0), rhalf, np.nan)
    flags |= rflag

    # Windowed centroid (sigma = 2 r_half / 2.35, SExtractor's XWIN_IMAGE).
    sig = np.where(np.isfinite(rhalf), 2.0 * rhalf / FWHM_PER_SIGMA, 2.0 / FWHM_PER_SIGMA * 0.5)
    sig = np.minimum(sig, config.window_max_sigma)
    xwin, ywin, wflag = sep.winpos(image, x, y, sig, mask=excluded, subpix=config.window_subpix)
    # The window sees neighbours (sep has no segmentation for it): a centroid drawn more than
    # window_max_shift from the barycentre is replaced by the barycentre and flagged.
    wandered = ~(np.isfinite(xwin) & np.isfinite(ywin)) | (np.hypot(xwin - x, ywin - y) > config.window_max_shift)
    xwin, ywin = np.where(wandered, x, xwin), np.where(wandered, y, ywin)
    flags |= wflag.astype(np.int32) | np.where(wandered, np.int32(WINDOW_FALLBACK), np.int32(0))

    # Circular apertures around the windowed centroid.
    aper = np.empty((n, len(radii)))
    aper_err = np.empty((n, len(radii)))
    for i, radius in enumerate(radii):
        f, e, fl = sep.sum_circle(image, xwin, ywin, radius, mask=excluded, subpix=config.aperture_subpix, **noise)
        aper[:, i], aper_err[:, i] = f, e
        flags |= fl.astype(np.int32)

    mask_flags = np.zeros(n, dtype=np.int32)
    if flagged is not None:
        mask_flags = _mask_flags(image, flagged, x, y, a, b, theta, kron_scale, max(radii))

    # Star/galaxy hint.
    snr = np.divide(kflux, kerr, out=np.zeros(n), where=kerr > 0)
    clean = (flags & ~np.int32(sep.OBJ_MERGED)) == 0
    clean &= (mask_flags & ~np.int32(MaskBit.LOW_FLAT)) == 0
    locus, spread = stellar_locus(rhalf, snr, clean, config.locus_snr_min, config.locus_min_sources)
    size_ratio = rhalf / locus if np.isfinite(locus) else np.full(n, np.nan)
    tolerance = max(3.0 * spread, config.point_tolerance) if np.isfinite(spread) else config.point_tolerance
    point_like = np.isfinite(size_ratio) & (np.abs(size_ratio - 1.0) <= tolerance)

    return Photometry(
        xwin=np.asarray(xwin, dtype=np.float64), ywin=np.asarray(ywin, dtype=np.float64), aperture_radii=radii,
        aperture_flux=aper, aperture_flux_err=aper_err, kron_radius=kron_scale, kron_flux=np.asarray(kflux),
        kron_flux_err=np.asarray(kerr), kron_circular=circular, flux_radius=rhalf, fwhm=2.0 * rhalf,
        ellipticity=1.0 - b / a, flags=flags, mask_flags=mask_flags,
        size_ratio=size_ratio, point_like=point_like, stellar_locus=locus, locus_spread=spread, config=config,
    )
