"""Pointing and observation time from header values, whatever their form.

RA and Dec come as numbers (degrees) or as sexagesimal strings; a sexagesimal
RA (``'09:21:46.0'``, ``'09 21 46'``) is in hours. Times come as MJD-OBS, or
as DATE-OBS (ISO with or without a time; old ``dd/mm/yy``) combined with a
time keyword where the date has no time.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import astropy.units as u
from astropy.coordinates import Angle
from astropy.time import Time

from lenghu.values import finite_float
from lenghu.errors import MissingKeywordError
from lenghu.instruments.rules import HeaderRules

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SEXAGESIMAL = re.compile(r"^[+-]?\d{1,3}[: ]\d{1,2}([: ]\d{1,2}(\.\d*)?)?$")
_OLD_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{2})$")  # dd/mm/yy, 1900-1999 (FITS before 2000)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_angle(value: Any, kind: str) -> float | None:
    """An RA (``kind="ra"``) or Dec (``kind="dec"``) in degrees, or None if it cannot be read.

    Numbers and numeric strings are degrees; sexagesimal strings are hours
    for RA and degrees for Dec; strings with units (``'9h21m46s'``) use them.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        degrees = float(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        try:
            if _NUMBER.match(text):
                degrees = float(text)
            elif _SEXAGESIMAL.match(text):
                degrees = Angle(text, unit=u.hourangle if kind == "ra" else u.deg).deg
            else:
                degrees = Angle(text).deg
        except (ValueError, u.UnitsError):
            return None
    if not math.isfinite(degrees):
        return None
    degrees = float(degrees)
    if kind == "ra":
        return degrees % 360.0 if -360.0 <= degrees <= 720.0 else None
    return degrees if -90.0 <= degrees <= 90.0 else None


def observation_mjd(values: Mapping[str, Any], rules: HeaderRules, path: str) -> float:
    """Modified Julian Date (UTC) of the start of the exposure.

    Raises
    ------
    MissingKeywordError
        None of the MJD or date keywords is present or readable, or the date
        has no time and no time keyword is present.
    """
    found = rules.first(values, rules.mjd_keys)
    if found is not None:
        key, value = found
        number = finite_float(value)
        if number is None:
            raise MissingKeywordError(path, f"{key} = {value!r} is not a Modified Julian Date")
        return number
    found = rules.first(values, rules.date_keys)
    if found is None:
        raise MissingKeywordError(
            path, f"no observation time: none of {list(rules.mjd_keys + rules.date_keys)} is present"
        )
    key, value = found
    text = str(value).strip().replace(" ", "T")
    old = _OLD_DATE.match(text)
    if old:
        text = f"19{old.group(3)}-{old.group(2)}-{old.group(1)}"
    if _ISO_DATE.match(text):
        clock = rules.first(values, rules.time_keys)
        if clock is None:
            raise MissingKeywordError(
                path, f"{key} = {value!r} has no time of day and none of {list(rules.time_keys)} is present"
            )
        text = f"{text}T{_clock(clock[1])}"
    scale = str(values.get("TIMESYS", "UTC")).strip().lower()
    if scale not in Time.SCALES:
        scale = "utc"
    try:
        return float(Time(text, format="isot", scale=scale).utc.mjd)
    except ValueError as exc:
        raise MissingKeywordError(path, f"{key} = {value!r} is not a date astropy can read ({exc})") from exc


def _clock(value: Any) -> str:
    """``'15:41:16'`` as is; a number of hours as ``hh:mm:ss.sss``."""
    hours = finite_float(value)
    if hours is None or isinstance(value, str):
        return str(value).strip()
    seconds = hours * 3600.0
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:06.3f}"


