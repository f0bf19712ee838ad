"""Fixtures of the fault-injection suite: one tiny simulated night and its undisturbed reduction."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lenghu.pipelines.config import ReduceConfig
from lenghu.pipelines.reduce import ReduceRequest, reduce_night
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import simulate_night

from .helpers import STAGES, raw_checksums

#: Two 1/16-scale WFST CCDs; 3 biases, 2 darks, 2 flats, 2 science exposures: 6 masters,
#: 4 calibrated images and 4 catalogues, about 40 tasks; a run takes a few seconds.
NIGHT = NightConfig(scale="1/16", seed=8, n_bias=3, n_dark=2, n_flat=2, n_science=2, filters=("r",),
                    detectors=("CCD1", "CCD5"))
N_PRODUCTS = 3 * len(NIGHT.detectors) + 2 * NIGHT.n_science * len(NIGHT.detectors)


def run_reduce(raw: Path, out: Path, stages=STAGES, **kwargs):
    """Reduce ``raw`` into ``out`` in this process, on two threaded workers."""
    config = ReduceConfig().with_execution(workers=2, processes=False, memory_limit="2GB")
    return reduce_night(ReduceRequest(raw_dir=raw, out=out, instrument="wfst", config=config, progress=False,
                                      stages=tuple(stages), **kwargs))


@pytest.fixture(scope="session")
def night_root(tmp_path_factory) -> Path:
    """The simulated night (``raw/`` and its ``refcat.fits``); never modified by any test."""
    root = tmp_path_factory.mktemp("faults_night")
    simulate_night(NIGHT.with_changes(truth_images=False), root, progress=False)
    return root


@pytest.fixture(scope="session")
def reference(night_root, tmp_path_factory) -> Path:
    """The output folder of an undisturbed reduction of the night."""
    out = tmp_path_factory.mktemp("faults_reference") / "out"
    summary = run_reduce(night_root / "raw", out)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    from .helpers import products

    assert len(products(out)) == N_PRODUCTS
    return out


@pytest.fixture
def night(night_root, tmp_path) -> Path:
    """A private copy of the night's raw folder (with the refcat beside it) for one test."""
    root = tmp_path / "night"
    shutil.copytree(night_root, root)
    return root / "raw"


@pytest.fixture
def raw_before(night) -> dict[str, str]:
    """Checksums of the raw files before the test disturbs anything."""
    return raw_checksums(night)
