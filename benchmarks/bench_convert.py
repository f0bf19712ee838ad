"""``lenghu convert`` throughput and peak memory against a plain read-and-write of the same bytes.

Two inputs, made once and kept in ``/tmp/lenghu-bench-cache`` (outputs go to a
temporary folder on the same disk):

- a multi-file Gadget-4 snapshot from :mod:`lenghu.simulate.cosmic_web`
  (quick: 10^6 particles in 2 files; full: 10^8 in as many 1 GiB files as it takes),
  converted to Zarr;
- a WFST-like raw exposure: a primary header and one uint16 (BZERO 32768)
  extension per CCD290-99 of 9216 x 9232 pixels with a bias level and read and
  sky noise (full: all 9 detectors, 1.5 GB; quick: 3 of them), converted to
  Zarr and to ``.fz``.

The peer reads the same bytes and writes them out again, with no format work
(and, like lenghu's atomic writes, flushes them to disk before it ends):
for the snapshot each HDF5 dataset is read in 100 MB slabs with h5py and
written to one flat file; for the FITS file the file is copied in 16 MB
blocks. Throughput is input bytes (particle data / file size) per second; the
ratio is ours / peer, target >= 0.5. Each conversion runs in a child process
whose peak resident set (``VmHWM``; for .fz also its fpack children's ``ru_maxrss``) is
its peak memory, target < 1 GB whatever the input size. Each figure is the
median of ``REPEATS`` runs, alternating ours and the peer, after one warm-up
read that puts the input in the page cache for both. Our child process first
converts a small input of the same kind, untimed, as a pipeline or a batch
conversion pays its imports and first-call set-up once (about 1 s).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPEATS = 3
MEMORY_TARGET_BYTES = 10**9
RATIO_TARGET = 0.5

CONVERT_CHILD = """
import json, resource, shutil, sys, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import astropy.io.fits, dask.array, h5py, zarr
from lenghu.convert.api import convert
# A warm interpreter, as in a pipeline or a batch conversion (lenghu convert DIR): the imports and
# first-call set-up (about 1 s, most of it lazy imports) are paid once per process, on a small
# input of the same kind, and not timed.
warm = Path(sys.argv[2]).parent / ("warm-up" + Path(sys.argv[2]).suffix)
convert(sys.argv[4], warm, sys.argv[3])
shutil.rmtree(warm) if warm.is_dir() else warm.unlink()
start = time.perf_counter()
convert(sys.argv[1], sys.argv[2], sys.argv[3])
elapsed = time.perf_counter() - start
# VmHWM, not ru_maxrss: the latter keeps the benchmark parent's high-water mark across fork and exec.
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
own = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
peak = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # children: fpack processes
print(json.dumps({"seconds": elapsed, "peak_rss_bytes": peak * 1024}))
"""

PEER_SNAPSHOT_CHILD = """
import json, os, resource, sys, time
from pathlib import Path
import h5py
start = time.perf_counter()
total = 0
with open(sys.argv[2], "wb") as out:
    for piece in sorted(Path(sys.argv[1]).glob("*.hdf5")):
        with h5py.File(piece, "r") as h5:
            datasets = []
            h5.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
            for ds in datasets:
                rows = max(1, 100 * 2**20 // max(1, ds.dtype.itemsize * (ds.size // max(1, ds.shape[0]))))
                for i in range(0, ds.shape[0], rows):
                    block = ds[i:i + rows]
                    out.write(block.tobytes())
                    total += block.nbytes
    out.flush()
    os.fsync(out.fileno())
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "bytes": total,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

PEER_COPY_CHILD = """
import json, os, resource, sys, time
start = time.perf_counter()
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as out:
    while True:
        block = src.read(16 * 2**20)
        if not block:
            break
        out.write(block)
    out.flush()
    os.fsync(out.fileno())
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

MEF_CHILD = """
import sys
import numpy as np
from astropy.io import fits
path, detectors = sys.argv[1], int(sys.argv[2])
ny, nx = 9232, 9216
primary = fits.Header()
primary["SIMPLE"] = True
primary["BITPIX"] = 8
primary["NAXIS"] = 0
primary["EXTEND"] = True
primary["TELESCOP"] = "WFST"
primary["INSTRUME"] = "WFST camera (synthetic benchmark frame)"
primary["EXPTIME"] = 30.0
fits.StreamingHDU(path, primary).close()
rng = np.random.default_rng(0)
for d in range(detectors):
    h = fits.Header()
    h["XTENSION"] = "IMAGE"
    h["BITPIX"] = 16
    h["NAXIS"] = 2
    h["NAXIS1"] = nx
    h["NAXIS2"] = ny
    h["PCOUNT"] = 0
    h["GCOUNT"] = 1
    h["BSCALE"] = 1
    h["BZERO"] = 32768
    h["EXTNAME"] = f"CCD{d + 1}"
    h["DETSIZE"] = f"[1:{nx * 3},1:{ny * 3}]"
    stream = fits.StreamingHDU(path, h)
    rows = 512
    for y in range(0, ny, rows):
        n = min(rows, ny - y)
        adu = 1000 + 400 + rng.normal(0, 22, size=(n, nx))  # bias + sky, read and sky noise
        stream.write((np.round(adu).astype(np.int32) - 32768).astype(">i2"))
    stream.close()
"""


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _compare(source: Path, out: Path, to: str, peer_code: str, peer_out: Path, nbytes: int | None,
             warm_up: Path) -> dict:
    """Median seconds and peak memory of ours and of the peer, alternating, after a warm-up."""
    _child(peer_code, str(source), str(peer_out))  # warm the page cache for both
    ours, peer = [], []
    for _ in range(REPEATS):
        _remove(out)
        ours.append(_child(CONVERT_CHILD, str(source), str(out), to, str(warm_up)))
        _remove(peer_out)
        peer.append(_child(peer_code, str(source), str(peer_out)))
    data_bytes = nbytes if nbytes is not None else peer[0].get("bytes", _size(source))
    ours_s = statistics.median(r["seconds"] for r in ours)
    peer_s = statistics.median(r["seconds"] for r in peer)
    return {
        "bytes": data_bytes,
        "ours_mb_s": data_bytes / ours_s / 1e6,
        "peer_mb_s": data_bytes / peer_s / 1e6,
        "ours_peak": max(r["peak_rss_bytes"] for r in ours),
        "output_bytes": _size(out),
    }


def _rows(label: str, peer_name: str, m: dict, notes: str) -> list[dict]:
    ratio = m["ours_mb_s"] / m["peer_mb_s"]
    return [
        {
            "figure": f"{label}: throughput",
            "ours": round(m["ours_mb_s"], 1),
            "unit": "MB/s",
            "peer": round(m["peer_mb_s"], 1),
            "peer_name": peer_name,
            "ratio": round(ratio, 2),
            "target": f">= {RATIO_TARGET} x peer",
            "met": ratio >= RATIO_TARGET,
            "notes": f"{m['bytes'] / 1e6:,.0f} MB in, {m['output_bytes'] / 1e6:,.0f} MB out; {notes}",
        },
        {
            "figure": f"{label}: peak memory",
            "ours": round(m["ours_peak"] / 2**20, 1),
            "unit": "MiB",
            "peer": None,
            "peer_name": None,
            "ratio": None,
            "target": "< 1 GB",
            "met": m["ours_peak"] < MEMORY_TARGET_BYTES,
            "notes": "VmHWM of the converting process, or ru_maxrss of its largest fpack child for .fz "
                     "(a child's figure starts at its parent's resident set at fork)",
        },
    ]


#: Inputs that take long to make (the 10^8-particle snapshot: about 25 s and 2.5 GB) are kept here
#: between runs, each with a marker written once it is complete.
CACHE = Path("/tmp/lenghu-bench-cache")


def cached_snapshot(particles: int, files: int | None):
    """The multi-file cosmic-web snapshot folder (``snapdir_000``) and its config, made once."""
    from lenghu.simulate.cosmic_web import CosmicWebConfig

    config = CosmicWebConfig(particles=particles, seed=1, files_per_snapshot=files)
    folder = CACHE / f"cosmic-web-{particles}-seed1-files{files}"
    if not (folder / "complete").is_file():
        if folder.exists():
            _remove(folder)
        # in a child process, so that this one stays small (its children's peak memory starts from it)
        code = ("import sys; from pathlib import Path; "
                "from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web; "
                "simulate_cosmic_web(CosmicWebConfig(particles=int(sys.argv[1]), seed=1, "
                "files_per_snapshot=None if sys.argv[2] == 'None' else int(sys.argv[2])), Path(sys.argv[3]), "
                "progress=False)")
        subprocess.run([sys.executable, "-c", code, str(particles), str(files), str(folder / "web")], check=True)
        (folder / "complete").write_text("ok\n")
    snapdir = folder / "web" / "snapdir_000"
    return (snapdir if snapdir.is_dir() else folder / "web"), config


def cached_mef(detectors: int) -> Path:
    """The synthetic WFST raw exposure with ``detectors`` CCDs, made once."""
    mef = CACHE / f"wfst_raw_{detectors}ccd.fits"
    marker = mef.with_suffix(".complete")
    if not marker.is_file():
        if mef.exists():
            _remove(mef)
        subprocess.run([sys.executable, "-c", MEF_CHILD, str(mef), str(detectors)], check=True)
        marker.write_text("ok\n")
    return mef


def small_mef(path: Path) -> Path:
    """A two-CCD uint16 exposure of 256 x 256 pixels: the warm-up input of the image conversions."""
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng(1)
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(rng.integers(1000, 2000, (256, 256)).astype(np.uint16),
                                                 name=f"CCD{i}") for i in (1, 2)]
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def run(quick: bool) -> list[dict]:
    """Rows for BENCHMARKS.md (see the module docstring)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_convert_", dir=None) as tmp:
        tmp = Path(tmp)
        particles = 10**6 if quick else 10**8
        snapdir, config = cached_snapshot(particles, 2 if quick else None)
        warm_snapshot = Path(__file__).resolve().parent.parent / "sample_data" / "cosmic_web" / "snapshot_000.hdf5"
        n = config.num_particles
        m = _compare(snapdir, tmp / "web.zarr", "zarr", PEER_SNAPSHOT_CHILD, tmp / "web.raw", None, warm_snapshot)
        rows += _rows(f"snapshot -> Zarr, {n:,} particles in {config.num_files} files", "h5py read + raw write",
                      m, "positions, velocities, ids; Blosc/LZ4 Zarr v3")
        _remove(tmp / "web.zarr")
        _remove(tmp / "web.raw")

        detectors = 3 if quick else 9
        mef = cached_mef(detectors)
        warm_mef = small_mef(tmp / "small.fits")
        size = mef.stat().st_size
        label = f"WFST raw MEF ({detectors} x 9216 x 9232 uint16, {size / 1e9:.2f} GB)"
        m = _compare(mef, tmp / "wfst.zarr", "zarr", PEER_COPY_CHILD, tmp / "copy.fits", size, warm_mef)
        rows += _rows(f"{label} -> Zarr", "read + write copy", m, "Blosc/LZ4 Zarr v3, 16 MiB chunks")
        _remove(tmp / "wfst.zarr")
        m = _compare(mef, tmp / "wfst.fits.fz", "fz", PEER_COPY_CHILD, tmp / "copy.fits", size, warm_mef)
        rows += _rows(f"{label} -> .fz", "read + write copy", m,
                      "Rice, lossless: lenghu's Rice coder (the bytes fpack -r writes, tested), one CCD per "
                      "thread, 2 at a time")
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run(quick="--full" not in sys.argv):
        print(row)
