"""``lenghu reduce`` under reruns, changed inputs, killed workers and drivers, a busy output folder,
and ``generic`` frames without GAIN/RDNOISE (issue 3, "reruns and interruptions" and item 6).

One simulated night (three 1/16-scale WFST CCDs; 4 biases, 2 darks, 2 flats, 3 science exposures:
9 masters and 9 calibrated images, about 70 tasks) is reduced once undisturbed; the disturbed runs
must give products whose SCI/VAR/MASK arrays are bit-identical to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lenghu.io.atomic import TEMP_MARK
from lenghu.pipelines.lock import RunLock
from lenghu.pipelines.registry import Registry, file_checksum
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import simulate_night

from .conftest import run_reduce
from .test_distributed import LocalDaskProcesses, _reduce_cli

pytestmark = pytest.mark.slow

NIGHT = NightConfig(scale="1/16", seed=5, n_bias=4, n_dark=2, n_flat=2, n_science=3, filters=("r",),
                    detectors=("CCD1", "CCD2", "CCD5"))
N_MASTERS = 3 * len(NIGHT.detectors)  # bias, dark and r flat per CCD
N_CALIBRATED = NIGHT.n_science * len(NIGHT.detectors)
N_PRODUCTS = N_MASTERS + N_CALIBRATED
#: The reduction's stages (the catalogue stage after them is not what these tests are about).
STAGES = ("ingest", "bias", "dark", "flat", "science")


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    """The raw folder (never modified)."""
    root = tmp_path_factory.mktemp("faults_night")
    simulate_night(NIGHT.with_changes(truth_images=False), root, progress=False)
    return root / "raw"


@pytest.fixture(scope="module")
def reference(night, tmp_path_factory) -> Path:
    """The output folder of an undisturbed run."""
    out = tmp_path_factory.mktemp("faults_reference") / "out"
    summary = run_reduce(night, out, instrument="wfst", stages=STAGES)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert len(summary.masters) + len(summary.calibrated) == N_PRODUCTS
    return out


def _products(out: Path) -> dict[str, Path]:
    """Masters and calibrated images by path relative to ``out``."""
    return {str(p.relative_to(out)): p
            for folder in ("masters", "calibrated") for p in sorted((out / folder).glob("*.fits"))}


def _planes(path: Path) -> dict[str, bytes]:
    with fits.open(path) as hdul:
        return {name: np.ascontiguousarray(hdul[name].data).tobytes() for name in ("SCI", "VAR", "MASK")}


def _assert_same_products(out: Path, reference: Path) -> None:
    ours, theirs = _products(out), _products(reference)
    assert sorted(ours) == sorted(theirs) and len(ours) == N_PRODUCTS
    for name, path in ours.items():
        assert _planes(path) == _planes(theirs[name]), f"{name} differs from the undisturbed run"


def _stamps(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime in ns) of every product: a rewrite (atomic rename) changes the inode."""
    return {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in _products(out).items()}


def _assert_whole_files(out: Path) -> None:
    """No temporary left; every FITS file opens and its HDU checksums verify."""
    assert not [p for p in out.rglob(f"*{TEMP_MARK}*")], "a temporary (partial) file was left behind"
    for path in out.rglob("*.fits"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # astropy reports a checksum mismatch as a warning
            with fits.open(path, checksum=True) as hdul:
                hdul.verify("exception")
                for hdu in hdul:
                    assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header, f"{path}: no checksum to verify"
                    if hdu.data is not None:
                        np.asarray(hdu.data)  # every byte of the data is there


def _wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.02)


def _first_master(out: Path) -> bool:
    return (out / "masters").is_dir() and any(p.name.endswith(".fits") for p in (out / "masters").iterdir())


# ---------------------------------------------------------------- reruns


def test_a_rerun_skips_everything_and_force_redoes_it_identically(night, reference):
    stamps, planes = _stamps(reference), {n: _planes(p) for n, p in _products(reference).items()}

    again = run_reduce(night, reference, instrument="wfst", stages=STAGES)
    assert again.exit_status == 0
    with Registry(reference) as registry:
        assert len(registry.products()) == N_PRODUCTS
    assert again.skipped == N_PRODUCTS and not again.masters
    assert len(again.calibrated) == N_CALIBRATED  # listed as up to date
    assert _stamps(reference) == stamps, "a product was rewritten by a rerun that had nothing to do"

    forced = run_reduce(night, reference, instrument="wfst", stages=STAGES, force=True)
    assert forced.exit_status == 0 and forced.skipped == 0
    assert len(forced.masters) + len(forced.calibrated) == N_PRODUCTS
    rewritten = _stamps(reference)
    assert all(rewritten[n][0] != stamps[n][0] for n in stamps), "--force left a product in place"
    assert {n: _planes(p) for n, p in _products(reference).items()} == planes


def test_a_changed_raw_file_has_its_products_redone(night, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(night, raw)
    out = tmp_path / "out"
    assert run_reduce(raw, out, instrument="wfst", stages=STAGES).exit_status == 0
    stamps = _stamps(out)
    science = sorted(p.name for p in raw.glob("*.fits"))[-NIGHT.n_science:]
    changed, source = science[0], science[1]
    shutil.copyfile(raw / source, raw / changed)  # a different exposure now under this name

    summary = run_reduce(raw, out, instrument="wfst", stages=STAGES)
    assert summary.exit_status == 0
    assert summary.skipped == N_PRODUCTS - len(NIGHT.detectors) and not summary.masters
    after = _stamps(out)
    redone = {n for n in stamps if after[n] != stamps[n]}
    stem = changed.removesuffix(".fits")
    assert redone == {f"calibrated/{stem}_{d}.fits" for d in NIGHT.detectors}
    for det in NIGHT.detectors:  # it is now the other exposure, calibrated with the same masters
        assert (_planes(out / "calibrated" / f"{stem}_{det}.fits")
                == _planes(out / "calibrated" / f"{source.removesuffix('.fits')}_{det}.fits"))
    with Registry(out) as registry:  # the registry holds the new checksum of the raw file and its product
        frame = next(r for r in registry.frames() if Path(r.path).name == changed)
        product = next(r for r in registry.products(kind="calibrated") if r["path"].endswith(f"{stem}_CCD1.fits"))
    assert frame.checksum == file_checksum(raw / changed)
    assert {"role": "raw", "path": frame.path, "checksum": frame.checksum} in product["inputs"]


# ---------------------------------------------------------------- killed processes


def test_a_killed_worker_is_survived_with_identical_products(night, reference, tmp_path):
    cluster = LocalDaskProcesses(tmp_path, workers=2)
    try:
        out = tmp_path / "out"
        proc = _reduce_cli(night, out, "--instrument", "wfst", "--scheduler", cluster.address,
                           "--stages", ",".join(STAGES))
        _wait_for(lambda: _first_master(out), "the first master was written", proc)
        victim = cluster.workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        done_when_killed = len(_products(out))
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        _stop(cluster.workers + [cluster.scheduler])
    assert done_when_killed < N_PRODUCTS, "the run had finished before the worker was killed"
    assert proc.returncode == 0, stdout + stderr
    assert f"calibrated images: {N_CALIBRATED}" in stdout
    _assert_same_products(out, reference)


def _stop(processes: list[subprocess.Popen]) -> None:
    """Terminate the processes this test started, killing any that has not exited 10 s later."""
    for proc in processes:
        if proc.poll() is None:
            proc.terminate()
    for proc in processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(pid).children(recursive=True)]


def _gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_killed_driver_leaves_only_whole_files_and_the_rerun_completes(night, reference, tmp_path):
    out = tmp_path / "out"
    proc = _reduce_cli(night, out, "--instrument", "wfst", "--workers", "2", "--stages", ",".join(STAGES))
    # killed among the science tasks: the rerun must skip the recorded masters and finish the rest
    _wait_for(lambda: (out / "calibrated").is_dir() and any((out / "calibrated").glob("*.fits")),
              "the first calibrated image was written", proc)
    workers = _children(proc.pid)  # the local cluster's processes, started by the driver
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # the cluster's processes notice that their parent is gone; a task in flight may finish first
    end = time.monotonic() + 60
    while not all(_gone(pid) for pid in workers) and time.monotonic() < end:
        time.sleep(0.1)
    left = [pid for pid in workers if not _gone(pid)]
    for pid in left:  # never seen; do not leave them running if it happens
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes {left} of the killed run were still running after 60 s"
    assert len(_products(out)) < N_PRODUCTS, "the run had finished before it was killed"
    _assert_whole_files(out)

    summary = run_reduce(night, out, instrument="wfst", stages=STAGES)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert summary.skipped >= N_MASTERS and not summary.masters  # the masters were done and recorded
    _assert_same_products(out, reference)
    _assert_whole_files(out)
    assert not (out / "work").exists()


def test_a_second_run_on_a_busy_output_folder_is_refused(night, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with RunLock(out):  # what a running `lenghu reduce` holds (the kernel drops it if the run dies)
        proc = subprocess.run([sys.executable, "-m", "lenghu", "reduce", str(night), "--out", str(out), "--quiet",
                               "--stages", ",".join(STAGES)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"another lenghu run (pid {os.getpid()}) is using this output folder" in proc.stderr
    assert "choose another --out" in proc.stderr
    assert not (out / "registry.sqlite").exists(), "the refused run touched the folder"


# ---------------------------------------------------------------- generic frames without GAIN/RDNOISE


GENERIC_READ_NOISE_ADU = 4.0


def _generic_frame(folder: Path) -> Path:
    """One science frame of a single-amplifier CCD whose header has sections but no GAIN or RDNOISE."""
    rng = np.random.default_rng(3)
    ny, nx, over = 200, 300, 32
    data = np.full((ny, nx + over), 1000.0)  # the bias level, in the overscan too
    data[:, :nx] += 500.0 + rng.normal(0.0, np.sqrt(500.0), (ny, nx))  # sky: 500 ADU with its Poisson noise
    data += rng.normal(0.0, GENERIC_READ_NOISE_ADU, data.shape)
    header = fits.Header()
    header["IMAGETYP"] = "object"
    header["EXPTIME"] = 10.0
    header["DATE-OBS"] = "2025-11-20T15:00:00"
    header["DATASEC"] = f"[1:{nx},1:{ny}]"
    header["BIASSEC"] = f"[{nx + 1}:{nx + over},1:{ny}]"
    folder.mkdir(parents=True)
    path = folder / "frame.fits"
    fits.PrimaryHDU(np.round(data).astype(np.int16), header=header).writeto(path)
    return path


def _only_product(out: Path) -> fits.Header:
    (path,) = (out / "calibrated").glob("*.fits")
    return fits.getheader(path)


def test_a_generic_frame_takes_gain_and_read_noise_from_the_instrument_file(tmp_path):
    raw = tmp_path / "raw"
    _generic_frame(raw)
    toml = tmp_path / "my_camera.toml"
    toml.write_text('extends = "generic"\nname = "my_camera"\n\n[header_sections]\n'
                    'gain = "2.5 electron/adu"\nread_noise = "7.5 electron"\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_reduce(raw, tmp_path / "out", instrument=str(toml), stages=STAGES)
    assert not [w for w in caught if "measured" in str(w.message)], "the read noise was measured, not taken"
    assert summary.exit_status == 0 and len(summary.calibrated) == 1
    header = _only_product(tmp_path / "out")
    assert header["RDNOISA"] == 7.5  # the file's value, not a measurement
    with fits.open(summary.calibrated[0]) as hdul:
        sci = hdul["SCI"].data
    assert np.median(sci) == pytest.approx(500.0 * 2.5, rel=0.01)  # gain 2.5 applied


def test_a_generic_frame_without_them_uses_gain_1_and_the_overscan_noise_with_a_warning(tmp_path):
    raw = tmp_path / "raw"
    _generic_frame(raw)
    with pytest.warns(UserWarning, match="read noise unknown; measured"):
        summary = run_reduce(raw, tmp_path / "out", instrument="generic", stages=STAGES)
    assert summary.exit_status == 0 and len(summary.calibrated) == 1
    header = _only_product(tmp_path / "out")
    # 4 ADU of Gaussian noise plus 1/12 ADU^2 of rounding, at gain 1
    assert header["RDNOISA"] == pytest.approx(np.hypot(GENERIC_READ_NOISE_ADU, np.sqrt(1 / 12)), rel=0.03)
    with fits.open(summary.calibrated[0]) as hdul:
        sci, var = hdul["SCI"].data, hdul["VAR"].data
    assert np.median(sci) == pytest.approx(500.0, rel=0.01)  # gain 1
    # the variance uses that read noise: sky 500 e- plus read noise squared (and the overscan level's noise)
    assert np.median(var) == pytest.approx(500.0 + header["RDNOISA"] ** 2, rel=0.03)
