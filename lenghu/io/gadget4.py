"""Write particle snapshots in the Gadget-4 HDF5 layout, slab by slab.

One snapshot is one file ``OUT/snapshot_NNN.hdf5`` or, when split,
``OUT/snapdir_NNN/snapshot_NNN.F.hdf5`` for F = 0 .. files-1, as Gadget-4
writes them. Each file holds

- ``Header``: ``NumPart_ThisFile``, ``NumPart_Total`` (uint64, six types),
  ``NumPart_Total_HighWord`` (uint32, all zero: ``NumPart_Total`` already holds
  the full 64-bit count, and a Gadget-2 reader that adds ``HighWord << 32``
  still gets it right), ``MassTable`` (10^10 Msun/h), ``Time`` (a),
  ``Redshift``, ``BoxSize``, ``NumFilesPerSnapshot``, ``Omega0``,
  ``OmegaLambda``, ``OmegaBaryon``, ``HubbleParam`` and the Gadget-2
  ``Flag_*`` integers (all 0), for readers that look there;
- ``Parameters``: the run parameters as Gadget-4 records them, with the unit
  system (``UnitLength_in_cm`` ...) and ``ComovingIntegrationOn``;
- ``Config``: compile-time style options (``NTYPES``, ``PERIODIC`` ...);
- ``PartTypeT/<field>`` datasets, each with Gadget-4's conversion attributes
  (``a_scaling``, ``h_scaling``, ``length_scaling``, ``mass_scaling``,
  ``velocity_scaling``, ``to_cgs``) and EAGLE's (``CGSConversionFactor``,
  ``aexp-scale-exponent``, ``h-scale-exponent``, ``VarDescription``): the
  physical cgs value is ``stored * a**a_scaling * h**h_scaling * to_cgs``.

Datasets are created at their full size when the files are opened and filled
by :meth:`SnapshotWriter.write` in any number of slabs, so a snapshot larger
than memory can be written. The files appear only whole (see
:func:`lenghu.io.atomic.atomic_path`): all files of a snapshot are renamed
into place only after every dataset was completely written.

Files are byte-for-byte reproducible: h5py does not record object times by
default and nothing here writes a date.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import h5py
import numpy as np

from lenghu.io.atomic import atomic_path

NTYPES = 6
#: Split a snapshot into several files when one would exceed this many bytes.
DEFAULT_MAX_FILE_BYTES = 2**30


@dataclass(frozen=True)
class Units:
    """The internal unit system, cgs (defaults: Mpc/h, 10^10 Msun/h, km/s, Gadget's cosmological set)."""

    length_in_cm: float = 3.085678e24
    mass_in_g: float = 1.989e43
    velocity_in_cm_per_s: float = 1e5


@dataclass(frozen=True)
class FieldSpec:
    """A per-particle dataset: its name, storage type, width and physical scaling.

    Attributes
    ----------
    name : str
        Dataset name, e.g. ``"Coordinates"``.
    dtype : str
        numpy dtype name of the stored values.
    components : int
        1 for a scalar per particle (dataset N), else the width (dataset N x components).
    description : str
        Written as EAGLE's ``VarDescription``.
    a_scaling, h_scaling : float
        Exponents of the scale factor and of h in the conversion to physical units.
    length_scaling, mass_scaling, velocity_scaling : float
        Exponents of the unit length, mass and velocity; ``to_cgs`` is their
        product. All zero for a dimensionless quantity.
    dimensionless_to_cgs : float
        ``to_cgs`` when all three unit exponents are zero (Gadget-4 writes 0 for ids).
    cgs_factor : float or None
        When given, ``to_cgs`` is this value whatever the exponents (for fields
        copied from another snapshot, whose factor is known but not its exponents;
        NaN: unknown).
    """

    name: str
    dtype: str
    components: int
    description: str
    a_scaling: float = 0.0
    h_scaling: float = 0.0
    length_scaling: float = 0.0
    mass_scaling: float = 0.0
    velocity_scaling: float = 0.0
    dimensionless_to_cgs: float = 1.0
    cgs_factor: float | None = None

    def to_cgs(self, units: Units) -> float:
        """Factor from the stored unit to cgs, not counting the a and h factors."""
        if self.cgs_factor is not None:
            return self.cgs_factor
        if self.length_scaling == self.mass_scaling == self.velocity_scaling == 0.0:
            return self.dimensionless_to_cgs
        return (
            units.length_in_cm**self.length_scaling
            * units.mass_in_g**self.mass_scaling
            * units.velocity_in_cm_per_s**self.velocity_scaling
        )

    @property
    def row_bytes(self) -> int:
        """Bytes per particle."""
        return np.dtype(self.dtype).itemsize * self.components


COORDINATES = FieldSpec(
    "Coordinates", "float32", 3, "Co-moving coordinates", a_scaling=1.0, h_scaling=-1.0, length_scaling=1.0
)
VELOCITIES = FieldSpec(
    "Velocities",
    "float32",
    3,
    "Velocities, sqrt(a) dx/dt (peculiar velocity = sqrt(a) * stored)",
    a_scaling=0.5,
    velocity_scaling=1.0,
)
PARTICLE_IDS = FieldSpec("ParticleIDs", "uint64", 1, "Unique particle identifiers", dimensionless_to_cgs=0.0)
MASSES = FieldSpec("Masses", "float32", 1, "Particle masses", h_scaling=-1.0, mass_scaling=1.0)


@dataclass(frozen=True)
class SnapshotHeader:
    """What every file of one snapshot says about the whole snapshot.

    Attributes
    ----------
    num_part_total : tuple of 6 int
        Particles of each type in the whole snapshot.
    mass_table : tuple of 6 float
        Mass of every particle of a type, 10^10 Msun/h (0: per-particle ``Masses``).
    time : float
        Scale factor a (comoving runs).
    redshift : float
        1/a - 1.
    box_size : float
        Periodic box side, unit length (Mpc/h by default).
    omega0, omega_lambda, omega_baryon, hubble_param : float
        Cosmology (hubble_param = h).
    units : Units
    parameters : tuple of (str, value)
        Extra ``Parameters`` attributes (e.g. the seed), after the standard ones.
    config : tuple of (str, value)
        ``Config`` attributes.
    comoving : bool
        ``ComovingIntegrationOn``; when False, ``time`` is the code time (any value
        >= 0) and the redshift is not checked against it.
    periodic : bool
        ``PeriodicBoundariesOn``; when False, ``box_size`` may be 0.
    source_header : tuple of (str, value)
        Attributes of the header of the file this snapshot was converted from,
        written to a ``SourceHeader`` group (values: numbers, strings, lists of either).
    """

    num_part_total: tuple[int, ...]
    mass_table: tuple[float, ...]
    time: float
    redshift: float
    box_size: float
    omega0: float
    omega_lambda: float
    omega_baryon: float
    hubble_param: float
    units: Units = field(default_factory=Units)
    parameters: tuple[tuple[str, object], ...] = ()
    config: tuple[tuple[str, object], ...] = ()
    comoving: bool = True
    periodic: bool = True
    source_header: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if len(self.num_part_total) != NTYPES or len(self.mass_table) != NTYPES:
            raise ValueError(f"num_part_total and mass_table need {NTYPES} entries")
        if any(n < 0 for n in self.num_part_total):
            raise ValueError("particle counts must be >= 0")
        if not self.comoving or not self.periodic:
            if self.time < 0 or self.box_size < 0 or (self.periodic and self.box_size == 0):
                raise ValueError("time and box_size must be >= 0 (box_size > 0 when periodic)")
            if not self.comoving:
                return
        if not (self.time > 0 and self.box_size > 0):
            raise ValueError("time and box_size must be > 0")
        if not math.isclose(self.redshift, 1.0 / self.time - 1.0, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"redshift {self.redshift} does not match time (a) {self.time}")


def snapshot_paths(out_dir: str | Path, number: int, num_files: int, basename: str = "snapshot") -> list[Path]:
    """Paths of the files of snapshot ``number``, in Gadget-4's naming.

    Examples
    --------
    >>> [p.as_posix() for p in snapshot_paths("out", 3, 1)]
    ['out/snapshot_003.hdf5']
    >>> [p.as_posix() for p in snapshot_paths("out", 3, 2)]
    ['out/snapdir_003/snapshot_003.0.hdf5', 'out/snapdir_003/snapshot_003.1.hdf5']
    """
    out_dir = Path(out_dir)
    if num_files < 1:
        raise ValueError("num_files must be >= 1")
    if num_files == 1:
        return [out_dir / f"{basename}_{number:03d}.hdf5"]
    folder = out_dir / f"snapdir_{number:03d}"
    return [folder / f"{basename}_{number:03d}.{i}.hdf5" for i in range(num_files)]


def split_counts(num_part_total: Sequence[int], num_files: int) -> list[tuple[int, ...]]:
    """Particles of each type in each file: as even as possible, earlier files take the remainder.

    Examples
    --------
    >>> split_counts([0, 10, 0, 0, 0, 0], 3)
    [(0, 4, 0, 0, 0, 0), (0, 3, 0, 0, 0, 0), (0, 3, 0, 0, 0, 0)]
    """
    rows = []
    for f in range(num_files):
        rows.append(tuple(n // num_files + (1 if f < n % num_files else 0) for n in num_part_total))
    return rows


def files_needed(
    num_part_total: Sequence[int],
    fields: Mapping[int, Sequence[FieldSpec]],
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> int:
    """Smallest number of files that keeps each file's particle data under ``max_file_bytes``."""
    total = sum(num_part_total[t] * sum(f.row_bytes for f in specs) for t, specs in fields.items())
    return max(1, math.ceil(total / max_file_bytes))


def _attr(group: h5py.Group | h5py.Dataset, name: str, value, dtype) -> None:
    """Set one attribute with an explicit numeric type (h5py stores text as a variable-length string)."""
    if isinstance(value, str):
        group.attrs[name] = value
    else:
        group.attrs.create(name, np.asarray(value, dtype=dtype))


def _write_header(h5: h5py.File, header: SnapshotHeader, this_file: Sequence[int], num_files: int) -> None:
    g = h5.create_group("Header")
    _attr(g, "NumPart_ThisFile", this_file, np.uint64)
    _attr(g, "NumPart_Total", header.num_part_total, np.uint64)
    _attr(g, "NumPart_Total_HighWord", [0] * NTYPES, np.uint32)
    _attr(g, "MassTable", header.mass_table, np.float64)
    _attr(g, "Time", header.time, np.float64)
    _attr(g, "Redshift", header.redshift, np.float64)
    _attr(g, "BoxSize", header.box_size, np.float64)
    _attr(g, "NumFilesPerSnapshot", num_files, np.int32)
    _attr(g, "Omega0", header.omega0, np.float64)
    _attr(g, "OmegaLambda", header.omega_lambda, np.float64)
    _attr(g, "OmegaBaryon", header.omega_baryon, np.float64)
    _attr(g, "HubbleParam", header.hubble_param, np.float64)
    for flag in ("Flag_Sfr", "Flag_Cooling", "Flag_StellarAge", "Flag_Metals", "Flag_Feedback", "Flag_DoublePrecision"):
        _attr(g, flag, 0, np.int32)

    p = h5.create_group("Parameters")
    standard = [
        ("BoxSize", header.box_size),
        ("ComovingIntegrationOn", int(header.comoving)),
        ("HubbleParam", header.hubble_param),
        ("NumFilesPerSnapshot", num_files),
        ("Omega0", header.omega0),
        ("OmegaBaryon", header.omega_baryon),
        ("OmegaLambda", header.omega_lambda),
        ("PeriodicBoundariesOn", int(header.periodic)),
        ("UnitLength_in_cm", header.units.length_in_cm),
        ("UnitMass_in_g", header.units.mass_in_g),
        ("UnitVelocity_in_cm_per_s", header.units.velocity_in_cm_per_s),
    ]
    for name, value in [*standard, *header.parameters]:
        _attr(p, name, value, np.int32 if isinstance(value, (bool, int, np.integer)) else None)

    c = h5.create_group("Config")
    for name, value in [("NTYPES", NTYPES), ("PERIODIC", 1), *header.config]:
        _attr(c, name, value, np.int32 if isinstance(value, (bool, int, np.integer)) else None)

    if header.source_header:
        s = h5.create_group("SourceHeader")
        for name, value in header.source_header:
            _source_attr(s, name, value)


def _source_attr(group: h5py.Group, name: str, value) -> None:
    """One ``SourceHeader`` attribute: text as UTF-8 strings, numbers with their own type."""
    if isinstance(value, str):
        group.attrs[name] = value
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        group.attrs[name] = np.array(value, dtype=h5py.string_dtype())
    else:
        group.attrs[name] = np.asarray(value)


def _create_datasets(h5: h5py.File, fields: Mapping[int, Sequence[FieldSpec]], this_file: Sequence[int], units: Units,
                     compress: bool = False):
    for ptype, specs in sorted(fields.items()):
        if this_file[ptype] == 0:
            continue  # Gadget-4 writes no PartType group for a type absent from the file
        g = h5.create_group(f"PartType{ptype}")
        for spec in specs:
            shape = (this_file[ptype],) if spec.components == 1 else (this_file[ptype], spec.components)
            options = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress and shape[0] else {}
            ds = g.create_dataset(spec.name, shape=shape, dtype=spec.dtype, **options)
            to_cgs = spec.to_cgs(units)
            for name, value in (
                ("a_scaling", spec.a_scaling),
                ("h_scaling", spec.h_scaling),
                ("length_scaling", spec.length_scaling),
                ("mass_scaling", spec.mass_scaling),
                ("velocity_scaling", spec.velocity_scaling),
                ("to_cgs", to_cgs),
                ("CGSConversionFactor", to_cgs),
                ("aexp-scale-exponent", spec.a_scaling),
                ("h-scale-exponent", spec.h_scaling),
            ):
                _attr(ds, name, value, np.float64)
            _attr(ds, "VarDescription", spec.description, None)


class SnapshotWriter:
    """Fills the datasets of one snapshot's open files; made by :func:`open_snapshot`."""

    def __init__(self, files: list[h5py.File], counts: list[tuple[int, ...]], fields: Mapping[int, Sequence[FieldSpec]]):
        self._files = files
        self._counts = counts
        self._specs = {(t, s.name): s for t, specs in fields.items() for s in specs}
        self._written = {key: 0 for key in self._specs}
        self._totals = {(t, name): sum(c[t] for c in counts) for (t, name) in self._specs}

    def write(self, part_type: int, name: str, start: int, data: np.ndarray) -> None:
        """Write rows ``start .. start + len(data)`` (indices over the whole snapshot) of one field.

        Rows that span several files are split between them. Slabs must not overlap.
        """
        key = (part_type, name)
        if key not in self._specs:
            raise KeyError(f"PartType{part_type}/{name} was not declared when the snapshot was opened")
        spec = self._specs[key]
        data = np.asarray(data)
        expected_tail = () if spec.components == 1 else (spec.components,)
        if data.shape[1:] != expected_tail:
            raise ValueError(f"{name}: rows must have shape {expected_tail}, got {data.shape[1:]}")
        stop = start + data.shape[0]
        if start < 0 or stop > self._totals[key]:
            raise ValueError(f"{name}: rows {start}..{stop} lie outside 0..{self._totals[key]}")
        data = data.astype(spec.dtype, copy=False)
        file_start = 0
        for h5, counts in zip(self._files, self._counts):
            file_stop = file_start + counts[part_type]
            lo, hi = max(start, file_start), min(stop, file_stop)
            if lo < hi:
                h5[f"PartType{part_type}/{name}"][lo - file_start : hi - file_start] = data[lo - start : hi - start]
            file_start = file_stop
        self._written[key] += data.shape[0]

    def check_complete(self) -> None:
        """Raise ValueError unless every declared dataset received exactly its number of rows."""
        for key, total in self._totals.items():
            if self._written[key] != total:
                raise ValueError(f"PartType{key[0]}/{key[1]}: {self._written[key]} of {total} rows written")


@contextlib.contextmanager
def open_snapshot(
    out_dir: str | Path,
    number: int,
    header: SnapshotHeader,
    fields: Mapping[int, Sequence[FieldSpec]],
    num_files: int = 1,
    compress: bool = False,
) -> Iterator[SnapshotWriter]:
    """Open the files of one snapshot for writing; they appear whole when the block ends.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    number : int
        Snapshot number (``snapshot_NNN``).
    header : SnapshotHeader
    fields : mapping of particle type to FieldSpecs
        Datasets to create for each type, e.g. ``{1: [COORDINATES, VELOCITIES, PARTICLE_IDS]}``.
    num_files : int
        Files to split the snapshot into (see :func:`files_needed`).
    compress : bool
        Lossless gzip with byte shuffling on every dataset (about 40% smaller
        for particle data; every HDF5 reader decodes it).

    Yields
    ------
    SnapshotWriter
        Call ``write`` until every dataset is full. If the block raises, or
        leaves a dataset incomplete, no file is left behind.

    Examples
    --------
    >>> with open_snapshot(out, 0, header, {1: [COORDINATES]}) as snap:   # doctest: +SKIP
    ...     snap.write(1, "Coordinates", 0, positions)
    """
    paths = snapshot_paths(out_dir, number, num_files)
    counts = split_counts(header.num_part_total, num_files)
    with contextlib.ExitStack() as stack:
        files = []
        for path, this_file in zip(paths, counts):
            tmp = stack.enter_context(atomic_path(path))
            h5 = stack.enter_context(h5py.File(tmp, "w"))
            _write_header(h5, header, this_file, num_files)
            _create_datasets(h5, fields, this_file, header.units, compress)
            files.append(h5)
        writer = SnapshotWriter(files, counts, fields)
        yield writer
        writer.check_complete()  # inside the stack: an incomplete snapshot is discarded
