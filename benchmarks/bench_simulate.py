"""Time one full-size WFST CCD exposure of ``lenghu simulate night`` and measure its peak memory.

One CCD (CCD5: 16 amplifiers, 9472 x 9232 raw pixels), one 30-s science
exposure in r with stars (~25,000 down to r = 24), sky, cosmic rays, dark
current, flat field, saturation and bleeding, noise, written as a plain
175 MB FITS file. With ``quick`` the CCD is 1/4 size per side. The night runs
in a child process so that its peak resident set size is its own; the figure
timed is the exposure (simulated and written, fsync included), the set-up
(planning, the 360,000-star reference catalogue, the truth bias/dark/flat
images) is reported in the notes. Output goes to a temporary folder.
"""

from __future__ import annotations

import json

import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys
from lenghu.simulate.config import NightConfig
from lenghu.simulate.night import simulate_night
config = NightConfig(scale=float(sys.argv[1]), seed=1, n_bias=0, n_dark=0, n_flat=0, n_science=1,
                     filters=("r",), detectors=("CCD5",))
summary = simulate_night(config, sys.argv[2], progress=False)
print(json.dumps({
    "exposure_seconds": summary.exposure_seconds[0],
    "setup_seconds": summary.setup_seconds,
    "stars": summary.stats[0].stars,
    "cosmic_events": summary.stats[0].cosmic_events,
    "bytes": summary.bytes_written,
    "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux: KiB
}))
"""

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import machine  # noqa: E402  (one description of the machine for every benchmark)

TARGET_SECONDS = 10.0
TARGET_BYTES = 2 * 2**30

def _simulate(scale: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_simulate_") as out:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(scale), out], capture_output=True, text=True,
                              check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])

def run(quick: bool) -> list[dict]:
    """Rows for BENCHMARKS.md: exposure time and peak memory."""
    scale = 0.25 if quick else 1.0
    got = _simulate(scale)
    size = "1/4-size" if quick else "full-size"
    notes = (f"{got['stars']} stars, {got['cosmic_events']} cosmic rays, {got['bytes'] / 1e6:.0f} MB written; "
             f"night set-up {got['setup_seconds']:.1f} s")
    host = machine()
    return [
        {
            "figure": f"simulate one {size} WFST CCD exposure",
            "ours": round(got["exposure_seconds"], 2),
            "unit": "s",
            "peer": None,
            "ratio": None,
            "target": "< 10 s, < 2 GB",
            "met": got["exposure_seconds"] < TARGET_SECONDS,
            "notes": notes,
            "machine": host,
        },
        {
            "figure": f"simulate one {size} WFST CCD exposure: peak memory",
            "ours": round(got["peak_rss_bytes"] / 2**30, 3),
            "unit": "GiB",
            "peer": None,
            "ratio": None,
            "target": "< 2 GB",
            "met": got["peak_rss_bytes"] < TARGET_BYTES,
            "notes": "peak resident set of the whole process, truth images included",
            "machine": host,
        },
    ]

if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
