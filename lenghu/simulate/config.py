"""The settings of a simulated observing night, validated, and its random streams.

:class:`NightConfig` is what ``lenghu simulate night`` turns its command line
into. Every physical value carries an astropy unit and is checked when the
config is made, so the simulation itself never sees a nonsensical value.

Randomness is organised in named, independent streams (:func:`rng_for`): the
generator for "the flat-field pattern of CCD5, amplifier C" is derived from
``(seed, "flat", 5, 2)`` with :class:`numpy.random.SeedSequence`, so any part
of the night can be regenerated on its own, in any order, bit for bit. This is
what lets the writer regenerate the fixed per-night patterns (bias structure,
hot pixels, flat) for each exposure instead of holding them for all CCDs.
"""

from __future__ import annotations

import datetime as _dt
import re
import zlib
from dataclasses import dataclass, fields, replace
from typing import Any

import astropy.units as u
import numpy as np

from lenghu.errors import ConfigError

#: Source name used in configuration errors.
SOURCE = "lenghu simulate night"

#: Default night: 2025-11-20 (new moon, so dark time) at Lenghu.
DEFAULT_DATE = "2025-11-20"

#: Default field centre (ICRS deg): on the meridian at the start of the
#: default night (airmass ~1.01) and at galactic latitude -21 deg, where a
#: 1/16-scale CCD still holds tens of stars brighter than r = 23.
DEFAULT_RA = 330.0
DEFAULT_DEC = 30.0


def rng_for(seed: int, *key: int | str) -> np.random.Generator:
    """An independent random generator for one named stream of the night.

    Parameters
    ----------
    seed : int
        The night's seed.
    *key : int or str
        The stream's name, e.g. ``("flat", 5, 2, "r")``; strings are hashed
        with CRC-32 (stable across runs and platforms).

    Returns
    -------
    numpy.random.Generator
        An SFC64 generator (the fastest numpy bit generator for the bulk
        Gaussian noise) seeded by ``SeedSequence(seed, spawn_key=key)``.
    """
    ints = tuple(k if isinstance(k, int) else zlib.crc32(str(k).encode("utf-8")) for k in key)
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=ints)))


def parse_scale(text: str | float) -> float:
    """``"1/16"``, ``"0.0625"`` or a number as a float in (0, 1].

    Raises
    ------
    ValueError
        Not a number or fraction, or outside (0, 1].
    """
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*/\s*(\d+(?:\.\d*)?)\s*", text)
        try:
            value = float(match.group(1)) / float(match.group(2)) if match else float(text)
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"scale {text!r} is not a number or a fraction like 1/16") from exc
    if not 0 < value <= 1:
        raise ValueError(f"scale must be in (0, 1] (1 = full size), got {text!r}")
    return value


def _quantity(name: str, value: Any, unit: u.UnitBase) -> u.Quantity:
    try:
        q = value.to(unit) if isinstance(value, u.Quantity) else float(value) * unit
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise ConfigError(SOURCE, f"{name} = {value!r} is not a quantity in {unit}") from exc
    if not np.isfinite(q.value):
        raise ConfigError(SOURCE, f"{name} must be finite, got {value!r}")
    return q


@dataclass(frozen=True)
class NightConfig:
    """Everything that defines a simulated night (the same config and seed give the same bytes).

    Attributes
    ----------
    instrument : str
        Shipped instrument name or path to its TOML file (a ``mef`` instrument
        whose detectors are amplifier grids with overscan, such as ``wfst``).
    scale : float
        Linear size of each detector relative to the real one, in (0, 1]; the
        pixel scale stays (a scaled CCD sees a smaller patch of sky).
    seed : int
        Seed of every random stream, >= 0.
    n_bias, n_dark : int
        Bias (0 s) and dark frames, taken before sunset.
    n_flat, n_science : int
        Dome flats and dithered science exposures *per filter*.
    filters : tuple of str
        Filters of the flats and science exposures, in the order observed.
    exptime, dark_exptime, flat_exptime : Quantity
        Exposure times, s.
    flat_level : Quantity
        Mean electrons per pixel in a dome flat.
    date : str
        Local calendar date of the evening, ``YYYY-MM-DD``.
    ra, dec : Quantity
        Field centre (ICRS), deg.
    object_name : str or None
        ``OBJECT`` of the science frames; default from the coordinates.
    seeing : Quantity or None
        FWHM at zenith and 500 nm, arcsec; None: the site's median.
    dither : Quantity
        Radius of the random dither offsets of science exposures, arcsec.
    pointing_error_shift : Quantity
        How far the true boresight lies from the header's, arcmin.
    pointing_error_rotation : Quantity
        True minus header position angle of the camera, deg.
    distortion : Quantity
        Radial (cubic) optical distortion at the mosaic's half-width, pixel.
    mag_limit : float
        Faintest simulated star, r-band AB mag.
    mag_bright : float
        Brightest simulated star, r-band AB mag.
    cosmic_rate : Quantity
        Cosmic-ray events per cm^2 per minute.
    readout_time : Quantity
        Readout plus overhead between exposures, s.
    detectors : tuple of str or None
        Detectors to simulate; None: all.
    compress : bool
        Write Rice-compressed ``.fits.fz`` raw files.
    truth_images : bool
        Write the bias/dark/flat truth images (large at full size).
    overwrite : bool
        Replace a night already in the output folder.
    """

    instrument: str = "wfst"
    scale: float = 1.0
    seed: int = 1
    n_bias: int = 5
    n_dark: int = 3
    n_flat: int = 3
    n_science: int = 5
    filters: tuple[str, ...] = ("r",)
    exptime: u.Quantity = 30.0 * u.s
    dark_exptime: u.Quantity = 300.0 * u.s
    flat_exptime: u.Quantity = 5.0 * u.s
    flat_level: u.Quantity = 20000.0 * u.electron
    date: str = DEFAULT_DATE
    ra: u.Quantity = DEFAULT_RA * u.deg
    dec: u.Quantity = DEFAULT_DEC * u.deg
    object_name: str | None = None
    seeing: u.Quantity | None = None
    dither: u.Quantity = 30.0 * u.arcsec
    pointing_error_shift: u.Quantity = 0.0 * u.arcmin
    pointing_error_rotation: u.Quantity = 0.0 * u.deg
    distortion: u.Quantity = 3.0 * u.pixel
    mag_limit: float = 24.0
    mag_bright: float = 10.0
    cosmic_rate: u.Quantity = 4.0 / (u.cm**2 * u.min)
    readout_time: u.Quantity = 15.0 * u.s
    detectors: tuple[str, ...] | None = None
    compress: bool = False
    truth_images: bool = True
    overwrite: bool = False

    def __post_init__(self):
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        try:
            put("scale", parse_scale(self.scale))
        except ValueError as exc:
            raise ConfigError(SOURCE, str(exc)) from exc
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63:
            raise ConfigError(SOURCE, f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        put("seed", int(self.seed))
        for name in ("n_bias", "n_dark", "n_flat", "n_science"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
                raise ConfigError(SOURCE, f"{name} must be a non-negative integer, got {value!r}")
            put(name, int(value))
        filters = (self.filters,) if isinstance(self.filters, str) else tuple(self.filters)
        filters = tuple(f.strip() for f in filters)
        if (self.n_flat or self.n_science) and not filters:
            raise ConfigError(SOURCE, "flats and science exposures need at least one filter")
        if len(set(filters)) != len(filters) or any(not f for f in filters):
            raise ConfigError(SOURCE, f"filters must be distinct non-empty names, got {filters!r}")
        put("filters", filters)
        units = {
            "exptime": u.s, "dark_exptime": u.s, "flat_exptime": u.s, "flat_level": u.electron,
            "ra": u.deg, "dec": u.deg, "dither": u.arcsec, "pointing_error_shift": u.arcmin,
            "pointing_error_rotation": u.deg, "distortion": u.pixel,
            "cosmic_rate": 1 / (u.cm**2 * u.min), "readout_time": u.s,
        }
        for name, unit in units.items():
            put(name, _quantity(name, getattr(self, name), unit))
        if self.seeing is not None:
            put("seeing", _quantity("seeing", self.seeing, u.arcsec))
            if not 0.1 <= self.seeing.value <= 10:
                raise ConfigError(SOURCE, f"seeing must be 0.1-10 arcsec FWHM, got {self.seeing}")
        for name in ("exptime", "dark_exptime", "flat_exptime"):
            if getattr(self, name).value <= 0:
                raise ConfigError(SOURCE, f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.flat_level.value <= 200000:
            raise ConfigError(SOURCE, f"flat_level must be in (0, 200000] electron, got {self.flat_level}")
        if not 0 <= self.ra.value < 360:
            raise ConfigError(SOURCE, f"ra must be in [0, 360) deg, got {self.ra}")
        if not -90 <= self.dec.value <= 90:
            raise ConfigError(SOURCE, f"dec must be in [-90, 90] deg, got {self.dec}")
        for name in ("dither", "pointing_error_shift", "distortion", "cosmic_rate", "readout_time"):
            if getattr(self, name).value < 0:
                raise ConfigError(SOURCE, f"{name} must not be negative, got {getattr(self, name)}")
        if self.dither > 30 * u.arcmin:
            raise ConfigError(SOURCE, f"dither radius {self.dither} is larger than 30 arcmin")
        if self.pointing_error_shift > 60 * u.arcmin or abs(self.pointing_error_rotation) > 10 * u.deg:
            raise ConfigError(SOURCE, "pointing error must be at most 60 arcmin and 10 deg")
        if not 5 <= self.mag_bright < self.mag_limit <= 28:
            raise ConfigError(
                SOURCE, f"need 5 <= mag_bright < mag_limit <= 28, got {self.mag_bright}, {self.mag_limit}"
            )
        put("mag_bright", float(self.mag_bright))
        put("mag_limit", float(self.mag_limit))
        try:
            _dt.date.fromisoformat(self.date)
        except (TypeError, ValueError) as exc:
            raise ConfigError(SOURCE, f"date must be YYYY-MM-DD, got {self.date!r}") from exc
        if self.detectors is not None:
            dets = (self.detectors,) if isinstance(self.detectors, str) else tuple(self.detectors)
            dets = tuple(d.strip() for d in dets)
            if not dets or len(set(dets)) != len(dets):
                raise ConfigError(SOURCE, f"detectors must be distinct names, got {self.detectors!r}")
            put("detectors", dets)
        if self.object_name is not None and not re.fullmatch(r"[ -~]{1,60}", self.object_name):
            raise ConfigError(SOURCE, f"object name must be 1-60 printable ASCII characters: {self.object_name!r}")
        if self.n_bias + self.n_dark + len(self.filters) * (self.n_flat + self.n_science) == 0:
            raise ConfigError(SOURCE, "the night has no exposures")
        if self.n_bias + self.n_dark + len(self.filters) * (self.n_flat + self.n_science) > 99999:
            raise ConfigError(SOURCE, "at most 99999 exposures in a night")

    @classmethod
    def sample(cls) -> "NightConfig":
        """The shipped sample night (``sample_data/make_sample_data.sh``): all 9 CCDs at 1/36 size,
        3 biases, 2 darks, 2 flats and 3 science frames in r and g, compressed, no truth images."""
        return cls(scale=1 / 36, seed=20251120, n_bias=3, n_dark=2, n_flat=2, n_science=3, filters=("r", "g"),
                   compress=True, truth_images=False)

    @property
    def evening(self) -> _dt.date:
        """The local date of the evening the night starts."""
        return _dt.date.fromisoformat(self.date)

    @property
    def field_name(self) -> str:
        """``OBJECT`` of the science frames."""
        if self.object_name is not None:
            return self.object_name
        ra_h = self.ra.to_value(u.hourangle)
        hh, mm = int(ra_h), int(round((ra_h - int(ra_h)) * 60))
        if mm == 60:
            hh, mm = (hh + 1) % 24, 0
        sign = "+" if self.dec.value >= 0 else "-"
        return f"FIELD_{hh:02d}{mm:02d}{sign}{abs(round(self.dec.value)):02d}"

    def with_changes(self, **changes: Any) -> "NightConfig":
        """A validated copy with some fields changed."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON-ready values (quantities as ``[value, unit]``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, u.Quantity):
                out[f.name] = [float(value.value), value.unit.to_string()]
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out


__all__ = ["DEFAULT_DATE", "DEFAULT_DEC", "DEFAULT_RA", "NightConfig", "parse_scale", "rng_for"]
