"""Rehearsal: play a show headless, optionally with scripted events, to PNG frames or an MP4 (GL, off screen).

Time is simulated: frame ``i`` is at ``i / fps`` seconds whatever the
rendering costs, so a rehearsal is reproducible and shows exactly when
attract mode starts, when scenes change and what a scripted visitor
sees. Besides the pictures, ``timeline.csv`` records per frame the time,
scene, language, attract mode, caption and label.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class RehearsalResult:
    """What :func:`rehearse` wrote: ``output`` (the MP4 or the frames folder), ``frames``, ``timeline`` (CSV)."""

    output: Path
    frames: int
    timeline: Path
    seconds: float
    size: tuple[int, int]


def rehearse(show, out: str | Path, events=None, fps: float = 10.0, seconds: float | None = None,
             size: tuple[int, int] | None = None, fmt: str = "png", gl: str | None = None,
             progress=None) -> RehearsalResult:
    """Play ``show`` (a ShowConfig) headless into ``out`` (a folder).

    Parameters
    ----------
    events : list, optional
        From :func:`lenghu.viewer.app.kiosk.events_file.load_events`.
    fps : float
        Frames per simulated second.
    seconds : float, optional
        Length (default: every scene's duration once, or until 2 s after the last event if longer).
    size : (width, height), optional
        Default: the show's size.
    fmt : ``png`` (``frame_000000.png`` ...) or ``mp4`` (``rehearsal.mp4``)
    """
    from lenghu.viewer.app.headless import use_headless_gl

    use_headless_gl(gl)
    import imageio.v2 as imageio

    from lenghu.io.atomic import atomic_path
    from lenghu.viewer.app.kiosk.controller import KioskController
    from lenghu.viewer.app.kiosk.events_file import resolve
    from lenghu.viewer.app.kiosk.view import KioskView

    if fmt not in ("png", "mp4"):
        raise ValueError(f"unknown rehearsal format {fmt!r} (png, mp4)")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w, h = size or show.size
    if fmt == "mp4":
        w, h = w + w % 2, h + h % 2
    events = list(events or [])
    if seconds is None:
        seconds = sum(s.duration for s in show.scenes)
        if events:
            seconds = max(seconds, events[-1].t + 2.0)
    n = max(1, int(round(seconds * fps)))
    start = time.perf_counter()
    controller = KioskController(show, (w, h))
    view = KioskView(controller, wait_for_data=True)
    pending = events
    timeline = out / "timeline.csv"
    writer = None
    tmp_mp4 = out / f".rehearsal.part-{os.getpid()}.mp4"
    try:
        if fmt == "mp4":
            writer = imageio.get_writer(str(tmp_mp4), format="FFMPEG", mode="I", fps=fps, codec="libx264",
                                        pixelformat="yuv420p", macro_block_size=2, quality=7)
        with atomic_path(timeline) as tmp_csv, open(tmp_csv, "w", newline="", encoding="utf-8") as f:
            rows = csv.writer(f)
            rows.writerow(["frame", "t", "scene", "name", "language", "attract", "caption", "label"])
            for i in range(n):
                t = i / fps
                queue = []
                while pending and pending[0].t <= t:
                    queue.append(pending.pop(0))
                for ev in queue:
                    resolved = resolve(ev, controller)
                    for r in resolved:
                        if r.t <= t:
                            controller.handle(r)
                        else:  # the release half of a scripted tap: back into the queue
                            pending.insert(0, r)
                    pending.sort(key=lambda e: e.t)
                controller.advance(t)
                img = view.render()
                if writer is not None:
                    writer.append_data(img)
                else:
                    with atomic_path(out / f"frame_{i:06d}.png") as tmp:
                        imageio.imwrite(tmp, img, format="png")
                st = controller.state
                label = controller.overlay_state().label
                rows.writerow([i, f"{t:.3f}", st.scene, show.scenes[st.scene].name, st.language, int(st.attract),
                               controller.caption().get(st.language), label[0] if label else ""])
                if progress is not None:
                    progress(i + 1, n)
        if writer is not None:
            writer.close()
            writer = None
            os.replace(tmp_mp4, out / "rehearsal.mp4")
    finally:
        if writer is not None:
            writer.close()
        if tmp_mp4.exists():
            tmp_mp4.unlink()
        view.close()
    output = out / "rehearsal.mp4" if fmt == "mp4" else out
    return RehearsalResult(output, n, timeline, time.perf_counter() - start, (w, h))
