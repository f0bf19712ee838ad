"""Instrument signature removal of one detector of one exposure: pure functions.

Order (as ccdproc's verbs): overscan, trim, gain (in :mod:`assemble`), then
bias, dark scaled by exposure time, flat; masks from saturation, the masters
and cosmic rays; a variance plane from read noise, Poisson noise and the
masters' own noise. Nothing here reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from lenghu.calib.assemble import AssembledFrame
from lenghu.calib.cosmics import CosmicRayConfig, detect_cosmic_rays
from lenghu.calib.masks import MASK_DTYPE, MaskBit
from lenghu.calib.masters import MasterFrame
from lenghu.calib.overscan import OverscanConfig


@dataclass(frozen=True)
class IsrConfig:
    """Configuration of signature removal.

    Attributes
    ----------
    overscan : OverscanConfig
    cosmic_rays : CosmicRayConfig
    precision : {"float32", "float64"}
        Arithmetic precision before the products are written as float32.
        float64 reproduces ccdproc (which computes in float64) bit for bit up
        to the final rounding; float32 halves memory.
    """

    overscan: OverscanConfig = field(default_factory=OverscanConfig)
    cosmic_rays: CosmicRayConfig = field(default_factory=CosmicRayConfig)
    precision: Literal["float32", "float64"] = "float32"

    @property
    def dtype(self) -> type:
        """The numpy type of the arithmetic."""
        return np.float64 if self.precision == "float64" else np.float32


@dataclass(frozen=True)
class Calibrations:
    """The masters available for one detector (None where the night had none)."""

    bias: MasterFrame | None = None
    dark: MasterFrame | None = None
    flat: MasterFrame | None = None

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the calibrations that are absent."""
        return tuple(k for k in ("bias", "dark", "flat") if getattr(self, k) is None)

    def rows(self, y0: int, y1: int, image_only: bool = False) -> "Calibrations":
        """The masters cut to rows ``y0:y1`` (``image_only``: masters on disk read only their image plane)."""
        return Calibrations(**{k: _cut(getattr(self, k), y0, y1, image_only) if getattr(self, k) is not None
                               else None for k in ("bias", "dark", "flat")})


def _cut(master, y0: int, y1: int, image_only: bool):
    if image_only and hasattr(master, "image_rows"):  # a MasterFile: skip reading variance and mask
        return master.image_rows(y0, y1)
    return master.rows(y0, y1)


@dataclass(frozen=True)
class CalibratedImage:
    """SCI (electrons), VAR (electrons^2), MASK (bits of :class:`MaskBit`) and what was done."""

    sci: np.ndarray
    var: np.ndarray
    mask: np.ndarray
    steps: tuple[str, ...]
    missing: tuple[str, ...]
    read_noise: dict[str, float]
    overscan_level: dict[str, float]
    cosmic_ray_pixels: int = 0


def subtract_masters_in_place(sci: np.ndarray, exptime: float, cals: Calibrations) -> np.ndarray:
    """Bias, dark (scaled by ``exptime``) and flat applied to ``sci`` (electrons), in place; returns it.

    SCI alone, without variance or mask (the inputs of a master need neither): the same arithmetic as
    :func:`subtract_calibrations`. NaN (no data) stays NaN.
    """
    dtype = sci.dtype.type
    if cals.bias is not None:
        sci -= cals.bias.image.astype(dtype)
    if cals.dark is not None:
        sci -= cals.dark.image.astype(dtype) * dtype(exptime)
    if cals.flat is not None:
        flat = cals.flat.image.astype(dtype)
        sci /= np.where(flat > 0, flat, dtype(1))
    return sci


def subtract_calibrations(frame: AssembledFrame, exptime: float, cals: Calibrations,
                          dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Bias, dark (scaled by ``exptime`` seconds) and flat applied to an assembled frame.

    Returns
    -------
    sci, var, mask, steps
        Electrons, electrons^2, mask bits, and the names of the steps done.
    """
    sci = frame.image.astype(dtype, copy=True)
    calib_var = np.zeros(sci.shape, dtype=dtype)
    mask = np.zeros(sci.shape, dtype=MASK_DTYPE)
    steps = ["overscan", "trim", "gain"]
    collected = sci.copy()  # electrons the pixel collected (signal + dark), for Poisson noise
    if cals.bias is not None:
        sci -= cals.bias.image.astype(dtype)
        collected = sci.copy()
        calib_var += cals.bias.variance
        mask |= cals.bias.mask
        steps.append("bias")
    if cals.dark is not None:
        sci -= cals.dark.image.astype(dtype) * dtype(exptime)
        calib_var += cals.dark.variance * dtype(exptime**2)
        mask |= cals.dark.mask
        steps.append("dark")
    var = frame.read_variance.astype(dtype) + np.clip(collected, 0, None) + calib_var
    if cals.flat is not None:
        flat = cals.flat.image.astype(dtype)
        good = flat > 0
        safe = np.where(good, flat, dtype(1))
        sci /= safe
        var = (var + sci * sci * cals.flat.variance.astype(dtype)) / (safe * safe)
        mask |= cals.flat.mask
        mask[~good] |= MASK_DTYPE(MaskBit.NO_DATA)
        steps.append("flat")
    return sci, var, mask, tuple(steps)


# Rows above and below a strip that cosmic-ray detection sees. L.A.Cosmic's reach per iteration:
# the Laplacian of the 2x subsampled image (1 pixel), the 5x5 median noise model (2), the 3x3 then
# 7x7 medians of the fine-structure image (3), growth into neighbours (1) and the 5x5 replacement
# of flagged pixels before the next iteration (2): about 9 rows per iteration, so 2 iterations (the
# default) need 18 and 4 need 36. The margin is taken as 10 rows per iteration plus the mirrored
# EDGE_PAD, and a test compares strips with the whole frame (tests/lenghu/test_calib.py).
CR_ROWS_PER_ITERATION = 10


def cosmic_ray_margin(config: IsrConfig) -> int:
    """Rows of margin each side of a strip for cosmic-ray detection (0 when disabled)."""
    if not config.cosmic_rays.enabled:
        return 0
    from lenghu.calib.cosmics import EDGE_PAD

    return CR_ROWS_PER_ITERATION * config.cosmic_rays.niter + EDGE_PAD


#: Kept for callers of the previous fixed margin (2 iterations).
CR_MARGIN_ROWS = 2 * CR_ROWS_PER_ITERATION + 8


@dataclass(frozen=True)
class StripSummary:
    """What the strip-by-strip signature removal did, without the pixels."""

    steps: tuple[str, ...]
    missing: tuple[str, ...]
    cosmic_ray_pixels: int
    masked_pixels: int
    pixels: int
    sky_sample: np.ndarray


#: Good SCI pixels kept (every n-th) per frame to estimate the sky median of a large frame.
SKY_SAMPLE_PIXELS = 4_000_000


def remove_signature_by_strips(source, shape: tuple[int, int], exptime: float, cals: Calibrations,
                               config: IsrConfig, saturation_e: float, sink, strip_rows: int = 512) -> StripSummary:
    """Signature removal strip by strip: memory of one strip, whatever the frame size.

    Parameters
    ----------
    source : callable
        ``source(y0, y1)``: the :class:`AssembledFrame` of detector rows ``y0:y1``
        (``AssembledFrame.rows`` or ``StripAssembler.rows``).
    shape : tuple of int
        Detector ``(ny, nx)``.
    cals : Calibrations
        Masters; anything with ``rows(y0, y1)`` giving a :class:`MasterFrame`
        (memory-resident masters, or ``lenghu.io.products.MasterFile``).
    sink : callable
        ``sink(y0, sci, var, mask)`` receives each finished strip, in order.
    strip_rows : int
        Rows per strip. Cosmic rays are detected on the strip plus
        :func:`cosmic_ray_margin` rows each side; the result does not depend on
        ``strip_rows`` except for a cosmic ray reaching further than the margin.

    Returns
    -------
    StripSummary
        Steps done, calibrations missing, pixel counts, and a sample of good
        SCI values (every n-th, at most about :data:`SKY_SAMPLE_PIXELS`) for
        the sky median.
    """
    ny, nx = shape
    margin = cosmic_ray_margin(config)
    every = max(1, (ny * nx) // SKY_SAMPLE_PIXELS)
    n_cr = n_masked = 0
    steps: tuple[str, ...] = ()
    samples = []
    for y0 in range(0, ny, strip_rows):
        y1 = min(ny, y0 + strip_rows)
        a, b = max(0, y0 - margin), min(ny, y1 + margin)
        part_sci, part_var, part_mask, steps = _remove_rows(source(a, b), exptime, cals.rows(a, b), config,
                                                            saturation_e)
        keep = slice(y0 - a, y1 - a)
        sci, var, mask = part_sci[keep], part_var[keep], part_mask[keep]
        n_cr += int(((mask & MASK_DTYPE(MaskBit.CR)) != 0).sum())
        good = mask == 0
        n_masked += int(good.size - good.sum())
        samples.append(sci.reshape(-1)[(y0 * nx) % every::every][good.reshape(-1)[(y0 * nx) % every::every]]
                       .astype(np.float32))
        sink(y0, sci, var, mask)
    return StripSummary(steps=steps, missing=cals.missing, cosmic_ray_pixels=n_cr, masked_pixels=n_masked,
                        pixels=ny * nx, sky_sample=np.concatenate(samples) if samples else np.zeros(0, np.float32))


def remove_signature(frame: AssembledFrame, exptime: float, cals: Calibrations, config: IsrConfig,
                     saturation_e: float, strip_rows: int = 1024) -> CalibratedImage:
    """The whole signature removal of one detector image held in memory; see the module docstring.

    :func:`remove_signature_by_strips` into whole-frame arrays (the pipeline
    streams instead).
    """
    ny, nx = frame.image.shape
    sci = np.empty((ny, nx), dtype=np.float32)
    var = np.empty((ny, nx), dtype=np.float32)
    mask = np.empty((ny, nx), dtype=MASK_DTYPE)

    def sink(y0, part_sci, part_var, part_mask):
        y1 = y0 + part_sci.shape[0]
        sci[y0:y1], var[y0:y1], mask[y0:y1] = part_sci, part_var, part_mask

    done = remove_signature_by_strips(frame.rows, (ny, nx), exptime, cals, config, saturation_e, sink, strip_rows)
    return CalibratedImage(
        sci=sci,
        var=var,
        mask=mask,
        steps=done.steps,
        missing=done.missing,
        read_noise=frame.read_noise,
        overscan_level=frame.overscan_level,
        cosmic_ray_pixels=done.cosmic_ray_pixels,
    )


def _remove_rows(frame: AssembledFrame, exptime: float, cals: Calibrations, config: IsrConfig,
                 saturation_e: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    """Signature removal of a strip of rows (frame and masters cut alike)."""
    sci, var, mask, steps = subtract_calibrations(frame, exptime, cals, config.dtype)
    mask[frame.saturated] |= MASK_DTYPE(MaskBit.SAT)
    mask[frame.no_data] |= MASK_DTYPE(MaskBit.NO_DATA)
    if config.cosmic_rays.enabled:
        # LOW_FLAT too: dividing by a low response multiplies a pixel's noise, which L.A.Cosmic's
        # noise model (from the image values) does not know; a dead column then reads as a row of
        # cosmic rays (two-thirds of the flagged pixels of a simulated night were such).
        ignore = (mask & MASK_DTYPE(MaskBit.SAT | MaskBit.NO_DATA | MaskBit.BAD | MaskBit.LOW_FLAT)) != 0
        rn = float(np.median(list(frame.read_noise.values())))
        crs = detect_cosmic_rays(sci, ignore, rn, saturation_e, config.cosmic_rays)
        mask[crs] |= MASK_DTYPE(MaskBit.CR)
        steps = steps + ("cosmic_rays",)
    var[(mask & MASK_DTYPE(MaskBit.NO_DATA)) != 0] = np.inf
    return sci, var, mask, steps
