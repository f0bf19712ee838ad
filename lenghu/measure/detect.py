"""Source detection with deblending (sep's implementation of SExtractor's).

The background-subtracted image is convolved with a small kernel (SExtractor's
``default.conv`` 3x3 pyramid, or a Gaussian matched to the seeing), pixels
above ``threshold`` times the background RMS are grouped into 8-connected
regions of at least ``min_area`` pixels, each region is split into its
components at ``deblend_nthresh`` exponentially spaced levels (a branch
becomes its own source when it holds more than ``deblend_cont`` of the total
flux), and sources that are only the wings of a brighter neighbour are
merged back (``clean``). Pixels whose MASK has any of ``mask_bits`` set are
treated as empty sky with infinite noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lenghu.calib.masks import MaskBit
from lenghu.errors import ConfigError
from lenghu.measure.background import SOURCE, Background, pixel_mask

#: SExtractor's ``default.conv``: a 3x3 "all-ground" pyramid, FWHM about 2 pixels.
DEFAULT_KERNEL = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)

#: MASK bits excluded from detection by default: pixels whose values mean nothing (dead or hot
#: pixels and columns, no data) and cosmic rays. Saturated cores and bleed trails stay in, so a
#: saturated star is found whole (and flagged by the photometry); low-flat pixels are calibrated
#: and their larger noise is in VAR.
DETECTION_MASK_BITS = int(MaskBit.BAD | MaskBit.CR | MaskBit.NO_DATA | MaskBit.HOT)

FilterName = Literal["default", "gaussian", "none"]


def gaussian_kernel(fwhm: float) -> np.ndarray:
    """A normalised 2-D Gaussian of ``fwhm`` pixels on a (2k+1)^2 grid, k = max(1, round(fwhm)).

    The sizes follow SExtractor's ``gauss_F_NxN.conv`` family (FWHM 2 on 5x5, 3 on 7x7).
    """
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise ValueError(f"kernel FWHM must be a positive number of pixels, got {fwhm!r}")
    half = max(1, int(round(fwhm)))
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    kernel = np.exp(-(xx**2 + yy**2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


@dataclass(frozen=True)
class DetectionConfig:
    """How sources are found (SExtractor ``DETECT_*``, ``FILTER*``, ``DEBLEND_*``, ``CLEAN*``).

    Attributes
    ----------
    threshold : float
        Detection threshold in standard deviations of the background RMS
        (``DETECT_THRESH``), applied per pixel to the filtered image.
    noise : {"map", "global"}
        ``"map"``: the threshold follows the RMS map pixel by pixel;
        ``"global"``: one number, the mean RMS (SExtractor's behaviour
        without weight maps).
    min_area : int
        Fewest pixels above threshold for a source (``DETECT_MINAREA``), pixels.
    filter : {"default", "gaussian", "none"}
        Detection kernel: SExtractor's ``default.conv``, a Gaussian of
        ``filter_fwhm``, or no filtering.
    filter_fwhm : float or None
        FWHM of the Gaussian kernel, pixels (required for ``"gaussian"``;
        the seeing FWHM is the matched choice).
    filter_type : {"conv", "matched"}
        ``"conv"``: plain convolution, as SExtractor; ``"matched"``: sep's
        noise-weighted filter (better where the noise varies fast).
    deblend_nthresh : int
        Number of deblending sub-thresholds (``DEBLEND_NTHRESH``).
    deblend_cont : float
        Minimum flux fraction of a branch to become a source
        (``DEBLEND_MINCONT``); 1 disables deblending.
    clean : bool
        Merge spurious detections in the wings of bright sources (``CLEAN``).
    clean_param : float
        Cleaning efficiency (``CLEAN_PARAM``).
    mask_bits : int
        MASK bits whose pixels cannot be part of a detection.
    pixel_stack : int
        Pixels sep may hold in objects at once (``MEMORY_PIXSTACK``); a
        full-size CCD with saturated stars needs more than sep's 300,000.
        sep keeps this setting for the whole process; it is only ever raised.
    sub_object_limit : int
        Most sub-objects the deblender may make of one detection.
    segmentation : bool
        Also return the segmentation map (one int32 per pixel).
    """

    threshold: float = 1.5
    noise: Literal["map", "global"] = "map"
    min_area: int = 5
    filter: FilterName = "default"
    filter_fwhm: float | None = None
    filter_type: Literal["conv", "matched"] = "conv"
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005
    clean: bool = True
    clean_param: float = 1.0
    mask_bits: int = DETECTION_MASK_BITS
    pixel_stack: int = 1_000_000
    sub_object_limit: int = 4096
    segmentation: bool = False

    def __post_init__(self):
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(SOURCE, f"detection threshold must be > 0 sigma, got {self.threshold!r}")
        if self.noise not in ("map", "global"):
            raise ConfigError(SOURCE, f"detection noise must be 'map' or 'global', got {self.noise!r}")
        if self.min_area < 1:
            raise ConfigError(SOURCE, f"detection min_area must be >= 1 pixel, got {self.min_area!r}")
        if self.filter not in ("default", "gaussian", "none"):
            raise ConfigError(SOURCE, f"detection filter must be default, gaussian or none, got {self.filter!r}")
        if self.filter == "gaussian" and not (self.filter_fwhm is not None and self.filter_fwhm > 0):
            raise ConfigError(SOURCE, "detection filter 'gaussian' needs filter_fwhm > 0 pixels")
        if self.filter_type not in ("conv", "matched"):
            raise ConfigError(SOURCE, f"detection filter_type must be conv or matched, got {self.filter_type!r}")
        if not 1 <= self.deblend_nthresh <= 64:
            raise ConfigError(SOURCE, f"deblend_nthresh must be in 1..64, got {self.deblend_nthresh!r}")
        if not 0 <= self.deblend_cont <= 1:
            raise ConfigError(SOURCE, f"deblend_cont must be in [0, 1], got {self.deblend_cont!r}")
        if self.clean_param <= 0:
            raise ConfigError(SOURCE, f"clean_param must be > 0, got {self.clean_param!r}")
        if self.mask_bits < 0 or self.pixel_stack < 1000 or self.sub_object_limit < 1:
            raise ConfigError(SOURCE, "detection mask_bits must be >= 0, pixel_stack >= 1000, "
                                      "sub_object_limit >= 1")

    def kernel(self) -> np.ndarray | None:
        """The detection kernel, or None for no filtering."""
        if self.filter == "default":
            return DEFAULT_KERNEL
        if self.filter == "gaussian":
            return gaussian_kernel(float(self.filter_fwhm))
        return None


@dataclass(frozen=True, eq=False)
class Detections:
    """Sources found in one image, one array element per source (sep's fields, 0-based pixels).

    Attributes
    ----------
    x, y : ndarray of float64
        Barycentre (first moments) of the pixels above threshold, pixels,
        0-based (the centre of the first pixel is 0, 0; SExtractor's
        ``X_IMAGE - 1``).
    x2, y2, xy : ndarray of float64
        Second moments, pixels^2.
    errx2, erry2, errxy : ndarray of float64
        Variances of the barycentre, pixels^2 (from the RMS map).
    a, b : ndarray of float64
        Semi-major and semi-minor axis RMS of the profile, pixels.
    theta : ndarray of float64
        Position angle of the major axis, radians, counter-clockwise from +x.
    npix : ndarray of int64
        Pixels in the (deblended) isophotal footprint.
    isophotal_flux : ndarray of float64
        Sum of the footprint's pixels, electrons.
    peak : ndarray of float64
        Brightest pixel of the footprint above the background, electrons.
    threshold : ndarray of float64
        Absolute detection threshold at the source, electrons.
    xmin, xmax, ymin, ymax : ndarray of int64
        Bounding box of the footprint, pixels, inclusive.
    flags : ndarray of int32
        sep's extraction flags (``sep.OBJ_MERGED``, ``OBJ_TRUNC``,
        ``OBJ_DOVERFLOW``, ``OBJ_SINGU``).
    segmentation : ndarray of int32 or None
        0 for sky, ``i + 1`` for the pixels of source ``i``.
    config : DetectionConfig
    """

    x: np.ndarray
    y: np.ndarray
    x2: np.ndarray
    y2: np.ndarray
    xy: np.ndarray
    errx2: np.ndarray
    erry2: np.ndarray
    errxy: np.ndarray
    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    npix: np.ndarray
    isophotal_flux: np.ndarray
    peak: np.ndarray
    threshold: np.ndarray
    xmin: np.ndarray
    xmax: np.ndarray
    ymin: np.ndarray
    ymax: np.ndarray
    flags: np.ndarray
    segmentation: np.ndarray | None
    config: DetectionConfig

    def __len__(self) -> int:
        return int(self.x.size)

    @classmethod
    def from_sep(cls, objects: np.ndarray, segmentation: np.ndarray | None,
                 config: DetectionConfig) -> "Detections":
        """Wrap sep's structured array of objects."""
        f64 = {name: np.asarray(objects[name], dtype=np.float64) for name in
               ("x", "y", "x2", "y2", "xy", "errx2", "erry2", "errxy", "a", "b", "theta", "peak", "thresh")}
        i64 = {name: np.asarray(objects[name], dtype=np.int64) for name in ("npix", "xmin", "xmax", "ymin", "ymax")}
        return cls(
            x=f64["x"], y=f64["y"], x2=f64["x2"], y2=f64["y2"], xy=f64["xy"],
            errx2=f64["errx2"], erry2=f64["erry2"], errxy=f64["errxy"],
            a=f64["a"], b=f64["b"], theta=f64["theta"], npix=i64["npix"],
            isophotal_flux=np.asarray(objects["flux"], dtype=np.float64), peak=f64["peak"],
            threshold=f64["thresh"], xmin=i64["xmin"], xmax=i64["xmax"], ymin=i64["ymin"], ymax=i64["ymax"],
            flags=np.asarray(objects["flag"], dtype=np.int32),
            segmentation=None if segmentation is None else np.asarray(segmentation, dtype=np.int32),
            config=config,
        )


def detect_sources(image: np.ndarray, background: Background, mask: np.ndarray | None = None,
                   config: DetectionConfig = DetectionConfig(), finite: bool = False) -> Detections:
    """Find and deblend the sources of a background-subtracted image.

    Parameters
    ----------
    image : ndarray of float32, 2-D
        Image minus its background, electrons, C-contiguous and native byte
        order (:func:`lenghu.measure.background.subtract_background` makes
        one); not modified.
    background : Background
        Its background; ``background.rms`` (or ``global_rms``) sets the threshold.
    mask : ndarray of int or FlaggedPixels, optional
        MASK plane; pixels with any of ``config.mask_bits`` are excluded.
    config : DetectionConfig
    finite : bool
        Every pixel of ``image`` is known to be finite: skip the full-frame check.

    Returns
    -------
    Detections
        Sources in sep's order (by their position in the image, bottom up).

    Raises
    ------
    RuntimeError
        sep ran out of its pixel stack or sub-object limit (raise
        ``pixel_stack`` / ``sub_object_limit``).
    """
    import sep

    if image.shape != background.shape:
        raise ValueError(f"image shape {image.shape} differs from the background's {background.shape}")
    excluded = pixel_mask(mask, config.mask_bits, image, finite=finite)
    if sep.get_extract_pixstack() < config.pixel_stack:
        sep.set_extract_pixstack(int(config.pixel_stack))
    if sep.get_sub_object_limit() < config.sub_object_limit:
        sep.set_sub_object_limit(int(config.sub_object_limit))
    noise = background.rms if config.noise == "map" else float(background.global_rms)
    try:
        result = sep.extract(
            image, float(config.threshold), err=noise, mask=excluded, minarea=int(config.min_area),
            filter_kernel=config.kernel(), filter_type=config.filter_type,
            deblend_nthresh=int(config.deblend_nthresh), deblend_cont=float(config.deblend_cont),
            clean=bool(config.clean), clean_param=float(config.clean_param),
            segmentation_map=bool(config.segmentation),
        )
    except Exception as exc:  # sep raises bare Exception for its C error codes
        raise RuntimeError(f"sep.extract failed: {exc} (pixel_stack={config.pixel_stack}, "
                           f"sub_object_limit={config.sub_object_limit})") from exc
    objects, segmentation = result if config.segmentation else (result, None)
    return Detections.from_sep(objects, segmentation, config)
