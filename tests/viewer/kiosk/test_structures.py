"""Structure finders against injected clumps of known mass and position (no GL)."""

from __future__ import annotations

import numpy as np
import pytest

from lenghu.viewer.app.kiosk.structures import (
    density_peaks,
    format_mass,
    friends_of_friends,
    structure_text,
    structure_tour,
)

BOX = 100.0
CLUMPS = [((25.0, 30.0, 70.0), 6000, 1.5), ((70.0, 60.0, 20.0), 3000, 1.2), ((60.0, 80.0, 75.0), 1500, 1.0)]


def clumpy(seed=0, background=60_000):
    rng = np.random.default_rng(seed)
    parts = [rng.random((background, 3)) * BOX]
    for centre, n, sigma in CLUMPS:
        parts.append(np.mod(rng.normal(centre, sigma, (n, 3)), BOX))
    pos = np.concatenate(parts).astype(np.float32)
    return pos, np.full(len(pos), 2.0, dtype=np.float32)  # 2e10 solar masses each


@pytest.mark.parametrize("finder", [density_peaks, friends_of_friends])
def test_finds_the_injected_clumps_in_order_of_mass(finder):
    pos, mass = clumpy()
    found = finder(pos, mass, (BOX, BOX, BOX), count=3)
    assert len(found) == 3
    for s, (centre, n, sigma) in zip(found, CLUMPS):
        assert np.linalg.norm(np.array(s.center) - centre) < 2.0
        truth = n * 2.0 * 1e10
        # peaks: the sphere at 5x the mean density also holds some background; fof links the core
        assert 0.5 * truth < s.mass_msun < 1.6 * truth, (s, truth)
        if finder is friends_of_friends:
            assert 1.0 * sigma < s.size < 8 * sigma
        else:  # the sphere whose mean density is 5x the mean: n / V + background density = 5 mean
            mean = len(pos) / BOX**3
            r = (n / (4 / 3 * np.pi * (5 * mean - 60_000 / BOX**3))) ** (1 / 3)
            assert s.size == pytest.approx(2 * r, rel=0.15)


def test_periodic_wrap_centre():
    rng = np.random.default_rng(3)
    pos = np.concatenate([rng.random((20_000, 3)) * BOX, np.mod(rng.normal((0.2, 50, 50), 1.0, (4000, 3)), BOX)])
    s = friends_of_friends(pos, None, (BOX,) * 3, count=1)[0]
    d = (np.array(s.center) - (0.2, 50, 50) + BOX / 2) % BOX - BOX / 2
    assert np.linalg.norm(d) < 1.0 and s.mass_msun is None


def test_captions_carry_units():
    assert format_mass(3.2e14, True) == ("3.2×10¹⁴ 倍太阳质量/h", "3.2×10¹⁴ solar masses/h")
    pos, mass = clumpy()
    s = density_peaks(pos, mass, (BOX,) * 3, count=1)[0]
    text = structure_text(1, s, "Mpc/h")
    assert "Mpc/h" in text.en and "solar masses" in text.en and "Mpc/h" in text.zh and "太阳质量" in text.zh


def test_tour_visits_each_structure():
    from lenghu.viewer.app.kiosk.show import Text

    pos, mass = clumpy()
    found = density_peaks(pos, mass, (BOX,) * 3, count=3)
    tour, stops = structure_tour(found, (0, 0, 0), (BOX,) * 3, 40.0, "Mpc/h", overview_text=Text("总览", "All"))
    assert tour.duration == pytest.approx(8 + 32 * (2 + 0.95) / 3)
    assert [s.structure for s in stops] == [None, 0, 1, 2]
    for stop in stops[1:]:
        for f in (0.5, 0.7, 0.9):  # held on the structure from 45% to 95% of its stretch
            cam = tour.state_at(stop.start + f * (stop.end - stop.start)).camera
            assert np.allclose(cam.center, found[stop.structure].center, atol=1e-6)
