"""Functions that run on Dask workers: each reads its own inputs and writes its own output.

Arrays never travel through the graph: a task gets paths and small config
objects, loads the pixels itself, and returns a small dict (paths, checksums,
quality figures). Every output is written atomically, so a task that is
re-run after a killed worker produces the same file and nothing half-written
is ever seen.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.io import fits

from lenghu.calib.assemble import assemble
from lenghu.calib.combine import CombineConfig, combine_stack, model_variance
from lenghu.calib.isr import Calibrations, IsrConfig, calibrated_signal, remove_signature
from lenghu.calib.masters import MasterConfig, finish_master
from lenghu.errors import FrameError, LenghuError
from lenghu.instruments import Instrument
from lenghu.io.atomic import atomic_path
from lenghu.io.products import ProvenanceEntry, copy_cards, read_master, write_image_product, write_master
from lenghu.io.raw import instrument_for, read_raw, read_record
from lenghu.pipelines.registry import file_checksum

# Primary-header cards carried from the raw file into every product.
CARRIED_CARDS = ("TELESCOP", "INSTRUME", "OBSERVAT", "DATE-OBS", "MJD-OBS", "EXPTIME", "FILTER", "IMAGETYP",
                 "OBJECT", "RA", "DEC", "AIRMASS", "LST", "EXPNUM")


# A frame with more unusable pixels than this is rejected rather than calibrated.
MAX_NO_DATA_FRACTION = 0.5


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
    instrument = resolve_instrument(path, spec)
    exposure = read_raw(path, instrument, detectors=[detector])
    frame = exposure.frames[0]
    assembled = assemble(frame.amplifiers, frame.detector, isr.overscan, dtype=isr.dtype, source=path)
    bad = float(assembled.no_data.mean())
    if bad > MAX_NO_DATA_FRACTION:
        raise FrameError(path, f"detector {detector}: {bad:.0%} of the pixels are not finite (NaN or Inf)")
    return exposure, frame, assembled


def _load_masters(paths: Mapping[str, str | None]) -> Calibrations:
    return Calibrations(**{kind: read_master(p, kind) if p else None for kind, p in paths.items()})


def prepare_master_input(path: str, spec: str, detector: str, kind: str, masters: Mapping[str, str | None],
                         isr: IsrConfig, scratch: str) -> dict[str, Any]:
    """One input of a master, processed as far as the master needs, saved as .npy.

    Biases: overscan, trim, gain. Darks: and bias. Flats: and bias and dark.
    Returns the scratch path, the exposure time and the frame's scale factor
    (1 / exposure time for darks, 1 / median for flats, 1 for biases). The
    frame's read-noise variance goes next to the scratch (``*.readvar.npy``)
    for the master's variance (:func:`lenghu.calib.combine.model_variance`).
    """
    exposure, _, assembled = _assembled(path, spec, detector, isr)
    sci = calibrated_signal(assembled, exposure.record.exptime, _load_masters(masters), isr.dtype)
    sci[assembled.no_data] = np.nan
    exptime = exposure.record.exptime
    if kind == "dark":
        if exptime <= 0:
            raise FrameError(path, "a dark frame with zero exposure time cannot be scaled to e-/s")
        scale = 1.0 / exptime
    elif kind == "flat":
        level = float(np.nanmedian(sci))
        if not np.isfinite(level) or level <= 0:
            raise FrameError(path, f"flat frame has median level {level:.1f} e-; not a usable flat")
        scale = 1.0 / level
    else:
        scale = 1.0
    # Scratch files are written in place, without fsync: they are not products, a rerun of this
    # task rewrites them whole, and combine tasks start only after this task has returned.
    Path(scratch).parent.mkdir(parents=True, exist_ok=True)
    np.save(scratch, sci)
    read_variance = str(Path(scratch).with_suffix(".readvar.npy"))
    np.save(read_variance, assembled.read_variance)
    return {"path": path, "scratch": scratch, "read_variance": read_variance, "exptime": exptime, "scale": scale,
            "shape": sci.shape, "dtype": str(sci.dtype)}


def create_combine_outputs(folder: str, shape: tuple[int, int]) -> dict[str, str]:
    """Empty memory-mapped arrays that the row-strip tasks of one master fill."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    outputs = {}
    for name, dtype in (("image", np.float32), ("variance", np.float32), ("n_used", np.int16)):
        path = str(Path(folder) / f"{name}.npy")
        np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()
        outputs[name] = path
    return outputs


def combine_rows(scratches: Sequence[str], scales: Sequence[float], y0: int, y1: int,
                 config: CombineConfig, outputs: Mapping[str, str],
                 read_variances: Sequence[str] | None = None, poisson: bool = True) -> int:
    """Combine rows ``y0:y1`` of the prepared inputs into the output memmaps; returns rows done.

    With ``read_variances`` (the inputs' ``*.readvar.npy``) the variance is the noise model's
    (:func:`~lenghu.calib.combine.model_variance`; ``poisson`` False for biases), else the
    clipped sample variance.
    """
    stack = np.stack([np.load(s, mmap_mode="r")[y0:y1] * scale for s, scale in zip(scratches, scales)])
    strip = combine_stack(stack, config, sample_variance=read_variances is None)
    del stack
    variance = strip.variance
    if read_variances is not None:
        variance = model_variance(strip, (np.load(r, mmap_mode="r")[y0:y1] for r in read_variances), scales,
                                  poisson, config)
    for name, value in (("image", strip.image), ("variance", variance), ("n_used", strip.n_used)):
        out = np.load(outputs[name], mmap_mode="r+")
        out[y0:y1] = value
        out.flush()
        del out
    return y1 - y0


def finish_master_file(kind: str, outputs: Mapping[str, str], n_inputs: int, config: MasterConfig,
                       final: str, detector: str, filter_name: str | None,
                       provenance: Sequence[ProvenanceEntry], config_hash: str) -> dict[str, Any]:
    """Normalise and mask the combined master, write it as FITS; return its path, checksum, quality."""
    image = np.load(outputs["image"])
    variance = np.load(outputs["variance"])
    n_used = np.load(outputs["n_used"])
    master = finish_master(kind, image, variance, n_used, n_inputs, config)
    write_master(final, master, detector, filter_name, provenance, config_hash)
    return {"path": final, "checksum": file_checksum(final), "quality": master.quality}


def calibrate(path: str, spec: str, detector: str, masters: Mapping[str, str | None], isr: IsrConfig,
              final: str, provenance: Sequence[ProvenanceEntry], config_hash: str) -> dict[str, Any]:
    """Signature removal of one (exposure, detector); writes the calibrated product."""
    start = time.perf_counter()
    exposure, frame, assembled = _assembled(path, spec, detector, isr)
    cals = _load_masters(masters)
    saturation = min(a.amplifier.saturation.value * a.amplifier.gain.value for a in frame.amplifiers)
    image = remove_signature(assembled, exposure.record.exptime, cals, isr, saturation_e=saturation)
    primary = _primary_cards(path, frame.detector.name, image)
    image_header = fits.Header()
    copy_cards(frame.header, image_header, wcs_only=True)
    write_image_product(final, image.sci, image.var, image.mask, primary, provenance, config_hash, image_header)
    good = image.mask == 0
    quality = {
        "sky_median_e": float(np.median(image.sci[good])) if good.any() else float("nan"),
        "cosmic_ray_pixels": image.cosmic_ray_pixels,
        "masked_fraction": float(1 - good.mean()),
        "seconds": time.perf_counter() - start,
    }
    return {"path": final, "checksum": file_checksum(final), "missing": list(image.missing), "quality": quality}


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
