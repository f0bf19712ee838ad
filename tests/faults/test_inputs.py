"""Raw inputs that misbehave: a read-only raw folder, a file still being written by the camera, a
calibration frame replaced between runs, and two runs started on one output folder at once."""

from __future__ import annotations

import errno
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from lenghu.pipelines.registry import Registry

from .conftest import N_PRODUCTS, run_reduce
from .helpers import assert_three_outcomes, content, partial_files, products, raw_checksums, reduce_cli, wait_for

pytestmark = pytest.mark.slow


def _read_only_view(root: Path, view: Path) -> bool:
    """Bind-mount ``root`` read-only at ``view``; False where mounting is not permitted."""
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(root), str(view)], capture_output=True).returncode != 0:
        view.rmdir()
        return False
    subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
    return True


@pytest.mark.reliability(kind="fault", case="the raw folder is mounted read-only",
                         promise="the night reduces normally (raw files are only read); products identical")
def test_a_read_only_raw_folder_reduces(night, raw_before, reference, tmp_path, record_property, fitsverify):
    root = night.parent
    view = tmp_path / "ro"
    if _read_only_view(root, view):
        record_property("method", "read-only bind mount")
        try:
            with pytest.raises(OSError) as exc:
                (view / "raw" / "probe").write_bytes(b"x")
            assert exc.value.errno == errno.EROFS
            out = tmp_path / "out"
            summary = run_reduce(view / "raw", out)
        finally:
            subprocess.run(["umount", str(view)], check=True)
    else:  # not root: file modes are enough (root would ignore them)
        record_property("method", "chmod a-w on the folder and files")
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        try:
            out = tmp_path / "out"
            summary = run_reduce(night, out)
        finally:
            for path in [root, *root.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed="exit 0")


def _science_files(raw: Path) -> list[Path]:
    from astropy.io import fits

    return sorted(p for p in raw.glob("*.fits")
                  if str(fits.getheader(p).get("IMAGETYP", "")).lower() in ("science", "object"))


@pytest.mark.parametrize("cut", [
    pytest.param(cut, marks=pytest.mark.reliability(
        kind="fault", case=f"a raw science file still being written when the run starts ({what})",
        promise="the file is never read half: it is recorded as failed with a typed reason naming it, the "
                "others are reduced; once complete, the rerun reduces it, products identical"))
    for cut, what in (("header", "only part of its header written"), ("data", "header and half its data"))])
def test_a_raw_file_still_being_written_is_never_read_half(cut, night, raw_before, reference, tmp_path,
                                                           record_property, fitsverify):
    target = _science_files(night)[-1]
    whole = target.read_bytes()
    target.write_bytes(whole[:1500] if cut == "header" else whole[: len(whole) // 2])
    out = tmp_path / "out"
    summary = run_reduce(night, out)
    failed = {Path(p).name: reason for p, reason in summary.failed_frames.items()}
    assert summary.exit_status == 3 and list(failed) == [target.name], summary.failed_frames
    assert "TruncatedFileError" in failed[target.name] and target.name in failed[target.name]
    stem = target.name.removesuffix(".fits")
    assert not [n for n in products(out) if stem in n], "a product was made from half a file"
    assert not partial_files(out)

    target.write_bytes(whole)  # the camera finishes writing
    summary = run_reduce(night, out)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed=f"first run: exit 3, {failed[target.name].split(':')[0]} for it; "
                                   "after completion: exit 0")


@pytest.mark.reliability(kind="fault", case="a raw science file growing in 64 KiB steps while the run reads the night",
                         promise="each of its products is the whole file's or absent (frame failed, named); "
                                 "the rerun completes; products identical")
def test_a_raw_file_growing_during_the_run(night, raw_before, reference, tmp_path, record_property, fitsverify):
    target = _science_files(night)[-1]
    whole = target.read_bytes()
    target.write_bytes(whole[:2880])
    stop = threading.Event()

    def camera():
        size = 2880
        while size < len(whole) and not stop.is_set():
            size = min(len(whole), size + 65536)
            with open(target, "ab") as handle:
                handle.write(whole[handle.tell():size])
            time.sleep(0.05)

    writer = threading.Thread(target=camera)
    out = tmp_path / "out"
    writer.start()
    try:
        summary = run_reduce(night, out)
    finally:
        stop.set()
        writer.join()
    target.write_bytes(whole)
    stem = target.name.removesuffix(".fits")
    made = {n: p for n, p in products(out).items() if stem in n}
    ref = products(reference)
    assert all(content(p) == content(ref[n]) for n, p in made.items()), "a product was made from half a file"
    if not made:
        assert any(target.name in reason for reason in summary.failed_frames.values())
    summary = run_reduce(night, out)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed=f"products of the growing file made in the first run: {len(made)} (each "
                                   "identical to the whole file's); rerun exit 0")


@pytest.mark.reliability(kind="fault", case="a raw bias frame replaced between two runs",
                         promise="the bias masters and everything made from them (darks, flats, calibrated "
                                 "images, catalogues) are redone; a third run skips everything")
def test_a_changed_bias_redoes_everything_downstream(night, raw_before, tmp_path, record_property):
    out = tmp_path / "out"
    assert run_reduce(night, out).exit_status == 0
    before = {n: content(p) for n, p in products(out).items()}
    stamps = {n: p.stat().st_ino for n, p in products(out).items()}
    from astropy.io import fits

    biases = sorted(p for p in night.glob("*.fits")
                    if str(fits.getheader(p).get("IMAGETYP", "")).lower() == "bias")
    shutil.copyfile(biases[1], biases[0])  # a different bias now under this name
    summary = run_reduce(night, out)
    assert summary.exit_status == 0 and summary.skipped == 0
    redone = [n for n, p in products(out).items() if p.stat().st_ino != stamps[n]]
    assert sorted(redone) == sorted(stamps), "a product made from the old bias was kept"
    changed = [n for n, p in products(out).items() if content(p) != before[n]]
    assert any(n.startswith("masters/bias") for n in changed)
    with Registry(out) as registry:
        row = next(r for r in registry.frames() if Path(r.path).name == biases[0].name)
    assert row.checksum == raw_checksums(night)[biases[0].name]
    third = run_reduce(night, out)
    assert third.skipped == N_PRODUCTS and not third.masters
    record_property("data_lost", 0)
    record_property("observed", f"{len(redone)} of {N_PRODUCTS} products redone, {len(changed)} with new data; "
                                f"third run skipped {third.skipped}")


@pytest.mark.reliability(kind="fault", case="two `lenghu reduce` processes started on the same OUT at once",
                         promise="the second refuses with exit 1 naming the running one; the first finishes "
                                 "with products identical to an undisturbed run")
def test_two_runs_on_one_output_folder(night, raw_before, reference, tmp_path, record_property, fitsverify):
    out = tmp_path / "out"
    first = reduce_cli(night, out, "--instrument", "wfst", "--workers", "2")
    wait_for(lambda: (out / "registry.sqlite").exists(), "the first run opened its registry", first)
    second = reduce_cli(night, out, "--instrument", "wfst", "--workers", "2")
    _, err2 = second.communicate(timeout=120)
    still_running = first.poll() is None
    _, err1 = first.communicate(timeout=300)
    assert still_running, "the first run had ended before the second was refused: no overlap was tested"
    assert second.returncode == 1, err2
    assert f"another lenghu run (pid {first.pid}) is using this output folder" in err2
    assert "Traceback" not in err2
    assert first.returncode == 0, err1
    assert_three_outcomes(night, raw_before, out, reference, record_property, fitsverify,
                          observed=f"second: exit 1 '{err2.strip()[-100:]}'; first: exit 0")
