"""The kiosk's overlay: title, caption, attract hint, large buttons and a tapped structure's label.

Draws a :class:`lenghu.viewer.app.kiosk.controller.OverlayState` (plain data,
pixel coordinates with a top-left origin) over a
:class:`~lenghu.viewer.render.SceneRenderer`'s canvas. All text uses one
face (``face``): the kiosk passes a font with Chinese glyphs
(:func:`lenghu.viewer.app.kiosk.fonts.cjk_face`), since VisPy's default
face has none.
"""

from __future__ import annotations

import numpy as np
from vispy import scene

BUTTON_FILL = (0.12, 0.16, 0.24, 0.78)
BUTTON_EDGE = (0.75, 0.85, 1.0, 0.9)
LABEL_FILL = (0.02, 0.03, 0.06, 0.85)
LABEL_EDGE = (1.0, 0.85, 0.4, 1.0)


class KioskOverlay:
    """Visuals for the kiosk's text and buttons on ``renderer``'s canvas, in font ``face`` (None: VisPy's default)."""

    def __init__(self, renderer, face: str | None = None):
        self.renderer = renderer
        self.face = face or "OpenSans"
        parent = renderer.canvas.scene
        kw = {"face": self.face, "parent": parent}
        self.title = scene.visuals.Text("", color=(1, 1, 1, 0.85), anchor_x="left", anchor_y="top", **kw)
        self.caption = scene.visuals.Text("", color="white", anchor_x="center", anchor_y="bottom", **kw)
        self.hint = scene.visuals.Text("", color=(1.0, 0.9, 0.6, 1.0), anchor_x="center", anchor_y="center", **kw)
        self.buttons: dict[str, tuple] = {}
        self.label_box = scene.visuals.Rectangle(center=(0, 0), width=2, height=2, color=LABEL_FILL,
                                                 border_color=LABEL_EDGE, parent=parent)
        self.label_mark = scene.visuals.Markers(parent=parent)
        self.label_text = scene.visuals.Text("", color=(1, 0.95, 0.8, 1), anchor_x="left", anchor_y="center", **kw)
        for v in (self.title, self.caption, self.hint, self.label_box, self.label_mark, self.label_text):
            self._front(v, 210 if v is self.label_text else 205)
        self.label_box.visible = self.label_mark.visible = self.label_text.visible = False
        self._cache: dict = {}

    @staticmethod
    def _front(visual, order: int) -> None:
        visual.order = order
        visual.set_gl_state("translucent", depth_test=False)

    def _button(self, name: str):
        if name not in self.buttons:
            parent = self.renderer.canvas.scene
            box = scene.visuals.Rectangle(center=(0, 0), width=100, height=100, color=BUTTON_FILL,
                                          border_color=BUTTON_EDGE, border_width=2, radius=8, parent=parent)
            text = scene.visuals.Text("", color="white", anchor_x="center", anchor_y="center", face=self.face,
                                      parent=parent)
            self._front(box, 200)
            self._front(text, 201)
            self.buttons[name] = (box, text)
        return self.buttons[name]

    def _set(self, visual, **props) -> None:
        """Set only what changed: assigning a Text's text, size or position re-lays it out and rebuilds its
        program, which costs more than the whole point pass of a small frame."""
        cache = self._cache.setdefault(id(visual), {})
        for key, value in props.items():
            if cache.get(key, _UNSET) != value:
                setattr(visual, key, value)
                cache[key] = value

    def update(self, state) -> None:
        """Show ``state`` (an OverlayState)."""
        w, h = self.renderer.canvas.size
        s = max(0.6, h / 720.0)
        self._set(self.title, text=state.title, font_size=13 * s, pos=(20 * s, 20 * s))
        self._set(self.caption, text=state.caption, font_size=17 * s, pos=(w / 2, h - 30 * s),
                  visible=bool(state.caption))
        self._set(self.hint, text=state.hint, font_size=15 * s, pos=(w / 2, 0.14 * h), visible=bool(state.hint))
        for name, (rect, text) in state.buttons.items():
            box, label = self._button(name)
            centre = (rect.x + rect.w / 2, rect.y + rect.h / 2)
            self._set(box, center=centre, width=rect.w, height=rect.h)
            self._set(label, text=text, font_size=15 * s, pos=centre)
        if state.label is None:
            for v in (self.label_box, self.label_mark, self.label_text):
                self._set(v, visible=False)
            return
        text, x, y = state.label
        fs = 13 * s
        width = min(0.6 * w, fs * 1.45 * max(len(text), 1) * 0.62 + 24 * s)
        height = 2.6 * fs
        bx = min(max(x + 14 * s, 4), w - width - 4)
        by = min(max(y - height / 2, 4), h - height - 4)
        self._set(self.label_box, center=(bx + width / 2, by + height / 2), width=width, height=height)
        if self._cache.get("mark") != (x, y, s):
            self.label_mark.set_data(pos=np.array([[x, y]], dtype=np.float32), size=14 * s,
                                     face_color=(1, 0.85, 0.4, 0.0), edge_color=(1, 0.85, 0.4, 1), edge_width=2.5 * s)
            self._cache["mark"] = (x, y, s)
        self._set(self.label_text, text=text, font_size=fs, pos=(bx + 12 * s, by + height / 2))
        for v in (self.label_box, self.label_mark, self.label_text):
            self._set(v, visible=True)


_UNSET = object()
