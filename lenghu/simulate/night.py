"""A simulated observing night: its plan, one CCD exposure, and the streaming writer.

:func:`plan_night` decides what is observed when (no pixels): calibrations in
the afternoon, ending 15 minutes before sunset (biases, darks, dome flats per
filter), then dithered science exposures of one field per filter from a
minute after the end of evening astronomical twilight, each exposure followed
by the readout and overhead time. Pointing, airmass, sidereal time and seeing
come from astropy for the instrument's site.

:func:`simulate_ccd` makes one CCD of one exposure, amplifier by amplifier:

    electrons = (sky + stars) x flat + dark x t + cosmic rays      (science)
                flat_level x flat + dark x t + cosmic rays          (dome flat)
                dark x t + cosmic rays                              (dark)
                0                                                   (bias)
    electrons += sqrt(electrons + read_noise^2) x N(0, 1)   (Poisson noise in
        the Gaussian approximation, fine for the counts that matter and much
        faster than a Poisson draw, together with the read noise)
    electrons -> capped at full well, excess bled along columns
    ADU = electrons / gain + bias level + bias structure, rounded, clipped to 0..65535
    overscan = bias level + row structure + read noise / gain x N(0, 1)

in float32 throughout, with one Gaussian draw per pixel.

:func:`simulate_night` writes the files of ``docs/raw_format.md`` one CCD
extension at a time (memory stays at about one raw CCD plus a few amplifier
buffers whatever the night's length), each file through
:func:`lenghu.io.atomic.atomic_path`. The same config gives the same bytes.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import QTable
from astropy.time import Time

from lenghu import __version__
from lenghu.errors import ConfigError
from lenghu.instruments import Amplifier, Detector, Instrument, load_instrument, scale_instrument
from lenghu.io.atomic import atomic_path, remove_stale_temporaries
from lenghu.simulate import headers as hdr
from lenghu.simulate import optics, signatures, sky, stars
from lenghu.simulate.config import SOURCE, NightConfig, rng_for

log = logging.getLogger(__name__)

#: Calibrations end this long before sunset.
CALIBRATION_LEAD = 15 * u.min
#: Science exposures must be at least this high.
MIN_ALTITUDE = 15.0  # deg


# ====================================================================== plan

@dataclass(frozen=True)
class Exposure:
    """One planned exposure (everything but the pixels).

    Attributes
    ----------
    expnum : int
        1-based, in time order.
    imagetyp : str
        ``bias``, ``dark``, ``flat`` or ``object``.
    filter : str
        Filter, ``none`` for biases and darks.
    exptime : float
        s.
    date_obs : str
        ISO UTC start, millisecond precision.
    mjd_obs : float
        MJD (UTC) of ``date_obs``.
    object : str
        ``OBJECT``.
    ra, dec : float
        Pointing written in the header (ICRS deg); the zenith for calibrations.
    true_ra, true_dec, true_rotation : float
        Where the boresight really pointed and the camera's true position
        angle (deg); they differ from the header by the pointing error.
    dither : tuple of float
        Offset of the pointing from the field centre, arcsec east and north.
    airmass, altitude, azimuth : float
        At mid-exposure (deg for the angles).
    lst : float
        Apparent local sidereal time at the start, hours.
    fwhm : float
        PSF FWHM in arcsec (science frames; 0 otherwise).
    sky : float
        Sky electrons per pixel during the exposure, before the flat field (science frames).
    file : str
        Raw file, relative to the output folder.
    """

    expnum: int
    imagetyp: str
    filter: str
    exptime: float
    date_obs: str
    mjd_obs: float
    object: str
    ra: float
    dec: float
    true_ra: float
    true_dec: float
    true_rotation: float
    dither: tuple[float, float]
    airmass: float
    altitude: float
    azimuth: float
    lst: float
    fwhm: float
    sky: float
    file: str

    @property
    def is_science(self) -> bool:
        """True for the ``object`` frames (stars and sky)."""
        return self.imagetyp == "object"

    def truth_name(self, kind: str) -> str:
        """Truth file of this exposure, relative to the output folder (``kind``: stars, cosmics, wcs)."""
        return f"truth/{kind}_{self.expnum:05d}.fits"


@dataclass(frozen=True)
class NightPlan:
    """The whole night, decided before any pixel is made.

    Attributes
    ----------
    config : NightConfig
    instrument : Instrument
        Scaled instrument with all its detectors (the mosaic's geometry).
    detectors : tuple of Detector
        The detectors simulated.
    focal_plane : FocalPlane
    distortion_k : float
        Radial distortion coefficient, pixel^-2.
    exposures : tuple of Exposure
    sunset, twilight_end, twilight_start : str
        ISO UTC of sunset, end of evening and start of morning astronomical twilight.
    pointing_error : dict
        ``shift_arcmin``, ``position_angle_deg`` (direction of the true
        boresight from the header's, east of north) and ``rotation_deg``.
    galactic_latitude : float
        Of the field centre, deg.
    refcat_radius : float
        Radius of the reference catalogue around the field centre, deg.
    """

    config: NightConfig
    instrument: Instrument
    detectors: tuple[Detector, ...]
    focal_plane: optics.FocalPlane
    distortion_k: float
    exposures: tuple[Exposure, ...]
    sunset: str
    twilight_end: str
    twilight_start: str
    pointing_error: dict
    galactic_latitude: float
    refcat_radius: float

    @property
    def pixel_scale(self) -> u.Quantity:
        """arcsec / pixel."""
        return self.instrument.pixel_scale

    @property
    def flat_filters(self) -> tuple[str, ...]:
        """Filters whose flat field is used (flats or science in them)."""
        if self.config.n_flat or self.config.n_science:
            return self.config.filters
        return ()

    def wcs(self, exposure: Exposure, detector: Detector, true: bool):
        """The header (``true=False``) or true WCS of ``detector`` in ``exposure``."""
        if true:
            return optics.detector_wcs(detector, exposure.true_ra, exposure.true_dec, exposure.true_rotation,
                                       self.pixel_scale, self.distortion_k)
        return optics.detector_wcs(detector, exposure.ra, exposure.dec, 0.0, self.pixel_scale, self.distortion_k)

    def to_json(self) -> dict:
        """The plan as JSON-ready values (no absolute paths, no wall-clock times)."""
        return {
            "software": f"lenghu {__version__}",
            "seed": self.config.seed,
            "config": self.config.to_json(),
            "instrument": {
                "name": self.instrument.name,
                "source": self.instrument.source,
                "scale": self.config.scale,
                "pixel_scale_arcsec": float(self.pixel_scale.value),
                "detectors": [d.name for d in self.detectors],
                "detsize": self.focal_plane.detsize(),
            },
            "site": {
                "name": self.instrument.site.name,
                "latitude_deg": float(self.instrument.site.latitude.value),
                "longitude_deg": float(self.instrument.site.longitude.value),
                "elevation_m": float(self.instrument.site.elevation.value),
            },
            "sun": {"sunset": self.sunset, "twilight_end": self.twilight_end, "twilight_start": self.twilight_start},
            "field": {
                "ra_deg": float(self.config.ra.value),
                "dec_deg": float(self.config.dec.value),
                "object": self.config.field_name,
                "galactic_latitude_deg": round(self.galactic_latitude, 4),
                "stars_per_deg2_r20": round(stars.counts_per_deg2(20.0, self.galactic_latitude * u.deg), 1),
                "refcat_radius_deg": self.refcat_radius,
            },
            "pointing_error": self.pointing_error,
            "distortion": {"model": "dr = k r^3 (focal-plane pixels from the boresight)", "k": self.distortion_k},
            "photometry": {
                f: {
                    "zeropoint_mag_1e_per_s": sky.ZEROPOINT[f],
                    "dark_sky_mag_arcsec2": sky.DARK_SKY[f],
                    "extinction_mag_per_airmass": sky.EXTINCTION[f],
                    "prnu": sky.PRNU[f],
                }
                for f in self.config.filters
            },
            "signatures": {
                "psf": f"Moffat beta={optics.MOFFAT_BETA}",
                "cosmic_mask_threshold_e": signatures.COSMIC_MASK_THRESHOLD,
                "hot_pixel_fraction": signatures.HOT_PIXEL_FRACTION,
                "vignetting_at_corner": signatures.VIGNETTING_AT_CORNER,
                "full_well_reads_as_saturation_times": signatures.FULL_WELL_MARGIN,
            },
            "truth": {
                "bias": {d.name: f"truth/bias_{d.name}.fits" for d in self.detectors},
                "dark": {d.name: f"truth/dark_{d.name}.fits" for d in self.detectors},
                "flat": {f"{d.name}_{f}": f"truth/flat_{d.name}_{f}.fits"
                         for d in self.detectors for f in self.flat_filters},
                "images_written": self.config.truth_images,
            },
            "refcat": "refcat.fits",
            "exposures": [
                {**asdict(e), "dither": list(e.dither),
                 "truth": {k: e.truth_name(k) for k in _truth_kinds(e)}}
                for e in self.exposures
            ],
        }


def _truth_kinds(exposure: Exposure) -> tuple[str, ...]:
    return ("cosmics", "stars", "wcs") if exposure.is_science else ("cosmics",)


def resolve_instrument(config: NightConfig) -> tuple[Instrument, tuple[Detector, ...]]:
    """The scaled instrument and the detectors to simulate.

    Raises
    ------
    ConfigError
        The instrument cannot be simulated (not a multi-extension amplifier-grid
        camera), a detector or filter is unknown.
    """
    inst = load_instrument(config.instrument)
    if inst.raw_layout != "mef" or not inst.detectors:
        raise ConfigError(SOURCE, f"instrument {inst.name} is not a multi-extension mosaic; cannot simulate it")
    for det in inst.detectors:
        if det.grid is None or any(a.overscan_section is None for a in det.amplifiers):
            raise ConfigError(SOURCE, f"instrument {inst.name}: detector {det.name} is not an amplifier grid "
                                      "with overscan; cannot simulate it")
    try:
        inst = scale_instrument(inst, config.scale)
    except ValueError as exc:
        raise ConfigError(SOURCE, str(exc)) from exc
    names = [d.name for d in inst.detectors]
    wanted = config.detectors if config.detectors is not None else tuple(names)
    unknown = [d for d in wanted if d not in names]
    if unknown:
        raise ConfigError(SOURCE, f"unknown detector(s) {', '.join(unknown)}; {inst.name} has {', '.join(names)}")
    for f in config.filters:
        if inst.filters and f not in inst.filters:
            raise ConfigError(SOURCE, f"filter {f!r} is not one of {inst.name}'s: {', '.join(inst.filters)}")
        sky.passband(f)
    detectors = tuple(d for d in inst.detectors if d.name in wanted)
    return inst, detectors


def _sun_events(config: NightConfig, inst: Instrument) -> tuple[Time, Time, Time]:
    """Sunset, end of evening and start of morning astronomical twilight of the evening of ``config.date``."""
    lon_hours = float(inst.site.longitude.to_value(u.deg)) / 15.0
    noon = Time(f"{config.date}T12:00:00", scale="utc") - lon_hours * u.hour
    minutes = np.arange(0, 24 * 60 + 1, 2.0)
    grid = noon + minutes * u.min
    alt = hdr.sun_altitude(grid, inst)

    def crossing(level: float, falling: bool, after: float = 0.0) -> Time:
        below = alt < level
        edge = np.nonzero((below[1:] & ~below[:-1]) if falling else (~below[1:] & below[:-1]))[0]
        edge = edge[minutes[edge] >= after]
        if edge.size == 0:
            raise ConfigError(SOURCE, f"the Sun does not cross {level} deg on the night of {config.date} at "
                                      f"{inst.site.name}; no night to simulate")
        i = edge[0]
        frac = (alt[i] - level) / (alt[i] - alt[i + 1])
        return noon + (minutes[i] + frac * (minutes[i + 1] - minutes[i])) * u.min

    sunset = crossing(-0.833, True)
    dusk = crossing(-18.0, True)
    dawn = crossing(-18.0, False, after=float((dusk - noon).to_value(u.min)))
    return sunset, dusk, dawn


def plan_night(config: NightConfig) -> NightPlan:
    """Decide every exposure of the night (see the module docstring).

    Raises
    ------
    ConfigError
        The instrument, detectors or filters do not fit, or the field is lower
        than 15 deg during a science exposure.
    """
    with hdr.offline_iers():
        return _plan_night(config)


def _timeline(config: NightConfig, sunset: Time, dusk: Time) -> tuple[list[tuple[str, str, float]], list[int], Time]:
    """Kind, filter and exposure time of every exposure, its dither index, and its start.

    Calibrations run back to back and end :data:`CALIBRATION_LEAD` before
    sunset; science starts a minute after twilight ends (the slew to the
    field). Start times are whole milliseconds from a whole-second reference,
    so that ``DATE-OBS`` and ``MJD-OBS`` agree exactly.
    """
    readout = config.readout_time.to_value(u.s)
    calib: list[tuple[str, str, float]] = [("bias", "none", 0.0)] * config.n_bias
    calib += [("dark", "none", config.dark_exptime.to_value(u.s))] * config.n_dark
    for f in config.filters:
        calib += [("flat", f, config.flat_exptime.to_value(u.s))] * config.n_flat
    science = [("object", f, config.exptime.to_value(u.s)) for f in config.filters for _ in range(config.n_science)]
    dither_index = [-1] * len(calib) + [i for _ in config.filters for i in range(config.n_science)]
    ref = Time(np.ceil(dusk.unix) + 60.0, format="unix", scale="utc")
    t = ((sunset - CALIBRATION_LEAD) - ref).to_value(u.s) - sum(exp + readout for _, _, exp in calib)
    offsets = []
    for _, _, exp in calib:
        offsets.append(t)
        t += exp + readout
    t = 0.0
    for _, _, exp in science:
        offsets.append(t)
        t += exp + readout
    return calib + science, dither_index, ref + np.round(np.array(offsets, dtype=float), 3) * u.s


def _dithers(config: NightConfig) -> np.ndarray:
    """Dither offsets (arcsec east, north): the first on the field centre, the others random within the radius."""
    rng = rng_for(config.seed, "dither")
    count = max(config.n_science, 1)
    radius = config.dither.to_value(u.arcsec) * np.sqrt(rng.random(count))
    angle = rng.uniform(0.0, 2 * np.pi, count)
    offsets = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    offsets[0] = 0.0
    return offsets


def _plan_night(config: NightConfig) -> NightPlan:
    from astropy.coordinates import SkyCoord

    inst, detectors = resolve_instrument(config)
    focal = optics.FocalPlane.of(inst)
    sunset, dusk, dawn = _sun_events(config, inst)
    kinds, dither_index, starts = _timeline(config, sunset, dusk)
    n = len(kinds)
    exptimes = np.array([e for _, _, e in kinds])
    mids = starts + (exptimes / 2) * u.s

    # Pointing: the dithered field for science, the zenith (telescope parked) for calibrations.
    is_sci = np.array([k == "object" for k, _, _ in kinds])
    dithers = np.zeros((n, 2))
    dithers[is_sci] = _dithers(config)[np.array(dither_index)[is_sci]]
    ra, dec = np.zeros(n), np.zeros(n)
    ra0, dec0 = config.ra.to_value(u.deg), config.dec.to_value(u.deg)
    if is_sci.any():
        ra[is_sci], dec[is_sci] = optics.tangent_offset(ra0, dec0, dithers[is_sci, 0] / 3600, dithers[is_sci, 1] / 3600)
    if (~is_sci).any():
        ra[~is_sci], dec[~is_sci] = hdr.zenith(mids[~is_sci], inst)
    # The true boresight: off the header's by the pointing error, in a direction the seed picks.
    pe_angle = float(rng_for(config.seed, "pointing-error").uniform(0.0, 360.0))
    shift = config.pointing_error_shift.to_value(u.deg)
    true_ra, true_dec = optics.tangent_offset(ra, dec, np.full(n, shift * np.sin(np.radians(pe_angle))),
                                              np.full(n, shift * np.cos(np.radians(pe_angle))))
    true_ra = np.where(is_sci, true_ra, ra)
    true_dec = np.where(is_sci, true_dec, dec)
    alt, az, airmass = hdr.sky_geometry(mids, ra, dec, inst)
    airmass = np.where(is_sci, airmass, 1.0)
    alt = np.where(is_sci, alt, 90.0)
    lst = hdr.local_sidereal_time(starts, inst)

    low = is_sci & (alt < MIN_ALTITUDE)
    if low.any():
        i = int(np.nonzero(low)[0][0])
        raise ConfigError(
            SOURCE, f"the field RA {ra0:.4f}, Dec {dec0:.4f} is at altitude {alt[i]:.1f} deg at "
                    f"{starts[i].isot} (below {MIN_ALTITUDE:.0f} deg) on the night of {config.date}; "
                    "choose another --ra/--dec or --date")
    if is_sci.any() and (starts[-1] + exptimes[-1] * u.s) > dawn:
        log.warning("science exposures run past morning twilight (%s)", dawn.isot)

    seeing = config.seeing if config.seeing is not None else inst.site.median_seeing
    isot = starts.isot
    mjd = starts.mjd
    date_tag = config.evening.strftime("%Y%m%d")
    suffix = ".fits.fz" if config.compress else ".fits"
    exposures = []
    for i, (kind, f, exp) in enumerate(kinds):
        expnum = i + 1
        band = sky.passband(f) if kind == "object" else None
        obj = {"bias": "bias", "dark": "dark", "flat": f"dome flat {f}"}.get(kind, config.field_name)
        exposures.append(Exposure(
            expnum=expnum,
            imagetyp=kind,
            filter=f,
            exptime=float(exp),
            date_obs=str(isot[i]),
            mjd_obs=float(mjd[i]),
            object=obj,
            ra=float(ra[i]),
            dec=float(dec[i]),
            true_ra=float(true_ra[i]),
            true_dec=float(true_dec[i]),
            true_rotation=float(config.pointing_error_rotation.to_value(u.deg)) if kind == "object" else 0.0,
            dither=(float(dithers[i, 0]), float(dithers[i, 1])),
            airmass=float(airmass[i]),
            altitude=float(alt[i]),
            azimuth=float(az[i]),
            lst=float(lst[i]),
            fwhm=float(band.fwhm(seeing, airmass[i]).to_value(u.arcsec)) if band else 0.0,
            sky=band.sky_rate(float(airmass[i]), inst.pixel_scale) * exp if band else 0.0,
            file=f"raw/{inst.name}_{date_tag}_{expnum:05d}{suffix}",
        ))

    b = float(SkyCoord(config.ra, config.dec, frame="icrs").galactic.b.deg)
    k = focal.distortion_coefficient(config.distortion)
    reach_px = focal.corner_radius + k * focal.corner_radius**3 + optics.STAMP_HALF_SIZES[-1]
    refcat_radius = (reach_px * inst.pixel_scale.to_value(u.arcsec / u.pixel) + config.dither.to_value(u.arcsec)
                     + config.pointing_error_shift.to_value(u.arcsec) + 60.0) / 3600.0
    return NightPlan(
        config=config,
        instrument=inst,
        detectors=detectors,
        focal_plane=focal,
        distortion_k=k,
        exposures=tuple(exposures),
        sunset=sunset.isot,
        twilight_end=dusk.isot,
        twilight_start=dawn.isot,
        pointing_error={
            "shift_arcmin": float(config.pointing_error_shift.to_value(u.arcmin)),
            "position_angle_deg": round(pe_angle, 6),
            "rotation_deg": float(config.pointing_error_rotation.to_value(u.deg)),
        },
        galactic_latitude=b,
        refcat_radius=float(refcat_radius),
    )


# ====================================================================== one CCD

@dataclass(frozen=True)
class StarsOnDetector:
    """Stars that put light on one CCD in one exposure (assembled pixel coordinates, 0-based).

    ``truth`` marks those whose centre lies on the CCD (the truth table's rows).
    """

    ids: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    flux: np.ndarray
    half: np.ndarray
    alpha: float
    truth: np.ndarray


@dataclass(frozen=True)
class CcdExposure:
    """One simulated CCD of one exposure.

    Attributes
    ----------
    raw : ndarray of uint16
        The raw array, data and overscan, ``detector.raw_shape``.
    cosmic_index : ndarray of int64
        Flat indices (assembled layout) of the pixels the cosmic-ray truth mask flags.
    cosmic_events : int
        Particles that hit the CCD.
    bled_columns : int
        Columns with saturated, bleeding pixels.
    """

    raw: np.ndarray
    cosmic_index: np.ndarray
    cosmic_events: int
    bled_columns: int


class ReferenceStars:
    """The reference catalogue as plain arrays, projected per exposure."""

    def __init__(self, table: QTable):
        self.ids = np.asarray(table["id"])
        self.ra = np.asarray(table["ra"].to_value(u.deg), dtype=float)
        self.dec = np.asarray(table["dec"].to_value(u.deg), dtype=float)
        self.mags = {f: np.asarray(table[f"mag_{f}"].to_value(u.mag)) for f in stars.FILTERS}

    def on_detector(self, plan: NightPlan, exposure: Exposure, detector: Detector,
                    projected: tuple[np.ndarray, np.ndarray]) -> StarsOnDetector:
        """Stars near ``detector`` in ``exposure``, positions from its true WCS.

        ``projected`` is :func:`optics.gnomonic` of the catalogue about the
        exposure's true boresight (computed once per exposure).
        """
        xi, eta = projected
        s = plan.pixel_scale.to_value(u.deg / u.pixel)
        th = np.radians(exposure.true_rotation)
        fx = (-np.cos(th) * xi + np.sin(th) * eta) / s
        fy = (np.sin(th) * xi + np.cos(th) * eta) / s
        ny, nx = detector.shape
        dy, dx = detector.offset
        margin = plan.distortion_k * plan.focal_plane.corner_radius**3 + 2 + optics.STAMP_HALF_SIZES[-1]
        lx = fx - dx + (nx - 1) / 2
        ly = fy - dy + (ny - 1) / 2
        near = np.nonzero((lx > -margin) & (lx < nx - 1 + margin) & (ly > -margin) & (ly < ny - 1 + margin))[0]
        w = plan.wcs(exposure, detector, true=True)
        x, y = optics.world_to_pixel(w, self.ra[near], self.dec[near])
        band = sky.passband(exposure.filter)
        mag = self.mags[exposure.filter][near]
        flux = band.star_rate(mag, exposure.airmass) * exposure.exptime
        alpha = optics.moffat_alpha(exposure.fwhm / plan.pixel_scale.to_value(u.arcsec / u.pixel))
        half = optics.stamp_half_sizes(flux, alpha)
        touches = (x + half >= -0.5) & (x - half <= nx - 0.5) & (y + half >= -0.5) & (y - half <= ny - 0.5)
        truth = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
        keep = np.nonzero(touches)[0]
        return StarsOnDetector(
            ids=self.ids[near][keep], ra=self.ra[near][keep], dec=self.dec[near][keep],
            x=x[keep], y=y[keep], mag=mag[keep], flux=flux[keep], half=half[keep],
            alpha=float(alpha), truth=truth[keep],
        )


def flat_norm(plan: NightPlan, detector: Detector, filter_name: str) -> float:
    """Mean of ``detector``'s unnormalised flat in ``filter_name`` (the flat is divided by it)."""
    total = 0.0
    for amp, pattern in _flat_patterns(plan, detector, filter_name):
        total += float(pattern.sum(dtype=np.float64))
    ny, nx = detector.shape
    return total / (ny * nx)


def _flat_patterns(plan: NightPlan, detector: Detector, filter_name: str):
    seed = plan.config.seed
    columns = signatures.bad_columns(seed, detector)
    donuts = signatures.dust_donuts(seed, detector, filter_name)
    prnu = sky.passband(filter_name).prnu
    for amp in detector.amplifiers:
        yield amp, signatures.flat_pattern(seed, detector, amp, prnu, plan.focal_plane.corner_radius, donuts, columns)


def exposure_cosmic_rays(plan: NightPlan, exposure: Exposure, detector: Detector) -> signatures.CosmicRays | None:
    """The cosmic rays that hit ``detector`` during ``exposure`` (None for a 0 s exposure).

    These are the deposits :func:`simulate_ccd` adds, regenerated from their
    own random stream; the truth files keep only the mask of pixels above
    :data:`signatures.COSMIC_MASK_THRESHOLD`, so tests that need the charge of
    every pixel (``CosmicRays.image``) call this.
    """
    if exposure.exptime <= 0:
        return None
    return signatures.cosmic_rays(
        rng_for(plan.config.seed, "cosmics", exposure.expnum, detector.index), detector.shape, exposure.exptime,
        plan.config.cosmic_rate.to_value(1 / (u.cm**2 * u.min)), detector.pixel_size.to_value(u.um))


def simulate_ccd(
    plan: NightPlan,
    exposure: Exposure,
    detector: Detector,
    norms: dict[tuple[str, str], float],
    on_chip: StarsOnDetector | None = None,
) -> CcdExposure:
    """One CCD of one exposure (see the module docstring for the model).

    Parameters
    ----------
    plan : NightPlan
    exposure : Exposure
    detector : Detector
    norms : dict
        ``(detector name, filter) -> flat mean`` (:func:`flat_norm`).
    on_chip : StarsOnDetector or None
        Stars of a science exposure.
    """
    seed = plan.config.seed
    t = exposure.exptime
    kind = exposure.imagetyp
    raw = np.empty(detector.raw_shape, dtype=np.uint16)
    columns = signatures.bad_columns(seed, detector)
    cosmics = exposure_cosmic_rays(plan, exposure, detector)
    if kind in ("flat", "object"):
        donuts = signatures.dust_donuts(seed, detector, exposure.filter)
        prnu = sky.passband(exposure.filter).prnu
        norm = np.float32(norms[(detector.name, exposure.filter)])
    bled = 0
    for index, amp in enumerate(detector.amplifiers):
        sec = amp.detector_section
        shape = sec.shape
        bias = signatures.bias_pattern(seed, detector, amp)
        if kind == "bias":
            electrons = None
        else:
            if kind in ("flat", "object"):
                flat = signatures.flat_pattern(seed, detector, amp, prnu, plan.focal_plane.corner_radius,
                                               donuts, columns)
                flat /= norm
                if kind == "flat":
                    electrons = flat
                    electrons *= np.float32(plan.config.flat_level.to_value(u.electron))
                else:
                    electrons = np.full(shape, exposure.sky, dtype=np.float32)
                    if on_chip is not None and on_chip.x.size:
                        optics.render_moffat(electrons, (sec.y0, sec.x0), on_chip.x, on_chip.y, on_chip.flux,
                                             on_chip.half, on_chip.alpha)
                    electrons *= flat
                    del flat
            else:
                electrons = np.zeros(shape, dtype=np.float32)
            dark = signatures.dark_pattern(seed, detector, amp, columns)
            electrons += np.float32(dark.base * t)
            np.add.at(electrons.reshape(-1), dark.index, dark.rate * np.float32(t))
            if cosmics is not None and cosmics.events:
                inside = (cosmics.y >= sec.y0) & (cosmics.y < sec.y1) & (cosmics.x >= sec.x0) & (cosmics.x < sec.x1)
                local = (cosmics.y[inside] - sec.y0) * shape[1] + (cosmics.x[inside] - sec.x0)
                np.add.at(electrons.reshape(-1), local, cosmics.electrons[inside])
        rng = rng_for(seed, "noise", exposure.expnum, detector.index, index)
        bled += _digitise(raw, amp, bias, electrons, rng)
    cosmic_index = cosmics.mask_index(detector.shape) if cosmics is not None else np.zeros(0, dtype=np.int64)
    return CcdExposure(raw=raw, cosmic_index=cosmic_index,
                       cosmic_events=cosmics.events if cosmics is not None else 0, bled_columns=bled)


def _digitise(raw: np.ndarray, amp: Amplifier, bias: signatures.BiasPattern,
              electrons: np.ndarray | None, rng: np.random.Generator) -> int:
    """Noise, saturation and conversion to ADU of one amplifier, written into ``raw``.

    ``electrons`` (noiseless, float32) is used as the work buffer. Returns the
    number of bleeding columns.
    """
    gain = float(amp.gain.value)
    rn = float(amp.read_noise.value)
    shape = amp.data_section.shape
    noise = rng.standard_normal(shape, dtype=np.float32)
    bled = 0
    if electrons is None:
        noise *= np.float32(rn / gain)
        adu = noise
    else:
        sigma = electrons + np.float32(rn * rn)
        np.sqrt(sigma, out=sigma)
        sigma *= noise
        electrons += sigma
        del sigma, noise
        bled = signatures.bleed(electrons, signatures.full_well(amp))
        electrons *= np.float32(1.0 / gain)
        adu = electrons
    adu += bias.columns[None, :]
    adu += (np.float32(bias.level) + bias.rows)[:, None]
    np.clip(adu, 0.0, 65535.0, out=adu)
    adu += np.float32(0.5)
    raw[amp.data_section.slices] = adu  # truncation after +0.5: rounding
    osec = amp.overscan_section
    over = rng.standard_normal(osec.shape, dtype=np.float32)
    over *= np.float32(rn / gain)
    over += (np.float32(bias.level) + bias.rows)[:, None]
    np.clip(over, 0.0, 65535.0, out=over)
    over += np.float32(0.5)
    raw[osec.slices] = over
    return bled


# ====================================================================== writing

#: Bytes of an empty primary HDU as astropy writes it (one header block).
_EMPTY_PRIMARY_BYTES = 2880


class _MefWriter:
    """Writes a multi-extension FITS file one extension at a time.

    Plain files: the unsigned 16-bit data are written directly (offset by
    32768, big-endian) without copies through astropy. Compressed files:
    each CCD is appended as a Rice-compressed tile HDU (lossless for integers).
    """

    def __init__(self, path: Path, compress: bool):
        self.path = path
        self.compress = compress
        if len(fits.PrimaryHDU().header.tostring()) != _EMPTY_PRIMARY_BYTES:  # pragma: no cover
            raise RuntimeError("astropy writes an empty primary header longer than one FITS block")
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> "_MefWriter":
        self._handle = open(self.path, "wb")
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def primary(self, header: fits.Header) -> None:
        self._handle.write(header.tostring().encode("ascii"))
        self._handle.flush()

    def image_u16(self, cards: fits.Header, data: np.ndarray) -> None:
        """Append ``data`` (uint16; consumed: it is modified in place) with ``cards``."""
        if self.compress:
            self._append_compressed(cards, data, "RICE_1")
            return
        header = hdr.image_extension_cards(data.shape, 16, unsigned16=True)
        header.extend(cards, strip=True)
        self._handle.write(header.tostring().encode("ascii"))
        np.bitwise_xor(data, np.uint16(0x8000), out=data)
        if sys.byteorder == "little":
            data.byteswap(inplace=True)
        self._handle.write(memoryview(np.ascontiguousarray(data)).cast("B"))
        self._handle.write(b"\0" * ((-data.nbytes) % 2880))

    def mask_u8(self, name: str, data: np.ndarray, cards: fits.Header | None = None) -> None:
        """Append a uint8 mask, always tile-compressed (masks shrink a thousandfold)."""
        header = fits.Header(cards) if cards is not None else fits.Header()
        header["EXTNAME"] = name
        self._append_compressed(header, data, "RICE_1")

    def _append_compressed(self, cards: fits.Header, data: np.ndarray, kind: str) -> None:
        # Astropy writes the compressed HDU after a throw-away primary into memory; its bytes
        # do not depend on where they land, so they are appended as they are (opening the file
        # in astropy's append mode would re-read every HDU before it: quadratic in CCDs).
        hdu = fits.CompImageHDU(data=data, header=cards, compression_type=kind)
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        view = buffer.getbuffer()
        self._handle.write(view[_EMPTY_PRIMARY_BYTES:])
        del view


def _write_primary_image(path: Path, data: np.ndarray, cards: list[tuple]) -> None:
    header = fits.Header()
    for key, value, comment in cards:
        header[key] = (value, comment)
    with atomic_path(path) as tmp:
        fits.PrimaryHDU(data=data, header=header).writeto(tmp)


def write_truth_images(plan: NightPlan, out: Path, write: bool = True) -> dict[tuple[str, str], float]:
    """Write the bias/dark/flat truth images (if ``write``) and return the flat norms.

    One CCD-sized array exists at a time.
    """
    seed = plan.config.seed
    norms: dict[tuple[str, str], float] = {}
    common = [("SIMULATE", True, "simulated truth"), ("SIMSEED", seed, "seed of the simulation")]
    for det in plan.detectors:
        if write:
            bias = np.empty(det.raw_shape, dtype=np.float32)
            for amp in det.amplifiers:
                pattern = signatures.bias_pattern(seed, det, amp)
                bias[amp.data_section.slices] = pattern.data()
                bias[amp.overscan_section.slices] = pattern.overscan(amp.overscan_section.shape[1])
            _write_primary_image(out / "truth" / f"bias_{det.name}.fits", bias, common + [
                ("CCDNAME", det.name, "CCD"), ("BUNIT", "adu", "noiseless bias, raw layout")])
            del bias
            columns = signatures.bad_columns(seed, det)
            dark = np.empty(det.shape, dtype=np.float32)
            for amp in det.amplifiers:
                dark[amp.detector_section.slices] = signatures.dark_pattern(seed, det, amp, columns).image(
                    amp.detector_section.shape)
            _write_primary_image(out / "truth" / f"dark_{det.name}.fits", dark, common + [
                ("CCDNAME", det.name, "CCD"), ("BUNIT", "electron/s", "dark current, assembled layout")])
            del dark
        for f in plan.flat_filters:
            if not write:
                norms[(det.name, f)] = flat_norm(plan, det, f)
                continue
            flat = np.empty(det.shape, dtype=np.float32)
            total = 0.0
            for amp, pattern in _flat_patterns(plan, det, f):  # the same sum, in the same order, as flat_norm
                total += float(pattern.sum(dtype=np.float64))
                flat[amp.detector_section.slices] = pattern
            norm = norms[(det.name, f)] = total / (det.shape[0] * det.shape[1])
            flat /= np.float32(norm)  # the same float32 division as simulate_ccd's, pixel for pixel
            _write_primary_image(out / "truth" / f"flat_{det.name}_{f}.fits", flat, common + [
                ("CCDNAME", det.name, "CCD"), ("FILTER", f, "filter"),
                ("BUNIT", "", "relative response, assembled layout, mean 1")])
            del flat
    return norms


def _stars_table(exposure: Exposure, rows: list[tuple[Detector, StarsOnDetector]], plan: NightPlan) -> QTable:
    parts = {k: [] for k in ("detector", "id", "x", "y", "ra", "dec", "flux", "mag", "peak", "saturated")}
    for det, st in rows:
        sel = st.truth
        n = int(sel.sum())
        x, y, flux = st.x[sel], st.y[sel], st.flux[sel]
        d2 = (x - np.rint(x)) ** 2 + (y - np.rint(y)) ** 2
        peak = flux * optics.moffat_peak_fraction(st.alpha) * (1 + d2 / st.alpha**2) ** -optics.MOFFAT_BETA
        capacity = min(signatures.full_well(a) for a in det.amplifiers)
        parts["detector"].append(np.full(n, det.name))
        parts["id"].append(st.ids[sel])
        parts["x"].append(x)
        parts["y"].append(y)
        parts["ra"].append(st.ra[sel])
        parts["dec"].append(st.dec[sel])
        parts["flux"].append(flux)
        parts["mag"].append(st.mag[sel])
        parts["peak"].append(peak)
        parts["saturated"].append(peak * 1.05 + exposure.sky >= capacity)
    table = QTable()
    units = {"x": u.pixel, "y": u.pixel, "ra": u.deg, "dec": u.deg, "flux": u.electron, "mag": u.mag,
             "peak": u.electron}
    for key, chunks in parts.items():
        col = np.concatenate(chunks) if chunks else np.zeros(0)
        if key == "detector":
            col = col.astype("U8") if len(col) else np.zeros(0, dtype="U8")
        table[key] = col * units[key] if key in units else col
    table.meta["EXPNUM"] = exposure.expnum
    table.meta["FILTER"] = exposure.filter
    table.meta["EXPTIME"] = exposure.exptime
    table.meta["AIRMASS"] = round(exposure.airmass, 6)
    table.meta["FWHM"] = (round(exposure.fwhm, 6), "[arcsec] PSF FWHM")
    table.meta["MOFFBETA"] = (optics.MOFFAT_BETA, "Moffat beta")
    table.meta["SKY"] = (round(exposure.sky, 4), "[electron] sky per pixel before the flat")
    table.meta["ZP"] = (sky.ZEROPOINT[exposure.filter], "[mag] AB mag for 1 e-/s at airmass 1")
    table.meta["COMMENT"] = ("x, y: 0-based assembled pixels; flux: electrons before flat field and noise; "
                             "peak: approximate brightest pixel")
    return table


def write_table(path: Path, table: QTable) -> None:
    """Write ``table`` as a FITS binary table with a ``TUNIT`` on every column that has a unit.

    Astropy leaves out ``TUNIT`` for units outside the FITS standard, such as
    ``electron`` (it keeps them only in its own serialised metadata, and warns);
    we write them anyway, as most pipelines do, so non-astropy readers see them.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not be saved in native FITS format.*")
        hdu = fits.table_to_hdu(table)
    for name in table.colnames:
        unit = getattr(table[name], "unit", None)
        if unit is not None and unit != u.dimensionless_unscaled and not hdu.columns[name].unit:
            hdu.columns[name].unit = unit.to_string()
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)


def _write_wcs_truth(path: Path, plan: NightPlan, exposure: Exposure) -> None:
    primary = fits.PrimaryHDU()
    primary.header["EXPNUM"] = exposure.expnum
    primary.header["PESHIFT"] = (plan.pointing_error["shift_arcmin"], "[arcmin] true minus header boresight")
    primary.header["PEPA"] = (plan.pointing_error["position_angle_deg"], "[deg] its direction, E of N")
    primary.header["PEROT"] = (plan.pointing_error["rotation_deg"], "[deg] true minus header rotation")
    primary.header["TRUERA"] = (exposure.true_ra, "[deg] true boresight")
    primary.header["TRUEDEC"] = (exposure.true_dec, "[deg] true boresight")
    hdus = [primary]
    for det in plan.detectors:
        hdus.append(fits.ImageHDU(header=hdr.wcs_cards(plan.wcs(exposure, det, true=True)), name=det.name))
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp)


@dataclass(frozen=True)
class ExposureStats:
    """What happened in one exposure (recorded in ``night.json``)."""

    expnum: int
    stars: int
    cosmic_events: int
    cosmic_pixels: int
    bled_columns: int


def _write_cosmic_masks(path: Path, exposure: Exposure, masks: list[tuple[Detector, np.ndarray]]) -> None:
    """The cosmic-ray truth: one compressed uint8 mask per CCD (empty ones for biases)."""
    head = fits.Header()
    head["SIMPLE"] = True
    head["BITPIX"] = 8
    head["NAXIS"] = 0
    head["EXTEND"] = True
    head["EXPNUM"] = (exposure.expnum, "exposure number in the night")
    head["CRTHRESH"] = (signatures.COSMIC_MASK_THRESHOLD, "[electron] pixels above are flagged")
    with atomic_path(path) as tmp, _MefWriter(tmp, False) as writer:
        writer.primary(head)
        for det, index in masks:
            mask = np.zeros(det.shape[0] * det.shape[1], dtype=np.uint8)
            mask[index] = 1
            writer.mask_u8(det.name, mask.reshape(det.shape))
            del mask


def write_exposure(plan: NightPlan, exposure: Exposure, out: Path, norms: dict,
                   refstars: ReferenceStars | None) -> ExposureStats:
    """Simulate and write one exposure and its truth files, one CCD at a time."""
    compress = plan.config.compress
    primary = hdr.primary_header(exposure, plan.instrument, plan.focal_plane.detsize(), plan.config.seed,
                                 plan.config.scale)
    star_rows: list[tuple[Detector, StarsOnDetector]] = []
    masks: list[tuple[Detector, np.ndarray]] = []
    events = bled = 0
    projected = None
    if exposure.is_science and refstars is not None:
        projected = optics.gnomonic(refstars.ra, refstars.dec, exposure.true_ra, exposure.true_dec)
    with atomic_path(out / exposure.file) as tmp, _MefWriter(tmp, compress) as writer:
        writer.primary(primary)
        for det in plan.detectors:
            on_chip = refstars.on_detector(plan, exposure, det, projected) if projected is not None else None
            ccd = simulate_ccd(plan, exposure, det, norms, on_chip)
            wcs = plan.wcs(exposure, det, true=False) if exposure.is_science else None
            cards = hdr.detector_header(det, plan.focal_plane.detsec(det).to_fits(), wcs)
            writer.image_u16(cards, ccd.raw)
            if on_chip is not None:
                star_rows.append((det, on_chip))
            masks.append((det, ccd.cosmic_index))
            events += ccd.cosmic_events
            bled += ccd.bled_columns
            del ccd  # the raw array goes before the next CCD is made
    _write_cosmic_masks(out / exposure.truth_name("cosmics"), exposure, masks)
    n_stars = 0
    if exposure.is_science:
        table = _stars_table(exposure, star_rows, plan)
        n_stars = len(table)
        write_table(out / exposure.truth_name("stars"), table)
        _write_wcs_truth(out / exposure.truth_name("wcs"), plan, exposure)
    return ExposureStats(
        expnum=exposure.expnum, stars=n_stars, cosmic_events=events,
        cosmic_pixels=int(sum(i.size for _, i in masks)), bled_columns=bled,
    )


@dataclass(frozen=True)
class NightSummary:
    """What :func:`simulate_night` wrote.

    Attributes
    ----------
    out : Path
        The output folder.
    raw_files : tuple of Path
        Raw exposures in time order.
    truth_dir : Path
    refcat : Path
    night_json : Path
    exposures : int
    detectors : int
        CCDs per exposure.
    bytes_written : int
        Raw files only.
    setup_seconds : float
        Planning, reference catalogue and truth images.
    exposure_seconds : tuple of float
        Wall time of each exposure (simulated and written).
    stats : tuple of ExposureStats
    """

    out: Path
    raw_files: tuple[Path, ...]
    truth_dir: Path
    refcat: Path
    night_json: Path
    exposures: int
    detectors: int
    bytes_written: int
    setup_seconds: float
    exposure_seconds: tuple[float, ...]
    stats: tuple[ExposureStats, ...]

    @property
    def seconds(self) -> float:
        """Total wall time."""
        return self.setup_seconds + sum(self.exposure_seconds)


def estimated_bytes(plan: NightPlan) -> int:
    """A generous estimate of the disk space the night needs."""
    raw = sum(d.raw_shape[0] * d.raw_shape[1] * 2 for d in plan.detectors)
    if plan.config.compress:
        raw = raw * 6 // 10
    truth = 0
    if plan.config.truth_images:
        truth = sum(4 * (d.raw_shape[0] * d.raw_shape[1] + d.shape[0] * d.shape[1] * (1 + len(plan.flat_filters)))
                    for d in plan.detectors)
    return len(plan.exposures) * (raw + 2880 * 20) + truth + 50_000_000


def _prepare_output(out: Path, plan: NightPlan) -> None:
    """Create ``out/raw`` and ``out/truth``; refuse (or with ``overwrite`` clear) a night already there."""
    if out.exists() and not out.is_dir():
        raise ConfigError(SOURCE, f"{out} exists and is not a folder")
    existing = []
    if (out / "raw").is_dir():
        existing += [p for p in (out / "raw").iterdir() if p.name.endswith((".fits", ".fits.fz"))]
    if (out / "truth").is_dir():
        existing += [p for p in (out / "truth").iterdir() if p.name.endswith(".fits") or p.name == "night.json"]
    if (out / "refcat.fits").exists():
        existing.append(out / "refcat.fits")
    if existing and not plan.config.overwrite:
        raise ConfigError(SOURCE, f"{out} already holds a simulated night ({len(existing)} files); "
                                  "use --overwrite to replace it or choose another folder")
    for path in existing:
        path.unlink()
    (out / "raw").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    need = estimated_bytes(plan)
    free = shutil.disk_usage(out).free
    if need > free:
        raise ConfigError(SOURCE, f"the night needs about {need / 1e9:.1f} GB but {out} has {free / 1e9:.1f} GB "
                                  "free; use --scale, fewer exposures or detectors, --compress or "
                                  "--no-truth-images")


def _write_json(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=1, sort_keys=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def simulate_night(config: NightConfig, out: str | Path, progress: bool = True) -> NightSummary:
    """Simulate a night and write it to ``out`` (``docs/raw_format.md``).

    Parameters
    ----------
    config : NightConfig
    out : str or Path
        Output folder; created if needed. ``raw/``, ``truth/`` and ``refcat.fits`` go there.
    progress : bool
        Show a progress bar over exposures on stderr (only when it is a terminal).

    Returns
    -------
    NightSummary

    Raises
    ------
    ConfigError
        The configuration does not fit the instrument or the night, the folder
        already holds a night (without ``overwrite``) or the disk is too small.
    """
    start = time.perf_counter()
    out = Path(out)
    plan = plan_night(config)
    _prepare_output(out, plan)
    plan_json = plan.to_json()
    _write_json(out / "truth" / "night.json", plan_json)

    refstars = None
    if any(e.is_science for e in plan.exposures):
        table = stars.reference_catalogue(config.seed, config.ra, config.dec, plan.refcat_radius * u.deg,
                                          config.mag_bright, config.mag_limit)
        table.meta["COMMENT"] = "simulated reference catalogue (exact positions and AB magnitudes)"
        write_table(out / "refcat.fits", table)
        refstars = ReferenceStars(table)
        del table
    norms = write_truth_images(plan, out, write=config.truth_images)
    setup = time.perf_counter() - start

    from tqdm import tqdm

    bar = tqdm(total=len(plan.exposures), unit="exp", desc="simulate night", file=sys.stderr,
               disable=not progress or not sys.stderr.isatty())
    timings, stats, files, written = [], [], [], 0
    try:
        for exposure in plan.exposures:
            t0 = time.perf_counter()
            stats.append(write_exposure(plan, exposure, out, norms, refstars))
            path = out / exposure.file
            files.append(path)
            written += path.stat().st_size
            timings.append(time.perf_counter() - t0)
            bar.update(1)
    finally:
        bar.close()
    plan_json["stats"] = [asdict(s) for s in stats]
    _write_json(out / "truth" / "night.json", plan_json)
    return NightSummary(
        out=out, raw_files=tuple(files), truth_dir=out / "truth", refcat=out / "refcat.fits",
        night_json=out / "truth" / "night.json", exposures=len(plan.exposures), detectors=len(plan.detectors),
        bytes_written=written, setup_seconds=setup, exposure_seconds=tuple(timings), stats=tuple(stats),
    )


__all__ = [
    "CcdExposure", "Exposure", "ExposureStats", "NightPlan", "NightSummary", "ReferenceStars",
    "exposure_cosmic_rays", "plan_night", "simulate_ccd", "simulate_night", "write_exposure", "write_truth_images",
]
