"""``lenghu simulate night``: the raw files hold what the instrument file and the truth say.

The raw files are read with astropy directly (the raw reader is written
against the same contract, ``docs/raw_format.md``, in parallel).
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.utils import iers
from astropy.wcs import WCS

from lenghu.errors import ConfigError
from lenghu.instruments import Section, load_instrument, scale_instrument
from lenghu.simulate.config import NightConfig, parse_scale
from lenghu.simulate.night import plan_night, simulate_night

# Truth tables carry TUNIT = 'electron' (outside the FITS unit standard, so astropy warns on
# reading); the true-WCS HDUs have no data (astropy notes the WCS has more axes than the image).
pytestmark = [
    pytest.mark.filterwarnings("ignore:'electron' did not parse as fits unit"),
    pytest.mark.filterwarnings("ignore:The WCS transformation has more axes"),
]

AMPS = "ABCDEFGHIJKLMNOP"
SCALE = 1 / 8  # 1152 x 1154 pixels per CCD: amplifiers of 144 x 577 pixels, 8 overscan columns
N_BIAS = 9


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict:
    """A 1/8-scale night on the central CCD and a corner CCD: 9 biases, 2 darks, 2 flats, 3 science."""
    out = tmp_path_factory.mktemp("night")
    config = NightConfig(
        scale=SCALE, seed=11, n_bias=N_BIAS, n_dark=2, n_flat=2, n_science=3, filters=("r",),
        detectors=("CCD5", "CCD9"),
    )
    summary = simulate_night(config, out, progress=False)
    plan = json.loads((out / "truth" / "night.json").read_text())
    files = {e["imagetyp"]: [] for e in plan["exposures"]}
    for e in plan["exposures"]:
        files[e["imagetyp"]].append(e)
    return {"out": out, "summary": summary, "plan": plan, "by_type": files, "config": config}


def _instrument():
    return scale_instrument(load_instrument("wfst"), SCALE)


def _bias_truth(out: Path, det: str) -> np.ndarray:
    return fits.getdata(out / "truth" / f"bias_{det}.fits").astype(np.float64)


def _electrons(out: Path, exposure: dict, det: str) -> np.ndarray:
    """The assembled CCD in electrons: (raw - noiseless bias) x gain, amplifier by amplifier."""
    with fits.open(out / exposure["file"]) as hdul:
        header = hdul[det].header
        raw = hdul[det].data.astype(np.float64)
    raw -= _bias_truth(out, det)
    image = np.zeros(Section.from_fits(header["DETSIZE"]).shape)
    for a in AMPS:
        data = Section.from_fits(header[f"DATASEC{a}"])
        ccd = Section.from_fits(header[f"CCDSEC{a}"])
        image[ccd.slices] = raw[data.slices] * header[f"GAIN{a}"]
    return image


def _robust_std(values: np.ndarray) -> float:
    """Standard deviation after 5-sigma clipping (efficient like the plain std for Gaussian noise)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    keep = np.ones(values.size, bool)
    for _ in range(5):
        centre, spread = np.mean(values[keep]), np.std(values[keep])
        keep = np.abs(values - centre) < 5 * spread
    return float(np.std(values[keep]))


# ---------------------------------------------------------------- bias level and noise

def test_overscan_level_and_read_noise_match_the_instrument(night):
    out, biases = night["out"], night["by_type"]["bias"]
    inst = _instrument()
    for det_name in ("CCD5", "CCD9"):
        det = inst.detector(det_name)
        truth = _bias_truth(out, det_name)
        stacks = []
        for e in biases:
            with fits.open(out / e["file"]) as hdul:
                stacks.append(hdul[det_name].data.astype(np.float64))
        for amp in det.amplifiers:
            sl = amp.overscan_section.slices
            pixels = np.stack([s[sl] for s in stacks])
            # 9 biases x 577 rows x 8 columns = 41544 pixels per amplifier: the sample std
            # scatters by 1/sqrt(2N) = 0.35%, so a 2% tolerance is a 5.7-sigma test.
            assert pixels.size > 40000
            level = np.median(pixels)
            assert level == pytest.approx(amp.bias_level.value, rel=0.02)
            noise = _robust_std(pixels - truth[sl])
            assert noise == pytest.approx(amp.read_noise.value / amp.gain.value, rel=0.02), (det_name, amp.name)


def test_mean_of_biases_has_noise_read_noise_over_sqrt_n(night):
    out, biases = night["out"], night["by_type"]["bias"]
    assert len(biases) == N_BIAS
    det = _instrument().detector("CCD5")
    truth = _bias_truth(out, "CCD5")
    mean = np.zeros(det.raw_shape)
    for e in biases:
        with fits.open(out / e["file"]) as hdul:
            mean += hdul["CCD5"].data
    mean /= N_BIAS
    for amp in det.amplifiers:
        sl = amp.data_section.slices
        residual = mean[sl] - truth[sl]  # the fixed bias structure removed
        # 577 x 144 = 83088 pixels: the std is known to 0.25%; 5% is a generous bound.
        expected = amp.read_noise.value / amp.gain.value / np.sqrt(N_BIAS)
        assert _robust_std(residual) == pytest.approx(expected, rel=0.05), amp.name
        assert abs(np.median(residual)) < 0.2  # and the truth file is the bias that was used


def test_bias_structure_is_fixed_and_in_the_overscan_by_rows(night):
    out = night["out"]
    truth = _bias_truth(out, "CCD5")
    det = _instrument().detector("CCD5")
    amp = det.amplifiers[0]
    data, over = truth[amp.data_section.slices], truth[amp.overscan_section.slices]
    column_part = data - data.mean(axis=1, keepdims=True)
    assert 0.5 < column_part[0].std() < 5  # a few ADU of column structure
    row_part = over[:, 0] - amp.bias_level.value
    assert 0.05 < np.ptp(row_part) < 8  # a gentle row gradient, carried by the overscan
    assert np.allclose(data.mean(axis=1) - data.mean(), row_part - row_part.mean(), atol=1e-3)


# ---------------------------------------------------------------- WCS and stars

def test_written_wcs_puts_truth_stars_at_truth_pixels(night):
    out = night["out"]
    for e in night["by_type"]["object"]:
        stars = Table.read(out / e["truth"]["stars"])
        assert len(stars) > 50
        with fits.open(out / e["file"]) as hdul:
            for det in ("CCD5", "CCD9"):
                rows = stars[stars["detector"] == det]
                assert len(rows) > 20
                w = WCS(hdul[det].header)
                assert w.wcs.ctype[0] == "RA---TAN-SIP" and w.sip is not None
                x, y = w.all_world2pix(rows["ra"], rows["dec"], 0, tolerance=1e-10, maxiter=100)
                assert np.max(np.abs(x - rows["x"])) < 0.01
                assert np.max(np.abs(y - rows["y"])) < 0.01


def test_bright_stars_are_where_the_truth_says(night):
    out = night["out"]
    e = night["by_type"]["object"][0]
    stars = Table.read(out / e["truth"]["stars"])
    checked = 0
    for det in ("CCD5", "CCD9"):
        on_ccd = stars[stars["detector"] == det]
        dark = fits.getdata(out / "truth" / f"dark_{det}.fits").astype(np.float64)
        image = _electrons(out, e, det) - dark * e["exptime"]
        image -= np.median(image)
        ny, nx = image.shape
        cosmics = fits.getdata(out / e["truth"]["cosmics"], det).astype(bool)
        for s in on_ccd[np.argsort(-on_ccd["flux"])]:
            x, y = float(s["x"]), float(s["y"])
            if s["saturated"] or s["flux"] < 3e4 or not (10 < x < nx - 10 and 10 < y < ny - 10):
                continue
            others = on_ccd[(np.hypot(on_ccd["x"] - x, on_ccd["y"] - y) < 15) & (on_ccd["id"] != s["id"])]
            if np.any(others["flux"] > 0.003 * s["flux"]):
                continue
            cx, cy = int(round(x)), int(round(y))
            yy, xx = np.mgrid[cy - 7:cy + 8, cx - 7:cx + 8]
            aperture = np.hypot(xx - cx, yy - cy) <= 6  # 2.9 Moffat core radii: 98.8% of the light
            if cosmics[cy - 7:cy + 8, cx - 7:cx + 8][aperture].any():
                continue
            stamp = np.where(aperture, image[cy - 7:cy + 8, cx - 7:cx + 8], 0.0)
            # sky noise (~18 e-) over the aperture moves the centroid by ~600 e- / flux < 0.02 pixel
            assert stamp.sum() == pytest.approx(s["flux"], rel=0.1)
            assert np.sum(stamp * xx) / stamp.sum() == pytest.approx(x, abs=0.1)
            assert np.sum(stamp * yy) / stamp.sum() == pytest.approx(y, abs=0.1)
            checked += 1
    assert checked >= 3


def test_dithers_move_the_pointing_by_tens_of_arcsec(night):
    science = night["by_type"]["object"]
    centre = SkyCoord(330 * u.deg, 30 * u.deg)
    offsets = [SkyCoord(e["ra"] * u.deg, e["dec"] * u.deg).separation(centre).arcsec for e in science]
    assert offsets[0] < 1e-6
    assert all(1 < o <= 30.0 + 1e-6 for o in offsets[1:])


# ---------------------------------------------------------------- flat, dark, cosmic rays

def test_flat_has_mean_one_and_vignetting_darkens_outer_corners(night):
    out = night["out"]
    centre = fits.getdata(out / "truth" / "flat_CCD5_r.fits").astype(np.float64)
    corner = fits.getdata(out / "truth" / "flat_CCD9_r.fits").astype(np.float64)
    assert centre.mean() == pytest.approx(1.0, abs=1e-4)
    assert corner.mean() == pytest.approx(1.0, abs=1e-4)
    # CCD9 is the top right CCD: its top right corner is the farthest from the boresight.
    far = np.median(corner[-40:, -40:]) / corner.mean()
    near = np.median(corner[:40, :40]) / corner.mean()
    assert far < 0.95 and near > 1.0
    assert np.median(centre[-40:, -40:]) / centre.mean() > 0.98
    # 1% pixel response non-uniformity
    assert 0.007 < np.std(np.diff(centre[300:400, 300:400], axis=1)) / np.sqrt(2) < 0.014


def test_dome_flats_show_the_flat_field(night):
    out = night["out"]
    truth = fits.getdata(out / "truth" / "flat_CCD9_r.fits").astype(np.float64)
    level = night["config"].flat_level.to_value(u.electron)
    e = night["by_type"]["flat"][0]
    ratio = _electrons(out, e, "CCD9") / (level * truth)
    good = truth > 0.5
    assert np.median(ratio[good]) == pytest.approx(1.0, abs=0.003)
    assert _robust_std(ratio[good]) < 1.15 / np.sqrt(level)  # Poisson and read noise only


def test_darks_show_the_hot_pixels_of_the_truth(night):
    out = night["out"]
    dark_truth = fits.getdata(out / "truth" / "dark_CCD5.fits").astype(np.float64)
    e = night["by_type"]["dark"][0]
    image = _electrons(out, e, "CCD5")
    cosmics = fits.getdata(out / e["truth"]["cosmics"], "CCD5").astype(bool)
    hot = (dark_truth > 1.0) & ~cosmics
    assert 20 < hot.sum() < 2000
    expected = dark_truth[hot] * e["exptime"]
    measured = image[hot]
    assert np.all(measured > 5 * 6.0)  # above 5 sigma of the read noise
    assert np.median(measured / expected) == pytest.approx(1.0, abs=0.05)
    normal = (dark_truth < 0.01) & ~cosmics
    assert np.median(image[normal]) == pytest.approx(np.median(dark_truth[normal]) * e["exptime"], abs=0.5)


def test_cosmic_ray_mask_marks_high_pixels(night):
    out = night["out"]
    dark_truth = fits.getdata(out / "truth" / "dark_CCD5.fits").astype(np.float64)
    total = 0
    for e in night["by_type"]["dark"]:
        image = _electrons(out, e, "CCD5") - dark_truth * e["exptime"]
        with fits.open(out / e["truth"]["cosmics"]) as hdul:
            assert hdul[0].header["CRTHRESH"] > 0
            mask = hdul["CCD5"].data.astype(bool)
        assert mask.shape == image.shape
        total += mask.sum()
        assert np.mean(image[mask] > 3 * 6.5) > 0.95
        assert np.median(image[mask]) > 100
        assert np.mean(image[~mask] > 3 * 6.5) < 0.002
    assert total > 50  # 2 darks of 300 s on 1.3 cm^2 at 4 per cm^2 per minute: ~50 events


def test_night_plan_records_what_was_written(night):
    plan, out = night["plan"], night["out"]
    assert plan["seed"] == 11
    assert [e["expnum"] for e in plan["exposures"]] == list(range(1, len(plan["exposures"]) + 1))
    for e in plan["exposures"]:
        assert (out / e["file"]).is_file()
        for path in e["truth"].values():
            assert (out / path).is_file()
    refcat = Table.read(out / "refcat.fits")
    assert {"ra", "dec", "mag_u", "mag_g", "mag_r", "mag_i", "mag_z", "mag_w"} <= set(refcat.colnames)
    assert refcat["ra"].unit == u.deg and refcat["mag_r"].unit == u.mag
    assert 0.3 > np.median(refcat["mag_g"] - refcat["mag_r"]) - 0.4 > -0.3
    # log N rises by ~0.3 dex per magnitude
    n20, n22 = np.sum(refcat["mag_r"] < 20), np.sum(refcat["mag_r"] < 22)
    assert np.log10(n22 / n20) / 2 == pytest.approx(0.3, abs=0.05)


# ---------------------------------------------------------------- headers

def test_headers_are_consistent(night):
    out = night["out"]
    inst = _instrument()
    loc = EarthLocation.from_geodetic(inst.site.longitude, inst.site.latitude, inst.site.elevation)
    previous_end = -np.inf
    for e in night["plan"]["exposures"]:
        with fits.open(out / e["file"]) as hdul:
            h = hdul[0].header
            assert h["TELESCOP"] == "WFST 2.5m" and h["INSTRUME"] == "WFST" and h["OBSERVAT"] == "Lenghu"
            assert h["SIMULATE"] is True and h["SIMSEED"] == 11 and h["EXPNUM"] == e["expnum"]
            assert h["IMAGETYP"] == e["imagetyp"] and h["FILTER"] == e["filter"]
            expected = {"bias": 0.0, "dark": 300.0, "flat": 5.0, "object": 30.0}[h["IMAGETYP"]]
            assert h["EXPTIME"] == expected
            assert h["FILTER"] == ("none" if h["IMAGETYP"] in ("bias", "dark") else "r")
            start = Time(h["DATE-OBS"], scale="utc")
            assert start.mjd == pytest.approx(h["MJD-OBS"], abs=1e-8)
            assert h["MJD-OBS"] > previous_end  # times increase, with readout between exposures
            previous_end = h["MJD-OBS"] + h["EXPTIME"] / 86400
            assert 0 <= h["LST"] < 24
            assert h["AIRMASS"] >= 1.0
            with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
                mid = start + h["EXPTIME"] / 2 * u.s
                altaz = SkyCoord(h["RA"] * u.deg, h["DEC"] * u.deg).transform_to(AltAz(obstime=mid, location=loc))
                lst = start.sidereal_time("apparent", longitude=loc.lon).hour
            assert float(altaz.secz) == pytest.approx(h["AIRMASS"], abs=1e-3)
            assert lst == pytest.approx(h["LST"], abs=1e-5)
            assert h["DETSIZE"] == "[1:3506,1:3512]"
            for det in ("CCD5", "CCD9"):
                x = hdul[det].header
                assert x["BITPIX"] == 16 and x["BZERO"] == 32768
                assert hdul[det].data.dtype == np.uint16
                assert x["CCDNAME"] == det and x["DETSIZE"] == "[1:1152,1:1154]"
                d = inst.detector(det)
                assert (x["NAXIS2"], x["NAXIS1"]) == d.raw_shape
                for amp in d.amplifiers:
                    a = amp.name
                    assert x[f"DATASEC{a}"] == amp.data_section.to_fits()
                    assert x[f"BIASSEC{a}"] == amp.overscan_section.to_fits()
                    assert x[f"CCDSEC{a}"] == amp.detector_section.to_fits()
                    assert x[f"GAIN{a}"] == amp.gain.value and x[f"RDNOISE{a}"] == amp.read_noise.value
                    assert x[f"SATURAT{a}"] == amp.saturation.value
            assert hdul["CCD9"].header["DETSEC"] == "[2355:3506,2359:3512]"
        if h["IMAGETYP"] == "object":
            with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None):
                from astropy.coordinates import get_sun
                sun = get_sun(start).transform_to(AltAz(obstime=start, location=loc))
            assert sun.alt.deg < -18  # science starts after evening astronomical twilight
            assert h["AIRMASS"] < 1.2


# ---------------------------------------------------------------- files

def test_every_file_passes_fitsverify(night, fitsverify):
    out = night["out"]
    paths = sorted(out.glob("raw/*.fits")) + sorted(out.glob("truth/*.fits")) + [out / "refcat.fits"]
    assert len(paths) > 30
    for path in paths:
        errors, report = fitsverify(path)
        assert errors == 0, report


def test_same_seed_gives_identical_bytes_and_compressed_files_verify(tmp_path, fitsverify):
    config = NightConfig(scale=1 / 32, seed=5, n_bias=1, n_dark=0, n_flat=1, n_science=1, detectors=("CCD1",),
                         compress=True)
    simulate_night(config, tmp_path / "a", progress=False)
    simulate_night(config, tmp_path / "b", progress=False)
    simulate_night(config.with_changes(seed=6), tmp_path / "c", progress=False)
    simulate_night(config.with_changes(truth_images=False), tmp_path / "d", progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) >= 10 and any(p.name.endswith(".fits.fz") for p in files)
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for rel in files:
        if rel.parts[0] == "raw":
            assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes(), rel
            # the truth images are written or not without changing the raw data
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "d" / rel).read_bytes(), rel
            errors, report = fitsverify(tmp_path / "a" / rel)
            assert errors == 0, report
            with fits.open(tmp_path / "a" / rel) as hdul:
                assert isinstance(hdul["CCD1"], fits.CompImageHDU)
                assert hdul["CCD1"].data.dtype == np.uint16


def test_memory_does_not_grow_with_the_night(tmp_path):
    def peak(n_science: int, folder: str) -> int:
        config = NightConfig(scale=1 / 16, seed=2, n_bias=0, n_dark=0, n_flat=0, n_science=n_science,
                             detectors=("CCD5",), truth_images=False, mag_limit=22)
        tracemalloc.start()
        simulate_night(config, tmp_path / folder, progress=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    peak(1, "warm-up")  # one-time allocations (caches, lazily loaded tables) out of the way
    short, long = peak(2, "short"), peak(10, "long")
    assert long < 1.25 * short


# ---------------------------------------------------------------- command line and config

def test_cli_writes_a_night_with_a_pointing_error(tmp_path, capsys):
    from lenghu.cli import main

    out = tmp_path / "cli"
    status = main(["simulate", "night", str(out), "--scale", "1/32", "--detectors", "CCD5", "--biases", "1",
                   "--darks", "0", "--flats", "0", "--science", "1", "--pointing-error", "1.0,0.05",
                   "--seed", "3", "--quiet"])
    assert status == 0
    assert capsys.readouterr().out == ""
    raw = sorted((out / "raw").glob("wfst_20251120_*.fits"))
    assert len(raw) == 2
    stars = Table.read(out / "truth" / "stars_00002.fits")
    with fits.open(raw[1]) as hdul:
        header_wcs = WCS(hdul["CCD5"].header)
    true_wcs = WCS(fits.getheader(out / "truth" / "wcs_00002.fits", "CCD5"))
    x, y = true_wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    assert np.allclose(x, stars["x"], atol=0.01) and np.allclose(y, stars["y"], atol=0.01)
    hx, hy = header_wcs.all_world2pix(stars["ra"], stars["dec"], 0)
    shift = np.median(np.hypot(hx - x, hy - y)) * 0.333
    assert shift == pytest.approx(60.0, rel=0.1)  # 1 arcmin


@pytest.mark.parametrize("argv, message", [
    (["--scale", "2"], "must be in (0, 1]"),
    (["--scale", "abc"], "not a number or a fraction"),
    (["--biases", "-1"], "must not be negative"),
    (["--pointing-error", "x"], "ARCMIN[,DEG]"),
    (["--date", "2025-13-01"], "2025-13-01"),
    (["--dec", "95"], "[-90, 90]"),
])
def test_cli_bad_arguments_give_a_clear_message(tmp_path, capsys, argv, message):
    from lenghu.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["simulate", "night", str(tmp_path / "x")] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--detectors", "CCD42"], "unknown detector"),
    (["--filters", "q"], "filter 'q'"),
    (["--dec", "-80"], "altitude"),
])
def test_cli_impossible_nights_fail_with_a_message(tmp_path, capsys, argv, message):
    from lenghu.cli import main

    status = main(["simulate", "night", str(tmp_path / "x"), "--scale", "1/32", "--quiet"] + argv)
    assert status == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x" / "raw").exists() or not any((tmp_path / "x" / "raw").iterdir())


def test_refuses_to_overwrite_a_night(tmp_path):
    config = NightConfig(scale=1 / 32, n_bias=1, n_dark=0, n_flat=0, n_science=0, detectors=("CCD1",))
    simulate_night(config, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="--overwrite"):
        simulate_night(config, tmp_path, progress=False)
    simulate_night(config.with_changes(overwrite=True), tmp_path, progress=False)


def test_config_validates_and_plan_is_cheap():
    assert parse_scale("1/16") == 0.0625 and parse_scale("0.25") == 0.25
    with pytest.raises(ConfigError):
        NightConfig(scale=0)
    with pytest.raises(ConfigError):
        NightConfig(exptime=-1 * u.s)
    with pytest.raises(ConfigError):
        NightConfig(exptime=3 * u.m)
    plan = plan_night(NightConfig(n_science=4))  # full size: planning makes no pixels
    assert len(plan.exposures) == 5 + 3 + 3 + 4
    assert plan.exposures[-1].airmass < 1.1
