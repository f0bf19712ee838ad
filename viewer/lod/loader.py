"""A background loader with an LRU cache: frames draw what is in memory and never wait for the disk.

The renderer calls :meth:`NodeLoader.request` each frame with the nodes it
would like (most important first) and :meth:`NodeLoader.loaded_mask` /
:meth:`NodeLoader.get` to draw what is there; a worker thread reads the
missing nodes in priority order, and evicts the least recently used nodes
beyond ``capacity_points`` (never the root, never a node of the current
request). ``on_loaded`` is called from the worker thread after each node
(a GUI asks for a redraw there).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Callable, Iterable

import numpy as np

log = logging.getLogger(__name__)


class NodeLoader:
    """Loads nodes of a store (``store.read_node(node, field)``) in a background thread.

    Parameters
    ----------
    store : LodStore (or anything with ``tree`` and ``read_node``)
    field : str or None
        The value column loaded with the positions.
    capacity_points : int
        Points kept in memory (least recently used nodes beyond it are dropped).
    on_loaded : callable, optional
        ``on_loaded(node)`` from the worker thread.
    weight : callable, optional
        What one loaded item counts against ``capacity_points`` (default ``len``: points of a node;
        image tiles pass ``lambda tile: 1`` to count tiles).
    """

    def __init__(self, store, field: str | None = None, capacity_points: int = 8_000_000,
                 on_loaded: Callable[[int], None] | None = None, weight: Callable[[np.ndarray], int] = len):
        self.store = store
        self.weight = weight
        self.field = field
        self.capacity = int(capacity_points)
        self.on_loaded = on_loaded
        n = store.tree.n
        self._mask = np.zeros(n, dtype=bool)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._points = 0
        self._pending: list[int] = []
        self._wanted: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._busy = False
        self._closed = False
        self.loads = 0
        self.errors: list[str] = []
        self._insert(0, store.read_node(0, field))  # the root: the first frame always has something
        self._thread = threading.Thread(target=self._run, name="lenghu-lod-loader", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- called by the renderer (never blocks on I/O)
    def request(self, nodes: Iterable[int]) -> None:
        """Replace the queue by ``nodes`` (most important first); those already in memory are skipped."""
        nodes = [int(x) for x in nodes]
        with self._lock:
            self._wanted = set(nodes)
            self._pending = [x for x in nodes if not self._mask[x]]
            for x in nodes:  # keep what is wanted fresh in the LRU order
                if x in self._cache:
                    self._cache.move_to_end(x)
            self._evict()
            if self._pending:
                self._wake.notify()

    def get(self, node: int) -> np.ndarray | None:
        """The node's (count, 4) float32 data, or None when it is not in memory."""
        with self._lock:
            data = self._cache.get(int(node))
            if data is not None:
                self._cache.move_to_end(int(node))
            return data

    def loaded_mask(self) -> np.ndarray:
        """A copy of the per-node 'in memory' flags."""
        with self._lock:
            return self._mask.copy()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending) + (1 if self._busy else 0)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty (headless rendering of complete frames); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5)

    # ---------------------------------------------------------------- worker
    def _insert(self, node: int, data: np.ndarray) -> None:
        self._cache[node] = data
        self._cache.move_to_end(node)
        self._mask[node] = True
        self._points += self.weight(data)
        self._evict(keep=node)

    def _evict(self, keep: int = -1) -> None:
        """Drop least recently used nodes beyond the capacity (never the root or a wanted node)."""
        if self._points <= self.capacity:
            return
        for old in list(self._cache):
            if self._points <= self.capacity:
                break
            if old == 0 or old in self._wanted or old == keep:
                continue
            self._points -= self.weight(self._cache.pop(old))
            self._mask[old] = False

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._busy = False
                    self._idle.notify_all()
                    self._wake.wait()
                if self._closed:
                    self._busy = False
                    self._idle.notify_all()
                    return
                node = self._pending.pop(0)
                if self._mask[node]:
                    continue
                self._busy = True
            try:
                data = self.store.read_node(node, self.field)
            except Exception as exc:  # a broken node must not kill the viewer: log it, draw its parent instead
                log.error("cannot load node %d of %s: %s", node, getattr(self.store, "path", self.store), exc)
                with self._lock:
                    self.errors.append(f"node {node}: {exc}")
                    self._busy = False
                continue
            with self._lock:
                self._insert(node, data)
                self.loads += 1
                self._busy = False
                if not self._pending:
                    self._idle.notify_all()
            if self.on_loaded is not None:
                self.on_loaded(node)
