"""Run every ``benchmarks/bench_*.py`` and write the figures to BENCHMARKS.md.

Each benchmark module exposes ``run(quick: bool) -> list[dict]``; a row has
``figure``, ``ours``, ``unit``, and optionally ``peer``, ``peer_name``,
``ratio``, ``target``, ``met`` (bool) and ``notes``. Peers run in the same
invocation on the same inputs, so ratios compare like with like on this
(noisy) machine; timings are medians of repeats where the module says so.

Usage::

    python benchmarks/run.py --out BENCHMARKS.md          # everything
    python benchmarks/run.py --only simulate --quick       # one module, small sizes
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> str:
    """A one-line description of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB"
    except ImportError:
        mem = "? GiB"
    return f"{os.cpu_count()} cores ({cpu}), {mem}"


def _format(value, unit="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def load_modules(only: list[str] | None):
    for path in sorted(HERE.glob("bench_*.py")):
        name = path.stem[len("bench_"):]
        if only and name not in only:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield name, module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="BENCHMARKS.md", help="Markdown file to write (default BENCHMARKS.md)")
    parser.add_argument("--only", default="", help="comma-separated module names (bench_NAME.py)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for checking the benchmarks run")
    args = parser.parse_args(argv)
    only = [s for s in args.only.split(",") if s] or None

    host = machine()
    rows, failures = [], []
    for name, module in load_modules(only):
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            got = module.run(quick=args.quick)
        except Exception:  # a broken benchmark is reported in the table, not hidden
            failures.append((name, traceback.format_exc()))
            traceback.print_exc()
            continue
        for row in got:
            row.setdefault("module", name)
            print(f"   {row['figure']}: {_format(row.get('ours'), row.get('unit', ''))}", flush=True)
        rows.extend(got)
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)

    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`benchmarks/run.py`{' --quick' if args.quick else ''}) on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.",
        f"Machine: {host}. Python {platform.python_version()}.",
        "",
        "Peers run in the same invocation on the same inputs; a ratio above 1 means lenghu is better",
        "(faster, or less memory). Times are medians where repeats are stated.",
        "",
        "| figure | ours | peer | ratio | target | met | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        unit = row.get("unit", "")
        peer = _format(row.get("peer"), unit)
        if row.get("peer_name") and row.get("peer") is not None:
            peer = f"{peer} ({row['peer_name']})"
        met = row.get("met")
        met_text = "-" if met is None else ("yes" if met else "**no**")
        figure = row["figure"] + (f" — {row['notes']}" if row.get("notes") else "")
        lines.append(
            f"| {figure} | {_format(row.get('ours'), unit)} | {peer} | {_format(row.get('ratio'))} | "
            f"{row.get('target', '-')} | {met_text} | {row.get('machine', 'this machine')} |"
        )
    for name, trace in failures:
        lines += ["", f"**{name} failed:**", "", "```", trace.strip(), "```"]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
