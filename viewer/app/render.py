"""Headless rendering to a PNG or an MP4 (``lenghu render``).

>>> render_files(["web.lod"], "web.png", size=(800, 600))       # doctest: +SKIP

Pictures: one frame (the tour's first keyframe, or a camera that shows
everything). Movies: the tour's frames, or, without a tour, a 360-degree
orbit (``seconds`` long); a time series plays over the movie from its first
to its last snapshot. Level-of-detail stores wait for their nodes before
each frame, so every frame is complete. MP4s are written by imageio-ffmpeg
(H.264, yuv420p).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenghu.viewer.app.scenes import SceneSpec, ViewerInputError, build_scene, set_series_time

log = logging.getLogger(__name__)


@dataclass
class RenderResult:
    """What :func:`render_files` wrote."""

    output: Path
    frames: int
    size: tuple[int, int]
    seconds: float
    backend: str
    points: int


def render_files(paths, out, *, size=(800, 600), tour=None, spec: SceneSpec | None = None, fps: float = 30.0,
                 seconds: float | None = None, camera: dict | None = None, gl: str | None = None,
                 progress=None) -> RenderResult:
    """Render ``paths`` to ``out`` (``.png`` or ``.mp4``); see the module docstring.

    Parameters
    ----------
    paths : list of path
    out : path
    size : (width, height)
    tour : path or Tour, optional
    spec : SceneSpec, optional
    fps : float
        Movie frame rate when there is no tour.
    seconds : float, optional
        Movie length without a tour (default 6 s, or 2 s a snapshot for a time series).
    camera : dict, optional
        Camera state (``Camera.to_dict`` form) for a picture.
    gl : ``egl`` or ``osmesa``, optional
        Headless backend to try first.
    """
    from lenghu.viewer.app.headless import use_headless_gl

    backend = use_headless_gl(gl)
    from lenghu.viewer.model import Tour, camera_from_dict
    from lenghu.viewer.render import SceneRenderer

    start = time.perf_counter()
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".mp4"):
        raise ViewerInputError(f"{out}: the output must be a .png or an .mp4")
    w, h = (int(size[0]), int(size[1]))
    if suffix == ".mp4":
        w, h = w + (w % 2), h + (h % 2)  # H.264 with yuv420p needs even sizes
    import warnings

    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():  # old FITS headers' non-standard cards: the pixels are what is shown
        warnings.simplefilter("ignore", AstropyUserWarning)
        scene, steps = build_scene(list(paths), spec)
    if isinstance(tour, (str, Path)):
        try:
            tour = Tour.load(tour)
        except (OSError, ValueError, json.JSONDecodeError) as exc:
            raise ViewerInputError(f"{tour}: not a tour file: {exc}") from exc
    if camera is not None:
        scene.set_camera_state(camera)
    elif tour is None:
        scene.camera = scene.default_camera(w / h)
    renderer = SceneRenderer(scene, size=(w, h), wait_for_data=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames = 0
    try:
        if suffix == ".png":
            if tour is not None:
                _apply(renderer, tour.state_at(tour.frame_times()[0]), steps)
            img = renderer.render()
            _write_png(out, img)
            frames = 1
        else:
            if tour is None:
                length = seconds if seconds is not None else (6.0 if steps == 1 else 2.0 * steps)
                if scene.camera.kind == "turntable":
                    tour = Tour.orbit(scene.camera, length, 360.0 * min(1.0, length / 12.0), fps,
                                      series_times=(0, steps - 1) if steps > 1 else None)
                else:
                    state = scene.camera.to_dict()
                    from lenghu.viewer.model import Keyframe

                    tour = Tour([Keyframe(0, state, None, 0.0 if steps > 1 else None),
                                 Keyframe(length, state, None, float(steps - 1) if steps > 1 else None)], fps)
            frames = _write_movie(out, renderer, tour, steps, progress)
        points = sum(getattr(a, "last_points", 0) for a in renderer.adapters.values())
    finally:
        renderer.close()
    return RenderResult(out, frames, (w, h), time.perf_counter() - start, backend, points)


def _apply(renderer, state, steps: int) -> None:
    scene = renderer.scene
    scene.set_camera_state(state.camera.to_dict())
    renderer.overlays.caption_text = state.caption
    if state.series_time is not None and steps > 1:
        set_series_time(scene, state.series_time)


def _write_png(out: Path, img: np.ndarray) -> None:
    import imageio.v2 as imageio

    from lenghu.io.atomic import atomic_path

    with atomic_path(out) as tmp:
        imageio.imwrite(tmp, img, format="png")


def _write_movie(out: Path, renderer, tour, steps: int, progress=None) -> int:
    import os

    import imageio.v2 as imageio

    times = tour.frame_times()
    tmp = out.with_name(f".{out.stem}.part-{os.getpid()}.mp4")  # ffmpeg needs the extension
    try:
        writer = imageio.get_writer(str(tmp), format="FFMPEG", mode="I", fps=tour.fps, codec="libx264",
                                    pixelformat="yuv420p", macro_block_size=2, quality=7)
        try:
            for i, t in enumerate(times):
                _apply(renderer, tour.state_at(t), steps)
                writer.append_data(renderer.render())
                if progress is not None:
                    progress(i + 1, len(times))
        finally:
            writer.close()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(times)
