"""``lenghu reduce`` on a simulated WFST night recovers what the simulator injected (issue 3, "right answer").

One small night (two 1/16-scale CCDs, a corner and the centre; 5 biases, 3 darks, 3 flats and
3 science exposures in r) is simulated and reduced once per module; the products are compared
with the truth of ``docs/raw_format.md``:

- sky and noise: away from stars and cosmic rays, ``(SCI - sky) / sqrt(VAR)`` has mean 0 and
  mean square 1 within 5%;
- stars: large-aperture fluxes of bright, isolated, unsaturated stars agree with the injected
  fluxes within their errors, and their median ratio with 1 within 1%;
- cosmic rays: the CR mask finds at least 95% of the injected cosmic-ray pixels above 5 sigma,
  and fewer than 1% of the flagged pixels are not cosmic-ray pixels;
- masters: the master flat and bias match the true ones to their VAR, the master dark finds the
  true hot pixels;
- incomplete nights: science frames alone, or a night without darks, still reduce and name what
  is missing in the products, the registry and the summary.

The simulated stars and cosmic rays are regenerated with the simulator's own functions
(``ReferenceStars.on_detector``, ``exposure_cosmic_rays``): the truth files list only the stars
centred on a CCD and mask only the cosmic-ray pixels above 30 e-, while these tests need every
star whose light reaches a CCD and the charge of every cosmic-ray pixel. The regenerated cosmic
rays are checked against the truth masks first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable, Table
from scipy import ndimage

from lenghu.calib.combine import CombineConfig, noise_factor
from lenghu.calib.masks import MaskBit
from lenghu.calib.masters import MasterConfig
from lenghu.calib.overscan import OverscanConfig, overscan_level_variance
from lenghu.pipelines.registry import Registry
from lenghu.pipelines.summary import print_summary
from lenghu.simulate import optics, signatures
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import ReferenceStars, exposure_cosmic_rays, plan_night, simulate_night

from .conftest import run_reduce

pytestmark = [
    pytest.mark.slow,
    # Truth tables carry TUNIT = 'electron', outside the FITS unit standard.
    pytest.mark.filterwarnings("ignore:'electron' did not parse as fits unit"),
]

#: The night. ``cosmic_rate`` is 25 times the site's 4 per cm^2 per minute so that three 30 s
#: exposures of two small CCDs hold about 700 cosmic-ray pixels above 5 sigma (the completeness is
#: then measured to about +-0.5%); the 300 s darks get about 1% of their pixels hit, which their
#: median combine removes (except where two of the three darks are hit).
NIGHT = NightConfig(
    scale="1/16", seed=7, n_bias=5, n_dark=3, n_flat=3, n_science=3, filters=("r",),
    detectors=("CCD1", "CCD5"), cosmic_rate=100.0 / (u.cm**2 * u.min),
)

#: The reduction's stages (the catalogue stage after them is not what these tests are about).
STAGES = ("ingest", "bias", "dark", "flat", "science")

#: Mask bits that take a pixel out of cosmic-ray detection (lenghu.calib.isr).
CR_BLIND = MaskBit.SAT | MaskBit.NO_DATA | MaskBit.BAD | MaskBit.LOW_FLAT


# ---------------------------------------------------------------- the night, reduced once


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("truth_night")
    simulate_night(NIGHT, root, progress=False)
    out = root / "reduced"
    summary = run_reduce(root / "raw", out, instrument="wfst", stages=STAGES)
    assert summary.exit_status == 0, (summary.failed_frames, summary.failed_products)
    plan = plan_night(NIGHT)
    refstars = ReferenceStars(QTable.read(root / "refcat.fits"))
    return {"root": root, "out": out, "summary": summary, "plan": plan, "refstars": refstars}


def _product(out: Path, exposure, det: str) -> Path:
    return out / "calibrated" / f"{Path(exposure.file).name.removesuffix('.fits')}_{det}.fits"


def _planes(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, fits.Header]:
    with fits.open(path) as hdul:
        return (hdul["SCI"].data.astype(np.float64), hdul["VAR"].data.astype(np.float64),
                hdul["MASK"].data.astype(np.int64), hdul[0].header.copy())


@pytest.fixture(scope="module")
def frames(night) -> list[dict]:
    """Every calibrated (science exposure, detector) with its truth: sky, star light, cosmic rays."""
    plan, root, out = night["plan"], night["root"], night["out"]
    result = []
    for exposure in (e for e in plan.exposures if e.is_science):
        projected = optics.gnomonic(night["refstars"].ra, night["refstars"].dec, exposure.true_ra,
                                    exposure.true_dec)
        truth_stars = Table.read(root / exposure.truth_name("stars"))
        for det in plan.detectors:
            sci, var, mask, header = _planes(_product(out, exposure, det.name))
            stars = night["refstars"].on_detector(plan, exposure, det, projected)
            light = np.zeros(det.shape, dtype=np.float32)  # star electrons before the flat
            optics.render_moffat(light, (0, 0), stars.x, stars.y, stars.flux, stars.half, stars.alpha)
            stamps = np.zeros(det.shape, dtype=bool)  # where any star put light (its whole stamp)
            for x, y, half in zip(stars.x, stars.y, stars.half):
                cx, cy = int(np.rint(x)), int(np.rint(y))
                stamps[max(cy - half, 0):max(cy + half + 1, 0), max(cx - half, 0):max(cx + half + 1, 0)] = True
            cosmics = exposure_cosmic_rays(plan, exposure, det)
            charge = cosmics.image(det.shape)
            truth_mask = fits.getdata(root / exposure.truth_name("cosmics"), det.name).astype(bool)
            assert np.array_equal(charge > signatures.COSMIC_MASK_THRESHOLD, truth_mask), \
                "the regenerated cosmic rays are not the simulated ones"
            result.append({
                "exposure": exposure, "det": det, "sci": sci, "var": var, "mask": mask, "header": header,
                "stars": stars, "truth_stars": truth_stars[truth_stars["detector"] == det.name],
                "light": light, "stamps": stamps, "charge": charge,
                "flat_true": fits.getdata(root / "truth" / f"flat_{det.name}_r.fits").astype(np.float64),
                "flat_master": fits.getdata(out / "masters" / f"flat_{det.name}_r.fits", "SCI").astype(np.float64),
            })
    assert len(result) == NIGHT.n_science * len(NIGHT.detectors)
    return result


# ---------------------------------------------------------------- sky and noise


def test_sky_residuals_have_unit_chi_square(frames):
    """Away from stars and cosmic rays, unmasked: mean((SCI - sky)^2 / VAR) = 1 within 5%."""
    total_chi2, total_n = 0.0, 0
    for f in frames:
        sat = (f["mask"] & int(MaskBit.SAT)) != 0
        bleed = ndimage.binary_dilation(sat, structure=np.ones((5, 1), bool))  # charge spilled past the full pixels
        hit = ndimage.binary_dilation(f["charge"] > 0, structure=np.ones((3, 3), bool))
        sky = (f["mask"] == 0) & ~f["stamps"] & ~hit & ~bleed
        assert sky.mean() > 0.6, "too little empty sky to test"
        residual = f["sci"][sky] - f["exposure"].sky
        z = residual / np.sqrt(f["var"][sky])
        chi2 = float(np.mean(z * z))
        offset = float(np.mean(residual))
        print(f"{f['header']['RAWFILE']} {f['det'].name}: chi2 {chi2:.4f} over {z.size} pixels, "
              f"sky offset {offset:+.3f} e- (noise {np.sqrt(np.median(f['var'][sky])):.1f} e-)")
        # each frame alone: 300k pixels; the chi-square's own scatter is 0.3%
        assert chi2 == pytest.approx(1.0, abs=0.05), f"{f['header']['RAWFILE']} {f['det'].name}: chi2 {chi2:.4f}"
        # the sky level itself, in electrons (mean(z) is not the test: VAR's Poisson term comes from
        # each pixel's own value, which puts mean(z) at -1 / (2 sigma), about -0.025)
        assert abs(offset) < 0.05 * np.sqrt(np.median(f["var"][sky])), f"sky offset {offset:.3f} e-"
        total_chi2 += chi2 * z.size
        total_n += z.size
    assert total_chi2 / total_n == pytest.approx(1.0, abs=0.05)


def _row_covariance(f: dict, n_bias: int) -> np.ndarray:
    """Per pixel, sqrt of the variance its row shares with the rest of the row within its amplifier.

    The overscan level of each row (``row_median``) is subtracted from every pixel of the row, so
    its noise is common to them; so is the row noise of the master bias. VAR holds each pixel's
    share of it but cannot hold the covariance, which an aperture sum adds coherently.
    """
    out = np.zeros(f["det"].shape)
    combine = CombineConfig()
    for amp in f["det"].amplifiers:
        factor = overscan_level_variance(amp.overscan_section.shape, OverscanConfig())
        row = amp.read_noise.to_value(u.electron) ** 2 * factor * (1 + noise_factor(n_bias, combine) / n_bias)
        out[amp.detector_section.slices] = np.sqrt(row)
    return out / f["flat_master"]


def test_bright_isolated_stars_have_their_injected_flux(frames):
    """Aperture sums (radius 12 pixels, ~5 FWHM: 99.9% of a Moffat beta=3 star) of SCI - sky
    agree with the truth fluxes within their errors; the median ratio is 1 within 1%."""
    radius = 12.0
    ratios, pulls = [], []
    for f in frames:
        ny, nx = f["det"].shape
        yy, xx = np.mgrid[:ny, :nx]
        shared = _row_covariance(f, NIGHT.n_bias)
        for star in f["truth_stars"]:
            x, y, flux = float(star["x"]), float(star["y"]), float(star["flux"])
            inside = radius <= x <= nx - 1 - radius and radius <= y <= ny - 1 - radius
            if star["saturated"] or flux < 1e4 or not inside:
                continue
            aperture = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
            if (f["mask"][aperture] != 0).any() or (f["charge"][aperture] > 0).any():
                continue  # a cosmic ray, hot pixel or bad column in the aperture
            k = int(np.argmin((f["stars"].x - x) ** 2 + (f["stars"].y - y) ** 2))
            own = np.zeros(f["det"].shape, dtype=np.float32)
            optics.render_moffat(own, (0, 0), f["stars"].x[k:k + 1], f["stars"].y[k:k + 1],
                                 f["stars"].flux[k:k + 1], f["stars"].half[k:k + 1], f["stars"].alpha)
            variance = float(f["var"][aperture].sum())
            for amp in f["det"].amplifiers:  # the shared row noise, added coherently along each row
                s = np.where(aperture, shared, 0.0)[amp.detector_section.slices]
                variance += float(np.sum(s.sum(axis=1) ** 2 - (s * s).sum(axis=1)))
            error = np.sqrt(variance)
            others = float((f["light"] - own)[aperture].sum())
            if others > 0.1 * error:
                continue  # not isolated: other stars put more than 0.1 sigma into the aperture
            measured = float((f["sci"][aperture] - f["exposure"].sky).sum()) - others
            ratios.append(measured / flux)
            pulls.append((measured - flux) / error)
    pulls = np.array(pulls)
    print(f"{len(pulls)} stars: median flux ratio {np.median(ratios):.5f}, pulls mean {pulls.mean():.2f} "
          f"std {pulls.std():.2f}, max |pull| {np.abs(pulls).max():.2f}")
    assert len(pulls) >= 10, "too few bright isolated stars to test"
    assert np.median(ratios) == pytest.approx(1.0, abs=0.01)
    assert np.all(np.abs(pulls) < 4.0), pulls
    # the spread of the pulls is the error model's test; with 10-20 stars its own scatter is ~0.2
    assert 0.5 < pulls.std() < 1.5
    assert abs(pulls.mean()) < 1.0


# ---------------------------------------------------------------- cosmic rays


def test_cosmic_ray_mask_is_complete_and_clean(frames):
    """>= 95% of the injected cosmic-ray pixels above 5 sigma are flagged, < 1% of the flagged are false.

    A pixel counts as a cosmic-ray pixel above 5 sigma if its deposited charge, divided by the
    true flat as SCI is, exceeds 5 sqrt(VAR), and detection looks at it (not saturated, bad,
    low-flat or without data). A flagged pixel is false if no cosmic ray left charge in it or in
    one of its 8 neighbours (L.A.Cosmic grows detections into neighbours above sigfrac * sigclip,
    by design).
    """
    found = injected = flagged = false = 0
    for f in frames:
        cr = (f["mask"] & int(MaskBit.CR)) != 0
        looked = (f["mask"] & int(CR_BLIND)) == 0
        strong = (f["charge"] / f["flat_true"] > 5 * np.sqrt(f["var"])) & looked
        near = ndimage.binary_dilation(f["charge"] > 0, structure=np.ones((3, 3), bool))
        injected += int(strong.sum())
        found += int((strong & cr).sum())
        flagged += int(cr.sum())
        false += int((cr & ~near).sum())
        assert f["header"]["NCRPIX"] == int(cr.sum())
    completeness, false_rate = found / injected, false / flagged
    print(f"cosmic rays: {found}/{injected} pixels above 5 sigma found ({completeness:.2%}); "
          f"{false}/{flagged} flagged pixels false ({false_rate:.2%})")
    assert injected > 300, "too few cosmic-ray pixels to measure the completeness"
    assert completeness >= 0.95
    assert false_rate < 0.01


# ---------------------------------------------------------------- masters


def _z(master: Path, truth: np.ndarray) -> np.ndarray:
    """(master - truth) / sqrt(VAR) on the unmasked pixels."""
    with fits.open(master) as hdul:
        image = hdul["SCI"].data.astype(np.float64)
        var = hdul["VAR"].data.astype(np.float64)
        mask = hdul["MASK"].data
    good = mask == 0
    assert good.mean() > 0.95
    return (image[good] - truth[good]) / np.sqrt(var[good])


def test_master_flat_matches_the_true_flat_to_its_noise(night):
    """(master - true) / sqrt(VAR): standard deviation 1 within 5%, mean 0 within 0.05 (the master
    is normalised to mean 1 over its good pixels, the truth over all, so a tiny offset remains)."""
    for det in NIGHT.detectors:
        truth = fits.getdata(night["root"] / "truth" / f"flat_{det}_r.fits").astype(np.float64)
        z = _z(night["out"] / "masters" / f"flat_{det}_r.fits", truth)
        print(f"flat {det}: z mean {z.mean():.4f} std {z.std():.4f}")
        assert z.std() == pytest.approx(1.0, abs=0.05)
        assert abs(z.mean()) < 0.05


def _bias_electrons(path: Path, det) -> np.ndarray:
    """The noiseless truth bias (raw ADU layout) overscan-subtracted row by row, in electrons, assembled."""
    raw = fits.getdata(path).astype(np.float64)
    out = np.zeros(det.shape)
    for amp in det.amplifiers:
        level = np.median(raw[amp.overscan_section.slices], axis=1, keepdims=True)
        electrons = (raw[amp.data_section.slices] - level) * amp.gain.value
        sec = amp.detector_section
        out[sec.slices] = electrons[::-1 if sec.flip_y else 1, ::-1 if sec.flip_x else 1]
    return out


def test_master_bias_matches_the_true_bias_to_its_noise(night):
    """The truth bias in electrons (column structure, start-up transient): z std 1 within 5%, mean 0."""
    for det in night["plan"].detectors:
        truth = _bias_electrons(night["root"] / "truth" / f"bias_{det.name}.fits", det)
        assert np.ptp(truth) > 5, "the truth bias should have structure to recover"
        z = _z(night["out"] / "masters" / f"bias_{det.name}.fits", truth)
        print(f"bias {det.name}: z mean {z.mean():.4f} std {z.std():.4f}")
        assert z.std() == pytest.approx(1.0, abs=0.05)
        assert abs(z.mean()) < 0.05


def test_master_dark_finds_the_true_hot_pixels(night):
    """Every true hot pixel (20% above the HOT threshold) is flagged HOT, and no pixel below 80% of
    it, except where cosmic rays hit two of the three darks (their median is then a cosmic ray:
    with 4x the site's rate, a few pixels per CCD)."""
    threshold = MasterConfig().hot_pixel_rate
    darks = [e for e in night["plan"].exposures if e.imagetyp == "dark"]
    for det in NIGHT.detectors:
        detector = next(d for d in night["plan"].detectors if d.name == det)
        hits = sum((exposure_cosmic_rays(night["plan"], e, detector).image(detector.shape)
                    > 0.5 * threshold * e.exptime).astype(int) for e in darks)
        truth = fits.getdata(night["root"] / "truth" / f"dark_{det}.fits").astype(np.float64)
        with fits.open(night["out"] / "masters" / f"dark_{det}.fits") as hdul:
            mask = hdul["MASK"].data.astype(np.int64)
            rate = hdul["SCI"].data.astype(np.float64)
        hot = (mask & int(MaskBit.HOT)) != 0
        true_hot = truth > 1.2 * threshold
        spurious = hot & (truth < 0.8 * threshold)
        print(f"dark {det}: {int((hot & true_hot).sum())}/{int(true_hot.sum())} hot pixels found, "
              f"{int(spurious.sum())} spurious, {int((spurious & (hits >= 2)).sum())} of them hit twice")
        assert true_hot.sum() > 50
        assert np.all(hot[true_hot])
        assert not np.any(spurious & (hits < 2))
        # and their rates: within 5% (a hot pixel of 1.2 e-/s collects 360 e- per 300 s dark)
        assert np.median(rate[true_hot] / truth[true_hot]) == pytest.approx(1.0, abs=0.05)
        # whole columns flagged BAD are true hot columns (a quantised master once had 80 of 576)
        columns = {c.x for c in signatures.bad_columns(NIGHT.seed, detector) if c.kind == "hot"}
        bad = set(np.nonzero((mask & int(MaskBit.BAD) != 0).all(axis=0))[0].tolist())
        assert bad <= columns, f"columns {sorted(bad - columns)} flagged BAD"


# ---------------------------------------------------------------- incomplete nights


def _copy_raw(night, tmp_path: Path, kinds: set[str]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    for exposure in night["plan"].exposures:
        if exposure.imagetyp in kinds:
            shutil.copy(night["root"] / exposure.file, raw / Path(exposure.file).name)
    return raw


def test_science_frames_alone_are_reduced_and_say_what_is_missing(night, tmp_path, capsys):
    raw = _copy_raw(night, tmp_path, {"object"})
    out = tmp_path / "out"
    summary = run_reduce(raw, out, instrument="wfst", stages=STAGES)
    assert summary.exit_status == 0 and not summary.masters
    assert len(summary.calibrated) == NIGHT.n_science * len(NIGHT.detectors)
    assert summary.missing == {p: ["bias", "dark", "flat"] for p in summary.calibrated}
    with Registry(out) as registry:
        rows = registry.products(kind="calibrated")
    assert len(rows) == len(summary.calibrated)
    assert all(row["missing"] == ["bias", "dark", "flat"] for row in rows)
    print_summary(summary)
    assert "missing calibrations: bias, dark, flat" in capsys.readouterr().out
    for exposure in (e for e in night["plan"].exposures if e.is_science):
        for det in night["plan"].detectors:
            sci, var, mask, header = _planes(_product(out, exposure, det.name))
            assert header["MISSCAL"] == "bias,dark,flat"
            assert header["ISRSTEPS"].split(",")[:3] == ["overscan", "trim", "gain"]
            assert not {"bias", "dark", "flat"} & set(header["ISRSTEPS"].split(","))
            # overscan, trim and gain done: SCI minus the true bias structure is the sky through the
            # true flat, in electrons (plus dark current, 0.15 e-)
            bias = _bias_electrons(night["root"] / "truth" / f"bias_{det.name}.fits", det)
            flat = fits.getdata(night["root"] / "truth" / f"flat_{det.name}_r.fits").astype(np.float64)
            good = mask == 0
            level = np.median((sci - bias)[good] / flat[good])
            assert level == pytest.approx(exposure.sky, rel=0.01)
            assert np.all(var[good] > 0) and np.all(np.isfinite(var[good]))


def test_a_night_without_darks_names_only_the_dark(night, tmp_path):
    raw = _copy_raw(night, tmp_path, {"bias", "flat", "object"})
    out = tmp_path / "out"
    summary = run_reduce(raw, out, instrument="wfst", stages=STAGES)
    assert summary.exit_status == 0
    assert sorted(Path(p).name for p in summary.masters) == sorted(
        [f"bias_{d}.fits" for d in NIGHT.detectors] + [f"flat_{d}_r.fits" for d in NIGHT.detectors])
    assert len(summary.calibrated) == NIGHT.n_science * len(NIGHT.detectors)
    for path in summary.calibrated:
        assert summary.missing[path] == ["dark"]
        assert fits.getheader(path)["MISSCAL"] == "dark"
        assert "bias" in fits.getheader(path)["ISRSTEPS"] and "flat" in fits.getheader(path)["ISRSTEPS"]
    with Registry(out) as registry:
        for row in registry.products():
            expected = [] if row["kind"] == "master_bias" else ["dark"]
            assert row["missing"] == expected, row["path"]
