"""FITS headers of simulated raw files (``docs/raw_format.md``) and the site's sky geometry.

Time and Earth-orientation computations go through :func:`offline_iers`:
astropy then never tries to download IERS tables or leap seconds (the
observatory network and CI are offline); for dates beyond the bundled tables
it warns and uses degraded (arcsecond-level) Earth orientation, which is far
below anything the simulation resolves.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from lenghu import __version__
from lenghu.instruments import Detector, Instrument

if TYPE_CHECKING:  # night imports this module
    from lenghu.simulate.night import Exposure

@contextlib.contextmanager
def offline_iers() -> Iterator[None]:
    """Astropy settings under which nothing is downloaded (IERS, leap seconds).

    ERFA's "dubious year" warnings (a UTC date past the bundled leap-second
    table: a leap second might be missing, a 1 s effect) are silenced; astropy's
    own one-line warning about extrapolated polar motion stays.
    """
    import warnings

    from astropy.utils import iers
    from erfa import ErfaWarning

    with iers.conf.set_temp("auto_download", False), iers.conf.set_temp("auto_max_age", None), \
            iers.conf.set_temp("iers_degraded_accuracy", "warn"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ErfaWarning, message=".*dubious year.*")
        yield


def sky_geometry(
    times: Time, ra: np.ndarray, dec: np.ndarray, instrument: Instrument
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Altitude, azimuth (deg) and airmass of ICRS positions seen from the site.

    No refraction (pressure 0); airmass is sec(z), the plane-parallel value
    astropy's ``AltAz.secz`` gives (1.0 at the zenith).
    """
    from astropy.coordinates import AltAz, SkyCoord

    with offline_iers():
        frame = AltAz(obstime=times, location=instrument.site.location)
        altaz = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").transform_to(frame)
        alt = altaz.alt.deg
        airmass = np.where(alt > 0, altaz.secz.value, np.inf)
    return alt, altaz.az.deg, airmass


def zenith(times: Time, instrument: Instrument) -> tuple[np.ndarray, np.ndarray]:
    """ICRS ``(ra, dec)`` in deg of the site's zenith at ``times``."""
    from astropy.coordinates import AltAz, SkyCoord

    with offline_iers():
        frame = AltAz(obstime=times, location=instrument.site.location)
        up = SkyCoord(az=np.zeros(times.shape) * u.deg, alt=np.full(times.shape, 90.0) * u.deg, frame=frame)
        icrs = up.icrs
    return icrs.ra.deg, icrs.dec.deg


def local_sidereal_time(times: Time, instrument: Instrument) -> np.ndarray:
    """Apparent local sidereal time at the site, hours in [0, 24)."""
    with offline_iers():
        lst = times.sidereal_time("apparent", longitude=instrument.site.longitude)
    return np.mod(lst.hour, 24.0)


def sun_altitude(times: Time, instrument: Instrument) -> np.ndarray:
    """Altitude of the Sun's centre (deg) at the site, no refraction."""
    from astropy.coordinates import AltAz, get_sun

    with offline_iers():
        frame = AltAz(obstime=times, location=instrument.site.location)
        return get_sun(times).transform_to(frame).alt.deg


def _site_name(instrument: Instrument) -> str:
    return instrument.site.name.split(",")[0].strip()


def primary_header(exposure: "Exposure", instrument: Instrument, focal_detsize: str, seed: int,
                   scale: float = 1.0) -> fits.Header:
    """The exposure's primary header (no data).

    Parameters
    ----------
    exposure : Exposure
        The planned exposure.
    instrument : Instrument
        The (scaled) instrument.
    focal_detsize : str
        ``DETSIZE`` of the whole mosaic.
    seed : int
        The night's seed.
    """
    site = instrument.site
    h = fits.Header()
    h["SIMPLE"] = (True, "conforms to FITS standard")
    h["BITPIX"] = (8, "no data in the primary HDU")
    h["NAXIS"] = (0, "no data in the primary HDU")
    h["EXTEND"] = (True, "one image extension per CCD")
    h["ORIGIN"] = ("lenghu", "simulated by lenghu simulate night")
    h["TELESCOP"] = (instrument.telescope, "telescope")
    h["INSTRUME"] = (instrument.name.upper(), "instrument")
    h["OBSERVAT"] = (_site_name(instrument), "observatory")
    h["SITELAT"] = (round(float(site.latitude.to_value(u.deg)), 6), "[deg] site geodetic latitude")
    h["SITELONG"] = (round(float(site.longitude.to_value(u.deg)), 6), "[deg] site longitude, east positive")
    h["SITEELEV"] = (round(float(site.elevation.to_value(u.m)), 1), "[m] site elevation")
    h["TIMESYS"] = ("UTC", "time scale of DATE-OBS")
    h["DATE-OBS"] = (exposure.date_obs, "UTC start of the exposure")
    h["MJD-OBS"] = (exposure.mjd_obs, "[d] MJD (UTC) of the start of the exposure")
    h["EXPTIME"] = (exposure.exptime, "[s] exposure time")
    h["DARKTIME"] = (exposure.exptime, "[s] time the charge integrated")
    h["IMAGETYP"] = (exposure.imagetyp, "bias, dark, flat or object")
    h["FILTER"] = (exposure.filter, "filter in the beam")
    h["OBJECT"] = (exposure.object, "target")
    h["RADESYS"] = ("ICRS", "frame of RA and DEC")
    h["RA"] = (round(exposure.ra, 7), "[deg] telescope pointing (ICRS)")
    h["DEC"] = (round(exposure.dec, 7), "[deg] telescope pointing (ICRS)")
    h["AIRMASS"] = (round(exposure.airmass, 5), "sec(z) at mid-exposure")
    h["ALTITUDE"] = (round(exposure.altitude, 5), "[deg] altitude at mid-exposure")
    h["AZIMUTH"] = (round(exposure.azimuth, 5), "[deg] azimuth at mid-exposure, N through E")
    h["LST"] = (round(exposure.lst, 7), "[h] apparent local sidereal time at start")
    h["EXPNUM"] = (exposure.expnum, "exposure number in the night")
    h["DETSIZE"] = (focal_detsize, "mosaic size in mosaic pixels")
    if exposure.imagetyp == "object":
        h["SEEING"] = (round(exposure.fwhm, 4), "[arcsec] PSF FWHM simulated in this frame")
        h["DITHRA"] = (round(exposure.dither[0], 3), "[arcsec] dither offset east of field centre")
        h["DITHDEC"] = (round(exposure.dither[1], 3), "[arcsec] dither offset north of field centre")
    h["SIMULATE"] = (True, "simulated data")
    h["SIMSEED"] = (seed, "seed of the simulation")
    if scale != 1.0:
        h["LHSCALE"] = (float(scale), "CCD size / real size per side (scaled down)")
    h["SIMVERS"] = (__version__, "lenghu version that simulated this file")
    return h


def detector_header(detector: Detector, detsec: str, wcs: WCS | None) -> fits.Header:
    """Keywords of a CCD extension after its mandatory cards: names, sections, amplifiers, WCS.

    The WCS (if given) describes the assembled, trimmed CCD image, not the
    raw pixel grid.
    """
    ny, nx = detector.shape
    h = fits.Header()
    h["EXTNAME"] = (detector.name, "extension name")
    h["CCDNAME"] = (detector.name, "CCD name")
    h["DETSIZE"] = (f"[1:{nx},1:{ny}]", "assembled CCD size")
    h["DETSEC"] = (detsec, "CCD in mosaic pixels")
    h["NAMPS"] = (len(detector.amplifiers), "amplifiers")
    for amp in detector.amplifiers:
        x = amp.name
        h[f"DATASEC{x}"] = (amp.data_section.to_fits(), f"amp {x} data in raw pixels")
        h[f"BIASSEC{x}"] = (amp.overscan_section.to_fits(), f"amp {x} serial overscan in raw pixels")
        h[f"CCDSEC{x}"] = (amp.detector_section.to_fits(), f"amp {x} data in the assembled CCD")
        h[f"GAIN{x}"] = (float(amp.gain.value), f"[e-/adu] amp {x} gain")
        h[f"RDNOISE{x}"] = (float(amp.read_noise.value), f"[e-] amp {x} read noise")
        h[f"SATURAT{x}"] = (float(amp.saturation.value), f"[adu] amp {x} saturation")
    if wcs is not None:
        h.extend(wcs_cards(wcs), strip=False)
    return h


def wcs_cards(wcs: WCS) -> fits.Header:
    """The WCS keywords (TAN or TAN-SIP) without NAXISi/DATE cards."""
    header = wcs.to_header(relax=True)
    for key in ("DATE-OBS", "MJD-OBS", "DATEREF", "MJDREFI", "MJDREFF", "MJDREF"):
        header.remove(key, ignore_missing=True, remove_all=True)
    return header


def image_extension_cards(shape: tuple[int, int], bitpix: int, unsigned16: bool = False) -> fits.Header:
    """Mandatory cards of an IMAGE extension of ``shape`` = (ny, nx)."""
    h = fits.Header()
    h["XTENSION"] = ("IMAGE", "image extension")
    h["BITPIX"] = (bitpix, "array data type")
    h["NAXIS"] = (2, "number of array dimensions")
    h["NAXIS1"] = shape[1]
    h["NAXIS2"] = shape[0]
    h["PCOUNT"] = (0, "number of parameters")
    h["GCOUNT"] = (1, "number of groups")
    if unsigned16:
        h["BSCALE"] = (1, "")
        h["BZERO"] = (32768, "data are unsigned 16-bit integers")
    return h
