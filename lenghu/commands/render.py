"""``lenghu render PATH... --out FILE.png|FILE.mp4``: headless pictures and movies of snapshots, stores, FITS."""

from __future__ import annotations

import argparse

EPILOG = """\
Inputs (found from their content): particle snapshots (Gadget-2/4, SWIFT,
EAGLE, IllustrisTNG, lenghu Zarr), level-of-detail stores made by
`lenghu convert SNAPSHOT OUT.lod`, FITS images (2-D) and cubes (3-D).
Several snapshots of one simulation play as a time series (particles
interpolated by id between snapshots).

Particles are drawn as additive splats tone mapped so that dense regions
glow without saturating; a store draws at most --budget points a frame.
Headless OpenGL: EGL, falling back to OSMesa (set LENGHU_GL=osmesa to
prefer it).

A tour file is JSON: {"fps": 30, "keyframes": [{"t": 0, "camera": {"type":
"turntable", "azimuth": 0, "elevation": 20, "distance": 250, "center":
[50, 50, 50], "fov": 45}, "caption": "..."}, {"t": 10, "camera": {...}}]}
(see docs/viewer.md).

examples:
  lenghu render sample_data/cosmic_web/snapshot_002.hdf5 --out web.png
  lenghu render web.lod --out web.mp4 --tour tour.json --size 1280x720 --budget 2000000
  lenghu render sample_data/cosmic_web/snapshot_*.hdf5 --out growth.mp4 --seconds 6
  lenghu render cube.fits --out cube.png --volume-method mip
"""


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 800x600, got {text!r}") from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"size out of range (16..16384 per side): {text!r}")
    return w, h


def _count(text: str) -> int:
    try:
        n = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"need a number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text!r}")
    return n


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "render", help="render snapshots, .lod stores or FITS files to a PNG or an MP4 (headless)",
        description="Render particles, volumes or images headless to a picture or a movie.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("paths", nargs="+", metavar="PATH", help="snapshot(s), .lod store(s) or FITS file(s)")
    parser.add_argument("--out", "-o", required=True, metavar="FILE", help="output .png or .mp4")
    parser.add_argument("--tour", metavar="FILE", help="camera keyframes (JSON)")
    parser.add_argument("--size", type=_size, default=(800, 600), metavar="WxH", help="pixels (default 800x600)")
    parser.add_argument("--budget", type=_count, default=1_000_000, metavar="N",
                        help="most points drawn per frame (default 1e6)")
    parser.add_argument("--field", help="colour particles by this field (default grid_density/Density/speed)")
    parser.add_argument("--colormap", help="matplotlib colormap (default inferno; gray for images)")
    parser.add_argument("--scale", choices=("linear", "log"), help="colour scale of the field")
    parser.add_argument("--exposure", type=float, default=1.0, help="brightness factor before tone mapping")
    parser.add_argument("--tonemap", choices=("asinh", "exp", "linear"), default="asinh",
                        help="tone curve (default asinh)")
    parser.add_argument("--point-size", type=float, default=3.0, metavar="PX", help="splat size in pixels (default 3)")
    parser.add_argument("--stretch", choices=("linear", "sqrt", "log", "asinh"), help="image stretch")
    parser.add_argument("--volume-method", choices=("mip", "translucent", "iso", "additive", "average"),
                        help="how cubes are drawn (default mip)")
    parser.add_argument("--caption", help="caption at the bottom of the picture")
    parser.add_argument("--camera", metavar="JSON", help="camera state, e.g. '{\"type\": \"turntable\", \"azimuth\": 60}'")
    parser.add_argument("--fps", type=float, default=30.0, help="movie frame rate without a tour (default 30)")
    parser.add_argument("--seconds", type=float, help="movie length without a tour")
    parser.add_argument("--gl", choices=("egl", "osmesa"), help="headless OpenGL to try first")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress")
    return parser


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from lenghu.errors import LenghuError
    from lenghu.viewer.app.render import render_files
    from lenghu.viewer.app.scenes import SceneSpec

    camera = None
    if args.camera:
        try:
            camera = json.loads(args.camera)
        except json.JSONDecodeError as exc:
            print(f"lenghu render: error: --camera is not JSON: {exc}", file=sys.stderr)
            return 2
    spec = SceneSpec(budget=args.budget, field=args.field, colormap=args.colormap, scale=args.scale,
                     exposure=args.exposure, point_size=args.point_size, tonemap=args.tonemap, caption=args.caption,
                     stretch=args.stretch, volume_method=args.volume_method)

    def progress(i, n):
        if not args.quiet and sys.stderr.isatty():
            print(f"\rframe {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)

    try:
        result = render_files(args.paths, args.out, size=args.size, tour=args.tour, spec=spec, fps=args.fps,
                              seconds=args.seconds, camera=camera, gl=args.gl, progress=progress)
    except LenghuError:
        raise
    except (ValueError, KeyError, OSError) as exc:
        print(f"lenghu render: error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # no headless GL
        print(f"lenghu render: error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.output}: {result.frames} frame(s) of {result.size[0]}x{result.size[1]} in {result.seconds:.1f} s "
          f"({result.backend}, {result.points:,} points in the last frame)")
    return 0
