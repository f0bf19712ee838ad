"""Gadget-2 binary snapshots (SnapFormat 1 and 2, either byte order, one or several files).

No maintained Python library reads this format without pulling in a whole
analysis framework (yt, pynbody) or reading everything into memory, and the
format is simple: Fortran-style records (a 4-byte length, the bytes, the
length again). So it is parsed here, by hand: the 256-byte header with a numpy
structured dtype, each block mapped lazily with ``np.memmap``.

Format 1 has no block names; blocks follow Gadget-2's write order (POS, VEL,
ID, MASS when some type has no mass-table entry, then the gas-only U, RHO,
HSML, then POT, ACCE, ENDT, TSTP when compiled in). Format 2 precedes each
block with an 8-byte record ``NAME`` + size, so names are known.

Quirks read around (each noted in ``Snapshot.quirks`` and warned):

- ``NumPart_Total`` all zero (or the file count 0) although the file has
  particles, as in initial-condition files made by hand: the per-file counts
  are used.
- Unit system: the file does not record one; Gadget-2's defaults are assumed.

Errors: a block whose end marker lies beyond the end of the file
(:class:`TruncatedSnapshotError`); begin and end markers that disagree; header
counts that do not match the size of the POS block (:class:`SnapshotCountError`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenghu.io.snapshots.conventions import BINARY_BLOCK_NAMES, convention_units
from lenghu.io.snapshots.files import sibling_pieces
from lenghu.io.snapshots.lazy import CHUNK_BYTES, RawSource, concatenate, lazy_array
from lenghu.io.snapshots.model import (
    GADGET2_DEFAULT_UNITS,
    MASSES,
    Field,
    ParticleSet,
    Snapshot,
    SnapshotCountError,
    SnapshotError,
    SnapshotQuirkWarning,
    TruncatedSnapshotError,
    is_close,
    total_counts,
)

HEADER_BYTES = 256
NTYPES = 6


def header_dtype(byteorder: str) -> np.dtype:
    """The Gadget-2 header (``struct io_header``) as a numpy dtype, 196 of its 256 bytes."""
    e = byteorder
    return np.dtype(
        [
            ("npart", e + "i4", 6),
            ("massarr", e + "f8", 6),
            ("time", e + "f8"),
            ("redshift", e + "f8"),
            ("flag_sfr", e + "i4"),
            ("flag_feedback", e + "i4"),
            ("npartTotal", e + "u4", 6),
            ("flag_cooling", e + "i4"),
            ("num_files", e + "i4"),
            ("BoxSize", e + "f8"),
            ("Omega0", e + "f8"),
            ("OmegaLambda", e + "f8"),
            ("HubbleParam", e + "f8"),
            ("flag_stellarage", e + "i4"),
            ("flag_metals", e + "i4"),
            ("npartTotalHighWord", e + "u4", 6),
            ("flag_entropy_instead_u", e + "i4"),
        ]
    )


@dataclass(frozen=True)
class Block:
    """One data record of a binary snapshot file.

    Attributes
    ----------
    label : str or None
        Format-2 name (``POS``, ``MASS`` ...), stripped; None in format 1.
    offset : int
        Byte offset of the first data byte.
    size : int
        Data bytes.
    """

    label: str | None
    offset: int
    size: int


@dataclass(frozen=True)
class BinaryLayout:
    """What :func:`scan` finds in one file: byte order, format version, header and data blocks."""

    path: Path
    byteorder: str
    version: int
    header: np.void
    blocks: tuple[Block, ...]


def sniff(head: bytes) -> tuple[str, int] | None:
    """``(byteorder, version)`` if ``head`` (the first 16 bytes) starts a Gadget-2 binary file, else None."""
    if len(head) < 16:
        return None
    for e in ("<", ">"):
        first = int(np.frombuffer(head[:4], e + "u4")[0])
        if first == HEADER_BYTES:
            return e, 1
        if first == 8 and head[4:8] == b"HEAD":
            return e, 2
    return None


def _record(handle, path: Path, e: str, size_total: int) -> tuple[int, int]:
    """Read one record's begin marker; return (data offset, size), after checking its end marker."""
    start = handle.tell()
    marker = handle.read(4)
    if len(marker) < 4:
        raise TruncatedSnapshotError(path, f"the file ends inside a record marker at byte {start}")
    size = int(np.frombuffer(marker, e + "u4")[0])
    end = start + 4 + size
    if end + 4 > size_total:
        raise TruncatedSnapshotError(
            path, f"the block at byte {start} announces {size} bytes but the file ends at byte {size_total}"
        )
    handle.seek(end)
    closing = int(np.frombuffer(handle.read(4), e + "u4")[0])
    if closing != size:
        raise SnapshotError(path, f"block at byte {start}: begin marker {size} != end marker {closing} (corrupt or truncated)")
    return start + 4, size


def scan(path: str | Path) -> BinaryLayout:
    """Walk the records of one Gadget-2 binary file (reading only markers and the header).

    Raises
    ------
    UnknownSnapshotFormatError, TruncatedSnapshotError, SnapshotError
    """
    from lenghu.io.snapshots.model import UnknownSnapshotFormatError

    path = Path(path)
    total = path.stat().st_size
    with open(path, "rb") as handle:
        found = sniff(handle.read(16))
        if found is None:
            raise UnknownSnapshotFormatError(path, "not a Gadget-2 binary snapshot (no 256-byte header record)")
        e, version = found
        handle.seek(0)
        blocks: list[Block] = []
        header = None
        label: str | None = None
        while handle.tell() < total:
            offset, size = _record(handle, path, e, total)
            if version == 2 and label is None:
                if size != 8:
                    raise SnapshotError(path, f"format 2: expected an 8-byte block label at byte {offset - 4}, got {size}")
                handle.seek(offset)
                label = handle.read(4).decode("ascii", "replace").strip()
                handle.seek(offset + 12)
                continue
            if header is None:
                if size != HEADER_BYTES:
                    raise SnapshotError(path, f"the header record holds {size} bytes, not {HEADER_BYTES}")
                handle.seek(offset)
                raw = handle.read(HEADER_BYTES)
                header = np.frombuffer(raw[: header_dtype(e).itemsize], header_dtype(e))[0]
                handle.seek(offset + size + 4)
            else:
                blocks.append(Block(label, offset, size))
            label = None
    if header is None:
        raise TruncatedSnapshotError(path, "no header record")
    return BinaryLayout(path, e, version, header, tuple(blocks))


def _types_for(name: str, counts: tuple[int, ...], massarr: tuple[float, ...]) -> tuple[int, ...]:
    """Particle types a block of this name covers, in Gadget-2's conventions."""
    if name == "MASS":
        return tuple(t for t in range(NTYPES) if counts[t] > 0 and massarr[t] == 0)
    if name in ("U", "RHO", "HSML", "ENDT", "NE", "NH", "SFR"):
        return (0,)
    if name == "AGE":
        return (4,)
    if name == "Z":
        return (0, 4)
    return tuple(range(NTYPES))


_FORMAT1_ORDER = ("POS", "VEL", "ID", "MASS", "U", "RHO", "HSML", "POT", "ACCE", "ENDT", "TSTP")
_WIDTH = {"POS": 3, "VEL": 3, "ACCE": 3}


def _label_blocks(layout: BinaryLayout, counts: tuple[int, ...], massarr: tuple[float, ...]) -> list[tuple[str, Block]]:
    """Name every data block (format 2: its label; format 1: Gadget-2's order, checked against sizes)."""
    if layout.version == 2:
        return [(b.label or f"BLOCK{i}", b) for i, b in enumerate(layout.blocks)]
    names: list[tuple[str, Block]] = []
    order = list(_FORMAT1_ORDER)
    if not _types_for("MASS", counts, massarr):
        order.remove("MASS")
    for i, block in enumerate(layout.blocks):
        while order:
            candidate = order.pop(0)
            n = sum(counts[t] for t in _types_for(candidate, counts, massarr))
            width = _WIDTH.get(candidate, 1)
            if n and block.size in (4 * width * n, 8 * width * n):
                names.append((candidate, block))
                break
            if candidate in ("POS", "VEL", "ID") or (candidate == "MASS"):
                raise SnapshotCountError(
                    layout.path,
                    f"block {i} ({block.size} bytes) does not fit {candidate} for {n} particles "
                    f"(header counts {list(counts)})",
                )
        else:
            names.append((f"BLOCK{i}", block))
    return names


def _item_dtype(name: str, block: Block, n: int, width: int, e: str, path: Path) -> np.dtype:
    per = block.size / (n * width) if n else 0
    if per not in (4, 8):
        raise SnapshotCountError(
            path, f"block {name}: {block.size} bytes is not {width} x 4 or 8 bytes for each of {n} particles"
        )
    if name == "ID":
        return np.dtype(e + ("u4" if per == 4 else "u8"))
    return np.dtype(e + ("f4" if per == 4 else "f8"))


def _check_counts(layout: BinaryLayout, counts: tuple[int, ...]) -> None:
    n = sum(counts)
    pos = next((b for b in layout.blocks if (b.label or "POS") == "POS"), None)
    if pos is None:
        raise SnapshotError(layout.path, "no POS block")
    if n == 0 or pos.size not in (12 * n, 24 * n):
        raise SnapshotCountError(
            layout.path,
            f"the header counts {n} particles ({list(counts)}) but the POS block holds {pos.size} bytes "
            f"({pos.size / 12:g} float32 or {pos.size / 24:g} float64 positions)",
        )


def read_file_fields(layout: BinaryLayout) -> dict[int, dict[str, tuple[RawSource, str]]]:
    """Lazy sources of each field of each type in one file: ``{type: {field: (source, block name)}}``."""
    h = layout.header
    counts = tuple(int(x) for x in h["npart"])
    massarr = tuple(float(x) for x in h["massarr"])
    _check_counts(layout, counts)
    out: dict[int, dict[str, tuple[RawSource, str]]] = {t: {} for t in range(NTYPES) if counts[t] > 0}
    for name, block in _label_blocks(layout, counts, massarr):
        types = _types_for(name, counts, massarr)
        n = sum(counts[t] for t in types)
        width = _WIDTH.get(name, 1)
        if name.startswith("BLOCK"):
            total = sum(counts)
            if block.size % total == 0 and block.size // total in (4, 8, 12, 24):
                width = 3 if block.size // total in (12, 24) else 1
            else:
                warnings.warn(f"{layout.path}: skipping unidentified block of {block.size} bytes", SnapshotQuirkWarning, stacklevel=3)
                continue
        dtype = _item_dtype(name, block, n, width, layout.byteorder, layout.path)
        field = BINARY_BLOCK_NAMES.get(name, name)
        start = block.offset
        for t in types:
            if counts[t] == 0:
                continue
            shape = (counts[t], width) if width > 1 else (counts[t],)
            out[t][field] = (RawSource(str(layout.path), start, dtype, shape), name)
            start += counts[t] * width * dtype.itemsize
    return out


def read_gadget2(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Snapshot:
    """Read a Gadget-2 binary snapshot (``NAME`` or the first piece ``NAME.0`` of several) lazily.

    ``chunk_bytes`` is the size of the dask chunks (see :func:`lenghu.io.snapshots.read_snapshot`).

    Raises
    ------
    SnapshotError
        Truncated or inconsistent files (see the module docstring).
    """
    path = Path(path)
    first = scan(path)
    h = first.header
    quirks: list[str] = []
    num_files = int(h["num_files"])
    totals = total_counts(h["npartTotal"], h["npartTotalHighWord"])
    if num_files < 1:
        quirks.append(f"header file count is {num_files}: read as a single file")
        num_files = 1
    paths = sibling_pieces(path, num_files)
    layouts = [first] + [scan(p) for p in paths[1:]]
    summed = tuple(sum(int(lay.header["npart"][t]) for lay in layouts) for t in range(NTYPES))
    if not any(totals) and any(summed):
        quirks.append(f"header particle totals are all 0: counts taken from the data blocks ({list(summed)})")
    elif totals != summed:
        if len(layouts) == 1 and num_files == 1:
            raise SnapshotCountError(path, f"header totals {list(totals)} but the file holds {list(summed)}")
        raise SnapshotCountError(path, f"header totals {list(totals)} but the {len(layouts)} files hold {list(summed)}")
    for q in quirks:  # the file departs from the format: say so once, here
        warnings.warn(f"{path}: {q}", SnapshotQuirkWarning, stacklevel=2)
    # what the format itself leaves open is noted, not warned
    quirks.append("no unit system in the file: Gadget-2 defaults assumed (kpc/h, 1e10 Msun/h, km/s)")
    hubble = float(h["HubbleParam"])
    if hubble <= 0:
        quirks.append(f"HubbleParam is {hubble:g}: h taken as 1")
        hubble = 1.0
    time, redshift = float(h["time"]), float(h["redshift"])
    omega0 = float(h["Omega0"])
    comoving = bool(omega0 > 0 and 0 < time <= 1 and is_close(redshift, 1.0 / time - 1.0))
    units = GADGET2_DEFAULT_UNITS
    per_file = [read_file_fields(lay) for lay in layouts]
    massarr = tuple(float(x) for x in h["massarr"])
    particles = {}
    for t in range(NTYPES):
        pieces = [pf[t] for pf in per_file if t in pf]
        if not pieces:
            continue
        names = list(pieces[0])
        fields = {}
        for name in names:
            sources = [pf[name] for pf in pieces if name in pf]
            if len(sources) != len(pieces):
                raise SnapshotError(path, f"type {t}: block {name} is missing from some files")
            data = concatenate([lazy_array(src, chunk_bytes) for src, _ in sources])
            fields[name] = Field(name, data, convention_units(name, units, comoving), sources[0][1])
        count = summed[t]
        mass = massarr[t] if MASSES not in fields and massarr[t] > 0 else None
        particles[t] = ParticleSet(t, count, fields, mass)
    version = first.version
    return Snapshot(
        particles=particles,
        box_size=(float(h["BoxSize"]),) * 3,
        time=time,
        redshift=redshift,
        hubble_param=hubble,
        comoving=comoving,
        units=units,
        cosmology={"omega0": omega0, "omega_lambda": float(h["OmegaLambda"])},
        source_format=f"gadget2-binary-{version}",
        source_paths=tuple(str(p) for p in paths),
        quirks=tuple(quirks),
        attributes={
            "byteorder": "little" if first.byteorder == "<" else "big",
            "flag_sfr": int(h["flag_sfr"]),
            "flag_feedback": int(h["flag_feedback"]),
            "flag_cooling": int(h["flag_cooling"]),
            "flag_stellarage": int(h["flag_stellarage"]),
            "flag_metals": int(h["flag_metals"]),
            "flag_entropy_instead_u": int(h["flag_entropy_instead_u"]),
        },
    )


__all__ = ["read_gadget2", "scan", "sniff", "header_dtype", "Block", "BinaryLayout"]
