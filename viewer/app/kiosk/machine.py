"""The kiosk's input model: a pure-Python state machine, events in, state and requests out (no GL, no Qt).

Frontends (the Qt window, the headless rehearsal, tests) translate what they
receive into the small :data:`Event` types below, stamped with a time in
seconds from a clock they own, and pass them to :meth:`KioskMachine.handle`;
:meth:`KioskMachine.tick` is called once a frame. Both return a list of
:data:`Request` objects (change scene, switch language, orbit, zoom, pick a
structure, start/stop attract mode, exit, redraw) that the controller applies
to the model. Because time only enters through the events, tests drive idle
timing with a fake clock and run in microseconds.

Gestures
--------
- one pointer: a press and release within ``tap_px`` pixels and ``tap_seconds``
  is a tap (on a button: that button; elsewhere: a pick); otherwise a drag,
  which orbits the camera (``orbit_deg_per_px``);
- two pointers: pinch (the change in their distance zooms);
- wheel: zoom (``wheel_factor`` per notch); a :class:`Pinch` event (a touch
  gesture the toolkit recognised) zooms by its scale;
- keys: Left/Right or PageUp/PageDown previous/next scene, L language,
  arrow Up/Down orbit up/down, + / - zoom, Space toggles attract mode.
  Esc, Alt-F4 and Ctrl-Q do nothing; only the show's admin chord exits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lenghu.viewer.app.kiosk.show import LANGUAGES, Chord


# ---------------------------------------------------------------------- events in
@dataclass(frozen=True)
class PointerDown:
    t: float
    x: float
    y: float
    id: int = 0


@dataclass(frozen=True)
class PointerMove:
    t: float
    x: float
    y: float
    id: int = 0


@dataclass(frozen=True)
class PointerUp:
    t: float
    x: float
    y: float
    id: int = 0


@dataclass(frozen=True)
class Wheel:
    """``delta`` in notches, positive away from the user (zoom in)."""

    t: float
    x: float
    y: float
    delta: float


@dataclass(frozen=True)
class Pinch:
    """A recognised pinch gesture: ``scale`` > 1 spreads the fingers (zoom in)."""

    t: float
    scale: float


@dataclass(frozen=True)
class Key:
    """A key press: ``key`` a lower-case name (``left``, ``escape``, ``f4``, ``q`` ...)."""

    t: float
    key: str
    modifiers: frozenset = frozenset()


@dataclass(frozen=True)
class CloseRequest:
    """The window system asks the window to close (Alt-F4, a close button): always refused."""

    t: float


Event = PointerDown | PointerMove | PointerUp | Wheel | Pinch | Key | CloseRequest


# ---------------------------------------------------------------------- requests out
@dataclass(frozen=True)
class GoTo:
    scene: int
    reason: str  # next, previous, attract


@dataclass(frozen=True)
class SetLanguage:
    language: str


@dataclass(frozen=True)
class Orbit:
    """Degrees of azimuth and elevation."""

    d_azimuth: float
    d_elevation: float


@dataclass(frozen=True)
class Zoom:
    """``factor`` > 1 comes closer."""

    factor: float


@dataclass(frozen=True)
class Pick:
    """A tap at pixel (x, y) outside the buttons: show the label of what is there."""

    x: float
    y: float


@dataclass(frozen=True)
class Attract:
    on: bool


@dataclass(frozen=True)
class Interaction:
    """One visitor interaction (for the anonymous usage log): drag, zoom, tap, button, key."""

    kind: str


@dataclass(frozen=True)
class Exit:
    pass


@dataclass(frozen=True)
class Redraw:
    pass


Request = GoTo | SetLanguage | Orbit | Zoom | Pick | Attract | Interaction | Exit | Redraw

BUTTONS = ("previous", "next", "language")


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x <= self.x + self.w and self.y <= y <= self.y + self.h

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)


def button_layout(size: tuple[int, int]) -> dict[str, Rect]:
    """Large on-screen buttons (pixels, top-left origin): previous bottom-left, next bottom-right, language top-right.

    Each is about 12% of the width and 15% of the height, and at least 96 px on a screen large enough.
    """
    w, h = size
    # at least 96 px (about 2.5 cm on a 24-inch full-HD screen), but never overlapping on tiny previews
    bw, bh = max(0.12 * w, min(96.0, 0.25 * w)), max(0.15 * h, min(96.0, 0.28 * h))
    m = max(12.0, 0.02 * h)
    return {"previous": Rect(m, h - bh - m, bw, bh), "next": Rect(w - bw - m, h - bh - m, bw, bh),
            "language": Rect(w - bw - m, m, bw, 0.7 * bh)}


@dataclass
class KioskState:
    """What the machine knows: scene, language, attract mode, and time bookkeeping (seconds on the caller's clock)."""

    scene: int = 0
    language: str = "zh"
    attract: bool = True
    scene_started: float = 0.0
    last_input: float = 0.0
    now: float = 0.0
    exiting: bool = False


@dataclass
class _Pointer:
    x0: float
    y0: float
    t0: float
    x: float
    y: float
    dragging: bool = False


@dataclass
class KioskMachine:
    """The state machine (see the module docstring).

    Parameters
    ----------
    durations : list of float
        Seconds each scene plays in attract mode.
    size : (width, height)
        Screen size in pixels (for the buttons).
    idle_seconds : float
        Attract mode starts after this long without input.
    chord : Chord
        The admin exit chord.
    language : str
        Start language, and the language attract mode returns to.
    start_scene : int
    now : float
        Time at start.
    """

    durations: list[float]
    size: tuple[int, int]
    idle_seconds: float
    chord: Chord
    language: str = "zh"
    start_scene: int = 0
    now: float = 0.0
    tap_px: float = 14.0
    tap_seconds: float = 0.8
    orbit_deg_per_px: float = 0.3
    wheel_factor: float = 1.15
    state: KioskState = field(init=False)
    buttons: dict[str, Rect] = field(init=False)
    _pointers: dict[int, _Pointer] = field(init=False, default_factory=dict)
    _pinch_distance: float | None = field(init=False, default=None)

    def __post_init__(self):
        if not self.durations:
            raise ValueError("a show needs at least one scene")
        if self.language not in LANGUAGES:
            raise ValueError(f"unknown language {self.language!r}")
        start = int(self.start_scene) % len(self.durations)
        self.state = KioskState(scene=start, language=self.language, attract=True, scene_started=self.now,
                                last_input=self.now, now=self.now)
        self.buttons = button_layout(self.size)

    # ------------------------------------------------------------------ public
    def resize(self, size: tuple[int, int]) -> None:
        self.size = size
        self.buttons = button_layout(size)

    def handle(self, event: Event) -> list[Request]:
        """Apply one input event; returns the requests for the controller."""
        s = self.state
        s.now = max(s.now, event.t)
        if isinstance(event, CloseRequest):
            return []  # refused: only the admin chord exits
        if isinstance(event, PointerMove) and event.id not in self._pointers:
            return []  # a hover (a mouse without a button) is not an interaction
        out: list[Request] = []
        s.last_input = event.t
        if s.attract:
            s.attract = False
            out.append(Attract(False))
        if isinstance(event, PointerDown):
            self._pointers[event.id] = _Pointer(event.x, event.y, event.t, event.x, event.y)
            if len(self._pointers) == 2:
                self._pinch_distance = self._spread()
        elif isinstance(event, PointerMove):
            out += self._move(event)
        elif isinstance(event, PointerUp):
            out += self._release(event)
        elif isinstance(event, Wheel):
            if event.delta:
                out += [Zoom(self.wheel_factor ** event.delta), Interaction("zoom")]
        elif isinstance(event, Pinch):
            if event.scale > 0 and math.isfinite(event.scale):
                out += [Zoom(event.scale), Interaction("zoom")]
        elif isinstance(event, Key):
            out += self._key(event)
        if out:
            out.append(Redraw())
        return out

    def tick(self, now: float) -> list[Request]:
        """Advance the clock: attract mode after ``idle_seconds``; in attract mode, the next scene after its duration."""
        s = self.state
        s.now = max(s.now, now)
        out: list[Request] = []
        if not s.attract and not self._pointers and now - s.last_input >= self.idle_seconds:
            s.attract = True
            s.scene_started = now
            out.append(Attract(True))
            if s.language != self.language:
                s.language = self.language
                out.append(SetLanguage(s.language))
        if s.attract and now - s.scene_started >= self.durations[s.scene]:
            out += self._go((s.scene + 1) % len(self.durations), "attract")
        if out:
            out.append(Redraw())
        return out

    @property
    def idle_for(self) -> float:
        return self.state.now - self.state.last_input

    # ------------------------------------------------------------------ internals
    def _go(self, scene: int, reason: str) -> list[Request]:
        s = self.state
        s.scene = scene % len(self.durations)
        s.scene_started = s.now
        return [GoTo(s.scene, reason)]

    def _spread(self) -> float:
        a, b = list(self._pointers.values())[:2]
        return math.hypot(a.x - b.x, a.y - b.y)

    def _move(self, e: PointerMove) -> list[Request]:
        p = self._pointers[e.id]
        dx, dy = e.x - p.x, e.y - p.y
        p.x, p.y = e.x, e.y
        if len(self._pointers) >= 2:
            d = self._spread()
            out = []
            if self._pinch_distance and d > 0:
                out = [Zoom(d / self._pinch_distance)]
            self._pinch_distance = d
            for q in self._pointers.values():
                q.dragging = True  # no taps out of a pinch
            return out
        if not p.dragging:
            if math.hypot(e.x - p.x0, e.y - p.y0) <= self.tap_px:
                p.x, p.y = p.x0, p.y0  # still a tap: the drag, if it becomes one, starts from the press
                return []
            p.dragging = True
            dx, dy = e.x - p.x0, e.y - p.y0
        if dx or dy:
            return [Orbit(-self.orbit_deg_per_px * dx, self.orbit_deg_per_px * dy)]
        return []

    def _release(self, e: PointerUp) -> list[Request]:
        p = self._pointers.pop(e.id, None)
        if p is None:
            return []
        pinching = self._pinch_distance is not None
        if len(self._pointers) < 2:
            self._pinch_distance = None
        if pinching:
            return [Interaction("zoom")] if not self._pointers else []
        moved = math.hypot(e.x - p.x0, e.y - p.y0)
        if p.dragging or moved > self.tap_px or e.t - p.t0 > self.tap_seconds:
            return [Interaction("drag")]
        for name, rect in self.buttons.items():
            if rect.contains(p.x0, p.y0) and rect.contains(e.x, e.y):
                return self.press(name)
        return [Pick(e.x, e.y), Interaction("tap")]

    def press(self, button: str) -> list[Request]:
        """A button: ``previous``, ``next`` or ``language``."""
        s = self.state
        if button == "next":
            return self._go(s.scene + 1, "next") + [Interaction("button")]
        if button == "previous":
            return self._go(s.scene - 1, "previous") + [Interaction("button")]
        if button == "language":
            s.language = LANGUAGES[(LANGUAGES.index(s.language) + 1) % len(LANGUAGES)]
            return [SetLanguage(s.language), Interaction("button")]
        raise ValueError(f"unknown button {button!r} ({', '.join(BUTTONS)})")

    def _key(self, e: Key) -> list[Request]:
        key = e.key.lower()
        mods = frozenset(m.lower() for m in e.modifiers)
        if key == self.chord.key and mods == self.chord.modifiers:
            self.state.exiting = True
            return [Exit()]
        if mods & {"ctrl", "alt", "meta"}:
            return []  # Alt-F4, Ctrl-Q, Ctrl-W and the like: nothing
        if key in ("right", "pagedown", "n"):
            return self.press("next")[:-1] + [Interaction("key")]
        if key in ("left", "pageup", "p"):
            return self.press("previous")[:-1] + [Interaction("key")]
        if key == "l":
            return self.press("language")[:-1] + [Interaction("key")]
        if key in ("up", "down"):
            return [Orbit(0.0, 5.0 if key == "up" else -5.0), Interaction("key")]
        if key in ("+", "=", "plus", "equal"):
            return [Zoom(1.25), Interaction("key")]
        if key in ("-", "minus"):
            return [Zoom(0.8), Interaction("key")]
        if key == "space":
            self.state.attract = True
            self.state.scene_started = self.state.now
            return [Attract(True), Interaction("key")]
        return []  # Escape, F4, Q and every other key: nothing
