"""The viewer against plain VisPy Markers, on a synthetic cosmic web (10^7 particles; 10^6 with quick).

Figures (800x600, headless llvmpipe on this machine; medians of 3 frames after a warm-up frame):

- frame time of our renderer reading the .lod store at a 10^6 point budget (10^5 quick), against
  ``vispy.scene.visuals.Markers`` drawing every particle (size 3, additive blending, as ../shared/TOOLS.md
  measured), same camera; the ratio is Markers / ours (target >= 10);
- SSIM of our budgeted frame against our renderer drawing all N particles (the full picture), same
  white point (target >= 0.9);
- octree build rate and peak memory (a child process: ``ru_maxrss``; target >= 2e6 particles/s);
- the first frame from the store (open, first frame drawn without waiting for the disk: the root only),
  and the first complete frame (every selected node loaded);
- selection time per frame (median over 50 camera positions of an orbit; target < 5 ms).
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
BUILD_CHILD = """
import json, resource, sys, time
from lenghu.viewer.lod import build_lod
result = build_lod(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": result.seconds, "particles": result.particles, "nodes": result.nodes,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
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
                     "notes": "ru_maxrss of the build process, interpreter included", "machine": machine})

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
    return rows + run_large(quick)


if __name__ == "__main__":  # pragma: no cover
    quick = "--quick" in sys.argv
    for row in run(quick):
        print(row)


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
        files = simulate_cosmic_web(CosmicWebConfig(particles=10**8, seed=7, files_per_snapshot=2), tmp / "web",
                                    progress=False)
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
         "unit": "MiB", "target": "< 2048", "met": build["peak_rss_bytes"] < 2 * 2**30, "machine": machine},
        {"figure": f"first frame from a {n:.1e}-particle store (open + draw)", "ours": first, "unit": "s",
         "target": "< 2", "met": first < 2.0, "machine": machine},
    ]
