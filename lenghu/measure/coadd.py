"""Coadds: dithered calibrated images of one field on a common TAN grid.

Steps (each a pure function over arrays; :func:`coadd_files` is the thin
wrapper that reads calibrated products and writes the coadd)::

    grid        -> choose_grid        footprint of every input, one TAN grid covering all
    background  -> estimate_sky       per input, a coarse grid of sky level and sky variance
    resample    -> (inside coadd_images) each input's SCI, VAR, MASK onto the grid, strip by strip
    combine     -> (inside coadd_images) outlier rejection, inverse-variance weighted mean

**Grid.** The centre is the mean direction of the inputs' footprints
(their borders, SIP distortion included), the projection TAN, north up and
east left unless ``rotation`` is given, the pixel scale the median of the
inputs' own (measured at their centres) unless ``pixel_scale`` is given, and
the size the bounding box of the footprints (reproject's
``find_optimal_celestial_wcs`` does the same; it is a few lines, so no
dependency is added for it).

**Resampling.** The resampler is our own rather than reproject's, because a
coadd needs the *same* kernel weights applied to SCI, to VAR (linearly and
squared) and to the MASK bits, masked pixels dropped from the kernel, and
the work done in strips of output rows so memory does not grow with the
size of the field; reproject interpolates one array at a time and knows
nothing of variance or bit masks. The kernel is separable Lanczos-3 (as
SWarp's default ``LANCZOS3``), Lanczos-2 or bilinear, normalised to sum to 1,
so a flat image stays flat and sums over apertures are conserved. For each
input, the mapping from output to input pixels is computed exactly with
astropy (SIP included) on nodes every ``mapping_step`` output pixels and
interpolated with bicubic splines in between (errors far below 0.001 pixel
for WFST's smooth distortion); its Jacobian ``J`` (input pixels per output
pixel) turns surface brightness per input pixel into electrons per output
pixel: ``SCI_out = J * interp(SCI)``, so fluxes are conserved whatever the
two pixel scales.

Masked input pixels (``mask_bits``, and SCI/VAR that are not finite or VAR
<= 0) take no part: an output pixel whose 2 x 2 nearest input pixels include
a masked one gets nothing from that input; masked pixels further out in the
kernel's lobes are dropped and the remaining weights renormalised.

**Variance.** Two variances are carried per input and output pixel:

- ``VAR`` (written out) is VAR interpolated bilinearly (positive weights
  that, like the kernel's, sum to 1 over the output pixels an input pixel
  feeds), times ``J``: the sum of ``VAR`` over an aperture is the variance
  of the sum of ``SCI`` over it (for apertures larger than the kernel), which
  is what photometry needs. Resampling correlates neighbouring pixels, so
  the pixel-to-pixel scatter of a coadd is somewhat smaller than
  ``sqrt(VAR)`` (by 6-12% with Lanczos-3 on the simulated nights; more
  with the bilinear kernel, which smooths more).
- the per-pixel variance ``J^2 sum(w^2 VAR) / (sum w)^2``, used only to judge
  outliers.

**Combination.** At each output pixel the reference ``m`` is the median of
the inputs' sky-subtracted values (the lower of the two where only two
cover); input ``i`` is rejected when it lies outside the range that ``m``
takes within ``clip_radius`` pixels by more than
``clip_sigma * sqrt(var_i + (clip_ampfrac * m)^2)``, where ``var_i`` is
its per-pixel variance. Cosmic rays and satellite trails that escaped the
masks are far outside; the cores and wings of stars, which change from
exposure to exposure with the seeing (and shift with small astrometric
errors) by far more than the noise, are not: the ``clip_ampfrac`` term
(SWarp's ``CLIP_AMPFRAC``) allows for the core's amplitude, the
neighbourhood range for a profile that is wider or shifted (a median of the
pixel alone rejects the wings of the worst-seeing exposure and loses up to
a few per cent of a bright star's flux when the seeing varies by 20-40%).
With two inputs only the higher one can be rejected (cosmic rays and
satellites are positive); with one nothing is rejected, and only the masks
protect.
The kept inputs are averaged with weights ``1 / sky variance``
(``weighting = "background"``, the sky variance is a smooth map per input) or
``1 / VAR`` (``"pixel"``). The sky-only weights are the default: VAR includes
each star's own photon noise, so per-pixel ``1 / VAR`` weights give a
brighter (better-seeing) exposure less weight exactly where it is bright,
which biases bright stars' fluxes low (by 3% for a 2e6-electron star on a
100-electron sky when the seeing varies by 10% between four exposures).

Output (:func:`write_coadd`): ``SCI`` (float32, electrons per output pixel at
the common photometric level; sky subtracted unless ``subtract_background``
is false), ``VAR`` (float32, electrons^2, as above), ``WEIGHT`` (float32, sum
of the kept inputs' weights, 1/electrons^2), ``NEXP`` (int16, number of
inputs kept), ``MASK`` (int32: ``NO_DATA`` where no input is kept, together
with the bits of the inputs that cover the pixel; elsewhere the non-excluding
bits of the kept inputs, e.g. ``LOW_FLAT``), ``PROVENANCE`` (every input's
path, SHA-256, zeropoint, flux scale, sky level and rejected pixels), the
grid's WCS in every image header; written atomically.

Memory and speed: the output is made in strips of rows sized so that every
overlapping input's resampled planes of one strip fit in ``strip_megabytes``
(each strip carries ``clip_radius`` extra rows on either side, so the result
does not depend on the strip size); inputs are memory-mapped and read a band
of rows at a time; each input's sky is kept as a grid of boxes; output
planes larger than ``in_memory_megabytes`` are memory-mapped scratch files
(:func:`coadd_files`). Pure numpy, one core: about 0.5 s per million output
pixels per input with Lanczos-3 (a full WFST CCD, 85 Mpix, times 10
exposures: about 7 minutes; SWarp, in C and multithreaded, is faster).

Photometric level: with per-image zeropoints (AB magnitude of a source
giving 1 electron in that image, :func:`lenghu.measure.measure_image`'s
convention) each input is multiplied by ``10**(0.4 (ZP_target - ZP_i))``;
``MAGZERO`` in the coadd's header is ``ZP_target`` (by default the median of
the inputs'). Without zeropoints, the coadd is in the inputs' electrons.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import astropy.units as u
import bottleneck as bn
import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import maximum_filter, median_filter, minimum_filter

from lenghu import __version__
from lenghu.io.checksum import file_checksum
from lenghu.calib.masks import MASK_DTYPE, MaskBit
from lenghu.errors import ConfigError, FrameError
from lenghu.io.atomic import atomic_path

#: Source named in configuration errors of this module.
SOURCE = "lenghu coadd"

#: MASK bits whose pixels take no part in a coadd by default: pixels whose values mean nothing
#: (bad and hot pixels, no data), cosmic rays, and saturation with its bleed trails.
#: Low-flat pixels are calibrated; their larger noise is in VAR.
COADD_MASK_BITS = int(MaskBit.BAD | MaskBit.SAT | MaskBit.CR | MaskBit.NO_DATA | MaskBit.HOT | MaskBit.BLEED)

#: Half-width of each kernel in input pixels (taps per axis = 2 x this).
KERNEL_HALF_WIDTHS = {"lanczos3": 3, "lanczos2": 2, "bilinear": 1}

KernelName = Literal["lanczos3", "lanczos2", "bilinear"]
Weighting = Literal["background", "pixel"]

__all__ = [
    "COADD_MASK_BITS", "Coadd", "CoaddConfig", "CoaddGrid", "CoaddInput", "CoaddResult", "InputSummary",
    "SkyModel", "choose_grid", "coadd_files", "coadd_images", "estimate_sky", "kernel_weights",
    "read_coadd_input", "write_coadd",
]


# ============================================================================ configuration
def _as_float(value: Any, unit: u.Unit, name: str) -> float:
    """``value`` in ``unit`` as a float (a Quantity is converted, a number taken as ``unit``)."""
    try:
        number = value.to_value(unit) if isinstance(value, u.Quantity) else float(value)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise ConfigError(SOURCE, f"{name} = {value!r} is not a number of {unit}") from exc
    if not math.isfinite(number):
        raise ConfigError(SOURCE, f"{name} must be finite, got {value!r}")
    return number


@dataclass(frozen=True)
class CoaddConfig:
    """How a coadd is made. Numbers may be given as astropy Quantities in compatible units.

    Attributes
    ----------
    pixel_scale : float or None
        Output pixel scale, arcsec per pixel; None takes the median of the
        inputs' scales (measured at their centres).
    rotation : float
        Position angle of the output's +y axis, degrees east of north
        (0: north up, east left).
    margin : int
        Output pixels added on every side of the inputs' footprint.
    kernel : {"lanczos3", "lanczos2", "bilinear"}
        Resampling kernel.
    mask_bits : int
        Input MASK bits (:class:`lenghu.calib.masks.MaskBit`) whose pixels are
        excluded (default :data:`COADD_MASK_BITS`).
    weighting : {"background", "pixel"}
        Weights of the mean: ``1 / sky variance`` (smooth map per input, the
        default) or ``1 / VAR`` per pixel (see the module's notes).
    subtract_background : bool
        Subtract each input's sky before combining (as SWarp does by
        default). Outlier rejection always works on sky-subtracted values.
    background_box : int
        Size of the boxes of the sky estimate, input pixels.
    background_filter : int
        Median filter over the grid of boxes, boxes (odd).
    clip_sigma : float or None
        Rejection threshold in standard deviations of each input's per-pixel
        noise; None combines without rejection.
    clip_ampfrac : float
        Fraction of the median value added (in quadrature) to the noise in
        the rejection threshold, so seeing differences in star cores are not
        taken for outliers (dimensionless).
    clip_radius : int
        An input is judged against the range the reference (median) takes
        within this many output pixels, so star profiles that widen or shift
        a little between exposures are not taken for outliers (0: the pixel
        alone).
    target_zeropoint : float or None
        Zeropoint (mag of 1 electron) the inputs are scaled to when
        zeropoints are given; None takes their median.
    mapping_step : int
        Output pixels between exact evaluations of the input WCS (1: at every
        pixel).
    strip_megabytes : float
        Working memory for one strip of output rows, MB (all inputs' resampled
        planes of that strip together).
    """

    pixel_scale: float | None = None
    rotation: float = 0.0
    margin: int = 0
    kernel: KernelName = "lanczos3"
    mask_bits: int = COADD_MASK_BITS
    weighting: Weighting = "background"
    subtract_background: bool = True
    background_box: int = 128
    background_filter: int = 3
    clip_sigma: float | None = 4.0
    clip_ampfrac: float = 0.3
    clip_radius: int = 1
    target_zeropoint: float | None = None
    mapping_step: int = 16
    strip_megabytes: float = 64.0

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        if self.pixel_scale is not None:
            scale = _as_float(self.pixel_scale, u.arcsec, "pixel_scale")
            if scale <= 0:
                raise ConfigError(SOURCE, f"pixel_scale must be > 0 arcsec, got {self.pixel_scale!r}")
            set_("pixel_scale", scale)
        set_("rotation", _as_float(self.rotation, u.deg, "rotation"))
        if self.target_zeropoint is not None:
            set_("target_zeropoint", _as_float(self.target_zeropoint, u.mag, "target_zeropoint"))
        if self.clip_sigma is not None:
            clip = _as_float(self.clip_sigma, u.dimensionless_unscaled, "clip_sigma")
            if clip <= 0:
                raise ConfigError(SOURCE, f"clip_sigma must be > 0 or None, got {self.clip_sigma!r}")
            set_("clip_sigma", clip)
        ampfrac = _as_float(self.clip_ampfrac, u.dimensionless_unscaled, "clip_ampfrac")
        if ampfrac < 0:
            raise ConfigError(SOURCE, f"clip_ampfrac must be >= 0, got {self.clip_ampfrac!r}")
        set_("clip_ampfrac", ampfrac)
        strip = _as_float(self.strip_megabytes, u.dimensionless_unscaled, "strip_megabytes")
        if strip <= 0:
            raise ConfigError(SOURCE, f"strip_megabytes must be > 0, got {self.strip_megabytes!r}")
        set_("strip_megabytes", strip)
        if self.kernel not in KERNEL_HALF_WIDTHS:
            raise ConfigError(SOURCE, f"kernel must be one of {sorted(KERNEL_HALF_WIDTHS)}, got {self.kernel!r}")
        if self.weighting not in ("background", "pixel"):
            raise ConfigError(SOURCE, f"weighting must be 'background' or 'pixel', got {self.weighting!r}")
        if not isinstance(self.subtract_background, bool):
            raise ConfigError(SOURCE, f"subtract_background must be true or false, got {self.subtract_background!r}")
        for name, low in (("margin", 0), ("clip_radius", 0), ("background_box", 8), ("background_filter", 1),
                          ("mapping_step", 1), ("mask_bits", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(SOURCE, f"{name} must be a whole number >= {low}, got {value!r}")
            set_(name, int(value))
        if self.background_filter % 2 == 0:
            raise ConfigError(SOURCE, f"background_filter must be odd, got {self.background_filter}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "CoaddConfig":
        """Build from a mapping such as a TOML ``[coadd]`` table; unknown keys are errors.

        Examples
        --------
        >>> CoaddConfig.from_mapping({"kernel": "bilinear", "clip_sigma": 5}).clip_sigma
        5.0
        """
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(SOURCE, f"unknown keys in [coadd]: {sorted(unknown)}")
        return cls(**dict(data))

    def config_hash(self) -> str:
        """SHA-256 of the settings (recorded as ``CONFHASH``)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()


# ============================================================================ data types
@dataclass(frozen=True, eq=False)
class CoaddInput:
    """One calibrated image to coadd (arrays may be memory-mapped; rows are read as needed).

    Attributes
    ----------
    sci : ndarray, 2-D
        Image, electrons (SCI).
    var : ndarray, 2-D
        Variance, electrons^2 (VAR).
    mask : ndarray of int, 2-D, or None
        MASK bits; None means no pixel is flagged.
    wcs : astropy.wcs.WCS
        Celestial WCS of the image (SIP distortion allowed).
    name : str
        Label in the provenance (its path for files).
    checksum : str
        SHA-256 of its file, or "".
    """

    sci: np.ndarray
    var: np.ndarray
    mask: np.ndarray | None
    wcs: WCS
    name: str = ""
    checksum: str = ""

    def __post_init__(self):
        if np.ndim(self.sci) != 2:
            raise ValueError(f"{self.name}: SCI must be 2-D, got shape {np.shape(self.sci)}")
        if np.shape(self.var) != np.shape(self.sci):
            raise ValueError(f"{self.name}: VAR shape {np.shape(self.var)} differs from SCI's {np.shape(self.sci)}")
        if self.mask is not None and np.shape(self.mask) != np.shape(self.sci):
            raise ValueError(f"{self.name}: MASK shape {np.shape(self.mask)} differs from SCI's "
                             f"{np.shape(self.sci)}")
        if not self.wcs.has_celestial:
            raise ValueError(f"{self.name}: the image has no celestial WCS")

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return tuple(np.shape(self.sci))

    def rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ``start:stop`` of SCI, VAR (native float32) and MASK (int32), read now."""
        sci = np.asarray(self.sci[start:stop], dtype=np.float32)
        var = np.asarray(self.var[start:stop], dtype=np.float32)
        if self.mask is None:
            mask = np.zeros(sci.shape, dtype=MASK_DTYPE)
        else:
            mask = np.asarray(self.mask[start:stop], dtype=MASK_DTYPE)
        return sci, var, mask


@dataclass(frozen=True, eq=False)
class CoaddGrid:
    """The output pixel grid: a celestial TAN WCS without distortion, and a shape.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
    shape : tuple of int
        (ny, nx).
    """

    wcs: WCS
    shape: tuple[int, int]

    @property
    def pixel_scale(self) -> float:
        """Pixel scale at the reference point, arcsec."""
        return float(np.sqrt(abs(np.linalg.det(self.wcs.pixel_scale_matrix))) * 3600.0)

    def header(self) -> fits.Header:
        """The WCS cards with ``NAXIS1``/``NAXIS2`` (for a SWarp ``.head`` file, say)."""
        header = fits.Header()
        header["NAXIS"] = 2
        header["NAXIS1"] = self.shape[1]
        header["NAXIS2"] = self.shape[0]
        header.update(self.wcs.to_header())
        return header

    @classmethod
    def from_header(cls, header: fits.Header) -> "CoaddGrid":
        """The grid of an image header (``NAXISn`` and a celestial WCS)."""
        wcs = WCS(header).celestial
        return cls(wcs=wcs, shape=(int(header["NAXIS2"]), int(header["NAXIS1"])))


@dataclass(frozen=True, eq=False)
class SkyModel:
    """Sky level and sky variance of one input on a coarse grid of boxes.

    Attributes
    ----------
    y, x : ndarray
        Centres of the boxes, input pixels (0-based).
    level : ndarray
        Sky, electrons per input pixel, shape (len(y), len(x)).
    variance : ndarray
        Sky variance, electrons^2 per input pixel (the VAR plane's sky value).
    """

    y: np.ndarray
    x: np.ndarray
    level: np.ndarray
    variance: np.ndarray

    def __call__(self, yi: np.ndarray, xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(level, variance) at input pixel positions: bilinear between box centres, constant beyond."""
        def axis(p, centres):
            if len(centres) == 1:
                return np.zeros(p.shape, dtype=np.intp), np.zeros(p.shape), 0
            q = np.interp(p, centres, np.arange(len(centres), dtype=np.float64))
            i0 = np.minimum(q.astype(np.intp), len(centres) - 2)
            return i0, q - i0, 1

        iy, fy, sy = axis(np.asarray(yi, dtype=np.float64), self.y)
        ix, fx, sx = axis(np.asarray(xi, dtype=np.float64), self.x)
        out = []
        for grid in (self.level, self.variance):
            g00, g01 = grid[iy, ix], grid[iy, ix + sx]
            g10, g11 = grid[iy + sy, ix], grid[iy + sy, ix + sx]
            out.append((1 - fy) * ((1 - fx) * g00 + fx * g01) + fy * ((1 - fx) * g10 + fx * g11))
        return out[0], out[1]


@dataclass(frozen=True)
class InputSummary:
    """What happened to one input.

    Attributes
    ----------
    name, checksum : str
    zeropoint : float or None
        Its zeropoint, mag of 1 electron.
    scale : float
        Factor applied to bring it to the coadd's photometric level.
    sky : float
        Median sky level, electrons per input pixel.
    sky_variance : float
        Median sky variance, electrons^2 per input pixel.
    pixels_used : int
        Output pixels it contributed to.
    pixels_rejected : int
        Output pixels where it was rejected as an outlier.
    """

    name: str
    checksum: str
    zeropoint: float | None
    scale: float
    sky: float
    sky_variance: float
    pixels_used: int
    pixels_rejected: int


@dataclass(frozen=True, eq=False)
class Coadd:
    """A coadd in memory (arrays may be memory-mapped).

    Attributes
    ----------
    sci : ndarray, float32
        Electrons per output pixel; NaN where ``nexp`` is 0.
    var : ndarray, float32
        Electrons^2 (aperture-sum convention; NaN where ``nexp`` is 0).
    weight : ndarray, float32
        Sum of the kept inputs' weights, 1/electrons^2.
    nexp : ndarray, int16
        Inputs kept per pixel.
    mask : ndarray, int32
    grid : CoaddGrid
    inputs : tuple of InputSummary
    zeropoint : float or None
        Mag of 1 electron in the coadd, when zeropoints were given.
    config : CoaddConfig
    """

    sci: np.ndarray
    var: np.ndarray
    weight: np.ndarray
    nexp: np.ndarray
    mask: np.ndarray
    grid: CoaddGrid
    inputs: tuple[InputSummary, ...]
    zeropoint: float | None
    config: CoaddConfig


@dataclass(frozen=True)
class CoaddResult:
    """What :func:`coadd_files` made.

    Attributes
    ----------
    path : str
        The coadd file.
    shape : tuple of int
        (ny, nx) of the grid.
    pixel_scale : float
        arcsec per pixel.
    center : tuple of float
        (ra, dec) of the grid's reference point, ICRS degrees.
    inputs : tuple of InputSummary
    zeropoint : float or None
    coverage : dict
        ``{n: number of output pixels with NEXP == n}``.
    wall_s : float
        Seconds taken.
    """

    path: str
    shape: tuple[int, int]
    pixel_scale: float
    center: tuple[float, float]
    inputs: tuple[InputSummary, ...]
    zeropoint: float | None
    coverage: dict[int, int]
    wall_s: float


# ============================================================================ grid
def _border_pixels(shape: tuple[int, int], per_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) 0-based positions along the outer edges of an image of ``shape``."""
    ny, nx = shape
    n = per_side or max(8, int(max(nx, ny) / 64))
    xs = np.linspace(-0.5, nx - 0.5, n)
    ys = np.linspace(-0.5, ny - 0.5, n)
    x = np.concatenate([xs, xs, np.full(n, -0.5), np.full(n, nx - 0.5)])
    y = np.concatenate([np.full(n, -0.5), np.full(n, ny - 0.5), ys, ys])
    return x, y


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _tan_wcs(ra0: float, dec0: float, scale_arcsec: float, rotation_deg: float,
             crpix: tuple[float, float] = (1.0, 1.0)) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra0, dec0]
    wcs.wcs.crpix = list(crpix)
    s = scale_arcsec / 3600.0
    theta = math.radians(rotation_deg)
    # +x points to position angle rotation+90 (east at 0), +y to position angle `rotation`
    wcs.wcs.cd = [[-s * math.cos(theta), s * math.sin(theta)], [s * math.sin(theta), s * math.cos(theta)]]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.set()
    return wcs


def _local_scale(wcs: WCS, shape: tuple[int, int]) -> float:
    """Pixel scale (sqrt of the pixel's solid angle) at the image centre, arcsec, distortion included."""
    yc, xc = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    ra, dec = wcs.pixel_to_world_values(np.array([xc, xc + 1.0, xc]), np.array([yc, yc, yc + 1.0]))
    tangent = _tan_wcs(float(ra[0]), float(dec[0]), 3600.0, 0.0)  # 1 degree per "pixel"
    u_, v_ = tangent.world_to_pixel_values(ra, dec)
    jac = np.array([[u_[1] - u_[0], u_[2] - u_[0]], [v_[1] - v_[0], v_[2] - v_[0]]])
    return float(np.sqrt(abs(np.linalg.det(jac))) * 3600.0)


def choose_grid(wcs_list: Sequence[WCS], shapes: Sequence[tuple[int, int]], pixel_scale: float | None = None,
                rotation: float = 0.0, margin: int = 0) -> CoaddGrid:
    """A TAN grid covering every input.

    Parameters
    ----------
    wcs_list : sequence of astropy.wcs.WCS
        The inputs' celestial WCS (SIP allowed).
    shapes : sequence of (ny, nx)
        The inputs' shapes.
    pixel_scale : float, optional
        arcsec per output pixel; default the median of the inputs' scales at their centres.
    rotation : float
        Position angle of +y, degrees east of north.
    margin : int
        Extra output pixels on every side.

    Returns
    -------
    CoaddGrid
        Reference point at the mean direction of the footprints, integer
        ``CRPIX``, the smallest box holding every input pixel.

    Examples
    --------
    >>> w = WCS(naxis=2); w.wcs.ctype = ["RA---TAN", "DEC--TAN"]; w.wcs.crval = [10, 20]
    >>> w.wcs.crpix = [50.5, 50.5]; w.wcs.cdelt = [-1e-4, 1e-4]
    >>> grid = choose_grid([w], [(100, 100)])
    >>> grid.shape, round(grid.pixel_scale, 3)
    ((101, 101), 0.36)
    """
    if len(wcs_list) == 0:
        raise ValueError("no inputs to make a grid for")
    if len(wcs_list) != len(shapes):
        raise ValueError("choose_grid needs one shape per WCS")
    ras, decs = [], []
    for wcs, shape in zip(wcs_list, shapes):
        x, y = _border_pixels(shape)
        ra, dec = wcs.pixel_to_world_values(x, y)
        ras.append(ra)
        decs.append(dec)
    ra, dec = np.concatenate(ras), np.concatenate(decs)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        raise ValueError("an input's WCS gives non-finite coordinates on its border")
    mean = _unit_vectors(ra, dec).mean(axis=0)
    ra0 = float(np.degrees(np.arctan2(mean[1], mean[0])) % 360.0)
    dec0 = float(np.degrees(np.arctan2(mean[2], np.hypot(mean[0], mean[1]))))
    scale = pixel_scale if pixel_scale is not None else float(np.median([_local_scale(w, s) for w, s in
                                                                          zip(wcs_list, shapes)]))
    plane = _tan_wcs(ra0, dec0, scale, rotation)  # 0-based pixel = offset from CRVAL
    px, py = plane.world_to_pixel_values(ra, dec)
    # a border point at a pixel's outer edge: the output pixel holding it is round(p)
    x0, x1 = int(np.floor(px.min() + 0.5)) - margin, int(np.ceil(px.max() - 0.5)) + margin
    y0, y1 = int(np.floor(py.min() + 0.5)) - margin, int(np.ceil(py.max() - 0.5)) + margin
    wcs = _tan_wcs(ra0, dec0, scale, rotation, crpix=(1.0 - x0, 1.0 - y0))
    return CoaddGrid(wcs=wcs, shape=(y1 - y0 + 1, x1 - x0 + 1))


# ============================================================================ sky
def _clipped_mode(values: np.ndarray, sigma: float = 3.0, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``values`` (NaN = absent): SExtractor's clipped mode and the mask of values kept."""
    data = values.copy()
    for _ in range(iterations):
        med = bn.nanmedian(data, axis=1)
        std = bn.nanstd(data, axis=1)
        with np.errstate(invalid="ignore"):
            outside = np.abs(data - med[:, None]) > sigma * std[:, None]
        data[outside] = np.nan
    med = bn.nanmedian(data, axis=1)
    mean = bn.nanmean(data, axis=1)
    std = bn.nanstd(data, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        skewed = np.abs(mean - med) / std >= 0.3
    mode = np.where(skewed | ~(std > 0), med, 2.5 * med - 1.5 * mean)
    return mode, np.isfinite(data)


def _fill_missing(grid: np.ndarray) -> np.ndarray:
    """Boxes with no estimate take the median of those that have one."""
    good = np.isfinite(grid)
    if not good.any():
        raise ValueError("no box has enough unmasked pixels for a sky estimate")
    return np.where(good, grid, np.median(grid[good]))


def estimate_sky(image: CoaddInput, box: int = 128, filter_size: int = 3, mask_bits: int = COADD_MASK_BITS,
                 min_fraction: float = 0.5) -> SkyModel:
    """Sky level and sky variance of one input on a grid of boxes, read a band of rows at a time.

    In each box of ``box`` x ``box`` pixels the level is SExtractor's clipped
    mode of the unmasked SCI values, the variance the median of VAR over the
    values the clipping kept (so stars count in neither); the grids are
    median-filtered over ``filter_size`` boxes. Only the coarse grids are
    kept: N inputs need N x (ny/box) x (nx/box) numbers, not N images.

    Parameters
    ----------
    image : CoaddInput
    box : int
        Box size, input pixels.
    filter_size : int
        Median filter size, boxes (odd).
    mask_bits : int
        MASK bits whose pixels are left out.
    min_fraction : float
        Boxes with fewer usable pixels than this fraction get the median of the others.

    Returns
    -------
    SkyModel
    """
    ny, nx = image.shape
    nby, nbx = max(1, round(ny / box)), max(1, round(nx / box))
    yedges = np.linspace(0, ny, nby + 1).round().astype(int)
    xedges = np.linspace(0, nx, nbx + 1).round().astype(int)
    widths = np.diff(xedges)
    wmax = int(widths.max())
    level = np.full((nby, nbx), np.nan)
    variance = np.full((nby, nbx), np.nan)
    for j in range(nby):
        sci, var, mask = image.rows(int(yedges[j]), int(yedges[j + 1]))
        bad = ~np.isfinite(sci) | ~np.isfinite(var) | ~(var > 0) | ((mask & mask_bits) != 0)
        h = sci.shape[0]
        blocks_s = np.full((nbx, h, wmax), np.nan)
        blocks_v = np.full((nbx, h, wmax), np.nan)
        for i in range(nbx):
            sl = slice(int(xedges[i]), int(xedges[i + 1]))
            blocks_s[i, :, :widths[i]] = np.where(bad[:, sl], np.nan, sci[:, sl])
            blocks_v[i, :, :widths[i]] = np.where(bad[:, sl], np.nan, var[:, sl])
        blocks_s = blocks_s.reshape(nbx, -1)
        blocks_v = blocks_v.reshape(nbx, -1)
        usable = np.isfinite(blocks_s).sum(axis=1) >= min_fraction * h * widths
        mode, kept = _clipped_mode(blocks_s)
        blocks_v[~kept] = np.nan
        level[j] = np.where(usable, mode, np.nan)
        variance[j] = np.where(usable, bn.nanmedian(blocks_v, axis=1), np.nan)
    level, variance = _fill_missing(level), _fill_missing(variance)
    if filter_size > 1:
        level = median_filter(level, size=filter_size, mode="nearest")
        variance = median_filter(variance, size=filter_size, mode="nearest")
    yc = (yedges[:-1] + yedges[1:] - 1) / 2.0
    xc = (xedges[:-1] + xedges[1:] - 1) / 2.0
    return SkyModel(y=yc, x=xc, level=level, variance=variance)


# ============================================================================ resampling
def kernel_weights(frac: np.ndarray, kernel: KernelName) -> list[np.ndarray]:
    """Weights of the ``2a`` taps along one axis, normalised to sum to 1.

    Tap ``k`` sits at input pixel ``floor(p) - a + 1 + k`` for a position
    ``p`` with fractional part ``frac``; its distance is ``frac + a - 1 - k``.

    Examples
    --------
    >>> [round(float(w), 3) for w in kernel_weights(np.array(0.25), "bilinear")]
    [0.75, 0.25]
    >>> [abs(round(float(w), 3)) for w in kernel_weights(np.array(0.0), "lanczos3")]
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    """
    a = KERNEL_HALF_WIDTHS[kernel]
    frac = np.asarray(frac, dtype=np.float64)
    if a == 1:
        return [1.0 - frac, frac]
    # sinc(t) sinc(t/a) = a sin(pi t) sin(pi t / a) / (pi t)^2; for t = frac + m, sin(pi t) = (-1)^m sin(pi frac)
    # and sin(pi t / a) follows from sin and cos of pi frac / a: three trigonometric calls per axis in all.
    s1 = np.sin(np.pi * frac)
    sa, ca = np.sin(np.pi * frac / a), np.cos(np.pi * frac / a)
    weights = []
    for k in range(2 * a):
        m = a - 1 - k
        t = frac + m
        num = a * ((-1) ** (m % 2)) * s1 * (sa * math.cos(np.pi * m / a) + ca * math.sin(np.pi * m / a))
        with np.errstate(invalid="ignore", divide="ignore"):
            w = num / (np.pi * t) ** 2
        # on a tap (frac 0 or 1) the limit is 1; the other taps' numerators vanish there
        weights.append(np.where(np.abs(t) < 1e-9, 1.0, w))
    total = sum(weights)
    return [w / total for w in weights]


#: Steps per input pixel of the kernel look-up table (position error at most 1/8192 pixel).
TABLE_STEPS = 4096


@functools.lru_cache(maxsize=None)
def _kernel_table(kernel: KernelName) -> np.ndarray:
    """:func:`kernel_weights` at ``TABLE_STEPS + 1`` fractions in [0, 1], shape (2a, steps + 1), float32."""
    frac = np.linspace(0.0, 1.0, TABLE_STEPS + 1)
    return np.array(kernel_weights(frac, kernel), dtype=np.float32)


def _tap_weights(frac: np.ndarray, kernel: KernelName) -> list[np.ndarray]:
    """Float32 tap weights for fractions ``frac`` (float32 array of any shape) from the look-up table."""
    if kernel == "bilinear":
        return [np.float32(1.0) - frac, frac]
    index = (frac * np.float32(TABLE_STEPS) + np.float32(0.5)).astype(np.intp)
    return [np.take(row, index) for row in _kernel_table(kernel)]


class _Mapping:
    """Output pixel -> input pixel for one input, by bicubic splines through exact nodes."""

    def __init__(self, grid: CoaddGrid, image: CoaddInput, step: int):
        self.image_shape = image.shape
        ny, nx = grid.shape
        bx, by = _border_pixels(image.shape)
        ra, dec = image.wcs.pixel_to_world_values(bx, by)
        with np.errstate(invalid="ignore"):
            ox, oy = grid.wcs.world_to_pixel_values(ra, dec)
        if not (np.all(np.isfinite(ox)) and np.all(np.isfinite(oy))):  # far side of the sky
            self.empty = True
            return
        # bounding box of the footprint on the grid, a pixel of slack for the splines
        self.x0 = max(0, int(np.floor(ox.min())) - 1)
        self.x1 = min(nx - 1, int(np.ceil(ox.max())) + 1)
        self.y0 = max(0, int(np.floor(oy.min())) - 1)
        self.y1 = min(ny - 1, int(np.ceil(oy.max())) + 1)
        self.empty = self.x0 > self.x1 or self.y0 > self.y1
        if self.empty:
            return
        # the splines are evaluated up to one pixel beyond the box (see __call__), and FITPACK
        # clamps rather than extrapolates: nodes cover those pixels too
        xs = self._nodes(self.x0 - 1, self.x1 + 1, step)
        ys = self._nodes(self.y0 - 1, self.y1 + 1, step)
        gx, gy = np.meshgrid(xs, ys)
        ra, dec = grid.wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
        ix, iy = image.wcs.world_to_pixel_values(ra, dec)
        ix, iy = ix.reshape(gx.shape), iy.reshape(gx.shape)
        if not (np.all(np.isfinite(ix)) and np.all(np.isfinite(iy))):
            raise ValueError(f"{image.name}: its WCS cannot map part of the coadd grid back to its pixels")
        kx, ky = min(3, len(xs) - 1), min(3, len(ys) - 1)
        self.spline_x = RectBivariateSpline(ys, xs, ix, kx=ky, ky=kx)
        self.spline_y = RectBivariateSpline(ys, xs, iy, kx=ky, ky=kx)

    @staticmethod
    def _nodes(lo: int, hi: int, step: int) -> np.ndarray:
        n = max(4, int(math.ceil((hi - lo) / step)) + 1)
        if step == 1:
            n = max(n, hi - lo + 1)
        if hi - lo + 1 < 4:  # a sliver: widen the node range (splines extrapolate smoothly)
            return np.linspace(lo - 2, hi + 2, 4 + hi - lo + 1)
        return np.linspace(lo, hi, n)

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Input (x, y) of output pixels ``rows x cols`` and the Jacobian (input pixels per output pixel).

        ``rows`` and ``cols`` are runs of consecutive pixels (a block of the grid).
        """
        if np.any(np.diff(rows) != 1) or np.any(np.diff(cols) != 1):
            raise ValueError("the mapping is evaluated on blocks of consecutive output pixels")
        # one more row and column on each side, for the derivatives: the mapping is smooth (TAN
        # to TAN, small distortion), so central differences of neighbours give them to ~1e-8 at
        # a third of the cost of the splines' own derivatives
        rows1 = np.concatenate([[rows[0] - 1.0], rows, [rows[-1] + 1.0]])
        cols1 = np.concatenate([[cols[0] - 1.0], cols, [cols[-1] + 1.0]])
        xf = self.spline_x(rows1, cols1)   # first spline argument: the output row (y)
        yf = self.spline_y(rows1, cols1)
        xi, yi = xf[1:-1, 1:-1], yf[1:-1, 1:-1]
        dxi_dx, dxi_dy = 0.5 * (xf[1:-1, 2:] - xf[1:-1, :-2]), 0.5 * (xf[2:, 1:-1] - xf[:-2, 1:-1])
        dyi_dx, dyi_dy = 0.5 * (yf[1:-1, 2:] - yf[1:-1, :-2]), 0.5 * (yf[2:, 1:-1] - yf[:-2, 1:-1])
        jac = np.abs(dxi_dx * dyi_dy - dxi_dy * dyi_dx)
        return xi, yi, jac


@dataclass
class _Resampled:
    """One input on one strip's sub-rectangle (all arrays of the sub-rectangle's shape)."""

    covered: np.ndarray      # bool: inside the input's pixels
    ok: np.ndarray           # bool: covered and no masked pixel among the 2x2 nearest
    value: np.ndarray        # electrons per output pixel (scaled; sky subtracted when configured)
    sky: np.ndarray          # the sky still in `value` (0 when subtracted), electrons per output pixel
    var_lin: np.ndarray      # electrons^2, aperture-sum convention
    var_pix: np.ndarray      # electrons^2, per-pixel variance
    weight: np.ndarray       # 1/electrons^2
    bits: np.ndarray         # int32, OR of the MASK bits of the 2x2 nearest input pixels


def _resample(image: CoaddInput, mapping: _Mapping, sky: SkyModel, rows: np.ndarray, cols: np.ndarray,
              scale: float, config: CoaddConfig) -> _Resampled:
    """Resample one input onto output pixels ``rows x cols`` (see the module's notes)."""
    a = KERNEL_HALF_WIDTHS[config.kernel]
    ny_in, nx_in = image.shape
    xi, yi, jac = mapping(rows, cols)
    covered = (xi >= -0.5) & (xi <= nx_in - 0.5) & (yi >= -0.5) & (yi <= ny_in - 0.5)
    fx, fy = np.floor(xi), np.floor(yi)
    # input rows needed, padded by `a` pixels of "masked" on every side so that every tap is in bounds
    inside_y = fy[covered] if covered.any() else np.zeros(1)
    r0 = int(max(0, inside_y.min() - a + 1))
    r1 = int(min(ny_in, inside_y.max() + a + 1))
    sci, var, mask = image.rows(r0, r1)
    no_data = ~np.isfinite(sci) | ~np.isfinite(var) | ~(var > 0)
    bad = no_data | ((mask & config.mask_bits) != 0)
    sci = np.pad(np.where(bad, np.float32(0), sci), a)
    var = np.pad(np.where(bad, np.float32(0), var), a)
    good = np.pad((~bad).astype(np.float32), a)
    mask = np.pad(np.where(no_data, mask | MASK_DTYPE(MaskBit.NO_DATA), mask), a,
                  constant_values=int(MaskBit.NO_DATA))
    del no_data, bad
    width = nx_in + 2 * a
    height = r1 - r0 + 2 * a
    # flat index of the first tap (ky = kx = 0): input pixel (floor(p) - a + 1), shifted by the padding
    tx = np.where(covered, fx, 0).astype(np.int64) + 1   # - a + 1 + a
    ty = np.where(covered, fy, r0).astype(np.int64) - r0 + 1
    np.clip(tx, 0, width - 2 * a, out=tx)
    np.clip(ty, 0, height - 2 * a, out=ty)
    base = ty * width + tx
    del tx, ty
    frac_x = (xi - fx).astype(np.float32)
    frac_y = (yi - fy).astype(np.float32)
    wx, wy = _tap_weights(frac_x, config.kernel), _tap_weights(frac_y, config.kernel)
    bx, by = _tap_weights(frac_x, "bilinear"), _tap_weights(frac_y, "bilinear")
    del frac_x, frac_y
    shape = xi.shape
    # float32 accumulators: 36 terms of float32 data lose nothing that matters (relative 1e-6)
    s = np.zeros(shape, dtype=np.float32)
    vlin = np.zeros(shape, dtype=np.float32)
    vsq = np.zeros(shape, dtype=np.float32)
    wsum = np.zeros(shape, dtype=np.float32)
    core_bad = np.zeros(shape, dtype=bool)
    bits = np.zeros(shape, dtype=MASK_DTYPE)
    sci_f, var_f, good_f, mask_f = sci.ravel(), var.ravel(), good.ravel(), mask.ravel()
    core = (a - 1, a)
    for ky in range(2 * a):
        for kx in range(2 * a):
            idx = base + (ky * width + kx)
            w = wy[ky] * wx[kx]
            g = np.take(good_f, idx)
            wg = w * g
            wsum += wg
            s += w * np.take(sci_f, idx)       # masked pixels hold 0
            v = np.take(var_f, idx)
            vsq += (w * w) * v
            if ky in core and kx in core:
                core_bad |= g == 0
                bits |= np.take(mask_f, idx)
                # VAR is spread with the (positive) bilinear weights of the 2x2 nearest pixels: the
                # Lanczos lobes are negative, and would give negative variances beside bright cores
                vlin += bx[kx - a + 1] * by[ky - a + 1] * v
    del base
    ok = covered & ~core_bad & (wsum > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(ok, 1.0 / wsum.astype(np.float64), 0.0)
    level, sky_var = sky(yi, xi)
    f = scale * jac
    value = f * (s * inv - level)
    sky_out = np.zeros(shape) if config.subtract_background else f * level
    if not config.subtract_background:
        value = value + sky_out
    var_lin = (scale * scale * jac) * vlin   # the 2x2 nearest pixels are unmasked where ok
    var_pix = (f * f) * vsq * inv * inv
    if config.weighting == "background":
        weight = 1.0 / ((scale * scale * jac) * sky_var)
    else:
        with np.errstate(divide="ignore"):
            weight = np.where(ok, 1.0 / np.where(ok, var_lin, 1.0), 0.0)
    return _Resampled(covered=covered, ok=ok, value=value, sky=sky_out, var_lin=var_lin, var_pix=var_pix,
                      weight=weight, bits=bits)


# ============================================================================ combination
def _reject(dev: np.ndarray, ok: np.ndarray, var_pix: np.ndarray, sigma: float, ampfrac: float,
            radius: int) -> np.ndarray:
    """Outliers among the inputs at each pixel (axis 0) of a block, on sky-subtracted values ``dev``.

    The reference at a pixel is the median of the inputs (the lowest one where only two cover);
    an input is an outlier when it lies beyond the range the reference takes within ``radius``
    pixels by more than ``sigma * sqrt(var_pix + (ampfrac * reference)^2)``. Taking the range
    over the neighbourhood lets a star's core and wings shift and widen with the seeing and with
    small astrometric errors; a cosmic ray or a trail is far outside it. With two inputs only the
    higher one can be rejected (outliers are positive: cosmic rays, satellites).
    """
    n = ok.sum(axis=0)
    data = np.where(ok, dev, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns where nothing covers
        median = bn.nanmedian(data, axis=0)
        lowest = bn.nanmin(data, axis=0) if ok.shape[0] else median
    reference = np.where(n == 2, lowest, median)
    valid = np.isfinite(reference)
    size = 2 * radius + 1
    high = maximum_filter(np.where(valid, reference, -np.inf), size=size, mode="nearest")
    low = minimum_filter(np.where(valid, reference, np.inf), size=size, mode="nearest")
    amplitude = np.where(valid, np.abs(reference), 0.0)
    with np.errstate(invalid="ignore"):
        limit = sigma * np.sqrt(var_pix + (ampfrac * amplitude) ** 2)
        above = ok & (n >= 2) & (data - high > limit)
        below = ok & (n >= 3) & (low - data > limit)
    reject = above | below
    # never reject every input of a pixel
    everyone = reject.sum(axis=0) == n
    reject[:, everyone] = False
    return reject


def _planes(shape: tuple[int, int], folder: Path | None = None) -> dict[str, np.ndarray]:
    """Output planes, in memory or (``folder``) as big-endian memory maps ready to be written as FITS."""
    dtypes = {"sci": ">f4", "var": ">f4", "weight": ">f4", "nexp": ">i2", "mask": ">i4"}
    if folder is None:
        return {name: np.zeros(shape, dtype=np.dtype(dt).newbyteorder("=")) for name, dt in dtypes.items()}
    return {name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dt, shape=shape)
            for name, dt in dtypes.items()}


def _scales(zeropoints: Sequence[float] | None, n: int, target: float | None) -> tuple[list[float], float | None]:
    if zeropoints is None:
        return [1.0] * n, None
    zps = [float(z) for z in zeropoints]
    if len(zps) != n:
        raise ValueError(f"{len(zps)} zeropoints for {n} inputs")
    if not all(math.isfinite(z) for z in zps):
        raise ValueError(f"zeropoints must be finite, got {zps}")
    ref = float(np.median(zps)) if target is None else target
    return [10.0 ** (0.4 * (ref - z)) for z in zps], ref


def coadd_images(images: Sequence[CoaddInput], config: CoaddConfig = CoaddConfig(), grid: CoaddGrid | None = None,
                 zeropoints: Sequence[float] | None = None, planes: Mapping[str, np.ndarray] | None = None) -> Coadd:
    """Resample calibrated images onto one grid and combine them.

    Parameters
    ----------
    images : sequence of CoaddInput
        Calibrated images of one field (arrays may be memory-mapped: they are
        read a band of rows at a time).
    config : CoaddConfig
    grid : CoaddGrid, optional
        Output grid; default :func:`choose_grid` over the inputs.
    zeropoints : sequence of float, optional
        Per input, AB magnitude of a source giving 1 electron in it; the
        inputs are scaled to ``config.target_zeropoint`` (or their median).
    planes : mapping, optional
        Preallocated output arrays ``sci, var, weight, nexp, mask`` of the
        grid's shape (memory maps for outputs that do not fit in memory).

    Returns
    -------
    Coadd

    Examples
    --------
    >>> w = WCS(naxis=2); w.wcs.ctype = ["RA---TAN", "DEC--TAN"]; w.wcs.crval = [10, 20]
    >>> w.wcs.crpix = [32.5, 32.5]; w.wcs.cdelt = [-1e-4, 1e-4]
    >>> rng = np.random.default_rng(0)
    >>> ims = [CoaddInput(rng.normal(100, 10, (64, 64)).astype(np.float32), np.full((64, 64), 100, np.float32),
    ...                   None, w) for _ in range(4)]
    >>> c = coadd_images(ims, CoaddConfig(subtract_background=False))
    >>> c.sci.shape, int(c.nexp[30, 30]), round(float(np.nanmedian(c.sci))), round(float(c.var[30, 30]))
    ((65, 65), 4, 100, 25)
    """
    if len(images) == 0:
        raise ValueError("no images to coadd")
    if grid is None:
        grid = choose_grid([im.wcs for im in images], [im.shape for im in images], config.pixel_scale,
                           config.rotation, config.margin)
    scales, zeropoint = _scales(zeropoints, len(images), config.target_zeropoint)
    ny, nx = grid.shape
    out = dict(planes) if planes is not None else _planes(grid.shape)
    for name in ("sci", "var", "weight", "nexp", "mask"):
        if out[name].shape != grid.shape:
            raise ValueError(f"output plane {name} has shape {out[name].shape}, the grid {grid.shape}")

    skies = [estimate_sky(im, config.background_box, config.background_filter, config.mask_bits) for im in images]
    maps = [_Mapping(grid, im, config.mapping_step) for im in images]
    if all(m.empty for m in maps):
        raise ValueError("no input overlaps the coadd grid")
    # rows per strip from the memory budget: per output pixel, per overlapping input ~40 bytes of
    # stacked planes, and ~400 bytes of working arrays for the one being resampled
    depth = np.zeros(ny + 1, dtype=int)
    for m in maps:
        if not m.empty:
            depth[m.y0] += 1
            depth[m.y1 + 1] -= 1
    n_max = max(1, int(np.cumsum(depth).max()))
    rows_per_strip = max(8, int(config.strip_megabytes * 1e6 // (nx * (40 * n_max + 400))))

    used = np.zeros(len(images), dtype=np.int64)
    rejected = np.zeros(len(images), dtype=np.int64)
    sigma = config.clip_sigma
    halo = config.clip_radius if sigma is not None else 0
    for r0 in range(0, ny, rows_per_strip):
        r1 = min(ny, r0 + rows_per_strip)
        # rows [e0, e1): the strip and `halo` rows on either side, so that the rejection's
        # neighbourhood is the same whatever the strips
        e0, e1 = max(0, r0 - halo), min(ny, r1 + halo)
        members = [i for i, m in enumerate(maps) if not m.empty and m.y0 < e1 and m.y1 >= e0]
        h = e1 - e0
        k = len(members)
        ok = np.zeros((k, h, nx), dtype=bool)
        value = np.zeros((k, h, nx), dtype=np.float32)
        dev = np.zeros((k, h, nx), dtype=np.float32)
        var_lin = np.zeros((k, h, nx), dtype=np.float32)
        var_pix = np.zeros((k, h, nx), dtype=np.float32)
        weight = np.zeros((k, h, nx), dtype=np.float32)
        bits = np.zeros((k, h, nx), dtype=MASK_DTYPE)
        for j, i in enumerate(members):
            m = maps[i]
            ra0, ra1 = max(e0, m.y0), min(e1, m.y1 + 1)
            rows = np.arange(ra0, ra1, dtype=np.float64)
            cols = np.arange(m.x0, m.x1 + 1, dtype=np.float64)
            res = _resample(images[i], m, skies[i], rows, cols, scales[i], config)
            sl = (j, slice(ra0 - e0, ra1 - e0), slice(m.x0, m.x1 + 1))
            ok[sl] = res.ok
            value[sl] = np.where(res.ok, res.value, 0.0)
            dev[sl] = np.where(res.ok, res.value - res.sky, 0.0)
            var_lin[sl] = np.where(res.ok, res.var_lin, 0.0)
            var_pix[sl] = np.where(res.ok, res.var_pix, 0.0)
            weight[sl] = np.where(res.ok, res.weight, 0.0)
            bits[sl] = np.where(res.covered, res.bits, 0)
            del res
        if sigma is not None and k:
            reject = _reject(dev, ok, var_pix, sigma, config.clip_ampfrac, config.clip_radius)
        else:
            reject = np.zeros_like(ok)
        core = slice(r0 - e0, r1 - e0)
        ok, value, var_lin, weight, bits, reject = (a[:, core] for a in (ok, value, var_lin, weight, bits, reject))
        del dev, var_pix
        keep = ok & ~reject
        used[members] += keep.sum(axis=(1, 2))
        rejected[members] += reject.sum(axis=(1, 2))
        wk = np.where(keep, weight, 0.0)
        wsum = wk.sum(axis=0)
        nexp = keep.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sci = (wk * value).sum(axis=0) / wsum
            var = (wk * wk * var_lin).sum(axis=0) / (wsum * wsum)
        empty = nexp == 0
        sci[empty] = np.nan
        var[empty] = np.nan
        if k:
            kept_bits = np.bitwise_or.reduce(np.where(keep, bits & ~config.mask_bits, 0), axis=0)
            all_bits = np.bitwise_or.reduce(bits, axis=0)
        else:
            kept_bits = all_bits = np.zeros((r1 - r0, nx), dtype=MASK_DTYPE)
        mask = np.where(empty, all_bits | MASK_DTYPE(MaskBit.NO_DATA), kept_bits)
        out["sci"][r0:r1] = sci
        out["var"][r0:r1] = var
        out["weight"][r0:r1] = np.where(empty, 0.0, wsum)
        out["nexp"][r0:r1] = nexp
        out["mask"][r0:r1] = mask
        del ok, value, var_lin, weight, bits, reject, keep, wk

    summaries = []
    for i, im in enumerate(images):
        summaries.append(InputSummary(
            name=im.name, checksum=im.checksum, zeropoint=None if zeropoints is None else float(zeropoints[i]),
            scale=scales[i], sky=float(np.median(skies[i].level)), sky_variance=float(np.median(skies[i].variance)),
            pixels_used=int(used[i]), pixels_rejected=int(rejected[i])))
    return Coadd(sci=out["sci"], var=out["var"], weight=out["weight"], nexp=out["nexp"], mask=out["mask"],
                 grid=grid, inputs=tuple(summaries), zeropoint=zeropoint, config=config)


# ============================================================================ files
def read_coadd_input(path: str | Path, checksum: bool = True) -> tuple[CoaddInput, fits.Header, fits.HDUList]:
    """Open a calibrated product memory-mapped; return the input, its primary header and the open file.

    The caller closes the HDUList when done (the arrays are memory maps into it).

    Raises
    ------
    FrameError
        When the file is not a calibrated product with a celestial WCS.
    """
    path = Path(path)
    try:
        hdul = fits.open(path, mode="readonly", memmap=True)
    except OSError as exc:
        raise FrameError(path, f"cannot be opened as FITS ({exc})") from exc
    try:
        names = {hdu.name for hdu in hdul}
        missing = {"SCI", "VAR"} - names
        if missing:
            raise FrameError(path, f"not a calibrated product: no {', '.join(sorted(missing))} extension")
        header = hdul["SCI"].header
        wcs = WCS(header)
        if not wcs.has_celestial:
            raise FrameError(path, "SCI has no celestial WCS (has astrometry run?)")
        image = CoaddInput(sci=hdul["SCI"].data, var=hdul["VAR"].data,
                           mask=hdul["MASK"].data if "MASK" in names else None, wcs=wcs.celestial if
                           wcs.sip is None else wcs, name=str(path),
                           checksum=file_checksum(path) if checksum else "")
        return image, hdul[0].header.copy(), hdul
    except (FrameError, ValueError, KeyError, TypeError) as exc:
        hdul.close()
        if isinstance(exc, FrameError):
            raise
        raise FrameError(path, f"not a usable calibrated product ({exc})") from exc


#: Primary-header cards copied to the coadd when every input has the same value.
COMMON_CARDS = ("TELESCOP", "INSTRUME", "OBSERVAT", "FILTER", "OBJECT", "CCDNAME", "EXPTIME")


def write_coadd(path: str | Path, coadd: Coadd, primary_cards: Mapping[str, Any] | None = None) -> Path:
    """Write a coadd atomically: primary, SCI, VAR, WEIGHT, NEXP, MASK, PROVENANCE.

    Parameters
    ----------
    path : str or Path
    coadd : Coadd
    primary_cards : mapping, optional
        Extra primary-header cards (``key: value`` or ``key: (value, comment)``).

    Returns
    -------
    Path
    """
    path = Path(path)
    entries = coadd.inputs
    prov_hash = hashlib.sha256("\n".join(f"input {e.name} {e.checksum}" for e in entries).encode()).hexdigest()
    primary = fits.PrimaryHDU()
    hdr = primary.header
    for key, value in (primary_cards or {}).items():
        hdr[key] = value
    hdr["IMAGETYP"] = ("coadd", "product type")
    hdr["NCOMBINE"] = (len(entries), "number of input images")
    hdr["COADDKER"] = (coadd.config.kernel, "resampling kernel")
    hdr["COADDWGT"] = (coadd.config.weighting, "weights: 1/sky variance or 1/VAR")
    hdr["CLIPSIG"] = (coadd.config.clip_sigma if coadd.config.clip_sigma is not None else "none",
                      "rejection threshold, sigma")
    hdr["CLIPAMP"] = (coadd.config.clip_ampfrac, "rejection: fraction of the median allowed")
    hdr["BACKSUB"] = (coadd.config.subtract_background, "sky subtracted from each input")
    hdr["MASKBITS"] = (coadd.config.mask_bits, "input MASK bits excluded")
    hdr["PIXSCALE"] = (round(coadd.grid.pixel_scale, 6), "[arcsec] pixel scale")
    if coadd.zeropoint is not None:
        hdr["MAGZERO"] = (round(coadd.zeropoint, 6), "[mag] AB magnitude of 1 electron in the coadd")
    hdr["LENGHUV"] = (__version__, "lenghu version that wrote this file")
    hdr["CONFHASH"] = coadd.config.config_hash()[:64]
    hdr["PROVHASH"] = prov_hash[:64]

    wcs_header = coadd.grid.wcs.to_header()

    def image(data, name, bunit):
        hdu = fits.ImageHDU(data, name=name)
        hdu.header.update(wcs_header)
        hdu.header["BUNIT"] = bunit
        return hdu

    mask_hdu = image(coadd.mask, "MASK", "")
    del mask_hdu.header["BUNIT"]
    for key, bit, comment in MaskBit.header_cards():
        mask_hdu.header[key] = (bit, comment)
    table = Table({
        "ROLE": ["input"] * len(entries) or np.array([], dtype="U8"),
        "PATH": [e.name for e in entries] or np.array([], dtype="U8"),
        "CHECKSUM": [e.checksum for e in entries] or np.array([], dtype="U64"),
        "ZEROPOINT": np.array([np.nan if e.zeropoint is None else e.zeropoint for e in entries], dtype=float),
        "FSCALE": np.array([e.scale for e in entries], dtype=float),
        "SKY": np.array([e.sky for e in entries], dtype=float),
        "SKYVAR": np.array([e.sky_variance for e in entries], dtype=float),
        "NUSED": np.array([e.pixels_used for e in entries], dtype=np.int64),
        "NREJECT": np.array([e.pixels_rejected for e in entries], dtype=np.int64),
    })
    prov = fits.BinTableHDU(table, name="PROVENANCE")
    for col, unit in (("ZEROPOINT", "mag"), ("SKY", "electron"), ("SKYVAR", "electron2")):
        prov.header[f"TUNIT{table.colnames.index(col) + 1}"] = unit
    hdul = fits.HDUList([
        primary,
        image(coadd.sci, "SCI", "electron"),
        image(coadd.var, "VAR", "electron2"),
        image(coadd.weight, "WEIGHT", "electron-2"),
        image(coadd.nexp, "NEXP", ""),
        mask_hdu,
        prov,
    ])
    del hdul["NEXP"].header["BUNIT"]
    for hdu in hdul:
        hdu.add_checksum(when="HDU checksum")  # no timestamp: reruns give identical bytes
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="exception")
    return path


def coadd_files(paths: Sequence[str | Path], out_path: str | Path, config: CoaddConfig = CoaddConfig(), *,
                grid: CoaddGrid | None = None, zeropoints: Sequence[float] | Mapping[str, float] | None = None,
                in_memory_megabytes: float = 512.0) -> CoaddResult:
    """Coadd calibrated products (files) into ``out_path``.

    Parameters
    ----------
    paths : sequence of path
        Calibrated products of one field (SCI, VAR, MASK, celestial WCS).
    out_path : path
        The coadd file (written atomically; its folder is created).
    config : CoaddConfig
    grid : CoaddGrid, optional
        Output grid; default :func:`choose_grid` over the inputs.
    zeropoints : sequence of float or mapping of path to float, optional
        Per input, AB magnitude of 1 electron (see :func:`coadd_images`).
    in_memory_megabytes : float
        Output planes larger than this are memory-mapped scratch files beside
        ``out_path`` (removed at the end) instead of arrays in memory.

    Returns
    -------
    CoaddResult
    """
    start = time.perf_counter()
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no files to coadd")
    if isinstance(zeropoints, Mapping):
        missing = [str(p) for p in paths if str(p) not in zeropoints]
        if missing:
            raise ValueError(f"no zeropoint for {missing}")
        zeropoints = [float(zeropoints[str(p)]) for p in paths]
    opened: list[fits.HDUList] = []
    try:
        images, primaries = [], []
        for p in paths:
            image, primary, hdul = read_coadd_input(p)
            opened.append(hdul)
            images.append(image)
            primaries.append(primary)
        if grid is None:
            grid = choose_grid([im.wcs for im in images], [im.shape for im in images], config.pixel_scale,
                               config.rotation, config.margin)
        cards: dict[str, Any] = {}
        for key in COMMON_CARDS:
            values = {primaries[i].get(key) for i in range(len(paths))}
            if len(values) == 1 and None not in values:
                cards[key] = (values.pop(), primaries[0].comments[key])
        mjds = [h["MJD-OBS"] for h in primaries if isinstance(h.get("MJD-OBS"), float)]
        if mjds:
            cards["MJD-BEG"] = (min(mjds), "[d] MJD (UTC) of the start of the first input")
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        nbytes = grid.shape[0] * grid.shape[1] * 18
        with tempfile.TemporaryDirectory(prefix=f".{out_path.name}.scratch-", dir=out_path.parent) as scratch:
            planes = _planes(grid.shape, Path(scratch) if nbytes > in_memory_megabytes * 1e6 else None)
            coadd = coadd_images(images, config, grid=grid, zeropoints=zeropoints, planes=planes)
            write_coadd(out_path, coadd, cards)
            values, counts = np.unique(np.asarray(coadd.nexp), return_counts=True)
            coverage = {int(v): int(c) for v, c in zip(values, counts)}
            summaries, zeropoint = coadd.inputs, coadd.zeropoint
            del coadd, planes  # release the memory maps before the scratch folder goes
    finally:
        for hdul in opened:
            hdul.close()
    ra, dec = grid.wcs.wcs.crval
    return CoaddResult(path=str(out_path), shape=grid.shape, pixel_scale=grid.pixel_scale,
                       center=(float(ra), float(dec)), inputs=summaries, zeropoint=zeropoint, coverage=coverage,
                       wall_s=round(time.perf_counter() - start, 3))
