"""The desktop window (``lenghu view``): the scene renderer in a VisPy canvas with mouse and keyboard control.

Mouse: drag to orbit (turntable) or look around (fly) or pan (images);
wheel to zoom. Keys: ``W A S D`` / ``Q E`` move a fly camera, ``Tab``
switches turntable <-> fly, ``Space`` plays/pauses a time series, ``,``
``.`` step it, ``[`` ``]`` exposure, ``F`` cycles the colour field, ``M``
the colormap, ``L`` linear/log, ``P`` shows the frame rate, ``R`` resets
the camera, ``S`` saves a screenshot (lenghu-view-N.png), ``Esc`` quits.
With Qt (PySide6/PyQt6) a side panel holds the same controls (layers,
field, colormap, time slider). Level-of-detail layers never wait for the
disk: nodes stream in and the window redraws as they arrive.
"""

from __future__ import annotations

import itertools
import math

COLORMAPS = ("inferno", "magma", "viridis", "plasma", "cividis", "gray", "hot", "twilight")
GUI_BACKENDS = ("pyside6", "pyqt6", "pyqt5", "pyside2", "glfw")


def pick_backend(prefer: str | None = None) -> str:
    """The first VisPy GUI backend that imports here; raises RuntimeError naming what to install."""
    import importlib

    modules = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside2": "PySide2", "glfw": "glfw"}
    order = ([prefer] if prefer else []) + [b for b in GUI_BACKENDS if b != prefer]
    for name in order:
        try:
            importlib.import_module(modules[name])
            return name
        except ImportError:
            continue
    raise RuntimeError("no GUI toolkit for a window: `pip install PySide6` (or glfw), "
                       "or render headless with `lenghu render`")


class ViewerWindow:
    """A window showing a scene; ``steps`` > 1 enables the time controls."""

    def __init__(self, scene, steps: int = 1, size=(1024, 768), backend: str | None = None):
        import vispy

        self.backend = pick_backend(backend)
        vispy.use(app=self.backend)
        from vispy import app

        from lenghu.viewer.render import SceneRenderer

        self.scene = scene
        self.steps = steps
        self.time = 0.0
        self.playing = False
        self.renderer = SceneRenderer(scene, size=size, show=False, app=self.backend, title="lenghu view")
        self.renderer.interactive = True
        self.canvas = self.renderer.canvas
        self._home = scene.camera.to_dict()
        self._last = None
        self._shots = itertools.count(1)
        self._cmaps = itertools.cycle(COLORMAPS)
        self.canvas.events.mouse_move.connect(self._on_mouse_move)
        self.canvas.events.mouse_press.connect(self._on_mouse_press)
        self.canvas.events.mouse_wheel.connect(self._on_wheel)
        self.canvas.events.key_press.connect(self._on_key)
        self.timer = app.Timer(1 / 30, connect=self._on_tick, start=True)
        self.panel = None
        if self.backend in ("pyside6", "pyqt6", "pyqt5", "pyside2"):
            try:
                self.panel = _qt_panel(self)
            except Exception:  # the window works without the panel
                self.panel = None
        if self.panel is None:
            self.canvas.show()

    # ------------------------------------------------------------------ helpers
    def particle_layers(self):
        from lenghu.viewer.model import ParticleLayer

        return [layer for layer in self.scene.layers if isinstance(layer, ParticleLayer)]

    def set_time(self, t: float) -> None:
        from lenghu.viewer.app.scenes import set_series_time

        self.time = min(max(t, 0.0), max(self.steps - 1, 0))
        set_series_time(self.scene, self.time)

    # ------------------------------------------------------------------ events
    def _on_tick(self, event) -> None:
        if self.playing and self.steps > 1:
            t = self.time + 1 / 30 / 2.0  # 2 s a snapshot
            self.set_time(0.0 if t > self.steps - 1 else t)
        if self.renderer.needs_update:
            self.canvas.update()

    def _on_mouse_press(self, event) -> None:
        self._last = event.pos

    def _on_mouse_move(self, event) -> None:
        if not event.is_dragging or self._last is None:
            return
        dx, dy = (event.pos[0] - self._last[0]), (event.pos[1] - self._last[1])
        self._last = event.pos
        cam = self.scene.camera
        if cam.kind == "turntable":
            cam.orbit(-0.3 * dx, 0.3 * dy)
        elif cam.kind == "fly":
            cam.turn(0.2 * dx, -0.2 * dy)
        else:
            h = self.canvas.size[1]
            cam.pan(-dx * cam.height / h, dy * cam.height / h)

    def _on_wheel(self, event) -> None:
        factor = 1.1 ** event.delta[1]
        cam = self.scene.camera
        if cam.kind == "fly":
            cam.move(forward=0.05 * cam.scale * event.delta[1])
        else:
            cam.zoom(factor)

    def _on_key(self, event) -> None:
        from lenghu.viewer.model import FlyCamera, TurntableCamera

        key = (event.key.name if event.key is not None else event.text or "").lower()
        cam = self.scene.camera
        step = 0.02 * getattr(cam, "scale", getattr(cam, "distance", 1.0))
        moves = {"w": (step, 0, 0), "s": (-step, 0, 0), "a": (0, -step, 0), "d": (0, step, 0),
                 "q": (0, 0, -step), "e": (0, 0, step)}
        if cam.kind == "fly" and key in moves:
            cam.move(*moves[key])
        elif key == "tab":
            lo, hi = self.scene.bounds()
            if cam.kind == "turntable":
                fly = FlyCamera(yaw=-cam.azimuth, pitch=-cam.elevation, fov=cam.fov or 60)
                fly.scale = float(math.dist(lo, hi))
                fly.position = cam.eye
                self.scene.camera = fly
            else:
                self.scene.camera = TurntableCamera().fit(lo, hi)
        elif key == "space":
            self.playing = not self.playing
        elif key in (",", "."):
            self.set_time(round(self.time) + (1 if key == "." else -1))
        elif key in ("[", "]"):
            for layer in self.particle_layers():
                layer.exposure = layer.exposure * (1.25 if key == "]" else 0.8)
        elif key == "f":
            for layer in self.particle_layers():
                names = [None] + layer.field_names()
                layer.field = names[(names.index(layer.field) + 1) % len(names)]
        elif key == "m":
            name = next(self._cmaps)
            for layer in self.scene.layers:
                if hasattr(layer, "colormap"):
                    layer.colormap = name
        elif key == "l":
            for layer in self.particle_layers():
                layer.scale = "linear" if layer.scale == "log" else "log"
        elif key == "p":
            self.scene.show_fps = not self.scene.show_fps
        elif key == "r":
            self.scene.set_camera_state(self._home)
        elif key == "s":
            import imageio.v2 as imageio

            imageio.imwrite(f"lenghu-view-{next(self._shots)}.png", self.renderer.render())
        elif key == "escape":
            self.close()

    def close(self) -> None:
        self.timer.stop()
        self.renderer.close()
        if self.panel is not None:
            self.panel.close()

    def run(self) -> None:
        from vispy import app

        app.run()


def _qt_panel(window: ViewerWindow):
    """A Qt window: the canvas with a side panel (layers, field, colormap, time slider)."""
    qt = __import__({"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside2": "PySide2"}[window.backend]
                    + ".QtWidgets", fromlist=["QtWidgets"])
    core = __import__(qt.__name__.replace("QtWidgets", "QtCore"), fromlist=["QtCore"])
    main = qt.QWidget()
    main.setWindowTitle("lenghu view")
    layout = qt.QHBoxLayout(main)
    side = qt.QVBoxLayout()
    layers = qt.QListWidget()
    for layer in window.scene.layers:
        item = qt.QListWidgetItem(layer.name)
        item.setCheckState(core.Qt.CheckState.Checked if layer.visible else core.Qt.CheckState.Unchecked)
        layers.addItem(item)

    def on_item(item):
        i = layers.row(item)
        window.scene.layers[i].visible = item.checkState() == core.Qt.CheckState.Checked

    layers.itemChanged.connect(on_item)
    side.addWidget(qt.QLabel("Layers"))
    side.addWidget(layers)
    pl = window.particle_layers()
    if pl:
        fields = qt.QComboBox()
        fields.addItems(["(none)"] + pl[0].field_names())
        if pl[0].field:
            fields.setCurrentText(pl[0].field)
        fields.currentTextChanged.connect(
            lambda text: [setattr(layer, "field", None if text == "(none)" else text) for layer in pl])
        side.addWidget(qt.QLabel("Colour by"))
        side.addWidget(fields)
    cmaps = qt.QComboBox()
    cmaps.addItems(COLORMAPS)
    cmaps.currentTextChanged.connect(
        lambda text: [setattr(layer, "colormap", text) for layer in window.scene.layers if hasattr(layer, "colormap")])
    side.addWidget(qt.QLabel("Colormap"))
    side.addWidget(cmaps)
    if window.steps > 1:
        slider = qt.QSlider(core.Qt.Orientation.Horizontal)
        slider.setRange(0, 100 * (window.steps - 1))
        slider.valueChanged.connect(lambda v: window.set_time(v / 100.0))
        side.addWidget(qt.QLabel("Time"))
        side.addWidget(slider)
    side.addStretch(1)
    layout.addLayout(side, 0)
    layout.addWidget(window.canvas.native, 1)
    main.resize(window.canvas.size[0] + 220, window.canvas.size[1])
    main.show()
    return main
