"""Tiled images: a pool of VisPy Image visuals showing the tiles of a pyramid that a frame wants.

Each frame (:meth:`TiledImageVisual.prepare`): :func:`~lenghu.viewer.tiles.select_tiles`
picks the level whose pixels match the screen's and its tiles in view; the
:class:`~lenghu.viewer.lod.NodeLoader` is asked for them (coarse fallbacks
first) and reads them in a background thread into its LRU cache. A frame
draws only what is in memory: a tile not loaded yet is drawn from its nearest
loaded ancestor (the coarsest tile is loaded before the first frame), and at
most ``max_uploads`` new tiles are sent to the GPU per interactive frame (the
others wait a frame behind their ancestors). Headless renderers
(``wait_for_data``) wait for every tile and upload them all. The stretch
limits are the layer's (one pair from the whole image's subsample), so tiles
match at their seams.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
from vispy import scene
from vispy.color import Colormap
from vispy.visuals.transforms import STTransform

from lenghu.viewer.lod.loader import NodeLoader
from lenghu.viewer.model.colors import colormap_lut
from lenghu.viewer.tiles.select import select_tiles


class TiledImageVisual:
    """Draws one :class:`~lenghu.viewer.model.TiledImageLayer`.

    Parameters
    ----------
    layer : TiledImageLayer
    renderer : SceneRenderer
    max_uploads : int
        New tiles sent to the GPU per interactive frame (keeps frames short while panning).
    """

    def __init__(self, layer, renderer, max_uploads: int = 8):
        self.layer = layer
        self.renderer = renderer
        self.store = layer.store
        self.max_uploads = int(max_uploads)
        self.node = scene.Node(parent=renderer.back, name="tiles")
        self._cmap = Colormap(colormap_lut(layer.colormap))
        self._shown: OrderedDict[int, object] = OrderedDict()  # tile index -> Image visual holding it (LRU)
        self._free: list = []
        self.pool_size = layer.max_tiles + 4 * len(self.store.levels) + 16
        self.uploads = 0
        self.last_selection = None
        self.last_drawn: list[int] = []
        self.last_fallbacks = 0
        self.loader = NodeLoader(self.store, None, layer.cache_tiles, weight=lambda tile: 1,
                                 on_loaded=lambda i: renderer.request_update(from_thread=True))
        layer.events.changed.connect(self._on_change)

    # ------------------------------------------------------------------ model events
    def _on_change(self, event):
        if event.name in ("stretch", "interval", "percentile", "clim"):
            self._free.extend(self._shown.values())  # re-stretch: every tile is uploaded again
            self._shown.clear()
        elif event.name == "colormap":
            self._cmap = Colormap(colormap_lut(self.layer.colormap))
            for visual in list(self._shown.values()) + self._free:
                visual.cmap = self._cmap
        elif event.name == "visible":
            self.node.visible = self.layer.visible
        elif event.name == "opacity":
            for visual in list(self._shown.values()) + self._free:
                visual.opacity = self.layer.opacity
        self.renderer.request_update()

    # ------------------------------------------------------------------ per frame
    def prepare(self, frame) -> None:
        if not self.layer.visible:
            return
        store = self.store
        wait = self.renderer.wait_for_data
        sel = select_tiles(store, frame.view, frame.projection, frame.size, self.layer.max_tiles)
        self.last_selection = sel
        self.loader.request(sel.wanted)
        if wait:
            self.loader.wait(timeout=300)
        loaded = self.loader.loaded_mask()
        want: set[int] = set()
        fallbacks = 0
        for i in sel.tiles:
            j = i
            while j > 0 and not loaded[j]:
                j = store.parent(j)
            fallbacks += j != i
            want.add(j)
        budget = None if wait else self.max_uploads
        new = 0
        if 0 not in self._shown:  # the coarsest tile (always in the loader's cache): the last fallback
            self._upload(0, self.loader.get(0), want)
            new += 1
        draw: list[int] = []
        for j in sorted(want, key=lambda x: -store.locate(x)[0]):  # coarse first: finer tiles draw over them
            k = j
            while k not in self._shown:
                if budget is None or new < budget:
                    tile = self.loader.get(k)
                    if tile is not None:
                        self._upload(k, tile, set(draw) | want)
                        new += 1
                        break
                k = store.parent(k)
                if k < 0:
                    break
            if k >= 0 and k not in draw:
                fallbacks += k != j
                draw.append(k)
        for k in draw:
            self._shown.move_to_end(k)
        for k, visual in self._shown.items():
            visual.visible = k in draw
        self.uploads += new
        self.last_drawn = draw
        self.last_fallbacks = fallbacks
        if new and not wait and any(k not in self._shown for k in want):
            self.renderer.request_update()  # more tiles to upload: draw again soon

    def _upload(self, index: int, tile: np.ndarray, keep: set[int]) -> None:
        level, ty, tx = self.store.locate(index)
        lv = self.store.levels[level]
        t = self.store.tile
        rows = min(t, lv.shape[0] - ty * t)  # crop the NaN padding past the image edge
        cols = min(t, lv.shape[1] - tx * t)
        data = self.layer.display_tile(tile[:rows, :cols])
        visual = self._take_visual(keep)
        visual.set_data(data)
        x0, y0, f = self.store.tile_rect(level, ty, tx)
        visual.transform.scale = (f, f, 1.0)
        visual.transform.translate = (x0, y0, 0.0)
        visual.order = self.store.top - level  # coarser levels first
        self._shown[index] = visual

    def _take_visual(self, keep: set[int]):
        if self._free:
            return self._free.pop()
        if len(self._shown) < self.pool_size:
            visual = scene.visuals.Image(np.zeros((1, 1), np.float32), parent=self.node, clim=(0.0, 1.0),
                                         cmap=self._cmap, interpolation="nearest", texture_format="auto")
            visual.transform = STTransform()
            visual.opacity = self.layer.opacity
            return visual
        for k in self._shown:  # least recently drawn first
            if k not in keep:
                return self._shown.pop(k)
        return self._shown.popitem(last=False)[1]

    @property
    def visuals(self) -> int:
        """Image visuals made (the pool; bounded by ``pool_size``)."""
        return len(self._shown) + len(self._free)

    def close(self) -> None:
        self.layer.events.changed.disconnect(self._on_change)  # else the layer keeps this visual alive
        self.loader.close()
        self.node.parent = None
