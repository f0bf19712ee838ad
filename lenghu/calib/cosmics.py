"""Cosmic-ray detection with astroscrappy (L.A.Cosmic)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CosmicRayConfig:
    """astroscrappy's L.A.Cosmic parameters (van Dokkum 2001).

    Attributes
    ----------
    enabled : bool
        Run the detection at all.
    sigclip : float
        Laplacian-to-noise threshold, standard deviations.
    sigfrac : float
        Fraction of ``sigclip`` for neighbouring pixels.
    objlim : float
        Contrast against the fine structure image (higher protects stars more).
    niter : int
        Iterations (4 is astroscrappy's and ccdproc's default).
    """

    enabled: bool = True
    sigclip: float = 4.5
    sigfrac: float = 0.3
    objlim: float = 5.0
    niter: int = 4

    def __post_init__(self):
        if self.sigclip <= 0 or self.sigfrac <= 0 or self.objlim <= 0 or self.niter < 1:
            raise ValueError("cosmic-ray sigclip, sigfrac, objlim must be > 0 and niter >= 1")


def detect_cosmic_rays(image_e: np.ndarray, bad: np.ndarray, read_noise_e: float,
                       saturation_e: float, config: CosmicRayConfig) -> np.ndarray:
    """Boolean mask of cosmic-ray pixels in an image in electrons (sky included).

    ``bad`` marks pixels astroscrappy must ignore (saturated, no data, bad columns).
    """
    import astroscrappy

    crmask, _ = astroscrappy.detect_cosmics(
        np.ascontiguousarray(image_e, dtype=np.float32),
        inmask=np.ascontiguousarray(bad, dtype=bool),
        gain=1.0,
        readnoise=float(read_noise_e),
        satlevel=float(saturation_e),
        sigclip=config.sigclip,
        sigfrac=config.sigfrac,
        objlim=config.objlim,
        niter=config.niter,
        sepmed=True,
        cleantype="meanmask",
        fsmode="median",
    )
    return np.asarray(crmask, dtype=bool)
