"""HDF5 snapshots of the Gadget family: Gadget-3/4, AREPO, SWIFT, EAGLE, IllustrisTNG.

All share the layout ``Header`` (attributes) + ``PartTypeN/<dataset>``; they
differ in where the unit system is, how each dataset's units are written, the
width of the counts and what the header promises:

=================  ========================================  ===========================================
dialect            unit system                               per-dataset units
=================  ========================================  ===========================================
gadget4-hdf5       ``Parameters`` ``UnitLength_in_cm`` ...   ``a_scaling``, ``h_scaling``, ``to_cgs``
arepo-hdf5         ``Parameters`` / ``Header``                same as Gadget-4 when written
illustristng-hdf5  ``Header`` ``UnitLength_in_cm`` ...       ``a_scaling``, ``h_scaling``, ``to_cgs``
eagle-hdf5         ``Units`` group, else the datasets'        ``CGSConversionFactor``,
                   ``CGSConversionFactor``                    ``aexp-scale-exponent``, ``h-scale-exponent``
swift-hdf5         ``Units`` ``Unit length in cgs (U_L)``     ``Conversion factor to CGS (not including
                                                              cosmological corrections)``, ``a-scale
                                                              exponent``, ``h-scale exponent``
gadget-hdf5        none: Gadget-2 defaults assumed            none: Gadget's conventions assumed
=================  ========================================  ===========================================

Counts: per file, ``NumPart_ThisFile`` must equal the length of the type's
datasets. An IllustrisTNG cutout (header ``CutoutID``/``CutoutType``/
``CutoutRequest``) keeps the parent's counts in its header: there the datasets
decide, with a warning. Anywhere else a mismatch raises
:class:`SnapshotCountError`. Totals are ``NumPart_Total + (HighWord << 32)``
(64-bit already in Gadget-4 and SWIFT).

Datasets are read lazily (:mod:`lenghu.io.snapshots.lazy`); only attributes
and dataset shapes are read here.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from lenghu.io.snapshots.conventions import canonical_name, convention_units
from lenghu.io.snapshots.files import folder_pieces, sibling_pieces
from lenghu.io.snapshots.lazy import CHUNK_BYTES, HDF5Source, concatenate, lazy_array
from lenghu.io.snapshots.model import (
    GADGET2_DEFAULT_UNITS,
    MASSES,
    Field,
    FieldUnits,
    ParticleSet,
    Snapshot,
    SnapshotCountError,
    SnapshotError,
    SnapshotQuirkWarning,
    UnitSystem,
    box_triplet,
    is_close,
    total_counts,
)

CUTOUT_MARKERS = ("CutoutID", "CutoutType", "CutoutRequest")
_PARTTYPE = re.compile(r"^PartType(\d+)$")
_SWIFT_CGS = "Conversion factor to CGS (not including cosmological corrections)"
_STANDARD_HEADER = {
    "NumPart_ThisFile", "NumPart_Total", "NumPart_Total_HighWord", "MassTable", "Time", "Redshift", "BoxSize",
    "NumFilesPerSnapshot", "Omega0", "OmegaLambda", "OmegaBaryon", "HubbleParam", "Scale-factor",
}


def scalar(value: Any) -> Any:
    """An attribute as a Python scalar (HDF5 attributes often come as 1-element arrays or bytes)."""
    arr = np.asarray(value)
    if arr.size == 1:
        item = arr.reshape(()).item()
        return item.decode("utf-8", "replace") if isinstance(item, bytes) else item
    return value


def json_value(value: Any) -> Any:
    """An attribute as a JSON-able value (lists for arrays, str for bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [json_value(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text(value: Any) -> str:
    value = scalar(value)
    return value if isinstance(value, str) else str(value)


def dialect(h5: h5py.File) -> str | None:
    """The dialect of an open HDF5 file (see the module table), or None if it is no Gadget-family snapshot."""
    header = h5.get("Header")
    if not isinstance(header, h5py.Group) or "NumPart_ThisFile" not in header.attrs:
        return None
    attrs = header.attrs
    code = h5.get("Code")
    if _text(attrs.get("Code", "")).upper().startswith("SWIFT") or (
        isinstance(code, h5py.Group) and _text(code.attrs.get("Code", "")).upper().startswith("SWIFT")
    ):
        return "swift-hdf5"
    if isinstance(h5.get("Units"), h5py.Group) and "Unit length in cgs (U_L)" in h5["Units"].attrs:
        return "swift-hdf5"
    if any(k in attrs for k in CUTOUT_MARKERS) or "illustris" in _text(attrs.get("RunLabel", "")).lower():
        return "illustristng-hdf5"
    first = _first_dataset(h5)
    if _text(attrs.get("RunLabel", "")).upper() == "EAGLE" or (
        first is not None and "CGSConversionFactor" in first.attrs and "a_scaling" not in first.attrs
    ):
        return "eagle-hdf5"
    has_groups = isinstance(h5.get("Parameters"), h5py.Group) and isinstance(h5.get("Config"), h5py.Group)
    if has_groups and (first is None or "a_scaling" in first.attrs) and np.asarray(attrs["NumPart_Total"]).dtype.itemsize == 8:
        return "gadget4-hdf5"
    if "Git_commit" in attrs or (isinstance(h5.get("Config"), h5py.Group) and "VORONOI" in h5["Config"].attrs):
        return "arepo-hdf5"
    return "gadget-hdf5"


def _first_dataset(h5: h5py.File) -> h5py.Dataset | None:
    for name in sorted(h5):
        if _PARTTYPE.match(name) and isinstance(h5[name], h5py.Group):
            for ds_name in ("Coordinates", *sorted(h5[name])):
                obj = h5[name].get(ds_name)
                if isinstance(obj, h5py.Dataset):
                    return obj
    return None


def _unit_system(h5: h5py.File, kind: str) -> UnitSystem:
    keys = ("UnitLength_in_cm", "UnitMass_in_g", "UnitVelocity_in_cm_per_s")
    if kind == "swift-hdf5":
        u = h5["Units"].attrs
        length = float(scalar(u["Unit length in cgs (U_L)"]))
        return UnitSystem(length, float(scalar(u["Unit mass in cgs (U_M)"])), length / float(scalar(u["Unit time in cgs (U_t)"])))
    for group in ("Parameters", "Header", "Units"):
        g = h5.get(group)
        if isinstance(g, h5py.Group) and all(k in g.attrs for k in keys):
            return UnitSystem(*(float(scalar(g.attrs[k])) for k in keys))
    if kind == "eagle-hdf5":
        found = {}
        for name in sorted(h5):
            if not _PARTTYPE.match(name):
                continue
            for ds_name, key in (("Coordinates", 0), ("Mass", 1), ("Masses", 1), ("Velocity", 2), ("Velocities", 2)):
                ds = h5[name].get(ds_name)
                if isinstance(ds, h5py.Dataset) and "CGSConversionFactor" in ds.attrs:
                    found.setdefault(key, float(scalar(ds.attrs["CGSConversionFactor"])))
        if len(found) == 3:
            return UnitSystem(found[0], found[1], found[2])
    return GADGET2_DEFAULT_UNITS


def _dataset_units(ds: h5py.Dataset, name: str, units: UnitSystem, comoving: bool | None) -> FieldUnits:
    a = ds.attrs
    description = _text(a.get("VarDescription", a.get("Description", "")))
    if "to_cgs" in a or "a_scaling" in a:
        to_cgs = float(scalar(a["to_cgs"])) if "to_cgs" in a else None
        to_cgs = None if to_cgs is not None and np.isnan(to_cgs) else to_cgs  # lenghu writes NaN for unknown
        return FieldUnits(to_cgs, float(scalar(a.get("a_scaling", 0.0))), float(scalar(a.get("h_scaling", 0.0))), description)
    if "CGSConversionFactor" in a:
        return FieldUnits(
            float(scalar(a["CGSConversionFactor"])),
            float(scalar(a.get("aexp-scale-exponent", 0.0))),
            float(scalar(a.get("h-scale-exponent", 0.0))),
            description,
        )
    if _SWIFT_CGS in a:
        return FieldUnits(
            float(scalar(a[_SWIFT_CGS])),
            float(scalar(a.get("a-scale exponent", 0.0))),
            float(scalar(a.get("h-scale exponent", 0.0))),
            description,
        )
    return convention_units(name, units, comoving)


def _comoving(h5: h5py.File, kind: str, time: float, redshift: float | None, omega0: float) -> tuple[bool, bool]:
    """(comoving, inferred): from the parameters where written, else from the header values."""
    if kind == "swift-hdf5":
        cosmo = h5.get("Cosmology")
        if isinstance(cosmo, h5py.Group) and "Cosmological run" in cosmo.attrs:
            return bool(scalar(cosmo.attrs["Cosmological run"])), False
    if kind in ("eagle-hdf5", "illustristng-hdf5"):
        return True, False
    params = h5.get("Parameters")
    if isinstance(params, h5py.Group) and "ComovingIntegrationOn" in params.attrs:
        return bool(scalar(params.attrs["ComovingIntegrationOn"])), False
    guess = bool(omega0 > 0 and 0 < time <= 1 and redshift is not None and is_close(redshift, 1.0 / time - 1.0))
    return guess, True


def _collect_datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    """Every dataset below a PartType group, by path relative to it (nested groups as ``a/b``)."""
    found: dict[str, h5py.Dataset] = {}

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    group.visititems(visit)
    return found


def _file_pieces(path: Path) -> tuple[list[Path], Path]:
    """The files of the snapshot that ``path`` (a file or a ``snapdir`` folder) names, and the first."""
    if path.is_dir():
        pieces = folder_pieces(path)
        return pieces, pieces[0]
    return [path], path


def read_hdf5_snapshot(path: str | Path, chunk_bytes: int = CHUNK_BYTES) -> Snapshot:
    """Read a Gadget-family HDF5 snapshot (one file, one piece of several, or a ``snapdir_NNN/`` folder).

    ``chunk_bytes`` is the size of the dask chunks (see :func:`lenghu.io.snapshots.read_snapshot`).

    Raises
    ------
    SnapshotError
        Not a snapshot; a piece missing; inconsistent counts (see the module docstring).
    """
    path = Path(path)
    pieces, first = _file_pieces(path)
    with h5py.File(first, "r") as h5:
        kind = dialect(h5)
        if kind is None:
            raise SnapshotError(first, "an HDF5 file without a Gadget-style Header/NumPart_ThisFile")
        header = dict(h5["Header"].attrs)
        num_files = int(scalar(header.get("NumFilesPerSnapshot", 1)) or 1)
        if not path.is_dir():
            pieces = sibling_pieces(first, num_files)
        elif len(pieces) != num_files:
            raise SnapshotError(path, f"the header says {num_files} files, the folder holds {len(pieces)}")
        units = _unit_system(h5, kind)
        source_group = h5.get("SourceHeader")
        source_header = {k: json_value(v) for k, v in source_group.attrs.items()} if isinstance(source_group, h5py.Group) else {}
        cosmo_group = h5.get("Cosmology")
        cosmo_attrs = dict(cosmo_group.attrs) if isinstance(cosmo_group, h5py.Group) else {}
        redshift = scalar(header["Redshift"]) if "Redshift" in header else None
        time = float(scalar(header.get("Scale-factor", header.get("Time", 0.0)))) if kind == "swift-hdf5" else float(scalar(header.get("Time", 0.0)))
        omega0 = float(scalar(header.get("Omega0", cosmo_attrs.get("Omega_m", 0.0))))
        comoving, inferred = _comoving(h5, kind, time, redshift, omega0)
        if kind == "swift-hdf5" and not comoving:
            time = float(scalar(header.get("Time", time)))
    quirks: list[str] = []
    cutout = any(k in header for k in CUTOUT_MARKERS)
    per_type: dict[int, dict[str, list]] = {}
    units_of: dict[tuple[int, str], FieldUnits] = {}
    source_names: dict[tuple[int, str], str] = {}
    counts: dict[int, int] = {}
    for piece in pieces:
        with h5py.File(piece, "r") as h5:
            this_file = [int(x) for x in np.atleast_1d(h5["Header"].attrs["NumPart_ThisFile"])]
            groups = {int(m[1]): h5[n] for n in h5 if (m := _PARTTYPE.match(n)) and isinstance(h5[n], h5py.Group)}
            for t in sorted(set(groups) | {i for i, n in enumerate(this_file) if n > 0}):
                announced = this_file[t] if t < len(this_file) else 0
                datasets = _collect_datasets(groups[t]) if t in groups else {}
                lengths = {name: ds.shape[0] if ds.shape else 0 for name, ds in datasets.items()}
                if len(set(lengths.values())) > 1:
                    raise SnapshotCountError(piece, f"PartType{t}: datasets of different lengths {lengths}")
                held = next(iter(lengths.values()), 0)
                if held != announced:
                    problem = f"PartType{t}: NumPart_ThisFile says {announced}, the datasets hold {held}"
                    if not cutout:
                        raise SnapshotCountError(piece, problem + " (and the file is not marked as a cutout)")
                    quirks.append(f"{piece.name}: {problem}; counts taken from the datasets (cutout)")
                if held == 0:
                    continue
                counts[t] = counts.get(t, 0) + held
                for name, ds in datasets.items():
                    field = canonical_name(name)
                    key = (t, field)
                    if key not in units_of:
                        units_of[key] = _dataset_units(ds, field, units, comoving)
                        source_names[key] = name
                    dtype = ds.dtype.newbyteorder("=") if ds.dtype.byteorder in "<>" else ds.dtype
                    per_type.setdefault(t, {}).setdefault(field, []).append(HDF5Source(str(piece), ds.name, tuple(ds.shape), dtype))
    totals = total_counts(header.get("NumPart_Total", []), header.get("NumPart_Total_HighWord"))
    held_totals = tuple(counts.get(t, 0) for t in range(len(totals)))
    if any(totals) and totals != held_totals:
        problem = f"NumPart_Total says {list(totals)}, the files hold {list(held_totals)}"
        if not cutout:
            raise SnapshotCountError(path, problem)
        quirks.append(problem + " (cutout)")
    elif not any(totals) and any(held_totals):
        quirks.append(f"NumPart_Total is all 0: counts taken from the datasets ({list(held_totals)})")
    for q in quirks:
        warnings.warn(f"{path}: {q}", SnapshotQuirkWarning, stacklevel=2)
    if units.assumed:
        quirks.append("no unit system in the file: Gadget-2 defaults assumed (kpc/h, 1e10 Msun/h, km/s)")
    if inferred:
        quirks.append(f"comoving integration {'on' if comoving else 'off'}: inferred from Omega0, Time and Redshift")
    mass_table = [float(x) for x in np.atleast_1d(header.get("MassTable", []))]
    particles = {}
    for t, fields in per_type.items():
        built = {}
        for name, sources in fields.items():
            data = concatenate([lazy_array(s, chunk_bytes) for s in sources])
            if data.shape[0] != counts[t]:
                raise SnapshotError(path, f"PartType{t}/{name}: present in only some of the files")
            built[name] = Field(name, data, units_of[(t, name)], source_names[(t, name)])
        mass = mass_table[t] if MASSES not in built and t < len(mass_table) and mass_table[t] > 0 else None
        particles[t] = ParticleSet(t, counts[t], built, mass)
    hubble = float(scalar(header.get("HubbleParam", cosmo_attrs.get("h", 1.0))) or 1.0)
    cosmology = {}
    for key, names in (("omega0", ("Omega0", "Omega_m")), ("omega_lambda", ("OmegaLambda", "Omega_lambda")),
                       ("omega_baryon", ("OmegaBaryon", "Omega_b"))):
        for name in names:
            source = header if name in header else cosmo_attrs
            if name in source:
                cosmology[key] = float(scalar(source[name]))
                break
    extra = {k: json_value(v) for k, v in header.items() if k not in _STANDARD_HEADER}
    extra.update(source_header)  # a file lenghu converted: the original header's extras
    return Snapshot(
        particles=particles,
        box_size=box_triplet(header.get("BoxSize", 0.0)),
        time=time,
        redshift=None if redshift is None else float(redshift),
        hubble_param=hubble,
        comoving=comoving,
        units=units,
        cosmology=cosmology,
        source_format=kind,
        source_paths=tuple(str(p) for p in pieces),
        quirks=tuple(quirks),
        attributes=extra,
    )
