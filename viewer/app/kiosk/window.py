"""The kiosk window (Qt, full screen): translates Qt/VisPy input into machine events, nothing else.

The VisPy canvas sits in a frameless :class:`KioskShell` (a ``QWidget``)
whose ``closeEvent`` is refused unless the admin chord was used, so
Alt-F4, a window manager's close button or Ctrl-Q leave it open; no dialog
is ever opened. Single touches reach the canvas as mouse events (Qt
synthesises them); a two-finger pinch arrives as a ``QPinchGesture``. An
exception in the frame loop is logged and ends the process with status 3,
so that the supervisor restarts a clean kiosk instead of leaving a broken one.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger(__name__)

QT_MODIFIERS = {"control": "ctrl", "alt": "alt", "shift": "shift", "meta": "meta"}


def vispy_key_event(event, t: float):
    """A machine :class:`Key` from a VisPy key event."""
    from lenghu.viewer.app.kiosk.machine import Key

    name = (event.key.name if event.key is not None else (event.text or "")).lower()
    mods = frozenset(QT_MODIFIERS[m.name.lower()] for m in event.modifiers if m.name.lower() in QT_MODIFIERS)
    return Key(t, name, mods)


class KioskWindow:
    """The full-screen kiosk: a controller, a view on a Qt canvas, a timer.

    Parameters
    ----------
    controller : KioskController
    fullscreen : bool
    heartbeat : path, optional
    backend : str
        VisPy Qt backend (``pyside6``).
    show : bool
        Show it now (False: build it hidden; :meth:`present` shows it).
    """

    def __init__(self, controller, fullscreen: bool = True, heartbeat=None, backend: str = "pyside6",
                 show: bool = True):
        import vispy

        vispy.use(app=backend)
        from vispy import app, gloo

        from lenghu.viewer.app.kiosk.view import KioskView

        qtw = __import__({"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5"}[backend] + ".QtWidgets",
                         fromlist=["QtWidgets"])
        core = __import__(qtw.__name__.replace("QtWidgets", "QtCore"), fromlist=["QtCore"])
        self.controller = controller
        self.view = KioskView(controller, show=False, app=backend, heartbeat=heartbeat, beat_on_draw=True)
        self.canvas = self.view.canvas
        self.renderer = self.view.renderer
        self.renderer.interactive = True
        self._clock0 = time.monotonic()
        self._draw_start = None
        self.last_frame_seconds = None
        self.exit_code = None
        self.shell = _make_shell(qtw, core, self)
        self.shell.layout().addWidget(self.canvas.native)
        self.canvas.native.grabGesture(core.Qt.GestureType.PinchGesture)
        self.canvas.native.installEventFilter(self.shell)
        c = self.canvas.events
        c.mouse_press.connect(lambda e: self._pointer("down", e))
        c.mouse_move.connect(lambda e: self._pointer("move", e))
        c.mouse_release.connect(lambda e: self._pointer("up", e))
        c.mouse_wheel.connect(self._wheel)
        c.key_press.connect(self._key)
        c.draw.connect(self._draw_started, position="first")
        c.draw.connect(self._draw_ended, position="last")
        self._finish = gloo.gl.glFinish
        target = controller.show.quality.target_fps
        self.timer = app.Timer(1.0 / (2.0 * target), connect=self._tick, start=True)
        self.shell.setWindowTitle("lenghu kiosk")
        self.shell.resize(*controller.size)
        self.shell.setCursor(core.Qt.CursorShape.BlankCursor)
        self.fullscreen = fullscreen
        if show:
            self.present()

    def present(self, heartbeat=None) -> None:
        """Show the window (a supervisor's standby builds it hidden, then presents it when it takes over);
        the clock starts now."""
        from pathlib import Path

        if heartbeat is not None:
            self.view.heartbeat = Path(heartbeat)
        self._clock0 = time.monotonic()
        if self.fullscreen:
            self.shell.showFullScreen()
        else:
            self.shell.show()

    # ------------------------------------------------------------------ clock and frames
    def now(self) -> float:
        return time.monotonic() - self._clock0

    def _draw_started(self, event) -> None:
        self._draw_start = time.perf_counter()

    def _draw_ended(self, event) -> None:
        self._finish()  # the frame's GL work is done: its real cost, for adaptive quality
        if self._draw_start is not None:
            self.last_frame_seconds = time.perf_counter() - self._draw_start

    def _tick(self, event) -> None:
        try:
            c = self.controller
            size = tuple(self.canvas.size)
            if size != tuple(c.size):
                c.size = size
                c.machine.resize(size)
            c.advance(self.now(), self.last_frame_seconds)
            self.last_frame_seconds = None
            self.view.update_overlay()
            self.canvas.update()
            if c.exit_requested:
                self.quit(0)
        except Exception:
            log.exception("kiosk frame failed: exiting for the supervisor to restart it")
            os._exit(3)

    # ------------------------------------------------------------------ input
    def _feed(self, event) -> None:
        try:
            self.controller.handle(event)  # an exit request is acted on by the next tick, outside Qt's handler
        except Exception:
            log.exception("kiosk input failed: exiting for the supervisor to restart it")
            os._exit(3)

    def _pointer(self, kind: str, e) -> None:
        from lenghu.viewer.app.kiosk import machine as m

        cls = {"down": m.PointerDown, "move": m.PointerMove, "up": m.PointerUp}[kind]
        self._feed(cls(self.now(), float(e.pos[0]), float(e.pos[1]), 0))

    def _wheel(self, e) -> None:
        from lenghu.viewer.app.kiosk.machine import Wheel

        self._feed(Wheel(self.now(), float(e.pos[0]), float(e.pos[1]), float(e.delta[1])))

    def _key(self, e) -> None:
        self._feed(vispy_key_event(e, self.now()))

    def pinch(self, scale: float) -> None:
        from lenghu.viewer.app.kiosk.machine import Pinch

        self._feed(Pinch(self.now(), float(scale)))

    def close_requested(self) -> bool:
        """The window system asks to close: refused unless the admin chord was used."""
        from lenghu.viewer.app.kiosk.machine import CloseRequest

        self.controller.handle(CloseRequest(self.now()))
        return self.controller.exit_requested

    def quit(self, code: int = 0) -> None:
        from vispy import app

        self.exit_code = code
        self.timer.stop()
        # no shell.close()/hide(): hiding the GL widget here aborts PySide6 ("none_dealloc"); the
        # event loop ends and `lenghu kiosk` leaves with os._exit, which takes the window away
        app.quit()

    def run(self) -> int:
        from vispy import app

        app.run()
        return self.exit_code or 0


def _make_shell(qtw, core, window: KioskWindow):
    """A frameless QWidget that refuses to close except through the admin chord and forwards pinches."""

    class KioskShell(qtw.QWidget):
        def __init__(self):
            super().__init__()
            self.setWindowFlag(core.Qt.WindowType.FramelessWindowHint, True)
            layout = qtw.QVBoxLayout(self)
            layout.setContentsMargins(0, 0, 0, 0)
            self.refused = 0

        def closeEvent(self, event):  # noqa: N802 (Qt's name)
            if window.exit_code is not None or window.close_requested():
                event.accept()
            else:
                self.refused += 1
                event.ignore()

        def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
            if event.type() == core.QEvent.Type.Gesture:
                pinch = event.gesture(core.Qt.GestureType.PinchGesture)
                if pinch is not None:
                    window.pinch(pinch.scaleFactor())
                    return True
            return False

    return KioskShell()
