"""Particles in memory (:class:`ParticleData`) and several snapshots played in order (:class:`TimeSeries`).

:func:`load_particles` reads any snapshot lenghu reads (through
:mod:`lenghu.io.snapshots`) into float32 arrays: positions (N, 3), one
(N,) array per scalar field, and the ids when the file has them. Derived
fields: ``speed`` (|velocity|) and ``mass`` (per-particle masses) where the
file has them, ``part_type`` when several types are read.

A :class:`TimeSeries` interpolates positions (and fields) linearly between
consecutive snapshots, particle by particle matched by id; in a periodic
box the shortest way round is taken (minimum image).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


@dataclass
class ParticleData:
    """Particles in memory.

    Attributes
    ----------
    positions : ndarray
        float32 (N, 3).
    fields : dict of str to ndarray
        float32 (N,) per field.
    ids : ndarray or None
        (N,) integer ids (to match particles between snapshots).
    box_size : tuple of 3 float
        Periodic box (zeros when not periodic).
    time, redshift : float, float or None
    name : str
        Where the particles came from (for captions).
    length_unit : str
        Name of the length unit (``Mpc/h``, ``kpc/h``...), for the scale bar.
    """

    positions: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    ids: np.ndarray | None = None
    box_size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    time: float = 0.0
    redshift: float | None = None
    name: str = ""
    length_unit: str = ""

    def __post_init__(self):
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float32).reshape(-1, 3)
        n = len(self.positions)
        self.fields = {k: np.ascontiguousarray(v, dtype=np.float32).ravel() for k, v in self.fields.items()}
        for k, v in self.fields.items():
            if len(v) != n:
                raise ValueError(f"field {k!r} has {len(v)} values for {n} particles")
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"{len(self.ids)} ids for {n} particles")
        self.box_size = tuple(float(b) for b in self.box_size)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def count(self) -> int:
        return len(self.positions)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) corners: the periodic box when there is one, else the particles' extent."""
        if all(b > 0 for b in self.box_size):
            return np.zeros(3), np.asarray(self.box_size, dtype=float)
        if not len(self):
            return np.zeros(3), np.ones(3)
        return self.positions.min(axis=0).astype(float), self.positions.max(axis=0).astype(float)

    def field_names(self) -> list[str]:
        return sorted(self.fields)

    def field_range(self, name: str, log: bool = False) -> tuple[float, float]:
        """A colour range for a field: its 0.5 and 99.5 percentiles (of positive values when ``log``)."""
        return field_range(self.fields[name], log)

    def subset(self, index) -> "ParticleData":
        return ParticleData(self.positions[index], {k: v[index] for k, v in self.fields.items()},
                            None if self.ids is None else self.ids[index], self.box_size, self.time,
                            self.redshift, self.name, self.length_unit)


def field_range(values: np.ndarray, log: bool = False, sample: int = 200_000) -> tuple[float, float]:
    """0.5 and 99.5 percentiles of ``values`` (a random sample of at most ``sample``); positive only for ``log``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if len(v) > sample:
        v = v[np.random.default_rng(0).choice(len(v), sample, replace=False)]
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if not len(v):
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = np.percentile(v, [0.5, 99.5])
    if not hi > lo:
        hi = lo * 10 if log else lo + 1.0
    return float(lo), float(hi)


def _length_unit_name(length_cm: float, comoving: bool | None, hubble_param: float) -> str:
    units = {3.085678e24: "Mpc", 3.085678e21: "kpc", 3.085678e18: "pc", 1e5: "km", 1.0: "cm"}
    for cm, name in units.items():
        if abs(length_cm / cm - 1) < 1e-3:
            return name + ("/h" if hubble_param != 1.0 and name in ("Mpc", "kpc") else "")
    return f"{length_cm:.3g} cm"


def load_particles(path: str | Path, part_types: Iterable[int] | None = None, max_points: int | None = None,
                   seed: int = 0) -> ParticleData:
    """Read a snapshot into memory as float32 arrays.

    Parameters
    ----------
    path : path
        Any snapshot :func:`lenghu.io.snapshots.read_snapshot` reads.
    part_types : iterable of int, optional
        Gadget particle types to read (default: all present).
    max_points : int, optional
        Keep a uniform random subset of at most this many particles.
    """
    from lenghu.io.snapshots import SnapshotQuirkWarning, read_snapshot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnapshotQuirkWarning)
        snap = read_snapshot(path)
    types = sorted(snap.particles) if part_types is None else [t for t in part_types if t in snap.particles]
    if not types:
        raise ValueError(f"{path}: none of the particle types {list(part_types or [])} is present "
                         f"(present: {sorted(snap.particles)})")
    positions, ids, fields = [], [], {}
    names = _common_scalar_fields([snap.particles[t] for t in types])
    has_ids = all(snap.particles[t].ids is not None for t in types)
    has_vel = all(snap.particles[t].velocities is not None for t in types)
    has_mass = all(snap.particles[t].masses is not None for t in types)
    for key in names + (["speed"] if has_vel else []) + (["mass"] if has_mass else []) + (
            ["part_type"] if len(types) > 1 else []):
        fields[key] = []
    for t in types:
        ps = snap.particles[t]
        positions.append(np.asarray(ps.positions.compute(), dtype=np.float32))
        if has_ids:
            ids.append(np.asarray(ps.ids.compute()).astype(np.int64, copy=False))
        for name in names:
            fields[name].append(np.asarray(ps.fields[name].data.compute(), dtype=np.float32))
        if has_vel:
            v = np.asarray(ps.velocities.compute(), dtype=np.float32)
            fields["speed"].append(np.sqrt((v * v).sum(axis=1)))
        if has_mass:
            fields["mass"].append(np.asarray(ps.masses.compute(), dtype=np.float32))
        if len(types) > 1:
            fields["part_type"].append(np.full(ps.count, t, dtype=np.float32))
    data = ParticleData(
        np.concatenate(positions),
        {k: np.concatenate(v) for k, v in fields.items()},
        np.concatenate(ids) if has_ids else None,
        snap.box_size,
        snap.time,
        snap.redshift,
        Path(path).name,
        _length_unit_name(snap.units.length_cm, snap.comoving, snap.hubble_param),
    )
    if "grid_density" not in data.fields:
        data.fields["grid_density"] = grid_density(data.positions, data.box_size)
    if max_points is not None and len(data) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(data), max_points, replace=False))
        data = data.subset(keep)
    return data


def grid_density(positions: np.ndarray, box_size=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Particles in each particle's cell of a grid with about 8 particles per cell, over the mean (1 + overdensity).

    The grid covers the periodic box (or the particles' bounding cube) with
    2^L cells per side, L = round(log2((N / 8)^(1/3))): the same definition
    as the ``grid_density`` field of a level-of-detail store.
    """
    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    box = np.asarray(box_size, dtype=np.float64)
    if np.all(box > 0):
        lo, size = np.minimum(np.zeros(3), pos.min(axis=0)), float(np.max(np.maximum(box, pos.max(axis=0))))
    else:
        lo = pos.min(axis=0)
        size = float(np.max(pos.max(axis=0) - lo)) or 1.0
    size *= 1.0 + 1e-6
    level = int(np.clip(round(np.log2(max(n / 8.0, 1.0) ** (1 / 3))), 1, 12))
    g = 1 << level
    q = np.clip(np.floor((pos - lo) * (g / size)).astype(np.int64), 0, g - 1)
    flat = (q[:, 0] * g + q[:, 1]) * g + q[:, 2]
    uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return (counts[inverse] / (n / 8.0**level)).astype(np.float32)


def _common_scalar_fields(sets) -> list[str]:
    """Names of the 1-D numeric fields (other than ids and masses) that every set has."""
    from lenghu.io.snapshots.model import CANONICAL

    common = None
    for ps in sets:
        names = {name for name, f in ps.fields.items()
                 if name not in CANONICAL and len(f.shape) == 1 and np.issubdtype(f.dtype, np.number)}
        common = names if common is None else common & names
    return sorted(common or [])


class TimeSeries:
    """Several snapshots of one simulation, in time order; :meth:`at` interpolates between them by particle id.

    Parameters
    ----------
    frames : sequence of ParticleData
        Sorted here by their ``time``.
    """

    def __init__(self, frames: Sequence[ParticleData]):
        if not frames:
            raise ValueError("a time series needs at least one snapshot")
        self.frames = sorted(frames, key=lambda f: f.time)
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def count(self) -> int:
        return max(len(f) for f in self.frames)

    @property
    def times(self) -> list[float]:
        return [f.time for f in self.frames]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        los, his = zip(*(f.bounds() for f in self.frames))
        return np.min(los, axis=0), np.max(his, axis=0)

    def field_names(self) -> list[str]:
        names = set(self.frames[0].fields)
        for f in self.frames[1:]:
            names &= set(f.fields)
        return sorted(names)

    def field_range(self, name: str, log: bool = False) -> tuple[float, float]:
        return field_range(np.concatenate([f.fields[name] for f in self.frames]), log)

    def _pair(self, i: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Indices into frames i and i+1 of the particles present in both (matched by id), or None."""
        if i not in self._pairs:
            a, b = self.frames[i], self.frames[i + 1]
            if a.ids is None or b.ids is None:
                self._pairs[i] = None
            else:
                common, ia, ib = np.intersect1d(a.ids, b.ids, assume_unique=True, return_indices=True)
                self._pairs[i] = (ia, ib)
        return self._pairs[i]

    def at(self, t: float) -> ParticleData:
        """The particles at fractional snapshot index ``t`` (0 = first, len - 1 = last), interpolated by id.

        Particles not present in both neighbouring snapshots are left out while
        interpolating; without ids the nearest snapshot is returned.
        """
        k = len(self.frames)
        t = float(np.clip(t, 0, k - 1))
        i = min(int(np.floor(t)), k - 2) if k > 1 else 0
        f = t - i
        if k == 1 or f == 0.0:
            return self.frames[i]
        if f == 1.0:
            return self.frames[i + 1]
        pair = self._pair(i)
        a, b = self.frames[i], self.frames[i + 1]
        if pair is None:
            return a if f < 0.5 else b
        ia, ib = pair
        pa, pb = a.positions[ia].astype(np.float64), b.positions[ib].astype(np.float64)
        d = pb - pa
        box = np.asarray(a.box_size, dtype=float)
        if np.all(box > 0):
            d -= box * np.round(d / box)
        pos = pa + f * d
        if np.all(box > 0):
            pos = np.mod(pos, box)
        fields = {}
        for name in set(a.fields) & set(b.fields):
            fields[name] = (1 - f) * a.fields[name][ia] + f * b.fields[name][ib]
        time = (1 - f) * a.time + f * b.time
        redshift = None if a.redshift is None or b.redshift is None else (1 - f) * a.redshift + f * b.redshift
        return ParticleData(pos.astype(np.float32), fields, a.ids[ia], a.box_size, time, redshift,
                            a.name, a.length_unit)
