"""What every fault case checks, and the processes it disturbs.

The three outcomes (issue 8): no raw file changed (SHA-256 of every raw file
before and after), no partial output (no temporary left, every FITS file opens
with its CHECKSUM/DATASUM verified and passes fitsverify), and a rerun gives
the same products as an undisturbed run (SCI/VAR/MASK planes of every master
and calibrated image, and every catalogue's rows, compared byte for byte).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from lenghu.io.atomic import TEMP_MARK

REPO = Path(__file__).resolve().parents[2]
KILLER = Path(__file__).with_name("kill_on_task.py")
#: Stages the fault cases run: masters, signature removal and measurement (coadds and the HTML
#: report add time and nothing these cases are about).
STAGES = ("ingest", "bias", "dark", "flat", "science", "measure")
PRODUCT_FOLDERS = ("masters", "calibrated", "catalogs")


def raw_checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def products(out: Path, folders=PRODUCT_FOLDERS) -> dict[str, Path]:
    """Masters, calibrated images and catalogues by path relative to ``out``."""
    return {str(p.relative_to(out)): p
            for folder in folders for p in sorted((out / folder).glob("*.fits"))}


def content(path: Path) -> dict[str, bytes]:
    """The data of a product that must not depend on how the run went: image planes or table rows."""
    with fits.open(path) as hdul:
        if "SCI" in hdul:
            return {name: np.ascontiguousarray(hdul[name].data).tobytes() for name in ("SCI", "VAR", "MASK")}
        return {f"table{i}": np.asarray(hdu.data).tobytes() for i, hdu in enumerate(hdul)
                if isinstance(hdu, fits.BinTableHDU)}


def lost_products(out: Path, reference: Path, folders=PRODUCT_FOLDERS) -> list[str]:
    """Products of the undisturbed run that ``out`` lacks or holds with different data."""
    ours, theirs = products(out, folders), products(reference, folders)
    lost = [name for name in theirs if name not in ours]
    lost += [name for name in theirs if name in ours and content(ours[name]) != content(theirs[name])]
    lost += [f"{name} (extra)" for name in ours if name not in theirs]
    return sorted(lost)


def partial_files(out: Path, verifier=None) -> list[str]:
    """Temporaries left behind, and FITS files that do not open whole with verified checksums."""
    bad = [f"{p} (temporary)" for p in out.rglob(f"*{TEMP_MARK}*")]
    for path in sorted(out.rglob("*.fits")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # astropy reports a checksum mismatch as a warning
                with fits.open(path, checksum=True) as hdul:
                    hdul.verify("exception")
                    for hdu in hdul:
                        if "CHECKSUM" not in hdu.header or "DATASUM" not in hdu.header:
                            raise ValueError("no checksum to verify")
                        if hdu.data is not None:
                            np.asarray(hdu.data)
        except Exception as exc:  # noqa: BLE001 - any failure to read a product whole is what we report
            bad.append(f"{path}: {type(exc).__name__}: {exc}")
            continue
        if verifier is not None:
            errors, report = verifier(path)
            if errors:
                bad.append(f"{path}: fitsverify found {errors} error(s)")
    return bad


def catalogs_differing(out: Path, reference: Path, atol_deg: float) -> list[str]:
    """Catalogues whose rows differ from the reference's beyond ``atol_deg`` in RA/Dec (or at all elsewhere)."""
    from astropy.table import Table

    ours, theirs = products(out, ("catalogs",)), products(reference, ("catalogs",))
    bad = sorted(set(ours) ^ set(theirs))
    for name in set(ours) & set(theirs):
        a, b = Table.read(ours[name]), Table.read(theirs[name])
        if a.colnames != b.colnames or len(a) != len(b):
            bad.append(name)
            continue
        for column in a.colnames:
            x, y = np.asarray(a[column]), np.asarray(b[column])
            if column in ("ra", "dec") and np.allclose(x, y, rtol=0, atol=atol_deg, equal_nan=True):
                continue
            if column.startswith("astrom_d") and np.allclose(x, y, rtol=0, atol=1e-6, equal_nan=True):
                continue  # residuals in arcsec: 1 micro-arcsec
            if x.tobytes() != y.tobytes():
                bad.append(f"{name}:{column}")
    return bad


def assert_three_outcomes(raw: Path, raw_before: dict[str, str], out: Path, reference: Path,
                          record_property, verifier=None, observed: str = "", exact=PRODUCT_FOLDERS) -> None:
    """Assert (and record for the table) the three promises of a fault case after its rerun.

    ``exact``: the product folders compared byte for byte (all by default).
    """
    changed = sorted(k for k in set(raw_before) | set(raw_checksums(raw))
                     if raw_before.get(k) != raw_checksums(raw).get(k))
    partial = partial_files(out, verifier)
    lost = lost_products(out, reference, exact)
    record_property("data_lost", len(changed) + len(lost))
    n = len(products(reference, exact))
    record_property("observed", (observed + "; " if observed else "")
                    + f"raw files changed: {len(changed)}; partial files: {len(partial)}; "
                    f"products differing from the undisturbed run: {len(lost)} of {n}"
                    + ("" if exact == PRODUCT_FOLDERS else f" ({', '.join(exact)})"))
    assert not changed, f"raw files changed: {changed}"
    assert not partial, f"partial or unreadable outputs: {partial}"
    assert not lost, f"products lost or different: {lost}"


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll ``condition`` every 20 ms; fail if ``proc`` ends first or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before {what}")
        if time.monotonic() > end:
            raise TimeoutError(what)
        time.sleep(0.02)


def reduce_args(raw: Path, out: Path, *extra: str, stages=STAGES) -> list[str]:
    """The command line of ``lenghu reduce RAW --out OUT --quiet``."""
    return [sys.executable, "-m", "lenghu", "reduce", str(raw), "--out", str(out), "--quiet",
            "--stages", ",".join(stages), *extra]


def reduce_cli(raw: Path, out: Path, *extra: str, env: dict[str, str] | None = None, stages=STAGES,
               **popen) -> subprocess.Popen:
    """``lenghu reduce RAW --out OUT --quiet`` as a child process."""
    return subprocess.Popen(reduce_args(raw, out, *extra, stages=stages),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})), **popen)


class DaskProcesses:
    """A ``dask scheduler`` and ``--no-nanny`` workers on 127.0.0.1, armed with :mod:`kill_on_task`.

    ``fault_task``: the task-key prefix whose start fires a SIGKILL (None: no fault);
    the victim is the worker running it, or the pid written to :attr:`victim_file`.
    """

    def __init__(self, folder: Path, workers: int = 2, fault_task: str | None = None,
                 kill_driver: bool = False, extra_args: tuple[str, ...] = (), env: dict | None = None,
                 security=None):
        folder.mkdir(parents=True, exist_ok=True)
        self.marker = folder / "fault-fired"
        self.victim_file = folder / "victim.pid"
        base = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False", **(env or {}))
        worker_env = dict(base)
        if fault_task:
            worker_env.update(LENGHU_FAULT_TASK=fault_task, LENGHU_FAULT_MARKER=str(self.marker))
            if kill_driver:
                worker_env["LENGHU_FAULT_VICTIM_FILE"] = str(self.victim_file)
        scheduler_file = folder / "scheduler.json"
        self.scheduler = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file), *extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=base)
        self.workers: list[subprocess.Popen] = []
        try:
            wait_for(scheduler_file.exists, "the scheduler wrote its address", self.scheduler, 60)
            self.address = json.loads(scheduler_file.read_text())["address"]
            self.workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--host", "127.0.0.1",
                     "--nthreads", "1", "--no-nanny", "--memory-limit", "2GB", "--no-dashboard",
                     "--preload", str(KILLER), *extra_args],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=worker_env, cwd=folder)
                for _ in range(workers)
            ]
            self._wait_workers(workers, security)
        except BaseException:
            self.close()
            raise

    def _wait_workers(self, n: int, security) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s", security=security) as client:
            client.wait_for_workers(n, timeout=60)

    def alive(self) -> list[subprocess.Popen]:
        return [w for w in self.workers if w.poll() is None]

    def close(self) -> None:
        procs = self.workers + [self.scheduler]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)

    def __enter__(self) -> "DaskProcesses":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
