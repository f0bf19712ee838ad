"""Scripted input events for rehearsals and tests: a JSON Lines file (no GL).

One JSON object a line; blank lines and lines starting with ``#`` are
ignored. ``t`` is seconds from the start of the show; pixel positions are
in the rehearsal's picture (top-left origin). Types:

====================  ===========================================================================
``tap``               ``x``, ``y``: a touch and release 0.1 s later
``down``/``move``/``up``  ``x``, ``y``, optional ``id`` (a finger; default 0)
``drag``              ``from`` [x, y], ``to`` [x, y], ``seconds`` (default 1): one finger, 10 steps
``pinch``             ``center`` [x, y], ``from`` and ``to`` (finger spread, px), ``seconds`` (default 1)
``wheel``             ``x``, ``y``, ``delta`` (notches; > 0 zooms in)
``key``               ``key`` (``right``, ``l``, ``escape`` ...), optional ``modifiers`` (list of
                      ``ctrl``/``alt``/``shift``/``meta``)
``button``            ``name``: ``previous``, ``next`` or ``language`` (a tap on that button)
``structure``         ``index``: a tap on the index-th structure of the scene shown (0: most massive),
                      where it is on screen at that moment
``close``             the window system asks to close (refused)
====================  ===========================================================================

Example::

    {"t": 2.0, "type": "drag", "from": [640, 360], "to": [900, 360], "seconds": 1.5}
    {"t": 5.0, "type": "button", "name": "language"}
    {"t": 7.0, "type": "structure", "index": 0}
    {"t": 9.0, "type": "pinch", "center": [640, 360], "from": 100, "to": 300}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lenghu.errors import ConfigError
from lenghu.viewer.app.kiosk import machine as m


class EventsFileError(ConfigError):
    """An events file line is invalid (the message names the file and line)."""


@dataclass(frozen=True)
class Scripted:
    """An event at ``t`` that needs the controller to resolve (a button or a structure tap)."""

    t: float
    kind: str
    value: object


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _xy(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(_num(x) for x in v)


def parse_events(lines, source: str = "<events>") -> list:
    """Events (machine events and :class:`Scripted`) from JSON Lines text lines, sorted by time."""
    out = []
    for n, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue

        def fail(problem: str):
            raise EventsFileError(f"{source}:{n}", problem)

        try:
            e = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"not JSON: {exc.msg}")
        if not isinstance(e, dict):
            fail("each line must be a JSON object")
        t, kind = e.get("t"), e.get("type")
        if not _num(t) or t < 0:
            fail(f"t must be a number of seconds >= 0, got {t!r}")
        t = float(t)

        def need(key, check, what):
            if key not in e or not check(e[key]):
                fail(f"{kind}: {key} must be {what}, got {e.get(key)!r}")
            return e[key]

        if kind == "tap":
            x, y = need("x", _num, "a number"), need("y", _num, "a number")
            out += [m.PointerDown(t, x, y), m.PointerUp(t + 0.1, x, y)]
        elif kind in ("down", "move", "up"):
            x, y = need("x", _num, "a number"), need("y", _num, "a number")
            pid = int(e.get("id", 0))
            cls = {"down": m.PointerDown, "move": m.PointerMove, "up": m.PointerUp}[kind]
            out.append(cls(t, x, y, pid))
        elif kind == "drag":
            (x0, y0), (x1, y1) = need("from", _xy, "[x, y]"), need("to", _xy, "[x, y]")
            secs = float(e.get("seconds", 1.0))
            out.append(m.PointerDown(t, x0, y0))
            for k in range(1, 11):
                f = k / 10
                out.append(m.PointerMove(t + f * secs, x0 + f * (x1 - x0), y0 + f * (y1 - y0)))
            out.append(m.PointerUp(t + secs + 0.01, x1, y1))
        elif kind == "pinch":
            cx, cy = need("center", _xy, "[x, y]")
            d0, d1 = need("from", _num, "a spread in px"), need("to", _num, "a spread in px")
            secs = float(e.get("seconds", 1.0))
            out += [m.PointerDown(t, cx - d0 / 2, cy, 0), m.PointerDown(t, cx + d0 / 2, cy, 1)]
            for k in range(1, 11):
                d = d0 + k / 10 * (d1 - d0)
                tk = t + k / 10 * secs
                out += [m.PointerMove(tk, cx - d / 2, cy, 0), m.PointerMove(tk, cx + d / 2, cy, 1)]
            out += [m.PointerUp(t + secs + 0.01, cx - d1 / 2, cy, 0), m.PointerUp(t + secs + 0.01, cx + d1 / 2, cy, 1)]
        elif kind == "wheel":
            out.append(m.Wheel(t, need("x", _num, "a number"), need("y", _num, "a number"),
                               need("delta", _num, "a number")))
        elif kind == "key":
            key = need("key", lambda v: isinstance(v, str) and v, "a key name")
            mods = e.get("modifiers", [])
            if not isinstance(mods, list) or not all(x in ("ctrl", "alt", "shift", "meta") for x in mods):
                fail(f"key: modifiers must be a list of ctrl/alt/shift/meta, got {mods!r}")
            out.append(m.Key(t, key.lower(), frozenset(mods)))
        elif kind == "button":
            out.append(Scripted(t, "button", need("name", lambda v: v in m.BUTTONS, "previous, next or language")))
        elif kind == "structure":
            out.append(Scripted(t, "structure", int(need("index", lambda v: isinstance(v, int) and v >= 0,
                                                         "an integer >= 0"))))
        elif kind == "close":
            out.append(m.CloseRequest(t))
        else:
            fail(f"unknown type {kind!r} (tap, down, move, up, drag, pinch, wheel, key, button, structure, close)")
    out.sort(key=lambda ev: ev.t)  # stable: same-time events keep their order
    return out


def load_events(path: str | Path) -> list:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EventsFileError(path, f"cannot read the events file: {exc}") from exc
    return parse_events(text.splitlines(), str(path))


def resolve(event, controller) -> list:
    """Machine events for ``event`` now (a Scripted button/structure tap becomes a down and an up)."""
    if not isinstance(event, Scripted):
        return [event]
    if event.kind == "button":
        x, y = controller.machine.buttons[event.value].center
    else:
        from lenghu.viewer.model import project

        structures = controller.current.structures
        if event.value >= len(structures):
            return []
        x, y = project([structures[event.value].center], controller.scene.camera, controller.size)[0]
        if not (math.isfinite(x) and math.isfinite(y)):
            return []
    return [m.PointerDown(event.t, float(x), float(y)), m.PointerUp(event.t + 0.05, float(x), float(y))]
