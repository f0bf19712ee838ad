"""Adaptive quality against a fake renderer whose frame time grows with the point budget (no GL)."""

from __future__ import annotations

import numpy as np
import pytest

from lenghu.viewer.app.kiosk.quality import BudgetController


def frame_time(budget, base=0.02, per_point=2e-7):
    return base + per_point * budget


def run(ctrl, frames, cost=frame_time, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    budgets, rates = [], []
    for _ in range(frames):
        dt = cost(ctrl.budget) * (1 + noise * rng.standard_normal())
        rates.append(1 / dt)
        budgets.append(ctrl.update(dt))
    return np.array(budgets), np.array(rates)


@pytest.mark.parametrize("start", [20_000, 3_000_000])
def test_converges_to_the_target_frame_rate_from_either_side(start):
    # 10 fps needs 0.1 s frames: 0.02 + 2e-7 n -> n = 400k points
    ctrl = BudgetController(10.0, 10_000, 5_000_000, start)
    budgets, rates = run(ctrl, 300)
    assert np.median(rates[-100:]) == pytest.approx(10.0, rel=0.2)
    assert 250_000 < budgets[-1] < 500_000


def test_hysteresis_no_change_for_noise_inside_the_band():
    ctrl = BudgetController(10.0, 10_000, 5_000_000, 400_000)
    budgets, _ = run(ctrl, 500, noise=0.03, seed=1)
    assert ctrl.changes == 0 and (budgets == 400_000).all()


def test_settles_and_stops_changing_under_noise():
    ctrl = BudgetController(10.0, 10_000, 5_000_000, 50_000)
    run(ctrl, 200, noise=0.05, seed=2)
    changes = ctrl.changes
    budgets, rates = run(ctrl, 300, noise=0.05, seed=3)
    assert ctrl.changes - changes <= 3  # at most a few corrections once settled: no oscillation
    assert np.median(rates) == pytest.approx(10.0, rel=0.2)


def test_reacts_to_a_heavier_scene_and_respects_the_limits():
    ctrl = BudgetController(30.0, 20_000, 1_000_000, 100_000)
    run(ctrl, 200)
    before = ctrl.budget
    run(ctrl, 200, cost=lambda n: frame_time(n, per_point=6e-7))  # three times the cost per point
    assert ctrl.budget < before / 2
    ctrl2 = BudgetController(30.0, 20_000, 1_000_000, 100_000)
    run(ctrl2, 200, cost=lambda n: 1.0)  # a machine that never reaches the target
    assert ctrl2.budget == 20_000
    ctrl3 = BudgetController(30.0, 20_000, 1_000_000, 100_000)
    run(ctrl3, 300, cost=lambda n: 0.001)
    assert ctrl3.budget == 1_000_000


def test_bad_parameters():
    with pytest.raises(ValueError):
        BudgetController(0.0, 1, 2, 1)
    with pytest.raises(ValueError):
        BudgetController(10.0, 5, 2, 3)
