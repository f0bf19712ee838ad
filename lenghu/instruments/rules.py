"""Rules that read a frame's type, filter, exposure time and time from headers.

Real headers lie in different ways (the Kast blue biases say
``OBSTYPE = 'DARK'``), so a frame's type is decided by an ordered list of
rules, each a set of conditions on keywords, as ccdproc's and PypeIt's
instrument descriptions do. The first rule that holds wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from lenghu.values import finite_float

FRAME_TYPES = ("bias", "dark", "flat", "arc", "science")


@dataclass(frozen=True)
class Condition:
    """One test on a header: holds if any of ``keys`` satisfies every given test.

    Attributes
    ----------
    keys : tuple of str
        Keywords to look at; the condition holds if one of them passes.
    match : str or None
        Regular expression searched in the value's string form.
    equals : str, float or None
        Exact value (strings compared stripped and case-insensitively).
    minimum, maximum : float or None
        Numeric bounds, inclusive.
    exists : bool or None
        True: the keyword must be present; False: it must be absent.
    """

    keys: tuple[str, ...]
    match: str | None = None
    equals: Any = None
    minimum: float | None = None
    maximum: float | None = None
    exists: bool | None = None

    def holds(self, header: Mapping[str, Any]) -> bool:
        """True if one of ``keys`` in ``header`` passes all tests."""
        if self.exists is False:
            return all(key not in header for key in self.keys)
        return any(self._value_passes(header[key]) for key in self.keys if key in header)

    def _value_passes(self, value: Any) -> bool:
        if self.match is not None and re.search(self.match, str(value)) is None:
            return False
        if self.equals is not None:
            if isinstance(self.equals, str):
                if str(value).strip().lower() != self.equals.strip().lower():
                    return False
            elif finite_float(value) != float(self.equals):
                return False
        if self.minimum is not None or self.maximum is not None:
            number = finite_float(value)
            if number is None:
                return False
            if self.minimum is not None and number < self.minimum:
                return False
            if self.maximum is not None and number > self.maximum:
                return False
        return True

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> "Condition":
        """Build from a TOML table ``{key = "OBJECT", match = "(?i)flat"}``."""
        unknown = set(table) - {"key", "keys", "match", "equals", "min", "max", "exists"}
        if unknown:
            raise ValueError(f"unknown condition fields {sorted(unknown)}")
        keys = table.get("keys", table.get("key"))
        if keys is None:
            raise ValueError("a condition needs 'key' or 'keys'")
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        if "match" in table:
            re.compile(table["match"])
        return cls(
            keys=tuple(k.upper() for k in keys),
            match=table.get("match"),
            equals=table.get("equals"),
            minimum=table.get("min"),
            maximum=table.get("max"),
            exists=table.get("exists"),
        )


@dataclass(frozen=True)
class FrameTypeRule:
    """A frame type and the conditions under which a header has it.

    The rule holds when every condition in ``all_of`` holds and, if ``any_of``
    is not empty, at least one of ``any_of`` holds.
    """

    frame_type: str
    all_of: tuple[Condition, ...] = ()
    any_of: tuple[Condition, ...] = ()

    def holds(self, header: Mapping[str, Any]) -> bool:
        """True if ``header`` satisfies this rule."""
        if not all(c.holds(header) for c in self.all_of):
            return False
        return not self.any_of or any(c.holds(header) for c in self.any_of)


@dataclass(frozen=True)
class HeaderRules:
    """How one instrument's headers say what a frame is.

    Each ``*_keys`` tuple is tried in order; the first keyword present is used.
    """

    frame_types: tuple[FrameTypeRule, ...]
    exptime_keys: tuple[str, ...] = ("EXPTIME",)
    filter_keys: tuple[str, ...] = ("FILTER",)
    mjd_keys: tuple[str, ...] = ("MJD-OBS",)
    date_keys: tuple[str, ...] = ("DATE-OBS",)
    time_keys: tuple[str, ...] = ("TIME-OBS", "UT", "UTSTART")
    object_keys: tuple[str, ...] = ("OBJECT",)
    ra_keys: tuple[str, ...] = ("RA",)
    dec_keys: tuple[str, ...] = ("DEC",)
    default_filter: str | None = None
    field_notes: tuple[str, ...] = field(default=(), compare=False)

    def classify(self, header: Mapping[str, Any]) -> str | None:
        """The frame type of the first rule that holds, or None."""
        for rule in self.frame_types:
            if rule.holds(header):
                return rule.frame_type
        return None

    @staticmethod
    def first(header: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any] | None:
        """``(keyword, value)`` of the first of ``keys`` present, or None."""
        for key in keys:
            if key in header and header[key] is not None and str(header[key]).strip() != "":
                return key, header[key]
        return None


def parse_rules(table: Mapping[str, Any]) -> HeaderRules:
    """Build :class:`HeaderRules` from the ``[headers]`` table of an instrument file."""
    frame_rules = []
    for entry in table.get("frame_type", []):
        kind = entry.get("type")
        if kind not in FRAME_TYPES:
            raise ValueError(f"frame_type rule has type {kind!r}; expected one of {FRAME_TYPES}")
        extra = set(entry) - {"type", "all", "any"}
        if extra:
            raise ValueError(f"frame_type rule for {kind!r} has unknown fields {sorted(extra)}")
        frame_rules.append(
            FrameTypeRule(
                frame_type=kind,
                all_of=tuple(Condition.from_dict(c) for c in entry.get("all", [])),
                any_of=tuple(Condition.from_dict(c) for c in entry.get("any", [])),
            )
        )
    if not frame_rules:
        raise ValueError("[headers] needs at least one [[headers.frame_type]] rule")
    keys = {}
    for name in ("exptime", "filter", "mjd", "date", "time", "object", "ra", "dec"):
        if name in table:
            value = table[name]
            keys[f"{name}_keys"] = (value,) if isinstance(value, str) else tuple(value)
    return HeaderRules(
        frame_types=tuple(frame_rules),
        default_filter=table.get("default_filter"),
        **keys,
    )
