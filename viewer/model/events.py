"""Small events for the viewer model: callbacks on change, no GUI toolkit.

An :class:`Emitter` holds callbacks; :class:`Evented` objects declare
:class:`Prop` attributes, and assigning a new value to one emits
``obj.events[name]`` and then ``obj.events.changed`` with an :class:`Event`.

>>> class Thing(Evented):
...     size = Prop(1.0, float)
>>> t = Thing()
>>> seen = []
>>> _ = t.events.size.connect(lambda e: seen.append(e.value))
>>> t.size = 3
>>> seen
[3.0]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """What changed: ``source`` (the object), ``name`` (the property or event) and ``value``."""

    source: Any
    name: str
    value: Any = None
    old: Any = None


class Emitter:
    """A list of callbacks called with one :class:`Event`."""

    def __init__(self, source: Any = None, name: str = ""):
        self.source = source
        self.name = name
        self._callbacks: list[Callable[[Event], Any]] = []
        self.blocked = False

    def connect(self, callback: Callable[[Event], Any]) -> Callable[[Event], Any]:
        """Call ``callback(event)`` on every emission; returns it (usable as a decorator)."""
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[[Event], Any] | None = None) -> None:
        """Remove one callback, or all of them."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    def __len__(self) -> int:
        return len(self._callbacks)

    def __call__(self, value: Any = None, old: Any = None, name: str | None = None) -> Event:
        event = Event(self.source, name or self.name, value, old)
        if not self.blocked:
            for callback in list(self._callbacks):
                callback(event)
        return event


class EventGroup:
    """Named emitters of one object; ``group.changed`` fires after every other one."""

    def __init__(self, source: Any, names: tuple[str, ...] = ()):
        self._source = source
        self._emitters: dict[str, Emitter] = {}
        for name in ("changed",) + tuple(names):
            self.add(name)

    def add(self, name: str) -> Emitter:
        if name not in self._emitters:
            self._emitters[name] = Emitter(self._source, name)
        return self._emitters[name]

    def __getattr__(self, name: str) -> Emitter:
        emitters = self.__dict__.get("_emitters", {})
        if name in emitters:
            return emitters[name]
        raise AttributeError(name)

    def __getitem__(self, name: str) -> Emitter:
        return self._emitters[name]

    def __contains__(self, name: str) -> bool:
        return name in self._emitters

    def emit(self, name: str, value: Any = None, old: Any = None) -> None:
        """Emit ``name`` then ``changed`` (with the same name in the event)."""
        self._emitters[name](value, old)
        if name != "changed":
            self._emitters["changed"](value, old, name=name)


class Prop:
    """An attribute that validates what is assigned and emits an event when the value changes.

    Parameters
    ----------
    default : object
        Initial value (copied through ``convert``).
    convert : callable, optional
        Validates and converts an assigned value; raises ValueError/TypeError when bad.
    """

    def __init__(self, default: Any = None, convert: Callable[[Any], Any] | None = None):
        self.default = default
        self.convert = convert
        self.name = ""

    def __set_name__(self, owner, name):
        self.name = name
        props = dict(getattr(owner, "_props", {}))
        props[name] = self
        owner._props = props

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return obj.__dict__.get("_v_" + self.name, self.default)

    def __set__(self, obj, value):
        if self.convert is not None and value is not None:
            value = self.convert(value)
        old = obj.__dict__.get("_v_" + self.name, self.default)
        obj.__dict__["_v_" + self.name] = value
        if not _same(old, value):
            obj.events.emit(self.name, value, old)


def _same(a: Any, b: Any) -> bool:
    try:
        result = a == b
        if isinstance(result, bool):
            return result
        import numpy as np

        return bool(np.all(result)) and np.shape(a) == np.shape(b)
    except Exception:  # incomparable values count as different
        return False


class Evented:
    """Base class: ``self.events`` has one emitter per :class:`Prop`, plus ``changed``."""

    _props: dict[str, Prop] = {}

    def __init__(self, **values: Any):
        self.events = EventGroup(self, tuple(self._props))
        for name, prop in self._props.items():
            value = values.pop(name, prop.default)
            if prop.convert is not None and value is not None:
                value = prop.convert(value)
            self.__dict__["_v_" + name] = value
        if values:
            raise TypeError(f"{type(self).__name__}: unknown argument(s) {', '.join(sorted(values))}")

    def props(self) -> dict[str, Any]:
        """Current values of every property."""
        return {name: getattr(self, name) for name in self._props}


def choice(*allowed: str) -> Callable[[Any], str]:
    """A converter that accepts only one of ``allowed`` (case-insensitive)."""

    def convert(value: Any) -> str:
        text = str(value).lower()
        if text not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return text

    return convert


def positive(value: Any) -> float:
    """A converter for a float > 0."""
    x = float(value)
    if not x > 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return x


def unit_interval(value: Any) -> float:
    """A converter for a float in [0, 1]."""
    x = float(value)
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"must be in [0, 1], got {value!r}")
    return x


def optional_range(value: Any) -> tuple[float, float]:
    """A converter for a (low, high) pair with low < high."""
    lo, hi = (float(v) for v in value)
    if not hi > lo:
        raise ValueError(f"need low < high, got {value!r}")
    return (lo, hi)
