"""``lenghu kiosk SHOW.toml``: the unattended, bilingual outreach kiosk (full screen, supervised, or rehearsed)."""

from __future__ import annotations

import argparse

EPILOG = """\
A show file is TOML: a [show] table (title, language, idle_seconds,
admin_chord, usage_log ...), an optional [quality] table (target_fps,
min_budget, max_budget) and one [[scene]] table per scene (name, data,
duration, tour = auto|orbit|still|file, caption = {zh = "...", en = "..."}).
Reference: docs/kiosk.md; example: shows/lenghu_sample/show.toml.

Visitors: drag to rotate, pinch or wheel to zoom, the large buttons for
previous/next scene and language, a tap on a structure shows its label.
Keys: Left/Right scenes, L language, Up/Down tilt, + - zoom, Space attract
mode. Esc, Alt-F4 and Ctrl-Q do nothing: only the show's admin_chord exits.

examples:
  lenghu kiosk shows/lenghu_sample/show.toml --check
  lenghu kiosk shows/lenghu_sample/show.toml --supervise
  lenghu kiosk shows/lenghu_sample/show.toml --rehearse --out rehearsal/ --format mp4
  lenghu kiosk shows/lenghu_sample/show.toml --rehearse --out r/ --events visitor.jsonl --fps 5
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    from lenghu.commands.render import _size

    parser = subparsers.add_parser(
        "kiosk", help="run an outreach show full screen, unattended (or rehearse it headless)",
        description="Run a kiosk show: a playlist of scenes with tours, bilingual captions, attract mode "
                    "and touch interaction.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("show", metavar="SHOW.toml", help="the show file")
    parser.add_argument("--check", action="store_true", help="validate the show file (and load its data), then exit")
    parser.add_argument("--supervise", action="store_true",
                        help="run the kiosk as a child process; restart it within 5 s when it crashes or hangs")
    parser.add_argument("--workdir", metavar="DIR",
                        help="supervisor files (heartbeat, state, log); default: .kiosk/ beside the show file")
    parser.add_argument("--heartbeat-timeout", type=float, default=1.5, metavar="S",
                        help="restart a child that has drawn no frame for S seconds (default 1.5)")
    parser.add_argument("--rehearse", action="store_true", help="play the show headless into --out")
    parser.add_argument("--out", metavar="DIR", help="rehearsal output folder")
    parser.add_argument("--events", metavar="FILE", help="scripted input events (JSON Lines, see docs/kiosk.md)")
    parser.add_argument("--format", choices=("png", "mp4"), default="png", help="rehearsal frames or a movie")
    parser.add_argument("--fps", type=float, default=10.0, help="rehearsal frames per second (default 10)")
    parser.add_argument("--seconds", type=float, help="rehearsal length (default: every scene once)")
    parser.add_argument("--size", type=_size, metavar="WxH", help="picture size (default: the show's)")
    parser.add_argument("--windowed", action="store_true", help="a normal window instead of full screen")
    parser.add_argument("--headless", action="store_true",
                        help="play off screen in real time (no window; heartbeats only): for tests and "
                             "machines without a display")
    parser.add_argument("--gl", choices=("egl", "osmesa"), help="headless OpenGL backend to try first")
    parser.add_argument("--heartbeat", metavar="FILE", help=argparse.SUPPRESS)  # set by --supervise
    parser.add_argument("--state", metavar="FILE", help=argparse.SUPPRESS)  # set by --supervise
    parser.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)  # a supervisor's ready spare
    return parser


def run(args: argparse.Namespace) -> int:
    import sys

    from lenghu.viewer.app.kiosk.show import load_show

    show = load_show(args.show)
    if args.rehearse:
        return _rehearse(args, show)
    if args.check:
        from lenghu.viewer.app.kiosk.controller import load_bundle

        for i, sc in enumerate(show.scenes):
            b = load_bundle(sc, show.size, show.path, i)
            print(f"{sc.name}: {len(b.layers)} layer(s), {b.steps} step(s), tour {sc.tour}, "
                  f"{len(b.structures)} structure(s), {sc.duration:g} s")
        print(f"{args.show}: OK ({len(show.scenes)} scenes)")
        return 0
    if args.supervise:
        return _supervise(args, show)
    if not args.headless:
        import os

        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            print("lenghu kiosk: error: no display (DISPLAY is not set): run it under X, or rehearse it with "
                  "--rehearse --out DIR", file=sys.stderr)
            return 1
    return _live(args, show)


def _rehearse(args, show) -> int:
    from lenghu.viewer.app.kiosk.events_file import load_events
    from lenghu.viewer.app.kiosk.rehearse import rehearse

    if not args.out:
        print("lenghu kiosk: error: --rehearse needs --out DIR", file=__import__("sys").stderr)
        return 2
    events = load_events(args.events) if args.events else None
    result = rehearse(show, args.out, events, fps=args.fps, seconds=args.seconds, size=args.size, fmt=args.format,
                      gl=args.gl)
    print(f"{result.output}: {result.frames} frames at {result.size[0]}x{result.size[1]} "
          f"in {result.seconds:.1f} s (timeline: {result.timeline})")
    return 0


def _supervise(args, show) -> int:
    import os
    from pathlib import Path

    from lenghu.viewer.app.kiosk.supervise import Supervisor, child_command

    workdir = Path(args.workdir) if args.workdir else show.folder / ".kiosk"
    extra = []
    for flag in ("windowed", "headless"):
        if getattr(args, flag):
            extra.append(f"--{flag}")
    if args.size:
        extra += ["--size", f"{args.size[0]}x{args.size[1]}"]
    env = dict(os.environ)
    if args.headless:  # choose the GL backend once here: each restart then skips the probe (a faster restart)
        from lenghu.viewer.app.headless import use_headless_gl

        env["LENGHU_KIOSK_GL"] = use_headless_gl(args.gl)
        env.update({k: v for k, v in os.environ.items() if k in ("PYOPENGL_PLATFORM", "EGL_PLATFORM",
                                                                 "OSMESA_LIBRARY")})
    sup = Supervisor(child_command(show.path, extra), workdir, heartbeat_timeout=args.heartbeat_timeout, env=env)
    return sup.run()


def _live(args, show) -> int:
    import os
    import sys
    from pathlib import Path

    from lenghu.io.atomic import write_bytes_atomic
    from lenghu.viewer.app.kiosk.controller import KioskController, resume_position
    from lenghu.viewer.app.kiosk.usage import UsageLog

    state_path = Path(args.state) if args.state else None

    def save_position(position: dict) -> None:
        if state_path is not None:
            import json

            write_bytes_atomic(state_path, json.dumps({**position, "pid": os.getpid()}).encode())

    size = args.size or show.size
    if args.headless:
        backend = os.environ.get("LENGHU_KIOSK_GL")
        if backend:  # chosen by the supervisor: no probe (a faster restart)
            import vispy

            vispy.use(app=backend)
        else:
            from lenghu.viewer.app.headless import use_headless_gl

            use_headless_gl(args.gl)
    controller = KioskController(show, size)
    controller.preload()
    view = window = None
    if args.headless:
        from lenghu.viewer.app.kiosk.view import KioskView, run_headless_loop

        view = KioskView(controller)
        view.render()  # compiles every shader now, not after a restart
    else:  # built now, shown once this process takes over (a standby's window stays hidden until then)
        from lenghu.viewer.app.kiosk.window import KioskWindow

        window = KioskWindow(controller, fullscreen=not args.windowed, show=False)
    if args.standby:  # wait, fully loaded, until the supervisor needs this process
        if sys.stdin.readline().strip() != "go":
            return 0
    usage = UsageLog(show.usage_log) if show.usage_log else None
    controller.usage = usage
    controller.on_position = save_position
    controller.resume(resume_position(state_path, show))
    try:
        if view is not None:
            view.heartbeat = Path(args.heartbeat) if args.heartbeat else None
            try:
                run_headless_loop(view)
            finally:
                view.close()
            return 0
        window.present(args.heartbeat)
        code = window.run()
    finally:
        if usage is not None:
            usage.close()
    # PySide6 with VisPy can abort while the interpreter tears the widgets down ("none_dealloc"); the
    # supervisor would take that for a crash and restart an exhibit the admin just closed
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
