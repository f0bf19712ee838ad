"""Cameras as plain data: a turntable, a fly-through and a 2-D pan/zoom camera.

Every camera gives a view matrix and a projection matrix (4x4, numpy, column
vectors: ``clip = P @ V @ [x, y, z, 1]``, OpenGL conventions: the camera looks
down its -z axis, clip space is [-1, 1]^3), and its state as a dict
(``to_dict``/``from_dict``, JSON through ``to_json``/``camera_from_json``).
Angles are degrees, lengths are in the scene's units. The world's up is +z.

Nothing here imports a GL library; the renderer reads the matrices.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from lenghu.viewer.model.events import Evented, Prop, positive


def _vec3(value: Any) -> tuple[float, float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size != 3 or not np.all(np.isfinite(arr)):
        raise ValueError(f"need 3 finite numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _vec2(value: Any) -> tuple[float, float]:
    arr = np.asarray(value, dtype=float).ravel()
    if arr.size != 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"need 2 finite numbers, got {value!r}")
    return (float(arr[0]), float(arr[1]))


def _fov(value: Any) -> float:
    x = float(value)
    if not 0.0 <= x < 179.0:
        raise ValueError(f"field of view must be in [0, 179) degrees, got {value!r}")
    return x


def _finite(value: Any) -> float:
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"need a finite number, got {value!r}")
    return x


def look_at(eye, target, up) -> np.ndarray:
    """The view matrix of a camera at ``eye`` looking at ``target`` (OpenGL's gluLookAt)."""
    eye, target, up = (np.asarray(v, dtype=float) for v in (eye, target, up))
    f = target - eye
    f /= np.linalg.norm(f)
    s = np.cross(f, up)
    if np.linalg.norm(s) < 1e-12:  # looking along up: pick another up
        s = np.cross(f, [0.0, 1.0, 0.0] if abs(f[1]) < 0.9 else [1.0, 0.0, 0.0])
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def perspective(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """OpenGL perspective projection; ``fov_deg`` is the vertical field of view."""
    f = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    m = np.zeros((4, 4))
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2.0 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def orthographic(height: float, aspect: float, near: float, far: float) -> np.ndarray:
    """OpenGL orthographic projection showing ``height`` units vertically."""
    h = height / 2.0
    w = h * aspect
    m = np.eye(4)
    m[0, 0] = 1.0 / w
    m[1, 1] = 1.0 / h
    m[2, 2] = -2.0 / (far - near)
    m[2, 3] = -(far + near) / (far - near)
    return m


class Camera(Evented):
    """Base class. Subclasses define ``eye``, ``view_matrix`` and ``_projection``."""

    kind = "camera"
    #: State keys that are angles (unwrapped before interpolation) and lengths (interpolated in log).
    angle_keys: tuple[str, ...] = ()
    log_keys: tuple[str, ...] = ()

    @property
    def eye(self) -> np.ndarray:
        raise NotImplementedError

    def view_matrix(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def is_perspective(self) -> bool:
        return getattr(self, "fov", 0.0) > 0

    def projection_matrix(self, aspect: float, near: float | None = None, far: float | None = None) -> np.ndarray:
        """The projection for a viewport of width/height ``aspect``; near/far from :meth:`clip_range` if not given."""
        dn, df = self.clip_range()
        return self._projection(aspect, near or dn, far or df)

    def clip_range(self, radius: float | None = None) -> tuple[float, float]:
        """Near and far distances that hold a scene of ``radius`` around the target."""
        scale = self.scale_hint()
        r = scale if radius is None else max(radius, 1e-12)
        return (max(scale * 1e-3, 1e-9), scale + 4.0 * r + 1.0)

    def scale_hint(self) -> float:
        return 1.0

    def focal_pixels(self, height_px: int) -> float:
        """Pixels per unit length per unit distance (perspective), or per unit length (orthographic)."""
        if self.is_perspective:
            return height_px / 2.0 / math.tan(math.radians(self.fov) / 2.0)
        return height_px / self.ortho_height()

    def ortho_height(self) -> float:
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"type": self.kind}
        for key, value in self.props().items():
            state[key] = list(value) if isinstance(value, tuple) else value
        return state

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def set_state(self, state: dict[str, Any]) -> None:
        """Set every property given in ``state`` (other keys are ignored, ``type`` must match)."""
        if state.get("type", self.kind) != self.kind:
            raise ValueError(f"a {state.get('type')} state cannot set a {self.kind} camera")
        for key in self._props:
            if key in state:
                setattr(self, key, state[key])

    def copy(self) -> "Camera":
        return camera_from_dict(self.to_dict())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.props().items())})"


class TurntableCamera(Camera):
    """Orbits ``center`` at ``distance``; ``azimuth`` turns about +z, ``elevation`` lifts above the xy plane.

    With ``fov = 0`` the projection is orthographic and shows ``distance`` units vertically.
    """

    kind = "turntable"
    angle_keys = ("azimuth", "elevation", "roll")
    log_keys = ("distance",)

    center = Prop((0.0, 0.0, 0.0), _vec3)
    azimuth = Prop(30.0, _finite)
    elevation = Prop(20.0, _finite)
    roll = Prop(0.0, _finite)
    distance = Prop(10.0, positive)
    fov = Prop(45.0, _fov)

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from the center to the eye."""
        az, el = math.radians(self.azimuth), math.radians(max(-89.9, min(89.9, self.elevation)))
        return np.array([math.cos(el) * math.sin(az), -math.cos(el) * math.cos(az), math.sin(el)])

    @property
    def eye(self) -> np.ndarray:
        return np.asarray(self.center) + self.distance * self.direction

    def view_matrix(self) -> np.ndarray:
        view = look_at(self.eye, self.center, (0.0, 0.0, 1.0))
        if self.roll:
            c, s = math.cos(math.radians(self.roll)), math.sin(math.radians(self.roll))
            rot = np.eye(4)
            rot[:2, :2] = [[c, -s], [s, c]]
            view = rot @ view
        return view

    def scale_hint(self) -> float:
        return self.distance

    def ortho_height(self) -> float:
        return self.distance

    def _projection(self, aspect, near, far):
        if self.fov > 0:
            return perspective(self.fov, aspect, near, far)
        d = self.distance
        return orthographic(d, aspect, -4.0 * d, 8.0 * d)

    def fit(self, lo, hi) -> "TurntableCamera":
        """Centre on the box ``lo``..``hi`` and step back until it fits the view; returns self."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        self.center = (lo + hi) / 2
        radius = float(np.linalg.norm(hi - lo)) / 2 or 1.0
        if self.fov > 0:
            self.distance = radius / math.sin(math.radians(self.fov) / 2.0)
        else:
            self.distance = 2.0 * radius
        return self

    def orbit(self, d_azimuth: float, d_elevation: float = 0.0) -> None:
        self.azimuth = self.azimuth + d_azimuth
        self.elevation = max(-89.0, min(89.0, self.elevation + d_elevation))

    def zoom(self, factor: float) -> None:
        """Divide the distance by ``factor`` (> 1 comes closer)."""
        self.distance = self.distance / factor


class FlyCamera(Camera):
    """A free camera at ``position``; ``yaw`` turns about +z (0 looks along +y), ``pitch`` looks up."""

    kind = "fly"
    angle_keys = ("yaw", "pitch", "roll")

    position = Prop((0.0, -10.0, 0.0), _vec3)
    yaw = Prop(0.0, _finite)
    pitch = Prop(0.0, _finite)
    roll = Prop(0.0, _finite)
    fov = Prop(60.0, _fov)
    #: A length scale for clipping planes and speeds (e.g. the box size).
    scale = Prop(10.0, positive)

    @property
    def forward(self) -> np.ndarray:
        yaw, pitch = math.radians(self.yaw), math.radians(max(-89.9, min(89.9, self.pitch)))
        return np.array([math.cos(pitch) * math.sin(yaw), math.cos(pitch) * math.cos(yaw), math.sin(pitch)])

    @property
    def right(self) -> np.ndarray:
        r = np.cross(self.forward, [0.0, 0.0, 1.0])
        return r / (np.linalg.norm(r) or 1.0)

    @property
    def eye(self) -> np.ndarray:
        return np.asarray(self.position, dtype=float)

    def view_matrix(self) -> np.ndarray:
        view = look_at(self.eye, self.eye + self.forward, (0.0, 0.0, 1.0))
        if self.roll:
            c, s = math.cos(math.radians(self.roll)), math.sin(math.radians(self.roll))
            rot = np.eye(4)
            rot[:2, :2] = [[c, -s], [s, c]]
            view = rot @ view
        return view

    def scale_hint(self) -> float:
        return self.scale

    def clip_range(self, radius: float | None = None) -> tuple[float, float]:
        return (self.scale * 1e-4, self.scale * 10.0)

    def _projection(self, aspect, near, far):
        return perspective(self.fov or 60.0, aspect, near, far)

    def move(self, forward: float = 0.0, right: float = 0.0, up: float = 0.0) -> None:
        """Move along the view direction, to the right and up (scene units)."""
        p = self.eye + forward * self.forward + right * self.right + up * np.array([0.0, 0.0, 1.0])
        self.position = p

    def turn(self, d_yaw: float, d_pitch: float = 0.0) -> None:
        self.yaw = self.yaw + d_yaw
        self.pitch = max(-89.0, min(89.0, self.pitch + d_pitch))

    def fit(self, lo, hi) -> "FlyCamera":
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        centre, radius = (lo + hi) / 2, float(np.linalg.norm(hi - lo)) / 2 or 1.0
        distance = radius / math.sin(math.radians(self.fov) / 2.0)
        self.scale = 2 * radius
        self.position = centre - distance * self.forward
        return self


class PanZoomCamera(Camera):
    """A 2-D camera looking down -z at ``center`` (x, y), showing ``height`` units vertically."""

    kind = "panzoom"
    log_keys = ("height",)

    center = Prop((0.0, 0.0), _vec2)
    height = Prop(10.0, positive)
    fov = Prop(0.0, _fov)

    @property
    def eye(self) -> np.ndarray:
        return np.array([self.center[0], self.center[1], self.height])

    def view_matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[0, 3], m[1, 3], m[2, 3] = -self.center[0], -self.center[1], -self.height
        return m

    def scale_hint(self) -> float:
        return self.height

    def ortho_height(self) -> float:
        return self.height

    def _projection(self, aspect, near, far):
        return orthographic(self.height, aspect, 0.0, 2.0 * self.height + 1e6)

    def fit(self, lo, hi, aspect: float = 1.0) -> "PanZoomCamera":
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        self.center = ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2)
        self.height = max(hi[1] - lo[1], (hi[0] - lo[0]) / aspect) or 1.0
        return self

    def pan(self, dx: float, dy: float) -> None:
        self.center = (self.center[0] + dx, self.center[1] + dy)

    def zoom(self, factor: float) -> None:
        self.height = self.height / factor


CAMERAS = {cls.kind: cls for cls in (TurntableCamera, FlyCamera, PanZoomCamera)}


def camera_from_dict(state: dict[str, Any]) -> Camera:
    """A camera from :meth:`Camera.to_dict`'s output (``type`` picks the class)."""
    kind = state.get("type", "turntable")
    if kind not in CAMERAS:
        raise ValueError(f"unknown camera type {kind!r} ({', '.join(CAMERAS)})")
    cam = CAMERAS[kind]()
    cam.set_state(state)
    return cam


def camera_from_json(text: str) -> Camera:
    return camera_from_dict(json.loads(text))


def plane_point(camera: "PanZoomCamera", size: tuple[int, int], x: float, y: float) -> tuple[float, float]:
    """The world (x, y) under pixel (``x``, ``y``) (top-left origin) of a 2-D camera: the inverse of
    :func:`project` on the image plane."""
    w, h = size
    per_pixel = camera.height / h
    return camera.center[0] + (x - w / 2) * per_pixel, camera.center[1] - (y - h / 2) * per_pixel


def pixel_ray(camera: Camera, size: tuple[int, int], x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """The world ray under pixel (``x``, ``y``) (top-left origin): a point on the near plane and the unit
    direction away from the camera (the inverse of :func:`project`)."""
    w, h = size
    m = np.linalg.inv(camera.projection_matrix(w / h) @ camera.view_matrix())
    ndc_x, ndc_y = 2.0 * x / w - 1.0, 1.0 - 2.0 * y / h
    near, far = (m @ np.array([ndc_x, ndc_y, z, 1.0]) for z in (-1.0, 1.0))
    near, far = near[:3] / near[3], far[:3] / far[3]
    direction = far - near
    return near, direction / np.linalg.norm(direction)


def project(points: np.ndarray, camera: Camera, size: tuple[int, int]) -> np.ndarray:
    """Pixel coordinates (x right, y down, origin at the top left) of world ``points`` (N, 3).

    Points behind the camera get NaN.
    """
    w, h = size
    m = camera.projection_matrix(w / h) @ camera.view_matrix()
    p = np.c_[np.asarray(points, float), np.ones(len(points))] @ m.T
    with np.errstate(divide="ignore", invalid="ignore"):
        ndc = p[:, :3] / p[:, 3:4]
    ndc[p[:, 3] <= 0] = np.nan
    return np.c_[(ndc[:, 0] + 1) * w / 2, (1 - ndc[:, 1]) * h / 2]
