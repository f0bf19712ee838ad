"""Astrometry (pattern matching, TAN-SIP fit) and photometric zeropoints against simulated truth.

Nights come from ``lenghu.simulate.night`` at 1/8 scale (CCD5, 1152 x 1154
pixels, ~240 stars). Detections are either the truth star list with the
centroid and flux noise a background-limited Gaussian PSF would give, or sep
run on the raw frame calibrated with the simulator's own bias, dark and flat
(so these tests do not depend on lenghu's detection module).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import QTable
from astropy.wcs import WCS, FITSFixedWarning

from lenghu.errors import ConfigError
from lenghu.measure.astrometry import (
    AstrometryConfig, AstrometryStatus, PatternMatch, fit_inverse_sip, match_pattern, solve_astrometry,
)
from lenghu.measure.zeropoint import (
    AirmassTrendConfig, ZeropointConfig, calibrated_magnitudes, fit_airmass_trend, measure_zeropoint,
)
from lenghu.simulate import sky
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import simulate_night
from lenghu.simulate.stars import reference_catalogue

DET = "CCD5"
PIXEL_SCALE = 0.333  # arcsec / pixel (WFST)
READ_NOISE = 6.0  # electrons, about the simulated amplifiers'
APERTURE = 12.0  # pixels: a "large" aperture, 5.5 FWHM, loses < 0.1% of a Moffat beta=3 star


@pytest.fixture(autouse=True)
def _quiet_wcs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.filterwarnings("ignore", message=".*did not parse as fits unit.*")
        yield


# ----------------------------------------------------------------------------- nights

_NIGHTS: dict[tuple, Path] = {}


def _night(root: Path, shift: float, rotation: float, n_science: int = 1, truth_images: bool = False,
           **extra) -> Path:
    """Simulate (once per session) a 1/8-scale CCD5 night with the given pointing error."""
    key = (shift, rotation, n_science, truth_images, repr(sorted(extra.items())))
    if key not in _NIGHTS:
        out = root / f"night_{len(_NIGHTS)}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulate_night(NightConfig(
                scale=extra.pop("scale", 1 / 8), detectors=(DET,), n_bias=0, n_dark=0, n_flat=0,
                n_science=n_science, pointing_error_shift=shift * u.arcmin,
                pointing_error_rotation=rotation * u.deg, truth_images=truth_images, **extra), out, progress=False)
        _NIGHTS[key] = out
    return _NIGHTS[key]


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("astrometry_nights")


@pytest.fixture(scope="module")
def night_pe(sim_root) -> Path:
    """Two exposures with 2 arcmin and 1 deg of pointing error, with truth images (for sep)."""
    return _night(sim_root, 2.0, 1.0, n_science=2, truth_images=True)


def _science(night: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (night / "truth").glob("stars_*.fits"))


def _raw_path(night: Path, expnum: int) -> Path:
    return next((night / "raw").glob(f"*_{expnum:05d}.fits"))


def _header_wcs(night: Path, expnum: int) -> tuple[WCS, tuple[int, int], fits.Header]:
    with fits.open(_raw_path(night, expnum)) as hdul:
        hdr = hdul[DET].header.copy()
        primary = hdul[0].header.copy()
    nx, ny = (int(v) for v in re.findall(r"\d+", hdr["DETSIZE"])[1::2])
    return WCS(hdr), (ny, nx), primary


def _true_wcs(night: Path, expnum: int) -> tuple[WCS, fits.Header]:
    with fits.open(night / "truth" / f"wcs_{expnum:05d}.fits") as hdul:
        return WCS(hdul[DET].header), hdul[0].header.copy()


def _stars(night: Path, expnum: int) -> QTable:
    table = QTable.read(night / "truth" / f"stars_{expnum:05d}.fits")
    return table[table["detector"] == DET]


def _refcat(night: Path) -> QTable:
    return QTable.read(night / "refcat.fits")


def _truth_detections(stars: QTable, seed: int) -> dict[str, np.ndarray]:
    """The truth list as a detector would measure it (background-limited Gaussian-PSF noise).

    Flux error: photon noise of the star plus sky and read noise over the
    noise-equivalent area ``4 pi sigma^2``; centroid error per axis
    ``sqrt(2) sigma / SNR`` (the background-limited value, pessimistic for
    bright stars).
    """
    rng = np.random.default_rng(seed)
    flux = np.asarray(stars["flux"].value, dtype=float)  # "electron" is not a FITS unit: read unrecognised
    sigma = stars.meta["FWHM"] / PIXEL_SCALE / 2.3548
    flux_err = np.sqrt(flux + 4 * np.pi * sigma**2 * (stars.meta["SKY"] + READ_NOISE**2))
    snr = flux / flux_err
    pos_err = math.sqrt(2) * sigma / snr
    return {
        "x": stars["x"].to_value(u.pixel) + rng.normal(0.0, pos_err),
        "y": stars["y"].to_value(u.pixel) + rng.normal(0.0, pos_err),
        "flux": flux + rng.normal(0.0, flux_err),
        "flux_err": flux_err,
        "snr": snr,
        "usable": ~np.asarray(stars["saturated"], dtype=bool),
    }


def _solve(night: Path, expnum: int, det: dict, config: AstrometryConfig | None = None, ref: QTable | None = None,
           keep: np.ndarray | None = None):
    ref = _refcat(night) if ref is None else ref
    w0, shape, _ = _header_wcs(night, expnum)
    keep = det["snr"] > 5 if keep is None else keep
    return solve_astrometry(det["x"][keep], det["y"][keep], det["flux"][keep],
                            ref["ra"].to_value(u.deg), ref["dec"].to_value(u.deg), ref["mag_r"].to_value(u.mag),
                            w0, shape, usable=det["usable"][keep], config=config), keep


def _rms_arcsec(a: SkyCoord, b: SkyCoord) -> float:
    return float(np.sqrt(np.mean(a.separation(b).arcsec ** 2)))


def _grid(shape: tuple[int, int], n: int = 25) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    return gx.ravel(), gy.ravel()


# ----------------------------------------------------------------------------- a calibrated frame and sep

def _section(text: str) -> tuple[slice, slice]:
    (x0, x1), (y0, y1) = ([int(v) for v in part.split(":")] for part in text.strip("[]").split(","))
    assert x0 <= x1 and y0 <= y1, "flipped sections are not expected in the simulated layout"
    return slice(y0 - 1, y1), slice(x0 - 1, x1)


def _calibrated(night: Path, expnum: int) -> tuple[np.ndarray, float]:
    """Electrons per pixel of CCD5: raw minus the true bias, times gain, minus the true dark, over the true flat."""
    with fits.open(_raw_path(night, expnum)) as hdul:
        hdr = hdul[DET].header
        raw = hdul[DET].data.astype(np.float64)
        exptime = float(hdul[0].header["EXPTIME"])
    raw -= fits.getdata(night / "truth" / f"bias_{DET}.fits")
    nx, ny = (int(v) for v in re.findall(r"\d+", hdr["DETSIZE"])[1::2])
    image = np.zeros((ny, nx))
    for amp in (k[len("CCDSEC"):] for k in hdr if k.startswith("CCDSEC")):
        image[_section(hdr["CCDSEC" + amp])] = raw[_section(hdr["DATASEC" + amp])] * hdr["GAIN" + amp]
    image -= fits.getdata(night / "truth" / f"dark_{DET}.fits") * exptime
    image /= fits.getdata(night / "truth" / f"flat_{DET}_r.fits")
    return image, exptime


def _sep_detections(image: np.ndarray, fwhm_px: float) -> dict[str, np.ndarray]:
    sep = pytest.importorskip("sep")
    data = np.ascontiguousarray(image, dtype=np.float32)
    bkg = sep.Background(data, bw=64, bh=64)
    sub = data - bkg.back()
    rms = bkg.rms()
    objs = sep.extract(sub, 5.0, err=rms, minarea=5)
    x, y, wflag = sep.winpos(sub, objs["x"], objs["y"], np.full(len(objs), fwhm_px / 2.3548))
    flux, flux_err, aflag = sep.sum_circle(sub, x, y, APERTURE, err=rms, gain=1.0)
    usable = (objs["peak"] + bkg.globalback < 60000.0) & (wflag == 0) & (aflag == 0) & (objs["flag"] == 0)
    return {"x": x, "y": y, "flux": flux, "flux_err": flux_err, "snr": flux / flux_err, "usable": usable}


# ============================================================================ pattern matcher on synthetic points

def _synthetic_field(rng, n=60, shape=(1154, 1152)):
    ny, nx = shape
    return np.column_stack([rng.uniform(-300, nx + 300, 4 * n), rng.uniform(-300, ny + 300, 4 * n)])


def test_pattern_matcher_recovers_a_known_similarity_transform():
    rng = np.random.default_rng(11)
    shape = (1154, 1152)
    ref = _synthetic_field(rng)
    truth = PatternMatch(True, math.radians(-2.2), 1.002, np.array([310.0, -190.0]), np.array([575.5, 576.5]),
                         0, 0, np.zeros(0, int), np.zeros(0, int))
    det = truth.apply(ref) + rng.normal(0, 0.2, ref.shape)
    on = (det[:, 0] >= 0) & (det[:, 0] < 1152) & (det[:, 1] >= 0) & (det[:, 1] < 1154)
    det = det[on][:40]
    # Lose a quarter of the stars and add as many spurious detections (cosmic rays, galaxies).
    det = np.concatenate([det[10:], rng.uniform(0, 1152, (10, 2))])
    found = match_pattern(det, ref, shape, PIXEL_SCALE * u.arcsec)
    assert found.found
    assert math.degrees(found.rotation) == pytest.approx(-2.2, abs=0.01)
    assert found.scale == pytest.approx(1.002, abs=2e-4)
    np.testing.assert_allclose(found.shift, [310.0, -190.0], atol=0.5)
    # The stars lined up are real pairs: detection k is the transformed reference star.
    assert found.n_stars >= 25
    np.testing.assert_allclose(truth.apply(ref[found.reference_index]), det[found.detection_index], atol=1.5)


def test_pattern_matcher_finds_nothing_in_unrelated_points():
    rng = np.random.default_rng(12)
    found = match_pattern(rng.uniform(0, 1152, (40, 2)), _synthetic_field(rng), (1154, 1152),
                          PIXEL_SCALE * u.arcsec)
    assert not found.found
    assert found.n_stars < 5


# ============================================================================ astrometry on simulated nights

def test_pointing_error_recovered_from_truth_detections(night_pe):
    """2 arcmin and 1 deg injected: the fitted WCS agrees with the true one to far better than 0.03"."""
    for expnum in _science(night_pe):
        stars = _stars(night_pe, expnum)
        det = _truth_detections(stars, seed=expnum)
        res, keep = _solve(night_pe, expnum, det)
        assert res.ok, res.reason
        assert res.wcs is not None and res.sip_degree == 3
        assert res.n_matched > 150
        assert res.n_pattern >= 20
        # What was injected: shift 2' (plus 0.02 deg of meridian convergence in the rotation at Dec 30).
        _, header = _true_wcs(night_pe, expnum)
        assert res.shift_arcsec == pytest.approx(60 * header["PESHIFT"], abs=1.0)
        assert abs(res.rotation_deg) == pytest.approx(abs(header["PEROT"]), abs=0.03)
        # The matches are the right stars.
        ref = _refcat(night_pe)
        ids = np.asarray(stars["id"])[keep][res.detection_index]
        assert np.mean(ids == np.asarray(ref["id"])[res.reference_index]) > 0.99

        hi = det["snr"] > 50
        assert hi.sum() >= 20
        truth_sky = SkyCoord(stars["ra"][hi], stars["dec"][hi])
        # The true positions of S/N > 50 stars land where the catalogue says.
        true_rms = _rms_arcsec(res.wcs.pixel_to_world(stars["x"].value[hi], stars["y"].value[hi]), truth_sky)
        assert true_rms < 0.03
        # So do their measured positions (centroid noise included).
        measured_rms = _rms_arcsec(res.wcs.pixel_to_world(det["x"][hi], det["y"][hi]), truth_sky)
        assert measured_rms < 0.03
        # And the WCS itself against the true WCS over the whole detector.
        w_true, _ = _true_wcs(night_pe, expnum)
        w0, shape, _ = _header_wcs(night_pe, expnum)
        gx, gy = _grid(shape)
        diff = res.wcs.pixel_to_world(gx, gy).separation(w_true.pixel_to_world(gx, gy)).arcsec
        assert np.sqrt(np.mean(diff**2)) < 0.03
        assert diff.max() < 0.1
        # The header WCS was wrong by ~2 arcmin (the test is not trivial).
        assert w0.pixel_to_world(gx, gy).separation(w_true.pixel_to_world(gx, gy)).arcsec.min() > 100


def test_fitted_wcs_survives_the_header_and_has_an_inverse(night_pe):
    det = _truth_detections(_stars(night_pe, 1), seed=1)
    res, _ = _solve(night_pe, 1, det)
    assert res.ok
    header = res.wcs.to_header(relax=True)
    assert header["CTYPE1"] == "RA---TAN-SIP" and header["AP_ORDER"] == 4
    again = WCS(header)
    gx, gy = _grid((1154, 1152), 15)
    np.testing.assert_allclose(again.all_pix2world(gx, gy, 0), res.wcs.all_pix2world(gx, gy, 0), rtol=0, atol=1e-9)
    # AP/BP invert A/B to 0.001 pixel over the detector (what ds9 or SWarp would use).
    fx, fy = again.sip_pix2foc(gx, gy, 0)  # A, B
    px, py = again.sip_foc2pix(fx, fy, 0)  # AP, BP
    assert np.hypot(px - gx, py - gy).max() < 1e-3
    assert res.rms_arcsec == pytest.approx(np.sqrt(np.mean(np.sum(res.residuals_arcsec**2, axis=1))))
    assert res.matches.shape == (res.n_matched, 2)


def test_inverse_sip_of_a_tan_wcs_is_a_copy():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out = fit_inverse_sip(w, (100, 100))
    assert out is not w and out.sip is None


def test_astrometry_and_zeropoint_on_pixels_with_sep(night_pe):
    """Acceptance on a calibrated frame: astrometric RMS < 0.03", zeropoint to 0.01 mag, scatter < 0.01 mag."""
    ref = _refcat(night_pe)
    dm_pool, snr_pool = [], []
    for expnum in _science(night_pe):
        image, exptime = _calibrated(night_pe, expnum)
        stars = _stars(night_pe, expnum)
        fwhm_px = stars.meta["FWHM"] / PIXEL_SCALE
        det = _sep_detections(image, fwhm_px)
        res, _ = _solve(night_pe, expnum, det, keep=np.ones(len(det["x"]), dtype=bool))
        assert res.ok, res.reason
        assert res.rms_arcsec < 0.1

        # Measured centroids of S/N > 50 stars against the true sky positions of the stars they are.
        truth_sky = SkyCoord(stars["ra"], stars["dec"])
        sky_pos = res.wcs.pixel_to_world(det["x"], det["y"])
        idx, sep2d, _ = sky_pos.match_to_catalog_sky(truth_sky)
        hi = (sep2d.arcsec < 0.5) & (det["snr"] > 50) & det["usable"]
        assert hi.sum() >= 8
        assert np.sqrt(np.mean(sep2d.arcsec[hi] ** 2)) < 0.03
        # The true positions of the same stars through the fitted WCS.
        true_pos = res.wcs.pixel_to_world(stars["x"].value[idx[hi]], stars["y"].value[idx[hi]])
        assert _rms_arcsec(true_pos, truth_sky[idx[hi]]) < 0.03

        # Zeropoint from the astrometric matches, against the simulator's ZP - k (X - 1).
        _, _, primary = _header_wcs(night_pe, expnum)
        zp_true = sky.ZEROPOINT["r"] - sky.EXTINCTION["r"] * (primary["AIRMASS"] - 1.0)
        d, r = res.detection_index, res.reference_index
        zp = measure_zeropoint(det["flux"][d], det["flux_err"][d], ref["mag_r"].value[r], exptime * u.s,
                               usable=det["usable"][d])
        assert zp.ok, zp.reason
        assert abs(zp.zeropoint_mag - zp_true) < 0.01
        assert zp.error_mag < 0.005
        mag, mag_err = calibrated_magnitudes(det["flux"][d], det["flux_err"][d], exptime, zp)
        bright = (det["snr"][d] > 100) & det["usable"][d]
        dm_pool.append(mag[bright] - ref["mag_r"].value[r][bright])
        snr_pool.append(det["snr"][d][bright])
    dm = np.concatenate(dm_pool)
    assert len(dm) >= 10
    assert np.std(dm) < 0.01
    assert np.sqrt(np.mean(dm**2)) < 0.01


@pytest.mark.parametrize("shift, rotation", [(0.0, 0.0), (0.0, -1.0), (2.0, 0.0), (2.0, -1.0)],
                         ids=["no-error", "rotation-only", "shift-only", "shift-and-negative-rotation"])
def test_robust_to_other_pointing_errors(sim_root, shift, rotation):
    night = _night(sim_root, shift, rotation)
    stars = _stars(night, 1)
    det = _truth_detections(stars, seed=3)
    res, _ = _solve(night, 1, det)
    assert res.ok, res.reason
    assert res.shift_arcsec == pytest.approx(60 * shift, abs=1.0)
    assert abs(res.rotation_deg) == pytest.approx(abs(rotation), abs=0.03)
    hi = det["snr"] > 50
    fitted = res.wcs.pixel_to_world(stars["x"].value[hi], stars["y"].value[hi])
    assert _rms_arcsec(fitted, SkyCoord(stars["ra"][hi], stars["dec"][hi])) < 0.03


def _other_area(ref: QTable) -> QTable:
    out = ref.copy()
    out["ra"] = (out["ra"].to_value(u.deg) + 0.3 / math.cos(math.radians(30.0))) * u.deg
    return out


def _other_stars(ref: QTable) -> QTable:
    """A catalogue of as many stars in the same place, but not these stars."""
    return reference_catalogue(99, 330.0 * u.deg, 30.0 * u.deg, 0.3 * u.deg, 10.0, 24.0)


def _mirrored(ref: QTable) -> QTable:
    out = ref.copy()
    out["ra"] = (660.0 - out["ra"].to_value(u.deg)) * u.deg
    return out


@pytest.mark.parametrize("catalogue", [_other_area, _other_stars, _mirrored], ids=["area-0.3deg-east",
                                                                                   "other-stars", "mirrored"])
def test_wrong_field_fails_without_a_wcs(night_pe, catalogue):
    det = _truth_detections(_stars(night_pe, 1), seed=1)
    res, _ = _solve(night_pe, 1, det, ref=catalogue(_refcat(night_pe)))
    assert not res.ok
    assert res.wcs is None
    assert res.status in (AstrometryStatus.NO_PATTERN, AstrometryStatus.TOO_FEW_MATCHES)
    assert res.reason


def test_too_few_stars_fails_without_a_wcs(night_pe):
    det = _truth_detections(_stars(night_pe, 1), seed=1)
    brightest = np.argsort(-det["flux"])[:4]
    keep = np.zeros(len(det["x"]), dtype=bool)
    keep[brightest] = True
    res, _ = _solve(night_pe, 1, det, keep=keep)
    assert res.status is AstrometryStatus.TOO_FEW_SOURCES and res.wcs is None
    empty = _refcat(night_pe)[:0]
    res, _ = _solve(night_pe, 1, det, ref=empty)
    assert res.status is AstrometryStatus.TOO_FEW_SOURCES and res.wcs is None


def test_error_beyond_the_search_range_fails_rather_than_guessing(night_pe):
    det = _truth_detections(_stars(night_pe, 1), seed=1)
    res, _ = _solve(night_pe, 1, det, config=AstrometryConfig(max_shift=1.0 * u.arcmin))
    assert not res.ok and res.wcs is None


def test_poor_fit_is_flagged(night_pe):
    det = _truth_detections(_stars(night_pe, 1), seed=1)
    res, _ = _solve(night_pe, 1, det, config=AstrometryConfig(max_rms=0.01 * u.arcsec))
    assert res.status is AstrometryStatus.HIGH_RMS and res.wcs is None
    assert 0.01 < res.rms_arcsec < 0.1  # the figures are still reported
    assert res.n_matched > 100


def test_astrometry_config_checks_units_and_values():
    config = AstrometryConfig(max_shift=240 * u.arcsec, max_rms=0.2)
    assert config.max_shift.unit == u.arcmin and config.max_shift.value == pytest.approx(4.0)
    assert config.max_rms == 0.2 * u.arcsec
    for bad in (dict(max_shift=-1 * u.arcmin), dict(max_shift=3 * u.kg), dict(sip_degree=9),
                dict(match_radius=3 * u.arcsec), dict(min_pattern_stars=2), dict(max_rotation=60 * u.deg),
                dict(max_scale_error=0.5), dict(min_matches=0)):
        with pytest.raises(ConfigError):
            AstrometryConfig(**bad)


def test_mismatched_inputs_raise():
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    with pytest.raises(ValueError):
        solve_astrometry([1, 2], [1], [1, 2], [], [], [], w, (10, 10))
    with pytest.raises(ValueError):
        measure_zeropoint([1.0, 2.0], [0.1], [20.0, 21.0], 30.0)
    with pytest.raises(ValueError):
        measure_zeropoint([1.0], [0.1], [20.0], 0.0)


# ============================================================================ zeropoints

def test_zeropoint_from_truth_fluxes_matches_the_simulator(night_pe):
    ref = _refcat(night_pe)
    ids = np.asarray(ref["id"])
    for expnum in _science(night_pe):
        stars = _stars(night_pe, expnum)
        det = _truth_detections(stars, seed=100 + expnum)
        row = np.searchsorted(ids, np.asarray(stars["id"]))
        zp = measure_zeropoint(det["flux"], det["flux_err"], ref["mag_r"].value[row], stars.meta["EXPTIME"] * u.s,
                               usable=det["usable"])
        zp_true = sky.ZEROPOINT["r"] - sky.EXTINCTION["r"] * (stars.meta["AIRMASS"] - 1.0)
        assert zp.ok and zp.n_used > 30
        assert abs(zp.zeropoint_mag - zp_true) < 0.01
        assert abs(zp.zeropoint_mag - zp_true) < 4 * zp.error_mag
        mag, _ = calibrated_magnitudes(det["flux"], det["flux_err"], stars.meta["EXPTIME"], zp)
        bright = (det["snr"] > 100) & det["usable"]
        assert bright.sum() > 10
        assert np.std(mag[bright] - ref["mag_r"].value[row][bright]) < 0.01


def _synthetic_zeropoint_stars(rng, zp=25.3, n=200, exptime=30.0):
    mag = rng.uniform(15.0, 21.0, n)
    flux = exptime * 10 ** (-0.4 * (mag - zp))
    flux_err = np.sqrt(flux + 2000.0)
    return mag, flux + rng.normal(0, flux_err), flux_err


def test_zeropoint_clips_outliers_ignores_flagged_stars_and_has_honest_errors():
    rng = np.random.default_rng(5)
    pulls = []
    for _ in range(200):
        mag, flux, flux_err = _synthetic_zeropoint_stars(rng)
        zp = measure_zeropoint(flux, flux_err, mag, 30.0, config=ZeropointConfig(error_floor=0.0 * u.mag))
        pulls.append((zp.zeropoint_mag - 25.3) / zp.error_mag)
    assert abs(np.mean(pulls)) < 0.25
    assert 0.8 < np.std(pulls) < 1.25

    mag, flux, flux_err = _synthetic_zeropoint_stars(np.random.default_rng(6))
    flux[:15] *= 0.5  # blends / variables: 0.75 mag off
    usable = np.ones(len(flux), dtype=bool)
    usable[15:20] = False
    flux[15:20] *= 3.0  # flagged (saturated) stars with wrong fluxes
    no_floor = ZeropointConfig(error_floor=0 * u.mag)
    zp = measure_zeropoint(flux, flux_err, mag, 30 * u.s, usable=usable, config=no_floor)
    assert zp.ok
    assert abs(zp.zeropoint_mag - 25.3) < 3 * zp.error_mag
    assert not zp.used[:20].any()
    assert zp.n_candidates <= 195
    boot = measure_zeropoint(flux, flux_err, mag, 30 * u.s, usable=usable,
                             config=ZeropointConfig(error_floor=0 * u.mag, error_method="bootstrap", n_bootstrap=300))
    assert boot.zeropoint_mag == zp.zeropoint_mag
    assert boot.error_mag == pytest.approx(zp.error_mag, rel=0.35)


def test_zeropoint_fails_with_too_few_stars():
    mag, flux, flux_err = _synthetic_zeropoint_stars(np.random.default_rng(7), n=4)
    zp = measure_zeropoint(flux, flux_err, mag, 30.0)
    assert not zp.ok and math.isnan(zp.zeropoint_mag) and zp.reason
    with pytest.raises(ConfigError):
        ZeropointConfig(error_method="jackknife")
    with pytest.raises(ConfigError):
        ZeropointConfig(error_floor=-1 * u.mag)


# ============================================================================ airmass trend

def test_airmass_trend_recovers_the_simulated_extinction(sim_root):
    """Six 300-s exposures of a setting field (airmass 1.82-2.10) give k back within its error."""
    night = _night(sim_root, 0.0, 0.0, n_science=6, scale=1 / 16, exptime=300 * u.s, ra=265.0 * u.deg)
    ref = _refcat(night)
    ids = np.asarray(ref["id"])
    airmass, zps, errs = [], [], []
    for expnum in _science(night):
        stars = _stars(night, expnum)
        det = _truth_detections(stars, seed=expnum)
        row = np.searchsorted(ids, np.asarray(stars["id"]))
        zp = measure_zeropoint(det["flux"], det["flux_err"], ref["mag_r"].value[row], stars.meta["EXPTIME"],
                               usable=det["usable"])
        assert zp.ok
        airmass.append(stars.meta["AIRMASS"])
        zps.append(zp.zeropoint_mag)
        errs.append(zp.error_mag)
    assert np.ptp(airmass) > 0.2
    trend = fit_airmass_trend(airmass, zps, errs)
    assert trend.ok and trend.n_used == 6
    k_true = sky.EXTINCTION["r"]
    assert trend.extinction_error < 0.03
    assert abs(trend.extinction - k_true) < 2 * trend.extinction_error
    assert abs(trend.zeropoint_airmass1 - sky.ZEROPOINT["r"]) < 3 * trend.zeropoint_airmass1_error
    assert trend.zeropoint_airmass0 == pytest.approx(trend.zeropoint_airmass1 + trend.extinction)


def test_airmass_trend_on_synthetic_zeropoints():
    rng = np.random.default_rng(8)
    x = np.linspace(1.05, 2.0, 8)
    err = np.full(8, 0.004)
    pulls = []
    for _ in range(300):
        zp = 26.0 - 0.15 * (x - 1) + rng.normal(0, err)
        trend = fit_airmass_trend(x, zp, err, config=AirmassTrendConfig(clip_sigma=None))
        pulls.append((trend.extinction - 0.15) / trend.extinction_error)
    assert abs(np.mean(pulls)) < 0.2
    assert 0.8 < np.std(pulls) < 1.2

    # One exposure through a cloud is rejected.
    zp = 26.0 - 0.15 * (x - 1) + rng.normal(0, err)
    zp[3] -= 0.3
    trend = fit_airmass_trend(x, zp, err)
    assert trend.ok and not trend.used[3] and trend.n_used == 7
    assert abs(trend.extinction - 0.15) < 3 * trend.extinction_error
    np.testing.assert_allclose(trend.predict([1.0]), [trend.zeropoint_airmass1])

    # Too little airmass range or too few exposures: no slope.
    assert not fit_airmass_trend([1.01, 1.02, 1.03], [26, 26, 26], [0.01] * 3).ok
    assert not fit_airmass_trend([1.0, 2.0], [26, 25.9], [0.01] * 2).ok
