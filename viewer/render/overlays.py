"""Overlays drawn in pixel coordinates over the picture: scale bar, colour bar, caption, frame rate."""

from __future__ import annotations

import math
import time

import numpy as np
from vispy import scene
from vispy.color import Colormap
from vispy.visuals.transforms import STTransform

from lenghu.viewer.model.colors import colormap_lut


def nice_length(target: float) -> float:
    """The largest of 1, 2, 5 x 10^k not above ``target`` (> 0)."""
    if not target > 0 or not math.isfinite(target):
        return 1.0
    exp = math.floor(math.log10(target))
    for m in (5, 2, 1):
        if m * 10**exp <= target:
            return m * 10**exp
    return 10**exp


def format_length(value: float, unit: str) -> str:
    if unit in ("arcsec",):
        if value >= 3600:
            return f"{value / 3600:g}°"
        if value >= 60:
            return f"{value / 60:g}′"
        return f"{value:g}″"
    return f"{value:g} {unit}".strip()


class Overlays:
    """Scale bar, colour bar, caption and frame rate for a renderer (pixel coordinates, top-left origin)."""

    def __init__(self, renderer):
        self.renderer = renderer
        parent = renderer.canvas.scene
        self.bar = scene.visuals.Line(pos=np.zeros((2, 2)), color="white", width=2, parent=parent)
        self.bar_text = scene.visuals.Text("", color="white", font_size=9, anchor_x="center", anchor_y="bottom",
                                           parent=parent)
        self.caption = scene.visuals.Text("", color="white", font_size=12, anchor_x="center", anchor_y="bottom",
                                          parent=parent)
        self.fps = scene.visuals.Text("", color=(0.7, 1.0, 0.7, 1.0), font_size=9, anchor_x="left",
                                      anchor_y="top", parent=parent)
        self.cbar = scene.visuals.Image(np.linspace(0, 1, 256, dtype=np.float32)[None, :], parent=parent,
                                        cmap=Colormap(colormap_lut("inferno")), clim=(0, 1))
        self.cbar_lo = scene.visuals.Text("", color="white", font_size=8, anchor_x="left", anchor_y="top",
                                          parent=parent)
        self.cbar_hi = scene.visuals.Text("", color="white", font_size=8, anchor_x="right", anchor_y="top",
                                          parent=parent)
        for v in (self.bar, self.bar_text, self.caption, self.fps, self.cbar, self.cbar_lo, self.cbar_hi):
            v.order = 100
            v.set_gl_state("translucent", depth_test=False)
        self._times: list[float] = []
        self._cmap_name = None
        self.caption_text: str | None = None  # set by a tour; else the scene's caption

    def update(self, frame) -> None:
        sc = self.renderer.scene
        w, h = self.renderer.canvas.size
        scale = max(0.6, h / 600.0)
        # caption
        text = self.caption_text if self.caption_text is not None else sc.caption
        self.caption.text = text or ""
        self.caption.font_size = 12 * scale
        self.caption.pos = (w / 2, h - 10 * scale)
        self.caption.visible = bool(text)
        # scale bar: world length per pixel at the camera's target
        units_per_px, unit = self._units_per_pixel(frame, h)
        show = sc.scale_bar and units_per_px is not None
        self.bar.visible = self.bar_text.visible = show
        if show:
            length = nice_length(0.2 * w * units_per_px)
            px = length / units_per_px
            x1, y = w - 20 * scale, h - 18 * scale
            self.bar.set_data(pos=np.array([[x1 - px, y], [x1, y]]), width=max(1, 2 * scale))
            self.bar_text.text = format_length(length, unit)
            self.bar_text.font_size = 9 * scale
            self.bar_text.pos = (x1 - px / 2, y - 4 * scale)
        # colour bar
        info = self._color_layer()
        self.cbar.visible = self.cbar_lo.visible = self.cbar_hi.visible = bool(sc.color_bar and info)
        if sc.color_bar and info:
            name, (lo, hi), label = info
            if name != self._cmap_name:
                self.cbar.cmap = Colormap(colormap_lut(name))
                self._cmap_name = name
            bw, bh = 0.25 * w, 8 * scale
            self.cbar.transform = STTransform(scale=(bw / 256, bh, 1), translate=(20 * scale, 20 * scale, 0))
            self.cbar_lo.text = f"{lo:.3g}"
            self.cbar_hi.text = f"{hi:.3g}  {label}"
            for t in (self.cbar_lo, self.cbar_hi):
                t.font_size = 8 * scale
            self.cbar_lo.pos = (20 * scale, 20 * scale + bh + 3 * scale)
            self.cbar_hi.pos = (20 * scale + bw, 20 * scale + bh + 3 * scale)
        # frame rate
        now = time.perf_counter()
        self._times = [t for t in self._times if now - t < 2.0] + [now]
        self.fps.visible = sc.show_fps
        if sc.show_fps and len(self._times) > 1:
            rate = (len(self._times) - 1) / (self._times[-1] - self._times[0])
            points = sum(getattr(a, "last_points", 0) for a in self.renderer.adapters.values())
            self.fps.text = f"{rate:.1f} fps  {points:,} points"
        self.fps.font_size = 9 * scale
        self.fps.pos = (10 * scale, h - 30 * scale if sc.color_bar and info else 10 * scale)
        if sc.show_fps and info:
            self.fps.pos = (10 * scale, 50 * scale)

    def _units_per_pixel(self, frame, h):
        from lenghu.viewer.model import ImageLayer

        cam = self.renderer.scene.camera
        if cam.is_perspective:
            distance = getattr(cam, "distance", None)
            if distance is None:
                lo, hi = self.renderer.scene.bounds()
                distance = float(np.linalg.norm((lo + hi) / 2 - cam.eye))
            per_px = distance / frame.focal_px
        else:
            per_px = cam.ortho_height() / h
        layers = self.renderer.scene.layers
        if layers and all(isinstance(layer, ImageLayer) for layer in layers):
            arcsec = layers[0].pixel_scale_arcsec()
            if arcsec is not None:
                return per_px * arcsec, "arcsec"
            return per_px, "px"
        return per_px, self.renderer.scene.length_unit

    def _color_layer(self):
        from lenghu.viewer.model import ParticleLayer, VolumeLayer

        for layer in self.renderer.scene.layers:
            if not layer.visible:
                continue
            if isinstance(layer, ParticleLayer) and layer.field is not None:
                label = layer.field + (" (log)" if layer.scale == "log" else "")
                return layer.colormap, layer.color_range(), label
            if isinstance(layer, VolumeLayer):
                return layer.colormap, layer.color_range(), ""
        return None
