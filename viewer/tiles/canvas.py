"""Canvas sources: row bands of one image, or of a whole exposure's CCDs placed on one canvas.

:func:`build_pyramid` reads its input one band of rows at a time through a
*source* with ``shape``, ``rows(a, b)`` (float32 ``(b - a, nx)``), ``header``
(text), ``name``, ``mosaic`` (placements, for ``pyramid.json``) and
``close()``. Three kinds:

- :class:`ImageSource`: one 2-D image (an array or a FITS image HDU);
- :func:`raw_exposure_source`: a raw multi-extension exposure (WFST): each
  CCD trimmed of overscan and assembled by
  :class:`lenghu.calib.assemble.StripAssembler` (overscan subtracted, gain
  applied, nothing else: no bias, flat or mask), so a night can be browsed
  before reduction;
- :func:`products_source`: the calibrated products ``<raw>_<ccd>.fits`` of one
  exposure (their ``SCI`` planes).

The CCDs are placed by the instrument's mosaic geometry (each detector's
``offset``, its centre from the boresight in pixels, which the instrument
file derives from ``position`` and ``mosaic_gap``), rows growing upwards as in
FITS, so ``position = [0, 0]`` is at the bottom left. Gaps (and a missing
CCD) are NaN. A :class:`CanvasSource` band reads only the rows of each CCD
that fall in it, so memory is one band of the canvas plus one band of a CCD
whatever the number of CCDs.

Missing CCDs: products of an exposure with some CCDs absent (the pipeline
rejects a frame with too little usable data) are built with those CCDs left
as NaN and a :class:`MissingDetectorWarning` naming them; products of two
exposures, or two products of one CCD, are refused with a
:class:`~lenghu.viewer.tiles.build.PyramidError` naming the file.
"""

from __future__ import annotations

import glob
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lenghu.errors import LenghuError


class PyramidError(LenghuError):
    """An input cannot be made into an image pyramid (not a 2-D image, unreadable, mixed exposures ...)."""


class MissingDetectorWarning(UserWarning):
    """An exposure's pyramid is built with some of the instrument's CCDs absent (left as NaN)."""


def _open_fits(path: Path):
    from astropy.io import fits
    from astropy.utils.exceptions import AstropyUserWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        # memmap=False: hdu.section reads only the rows asked for, with plain reads (a memory map's touched
        # pages would stay resident and count against the process, up to the whole image)
        return fits.open(path, memmap=False, mode="readonly", lazy_load_hdus=True)


def _section_rows(hdu, a: int, b: int, nx: int) -> np.ndarray:
    """Rows ``a:b`` of a (possibly degenerate >2-D) image HDU, float32, read by ``hdu.section``."""
    ndim = hdu.header["NAXIS"]
    index = (0,) * (ndim - 2) + (slice(a, b), slice(None))
    return np.asarray(hdu.section[index], dtype=np.float32).reshape(b - a, nx)


class ImageSource:
    """Rows of one 2-D image: a numpy array (or memmap) or a FITS image HDU (``hdu``: None for the first 2-D one)."""

    mosaic: list[dict] = []

    def __init__(self, source, hdu=None):
        self.header = ""
        self.name = "array"
        self._hdul = None
        if isinstance(source, np.ndarray):
            if source.ndim != 2:
                raise PyramidError(f"an image pyramid needs a 2-D array, got shape {source.shape}")
            self._data = source
            self.shape = source.shape
            return
        path = Path(source)
        self.name = str(path)
        try:
            self._hdul = _open_fits(path)
            candidates = [self._hdul[hdu]] if hdu is not None else list(self._hdul)
            for h in candidates:
                if getattr(h, "is_image", False) and h.header.get("NAXIS", 0) >= 2:
                    dims = [h.header.get(f"NAXIS{i}", 1) for i in range(1, h.header["NAXIS"] + 1)]
                    if sum(d > 1 for d in dims) == 2 and all(d == 1 for d in dims[2:]):
                        self._hdu = h
                        break
            else:
                raise PyramidError(f"{path}: no 2-D image HDU" + (f" (HDU {hdu!r})" if hdu is not None else ""))
        except (OSError, KeyError, IndexError, TypeError) as exc:
            self.close()
            raise PyramidError(f"{path}: cannot read a FITS image: {exc}") from exc
        h = self._hdu
        self.shape = (int(h.header["NAXIS2"]), int(h.header["NAXIS1"]))
        self.header = h.header.tostring(sep="\n")
        self.name = f"{path}[{hdu if hdu is not None else self._hdul.index_of(h)}]"
        self._data = None

    def rows(self, a: int, b: int) -> np.ndarray:
        if self._data is not None:
            return np.asarray(self._data[a:b], dtype=np.float32)
        return _section_rows(self._hdu, a, b, self.shape[1])  # scaled by BSCALE/BZERO when present

    def close(self):
        if self._hdul is not None:
            self._hdul.close()
            self._hdul = None


@dataclass
class Placed:
    """One image on the canvas: rows ``y0 .. y0 + ny``, columns ``x0 .. x0 + nx`` (canvas pixels).

    ``open()`` returns a ``rows(a, b)`` reader of the image's own rows and a ``close()``; it is called at the
    first band that needs the image and closed after the last one (one row of CCDs open at a time).
    """

    name: str
    file: str
    y0: int
    x0: int
    shape: tuple[int, int]
    open: Callable[[], tuple[Callable[[int, int], np.ndarray], Callable[[], None]]]


class CanvasSource:
    """Row bands of a canvas on which several images are placed; NaN where none is.

    Parameters
    ----------
    placed : sequence of Placed
    name : str
        What the pyramid says it was made from.
    header : str
        Header text for the pyramid (FITS cards, ``\\n``-separated).
    """

    def __init__(self, placed: Sequence[Placed], name: str, header: str = ""):
        if not placed:
            raise PyramidError(f"{name}: nothing to place on the canvas")
        self.placed = list(placed)
        self.name = name
        self.header = header
        self.shape = (max(p.y0 + p.shape[0] for p in placed), max(p.x0 + p.shape[1] for p in placed))
        self._open: dict[int, tuple[Callable, Callable]] = {}
        self.mosaic = [{"name": p.name, "file": p.file, "y0": p.y0, "x0": p.x0, "shape": list(p.shape)}
                       for p in self.placed]

    def rows(self, a: int, b: int) -> np.ndarray:
        band = np.full((b - a, self.shape[1]), np.nan, dtype=np.float32)
        for k, p in enumerate(self.placed):
            r0, r1 = max(a, p.y0), min(b, p.y0 + p.shape[0])
            if r0 >= r1:
                if k in self._open and a >= p.y0 + p.shape[0]:  # bands go upwards: this image is done
                    self._open.pop(k)[1]()
                continue
            if k not in self._open:
                self._open[k] = p.open()
            band[r0 - a:r1 - a, p.x0:p.x0 + p.shape[1]] = self._open[k][0](r0 - p.y0, r1 - p.y0)
        return band

    def close(self):
        while self._open:
            self._open.popitem()[1][1]()


# ---------------------------------------------------------------- placement


def _corners(detectors, shapes: dict[str, tuple[int, int]], full: dict[str, tuple[int, int]] | None = None):
    """Canvas (y0, x0) of each detector's bottom-left pixel from its centre offset; origin at the lowest corner.

    ``full``: the instrument's detector shapes, when ``shapes`` are of a scaled-down simulation (offsets
    scale with the detectors, as :func:`lenghu.instruments.scale_instrument` scales them).
    """
    corner = {}
    for det in detectors:
        ny, nx = shapes[det.name]
        oy, ox = det.offset
        if full is not None:
            fy, fx = full[det.name]
            oy, ox = oy * ny / fy, ox * nx / fx
        corner[det.name] = (oy - ny / 2.0, ox - nx / 2.0)
    y_min = min(c[0] for c in corner.values())
    x_min = min(c[1] for c in corner.values())
    return {name: (int(round(y - y_min)), int(round(x - x_min))) for name, (y, x) in corner.items()}


# ---------------------------------------------------------------- raw exposures


def is_raw_exposure(path: str | Path) -> bool:
    """True for a raw file of a known instrument with several detectors (one HDU per CCD, e.g. WFST)."""
    from lenghu.io.fitsfile import FitsFile, header_values
    from lenghu.io.raw import detect_instrument
    from lenghu.instruments.loader import load_instrument

    try:
        primary = FitsFile(path).primary.header
        name = detect_instrument(header_values(primary))
    except (LenghuError, OSError, ValueError):
        return False  # not readable as a raw file: read as a plain image (which names the problem)
    if name is None or "CCDNAME" in primary:  # CCDNAME: a single calibrated product, one image
        return False
    inst = load_instrument(name)
    return inst.raw_layout == "mef" and len(inst.detectors) > 1


def raw_exposure_source(path: str | Path, instrument="auto") -> CanvasSource:
    """The CCDs of a raw exposure, overscan-trimmed and assembled (electrons, uncalibrated), on one canvas.

    Raises
    ------
    PyramidError
        The file is not a readable raw exposure of a mosaic instrument (the reader's error is chained).
    """
    from lenghu.calib.assemble import StripAssembler
    from lenghu.calib.overscan import OverscanConfig
    from lenghu.errors import FrameError
    from lenghu.io.raw import instrument_for, open_raw_detector, read_record

    path = Path(path)
    try:
        inst = instrument_for(path, instrument)
        record = read_record(path, inst)
    except (FrameError, OSError, ValueError) as exc:
        raise PyramidError(f"{path}: not a readable raw exposure: {exc}") from exc
    present = [d for d in inst.detectors if d.name in record.detectors]
    missing = [d.name for d in inst.detectors if d.name not in record.detectors]
    if missing:
        warnings.warn(f"{path}: detectors {', '.join(missing)} are not in the file; left as NaN",
                      MissingDetectorWarning, stacklevel=3)
    corners = _corners(inst.detectors, {d.name: tuple(d.shape) for d in inst.detectors})

    def opener(det):
        def open_():
            try:
                reader = open_raw_detector(path, inst, det.name)
                assembler = StripAssembler(reader.rows, reader.detector, OverscanConfig(), source=str(path))
            except (FrameError, OSError, ValueError) as exc:
                raise PyramidError(f"{path}: detector {det.name}: {exc}") from exc

            def rows(a, b):
                frame = assembler.rows(a, b)
                image = frame.image
                image[frame.no_data] = np.nan
                return image

            return rows, lambda: None

        return open_

    placed = [Placed(d.name, f"{path}[{d.name}]", *corners[d.name], tuple(d.shape), opener(d)) for d in present]
    header = _summary_header(record_cards={"INSTRUME": inst.name, "OBJECT": record.object,
                                           "FILTER": record.filter, "EXPTIME": record.exptime,
                                           "MJD-OBS": record.mjd, "IMAGETYP": record.frame_type,
                                           "RAWFILE": path.name[:68]},
                             note="raw exposure: overscan-subtracted, trimmed, gain applied; not calibrated")
    return CanvasSource(placed, f"{path} (raw exposure, {len(present)} detectors)", header)


def _summary_header(record_cards: dict, note: str) -> str:
    from astropy.io import fits

    header = fits.Header()
    for key, value in record_cards.items():
        if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
            header[key] = value
    header["HISTORY"] = note
    header["HISTORY"] = "lenghu mosaic canvas: CCDs placed by the instrument's mosaic geometry; gaps are NaN"
    return header.tostring(sep="\n")


# ---------------------------------------------------------------- calibrated products


def expand_paths(spec) -> list[Path]:
    """Paths from one path, a glob pattern, or a sequence of either (sorted, duplicates dropped)."""
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    out: list[Path] = []
    for item in items:
        text = str(item)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches:
            raise PyramidError(f"{text}: no files match")
        out.extend(Path(m) for m in matches)
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def products_source(paths: Sequence[str | Path]) -> CanvasSource:
    """The ``SCI`` planes of one exposure's calibrated products (one file per CCD) on one canvas.

    Which detector and exposure a product is comes from its primary header (``INSTRUME``, ``CCDNAME``,
    ``RAWFILE``: the pipeline's provenance cards). Absent CCDs are NaN (with a
    :class:`MissingDetectorWarning`).

    Raises
    ------
    PyramidError
        A file is unreadable, has no ``SCI`` plane or provenance cards, is of another instrument or exposure
        than the first file, or repeats a CCD; the message names the file.
    """
    from lenghu.instruments.loader import load_instrument
    from lenghu.io.fitsfile import header_values
    from lenghu.io.raw import detect_instrument

    facts = []
    for path in (Path(p) for p in paths):
        try:
            with _open_fits(path) as hdul:
                primary = hdul[0].header
                sci = hdul["SCI"].header
                shape = (int(sci["NAXIS2"]), int(sci["NAXIS1"]))
                wcs_cards = sci.tostring(sep="\n")
        except (OSError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise PyramidError(f"{path}: not a calibrated product with a SCI plane: {exc}") from exc
        missing = [k for k in ("CCDNAME", "RAWFILE") if k not in primary]
        if missing:
            raise PyramidError(f"{path}: no {' or '.join(missing)} card: not a lenghu calibrated product "
                               "(cannot tell which CCD or exposure it is)")
        facts.append((path, primary, shape, wcs_cards))
    first_path, first, *_ = facts[0]
    name = detect_instrument(header_values(first))
    if name is None:
        raise PyramidError(f"{first_path}: INSTRUME = {first.get('INSTRUME')!r} is not a known mosaic instrument")
    inst = load_instrument(name)
    by_ccd: dict[str, tuple] = {}
    for path, primary, shape, wcs_cards in facts:
        if detect_instrument(header_values(primary)) != name:
            raise PyramidError(f"{path}: INSTRUME = {primary.get('INSTRUME')!r}, but {first_path.name} is {name}")
        if str(primary["RAWFILE"]) != str(first["RAWFILE"]):
            raise PyramidError(f"{path}: a product of exposure {primary['RAWFILE']!r}, not of "
                               f"{first['RAWFILE']!r} (as {first_path.name}): one exposure per pyramid")
        ccd = str(primary["CCDNAME"]).strip()
        try:
            inst.detector(ccd)
        except KeyError:
            raise PyramidError(f"{path}: CCDNAME = {ccd!r} is not a detector of {name}") from None
        if ccd in by_ccd:
            raise PyramidError(f"{path}: detector {ccd} again (also {by_ccd[ccd][0]})")
        by_ccd[ccd] = (path, primary, shape, wcs_cards)
    absent = [d.name for d in inst.detectors if d.name not in by_ccd]
    if absent:
        warnings.warn(f"exposure {first['RAWFILE']}: no product for {', '.join(absent)}; left as NaN",
                      MissingDetectorWarning, stacklevel=3)
    shapes = {}
    ratio = {by_ccd[c][2][0] / inst.detector(c).shape[0] for c in by_ccd}
    for det in inst.detectors:  # absent CCDs take the scale of the present ones (a scaled-down simulation)
        if det.name in by_ccd:
            shapes[det.name] = by_ccd[det.name][2]
        else:
            r = min(ratio)
            shapes[det.name] = (int(round(det.shape[0] * r)), int(round(det.shape[1] * r)))
    corners = _corners(inst.detectors, shapes, {d.name: tuple(d.shape) for d in inst.detectors})

    def opener(path, shape):
        def open_():
            hdul = _open_fits(path)
            sci = hdul["SCI"]
            return (lambda a, b: _section_rows(sci, a, b, shape[1])), hdul.close

        return open_

    placed = [Placed(c, str(by_ccd[c][0]), *corners[c], by_ccd[c][2], opener(by_ccd[c][0], by_ccd[c][2]))
              for c in (d.name for d in inst.detectors) if c in by_ccd]
    cards = {k: first.get(k) for k in ("INSTRUME", "TELESCOP", "OBJECT", "FILTER", "EXPTIME", "MJD-OBS",
                                       "DATE-OBS", "IMAGETYP", "RAWFILE")}
    header = _summary_header(cards, "calibrated products (SCI planes, electrons); per-CCD WCS in the products")
    return CanvasSource(placed, f"{first['RAWFILE']} (calibrated products, {len(placed)} detectors)", header)


def open_source(source, hdu=None):
    """The source :func:`build_pyramid` reads: an array, a FITS image, a raw exposure, or several products."""
    if isinstance(source, (CanvasSource, ImageSource)):
        return source
    if isinstance(source, np.ndarray):
        return ImageSource(source)
    if isinstance(source, (str, Path)) and not glob.has_magic(str(source)):
        if hdu is None and is_raw_exposure(source):
            return raw_exposure_source(source)
        return ImageSource(source, hdu)
    paths = expand_paths(source)
    if len(paths) == 1:
        return open_source(paths[0], hdu)
    return products_source(paths)
