"""Measurement of calibrated images: background, detection, photometry, catalogues.

:func:`measure_image` composes the steps on one calibrated detector image
(SCI electrons, VAR electrons^2, MASK bits; docs/reduce.md)::

    background  -> estimate_background  (sep; SExtractor's BACK_* settings)
    subtract    -> subtract_background, repair_masked_pixels (cosmic rays, bad/hot pixels)
    detect      -> detect_sources       (sep.extract: filter, threshold, deblend, clean)
    photometry  -> measure_photometry   (apertures, Kron, windowed centroids, shapes, flags)
    catalogue   -> build_catalog        (astropy Table, units on every column)

:func:`read_plane` reads a FITS image plane in native byte order without a
second full-size copy; :mod:`lenghu.measure.sextractor` runs SExtractor with
the same settings, for comparisons.

Each step is a pure function with a frozen, validated config; none reads or
writes files except :func:`write_catalog`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

import numpy as np

from lenghu.calib.masks import MaskBit
from lenghu.errors import ConfigError
from lenghu.measure.background import (
    SOURCE,
    Background,
    BackgroundConfig,
    estimate_background,
    non_finite,
    subtract_background,
)
from lenghu.measure.catalog import Catalog, build_catalog, catalog_format, read_catalog, write_catalog
from lenghu.measure.detect import DEFAULT_KERNEL, DetectionConfig, Detections, detect_sources, gaussian_kernel
from lenghu.measure.flagged import FlaggedPixels
from lenghu.measure.pixels import read_plane
from lenghu.measure.photometry import (
    Photometry,
    PhotometryConfig,
    measure_photometry,
    repair_masked_pixels,
    stellar_locus,
)

__all__ = [
    "Background", "BackgroundConfig", "Catalog", "DEFAULT_KERNEL", "DetectionConfig", "Detections",
    "MeasureConfig", "Photometry", "PhotometryConfig", "build_catalog", "catalog_format", "detect_sources",
    "estimate_background", "gaussian_kernel", "measure_image", "measure_photometry", "read_catalog", "read_plane",
    "repair_masked_pixels", "stellar_locus", "subtract_background", "write_catalog",
]


@dataclass(frozen=True)
class MeasureConfig:
    """Settings of :func:`measure_image`, one section per step.

    Attributes
    ----------
    background : BackgroundConfig
    detection : DetectionConfig
    photometry : PhotometryConfig
    """

    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    photometry: PhotometryConfig = field(default_factory=PhotometryConfig)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "MeasureConfig":
        """Build from a mapping such as a TOML ``[measure]`` table with sections
        ``background``, ``detection`` and ``photometry``; unknown keys are errors.

        Examples
        --------
        >>> MeasureConfig.from_mapping({"detection": {"threshold": 3.0}}).detection.threshold
        3.0
        """
        sections = {"background": BackgroundConfig, "detection": DetectionConfig, "photometry": PhotometryConfig}
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(SOURCE, f"unknown measure sections {sorted(unknown)}; expected {sorted(sections)}")
        built = {}
        for name, klass in sections.items():
            values = dict(data.get(name, {}))
            known = {f.name for f in fields(klass)}
            bad = set(values) - known
            if bad:
                raise ConfigError(SOURCE, f"unknown keys in [measure.{name}]: {sorted(bad)}")
            if "aperture_radii" in values:
                values["aperture_radii"] = tuple(values["aperture_radii"])
            built[name] = klass(**values)
        return cls(**built)


def measure_image(sci: np.ndarray, var: np.ndarray | None = None, mask: np.ndarray | None = None,
                  wcs: Any = None, config: MeasureConfig = MeasureConfig(), zeropoint: float | None = None,
                  zeropoint_err: float | None = None, meta: Mapping[str, Any] | None = None,
                  overwrite_sci: bool = False) -> Catalog:
    """Detect and measure the sources of one calibrated image.

    Parameters
    ----------
    sci : ndarray, 2-D
        Image, electrons, sky included (the product's SCI). Not modified
        unless ``overwrite_sci``.
    var : ndarray, optional
        Variance, electrons^2 (VAR); photometric errors come from it.
        Without it they come from the background RMS alone.
    mask : ndarray of int, optional
        MASK bits (:class:`lenghu.calib.masks.MaskBit`). Non-finite SCI or
        VAR pixels count as ``NO_DATA`` whether flagged or not.
    wcs : astropy.wcs.WCS, optional
        Celestial WCS of the image; adds ``ra``, ``dec``.
    config : MeasureConfig
    zeropoint, zeropoint_err : float, optional
        Magnitude of 1 electron in this image and its error; adds magnitudes.
    meta : mapping, optional
        Extra catalogue meta (e.g. the image's name).
    overwrite_sci : bool
        Work in ``sci`` itself when it is a C-contiguous native float32 array
        (it is left background-subtracted and repaired): saves a full-size
        copy, 340 MB for a WFST CCD.

    Returns
    -------
    Catalog

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[0:128, 0:128]
    >>> star = 5000 * np.exp(-((xx - 60.3) ** 2 + (yy - 70.6) ** 2) / (2 * 1.2**2)) / (2 * np.pi * 1.2**2)
    >>> sci = (100 + star + rng.normal(0, 5, star.shape)).astype(np.float32)
    >>> cat = measure_image(sci, config=MeasureConfig(detection=DetectionConfig(threshold=5)))
    >>> len(cat), round(float(cat.table["xwin"][0]), 1), round(float(cat.table["ywin"][0]), 1)
    (1, 60.3, 70.6)
    """
    sci = np.asarray(sci)
    in_place = overwrite_sci and sci.dtype == np.float32 and sci.dtype.isnative and sci.flags.c_contiguous \
        and sci.flags.writeable
    image = sci if in_place else np.array(sci, dtype=np.float32, order="C", copy=True)  # the working array
    if image.ndim != 2:
        raise ValueError(f"SCI must be 2-D, got shape {image.shape}")
    no_data = non_finite(image)
    if var is not None:
        var = np.asarray(var)
        if var.shape != image.shape:
            raise ValueError(f"VAR shape {var.shape} differs from SCI's {image.shape}")
        bad_var = non_finite(var)
        if bad_var is not None:
            no_data = bad_var if no_data is None else (no_data | bad_var)
    flagged = None  # the MASK plane's few non-zero pixels: every step asks them, not the full plane
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != image.shape:
            raise ValueError(f"MASK shape {mask.shape} differs from SCI's {image.shape}")
        flagged = FlaggedPixels.from_mask(mask)
    if no_data is not None:
        image[no_data] = 0.0
        base = FlaggedPixels.empty(image.shape) if flagged is None else flagged
        flagged = base.with_bits(no_data, MaskBit.NO_DATA)
    del no_data

    background = estimate_background(image, flagged, config.background, finite=True)  # no_data set to 0 above
    background.subtract_from(image)
    image = repair_masked_pixels(image, flagged, config.photometry.repair_bits, config.photometry.repair_box,
                                 inplace=True)
    detection_config = config.detection
    if config.photometry.mask_neighbours and not detection_config.segmentation:
        detection_config = replace(detection_config, segmentation=True)  # the photometry masks neighbours
    detections = detect_sources(image, background, flagged, detection_config, finite=True)
    photometry = measure_photometry(image, detections, background, var=var, mask=flagged, config=config.photometry,
                                    finite=True)  # VAR's non-finite pixels are NO_DATA in flagged
    return build_catalog(detections, photometry, background, wcs=wcs, zeropoint=zeropoint,
                         zeropoint_err=zeropoint_err, meta=meta)
