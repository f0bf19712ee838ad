"""Headless OpenGL for VisPy: EGL (surfaceless), falling back to OSMesa.

The environment must be set *before* VisPy or PyOpenGL are imported:
``EGL_PLATFORM=surfaceless`` and ``PYOPENGL_PLATFORM=egl`` for EGL, or
``PYOPENGL_PLATFORM=osmesa`` and ``OSMESA_LIBRARY`` for OSMesa (without
``PYOPENGL_PLATFORM`` PyOpenGL looks for GLX, and a 3-D texture, hence a
Volume, comes out black without any error). Each backend is tried in a
child process first, so a failing one cannot leave this process half set up.
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
import sys

log = logging.getLogger(__name__)

_CHOSEN: str | None = None

_PROBE = """
import vispy
vispy.use(app={app!r})
from vispy import app
c = app.Canvas(size=(8, 8), show=False)
c.close()
"""


def _osmesa_library() -> str | None:
    for pattern in ("/usr/lib/x86_64-linux-gnu/libOSMesa.so*", "/usr/lib/*/libOSMesa.so*", "/usr/lib/libOSMesa.so*",
                    "/usr/lib64/libOSMesa.so*"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def _environment(backend: str) -> dict[str, str]:
    if backend == "egl":
        return {"EGL_PLATFORM": "surfaceless", "PYOPENGL_PLATFORM": "egl"}
    env = {"PYOPENGL_PLATFORM": "osmesa"}
    lib = os.environ.get("OSMESA_LIBRARY") or _osmesa_library()
    if lib:
        env["OSMESA_LIBRARY"] = lib
    return env


def _works(backend: str) -> bool:
    env = {**os.environ, **_environment(backend)}
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE.format(app=backend)], env=env, capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if proc.returncode != 0:
        log.info("headless GL: %s does not work here: %s", backend, proc.stderr.strip().splitlines()[-1:])
    return proc.returncode == 0


def use_headless_gl(prefer: str | None = None) -> str:
    """Select a headless VisPy backend (``egl`` or ``osmesa``) for this process; returns its name.

    ``prefer`` (or the ``LENGHU_GL`` environment variable) puts one first.
    Must run before anything imports vispy or OpenGL; calling it again
    returns the backend already chosen.

    Raises
    ------
    RuntimeError
        Neither works (the message says what to install).
    """
    global _CHOSEN
    if _CHOSEN is not None:
        return _CHOSEN
    order = ["egl", "osmesa"]
    prefer = prefer or os.environ.get("LENGHU_GL")
    if prefer in order:
        order.remove(prefer)
        order.insert(0, prefer)
    if any(name in sys.modules for name in ("OpenGL", "vispy.gloo.gl")) and "PYOPENGL_PLATFORM" not in os.environ:
        log.warning("vispy/OpenGL already imported before the headless setup: 3-D textures may render black")
    for backend in order:
        if _works(backend):
            for key, value in _environment(backend).items():
                os.environ.setdefault(key, value) if key == "OSMESA_LIBRARY" else os.environ.__setitem__(key, value)
            import vispy

            vispy.use(app=backend)
            _CHOSEN = backend
            log.info("headless GL: %s", backend)
            return backend
    raise RuntimeError("no headless OpenGL: install Mesa's EGL (libegl1 libegl-mesa0 libgl1-mesa-dri) "
                       "or OSMesa (libosmesa6) and PyOpenGL")
