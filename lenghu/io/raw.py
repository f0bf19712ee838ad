"""Raw frames in: per-amplifier pixel arrays and a normalised ObservationRecord.

A raw file is FITS in one of three layouts, chosen by the instrument's
``raw_layout``:

``mef``
    One image extension per detector, found by ``EXTNAME``; the primary
    header holds the exposure's keywords (WFST).
``single``
    One image (HDU 0, or the first HDU with pixels, as in a ``.fz`` file);
    the detector geometry comes from the instrument file (Kast blue).
``header``
    Every image HDU is one detector whose geometry comes from its own header
    (``generic``; see :mod:`lenghu.io.header_geometry`).

:func:`read_record` reads headers only (fast, for ingesting a night in
parallel); :func:`read_raw` also reads pixels, optionally for some detectors
only: a plain file is memory-mapped, and in a ``.fz`` file only the asked-for
HDUs are decompressed. Pixel arrays are float32 ADU (BZERO/BSCALE applied),
read-only, in the raw orientation (sections' ``flip_x``/``flip_y`` are left
for assembly). Files are opened read-only and never modified; every problem
with a file is raised as a :class:`~lenghu.errors.FrameError` naming it.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from astropy.io import fits

from lenghu.errors import (MissingExtensionError, MissingKeywordError, ShapeError, TruncatedFileError,
                           UnclassifiedFrameError)
from lenghu.instruments.loader import available_instruments, load_instrument, scale_instrument
from lenghu.instruments.model import Amplifier, Detector, HeaderSections, Instrument
from lenghu.io.coords import observation_mjd, parse_angle
from lenghu.io.fitsfile import FitsFile, HduInfo, header_values, merged_values, scale_to_adu
from lenghu.io.header_geometry import header_detector
from lenghu.io.records import ObservationRecord

__all__ = [
    "AmplifierPixels", "RawDetectorFrame", "RawDetectorReader", "RawExposure", "detect_instrument",
    "instrument_for", "open_raw_detector", "read_raw", "read_record",
]


@dataclass(frozen=True, eq=False)
class AmplifierPixels:
    """One amplifier's pixels.

    Attributes
    ----------
    amplifier : Amplifier
        Its geometry and electrical values.
    data : numpy.ndarray
        The data section, float32 ADU, read-only.
    overscan : numpy.ndarray or None
        The serial overscan section, float32 ADU, read-only.
    """

    amplifier: Amplifier
    data: np.ndarray
    overscan: np.ndarray | None


@dataclass(frozen=True, eq=False)
class RawDetectorFrame:
    """One detector of a raw exposure, split by amplifier.

    Attributes
    ----------
    detector : Detector
        The detector (for ``generic``: built from this HDU's header).
    amplifiers : tuple of AmplifierPixels
        In the detector's amplifier order.
    header : astropy.io.fits.Header
        The HDU's own header (the image header for a tile-compressed HDU).
    """

    detector: Detector
    amplifiers: tuple[AmplifierPixels, ...]
    header: fits.Header

    def amplifier(self, name: str) -> AmplifierPixels:
        """The pixels of the amplifier called ``name``."""
        for amp in self.amplifiers:
            if amp.amplifier.name == name:
                return amp
        raise KeyError(f"detector {self.detector.name} has no amplifier {name!r}")


@dataclass(frozen=True, eq=False)
class RawExposure:
    """A raw file read: its record and the detectors asked for.

    Attributes
    ----------
    record : ObservationRecord
        What the file is (all detectors present are listed, even those not read).
    frames : tuple of RawDetectorFrame
        The detectors read, in the instrument's (or the file's) order.
    """

    record: ObservationRecord
    frames: tuple[RawDetectorFrame, ...]

    def frame(self, name: str) -> RawDetectorFrame:
        """The frame of the detector called ``name``."""
        for frame in self.frames:
            if frame.detector.name == name:
                return frame
        raise KeyError(f"{self.record.path}: detector {name!r} was not read")


def detect_instrument(header: Mapping[str, Any]) -> str | None:
    """The shipped instrument whose raw files carry this (primary) header, or None.

    ``INSTRUME = 'WFST'`` (or ``TELESCOP = 'WFST...'``) is ``wfst``; the Lick
    data-taking ``VERSION = 'kastb'`` is ``kast_blue``. None means "use
    ``generic``" (as ``--instrument auto`` does).
    """
    def text(key: str) -> str:
        try:
            value = header.get(key)
        except (ValueError, KeyError):
            return ""
        return "" if value is None else str(value).strip().upper()

    instrume, telescop, version = text("INSTRUME"), text("TELESCOP"), text("VERSION")
    if instrume == "WFST" or telescop.startswith("WFST"):
        name = "wfst"
    elif version.startswith("KASTB") or ("KAST" in instrume and "BLUE" in instrume):
        name = "kast_blue"
    else:
        return None
    return name if name in available_instruments() else None


def instrument_for(path: str | Path, name: str | Path = "auto") -> Instrument:
    """The instrument to read ``path`` with: ``name`` loaded, or for ``"auto"`` detected from its header.

    A file simulated at a reduced size (``LHSCALE`` < 1 in its primary header,
    see ``lenghu simulate night --scale``) gets the instrument scaled alike.

    Raises
    ------
    FrameError
        ``"auto"`` and the file cannot be read.
    """
    fitsfile = FitsFile(path)
    values = header_values(fitsfile.primary.header)
    if str(name) == "auto":
        if fitsfile.primary.image_shape is None:
            images = fitsfile.images()
            if images:
                values = merged_values(values, header_values(images[0].header), extension_wins=False)
        name = detect_instrument(values) or "generic"
    return _scaled_instrument(str(name), _scale_of(values, path))


def _scale_of(values: Mapping[str, Any], path: str | Path) -> float:
    """``LHSCALE`` of a scaled-down simulated file (1 for real files)."""
    value = values.get("LHSCALE", 1.0)
    try:
        scale = float(value)
    except (TypeError, ValueError):
        scale = float("nan")
    if not 0 < scale <= 1:
        raise MissingKeywordError(path, f"LHSCALE = {value!r} is not a scale in (0, 1]")
    return scale


@functools.lru_cache(maxsize=32)
def _scaled_instrument(name: str, scale: float) -> Instrument:
    """A loaded instrument, scaled as the simulator scaled it; cached per process."""
    instrument = load_instrument(name)
    return scale_instrument(instrument, scale) if scale != 1.0 and instrument.detectors else instrument


def read_record(path: str | Path, instrument: Instrument) -> ObservationRecord:
    """What a raw file is, from its headers only.

    Parameters
    ----------
    path : str or Path
        The raw file.
    instrument : Instrument
        Its instrument (its rules classify the frame).

    Returns
    -------
    ObservationRecord

    Raises
    ------
    UnreadableFileError, TruncatedFileError
        The file is empty, not FITS, garbled, or shorter than its headers say
        (for ``.gz``/``.bz2``: the decompression fails).
    MissingExtensionError
        None of the instrument's detectors is in the file.
    MissingKeywordError
        Exposure time (except for biases), filter (without a default) or
        observation time are absent or unreadable.
    UnclassifiedFrameError
        No frame-type rule of the instrument matches.
    """
    fitsfile = FitsFile(path)
    located = _locate(fitsfile, instrument)
    return _record(fitsfile, instrument, located)


def read_raw(
    path: str | Path, instrument: Instrument, detectors: Iterable[str] | str | None = None
) -> RawExposure:
    """A raw file's record and per-amplifier pixels.

    Parameters
    ----------
    path : str or Path
        The raw file.
    instrument : Instrument
        Its instrument.
    detectors : str, iterable of str or None
        Names of the detectors to read (default: every one in the file).
        Only those HDUs' pixels are read or decompressed.

    Returns
    -------
    RawExposure

    Raises
    ------
    FrameError
        Everything :func:`read_record` raises, and: ``MissingExtensionError``
        (a requested detector is not in the file), ``ShapeError`` (an image
        does not have the instrument's raw shape), ``SectionError`` (a header
        section is malformed or outside the image, ``generic``).
    ValueError
        A requested detector name the instrument does not have.
    """
    fitsfile = FitsFile(path, load=True)
    located = _locate(fitsfile, instrument)
    record = _record(fitsfile, instrument, located)
    wanted = _select(fitsfile, instrument, located, detectors)
    primary = header_values(fitsfile.primary.header)
    frames = []
    for name, info, detector in wanted:
        header = fitsfile.image_header(info)
        if detector is None:
            detector = _header_detector(fitsfile, instrument.header_sections, name, info, header, primary, located)
        frames.append(_read_frame(fitsfile, info, detector, header))
    return RawExposure(record=record, frames=tuple(frames))


class RawDetectorReader:
    """One detector of a raw file, its pixels read by rows when asked (bounded memory).

    :func:`read_raw` returns every amplifier's pixels at once (float32, the
    whole detector); a full-size WFST CCD is then 340 MB before any
    processing. This reads rows ``r0:r1`` of the raw array (all columns)
    from the file on each call: a plain file by a positioned read (nothing
    stays mapped in the process), a compressed one from its decompressed
    HDU, kept for the reader's lifetime.

    Attributes
    ----------
    record : ObservationRecord
    detector : Detector
    header : astropy.io.fits.Header
        The HDU's own header.
    """

    def __init__(self, fitsfile: FitsFile, info: HduInfo, record: ObservationRecord, detector: Detector,
                 header: fits.Header):
        self.record = record
        self.detector = detector
        self.header = header
        self.path = fitsfile.path
        self._fitsfile = fitsfile
        self._info = info
        self._whole: np.ndarray | None = None

    @property
    def raw_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the raw array."""
        return tuple(self._info.image_shape)

    @property
    def whole_in_memory(self) -> bool:
        """Whether :meth:`rows` decompresses the whole HDU (a compressed file) rather than reading rows."""
        return self._info.is_compressed_image or self._fitsfile.compression is not None

    @property
    def may_lack_data(self) -> bool:
        """Whether :meth:`rows` can give NaN: floating-point data, or integers with ``BLANK``."""
        if "BLANK" in self.header or self.whole_in_memory:
            return True
        return self.header.get("BITPIX") not in (8, 16, 32, 64)

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Raw rows ``r0:r1``, all columns, float32 ADU (BZERO/BSCALE applied, BLANK as NaN)."""
        ny, nx = self.raw_shape
        if not 0 <= r0 < r1 <= ny:
            raise ValueError(f"{self.path}: rows {r0}:{r1} outside 0:{ny}")
        info = self._info
        if self.whole_in_memory:
            if self._whole is None:
                self._whole = self._fitsfile.read_image(info)
            part = self._whole[r0:r1]
        else:
            dtype = self._fitsfile.read_image(info).dtype  # a memory map, dropped at once
            itemsize = dtype.itemsize
            try:
                part = np.fromfile(self.path, dtype=dtype, count=(r1 - r0) * nx,
                                   offset=info.data_offset + r0 * nx * itemsize).reshape(r1 - r0, nx)
            except (OSError, ValueError) as exc:
                raise TruncatedFileError(self.path, f"HDU {info.index}: rows {r0}:{r1} cannot be read: {exc}") from exc
        return scale_to_adu(part, self.header)


def open_raw_detector(path: str | Path, instrument: Instrument, detector: str) -> RawDetectorReader:
    """A :class:`RawDetectorReader` of one detector; checks as :func:`read_raw` does, reads no pixels.

    Raises
    ------
    FrameError
        As :func:`read_raw` (``ShapeError`` for an image of the wrong shape).
    """
    fitsfile = FitsFile(path, load=True)
    located = _locate(fitsfile, instrument)
    record = _record(fitsfile, instrument, located)
    ((name, info, det),) = _select(fitsfile, instrument, located, [detector])
    header = fitsfile.image_header(info)
    if det is None:
        det = _header_detector(fitsfile, instrument.header_sections, name, info, header,
                               header_values(fitsfile.primary.header), located)
    _check_shape(fitsfile, info, det)
    return RawDetectorReader(fitsfile, info, record, det, header)


# --- finding the detectors' HDUs -------------------------------------------------------

Located = list[tuple[str, HduInfo, Detector | None]]


def _locate(fitsfile: FitsFile, instrument: Instrument) -> Located:
    """``(detector name, HDU, Detector or None for header geometry)`` for each detector present."""
    path = fitsfile.path
    if instrument.raw_layout == "header":
        images = fitsfile.images()
        if not images:
            raise MissingExtensionError(path, "no HDU holds an image")
        names = _image_names(images)
        return [(name, info, None) for name, info in zip(names, images)]
    found: Located = []
    for det in instrument.detectors:
        try:
            info = fitsfile.hdu(det.hdu)
        except MissingExtensionError:
            continue
        if info.image_shape is None and det.hdu == 0:
            images = fitsfile.images()
            if not images:
                continue
            info = images[0]
        found.append((det.name, info, det))
    if not found:
        wanted = [str(det.hdu) for det in instrument.detectors]
        raise MissingExtensionError(
            path,
            f"none of the {instrument.name} detector HDUs {wanted} is in the file (is it a {instrument.name} file?)",
        )
    return found


def _image_names(images: tuple[HduInfo, ...]) -> list[str]:
    """``CCD`` for a single image; else EXTNAME, with EXTVER where EXTNAMEs repeat, or ``HDUn``."""
    if len(images) == 1:
        return ["CCD"]
    extnames = [info.extname for info in images]
    names = []
    for info in images:
        if not info.extname:
            names.append(f"HDU{info.index}")
        elif extnames.count(info.extname) > 1:
            names.append(f"{info.extname}{info.extver}")
        else:
            names.append(info.extname)
    if len(set(names)) != len(names):
        names = [f"HDU{info.index}" for info in images]
    return names


def _select(fitsfile: FitsFile, instrument: Instrument, located: Located, detectors) -> Located:
    if detectors is None:
        return located
    names = [detectors] if isinstance(detectors, str) else list(detectors)
    by_name = {entry[0]: entry for entry in located}
    chosen = []
    for name in names:
        if name not in by_name:
            if instrument.raw_layout != "header" and name not in {d.name for d in instrument.detectors}:
                raise ValueError(f"instrument {instrument.name} has no detector {name!r}")
            raise MissingExtensionError(
                fitsfile.path, f"detector {name!r} is not in the file (it has {[e[0] for e in located]})"
            )
        chosen.append(by_name[name])
    return chosen


# --- the record --------------------------------------------------------------------------


def _record_values(fitsfile: FitsFile, instrument: Instrument, located: Located) -> dict[str, Any]:
    primary = header_values(fitsfile.primary.header)
    first = located[0][1]
    if first.index == 0:
        return primary
    extension = header_values(first.header)
    # mef: the primary holds the exposure; single/header: the image HDU inherits from the primary
    return merged_values(primary, extension, extension_wins=instrument.raw_layout != "mef")


def _record(fitsfile: FitsFile, instrument: Instrument, located: Located) -> ObservationRecord:
    path = str(fitsfile.path)
    values = _record_values(fitsfile, instrument, located)
    rules = instrument.rules
    frame_type = rules.classify(values)
    exptime = _exptime(values, instrument, path)
    if exptime is None:
        if frame_type != "bias":
            why = "no frame-type rule matched either" if frame_type is None else f"needed for a {frame_type} frame"
            raise MissingKeywordError(
                path, f"no exposure time: none of {list(rules.exptime_keys)} is present ({why})"
            )
        exptime = 0.0
    if frame_type is None:
        raise UnclassifiedFrameError(
            path, f"no frame-type rule of instrument {instrument.name!r} matches ({_rule_keywords(values, instrument)})"
        )
    found = rules.first(values, rules.filter_keys)
    if found is not None:
        filter_name = str(found[1]).strip()
    elif rules.default_filter is not None:
        filter_name = rules.default_filter
    else:
        raise MissingKeywordError(
            path, f"no filter: none of {list(rules.filter_keys)} is present and the instrument has no default_filter"
        )
    found = rules.first(values, rules.object_keys)
    return ObservationRecord(
        path=path,
        instrument=instrument.name,
        detectors=tuple(name for name, *_ in located),
        frame_type=frame_type,
        filter=filter_name,
        exptime=exptime,
        mjd=observation_mjd(values, rules, path),
        object=str(found[1]).strip() if found is not None else "",
        ra=_angle(values, rules.ra_keys, "ra", path),
        dec=_angle(values, rules.dec_keys, "dec", path),
    )


def _exptime(values: Mapping[str, Any], instrument: Instrument, path: str) -> float | None:
    found = instrument.rules.first(values, instrument.rules.exptime_keys)
    if found is None:
        return None
    key, value = found
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not np.isfinite(seconds) or seconds < 0:
        raise MissingKeywordError(path, f"{key} = {value!r} is not an exposure time in seconds")
    return seconds


def _angle(values: Mapping[str, Any], keys: tuple[str, ...], kind: str, path: str) -> float | None:
    for key in keys:
        if key in values and str(values[key]).strip():
            degrees = parse_angle(values[key], kind)
            if degrees is None:
                message = f"{path}: {key} = {values[key]!r} is not a readable {kind.upper()}; left out"
                warnings.warn(message, stacklevel=4)
            return degrees
    return None


def _rule_keywords(values: Mapping[str, Any], instrument: Instrument) -> str:
    keys = []
    for rule in instrument.rules.frame_types:
        for condition in rule.all_of + rule.any_of:
            keys.extend(k for k in condition.keys if k not in keys)
    present = [f"{k}={values[k]!r}" for k in keys if k in values]
    absent = [k for k in keys if k not in values]
    text = "; ".join(present[:10]) or "none of the rules' keywords is present"
    if absent:
        text += f"; absent: {', '.join(absent[:10])}"
    return text


# --- pixels ------------------------------------------------------------------------------


def _header_detector(
    fitsfile: FitsFile,
    sections: HeaderSections | None,
    name: str,
    info: HduInfo,
    header: fits.Header,
    primary: Mapping[str, Any],
    located: Located,
) -> Detector:
    values = header_values(header)
    index = 1 + [entry[0] for entry in located].index(name)
    return header_detector(
        path=str(fitsfile.path),
        name=name,
        index=index,
        hdu=info.index,
        image_shape=info.image_shape,
        values=values,
        primary=primary if info.index != 0 else {},
        sections=sections or HeaderSections(),
        integer_range=_integer_range(info, values),
    )


def _integer_range(info: HduInfo, values: Mapping[str, Any]) -> tuple[float, float] | None:
    bitpix = info.bitpix
    if bitpix < 0:
        return None
    bits = bitpix
    low, high = (0, 255) if bits == 8 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    scale = float(values.get("BSCALE", 1.0) or 1.0)
    zero = float(values.get("BZERO", 0.0) or 0.0)
    ends = sorted((low * scale + zero, high * scale + zero))
    return ends[0], ends[1]


def _check_shape(fitsfile: FitsFile, info: HduInfo, detector: Detector) -> None:
    shape = info.image_shape
    if shape != tuple(detector.raw_shape):
        have = "x".join(str(n) for n in reversed(shape or ()))
        want = f"{detector.raw_shape[1]}x{detector.raw_shape[0]}"
        raise ShapeError(
            fitsfile.path, f"detector {detector.name} (HDU {info.index}) is {have} (NAXIS1 x NAXIS2); expected {want}"
        )


def _read_frame(fitsfile: FitsFile, info: HduInfo, detector: Detector, header: fits.Header) -> RawDetectorFrame:
    _check_shape(fitsfile, info, detector)
    raw = fitsfile.read_image(info)
    amps = []
    for amp in detector.amplifiers:
        data = _frozen(scale_to_adu(raw, header, amp.data_section.slices))
        overscan = (
            _frozen(scale_to_adu(raw, header, amp.overscan_section.slices))
            if amp.overscan_section is not None
            else None
        )
        amps.append(AmplifierPixels(amplifier=amp, data=data, overscan=overscan))
    del raw  # release the memory map
    return RawDetectorFrame(detector=detector, amplifiers=tuple(amps), header=header)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
