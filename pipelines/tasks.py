"""Functions that run on Dask workers: each reads its own inputs and writes its own output.

Arrays never travel through the graph: a task gets paths and small config
objects, loads the pixels itself, and returns a small dict (paths, checksums,
quality figures). Every output is written atomically, so a task that is
re-run after a killed worker produces the same file and nothing half-written
is ever seen.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.io import fits

from lenghu.calib.assemble import StripAssembler
from lenghu.calib.combine import CombineConfig, combine_stack, model_variance
from lenghu.calib.isr import Calibrations, IsrConfig, remove_signature_by_strips, subtract_masters_in_place
from lenghu.calib.masters import (MasterConfig, MasterPlan, MasterQuality, column_medians, finish_rows, level_bands,
                                  median_of_bands, plan_master)
from lenghu.errors import FrameError, LenghuError
from lenghu.instruments import Instrument
from lenghu.io.products import (WRITE_ROWS, MasterFile, ProvenanceEntry, SharedProduct, copy_cards,
                                finish_shared_product, quality_cards, read_quality, stream_image_product)
from lenghu.io.raw import instrument_for, open_raw_detector, read_record
from lenghu.pipelines.registry import file_checksum

# Primary-header cards carried from the raw file into every product.
CARRIED_CARDS = ("TELESCOP", "INSTRUME", "OBSERVAT", "DATE-OBS", "MJD-OBS", "EXPTIME", "FILTER", "IMAGETYP",
                 "OBJECT", "RA", "DEC", "AIRMASS", "LST", "EXPNUM")


# A frame with more unusable pixels than this is rejected rather than calibrated.
MAX_NO_DATA_FRACTION = 0.5

#: Target size of one float32 plane of a signature-removal strip, MB (see :func:`strip_rows_for`).
STRIP_MEGABYTES = 16.0


def resolve_instrument(path: str, spec: str) -> Instrument:
    """The instrument of ``path``: ``spec`` (a name or TOML path) or detected (``auto``), cached per worker."""
    return instrument_for(path, spec)


def inspect_frame(path: str, spec: str) -> dict[str, Any]:
    """Checksum and classify one raw file; never raises for a bad file (returns its error)."""
    stat = os.stat(path)
    result: dict[str, Any] = {"path": path, "size": stat.st_size, "mtime": stat.st_mtime, "checksum": None,
                              "record": None, "instrument": None, "status": "ok", "error": None}
    try:
        result["checksum"] = file_checksum(path)
        instrument = resolve_instrument(path, spec)
        result["instrument"] = instrument.name
        result["record"] = read_record(path, instrument).as_dict()
    except (LenghuError, OSError) as exc:
        result["status"] = "failed"
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


def _assembled(path: str, spec: str, detector: str, isr: IsrConfig):
    """The raw detector opened for reading by rows, and its assembler (overscan read, nothing else)."""
    instrument = resolve_instrument(path, spec)
    reader = open_raw_detector(path, instrument, detector)
    assembler = StripAssembler(reader.rows, reader.detector, isr.overscan, dtype=isr.dtype, source=path)
    return reader, assembler


class _NoDataCounter:
    """Counts unusable pixels strip by strip; the frame is rejected past :data:`MAX_NO_DATA_FRACTION`."""

    def __init__(self, path: str, detector: str, shape: tuple[int, int]):
        self.path, self.detector, self.total, self.bad = path, detector, shape[0] * shape[1], 0

    def add(self, no_data: np.ndarray) -> None:
        self.add_count(int(no_data.sum()))

    def add_count(self, pixels: int) -> None:
        self.bad += pixels
        if self.bad > MAX_NO_DATA_FRACTION * self.total:
            raise FrameError(self.path, f"detector {self.detector}: more than {MAX_NO_DATA_FRACTION:.0%} of the "
                                        "pixels are not finite (NaN or Inf)")


def _load_masters(paths: Mapping[str, str | None]) -> Calibrations:
    """The masters as files read by rows (:class:`~lenghu.io.products.MasterFile`)."""
    return Calibrations(**{kind: MasterFile(p, kind) if p else None for kind, p in paths.items()})


def strip_rows_for(width: int, megabytes: float = STRIP_MEGABYTES) -> int:
    """Rows per strip of signature removal: about ``megabytes`` of float32 per plane.

    The peak of a strip is about 25 float32 planes of it (the assembled
    strip, the masters' rows, SCI/VAR/MASK and astroscrappy's work arrays),
    so 16 MB strips keep a task near 0.5 GB on any CCD (see docs/reduce.md).
    """
    return max(64, int(megabytes * 2**20 // (4 * width)))


def prepare_master_input(path: str, spec: str, detector: str, kind: str, masters: Mapping[str, str | None],
                         isr: IsrConfig, scratch: str) -> dict[str, Any]:
    """What one input of a master needs before its strips are combined (:func:`combine_rows`).

    Returns the overscan levels (:class:`~lenghu.calib.assemble.OverscanLevels`, so that strips are
    assembled again without reading the overscan), the detector, the exposure time, the frame's scale
    factor (1 / exposure time for darks, 1 / median for flats, 1 for biases) and its read-noise
    variance as a layout (``read_variance``: rectangles and values, see :func:`read_variance_rows`)
    for the master's variance (:func:`lenghu.calib.combine.model_variance`).

    No processed pixels are kept: writing every input to scratch files and reading them back cost more
    than assembling the strips again inside the combine (the pages of 20 new 68 MB files are the
    largest cost of the masters on a virtual machine). Only a compressed raw file, which cannot be read
    by rows, is decompressed once into ``scratch`` (float32 ADU). A frame with more than
    :data:`MAX_NO_DATA_FRACTION` of its pixels without data is rejected (:class:`FrameError`; counted
    without assembling the frame: :meth:`~lenghu.calib.assemble.StripAssembler.no_data_pixels`). A flat's
    level is the median of the rows :func:`~lenghu.calib.masters.level_bands` picks, bias-subtracted: only
    those rows are assembled here.
    """
    reader, assembler = _assembled(path, spec, detector, isr)
    exptime = reader.record.exptime
    if kind == "dark" and exptime <= 0:
        raise FrameError(path, "a dark frame with zero exposure time cannot be scaled to e-/s")
    shape = assembler.shape
    _NoDataCounter(path, detector, shape).add_count(assembler.no_data_pixels(reader.may_lack_data))
    if kind == "flat":  # the level of the values combined: only the rows it samples are made
        cals = _load_masters(masters)
        bands = [subtract_masters_in_place(assembler.signal_rows(y0, y1), exptime,
                                           cals.rows(y0, y1, image_only=True)).astype(isr.dtype, copy=False)
                 for y0, y1 in level_bands(shape)]
        level = median_of_bands(bands)
        if not np.isfinite(level) or level <= 0:
            raise FrameError(path, f"flat frame has median level {level:.1f} e-; not a usable flat")
        scale = 1.0 / level
    else:
        scale = 1.0 / exptime if kind == "dark" else 1.0
    raw_copy = None
    if reader.whole_in_memory:
        Path(scratch).parent.mkdir(parents=True, exist_ok=True)
        # Written in place, without fsync: not a product; a rerun of this task rewrites it whole.
        with open(scratch, "wb") as handle:
            np.save(handle, reader.rows(0, reader.raw_shape[0]))
        raw_copy = scratch
    return {"path": path, "spec": spec, "detector": detector, "frame_detector": reader.detector,
            "levels": assembler.levels(), "raw_copy": raw_copy, "read_variance": assembler.read_variance_layout(),
            "exptime": exptime, "scale": scale, "shape": shape, "dtype": np.dtype(isr.dtype).name}


def master_input_rows(item: Mapping[str, Any], isr: IsrConfig, cals: Calibrations, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of one input of a master, processed as far as the master needs (biases: overscan,
    trim, gain; darks: and bias; flats: and bias and dark), from what :func:`prepare_master_input`
    returned; ``cals``: the masters' rows ``y0:y1``."""
    if item["raw_copy"]:
        read, frame_detector = (lambda r0, r1: npy_rows(item["raw_copy"], r0, r1)), item["frame_detector"]
    else:
        reader = open_raw_detector(item["path"], resolve_instrument(item["path"], item["spec"]), item["detector"])
        read, frame_detector = reader.rows, reader.detector
    assembler = StripAssembler(read, frame_detector, isr.overscan, dtype=isr.dtype, source=item["path"],
                               levels=item["levels"])
    sci = subtract_masters_in_place(assembler.signal_rows(y0, y1), item["exptime"], cals)
    return sci.astype(isr.dtype, copy=False)


class OutputSpaceError(LenghuError, OSError):
    """An output or scratch file could not be allocated: no space left on the device holding ``folder``.

    An :class:`OSError` with ``errno.ENOSPC`` (``filename`` is the folder), so callers that handle OS errors
    see it as one, and a :class:`~lenghu.errors.LenghuError` naming the folder and its free space.
    """

    def __init__(self, folder: str | Path, needed: int | None, exc: BaseException):
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free"
        except OSError:
            free = "free space unknown"
        if needed is not None:
            free += f", {needed / 1e6:.1f} MB needed"
        OSError.__init__(self, errno.ENOSPC,
                         f"no space left on the device holding {folder} ({free}: {exc}); free some space and run "
                         "again: finished products are kept and the run resumes", str(folder))
        self.folder = str(folder)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def create_combine_outputs(folder: str, shape: tuple[int, int]) -> dict[str, str]:
    """Empty .npy arrays that the row-strip tasks of one master fill through memory maps.

    Their data are preallocated (``os.posix_fallocate``), not left sparse:
    filling a sparse memory map on a full disk raises SIGBUS, which kills the
    process, whereas a preallocation fails here with
    :class:`OutputSpaceError` (ENOSPC) naming the folder. On failure the
    files made so far are removed.
    """
    Path(folder).mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    for name, dtype in (("image", np.float32), ("variance", np.float32), ("n_used", np.int16)):
        path = str(Path(folder) / f"{name}.npy")
        dtype = np.dtype(dtype)
        nbytes = dtype.itemsize * shape[0] * shape[1]
        try:
            with open(path, "wb") as handle:
                outputs[name] = path
                np.lib.format.write_array_header_1_0(handle, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                              "fortran_order": False, "shape": tuple(shape)})
                handle.flush()
                # Zero-filled blocks really reserved on the device (the file reads as zeros, as before).
                os.posix_fallocate(handle.fileno(), 0, handle.tell() + nbytes)
        except OSError as exc:
            for made in outputs.values():
                Path(made).unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise OutputSpaceError(folder, nbytes, exc) from exc
            raise
    return outputs


def read_variance_rows(layout: Sequence[tuple[int, int, int, int, float]], y0: int, y1: int,
                       width: int) -> np.ndarray:
    """Rows ``y0:y1`` of a read-variance plane from its layout (``(y0, y1, x0, x1, value)`` rectangles)."""
    rows = np.zeros((y1 - y0, width), dtype=np.float32)
    for a, b, x0, x1, value in layout:
        if a < y1 and b > y0:
            rows[max(a, y0) - y0:min(b, y1) - y0, x0:x1] = value
    return rows


def npy_rows(path: str, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of a 2-D .npy file, read (not memory-mapped).

    Touching a strip of a memory map maps whole large folios of the page cache (here about 3 MB beyond
    the strip per file, measured): a combine of 50 inputs then held 200 MB of mapped pages for 64 MB
    of rows, and a master's peak memory grew with the number of its inputs.
    """
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(handle))
        if fortran or len(shape) != 2 or not 0 <= y0 <= y1 <= shape[0]:
            raise ValueError(f"{path}: rows {y0}:{y1} of a {'Fortran ' if fortran else ''}array of shape {shape}")
        out = np.empty((y1 - y0, shape[1]), dtype=dtype)
        handle.seek(handle.tell() + y0 * shape[1] * dtype.itemsize)
        if handle.readinto(memoryview(out).cast("B")) != out.nbytes:
            raise OSError(f"{path}: rows {y0}:{y1} cannot be read (file truncated)")
    return out


def combine_rows(inputs: Sequence[Mapping[str, Any]], masters: Mapping[str, str | None], isr: IsrConfig, y0: int,
                 y1: int, config: CombineConfig, outputs: Mapping[str, str], poisson: bool = True) -> int:
    """Combine rows ``y0:y1`` of a master's inputs (what :func:`prepare_master_input` returned for each) into
    the output .npy files; returns rows done.

    Each input's rows are assembled here from its raw file (:func:`master_input_rows`), the masters' rows
    read once for all of them. The variance is the noise model's (:func:`~lenghu.calib.combine.model_variance`,
    from the inputs' read-variance layouts; ``poisson`` False for biases).
    """
    cals = _load_masters(masters).rows(y0, y1, image_only=True)
    strips = [master_input_rows(item, isr, cals, y0, y1) for item in inputs]
    return combine_strips(strips, [item["scale"] for item in inputs], y0, config, outputs,
                          [item["read_variance"] for item in inputs], poisson)


def combine_strips(strips: Sequence[np.ndarray], scales: Sequence[float], y0: int, config: CombineConfig,
                   outputs: Mapping[str, str], read_variances: Sequence | None = None, poisson: bool = True) -> int:
    """Combine the same rows (from ``y0``) of several inputs into the output .npy files; returns rows done.

    With ``read_variances`` (the inputs' layouts, :func:`read_variance_rows`) the variance is the noise model's
    (:func:`~lenghu.calib.combine.model_variance`; ``poisson`` False for biases), else the
    clipped sample variance.
    """
    from lenghu.calib import combine_kernel  # numba: imported where a combine runs, not by every process

    y1 = y0 + strips[0].shape[0]
    if combine_kernel.kernel_applies(len(strips), config, read_variances, np.result_type(*strips)):
        # The default master combine, compiled: the same values as the numpy path below, ~8x faster.
        image, variance, n_used = combine_kernel.combine_model(strips, scales, config, read_variances, y0, poisson)
    else:
        stack = np.stack([part * scale for part, scale in zip(strips, scales)])
        strip = combine_stack(stack, config, sample_variance=read_variances is None)
        del stack
        image, variance, n_used = strip.image, strip.variance, strip.n_used
        if read_variances is not None:
            width = strip.image.shape[1]
            variance = model_variance(strip, (read_variance_rows(r, y0, y1, width) for r in read_variances), scales,
                                      poisson, config)
    for name, value in (("image", image), ("variance", variance), ("n_used", n_used)):
        npy_write_rows(outputs[name], y0, value)
    return y1 - y0


def npy_write_rows(path: str, y0: int, rows: np.ndarray) -> None:
    """Write ``rows`` over rows ``y0:y0 + len(rows)`` of an existing 2-D .npy file (positioned writes, as
    :func:`npy_rows` reads: a memory map would take a page fault per 4 kB written)."""
    with open(path, "r+b") as handle:
        version = np.lib.format.read_magic(handle)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0(handle) if version == (1, 0)
                                 else np.lib.format.read_array_header_2_0(handle))
        if fortran or len(shape) != 2 or rows.ndim != 2 or rows.shape[1] != shape[1] or \
                not 0 <= y0 <= y0 + rows.shape[0] <= shape[0]:
            raise ValueError(f"{path}: cannot write {rows.shape} rows at row {y0} of an array of shape {shape}")
        data = memoryview(np.ascontiguousarray(rows, dtype=dtype)).cast("B")
        offset = handle.tell() + y0 * shape[1] * dtype.itemsize
        while data:  # a regular file takes it in one call unless the disk fills up (which raises)
            done = os.pwrite(handle.fileno(), data, offset)
            data, offset = data[done:], offset + done


def master_column_medians(image_path: str, x0: int, x1: int) -> np.ndarray:
    """Medians of columns ``x0:x1`` of a combined master (bad columns are judged on them)."""
    return column_medians(np.load(image_path, mmap_mode="r")[:, x0:x1])


def plan_master_file(kind: str, outputs: Mapping[str, str], n_inputs: int, config: MasterConfig,
                     column_parts: Sequence[np.ndarray]) -> MasterPlan:
    """The whole-frame figures of a combined master (:func:`~lenghu.calib.masters.plan_master`)."""
    columns = np.concatenate(column_parts) if column_parts else None
    return plan_master(kind, np.load(outputs["image"], mmap_mode="r"), np.load(outputs["n_used"], mmap_mode="r"),
                       n_inputs, config, columns=columns)


def write_master_rows(product: SharedProduct, plan: MasterPlan, outputs: Mapping[str, str], y0: int,
                      y1: int) -> tuple[dict, MasterQuality]:
    """Rows ``y0:y1`` of a master finished (scaled, masked) into its shared product file.

    The combined planes are read strip by strip (:func:`npy_rows`): no full-frame array is made.
    Returns the part written and the quality figures' share of these rows.
    """
    quality = MasterQuality(plan)
    if product.finished():  # recomputed after the file was made (see SharedProduct.finished): nothing to do
        return {}, quality
    with product.writer() as out:
        for a in range(y0, y1, WRITE_ROWS):
            b = min(y1, a + WRITE_ROWS)
            used = npy_rows(outputs["n_used"], a, b)
            part = finish_rows(plan, npy_rows(outputs["image"], a, b), npy_rows(outputs["variance"], a, b), used)
            quality.add(a, *part, used)
            out.write_rows(a, *part)
        written = out.written()
    return written, quality


def finish_master_product(product: SharedProduct, plan: MasterPlan,
                          parts: Sequence[tuple[dict, MasterQuality]]) -> dict[str, Any]:
    """Join the parts of a master into its file (quality in the header); return path, checksum, quality.

    Recomputed after the file was made (its worker died holding the result), it reads them back.
    """
    if product.finished():
        return {"path": product.final, "checksum": file_checksum(product.final),
                "quality": read_quality(product.final)}
    quality = MasterQuality(plan).merge([q for _, q in parts])
    figures = quality.figures()
    path, checksum = finish_shared_product(product, [p for p, _ in parts], quality_cards(figures))
    return {"path": str(path), "checksum": checksum, "quality": figures}


def calibrate(path: str, spec: str, detector: str, masters: Mapping[str, str | None], isr: IsrConfig,
              final: str, provenance: Sequence[ProvenanceEntry], config_hash: str) -> dict[str, Any]:
    """Signature removal of one (exposure, detector), strip by strip into the calibrated product.

    Raw rows are read per strip, the masters' rows per strip, and each
    finished strip of SCI/VAR/MASK is written into the preallocated product
    (renamed into place only when whole): memory is that of a strip.
    """
    start = time.perf_counter()
    reader, assembler = _assembled(path, spec, detector, isr)
    frame_detector = reader.detector
    cals = _load_masters(masters)
    saturation = min(a.saturation.value * a.gain.value for a in frame_detector.amplifiers)
    steps = ("overscan", "trim", "gain") + tuple(k for k in ("bias", "dark", "flat") if getattr(cals, k)) + \
        (("cosmic_rays",) if isr.cosmic_rays.enabled else ())
    summary = _FrameFacts(steps, cals.missing, assembler.read_noise, assembler.overscan_level)
    primary = _primary_cards(path, frame_detector.name, summary)
    image_header = fits.Header()
    copy_cards(reader.header, image_header, wcs_only=True)
    bad = _NoDataCounter(path, detector, assembler.shape)

    def source(y0: int, y1: int):
        rows = assembler.rows(y0, y1)
        bad.add(rows.no_data[max(0, min(y1 - y0, _last_row[0] - y0)):])  # each row counted once
        _last_row[0] = max(_last_row[0], y1)
        return rows

    _last_row = [0]
    with stream_image_product(final, assembler.shape, primary, provenance, config_hash, image_header) as out:
        done = remove_signature_by_strips(source, assembler.shape, reader.record.exptime, cals, isr, saturation,
                                          out.write_rows, strip_rows_for(assembler.shape[1]))
        if done.steps != steps:
            raise RuntimeError(f"{path}: steps {done.steps} differ from the announced {steps}")
        out.update_primary({"NCRPIX": (done.cosmic_ray_pixels, "pixels flagged as cosmic rays")})
    sample = done.sky_sample
    quality = {
        "sky_median_e": float(np.median(sample)) if sample.size else float("nan"),
        "cosmic_ray_pixels": done.cosmic_ray_pixels,
        "masked_fraction": done.masked_pixels / done.pixels,
        "seconds": time.perf_counter() - start,
    }
    return {"path": final, "checksum": file_checksum(final), "missing": list(done.missing), "quality": quality}


@dataclass(frozen=True)
class _FrameFacts:
    """What the primary header says about a calibration, known before its pixels are done."""

    steps: tuple[str, ...]
    missing: tuple[str, ...]
    read_noise: dict[str, float]
    overscan_level: dict[str, float]
    cosmic_ray_pixels: int = 0


def _primary_cards(path: str, detector: str, image) -> dict[str, object]:
    with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=True) as hdul:
        raw_primary = hdul[0].header
        cards: dict[str, object] = {
            key: (raw_primary[key], raw_primary.comments[key][:30]) for key in CARRIED_CARDS if key in raw_primary
        }
    cards["CCDNAME"] = (detector, "detector")
    cards["RAWFILE"] = (Path(path).name[:68], "raw file this product was made from")
    cards["ISRSTEPS"] = (",".join(image.steps)[:68], "steps done")
    cards["MISSCAL"] = (",".join(image.missing) or "none", "calibrations missing for this frame")
    cards["NCRPIX"] = (image.cosmic_ray_pixels, "pixels flagged as cosmic rays")
    for amp, rn in image.read_noise.items():
        cards[f"RDNOIS{amp}"[:8]] = (round(float(rn), 4), f"read noise of amplifier {amp}, e-")
    for amp, level in image.overscan_level.items():
        cards[f"OVSCN{amp}"[:8]] = (round(float(level), 3), f"median overscan of amplifier {amp}, ADU")
    return cards
