"""One particle model for every snapshot format: :class:`Snapshot` and its parts.

A snapshot is a set of particle types (Gadget's numbering: 0 gas, 1 dark
matter, 2 disk, 3 bulge, 4 stars, 5 black holes; SWIFT adds 6), each holding
named per-particle fields as lazy dask arrays. Four fields have canonical names
whatever the format calls them:

``positions``   (N, 3) Gadget ``Coordinates`` / ``POS``
``velocities``  (N, 3) ``Velocities`` / EAGLE ``Velocity`` / ``VEL``
``masses``      (N,)   ``Masses`` / EAGLE ``Mass`` / ``MASS``, or the header's mass table
``ids``         (N,)   ``ParticleIDs`` / ``ID``

Every other field keeps the name it has in the file (``Density``,
``SmoothedElementAbundance/Carbon`` ...). Each field carries its
:class:`FieldUnits`: the physical cgs value of a stored number x is
``x * a**a_exponent * h**h_exponent * to_cgs``, the convention Gadget-4, EAGLE,
IllustrisTNG and SWIFT all write in their own attribute names.

Nothing here reads a file; the readers in this package build these objects.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from lenghu.errors import FrameError

#: Canonical names of the four fields every reader maps.
POSITIONS, VELOCITIES, MASSES, IDS = "positions", "velocities", "masses", "ids"
CANONICAL = (POSITIONS, VELOCITIES, MASSES, IDS)

#: Conventional names of Gadget's particle types (SWIFT's type 6: neutrinos).
TYPE_NAMES = {0: "gas", 1: "dark matter", 2: "disk", 3: "bulge", 4: "stars", 5: "black holes", 6: "neutrinos"}


class SnapshotError(FrameError):
    """A snapshot file cannot be read as it is; names the file and the problem."""


class UnknownSnapshotFormatError(SnapshotError):
    """The file's content matches no snapshot format lenghu reads."""


class SnapshotCountError(SnapshotError):
    """The header announces more (or other) particles than the data hold, and nothing explains it."""


class TruncatedSnapshotError(SnapshotError):
    """A data block ends before the size it announces, or the file ends inside a block."""


class SnapshotQuirkWarning(UserWarning):
    """The file breaks a convention in a way lenghu can read around; the quirk is also in ``Snapshot.quirks``."""


def frozen_mapping(items: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    """A read-only copy of ``items`` (so that frozen dataclasses stay frozen all the way down)."""
    return types.MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class UnitSystem:
    """The code units of a snapshot, in cgs.

    Attributes
    ----------
    length_cm, mass_g, velocity_cm_s : float
        The unit length, mass and velocity (e.g. 3.085678e24 cm for Mpc).
    assumed : bool
        True when the file does not say and these are a code's defaults.
    """

    length_cm: float
    mass_g: float
    velocity_cm_s: float
    assumed: bool = False

    @property
    def time_s(self) -> float:
        """The unit time, length / velocity, in seconds."""
        return self.length_cm / self.velocity_cm_s


#: Gadget-2's defaults: kpc/h, 10^10 Msun/h, km/s (what its binary files mean when nothing is said).
GADGET2_DEFAULT_UNITS = UnitSystem(3.085678e21, 1.989e43, 1e5, assumed=True)


@dataclass(frozen=True)
class FieldUnits:
    """How a field's stored numbers become physical cgs values.

    ``physical_cgs = stored * a**a_exponent * h**h_exponent * to_cgs``

    Attributes
    ----------
    to_cgs : float or None
        Factor from the stored unit to cgs, without the a and h factors; None
        when the file does not say and no convention fixes it. Gadget-4 and
        IllustrisTNG write 0 for dimensionless quantities; it is kept as written.
    a_exponent, h_exponent : float
        Exponents of the scale factor a and of h (little h).
    description : str
        The file's description of the field, if any.
    assumed : bool
        True when the values come from a format's convention, not the file.
    """

    to_cgs: float | None = None
    a_exponent: float = 0.0
    h_exponent: float = 0.0
    description: str = ""
    assumed: bool = False

    def factor(self, a: float, h: float) -> float | None:
        """The full factor from stored value to physical cgs at scale factor ``a`` and ``h``."""
        if self.to_cgs is None:
            return None
        return self.to_cgs * a**self.a_exponent * h**self.h_exponent

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (used by the Zarr layout and ``lenghu info --json``)."""
        return {
            "to_cgs": self.to_cgs,
            "a_exponent": self.a_exponent,
            "h_exponent": self.h_exponent,
            "description": self.description,
            "assumed": self.assumed,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FieldUnits":
        """Inverse of :meth:`as_dict`."""
        to_cgs = values.get("to_cgs")
        return cls(
            to_cgs=None if to_cgs is None else float(to_cgs),
            a_exponent=float(values.get("a_exponent", 0.0)),
            h_exponent=float(values.get("h_exponent", 0.0)),
            description=str(values.get("description", "")),
            assumed=bool(values.get("assumed", False)),
        )


@dataclass(frozen=True)
class Field:
    """One per-particle quantity of one particle type.

    Attributes
    ----------
    name : str
        Canonical name (``positions`` ...) or the file's own name.
    data : dask.array.Array
        Lazy values, shape (N,) or (N, k), in the file's own dtype (native byte order).
    units : FieldUnits
    source_name : str
        What the file calls it (``Coordinates``, ``POS``, ``Velocity`` ...).
    """

    name: str
    data: Any
    units: FieldUnits = field(default_factory=FieldUnits)
    source_name: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)


@dataclass(frozen=True)
class ParticleSet:
    """The particles of one type.

    Attributes
    ----------
    part_type : int
        Gadget type number.
    count : int
        Number of particles (the length of every field).
    fields : mapping of str to Field
        Every stored field, canonical names included. Masses given by the
        header's mass table are not stored here (see :attr:`mass_table`).
    mass_table : float or None
        The one mass of every particle of this type, from the header, when the
        file has no per-particle masses for it; else None.
    """

    part_type: int
    count: int
    fields: Mapping[str, Field]
    mass_table: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "fields", frozen_mapping(self.fields))
        for f in self.fields.values():
            if f.shape[0] != self.count:
                raise ValueError(f"PartType{self.part_type}/{f.name}: {f.shape[0]} rows, expected {self.count}")

    @property
    def name(self) -> str:
        """Conventional name of the type (``gas``, ``dark matter`` ...)."""
        return TYPE_NAMES.get(self.part_type, f"type {self.part_type}")

    @property
    def positions(self):
        """(N, 3) dask array."""
        return self.fields[POSITIONS].data

    @property
    def velocities(self):
        """(N, 3) dask array, or None when the file has none."""
        f = self.fields.get(VELOCITIES)
        return None if f is None else f.data

    @property
    def ids(self):
        """(N,) dask array, or None."""
        f = self.fields.get(IDS)
        return None if f is None else f.data

    @property
    def masses(self):
        """(N,) dask array: per-particle masses, or the mass table's value repeated (lazily); None if neither."""
        f = self.fields.get(MASSES)
        if f is not None:
            return f.data
        if self.mass_table is None:
            return None
        import dask.array as da

        return da.full((self.count,), self.mass_table, dtype=np.float64, chunks=max(1, min(self.count, 2**24)))

    @property
    def extra(self) -> dict[str, Field]:
        """The fields other than the four canonical ones."""
        return {k: v for k, v in self.fields.items() if k not in CANONICAL}


@dataclass(frozen=True)
class Snapshot:
    """A particle snapshot, read the same way from every format.

    Attributes
    ----------
    particles : mapping of int to ParticleSet
        Only the types that have particles.
    box_size : tuple of 3 float
        Periodic box sides in the unit length (all 0 for a non-periodic run).
    time : float
        Scale factor a for comoving runs, else the code time.
    redshift : float or None
    hubble_param : float
        h (1 where the file has none).
    comoving : bool or None
        True for a cosmological (comoving) run, False for a Newtonian one, None if unknown.
    units : UnitSystem
    cosmology : mapping of str to float
        ``omega0``, ``omega_lambda``, ``omega_baryon`` where the file gives them.
    source_format : str
        ``gadget2-binary-1``, ``gadget2-binary-2``, ``gadget4-hdf5``, ``gadget-hdf5``,
        ``arepo-hdf5``, ``swift-hdf5``, ``eagle-hdf5``, ``illustristng-hdf5``, ``lenghu-zarr``.
    source_paths : tuple of str
        Every file read (several for a multi-file snapshot).
    quirks : tuple of str
        Departures from the format's conventions that were read around.
    attributes : mapping
        Other header attributes (JSON-able values), kept for round trips.
    """

    particles: Mapping[int, ParticleSet]
    box_size: tuple[float, float, float]
    time: float
    redshift: float | None
    hubble_param: float
    comoving: bool | None
    units: UnitSystem
    cosmology: Mapping[str, float] = field(default_factory=dict)
    source_format: str = ""
    source_paths: tuple[str, ...] = ()
    quirks: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "particles", frozen_mapping(dict(sorted(self.particles.items()))))
        object.__setattr__(self, "cosmology", frozen_mapping(self.cosmology))
        object.__setattr__(self, "attributes", frozen_mapping(self.attributes))
        object.__setattr__(self, "box_size", tuple(float(b) for b in self.box_size))
        if len(self.box_size) != 3:
            raise ValueError("box_size needs 3 sides")

    @property
    def counts(self) -> dict[int, int]:
        """Particles of each type present."""
        return {t: p.count for t, p in self.particles.items()}

    @property
    def total(self) -> int:
        """All particles."""
        return sum(self.counts.values())

    @property
    def scale_factor(self) -> float | None:
        """a: ``time`` for a comoving run, else from the redshift when one is given."""
        if self.comoving:
            return self.time
        if self.redshift is not None and self.comoving is None and self.redshift > -1:
            return 1.0 / (1.0 + self.redshift)
        return None


def box_triplet(value: Any) -> tuple[float, float, float]:
    """A box size as three sides, from a scalar or a 1- or 3-element array."""
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel()
    if arr.size == 1:
        return (float(arr[0]),) * 3
    if arr.size == 3:
        return tuple(float(x) for x in arr)  # type: ignore[return-value]
    raise ValueError(f"a box size needs 1 or 3 values, got {arr.size}")


def total_counts(low: Any, high: Any | None) -> tuple[int, ...]:
    """Particle totals from Gadget's 32-bit low words and ``NumPart_Total_HighWord``.

    Already 64-bit totals (Gadget-4, SWIFT) come with zero high words and pass through.

    Examples
    --------
    >>> total_counts([5, 0], [1, 0])
    (4294967301, 0)
    """
    lows = [int(x) for x in np.atleast_1d(np.asarray(low)).ravel()]
    if high is None:
        return tuple(lows)
    highs = [int(x) for x in np.atleast_1d(np.asarray(high)).ravel()]
    highs += [0] * (len(lows) - len(highs))
    return tuple(lo + (hi << 32) for lo, hi in zip(lows, highs))


def is_close(a: float, b: float) -> bool:
    """Relative closeness used for header consistency checks."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
