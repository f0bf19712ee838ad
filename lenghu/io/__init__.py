"""Raw frames in, products out; catalogues; array stores; snapshots.

The raw-frame API is imported lazily (``from lenghu.io import read_raw``), so
importing :mod:`lenghu.io.atomic` alone stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "AmplifierPixels": "lenghu.io.raw",
    "RawDetectorFrame": "lenghu.io.raw",
    "RawExposure": "lenghu.io.raw",
    "detect_instrument": "lenghu.io.raw",
    "instrument_for": "lenghu.io.raw",
    "read_raw": "lenghu.io.raw",
    "read_record": "lenghu.io.raw",
    "ObservationRecord": "lenghu.io.records",
    "AssumedValueWarning": "lenghu.io.header_geometry",
    "FitsFile": "lenghu.io.fitsfile",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lenghu.io' has no attribute {name!r}")
