"""Coadds (issue 4, part 5): ``lenghu.measure.coadd``.

Two kinds of test:

- small synthetic images (Gaussian stars integrated over pixels, TAN WCS, dithers, rotations
  and scale changes) for the mechanics: the grid, flux and surface brightness under
  resampling, masks, outlier rejection (a satellite trail and an unmasked cosmic ray),
  zeropoint scaling, strips and memory-mapped outputs, the file format;
- the acceptance tests on a simulated night reduced by the pipeline (4 dithered 30 s exposures
  of one 1/8-scale CCD), module-scoped:

  * flux: aperture sums of isolated unsaturated stars on the coadd against the weighted mean
    of the same apertures on the inputs (median within 0.5%, each star with S/N > 100 within
    0.5%), and against the injected fluxes (times the Moffat aperture fraction);
  * noise: on star-free pixels covered by all N inputs, the coadd's scatter against that of
    each input alone resampled to the same grid, ``sigma_N = (sum sigma_i^-2)^-1/2`` within 10%;
  * cosmic rays: at every injected cosmic-ray pixel (truth masks mapped to the coadd), the coadd
    is within 5 sigma of the local background plus the stars; the same holds with the CR mask
    bit ignored (rejection alone) wherever 3 or more inputs cover, while one input alone
    resampled with the bit ignored shows them (the check can see them);
  * SWarp: Debian's ``SWarp`` (``COMBINE_TYPE WEIGHTED``, ``LANCZOS3``, ``SUBTRACT_BACK N``,
    weights 1/VAR and 0 where masked, our grid through a ``.head`` file) on the same inputs:
    star fluxes agree, median within 1% and 95% of bright stars within 2%. SWarp ignores SIP
    (it reads TPV), so both get the inputs with their TAN part only;
  * every FITS file written passes ``fitsverify``.

Why 1/8 scale and RA 300 (galactic latitude 0): a 1/16-scale CCD at the default field holds 5
stars brighter than 30,000 electrons; this one holds about 60 isolated stars to measure. Why a
cosmic-ray rate ten times the site's: about 1000 cosmic-ray pixels over the four exposures.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std
from astropy.table import Table
from astropy.wcs import WCS
from scipy.special import erf

from lenghu.calib.masks import MASK_DTYPE, MaskBit
from lenghu.errors import ConfigError, FrameError
from lenghu.measure import coadd as C
from lenghu.measure.coadd import (
    CoaddConfig,
    CoaddGrid,
    CoaddInput,
    choose_grid,
    coadd_files,
    coadd_images,
    kernel_weights,
)

pytestmark = [
    # truth tables and our PROVENANCE carry 'electron' units, outside the FITS unit standard
    pytest.mark.filterwarnings("ignore:'electron2?' did not parse as fits unit"),
    pytest.mark.filterwarnings("ignore:The unit 'electron' could not be saved"),  # the pipeline's tables
    pytest.mark.filterwarnings("error::astropy.io.fits.verify.VerifyWarning"),
]

SCALE = 0.333  # arcsec per pixel


# ============================================================================ synthetic images
def _tan(crval=(150.0, 2.0), crpix=(48.5, 48.5), scale=SCALE, rotation=0.0, sip: float = 0.0) -> WCS:
    """A TAN WCS (``rotation``: +y axis east of north, deg); ``sip`` adds a cubic radial-ish SIP term."""
    header = fits.Header()
    header["CTYPE1"], header["CTYPE2"] = ("RA---TAN-SIP", "DEC--TAN-SIP") if sip else ("RA---TAN", "DEC--TAN")
    header["CRVAL1"], header["CRVAL2"] = crval
    header["CRPIX1"], header["CRPIX2"] = crpix
    s, t = scale / 3600.0, math.radians(rotation)
    header["CD1_1"], header["CD1_2"] = -s * math.cos(t), s * math.sin(t)
    header["CD2_1"], header["CD2_2"] = s * math.sin(t), s * math.cos(t)
    if sip:
        header["A_ORDER"] = header["B_ORDER"] = 3
        header["A_3_0"] = header["A_1_2"] = sip
        header["B_0_3"] = header["B_2_1"] = sip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WCS(header)


def _gaussians(shape, xs, ys, fluxes, sigma) -> np.ndarray:
    """Gaussian stars integrated over each pixel (exact fluxes), electrons."""
    image = np.zeros(shape)
    yy, xx = np.arange(shape[0]), np.arange(shape[1])
    root2s = math.sqrt(2.0) * sigma
    for x, y, f in zip(xs, ys, fluxes):
        gx = 0.5 * (erf((xx + 0.5 - x) / root2s) - erf((xx - 0.5 - x) / root2s))
        gy = 0.5 * (erf((yy + 0.5 - y) / root2s) - erf((yy - 0.5 - y) / root2s))
        image += f * np.outer(gy, gx)
    return image


#: Stars of the synthetic field: (RA offset, Dec offset) in pixels of SCALE from the centre, flux.
STARS = [(-20.3, -15.7, 40000.0), (18.6, -21.2, 20000.0), (-12.1, 19.4, 60000.0), (21.7, 17.9, 30000.0),
         (2.2, 1.4, 50000.0)]


def _field(shape=(96, 96), shift=(0.0, 0.0), rotation=0.0, sigma=1.3, sky=300.0, noise=True, seed=0,
           read_noise=5.0, stars=STARS, sip=0.0, name="") -> CoaddInput:
    """One calibrated exposure of the synthetic field, dithered by ``shift`` (pixels)."""
    ny, nx = shape
    wcs = _tan(crpix=((nx + 1) / 2 + shift[0], (ny + 1) / 2 + shift[1]), rotation=rotation, sip=sip)
    centre = _tan(crpix=(0.0, 0.0))  # the stars' sky positions: offsets from CRVAL in pixels of SCALE
    ra, dec = centre.pixel_to_world_values(np.array([s[0] for s in stars]) - 1.0,
                                           np.array([s[1] for s in stars]) - 1.0)
    x, y = wcs.world_to_pixel_values(ra, dec)
    light = _gaussians(shape, x, y, [s[2] for s in stars], sigma)
    expected = sky + light
    var = expected + read_noise**2
    rng = np.random.default_rng(seed)
    sci = rng.normal(expected, np.sqrt(var)) if noise else expected
    return CoaddInput(sci=sci.astype(np.float32), var=var.astype(np.float32),
                      mask=np.zeros(shape, dtype=MASK_DTYPE), wcs=wcs, name=name or f"synthetic-{seed}")


def _aperture_sums(image: np.ndarray, wcs: WCS, radius: float, stars=STARS, annulus=(12.0, 18.0)) -> np.ndarray:
    """Sky-subtracted circular aperture sums at the stars (pixel centres inside the circle)."""
    centre = _tan(crpix=(0.0, 0.0))
    ra, dec = centre.pixel_to_world_values(np.array([s[0] for s in stars]) - 1.0,
                                           np.array([s[1] for s in stars]) - 1.0)
    x, y = wcs.world_to_pixel_values(ra, dec)
    yy, xx = np.indices(image.shape)
    sums = []
    for x0, y0 in zip(x, y):
        r = np.hypot(xx - x0, yy - y0)
        ring = np.asarray(image[(r >= annulus[0]) & (r < annulus[1])], dtype=np.float64)
        sky = np.median(ring[np.isfinite(ring)]) if annulus else 0.0
        inside = r < radius
        sums.append(float(np.sum(image[inside] - sky)))
    return np.array(sums)


# ============================================================================ configuration
def test_config_validates_and_converts_units():
    config = CoaddConfig(pixel_scale=0.5 * u.arcsec, rotation=0.25 * u.rad, target_zeropoint=25 * u.mag)
    assert config.pixel_scale == pytest.approx(0.5)
    assert config.rotation == pytest.approx(math.degrees(0.25))
    assert CoaddConfig(pixel_scale=1 * u.arcmin).pixel_scale == pytest.approx(60.0)
    assert CoaddConfig.from_mapping({"kernel": "bilinear", "clip_sigma": 5}).clip_sigma == 5.0
    for bad in ({"kernel": "cubic"}, {"clip_sigma": -1}, {"clip_ampfrac": -0.1}, {"pixel_scale": 0},
                {"pixel_scale": 1 * u.kg}, {"weighting": "median"}, {"background_filter": 2},
                {"mapping_step": 0}, {"strip_megabytes": 0}, {"margin": 1.5}, {"subtract_background": "yes"}):
        with pytest.raises(ConfigError):
            CoaddConfig(**bad)
    with pytest.raises(ConfigError, match="unknown keys"):
        CoaddConfig.from_mapping({"kernal": "lanczos3"})
    assert CoaddConfig().config_hash() == CoaddConfig().config_hash() != CoaddConfig(clip_sigma=3).config_hash()


def test_kernel_weights_sum_to_one_and_interpolate():
    frac = np.linspace(0, 0.999, 50)
    for kernel in ("lanczos3", "lanczos2", "bilinear"):
        weights = kernel_weights(frac, kernel)
        assert len(weights) == 2 * C.KERNEL_HALF_WIDTHS[kernel]
        np.testing.assert_allclose(sum(weights), 1.0, atol=1e-12)
        # symmetric: the weights at 1 - frac are those at frac in reverse order
        np.testing.assert_allclose(np.array(kernel_weights(1.0 - frac, kernel))[::-1], np.array(weights),
                                   atol=1e-12)
        # a linear ramp comes back within 0.02 pixel (exactly for bilinear; Lanczos is not linear-exact)
        a = C.KERNEL_HALF_WIDTHS[kernel]
        shift = sum(w * (frac + a - 1 - k) for k, w in enumerate(weights))
        assert np.max(np.abs(shift)) < (1e-12 if kernel == "bilinear" else 0.035)
        table = C._tap_weights(frac.astype(np.float32), kernel)
        np.testing.assert_allclose(np.array(table), np.array(weights), atol=2e-3)


# ============================================================================ grid
def test_grid_covers_every_input_at_the_inputs_scale():
    images = [_field(shift=s, noise=False) for s in ((0, 0), (30.5, -12.2), (-8.0, 25.0))]
    grid = choose_grid([im.wcs for im in images], [im.shape for im in images])
    assert grid.pixel_scale == pytest.approx(SCALE, rel=1e-6)
    for im in images:
        ny, nx = im.shape
        corners = np.array([[-0.5, -0.5], [nx - 0.5, -0.5], [-0.5, ny - 0.5], [nx - 0.5, ny - 0.5]])
        ra, dec = im.wcs.pixel_to_world_values(corners[:, 0], corners[:, 1])
        x, y = grid.wcs.world_to_pixel_values(ra, dec)
        assert np.all((x >= -0.5) & (x <= grid.shape[1] - 0.5) & (y >= -0.5) & (y <= grid.shape[0] - 0.5))
    # the grid is no larger than the footprint needs: width = dither span + image + 1 pixel
    assert grid.shape[1] <= 96 + 38.5 + 2
    # rotation: +y points east at 90 deg (RA grows along +y)
    rotated = choose_grid([images[0].wcs], [images[0].shape], rotation=90.0)
    ra0, _ = rotated.wcs.pixel_to_world_values(50.0, 50.0)
    ra1, _ = rotated.wcs.pixel_to_world_values(50.0, 60.0)
    assert ra1 > ra0
    header = grid.header()
    again = CoaddGrid.from_header(header)
    assert again.shape == grid.shape
    np.testing.assert_allclose(again.wcs.wcs.crval, grid.wcs.wcs.crval)


def test_mapping_splines_match_the_exact_wcs_with_sip():
    image = _field(shape=(200, 240), sip=2e-7, rotation=7.0, noise=False)
    grid = choose_grid([image.wcs], [image.shape], pixel_scale=0.3)
    mapping = C._Mapping(grid, image, step=16)
    rows = np.arange(mapping.y0, mapping.y1 + 1, dtype=float)
    cols = np.arange(mapping.x0, mapping.x1 + 1, dtype=float)
    xi, yi, jac = mapping(rows, cols)
    gx, gy = np.meshgrid(cols, rows)
    ra, dec = grid.wcs.pixel_to_world_values(gx, gy)
    ex, ey = image.wcs.world_to_pixel_values(ra, dec)
    assert np.max(np.hypot(xi - ex, yi - ey)) < 1e-3
    # Jacobian: input pixels per output pixel, against differences of the exact mapping
    dx_dc, dx_dr = np.gradient(ex, axis=1), np.gradient(ex, axis=0)
    dy_dc, dy_dr = np.gradient(ey, axis=1), np.gradient(ey, axis=0)
    exact = np.abs(dx_dc * dy_dr - dx_dr * dy_dc)
    np.testing.assert_allclose(jac[1:-1, 1:-1], exact[1:-1, 1:-1], rtol=1e-4)
    assert np.median(jac) == pytest.approx((0.3 / SCALE) ** 2, rel=0.02)


# ============================================================================ resampling
@pytest.mark.parametrize("kernel", ["lanczos3", "bilinear"])
@pytest.mark.parametrize("scale,rotation", [(SCALE, 0.0), (0.25, 30.0), (0.45, -60.0)])
def test_surface_brightness_and_flux_are_conserved(kernel, scale, rotation):
    """A flat sky becomes sky x (output/input pixel area); star fluxes stay (noiseless inputs)."""
    images = [_field(shift=s, noise=False, sky=200.0, sigma=1.5) for s in ((0.0, 0.0), (7.3, -4.6))]
    config = CoaddConfig(pixel_scale=scale, rotation=rotation, kernel=kernel, subtract_background=False,
                         clip_sigma=None)
    coadd = coadd_images(images, config)
    area = (scale / SCALE) ** 2
    full = np.asarray(coadd.nexp) == 2
    sky = np.median(np.asarray(coadd.sci)[full])
    assert sky == pytest.approx(200.0 * area, rel=1e-4)
    radius = 10.0 * SCALE / scale
    truth = np.array([s[2] for s in STARS])
    sums = _aperture_sums(np.asarray(coadd.sci), coadd.grid.wcs, radius, annulus=(1.3 * radius, 1.9 * radius))
    np.testing.assert_allclose(sums / truth, 1.0, atol=2e-3)


def test_var_and_weight_follow_the_inputs():
    """One input: VAR of the resampled sky equals the input's; weights are 1/sky variance."""
    image = _field(noise=True, sky=400.0, read_noise=0.0, stars=[])
    coadd = coadd_images([image], CoaddConfig())
    inner = np.asarray(coadd.nexp) == 1
    assert np.median(coadd.var[inner]) == pytest.approx(400.0, rel=2e-3)
    assert np.median(coadd.weight[inner]) == pytest.approx(1 / 400.0, rel=2e-2)
    assert np.all(np.asarray(coadd.var)[inner] > 0)
    # sky subtracted by default
    assert abs(np.median(coadd.sci[inner])) < 2.0  # of a 20 e- noise
    two = coadd_images([image, _field(noise=True, sky=400.0, read_noise=0.0, stars=[], seed=3, shift=(3, 1))],
                       CoaddConfig(), grid=coadd.grid)
    both = np.asarray(two.nexp) == 2
    assert np.median(two.var[both]) == pytest.approx(200.0, rel=5e-3)


def test_masked_pixels_are_excluded_and_bits_propagate():
    images = [_field(shift=s, seed=i) for i, s in enumerate(((0, 0), (0.4, 0.3), (-0.3, 0.6)))]
    mask = images[0].mask.copy()
    mask[40:44, 50:52] = MaskBit.CR
    mask[10:20, 70] = MaskBit.BAD
    mask[60:70, 20:30] = MaskBit.LOW_FLAT  # not excluded: its bit goes to the coadd
    sci = images[0].sci.copy()
    sci[40:44, 50:52] = 1e5
    sci[10:20, 70] = np.nan
    images[0] = CoaddInput(sci, images[0].var, mask, images[0].wcs, name="masked")
    coadd = coadd_images(images, CoaddConfig(clip_sigma=None))
    x, y = coadd.grid.wcs.world_to_pixel_values(*images[0].wcs.pixel_to_world_values(50.5, 41.5))
    ix, iy = int(round(float(x))), int(round(float(y)))
    assert coadd.nexp[iy, ix] == 2
    assert abs(coadd.sci[iy, ix]) < 100  # the 1e5 cosmic ray is not there
    assert np.isfinite(np.asarray(coadd.sci)).sum() == (np.asarray(coadd.nexp) > 0).sum()
    x, y = coadd.grid.wcs.world_to_pixel_values(*images[0].wcs.pixel_to_world_values(25.0, 65.0))
    assert coadd.mask[int(round(float(y))), int(round(float(x)))] & MaskBit.LOW_FLAT
    empty = np.asarray(coadd.nexp) == 0
    assert np.all(np.asarray(coadd.mask)[empty] & MaskBit.NO_DATA)
    assert np.all(np.isnan(np.asarray(coadd.sci)[empty])) and np.all(np.asarray(coadd.weight)[empty] == 0)


def test_satellite_trail_and_unmasked_cosmic_ray_are_rejected():
    shifts = ((0, 0), (3.3, 1.7), (-2.4, 4.1), (5.2, -3.6))
    clean = [_field(shift=s, seed=10 + i) for i, s in enumerate(shifts)]
    dirty = list(clean)
    # a satellite trail across input 1 (600 e- per pixel, 2 pixels wide, across a star), a cosmic
    # ray on the sky in input 2. (On a star's steep flank an outlier is judged against the range
    # the profile spans within `clip_radius`: there only the masks protect fully.)
    sci = clean[1].sci.copy()
    rr, cc = np.indices(sci.shape)
    trail = np.abs(rr - (0.6 * cc + 10)) < 1.0
    sci[trail] += 600.0
    dirty[1] = CoaddInput(sci, clean[1].var, clean[1].mask, clean[1].wcs, name="satellite")
    sci = clean[2].sci.copy()
    sci[84:86, 55:58] += np.array([[300.0, 2000.0, 500.0], [150.0, 900.0, 200.0]])
    dirty[2] = CoaddInput(sci, clean[2].var, clean[2].mask, clean[2].wcs, name="cosmic ray")
    reference = coadd_images(clean, CoaddConfig())
    coadd = coadd_images(dirty, CoaddConfig(), grid=reference.grid)
    unclipped = coadd_images(dirty, CoaddConfig(clip_sigma=None), grid=reference.grid)
    full = np.asarray(reference.nexp) == 4
    sigma = mad_std(np.asarray(reference.sci)[full])
    # on the sky (no star light within a pixel): the trail and the cosmic ray are gone. Beside a
    # star's steep profile the rejection allows what the profile spans within `clip_radius`
    from scipy.ndimage import maximum_filter

    sky = full & (maximum_filter(np.nan_to_num(np.asarray(reference.sci)), size=3) < 5 * sigma)
    diff = np.abs(np.asarray(coadd.sci) - np.asarray(reference.sci))
    assert np.max(np.abs(np.asarray(unclipped.sci) - np.asarray(reference.sci))[sky]) > 20 * sigma
    assert np.max(diff[sky]) < 4 * sigma  # its faint resampled edges may stay, below the threshold
    fluxes = [_aperture_sums(np.asarray(c.sci), reference.grid.wcs, 8.0) for c in (reference, coadd, unclipped)]
    # the trail crosses the first star: it would add 6% to it; what is left beside the core is < 1%
    assert np.abs(fluxes[2][0] / fluxes[0][0] - 1) > 0.05
    assert np.abs(fluxes[1][0] / fluxes[0][0] - 1) < 0.01
    np.testing.assert_allclose(fluxes[1][1:], fluxes[0][1:], rtol=2e-3)
    assert coadd.inputs[1].pixels_rejected > 100 and coadd.inputs[2].pixels_rejected >= 4
    # stars are not clipped even though the inputs' seeing differs
    seeing = [_field(shift=s, seed=20 + i, sigma=1.0 + 0.3 * i) for i, s in enumerate(shifts)]
    stars = coadd_images(seeing, CoaddConfig(), grid=reference.grid)
    assert sum(s.pixels_rejected for s in stars.inputs) < 0.002 * full.sum() * 4


def test_two_inputs_reject_the_higher_one():
    a, b = _field(seed=1, stars=[]), _field(seed=2, stars=[], shift=(0.5, 0.5))
    sci = b.sci.copy()
    sci[48, 48] += 3000.0
    b = CoaddInput(sci, b.var, b.mask, b.wcs, name="hit")
    coadd = coadd_images([a, b], CoaddConfig())
    assert coadd.inputs[1].pixels_rejected > 0 and coadd.inputs[0].pixels_rejected == 0
    assert np.nanmax(np.asarray(coadd.sci)) < 150.0


def test_zeropoints_bring_inputs_to_one_level():
    base = _field(noise=False)
    double = CoaddInput(base.sci * 2, base.var * 4, base.mask, base.wcs, name="twice")
    zp = 25.0
    coadd = coadd_images([base, double], CoaddConfig(target_zeropoint=zp),
                         zeropoints=[zp, zp + 2.5 * math.log10(2.0)])
    alone = coadd_images([base], CoaddConfig(), grid=coadd.grid)
    assert coadd.zeropoint == zp
    assert [s.scale for s in coadd.inputs] == pytest.approx([1.0, 0.5])
    both = np.asarray(coadd.nexp) == 2
    np.testing.assert_allclose(np.asarray(coadd.sci)[both], np.asarray(alone.sci)[both], rtol=1e-4, atol=0.05)
    default = coadd_images([base, double], CoaddConfig(), zeropoints=[zp, zp + 1.0])
    assert default.zeropoint == pytest.approx(zp + 0.5)
    with pytest.raises(ValueError, match="zeropoints"):
        coadd_images([base, double], CoaddConfig(), zeropoints=[zp])


def test_background_weights_keep_star_fluxes_where_per_pixel_weights_do_not():
    """Per-pixel 1/VAR weights favour the fainter, poorer-seeing pixels of a star (its own photon
    noise is in VAR); the sky-only weights do not. Neither is clipped by the rejection, though
    the seeing differs (the test above checks what it does reject)."""
    bright = [(0.0, 0.0, 2e6)]
    for spread in (0.1, 0.2):  # seeing sigma 1.0, 1.1, 1.2, 1.3 pixels; then 1.0 to 1.6
        images = [_field(noise=False, sigma=1.0 + spread * i, stars=bright, shift=(0.3 * i, 0.2 * i),
                         sky=100.0) for i in range(4)]
        results = {}
        for weighting in ("background", "pixel"):
            coadd = coadd_images(images, CoaddConfig(weighting=weighting, subtract_background=False))
            assert sum(s.pixels_rejected for s in coadd.inputs) == 0
            results[weighting] = _aperture_sums(np.asarray(coadd.sci), coadd.grid.wcs, 14.0, stars=bright,
                                                annulus=(20.0, 26.0))[0] / 2e6
        assert results["background"] == pytest.approx(1.0, abs=1e-3)
        assert results["pixel"] < results["background"] - 0.02


# ============================================================================ files
def _write_product(path: Path, image: CoaddInput) -> Path:
    header = image.wcs.to_header(relax=True)
    hdus = [fits.PrimaryHDU()]
    for name, data in (("SCI", image.sci), ("VAR", image.var), ("MASK", image.mask)):
        hdus.append(fits.ImageHDU(np.asarray(data), header=header, name=name))
    fits.HDUList(hdus).writeto(path)
    return path


def test_files_strips_and_memory_maps_give_the_same_coadd(tmp_path, fitsverify):
    shifts = ((0, 0), (6.3, 2.7), (-4.4, 8.1))
    paths = [_write_product(tmp_path / f"in{i}.fits", _field(shift=s, seed=30 + i)) for i, s in enumerate(shifts)]
    result = coadd_files(paths, tmp_path / "out" / "coadd.fits")
    small = coadd_files(paths, tmp_path / "out" / "strips.fits", CoaddConfig(strip_megabytes=0.01),
                        in_memory_megabytes=0.0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["coadd.fits", "strips.fits"]  # no scratch
    with fits.open(result.path) as a, fits.open(small.path) as b:
        assert [h.name for h in a] == ["PRIMARY", "SCI", "VAR", "WEIGHT", "NEXP", "MASK", "PROVENANCE"]
        for name in ("SCI", "VAR", "WEIGHT", "NEXP", "MASK"):
            np.testing.assert_array_equal(a[name].data, b[name].data)
        assert a["SCI"].header["BUNIT"] == "electron" and a["SCI"].header["CTYPE1"] == "RA---TAN"
        assert a[0].header["NCOMBINE"] == 3
        prov = Table.read(a["PROVENANCE"])
        assert list(prov["PATH"]) == [str(p) for p in paths]
        assert all(len(c) == 64 for c in prov["CHECKSUM"])
        assert np.all(prov["NUSED"] > 0)
        assert CoaddGrid.from_header(a["SCI"].header).shape == result.shape
    assert sum(result.coverage.values()) == result.shape[0] * result.shape[1]
    for path in (result.path, small.path):
        errors, report = fitsverify(path)
        assert errors == 0, report


def test_file_errors_name_the_file(tmp_path):
    image = _field()
    no_wcs = tmp_path / "nowcs.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image.sci, name="SCI"), fits.ImageHDU(image.var, name="VAR")]
                 ).writeto(no_wcs)
    with pytest.raises(FrameError, match="nowcs.fits.*celestial WCS"):
        coadd_files([no_wcs], tmp_path / "c.fits")
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(image.sci).writeto(plain)
    with pytest.raises(FrameError, match="plain.fits.*no SCI, VAR"):
        coadd_files([plain], tmp_path / "c.fits")
    far = CoaddInput(image.sci, image.var, image.mask, _tan(crval=(10.0, -40.0)))
    grid = choose_grid([image.wcs], [image.shape])
    with pytest.raises(ValueError, match="no input overlaps"):
        coadd_images([far], grid=grid)
    assert not (tmp_path / "c.fits").exists()


# ============================================================================ a simulated night
@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict:
    """Four dithered exposures of one 1/8-scale CCD, simulated and reduced by the pipeline."""
    from lenghu.simulate.config import NightConfig
    from lenghu.simulate.night import simulate_night
    from tests.pipelines.conftest import run_reduce

    root = tmp_path_factory.mktemp("coadd_night")
    config = NightConfig(scale="1/8", seed=1, n_bias=5, n_dark=0, n_flat=3, n_science=4, filters=("r",),
                         detectors=("CCD5",), ra=300.0 * u.deg, dec=30.0 * u.deg,
                         cosmic_rate=40.0 / (u.cm**2 * u.min))
    simulate_night(config, root, progress=False)
    summary = run_reduce(root / "raw", root / "reduced", instrument="wfst")
    assert not summary.failed_frames and not summary.failed_products
    paths = sorted(Path(p) for p in summary.calibrated)
    assert len(paths) == 4
    start = time.perf_counter()
    result = coadd_files(paths, root / "coadd" / "coadd.fits")
    wall = time.perf_counter() - start
    expnums = [int(p.name.split("_")[2]) for p in paths]
    truths = [Table.read(root / "truth" / f"stars_{n:05d}.fits") for n in expnums]
    with fits.open(result.path) as hdul:
        planes = {name: np.asarray(hdul[name].data) for name in ("SCI", "VAR", "WEIGHT", "NEXP", "MASK")}
        grid = CoaddGrid.from_header(hdul["SCI"].header)
    inputs = [C.read_coadd_input(p, checksum=False) for p in paths]
    images = [i[0] for i in inputs]
    # each input alone on the same grid (same resampling, no combination)
    singles = [coadd_images([im], CoaddConfig(), grid=grid) for im in images]
    star_model, fwhm, beta = _star_model(grid, truths[0])
    data = {"root": root, "paths": paths, "result": result, "wall_s": wall, "planes": planes, "grid": grid,
            "truths": truths, "expnums": expnums, "images": images, "singles": singles,
            "model": star_model, "fwhm": fwhm, "beta": beta}
    yield data
    for _, _, hdul in inputs:
        hdul.close()


def _star_model(grid: CoaddGrid, truth: Table) -> tuple[np.ndarray, float, float]:
    """The truth stars as Moffat profiles on the coadd grid (to find star-free pixels), electrons."""
    fwhm = float(truth.meta["FWHM"]) / grid.pixel_scale
    beta = float(truth.meta["MOFFBETA"])
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    x, y = grid.wcs.world_to_pixel_values(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
    model = np.zeros(grid.shape)
    half = 40
    for x0, y0, flux in zip(x, y, np.asarray(truth["flux"])):
        ix, iy = int(round(x0)), int(round(y0))
        ys = slice(max(0, iy - half), min(grid.shape[0], iy + half + 1))
        xs = slice(max(0, ix - half), min(grid.shape[1], ix + half + 1))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        yy, xx = np.mgrid[ys, xs]
        r2 = ((xx - x0) ** 2 + (yy - y0) ** 2) / alpha**2
        model[ys, xs] += flux * (beta - 1.0) / (math.pi * alpha**2) * (1.0 + r2) ** -beta
    return model, fwhm, beta


def _moffat_fraction(radius: float, fwhm: float, beta: float) -> float:
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return 1.0 - (1.0 + (radius / alpha) ** 2) ** (1.0 - beta)


def _isolated_stars(night, min_flux: float, margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices into truth 0 of isolated unsaturated stars fully covered by every input, and their x, y."""
    truth, grid = night["truths"][0], night["grid"]
    x, y = grid.wcs.world_to_pixel_values(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
    flux = np.asarray(truth["flux"])
    fwhm = night["fwhm"]
    distance = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
    np.fill_diagonal(distance, np.inf)
    isolated = ~np.any((distance < margin + 2 * fwhm) & (flux[None, :] > 0.05 * flux[:, None]), axis=1)
    saturated = np.zeros(len(truth), dtype=bool)
    for t in night["truths"]:
        ids = set(np.asarray(t["id"])[np.asarray(t["saturated"])])
        saturated |= np.isin(np.asarray(truth["id"]), list(ids))
    nexp = night["planes"]["NEXP"]
    m = int(math.ceil(margin)) + 1
    covered = np.array([
        0 <= int(round(b)) - m and int(round(b)) + m < nexp.shape[0] and 0 <= int(round(a)) - m
        and int(round(a)) + m < nexp.shape[1]
        and bool(np.all(nexp[int(round(b)) - m:int(round(b)) + m + 1, int(round(a)) - m:int(round(a)) + m + 1]
                        == len(night["paths"])))
        for a, b in zip(x, y)])
    chosen = np.nonzero(isolated & covered & ~saturated & (flux > min_flux))[0]
    return chosen, x[chosen], y[chosen]


def _sums(image, x, y, r_ap, annulus, mask=None, err=None):
    import sep

    data = np.ascontiguousarray(np.nan_to_num(np.asarray(image, dtype=np.float64)))
    bad = ~np.isfinite(np.asarray(image)) if mask is None else mask
    kwargs = {"bkgann": annulus, "mask": bad}
    if err is not None:
        kwargs["err"] = np.ascontiguousarray(np.sqrt(np.nan_to_num(np.asarray(err, dtype=np.float64))))
    flux, flux_err, _ = sep.sum_circle(data, x, y, r_ap, **kwargs)
    return flux, flux_err


@pytest.mark.slow
def test_coadd_of_the_night_conserves_star_fluxes(night, fitsverify):
    fwhm, beta = night["fwhm"], night["beta"]
    r_ap, annulus = 3 * fwhm, (5 * fwhm, 7 * fwhm)
    chosen, x, y = _isolated_stars(night, 3000.0, annulus[1])
    assert len(chosen) >= 20
    planes = night["planes"]
    coadd_flux, coadd_err = _sums(planes["SCI"], x, y, r_ap, annulus, err=planes["VAR"])
    # the same apertures on each input (at the stars' positions through its WCS), weighted as the coadd does
    truth0 = night["truths"][0]
    ra, dec = np.asarray(truth0["ra"])[chosen], np.asarray(truth0["dec"])[chosen]
    fluxes, weights, injected = [], [], []
    clean = np.ones(len(chosen), dtype=bool)
    for image, summary, truth in zip(night["images"], night["result"].inputs, night["truths"]):
        xi, yi = image.wcs.world_to_pixel_values(ra, dec)
        bad = (np.asarray(image.mask) & CoaddConfig().mask_bits) != 0
        flux, _ = _sums(image.sci, xi, yi, r_ap, annulus, mask=bad)
        masked, _ = _sums(bad.astype(float), xi, yi, annulus[1], None)
        clean &= masked == 0
        fluxes.append(flux)
        weights.append(1.0 / summary.sky_variance)
        by_id = dict(zip(np.asarray(truth["id"]), np.asarray(truth["flux"])))
        injected.append([by_id.get(i, np.nan) for i in np.asarray(truth0["id"])[chosen]])
    weights = np.array(weights)[:, None]
    mean_inputs = np.sum(np.array(fluxes) * weights, axis=0) / weights.sum()
    mean_injected = np.sum(np.array(injected) * weights, axis=0) / weights.sum()
    ratio = (coadd_flux / mean_inputs)[clean]
    snr = (coadd_flux / coadd_err)[clean]
    assert clean.sum() >= 20
    assert abs(np.median(ratio) - 1) < 0.005, np.median(ratio)
    assert np.all(np.abs(ratio[snr > 100] - 1) < 0.005), ratio[snr > 100]
    # against the injected fluxes: the aperture holds the Moffat fraction within r_ap, less the
    # wings the annulus takes for sky
    fraction = _moffat_fraction(r_ap, fwhm, beta) - (r_ap**2 / (annulus[1] ** 2 - annulus[0] ** 2)) * (
        _moffat_fraction(annulus[1], fwhm, beta) - _moffat_fraction(annulus[0], fwhm, beta))
    to_truth = coadd_flux / (mean_injected * fraction)
    assert abs(np.median(to_truth) - 1) < 0.005, np.median(to_truth)
    night["flux_figures"] = {"stars": int(clean.sum()), "median_to_inputs": float(np.median(ratio)),
                             "max_dev_snr100": float(np.max(np.abs(ratio[snr > 100] - 1))),
                             "median_to_truth": float(np.median(to_truth))}
    errors, report = fitsverify(night["result"].path)
    assert errors == 0, report
    print(night["flux_figures"], "coadd wall", round(night["wall_s"], 2), "s")


@pytest.mark.slow
def test_coadd_noise_falls_as_inverse_sqrt_n(night):
    planes, singles, model = night["planes"], night["singles"], night["model"]
    n = len(night["paths"])
    full = planes["NEXP"] == n
    sigma_n = mad_std(planes["SCI"][full & (model < 1.0)])
    star_free = full & (model < 0.1 * sigma_n) & (planes["MASK"] == 0)
    assert star_free.sum() > 500_000
    sigma_n = mad_std(planes["SCI"][star_free])
    sigma_1 = np.array([mad_std(np.asarray(s.sci)[star_free]) for s in singles])
    expected = 1.0 / np.sqrt(np.sum(sigma_1**-2.0))
    assert sigma_n / expected == pytest.approx(1.0, abs=0.10)
    assert sigma_n / (np.mean(sigma_1) / math.sqrt(n)) == pytest.approx(1.0, abs=0.10)
    # the VAR plane scales the same way (aperture convention: larger than the per-pixel scatter)
    var_1 = np.array([np.median(np.asarray(s.var)[star_free]) for s in singles])
    var_n = np.median(planes["VAR"][star_free])
    assert var_n / (1.0 / np.sum(1.0 / var_1)) == pytest.approx(1.0, abs=0.10)
    print({"sigma_N": float(sigma_n), "expected": float(expected), "ratio": float(sigma_n / expected),
           "sigma_1": sigma_1.round(3).tolist(), "pixel_std_over_sqrt_var": float(sigma_n / np.sqrt(var_n))})


def _cosmic_ray_excess(night, coadd_sci, coadd_var, coverage, min_cover=1) -> tuple[np.ndarray, int]:
    """Coadd minus local background and stars, in units of the coadd's pixel noise, at every injected
    cosmic-ray pixel covered by at least ``min_cover`` inputs; and how many were skipped on stars."""
    grid, model, planes = night["grid"], night["model"], night["planes"]
    # pixel noise = sqrt(VAR) x (scatter / sqrt(VAR)) measured on the full-depth star-free sky
    full = (planes["NEXP"] == len(night["paths"])) & (model < 1.0)
    per_pixel = mad_std(planes["SCI"][full]) / np.sqrt(np.median(planes["VAR"][full]))
    residual = np.asarray(coadd_sci, dtype=np.float64) - model
    excess, skipped = [], 0
    for path, image, expnum in zip(night["paths"], night["images"], night["expnums"]):
        truth = fits.getdata(night["root"] / "truth" / f"cosmics_{expnum:05d}.fits", 1)
        yy, xx = np.nonzero(truth)
        ra, dec = image.wcs.pixel_to_world_values(xx, yy)
        ox, oy = grid.wcs.world_to_pixel_values(ra, dec)
        ox, oy = np.rint(ox).astype(int), np.rint(oy).astype(int)
        inside = (ox >= 0) & (oy >= 0) & (ox < grid.shape[1]) & (oy < grid.shape[0])
        ox, oy = ox[inside], oy[inside]
        sigma = per_pixel * np.sqrt(np.asarray(coadd_var)[oy, ox])
        usable = np.isfinite(sigma) & (coverage[oy, ox] >= min_cover)
        on_star = model[oy, ox] > 3 * sigma
        skipped += int((usable & on_star).sum())
        keep = usable & ~on_star
        # local background: median of the residual in the 15 x 15 pixels around
        local = np.array([np.nanmedian(residual[max(0, b - 7):b + 8, max(0, a - 7):a + 8])
                          for a, b in zip(ox[keep], oy[keep])])
        excess.append((residual[oy, ox][keep] - local) / sigma[keep])
    return np.concatenate(excess), skipped


@pytest.mark.slow
def test_no_injected_cosmic_ray_survives(night):
    planes = night["planes"]
    excess, skipped = _cosmic_ray_excess(night, planes["SCI"], planes["VAR"], planes["NEXP"])
    assert excess.size > 800
    assert np.max(excess) < 5.0, np.sort(excess)[-5:]
    # rejection alone (the CR bit ignored) removes them wherever three or more inputs cover
    images, grid = night["images"], night["grid"]
    blind = CoaddConfig(mask_bits=CoaddConfig().mask_bits & ~int(MaskBit.CR))
    coverage = sum(np.asarray(s.nexp, dtype=int) for s in night["singles"])
    rejected = coadd_images(images, blind, grid=grid)
    excess_rejection, _ = _cosmic_ray_excess(night, rejected.sci, rejected.var, coverage, min_cover=3)
    assert np.max(excess_rejection) < 5.0, np.sort(excess_rejection)[-5:]
    # and the check sees cosmic rays where they are: one input, CR bit ignored, no rejection possible
    alone = coadd_images(images[:1], blind, grid=grid)
    excess_alone, _ = _cosmic_ray_excess(night, alone.sci, alone.var, np.asarray(alone.nexp))
    assert (excess_alone > 5.0).sum() > 100
    print({"cr_pixels_checked": int(excess.size), "skipped_on_stars": skipped, "max_sigma": float(excess.max()),
           "rejection_only_max_sigma": float(excess_rejection.max()),
           "single_input_unmasked_above_5sigma": int((excess_alone > 5).sum())})


@pytest.mark.slow
def test_coadd_agrees_with_swarp(night, tmp_path, fitsverify):
    swarp = shutil.which("SWarp")
    assert swarp, "Debian's SWarp is installed by `make setup` (tools/ensure_system_packages.sh)"
    # the same inputs for both: TAN part of the WCS only (SWarp ignores SIP), SWarp files with
    # SCI and weight = 1/VAR (0 where masked), calibrated products for ours
    ours_in, swarp_in, swarp_w = [], [], []
    for k, path in enumerate(night["paths"]):
        with fits.open(path) as hdul:
            header = hdul["SCI"].header
            tan = WCS(header).celestial
            tan.sip = None
            tan.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            wcs_header = tan.to_header()
            sci, var, mask = (np.asarray(hdul[n].data) for n in ("SCI", "VAR", "MASK"))
        bad = ((mask & CoaddConfig().mask_bits) != 0) | ~np.isfinite(sci) | ~np.isfinite(var) | ~(var > 0)
        weight = np.where(bad, 0.0, 1.0 / np.where(bad, 1.0, var)).astype(np.float32)
        fits.PrimaryHDU(np.where(bad, 0.0, sci).astype(np.float32), header=wcs_header).writeto(
            tmp_path / f"s{k}.fits")
        fits.PrimaryHDU(weight, header=wcs_header).writeto(tmp_path / f"s{k}.weight.fits")
        product = fits.HDUList([fits.PrimaryHDU()] + [fits.ImageHDU(d, header=wcs_header, name=n) for n, d in
                                                      (("SCI", sci), ("VAR", var), ("MASK", mask))])
        product.writeto(tmp_path / f"tan{k}.fits")
        ours_in.append(tmp_path / f"tan{k}.fits")
        swarp_in.append(f"s{k}.fits")
        swarp_w.append(f"s{k}.weight.fits")
    for path in ours_in + [tmp_path / "s0.fits", tmp_path / "s0.weight.fits"]:
        errors, report = fitsverify(path)
        assert errors == 0, report
    config = CoaddConfig(subtract_background=False, weighting="pixel")  # as SWarp: sky kept, 1/VAR weights
    ours = coadd_files(ours_in, tmp_path / "ours.fits", config)
    grid = CoaddGrid(*(lambda h: (WCS(h).celestial, (h["NAXIS2"], h["NAXIS1"])))(fits.getheader(ours.path, "SCI")))
    (tmp_path / "swarp.head").write_text("".join(f"{str(card):80s}\n" for card in grid.header().cards) + "END\n")
    defaults = subprocess.run([swarp, "-d"], capture_output=True, text=True, check=True).stdout
    (tmp_path / "default.swarp").write_text(defaults)
    (tmp_path / "resamp").mkdir()
    start = time.perf_counter()
    subprocess.run([swarp, *swarp_in, "-c", "default.swarp", "-IMAGEOUT_NAME", "swarp.fits",
                    "-WEIGHTOUT_NAME", "swarp.weight.fits", "-WEIGHT_TYPE", "MAP_WEIGHT",
                    "-WEIGHT_IMAGE", ",".join(swarp_w), "-COMBINE_TYPE", "WEIGHTED",
                    "-RESAMPLING_TYPE", "LANCZOS3", "-SUBTRACT_BACK", "N", "-FSCALASTRO_TYPE", "FIXED",
                    "-RESAMPLE_DIR", "resamp", "-WRITE_XML", "N", "-NTHREADS", "1", "-VERBOSE_TYPE", "QUIET"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=300)
    swarp_s = time.perf_counter() - start
    with fits.open(tmp_path / "swarp.fits") as hdul:
        theirs = np.asarray(hdul[0].data, dtype=np.float64)
        their_grid = CoaddGrid.from_header(hdul[0].header)
    assert their_grid.shape == grid.shape
    np.testing.assert_allclose(their_grid.wcs.wcs_pix2world([[0.0, 0.0], [500.0, 700.0]], 0),
                               grid.wcs.wcs_pix2world([[0.0, 0.0], [500.0, 700.0]], 0), atol=1e-8)
    fwhm = night["fwhm"]
    r_ap, annulus = 3 * fwhm, (5 * fwhm, 7 * fwhm)
    chosen, _, _ = _isolated_stars(night, 5000.0, annulus[1])
    truth0 = night["truths"][0]
    x, y = grid.wcs.world_to_pixel_values(np.asarray(truth0["ra"])[chosen], np.asarray(truth0["dec"])[chosen])
    with fits.open(ours.path) as hdul:
        our_flux, _ = _sums(hdul["SCI"].data, x, y, r_ap, annulus)
    their_flux, _ = _sums(theirs, x, y, r_ap, annulus)
    ratio = our_flux / their_flux
    assert len(ratio) >= 20
    assert abs(np.median(ratio) - 1) < 0.01, np.median(ratio)
    assert np.mean(np.abs(ratio - 1) < 0.02) >= 0.95, np.sort(ratio)
    errors, report = fitsverify(ours.path)
    assert errors == 0, report
    print({"stars": len(ratio), "median_ours_over_swarp": float(np.median(ratio)),
           "max_dev": float(np.max(np.abs(ratio - 1))), "ours_s": ours.wall_s, "swarp_s": round(swarp_s, 2)})
