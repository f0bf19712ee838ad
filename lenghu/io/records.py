"""The normalised description of one raw frame, whatever its instrument."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ObservationRecord:
    """What a raw file is, read from its header by the instrument's rules.

    Attributes
    ----------
    path : str
        The file.
    instrument : str
        Instrument name (``wfst``, ``kast_blue``, ``generic``, ...).
    detectors : tuple of str
        Detector names present in the file.
    frame_type : str
        One of ``bias``, ``dark``, ``flat``, ``arc``, ``science``.
    filter : str
        Filter name (``"none"`` where the instrument has none).
    exptime : float
        Exposure time in seconds.
    mjd : float
        Modified Julian Date (UTC) of the start of the exposure.
    object : str
        Target name as written (never used as a path unsanitised).
    ra, dec : float or None
        Pointing in ICRS degrees where the header gives one.
    """

    path: str
    instrument: str
    detectors: tuple[str, ...]
    frame_type: str
    filter: str
    exptime: float
    mjd: float
    object: str
    ra: float | None = None
    dec: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """A plain dict (detectors as a list), for JSON and the registry."""
        out = asdict(self)
        out["detectors"] = list(self.detectors)
        return out
