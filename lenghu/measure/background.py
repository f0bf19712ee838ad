"""Sky background and its RMS, as SExtractor estimates them (through sep).

The image is cut into boxes of ``box_width`` x ``box_height`` pixels; in each
box the background is the clipped mode of the pixel values (SExtractor's
``2.5 median - 1.5 mean``, or the median where the distribution is too
skewed) and the RMS their clipped standard deviation; the coarse grids are
median-filtered over ``filter_width`` x ``filter_height`` boxes and
interpolated back to every pixel with bicubic splines. With the same box and
filter sizes the maps agree with SExtractor's ``BACKGROUND`` and
``BACKGROUND_RMS`` check images (``tests/lenghu/test_detection.py``).

Pixels whose MASK has any of ``mask_bits`` set, and pixels that are not
finite, take no part in the estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lenghu.calib.masks import MaskBit
from lenghu.errors import ConfigError

#: Source named in configuration errors of this package.
SOURCE = "lenghu measure"

#: Every MASK bit defined by the calibration (a pixel with any of them is not sky).
ALL_MASK_BITS = int(sum(int(bit) for bit in MaskBit))


@dataclass(frozen=True)
class BackgroundConfig:
    """How the background and RMS maps are made (SExtractor ``BACK_*`` settings).

    Attributes
    ----------
    box_width, box_height : int
        Size of a background box, pixels (``BACK_SIZE``; 64 is SExtractor's
        default and fits WFST's 2-3 pixel seeing disc well).
    filter_width, filter_height : int
        Size of the median filter applied to the grid of boxes, in boxes
        (``BACK_FILTERSIZE``), odd.
    filter_threshold : float
        Boxes whose background differs from the median of their neighbours by
        less than this many electrons are not filtered (``BACK_FILTERTHRESH``).
    mask_bits : int
        MASK bits (:class:`lenghu.calib.masks.MaskBit`) whose pixels are left
        out of the estimate; 0 uses every finite pixel.
    """

    box_width: int = 64
    box_height: int = 64
    filter_width: int = 3
    filter_height: int = 3
    filter_threshold: float = 0.0
    mask_bits: int = ALL_MASK_BITS

    def __post_init__(self):
        for name in ("box_width", "box_height", "filter_width", "filter_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(SOURCE, f"background {name} must be a whole number >= 1, got {value!r}")
        for name in ("filter_width", "filter_height"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(SOURCE, f"background {name} must be odd, got {getattr(self, name)}")
        if not np.isfinite(self.filter_threshold) or self.filter_threshold < 0:
            raise ConfigError(SOURCE, f"background filter_threshold must be >= 0 electrons, got "
                                      f"{self.filter_threshold!r}")
        if self.mask_bits < 0:
            raise ConfigError(SOURCE, f"background mask_bits must be >= 0, got {self.mask_bits!r}")


@dataclass(frozen=True, eq=False)
class Background:
    """Background and RMS of one image (maps made on first use, then kept).

    Attributes
    ----------
    global_level, global_rms : float
        Mean of the coarse background and RMS grids, electrons (SExtractor's
        ``BACKGROUND`` and ``RMS`` of the log).
    shape : tuple of int
        Shape of the image, (ny, nx).
    config : BackgroundConfig
        The settings that made the maps.
    """

    global_level: float
    global_rms: float
    shape: tuple[int, int]
    config: BackgroundConfig
    _grid: Any = field(repr=False)
    _maps: dict = field(default_factory=dict, repr=False)

    @property
    def level(self) -> np.ndarray:
        """Background, electrons per pixel, float32 map of the image's shape (shared: do not modify)."""
        if "level" not in self._maps:
            level = self._grid.back(dtype=np.float32)
            self._maps["level"] = level
        return self._maps["level"]

    @property
    def rms(self) -> np.ndarray:
        """Background RMS (pixel-to-pixel noise of the sky), electrons, float32 map (shared: do not modify)."""
        if "rms" not in self._maps:
            rms = self._grid.rms(dtype=np.float32)
            self._maps["rms"] = rms
        return self._maps["rms"]

    def subtract_from(self, image: np.ndarray) -> None:
        """Subtract the background from ``image`` in place (float32, C-contiguous, native order),
        without making the full-size map."""
        if image.shape != self.shape:
            raise ValueError(f"image shape {image.shape} differs from the background's {self.shape}")
        if image.dtype != np.float32 or not image.flags.c_contiguous or not image.dtype.isnative:
            raise ValueError("subtract_from needs a C-contiguous native float32 image")
        self._grid.subfrom(image)


def as_sep_image(image: np.ndarray) -> np.ndarray:
    """``image`` as a C-contiguous native-endian float32 array (no copy when it already is one).

    sep reads only native byte order; FITS data are big-endian.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"an image must be 2-D, got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.float32)


def pixel_mask(mask: np.ndarray | None, bits: int, image: np.ndarray,
               finite: bool = False) -> np.ndarray | None:
    """Boolean array of pixels to leave out: ``mask & bits`` set, or ``image`` not finite.

    Returns None when no pixel is left out, so sep skips its mask handling.

    Parameters
    ----------
    mask : ndarray of int, FlaggedPixels or None
        The product's MASK plane (bits of :class:`lenghu.calib.masks.MaskBit`),
        or its flagged pixels (:class:`lenghu.measure.flagged.FlaggedPixels`).
    bits : int
        Bits that exclude a pixel.
    image : ndarray
        The image the mask goes with (its non-finite pixels are always excluded).
    finite : bool
        The caller knows every pixel of ``image`` is finite (as
        :func:`lenghu.measure.measure_image` makes them): the full-frame
        check is skipped.
    """
    from lenghu.measure.flagged import FlaggedPixels

    excluded = None if finite else non_finite(image)
    if mask is not None:
        if not isinstance(mask, FlaggedPixels):
            mask = np.asarray(mask)
        if tuple(mask.shape) != tuple(image.shape):
            raise ValueError(f"MASK shape {mask.shape} differs from the image's {image.shape}")
        if bits:
            flagged = mask.plane(bits) if isinstance(mask, FlaggedPixels) else (mask & bits) != 0
            if flagged is not None:
                excluded = flagged if excluded is None else (excluded | flagged)
    return excluded if excluded is not None and excluded.any() else None


def non_finite(image: np.ndarray) -> np.ndarray | None:
    """Boolean array of the non-finite pixels of ``image``, or None when all are finite.

    A sum finds out without a full-size temporary: NaN or inf in any pixel
    makes it non-finite; should finite values overflow it, the full check
    below still decides.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(image)
    if np.isfinite(total):
        return None
    bad = ~np.isfinite(image)
    return bad if bad.any() else None


def estimate_background(sci: np.ndarray, mask: np.ndarray | None = None,
                        config: BackgroundConfig = BackgroundConfig(), finite: bool = False) -> Background:
    """Background and RMS maps of ``sci``.

    Parameters
    ----------
    sci : ndarray, 2-D
        Image, electrons (sky not subtracted). Not modified.
    mask : ndarray of int or FlaggedPixels, optional
        MASK plane; pixels with any of ``config.mask_bits`` are left out.
    config : BackgroundConfig
        Box and filter sizes.
    finite : bool
        Every pixel of ``sci`` is known to be finite: skip the full-frame check.

    Returns
    -------
    Background
        The global values; the full-resolution maps (float32) are made when
        first asked for (``level``, ``rms``), and ``subtract_from`` needs none.

    Examples
    --------
    >>> import numpy as np
    >>> sky = np.random.default_rng(1).normal(100.0, 5.0, (256, 256))
    >>> bkg = estimate_background(sky)
    >>> round(bkg.global_level), round(bkg.global_rms)
    (100, 5)
    """
    import sep

    data = as_sep_image(sci)
    excluded = pixel_mask(mask, config.mask_bits, data, finite=finite)
    bad = non_finite(data) if excluded is not None and not finite else None
    if bad is not None:
        data = np.where(bad, np.float32(0.0), data)  # masked, but sep must not see NaN
    grid = sep.Background(data, mask=excluded, bw=config.box_width, bh=config.box_height,
                          fw=config.filter_width, fh=config.filter_height, fthresh=config.filter_threshold)
    return Background(global_level=float(grid.globalback), global_rms=float(grid.globalrms),
                      shape=tuple(data.shape), config=config, _grid=grid)


def subtract_background(sci: np.ndarray, background: Background) -> np.ndarray:
    """``sci - background`` as a new native float32 array, non-finite pixels set to 0.

    This is the image detection and photometry work on (the caller's ``sci``
    is not modified); the pixels set to 0 are those :func:`pixel_mask`
    always excludes.
    """
    out = np.array(sci, dtype=np.float32, order="C", copy=True)
    if out.shape != background.shape:
        raise ValueError(f"image shape {out.shape} differs from the background's {background.shape}")
    bad = non_finite(out)
    if bad is not None:
        out[bad] = 0.0
    background.subtract_from(out)
    return out
