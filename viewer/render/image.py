"""Images: VisPy's Image visual showing an ImageLayer after its interval and stretch.

An image larger than the GL texture limit (``max_size``, 8192 by default,
or GL_MAX_TEXTURE_SIZE if smaller) is shown at the finest power-of-two
downsampling that fits (block averages); pixel (i, j) stays at world (j, i).
"""

from __future__ import annotations

from vispy import scene
from vispy.color import Colormap
from vispy.visuals.transforms import STTransform

from lenghu.viewer.model.colors import colormap_lut


class ImageVisual:
    """Draws one :class:`~lenghu.viewer.model.ImageLayer`."""

    def __init__(self, layer, renderer, max_size: int = 8192):
        self.layer = layer
        self.renderer = renderer
        self.factor = layer.levels(min(max_size, renderer.limits["max_texture"]))
        self.visual = scene.visuals.Image(layer.display(self.factor), parent=renderer.back, clim=(0.0, 1.0),
                                          cmap=Colormap(colormap_lut(layer.colormap)), interpolation="nearest",
                                          texture_format="auto")
        self.visual.transform = STTransform(scale=(self.factor, self.factor, 1.0))
        self.visual.opacity = layer.opacity
        layer.events.changed.connect(self._on_change)

    def _on_change(self, event):
        if event.name in ("stretch", "interval", "percentile", "clim"):
            self.visual.set_data(self.layer.display(self.factor))
        elif event.name == "colormap":
            self.visual.cmap = Colormap(colormap_lut(self.layer.colormap))
        elif event.name == "visible":
            self.visual.visible = self.layer.visible
        elif event.name == "opacity":
            self.visual.opacity = self.layer.opacity
        self.renderer.request_update()

    def prepare(self, frame) -> None:
        pass

    def close(self) -> None:
        self.layer.events.changed.disconnect(self._on_change)  # else the layer keeps this visual alive
        self.visual.parent = None
