"""Helpers for pipeline tests: an in-process Dask cluster and a reduce call."""

from __future__ import annotations

from pathlib import Path

import pytest

from lenghu.pipelines.config import ReduceConfig
from lenghu.pipelines.reduce import ReduceRequest, reduce_night


def run_reduce(raw: Path, out: Path, instrument: str = "auto", config: ReduceConfig | None = None, **kwargs):
    """Reduce ``raw`` into ``out`` on two in-process (threaded) workers."""
    config = (config or ReduceConfig()).with_execution(workers=2, processes=False, memory_limit="2GB")
    return reduce_night(ReduceRequest(raw_dir=raw, out=out, instrument=instrument, config=config,
                                      progress=False, **kwargs))


@pytest.fixture
def reduce_run():
    """The :func:`run_reduce` helper."""
    return run_reduce
