"""Tiled images: an out-of-core image pyramid, per-frame tile selection (no GL).

- :func:`build_pyramid` writes a ``.pyr`` pyramid (layout in :mod:`.format`)
  from a FITS image (or any 2-D array, memory-mapped or not) in memory
  bounded by one band of rows; or from a whole exposure (a raw MEF or the
  calibrated products of its CCDs) placed on one canvas (:mod:`.canvas`);
- :class:`TileStore` opens one; :func:`select_tiles` picks the level and
  tiles a frame draws. Tiles are read in the background by
  :class:`lenghu.viewer.lod.NodeLoader` (the same LRU loader as the octree's
  nodes): index 0 is the coarsest level's single tile, always in memory.

The renderer is :class:`lenghu.viewer.render.tiles.TiledImageVisual`.
"""

from lenghu.viewer.tiles.build import PyramidError, PyramidOptions, PyramidResult, build_pyramid
from lenghu.viewer.tiles.canvas import CanvasSource, MissingDetectorWarning, products_source, raw_exposure_source
from lenghu.viewer.tiles.format import is_pyramid
from lenghu.viewer.tiles.select import TileSelection, pixels_per_unit, select_tiles
from lenghu.viewer.tiles.store import Level, PyramidReadError, TileStore

__all__ = ["CanvasSource", "MissingDetectorWarning", "products_source", "raw_exposure_source", "PyramidError", "PyramidOptions", "PyramidResult", "build_pyramid", "is_pyramid", "TileSelection",
           "pixels_per_unit", "select_tiles", "Level", "PyramidReadError", "TileStore"]
