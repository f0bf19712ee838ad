"""The on-disk layout of a level-of-detail store (``NAME.lod/``), version 1.

A store is a folder::

    NAME.lod/
      meta.json           what the store holds (below)
      nodes.npy           one row per octree node (numpy .npy, structured dtype NODE_DTYPE)
      positions.f32       float32 little-endian, 3 per point (x, y, z), every node's points back to back
      field.NAME.f32      float32 little-endian, 1 per point, same order (one file per field)
      ids.i64             int64 little-endian particle ids, same order (when the input has ids)

``meta.json`` keys: ``format`` ("lenghu-lod"), ``version`` (1), ``particles``
(input particles), ``points`` (rows in the column files: particles plus the
copies held by inner nodes), ``node_points`` (target points per node),
``bounds`` ([lo, hi] of the root cube), ``box_size``, ``time``,
``redshift``, ``length_unit``, ``fields`` ({name: {"min", "max", "range",
"log_range"}}: ``range`` and ``log_range`` are 0.5-99.5 percentiles of the
root's sample, the latter of positive values), ``has_ids``, ``source``
(input paths and format), ``created_by``.

Nodes (``nodes.npy``) are in breadth-first order: node 0 is the root, a
parent comes before its children and each level is contiguous. Node n covers
the cube ``lo .. lo + size``; its child in octant o (o = 4 dx + 2 dy + dz,
d = 0 or 1 the lower or upper half along each axis) covers
``lo + size/2 * (dx, dy, dz)``. Columns of NODE_DTYPE:

==============  ===========  ==========================================================
name            type         meaning
==============  ===========  ==========================================================
level           int32        depth (root 0)
parent          int32        parent node (-1 for the root)
octant          int32        octant of this node in its parent (-1 for the root)
children        int32[8]     child node in each octant, -1 where none
lo              float64[3]   lower corner of the cube
size            float64      side of the cube
offset          int64        first row of this node's points in the column files
count           int64        points stored in this node
subtree         int64        input particles in the node's cube
oct_start       int64[9]     the node's points of octant o are rows offset + oct_start[o]
                             .. offset + oct_start[o + 1] (sorted by octant)
==============  ===========  ==========================================================

The sampling rule that makes any cut through the tree look like the whole
data at a lower density: a leaf stores every particle of its cube; an inner
node stores ``min(node_points, subtree)`` particles, a uniform random sample
of its cube taken from its children's samples in proportion to their
``subtree`` counts (largest remainders), so its octant-o block is a uniform
random sample of child o's cube at rate count/subtree. Within every octant
block the points are in random order, so any prefix of a block is again a
uniform random sample. A renderer that draws octant block o of node n in
place of child o draws each point with weight ``subtree[child] / block
size`` (1 for a leaf), which makes the expected picture the same as the
full data's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FORMAT = "lenghu-lod"
VERSION = 1
META = "meta.json"
NODES = "nodes.npy"
POSITIONS = "positions.f32"
IDS = "ids.i64"
SUFFIX = ".lod"

NODE_DTYPE = np.dtype([
    ("level", "<i4"),
    ("parent", "<i4"),
    ("octant", "<i4"),
    ("children", "<i4", (8,)),
    ("lo", "<f8", (3,)),
    ("size", "<f8"),
    ("offset", "<i8"),
    ("count", "<i8"),
    ("subtree", "<i8"),
    ("oct_start", "<i8", (9,)),
])

#: Octant o -> (dx, dy, dz).
OCTANT_OFFSETS = np.array([[(o >> 2) & 1, (o >> 1) & 1, o & 1] for o in range(8)], dtype=np.float64)


def field_file(name: str) -> str:
    """Column file name of field ``name`` (slashes, as in ``SmoothedElementAbundance/Carbon``, become ``~``)."""
    return f"field.{name.replace('/', '~')}.f32"


def folder_has_format(path: str | Path, meta_name: str, format_name: str) -> bool:
    """True for a folder whose JSON file ``meta_name`` declares ``"format": format_name``
    (how lenghu's folder formats, .lod and .pyr, are recognised)."""
    meta = Path(path) / meta_name
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("format") == format_name
    except (OSError, ValueError):
        return False


def is_lod_store(path: str | Path) -> bool:
    """True for a folder with a lenghu-lod ``meta.json``."""
    return folder_has_format(path, META, FORMAT)
