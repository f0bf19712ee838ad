"""Write any :class:`Snapshot` as our canonical Gadget-4 HDF5 (through :mod:`lenghu.io.gadget4`).

Field by field, dask block by dask block, so memory stays at about one block
whatever the snapshot's size. Canonical fields get Gadget-4's names
(``Coordinates``, ``Velocities``, ``Masses``, ``ParticleIDs``); the others keep
theirs; each keeps its dtype and its units (``a_scaling``, ``h_scaling``,
``to_cgs``; NaN where unknown). Mass-table masses stay in ``MassTable``.
Header attributes of the source that Gadget-4 has no place for are written to
a ``SourceHeader`` group, which the reader gives back as ``Snapshot.attributes``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from lenghu.io import gadget4
from lenghu.io.snapshots.conventions import GADGET4_NAMES
from lenghu.io.snapshots.model import Snapshot, SnapshotError


def _spec(name: str, field) -> gadget4.FieldSpec:
    shape = field.shape
    if len(shape) > 2:
        raise ValueError(f"{name}: fields of more than 2 dimensions cannot be written to Gadget-4 HDF5")
    u = field.units
    return gadget4.FieldSpec(
        name=GADGET4_NAMES.get(name, name),
        dtype=field.dtype.name,
        components=1 if len(shape) == 1 else shape[1],
        description=u.description or name,
        a_scaling=u.a_exponent,
        h_scaling=u.h_exponent,
        cgs_factor=math.nan if u.to_cgs is None else u.to_cgs,
    )


def _source_header(snapshot: Snapshot) -> tuple[tuple[str, object], ...]:
    items = []
    for key, value in snapshot.attributes.items():
        if isinstance(value, (str, int, float, bool)) or (
            isinstance(value, list) and value and all(isinstance(v, (str, int, float)) for v in value)
            and len({type(v) for v in value}) == 1
        ):
            items.append((key, value))
    return tuple(items)


def snapshot_header(snapshot: Snapshot, num_files: int = 1) -> gadget4.SnapshotHeader:
    """The Gadget-4 header that describes ``snapshot``."""
    counts = [0] * gadget4.NTYPES
    masses = [0.0] * gadget4.NTYPES
    for t, p in snapshot.particles.items():
        if t >= gadget4.NTYPES:
            raise SnapshotError(snapshot.source_paths[0] if snapshot.source_paths else "snapshot",
                                f"particle type {t} does not exist in Gadget-4 (types 0-5)")
        counts[t] = p.count
        masses[t] = p.mass_table or 0.0
    box = snapshot.box_size
    if len(set(box)) != 1:
        raise SnapshotError(snapshot.source_paths[0] if snapshot.source_paths else "snapshot",
                            f"a non-cubic box {box} cannot be written to Gadget-4 HDF5")
    comoving = bool(snapshot.comoving)
    redshift = snapshot.redshift if snapshot.redshift is not None else (1.0 / snapshot.time - 1.0 if comoving else 0.0)
    u = snapshot.units
    return gadget4.SnapshotHeader(
        num_part_total=tuple(counts),
        mass_table=tuple(masses),
        time=snapshot.time,
        redshift=redshift,
        box_size=box[0],
        omega0=snapshot.cosmology.get("omega0", 0.0),
        omega_lambda=snapshot.cosmology.get("omega_lambda", 0.0),
        omega_baryon=snapshot.cosmology.get("omega_baryon", 0.0),
        hubble_param=snapshot.hubble_param,
        units=gadget4.Units(u.length_cm, u.mass_g, u.velocity_cm_s),
        comoving=comoving,
        periodic=box[0] > 0,
        source_header=_source_header(snapshot),
    )


def write_gadget4(
    snapshot: Snapshot,
    out_dir: str | Path,
    number: int = 0,
    num_files: int = 1,
    on_rows: Callable[[int], None] | None = None,
) -> list[Path]:
    """Write ``snapshot`` as ``out_dir/snapshot_NNN.hdf5`` (or ``snapdir_NNN/`` when ``num_files`` > 1).

    Parameters
    ----------
    snapshot : Snapshot
    out_dir : path
    number : int
        Snapshot number in the file names.
    num_files : int
        Files to split it into.
    on_rows : callable, optional
        Called with the number of rows after each block is written (progress).

    Returns
    -------
    list of Path
        The files written; they appear only whole.
    """
    header = snapshot_header(snapshot, num_files)
    fields = {t: [_spec(name, f) for name, f in p.fields.items()] for t, p in snapshot.particles.items()}
    with gadget4.open_snapshot(out_dir, number, header, fields, num_files) as writer:
        for t, p in snapshot.particles.items():
            for name, f in p.fields.items():
                start = 0
                for block in f.data.blocks:
                    values = np.asarray(block.compute())
                    writer.write(t, GADGET4_NAMES.get(name, name), start, values)
                    start += values.shape[0]
                    if on_rows is not None:
                        on_rows(values.shape[0])
    return gadget4.snapshot_paths(out_dir, number, num_files)
