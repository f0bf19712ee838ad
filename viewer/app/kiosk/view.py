"""The kiosk's picture: the scene renderer and the kiosk overlay over a controller (GL).

Shared by the Qt window (:mod:`.window`), the headless loop used under the
supervisor, the rehearsal (:mod:`.rehearse`) and the tests.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


class KioskView:
    """Draws ``controller``'s model and overlay.

    Parameters
    ----------
    controller : KioskController
    show : bool
        A window (a GUI backend) rather than an off-screen canvas.
    app : str, optional
        VisPy backend.
    wait_for_data : bool
        Level-of-detail layers wait for their nodes (complete frames for rehearsals).
    face : str, optional
        Font face of the overlay (default: a CJK font from fontconfig).
    heartbeat : path, optional
        A file whose modification time is set after every frame (the supervisor's watchdog reads it).
    beat_on_draw : bool
        Count frames and beat on the canvas's draw events (a canvas embedded in a Qt window).
    """

    def __init__(self, controller, show: bool = False, app=None, wait_for_data: bool = False,
                 face: str | None = None, heartbeat: str | Path | None = None, beat_on_draw: bool = False,
                 **canvas_kwargs):
        from lenghu.viewer.app.kiosk.fonts import cjk_face
        from lenghu.viewer.render import SceneRenderer
        from lenghu.viewer.render.kiosk_overlay import KioskOverlay

        self.controller = controller
        self.renderer = SceneRenderer(controller.scene, size=controller.size, show=show, app=app,
                                      wait_for_data=wait_for_data, title="lenghu kiosk", **canvas_kwargs)
        self.canvas = self.renderer.canvas
        self.overlay = KioskOverlay(self.renderer, face if face is not None else cjk_face())
        self.heartbeat = Path(heartbeat) if heartbeat else None
        self.frames = 0
        if show or beat_on_draw:  # a window draws on its own: count and beat after each of its draws
            self.canvas.events.draw.connect(self._after_draw, position="last")
        self.update_overlay()

    def update_overlay(self) -> None:
        self.overlay.update(self.controller.overlay_state())

    def _after_draw(self, event=None) -> None:
        self.frames += 1
        if self.heartbeat is not None:
            beat(self.heartbeat)

    def render(self) -> np.ndarray:
        """One frame off screen: (height, width, 3) uint8 RGB (counts as a heartbeat)."""
        self.update_overlay()
        img = self.renderer.render()
        self._after_draw()
        return img

    def close(self) -> None:
        self.renderer.close()


def beat(path: Path) -> None:
    """Touch the heartbeat file (create it on the first beat)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        path.touch()


def run_headless_loop(view: KioskView, clock=time.monotonic, max_frames: int | None = None) -> int:
    """Play the show off screen in real time until the admin exit (or ``max_frames``): the supervised
    kiosk on a machine without a display, and the watchdog tests. Returns the frames drawn."""
    controller = view.controller
    target = 1.0 / controller.show.quality.target_fps
    start = clock()
    last = None
    while not controller.exit_requested and (max_frames is None or view.frames < max_frames):
        t0 = clock()
        controller.advance(t0 - start, None if last is None else last)
        view.render()
        last = clock() - t0
        if last < target:
            time.sleep(target - last)
    return view.frames
