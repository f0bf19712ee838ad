#!/usr/bin/env python3
"""Tiled-image browsing and the kiosk's adaptive quality on a real GPU (headless EGL).

A standalone script like measure_viewer_gpu.py (``benchmarks/run.py`` does not load it, pytest does not collect
it), for a machine with an NVIDIA GPU and no display where lenghu is not installed: run it from a checkout with
``PYTHONPATH`` holding the repository root (``viewer/`` is mapped to ``lenghu.viewer`` here, as setup.py does).
It measures what measure_viewer_gpu.py did not, with the benchmarks' own code:

1. tiled images (benchmarks/bench_viewer.py ``run_tiles``): the synthetic WFST-sized mosaic (27648 x 27696 float32
   FITS by default, ``_write_mosaic``), its pyramid build (a child process: time and VmHWM, as the benchmark), then
   ``_browse`` at each size: the first frame (open the pyramid, draw without waiting) and the 120 interactive
   frames zooming to 1:1 and panning (tiles load in the background); median, 90th percentile and max;
2. the kiosk (benchmarks/bench_kiosk.py): the same 2.0x10^6-particle web (126^3, ``lenghu simulate cosmic-web``
   defaults), the same show and scripted visitor, ``play`` in real time with adaptive quality (target 10 fps) and
   with the budget fixed at every particle; ``summary`` gives the frame rate after settling, the share of 1-s
   windows within 20% of the target and the budget it settled at.

The GL context is probed first (GL_RENDERER etc.; ``--require-gpu`` refuses llvmpipe). Results go to ``--out``:
``gpu_tiles_kiosk.json``, written after every figure.

Usage::

    PYTHONPATH=. python3 benchmarks/gpu/measure_tiles_kiosk_gpu.py --out DIR [--require-gpu]
    # a short check on llvmpipe:
    PYTHONPATH=. python3 benchmarks/gpu/measure_tiles_kiosk_gpu.py --out /tmp/o --mosaic 2048 \\
        --tile-sizes 320x240 --kiosk-sizes 320x180 --kiosk-seconds 6 --kiosk-particles 1e5
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import measure_viewer_gpu as m  # noqa: E402  (same folder: set-up, EGL probe, results file)

REPO = m.REPO


def load_bench(name: str):
    """benchmarks/NAME.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(f"_gpu_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def size_arg(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


# A child that can import lenghu.viewer from a plain checkout (the benchmark's child relies on an install).
CHILD_SETUP = f"""
import sys, importlib.util
sys.path.insert(0, {str(REPO)!r})
import lenghu
if importlib.util.find_spec("lenghu.viewer") is None:
    lenghu.__path__.append({str(REPO)!r})
"""


class Results(m.Results):
    """measure_viewer_gpu's results file; the log line leaves out the long lists."""

    LONG = ("frame_times_ms", "window_rates", "budget_steps")

    def add(self, **row) -> None:
        self.doc["rows"].append(row)
        self.save()
        m.log(f"{row['what']}: {({k: v for k, v in row.items() if k != 'what' and k not in self.LONG})}")


def stats(times) -> dict:
    t = np.asarray(times, dtype=float)
    return {"frames": int(t.size), "median_s": float(np.median(t)), "p90_s": float(np.percentile(t, 90)),
            "max_s": float(t.max()), "min_s": float(t.min()), "mean_s": float(t.mean())}


# ---------------------------------------------------------------------------------------------- tiles
def run_tiles(res, args, tmp: Path) -> None:
    bv = load_bench("bench_viewer")
    ny, nx = args.mosaic
    fits_path = tmp / f"mosaic_{ny}x{nx}.fits"
    t0 = time.perf_counter()
    bv._write_mosaic(fits_path, ny, nx)
    res.add(what=f"mosaic FITS written ({nx} x {ny} float32, {ny * nx / 1e9:.3f} Gpix)", kind="tiles_data",
            shape=[ny, nx], write_s=time.perf_counter() - t0, bytes=fits_path.stat().st_size)
    pyr = tmp / "mosaic.pyr"
    proc = subprocess.run([sys.executable, "-c", CHILD_SETUP + bv.PYRAMID_CHILD, str(fits_path), str(pyr)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pyramid build failed: {proc.stderr.strip()[-2000:]}")
    build = json.loads(proc.stdout.strip().splitlines()[-1])
    res.add(what=f"image pyramid build, {ny * nx / 1e9:.2f} Gpix mosaic (child process, CPU)", kind="tiles_build",
            shape=[ny, nx], build_s=build["seconds"], levels=build["levels"], tiles=build["tiles"],
            peak_rss_mib=build["peak_rss_bytes"] / 2**20, mpix_per_s=ny * nx / build["seconds"] / 1e6)
    fits_path.unlink()  # the pyramid is all _browse reads
    for rep in range(args.tile_repeats):
        for size in args.tile_sizes:
            if m.elapsed() > args.deadline - 60:
                res.error(f"tiles {size}", TimeoutError("skipped: deadline"))
                continue
            what = f"tiles, zoom to 1:1 and pan, {size[0]}x{size[1]}, pass {rep + 1}"
            try:
                bv.SIZE = size  # _browse reads the module's SIZE: the canvas, and 1:1 = SIZE[1] image rows
                first, first_lit, times, fallback_frames, loads, uploads, levels = bv._browse(pyr, ny, nx)
                res.add(what=what, kind="tiles_browse", size=list(size), shape=[ny, nx], **{"pass": rep + 1},
                        first_frame_s=first, first_lit_fraction=first_lit, all=stats(times),
                        zoom=stats(times[:40]), pan=stats(times[40:]), fallback_frames=int(fallback_frames),
                        tiles_read=int(loads), tiles_uploaded=int(uploads), levels=int(levels),
                        frame_times_ms=[round(1e3 * t, 2) for t in times])
            except Exception as exc:  # noqa: BLE001 - record and go on
                res.error(what, exc)
            gc.collect()


# ---------------------------------------------------------------------------------------------- kiosk
def run_kiosk(res, args, tmp: Path) -> None:
    bk = load_bench("bench_kiosk")
    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web

    target = float(os.environ.get("LENGHU_KIOSK_TARGET_FPS", "10"))
    # the defaults of `lenghu simulate cosmic-web OUT --particles N --quiet`, as bench_kiosk.py runs it
    config = CosmicWebConfig(particles=int(args.kiosk_particles), snapshots=1, box_mpc_h=100.0, seed=0,
                             redshift_start=None, files_per_snapshot=None, compress=False)
    t0 = time.perf_counter()
    (snapshot,) = simulate_cosmic_web(config, tmp / "kiosk-web", progress=False)
    n = int(config.num_particles)
    res.add(what=f"kiosk web {n:.2e} particles (simulate cosmic-web)", kind="kiosk_data", particles=n,
            simulate_s=time.perf_counter() - t0)
    for size in args.kiosk_sizes:
        seconds = args.kiosk_seconds
        need = seconds * (1.5 if args.kiosk_fixed else 1.0) + 30
        if m.elapsed() > args.deadline - need:
            res.error(f"kiosk {size}", TimeoutError("skipped: deadline"))
            continue
        folder = tmp / f"kiosk_{size[0]}x{size[1]}"
        folder.mkdir()
        (folder / "snapshot_000.hdf5").symlink_to(snapshot)
        show = folder / "show.toml"
        show.write_text(bk.SHOW.format(w=size[0], h=size[1], fps=target, max_budget=n, start=min(200_000, n)),
                        encoding="utf-8")
        runs = [("adaptive", seconds, None)]
        if args.kiosk_fixed:
            runs.append(("fixed", seconds * 0.5, n))
        for mode, secs, fixed in runs:
            what = f"kiosk, {mode} budget, {size[0]}x{size[1]}, {n:.1e} particles, {secs:g} s"
            try:
                played = bk.play(show, size, secs, fixed_budget=fixed)
                summ = bk.summary(played, secs, target)
                stamps, budgets = played["stamps"], played["budgets"]
                settle = 0.4 * secs
                windows = np.arange(settle, secs - 1.0 + 1e-9, 1.0)
                rates = [int(((stamps >= a) & (stamps < a + 1.0)).sum()) for a in windows]
                frame_dt = np.diff(stamps[stamps >= settle])
                change_at = np.flatnonzero(np.diff(budgets)) + 1
                res.add(what=what, kind="kiosk", mode=mode, size=list(size), particles=n, seconds=secs,
                        target_fps=target, fps=summ["fps"], within_20pct=summ["within"],
                        budget_median=summ["budget"], budget_changes_after_settling=summ["changes_after"],
                        frames_after_settling=summ["frames"], frames_total=int(len(stamps)),
                        budget_changes_total=int(played["changes"]), max_budget=n,
                        budget_at_max_share=float(np.mean(budgets[stamps >= settle] == n)),
                        frame_interval_after_settling=stats(frame_dt) if len(frame_dt) else None,
                        window_rates=rates,
                        budget_steps=[[round(float(stamps[i]), 2), int(budgets[i])] for i in change_at][:200],
                        budget_first=int(budgets[0]) if len(budgets) else None)
            except Exception as exc:  # noqa: BLE001
                res.error(what, exc)
            gc.collect()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--require-gpu", action="store_true", help="refuse a software renderer (llvmpipe)")
    parser.add_argument("--mosaic", type=str, default=f"{3 * 9232}x{3 * 9216}",
                        help="mosaic rows x columns (default 27696x27648, bench_viewer.py's); one number: square")
    parser.add_argument("--tile-sizes", type=str, default="800x600,1920x1080")
    parser.add_argument("--tile-repeats", type=int, default=1, help="passes over the tile sizes")
    parser.add_argument("--kiosk-sizes", type=str, default="1280x720,1920x1080")
    parser.add_argument("--kiosk-seconds", type=float, default=45.0, help="adaptive run (fixed run: half)")
    parser.add_argument("--kiosk-particles", type=float, default=2e6)
    parser.add_argument("--no-kiosk-fixed", dest="kiosk_fixed", action="store_false",
                        help="skip the run with the budget fixed at every particle")
    parser.add_argument("--skip", choices=["tiles", "kiosk"], action="append", default=[])
    parser.add_argument("--deadline", type=float, default=480.0, help="seconds: later figures are skipped past it")
    args = parser.parse_args(argv)
    dims = args.mosaic.lower().split("x")
    args.mosaic = (int(dims[0]), int(dims[-1]))
    args.tile_sizes = [size_arg(s) for s in args.tile_sizes.split(",") if s]
    args.kiosk_sizes = [size_arg(s) for s in args.kiosk_sizes.split(",") if s]
    args.out.mkdir(parents=True, exist_ok=True)

    m.setup_lenghu()
    lib = m.gl_library()
    info = m.choose_egl(args.require_gpu)
    m.log(f"GL_RENDERER={info['RENDERER']!r} GL_VENDOR={info['VENDOR']!r} GL_VERSION={info['VERSION']!r} "
          f"EGL_PLATFORM={info['EGL_PLATFORM']} gl lib={lib}")
    import vispy

    vispy.use(app="egl")
    meta = {"gl": info, "gl_library": lib, "nvidia_smi": m.nvidia_smi(), "python": sys.version.split()[0],
            "vispy": vispy.__version__, "numpy": np.__version__, "cpu": m.cpu_name(), "cores": os.cpu_count(),
            "argv": sys.argv[1:],
            "tiles": "bench_viewer._write_mosaic + PYRAMID_CHILD + _browse (SIZE set per size)",
            "kiosk": "bench_kiosk.SHOW + play + summary (real time, no sleep)"}
    res = Results(args.out, meta, name="gpu_tiles_kiosk.json")
    with tempfile.TemporaryDirectory(prefix="gpu_tiles_kiosk_", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        for part, fn in (("tiles", run_tiles), ("kiosk", run_kiosk)):
            if part in args.skip:
                continue
            (tmp / part).mkdir()
            try:
                fn(res, args, tmp / part)
            except Exception as exc:  # noqa: BLE001
                res.error(part, exc)
    mods = sorted({k.split(".")[0] for k in sys.modules if not k.startswith("_")})
    res.doc["meta"]["modules"] = mods
    res.doc["meta"]["nvidia_smi_end"] = m.nvidia_smi()
    res.save()
    m.log(f"done; {len(res.doc['rows'])} rows, {len(res.doc['errors'])} errors -> {args.out / res.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
