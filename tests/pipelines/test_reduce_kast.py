"""The real Kast blue night reduces end to end and matches ccdproc on the same steps."""

from __future__ import annotations

import warnings
from dataclasses import replace

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.stats import mad_std

from lenghu.calib.isr import IsrConfig
from lenghu.calib.cosmics import CosmicRayConfig
from lenghu.pipelines.config import ReduceConfig
from lenghu.pipelines.registry import Registry

ccdproc = pytest.importorskip("ccdproc", reason="ccdproc is a test dependency (pip install lenghu[test])")

BIASES = ("b21", "b22", "b23")
FLATS = ("b11", "b12", "b13")
AMPS = ((slice(0, 1024), slice(2049, 2080)), (slice(1024, 2048), slice(2080, 2111)))  # data, overscan (0-based)
GAIN = 1.2


@pytest.fixture(scope="module")
def kast_run(real_data, tmp_path_factory):
    from tests.pipelines.conftest import run_reduce

    out = tmp_path_factory.mktemp("kast_out")
    config = ReduceConfig(isr=IsrConfig(precision="float64"))
    summary = run_reduce(real_data / "ccd" / "kast_blue", out, instrument="kast_blue", config=config)
    return out, summary


def _ccdproc_frame(path):
    """ccdproc's overscan (per row median), trim and gain for both amplifiers."""
    raw = CCDData.read(path, unit="adu")
    parts = []
    for data, overscan in AMPS:
        amp = CCDData(raw.data[:, :].astype(np.float64), unit="adu")
        amp = ccdproc.subtract_overscan(amp, overscan=amp[:, overscan], median=True, overscan_axis=1)
        parts.append(amp.data[:, data])
    ccd = CCDData(np.hstack(parts), unit="adu")
    return ccdproc.gain_correct(ccd, GAIN * u.electron / u.adu)


def _combine(ccds, **kw):
    return ccdproc.combine(ccds, method="median", sigma_clip=True, sigma_clip_low_thresh=3,
                           sigma_clip_high_thresh=3, sigma_clip_func=np.ma.median,
                           sigma_clip_dev_func=mad_std, **kw)


def test_kast_night_reduces_end_to_end(kast_run):
    out, summary = kast_run
    assert summary.exit_status == 0, summary.failed_frames
    names = sorted(p.split("/")[-1] for p in summary.masters)
    assert names == ["bias_KAST_BLUE.fits", "flat_KAST_BLUE_600_4310.fits"]
    calibrated = sorted(p.split("/")[-1] for p in summary.calibrated)
    assert calibrated == ["b24_KAST_BLUE.fits", "b27_KAST_BLUE.fits"]
    with Registry(out) as reg:
        types = {row.path.split("/")[-1]: row.frame_type for row in reg.frames()}
        products = reg.products(kind="calibrated")
    assert types["b1.fits.gz"] == "arc" and types["b21.fits.gz"] == "bias" and types["b11.fits.gz"] == "flat"
    assert all(p["missing"] == ["dark"] for p in products)
    with fits.open(out / "calibrated" / "b27_KAST_BLUE.fits") as hdul:
        assert hdul[0].header["MISSCAL"] == "dark"
        # overscan levels agree with what the real-data README measured (943 and 965 ADU)
        assert hdul[0].header["OVSCNA"] == pytest.approx(943, abs=5)
        assert hdul[0].header["OVSCNB"] == pytest.approx(965, abs=5)
        assert hdul["SCI"].header["BUNIT"] == "electron"
        assert {"ROLE", "PATH", "CHECKSUM"} <= set(hdul["PROVENANCE"].columns.names)
        roles = list(hdul["PROVENANCE"].data["ROLE"])
        assert roles == ["raw", "bias", "flat"]


def test_kast_products_pass_fitsverify(kast_run, fitsverify):
    out, _ = kast_run
    for path in sorted(out.glob("*/*.fits")):
        errors, report = fitsverify(path)
        assert errors == 0, report


def test_kast_matches_ccdproc(kast_run, real_data):
    out, _ = kast_run
    folder = real_data / "ccd" / "kast_blue"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bias = _combine([_ccdproc_frame(folder / f"{n}.fits.gz") for n in BIASES])
        flats = [ccdproc.subtract_bias(_ccdproc_frame(folder / f"{n}.fits.gz"), bias) for n in FLATS]
        # Each flat is normalised by its median before combining, as lenghu does. (ccdproc's own
        # `scale=` argument would sigma-clip the *unscaled* values, a different algorithm.)
        flat = _combine([f.divide(np.median(f.data) * u.dimensionless_unscaled) for f in flats])
        science = ccdproc.subtract_bias(_ccdproc_frame(folder / "b27.fits.gz"), bias)
        reference = ccdproc.flat_correct(science, flat)
    with fits.open(out / "masters" / "bias_KAST_BLUE.fits") as hdul:
        ours_bias = hdul["SCI"].data
    np.testing.assert_allclose(ours_bias, bias.data, rtol=1e-4, atol=1e-4 * np.abs(bias.data).mean())
    with fits.open(out / "calibrated" / "b27_KAST_BLUE.fits") as hdul:
        ours = hdul["SCI"].data.astype(np.float64)
    ref = reference.data
    # 1e-4 relative to each pixel's value; pixels near zero are compared on the image's scale instead.
    scale = np.maximum(np.abs(ref), np.median(np.abs(ref)))
    assert np.max(np.abs(ours - ref) / scale) < 1e-4
