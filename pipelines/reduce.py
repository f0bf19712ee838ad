"""``lenghu reduce``: a night of raw frames to masters and calibrated images on Dask.

Stages (the order is data, :data:`STAGES`): ingest, bias, dark, flat,
science. Each stage submits its tasks, waits for them with a progress bar,
and records what happened in the registry before the next starts (one
compute per stage). A product whose inputs, configuration and software are
unchanged is skipped unless ``force``; a frame that cannot be used is
recorded with its reason and the run goes on without it.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lenghu import __version__
from lenghu.io.atomic import remove_stale_temporaries
from lenghu.io.paths import safe_name
from lenghu.calib.masters import MasterQuality
from lenghu.io.products import ProvenanceEntry, abandon_shared_product, begin_shared_product, master_cards
from lenghu.pipelines.cluster import dask_client
from lenghu.pipelines.config import ReduceConfig
from lenghu.io.discover import find_raw_files
from lenghu.pipelines.lock import RunLock
from lenghu.pipelines.progress import is_disk_full, wait_all
from lenghu.pipelines.registry import Registry, inputs_key
from lenghu.pipelines.resources import ResourceMeter
from lenghu.pipelines import tasks

log = logging.getLogger(__name__)

STAGES = ("ingest", "bias", "dark", "flat", "science", "measure", "coadd", "report")
MASTER_NEEDS = {"bias": (), "dark": ("bias",), "flat": ("bias", "dark")}


@dataclass(frozen=True)
class ReduceRequest:
    """What to reduce and where."""

    raw_dir: Path
    out: Path
    instrument: str = "auto"
    config: ReduceConfig = field(default_factory=ReduceConfig)
    force: bool = False
    progress: bool = True
    stages: tuple[str, ...] = STAGES
    refcat: Path | None = None


@dataclass
class ReduceSummary:
    """What a run did; printed at the end and stored with the run."""

    out: str
    frames: int = 0
    failed_frames: dict[str, str] = field(default_factory=dict)
    masters: list[str] = field(default_factory=list)
    calibrated: list[str] = field(default_factory=list)
    catalogs: list[str] = field(default_factory=list)
    coadds: list[str] = field(default_factory=list)
    report: str | None = None
    flagged: dict[str, str] = field(default_factory=dict)
    skipped: int = 0
    failed_products: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    dashboard: str | None = None

    @property
    def exit_status(self) -> int:
        """0 when everything worked, 3 when some inputs or products failed."""
        return 3 if (self.failed_frames or self.failed_products) else 0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def reduce_night(request: ReduceRequest) -> ReduceSummary:
    """Run the pipeline; see the module docstring."""
    out = request.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        remove_stale_temporaries(out)
        registry = Registry(out)
        try:
            return _run(request, out, registry)
        finally:
            registry.close()


def _run(request: ReduceRequest, out: Path, registry: Registry) -> ReduceSummary:
    config = request.config
    config_hash = config.hash()
    summary = ReduceSummary(out=str(out))
    with dask_client(config.execution) as (client, info):
        summary.dashboard = info.dashboard
        _say(request, f"Dask {info.kind} cluster at {info.address} with {info.workers} worker(s); "
                      f"dashboard: {info.dashboard}")
        run_id = registry.start_run(" ".join(sys.argv), config_hash, __version__, info.kind, info.workers)
        meter = ResourceMeter(client)
        status = "interrupted"
        try:
            night = _ingest(request, client, registry, run_id, summary, out)
            masters: dict[tuple[str, str, str | None], str] = {}
            for kind in ("bias", "dark", "flat"):
                if kind in request.stages:
                    _masters(kind, night, masters, request, client, registry, run_id, summary, out, config_hash)
            if "science" in request.stages:
                _science(night, masters, request, client, registry, run_id, summary, out, config_hash)
            # The measure and coadd stages import astropy.wcs, scipy.stats and sep (0.6 s): only when they run.
            if "measure" in request.stages:
                from lenghu.pipelines.measure_stage import run_measure_stage

                run_measure_stage(request, client, registry, run_id, summary, out, config_hash)
            if "coadd" in request.stages:
                from lenghu.pipelines.coadd_stage import run_coadd_stage

                run_coadd_stage(request, client, registry, run_id, summary, out)
            status = "done"
        except OSError as exc:
            if not is_disk_full(exc) or isinstance(exc, tasks.OutputSpaceError):
                raise
            raise tasks.OutputSpaceError(out, None, exc) from exc  # names the output folder and its free space
        finally:
            summary.resources = meter.finish()
            registry.end_run(run_id, status, summary.resources, summary.as_dict())
            shutil.rmtree(out / "work", ignore_errors=True)
    if "report" in request.stages:
        from lenghu.pipelines.report import write_report

        summary.report = str(write_report(out, registry, config.report))
    return summary


def _say(request: ReduceRequest, text: str) -> None:
    if request.progress:
        print(text, file=sys.stderr, flush=True)


# --- ingest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """A usable raw frame, as ingest found it."""

    path: str
    checksum: str
    frame_type: str
    filter: str
    exptime: float
    detectors: tuple[str, ...]


def _ingest(request, client, registry, run_id, summary, out) -> list[Frame]:
    files = [str(p) for p in find_raw_files(request.raw_dir, exclude=out)]
    summary.frames = len(files)
    _say(request, f"Ingest: {len(files)} raw file(s) below {request.raw_dir}")
    futures = client.map(tasks.inspect_frame, files, spec=request.instrument, pure=False)
    results, errors = wait_all(futures, "ingest", request.progress)
    frames = []
    for path, result, future in zip(files, results, futures):
        if result is None:
            result = {"path": path, "status": "failed", "error": errors.get(future.key, "task failed"),
                      "checksum": None, "size": None, "mtime": None, "record": None, "instrument": None}
        registry.record_frame(path, checksum=result["checksum"], size=result["size"], mtime=result["mtime"],
                              instrument=result["instrument"], record=result["record"], status=result["status"],
                              error=result["error"], run_id=run_id)
        if result["status"] != "ok":
            summary.failed_frames[path] = result["error"]
            continue
        rec = result["record"]
        frames.append(Frame(path, result["checksum"], rec["frame_type"], rec["filter"], rec["exptime"],
                            tuple(rec["detectors"])))
    counts = defaultdict(int)
    for frame in frames:
        counts[frame.frame_type] += 1
    _say(request, "  " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())) +
         (f"; {len(summary.failed_frames)} unusable" if summary.failed_frames else ""))
    return frames


# --- masters --------------------------------------------------------------------------------


def _master_path(out: Path, kind: str, detector: str, filter_name: str | None) -> Path:
    name = f"{kind}_{safe_name(detector)}" + (f"_{safe_name(filter_name)}" if kind == "flat" else "")
    return out / "masters" / f"{name}.fits"


def _masters(kind, night, masters, request, client, registry, run_id, summary, out, config_hash) -> None:
    config = request.config
    groups: dict[tuple[str, str | None], list[Frame]] = defaultdict(list)
    for frame in night:
        if frame.frame_type == kind:
            for det in frame.detectors:
                groups[(det, frame.filter if kind == "flat" else None)].append(frame)
    if not groups:
        _say(request, f"Master {kind}: no {kind} frames; products will say so")
        return
    jobs = []
    for (det, filt), frames in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        needs = {k: masters.get((k, det, None)) for k in MASTER_NEEDS[kind]}
        final = _master_path(out, kind, det, filt)
        upstream = [registry_checksum(registry, p) for p in needs.values() if p]
        key = inputs_key([f.checksum for f in frames] + upstream, config_hash, __version__)
        if len(frames) < config.min_frames:
            summary.failed_products[str(final)] = f"only {len(frames)} {kind} frame(s), need {config.min_frames}"
            continue
        if not request.force and registry.product_is_current(final, key):
            masters[(kind, det, filt)] = str(final)
            summary.skipped += 1
            continue
        jobs.append((det, filt, frames, needs, final, key))
    if not jobs:
        _say(request, f"Master {kind}: up to date")
        return
    # Phase 1: what each input needs (overscan levels, scale), and which inputs are usable.
    prepared = {}
    futures, owners = [], []
    for det, filt, frames, needs, final, key in jobs:
        work = out / "work" / final.stem
        for i, frame in enumerate(frames):
            futures.append(client.submit(tasks.prepare_master_input, frame.path, request.instrument, det, kind,
                                         needs, config.isr, str(work / f"{i:04d}.npy"), pure=False))
            owners.append((final, frame))
    results, errors = wait_all(futures, f"master {kind}: prepare", request.progress)
    for (final, frame), result, fut in zip(owners, results, futures):
        if result is None:
            reason = errors.get(fut.key, "task failed")
            summary.failed_frames[frame.path] = reason
            registry.mark_frame_failed(frame.path, reason, run_id)
            continue
        prepared.setdefault(final, []).append((frame, result, fut))
    # Phase 2: strips of rows of every input assembled and combined into preallocated .npy outputs. The
    # inputs' facts go to the workers as the futures of phase 1 (each worker fetches them once).
    futures, finals = [], []
    combine_outputs = {}
    for det, filt, frames, needs, final, key in jobs:
        inputs = prepared.get(final, [])
        if not inputs:
            summary.failed_products[str(final)] = f"no usable {kind} frame"
            continue
        shape = tuple(inputs[0][1]["shape"])
        outputs = tasks.create_combine_outputs(str(out / "work" / final.stem / "combined"), shape)
        combine_outputs[final] = outputs
        rows = config.combine.rows_per_strip(len(inputs), shape[1], 8 if config.isr.precision == "float64" else 4)
        facts = [fut for _, _, fut in inputs]
        for y0 in range(0, shape[0], rows):
            futures.append(client.submit(tasks.combine_rows, facts, needs, config.isr, y0, min(shape[0], y0 + rows),
                                         config.combine, outputs, kind != "bias", pure=False))
            finals.append(final)
    _, errors = wait_all(futures, f"master {kind}: combine", request.progress)
    broken = {final for final, fut in zip(finals, futures) if fut.key in errors}
    for final in prepared:
        _drop_scratch(r["raw_copy"] for _, r, _ in prepared[final] if r["raw_copy"])
    # Phase 3: normalise, mask, write FITS: column medians and row ranges on every worker, into one file.
    futures, meta, products = [], [], {}
    parts = max(1, min(MAX_WRITE_PARTS, len(client.scheduler_info().get("workers", {})) or 1))
    for det, filt, frames, needs, final, key in jobs:
        if final not in combine_outputs or final in broken:
            if final in broken:
                summary.failed_products[str(final)] = "combining failed"
            continue
        inputs = prepared[final]
        outputs = combine_outputs[final]
        shape = tuple(inputs[0][1]["shape"])
        provenance = [ProvenanceEntry("input", f.path, f.checksum) for f, _, _ in inputs]
        provenance += [ProvenanceEntry(k, p, registry_checksum(registry, p)) for k, p in needs.items() if p]
        cards = master_cards(kind, det, filt, MasterQuality.placeholder(kind, len(inputs)))
        try:
            product = begin_shared_product(final, shape, cards, provenance, config_hash)
        except OSError as exc:
            if is_disk_full(exc):  # the run stops: the products begun before this one are removed too
                for begun in products.values():
                    abandon_shared_product(begun)
                raise
            summary.failed_products[str(final)] = f"{type(exc).__name__}: {exc}"
            continue
        products[final] = product
        columns = [client.submit(tasks.master_column_medians, outputs["image"], x0, x1, pure=False)
                   for x0, x1 in _ranges(shape[1], parts)] if kind in ("bias", "dark") else []
        plan = client.submit(tasks.plan_master_file, kind, outputs, len(inputs), config.masters, columns,
                             pure=False)
        written = [client.submit(tasks.write_master_rows, product, plan, outputs, y0, y1, pure=False)
                   for y0, y1 in _ranges(shape[0], parts)]
        futures.append(client.submit(tasks.finish_master_product, product, plan, written, pure=False))
        meta.append((det, filt, final, key, provenance, needs))
    try:
        results, errors = wait_all(futures, f"master {kind}: write", request.progress)
        for final in combine_outputs:
            _drop_scratch(combine_outputs[final].values())
        for (det, filt, final, key, provenance, needs), result, fut in zip(meta, results, futures):
            if result is None:
                abandon_shared_product(products[final])
                summary.failed_products[str(final)] = errors.get(fut.key, "task failed")
                continue
            missing = [k for k, p in needs.items() if not p]
            registry.record_product(str(final), kind=f"master_{kind}", detector=det, filter=filt, exposure=None,
                                    checksum=result["checksum"], key=key,
                                    inputs=[{"role": e.role, "path": e.path, "checksum": e.checksum}
                                            for e in provenance],
                                    config_hash=config_hash, missing=missing, quality=result["quality"],
                                    run_id=run_id)
            masters[(kind, det, filt)] = str(final)
            summary.masters.append(str(final))
            if missing:
                summary.missing[str(final)] = missing
    except BaseException:  # the run stops (a full disk, Ctrl-C): no temporary product is left behind
        for product in products.values():
            abandon_shared_product(product)  # a finished one has no temporary any more
        raise


#: Most processes that write parts of one master file at once.
MAX_WRITE_PARTS = 4


def _drop_scratch(paths: Iterable[str]) -> None:
    """Remove scratch files as soon as nothing reads them any more, not at the end of the run.

    Their page cache is then freed, and the next files written (the master's product, the next master's
    inputs) reuse those pages: on virtual machines, memory the guest has not touched lately costs a
    hypervisor fault per page on first use (68 MB written to a new file: 0.16 s with fresh pages, 0.02 s
    with recently freed ones, measured on the 2-core VM of BENCHMARKS.md), and the masters of a
    4k x 4k bias and flat went from 8.2-8.8 s to 7.6-8.1 s.
    """
    for path in paths:
        Path(path).unlink(missing_ok=True)


def _ranges(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``0:n`` (fewer when ``n`` is small)."""
    edges = sorted({round(i * n / parts) for i in range(parts + 1)})
    return list(zip(edges[:-1], edges[1:]))


def registry_checksum(registry: Registry, path: str) -> str:
    """The checksum the registry holds for a product (masters feeding later stages)."""
    for row in registry.products():
        if row["path"] == path:
            return row["checksum"]
    raise KeyError(f"{path} is not in the registry")


# --- science --------------------------------------------------------------------------------


def _science(night, masters, request, client, registry, run_id, summary, out, config_hash) -> None:
    jobs = []
    for frame in night:
        if frame.frame_type != "science":
            continue
        for det in frame.detectors:
            needs = {"bias": masters.get(("bias", det, None)), "dark": masters.get(("dark", det, None)),
                     "flat": masters.get(("flat", det, frame.filter))}
            final = out / "calibrated" / f"{safe_name(_stem(frame.path))}_{safe_name(det)}.fits"
            upstream = [registry_checksum(registry, p) for p in needs.values() if p]
            key = inputs_key([frame.checksum] + upstream, config_hash, __version__)
            if not request.force and registry.product_is_current(final, key):
                summary.skipped += 1
                summary.calibrated.append(str(final))
                continue
            provenance = [ProvenanceEntry("raw", frame.path, frame.checksum)]
            provenance += [ProvenanceEntry(k, p, registry_checksum(registry, p)) for k, p in needs.items() if p]
            jobs.append((frame, det, needs, final, key, provenance))
    if not jobs:
        _say(request, "Science: nothing to do" if not summary.calibrated else "Science: up to date")
        return
    futures = [client.submit(tasks.calibrate, frame.path, request.instrument, det, needs, request.config.isr,
                             str(final), provenance, config_hash, pure=False)
               for frame, det, needs, final, key, provenance in jobs]
    results, errors = wait_all(futures, "science", request.progress)
    for (frame, det, needs, final, key, provenance), result, fut in zip(jobs, results, futures):
        if result is None:
            reason = errors.get(fut.key, "task failed")
            summary.failed_products[str(final)] = reason
            summary.failed_frames.setdefault(frame.path, reason)
            registry.mark_frame_failed(frame.path, reason, run_id)
            continue
        registry.record_product(str(final), kind="calibrated", detector=det, filter=frame.filter,
                                exposure=frame.path, checksum=result["checksum"], key=key,
                                inputs=[{"role": e.role, "path": e.path, "checksum": e.checksum} for e in provenance],
                                config_hash=config_hash, missing=result["missing"], quality=result["quality"],
                                run_id=run_id)
        summary.calibrated.append(str(final))
        if result["missing"]:
            summary.missing[str(final)] = result["missing"]


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".fz", ".gz", ".bz2", ".fits", ".fit", ".fts"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name
