"""A night with broken files: good frames give products, bad ones are listed with reasons."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
from astropy.io import fits

from lenghu.pipelines.registry import Registry


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_bad_frames_are_recorded_and_good_ones_reduced(real_data, tmp_path, reduce_run):
    src = real_data / "ccd" / "kast_blue"
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in src.glob("*.fits.gz"):
        shutil.copy(path, raw / path.name)
    bias_bytes = gzip.decompress((src / "b22.fits.gz").read_bytes())
    (raw / "truncated.fits").write_bytes(bias_bytes[: len(bias_bytes) // 2])
    (raw / "empty.fits").write_bytes(b"")
    (raw / "garbage.fits").write_bytes(np.random.default_rng(1).integers(0, 255, 2880, dtype=np.uint8).tobytes())
    with fits.open(src / "b23.fits.gz") as hdul:
        header = hdul[0].header.copy()
        data = hdul[0].data
        fits.PrimaryHDU(data[:, :2000], header=header).writeto(raw / "wrong_shape.fits")
        nan_header = header.copy()
        for key in ("BZERO", "BSCALE"):
            nan_header.remove(key, ignore_missing=True)
        fits.PrimaryHDU(np.full(data.shape, np.nan, dtype=np.float32), header=nan_header).writeto(raw / "all_nan.fits")
    before = {p.name: _sha(p) for p in raw.iterdir()}

    out = tmp_path / "out"
    summary = reduce_run(raw, out, instrument="kast_blue")

    assert summary.exit_status == 3
    failed = {p.split("/")[-1]: reason for p, reason in summary.failed_frames.items()}
    assert set(failed) == {"truncated.fits", "empty.fits", "garbage.fits", "wrong_shape.fits", "all_nan.fits"}
    assert "TruncatedFileError" in failed["truncated.fits"]
    assert "UnreadableFileError" in failed["empty.fits"] and "UnreadableFileError" in failed["garbage.fits"]
    assert "ShapeError" in failed["wrong_shape.fits"] and "2000" in failed["wrong_shape.fits"]
    assert "not finite" in failed["all_nan.fits"]
    for name, reason in failed.items():
        assert name in reason, f"the reason should name the file: {reason}"
    assert sorted(p.split("/")[-1] for p in summary.calibrated) == ["b24_KAST_BLUE.fits", "b27_KAST_BLUE.fits"]
    with Registry(out) as reg:
        rows = {r.path.split("/")[-1]: r for r in reg.frames()}
        bias = reg.products(kind="master_bias")[0]
    assert rows["wrong_shape.fits"].status == "failed" and rows["b21.fits.gz"].status == "ok"
    assert bias["quality"]["n_inputs"] == 3  # b21, b22, b23: the broken biases were left out
    assert {p.name: _sha(p) for p in raw.iterdir()} == before, "raw files were modified"
    assert not list(out.rglob("*.tmp-*")), "a temporary file was left behind"
