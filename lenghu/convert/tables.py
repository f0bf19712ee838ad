"""Catalogues: FITS tables, Parquet, VOTable, ECSV, CSV and HDF5, with units and metadata kept.

All through astropy's Table I/O; what each format keeps:

========  ==============================================================
FITS      units (TUNITn), table metadata as header keywords, column
          descriptions (astropy's serialised-columns block)
Parquet   everything astropy serialises (units, descriptions, formats, meta)
          as YAML in the schema metadata
VOTable   units, descriptions (DESCRIPTION), and the table metadata as
          ``INFO`` elements (read back into ``meta``)
ECSV      everything (YAML header)
CSV       written as ECSV with a comma delimiter: a CSV file whose ``#``
          comment lines carry the units and metadata; readers that skip
          ``#`` lines see a plain CSV. A CSV without that header is read
          as plain CSV (no units).
HDF5      everything (astropy's ``serialize_meta``), dataset ``table``
========  ==============================================================

The format of a file is found from its content (:func:`lenghu.io.inspect.sniff`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lenghu.errors import FrameError

TABLE_FORMATS = ("fits", "parquet", "votable", "ecsv", "csv", "hdf5")
HDF5_PATH = "table"


class TableFormatError(FrameError):
    """The file is no catalogue lenghu reads, or the table cannot be written in the format asked."""


def _read_parquet(path: Path):
    """Parquet with astropy's metadata, read with pyarrow alone.

    astropy's own reader insists on pandas only to call pyarrow's
    ``to_pandas_dtype`` (which needs no pandas); this follows astropy's reader
    (``astropy.io.misc.parquet``) for plain and fixed-size array columns.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Column, Table, meta, serialize

    pa_table = pq.read_table(path)
    md = {k.decode(): v.decode() for k, v in (pa_table.schema.metadata or {}).items()}
    header = meta.get_header_from_yaml(md["table_meta_yaml"].split("\n")) if "table_meta_yaml" in md else None
    table = Table(meta=(header or {}).get("meta", {}))
    for name in pa_table.column_names:
        t = pa_table.schema.field(name).type
        col = pa_table[name].to_numpy()
        value_type = t.value_type if isinstance(t, (pa.FixedSizeListType, pa.ListType)) else t
        if pa.types.is_string(value_type) or pa.types.is_large_string(value_type) or pa.types.is_binary(value_type):
            strlen = int(md.get(f"table::len::{name}", 0)) or max((len(v) for v in col), default=1)
            kind = "U" if not pa.types.is_binary(value_type) else "S"
            col = np.stack(col).astype(f"{kind}{strlen}") if isinstance(t, pa.FixedSizeListType) and len(col) else col.astype(f"{kind}{strlen}")
        elif isinstance(t, pa.FixedSizeListType):
            col = np.stack(col) if len(col) else np.zeros((0, t.list_size), dtype=value_type.to_pandas_dtype())
        table.add_column(Column(name=name, data=col))
    if header is not None:
        described = {x["name"]: x for x in header["datatype"]}
        for col in table.columns.values():
            for attr in ("description", "format", "unit", "meta"):
                if attr in described.get(col.name, {}):
                    setattr(col, attr, described[col.name][attr])
    return serialize._construct_mixins_from_columns(table)


def _read_votable(path: Path):
    from astropy.io.votable import parse_single_table

    vot = parse_single_table(str(path))
    table = vot.to_table(use_names_over_ids=True)
    for param in vot.params:  # lenghu writes the table metadata as PARAMs
        value = param.value
        table.meta.setdefault(param.name, value.item() if isinstance(value, np.generic) else value)
    for info in vot.infos:
        table.meta.setdefault(info.name, info.value)
    return table


def read_table(path: str | Path, hdu: int | str | None = None):
    """Read a catalogue into an astropy Table, whatever its format.

    Parameters
    ----------
    path : path
    hdu : int or str, optional
        FITS: which table HDU (default: the first table).

    Raises
    ------
    TableFormatError
    """
    from astropy.table import Table

    from lenghu.io.inspect import sniff

    path = Path(path)
    fmt = sniff(path)
    if fmt in ("fits", "fits-gzip"):
        return Table.read(path, format="fits", hdu=hdu, character_as_bytes=False) if hdu is not None else Table.read(
            path, format="fits", character_as_bytes=False)
    if fmt == "parquet":
        return _read_parquet(path)
    if fmt == "votable":
        return _read_votable(path)
    if fmt in ("ecsv", "csv"):
        try:
            return Table.read(path, format=f"ascii.{fmt}")
        except (UnicodeDecodeError, ValueError) as exc:  # found by fuzzing: a damaged FITS file sniffed as CSV
            raise TableFormatError(path, f"not a readable {fmt.upper()} table: {type(exc).__name__}: "
                                         f"{str(exc)[:200]}") from exc
    if fmt == "hdf5":
        return _text_columns(Table.read(path, format="hdf5", path=HDF5_PATH))
    raise TableFormatError(path, f"not a catalogue lenghu reads (content: {fmt})")


def _text_columns(table):
    """Byte-string columns as str (HDF5 stores text as bytes; every other reader gives str)."""
    for name in table.colnames:
        col = table[name]
        if getattr(col, "dtype", None) is not None and col.dtype.kind == "S":
            table[name] = col.astype(f"U{max(1, col.dtype.itemsize)}")
            table[name].unit, table[name].description = col.unit, col.description
            table[name].meta.update(col.meta)
    return table


_VOTABLE_TYPES = ((bool, "boolean"), (int, "long"), (float, "double"), (str, "char"))


def write_table(table, out: str | Path, fmt: str, overwrite: bool = True) -> Path:
    """Write ``table`` to ``out`` in ``fmt`` (one of :data:`TABLE_FORMATS`), appearing only whole.

    Raises
    ------
    TableFormatError
        ``fmt`` unknown, or metadata the format cannot hold (e.g. nested values in FITS).
    """
    from lenghu.io.atomic import atomic_path

    out = Path(out)
    if fmt not in TABLE_FORMATS:
        raise TableFormatError(out, f"unknown catalogue format {fmt!r} (one of {', '.join(TABLE_FORMATS)})")
    with atomic_path(out) as tmp:
        if fmt == "votable":
            _write_votable(table, tmp)
        elif fmt == "ecsv":
            table.write(tmp, format="ascii.ecsv")
        elif fmt == "csv":
            table.write(tmp, format="ascii.ecsv", delimiter=",")
        elif fmt == "hdf5":
            table.write(tmp, format="hdf5", path=HDF5_PATH, serialize_meta=True)
        elif fmt == "fits":
            table.write(tmp, format="fits")
        else:
            table.write(tmp, format=fmt)
    return out


def _write_votable(table, path: Path) -> None:
    """VOTable with the table metadata as typed PARAM elements (astropy's writer drops it)."""
    from astropy.io.votable.tree import Param, VOTableFile

    vot = VOTableFile.from_table(table)
    element = vot.get_first_table()
    for key, value in table.meta.items():
        value = value.item() if isinstance(value, np.generic) else value
        datatype = next((name for kind, name in _VOTABLE_TYPES if isinstance(value, kind)), None)
        if datatype is not None:
            extra = {"arraysize": "*"} if datatype == "char" else {}
            element.params.append(Param(vot, name=str(key), value=value, datatype=datatype, **extra))
        else:
            warnings.warn(f"{path}: metadata {key!r} ({type(value).__name__}) has no place in a VOTable INFO; dropped",
                          UserWarning, stacklevel=3)
    vot.to_xml(str(path))
