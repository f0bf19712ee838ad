"""SIGKILL at chosen moments: a worker during a master combine, signature removal or measurement;
the driver during a master combine. The kill is fired by a worker plugin
(:mod:`tests.faults.kill_on_task`) when the chosen task starts executing, so the
fault lands in the stage named, every time, not when a timer happens to go off.
"""

from __future__ import annotations

import signal

import pytest

from .conftest import N_PRODUCTS, run_reduce
from .helpers import DaskProcesses, assert_three_outcomes, products, reduce_cli

pytestmark = pytest.mark.slow

WORKER_CASES = {
    "combine_rows": "a master combine (strip of rows being sigma-clipped)",
    "calibrate": "signature removal of one (exposure, detector)",
    "measure_product": "measurement (detection, astrometry, photometry) of one product",
}


@pytest.mark.parametrize("task", [
    pytest.param(task, marks=pytest.mark.reliability(
        kind="fault", case=f"SIGKILL of a dask worker during {what}",
        promise="the run finishes on the other worker; no partial file; products identical to an undisturbed run"))
    for task, what in WORKER_CASES.items()])
def test_a_worker_killed_mid_task_is_survived(task, night, raw_before, reference, tmp_path, record_property,
                                              fitsverify):
    out = tmp_path / "out"
    with DaskProcesses(tmp_path / "cluster", workers=2, fault_task=task) as cluster:
        proc = reduce_cli(night, out, "--instrument", "wfst", "--scheduler", cluster.address)
        stdout, stderr = proc.communicate(timeout=300)
        survivors = len(cluster.alive())
        fired = cluster.marker.read_text() if cluster.marker.exists() else ""
    assert fired, f"no {task} task ran, so nothing was killed"
    assert survivors == 1, "the fault did not kill a worker"
    assert proc.returncode == 0, stderr
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed=f"worker pid {fired.split()[0]} killed in {fired.split()[1][:40]}; "
                                   f"run exit 0 on the survivor")


@pytest.mark.reliability(kind="fault", case="SIGKILL of the driver during a master combine, then a rerun",
                         promise="no partial file; the rerun completes with products identical to an "
                                 "undisturbed run")
def test_the_driver_killed_during_a_combine_then_rerun(night, raw_before, reference, tmp_path, record_property,
                                                       fitsverify):
    out = tmp_path / "out"
    with DaskProcesses(tmp_path / "cluster", workers=2, fault_task="combine_rows", kill_driver=True) as cluster:
        proc = reduce_cli(night, out, "--instrument", "wfst", "--scheduler", cluster.address)
        cluster.victim_file.write_text(str(proc.pid))
        proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, "the driver was not killed"
    done_when_killed = len(products(out))
    assert done_when_killed < N_PRODUCTS
    summary = run_reduce(night, out)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert not (out / "work").exists(), "the killed run's scratch folder was not cleared"
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed=f"driver killed with {done_when_killed} of {N_PRODUCTS} products written; "
                                   "rerun exit 0")
