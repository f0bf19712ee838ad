"""Snapshot readers: one particle model from every format, checked against the raw bytes.

Expected numbers are read independently in each test: Gadget-2 headers with
``struct`` from the file's bytes, block data with ``np.fromfile`` at the
offsets the record markers give, HDF5 datasets with h5py.
"""

from __future__ import annotations

import shutil
import struct
import warnings
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenghu.io.snapshots import (
    Field,
    FieldUnits,
    ParticleSet,
    Snapshot,
    SnapshotCountError,
    SnapshotError,
    SnapshotQuirkWarning,
    TruncatedSnapshotError,
    UnitSystem,
    UnknownSnapshotFormatError,
    read_snapshot,
    snapshot_format,
    write_gadget4,
    write_zarr,
)
from lenghu.io.snapshots.lazy import HDF5Source, lazy_array, rows_per_chunk
from lenghu.io.snapshots.model import total_counts

SIMS = "sims"


# ----------------------------------------------------------------------------- independent helpers
def raw_header(path: Path) -> dict:
    """The Gadget-2 header from the file's bytes with struct (not lenghu's parser)."""
    data = path.read_bytes()
    e = "<" if struct.unpack("<i", data[:4])[0] == 256 else ">"
    h = data[4:260]
    return {
        "e": e,
        "npart": struct.unpack(e + "6i", h[0:24]),
        "massarr": struct.unpack(e + "6d", h[24:72]),
        "time": struct.unpack(e + "d", h[72:80])[0],
        "redshift": struct.unpack(e + "d", h[80:88])[0],
        "npartTotal": struct.unpack(e + "6I", h[96:120]),
        "num_files": struct.unpack(e + "i", h[124:128])[0],
        "box": struct.unpack(e + "d", h[128:136])[0],
    }


def raw_blocks(path: Path) -> list[tuple[int, int]]:
    """(data offset, size) of every format-1 record after the header."""
    data = path.read_bytes()
    e = "<" if struct.unpack("<i", data[:4])[0] == 256 else ">"
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack(e + "I", data[off : off + 4])
        out.append((off + 4, n))
        off += n + 8
    return out[1:]


def gadget2_bytes(header: dict, blocks: list[tuple[str, np.ndarray]], e: str = "<", version: int = 1) -> bytes:
    """A Gadget-2 binary file written by this test (format 1 or 2, either byte order)."""

    def record(payload: bytes) -> bytes:
        return struct.pack(e + "I", len(payload)) + payload + struct.pack(e + "I", len(payload))

    h = struct.pack(e + "6i", *header["npart"]) + struct.pack(e + "6d", *header["massarr"])
    h += struct.pack(e + "dd", header.get("time", 0.0), header.get("redshift", 0.0)) + struct.pack(e + "ii", 0, 0)
    h += struct.pack(e + "6I", *header.get("npartTotal", header["npart"])) + struct.pack(e + "ii", 0, header.get("num_files", 1))
    h += struct.pack(e + "4d", header.get("box", 0.0), header.get("omega0", 0.0), header.get("omega_lambda", 0.0), header.get("h", 1.0))
    h += struct.pack(e + "ii", 0, 0) + struct.pack(e + "6I", 0, 0, 0, 0, 0, 0) + struct.pack(e + "i", 0)
    h = h.ljust(256, b"\0")
    out = b""
    for name, payload in [("HEAD", h)] + [(n, a.astype(a.dtype.newbyteorder(e)).tobytes()) for n, a in blocks]:
        if version == 2:
            out += record(name.ljust(4).encode() + struct.pack(e + "i", len(payload) + 8))
        out += record(payload)
    return out


def computed(field_or_array):
    data = field_or_array.data if isinstance(field_or_array, Field) else field_or_array
    return np.asarray(data.compute())


def quiet_read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SnapshotQuirkWarning)
        return read_snapshot(path)


# ----------------------------------------------------------------------------- real files: Gadget-2 binary
def test_galaxy_binary_counts_masses_and_data(real_data):
    path = real_data / SIMS / "gadget2_vaex" / "galaxy_littleendian.dat"
    hdr = raw_header(path)
    assert hdr["npart"] == (0, 40000, 20000, 0, 0, 0)  # stated in the data README
    snap = quiet_read(path)
    assert snap.source_format == "gadget2-binary-1"
    assert snap.counts == {1: 40000, 2: 20000}
    # mass table, no MASS block: the header's masses (from the bytes)
    assert snap.particles[1].mass_table == hdr["massarr"][1] and snap.particles[2].mass_table == hdr["massarr"][2]
    assert "masses" not in snap.particles[1].fields
    np.testing.assert_array_equal(computed(snap.particles[2].masses), np.full(20000, hdr["massarr"][2]))
    (pos_off, pos_size), (vel_off, _), (id_off, id_size) = raw_blocks(path)
    assert pos_size == 60000 * 12 and id_size == 60000 * 4
    pos = np.fromfile(path, dtype="<f4", count=60000 * 3, offset=pos_off).reshape(-1, 3)
    ids = np.fromfile(path, dtype="<u4", count=60000, offset=id_off)
    np.testing.assert_array_equal(computed(snap.particles[1].positions), pos[:40000])
    np.testing.assert_array_equal(computed(snap.particles[2].positions), pos[40000:])
    np.testing.assert_array_equal(computed(snap.particles[2].ids), ids[40000:])
    assert snap.units.assumed and snap.units.length_cm == pytest.approx(3.085678e21)


@pytest.mark.parametrize("name", ["gassphere_littleendian.dat", "gassphere_bigendian.dat"])
def test_gas_sphere_totals_zero_read_with_warning(real_data, name):
    path = real_data / SIMS / "gadget2_vaex" / name
    hdr = raw_header(path)
    assert hdr["npartTotal"] == (0,) * 6 and hdr["num_files"] == 0 and hdr["npart"][0] == 1472
    with pytest.warns(SnapshotQuirkWarning) as caught:
        snap = read_snapshot(path)
    messages = [str(w.message) for w in caught]
    assert any("totals are all 0" in m for m in messages) and any("file count is 0" in m for m in messages)
    assert snap.counts == {0: 1472}
    gas = snap.particles[0]
    # blocks: POS, VEL, ID, MASS, U (5888 = 1472 x 4 bytes each for the last three)
    assert [s for _, s in raw_blocks(path)] == [17664, 17664, 5888, 5888, 5888]
    assert set(gas.fields) == {"positions", "velocities", "ids", "masses", "InternalEnergy"}
    off = raw_blocks(path)[4][0]
    u = np.fromfile(path, dtype=hdr["e"] + "f4", count=1472, offset=off)
    np.testing.assert_array_equal(computed(gas.fields["InternalEnergy"]), u)
    assert any("totals are all 0" in q for q in snap.quirks)
    assert computed(gas.positions).dtype == np.dtype("float32")  # native order whatever the file's


def test_gas_sphere_byte_orders_agree(real_data):
    little = quiet_read(real_data / SIMS / "gadget2_vaex" / "gassphere_littleendian.dat")
    big = quiet_read(real_data / SIMS / "gadget2_vaex" / "gassphere_bigendian.dat")
    assert big.attributes["byteorder"] == "big" and little.attributes["byteorder"] == "little"
    for name in little.particles[0].fields:
        np.testing.assert_array_equal(computed(little.particles[0].fields[name]), computed(big.particles[0].fields[name]))


def test_simspin_gadget_binary(real_data):
    path = real_data / SIMS / "simspin" / "SimSpin_example_Gadget"
    hdr = raw_header(path)
    assert hdr["npart"] == (0, 0, 1000, 1500, 0, 0) and hdr["time"] == 10.0
    snap = quiet_read(path)
    assert snap.counts == {2: 1000, 3: 1500}
    assert snap.time == 10.0 and snap.comoving is False
    mass_off, mass_size = raw_blocks(path)[3]
    assert mass_size == 2500 * 4  # per-particle masses of both types
    masses = np.fromfile(path, dtype="<f4", count=2500, offset=mass_off)
    np.testing.assert_array_equal(computed(snap.particles[3].masses), masses[1000:])


# ----------------------------------------------------------------------------- real files: HDF5 dialects
def test_simspin_gadget_hdf5(real_data):
    path = real_data / SIMS / "simspin" / "SimSpin_example_HDF5.hdf5"
    with h5py.File(path) as h5:
        expected = {k: h5[f"PartType2/{k}"][()] for k in ("Coordinates", "Velocities", "Masses", "ParticleIDs")}
    snap = quiet_read(path)
    assert snap.source_format == "gadget-hdf5" and snap.counts == {2: 2000}
    p = snap.particles[2]
    np.testing.assert_array_equal(computed(p.positions), expected["Coordinates"])
    np.testing.assert_array_equal(computed(p.velocities), expected["Velocities"])
    np.testing.assert_array_equal(computed(p.masses), expected["Masses"])
    assert computed(p.ids).dtype == np.dtype("int32")
    assert snap.units.assumed


def test_eagle_singular_names_and_cgs_attributes(real_data):
    path = real_data / SIMS / "simspin" / "SimSpin_example_EAGLE.hdf5"
    with h5py.File(path) as h5:
        mass = h5["PartType4/Mass"][()]
        vel = h5["PartType0/Velocity"][()]
        coord_attrs = dict(h5["PartType0/Coordinates"].attrs)
        carbon = h5["PartType0/SmoothedElementAbundance/Carbon"][()]
        h = float(h5["Header"].attrs["HubbleParam"][0])
    snap = read_snapshot(path)
    assert snap.source_format == "eagle-hdf5" and snap.counts == {0: 100, 4: 2000}
    np.testing.assert_array_equal(computed(snap.particles[4].masses), mass)  # "Mass" -> masses
    np.testing.assert_array_equal(computed(snap.particles[0].velocities), vel)  # "Velocity" -> velocities
    np.testing.assert_array_equal(computed(snap.particles[0].fields["SmoothedElementAbundance/Carbon"]), carbon)
    u = snap.particles[0].fields["positions"].units
    assert (u.to_cgs, u.a_exponent, u.h_exponent) == (
        coord_attrs["CGSConversionFactor"][0], coord_attrs["aexp-scale-exponent"][0], coord_attrs["h-scale-exponent"][0])
    assert snap.particles[0].fields["velocities"].units.a_exponent == 0.5
    # unit system from the CGS factors of Coordinates, Mass, Velocity: Mpc, 1e10 Msun, km/s
    assert (snap.units.length_cm, snap.units.mass_g, snap.units.velocity_cm_s) == (3.085678e24, 1.989e43, 1e5)
    assert snap.comoving is True and snap.hubble_param == pytest.approx(h)
    assert snap.quirks == ()


def test_tng_cutout_counts_from_datasets(real_data):
    path = real_data / SIMS / "simspin" / "SimSpin_example_IllustrisTNG.hdf5"
    with h5py.File(path) as h5:
        this_file = list(h5["Header"].attrs["NumPart_ThisFile"])
        lengths = {t: h5[f"PartType{t}/Coordinates"].shape[0] for t in (0, 4)}
        to_cgs = float(h5["PartType0/Coordinates"].attrs["to_cgs"][0])
    assert this_file[0] == 13587 and lengths == {0: 100, 4: 2000}  # the header disagrees with the data
    with pytest.warns(SnapshotQuirkWarning, match="counts taken from the datasets"):
        snap = read_snapshot(path)
    assert snap.source_format == "illustristng-hdf5"
    assert snap.counts == lengths
    assert snap.particles[0].fields["positions"].units.to_cgs == to_cgs
    assert snap.particles[0].fields["GFM_Metals"].shape == (100, 10)
    assert snap.units.length_cm == pytest.approx(3.085678e21)


def test_header_counts_larger_than_data_without_cutout_marker_is_an_error(real_data, tmp_path):
    copy = tmp_path / "not_a_cutout.hdf5"
    shutil.copyfile(real_data / SIMS / "simspin" / "SimSpin_example_IllustrisTNG.hdf5", copy)
    with h5py.File(copy, "r+") as h5:
        for key in ("CutoutID", "CutoutType", "CutoutRequest", "RunLabel"):
            del h5["Header"].attrs[key]
    with pytest.raises(SnapshotCountError, match="NumPart_ThisFile says 13587"):
        read_snapshot(copy)


# ----------------------------------------------------------------------------- broken binaries
def test_truncated_binary_is_a_clear_error(real_data, tmp_path):
    data = (real_data / SIMS / "gadget2_vaex" / "galaxy_littleendian.dat").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[:-1000])
    with pytest.raises(TruncatedSnapshotError, match="file ends at byte"):
        read_snapshot(cut)


def test_binary_header_counts_exceeding_the_blocks_is_an_error(real_data, tmp_path):
    data = bytearray((real_data / SIMS / "gadget2_vaex" / "galaxy_littleendian.dat").read_bytes())
    struct.pack_into("<i", data, 4 + 4, 50000)  # npart[1] 40000 -> 50000
    struct.pack_into("<I", data, 4 + 100, 50000)  # npartTotal[1] too
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(data))
    with pytest.raises(SnapshotCountError, match="POS block"):
        quiet_read(bad)


def test_unknown_content_is_rejected(tmp_path):
    junk = tmp_path / "snapshot_000.hdf5"  # the name says snapshot, the content does not
    junk.write_bytes(b"hello, not a snapshot" * 10)
    assert snapshot_format(junk) is None
    with pytest.raises(UnknownSnapshotFormatError):
        read_snapshot(junk)


# ----------------------------------------------------------------------------- format 2, doubles, big-endian, several files
@pytest.mark.parametrize("e", ["<", ">"])
def test_format2_double_precision_and_64bit_ids(tmp_path, e):
    rng = np.random.default_rng(1)
    pos = rng.normal(size=(7, 3))
    vel = rng.normal(size=(7, 3)).astype(np.float32)
    ids = np.arange(2**40, 2**40 + 7, dtype=np.uint64)
    mass = rng.random(3).astype(np.float64)
    u = rng.random(3).astype(np.float64)
    header = {"npart": (3, 4, 0, 0, 0, 0), "massarr": (0, 0.5, 0, 0, 0, 0), "time": 0.5, "redshift": 1.0,
              "box": 100.0, "omega0": 0.3, "omega_lambda": 0.7, "h": 0.7}
    path = tmp_path / "snap2"
    path.write_bytes(gadget2_bytes(header, [("POS", pos), ("VEL", vel), ("ID", ids), ("MASS", mass), ("U", u)], e, 2))
    snap = read_snapshot(path)
    assert snap.source_format == "gadget2-binary-2"
    assert snap.counts == {0: 3, 1: 4} and snap.comoving is True and snap.time == 0.5
    np.testing.assert_array_equal(computed(snap.particles[1].positions), pos[3:])
    assert computed(snap.particles[1].positions).dtype == np.float64
    np.testing.assert_array_equal(computed(snap.particles[1].ids), ids[3:])
    np.testing.assert_array_equal(computed(snap.particles[0].masses), mass)
    assert snap.particles[1].mass_table == 0.5
    np.testing.assert_array_equal(computed(snap.particles[0].fields["InternalEnergy"]), u)


def test_binary_multi_file(tmp_path):
    rng = np.random.default_rng(2)
    parts = []
    for i, n in enumerate((5, 3)):
        pos = rng.random((n, 3)).astype(np.float32)
        ids = np.arange(10 * i, 10 * i + n, dtype=np.uint32)
        header = {"npart": (0, n, 0, 0, 0, 0), "massarr": (0, 1.0, 0, 0, 0, 0), "npartTotal": (0, 8, 0, 0, 0, 0),
                  "num_files": 2}
        (tmp_path / f"snap_000.{i}").write_bytes(gadget2_bytes(header, [("POS", pos), ("VEL", pos), ("ID", ids)]))
        parts.append((pos, ids))
    snap = quiet_read(tmp_path / "snap_000.0")
    assert snap.counts == {1: 8} and len(snap.source_paths) == 2
    np.testing.assert_array_equal(computed(snap.particles[1].ids), np.concatenate([p[1] for p in parts]))
    (tmp_path / "snap_000.1").unlink()
    with pytest.raises(SnapshotError, match="missing"):
        read_snapshot(tmp_path / "snap_000.0")


@pytest.fixture(scope="module")
def cosmic_web_snapdir(tmp_path_factory) -> Path:
    """A 16^3-particle cosmic web from lenghu's own simulator, split into 3 files."""
    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web

    out = tmp_path_factory.mktemp("web")
    simulate_cosmic_web(CosmicWebConfig(particles=16**3, box_mpc_h=50.0, seed=3, files_per_snapshot=3), out, progress=False)
    return out / "snapdir_000"


def test_multi_file_gadget4_snapdir(cosmic_web_snapdir):
    pieces = sorted(cosmic_web_snapdir.glob("*.hdf5"))
    assert len(pieces) == 3
    expected_pos, expected_ids = [], []
    for p in sorted(pieces, key=lambda p: int(p.name.split(".")[1])):
        with h5py.File(p) as h5:
            expected_pos.append(h5["PartType1/Coordinates"][()])
            expected_ids.append(h5["PartType1/ParticleIDs"][()])
            box, a = float(h5["Header"].attrs["BoxSize"]), float(h5["Header"].attrs["Time"])
            mass = float(h5["Header"].attrs["MassTable"][1])
    for source in (cosmic_web_snapdir, cosmic_web_snapdir / "snapshot_000.0.hdf5"):
        snap = read_snapshot(source)
        assert snap.source_format == "gadget4-hdf5" and len(snap.source_paths) == 3
        assert snap.counts == {1: 16**3}
        dm = snap.particles[1]
        assert isinstance(dm.positions, da.Array)  # lazy
        np.testing.assert_array_equal(computed(dm.positions), np.concatenate(expected_pos))
        np.testing.assert_array_equal(computed(dm.ids), np.concatenate(expected_ids))
        assert snap.box_size == (box, box, box) and snap.time == a and snap.comoving is True
        assert dm.mass_table == mass
        assert (dm.fields["positions"].units.a_exponent, dm.fields["positions"].units.h_exponent) == (1.0, -1.0)
        assert snap.units.length_cm == pytest.approx(3.085678e24)


def test_lazy_arrays_chunk_by_bytes(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as h5:
        h5["a"] = np.arange(3000, dtype=np.float32).reshape(1000, 3)
    arr = lazy_array(HDF5Source(str(path), "a", (1000, 3), np.dtype("float32")), target_bytes=1200)
    assert arr.chunks[0][0] == 100 and arr.chunks[1] == (3,)
    np.testing.assert_array_equal(arr.compute(), np.arange(3000, dtype=np.float32).reshape(1000, 3))
    assert rows_per_chunk(12) == 100 * 2**20 // 12


def test_total_counts_use_the_high_word():
    assert total_counts([5, 7], [1, 0]) == (2**32 + 5, 7)
    assert total_counts(np.array([2**40], dtype=np.uint64), [0]) == (2**40,)


# ----------------------------------------------------------------------------- SWIFT (synthetic, in SWIFT's layout)
def write_swift(path: Path, n_gas: int = 4, n_dm: int = 6) -> dict:
    rng = np.random.default_rng(5)
    data = {0: rng.random((n_gas, 3)), 1: rng.random((n_dm, 3))}
    counts = np.array([n_gas, n_dm, 0, 0, 0, 0, 0], dtype=np.int64)
    with h5py.File(path, "w") as h5:
        hdr = h5.create_group("Header")
        hdr.attrs["NumPart_ThisFile"] = counts
        hdr.attrs["NumPart_Total"] = counts.astype(np.uint64)
        hdr.attrs["NumPart_Total_HighWord"] = np.zeros(7, dtype=np.uint64)
        hdr.attrs["NumFilesPerSnapshot"] = np.array([1], dtype=np.int32)
        hdr.attrs["BoxSize"] = np.array([10.0, 10.0, 10.0])
        hdr.attrs["Time"] = np.array([0.02])
        hdr.attrs["Scale-factor"] = np.array([0.5])
        hdr.attrs["Redshift"] = np.array([1.0])
        hdr.attrs["MassTable"] = np.zeros(7)
        hdr.attrs["Code"] = "SWIFT"
        units = h5.create_group("Units")
        for key, value in (("Unit length in cgs (U_L)", 3.08567758e24), ("Unit mass in cgs (U_M)", 1.98841e43),
                           ("Unit time in cgs (U_t)", 3.08567758e19), ("Unit current in cgs (U_I)", 1.0),
                           ("Unit temperature in cgs (U_T)", 1.0)):
            units.attrs[key] = np.array([value])
        cosmo = h5.create_group("Cosmology")
        cosmo.attrs["Cosmological run"] = np.array([1])
        cosmo.attrs["h"] = np.array([0.6777])
        cosmo.attrs["Omega_m"] = np.array([0.307])
        for t, pos in data.items():
            g = h5.create_group(f"PartType{t}")
            ds = g.create_dataset("Coordinates", data=pos)
            ds.attrs["Conversion factor to CGS (not including cosmological corrections)"] = np.array([3.08567758e24])
            ds.attrs["a-scale exponent"] = np.array([1.0])
            ds.attrs["h-scale exponent"] = np.array([0.0])
            ds.attrs["Description"] = "Co-moving position of the particles"
            g.create_dataset("ParticleIDs", data=np.arange(len(pos), dtype=np.uint64))
            g.create_dataset("Masses", data=np.ones(len(pos), dtype=np.float32))
    return data


def test_swift_units_64bit_counts_and_scale_factor(tmp_path):
    path = tmp_path / "swift_0000.hdf5"
    data = write_swift(path)
    snap = read_snapshot(path)
    assert snap.source_format == "swift-hdf5"
    assert snap.counts == {0: 4, 1: 6}
    assert snap.time == 0.5 and snap.comoving is True  # Scale-factor, not SWIFT's code Time
    assert snap.hubble_param == pytest.approx(0.6777) and snap.cosmology["omega0"] == pytest.approx(0.307)
    assert snap.units.length_cm == pytest.approx(3.08567758e24)
    assert snap.units.velocity_cm_s == pytest.approx(1e5)  # U_L / U_t
    u = snap.particles[1].fields["positions"].units
    assert (u.to_cgs, u.a_exponent, u.h_exponent) == (3.08567758e24, 1.0, 0.0)
    assert u.description.startswith("Co-moving")
    np.testing.assert_array_equal(computed(snap.particles[0].positions), data[0])


# ----------------------------------------------------------------------------- round trips
def _assert_same_particles(a: Snapshot, b: Snapshot, exact_units: bool) -> None:
    assert a.counts == b.counts
    for t, p in a.particles.items():
        q = b.particles[t]
        assert set(p.fields) == set(q.fields)
        assert p.mass_table == q.mass_table
        for name, f in p.fields.items():
            x, y = computed(f), computed(q.fields[name])
            assert x.dtype == y.dtype and x.shape == y.shape
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"PartType{t}/{name}"
            g = q.fields[name].units
            if exact_units:
                assert f.units == g
            else:
                assert (f.units.to_cgs, f.units.a_exponent, f.units.h_exponent) == (g.to_cgs, g.a_exponent, g.h_exponent)


REAL_SNAPSHOTS = [
    ("gadget2_vaex", "galaxy_littleendian.dat"),
    ("gadget2_vaex", "gassphere_littleendian.dat"),
    ("gadget2_vaex", "gassphere_bigendian.dat"),
    ("simspin", "SimSpin_example_Gadget"),
    ("simspin", "SimSpin_example_HDF5.hdf5"),
    ("simspin", "SimSpin_example_EAGLE.hdf5"),
    ("simspin", "SimSpin_example_IllustrisTNG.hdf5"),
]


@pytest.mark.parametrize("folder,name", REAL_SNAPSHOTS)
def test_real_snapshots_round_trip_zarr_and_gadget4(real_data, tmp_path, folder, name):
    original = quiet_read(real_data / SIMS / folder / name)
    back = read_snapshot(write_zarr(original, tmp_path / "s.zarr"))
    _assert_same_particles(original, back, exact_units=True)
    for attr in ("box_size", "time", "redshift", "hubble_param", "comoving", "units", "cosmology", "quirks",
                 "attributes", "source_format"):
        assert getattr(back, attr) == getattr(original, attr), attr
    [g4] = write_gadget4(original, tmp_path / "g4", 7)
    assert g4.name == "snapshot_007.hdf5"
    again = read_snapshot(g4)
    assert again.source_format == "gadget4-hdf5"
    _assert_same_particles(original, again, exact_units=False)
    for attr in ("box_size", "time", "hubble_param", "comoving"):
        assert getattr(again, attr) == getattr(original, attr), attr
    assert {k: v for k, v in again.attributes.items() if k in original.attributes} == dict(original.attributes)


def test_zarr_chunks_and_layout(tmp_path, cosmic_web_snapdir):
    import zarr

    snap = read_snapshot(cosmic_web_snapdir)
    store = write_zarr(snap, tmp_path / "web.zarr")
    root = zarr.open_group(store, mode="r")
    assert root.attrs["lenghu"] == {"kind": "snapshot", "layout": 1}
    arr = root["PartType1/positions"]
    assert arr.shape == (4096, 3) and arr.dtype == np.float32
    assert arr.attrs["units"]["a_exponent"] == 1.0 and arr.attrs["source_name"] == "Coordinates"
    assert root["PartType1"].attrs["mass_table"] == snap.particles[1].mass_table
    assert snapshot_format(store) == "lenghu-zarr"


# ----------------------------------------------------------------------------- property test
def _snapshot_from_arrays(arrays: dict, masses: dict, comoving: bool) -> Snapshot:
    particles = {}
    for t, fields in arrays.items():
        count = fields["positions"].shape[0]
        built = {
            name: Field(name, da.from_array(a, chunks=max(1, (count + 1) // 2)), FieldUnits(1.5, 1.0, -1.0, "d"), name)
            for name, a in fields.items()
        }
        particles[t] = ParticleSet(t, count, built, masses.get(t))
    return Snapshot(particles, (10.0, 10.0, 10.0), 0.5 if comoving else 3.0, 1.0 if comoving else 0.0, 0.7, comoving,
                    UnitSystem(3.085678e24, 1.989e43, 1e5), {"omega0": 0.3}, "test")


@st.composite
def particle_sets(draw):
    types = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3, unique=True))
    arrays, masses = {}, {}
    for t in types:
        n = draw(st.integers(1, 40))
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        fdtype = draw(st.sampled_from(["float32", "float64"]))
        fields = {"positions": rng.normal(size=(n, 3)).astype(fdtype)}
        if draw(st.booleans()):
            fields["velocities"] = rng.normal(size=(n, 3)).astype(fdtype)
        fields["ids"] = rng.integers(0, 2**32 - 1, size=n).astype(draw(st.sampled_from(["uint32", "uint64"])))
        if draw(st.booleans()):
            fields["masses"] = rng.random(n).astype(fdtype)
        else:
            masses[t] = float(draw(st.floats(1e-6, 1e3)))
        if draw(st.booleans()):
            fields["Metals"] = rng.random((n, 4)).astype("float32")
        arrays[t] = fields
    return arrays, masses, draw(st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(particle_sets())
def test_property_particle_sets_through_every_format_pair(tmp_path_factory, case):
    arrays, masses, comoving = case
    original = _snapshot_from_arrays(arrays, masses, comoving)
    folder = tmp_path_factory.mktemp("prop")
    writers = {
        "zarr": lambda s, name: write_zarr(s, folder / f"{name}.zarr"),
        "gadget4": lambda s, name: write_gadget4(s, folder / name, 0)[0],
    }
    for first, w1 in writers.items():
        for second, w2 in writers.items():
            middle = read_snapshot(w1(original, f"{first}-a"))
            final = read_snapshot(w2(middle, f"{first}-{second}-b"))
            _assert_same_particles(original, final, exact_units=False)
            assert final.time == original.time and final.comoving == original.comoving
