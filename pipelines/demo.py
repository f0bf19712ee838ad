"""The demo: the main job on the shipped sample data, in one call (`lenghu demo`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from lenghu.errors import FrameError
from lenghu.instruments import load_instrument
from lenghu.io.atomic import write_bytes_atomic
from lenghu.io.discover import find_raw_files
from lenghu.io.raw import read_record

def ensure_sample_night(sample: Path, out: Path) -> Path:
    """The sample night's raw folder; simulated into ``out`` when not shipped."""
    raw = sample / "night" / "raw"
    if raw.is_dir() and find_raw_files(raw):
        return raw
    from lenghu.simulate.config import NightConfig
    from lenghu.simulate.night import simulate_night

    print(f"sample night not found under {sample}; simulating a tiny one into {out / 'night'}")
    simulate_night(NightConfig.sample(), out / "night")
    return out / "night" / "raw"


def describe_night(raw: Path) -> dict:
    """Classify every raw frame; print a table; return a summary."""
    instrument = load_instrument("wfst")
    counts: Counter = Counter()
    failed = {}
    print(f"\nRaw frames in {raw}:")
    print(f"  {'file':34s} {'type':8s} {'filter':6s} {'exptime':>8s}  {'MJD':>12s}  detectors")
    for path in find_raw_files(raw):
        try:
            rec = read_record(path, instrument)
        except FrameError as exc:
            failed[str(path)] = str(exc)
            print(f"  {path.name:34s} FAILED: {exc.problem}")
            continue
        counts[(rec.frame_type, rec.filter)] += 1
        print(f"  {path.name:34s} {rec.frame_type:8s} {rec.filter:6s} {rec.exptime:8.1f}  {rec.mjd:12.5f}  "
              f"{len(rec.detectors)}")
    return {
        "raw_folder": str(raw),
        "frames": {f"{t}/{f}": n for (t, f), n in sorted(counts.items())},
        "failed": failed,
    }


def describe_cosmic_web(folder: Path) -> dict:
    """Particle count, box and redshift of each sample snapshot."""
    import h5py

    snaps = sorted(folder.glob("snapshot_*.hdf5")) + sorted(folder.glob("snapdir_*/snapshot_*.0.hdf5"))
    print(f"\nCosmic-web snapshots in {folder}:")
    rows = []
    for path in snaps:
        with h5py.File(path, "r") as f:
            header = f["Header"].attrs
            total = int(sum(header["NumPart_Total"]))
            rows.append({"file": str(path), "particles": total, "redshift": float(header["Redshift"]),
                         "box": float(header["BoxSize"])})
        print(f"  {path.name:28s} {total:>10,d} particles  z = {rows[-1]['redshift']:6.2f}  "
              f"box {rows[-1]['box']:.0f} Mpc/h")
    return {"snapshots": rows}


def reduce_sample_night(raw: Path, out: Path) -> dict:
    """Reduce the night on a local Dask cluster; print where the products are."""
    from lenghu.pipelines.reduce import ReduceRequest, reduce_night
    from lenghu.pipelines.summary import print_summary

    print(f"\nReducing {raw} on a local Dask cluster (lenghu reduce {raw} --out {out}) ...")
    summary = reduce_night(ReduceRequest(raw_dir=raw, out=out))
    print_summary(summary)
    print(f"  masters:    {out / 'masters'}")
    print(f"  calibrated: {out / 'calibrated'}")
    return {"out": str(out), "exit_status": summary.exit_status, "masters": len(summary.masters),
            "calibrated": len(summary.calibrated), "catalogs": len(summary.catalogs), "coadds": len(summary.coadds),
            "report": summary.report, "resources": summary.resources}


def run_demo(sample: Path, out: Path) -> int:
    """Run the demo; return the exit status."""
    out.mkdir(parents=True, exist_ok=True)
    raw = ensure_sample_night(sample, out)
    summary = {"night": describe_night(raw)}
    web = sample / "cosmic_web"
    if web.is_dir():
        summary["cosmic_web"] = describe_cosmic_web(web)
    summary["reduction"] = reduce_sample_night(raw, out / "reduced")
    write_bytes_atomic(out / "demo_summary.json", json.dumps(summary, indent=2, default=str).encode())
    print(f"\nDemo summary: {out / 'demo_summary.json'}")
    if summary["reduction"]["report"]:
        print(f"Night report: {summary['reduction']['report']}")
    # Astrometry of the tiny sample CCDs (about 20 stars each) is often flagged: that is reported, not an error.
    return 3 if summary["night"]["failed"] or summary["reduction"]["exit_status"] else 0
