"""Flat LCDM background, linear growth and linear matter power spectrum.

Pure functions over a frozen :class:`Cosmology`. Units follow the usual
"little h" convention of N-body codes, and each name says its unit:

- wavenumbers ``k_h_mpc`` in h/Mpc, lengths in Mpc/h;
- power spectra in (Mpc/h)^3, normalised so that sigma(8 Mpc/h) = ``sigma8``
  at z = 0;
- masses in 10^10 Msun/h, densities in (10^10 Msun/h) / (Mpc/h)^3, the
  Gadget units used by :mod:`lenghu.io.gadget4`.

The background ignores radiation and neutrinos (a flat matter + Lambda
universe), which is exact enough for a Zel'dovich toy universe started at
z <~ 100. The transfer function is the Eisenstein & Hu (1998, ApJ 496, 605,
eqs. 26-31) "no-wiggle" fit: it keeps the baryon suppression of the
small-scale power but not the acoustic oscillations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate

from lenghu.errors import ConfigError

#: Newton's constant, cm^3 g^-1 s^-2 (CODATA 2018).
GRAVITATIONAL_CONSTANT_CGS = 6.6743e-8
#: One megaparsec, cm (the Gadget unit length, without the 1/h).
MPC_IN_CM = 3.085678e24
#: 10^10 solar masses, g (the Gadget unit mass, without the 1/h).
UNIT_MASS_IN_G = 1.989e43
#: H0 in km/s per (Mpc/h): H0 = 100 h km/s/Mpc, so a separation of 1 Mpc/h recedes at 100 km/s.
H0_KM_S_PER_MPC_H = 100.0


@dataclass(frozen=True)
class Cosmology:
    """Parameters of a flat LCDM cosmology (Omega_Lambda = 1 - Omega_m).

    Attributes
    ----------
    omega_m : float
        Matter density today over the critical density (dimensionless), in (0, 1].
    omega_b : float
        Baryon density today over the critical density, in [0, omega_m).
        Used only for the shape of the transfer function.
    h : float
        Hubble constant H0 in units of 100 km/s/Mpc.
    n_s : float
        Spectral index of the primordial power spectrum, P(k) ~ k^n_s T(k)^2.
    sigma8 : float
        RMS linear density contrast today in spheres of radius 8 Mpc/h.
    t_cmb_k : float
        CMB temperature today, kelvin (enters the transfer function only).
    """

    omega_m: float = 0.3
    omega_b: float = 0.049
    h: float = 0.7
    n_s: float = 0.965
    sigma8: float = 0.81
    t_cmb_k: float = 2.7255

    def __post_init__(self):
        checks = [
            (0.0 < self.omega_m <= 1.0, f"omega_m must be in (0, 1], got {self.omega_m}"),
            (0.0 <= self.omega_b < self.omega_m, f"omega_b must be in [0, omega_m), got {self.omega_b}"),
            (0.1 <= self.h <= 2.0, f"h must be in [0.1, 2], got {self.h}"),
            (0.5 <= self.n_s <= 1.5, f"n_s must be in [0.5, 1.5], got {self.n_s}"),
            (0.0 < self.sigma8 <= 5.0, f"sigma8 must be in (0, 5], got {self.sigma8}"),
            (0.0 < self.t_cmb_k < 10.0, f"t_cmb_k must be in (0, 10) K, got {self.t_cmb_k}"),
        ]
        for ok, message in checks:
            if not ok:  # also catches NaN: every comparison with NaN is False
                raise ConfigError("cosmology", message)

    @property
    def omega_lambda(self) -> float:
        """Cosmological-constant density today over the critical density (flatness)."""
        return 1.0 - self.omega_m


def redshift_to_scale_factor(redshift: float | np.ndarray) -> float | np.ndarray:
    """Scale factor a = 1 / (1 + z)."""
    return 1.0 / (1.0 + np.asarray(redshift, dtype=float))


def hubble_e(a: float | np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Dimensionless Hubble rate E(a) = H(a) / H0 = sqrt(Omega_m a^-3 + Omega_Lambda).

    Parameters
    ----------
    a : float or ndarray
        Scale factor, > 0.
    cosmo : Cosmology
    """
    a = np.asarray(a, dtype=float)
    return np.sqrt(cosmo.omega_m * a**-3 + cosmo.omega_lambda)


def _growth_integral(a: float, cosmo: Cosmology) -> float:
    """I(a) = int_0^a da' / (a' E(a'))^3 (the integrand vanishes like a'^(3/2) at 0)."""
    value, _ = integrate.quad(
        lambda x: (cosmo.omega_m / x + cosmo.omega_lambda * x * x) ** -1.5,
        0.0,
        float(a),
        epsabs=0.0,
        epsrel=1e-10,
        limit=200,
    )
    return value


def _growth_unnormalised(a: float, cosmo: Cosmology) -> float:
    """D(a) = (5/2) Omega_m E(a) I(a), which equals a in the matter era (Heath 1977)."""
    return 2.5 * cosmo.omega_m * float(hubble_e(a, cosmo)) * _growth_integral(a, cosmo)


def growth_factor(a: float | np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Linear growth factor D(a) of a flat LCDM universe, normalised to D(a=1) = 1.

    Computed from the exact integral solution for matter + Lambda (Heath 1977),
    D(a) ~ E(a) int_0^a da' / (a' E(a'))^3, by adaptive quadrature; no fitting
    formula. It agrees with the Carroll, Press & Turner (1992) approximation
    to better than about 1 per cent.

    Parameters
    ----------
    a : float or ndarray
        Scale factor(s) in (0, 1] (values above 1 are allowed: the future).
    cosmo : Cosmology

    Returns
    -------
    ndarray
        D(a), dimensionless, same shape as ``a``.
    """
    a = np.asarray(a, dtype=float)
    if np.any(a <= 0):
        raise ValueError("scale factor must be > 0")
    norm = _growth_unnormalised(1.0, cosmo)
    flat = [_growth_unnormalised(x, cosmo) / norm for x in a.ravel()]
    return np.asarray(flat, dtype=float).reshape(a.shape)


def growth_rate(a: float | np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Logarithmic growth rate f = d ln D / d ln a (dimensionless).

    Differentiating the integral solution gives
    f = -3 Omega_m / (2 a^3 E^2) + 1 / (a^2 E^3 I(a)); f -> 1 in the matter era
    and f ~ Omega_m(a)^0.55 today.
    """
    a = np.asarray(a, dtype=float)
    if np.any(a <= 0):
        raise ValueError("scale factor must be > 0")
    out = []
    for x in a.ravel():
        e = float(hubble_e(x, cosmo))
        out.append(-1.5 * cosmo.omega_m / (x**3 * e * e) + 1.0 / (x * x * e**3 * _growth_integral(x, cosmo)))
    return np.asarray(out, dtype=float).reshape(a.shape)


def growth_factor_cpt(a: float | np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Carroll, Press & Turner (1992, ARA&A 30, 499, eq. 29) approximation to D(a), D(1) = 1.

    Kept as an independent check of :func:`growth_factor`.
    """
    a = np.asarray(a, dtype=float)

    def g(x):
        e2 = cosmo.omega_m * x**-3 + cosmo.omega_lambda
        om = cosmo.omega_m * x**-3 / e2
        ol = cosmo.omega_lambda / e2
        return 2.5 * om / (om ** (4.0 / 7.0) - ol + (1.0 + om / 2.0) * (1.0 + ol / 70.0))

    return a * g(a) / g(1.0)


def transfer_eisenstein_hu_nowiggle(k_h_mpc: np.ndarray, cosmo: Cosmology) -> np.ndarray:
    """Eisenstein & Hu (1998) zero-baryon-oscillation transfer function T(k).

    Parameters
    ----------
    k_h_mpc : ndarray
        Wavenumbers, h/Mpc (>= 0; T(0) = 1).
    cosmo : Cosmology

    Returns
    -------
    ndarray
        T(k), dimensionless, -> 1 as k -> 0.
    """
    k = np.asarray(k_h_mpc, dtype=float)
    h = cosmo.h
    om_h2 = cosmo.omega_m * h * h
    ob_h2 = cosmo.omega_b * h * h
    fb = cosmo.omega_b / cosmo.omega_m
    theta = cosmo.t_cmb_k / 2.7
    sound_horizon_mpc = 44.5 * np.log(9.83 / om_h2) / np.sqrt(1.0 + 10.0 * ob_h2**0.75)  # eq. 26
    alpha = 1.0 - 0.328 * np.log(431.0 * om_h2) * fb + 0.38 * np.log(22.3 * om_h2) * fb * fb  # eq. 31
    k_mpc = k * h
    gamma_eff = cosmo.omega_m * h * (alpha + (1.0 - alpha) / (1.0 + (0.43 * k_mpc * sound_horizon_mpc) ** 4))  # eq. 30
    q = k * theta * theta / gamma_eff  # eq. 28, k in h/Mpc
    l0 = np.log(2.0 * math.e + 1.8 * q)
    c0 = 14.2 + 731.0 / (1.0 + 62.5 * q)
    return l0 / (l0 + c0 * q * q)  # eq. 29


def _tophat_window(x: np.ndarray) -> np.ndarray:
    """Fourier transform of a spherical top hat, 3 (sin x - x cos x) / x^3 (series below x = 1e-3)."""
    x = np.asarray(x, dtype=float)
    small = x < 1e-3
    xs = np.where(small, 1.0, x)
    exact = 3.0 * (np.sin(xs) - xs * np.cos(xs)) / xs**3
    return np.where(small, 1.0 - x * x / 10.0, exact)


def _sigma_r_unit_amplitude(radius_mpc_h: float, cosmo: Cosmology) -> float:
    """sigma(R) for P(k) = k^n_s T(k)^2 (amplitude 1), by the trapezoid rule in ln k."""
    ln_k = np.linspace(math.log(1e-5), math.log(1e3), 8193)
    k = np.exp(ln_k)
    pk = k**cosmo.n_s * transfer_eisenstein_hu_nowiggle(k, cosmo) ** 2
    integrand = k**3 * pk * _tophat_window(k * radius_mpc_h) ** 2 / (2.0 * math.pi**2)
    return math.sqrt(float(np.trapezoid(integrand, ln_k)))


def power_spectrum_amplitude(cosmo: Cosmology) -> float:
    """Amplitude A of P(k) = A k^n_s T(k)^2, (Mpc/h)^(3 + n_s), such that sigma(8 Mpc/h) = sigma8."""
    return (cosmo.sigma8 / _sigma_r_unit_amplitude(8.0, cosmo)) ** 2


def linear_power(k_h_mpc: np.ndarray, cosmo: Cosmology, amplitude: float | None = None) -> np.ndarray:
    """Linear matter power spectrum today, P(k) = A k^n_s T(k)^2, in (Mpc/h)^3.

    Parameters
    ----------
    k_h_mpc : ndarray
        Wavenumbers, h/Mpc. P(0) = 0.
    cosmo : Cosmology
    amplitude : float, optional
        A from :func:`power_spectrum_amplitude`; pass it when calling many
        times, to skip the sigma8 integral.

    Returns
    -------
    ndarray
        P(k) at z = 0 (multiply by D(z)^2 for another redshift).
    """
    if amplitude is None:
        amplitude = power_spectrum_amplitude(cosmo)
    k = np.asarray(k_h_mpc, dtype=float)
    return amplitude * k**cosmo.n_s * transfer_eisenstein_hu_nowiggle(k, cosmo) ** 2


def sigma_r(radius_mpc_h: float, cosmo: Cosmology) -> float:
    """RMS linear density contrast today in top-hat spheres of radius ``radius_mpc_h`` (Mpc/h)."""
    return math.sqrt(power_spectrum_amplitude(cosmo)) * _sigma_r_unit_amplitude(radius_mpc_h, cosmo)


def critical_density_gadget() -> float:
    """Critical density today, 3 H0^2 / (8 pi G), in (10^10 Msun/h) / (Mpc/h)^3 (about 27.754).

    Independent of h in these units.
    """
    h0_per_s = H0_KM_S_PER_MPC_H * 1e5 / MPC_IN_CM  # H0 for h = 1, s^-1
    rho_g_cm3 = 3.0 * h0_per_s**2 / (8.0 * math.pi * GRAVITATIONAL_CONSTANT_CGS)
    return rho_g_cm3 * MPC_IN_CM**3 / UNIT_MASS_IN_G


def particle_mass_gadget(cosmo: Cosmology, box_mpc_h: float, num_particles: int) -> float:
    """Mass of one of ``num_particles`` equal particles filling a box with the mean matter density.

    Returns
    -------
    float
        Omega_m rho_crit L^3 / N, in 10^10 Msun/h.
    """
    return cosmo.omega_m * critical_density_gadget() * box_mpc_h**3 / num_particles
