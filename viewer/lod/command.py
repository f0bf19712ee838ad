"""``lenghu convert SNAPSHOT OUT.lod``: the hook that ``lenghu convert`` hands ``.lod`` outputs to."""

from __future__ import annotations

import sys


def convert_to_lod(args) -> int:
    """Build a level-of-detail store from ``args.input`` into ``args.output`` (argparse namespace of convert)."""
    from lenghu.viewer.lod.build import BuildOptions, build_lod

    bar = None
    if not getattr(args, "quiet", False) and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=300, desc="octree", unit="%", file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    stages = {"count": 0, "bucket": 1, "build": 2}

    def progress(stage, fraction):
        if bar is not None:
            bar.n = int(100 * (stages.get(stage, 0) + fraction))
            bar.set_postfix_str(stage)
            bar.refresh()

    try:
        result = build_lod(args.input, args.output, BuildOptions(), progress=progress)
    except (ValueError, OSError) as exc:
        print(f"lenghu convert: error: {args.input}: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    print(f"{args.input} -> {result.path} (lenghu-lod): {result.particles:,} particles, {result.nodes:,} nodes, "
          f"depth {result.depth}, fields {', '.join(result.fields) or 'none'}, in {result.seconds:.1f} s "
          f"({result.rate / 1e6:.2f} M particles/s)")
    return 0
