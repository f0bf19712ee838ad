"""``convert(INPUT, OUTPUT)``: one file (or snapshot folder, or store) into another format.

What the input is comes from its content; what the output is from ``to`` or
the output's extension. Routes:

=========================  ===============================================================
input                      outputs
=========================  ===============================================================
FITS image / MEF / cube    zarr, hdf5 (:mod:`.fits_store`), fz (:mod:`.fz`), fits
  (plain, .gz, .fz)
lenghu FITS store          fits, fz, zarr, hdf5
catalogue (FITS table,     fits, parquet, votable, ecsv, csv, hdf5 (:mod:`.tables`)
  Parquet, VOTable, ECSV,
  CSV, HDF5 table)
snapshot (any format of    zarr, gadget4 (``.hdf5``/``.h5``)
  lenghu.io.snapshots)
=========================  ===============================================================

Every output appears only whole (a temporary name in the output's folder,
renamed when complete). Compressed inputs (``.gz``, ``.fz``) are first
restored to a temporary plain FITS file beside the output.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lenghu.convert.formats import FORMATS, format_from_name
from lenghu.errors import FrameError, LenghuError


class ConversionError(FrameError):
    """This input cannot be converted to the format asked for."""


@dataclass(frozen=True)
class ConversionResult:
    """What :func:`convert` did.

    Attributes
    ----------
    source, output : Path
    kind : str
        ``image``, ``mef``, ``cube``, ``table`` or ``snapshot``.
    input_format, output_format : str
    notes : tuple of str
        Anything the user should know (lossy quantisation, quirks of the input, dropped metadata).
    seconds : float
    """

    source: Path
    output: Path
    kind: str
    input_format: str
    output_format: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    seconds: float = 0.0


@dataclass(frozen=True)
class ConvertOptions:
    """Options of a conversion (each applies only where it makes sense).

    Attributes
    ----------
    quantize : float or None
        ``.fz`` output: quantise floating-point images at this level (lossy). Default lossless.
    algorithm : str or None
        ``.fz`` output: ``rice``, ``gzip1``, ``gzip2`` or ``hcompress``.
    squeeze : bool
        Zarr/HDF5 output of images: drop axes of length 1 (e.g. a cube's degenerate Stokes axis).
    hdu : int or str or None
        FITS catalogue input: which table HDU.
    files : int
        Gadget-4 output: number of files (> 1 writes a ``snapdir``-style folder).
    """

    quantize: float | None = None
    algorithm: str | None = None
    squeeze: bool = False
    hdu: int | str | None = None
    files: int = 1


def input_kind(path: Path) -> tuple[str, str]:
    """``(format, kind)`` of an input, from its content (see :func:`lenghu.io.inspect.describe`)."""
    from lenghu.io.inspect import _fits_hdus, _fits_kind, _store_kind, sniff

    fmt = sniff(path)
    if fmt in ("fits", "fits-gzip"):
        hdus, _ = _fits_hdus(path)
        if any(h.type == "COMPRESSED_IMAGE" for h in hdus):
            fmt = "fits-fz"
        return fmt, _fits_kind(hdus)
    if fmt in ("gadget2", "snapdir"):
        return fmt, "snapshot"
    if fmt in ("zarr", "hdf5"):
        kind = _store_kind(path, fmt)
        if kind == "fits":
            return fmt + "-fits", "image"
        if kind in ("snapshot", "table"):
            return fmt, kind
        raise ConversionError(path, f"a {fmt} container lenghu does not know (no lenghu layout, snapshot or table)")
    if fmt in ("parquet", "votable", "ecsv", "csv"):
        return fmt, "table"
    raise ConversionError(path, f"not a file lenghu converts (content: {fmt})")


@contextlib.contextmanager
def _scratch(near: Path) -> Iterator[Path]:
    """A temporary folder beside ``near`` (same file system), removed afterwards."""
    near.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{near.name}.work-", dir=near.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=False)


def plain_fits(src: Path, fmt: str, scratch: Path) -> Path:
    """``src`` itself if it is plain FITS, else a restored plain copy in ``scratch``."""
    if fmt == "fits":
        return src
    out = scratch / "plain.fits"
    if fmt == "fits-gzip":
        with gzip.open(src, "rb") as stream, open(out, "wb") as handle:
            shutil.copyfileobj(stream, handle, length=16 * 2**20)
        return out
    if fmt == "fits-fz":
        from lenghu.convert import fz

        return fz.decompress(src, out)
    if fmt in ("zarr-fits", "hdf5-fits"):
        from lenghu.convert.fits_store import store_to_fits

        return store_to_fits(src, out, fmt.split("-")[0])
    raise ConversionError(src, f"{fmt} is not an image format")


def _write_file(final: Path, writer) -> None:
    from lenghu.io.atomic import atomic_path

    with atomic_path(final) as tmp:
        writer(tmp)


def _write_folder(final: Path, writer) -> None:
    from lenghu.io.snapshots.atomic_dir import atomic_directory

    with atomic_directory(final) as tmp:
        writer(tmp)


def _convert_image(src: Path, fmt: str, out: Path, to: str, options: ConvertOptions) -> list[str]:
    from lenghu.convert import fits_store, fz

    notes: list[str] = []
    with _scratch(out) as scratch:
        if to == "fz" and fmt in ("fits", "fits-gzip"):
            holder = {}
            _write_file(out, lambda tmp: holder.setdefault("r", fz.compress(src, tmp, options.quantize, options.algorithm)))
            result = holder["r"]
            if not result.lossless:
                notes.append(f"lossy: floating-point pixels quantised (q = {options.quantize:g}, "
                             f"SUBTRACTIVE_DITHER_1, seed {fz.DITHER_SEED}); recorded in ZQUANTIZ/ZDITHER0")
            return notes
        plain = plain_fits(src, fmt, scratch)
        if to == "fits":
            _write_file(out, lambda tmp: shutil.copyfile(plain, tmp))
        elif to == "fz":
            holder = {}
            _write_file(out, lambda tmp: holder.setdefault("r", fz.compress(plain, tmp, options.quantize, options.algorithm)))
            if not holder["r"].lossless:
                notes.append(f"lossy: floating-point pixels quantised (q = {options.quantize:g})")
        elif to == "zarr":
            _write_folder(out, lambda tmp: fits_store.fits_to_store(plain, tmp, "zarr", squeeze=options.squeeze))
        elif to == "hdf5":
            _write_file(out, lambda tmp: fits_store.fits_to_store(plain, tmp, "hdf5", squeeze=options.squeeze))
        else:
            raise ConversionError(src, f"an image cannot be written as {to} (fits, fz, zarr, hdf5)")
    return notes


def _convert_table(src: Path, out: Path, to: str, options: ConvertOptions) -> list[str]:
    import warnings

    from lenghu.convert.tables import TABLE_FORMATS, read_table, write_table

    if to not in TABLE_FORMATS:
        raise ConversionError(src, f"a catalogue cannot be written as {to} ({', '.join(TABLE_FORMATS)})")
    table = read_table(src, hdu=options.hdu)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        write_table(table, out, to)
    return [str(w.message) for w in caught if "dropped" in str(w.message)]


def _convert_snapshot(src: Path, out: Path, to: str, options: ConvertOptions) -> list[str]:
    import warnings

    from lenghu.io.snapshots import SnapshotQuirkWarning, read_snapshot, write_gadget4, write_zarr
    from lenghu.io.snapshots.zarr_store import ZARR_CHUNK_BYTES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnapshotQuirkWarning)  # reported as notes below
        # read in the output's chunk size: each task then reads what it writes, and memory stays low
        snap = read_snapshot(src, chunk_bytes=ZARR_CHUNK_BYTES)
    notes = [f"quirk: {q}" for q in snap.quirks]
    if to == "zarr":
        _write_folder(out, lambda tmp: write_zarr(snap, tmp))
    elif to in ("gadget4", "hdf5"):
        with _scratch(out) as scratch:
            paths = write_gadget4(snap, scratch, 0, options.files)
            if options.files == 1:
                os.replace(paths[0], out)
            else:
                _write_folder(out, lambda tmp: os.replace(paths[0].parent, tmp))
    else:
        raise ConversionError(src, f"a snapshot cannot be written as {to} (zarr, gadget4/hdf5)")
    return notes


def convert(source: str | Path, output: str | Path, to: str | None = None,
            options: ConvertOptions | None = None) -> ConversionResult:
    """Convert one input to ``output``.

    Parameters
    ----------
    source : path
        A file, a snapshot folder or a store.
    output : path
        Replaced if it exists.
    to : str, optional
        One of :data:`lenghu.convert.formats.FORMATS`; default from ``output``'s extension.
    options : ConvertOptions, optional

    Raises
    ------
    ConversionError
        Unknown input, or no route to the output format.
    lenghu.errors.LenghuError
        The input is broken (truncated, inconsistent ...).
    """
    start = time.perf_counter()
    source, output = Path(source), Path(output)
    options = options or ConvertOptions()
    if not source.exists():
        raise ConversionError(source, "no such file or folder")
    to = to or format_from_name(output)
    if to is None:
        raise ConversionError(output, f"cannot tell the output format from the name; give --to ({', '.join(FORMATS)})")
    if to not in FORMATS:
        raise ConversionError(output, f"unknown format {to!r} ({', '.join(FORMATS)})")
    if source.resolve() == output.resolve():
        raise ConversionError(output, "the output is the input")
    fmt, kind = input_kind(source)
    if kind == "table":
        notes = _convert_table(source, output, to, options)
    elif kind == "snapshot":
        notes = _convert_snapshot(source, output, to, options)
    elif kind in ("image", "mef", "cube"):
        notes = _convert_image(source, fmt, output, to, options)
    else:
        raise ConversionError(source, f"nothing to convert ({kind})")
    return ConversionResult(source, output, kind, fmt, to, tuple(notes), time.perf_counter() - start)


__all__ = ["convert", "ConvertOptions", "ConversionResult", "ConversionError", "input_kind", "LenghuError"]
