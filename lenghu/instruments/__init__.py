"""Sites, instruments, detectors and amplifiers, one TOML file per instrument."""

from lenghu.instruments.layout import AmplifierGrid
from lenghu.instruments.loader import available_instruments, load_instrument, scale_instrument
from lenghu.instruments.model import Amplifier, Detector, HeaderSections, Instrument, Site
from lenghu.instruments.rules import FRAME_TYPES, HeaderRules
from lenghu.instruments.sections import Section, SectionSyntaxError

__all__ = [
    "Amplifier", "AmplifierGrid", "Detector", "FRAME_TYPES", "HeaderRules", "HeaderSections",
    "Instrument", "Section", "SectionSyntaxError", "Site", "available_instruments",
    "load_instrument", "scale_instrument",
]
