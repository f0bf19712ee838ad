"""Photometric model of WFST at Lenghu: zeropoints, dark-sky brightness, extinction, seeing.

All numbers here are assumptions (WFST's measured throughput is not public)
and are stated with their reasoning:

Zeropoints (AB mag giving 1 electron/s at airmass 1)
    Scaled from the Rubin Observatory's (SMTN-002: u 26.5, g 28.5, r 28.4,
    i 28.2, z 27.8 for 1 e-/s) by the collecting area, (6.4 m effective)^2
    against WFST's 2.5 m with its prime-focus camera obscuring about 20%
    (~3.9 m^2): -2.3 mag, and one aluminium mirror instead of three: +0.2 mag.
    This gives r = 26.1; the 30-s 5-sigma depth it implies (r ~ 23.4 at 0.75"
    seeing) is close to the r = 22.95 published for WFST in 1" seeing
    (Wang et al. 2023, Sci. China PMA 66, 109512). ``w`` (roughly 400-900 nm)
    collects about three times the r-band photons.
Dark sky (moon-free, zenith, mag/arcsec^2)
    Deng et al. 2021 (Nature 596, 353) report a moonless V-band sky of about
    22 mag/arcsec^2 at Lenghu, like the best sites; we take dark-site colours
    (Rubin SMTN-002: u 23.0, g 22.3, r 21.2, i 20.5, z 19.6) with u a little
    brighter (22.8) and ``w`` as the photon-weighted mean of g, r and i.
Extinction (mag/airmass)
    At 4200 m the Rayleigh part is about 0.6 of sea level's; the values are
    those of a clear high site.
Seeing
    The site's median (0.75" FWHM, Deng et al. 2021) is quoted at zenith and
    500 nm; a frame's FWHM scales as airmass^0.6 and wavelength^-0.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np

from lenghu.errors import ConfigError

#: AB magnitude giving 1 electron/s at airmass 1 (assumed, see module docstring).
ZEROPOINT = {"u": 24.4, "g": 26.2, "r": 26.1, "i": 25.9, "z": 25.4, "w": 27.3}
#: Moon-free zenith sky, AB mag/arcsec^2 (assumed, see module docstring).
DARK_SKY = {"u": 22.8, "g": 22.2, "r": 21.2, "i": 20.5, "z": 19.6, "w": 21.1}
#: Atmospheric extinction at 4200 m, mag per airmass (assumed).
EXTINCTION = {"u": 0.40, "g": 0.15, "r": 0.08, "i": 0.05, "z": 0.04, "w": 0.09}
#: Effective wavelength, nm (for the seeing's wavelength dependence).
WAVELENGTH = {"u": 365.0, "g": 480.0, "r": 620.0, "i": 760.0, "z": 870.0, "w": 640.0}
#: Pixel response non-uniformity (rms) of the flat field per filter: larger in u (surface
#: effects) and z (fringing-like thickness variations).
PRNU = {"u": 0.020, "g": 0.012, "r": 0.010, "i": 0.010, "z": 0.014, "w": 0.010}


@dataclass(frozen=True)
class Passband:
    """What the simulation needs to know about one filter.

    Attributes
    ----------
    name : str
        Filter name.
    zeropoint : Quantity
        AB mag of a source giving 1 electron/s at airmass 1.
    dark_sky : Quantity
        Moon-free zenith sky, mag/arcsec^2.
    extinction : Quantity
        mag per airmass.
    wavelength : Quantity
        Effective wavelength, nm.
    prnu : float
        Relative rms of the flat field's pixel-to-pixel variation.
    """

    name: str
    zeropoint: u.Quantity
    dark_sky: u.Quantity
    extinction: u.Quantity
    wavelength: u.Quantity
    prnu: float

    def star_rate(self, mag: np.ndarray, airmass: float) -> np.ndarray:
        """Electrons per second from stars of AB magnitude ``mag`` at ``airmass``."""
        k = self.extinction.to_value(u.mag)
        return 10.0 ** (-0.4 * (np.asarray(mag, dtype=float) - self.zeropoint.to_value(u.mag) + k * (airmass - 1.0)))

    def sky_rate(self, airmass: float, pixel_scale: u.Quantity) -> float:
        """Sky electrons per second per pixel at ``airmass`` (moon-free).

        The sky brightens roughly in proportion to the airmass (a longer path
        through the glowing layer) and is dimmed by extinction on the way down.
        """
        area = pixel_scale.to_value(u.arcsec / u.pixel) ** 2
        zenith = 10.0 ** (-0.4 * (self.dark_sky.to_value(u.mag) - self.zeropoint.to_value(u.mag))) * area
        return float(zenith * airmass * 10.0 ** (-0.4 * self.extinction.to_value(u.mag) * (airmass - 1.0)))

    def fwhm(self, seeing: u.Quantity, airmass: float) -> u.Quantity:
        """PSF FWHM in this filter at ``airmass`` for a zenith, 500 nm ``seeing``."""
        return seeing * airmass**0.6 * (self.wavelength.to_value(u.nm) / 500.0) ** -0.2


def passband(name: str) -> Passband:
    """The :class:`Passband` of filter ``name`` (one of u g r i z w).

    Raises
    ------
    ConfigError
        The filter is not modelled.
    """
    if name not in ZEROPOINT:
        raise ConfigError(
            "lenghu simulate night", f"filter {name!r} has no photometric model; known: {', '.join(ZEROPOINT)}"
        )
    return Passband(
        name=name,
        zeropoint=ZEROPOINT[name] * u.mag,
        dark_sky=DARK_SKY[name] * u.mag,
        extinction=EXTINCTION[name] * u.mag,
        wavelength=WAVELENGTH[name] * u.nm,
        prnu=PRNU[name],
    )
