"""A reference star catalogue for the simulated field: counts, colours and positions.

Star counts
    The cumulative number of stars brighter than r per square degree is
    modelled as ``N(<r) = N20(b) * 10**(0.3 (r - 20))``: a slope of 0.3 dex/mag,
    as observed for Galactic stars at 16 < r < 23 away from the plane
    (e.g. Bahcall & Soneira 1980; Juric et al. 2008), with
    ``N20(b) = 1000 (0.4 + 0.6 / sin|b|)`` stars/deg^2 brighter than r = 20: a
    halo-like part that does not depend on latitude and a disc part that grows
    with the path length through a plane-parallel disc (about 1000 deg^-2 at
    the Galactic pole, 2000 at |b| = 22 deg). |b| is clipped at 5 deg (closer to
    the plane extinction, not modelled here, takes over).
Colours
    g - r is drawn from two populations: blue thick-disc and halo turn-off
    stars (g - r ~ 0.45) and red M dwarfs (g - r ~ 1.35, more common at faint
    magnitudes); u - g, r - i and i - z follow the SDSS stellar locus
    (Covey et al. 2007) approximately; ``w`` is the photon-weighted mean of g,
    r and i.
Positions
    Uniform on the sphere in a cap around the field centre.
"""

from __future__ import annotations

import numpy as np
from astropy.table import QTable
import astropy.units as u

from lenghu.simulate.config import rng_for

#: Slope of the cumulative star counts, dex per magnitude.
COUNT_SLOPE = 0.3
#: Filters for which magnitudes are made.
FILTERS = ("u", "g", "r", "i", "z", "w")


def counts_per_deg2(mag: float, galactic_latitude: u.Quantity) -> float:
    """Stars per square degree brighter than r-band ``mag`` at latitude ``galactic_latitude``.

    Examples
    --------
    >>> round(counts_per_deg2(20.0, 90 * u.deg))
    1000
    """
    b = max(abs(galactic_latitude.to_value(u.deg)), 5.0)
    n20 = 1000.0 * (0.4 + 0.6 / np.sin(np.radians(b)))
    return float(n20 * 10.0 ** (COUNT_SLOPE * (mag - 20.0)))


def cap_area(radius: u.Quantity) -> u.Quantity:
    """Solid angle of a spherical cap of angular ``radius``, deg^2."""
    return (2 * np.pi * (1 - np.cos(radius.to_value(u.rad))) * u.sr).to(u.deg**2)


def draw_magnitudes(rng: np.random.Generator, n: int, bright: float, faint: float) -> np.ndarray:
    """``n`` r-band magnitudes in ``[bright, faint]`` with ``N(<m) ~ 10**(0.3 m)``."""
    span = 1.0 - 10.0 ** (-COUNT_SLOPE * (faint - bright))
    return faint + np.log10(1.0 - rng.random(n) * span) / COUNT_SLOPE


def stellar_colours(rng: np.random.Generator, r: np.ndarray) -> dict[str, np.ndarray]:
    """AB magnitudes in u g r i z w for stars of r-band magnitude ``r``.

    Returns
    -------
    dict of str to ndarray
        One array per filter in :data:`FILTERS`.
    """
    n = r.size
    # Fraction of red M dwarfs rises from ~15% at r = 14 to ~50% at r = 23.
    red_fraction = np.clip(0.15 + 0.04 * (r - 14.0), 0.1, 0.5)
    red = rng.random(n) < red_fraction
    gr = np.where(red, rng.normal(1.35, 0.12, n), rng.normal(0.45, 0.15, n))
    gr = np.clip(gr, -0.3, 1.7)
    ug = np.clip(0.6 + 1.5 * gr, 0.6, 2.6) + rng.normal(0.0, 0.05, n)
    ri = 0.38 * gr + 2.8 * np.clip(gr - 1.25, 0.0, None) + rng.normal(0.0, 0.03, n)
    iz = 0.5 * ri + rng.normal(0.0, 0.03, n)
    g = r + gr
    i = r - ri
    mags = {"u": g + ug, "g": g, "r": r.copy(), "i": i, "z": i - iz}
    photons = (10 ** (-0.4 * mags["g"]) + 10 ** (-0.4 * mags["r"]) + 10 ** (-0.4 * mags["i"])) / 3.0
    mags["w"] = -2.5 * np.log10(photons)
    return mags


def uniform_in_cap(rng: np.random.Generator, n: int, ra0: float, dec0: float, radius: float):
    """``n`` points uniform on the sphere within ``radius`` deg of ``(ra0, dec0)`` deg.

    Returns
    -------
    ra, dec : ndarray
        ICRS degrees.
    """
    cos_rho = 1.0 - rng.random(n) * (1.0 - np.cos(np.radians(radius)))
    rho = np.arccos(cos_rho)
    pa = rng.random(n) * 2 * np.pi
    d0, a0 = np.radians(dec0), np.radians(ra0)
    sin_dec = np.sin(d0) * np.cos(rho) + np.cos(d0) * np.sin(rho) * np.cos(pa)
    dec = np.arcsin(np.clip(sin_dec, -1, 1))
    ra = a0 + np.arctan2(np.sin(pa) * np.sin(rho) * np.cos(d0), np.cos(rho) - np.sin(d0) * sin_dec)
    return np.degrees(ra) % 360.0, np.degrees(dec)


def reference_catalogue(
    seed: int,
    ra: u.Quantity,
    dec: u.Quantity,
    radius: u.Quantity,
    mag_bright: float,
    mag_limit: float,
) -> QTable:
    """The stars within ``radius`` of ``(ra, dec)``, from ``mag_bright`` to ``mag_limit`` in r.

    The number of stars is the model's expectation (rounded), the field's
    galactic latitude computed with astropy.

    Returns
    -------
    QTable
        ``id``, ``ra``, ``dec`` (deg) and one magnitude column per filter
        (``mag_u`` ... ``mag_w``, AB mag), sorted by ``id``.
    """
    from astropy.coordinates import SkyCoord

    b = SkyCoord(ra, dec, frame="icrs").galactic.b
    area = cap_area(radius).to_value(u.deg**2)
    n = int(round(area * (counts_per_deg2(mag_limit, b) - counts_per_deg2(mag_bright, b))))
    rng = rng_for(seed, "refcat")
    r = draw_magnitudes(rng, n, mag_bright, mag_limit)
    star_ra, star_dec = uniform_in_cap(rng, n, ra.to_value(u.deg), dec.to_value(u.deg), radius.to_value(u.deg))
    mags = stellar_colours(rng, r)
    table = QTable()
    table["id"] = np.arange(1, n + 1, dtype=np.int64)
    table["ra"] = star_ra * u.deg
    table["dec"] = star_dec * u.deg
    for name in FILTERS:
        table[f"mag_{name}"] = mags[name].astype(np.float32) * u.mag
    table.meta["GLAT"] = (round(float(b.deg), 4), "galactic latitude of the field centre, deg")
    table.meta["DENS20"] = (round(counts_per_deg2(20.0, b), 1), "stars/deg2 brighter than r = 20")
    return table
