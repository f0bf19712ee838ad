"""The compiled master combine gives the numpy path's values bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from lenghu.calib.combine import CombineConfig, combine_stack, model_variance
from lenghu.calib.combine_kernel import combine_model, kernel_applies
from lenghu.pipelines.tasks import read_variance_rows

CASES = [
    (10, CombineConfig(), False),
    (10, CombineConfig(), True),
    (7, CombineConfig(maxiters=3, sigma_lower=2.0, sigma_upper=2.5), True),
    (5, CombineConfig(sigma_lower=None), True),
    (3, CombineConfig(sigma_upper=None, maxiters=2), False),
    (1, CombineConfig(), True),
    (2, CombineConfig(), True),
    (16, CombineConfig(sigma_lower=1.0, sigma_upper=1.0, maxiters=5), True),
    (6, CombineConfig(sigma_lower=None, sigma_upper=None), True),
]


def _inputs(rng, n, rows, nx):
    inputs = [rng.normal(1000, 5, (rows, nx)).astype(np.float32) for _ in range(n)]
    for part in inputs:
        part[rng.random(part.shape) < 0.05] = np.nan  # no data
        part[rng.random(part.shape) < 0.03] += 300  # cosmic rays
    inputs[-1][:] = np.round(inputs[-1])  # quantised values: ties
    inputs[0][3, :] = np.nan
    for part in inputs:
        part[4, :20] = 1000.0  # every value equal: zero spread
    inputs[0][5, :] = np.inf
    return inputs


@pytest.mark.parametrize("n,config,poisson", CASES)
def test_kernel_equals_numpy_path(n, config, poisson):
    rng = np.random.default_rng(n * 7 + int(poisson))
    rows, nx, y0 = 37, 301, 50
    inputs = _inputs(rng, n, rows, nx)
    scales = [float(s) for s in rng.uniform(0.5, 2.0, n)]
    layouts = [[(0, 60, 0, 150, float(np.float32(rng.uniform(10, 30)))), (60, 200, 0, 150, 7.0),
                (0, 200, 140, 290, 20.0)] for _ in range(n)]  # overlapping rectangles; columns 290: uncovered
    stack = np.stack([part * scale for part, scale in zip(inputs, scales)])
    strip = combine_stack(stack, config, sample_variance=False)
    expected = model_variance(strip, (read_variance_rows(lay, y0, y0 + rows, nx) for lay in layouts), scales,
                              poisson, config)
    image, variance, n_used = combine_model(inputs, scales, config, layouts, y0, poisson)
    np.testing.assert_array_equal(n_used, strip.n_used)
    np.testing.assert_array_equal(image, strip.image)  # NaN where nothing is left, in both
    np.testing.assert_array_equal(variance, expected)
    # A NaN input is dropped, not propagated: NaN only where no input has a value.
    np.testing.assert_array_equal(np.isnan(image[3]), ~np.isfinite(stack[:, 3]).any(axis=0))


def test_kernel_on_memory_maps_and_a_single_row(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.npy"
        np.save(path, rng.normal(50, 3, (9, 17)).astype(np.float32))
        paths.append(path)
    maps = [np.load(p, mmap_mode="r")[2:3] for p in paths]
    layouts = [[(0, 9, 0, 17, 4.0)]] * 4
    image, variance, n_used = combine_model(maps, [1.0] * 4, CombineConfig(), layouts, 2, True)
    stack = np.stack([np.asarray(m) for m in maps])
    strip = combine_stack(stack, CombineConfig(), sample_variance=False)
    np.testing.assert_array_equal(image, strip.image)
    np.testing.assert_array_equal(n_used, strip.n_used)
    assert image.shape == (1, 17) and np.isfinite(variance).all()


def test_kernel_applies_only_to_the_default_path():
    layouts = [[(0, 4, 0, 4, 1.0)]] * 3
    assert kernel_applies(3, CombineConfig(), layouts)
    assert not kernel_applies(3, CombineConfig(method="mean"), layouts)
    assert not kernel_applies(3, CombineConfig(reject_low=1), layouts)
    assert not kernel_applies(3, CombineConfig(deviation="std"), layouts)
    assert not kernel_applies(3, CombineConfig(), None)
    assert not kernel_applies(3, CombineConfig(), layouts, np.float64)
    assert not kernel_applies(65, CombineConfig(), [[(0, 4, 0, 4, 1.0)]] * 65)
    assert not kernel_applies(2, CombineConfig(), [[(0, 4, 0, 4, 1.0)], [(0, 4, 0, 2, 1.0)]])
