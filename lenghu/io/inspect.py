"""What a file is: container format found from the content, then a summary of what it holds.

:func:`sniff` names the container from the first bytes (never the name):
FITS (plain, gzip, tile-compressed), HDF5, Zarr, Parquet, VOTable, ECSV, CSV,
Gadget-2 binary, a ``snapdir_NNN/`` folder. :func:`describe` returns a
:class:`FileInfo` (the answer of ``lenghu info``): kind, shapes, types, WCS
summary, units, particle counts per type, box, time/redshift, and the quirks
found. Only headers, schemas and attributes are read, never the pixels or
particles (except small text tables, which have no header to read instead).
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io.fits.verify import VerifyError

from lenghu.errors import UnreadableFileError

FITS_MAGIC = b"SIMPLE  ="
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PARQUET_MAGIC = b"PAR1"
GZIP_MAGIC = b"\x1f\x8b"
_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
_WCS_KEYS = ("CTYPE1", "CRVAL1", "CRPIX1", "CD1_1", "PC1_1", "CDELT1")


# --------------------------------------------------------------------------- sniffing
def sniff(path: str | Path) -> str:
    """The container format of ``path`` from its content.

    Returns
    -------
    str
        ``fits``, ``fits-gzip``, ``hdf5``, ``zarr``, ``parquet``, ``votable``,
        ``ecsv``, ``csv``, ``gadget2``, ``snapdir``, ``folder`` or ``unknown``.
        (A tile-compressed ``.fz`` file is ``fits``: :func:`describe` tells.)
    """
    path = Path(path)
    if path.is_dir():
        if (path / "zarr.json").is_file():
            return "zarr"
        from lenghu.io.snapshots.read import snapshot_format

        return "snapdir" if snapshot_format(path) is not None else "folder"
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(FITS_MAGIC):
        return "fits"
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as stream:
                inner = stream.read(len(FITS_MAGIC))
        except (OSError, EOFError):
            return "unknown"
        return "fits-gzip" if inner == FITS_MAGIC else "unknown"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    from lenghu.io.snapshots.gadget2 import sniff as gadget2_sniff

    if gadget2_sniff(head[:16]) is not None:
        return "gadget2"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"<") and b"<VOTABLE" in head.upper():
        return "votable"
    if text.startswith(b"# %ECSV"):
        return "ecsv"
    try:
        first = text.decode("utf-8").splitlines()[0] if text else ""
    except UnicodeDecodeError:
        return "unknown"
    if "," in first and "\x00" not in first:
        return "csv"
    return "unknown"


# --------------------------------------------------------------------------- WCS
def _finite(values) -> list:
    return [None if (isinstance(v, float) and not math.isfinite(v)) else v for v in (float(x) for x in values)]


def wcs_summary(header) -> dict[str, Any] | None:
    """A JSON-able summary of the WCS in a FITS header, or None if it has no WCS keywords.

    Keys: ``naxis``, ``ctype``, ``cunit``, ``crval``, ``crpix``, ``cdelt``,
    ``pc`` (or ``cd`` when the header uses CD), ``celestial``, ``spectral_axis``
    (0-based numpy-order-free WCS index, or None), ``physical_types``,
    ``degenerate_axes`` (1-based FITS axes of length 1), ``radesys``,
    ``equinox``, ``specsys``, ``restfrq``, and ``fixes`` (what astropy/wcslib
    had to repair, e.g. an obsolete date format).
    """
    if not any(k in header for k in _WCS_KEYS):
        return None
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FITSFixedWarning)
        warnings.simplefilter("always", RuntimeWarning)
        w = WCS(header, fix=True)
    fixes = sorted({str(c.message).strip() for c in caught})
    p = w.wcs
    naxis = int(header.get("NAXIS", 0) or header.get("ZNAXIS", 0) or 0)
    prefix = "ZNAXIS" if "ZNAXIS" in header else "NAXIS"
    degenerate = [i for i in range(1, naxis + 1) if header.get(f"{prefix}{i}") == 1]
    out: dict[str, Any] = {
        "naxis": int(w.naxis),
        "ctype": [str(c) for c in p.ctype],
        "cunit": [str(u) for u in p.cunit],
        "crval": _finite(p.crval),
        "crpix": _finite(p.crpix),
        "celestial": bool(w.has_celestial),
        "spectral_axis": int(p.spec) if p.spec >= 0 else None,
        "physical_types": [t for t in w.world_axis_physical_types],
        "degenerate_axes": degenerate,
        "radesys": str(p.radesys) or None,
        "equinox": None if not math.isfinite(p.equinox) else float(p.equinox),
        "specsys": str(p.specsys) or None,
        "restfrq": float(p.restfrq) if p.restfrq else None,
        "fixes": fixes,
    }
    if p.has_cd():
        out["cd"] = [_finite(row) for row in p.cd]
    else:
        out["cdelt"] = _finite(p.cdelt)
        out["pc"] = [_finite(row) for row in p.get_pc()]
    return out


def wcs_line(summary: dict[str, Any] | None) -> str:
    """One line for humans: axis types, reference value and scale."""
    if summary is None:
        return "none"
    kinds = []
    if summary["celestial"]:
        kinds.append("celestial")
    if summary["spectral_axis"] is not None:
        kinds.append("spectral")
    ctype = "/".join(c or "''" for c in summary["ctype"])
    crval = ", ".join(f"{v:.8g}" if v is not None else "?" for v in summary["crval"])
    return f"{ctype} ({' + '.join(kinds) or 'linear'}), CRVAL ({crval})"


# --------------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class ColumnInfo:
    """One table column: name, type, unit (None: none) and cell shape."""

    name: str
    dtype: str
    unit: str | None = None
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class HduInfo:
    """One HDU of a FITS file (or one HDU group of a lenghu Zarr/HDF5 store)."""

    index: int
    name: str
    type: str
    shape: tuple[int, ...] | None = None
    stored_dtype: str | None = None
    physical_dtype: str | None = None
    bunit: str | None = None
    wcs: dict[str, Any] | None = None
    compression: dict[str, Any] | None = None
    nrows: int | None = None
    columns: tuple[ColumnInfo, ...] = ()


@dataclass(frozen=True)
class TableInfo:
    """A catalogue: rows, columns and the metadata keys it carries."""

    nrows: int
    columns: tuple[ColumnInfo, ...]
    meta_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParticleTypeInfo:
    """One particle type of a snapshot."""

    part_type: int
    name: str
    count: int
    mass_table: float | None
    fields: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SnapshotInfo:
    """A snapshot as :class:`lenghu.io.snapshots.Snapshot` sees it."""

    source_format: str
    files: int
    total: int
    types: tuple[ParticleTypeInfo, ...]
    box_size: tuple[float, float, float]
    time: float
    redshift: float | None
    scale_factor: float | None
    hubble_param: float
    comoving: bool | None
    units: dict[str, Any]
    cosmology: dict[str, float]


@dataclass(frozen=True)
class FileInfo:
    """What ``lenghu info`` reports about a file.

    Attributes
    ----------
    path : str
    format : str
        Container (see :func:`sniff`; ``fits-fz`` for a tile-compressed FITS file,
        ``zarr``/``hdf5`` for lenghu stores).
    kind : str
        ``image``, ``mef``, ``cube``, ``table``, ``snapshot`` or ``unknown``.
    size_bytes : int
    hdus, table, snapshot
        The summary of the kind (others empty/None).
    quirks : tuple of str
        Departures from the format's conventions that lenghu noticed.
    """

    path: str
    format: str
    kind: str
    size_bytes: int
    hdus: tuple[HduInfo, ...] = ()
    table: TableInfo | None = None
    snapshot: SnapshotInfo | None = None
    quirks: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (``lenghu info --json``)."""
        return json.loads(json.dumps(asdict(self), default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value)}")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


# --------------------------------------------------------------------------- FITS
def physical_dtype(bitpix: int, bscale: Any, bzero: Any) -> str:
    """The numpy type of the physical values of an image with this BITPIX/BSCALE/BZERO."""
    stored = _BITPIX[bitpix]
    scale = 1.0 if bscale is None else float(bscale)
    zero = 0.0 if bzero is None else float(bzero)
    if bitpix < 0 or (scale == 1.0 and zero == 0.0):
        return stored
    bits = abs(bitpix)
    if scale == 1.0 and bits > 8 and zero == 2.0 ** (bits - 1):
        return f"uint{bits}"
    if scale == 1.0 and bits == 8 and zero == -128:
        return "int8"
    return "float32" if bits <= 16 else "float64"


def _columns_from_header(header) -> tuple[ColumnInfo, ...]:
    cols = []
    for i in range(1, int(header.get("TFIELDS", 0)) + 1):
        cols.append(ColumnInfo(str(header.get(f"TTYPE{i}", f"col{i}")), str(header.get(f"TFORM{i}", "")), header.get(f"TUNIT{i}")))
    return tuple(cols)


def _fits_hdus(path: Path) -> tuple[tuple[HduInfo, ...], list[str]]:
    """The HDUs of a FITS file and its quirks (astropy's card warnings become quirks, not log noise)."""
    from astropy import log

    level = log.level
    log.setLevel("ERROR")  # astropy logs each odd card as it parses it; they are reported as quirks instead
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdus, quirks = _scan_fits_hdus(path)
    finally:
        log.setLevel(level)
    seen = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if "header keyword is invalid" in text and text not in seen:
            seen.add(text)
            quirks.append("non-standard card: " + text.split("convention:", 1)[-1].strip())
    return hdus, quirks


def _scan_fits_hdus(path: Path) -> tuple[tuple[HduInfo, ...], list[str]]:
    from lenghu.io.fitsfile import FitsFile

    ff = FitsFile(path)
    quirks: list[str] = []
    out = []
    for info in ff.hdus:
        h = info.header
        xt = "PRIMARY" if info.index == 0 else str(h.get("XTENSION", "")).strip().upper()
        name = info.extname or ("PRIMARY" if info.index == 0 else "")
        if info.is_compressed_image:
            image_header = ff.image_header(info)
            compression = {
                "type": str(h.get("ZCMPTYPE", "")).strip(),
                "quantize": str(h.get("ZQUANTIZ", "NONE")).strip() if "ZQUANTIZ" in h else None,
                "dither_seed": h.get("ZDITHER0"),
                "lossless": not ("ZQUANTIZ" in h and str(h.get("ZQUANTIZ")).strip() != "NONE" and int(h.get("ZBITPIX", 0)) < 0),
            }
            bitpix = int(h["ZBITPIX"])
            out.append(HduInfo(info.index, name or "COMPRESSED_IMAGE", "COMPRESSED_IMAGE", info.image_shape, _BITPIX[bitpix],
                               physical_dtype(bitpix, image_header.get("BSCALE"), image_header.get("BZERO")),
                               image_header.get("BUNIT"), wcs_summary(image_header), compression))
        elif xt in ("BINTABLE", "TABLE"):
            out.append(HduInfo(info.index, name, xt, nrows=int(h.get("NAXIS2", 0)), columns=_columns_from_header(h)))
        else:
            shape = info.image_shape
            if shape is None and ("BZERO" in h or "BSCALE" in h):
                quirks.append(f"HDU {info.index}: BSCALE/BZERO in a header without data")
            bitpix = int(h.get("BITPIX", 8))
            out.append(HduInfo(info.index, name, xt, shape, _BITPIX.get(bitpix) if shape else None,
                               physical_dtype(bitpix, h.get("BSCALE"), h.get("BZERO")) if shape else None,
                               h.get("BUNIT"), wcs_summary(h) if shape else None))
    if ff.compression is None:
        quirks.extend(_padding_quirks(path, ff))
    return tuple(out), quirks


def _padding_quirks(path: Path, ff) -> list[str]:
    """Data units whose padding to the 2880-byte block is not zero (FITS requires zeros)."""
    quirks = []
    with open(path, "rb") as handle:
        for info in ff.hdus:
            end = info.data_offset + info.data_size
            pad = (-info.data_size) % 2880
            if info.data_size and pad:
                handle.seek(end)
                tail = handle.read(pad)
                if tail.strip(b"\x00"):
                    quirks.append(f"HDU {info.index}: {pad} padding bytes after the data are not zero")
    return quirks


def _fits_kind(hdus: tuple[HduInfo, ...]) -> str:
    images = [h for h in hdus if h.shape]
    tables = [h for h in hdus if h.type in ("BINTABLE", "TABLE")]
    if not images and tables:
        return "table"
    if len(images) == 1 and len([s for s in images[0].shape if s > 1]) >= 3:
        return "cube"
    if len(images) == 1 and all(h.shape or h.nrows is None for h in hdus):
        return "image"  # one image, maybe behind an empty primary (a tile-compressed file)
    return "mef" if images else "unknown"


# --------------------------------------------------------------------------- stores, tables, snapshots
def _store_kind(path: Path, backend: str) -> str | None:
    """``snapshot``/``fits``/``table`` for lenghu stores and astropy HDF5 tables, else None."""
    if backend == "zarr":
        try:
            attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        except (OSError, ValueError):
            return None
        return attrs.get("lenghu", {}).get("kind")
    import h5py

    with h5py.File(path, "r") as h5:
        from lenghu.io.snapshots.hdf5 import dialect

        if dialect(h5) is not None:
            return "snapshot"
        kind = h5.attrs.get("lenghu_kind")
        if kind is not None:
            return kind.decode() if isinstance(kind, bytes) else str(kind)
        if any(name.endswith(".__table_column_meta__") for name in h5):
            return "table"
    return None


def _store_hdus(path: Path, backend: str) -> tuple[HduInfo, ...]:
    from lenghu.convert.fits_store import store_hdu_summaries

    return store_hdu_summaries(path, backend)


def table_info(table) -> TableInfo:
    """A :class:`TableInfo` of an astropy Table."""
    cols = []
    for name in table.colnames:
        col = table[name]
        unit = getattr(col, "unit", None)
        cols.append(ColumnInfo(name, str(col.dtype), None if unit is None else str(unit), tuple(col.shape[1:])))
    return TableInfo(len(table), tuple(cols), tuple(str(k) for k in table.meta))


def snapshot_info(snap) -> SnapshotInfo:
    """A :class:`SnapshotInfo` of a :class:`lenghu.io.snapshots.Snapshot`."""
    types = []
    for t, p in snap.particles.items():
        fields = tuple(
            {"name": n, "shape": list(f.shape), "dtype": str(f.dtype), "source_name": f.source_name, "units": f.units.as_dict()}
            for n, f in p.fields.items()
        )
        types.append(ParticleTypeInfo(t, p.name, p.count, p.mass_table, fields))
    u = snap.units
    return SnapshotInfo(
        source_format=snap.source_format,
        files=len(snap.source_paths),
        total=snap.total,
        types=tuple(types),
        box_size=snap.box_size,
        time=snap.time,
        redshift=snap.redshift,
        scale_factor=snap.scale_factor,
        hubble_param=snap.hubble_param,
        comoving=snap.comoving,
        units={"length_cm": u.length_cm, "mass_g": u.mass_g, "velocity_cm_s": u.velocity_cm_s, "assumed": u.assumed},
        cosmology=dict(snap.cosmology),
    )


def describe(path: str | Path) -> FileInfo:
    """Summarise ``path`` (see :class:`FileInfo`).

    Raises
    ------
    lenghu.errors.LenghuError
        The file is of a known kind but cannot be read (truncated FITS, inconsistent snapshot ...).
    """
    path = Path(path)
    fmt = sniff(path)
    size = _size(path)
    if fmt in ("fits", "fits-gzip"):
        try:
            hdus, quirks = _fits_hdus(path)
        except (VerifyError, ValueError, KeyError, TypeError, IndexError, OverflowError, AttributeError) as exc:
            # found by fuzzing: a card that cannot be parsed (BSCALE = 'text', a damaged BITPIX) raised
            # astropy's or Python's own error from deep inside the scan; CTYPE1 = -1 an AttributeError
            # from astropy.wcs
            raise UnreadableFileError(path, f"damaged header: {type(exc).__name__}: {str(exc)[:200]}") from exc
        kind = _fits_kind(hdus)
        if any(h.type == "COMPRESSED_IMAGE" for h in hdus):
            fmt = "fits-fz"
        return FileInfo(str(path), fmt, kind, size, hdus=hdus, quirks=tuple(quirks))
    if fmt in ("gadget2", "snapdir") or (fmt in ("hdf5", "zarr") and _store_kind(path, fmt) == "snapshot"):
        from lenghu.io.snapshots import SnapshotQuirkWarning, read_snapshot

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SnapshotQuirkWarning)  # they are reported in quirks
            snap = read_snapshot(path)
        return FileInfo(str(path), fmt, "snapshot", size, snapshot=snapshot_info(snap), quirks=snap.quirks)
    if fmt in ("hdf5", "zarr"):
        kind = _store_kind(path, fmt)
        if kind == "fits":
            hdus = _store_hdus(path, fmt)
            return FileInfo(str(path), fmt, _fits_kind(hdus), size, hdus=hdus)
        if kind == "table":
            from lenghu.convert.tables import read_table

            return FileInfo(str(path), fmt, "table", size, table=table_info(read_table(path)))
        return FileInfo(str(path), fmt, "unknown", size)
    if fmt in ("parquet", "votable", "ecsv", "csv"):
        from lenghu.convert.tables import read_table

        return FileInfo(str(path), fmt, "table", size, table=table_info(read_table(path)))
    return FileInfo(str(path), fmt, "unknown", size)


def format_info(info: FileInfo) -> str:
    """``lenghu info``'s text output."""
    lines = [f"{info.path}: {info.format}, {info.kind}, {info.size_bytes:,} bytes"]
    for h in info.hdus:
        label = f"  HDU {h.index} {h.name or '(no name)'} [{h.type}]"
        if h.shape:
            lines.append(f"{label} {' x '.join(str(n) for n in h.shape)} {h.stored_dtype}"
                         + (f" -> {h.physical_dtype}" if h.physical_dtype != h.stored_dtype else "")
                         + (f", BUNIT {h.bunit}" if h.bunit else ""))
            lines.append(f"      WCS: {wcs_line(h.wcs)}")
            if h.compression:
                lines.append(f"      compressed: {h.compression['type']}, "
                             + ("lossless" if h.compression["lossless"] else f"quantised ({h.compression['quantize']})"))
        elif h.nrows is not None:
            lines.append(f"{label} table, {h.nrows} rows: " + ", ".join(
                f"{c.name}" + (f" [{c.unit}]" if c.unit else "") for c in h.columns))
        else:
            lines.append(f"{label} no data")
    if info.table is not None:
        t = info.table
        lines.append(f"  table: {t.nrows} rows, {len(t.columns)} columns")
        for c in t.columns:
            lines.append(f"    {c.name:24s} {c.dtype:10s} {c.unit or ''}")
        if t.meta_keys:
            lines.append(f"  metadata: {', '.join(t.meta_keys)}")
    if info.snapshot is not None:
        s = info.snapshot
        lines.append(f"  snapshot: {s.source_format}, {s.files} file(s), {s.total:,} particles")
        for p in s.types:
            mass = f", mass table {p.mass_table:.6g}" if p.mass_table else ""
            lines.append(f"    type {p.part_type} ({p.name}): {p.count:,}{mass}")
            for f in p.fields:
                lines.append(f"      {f['name']:30s} {'x'.join(str(n) for n in f['shape']):>14s} {f['dtype']}")
        box = s.box_size
        box_text = f"{box[0]:g}" if len(set(box)) == 1 else "x".join(f"{b:g}" for b in box)
        lines.append(f"  box {box_text}, time {s.time:g}, redshift {s.redshift if s.redshift is not None else '?'}, "
                     f"h {s.hubble_param:g}, comoving {s.comoving}")
        u = s.units
        lines.append(f"  units: length {u['length_cm']:.6g} cm, mass {u['mass_g']:.6g} g, "
                     f"velocity {u['velocity_cm_s']:.6g} cm/s" + (" (assumed)" if u["assumed"] else ""))
    for q in info.quirks:
        lines.append(f"  quirk: {q}")
    return "\n".join(lines)
