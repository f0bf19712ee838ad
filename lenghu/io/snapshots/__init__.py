"""Particle snapshots in one model, from every format lenghu reads.

>>> snap = read_snapshot("snapdir_005/")          # doctest: +SKIP
>>> snap.particles[1].positions                   # a lazy (N, 3) dask array   # doctest: +SKIP
>>> write_zarr(snap, "snap_005.zarr")             # doctest: +SKIP

Readers: Gadget-2 binary (:mod:`.gadget2`), Gadget-family HDF5 (:mod:`.hdf5`:
Gadget-3/4, AREPO, SWIFT, EAGLE, IllustrisTNG), lenghu Zarr
(:mod:`.zarr_store`). Writers: Gadget-4 HDF5 (:mod:`.gadget4_out`) and Zarr.
Submodules are imported lazily so that importing this package is cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Snapshot": "lenghu.io.snapshots.model",
    "ParticleSet": "lenghu.io.snapshots.model",
    "Field": "lenghu.io.snapshots.model",
    "FieldUnits": "lenghu.io.snapshots.model",
    "UnitSystem": "lenghu.io.snapshots.model",
    "SnapshotError": "lenghu.io.snapshots.model",
    "SnapshotCountError": "lenghu.io.snapshots.model",
    "TruncatedSnapshotError": "lenghu.io.snapshots.model",
    "UnknownSnapshotFormatError": "lenghu.io.snapshots.model",
    "SnapshotQuirkWarning": "lenghu.io.snapshots.model",
    "read_snapshot": "lenghu.io.snapshots.read",
    "snapshot_format": "lenghu.io.snapshots.read",
    "read_gadget2": "lenghu.io.snapshots.gadget2",
    "read_hdf5_snapshot": "lenghu.io.snapshots.hdf5",
    "read_zarr": "lenghu.io.snapshots.zarr_store",
    "write_zarr": "lenghu.io.snapshots.zarr_store",
    "write_gadget4": "lenghu.io.snapshots.gadget4_out",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lenghu.io.snapshots' has no attribute {name!r}")
