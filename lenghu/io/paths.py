"""File names built from header values, made safe.

Header values (OBJECT, FILTER, detector names) are written by other software
and by people; they never reach a path unsanitised: only letters, digits,
``.``, ``_``, ``-`` survive, leading dots are dropped, length is bounded, so a
value such as ``../../x`` or one with NUL bytes stays a plain name inside OUT.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(value: object, fallback: str = "none", max_length: int = 64) -> str:
    """A file-name component made from ``value``."""
    text = _UNSAFE.sub("_", str(value)).strip("._")
    text = text.replace("..", "_")
    return text[:max_length] or fallback
