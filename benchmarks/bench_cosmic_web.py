"""Time ``simulate_cosmic_web`` for 10^7 particles (10^6 with quick) and measure its peak memory.

The simulation runs in a child process so that its peak resident set size
(``ru_maxrss``) is its own, not the benchmark runner's. One snapshot at z = 0,
one file; output goes to a temporary folder on the local disk.
"""

from __future__ import annotations

import json

import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web
config = CosmicWebConfig(particles=int(sys.argv[1]), seed=1)
start = time.perf_counter()
paths = simulate_cosmic_web(config, sys.argv[2], progress=False)
elapsed = time.perf_counter() - start
print(json.dumps({
    "seconds": elapsed,
    "particles": config.num_particles,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
    "bytes_written": sum(p.stat().st_size for p in paths),
}))
"""

# Targets: the outreach viewer's 10^8-particle web should be made in minutes on a
# workstation, so 10^7 in well under a minute; memory about 24 bytes per particle
# (three float32 displacement grids plus FFT work arrays) plus the interpreter.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402  (one description of the machine for every benchmark)

TARGET_SECONDS = {10**6: 10.0, 10**7: 60.0}
BYTES_PER_PARTICLE_TARGET = 40

def _simulate(particles: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_cosmic_web_") as out:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(particles), out], capture_output=True, text=True, check=True
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])

def run(quick: bool) -> list[dict]:
    """Rows for BENCHMARKS.md: wall time, throughput and peak memory of one simulation."""
    requested = 10**6 if quick else 10**7
    result = _simulate(requested)
    host = machine()
    n = result["particles"]
    label = f"cosmic web, {n:,} particles, 1 snapshot"
    peak_gib = result["peak_rss_bytes"] / 2**30
    memory_target_gib = BYTES_PER_PARTICLE_TARGET * n / 2**30 + 0.3  # + interpreter and libraries
    return [
        {
            "figure": f"{label}: wall time",
            "ours": round(result["seconds"], 2),
            "unit": "s",
            "peer": None,
            "ratio": None,
            "target": f"< {TARGET_SECONDS[requested]:g} s",
            "met": result["seconds"] < TARGET_SECONDS[requested],
            "machine": host,
        },
        {
            "figure": f"{label}: throughput",
            "ours": round(n / result["seconds"] / 1e6, 2),
            "unit": "M particles/s",
            "peer": None,
            "ratio": None,
            "target": None,
            "machine": host,
            "notes": f"{result['bytes_written'] / 2**20:.0f} MiB written",
        },
        {
            "figure": f"{label}: peak RSS",
            "ours": round(peak_gib, 3),
            "unit": "GiB",
            "peer": None,
            "ratio": None,
            "target": f"< {memory_target_gib:.2f} GiB ({BYTES_PER_PARTICLE_TARGET} B/particle + 0.3 GiB)",
            "met": peak_gib < memory_target_gib,
            "machine": host,
        },
    ]

if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
