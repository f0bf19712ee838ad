"""Tours: camera keyframes in time, interpolated smoothly (C1 cubic Hermite).

A tour file is JSON::

    {"fps": 30,
     "keyframes": [
        {"t": 0,  "camera": {"type": "turntable", "azimuth": 0,  "distance": 200, ...},
         "caption": "The cosmic web | 宇宙网"},
        {"t": 10, "camera": {"type": "turntable", "azimuth": 180, "distance": 80}, "series_time": 2}
     ]}

``t`` is seconds. Camera keys missing from a keyframe are taken from the
previous one. Lengths named in the camera's ``log_keys`` (a turntable's
``distance``) are interpolated in log, angles are unwrapped first (so 350 ->
10 turns 20 degrees), and every number follows a Catmull-Rom style cubic with
zero speed at the first and last keyframes (the camera eases in and out).
``series_time`` (optional) drives a time series (snapshot index, fractional).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenghu.viewer.model.cameras import CAMERAS, Camera, camera_from_dict


@dataclass
class Keyframe:
    """One keyframe: a time in seconds, a camera state, and optionally a caption and a time-series time."""

    t: float
    camera: dict[str, Any]
    caption: str | None = None
    series_time: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.t, "camera": self.camera}
        if self.caption is not None:
            out["caption"] = self.caption
        if self.series_time is not None:
            out["series_time"] = self.series_time
        return out


@dataclass
class TourState:
    """What a tour says at one moment."""

    camera: Camera
    caption: str | None
    series_time: float | None


@dataclass
class Tour:
    """Keyframes (sorted by time) and a frame rate."""

    keyframes: list[Keyframe] = field(default_factory=list)
    fps: float = 30.0

    def __post_init__(self):
        if not self.keyframes:
            raise ValueError("a tour needs at least one keyframe")
        self.keyframes = sorted(self.keyframes, key=lambda k: k.t)
        kinds = {k.camera.get("type", "turntable") for k in self.keyframes}
        if len(kinds) != 1:
            raise ValueError(f"all keyframes of a tour need the same camera type, got {sorted(kinds)}")
        self.kind = kinds.pop()
        if self.kind not in CAMERAS:
            raise ValueError(f"unknown camera type {self.kind!r}")
        if not self.fps > 0:
            raise ValueError("fps must be > 0")
        # Fill missing keys from the previous keyframe (or the camera's defaults).
        state = CAMERAS[self.kind]().to_dict()
        for key in self.keyframes:
            state = {**state, **key.camera}
            key.camera = dict(state)
        self._times = np.array([k.t for k in self.keyframes], dtype=float)
        if np.any(np.diff(self._times) <= 0):
            raise ValueError("keyframe times must be distinct")

    @property
    def duration(self) -> float:
        return float(self._times[-1] - self._times[0])

    @property
    def frame_count(self) -> int:
        return max(1, int(round(self.duration * self.fps)) + 1)

    def frame_times(self) -> np.ndarray:
        """Times of every frame of the movie, first to last keyframe inclusive."""
        return self._times[0] + np.arange(self.frame_count) / self.fps

    def state_at(self, t: float) -> TourState:
        """Camera, caption and series time at time ``t`` (clamped to the tour)."""
        cls = CAMERAS[self.kind]
        keys = self.keyframes
        times = self._times
        t = float(min(max(t, times[0]), times[-1]))
        state: dict[str, Any] = {"type": self.kind}
        for name, value in keys[0].camera.items():
            if name == "type":
                continue
            values = np.array([np.atleast_1d(np.asarray(k.camera[name], dtype=float)) for k in keys])
            if name in cls.angle_keys:
                values = np.rad2deg(np.unwrap(np.deg2rad(values), axis=0))
            if name in cls.log_keys:
                values = np.log(np.maximum(values, 1e-300))
            v = hermite(times, values, t)
            if name in cls.log_keys:
                v = np.exp(v)
            state[name] = v.tolist() if np.ndim(value) else float(v[0])
        index = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(keys) - 1))
        caption = next((k.caption for k in reversed(keys[: index + 1]) if k.caption is not None), None)
        series = [k.series_time for k in keys]
        if all(s is not None for s in series):
            series_time: float | None = float(np.interp(t, times, np.asarray(series, dtype=float)))
        else:
            series_time = None
        return TourState(camera_from_dict(state), caption, series_time)

    def camera_at(self, t: float) -> Camera:
        return self.state_at(t).camera

    def to_dict(self) -> dict[str, Any]:
        return {"fps": self.fps, "keyframes": [k.to_dict() for k in self.keyframes]}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tour":
        frames = data.get("keyframes")
        if not isinstance(frames, list):
            raise ValueError("a tour needs a 'keyframes' list")
        keys = []
        for i, k in enumerate(frames):
            if "t" not in k or "camera" not in k:
                raise ValueError(f"keyframe {i} needs 't' and 'camera'")
            keys.append(Keyframe(float(k["t"]), dict(k["camera"]), k.get("caption"), k.get("series_time")))
        return cls(keys, float(data.get("fps", 30.0)))

    @classmethod
    def load(cls, path: str | Path) -> "Tour":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def orbit(cls, camera: Camera, seconds: float = 6.0, degrees: float = 360.0, fps: float = 30.0,
              series_times: tuple[float, float] | None = None) -> "Tour":
        """A turntable orbit of ``degrees`` about the camera's centre (a default movie)."""
        start = camera.to_dict()
        if start["type"] != "turntable":
            raise ValueError("an orbit needs a turntable camera")
        n = max(2, int(math.ceil(abs(degrees) / 90.0)) + 1)
        keys = []
        for i in range(n):
            f = i / (n - 1)
            cam = dict(start, azimuth=start["azimuth"] + degrees * f)
            st = None if series_times is None else series_times[0] + f * (series_times[1] - series_times[0])
            keys.append(Keyframe(seconds * f, cam, None, st))
        return cls(keys, fps)


def hermite(times: np.ndarray, values: np.ndarray, t: float) -> np.ndarray:
    """Cubic Hermite interpolation at ``t`` through (times, values) with Catmull-Rom tangents.

    ``values`` has shape (K, d). Tangents at the ends are zero (ease in and out),
    inner tangents are centred differences, so the curve and its first
    derivative are continuous.
    """
    k = len(times)
    if k == 1:
        return values[0].astype(float)
    i = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, k - 2))
    t0, t1 = times[i], times[i + 1]
    h = t1 - t0
    s = (t - t0) / h

    def tangent(j):
        if j == 0 or j == k - 1:
            return np.zeros_like(values[j], dtype=float)
        return (values[j + 1] - values[j - 1]) / (times[j + 1] - times[j - 1])

    m0, m1 = tangent(i) * h, tangent(i + 1) * h
    h00 = 2 * s**3 - 3 * s**2 + 1
    h10 = s**3 - 2 * s**2 + s
    h01 = -2 * s**3 + 3 * s**2
    h11 = s**3 - s**2
    return h00 * values[i] + h10 * m0 + h01 * values[i + 1] + h11 * m1
