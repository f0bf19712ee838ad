"""The kiosk controller: applies the state machine's requests to the viewer model (no GL).

One :class:`~lenghu.viewer.model.Scene` is shown; changing the playlist
position swaps its layers and camera (the renderer follows the model's
events, so the same renderer and canvas serve the whole show). Each
playlist scene is loaded once, on first use, into a :class:`Bundle`: its
layers, its tour and caption stops, its structures (for the automatic tour
and for taps) and its home camera.

What the screen shows besides the data is described by
:class:`OverlayState` (captions in the current language, the buttons, a
tapped structure's label): plain data that the GL overlay draws and tests
inspect.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lenghu.viewer.app.kiosk import machine as m
from lenghu.viewer.app.kiosk.quality import BudgetController
from lenghu.viewer.app.kiosk.show import SceneConfig, ShowConfig, ShowError, Text
from lenghu.viewer.app.kiosk.structures import Stop, Structure, find_structures, structure_text, structure_tour

log = logging.getLogger(__name__)

BUTTON_TEXT = {"previous": Text("◀ 上一个", "◀ Previous"), "next": Text("下一个 ▶", "Next ▶"),
               "language": Text("English", "中文")}
ATTRACT_HINT = Text("触摸屏幕，探索宇宙", "Touch the screen to explore")


@dataclass
class Bundle:
    """One playlist scene, loaded: layers, steps (time-series snapshots), tour, caption stops, structures."""

    config: SceneConfig
    layers: list
    steps: int
    tour: object
    stops: list[Stop]
    structures: list[Structure]
    home: dict
    length_unit: str


@dataclass
class Label:
    """A tapped structure's label (or a tapped image point's: ``structure`` -1): text, where it was tapped (px)
    and when it goes away (s)."""

    text: Text
    x: float
    y: float
    until: float
    structure: int


@dataclass
class OverlayState:
    """What the kiosk overlay draws (pixel coordinates, top-left origin)."""

    title: str
    caption: str
    hint: str
    buttons: dict[str, tuple[m.Rect, str]]
    label: tuple[str, float, float] | None
    language: str
    attract: bool


@dataclass
class KioskController:
    """Drives the model from the machine's requests and the clock.

    Parameters
    ----------
    show : ShowConfig
    size : (width, height)
    now : float
        Start time on the caller's clock (seconds).
    start_scene : int
        Playlist position to start at (a supervised restart resumes there).
    usage : UsageLog or None
    on_position : callable(dict) or None
        Called with the playlist position whenever it changes (the supervisor's resume state).
    """

    show: ShowConfig
    size: tuple[int, int]
    now: float = 0.0
    start_scene: int = 0
    usage: object | None = None
    on_position: Callable[[dict], None] | None = None
    machine: m.KioskMachine = field(init=False)
    quality: BudgetController = field(init=False)
    bundles: dict[int, Bundle] = field(init=False, default_factory=dict)
    label: Label | None = field(init=False, default=None)
    exit_requested: bool = field(init=False, default=False)

    def __post_init__(self):
        from lenghu.viewer.model import Scene

        show = self.show
        self.machine = m.KioskMachine([s.duration for s in show.scenes], self.size, show.idle_seconds,
                                      show.admin_chord, show.language, self.start_scene, self.now)
        q = show.quality
        self.quality = BudgetController(q.target_fps, q.min_budget, q.max_budget, q.start_budget)
        self.scene = Scene(scale_bar=False, color_bar=False)  # the captions give sizes; the buttons take the corners
        self._show_scene(self.machine.state.scene)
        self._apply_tour(0.0)

    # ------------------------------------------------------------------ loading
    def bundle(self, index: int) -> Bundle:
        if index not in self.bundles:
            self.bundles[index] = load_bundle(self.show.scenes[index], self.size, self.show.path, index)
        return self.bundles[index]

    def resume(self, index: int) -> None:
        """Jump to playlist scene ``index`` (a supervised restart resuming where the last kiosk was)."""
        st = self.machine.state
        st.scene = int(index) % len(self.show.scenes)
        st.scene_started = st.now
        self._show_scene(st.scene)
        self._apply_tour(0.0)

    def preload(self) -> None:
        """Load every scene now (a live kiosk: no frame then waits for the disk at a scene change)."""
        for i in range(len(self.show.scenes)):
            self.bundle(i)

    def _show_scene(self, index: int) -> None:
        """Show playlist scene ``index``: its layers join the model once and stay (hidden while another scene
        plays), so a scene change re-creates no GL programs or buffers and the picture switches at once."""
        b = self.bundle(index)
        sc = self.scene
        present = {id(layer) for layer in sc.layers}
        for layer in b.layers:
            if id(layer) not in present:
                sc.add(layer)
        for j, other in self.bundles.items():
            if j != index:
                for layer in other.layers:
                    layer.visible = False
        for layer in b.layers:
            layer.visible = True
        if b.steps > 1:
            self._series_time(b, 0.0)
        sc.length_unit = b.length_unit
        sc.set_camera_state(b.home)
        self.set_budget(self.quality.budget)
        self.label = None
        if self.on_position is not None:
            self.on_position(self.position())

    @staticmethod
    def _series_time(b: "Bundle", t: float) -> None:
        """Move the bundle's time series (or sequence of stores) to fractional snapshot ``t``
        (as :func:`lenghu.viewer.app.scenes.set_series_time`, but for this scene's layers only)."""
        from lenghu.viewer.model import ParticleLayer

        particles = [layer for layer in b.layers if isinstance(layer, ParticleLayer)]
        stores = [layer for layer in particles if layer.kind == "lod"]
        if len(stores) > 1:
            index = int(min(max(round(t), 0), len(stores) - 1))
            for i, layer in enumerate(stores):
                layer.visible = i == index
        for layer in particles:
            if layer.kind == "series":
                layer.time = t

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> m.KioskState:
        return self.machine.state

    @property
    def current(self) -> Bundle:
        return self.bundle(self.state.scene)

    def position(self) -> dict:
        """The playlist position: scene index and name, language."""
        s = self.state
        return {"scene": s.scene, "name": self.show.scenes[s.scene].name, "language": s.language}

    def set_budget(self, budget: int) -> None:
        from lenghu.viewer.model import ParticleLayer

        for layer in self.scene.layers:
            if isinstance(layer, ParticleLayer):
                layer.budget = budget

    # ------------------------------------------------------------------ driving
    def handle(self, event) -> list:
        """One input event (a :mod:`machine` event); returns the requests it caused (already applied)."""
        requests = self.machine.handle(event)
        self.apply(requests)
        return requests

    def advance(self, now: float, frame_seconds: float | None = None) -> list:
        """Move the clock to ``now``: idle/attract transitions, the tour's camera; ``frame_seconds``
        (the last frame's duration) feeds adaptive quality."""
        self.now = now
        requests = self.machine.tick(now)
        self.apply(requests)
        if self.state.attract:
            self._apply_tour(now - self.state.scene_started)
        if self.label is not None and now >= self.label.until:
            self.label = None
        if frame_seconds is not None:
            before = self.quality.budget
            if self.quality.update(frame_seconds) != before:
                self.set_budget(self.quality.budget)
        return requests

    def apply(self, requests) -> None:
        cam = self.scene.camera
        for r in requests:
            if isinstance(r, m.GoTo):
                self._show_scene(r.scene)
                self._apply_tour(0.0)
            elif isinstance(r, m.Orbit):
                if cam.kind == "turntable":
                    cam.orbit(r.d_azimuth, r.d_elevation)
                elif cam.kind == "fly":
                    cam.turn(-r.d_azimuth, r.d_elevation)
                else:  # images: a drag pans (the orbit's degrees back to pixels)
                    h = self.size[1]
                    px = 1.0 / self.machine.orbit_deg_per_px
                    cam.pan(r.d_azimuth * px * cam.height / h, r.d_elevation * px * cam.height / h)
            elif isinstance(r, m.Zoom):
                if cam.kind == "fly":
                    cam.move(forward=0.2 * cam.scale * math.log(r.factor))
                else:
                    cam.zoom(r.factor)
            elif isinstance(r, m.Pick):
                self.pick(r.x, r.y)
            elif isinstance(r, m.SetLanguage):
                if self.on_position is not None:
                    self.on_position(self.position())
            elif isinstance(r, m.Attract):
                if r.on:
                    self.label = None
            elif isinstance(r, m.Interaction):
                if self.usage is not None:
                    self.usage.record(self.show.scenes[self.state.scene].name, r.kind)
            elif isinstance(r, m.Exit):
                self.exit_requested = True

    def _apply_tour(self, t: float) -> None:
        b = self.current
        if b.tour is None:
            return
        dur = b.tour.duration
        st = b.tour.state_at(min(max(t, 0.0), dur) if b.config.tour != "orbit" else t % dur if dur > 0 else 0.0)
        self.scene.set_camera_state(st.camera.to_dict())
        if st.series_time is not None and b.steps > 1:
            self._series_time(b, st.series_time)

    def pick(self, x: float, y: float) -> Label | None:
        """Show the label of the structure nearest to pixel (x, y), if one is within reach of the tap; in an
        image or a cube, the label of the tapped point (:mod:`lenghu.viewer.app.kiosk.image_labels`)."""
        from lenghu.viewer.model import ImageLayer, PanZoomCamera, VolumeLayer, pixel_ray, plane_point, project

        b = self.current
        images = [layer for layer in b.layers if isinstance(layer, ImageLayer)]
        volumes = [layer for layer in b.layers if isinstance(layer, VolumeLayer)]
        if images and isinstance(self.scene.camera, PanZoomCamera):
            from lenghu.viewer.app.kiosk.image_labels import image_text

            text = image_text(images[-1], *plane_point(self.scene.camera, self.size, x, y))
            self.label = None if text is None else Label(text, x, y, self.now + self.show.label_seconds, -1)
            return self.label
        if volumes:
            from lenghu.viewer.app.kiosk.image_labels import voxel_text

            voxel = volumes[-1].brightest_along(*pixel_ray(self.scene.camera, self.size, x, y))
            text = None if voxel is None else voxel_text(volumes[-1], *voxel)
            self.label = None if text is None else Label(text, x, y, self.now + self.show.label_seconds, -1)
            return self.label
        if not b.structures:
            return None
        centres = np.array([s.center for s in b.structures])
        px = project(centres, self.scene.camera, self.size)
        d = np.hypot(px[:, 0] - x, px[:, 1] - y)
        d[~np.isfinite(d)] = np.inf
        # reach: the structure's projected radius, at least 48 px (a fingertip)
        cam = self.scene.camera
        dist = np.linalg.norm(centres - cam.eye, axis=1)
        focal = cam.focal_pixels(self.size[1])
        radius_px = np.array([s.size for s in b.structures]) / 2 * focal / np.maximum(dist, 1e-9)
        reach = np.maximum(48.0, radius_px)
        i = int(np.argmin(d / reach))
        if not d[i] <= reach[i]:
            self.label = None
            return None
        self.label = Label(structure_text(i + 1, b.structures[i], b.length_unit), x, y,
                           self.now + self.show.label_seconds, i)
        return self.label

    # ------------------------------------------------------------------ what to draw
    def caption(self) -> Text:
        """The caption now: the tour stop's (attract mode) or the scene's."""
        b = self.current
        if self.state.attract:
            t = self.state.now - self.state.scene_started
            for stop in b.stops:
                if stop.start <= t < stop.end:
                    return stop.text
        return b.config.caption

    def overlay_state(self) -> OverlayState:
        lang = self.state.language
        label = None
        if self.label is not None:
            label = (self.label.text.get(lang), self.label.x, self.label.y)
        return OverlayState(
            title=self.show.title.get(lang), caption=self.caption().get(lang),
            hint=ATTRACT_HINT.get(lang) if self.state.attract else "",
            buttons={name: (rect, BUTTON_TEXT[name].get(lang)) for name, rect in self.machine.buttons.items()},
            label=label, language=lang, attract=self.state.attract)


def load_bundle(config: SceneConfig, size: tuple[int, int], show_path: Path | None = None,
                index: int | None = None) -> Bundle:
    """Load one playlist scene: its data as layers, its structures and its tour.

    Raises
    ------
    ShowError
        The data cannot be shown (naming the show file, the scene's line and field when given).
    """
    where = show_path if show_path is not None else config.data[0]
    line = config.line if show_path is not None else 0
    field_name = f"scene[{index}]" if index is not None else f"scene {config.name!r}"
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    from lenghu.errors import LenghuError
    from lenghu.viewer.app.scenes import SceneSpec, build_scene
    from lenghu.viewer.model import ParticleLayer, Tour

    spec = SceneSpec(budget=300_000, field=config.field, colormap=config.colormap, scale=config.scale,
                     exposure=config.exposure, point_size=config.point_size, stretch=config.stretch,
                     volume_method=config.volume_method)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            scene, steps = build_scene(list(config.data), spec)
    except (LenghuError, ValueError, OSError) as exc:
        raise ShowError(where, line, f"{field_name}.data", str(exc)) from exc
    layers = list(scene.layers)
    unit = scene.length_unit
    particles = [layer for layer in layers if isinstance(layer, ParticleLayer)]
    for layer in particles:
        layer.lod_size_exponent = config.splat_growth
        if layer.field is not None and layer.clim is None:
            layer.clim = layer.color_range()  # once: the automatic range is recomputed from the data each frame
    structures: list[Structure] = []
    if particles:
        sample = _particle_sample(particles[-1] if particles[0].kind == "lod" else particles[0])
        structures = find_structures(sample, config.structures, config.mass_unit_msun)
    lo, hi = scene.bounds()
    home = scene.default_camera(size[0] / size[1]).to_dict()
    stops: list[Stop] = []
    if config.tour == "auto":
        if not particles:
            raise ShowError(where, line, f"{field_name}.tour",
                            "an automatic tour needs particles (snapshots or a .lod store)")
        tour, stops = structure_tour(structures, lo, hi, config.duration, unit, steps, config.caption)
        home = tour.state_at(0.0).camera.to_dict()
    elif config.tour == "file":
        try:
            tour = Tour.load(config.tour_file)
        except (OSError, ValueError, KeyError) as exc:
            raise ShowError(where, line, f"{field_name}.tour_file", f"{config.tour_file}: not a tour file: {exc}") \
                from exc
        home = tour.state_at(0.0).camera.to_dict()
    elif config.tour == "orbit" and home["type"] == "turntable":
        series = (0.0, float(steps - 1)) if steps > 1 else None
        tour = Tour.orbit(_camera(home), config.duration,
                          120.0, 30.0, series)
    else:  # still (and images, which do not orbit)
        tour = None
    return Bundle(config, layers, steps, tour, stops, structures, home, unit)


def _camera(state: dict):
    from lenghu.viewer.model import camera_from_dict

    return camera_from_dict(state)


def _particle_sample(layer):
    """In-memory particles to look for structures in: the last snapshot of a series, or an LOD store's root sample."""
    from lenghu.viewer.model import ParticleData

    src = layer.source
    if layer.kind == "series":
        return src.frames[-1]
    if layer.kind == "points":
        return src
    mass = "mass" in src.field_names()
    node = src.read_node(0, "mass" if mass else None)
    fields = {}
    if mass:  # the root holds a uniform sample: each point stands for count / len particles
        fields["mass"] = node[:, 3] * (src.count / max(len(node), 1))
    return ParticleData(node[:, :3], fields, box_size=src.box_size, length_unit=src.length_unit)


def resume_position(path: Path | None, show: ShowConfig) -> int:
    """The playlist index stored in a resume-state file (0 when absent, unreadable or for another show)."""
    import json

    if path is None or not Path(path).exists():
        return 0
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        names = [s.name for s in show.scenes]
        if state.get("name") in names:
            return names.index(state["name"])
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("resume state %s unreadable (%s): starting at the first scene", path, exc)
    return 0
