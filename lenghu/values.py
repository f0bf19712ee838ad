"""Reading numbers out of header values written by other software."""

from __future__ import annotations

import math
from typing import Any


def finite_float(value: Any) -> float | None:
    """``float(value)`` if it is a finite number (not a bool, None, text or NaN), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
