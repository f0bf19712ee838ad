"""Read a ``.lod`` store: its node table as arrays (:class:`Octree`) and node data on demand."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np

from lenghu.viewer.lod.format import FORMAT, IDS, META, NODES, OCTANT_OFFSETS, POSITIONS, VERSION, field_file


class LodError(ValueError):
    """A folder is not a readable lenghu-lod store."""


class Octree:
    """The node table as flat arrays, plus what selection needs precomputed.

    Attributes
    ----------
    n : int
    center : (n, 3) float64
    radius : (n,) float64
        Radius of the sphere around each node's cube.
    parent, octant, level : (n,) int
    children : (n, 8) int (-1: none)
    count, subtree : (n,) int64
    oct_start : (n, 9) int64; oct_count : (n, 8) int64
    parent_octant_count : (n,) int64
        Points the parent holds in this node's octant (0 for the root).
    level_slices : list of slice
        Rows of each level (breadth-first order makes them contiguous).
    """

    def __init__(self, table: np.ndarray):
        self.table = table
        self.n = len(table)
        self.size = table["size"].astype(np.float64)
        self.center = table["lo"] + self.size[:, None] / 2
        self.radius = self.size * (np.sqrt(3.0) / 2)
        self.parent = table["parent"].astype(np.int64)
        self.octant = table["octant"].astype(np.int64)
        self.level = table["level"].astype(np.int64)
        self.children = table["children"].astype(np.int64)
        self.count = table["count"].astype(np.int64)
        self.subtree = table["subtree"].astype(np.int64)
        self.offset = table["offset"].astype(np.int64)
        self.oct_start = table["oct_start"].astype(np.int64)
        self.oct_count = np.diff(self.oct_start, axis=1)
        self.parent_octant_count = np.zeros(self.n, dtype=np.int64)
        nonroot = self.parent >= 0
        self.parent_octant_count[nonroot] = self.oct_count[self.parent[nonroot], self.octant[nonroot]]
        self.child_subtree = np.where(self.children >= 0, self.subtree[np.maximum(self.children, 0)], 0)
        levels = self.level
        if np.any(np.diff(levels) < 0) or (self.n and self.parent[0] != -1):
            raise LodError("node table is not in breadth-first order")
        edges = np.flatnonzero(np.diff(levels)) + 1
        self.level_slices = [slice(int(a), int(b)) for a, b in zip(np.r_[0, edges], np.r_[edges, self.n])]

    @property
    def depth(self) -> int:
        return len(self.level_slices)

    def child_lo(self, node: int, octant: int) -> np.ndarray:
        return self.table["lo"][node] + self.size[node] / 2 * OCTANT_OFFSETS[octant]


class LodStore:
    """A level-of-detail store opened for reading (thread-safe reads through memory maps).

    >>> store = LodStore("web.lod")             # doctest: +SKIP
    >>> store.read_node(0, "grid_density")      # (count, 4) float32: x, y, z, value   # doctest: +SKIP
    """

    is_lod = True

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise LodError(f"{self.path}: not a lenghu-lod store (no {META})")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise LodError(f"{self.path}: {META} is not a {FORMAT} description")
        if int(self.meta.get("version", 0)) > VERSION:
            raise LodError(f"{self.path}: format version {self.meta['version']} is newer than this lenghu ({VERSION})")
        self.tree = Octree(np.load(self.path / NODES))
        points = int(self.meta["points"])
        self._positions = np.memmap(self.path / POSITIONS, dtype="<f4", mode="r", shape=(points, 3))
        self._fields: dict[str, np.memmap] = {}
        self.name = self.path.name

    def __repr__(self) -> str:
        return f"LodStore({str(self.path)!r}, particles={self.count}, nodes={self.tree.n})"

    @property
    def count(self) -> int:
        """Input particles."""
        return int(self.meta["particles"])

    @property
    def node_points(self) -> int:
        return int(self.meta["node_points"])

    @property
    def length_unit(self) -> str:
        return self.meta.get("length_unit", "")

    @property
    def box_size(self) -> tuple[float, float, float]:
        return tuple(self.meta.get("box_size", (0, 0, 0)))

    @property
    def time(self) -> float:
        return float(self.meta.get("time", 0.0))

    @property
    def redshift(self):
        return self.meta.get("redshift")

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        box = np.asarray(self.box_size, dtype=float)
        if np.all(box > 0):
            return np.zeros(3), box
        lo, hi = self.meta["bounds"]
        return np.asarray(lo, float), np.asarray(hi, float)

    def field_names(self) -> list[str]:
        return sorted(self.meta["fields"])

    def field_range(self, name: str, log: bool = False) -> tuple[float, float]:
        stats = self.meta["fields"][name]
        lo, hi = stats["log_range" if log else "range"]
        if not hi > lo:
            hi = lo * 10 if log else lo + 1
        return float(lo), float(hi)

    def _field(self, name: str) -> np.memmap:
        if name not in self._fields:
            if name not in self.meta["fields"]:
                raise KeyError(f"{self.path}: no field {name!r} (have {', '.join(self.field_names())})")
            self._fields[name] = np.memmap(self.path / field_file(name), dtype="<f4", mode="r")
        return self._fields[name]

    def read_node(self, node: int, field: str | None = None) -> np.ndarray:
        """(count, 4) float32 rows x, y, z, value (value 0 when ``field`` is None): what the GPU gets."""
        a = int(self.tree.offset[node])
        b = a + int(self.tree.count[node])
        out = np.empty((b - a, 4), dtype=np.float32)
        out[:, :3] = self._positions[a:b]
        out[:, 3] = self._field(field)[a:b] if field is not None else 0.0
        return out

    def read_ids(self, node: int) -> np.ndarray | None:
        if not self.meta.get("has_ids"):
            return None
        a = int(self.tree.offset[node])
        b = a + int(self.tree.count[node])
        return np.fromfile(self.path / IDS, dtype="<i8", count=b - a, offset=a * 8)

    @cached_property
    def nbytes_per_point(self) -> int:
        return 16
