"""Build a level-of-detail octree store out of core, in memory bounded whatever the input size.

Three streaming steps (see :mod:`.format` for what is written):

1. **Count.** Read the positions chunk by chunk (``chunk_points`` at a time)
   and count particles on a 2^G grid (G = ``grid_level``, 128^3 cells by
   default: 16 MB of counts). Without a periodic box, one more pass first
   finds the bounds.
2. **Bucket.** From the count pyramid, cut the space into *buckets*: the
   largest octree cells holding at most ``bucket_points`` particles. Read
   the input again and append each particle (position, fields, id) to its
   bucket's file on disk, buffering at most ``flush_bytes`` in memory.
3. **Build.** Walk the cells depth first. Each bucket is loaded alone, its
   particles sorted by Morton code and split into nodes of at most
   ``node_points`` (bottom up: leaves keep every particle, a parent keeps a
   proportional random sample of its children's samples). Each node is
   appended to the column files as soon as it is made; above the buckets the
   same merge makes the top of the tree from the bucket roots' samples.

Peak working memory is bounded by ``BuildOptions.memory_budget`` whatever N:
:meth:`BuildOptions.plan` lowers the bucket, chunk and buffer sizes and the
counting grid to fit it (a cost model per particle, checked against
tracemalloc in ``tests/viewer/test_lod.py``). The bound holds unless one cell
of the counting grid holds more than ``bucket_points`` particles (it becomes
one larger bucket). The rate on 2 cores is a few million particles per second
(``benchmarks/bench_viewer.py``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from lenghu.viewer.lod.format import (
    FORMAT,
    IDS,
    META,
    NODE_DTYPE,
    NODES,
    OCTANT_OFFSETS,
    POSITIONS,
    VERSION,
    field_file,
)

#: Levels of Morton code inside a bucket (2^16 cells per side of a bucket).
BUCKET_DEPTH = 16
GRID_DENSITY = "grid_density"


@dataclass(frozen=True)
class BuildOptions:
    """How to build a store.

    Attributes
    ----------
    node_points : int
        Most points per node (leaves at the deepest level may hold more when particles coincide).
    bucket_points : int
        Most particles loaded at once while building (memory: about 100 bytes each at the peak).
    chunk_points : int
        Particles read from the input at a time (the reader's chunks are sized so that
        every field's slices cover whole chunks: 4 bytes x chunk_points).
    grid_level : int
        Levels of the counting grid (2^level cells per side).
    flush_bytes : int
        Bytes of bucket records buffered in memory before they are appended to disk.
    fields : tuple of str or None
        Fields to store (None: every scalar field, ``speed`` from velocities,
        ``mass`` from per-particle masses, and ``grid_density``).
    part_types : tuple of int or None
        Particle types to read (None: all).
    seed : int
        Seed of the random samples (same seed, same store).
    ids : bool
        Also store the particle ids (``ids.i64``; 8 more bytes a point).
    workers : int or None
        Threads building buckets (None: up to 2); the result does not depend on it.
    memory_budget : int or None
        Bytes of working memory the build may use: input chunks, bucket buffers and the buckets
        being built (the interpreter, libraries and the page cache are not counted). ``bucket_points``,
        ``chunk_points`` and ``flush_bytes`` are lowered to fit it (:meth:`plan`), whatever the number
        of particles. None: use them as given.
    """

    node_points: int = 16384
    bucket_points: int = 2**22
    chunk_points: int = 3 * 2**20
    grid_level: int = 7
    flush_bytes: int = 64 * 2**20
    fields: tuple[str, ...] | None = None
    part_types: tuple[int, ...] | None = None
    seed: int = 0
    ids: bool = False
    workers: int | None = None
    memory_budget: int | None = 1024 * 2**20

    def __post_init__(self):
        if self.node_points < 8:
            raise ValueError("node_points must be >= 8")
        if self.bucket_points < self.node_points:
            raise ValueError("bucket_points must be >= node_points")
        if not 1 <= self.grid_level <= 9:
            raise ValueError("grid_level must be in 1..9")
        if self.memory_budget is not None and self.memory_budget < MIN_BUDGET:
            raise ValueError(f"memory_budget must be >= {MIN_BUDGET} bytes, got {self.memory_budget}")

    def plan(self, values: int, ids: bool, input_bytes: int = 0) -> "BuildPlan":
        """The sizes a build uses under :attr:`memory_budget`.

        Parameters
        ----------
        values : int
            float32 value columns stored per particle (fields, grid_density included).
        ids : bool
            Whether int64 ids are stored.
        input_bytes : int
            Bytes per particle of what the reader returns before conversion (0: as stored).
        """
        workers = max(1, self.workers or min(2, os.cpu_count() or 1))
        record = 12 + 4 * values + (8 if ids else 0)
        in_flight = workers + 1  # buckets being built or waiting to be written
        bucket_points, chunk_points, flush_bytes = self.bucket_points, self.chunk_points, self.flush_bytes
        grid_level = self.grid_level
        per_chunk_point = chunk_cost(record, max(input_bytes, record))
        if self.memory_budget is not None:
            budget = self.memory_budget
            # the counting grid (alive through steps 1 and 2) takes at most a quarter of the budget
            while grid_level > 1 and GRID_CELL_BYTES * 8**grid_level > budget // 4:
                grid_level -= 1
            avail = budget - GRID_CELL_BYTES * 8**grid_level
            # step 3: each bucket in flight costs bucket_cost(record) bytes a particle at its peak
            bucket_points = min(bucket_points, max(self.node_points, avail // in_flight // bucket_cost(record)))
            # step 2: a quarter buffers bucket records; the rest holds CHUNKS_IN_FLIGHT input chunks
            flush_bytes = min(flush_bytes, avail // 4)
            chunk_points = min(chunk_points, max(1024, (avail - flush_bytes) // (CHUNKS_IN_FLIGHT * per_chunk_point)))
        step2 = flush_bytes + CHUNKS_IN_FLIGHT * chunk_points * per_chunk_point
        step3 = in_flight * bucket_points * bucket_cost(record)
        estimate = GRID_CELL_BYTES * 8**grid_level + max(step2, step3)
        return BuildPlan(bucket_points, chunk_points, flush_bytes, grid_level, workers, in_flight, record, estimate)


@dataclass(frozen=True)
class BuildPlan:
    """Sizes chosen for one build (:meth:`BuildOptions.plan`).

    Attributes
    ----------
    bucket_points : int
        Most particles of one bucket (loaded whole while its subtree is built).
    chunk_points : int
        Particles read from the input at a time.
    flush_bytes : int
        Bytes of bucket records buffered before they are appended to the bucket files.
    grid_level : int
        Levels of the counting grid (2^level cells per side).
    workers : int
        Threads building buckets.
    buckets_in_flight : int
        Buckets in memory at once (being built, or built and waiting to be written).
    record_bytes : int
        Bytes of one stored particle (position, values, id).
    estimated_bytes : int
        Modelled peak working memory, bytes (the larger of the two streaming steps).
    """

    bucket_points: int
    chunk_points: int
    flush_bytes: int
    grid_level: int
    workers: int
    buckets_in_flight: int
    record_bytes: int
    estimated_bytes: int


#: Smallest memory budget accepted (bytes).
MIN_BUDGET = 16 * 2**20
#: Bytes per cell of the counting grid: counts and one chunk's bincount (int64), bucket lookup (int32), pyramid.
GRID_CELL_BYTES = 22
#: Input chunks alive at once in step 2: one being read, one queued, one being bucketed.
CHUNKS_IN_FLIGHT = 3


def bucket_cost(record: int) -> int:
    """Peak bytes per particle of a bucket being built (measured with tracemalloc, see tests/viewer/test_lod.py).

    While sorting: the bucket as read and sorted (2 records), Morton codes sorted and not (16) and the
    order (8); while building: the sorted bucket, the codes and the leaves' int32 orders (4 + 4).
    """
    return 2 * record + 40


def chunk_cost(record: int, input_bytes: int) -> int:
    """Bytes per particle of one input chunk in step 2: as read, cell indices, order, sorted records."""
    return input_bytes + 2 * record + 12 + 4 + 8 + 8


@dataclass
class BuildResult:
    """What :func:`build_lod` made."""

    path: Path
    particles: int
    points: int
    nodes: int
    depth: int
    buckets: int
    seconds: float
    fields: list[str] = field(default_factory=list)
    plan: "BuildPlan | None" = None

    @property
    def rate(self) -> float:
        """Input particles per second."""
        return self.particles / self.seconds if self.seconds > 0 else float("inf")


# ----------------------------------------------------------------------------------------------- inputs
class _Input:
    """A stream of particle chunks: ``(positions float64 (m, 3), {field: float32 (m,)}, ids int64 or None)``."""

    count: int
    fields: list[str]
    has_ids: bool
    box_size: tuple[float, float, float] = (0.0, 0.0, 0.0)
    time: float = 0.0
    redshift: float | None = None
    length_unit: str = ""
    source: dict[str, Any] = {}
    #: bytes per particle of what the reader returns (before conversion to float32 records)
    input_bytes: int = 0

    def chunks(self, chunk_points: int, with_fields: bool = True) -> Iterator[tuple]:
        raise NotImplementedError


class _ArrayInput(_Input):
    def __init__(self, data):
        self.data = data
        self.count = len(data)
        self.fields = sorted(data.fields)
        self.has_ids = data.ids is not None
        self.box_size = data.box_size
        self.time, self.redshift, self.length_unit = data.time, data.redshift, data.length_unit
        self.source = {"paths": [data.name] if data.name else [], "format": "memory"}

    def chunks(self, chunk_points, with_fields=True):
        d = self.data
        for a in range(0, self.count, chunk_points):
            b = min(self.count, a + chunk_points)
            f = {k: d.fields[k][a:b] for k in self.fields} if with_fields else {}
            yield d.positions[a:b], f, (None if d.ids is None else np.asarray(d.ids[a:b], np.int64))


class _SnapshotInput(_Input):
    def __init__(self, path, part_types, fields, chunk_points):
        from lenghu.io.snapshots import SnapshotQuirkWarning, read_snapshot
        from lenghu.viewer.model.particles import _common_scalar_fields, _length_unit_name

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SnapshotQuirkWarning)
            # chunks of 4 * chunk_points bytes: a slice of chunk_points rows covers whole chunks of every
            # field (12-byte positions: chunk_points / 3 rows a chunk), so nothing is read twice
            snap = read_snapshot(path, chunk_bytes=4 * chunk_points)
        self.snap = snap
        self.types = sorted(snap.particles) if part_types is None else [t for t in part_types if t in snap.particles]
        if not self.types:
            raise ValueError(f"{path}: no particles of types {part_types}")
        sets = [snap.particles[t] for t in self.types]
        self.count = sum(ps.count for ps in sets)
        names = _common_scalar_fields(sets)
        self.derived = []
        if all(ps.velocities is not None for ps in sets):
            self.derived.append("speed")
        if all(ps.fields.get("masses") is not None for ps in sets):
            self.derived.append("mass")
        if len(self.types) > 1:
            self.derived.append("part_type")
        available = names + self.derived
        if fields is not None:
            missing = [f for f in fields if f not in available and f != GRID_DENSITY]
            if missing:
                raise ValueError(f"{path}: no field(s) {missing} (have {available})")
            names = [f for f in names if f in fields]
            self.derived = [f for f in self.derived if f in fields]
        self.stored = names
        self.fields = names + self.derived
        self.has_ids = all(ps.ids is not None for ps in sets)
        self.box_size = snap.box_size
        self.time, self.redshift = snap.time, snap.redshift
        self.length_unit = _length_unit_name(snap.units.length_cm, snap.comoving, snap.hubble_param)
        self.source = {"paths": list(snap.source_paths), "format": snap.source_format}
        ps = sets[0]
        self.input_bytes = 3 * ps.positions.dtype.itemsize + sum(ps.fields[name].data.dtype.itemsize for name in names)
        if "speed" in self.derived:
            self.input_bytes += 3 * ps.velocities.dtype.itemsize
        if "mass" in self.derived:
            self.input_bytes += ps.fields["masses"].data.dtype.itemsize
        if self.has_ids:
            self.input_bytes += 8

    def chunks(self, chunk_points, with_fields=True):
        import dask

        for t in self.types:
            ps = self.snap.particles[t]
            for a in range(0, ps.count, chunk_points):
                b = min(ps.count, a + chunk_points)
                lazy = {"pos": ps.positions[a:b]}
                if with_fields:
                    for name in self.stored:
                        lazy[name] = ps.fields[name].data[a:b]
                    if "speed" in self.derived:
                        lazy["vel"] = ps.velocities[a:b]
                    if "mass" in self.derived:
                        lazy["mass"] = ps.fields["masses"].data[a:b]
                if self.has_ids:
                    lazy["ids"] = ps.ids[a:b]
                (got,) = dask.compute(lazy, scheduler="synchronous")
                f = {}
                if with_fields:
                    for name in self.stored:
                        f[name] = np.asarray(got[name], dtype=np.float32)
                    if "speed" in self.derived:
                        v = np.asarray(got["vel"], dtype=np.float32)
                        f["speed"] = np.sqrt(np.einsum("ij,ij->i", v, v))
                    if "mass" in self.derived:
                        f["mass"] = np.asarray(got["mass"], dtype=np.float32)
                    if "part_type" in self.derived:
                        f["part_type"] = np.full(b - a, t, dtype=np.float32)
                ids = np.asarray(got["ids"]).astype(np.int64, copy=False) if self.has_ids else None
                yield np.asarray(got["pos"], dtype=np.float32), f, ids


def _open_input(source, options: BuildOptions) -> _Input:
    if hasattr(source, "positions") and hasattr(source, "fields"):
        inp = _ArrayInput(source)
        if options.fields is not None:
            inp.fields = [f for f in inp.fields if f in options.fields]
    else:
        inp = _SnapshotInput(Path(source), options.part_types, options.fields, options.chunk_points)
    inp.has_ids = inp.has_ids and options.ids
    return inp


# ----------------------------------------------------------------------------------------------- helpers
def _prefetch(items: Iterator) -> Iterator:
    """Iterate ``items`` with the next one read in a background thread (input I/O overlaps the work)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=1)
    done = object()

    def run():
        try:
            for item in items:
                q.put(item)
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=run, name="lenghu-lod-read", daemon=True)
    thread.start()
    while True:
        item = q.get()
        if item is done:
            break
        if isinstance(item, BaseException):
            raise item
        yield item
    thread.join()


def _part1by2(x: np.ndarray) -> np.ndarray:
    """Spread the low 21 bits of x so that bit b moves to bit 3b."""
    x = x.astype(np.uint64) & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


def morton(q: np.ndarray) -> np.ndarray:
    """Morton codes of integer cell coordinates q (m, 3): x is the high bit of each 3-bit octant digit."""
    return (_part1by2(q[:, 0]) << np.uint64(2)) | (_part1by2(q[:, 1]) << np.uint64(1)) | _part1by2(q[:, 2])


def _morton_codes(pos: np.ndarray, lo: np.ndarray, size: float, n: int, piece: int = 2**20) -> np.ndarray:
    """Morton codes of positions on an n^3 grid, computed ``piece`` rows at a time (bounded temporaries)."""
    codes = np.empty(len(pos), dtype=np.uint64)
    for a in range(0, len(pos), piece):
        codes[a:a + piece] = morton(_cells(pos[a:a + piece], lo, size, n))
    return codes


def _cells(pos: np.ndarray, lo: np.ndarray, size: float, n: int) -> np.ndarray:
    """Integer cell coordinates (m, 3) of positions on an n^3 grid over the cube lo .. lo + size."""
    q = ((pos - np.asarray(lo, dtype=pos.dtype)) * pos.dtype.type(n / size)).astype(np.int32)  # >= 0: floor
    np.clip(q, 0, n - 1, out=q)
    return q


def _allocate(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders), each at most its cap."""
    w = weights.astype(np.float64)
    exact = total * w / w.sum()
    k = np.floor(exact).astype(np.int64)
    rest = total - int(k.sum())
    if rest > 0:
        order = np.argsort(-(exact - k), kind="stable")
        k[order[:rest]] += 1
    return np.minimum(k, caps)


class _Pts:
    """Points as columns: positions (n, 3) float32, values (F, n) float32, ids (n,) int64 or None."""

    __slots__ = ("pos", "val", "ids")

    def __init__(self, pos, val, ids=None):
        self.pos, self.val, self.ids = pos, val, ids

    def __len__(self) -> int:
        return len(self.pos)

    def take(self, idx) -> "_Pts":
        return _Pts(self.pos[idx], self.val[:, idx], None if self.ids is None else self.ids[idx])

    def part(self, a: int, b: int) -> "_Pts":
        return _Pts(self.pos[a:b], self.val[:, a:b], None if self.ids is None else self.ids[a:b])

    @staticmethod
    def concat(parts: list["_Pts"]) -> "_Pts":
        return _Pts(np.concatenate([p.pos for p in parts]), np.concatenate([p.val for p in parts], axis=1),
                    None if parts[0].ids is None else np.concatenate([p.ids for p in parts]))


class _Columns:
    """The column files, appended node by node."""

    def __init__(self, folder: Path, fields: list[str], has_ids: bool):
        self.fields = fields
        self.rows = 0
        self.pos = open(folder / POSITIONS, "wb")
        self.vals = [open(folder / field_file(f), "wb") for f in fields]
        self.ids = open(folder / IDS, "wb") if has_ids else None

    def append(self, pts: _Pts) -> int:
        offset = self.rows
        np.ascontiguousarray(pts.pos).tofile(self.pos)
        for i, handle in enumerate(self.vals):
            np.ascontiguousarray(pts.val[i]).tofile(handle)
        if self.ids is not None:
            np.ascontiguousarray(pts.ids).tofile(self.ids)
        self.rows += len(pts)
        return offset

    def close(self):
        for handle in [self.pos, *self.vals] + ([self.ids] if self.ids is not None else []):
            handle.close()


class _Builder:
    def __init__(self, options: BuildOptions, columns: _Columns, rng: np.random.Generator,
                 density: tuple[int, int, float] | None = None):
        self.opt = options
        self.columns = columns
        self.rng = rng
        self.nodes: list[dict] = []
        self.pending: list[_Pts] = []
        #: (value column, grid level, mean particles per cell) of the derived grid_density field
        self.density = density

    def _new_node(self, level, lo, size, pts: _Pts, oct_start, subtree, children, order=None) -> int:
        """Record a node holding ``pts`` (in the row order ``order`` when given: taken by :meth:`materialize`)."""
        meta = {"level": level, "lo": lo, "size": size, "offset": -1, "count": len(pts), "subtree": subtree,
                "oct_start": oct_start, "children": children}
        if self.columns is None:  # a bucket built in a worker thread: written later by commit()
            self.pending.append((pts, order))
        else:
            meta["offset"] = self.columns.append(pts if order is None else pts.take(order))
        self.nodes.append(meta)
        return len(self.nodes) - 1

    def materialize(self) -> None:
        """Take the deferred leaves' rows now, so that :meth:`commit` (the writing thread) only writes.

        Called in the worker thread once the bucket's Morton codes are freed: the copies then cost no more
        than the sort did.
        """
        self.pending = [(pts if order is None else pts.take(order), None) for pts, order in self.pending]

    def commit(self, sub: "_Builder") -> int:
        """Write the nodes a deferred builder made (in its order); returns the id its node 0 gets here."""
        base = len(self.nodes)
        for (pts, order), meta in zip(sub.pending, sub.nodes):
            meta["offset"] = self.columns.append(pts if order is None else pts.take(order))
            meta["children"] = [c + base if c >= 0 else -1 for c in meta["children"]]
            self.nodes.append(meta)
        sub.pending.clear()
        return base

    def _block_order(self, starts: np.ndarray) -> np.ndarray:
        """A permutation that shuffles rows within each octant block (blocks stay in octant order)."""
        n = int(starts[-1])
        octant = np.repeat(np.arange(8, dtype=np.int8), np.diff(starts))
        perm = self.rng.permutation(n)
        return perm[np.argsort(octant[perm], kind="stable")].astype(np.int32)  # buckets hold < 2^31 points

    def merge(self, level, lo, size, kids: list) -> tuple:
        """An inner node from its children ``(node, points, random order, subtree)`` per octant (None: empty).

        Returns the same tuple for the new node.
        """
        subtree = np.array([0 if k is None else k[3] for k in kids], dtype=np.int64)
        caps = np.array([0 if k is None else len(k[1]) for k in kids], dtype=np.int64)
        total = int(subtree.sum())
        take = _allocate(min(self.opt.node_points, total), subtree, caps)
        parts = [kids[o][1].take(kids[o][2][: take[o]]) for o in range(8) if kids[o] is not None and take[o] > 0]
        pts = _Pts.concat(parts)
        starts = np.concatenate([[0], np.cumsum(take)])
        children = [-1 if k is None else k[0] for k in kids]
        node = self._new_node(level, lo, size, pts, starts, total, children)
        return node, pts, self.rng.permutation(len(pts)), total

    def subtree(self, holder: list, level: int, lo: np.ndarray, size: float) -> tuple:
        """Build the octree of a bucket's points (all inside the cube lo .. lo + size at ``level``).

        ``holder`` is a one-item list with the bucket's ``_Pts``: it is emptied, so that the unsorted
        points are freed as soon as the sorted copy exists (the caller keeps no reference).
        """
        depth = BUCKET_DEPTH
        pts = holder.pop()
        codes = _morton_codes(pts.pos, lo, size, 1 << depth)
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        pts = pts.take(order)
        del order
        if self.density is not None:
            column, dens_level, mean = self.density
            rel = dens_level - level
            if rel >= 0:
                cell = codes >> np.uint64(3 * (depth - min(rel, depth)))
                edges = np.r_[0, np.flatnonzero(np.diff(cell)) + 1, len(cell)]
                runs = np.diff(edges)
                if rel > depth:
                    mean = mean / 8.0 ** (rel - depth)
                pts.val[column] = np.repeat(runs / mean, runs)
            else:
                pts.val[column] = len(pts) / (mean * 8.0 ** (-rel))
        return self._node(pts, codes, np.uint64(0), 0, depth, level, lo, size)

    def _node(self, pts: _Pts, codes, base, d, depth, level, lo, size):
        n = len(pts)
        if d < depth:
            step = np.uint64(8 ** (depth - d - 1))
            bounds = base + step * np.arange(9, dtype=np.uint64)
            starts = np.searchsorted(codes, bounds, side="left").astype(np.int64)
            starts[0], starts[8] = 0, n
        else:
            starts = np.array([0] + [n] * 8, dtype=np.int64)
        if n <= self.opt.node_points or d >= depth:
            # a leaf: rows shuffled within octant blocks; the rows are taken once the whole bucket is made
            # (materialize), and the parent's samples are taken through the same order (no copy meanwhile)
            block = self._block_order(starts)
            node = self._new_node(level, lo, size, pts, starts, n, [-1] * 8, order=block)
            return node, pts, block[self.rng.permutation(n)], n
        half = size / 2.0
        kids = []
        for o in range(8):
            a, b = int(starts[o]), int(starts[o + 1])
            if b == a:
                kids.append(None)
                continue
            kids.append(self._node(pts.part(a, b), codes[a:b], bounds[o], d + 1, depth, level + 1,
                                   lo + half * OCTANT_OFFSETS[o], half))
        return self.merge(level, lo, size, kids)


# ----------------------------------------------------------------------------------------------- build
def build_lod(source, out: str | Path, options: BuildOptions | None = None,
              progress: Callable[[str, float], None] | None = None) -> BuildResult:
    """Build a ``.lod`` store from a snapshot path (any format lenghu reads) or a ParticleData.

    The store appears only whole: it is built in a temporary folder beside
    ``out`` and renamed (an existing ``out`` is replaced).

    Parameters
    ----------
    source : path or ParticleData
    out : path
        The store folder (conventionally ``NAME.lod``).
    options : BuildOptions
    progress : callable, optional
        Called as ``progress(stage, fraction)``.
    """
    start = time.perf_counter()
    opt = options or BuildOptions()
    out = Path(out)
    say = progress or (lambda stage, fraction: None)
    inp = _open_input(source, opt)
    if inp.count == 0:
        raise ValueError(f"{source}: no particles")
    n_fields = len(inp.fields) + int(
        (opt.fields is None or GRID_DENSITY in opt.fields) and GRID_DENSITY not in inp.fields)
    plan = opt.plan(n_fields, inp.has_ids, inp.input_bytes)
    if isinstance(inp, _SnapshotInput) and plan.chunk_points != opt.chunk_points:
        # the reader's chunks follow chunk_points (whole chunks per read): reopen with the planned size
        inp = _open_input(source, replace(opt, chunk_points=plan.chunk_points))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.build-", dir=out.parent))
    try:
        store = work / "store"
        store.mkdir()
        buckets_dir = work / "buckets"
        buckets_dir.mkdir()
        # 1. bounds and counts
        box = np.asarray(inp.box_size, dtype=np.float64)
        if np.all(box > 0):
            lo, hi = np.zeros(3), box.copy()
            for pos, _, _ in inp.chunks(plan.chunk_points, with_fields=False):
                lo = np.minimum(lo, pos.min(axis=0))
                hi = np.maximum(hi, pos.max(axis=0))
                break  # a periodic box holds everything; one chunk checks the units agree
        else:
            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            for pos, _, _ in _prefetch(inp.chunks(plan.chunk_points, with_fields=False)):
                lo = np.minimum(lo, pos.min(axis=0))
                hi = np.maximum(hi, pos.max(axis=0))
        size = float(np.max(hi - lo)) or 1.0
        size *= 1.0 + 1e-6
        g = 1 << plan.grid_level
        counts = np.zeros(g**3, dtype=np.int64)
        for pos, _, _ in _prefetch(inp.chunks(plan.chunk_points, with_fields=False)):
            q = _cells(pos, lo, size, g)
            counts += np.bincount((q[:, 0] * g + q[:, 1]) * g + q[:, 2], minlength=g**3)
        say("count", 1.0)
        counts3 = counts.reshape(g, g, g)
        pyramid = [counts3]
        while pyramid[-1].shape[0] > 1:
            c = pyramid[-1]
            m = c.shape[0] // 2
            pyramid.append(c.reshape(m, 2, m, 2, m, 2).sum(axis=(1, 3, 5)))
        pyramid = pyramid[::-1]  # pyramid[l]: counts at level l
        # 2. buckets
        lookup = np.full((g, g, g), -1, dtype=np.int32)
        buckets: list[tuple[int, tuple[int, int, int]]] = []

        def assign(level, ix, iy, iz):
            c = int(pyramid[level][ix, iy, iz])
            if c == 0:
                return
            if c <= plan.bucket_points or level == plan.grid_level:
                s = 1 << (plan.grid_level - level)
                lookup[ix * s:(ix + 1) * s, iy * s:(iy + 1) * s, iz * s:(iz + 1) * s] = len(buckets)
                buckets.append((level, (ix, iy, iz)))
                return
            for o in range(8):
                dx, dy, dz = (o >> 2) & 1, (o >> 1) & 1, o & 1
                assign(level + 1, 2 * ix + dx, 2 * iy + dy, 2 * iz + dz)

        assign(0, 0, 0, 0)
        flat_lookup = lookup.ravel()
        fields = list(inp.fields)
        add_density = (opt.fields is None or GRID_DENSITY in opt.fields) and GRID_DENSITY not in fields
        if add_density:
            fields.append(GRID_DENSITY)
        n_val = len(fields)
        # grid_density: particles in the particle's cell of a grid with about 8 particles per cell on
        # average over the root cube, divided by that average (1 + overdensity, box-filled input)
        dens_level = int(np.clip(round(math.log2(max(inp.count / 8.0, 1.0) ** (1 / 3))), 1, 12))
        density = (len(fields) - 1, dens_level, inp.count / 8.0**dens_level) if add_density else None
        buffers: dict[int, list[tuple]] = {}
        buffered = 0

        def flush():
            """Append the buffered parts to each bucket's column files (.pos, .val, .ids)."""
            nonlocal buffered
            for b, parts in buffers.items():
                for k, ext in enumerate(("pos", "val", "ids")):
                    if parts[0][k] is None:
                        continue
                    with open(buckets_dir / f"{b}.{ext}", "ab") as handle:
                        for part in parts:
                            part[k].tofile(handle)
            buffers.clear()
            buffered = 0

        done = 0
        for pos, vals, ids in _prefetch(inp.chunks(plan.chunk_points)):
            q = _cells(pos, lo, size, g)
            flat = (q[:, 0] * g + q[:, 1]) * g + q[:, 2]
            bucket = flat_lookup[flat]
            order = np.argsort(bucket, kind="stable")
            bucket = bucket[order]
            spos = np.ascontiguousarray(pos[order], dtype="<f4")
            val = np.zeros((len(pos), n_val), dtype="<f4")  # grid_density, if any, is filled per bucket
            for i, name in enumerate(inp.fields):
                val[:, i] = vals[name]
            sval = val[order]
            sids = np.asarray(ids[order], dtype="<i8") if inp.has_ids else None
            edges = np.flatnonzero(np.diff(bucket)) + 1
            for a, b in zip(np.r_[0, edges], np.r_[edges, len(bucket)]):
                buffers.setdefault(int(bucket[a]), []).append(
                    (spos[a:b], sval[a:b], None if sids is None else sids[a:b]))
            buffered += spos.nbytes + sval.nbytes + (0 if sids is None else sids.nbytes)
            if buffered > plan.flush_bytes:
                flush()
            done += len(pos)
            say("bucket", done / inp.count)
        flush()
        del counts, counts3, pyramid, flat_lookup
        # 3. build depth first
        columns = _Columns(store, fields, inp.has_ids)
        builder = _Builder(opt, columns, np.random.default_rng(opt.seed), density)
        bucket_at = {(level, cell): i for i, (level, cell) in enumerate(buckets)}
        built = [0]

        def build_bucket(b):
            """Build bucket b's subtree in memory (a worker thread; numpy releases the GIL)."""
            level, (ix, iy, iz) = buckets[b]
            cols = []
            for ext, dtype in (("pos", "<f4"), ("val", "<f4"), ("ids", "<i8")):
                path = buckets_dir / f"{b}.{ext}"
                cols.append(np.fromfile(path, dtype=dtype) if path.exists() else None)
                path.unlink(missing_ok=True)
            pos = cols[0].reshape(-1, 3)
            holder = [_Pts(pos, np.ascontiguousarray(cols[1].reshape(len(pos), n_val).T), cols[2])]
            del cols, pos
            sub = _Builder(opt, None, np.random.default_rng([opt.seed, b]), density)
            cell_size = size / (1 << level)
            result = sub.subtree(holder, level, lo + cell_size * np.array([ix, iy, iz], dtype=np.float64), cell_size)
            sub.materialize()
            return sub, result

        # Buckets are met by walk() in the order assign() listed them: build them ahead, a few at a time
        # (at most workers + 1 in memory), and write each when walk() reaches it.
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        workers = plan.workers
        pool = ThreadPoolExecutor(workers, thread_name_prefix="lenghu-lod-build")
        queued: deque = deque()
        next_bucket = [0]

        def fill():
            while next_bucket[0] < len(buckets) and len(queued) < plan.buckets_in_flight:
                queued.append(pool.submit(build_bucket, next_bucket[0]))
                next_bucket[0] += 1

        def walk(level, ix, iy, iz):
            cell_lo = lo + size / (1 << level) * np.array([ix, iy, iz], dtype=np.float64)
            cell_size = size / (1 << level)
            b = bucket_at.get((level, (ix, iy, iz)))
            if b is not None:
                fill()
                sub, (node, pts, perm, count) = queued.popleft().result()
                fill()
                base = builder.commit(sub)
                built[0] += 1
                say("build", built[0] / len(buckets))
                return node + base, pts, perm, count
            if level >= plan.grid_level:
                return None
            kids = []
            for o in range(8):
                dx, dy, dz = (o >> 2) & 1, (o >> 1) & 1, o & 1
                kids.append(walk(level + 1, 2 * ix + dx, 2 * iy + dy, 2 * iz + dz))
            if all(k is None for k in kids):
                return None
            return builder.merge(level, cell_lo, cell_size, kids)

        try:
            root = walk(0, 0, 0, 0)
        finally:
            for future in queued:
                future.cancel()
            pool.shutdown(wait=True)
        columns.close()
        if root is None:
            raise ValueError(f"{source}: no particles inside the bounds")
        table = _breadth_first(builder.nodes, root[0])
        np.save(store / NODES, table)
        meta = _meta(inp, opt, fields, table, lo, size, columns.rows, store)
        (store / META).write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(store, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BuildResult(out, inp.count, int(meta["points"]), len(table), int(table["level"].max()) + 1,
                       len(buckets), time.perf_counter() - start, fields, plan)


def _breadth_first(nodes: list[dict], root: int) -> np.ndarray:
    """The node table in breadth-first order (parents before children, levels contiguous)."""
    order = [root]
    new_id = {root: 0}
    i = 0
    while i < len(order):
        for c in nodes[order[i]]["children"]:
            if c >= 0:
                new_id[c] = len(order)
                order.append(c)
        i += 1
    table = np.zeros(len(order), dtype=NODE_DTYPE)
    table["parent"] = -1
    table["octant"] = -1
    for new, old in enumerate(order):
        n = nodes[old]
        row = table[new]
        row["level"] = n["level"]
        row["lo"] = n["lo"]
        row["size"] = n["size"]
        row["offset"] = n["offset"]
        row["count"] = n["count"]
        row["subtree"] = n["subtree"]
        row["oct_start"] = n["oct_start"]
        children = [new_id[c] if c >= 0 else -1 for c in n["children"]]
        row["children"] = children
        for o, c in enumerate(children):
            if c >= 0:
                table[c]["parent"] = new
                table[c]["octant"] = o
    return table


def _meta(inp: _Input, opt: BuildOptions, fields: list[str], table: np.ndarray, lo, size, rows: int,
          store: Path) -> dict:
    from lenghu import __version__

    root = table[0]
    stats = {}
    for name in fields:
        v = np.fromfile(store / field_file(name), dtype="<f4", count=int(root["count"]),
                        offset=int(root["offset"]) * 4).astype(np.float64)
        v = v[np.isfinite(v)]
        pos = v[v > 0]
        lin = np.percentile(v, [0.5, 99.5]).tolist() if len(v) else [0.0, 1.0]
        log = np.percentile(pos, [0.5, 99.5]).tolist() if len(pos) else [1.0, 10.0]
        stats[name] = {"min": float(v.min()) if len(v) else 0.0, "max": float(v.max()) if len(v) else 1.0,
                       "range": lin, "log_range": log}
    return {
        "format": FORMAT,
        "version": VERSION,
        "particles": int(inp.count),
        "points": int(rows),
        "nodes": int(len(table)),
        "node_points": opt.node_points,
        "bounds": [list(map(float, lo)), list(map(float, lo + size))],
        "box_size": list(map(float, inp.box_size)),
        "time": float(inp.time),
        "redshift": None if inp.redshift is None else float(inp.redshift),
        "length_unit": inp.length_unit,
        "fields": stats,
        "has_ids": bool(inp.has_ids),
        "source": inp.source,
        "seed": opt.seed,
        "created_by": f"lenghu {__version__}",
    }
