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

    def rows(self, y0: int, y1: int) -> "Calibrations":
        """The masters cut to rows ``y0:y1``."""
        return Calibrations(**{k: getattr(self, k).rows(y0, y1) if getattr(self, k) is not None else None
                               for k in ("bias", "dark", "flat")})


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


def calibrated_signal(frame: AssembledFrame, exptime: float, cals: Calibrations,
                      dtype: type = np.float32) -> np.ndarray:
    """SCI alone (bias, dark scaled by ``exptime``, flat), without variance or mask.

    The same arithmetic as :func:`subtract_calibrations`, for the inputs of a
    master, which need neither and would triple the memory of the task.
    """
    sci = frame.image.astype(dtype, copy=True)
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


# Rows above and below a strip that cosmic-ray detection sees (L.A.Cosmic's filters reach 3 pixels
# per iteration; 16 rows make strip edges agree with a whole-frame run).
CR_MARGIN_ROWS = 16


def remove_signature(frame: AssembledFrame, exptime: float, cals: Calibrations, config: IsrConfig,
                     saturation_e: float, strip_rows: int = 1024) -> CalibratedImage:
    """The whole signature removal of one detector image; see the module docstring.

    The work goes strip by strip of ``strip_rows`` rows (cosmic rays with a
    margin of :data:`CR_MARGIN_ROWS`), so the temporary arrays of a full-size
    CCD stay small; the result does not depend on the strip size except for
    cosmic rays longer than the margin.
    """
    ny, nx = frame.image.shape
    sci = np.empty((ny, nx), dtype=np.float32)
    var = np.empty((ny, nx), dtype=np.float32)
    mask = np.empty((ny, nx), dtype=MASK_DTYPE)
    margin = CR_MARGIN_ROWS if config.cosmic_rays.enabled else 0
    n_cr, steps = 0, ()
    for y0 in range(0, ny, strip_rows):
        y1 = min(ny, y0 + strip_rows)
        a, b = max(0, y0 - margin), min(ny, y1 + margin)
        part_sci, part_var, part_mask, steps = _remove_rows(frame.rows(a, b), exptime, cals.rows(a, b), config,
                                                            saturation_e)
        keep = slice(y0 - a, y1 - a)
        sci[y0:y1] = part_sci[keep]
        var[y0:y1] = part_var[keep]
        mask[y0:y1] = part_mask[keep]
        n_cr += int(((part_mask[keep] & MASK_DTYPE(MaskBit.CR)) != 0).sum())
    return CalibratedImage(
        sci=sci,
        var=var,
        mask=mask,
        steps=steps,
        missing=cals.missing,
        read_noise=frame.read_noise,
        overscan_level=frame.overscan_level,
        cosmic_ray_pixels=n_cr,
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
