"""A damaged run registry: ``lenghu reduce`` stops with a clear error, ``lenghu registry rebuild OUT``
recovers it from the products' provenance, and the rerun skips every master and calibrated image."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lenghu.pipelines.registry import Registry, RegistryError

from .conftest import NIGHT, run_reduce
from .helpers import assert_three_outcomes, catalogs_differing, products, reduce_cli

pytestmark = pytest.mark.slow

N_MASTERS = 3 * len(NIGHT.detectors)
N_CALIBRATED = NIGHT.n_science * len(NIGHT.detectors)
#: Catalogues are redone after a rebuild, measuring products whose WCS the first run fitted: the fit
#: then starts from that solution and lands on it again to ~3e-13 deg (seen: 2.8e-13 in RA), not to
#: the bit, so catalogues are compared to 1e-9 deg (0.004 milli-arcsec); everything else bit for bit.
CATALOG_ATOL_DEG = 1e-9


def _outcomes(night, raw_before, out, reference, record_property, fitsverify, observed):
    assert not catalogs_differing(out, reference, CATALOG_ATOL_DEG), catalogs_differing(out, reference,
                                                                                        CATALOG_ATOL_DEG)
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed=observed + "; catalogues redone, equal to 1e-9 deg",
                          exact=("masters", "calibrated"))


def _damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "garbage header":
        data[:100] = np.random.default_rng(0).integers(0, 256, 100, dtype=np.uint8).tobytes()
    elif how == "truncated":
        data = data[: len(data) // 3]
    elif how == "garbage pages":
        rng = np.random.default_rng(1)
        start = 4096  # keep the header page: the damage shows only when the tables are read
        data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", [
    pytest.param(how, marks=pytest.mark.reliability(
        kind="fault", case=f"registry.sqlite damaged ({how}) between runs",
        promise="reduce exits 1 naming the file and the rebuild command; `lenghu registry rebuild` recovers it "
                "from the products; the rerun skips every master and calibrated image and gives identical "
                "products"))
    for how in ("garbage header", "truncated", "garbage pages")])
def test_a_damaged_registry_is_reported_and_rebuilt_from_the_products(how, night, raw_before, reference, tmp_path,
                                                                       record_property, fitsverify):
    out = tmp_path / "out"
    assert run_reduce(night, out).exit_status == 0
    registry_file = out / Registry.FILENAME
    assert not (out / "registry.sqlite-wal").exists()  # closed cleanly: everything is in the file
    masters_before = {n: p.stat().st_ino for n, p in products(out).items() if n.startswith("masters/")}
    _damage(registry_file, how)

    proc = reduce_cli(night, out, "--instrument", "wfst", "--workers", "1")
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert str(registry_file) in stderr and f"lenghu registry rebuild {out}" in stderr, stderr

    rebuild = subprocess.run([sys.executable, "-m", "lenghu", "registry", "rebuild", str(out)],
                             capture_output=True, text=True, timeout=120)
    assert rebuild.returncode == 0, rebuild.stderr
    assert f"products recovered: {N_MASTERS + N_CALIBRATED}" in rebuild.stdout
    assert list(out.glob("registry.sqlite.damaged-*")), "the damaged registry was not kept"
    with Registry(out) as registry:
        assert len(registry.products(kind="calibrated")) == N_CALIBRATED
        assert {r.frame_type for r in registry.frames()} == {"bias", "dark", "flat", "science"}

    summary = run_reduce(night, out)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert summary.skipped == N_MASTERS + N_CALIBRATED, "the rebuilt registry did not let the rerun skip"
    assert not summary.masters
    assert {n: p.stat().st_ino for n, p in products(out).items() if n.startswith("masters/")} == masters_before
    _outcomes(night, raw_before, out, reference, record_property, fitsverify,
              observed=f"reduce exit 1 ('{stderr.strip().splitlines()[-1][-90:]}'); rebuild recovered "
                                   f"{N_MASTERS + N_CALIBRATED} products; rerun skipped them all")


@pytest.mark.reliability(kind="fault", case="a product damaged on disk, then `lenghu registry rebuild`",
                         promise="the damaged product is listed and not recorded; the rerun redoes only it")
def test_rebuild_leaves_out_a_damaged_product_and_the_rerun_redoes_it(night, raw_before, reference, tmp_path,
                                                                       record_property, fitsverify):
    out = tmp_path / "out"
    assert run_reduce(night, out).exit_status == 0
    victim = sorted((out / "calibrated").glob("*.fits"))[0]
    data = bytearray(victim.read_bytes())
    data[-5000] ^= 0xFF  # one flipped byte in the data: its DATASUM no longer verifies
    victim.write_bytes(bytes(data))
    (out / Registry.FILENAME).write_bytes(b"not a database" * 100)

    rebuild = subprocess.run([sys.executable, "-m", "lenghu", "registry", "rebuild", str(out)],
                             capture_output=True, text=True, timeout=120)
    assert rebuild.returncode == 0, rebuild.stderr
    assert f"not whole, will be redone: {victim}" in rebuild.stdout
    summary = run_reduce(night, out)
    assert summary.exit_status == 0
    assert summary.skipped == N_MASTERS + N_CALIBRATED - 1
    _outcomes(night, raw_before, out, reference, record_property, fitsverify,
              observed="rebuild listed the damaged product; the rerun redid it alone")


@pytest.mark.reliability(kind="fault", case="`lenghu registry rebuild` while a run holds the output folder",
                         promise="refused with exit 1 naming the holder; the registry untouched")
def test_rebuild_is_refused_while_a_run_holds_the_folder(tmp_path, record_property):
    from lenghu.pipelines.lock import RunLock

    out = tmp_path / "out"
    out.mkdir()
    (out / Registry.FILENAME).write_bytes(b"x" * 10)
    with RunLock(out):
        proc = subprocess.run([sys.executable, "-m", "lenghu", "registry", "rebuild", str(out)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "another lenghu run" in proc.stderr
    assert (out / Registry.FILENAME).read_bytes() == b"x" * 10
    record_property("data_lost", 0)
    record_property("observed", proc.stderr.strip()[:160])


def test_a_damaged_registry_raises_a_typed_error(tmp_path):
    (tmp_path / Registry.FILENAME).write_bytes(b"\x00garbage" * 600)
    with pytest.raises(RegistryError, match="registry rebuild"):
        Registry(tmp_path)
