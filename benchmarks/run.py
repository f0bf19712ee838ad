"""Run every ``benchmarks/bench_*.py`` and write the figures to BENCHMARKS.md.

Each benchmark module exposes ``run(quick: bool) -> list[dict]``; a row has
``figure``, ``ours``, ``unit``, and optionally ``peer``, ``peer_name``,
``ratio``, ``target``, ``met`` (bool) and ``notes``. Peers run in the same
invocation on the same inputs, so ratios compare like with like on this
(noisy) machine; timings are medians of repeats where the module says so.

Each module's rows are also kept in ``benchmarks/results/NAME.json`` (with
the date and machine), and BENCHMARKS.md is written from all the result files
present, so running one module (``--only``) updates its rows and keeps the
others'.

Usage::

    python benchmarks/run.py --out BENCHMARKS.md          # everything
    python benchmarks/run.py --only simulate --quick       # one module, small sizes
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


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
    failures = []
    RESULTS.mkdir(exist_ok=True)
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
            print(f"   {row['figure']}: {_format(row.get('ours'), row.get('unit', ''))}", flush=True)
        record = {"module": name, "date": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
                  "machine": host, "quick": args.quick, "seconds": round(time.perf_counter() - start, 1),
                  "rows": got}
        (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1, default=float) + "\n")
        print(f"   ({record['seconds']:.0f} s)", flush=True)
    write_markdown(Path(args.out), failures)
    print(f"wrote {args.out}")
    return 1 if failures else 0


def write_markdown(out: Path, failures: list[tuple[str, str]]) -> None:
    """BENCHMARKS.md from every ``benchmarks/results/*.json``."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run.py`) from `benchmarks/results/*.json`.",
        "Peers run in the same invocation on the same inputs; a ratio above 1 means lenghu is better",
        "(faster, or less memory). The machine is small and shared (2 cores): compare ratios, not seconds.",
        "",
        "| figure | ours | peer | ratio | target | met | measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        when = f"{record['date']}{' (quick)' if record.get('quick') else ''}"
        for row in record["rows"]:
            unit = row.get("unit", "")
            peer = _format(row.get("peer"), unit)
            if row.get("peer_name") and row.get("peer") is not None:
                peer = f"{peer} ({row['peer_name']})"
            met = row.get("met")
            met_text = "-" if met is None else ("yes" if met else "**no**")
            figure = f"[{record['module']}] " + row["figure"] + (f" — {row['notes']}" if row.get("notes") else "")
            lines.append(f"| {figure} | {_format(row.get('ours'), unit)} | {peer} | {_format(row.get('ratio'))} | "
                         f"{row.get('target') or '-'} | {met_text} | {when}, {row.get('machine', record['machine'])} |")
    for name, trace in failures:
        lines += ["", f"**{name} failed:**", "", "```", trace.strip(), "```"]
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
