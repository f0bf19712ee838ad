"""Picture comparisons in numpy/scipy: SSIM (Wang et al. 2004) and simple picture statistics.

:func:`ssim` follows scikit-image's ``structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False`` (the
settings of the original paper) on the luminance of RGB pictures, so the
numbers agree with it to about 1e-3; scikit-image is not needed.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter


def luminance(img: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of an (h, w, 3 or 4) picture, or the picture itself if 2-D (float64)."""
    a = np.asarray(img, dtype=np.float64)
    if a.ndim == 3:
        a = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return a


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, sigma: float = 1.5) -> float:
    """Mean structural similarity of two pictures (1 = identical)."""
    x, y = luminance(a), luminance(b)
    if x.shape != y.shape:
        raise ValueError(f"pictures differ in shape: {x.shape} and {y.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    f = lambda z: gaussian_filter(z, sigma, truncate=3.5, mode="reflect")  # noqa: E731
    mx, my = f(x), f(y)
    vx = f(x * x) - mx * mx
    vy = f(y * y) - my * my
    cxy = f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    pad = int(3.5 * sigma + 0.5)  # skimage crops the border where the window leaves the picture
    return float(s[pad:-pad, pad:-pad].mean())


def white_fraction(img: np.ndarray, level: int = 255) -> float:
    """Fraction of pixels whose every colour channel is at ``level`` (full white)."""
    a = np.asarray(img)[..., :3]
    return float(np.all(a >= level, axis=-1).mean())


def lit_fraction(img: np.ndarray, threshold: int = 8) -> float:
    """Fraction of pixels brighter than ``threshold`` in some channel."""
    return float((np.asarray(img)[..., :3].max(axis=-1) > threshold).mean())
