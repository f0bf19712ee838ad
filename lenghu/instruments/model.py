"""Frozen data types describing a site, an instrument, its detectors and amplifiers.

Physical values carry astropy units. Values that are not known for certain
(WFST's amplifier layout, gain and noise are not public) are listed in each
object's ``assumed`` set, so products and reports can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator

import astropy.units as u
from astropy.coordinates import EarthLocation

from lenghu.instruments.rules import HeaderRules
from lenghu.instruments.sections import Section

if TYPE_CHECKING:  # layout imports this module
    from lenghu.instruments.layout import AmplifierGrid

ELECTRON_PER_ADU = u.electron / u.adu


@dataclass(frozen=True)
class Site:
    """An observatory site."""

    name: str
    latitude: u.Quantity
    longitude: u.Quantity
    elevation: u.Quantity
    median_seeing: u.Quantity = 1.0 * u.arcsec

    @property
    def location(self) -> EarthLocation:
        """The site as an astropy :class:`~astropy.coordinates.EarthLocation`."""
        return EarthLocation.from_geodetic(self.longitude, self.latitude, self.elevation)


@dataclass(frozen=True)
class Amplifier:
    """One readout amplifier of a detector.

    Attributes
    ----------
    name : str
        Short name, unique within the detector (also the header suffix).
    data_section : Section
        Where this amplifier's imaging pixels are in the raw array.
    overscan_section : Section or None
        Serial overscan columns in the raw array.
    detector_section : Section
        Where the data section lands in the assembled detector image.
    gain : Quantity
        electron / adu.
    read_noise : Quantity
        electron.
    bias_level : Quantity
        Nominal bias level, adu (used by the simulator and as a sanity check).
    saturation : Quantity
        adu; pixels at or above are flagged.
    assumed : frozenset of str
        Names of the fields whose values are assumed rather than measured.
    """

    name: str
    data_section: Section
    overscan_section: Section | None
    detector_section: Section
    gain: u.Quantity = 1.0 * ELECTRON_PER_ADU
    read_noise: u.Quantity = 5.0 * u.electron
    bias_level: u.Quantity = 1000.0 * u.adu
    saturation: u.Quantity = 65535.0 * u.adu
    assumed: frozenset[str] = frozenset()

    def __post_init__(self):
        if self.data_section.shape != self.detector_section.shape:
            raise ValueError(
                f"amplifier {self.name}: data section {self.data_section.to_fits()} and "
                f"detector section {self.detector_section.to_fits()} differ in shape"
            )
        if self.overscan_section is not None and self.overscan_section.shape[0] != self.data_section.shape[0]:
            raise ValueError(f"amplifier {self.name}: overscan rows differ from data rows")


@dataclass(frozen=True)
class Detector:
    """One CCD: its raw and assembled shapes, amplifiers and place in the focal plane.

    Attributes
    ----------
    name : str
        e.g. ``"CCD5"``; also the raw extension name for multi-extension files.
    index : int
        1-based position in the instrument's list.
    hdu : int or str
        Raw HDU holding this detector (an index or an EXTNAME).
    shape : tuple of int
        Assembled ``(ny, nx)`` after trimming overscan.
    raw_shape : tuple of int
        ``(ny, nx)`` of the raw array.
    amplifiers : tuple of Amplifier
        Empty where sections come from each file's header (``generic``).
    offset : tuple of float
        Centre of this detector relative to the boresight, ``(dy, dx)`` in pixels.
    dark_current : Quantity
        Nominal electron / s per pixel.
    pixel_size : Quantity
        micron.
    grid : AmplifierGrid or None
        The regular grid the amplifiers were made from, if any (allows scaling).
    """

    name: str
    index: int
    hdu: int | str
    shape: tuple[int, int]
    raw_shape: tuple[int, int]
    amplifiers: tuple[Amplifier, ...]
    offset: tuple[float, float] = (0.0, 0.0)
    dark_current: u.Quantity = 0.0 * u.electron / u.s
    pixel_size: u.Quantity = 15.0 * u.um
    grid: "AmplifierGrid | None" = None
    assumed: frozenset[str] = frozenset()

    def __post_init__(self):
        for amp in self.amplifiers:
            for label, section, shape in (
                ("data", amp.data_section, self.raw_shape),
                ("overscan", amp.overscan_section, self.raw_shape),
                ("detector", amp.detector_section, self.shape),
            ):
                if section is not None and not section.fits_inside(shape):
                    raise ValueError(
                        f"detector {self.name} amplifier {amp.name}: {label} section "
                        f"{section.to_fits()} lies outside {shape[1]}x{shape[0]}"
                    )

    def amplifier(self, name: str) -> Amplifier:
        """The amplifier called ``name``."""
        for amp in self.amplifiers:
            if amp.name == name:
                return amp
        raise KeyError(f"detector {self.name} has no amplifier {name!r}")


@dataclass(frozen=True)
class HeaderSections:
    """For instruments whose geometry is read from each file (``generic``).

    Keyword names for the data, overscan and trim sections and for gain and
    read noise; ``gain``/``read_noise`` are used where the header lacks them.
    """

    data_key: str = "DATASEC"
    overscan_key: str = "BIASSEC"
    trim_key: str = "TRIMSEC"
    gain_key: str = "GAIN"
    read_noise_key: str = "RDNOISE"
    saturation_key: str = "SATURATE"
    gain: u.Quantity | None = None
    read_noise: u.Quantity | None = None


@dataclass(frozen=True)
class Instrument:
    """A camera on a telescope at a site, and how its headers are read."""

    name: str
    telescope: str
    camera: str
    site: Site
    pixel_scale: u.Quantity
    filters: tuple[str, ...]
    detectors: tuple[Detector, ...]
    rules: HeaderRules
    raw_layout: str = "mef"
    header_sections: HeaderSections | None = None
    assumptions: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def __iter__(self) -> Iterator[Detector]:
        return iter(self.detectors)

    def detector(self, name: str) -> Detector:
        """The detector called ``name``."""
        for det in self.detectors:
            if det.name == name:
                return det
        raise KeyError(f"instrument {self.name} has no detector {name!r}")

    @property
    def sections_from_header(self) -> bool:
        """True where each file's header gives its own sections."""
        return self.header_sections is not None

    def with_detectors(self, detectors: tuple[Detector, ...]) -> "Instrument":
        """A copy with another detector list (for scaled-down simulations)."""
        return replace(self, detectors=tuple(detectors))
