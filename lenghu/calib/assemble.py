"""Overscan, trim, gain: amplifiers to one detector image in electrons."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import astropy.units as u
import numpy as np

from lenghu.calib.overscan import OverscanConfig, overscan_level, overscan_level_variance
from lenghu.instruments.model import ELECTRON_PER_ADU, Amplifier, Detector


class AmplifierData(Protocol):
    """What assembly needs of one amplifier's raw pixels (see ``lenghu.io.raw``)."""

    amplifier: Amplifier
    data: np.ndarray
    overscan: np.ndarray | None


@dataclass(frozen=True)
class AssembledFrame:
    """A detector image after overscan subtraction, trimming and gain.

    Attributes
    ----------
    image : ndarray
        Electrons.
    read_variance : ndarray
        Read-noise variance per pixel, electrons^2 (each amplifier's own, plus the noise of
        the overscan level subtracted from it).
    saturated : ndarray of bool
        Raw value at or above the amplifier's saturation.
    no_data : ndarray of bool
        Not finite in the raw data, or not covered by any amplifier.
    read_noise : dict
        Read noise used per amplifier, electrons (measured where unknown).
    overscan_level : dict
        Median overscan level per amplifier, ADU.
    """

    image: np.ndarray
    read_variance: np.ndarray
    saturated: np.ndarray
    no_data: np.ndarray
    read_noise: dict[str, float]
    overscan_level: dict[str, float]

    def rows(self, y0: int, y1: int) -> "AssembledFrame":
        """The frame cut to rows ``y0:y1`` (views)."""
        return replace(self, image=self.image[y0:y1], read_variance=self.read_variance[y0:y1],
                       saturated=self.saturated[y0:y1], no_data=self.no_data[y0:y1])


def assemble(
    amplifiers: Sequence[AmplifierData],
    detector: Detector,
    overscan: OverscanConfig,
    dtype: type = np.float32,
    source: str = "",
) -> AssembledFrame:
    """Subtract each amplifier's overscan, trim it, convert to electrons, place it.

    Where an amplifier's read noise is unknown (NaN, as for a ``generic``
    header without RDNOISE) it is measured from the overscan (robust standard
    deviation times gain), with a warning naming ``source``.
    """
    shape = detector.shape
    image = np.zeros(shape, dtype=dtype)
    read_var = np.zeros(shape, dtype=np.float32)
    saturated = np.zeros(shape, dtype=bool)
    covered = np.zeros(shape, dtype=bool)
    finite = np.ones(shape, dtype=bool)
    noise, levels = {}, {}
    for amp_data in amplifiers:
        amp = amp_data.amplifier
        raw = np.asarray(amp_data.data, dtype=dtype)
        gain = amp.gain.to_value(ELECTRON_PER_ADU)
        if amp_data.overscan is not None:
            level = overscan_level(amp_data.overscan, overscan).astype(dtype)
            levels[amp.name] = float(np.median(level))
            level_var = overscan_level_variance(amp_data.overscan.shape, overscan)
        else:
            level = dtype(0)
            levels[amp.name] = 0.0
            level_var = 0.0
        rn = amp.read_noise.to_value(u.electron)
        if not math.isfinite(rn):
            rn = _measured_read_noise(amp_data, gain, source)
        noise[amp.name] = rn
        electrons = (raw - level) * dtype(gain)
        target = amp.detector_section.slices
        image[target] = _flip(electrons, amp)
        read_var[target] = rn * rn * (1.0 + level_var)  # the overscan level's noise is in every pixel of its row
        saturated[target] = _flip(raw >= amp.saturation.to_value(u.adu), amp)
        finite[target] = _flip(np.isfinite(raw), amp)
        covered[target] = True
    no_data = ~covered | ~finite
    image[no_data] = 0
    return AssembledFrame(image, read_var, saturated, no_data, noise, levels)


def _tiles(detector: Detector) -> bool:
    """Whether the amplifiers' detector sections cover the detector exactly once (inside it, no overlap,
    areas adding up to the detector's)."""
    ny, nx = detector.shape
    boxes = [(a.detector_section.y0, a.detector_section.y1, a.detector_section.x0, a.detector_section.x1)
             for a in detector.amplifiers]
    if any(y0 < 0 or x0 < 0 or y1 > ny or x1 > nx for y0, y1, x0, x1 in boxes):
        return False
    for i, (ay0, ay1, ax0, ax1) in enumerate(boxes):
        for by0, by1, bx0, bx1 in boxes[i + 1:]:
            if ay0 < by1 and by0 < ay1 and ax0 < bx1 and bx0 < ax1:
                return False
    return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes) == ny * nx


def _flip(array: np.ndarray, amp: Amplifier) -> np.ndarray:
    """Raw amplifier pixels in detector orientation (reversed DETSEC axes)."""
    sec = amp.detector_section
    if sec.flip_y:
        array = array[::-1, :]
    if sec.flip_x:
        array = array[:, ::-1]
    return array


def _measured_read_noise(amp_data: AmplifierData, gain: float, source: str) -> float:
    if amp_data.overscan is None or amp_data.overscan.size < 100:
        raise ValueError(f"{source}: amplifier {amp_data.amplifier.name} has no read noise and no overscan to measure it")
    from astropy.stats import sigma_clipped_stats

    overscan = np.asarray(amp_data.overscan, dtype=np.float64)
    columns = overscan.shape[1]
    # Scatter about each row's (clipped) mean, clipped for cosmic rays: not the MAD, which on integer
    # ADU snaps to half-integers (an overscan of 4.0 ADU rms measured 3.71). sqrt(n / (n - 1))
    # undoes the row mean's share of each pixel's noise.
    rows = sigma_clipped_stats(overscan, axis=1, sigma=4.0, maxiters=5)[0]
    _, _, std = sigma_clipped_stats(overscan - rows[:, None], sigma=4.0, maxiters=5)
    sigma_adu = float(std) * np.sqrt(columns / (columns - 1)) if columns > 1 else float(std)
    warnings.warn(f"{source}: amplifier {amp_data.amplifier.name} read noise unknown; "
                  f"measured {sigma_adu * gain:.2f} e- from the overscan", stacklevel=3)
    return float(sigma_adu * gain)


@dataclass(frozen=True)
class _OverscanOnly:
    """An amplifier with only its overscan pixels (what :func:`_measured_read_noise` needs)."""

    amplifier: Amplifier
    overscan: np.ndarray | None


@dataclass(frozen=True)
class OverscanLevels:
    """What a :class:`StripAssembler` measured in a frame's overscan: enough to assemble any strip of the
    frame again without reading its overscan (small: one level per amplifier row at most)."""

    level: dict[str, np.ndarray]  # per amplifier: (rows, 1), or (1, 1) for one level
    read_var: dict[str, float]
    read_noise: dict[str, float]
    overscan_level: dict[str, float]


class StripAssembler:
    """Assembly of any strip of detector rows, reading the raw array by rows.

    The same arithmetic as :func:`assemble` (so the strips of a frame equal
    the rows of its whole assembly, bit for bit), for a frame too large to
    hold: the overscan of every amplifier is read first (a few MB; the
    ``median`` and ``row_poly`` levels need all its rows), then
    :meth:`rows` reads and assembles only the raw rows that a strip needs.

    Parameters
    ----------
    read_rows : callable
        ``read_rows(r0, r1)``: raw rows ``r0:r1``, all columns, float32 ADU
        (:meth:`lenghu.io.raw.RawDetectorReader.rows`).
    detector : Detector
    overscan : OverscanConfig
    dtype : type
        Arithmetic type of the image.
    source : str
        The file, for messages.
    chunk_rows : int
        Raw rows read at a time while collecting the overscan.
    levels : OverscanLevels, optional
        The levels another assembler of the same frame measured (:meth:`levels`): the overscan is then
        not read again.
    """

    def __init__(self, read_rows, detector: Detector, overscan: OverscanConfig, dtype: type = np.float32,
                 source: str = "", chunk_rows: int = 1024, levels: OverscanLevels | None = None):
        self._read = read_rows
        self.detector = detector
        self.shape = tuple(detector.shape)
        self._dtype = dtype
        self._tiled = _tiles(detector)
        self._chunk_rows = chunk_rows
        if levels is not None:
            self._use(levels)
        else:
            self._measure(overscan, source)

    def _use(self, levels: OverscanLevels) -> None:
        self._levels = levels
        self._level = {a.name: np.broadcast_to(levels.level[a.name], (a.data_section.shape[0], 1))
                       for a in self.detector.amplifiers}
        self._read_var = dict(levels.read_var)
        self.read_noise = dict(levels.read_noise)
        self.overscan_level = dict(levels.overscan_level)

    def levels(self) -> OverscanLevels:
        """The overscan levels measured (see ``levels`` of the constructor)."""
        return self._levels

    def _measure(self, overscan: OverscanConfig, source: str) -> None:
        detector, dtype, chunk_rows = self.detector, self._dtype, self._chunk_rows
        level_by_amp: dict[str, np.ndarray] = {}
        read_var: dict[str, float] = {}
        read_noise: dict[str, float] = {}
        overscan_median: dict[str, float] = {}
        pieces: dict[str, list[np.ndarray]] = {a.name: [] for a in detector.amplifiers if a.overscan_section}
        raw_ny = detector.raw_shape[0]
        for r0 in range(0, raw_ny, chunk_rows):
            r1 = min(raw_ny, r0 + chunk_rows)
            wanted = [a for a in detector.amplifiers if a.overscan_section is not None
                      and a.overscan_section.y0 < r1 and a.overscan_section.y1 > r0]
            if not wanted:
                continue
            part = self._read(r0, r1)
            for amp in wanted:
                sec = amp.overscan_section
                a, b = max(r0, sec.y0), min(r1, sec.y1)
                pieces[amp.name].append(part[a - r0:b - r0, sec.x0:sec.x1].copy())
        for amp in detector.amplifiers:
            gain = amp.gain.to_value(ELECTRON_PER_ADU)
            scan = np.concatenate(pieces[amp.name]) if amp.name in pieces else None
            if scan is not None:
                level = overscan_level(scan, overscan).astype(dtype)
                overscan_median[amp.name] = float(np.median(level))
                level_var = overscan_level_variance(scan.shape, overscan)
            else:
                level = np.zeros((amp.data_section.shape[0], 1), dtype=dtype)
                overscan_median[amp.name] = 0.0
                level_var = 0.0
            rn = amp.read_noise.to_value(u.electron)
            if not math.isfinite(rn):
                rn = _measured_read_noise(_OverscanOnly(amp, scan), gain, source)
            read_noise[amp.name] = rn
            level_by_amp[amp.name] = np.asarray(level).reshape(-1, 1)
            read_var[amp.name] = rn * rn * (1.0 + level_var)
        self._use(OverscanLevels(level_by_amp, read_var, read_noise, overscan_median))

    def no_data_pixels(self, raw_may_be_missing: bool = True) -> int:
        """How many pixels of the frame :meth:`signal_rows` gives as NaN (no data), without assembling it.

        A pixel has no data where no amplifier covers it, where its amplifier's overscan level is not finite,
        or (``raw_may_be_missing``: float data, or integers with ``BLANK``) where its raw value is not
        finite; the raw array is then read once, by blocks of rows.
        """
        if not self._tiled:  # overlapping or partial amplifiers: count on the assembled rows themselves
            step = self._chunk_rows
            return sum(int(np.isnan(self.signal_rows(y, min(self.shape[0], y + step))).sum())
                       for y in range(0, self.shape[0], step))
        missing = 0
        raw_ny = self.detector.raw_shape[0]
        counted = {}  # per amplifier: for each of its raw rows, the pixels without data
        for amp in self.detector.amplifiers:
            data = amp.data_section
            # levels and raw rows are both in the amplifier's raw orientation: row k is raw row data.y0 + k
            bad_level = ~np.isfinite(np.broadcast_to(self._levels.level[amp.name], (data.shape[0], 1))[:, 0])
            counted[amp.name] = bad_level.astype(np.int64) * data.shape[1]
        if raw_may_be_missing:
            for r0 in range(0, raw_ny, self._chunk_rows):
                r1 = min(raw_ny, r0 + self._chunk_rows)
                part = None
                for amp in self.detector.amplifiers:
                    data = amp.data_section
                    a, b = max(r0, data.y0), min(r1, data.y1)
                    if a >= b:
                        continue
                    part = self._read(r0, r1) if part is None else part
                    bad = (~np.isfinite(part[a - r0:b - r0, data.x0:data.x1])).sum(axis=1)
                    rows = counted[amp.name][a - data.y0:b - data.y0]
                    np.copyto(rows, bad, where=rows == 0)  # a row without a level is counted whole already
        for amp in self.detector.amplifiers:
            missing += int(counted[amp.name].sum())
        return missing

    def read_variance_layout(self) -> list[tuple[int, int, int, int, float]]:
        """The read-variance plane as ``(y0, y1, x0, x1, electrons^2)`` per amplifier (0 elsewhere)."""
        return [(a.detector_section.y0, a.detector_section.y1, a.detector_section.x0, a.detector_section.x1,
                 float(np.float32(self._read_var[a.name]))) for a in self.detector.amplifiers]

    def _amplifier_rows(self, y0: int, y1: int):
        """For each amplifier with rows in ``y0:y1``: the amplifier, those detector rows ``a:b``, the same
        rows ``l0:l1`` counted in the amplifier's raw orientation, and its raw pixels there (``dtype``;
        raw rows read once per strip however many amplifiers share them)."""
        cache: dict[tuple[int, int], np.ndarray] = {}
        for amp in self.detector.amplifiers:
            det, data = amp.detector_section, amp.data_section
            a, b = max(y0, det.y0), min(y1, det.y1)
            if a >= b:
                continue
            n = data.shape[0]
            k0, k1 = a - det.y0, b - det.y0  # rows of the amplifier in detector orientation
            l0, l1 = (n - k1, n - k0) if det.flip_y else (k0, k1)  # the same rows in raw orientation
            key = (data.y0 + l0, data.y0 + l1)
            if key not in cache:
                cache[key] = self._read(*key)
            yield amp, a, b, l0, l1, np.asarray(cache[key][:, data.x0:data.x1], dtype=self._dtype)

    def signal_rows(self, y0: int, y1: int) -> np.ndarray:
        """Detector rows ``y0:y1`` in electrons only, NaN where there is no data.

        The image of :meth:`rows` (the same values where there are data)
        without its read variance, saturation and coverage planes: the inputs
        of a master need none of them, and making them took two thirds of a
        master input's time.
        """
        dtype = self._dtype
        shape = (y1 - y0, self.shape[1])
        # NaN where no amplifier covers the detector; when they tile it, every pixel is written below.
        image = np.empty(shape, dtype=dtype) if self._tiled else np.full(shape, np.nan, dtype=dtype)
        for amp, a, b, l0, l1, raw in self._amplifier_rows(y0, y1):
            det = amp.detector_section
            target = _flip(image[a - y0:b - y0, det.slices[1]], amp)  # a view: written in raw orientation
            np.subtract(raw, self._level[amp.name][l0:l1], out=target, dtype=dtype)
            target *= dtype(amp.gain.to_value(ELECTRON_PER_ADU))
        if not np.isfinite(np.sum(image, dtype=np.float64)):  # some value is not finite: no data too
            image[~np.isfinite(image)] = np.nan
        return image

    def rows(self, y0: int, y1: int) -> AssembledFrame:
        """Detector rows ``y0:y1`` assembled (electrons, read variance, saturation, no data)."""
        dtype = self._dtype
        nx = self.shape[1]
        shape = (y1 - y0, nx)
        image = np.zeros(shape, dtype=dtype)
        read_var = np.zeros(shape, dtype=np.float32)
        saturated = np.zeros(shape, dtype=bool)
        covered = np.zeros(shape, dtype=bool)
        finite = np.ones(shape, dtype=bool)
        for amp, a, b, l0, l1, raw in self._amplifier_rows(y0, y1):
            det = amp.detector_section
            level = self._level[amp.name][l0:l1]
            gain = amp.gain.to_value(ELECTRON_PER_ADU)
            electrons = (raw - level) * dtype(gain)
            target = (slice(a - y0, b - y0), det.slices[1])
            image[target] = _flip(electrons, amp)
            read_var[target] = self._read_var[amp.name]
            saturated[target] = _flip(raw >= amp.saturation.to_value(u.adu), amp)
            finite[target] = _flip(np.isfinite(raw), amp)
            covered[target] = True
        no_data = ~covered | ~finite
        image[no_data] = 0
        return AssembledFrame(image, read_var, saturated, no_data, dict(self.read_noise), dict(self.overscan_level))
