"""Field names and unit conventions shared by the snapshot dialects.

Gadget-family files name the same quantity differently (``Coordinates``,
``POS``; ``Masses``, EAGLE's ``Mass``), and files without unit attributes
(Gadget-2 binary, plain Gadget HDF5) still follow Gadget's conventions: a
comoving position is stored as ``a * x / h`` in the unit length, a velocity as
``sqrt(a) dx/dt``, a mass as ``m / h``. :func:`convention_units` gives those
conventions so that every field of every snapshot carries units.
"""

from __future__ import annotations

from lenghu.io.snapshots.model import IDS, MASSES, POSITIONS, VELOCITIES, FieldUnits, UnitSystem

#: File names of the canonical fields (HDF5 dialects), first match wins.
HDF5_ALIASES = {
    POSITIONS: ("Coordinates",),
    VELOCITIES: ("Velocities", "Velocity"),
    MASSES: ("Masses", "Mass"),
    IDS: ("ParticleIDs",),
}

#: Gadget-2 binary block labels (format 2) and their field names.
BINARY_BLOCK_NAMES = {
    "POS": POSITIONS,
    "VEL": VELOCITIES,
    "ID": IDS,
    "MASS": MASSES,
    "U": "InternalEnergy",
    "RHO": "Density",
    "HSML": "SmoothingLength",
    "POT": "Potential",
    "ACCE": "Acceleration",
    "ENDT": "RateOfChangeOfEntropy",
    "TSTP": "TimeStep",
    "NE": "ElectronAbundance",
    "NH": "NeutralHydrogenAbundance",
    "SFR": "StarFormationRate",
    "AGE": "StellarFormationTime",
    "Z": "Metallicity",
}

#: Canonical field -> name written to Gadget-4 HDF5.
GADGET4_NAMES = {POSITIONS: "Coordinates", VELOCITIES: "Velocities", MASSES: "Masses", IDS: "ParticleIDs"}

# name: (length, mass, velocity exponents of the code units, a exponent, h exponent)
_GADGET_CONVENTION = {
    POSITIONS: (1, 0, 0, 1.0, -1.0),
    VELOCITIES: (0, 0, 1, 0.5, 0.0),
    MASSES: (0, 1, 0, 0.0, -1.0),
    "InternalEnergy": (0, 0, 2, 0.0, 0.0),
    "Density": (-3, 1, 0, -3.0, 2.0),
    "SmoothingLength": (1, 0, 0, 1.0, -1.0),
    "Potential": (0, 0, 2, -1.0, 0.0),
}
_DIMENSIONLESS = {IDS, "ElectronAbundance", "NeutralHydrogenAbundance", "Metallicity"}


def canonical_name(file_name: str) -> str:
    """The model's name for an HDF5 dataset name (``Velocity`` -> ``velocities``; others unchanged)."""
    for canonical, aliases in HDF5_ALIASES.items():
        if file_name in aliases:
            return canonical
    return file_name


def convention_units(name: str, units: UnitSystem, comoving: bool | None) -> FieldUnits:
    """Gadget's conventional units of a field (``assumed=True``); unknown fields get ``to_cgs=None``.

    In a non-comoving run the a exponents are zero.
    """
    if name in _DIMENSIONLESS:
        return FieldUnits(to_cgs=1.0, assumed=True)
    rule = _GADGET_CONVENTION.get(name)
    if rule is None:
        return FieldUnits(to_cgs=None, assumed=True)
    le, me, ve, a_exp, h_exp = rule
    to_cgs = units.length_cm**le * units.mass_g**me * units.velocity_cm_s**ve
    return FieldUnits(to_cgs=to_cgs, a_exponent=a_exp if comoving is not False else 0.0, h_exponent=h_exp, assumed=True)
