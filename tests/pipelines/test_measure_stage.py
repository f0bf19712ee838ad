"""``lenghu reduce`` measures what it calibrates: WCS fitted despite a pointing error, zeropoints, catalogues."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lenghu.cli import main
from lenghu.pipelines.registry import Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def measured_night(tmp_path_factory):
    from tests.pipelines.conftest import run_reduce

    root = tmp_path_factory.mktemp("measured")
    night = root / "night"
    assert main(["simulate", "night", str(night), "--scale", "1/8", "--detectors", "CCD5", "--biases", "3",
                 "--darks", "0", "--flats", "2", "--science", "2", "--pointing-error", "2,1", "--seed", "11",
                 "--quiet"]) == 0
    summary = run_reduce(night / "raw", root / "out")
    return night, root / "out", summary


def test_products_get_a_fitted_wcs_despite_the_pointing_error(measured_night):
    night, out, summary = measured_night
    assert summary.exit_status == 0 and not summary.flagged, summary.flagged
    plan = json.loads((night / "truth" / "night.json").read_text())
    assert plan["pointing_error"]["shift_arcmin"] == pytest.approx(2.0)
    science = [e for e in plan["exposures"] if e["imagetyp"] == "object"]
    assert len(summary.catalogs) == len(science) == 2
    for exposure in science:
        stem = exposure["file"].split("/")[-1].replace(".fits", "")
        product = out / "calibrated" / f"{stem}_CCD5.fits"
        with fits.open(product) as hdul:
            assert hdul[0].header["ASTSTAT"] == "OK"
            fitted = WCS(hdul["SCI"].header)
        true = WCS(fits.getheader(night / exposure["truth"]["wcs"], "CCD5"))
        stars = Table.read(night / exposure["truth"]["stars"])
        stars = stars[(stars["detector"] == "CCD5") & ~stars["saturated"]]
        ra, dec = fitted.all_pix2world(stars["x"], stars["y"], 0)
        offsets = np.hypot((ra - stars["ra"]) * np.cos(np.radians(stars["dec"])), dec - stars["dec"]) * 3600
        assert np.sqrt(np.mean(offsets**2)) < 0.03, "fitted WCS disagrees with the truth by more than 0.03 arcsec"
        ra0, dec0 = true.all_pix2world(stars["x"], stars["y"], 0)
        assert np.allclose(ra0, stars["ra"], atol=1e-6) and np.allclose(dec0, stars["dec"], atol=1e-6)


def test_zeropoints_and_catalogues(measured_night, fitsverify):
    night, out, _ = measured_night
    plan = json.loads((night / "truth" / "night.json").read_text())
    phot = plan["photometry"]["r"]
    with Registry(out) as registry:
        catalogs = registry.products(kind="catalog")
    assert len(catalogs) == 2
    for row in catalogs:
        q = row["quality"]
        assert q["astrometry"] == "ok" and q["astrometry_rms_arcsec"] < 0.1
        truth = phot["zeropoint_mag_1e_per_s"] - phot["extinction_mag_per_airmass"] * (q["airmass"] - 1)
        assert q["zeropoint"] == pytest.approx(truth, abs=0.01)
        table = Table.read(row["path"])
        assert {"ra", "dec", "flux_auto", "flux_auto_err", "mag_auto", "flags"} <= set(table.colnames)
        assert all(table[c].unit is not None for c in ("ra", "dec", "flux_auto", "mag_auto", "xwin"))
        errors, report = fitsverify(row["path"])
        assert errors == 0, report


def test_lenghu_measure_leaves_the_image_alone(measured_night, tmp_path):
    night, out, _ = measured_night
    product = sorted((out / "calibrated").glob("*.fits"))[0]
    before = product.read_bytes()
    assert main(["measure", str(product), "--refcat", str(night / "refcat.fits"), "--out",
                 str(tmp_path / "c.parquet")]) == 0
    assert product.read_bytes() == before
    from lenghu.measure import read_catalog

    table = read_catalog(tmp_path / "c.parquet")
    assert len(table) > 20 and str(table["ra"].unit) == "deg"


def test_dithered_exposures_are_coadded_and_measured(measured_night, fitsverify):
    night, out, summary = measured_night
    assert len(summary.coadds) == 1, "two dithered r exposures of one field and CCD make one coadd"
    with Registry(out) as registry:
        coadd = registry.products(kind="coadd")[0]
        catalog = registry.products(kind="coadd_catalog")[0]
    assert coadd["quality"]["n_inputs"] == 2 and len(coadd["inputs"]) == 2
    with fits.open(coadd["path"]) as hdul:
        assert {"SCI", "VAR", "WEIGHT", "NEXP"} <= {h.name for h in hdul}
        assert WCS(hdul["SCI"].header).has_celestial
        assert hdul["NEXP"].data.max() == 2
    assert catalog["quality"]["n_sources"] > 20
    for path in (coadd["path"], catalog["path"]):
        errors, report = fitsverify(path)
        assert errors == 0, report


def test_night_report_loads_in_headless_chromium(measured_night):
    import re
    import shutil
    import subprocess

    night, out, summary = measured_night
    report = out / "report" / "index.html"
    assert summary.report == str(report) and report.is_file()
    text = report.read_text()
    for heading in ("Frames", "Masters", "Seeing, sky and zeropoints", "Astrometry", "Calibrated images",
                    "Coadds", "Resources", "Energy estimate"):
        assert heading in text, heading
    assert "src=\"http" not in text and "src='http" not in text, "the report must be self-contained"
    browser = shutil.which("chromium")
    assert browser, "chromium is installed by `make setup` (tools/ensure_system_packages.sh)"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    loaded = re.search(r'data-images="(\d+)/(\d+)"', proc.stdout)
    assert loaded, "the page's load script did not run"
    ok, total = map(int, loaded.groups())
    assert total >= 8 and ok == total, f"{total - ok} of {total} images did not load"
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
