"""Level of detail for large particle sets: an out-of-core octree store, per-frame selection, a loader.

- :func:`build_lod` writes a ``.lod`` store (layout in :mod:`.format`) from
  any snapshot, in memory bounded whatever the number of particles;
- :class:`LodStore` opens one; :func:`select_nodes` picks what to draw
  under a point budget; :class:`NodeLoader` reads nodes in the background.

No GL here (the renderer is :mod:`lenghu.viewer.render`).
"""

from lenghu.viewer.lod.build import BuildOptions, BuildResult, build_lod
from lenghu.viewer.lod.format import is_lod_store
from lenghu.viewer.lod.loader import NodeLoader
from lenghu.viewer.lod.select import Selection, select_nodes, visible_nodes
from lenghu.viewer.lod.store import LodError, LodStore, Octree

__all__ = ["BuildOptions", "BuildResult", "build_lod", "is_lod_store", "NodeLoader", "Selection", "select_nodes",
           "visible_nodes", "LodError", "LodStore", "Octree"]
