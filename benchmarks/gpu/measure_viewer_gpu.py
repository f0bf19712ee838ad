#!/usr/bin/env python3
"""Frame times of lenghu's viewer on a real GPU (headless EGL), against plain VisPy Markers.

A standalone script (not a ``bench_*.py`` module: ``benchmarks/run.py`` does not load it and pytest does not
collect it). It is meant for a machine with an NVIDIA GPU and no display, where lenghu is not installed: run it
from a checkout with ``PYTHONPATH`` holding the repository root (``lenghu.viewer`` lives in ``viewer/`` and is
mapped into the package by setup.py; this script maps it itself when lenghu is not installed).

What it measures (see docs/gpu.md for the figures and the exact command):

1. the GL context it renders with (GL_VENDOR, GL_RENDERER, GL_VERSION; EGL, pbuffer, no window), so a run proves
   which device drew the frames;
2. synthetic particle sets from ``lenghu simulate cosmic-web`` (Zel'dovich web, seed 7, as benchmarks/bench_viewer.py)
   at 10^7 particles and, time permitting, 10^8, each built into a ``.lod`` store with lenghu's own builder;
3. at 1920x1080 and 800x600: frame time (median of ``--repeats`` frames after a warm-up frame; each frame is
   ``canvas.render()``, i.e. draw + glReadPixels, so it waits for the GPU) of

   - our renderer reading the store at point budgets 10^6 and 10^7 (complete frames: the loader has the
     selected nodes before the timed frames, as in bench_viewer.py),
   - our renderer drawing every particle from memory (budget above N),
   - ``vispy.scene.visuals.Markers`` drawing every point (size 3, additive, alpha 0.05: bench_viewer.py's peer)
     at 10^6 (a uniform subsample of the 10^7 set), 10^7 and 10^8 particles;

   and for each frame the fraction of lit pixels (``lenghu.viewer.model.metrics.lit_fraction``, some channel
   > 8 of 255) so an empty frame cannot pass for a fast one;
4. the first frame from each store (open + draw without waiting, the root node) and the first complete frame.

On the H100 (docs/gpu.md) the single Markers visual of 10^8 points (one 5.6 GB vertex buffer) drew a wrong picture;
profile_frame_gpu.py repeats it split into 4 visuals.

Results go to ``$OUT`` (or ``--out``): ``gpu_viewer.json`` (written after every figure, so a run cut short keeps
what it measured) and PNGs of our 10^7-budget frame and the largest Markers frame at 1920x1080.

Usage::

    PYTHONPATH=. python3 benchmarks/gpu/measure_viewer_gpu.py --out DIR [--max-particles 1e8] [--deadline 480]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import gc
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SIZES = [(1920, 1080), (800, 600)]
T0 = time.perf_counter()

PROBE = r"""
import json, os, sys
import vispy
vispy.use(app="egl")
from vispy import app, gloo
from vispy.gloo import gl
c = app.Canvas(size=(64, 64), show=False)
c.set_current()
gloo.clear(color=(0.2, 0.4, 0.6, 1.0))
px = gloo.read_pixels((0, 0, 64, 64), alpha=False)
info = {k: gl.glGetParameter(getattr(gl, "GL_" + k)) for k in ("VENDOR", "RENDERER", "VERSION")}
info["clear_pixel"] = [int(x) for x in px[0, 0]]
from vispy.app.backends import _egl
info["egl"] = _egl.which
c.close()
print("PROBE " + json.dumps(info))
"""


def elapsed() -> float:
    return time.perf_counter() - T0


def log(msg: str) -> None:
    print(f"[{elapsed():7.1f} s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------- set-up
def setup_lenghu() -> None:
    """Make ``import lenghu.viewer`` work from a plain checkout (no install): viewer/ is mapped into lenghu."""
    if str(REPO) not in sys.path and importlib.util.find_spec("lenghu") is None:
        sys.path.insert(0, str(REPO))
    import lenghu

    if importlib.util.find_spec("lenghu.viewer") is None:
        lenghu.__path__.append(str(REPO))  # lenghu.viewer -> REPO/viewer, lenghu.pipelines -> REPO/pipelines


def gl_library() -> str:
    """VisPy's gl2 loads libGL.so (GLX dispatch, needs libX11); fall back to glvnd's libOpenGL.so.0 (no X)."""
    if os.environ.get("VISPY_GL_LIB"):
        return os.environ["VISPY_GL_LIB"]
    name = ctypes.util.find_library("GL")
    try:
        if name:
            ctypes.CDLL(name)
            return name
    except OSError as exc:
        log(f"libGL ({name}) does not load: {exc}")
    name = ctypes.util.find_library("OpenGL")
    if name:
        os.environ["VISPY_GL_LIB"] = name
        return name
    return "none found"


SOFTWARE = ("llvmpipe", "softpipe", "swrast", "software")


def choose_egl(require_gpu: bool = False) -> dict:
    """Probe EGL platforms in child processes; keep the first that renders (on hardware when ``require_gpu``)."""
    os.environ["PYOPENGL_PLATFORM"] = "egl"
    tries = []
    given = os.environ.get("EGL_PLATFORM")
    for platform_name in ([given] if given else []) + ["surfaceless", None, "device"]:
        env = dict(os.environ)
        env.pop("EGL_PLATFORM", None)
        if platform_name:
            env["EGL_PLATFORM"] = platform_name
        try:
            proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            tries.append({"EGL_PLATFORM": platform_name, "error": "timeout"})
            continue
        line = next((x for x in proc.stdout.splitlines() if x.startswith("PROBE ")), None)
        info = json.loads(line[6:]) if proc.returncode == 0 and line else None
        if info and require_gpu and any(w in str(info.get("RENDERER", "")).lower() for w in SOFTWARE):
            tries.append({"EGL_PLATFORM": platform_name, "rejected": f"software renderer {info['RENDERER']!r}"})
            log(f"EGL_PLATFORM={platform_name}: rejected: {info['RENDERER']!r}")
            continue
        if info:
            info["EGL_PLATFORM"] = platform_name
            info["tries"] = tries
            if platform_name:
                os.environ["EGL_PLATFORM"] = platform_name
            else:
                os.environ.pop("EGL_PLATFORM", None)
            return info
        tries.append({"EGL_PLATFORM": platform_name, "rc": proc.returncode,
                      "stderr": proc.stderr.strip().splitlines()[-3:]})
        log(f"EGL_PLATFORM={platform_name}: failed: {tries[-1]['stderr']}")
    raise SystemExit(f"no EGL context: {json.dumps(tries)}")


def nvidia_smi() -> dict:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,memory.used",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return {}
    parts = [p.strip() for p in out.splitlines()[0].split(",")] if out else []
    keys = ("name", "driver", "memory_total", "memory_used")
    return dict(zip(keys, parts))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


# ---------------------------------------------------------------------------------------------- results
class Results:
    def __init__(self, out: Path, meta: dict, name: str = "gpu_viewer.json"):
        self.out = out
        self.name = name
        self.doc = {"meta": meta, "rows": [], "errors": []}
        self.save()

    def save(self) -> None:
        self.doc["meta"]["elapsed_s"] = round(elapsed(), 1)
        tmp = self.out / (self.name + ".part")
        tmp.write_text(json.dumps(self.doc, indent=1))
        tmp.replace(self.out / self.name)

    def add(self, **row) -> None:
        self.doc["rows"].append(row)
        self.save()
        extra = {k: v for k, v in row.items() if k not in ("what", "frame_s")}
        fs = row.get("frame_s")
        log(f"{row['what']}: {fs * 1e3:.2f} ms  {extra}" if fs is not None else f"{row['what']}: {extra}")

    def error(self, what: str, exc: BaseException) -> None:
        import traceback

        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        self.doc["errors"].append({"what": what, "error": f"{type(exc).__name__}: {exc}", "traceback": tb[-6:]})
        self.save()
        log(f"ERROR {what}: {type(exc).__name__}: {exc}")


def save_png(path: Path, img: np.ndarray) -> None:
    try:
        from PIL import Image

        Image.fromarray(np.ascontiguousarray(img[..., :3])).save(path)
    except ImportError:
        import imageio.v3 as iio

        iio.imwrite(path, img[..., :3])


def timed(render, repeats: int):
    """(median s, min s, warm-up s, last picture): one warm-up frame, then ``repeats`` timed frames."""
    t0 = time.perf_counter()
    img = render()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        img = render()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times)), warm, np.asarray(img)


@contextlib.contextmanager
def recorded(res, what: str):
    """One measurement: an error is recorded under ``what`` and the other figures go on; what the block
    opened (``opened.append(x)``: a renderer or a canvas) is closed, and memory collected, either way."""
    opened = []
    try:
        yield opened
    except Exception as exc:  # noqa: BLE001 - record and go on with the other figures
        res.error(what, exc)
    finally:
        for thing in opened:
            thing.close()
        gc.collect()


# ---------------------------------------------------------------------------------------------- measurements
def measure_ours(res, source, label, n, budget, camera, size, repeats, png=None, lod=True):
    from lenghu.viewer.lod import LodStore
    from lenghu.viewer.model import ParticleLayer, Scene
    from lenghu.viewer.model.metrics import lit_fraction, white_fraction
    from lenghu.viewer.render import SceneRenderer

    what = (f"ours, {'.lod store' if lod else 'in memory'}, budget {budget:.0e}, N={n:.2e}, {size[0]}x{size[1]}")
    with recorded(res, what) as opened:
        layer = ParticleLayer(LodStore(source) if lod else source, field="grid_density", budget=budget)
        renderer = SceneRenderer(Scene([layer], camera=camera.copy(), scale_bar=False, color_bar=False), size=size,
                                 wait_for_data=True)
        opened.append(renderer)
        med, best, warm, img = timed(renderer.render, repeats)
        adapter = renderer.adapter(layer)
        pre = renderer.frame_times[-repeats:]
        sel = adapter.last_selection
        res.add(what=what, kind="ours", source=label, particles=n, budget=budget, size=list(size),
                frame_s=med, min_s=best, warmup_s=warm, fps=1.0 / med,
                points_drawn=int(adapter.last_points), nodes_drawn=int(len(sel.node)) if sel is not None else None,
                accumulate_pass_s=float(np.median(pre)) if pre else None,
                lit_fraction=lit_fraction(img), white_fraction=white_fraction(img), mean_level=float(img.mean()))
        if png:
            save_png(png, img)


def measure_first_frame(res, store_path, label, n, camera, size, budget=10**6):
    from lenghu.viewer.lod import LodStore
    from lenghu.viewer.model import ParticleLayer, Scene
    from lenghu.viewer.model.metrics import lit_fraction
    from lenghu.viewer.render import SceneRenderer

    what = f"ours, first frame from the {label} store (open + draw, no waiting), budget {budget:.0e}, {size[0]}x{size[1]}"
    with recorded(res, what) as opened:
        cam = camera.copy()
        start = time.perf_counter()
        store = LodStore(store_path)
        layer = ParticleLayer(store, field="grid_density", budget=budget)
        renderer = SceneRenderer(Scene([layer], camera=cam, scale_bar=False, color_bar=False), size=size)
        opened.append(renderer)
        img = renderer.render()
        first = time.perf_counter() - start
        adapter = renderer.adapter(layer)
        first_points = int(adapter.last_points)
        adapter.loader.wait(timeout=600)
        img2 = renderer.render()
        complete = time.perf_counter() - start
        res.add(what=what, kind="first_frame", source=label, particles=n, budget=budget, size=list(size),
                first_frame_s=first, first_points=first_points, first_lit_fraction=lit_fraction(img),
                complete_frame_s=complete, complete_points=int(adapter.last_points),
                complete_lit_fraction=lit_fraction(img2))


def measure_markers(res, positions, label, camera, size, repeats, png=None, parts=1):
    """bench_viewer.py's peer: Markers, size 3, no edge, white at alpha 0.05, additive blending, same camera;
    ``parts`` > 1 splits the points into that many visuals (one vertex buffer each)."""
    from vispy import scene
    from vispy.visuals.transforms import MatrixTransform

    from lenghu.viewer.model.metrics import lit_fraction, white_fraction

    n = len(positions)
    what = f"vispy Markers, all {n:.2e} points" + (f" as {parts} visuals" if parts > 1 else "") + \
        f", {size[0]}x{size[1]}"
    with recorded(res, what) as opened:
        canvas = scene.SceneCanvas(size=size, show=False, bgcolor="black")
        opened.append(canvas)
        node = scene.Node(parent=canvas.scene)
        w, h = size
        to_px = np.array([[w / 2, 0, 0, w / 2], [0, -h / 2, 0, h / 2], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        node.transform = MatrixTransform((to_px @ camera.projection_matrix(w / h) @ camera.view_matrix()).T)
        t0 = time.perf_counter()
        for chunk in np.array_split(positions, parts):
            markers = scene.visuals.Markers(parent=node)
            markers.set_data(chunk, size=3, edge_width=0, face_color=(1.0, 1.0, 1.0, 0.05))
            markers.set_gl_state("additive", depth_test=False)
        set_data = time.perf_counter() - t0
        med, best, warm, img = timed(lambda: canvas.render(alpha=False), repeats)
        res.add(what=what, kind="markers" if parts == 1 else "markers_split", source=label, particles=n,
                parts=parts, size=list(size), frame_s=med, min_s=best, warmup_s=warm, set_data_s=set_data,
                fps=1.0 / med, lit_fraction=lit_fraction(img), white_fraction=white_fraction(img),
                mean_level=float(img.mean()))
        if png:
            save_png(png, img)


def measure_empty(res, size, repeats):
    """The floor: an empty SceneCanvas, render() = clear + glReadPixels of the RGB picture."""
    from vispy import scene

    what = f"empty SceneCanvas (clear + read-back), {size[0]}x{size[1]}"
    with recorded(res, what) as opened:
        canvas = scene.SceneCanvas(size=size, show=False, bgcolor="black")
        opened.append(canvas)
        med, best, warm, img = timed(lambda: canvas.render(alpha=False), repeats)
        res.add(what=what, kind="empty", size=list(size), frame_s=med, min_s=best, warmup_s=warm)


def make_set(res, folder: Path, particles: int, files: int | None):
    """Simulate a cosmic web of ``particles`` and build its .lod store; returns (snapshot path, store path, N)."""
    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web
    from lenghu.viewer.lod import build_lod

    t0 = time.perf_counter()
    written = simulate_cosmic_web(CosmicWebConfig(particles=particles, seed=7, files_per_snapshot=files),
                                  folder / "web", progress=False)
    sim_s = time.perf_counter() - t0
    source = written[0].parent if len(written) > 1 else written[0]
    t0 = time.perf_counter()
    build = build_lod(source, folder / "web.lod")
    build_s = time.perf_counter() - t0
    n = int(build.particles)
    res.add(what=f"data set {n:.2e} particles (simulate cosmic-web + build .lod)", kind="data", particles=n,
            simulate_s=sim_s, build_s=build_s, build_rate=n / build_s, nodes=int(build.nodes),
            files=[p.name for p in written])
    return source, folder / "web.lod", n


def run_set(res, args, folder: Path, particles: int, files, budgets, markers_subsample=()):
    from lenghu.viewer.lod import LodStore
    from lenghu.viewer.model import TurntableCamera, load_particles

    source, store_path, n = make_set(res, folder, particles, files)
    label = f"{n:.1e}"
    camera = TurntableCamera(azimuth=35, elevation=25)
    camera.fit(*LodStore(store_path).bounds())
    measure_first_frame(res, store_path, label, n, camera, (800, 600))
    measure_first_frame(res, store_path, label, n, camera, (1920, 1080))
    big = SIZES[0]
    for budget in budgets:
        for size in SIZES:
            png = None
            if size == big and budget == budgets[-1]:
                png = args.out / f"ours_{label}_budget{budget:.0e}_{size[0]}x{size[1]}.png".replace("+", "")
            measure_ours(res, store_path, label, n, budget, camera, size, args.repeats, png=png)
    data = load_particles(source)
    positions = np.ascontiguousarray(data.positions, dtype=np.float32)
    if args.full and elapsed() < args.deadline - 60:
        for size in SIZES:
            measure_ours(res, data, label, n, 10**10, camera, size, args.repeats, lod=False)
    del data
    gc.collect()
    for m in markers_subsample:
        sub = positions[np.random.default_rng(1).permutation(n)[:m]]
        for size in SIZES:
            measure_markers(res, sub, f"{m:.0e} subsample of {label}", camera, size, args.repeats)
        del sub
    for size in SIZES:
        if elapsed() > args.deadline - 30:
            res.error(f"Markers {n:.1e} {size}", TimeoutError("skipped: deadline"))
            continue
        png = args.out / f"markers_{label}_{size[0]}x{size[1]}.png".replace("+", "") if size == big else None
        measure_markers(res, positions, label, camera, size, args.repeats, png=png)
    del positions
    gc.collect()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    parser.add_argument("--max-particles", type=float, default=1e8, help="largest set (1e7 or 1e8)")
    parser.add_argument("--small", type=float, default=1e7, help="the first set (default 1e7)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds: later figures are skipped past it")
    parser.add_argument("--no-full", dest="full", action="store_false",
                        help="skip our renderer drawing every particle from memory")
    parser.add_argument("--require-gpu", action="store_true", help="refuse a software renderer (llvmpipe)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    setup_lenghu()
    lib = gl_library()
    info = choose_egl(args.require_gpu)
    log(f"GL_RENDERER={info['RENDERER']!r} GL_VENDOR={info['VENDOR']!r} GL_VERSION={info['VERSION']!r} "
        f"EGL_PLATFORM={info['EGL_PLATFORM']} gl lib={lib}")
    import vispy

    vispy.use(app="egl")
    meta = {"gl": info, "gl_library": lib, "nvidia_smi": nvidia_smi(), "python": sys.version.split()[0],
            "vispy": vispy.__version__, "numpy": np.__version__, "cpu": cpu_name(), "cores": os.cpu_count(),
            "argv": sys.argv[1:], "repeats": args.repeats,
            "frame": "canvas.render(): draw + glReadPixels (synchronous), median of repeats after one warm-up"}
    res = Results(args.out, meta)
    for size in SIZES:
        measure_empty(res, size, args.repeats)
    small = int(args.small)
    with tempfile.TemporaryDirectory(prefix="gpu_viewer_", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        subs = tuple(m for m in (10**6,) if m < small)
        try:
            run_set(res, args, tmp / "small", small, None, budgets=[b for b in (10**6, 10**7) if b <= small] or
                    [small], markers_subsample=subs)
        except Exception as exc:  # noqa: BLE001
            res.error(f"set {small:.0e}", exc)
        big = int(args.max_particles)
        if big > small:
            if elapsed() > args.deadline * 0.45:
                res.error(f"set {big:.0e}", TimeoutError(f"skipped: {elapsed():.0f} s used of {args.deadline:.0f}"))
            else:
                import shutil

                shutil.rmtree(tmp / "small", ignore_errors=True)
                try:
                    run_set(res, args, tmp / "big", big, 2, budgets=[10**6, 10**7])
                except Exception as exc:  # noqa: BLE001
                    res.error(f"set {big:.0e}", exc)
    res.doc["meta"]["nvidia_smi_end"] = nvidia_smi()
    res.save()
    log(f"done; {len(res.doc['rows'])} rows, {len(res.doc['errors'])} errors -> {args.out / res.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
