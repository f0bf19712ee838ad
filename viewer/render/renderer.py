"""The scene renderer: a VisPy SceneCanvas that draws a :class:`~lenghu.viewer.model.Scene`.

One adapter per layer (``ADAPTERS``: model type -> visual class) subscribes
to its layer's events. Each frame the camera's matrices are computed from
the model camera (the model is the only source of truth; VisPy's own
cameras are not used): particle layers accumulate into their float
textures first, then the scene graph draws images (back), tone-mapped
particles, volumes (front) and the overlays.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from vispy import scene
from vispy.visuals.transforms import MatrixTransform

from lenghu.viewer.model import ImageLayer, ParticleLayer, Scene, TiledImageLayer, VolumeLayer
from lenghu.viewer.render.glutil import gl_limits
from lenghu.viewer.render.image import ImageVisual
from lenghu.viewer.render.overlays import Overlays
from lenghu.viewer.render.points import ParticleVisual
from lenghu.viewer.render.tiles import TiledImageVisual
from lenghu.viewer.render.volume import VolumeVisual

log = logging.getLogger(__name__)

ADAPTERS = {ParticleLayer: ParticleVisual, VolumeLayer: VolumeVisual, ImageLayer: ImageVisual,
            TiledImageLayer: TiledImageVisual}


@dataclass
class Frame:
    """The camera for one frame."""

    view: np.ndarray
    projection: np.ndarray
    size: tuple[int, int]
    eye: np.ndarray
    focal_px: float
    perspective: bool


class _Canvas(scene.SceneCanvas):
    """A SceneCanvas that lets the renderer run its accumulation passes before the scene graph draws."""

    def __init__(self, renderer, **kwargs):
        self._lenghu_renderer = renderer
        super().__init__(**kwargs)

    def _draw_scene(self, bgcolor=None):
        renderer = getattr(self, "_lenghu_renderer", None)
        if renderer is not None:
            renderer._before_draw(self)
        super()._draw_scene(bgcolor=bgcolor)


class SceneRenderer:
    """Draws a model :class:`Scene` on a VisPy canvas (a window, or off screen).

    Parameters
    ----------
    model : Scene
    size : (width, height)
    show : bool
        Show a window (needs a GUI backend); False for headless rendering.
    app : str or vispy Application, optional
        VisPy backend (``egl``, ``osmesa``, ``pyside6`` ...); default: the one selected.
    wait_for_data : bool
        Level-of-detail layers wait for their nodes before each frame
        (headless pictures and movies); interactive windows never wait.
    """

    def __init__(self, model: Scene, size: tuple[int, int] = (800, 600), show: bool = False, app=None,
                 wait_for_data: bool = False, **canvas_kwargs):
        self.scene = model
        self.wait_for_data = wait_for_data
        self.interactive = show
        self.needs_update = True
        self.canvas = _Canvas(self, size=tuple(size), show=show, app=app, bgcolor=tuple(model.background) + (1.0,),
                              keys=None, **canvas_kwargs)
        self.canvas.set_current()
        self.limits = gl_limits()
        self.back = scene.Node(parent=self.canvas.scene, name="images")
        self.back.order = -10
        self.front = scene.Node(parent=self.canvas.scene, name="volumes")
        self.front.order = 10
        self.back.transform = MatrixTransform()
        self.front.transform = MatrixTransform()
        self.adapters: dict[int, object] = {}
        self.overlays = Overlays(self)
        self.frame_times: list[float] = []
        model.events.layers.connect(lambda e: self._sync_layers())
        model.events.changed.connect(lambda e: self.request_update())
        model.events.background.connect(lambda e: setattr(self.canvas, "bgcolor", tuple(model.background) + (1.0,)))
        self._sync_layers()

    # ------------------------------------------------------------------ layers
    def _sync_layers(self) -> None:
        present = {id(layer): layer for layer in self.scene.layers}
        for key in list(self.adapters):
            if key not in present:
                self.adapters.pop(key).close()
        for order, layer in enumerate(self.scene.layers):
            if id(layer) not in self.adapters:
                cls = ADAPTERS.get(type(layer))
                if cls is None:
                    raise TypeError(f"no visual for {type(layer).__name__}")
                self.adapters[id(layer)] = cls(layer, self)
            adapter = self.adapters[id(layer)]
            node = getattr(adapter, "node", None) or getattr(adapter, "visual", None)
            if node is not None and isinstance(adapter, ParticleVisual):
                node.order = order
        self.request_update()

    def adapter(self, layer):
        return self.adapters[id(layer)]

    def request_update(self, from_thread: bool = False) -> None:
        """Ask for a redraw (a window redraws on its next tick; headless rendering draws on demand)."""
        self.needs_update = True
        if self.interactive and not from_thread:
            self.canvas.update()

    # ------------------------------------------------------------------ per frame
    def frame(self, size: tuple[int, int]) -> Frame:
        cam = self.scene.camera
        w, h = size
        lo, hi = self.scene.bounds()
        radius = float(np.linalg.norm(hi - lo)) / 2 or 1.0
        dist = float(np.linalg.norm((lo + hi) / 2 - cam.eye))
        if cam.is_perspective:
            near = max(1e-4 * (dist + radius), dist - 1.8 * radius)
            far = dist + 1.8 * radius
        else:
            near, far = None, None
        view = cam.view_matrix()
        proj = cam.projection_matrix(w / h, near, far)
        return Frame(view, proj, (int(w), int(h)), np.asarray(cam.eye, float), cam.focal_pixels(h), cam.is_perspective)

    def _before_draw(self, canvas) -> None:
        start = time.perf_counter()
        self.needs_update = False
        vp = canvas._vp_stack[-1] if canvas._vp_stack else (0, 0, *canvas.physical_size)
        frame = self.frame((int(vp[2]), int(vp[3])))
        # world -> canvas pixels (y down) for the scene-graph visuals
        cw, ch = canvas.size
        to_px = np.array([[cw / 2, 0, 0, cw / 2], [0, -ch / 2, 0, ch / 2], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        matrix = (to_px @ frame.projection @ frame.view).T
        self.back.transform.matrix = matrix
        self.front.transform.matrix = matrix
        for layer in self.scene.layers:
            adapter = self.adapters.get(id(layer))
            if isinstance(adapter, ParticleVisual):
                adapter.accumulate(canvas, frame, wait=self.wait_for_data)
            elif adapter is not None:
                adapter.prepare(frame)
        self.overlays.update(frame)
        self.last_frame = frame
        self.frame_times.append(time.perf_counter() - start)

    def render(self) -> np.ndarray:
        """Draw one frame off screen; (height, width, 3) uint8 RGB."""
        return np.asarray(self.canvas.render(alpha=False))

    def close(self) -> None:
        for adapter in self.adapters.values():
            adapter.close()
        self.adapters.clear()
        self.canvas.close()
