"""Unit tests of the calibration verbs on arrays with known answers."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pytest

from lenghu.calib.assemble import AssembledFrame
from lenghu.calib.combine import CombineConfig, combine_stack
from lenghu.calib.cosmics import CosmicRayConfig
from lenghu.calib.isr import Calibrations, IsrConfig, remove_signature
from lenghu.calib.masks import MaskBit
from lenghu.calib.masters import MasterConfig, finish_master
from lenghu.calib.overscan import OverscanConfig, overscan_level


def test_combine_matches_ccdproc_in_float64():
    ccdproc = pytest.importorskip("ccdproc")
    from astropy.nddata import CCDData
    from astropy.stats import mad_std

    rng = np.random.default_rng(3)
    stack = rng.normal(1000, 5, (7, 64, 80))
    stack[2, 5, 5] = 9000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method, ours in (("median", "median"), ("average", "mean")):
            ref = ccdproc.combine([CCDData(s, unit="adu") for s in stack], method=method, sigma_clip=True,
                                  sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
                                  sigma_clip_func=np.ma.median, sigma_clip_dev_func=mad_std)
            got = combine_stack(stack, CombineConfig(method=ours))
            np.testing.assert_allclose(got.image, ref.data, rtol=1e-6)
    assert got.n_used[5, 5] == 6  # the outlier was rejected


def test_combine_noise_and_minmax_rejection():
    rng = np.random.default_rng(4)
    stack = rng.normal(0, 10, (16, 200, 200)).astype(np.float32)
    stack[0] += 1000  # one bright frame everywhere: min/max rejection must drop it
    got = combine_stack(stack, CombineConfig(method="mean", sigma_lower=None, sigma_upper=None,
                                             reject_low=1, reject_high=1))
    assert np.all(got.n_used == 14)
    assert abs(np.std(got.image) - 10 / np.sqrt(14)) < 0.05 * 10 / np.sqrt(14)
    # Without rejection the variance estimate is unbiased: its mean equals the scatter of the
    # combined image. (Rejection truncates the sample and biases it low; see combine_stack.)
    plain = combine_stack(stack[1:], CombineConfig(method="mean", sigma_lower=None, sigma_upper=None))
    assert np.mean(plain.variance) == pytest.approx(np.var(plain.image), rel=0.03)


def test_overscan_methods():
    rng = np.random.default_rng(5)
    rows = np.linspace(990, 1010, 500)
    overscan = rows[:, None] + rng.normal(0, 3, (500, 32))
    overscan[100, 3] = 60000  # a cosmic ray in the overscan
    median = overscan_level(overscan, OverscanConfig(method="median"))
    assert median.shape == (500, 1) and median[0, 0] == pytest.approx(1000, abs=0.5)
    per_row = overscan_level(overscan, OverscanConfig(method="row_median"))
    assert np.abs(per_row[:, 0] - rows).max() < 3
    poly = overscan_level(overscan, OverscanConfig(method="row_poly", order=1))
    assert np.abs(poly[:, 0] - rows).max() < 0.3  # a fit averages the noise of every row
    with pytest.raises(ValueError):
        OverscanConfig(method="mean-ish")


def test_master_quality_figures():
    rng = np.random.default_rng(6)
    dark = rng.normal(30.0, 1.0, (100, 120)).astype(np.float32)  # 300 s at 0.1 e-/s
    dark[10, 10] = 3000.0  # a hot pixel: 10 e-/s
    dark[:, 50] += 200.0   # a hot column
    master = finish_master("dark", dark, np.ones_like(dark), np.full(dark.shape, 5, np.int16), 5,
                           MasterConfig(hot_pixel_rate=1.0), exposure=300.0)
    assert master.image[0, 0] == pytest.approx(0.1, abs=0.02)
    assert master.mask[10, 10] & MaskBit.HOT
    assert master.quality["bad_columns"] == 1 and np.all(master.mask[:, 50] & MaskBit.BAD)
    flat = finish_master("flat", np.full((50, 50), 2.0e4, np.float32), np.ones((50, 50), np.float32),
                         np.full((50, 50), 3, np.int16), 3, MasterConfig())
    assert flat.image.mean() == pytest.approx(1.0) and flat.quality["normalisation_e"] == pytest.approx(2e4)


def test_bad_columns_on_a_frame_past_the_subsample_size():
    """Above 8 Mpixel the noise floor comes from every n-th row pair: same columns as the full count."""
    from lenghu.calib.masters import SUBSAMPLE_PIXELS, bad_columns

    rng = np.random.default_rng(11)
    ny, nx = 3000, 3000  # 9 Mpixel: every 2nd row pair
    assert ny * nx // SUBSAMPLE_PIXELS == 2
    # Quantised like a master of integer data, so the floor (not the columns' MAD) decides.
    bias = np.round(rng.normal(1000.0, 5.0, (ny, nx))).astype(np.float32)
    bias[:, 1234] += 2.0   # 17 times a column median's error (1.2533 * 5 / sqrt(3000) = 0.11)
    bias[:, 2500] += 0.15  # 1.3 times it: never bad
    flagged = np.flatnonzero(bad_columns(bias, 10.0)[0])
    assert flagged.tolist() == [1234]
    # The subsampled floor against the full one: the same pixel noise to 1%.
    full = np.abs(np.subtract(bias[1:], bias[:-1]))
    sub = np.abs(np.subtract(bias[1::2], bias[:-1:2]))
    assert np.median(sub) == pytest.approx(np.median(full), rel=0.01)


def _frame(rng, ny=300, nx=200, sky=500.0, rn=5.0):
    image = (sky + rng.normal(0, np.sqrt(sky + rn**2), (ny, nx))).astype(np.float32)
    ys, xs = rng.integers(5, ny - 5, 40), rng.integers(5, nx - 5, 40)
    image[ys, xs] += 5000.0  # single-pixel cosmic rays
    return AssembledFrame(image=image, read_variance=np.full((ny, nx), rn**2, np.float32),
                          saturated=np.zeros((ny, nx), bool), no_data=np.zeros((ny, nx), bool),
                          read_noise={"A": rn}, overscan_level={"A": 1000.0}), (ys, xs)


def test_signature_removal_in_strips_matches_one_piece():
    frame, (ys, xs) = _frame(np.random.default_rng(7))
    config = IsrConfig(cosmic_rays=CosmicRayConfig(niter=2))
    whole = remove_signature(frame, 30.0, Calibrations(), config, 6e4, strip_rows=10_000)
    strips = remove_signature(frame, 30.0, Calibrations(), config, 6e4, strip_rows=64)
    np.testing.assert_array_equal(whole.sci, strips.sci)
    np.testing.assert_array_equal(whole.var, strips.var)
    np.testing.assert_array_equal(whole.mask, strips.mask)
    assert np.all(whole.mask[ys, xs] & MaskBit.CR), "an injected cosmic ray was missed"
    assert whole.missing == ("bias", "dark", "flat")
    # with no masters the variance is read noise plus Poisson noise of the sky
    assert np.median(whole.var) == pytest.approx(525.0, rel=0.02)


def _sky_with_stars_and_tracks(rng, ny=700, nx=260, sky=300.0, rn=6.0):
    """A calibrated-looking frame (electrons): sky, stars of FWHM ~2.5 px, cosmic-ray hits and
    tracks of up to 12 pixels, several crossing the boundaries of 64-row strips."""
    yy, xx = np.mgrid[0:ny, 0:nx]
    truth = np.full((ny, nx), sky, np.float64)
    for _ in range(60):
        y, x, flux = rng.uniform(5, ny - 5), rng.uniform(5, nx - 5), rng.uniform(2e3, 2e5)
        truth += flux / (2 * np.pi * 1.1**2) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.1**2))
    image = rng.normal(truth, np.sqrt(truth + rn**2))
    cr = np.zeros((ny, nx), bool)
    for k in range(80):
        y = 64 * rng.integers(1, ny // 64) - rng.integers(0, 6) if k % 2 else rng.integers(2, ny - 14)
        x, length, slope = rng.integers(2, nx - 14), rng.integers(1, 13), rng.uniform(-1, 1)
        for i in range(length):  # a track along rows, crossing a strip boundary on every other one
            yi, xi = int(y + i), int(x + round(i * slope))
            cr[yi, xi] = True
            image[yi, xi] += rng.uniform(800, 8000)
    frame = AssembledFrame(image=image.astype(np.float32), read_variance=np.full((ny, nx), rn**2, np.float32),
                           saturated=np.zeros((ny, nx), bool), no_data=np.zeros((ny, nx), bool),
                           read_noise={"A": rn}, overscan_level={"A": 1000.0})
    return frame, cr


@pytest.mark.parametrize("niter", [2, 4])
def test_cosmic_rays_found_in_strips_equal_the_whole_frame_run(niter):
    """Signature removal streams strips of rows with a cosmic-ray margin of
    ``cosmic_ray_margin`` rows; the CR mask must not depend on where the strips are cut."""
    from lenghu.calib.isr import cosmic_ray_margin

    frame, cr = _sky_with_stars_and_tracks(np.random.default_rng(11))
    config = IsrConfig(cosmic_rays=CosmicRayConfig(niter=niter))
    assert cosmic_ray_margin(config) == 10 * niter + 8
    whole = remove_signature(frame, 30.0, Calibrations(), config, 6e5, strip_rows=frame.image.shape[0])
    found = (whole.mask & MaskBit.CR) != 0
    # the detection works at all (its purity on realistic stars is tests/pipelines/test_reduce_truth.py's)
    assert found[cr].mean() > 0.9
    for rows in (64, 100, 257):
        strips = remove_signature(frame, 30.0, Calibrations(), config, 6e5, strip_rows=rows)
        differ = ((strips.mask ^ whole.mask) & MaskBit.CR) != 0
        assert differ.sum() == 0, f"{differ.sum()} CR pixels differ with {rows}-row strips (rows {np.nonzero(differ)[0]})"
        np.testing.assert_array_equal(strips.sci, whole.sci)
        np.testing.assert_array_equal(strips.var, whole.var)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 10, 11, 23])
@pytest.mark.parametrize("maxiters", [1, 3])
def test_combine_by_sorting_network_equals_the_general_path(n, maxiters, monkeypatch):
    """The masters' combine (median of median/MAD-clipped values, by a sorting network) gives the
    same image, counts and kept values as the general bottleneck path, NaN, ties and outliers included."""
    import lenghu.calib.combine as combine

    rng = np.random.default_rng(n + 10 * maxiters)
    stack = np.round(rng.normal(1000, 5, (n, 60, 70))).astype(np.float32)  # rounded: many ties
    stack[:, 5, 5] = 9000.0
    stack[0, 7, 7] = 9000.0
    stack[-1, 8, 8] = np.nan
    stack[:, 9, 9] = np.nan
    stack[0, 10, 10] = -5000.0
    config = CombineConfig(maxiters=maxiters)
    assert combine._sorted_path_applies(n, config, sample_variance=False)
    fast = combine_stack(stack, config, sample_variance=False)
    monkeypatch.setattr(combine, "MAX_SORTED_FRAMES", 0)
    general = combine_stack(stack, config, sample_variance=False)
    np.testing.assert_array_equal(fast.image, general.image)
    np.testing.assert_array_equal(fast.n_used, general.n_used)
    np.testing.assert_array_equal(fast.kept, general.kept)
    np.testing.assert_array_equal(fast.n_valid, general.n_valid)
    if n >= 4:
        assert fast.n_used[5, 5] == n and fast.n_used[7, 7] <= n - 1 and fast.n_used[9, 9] == 0
        assert not fast.kept[0, 7, 7]  # the outlier was rejected


def test_level_of_a_flat_is_exact_small_and_close_large():
    """A flat's scale: the exact median below 8 Mpixel, within 2e-5 of it on a 9 Mpixel flat."""
    from lenghu.calib.masters import level_of

    rng = np.random.default_rng(12)
    small = rng.normal(2.0e4, 400.0, (1000, 1200)).astype(np.float32)
    small[3, 4] = np.nan
    assert level_of(small) == pytest.approx(float(np.nanmedian(small.astype(np.float64))), rel=1e-7)
    yy, xx = np.mgrid[0:3000, 0:3000] / 3000.0
    vignetted = 2.0e4 * (1 + 0.05 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2))
    large = (vignetted * rng.normal(1.0, 0.01, vignetted.shape)).astype(np.float32)
    exact = float(np.median(large))
    assert level_of(large) != exact  # really a subsample
    assert level_of(large) == pytest.approx(exact, rel=2e-5)
    # Its rows: whole bands spread over the whole frame, at least SUBSAMPLE_PIXELS pixels; made band by band
    # (as a master's input makes only these rows) it is the very same number.
    from lenghu.calib.masters import SUBSAMPLE_PIXELS, level_bands, median_of_bands

    bands = level_bands(large.shape)
    assert bands[0][0] == 0 and bands[-1][1] > large.shape[0] - 2 * 32 * 2 and len(bands) > 10
    assert sum(b - a for a, b in bands) * large.shape[1] >= SUBSAMPLE_PIXELS
    assert level_bands(small.shape) == [(0, small.shape[0])]
    assert median_of_bands([large[a:b].copy() for a, b in bands]) == level_of(large)
