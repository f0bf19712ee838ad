"""The viewer against plain VisPy Markers, on a synthetic cosmic web (10^7 particles; 10^6 with quick).

Figures (800x600, headless llvmpipe on this machine; medians of 3 frames after a warm-up frame):

- frame time of our renderer reading the .lod store at a 10^6 point budget (10^5 quick), against
  ``vispy.scene.visuals.Markers`` drawing every particle (size 3, additive blending, as ../shared/TOOLS.md
  measured), same camera; the ratio is Markers / ours (target >= 10);
- SSIM of our budgeted frame against our renderer drawing all N particles (the full picture), same
  white point (target >= 0.9);
- octree build rate and peak memory (a child process: its VmHWM; target >= 2e6 particles/s);
- the first frame from the store (open, first frame drawn without waiting for the disk: the root only),
  and the first complete frame (every selected node loaded);
- selection time per frame (median over 50 camera positions of an orbit; target < 5 ms);
- at 10^8 particles (``run_large``): build rate and peak memory under the default memory budget, first frame;
- tiled images (``run_tiles``): image pyramid build time and peak memory for a 0.77 Gpix WFST-sized mosaic
  (27648 x 27696 float32, a memory-mapped FITS file), first frame, and frame times while zooming in and panning
  at full resolution (interactive: tiles load in the background; median and 90th percentile);
- a whole WFST exposure (``run_exposure``): one full-size raw exposure simulated by ``lenghu simulate night``
  (9 CCDs of 9216 x 9232 pixels, 16 amplifiers with overscan each, uint16, 1.6 GB) built into one pyramid:
  every CCD assembled strip by strip and placed by the instrument's mosaic geometry (0.78 Gpix canvas with the
  gaps); build time and peak memory (VmHWM of the child), first frame, zoom/pan frame times as above.

``LENGHU_BENCH_CACHE=DIR`` keeps the 10^8-particle snapshot, the mosaic FITS file and the simulated exposure in
DIR between runs (generating them takes about a minute each); by default they live in a temporary folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = (800, 600)
# Peak memory of a child is its own VmHWM (/proc/self/status), not ru_maxrss: Linux carries the parent's
# high-water mark into ru_maxrss across fork/vfork + exec, so a child started from this (large) process would
# report this process's peak (a child of a 2 GiB parent reads 2 GiB of ru_maxrss and 11 MB of VmHWM here).
PEAK = """
def peak_rss_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
"""
BUILD_CHILD = PEAK + """
import json, sys, time
from lenghu.viewer.lod import build_lod
result = build_lod(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": result.seconds, "particles": result.particles, "nodes": result.nodes,
                  "buckets": result.buckets, "bucket_points": result.plan.bucket_points,
                  "budget": result.plan.estimated_bytes,
                  "peak_rss_bytes": peak_rss_bytes()}))
"""
PYRAMID_CHILD = PEAK + """
import json, sys
from lenghu.viewer.tiles import build_pyramid
result = build_pyramid(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": result.seconds, "levels": result.levels, "tiles": result.tiles,
                  "peak_rss_bytes": peak_rss_bytes()}))
"""


def _median_frame(render, repeats=3):
    render()  # warm-up: shaders, uploads, loads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        img = render()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), img


def _markers_frame(positions, camera, size, repeats):
    from vispy import scene
    from vispy.visuals.transforms import MatrixTransform

    canvas = scene.SceneCanvas(size=size, show=False, bgcolor="black")
    node = scene.Node(parent=canvas.scene)
    w, h = size
    to_px = np.array([[w / 2, 0, 0, w / 2], [0, -h / 2, 0, h / 2], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    node.transform = MatrixTransform((to_px @ camera.projection_matrix(w / h) @ camera.view_matrix()).T)
    markers = scene.visuals.Markers(parent=node)
    markers.set_data(positions, size=3, edge_width=0, face_color=(1.0, 1.0, 1.0, 0.05))
    markers.set_gl_state("additive", depth_test=False)
    try:
        seconds, img = _median_frame(lambda: canvas.render(alpha=False), repeats)
    finally:
        canvas.close()
    return seconds, img


def run(quick: bool = False) -> list[dict]:
    from lenghu.viewer.app.headless import use_headless_gl

    backend = use_headless_gl()
    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web
    from lenghu.viewer.lod import LodStore, select_nodes
    from lenghu.viewer.model import ParticleLayer, Scene, TurntableCamera, load_particles
    from lenghu.viewer.model.metrics import ssim, white_fraction
    from lenghu.viewer.render import SceneRenderer

    n_target = 10**6 if quick else 10**7
    budget = 10**5 if quick else 10**6
    repeats = 3
    rows: list[dict] = []
    machine = f"this machine ({backend}, llvmpipe)"
    with tempfile.TemporaryDirectory(prefix="bench_viewer_") as tmp:
        tmp = Path(tmp)
        (snap,) = simulate_cosmic_web(CosmicWebConfig(particles=n_target, seed=7), tmp / "web", progress=False)
        # --- build (child process: its own peak memory)
        proc = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(snap), str(tmp / "web.lod")],
                              capture_output=True, text=True, check=True)
        build = json.loads(proc.stdout.strip().splitlines()[-1])
        n = build["particles"]
        rate = n / build["seconds"]
        rows.append({"figure": f"octree build rate, {n:.2e} particles (lenghu convert SNAPSHOT OUT.lod)",
                     "ours": rate, "unit": "particles/s", "target": ">= 2e6", "met": rate >= 2e6,
                     "notes": f"{build['seconds']:.1f} s, {build['nodes']} nodes", "machine": machine})
        rows.append({"figure": f"octree build peak memory, {n:.2e} particles", "ours": build["peak_rss_bytes"] / 2**20,
                     "unit": "MiB", "target": "< 2048 (bounded whatever N)",
                     "met": build["peak_rss_bytes"] < 2 * 2**30,
                     "notes": "peak resident memory (VmHWM) of the build process, interpreter included",
                     "machine": machine})

        # --- first frame from the store
        camera = TurntableCamera(azimuth=35, elevation=25)
        start = time.perf_counter()
        store = LodStore(tmp / "web.lod")
        camera.fit(*store.bounds())
        layer = ParticleLayer(store, field="grid_density", budget=budget)
        renderer = SceneRenderer(Scene([layer], camera=camera, scale_bar=False, color_bar=False), size=SIZE)
        renderer.render()
        first = time.perf_counter() - start
        adapter = renderer.adapter(layer)
        adapter.loader.wait(timeout=600)
        renderer.render()
        complete = time.perf_counter() - start
        renderer.close()
        rows.append({"figure": f"first frame from a {n:.1e}-particle store (open + draw, no waiting)",
                     "ours": first, "unit": "s", "target": "< 2", "met": first < 2.0,
                     "notes": f"first complete frame (all nodes loaded): {complete:.2f} s", "machine": machine})

        # --- selection time
        tree = store.tree
        times = []
        for az in np.linspace(0, 360, 50):
            camera.azimuth = float(az)
            args = (tree, camera.view_matrix(), camera.projection_matrix(SIZE[0] / SIZE[1]), SIZE, budget,
                    camera.eye, camera.focal_pixels(SIZE[1]))
            start = time.perf_counter()
            select_nodes(*args)
            times.append(time.perf_counter() - start)
        sel_ms = 1e3 * float(np.median(times))
        rows.append({"figure": f"node selection per frame ({tree.n} nodes, budget {budget:.0e})", "ours": sel_ms,
                     "unit": "ms", "target": "< 5", "met": sel_ms < 5.0, "machine": machine})
        camera.azimuth = 35.0

        # --- our full picture (every particle) and our budgeted frame
        data = load_particles(snap)
        full_layer = ParticleLayer(data, field="grid_density", budget=10**9)
        r_full = SceneRenderer(Scene([full_layer], camera=camera.copy(), scale_bar=False, color_bar=False), size=SIZE)
        full_s, full_img = _median_frame(r_full.render, 1 if not quick else repeats)
        white = r_full.adapter(full_layer).auto_white
        r_full.close()
        lod_layer = ParticleLayer(LodStore(tmp / "web.lod"), field="grid_density", budget=budget, white_point=white)
        r_lod = SceneRenderer(Scene([lod_layer], camera=camera.copy(), scale_bar=False, color_bar=False), size=SIZE,
                              wait_for_data=True)
        ours_s, lod_img = _median_frame(r_lod.render, repeats)
        drawn = r_lod.adapter(lod_layer).last_points
        r_lod.close()
        score = ssim(full_img, lod_img)
        positions = np.ascontiguousarray(data.positions)
        del data
        markers_s, markers_img = _markers_frame(positions, camera, SIZE, repeats if quick else 2)
        ratio = markers_s / ours_s
        rows.append({"figure": f"frame time, {drawn:.2e}-point budget from the store vs Markers drawing all {n:.1e}",
                     "ours": ours_s, "peer": markers_s, "peer_name": "vispy Markers, size 3, additive",
                     "unit": "s", "ratio": ratio, "target": ">= 10x", "met": ratio >= 10.0,
                     "notes": f"our renderer drawing all {n:.1e}: {full_s:.2f} s/frame", "machine": machine})
        rows.append({"figure": f"SSIM of the {budget:.0e}-budget frame vs our full picture of {n:.1e} particles",
                     "ours": score, "unit": "", "target": ">= 0.9", "met": score >= 0.9,
                     "notes": f"white pixels: ours {100 * white_fraction(lod_img):.2f}%, "
                              f"Markers {100 * white_fraction(markers_img):.2f}%", "machine": machine})
        rows.append({"figure": "GPU bytes per point", "ours": 16, "peer": 52, "peer_name": "vispy Markers",
                     "unit": "B", "ratio": 52 / 16, "target": "<= 16", "met": True, "machine": machine})
    return rows + run_large(quick) + run_tiles(quick) + run_exposure(quick)


def _cache_dir(tmp: Path) -> Path:
    """LENGHU_BENCH_CACHE (kept between runs) or the run's temporary folder."""
    import os

    cache = os.environ.get("LENGHU_BENCH_CACHE")
    folder = Path(cache) if cache else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_large(quick: bool = False) -> list[dict]:
    """10^8 particles: out-of-core octree build (rate, peak memory) and the first frame from the store."""
    if quick:
        return []
    from lenghu.viewer.app.headless import use_headless_gl

    backend = use_headless_gl()
    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web
    from lenghu.viewer.lod import LodStore
    from lenghu.viewer.model import ParticleLayer, Scene, TurntableCamera
    from lenghu.viewer.render import SceneRenderer

    machine = f"this machine ({backend}, llvmpipe)"
    with tempfile.TemporaryDirectory(prefix="bench_viewer_1e8_") as tmp:
        tmp = Path(tmp)
        cache = _cache_dir(tmp)
        source = cache / "web1e8" / "snapdir_000"
        if not source.is_dir() or len(list(source.glob("snapshot_000.*.hdf5"))) != 2:
            files = simulate_cosmic_web(CosmicWebConfig(particles=10**8, seed=7, files_per_snapshot=2),
                                        cache / "web1e8", progress=False)
            source = files[0].parent if len(files) > 1 else files[0]
        proc = subprocess.run([sys.executable, "-c", BUILD_CHILD, str(source), str(tmp / "web.lod")],
                              capture_output=True, text=True, check=True)
        build = json.loads(proc.stdout.strip().splitlines()[-1])
        n = build["particles"]
        rate = n / build["seconds"]
        camera = TurntableCamera(azimuth=35, elevation=25)
        start = time.perf_counter()
        store = LodStore(tmp / "web.lod")
        camera.fit(*store.bounds())
        layer = ParticleLayer(store, field="grid_density", budget=10**6)
        renderer = SceneRenderer(Scene([layer], camera=camera, scale_bar=False, color_bar=False), size=SIZE)
        renderer.render()
        first = time.perf_counter() - start
        renderer.close()
    return [
        {"figure": f"octree build rate, {n:.2e} particles", "ours": rate, "unit": "particles/s", "target": ">= 2e6",
         "met": rate >= 2e6, "notes": f"{build['seconds']:.1f} s, {build['nodes']} nodes", "machine": machine},
        {"figure": f"octree build peak memory, {n:.2e} particles", "ours": build["peak_rss_bytes"] / 2**20,
         "unit": "MiB", "target": "< 2048", "met": build["peak_rss_bytes"] < 2 * 2**30, "machine": machine,
         "notes": f"VmHWM of the build process (page cache not counted); default memory budget, modelled "
                  f"{build['budget'] / 2**20:.0f} MiB of working memory; {build['buckets']} buckets of at most "
                  f"{build['bucket_points']:,} particles"},
        {"figure": f"first frame from a {n:.1e}-particle store (open + draw)", "ours": first, "unit": "s",
         "target": "< 2", "met": first < 2.0, "machine": machine},
    ]


def _write_mosaic(path: Path, ny: int, nx: int, seed: int = 5) -> None:
    """A synthetic WFST-sized mosaic as a FITS file, written band by band (plain writes, no memory map).

    Sky 1000 e- with Gaussian noise (sigma 30), a gentle gradient, 9 CCD-sized blocks with gaps of 0 e-
    between them (the mosaic's chip gaps), and 200 stars (Gaussian, sigma 2.5 px) per 4096^2 pixels.
    """
    from astropy.io import fits

    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"], header["NAXIS1"], header["NAXIS2"] = True, -32, 2, nx, ny
    header["OBJECT"] = "synthetic WFST mosaic"
    head = header.tostring().encode("ascii")
    size = ny * nx * 4
    tmp = path.with_name(path.name + ".part")
    out = open(tmp, "wb")
    out.write(head)
    rng = np.random.default_rng(seed)
    band = 1024
    stars = int(200 * ny * nx / 4096**2)
    sy, sx = rng.uniform(0, ny, stars), rng.uniform(0, nx, stars)
    flux = 10 ** rng.uniform(3, 6, stars)
    yy, xx = np.mgrid[-8:9, -8:9]
    x_grad = (np.arange(nx, dtype=np.float32) / nx * 50).astype(np.float32)
    gaps_x = [(i * nx // 3 - 40, i * nx // 3 + 40) for i in (1, 2)]
    gaps_y = [(i * ny // 3 - 40, i * ny // 3 + 40) for i in (1, 2)]
    for a in range(0, ny, band):
        b = min(ny, a + band)
        rows = rng.standard_normal((b - a, nx), dtype=np.float32)
        rows *= 30.0
        rows += 1000.0
        rows += x_grad
        for i in np.flatnonzero((sy >= a - 8) & (sy < b + 8)):
            cy, cx = int(sy[i]), int(sx[i])
            stamp = (flux[i] / (2 * np.pi * 2.5**2) * np.exp(-((yy + cy - sy[i]) ** 2 + (xx + cx - sx[i]) ** 2)
                                                            / (2 * 2.5**2))).astype(np.float32)
            y0, y1 = max(cy - 8, a), min(cy + 9, b)
            x0, x1 = max(cx - 8, 0), min(cx + 9, nx)
            if y1 > y0 and x1 > x0:
                rows[y0 - a:y1 - a, x0:x1] += stamp[y0 - cy + 8:y1 - cy + 8, x0 - cx + 8:x1 - cx + 8]
        for g0, g1 in gaps_x:
            rows[:, g0:g1] = 0.0
        for g0, g1 in gaps_y:
            lo, hi = max(g0, a), min(g1, b)
            if hi > lo:
                rows[lo - a:hi - a] = 0.0
        rows.astype(">f4").tofile(out)
    out.write(b"\0" * ((-size) % 2880))
    out.close()
    tmp.rename(path)


def run_tiles(quick: bool = False) -> list[dict]:
    """Tiled images: pyramid build (time, peak memory) for a 0.77 Gpix mosaic, first frame, pan/zoom frame times."""
    from lenghu.viewer.app.headless import use_headless_gl

    backend = use_headless_gl()
    machine = f"this machine ({backend}, llvmpipe)"
    ny, nx = (8192, 8192) if quick else (3 * 9232, 3 * 9216)  # a 3x3 mosaic of e2v CCD290-99s
    image_bytes = ny * nx * 4
    with tempfile.TemporaryDirectory(prefix="bench_viewer_tiles_") as tmp:
        tmp = Path(tmp)
        cache = _cache_dir(tmp)
        fits_path = cache / f"mosaic_{ny}x{nx}.fits"
        if not fits_path.exists():
            _write_mosaic(fits_path, ny, nx)
        proc = subprocess.run([sys.executable, "-c", PYRAMID_CHILD, str(fits_path), str(tmp / "mosaic.pyr")],
                              capture_output=True, text=True, check=True)
        build = json.loads(proc.stdout.strip().splitlines()[-1])
        first, first_lit, times, fallback_frames, loads, uploads, levels = _browse(tmp / "mosaic.pyr", ny, nx)
    median = float(np.median(times))
    p90 = float(np.percentile(times, 90))
    gpix = ny * nx / 1e9
    return [
        {"figure": f"image pyramid build, {gpix:.2f} Gpix mosaic ({nx} x {ny} float32 FITS, to .pyr)",
         "ours": build["seconds"], "unit": "s", "target": "-", "met": True, "machine": machine,
         "notes": f"{build['levels']} levels, {build['tiles']:,} tiles of 512^2 "
                  f"({ny * nx / build['seconds'] / 1e6:.0f} Mpix/s)"},
        {"figure": f"image pyramid build peak memory, {gpix:.2f} Gpix mosaic ({image_bytes / 2**30:.2f} GiB of pixels)",
         "ours": build["peak_rss_bytes"] / 2**20, "unit": "MiB", "target": "< 25% of the image",
         "met": build["peak_rss_bytes"] < 0.25 * image_bytes, "machine": machine,
         "notes": "VmHWM of the build process, interpreter included (page cache not counted)"},
        {"figure": f"first frame of the {gpix:.2f} Gpix mosaic (open pyramid + draw, no waiting)", "ours": first,
         "unit": "s", "target": "< 2", "met": first < 2.0, "machine": machine,
         "notes": f"{100 * first_lit:.0f}% of pixels lit (the coarsest tile)"},
        {"figure": f"frame time while zooming to 1:1 and panning the {gpix:.2f} Gpix mosaic ({len(times)} frames, "
                   f"{SIZE[0]}x{SIZE[1]}, interactive)", "ours": median, "unit": "s", "target": "< 0.1 (10 fps)",
         "met": median < 0.1, "machine": machine,
         "notes": f"90th percentile {p90:.3f} s, max {max(times):.3f} s; {fallback_frames} frames drew a coarser "
                  f"tile while the fine one loaded; {loads} tiles read, {uploads} uploaded, {levels} levels"},
    ]


def _browse(pyramid: Path, ny: int, nx: int):
    """First frame (open the pyramid, draw without waiting: the coarsest tile), then interactive zoom and pan.

    Returns (first frame s, fraction of pixels lit, frame times, frames that drew a coarser tile, tiles read,
    tiles uploaded, levels).
    """
    from lenghu.viewer.model import PanZoomCamera, Scene, TiledImageLayer
    from lenghu.viewer.render import SceneRenderer

    start = time.perf_counter()
    layer = TiledImageLayer(pyramid, stretch="asinh", interval="zscale")
    camera = PanZoomCamera().fit((0, 0, 0), (nx, ny, 0), SIZE[0] / SIZE[1])
    renderer = SceneRenderer(Scene([layer], camera=camera, scale_bar=False, color_bar=False), size=SIZE)
    img = renderer.render()
    first = time.perf_counter() - start
    adapter = renderer.adapter(layer)
    first_lit = float((img.mean(axis=2) > 10).mean())
    # interactive zoom from the whole mosaic to 1:1 over 40 frames, then 80 frames of panning at 1:1
    # (40 screen pixels a frame, 1.2 s of screen at 30 fps crossing tiles); tiles load in the background
    target = np.array([nx * 0.37, ny * 0.61])
    heights = np.geomspace(camera.height, SIZE[1], 40)
    path = [(tuple(camera.center + (target - camera.center) * (i / 39)), h) for i, h in enumerate(heights)]
    path += [((target[0] + 40.0 * k, target[1] + 15.0 * k), float(SIZE[1])) for k in range(1, 81)]
    times, fallback_frames = [], 0
    for centre, height in path:
        camera.center, camera.height = centre, height
        t0 = time.perf_counter()
        renderer.render()
        times.append(time.perf_counter() - t0)
        fallback_frames += adapter.last_fallbacks > 0
    loads, uploads, levels = adapter.loader.loads, adapter.uploads, len(layer.store.levels)
    renderer.close()
    return first, first_lit, times, fallback_frames, loads, uploads, levels


EXPOSURE_CHILD = """
import sys
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import simulate_night
simulate_night(NightConfig(scale=float(sys.argv[1]), seed=11, n_bias=0, n_dark=0, n_flat=0, n_science=1,
                           filters=("r",), truth_images=False), sys.argv[2], progress=False)
"""


def _cached_exposure(cache: Path, quick: bool) -> Path:
    """One raw WFST science exposure from ``lenghu simulate night`` (all 9 CCDs), made once (in a child)."""
    scale = "0.25" if quick else "1"
    folder = cache / f"wfst_exposure_scale{scale}"
    if not (folder / "complete").is_file():
        import shutil

        if folder.exists():
            shutil.rmtree(folder)
        subprocess.run([sys.executable, "-c", EXPOSURE_CHILD, scale, str(folder / "night")], check=True)
        (folder / "complete").write_text("ok\n")
    (raw,) = sorted((folder / "night" / "raw").glob("*.fits*"))
    return raw


def run_exposure(quick: bool = False) -> list[dict]:
    """A whole simulated WFST raw exposure (9 CCDs assembled onto one canvas) as a pyramid: build, browse."""
    from lenghu.viewer.app.headless import use_headless_gl

    backend = use_headless_gl()
    machine = f"this machine ({backend}, llvmpipe)"
    with tempfile.TemporaryDirectory(prefix="bench_viewer_exposure_") as tmp:
        tmp = Path(tmp)
        raw = _cached_exposure(_cache_dir(tmp), quick)
        raw_bytes = raw.stat().st_size
        proc = subprocess.run([sys.executable, "-c", PYRAMID_CHILD, str(raw), str(tmp / "exposure.pyr")],
                              capture_output=True, text=True, check=True)
        build = json.loads(proc.stdout.strip().splitlines()[-1])
        meta = json.loads((tmp / "exposure.pyr" / "pyramid.json").read_text())
        ny, nx = meta["shape"]
        ccds = len(meta["mosaic"])
        ccd_pixels = sum(m["shape"][0] * m["shape"][1] for m in meta["mosaic"])
        first, first_lit, times, fallback_frames, loads, uploads, levels = _browse(tmp / "exposure.pyr", ny, nx)
    median = float(np.median(times))
    p90 = float(np.percentile(times, 90))
    gpix = ny * nx / 1e9
    what = f"{ccds}-CCD raw WFST exposure ({nx} x {ny} canvas, {gpix:.2f} Gpix)"
    canvas_bytes = ny * nx * 4
    return [
        {"figure": f"image pyramid build, {what}", "ours": build["seconds"], "unit": "s", "target": "-",
         "met": True, "machine": machine,
         "notes": f"simulated by lenghu simulate night ({raw_bytes / 1e9:.2f} GB uint16 with overscan); "
                  f"each CCD overscan-subtracted, trimmed, gain applied (StripAssembler) band by band; "
                  f"{ccd_pixels / build['seconds'] / 1e6:.0f} Mpix/s of CCD pixels; {build['levels']} levels, "
                  f"{build['tiles']:,} tiles"},
        {"figure": f"image pyramid build peak memory, {what}", "ours": build["peak_rss_bytes"] / 2**20,
         "unit": "MiB", "target": "< 25% of the canvas", "met": build["peak_rss_bytes"] < 0.25 * canvas_bytes,
         "machine": machine,
         "notes": f"VmHWM of the build process, interpreter included (page cache not counted); the canvas is "
                  f"{canvas_bytes / 2**30:.2f} GiB as float32"},
        {"figure": f"first frame of the {what} (open pyramid + draw, no waiting)", "ours": first, "unit": "s",
         "target": "< 2", "met": first < 2.0, "machine": machine,
         "notes": f"{100 * first_lit:.0f}% of pixels lit (the coarsest tile)"},
        {"figure": f"frame time while zooming to 1:1 and panning the {what} ({len(times)} frames, "
                   f"{SIZE[0]}x{SIZE[1]}, interactive)", "ours": median, "unit": "s", "target": "< 0.1 (10 fps)",
         "met": median < 0.1, "machine": machine,
         "notes": f"90th percentile {p90:.3f} s, max {max(times):.3f} s; {fallback_frames} frames drew a coarser "
                  f"tile while the fine one loaded; {loads} tiles read, {uploads} uploaded, {levels} levels"},
    ]


if __name__ == "__main__":  # pragma: no cover
    quick = "--quick" in sys.argv
    for row in run(quick):
        print(row)
