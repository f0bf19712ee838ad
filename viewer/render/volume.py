"""Volumes: VisPy's ray-casting Volume visual, fed from a VolumeLayer.

A grid larger than GL_MAX_3D_TEXTURE_SIZE (or ``max_size``, 512 by default:
a 512^3 float32 texture is already 0.5 GB) is block-averaged by the
smallest integer factor that fits; the world box stays the same.
"""

from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.color import Colormap
from vispy.visuals.transforms import STTransform

from lenghu.viewer.model.colors import colormap_lut

METHODS = {"mip": "mip", "translucent": "translucent", "iso": "iso", "additive": "additive", "average": "average"}


def _cmap(layer) -> Colormap:
    lut = colormap_lut(layer.colormap, 256)
    if layer.method in ("translucent", "additive"):
        ramp = np.linspace(0, 1, len(lut))
        lut[:, 3] = np.clip(ramp * layer.attenuation, 0, 1)
    return Colormap(lut)


class VolumeVisual:
    """Draws one :class:`~lenghu.viewer.model.VolumeLayer`."""

    def __init__(self, layer, renderer, max_size: int = 512):
        self.layer = layer
        self.renderer = renderer
        limit = min(max_size, renderer.limits["max_3d_texture"])
        grid, self.factor = layer.grid_for(limit)
        self.shape = grid.shape
        lo, hi = self.clim()
        self.visual = scene.visuals.Volume(
            grid, parent=renderer.front, method=METHODS[layer.method], clim=(lo, hi), cmap=_cmap(layer),
            threshold=layer.iso_threshold(), texture_format="auto", gamma=layer.gamma)
        (x0, y0, z0), (x1, y1, z1) = layer.extent
        nz, ny, nx = self.shape
        step = np.array([(x1 - x0) / nx, (y1 - y0) / ny, (z1 - z0) / nz])
        self.visual.transform = STTransform(scale=step, translate=np.array([x0, y0, z0]) + step / 2)
        self.visual.opacity = layer.opacity
        layer.events.changed.connect(self._on_change)

    def clim(self):
        lo, hi = self.layer.color_range()
        return (lo, hi if hi > lo else lo + 1)

    def _on_change(self, event):
        v, layer = self.visual, self.layer
        if event.name == "method":
            v.method = METHODS[layer.method]
            v.cmap = _cmap(layer)
        elif event.name in ("colormap", "attenuation"):
            v.cmap = _cmap(layer)
        elif event.name == "clim":
            v.clim = self.clim()
        elif event.name == "threshold":
            v.threshold = layer.iso_threshold()
        elif event.name == "gamma":
            v.gamma = layer.gamma
        elif event.name == "visible":
            v.visible = layer.visible
        elif event.name == "opacity":
            v.opacity = layer.opacity
        self.renderer.request_update()

    def prepare(self, frame) -> None:
        pass

    def close(self) -> None:
        self.layer.events.changed.disconnect(self._on_change)  # else the layer keeps this visual alive
        self.visual.parent = None
