"""A scene: layers, a camera and overlay settings, with events.

``scene.events.layers`` fires when a layer is added or removed (the event's
value is the layer list), ``scene.events.camera`` when the camera is
replaced or one of its properties changes, and ``scene.events.changed``
after any of them. A renderer listens to these and to each layer's own events.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from lenghu.viewer.model.cameras import Camera, PanZoomCamera, TurntableCamera, camera_from_dict
from lenghu.viewer.model.events import Evented, Prop
from lenghu.viewer.model.layers import ImageLayer, Layer


def _rgb(value: Any) -> tuple[float, float, float]:
    v = tuple(float(x) for x in value)
    if len(v) != 3 or not all(0 <= x <= 1 for x in v):
        raise ValueError(f"need an RGB triple in [0, 1], got {value!r}")
    return v  # type: ignore[return-value]


class Scene(Evented):
    """Layers drawn in order (first at the back), one camera, and what the overlays show.

    Attributes
    ----------
    background : (r, g, b)
    caption : str
        Text at the bottom of the picture (may hold two languages, e.g. ``"Cosmic web | 宇宙网"``).
    scale_bar, color_bar, show_fps : bool
    length_unit : str
        Name of the world's length unit, shown on the scale bar.
    """

    background = Prop((0.0, 0.0, 0.0), _rgb)
    caption = Prop("", str)
    scale_bar = Prop(True, bool)
    color_bar = Prop(True, bool)
    show_fps = Prop(False, bool)
    length_unit = Prop("", str)

    def __init__(self, layers: Iterable[Layer] = (), camera: Camera | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.events.add("layers")
        self.events.add("camera")
        self._layers: list[Layer] = []
        self._camera: Camera | None = None
        for layer in layers:
            self.add(layer)
        self.camera = camera if camera is not None else self.default_camera()

    # layers
    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(self._layers)

    def add(self, layer: Layer) -> Layer:
        if not isinstance(layer, Layer):
            raise TypeError(f"not a layer: {layer!r}")
        self._layers.append(layer)
        layer.events.changed.connect(self._on_layer_changed)
        self.events.emit("layers", self.layers)
        return layer

    def remove(self, layer: Layer) -> None:
        self._layers.remove(layer)
        layer.events.changed.disconnect(self._on_layer_changed)
        self.events.emit("layers", self.layers)

    def __iter__(self):
        return iter(self._layers)

    def __len__(self) -> int:
        return len(self._layers)

    def _on_layer_changed(self, event) -> None:
        self.events.changed(event.value, event.old, name=f"layer.{event.name}")

    # camera
    @property
    def camera(self) -> Camera:
        assert self._camera is not None
        return self._camera

    @camera.setter
    def camera(self, camera: Camera) -> None:
        if self._camera is not None:
            self._camera.events.changed.disconnect(self._on_camera_changed)
        self._camera = camera
        camera.events.changed.connect(self._on_camera_changed)
        self.events.emit("camera", camera)

    def _on_camera_changed(self, event) -> None:
        self.events.emit("camera", self._camera)

    def set_camera_state(self, state: dict[str, Any]) -> None:
        """Apply a camera state dict; replaces the camera when the type differs."""
        if state.get("type", self.camera.kind) == self.camera.kind:
            self.camera.set_state(state)
        else:
            self.camera = camera_from_dict(state)

    # geometry
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Union of the visible layers' bounds (a unit cube when empty)."""
        boxes = [layer.bounds() for layer in self._layers]
        if not boxes:
            return np.zeros(3), np.ones(3)
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        return lo, hi

    def default_camera(self, aspect: float = 1.0) -> Camera:
        """A camera that shows everything: pan/zoom for images only, else a turntable."""
        lo, hi = self.bounds()
        if self._layers and all(isinstance(layer, ImageLayer) for layer in self._layers):
            return PanZoomCamera().fit(lo, hi, aspect)
        return TurntableCamera().fit(lo, hi)

    def to_dict(self) -> dict[str, Any]:
        """The scene's settings (not the data): camera, overlays and each layer's properties."""
        return {
            "camera": self.camera.to_dict(),
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.props().items()},
            "layers": [{"type": type(layer).__name__, **{k: (list(v) if isinstance(v, tuple) else v)
                                                           for k, v in layer.props().items()}}
                       for layer in self._layers],
        }
