"""Recover a damaged run registry from the products in the output folder.

Every master and calibrated image carries its provenance (DESIGN.md's
calibrated-product contract): a ``PROVENANCE`` table with the role, path and
checksum of every input, the config hash (``CONFHASH``) and the software
version (``LENGHUV``) in its primary header. That is all
:func:`lenghu.pipelines.registry.inputs_key` needs, so the rebuilt rows make a
rerun skip exactly the products that are whole and up to date, as the lost
registry would have. Catalogues, coadds and the report are not recovered (their
keys depend on settings their files do not carry): the next run redoes them.

The damaged file is kept beside the new one (``registry.sqlite.damaged-<time>``),
never deleted, and the new registry appears only whole (built under a temporary
name, then renamed).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from lenghu import __version__
from lenghu.io.atomic import TEMP_MARK, TEMP_PREFIX
from lenghu.io.checksum import file_checksum
from lenghu.pipelines.lock import RunLock
from lenghu.pipelines.registry import Registry, inputs_key

#: Calibrations each master depends on (same as the pipeline's; a missing one is named in ``missing``).
MASTER_NEEDS = {"bias": (), "dark": ("bias",), "flat": ("bias", "dark")}
#: Frame type of a raw file by the provenance role it has in a product of this kind.
_FRAME_TYPE = {"master_bias": "bias", "master_dark": "dark", "master_flat": "flat", "calibrated": "science"}


@dataclass
class RebuildSummary:
    """What :func:`rebuild_registry` recovered."""

    registry: str
    kept_damaged: str | None = None
    products: list[str] = field(default_factory=list)
    frames: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    not_recovered: list[str] = field(default_factory=list)


def _read_product(path: Path) -> dict[str, Any]:
    """Kind, detector, filter, provenance and quality of one product; raises if it is not whole."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checksum mismatch is a warning in astropy: a damaged product
        with fits.open(path, checksum=True, memmap=False) as hdul:
            primary = hdul[0].header
            for key in ("CONFHASH", "LENGHUV", "CCDNAME"):
                if key not in primary:
                    raise ValueError(f"no {key} card: not a lenghu product")
            table = hdul["PROVENANCE"].data
            inputs = [{"role": str(r), "path": str(p), "checksum": str(c)}
                      for r, p, c in zip(table["ROLE"], table["PATH"], table["CHECKSUM"])]
            obstype = str(primary.get("OBSTYPE", ""))
            if obstype.startswith("MASTER_"):
                kind = "master_" + obstype[len("MASTER_"):].lower()
                quality = {k[len("LH Q "):].lower(): primary[k] for k in primary if k.startswith("LH Q ")}
                base = kind.removeprefix("master_")
                roles = {e["role"] for e in inputs}
                missing = [k for k in MASTER_NEEDS.get(base, ()) if k not in roles]
                exposure = None
            else:
                kind = "calibrated"
                sci, mask = hdul["SCI"].data, hdul["MASK"].data
                good = mask == 0
                quality = {"sky_median_e": float(np.median(sci[good])) if good.any() else None,
                           "cosmic_ray_pixels": int(primary.get("NCRPIX", 0)),
                           "masked_fraction": float(1 - good.mean()), "rebuilt": True}
                missing = [m for m in str(primary.get("MISSCAL", "none")).split(",") if m and m != "none"]
                exposure = next((e["path"] for e in inputs if e["role"] == "raw"), None)
            return {"kind": kind, "detector": str(primary["CCDNAME"]),
                    "filter": str(primary["FILTER"]).strip() if "FILTER" in primary else None,
                    "exposure": exposure, "inputs": inputs, "config_hash": str(primary["CONFHASH"]),
                    "software": str(primary["LENGHUV"]), "missing": missing, "quality": quality}


def _fill(registry: Registry, out: Path, summary: RebuildSummary) -> None:
    run_id = registry.start_run(f"lenghu registry rebuild {out}", "", __version__, "none", 0)
    frames: dict[str, tuple[str, str, set[str]]] = {}
    for folder in ("masters", "calibrated"):
        for path in sorted((out / folder).glob("*.fits")):
            try:
                info = _read_product(path)
            except Exception as exc:  # noqa: BLE001 - any unreadable product is listed and left for the rerun
                summary.unreadable[str(path)] = f"{type(exc).__name__}: {exc}"
                continue
            key = inputs_key([e["checksum"] for e in info["inputs"]], info["config_hash"], info["software"])
            registry.record_product(str(path), kind=info["kind"], detector=info["detector"],
                                    filter=info["filter"] if info["kind"] != "master_bias" else None,
                                    exposure=info["exposure"], checksum=file_checksum(path), key=key,
                                    inputs=info["inputs"], config_hash=info["config_hash"],
                                    missing=info["missing"], quality=info["quality"], run_id=run_id)
            summary.products.append(str(path))
            for entry in info["inputs"]:
                if entry["role"] in ("raw", "input"):
                    ftype = _FRAME_TYPE.get(info["kind"], "unknown")
                    frames.setdefault(entry["path"], (entry["checksum"], ftype, set()))[2].add(info["detector"])
    for raw_path, (checksum, ftype, detectors) in sorted(frames.items()):
        stat = os.stat(raw_path) if os.path.exists(raw_path) else None
        registry.record_frame(raw_path, checksum=checksum, size=stat.st_size if stat else None,
                              mtime=stat.st_mtime if stat else None, instrument=None,
                              record={"frame_type": ftype, "detectors": sorted(detectors)},
                              status="ok", error=None, run_id=run_id)
    summary.frames = len(frames)
    for folder in ("catalogs", "coadds"):
        summary.not_recovered += [str(p) for p in sorted((out / folder).glob("*.fits"))]
    registry.end_run(run_id, "rebuilt", {}, {"products": len(summary.products), "frames": summary.frames,
                                             "unreadable": summary.unreadable})


def rebuild_registry(out: str | Path) -> RebuildSummary:
    """Rebuild ``OUT/registry.sqlite`` from the products below ``out``; see the module docstring.

    Takes the output folder's run lock, so it refuses while a run uses the folder.
    """
    out = Path(out).resolve()
    if not out.is_dir():
        from lenghu.errors import LenghuError

        raise LenghuError(f"{out}: not an output folder")
    with RunLock(out):
        final = out / Registry.FILENAME
        summary = RebuildSummary(registry=str(final))
        tmp_name = f"{TEMP_PREFIX}{Registry.FILENAME}{TEMP_MARK}{os.getpid()}"
        for stale in out.glob(f"{tmp_name}*"):
            stale.unlink()
        registry = Registry(out, filename=tmp_name)
        try:
            _fill(registry, out, summary)
            registry.checkpoint()
        finally:
            registry.close()
        if final.exists():
            kept = out / f"{Registry.FILENAME}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
            os.replace(final, kept)
            summary.kept_damaged = str(kept)
        for suffix in ("-wal", "-shm"):  # the damaged file's journal must not be applied to the new one
            side = out / f"{Registry.FILENAME}{suffix}"
            if side.exists() and summary.kept_damaged:
                os.replace(side, summary.kept_damaged + suffix)
            elif side.exists():
                side.unlink()
        os.replace(out / tmp_name, final)
        for suffix in ("-wal", "-shm"):
            (out / f"{tmp_name}{suffix}").unlink(missing_ok=True)
        return summary
