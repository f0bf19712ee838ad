"""Per-frame choice of octree nodes under a point budget (vectorised numpy, a few ms for 10^4 nodes).

A *cut* is a set of active nodes containing the root and closed under
parents. An active node n draws its octant block o unless child o is
active (then the child draws that region) or is outside the view frustum;
the block stands for the child's whole subtree, so its points get weight
``subtree[child] / block size``.

Each non-root node c gets a priority: the on-screen spacing (pixels) of the
points its parent holds in c's octant, ``sqrt(projected area of c / block
size)``; infinite when the camera is inside it. Its effective priority is
the minimum along its path to the root, so sorting by it (parents first on
ties) gives an order in which every prefix is a cut. Activating c costs
``points c draws - the parent's block it replaces``; the selection takes
the longest prefix whose running cost stays within the budget, and a final
guard trims blocks (a prefix of a block is still a random sample) so that
the points drawn never exceed the budget, whatever is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lenghu.viewer.lod.store import Octree


@dataclass
class Selection:
    """What to draw this frame.

    Attributes
    ----------
    node, first, count : (k,) int64
        Draw ``count`` points of node ``node`` starting at row ``first`` of that node.
    weight : (k,) float64
        Particles each drawn point stands for.
    spacing : (k,) float64
        On-screen spacing of the drawn points in pixels (NaN for full-detail leaf blocks);
        the renderer grows splats of sampled blocks up to a few times this.
    wanted : (m,) int64
        The active nodes of the ideal cut, most important first (what the loader should fetch).
    points : int
        Points drawn (sum of ``count``), never more than the budget.
    budget : int
    """

    node: np.ndarray
    first: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    wanted: np.ndarray
    spacing: np.ndarray
    points: int
    budget: int

    def __len__(self) -> int:
        return len(self.node)


def frustum_planes(mvp: np.ndarray) -> np.ndarray:
    """The 6 clip planes (a, b, c, d) of a projection @ view matrix, normalised, pointing inwards."""
    m = np.asarray(mvp, dtype=np.float64)
    planes = np.array([m[3] + m[0], m[3] - m[0], m[3] + m[1], m[3] - m[1], m[3] + m[2], m[3] - m[2]])
    norms = np.linalg.norm(planes[:, :3], axis=1)
    return planes / np.where(norms > 0, norms, 1.0)[:, None]


def visible_nodes(tree: Octree, mvp: np.ndarray) -> np.ndarray:
    """Nodes whose bounding sphere meets the view frustum (and whose parents do)."""
    planes = frustum_planes(mvp)
    dist = tree.center @ planes[:, :3].T + planes[:, 3]
    vis = np.all(dist >= -tree.radius[:, None], axis=1)
    for s in tree.level_slices[1:]:
        vis[s] &= vis[tree.parent[s]]
    return vis


def priorities(tree: Octree, eye: np.ndarray, focal_px: float, perspective: bool) -> np.ndarray:
    """On-screen spacing in pixels of each node's parent block (inf for the root and nodes around the eye)."""
    r = tree.radius
    if perspective:
        d2 = np.sum((tree.center - eye) ** 2, axis=1)
        inside = d2 <= r * r * 1.0001
        rho = focal_px * r / np.sqrt(np.maximum(d2 - r * r, 1e-300))
    else:
        inside = np.zeros(tree.n, dtype=bool)
        rho = focal_px * r
    s = math.sqrt(math.pi) * rho / np.sqrt(np.maximum(tree.parent_octant_count, 1))
    s[inside] = np.inf
    s[0] = np.inf
    return s


def select_nodes(tree: Octree, view: np.ndarray, projection: np.ndarray, viewport: tuple[int, int], budget: int,
                 eye: np.ndarray, focal_px: float, perspective: bool = True,
                 loaded: np.ndarray | None = None) -> Selection:
    """The nodes and blocks to draw under ``budget`` points.

    Parameters
    ----------
    tree : Octree
    view, projection : (4, 4) arrays
        The camera's matrices (OpenGL conventions).
    viewport : (width, height) pixels
    budget : int
        Most points drawn.
    eye : (3,) camera position; focal_px: pixels per unit at unit distance (or per unit, orthographic).
    loaded : (n,) bool, optional
        Nodes whose data are in memory now: the cut is shrunk to those (the root is assumed loaded).
    """
    budget = int(budget)
    vis = visible_nodes(tree, projection @ view)
    n = tree.n
    empty = np.empty(0, dtype=np.int64)
    if not vis[0] or budget <= 0:
        return Selection(empty, empty, empty, np.empty(0), empty, np.empty(0), 0, budget)
    s = priorities(tree, np.asarray(eye, float), focal_px, perspective)
    s[~vis] = -np.inf
    e = s.copy()
    for sl in tree.level_slices[1:]:
        np.minimum(e[sl], e[tree.parent[sl]], out=e[sl])
    ch = tree.children
    has = ch >= 0
    ch_vis = np.where(has, vis[np.maximum(ch, 0)], True)
    culled_points = np.where(has & ~ch_vis, tree.oct_count, 0).sum(axis=1)
    own = tree.count - culled_points
    delta = own - tree.parent_octant_count
    cand = np.flatnonzero(vis)
    cand = cand[cand > 0]
    order = cand[np.lexsort((tree.level[cand], -e[cand]))]
    cost0 = int(own[0])
    running = cost0 + np.cumsum(delta[order])
    over = np.flatnonzero(running > budget)
    m = int(over[0]) if len(over) else len(order)
    active = np.zeros(n, dtype=bool)
    active[0] = True
    active[order[:m]] = True
    wanted = np.r_[0, order[:m]].astype(np.int64)
    if loaded is not None:
        eff = active & np.asarray(loaded, dtype=bool)
        eff[0] = True
        for sl in tree.level_slices[1:]:
            eff[sl] &= eff[tree.parent[sl]]
        active = eff
    return _draws(tree, active, vis, wanted, budget, s)


def _draws(tree: Octree, active: np.ndarray, vis: np.ndarray, wanted: np.ndarray, budget: int,
           spacing_of: np.ndarray) -> Selection:
    nodes = np.flatnonzero(active)
    ch = tree.children[nodes]
    has = ch >= 0
    safe = np.maximum(ch, 0)
    child_active = has & active[safe]
    child_vis = ~has | vis[safe]
    oc = tree.oct_count[nodes]
    draw = ~child_active & child_vis & (oc > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(has, tree.child_subtree[nodes] / np.maximum(oc, 1), 1.0)
    spacing = np.where(has, spacing_of[safe], np.nan)
    rows, octs = np.nonzero(draw)
    node = nodes[rows]
    first = tree.oct_start[node, octs]
    count = oc[rows, octs].astype(np.int64)
    w = weight[rows, octs]
    sp = spacing[rows, octs]
    # merge neighbouring blocks of a node that have the same weight (a leaf: one draw)
    if len(node) > 1:
        joins = (node[1:] == node[:-1]) & (first[1:] == first[:-1] + count[:-1]) & np.isclose(w[1:], w[:-1])
        if joins.any():
            starts = np.r_[True, ~joins]
            group = np.cumsum(starts) - 1
            count = np.bincount(group, weights=count).astype(np.int64)
            node, first, w, sp = node[starts], first[starts], w[starts], sp[starts]
    total = int(count.sum())
    if total > budget:  # only when too little is loaded or the budget is below the root's points
        scale = budget / total
        new = np.floor(count * scale).astype(np.int64)
        keep = new > 0
        w = np.where(keep, w * count / np.maximum(new, 1), w)
        sp = sp * np.sqrt(count / np.maximum(new, 1))
        node, first, count, w, sp = node[keep], first[keep], new[keep], w[keep], sp[keep]
        total = int(count.sum())
    return Selection(node.astype(np.int64), first.astype(np.int64), count, w.astype(np.float64), wanted,
                     sp.astype(np.float64), total, budget)
