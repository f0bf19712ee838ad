"""Format conversion: images, cubes and MEF files, catalogues, snapshots (see :mod:`.api`).

>>> from lenghu.convert import convert                 # doctest: +SKIP
>>> convert("test0.fits", "test0.zarr")                # doctest: +SKIP

Modules: :mod:`.api` (one input), :mod:`.batch` (many, on Dask),
:mod:`.fits_store` (FITS <-> Zarr/HDF5 layout), :mod:`.fz` (tile compression),
:mod:`.tables` (catalogues), :mod:`.stores` (Zarr/HDF5 behind one interface),
:mod:`.formats` (names and extensions).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "convert": "lenghu.convert.api",
    "ConvertOptions": "lenghu.convert.api",
    "ConversionResult": "lenghu.convert.api",
    "ConversionError": "lenghu.convert.api",
    "convert_many": "lenghu.convert.batch",
    "BatchReport": "lenghu.convert.batch",
    "FORMATS": "lenghu.convert.formats",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lenghu.convert' has no attribute {name!r}")
