"""The coadd stage: dithered exposures of a field stacked per filter and detector, then measured.

Calibrated products are grouped by (OBJECT, FILTER, detector); every group of
at least two is coadded (:func:`lenghu.measure.coadd.coadd_files`, scaled to
a common zeropoint where the measure stage found one) and the coadd gets its
own catalogue. One task per group.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lenghu.io.paths import safe_name

MIN_EXPOSURES = 2


def coadd_group(paths: list[str], zeropoints: dict[str, float] | None, out_path: str, catalog_path: str,
                config) -> dict[str, Any]:
    """Coadd one group and measure the coadd; runs on a worker."""
    from lenghu.measure import write_catalog
    from lenghu.measure.coadd import coadd_files
    from lenghu.pipelines.measure_stage import load_image, measure_arrays
    from lenghu.pipelines.registry import file_checksum

    result = coadd_files(paths, out_path, config.coadd, zeropoints=zeropoints or None)
    table, quality, _ = measure_arrays(*load_image(out_path), None, config.measure)
    write_catalog(table, catalog_path)
    quality.update(n_inputs=len(paths), coadd_wall_s=round(result.wall_s, 2), coadd_shape=list(result.shape),
                   coadd_zeropoint=result.zeropoint)
    return {"path": out_path, "checksum": file_checksum(out_path), "catalog": catalog_path,
            "catalog_checksum": file_checksum(catalog_path), "quality": quality}


def _groups(registry) -> dict[tuple[str, str, str], list[dict]]:
    from astropy.io import fits

    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in registry.products(kind="calibrated", status="ok"):
        with fits.open(row["path"], mode="readonly", lazy_load_hdus=True) as hdul:
            target = str(hdul[0].header.get("OBJECT", "field")).strip()
        groups[(target, row["filter"] or "none", row["detector"] or "CCD")].append(row)
    return groups


def run_coadd_stage(request, client, registry, run_id: int, summary, out: Path) -> None:
    """Driver side: submit one coadd per group that is not up to date."""
    from lenghu import __version__
    from lenghu.pipelines.progress import wait_all
    from lenghu.pipelines.registry import inputs_key

    config = request.config
    config_hash = hashlib.sha256(json.dumps(asdict(config.coadd), sort_keys=True, default=str).encode()).hexdigest()
    zeropoints = {}
    for row in registry.products(kind="catalog", status="ok"):
        calibrated = next((i["path"] for i in row["inputs"] if i["role"] == "calibrated"), None)
        if calibrated and row["quality"].get("zeropoint") is not None:
            zp = row["quality"]["zeropoint"] + 2.5 * math.log10(max(row["quality"]["exptime"], 1e-9))
            zeropoints[calibrated] = zp  # magnitude of 1 electron in that image
    jobs = []
    for (target, filt, det), rows in sorted(_groups(registry).items()):
        if len(rows) < MIN_EXPOSURES:
            continue
        name = f"{safe_name(target)}_{safe_name(filt)}_{safe_name(det)}"
        final = out / "coadds" / f"{name}.fits"
        key = inputs_key([r["inputs_key"] for r in rows], config_hash + config.measure_hash(), __version__)
        if not request.force and registry.product_is_current(final, key):
            summary.skipped += 1
            summary.coadds.append(str(final))
            continue
        paths = [r["path"] for r in rows]
        zps = {p: zeropoints[p] for p in paths} if all(p in zeropoints for p in paths) else None
        jobs.append((rows, final, key, paths, zps, filt, det))
    if not jobs:
        return
    futures = [client.submit(coadd_group, paths, zps, str(final), str(final.with_suffix(".cat.fits")), config,
                             pure=False) for rows, final, key, paths, zps, filt, det in jobs]
    results, errors = wait_all(futures, "coadd", request.progress)
    for (rows, final, key, paths, zps, filt, det), result, future in zip(jobs, results, futures):
        if result is None:
            summary.failed_products[str(final)] = errors.get(future.key, "task failed")
            continue
        inputs = [{"role": "calibrated", "path": r["path"], "checksum": r["checksum"]} for r in rows]
        registry.record_product(str(final), kind="coadd", detector=det, filter=filt, exposure=None,
                                checksum=result["checksum"], key=key, inputs=inputs, config_hash=config_hash,
                                quality=result["quality"], run_id=run_id)
        registry.record_product(result["catalog"], kind="coadd_catalog", detector=det, filter=filt, exposure=None,
                                checksum=result["catalog_checksum"], key=key,
                                inputs=[{"role": "coadd", "path": str(final), "checksum": result["checksum"]}],
                                config_hash=config_hash, quality={"n_sources": result["quality"]["n_sources"]},
                                run_id=run_id)
        summary.coadds.append(str(final))
