#!/usr/bin/env python3
"""Where a frame of lenghu's particle renderer goes on a GPU, and a valid Markers reference at 10^8 points.

A follow-up to measure_viewer_gpu.py (same set-up: EGL, ``PYTHONPATH`` holding the repository root; not collected by
pytest, not loaded by benchmarks/run.py). Figures, written to ``$OUT/gpu_profile.json``:

1. our renderer at a 10^6 budget on the 10^7-particle store (1920x1080 and 800x600): the whole frame
   (``canvas.render()``: draw + read-back) and its accumulation pass alone (``SceneRenderer._before_draw``: node
   selection, GL commands for every node, then ``glFinish`` so the GPU's splatting is inside it); the splats drawn
   (points per splat diameter) and the fragments they cover (sum of points x diameter^2); the same with
   ``lod_size_exponent = 0`` (every splat at the base 3 px) to see what the larger level-of-detail splats cost;
   a cProfile of 5 frames (``$OUT/gpu_profile_*.txt``);
2. vispy Markers at 10^8 points (same box, hence the same camera as the 10^7 store's) split into 4 visuals of 2.5x10^7 (1.4 GB of vertex data each instead of one 5.6 GB
   buffer, whose picture came out wrong in measure_viewer_gpu.py), with a PNG to check the picture.

Usage::

    PYTHONPATH=. python3 benchmarks/gpu/profile_frame_gpu.py --out DIR [--markers-particles 1e8]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure_viewer_gpu as m  # noqa: E402  (same folder)


def split_frame(res, store_path, n, camera, size, repeats, exponent=None, profile_to=None):
    from vispy.gloo import gl

    from lenghu.viewer.lod import LodStore
    from lenghu.viewer.model import ParticleLayer, Scene
    from lenghu.viewer.model.metrics import lit_fraction
    from lenghu.viewer.render import SceneRenderer

    what = (f"ours, .lod store, budget 1e6, N={n:.2e}, {size[0]}x{size[1]}"
            + (f", lod_size_exponent={exponent}" if exponent is not None else ""))
    with m.recorded(res, what) as opened:
        layer = ParticleLayer(LodStore(store_path), field="grid_density", budget=10**6)
        if exponent is not None:
            layer.lod_size_exponent = exponent
        renderer = SceneRenderer(Scene([layer], camera=camera.copy(), scale_bar=False, color_bar=False), size=size,
                                 wait_for_data=True)
        opened.append(renderer)
        accum = []
        original = renderer._before_draw

        def before_draw(canvas):
            t0 = time.perf_counter()
            original(canvas)
            canvas.context.flush_commands()
            gl.glFinish()
            accum.append(time.perf_counter() - t0)

        renderer._before_draw = before_draw
        med, best, warm, img = m.timed(renderer.render, repeats)
        adapter = renderer.adapter(layer)
        sel = adapter.last_selection
        sizes = Counter()
        for weight, spacing, count in zip(sel.weight.tolist(), sel.spacing.tolist(), sel.count.tolist()):
            sizes[adapter._splat(weight, spacing)[0]] += count
        fragments = sum(s * s * c for s, c in sizes.items())
        acc = float(np.median(accum[-repeats:]))
        res.add(what=what, kind="split", size=list(size), particles=n, frame_s=med, min_s=best,
                accumulate_with_finish_s=acc, rest_s=med - acc, nodes=int(len(sel.node)),
                points_drawn=int(adapter.last_points), fragments=int(fragments),
                fragments_per_point=fragments / max(1, adapter.last_points),
                points_by_splat_px={str(k): int(v) for k, v in sorted(sizes.items())},
                lit_fraction=lit_fraction(img))
        if profile_to is not None:
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(5):
                renderer.render()
            prof.disable()
            out = io.StringIO()
            stats = pstats.Stats(prof, stream=out)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(25)
            profile_to.write_text(f"{what}: cProfile of 5 frames\n" + out.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_out")))
    parser.add_argument("--particles", type=float, default=1e7, help="the store profiled (default 1e7)")
    parser.add_argument("--markers-particles", type=float, default=1e8)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--require-gpu", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    m.setup_lenghu()
    lib = m.gl_library()
    info = m.choose_egl(args.require_gpu)
    m.log(f"GL_RENDERER={info['RENDERER']!r} GL_VERSION={info['VERSION']!r}")
    import vispy

    vispy.use(app="egl")
    res = m.Results(args.out, {"gl": info, "gl_library": lib, "nvidia_smi": m.nvidia_smi(), "cores": os.cpu_count(),
                               "argv": sys.argv[1:], "repeats": args.repeats}, name="gpu_profile.json")
    from lenghu.viewer.lod import LodStore
    from lenghu.viewer.model import TurntableCamera, load_particles

    with tempfile.TemporaryDirectory(prefix="gpu_profile_", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        source, store_path, n = m.make_set(res, tmp / "small", int(args.particles), None)
        camera = TurntableCamera(azimuth=35, elevation=25)
        camera.fit(*LodStore(store_path).bounds())
        for size in m.SIZES:
            split_frame(res, store_path, n, camera, size, args.repeats,
                        profile_to=args.out / f"gpu_profile_{size[0]}x{size[1]}.txt")
            split_frame(res, store_path, n, camera, size, args.repeats, exponent=0.0)
        big = int(args.markers_particles)
        if big:
            from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web

            t0 = time.perf_counter()
            written = simulate_cosmic_web(CosmicWebConfig(particles=big, seed=7, files_per_snapshot=2), tmp / "big",
                                          progress=False)
            data = load_particles(written[0].parent if len(written) > 1 else written[0])
            positions = np.ascontiguousarray(data.positions, dtype=np.float32)
            del data
            m.log(f"{len(positions):.2e} particles simulated and loaded in {time.perf_counter() - t0:.1f} s")
            for size in m.SIZES:
                png = args.out / f"markers_split_{size[0]}x{size[1]}.png" if size == m.SIZES[0] else None
                m.measure_markers(res, positions, f"{len(positions):.1e}", camera, size, 3, png=png, parts=args.parts)
    res.save()
    m.log(f"done; {len(res.doc['rows'])} rows, {len(res.doc['errors'])} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
