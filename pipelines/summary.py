"""The end-of-run summary printed by ``lenghu reduce``."""

from __future__ import annotations

from pathlib import Path


def print_summary(summary) -> None:
    """Print what a run made, skipped, lacked and failed."""
    out = Path(summary.out)
    print(f"\nReduced into {out}")
    print(f"  raw files: {summary.frames}, masters made: {len(summary.masters)}, "
          f"calibrated images: {len(summary.calibrated)}, catalogues: {len(summary.catalogs)}, "
          f"coadds: {len(summary.coadds)}, "
          f"up to date (skipped): {summary.skipped}")
    if summary.missing:
        kinds = sorted({k for missing in summary.missing.values() for k in missing})
        print(f"  missing calibrations: {', '.join(kinds)} ({len(summary.missing)} product(s) made without; "
              "see MISSCAL in their headers)")
    flagged = sorted(summary.flagged.items())
    if flagged:
        print(f"  flagged (astrometry not fitted; header WCS kept): {len(flagged)} product(s), e.g.")
        for path, reason in flagged[:3]:
            print(f"    {Path(path).name}: {reason}")
    for path, reason in sorted(summary.failed_frames.items()):
        print(f"  FAILED frame {path}: {reason}")
    for path, reason in sorted(summary.failed_products.items()):
        print(f"  FAILED product {path}: {reason}")
    res = summary.resources
    if res:
        print(f"  resources: {res.get('wall_s', 0):.1f} s wall, {res.get('cpu_core_hours', 0) * 3600:.1f} CPU s, "
              f"peak memory {res.get('peak_memory_mb', 0):.0f} MB")
    print(f"  registry: {out / 'registry.sqlite'}")
    if summary.report:
        print(f"  night report: {summary.report}")
