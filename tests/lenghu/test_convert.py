"""``lenghu convert``: bit-identical round trips, fitsverify-clean FITS, valid VOTables, batches.

FITS files are compared HDU by HDU on their bytes, split by a small parser in
this file (header bytes up to END; data bytes as long as BITPIX x NAXISn says),
independent of lenghu's own FITS code.
"""

from __future__ import annotations

import gzip
import itertools
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenghu.cli import main
from lenghu.convert.api import ConversionError, ConvertOptions, convert
from lenghu.convert.batch import convert_many
from lenghu.convert.tables import TABLE_FORMATS, read_table, write_table

WFPC2 = ("ccd", "wfpc2_mef", "test0.fits")
CUBE = ("cubes", "example_cube.fits")
EMMI = ("detection", "sep_emmi", "image.fits")
KAST = ("ccd", "kast_blue", "b21.fits.gz")
IMAGES = [WFPC2, CUBE, EMMI, KAST]

# fpack/funpack (libcfitsio-bin) are installed by `make setup`; without them these tests fail, not skip.
needs_fpack = pytest.mark.usefixtures("fpack_installed")


@pytest.fixture
def fpack_installed():
    assert shutil.which("fpack") and shutil.which("funpack"), "run `make setup` (installs libcfitsio-bin)"


def fits_units(data: bytes) -> list[tuple[bytes, bytes]]:
    """(header bytes through the END card, data bytes without padding) of each HDU, parsed here."""
    out, off = [], 0
    while off < len(data):
        cards, end = {}, None
        pos = off
        while end is None:
            block = data[pos : pos + 2880]
            for i in range(0, 2880, 80):
                card = block[i : i + 80].decode("ascii")
                key = card[:8].strip()
                if key == "END":
                    end = pos + i + 80
                    break
                if card[8:10] == "= ":
                    cards[key] = card[10:].split("/")[0].strip()
            pos += 2880
        naxis = int(cards.get("NAXIS", 0))
        size = 0
        if naxis:
            size = abs(int(cards["BITPIX"])) // 8 * int(cards.get("GCOUNT", 1))
            n = 1
            for i in range(1, naxis + 1):
                n *= int(cards[f"NAXIS{i}"])
            size *= n
            size += int(cards.get("PCOUNT", 0)) * abs(int(cards["BITPIX"])) // 8
        data_start = pos
        out.append((data[off:end], data[data_start : data_start + size]))
        off = data_start + -(-size // 2880) * 2880
    return out


def raw_bytes(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.read_bytes()[:2] == b"\x1f\x8b" else path.read_bytes()


def assert_same_fits(original: Path, copy: Path, nan_dtype: str | None = None) -> None:
    """Headers and data byte for byte; with ``nan_dtype`` NaNs may differ in their payload bits only."""
    a, b = fits_units(raw_bytes(original)), fits_units(raw_bytes(copy))
    assert len(a) == len(b)
    for i, ((ha, da_), (hb, db)) in enumerate(zip(a, b)):
        assert ha == hb, f"HDU {i}: headers differ"
        if nan_dtype is None:
            assert da_ == db, f"HDU {i}: data differ"
        else:
            x, y = np.frombuffer(da_, ">" + nan_dtype), np.frombuffer(db, ">" + nan_dtype)
            assert np.array_equal(x, y, equal_nan=True), f"HDU {i}: data differ"
            assert np.array_equal(np.isnan(x), np.isnan(y))


def quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


# ----------------------------------------------------------------------------- images <-> stores
@pytest.mark.parametrize("parts", IMAGES, ids=lambda p: p[-1])
@pytest.mark.parametrize("ext", [".zarr", ".h5"])
def test_fits_to_store_and_back_is_bit_identical(real_data, tmp_path, fitsverify, parts, ext):
    src = real_data.joinpath(*parts)
    store = tmp_path / f"store{ext}"
    quiet(convert, src, store)
    back = tmp_path / "back.fits"
    quiet(convert, store, back)
    assert_same_fits(src, back)
    if parts != KAST:  # the Kast file pads its last block with non-zero bytes; FITS (and we) write zeros
        assert back.read_bytes() == raw_bytes(src)
    errors, report = fitsverify(back)
    assert errors == 0, report


def test_cube_volume_keeps_wcs_units_and_squeezes(real_data, tmp_path):
    import zarr

    src = real_data.joinpath(*CUBE)
    header = fits.getheader(src)
    out = tmp_path / "cube.zarr"
    convert(src, out, options=ConvertOptions(squeeze=True))
    hdu = zarr.open_group(out, mode="r")["hdu0"]
    assert hdu["data"].shape == (7, 4, 3)  # 4-D FITS (1 x 7 x 4 x 3 in numpy order), degenerate axis dropped
    assert hdu.attrs["shape"] == [1, 7, 4, 3]
    np.testing.assert_array_equal(hdu["data"][:], fits.getdata(src)[0])
    wcs = hdu.attrs["wcs"]
    assert wcs["ctype"] == [header["CTYPE1"].strip(), header["CTYPE2"].strip(), header["CTYPE3"].strip(), ""]
    assert wcs["crval"][:3] == [header["CRVAL1"], header["CRVAL2"], header["CRVAL3"]]
    assert wcs["spectral_axis"] == 2 and wcs["celestial"] is True and wcs["degenerate_axes"] == [4]
    assert hdu.attrs["bunit"] == header["BUNIT"].strip() == "Jy/beam"
    back = tmp_path / "cube.fits"
    convert(out, back)
    assert back.read_bytes() == src.read_bytes()


def test_unsigned_and_scaled_images_are_stored_as_physical_or_raw(real_data, tmp_path):
    import zarr

    out = tmp_path / "b21.zarr"
    quiet(convert, real_data.joinpath(*KAST), out)
    hdu = zarr.open_group(out, mode="r")["hdu0"]
    assert hdu.attrs["storage"] == "unsigned" and hdu["data"].dtype == np.uint16
    with fits.open(real_data.joinpath(*KAST)) as hdul:
        np.testing.assert_array_equal(hdu["data"][:], hdul[0].data)  # astropy's physical uint16 values
    out2 = tmp_path / "emmi.zarr"
    quiet(convert, real_data.joinpath(*EMMI), out2)
    hdu = zarr.open_group(out2, mode="r")["hdu0"]
    assert hdu.attrs["storage"] == "raw" and hdu["data"].dtype == np.int16
    header = quiet(fits.getheader, real_data.joinpath(*EMMI))
    assert (hdu.attrs["bscale"], hdu.attrs["bzero"]) == (header["BSCALE"], header["BZERO"])


@pytest.mark.parametrize("squeeze", [False, True])
def test_unsigned16_fast_path_gives_astropys_values_and_the_same_file_back(tmp_path, fitsverify, squeeze):
    """The uint16 road into Zarr (read, flip the sign bit, store big-endian) against astropy's scaled read.

    Chunks of 512 bytes split each image into several chunks, the last one partial; the values cover
    both ends of the range (0 and 65535, stored as -32768 and 32767) and the sign boundary.
    The file also holds HDUs that must NOT take the fast road: BZERO = 32768 with BSCALE = 2,
    int16 without offset, and uint32 (BZERO = 2^31).
    """
    import json

    import zarr

    from lenghu.convert.fits_store import fits_to_store, is_unsigned16, plan_hdu
    from lenghu.io.fitsfile import FitsFile

    rng = np.random.default_rng(5)
    flat = rng.integers(0, 65536, 37 * 53, dtype=np.uint16)
    flat[:6] = [0, 1, 32767, 32768, 32769, 65535]
    uint16 = flat.reshape(37, 53)
    cube = rng.integers(0, 65536, (1, 19, 23), dtype=np.uint16)  # a degenerate axis: squeezed or not
    scaled = fits.ImageHDU(rng.integers(-300, 300, (11, 13)).astype(np.int16), name="SCALED")
    scaled.header["BSCALE"], scaled.header["BZERO"] = 2, 32768
    hdus = [fits.PrimaryHDU(uint16), fits.ImageHDU(cube, name="CUBE"), scaled,
            fits.ImageHDU(rng.integers(-9, 9, (5, 7)).astype(np.int16), name="PLAIN16"),
            fits.ImageHDU(rng.integers(0, 2**32, (4, 6), dtype=np.uint32), name="U32")]
    hdus[1].header["OBSERVER"] = "fast path"
    src = tmp_path / "raw.fits"
    fits.HDUList(hdus).writeto(src)

    plans = [plan_hdu(info) for info in FitsFile(src).hdus]
    assert [is_unsigned16(p) for p in plans] == [True, True, False, False, False]

    out = tmp_path / "raw.zarr"
    fits_to_store(src, out, "zarr", squeeze=squeeze, chunk_bytes=512)
    root = zarr.open_group(out, mode="r")
    with fits.open(src) as hdul:  # astropy: BZERO/BSCALE applied, unsigned as uint16/uint32
        for i, hdu in enumerate(hdul):
            group = root[f"hdu{i}"]
            stored = group["data"][:]
            expected = hdu.data.reshape(stored.shape)
            assert stored.dtype == (expected.dtype.newbyteorder("=") if i != 2 else np.int16)
            if i in (0, 1):  # physical uint16 values in native order, whatever the stored byte order
                assert stored.dtype == np.dtype("=u2")
            if i == 2:  # raw: the stored int16 values, physical = BZERO + BSCALE * value
                np.testing.assert_array_equal(group.attrs["bzero"] + group.attrs["bscale"] * stored.astype(float),
                                              expected)
            else:
                np.testing.assert_array_equal(stored, expected)
            assert group.attrs["header"] == [card.image for card in fits.getheader(src, i).cards]
            codecs = json.loads((out / f"hdu{i}" / "data" / "zarr.json").read_text())["codecs"]
            endian = codecs[0]["configuration"]["endian"]
            assert endian == ("big" if i in (0, 1) else "little")
            assert group["data"].nchunks >= (2 if i in (0, 1) else 1)
    if squeeze:
        assert root["hdu1"]["data"].shape == (19, 23)
    back = tmp_path / "back.fits"
    convert(out, back)
    assert back.read_bytes() == src.read_bytes()
    errors, report = fitsverify(back)
    assert errors == 0, report


def test_mef_store_keeps_every_chip_wcs(real_data, tmp_path):
    import zarr

    src = real_data.joinpath(*WFPC2)
    out = tmp_path / "wfpc2.zarr"
    convert(src, out)
    root = zarr.open_group(out, mode="r")
    assert root.attrs["lenghu"] == {"kind": "fits", "layout": 1}
    assert root["hdu0"].attrs["storage"] == "none"
    for i in range(1, 5):
        h = fits.getheader(src, i)
        g = root[f"hdu{i}"]
        assert g.attrs["extname"] == "SCI" and g.attrs["extver"] == i
        assert g.attrs["wcs"]["crval"] == [h["CRVAL1"], h["CRVAL2"]]
        assert g.attrs["wcs"]["cd"] == [[h["CD1_1"], h["CD1_2"]], [h["CD2_1"], h["CD2_2"]]]
        assert len(g.attrs["header"]) == len(h.cards)
        np.testing.assert_array_equal(g["data"][:], fits.getdata(src, i))


def test_mef_with_a_table_extension_round_trips(tmp_path, fitsverify):
    src = tmp_path / "mixed.fits"
    table = fits.BinTableHDU(sample_table(), name="CAT")
    image = fits.ImageHDU(np.arange(12, dtype=np.float32).reshape(3, 4), name="SCI")
    fits.HDUList([fits.PrimaryHDU(), image, table]).writeto(src)
    for ext in (".zarr", ".h5"):
        convert(src, tmp_path / f"m{ext}")
        back = tmp_path / f"back{ext}.fits"
        convert(tmp_path / f"m{ext}", back)
        assert back.read_bytes() == src.read_bytes()
        errors, report = fitsverify(back)
        assert errors == 0, report


# ----------------------------------------------------------------------------- tile compression
@needs_fpack
@pytest.mark.parametrize("parts", IMAGES, ids=lambda p: p[-1])
def test_fz_round_trip_is_lossless(real_data, tmp_path, fitsverify, parts):
    src = real_data.joinpath(*parts)
    packed = tmp_path / "x.fits.fz"
    result = quiet(convert, src, packed)
    assert result.notes == ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the EMMI header's ESO-LOG cards
        with fits.open(packed, disable_image_compression=True) as hdul:
            z = [h.header for h in hdul if h.header.get("ZIMAGE")]
    assert z and all(h["ZCMPTYPE"] == ("GZIP_2" if h["ZBITPIX"] < 0 else "RICE_1") for h in z)
    assert all(h.get("ZQUANTIZ", "NONE") == "NONE" for h in z if h["ZBITPIX"] < 0)
    for path in (packed,):
        errors, report = fitsverify(path)
        assert errors == 0, report
    back = tmp_path / "back.fits"
    quiet(convert, packed, back)
    assert_same_fits(src, back)
    errors, report = fitsverify(back)
    assert errors == 0, report


@needs_fpack
def test_fz_quantises_floats_only_when_asked_and_records_it(tmp_path):
    from lenghu.io.inspect import describe

    rng = np.random.default_rng(0)
    original = (1000 + 10 * rng.normal(size=(256, 256))).astype(np.float32)  # noisy: fpack quantises tiles
    src = tmp_path / "float.fits"
    fits.PrimaryHDU(original).writeto(src)
    lossless = convert(src, tmp_path / "l.fz")
    assert lossless.notes == ()
    with fits.open(tmp_path / "l.fz") as hdul:
        assert np.array_equal(hdul[1].data, original)
    packed = tmp_path / "q.fz"
    result = convert(src, packed, options=ConvertOptions(quantize=4))
    assert any("lossy" in n for n in result.notes)
    with fits.open(packed, disable_image_compression=True) as hdul:
        assert hdul[1].header["ZQUANTIZ"] == "SUBTRACTIVE_DITHER_1" and hdul[1].header["ZDITHER0"] == 1
    assert describe(packed).hdus[1].compression["lossless"] is False
    assert describe(tmp_path / "l.fz").hdus[1].compression["lossless"] is True
    with fits.open(packed) as hdul:
        data = hdul[1].data
    assert not np.array_equal(data, original)
    assert np.abs(data - original).max() < 10 / 4  # within the quantisation step (sigma / q)


@needs_fpack
@pytest.mark.parametrize("floats", [False, True], ids=["uint16", "float32"])
def test_fz_of_a_mosaic_in_parallel_is_byte_for_byte_one_fpack_run(tmp_path, fitsverify, floats):
    from lenghu.convert.fz import compress

    rng = np.random.default_rng(3)
    primary = fits.PrimaryHDU()
    primary.header["EXPTIME"] = (30.0, "[s] exposure time")
    primary.header["COMMENT"] = "a mosaic exposure: no data in the primary HDU"
    hdus = [primary]
    for i, shape in enumerate([(300, 200), (301, 199), (64, 512), (300, 200)]):
        values = 1000 + rng.normal(0, 20, shape)
        if floats:
            data = values.astype(np.float32)
        else:
            data = np.round(values).astype(np.uint16)  # written as int16 with BZERO 32768
        hdus.append(fits.ImageHDU(data, name=f"CCD{i + 1}"))
    hdus[2].header["HISTORY"] = "a card only this extension has"
    src = tmp_path / "mosaic.fits"
    fits.HDUList(hdus).writeto(src)
    before = src.read_bytes()
    single, parallel = tmp_path / "single.fz", tmp_path / "parallel.fz"
    # One fpack run over the whole file: the reference (lenghu codes 16-bit images itself, see test_fz_rice).
    options = ["-g2", "-q", "0"] if floats else ["-r"]
    subprocess.run([shutil.which("fpack"), "-C", *options, "-O", str(single), str(src)], check=True)
    compress(src, parallel, workers=3)
    assert parallel.read_bytes() == single.read_bytes()
    assert src.read_bytes() == before  # the input is only read
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.fits", "parallel.fz", "single.fz"]  # no scratch left
    errors, report = fitsverify(parallel)
    assert errors == 0, report
    back = tmp_path / "back.fits"
    quiet(convert, parallel, back)
    assert_same_fits(src, back)


@needs_fpack
def test_fz_refuses_64bit_integers_clearly(tmp_path):
    from lenghu.convert.fz import CompressionUnsupportedError

    src = tmp_path / "i8.fits"
    fits.PrimaryHDU(np.arange(6, dtype=np.int64)).writeto(src)
    with pytest.raises(CompressionUnsupportedError, match="64-bit"):
        convert(src, tmp_path / "i8.fits.fz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i8.fits"]


# ----------------------------------------------------------------------------- catalogues
def sample_table() -> Table:
    import astropy.units as u

    t = Table()
    t["id"] = np.arange(5, dtype=np.int32)
    t["ra"] = np.array([10.5, 20.25, 30.125, 40.0, 359.9999999]) * u.deg
    t["dec"] = np.array([-1.5, 0.0, 1.5, 45.0, -89.9]) * u.deg
    t["flux"] = np.array([1.5, 2.5, np.pi, 1e-30, 7e20], dtype=np.float32) * u.Unit("mJy")
    t["name"] = ["a", "bb", "ccc", "dddd", "e"]
    t["flag"] = np.array([True, False, True, False, True])
    t["ra"].description = "Right ascension (ICRS)"
    t.meta.update({"EXPTIME": 30.0, "NEXP": 3, "OBSERVER": "lenghu", "TELESCOP": "WFST"})
    return t


def assert_same_table(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames
    for name in a.colnames:
        x, y = a[name], b[name]
        assert x.dtype.kind == y.dtype.kind and x.dtype.itemsize == y.dtype.itemsize, name
        assert np.array_equal(np.asarray(x), np.asarray(y)), name
        assert x.unit == y.unit, name
        assert (x.description or None) == (y.description or None), name
    for key, value in a.meta.items():
        assert b.meta[key] == value, key


@pytest.mark.parametrize("first,second", list(itertools.permutations(TABLE_FORMATS, 2)))
def test_catalogue_a_b_a_keeps_data_units_and_metadata(tmp_path, first, second):
    a_path = write_table(sample_table(), tmp_path / f"a.{first}", first)
    a = quiet(read_table, a_path)
    b_path = tmp_path / f"b.{second}"
    quiet(convert, a_path, b_path, second)
    back = tmp_path / f"back.{first}"
    quiet(convert, b_path, back, first)
    assert_same_table(a, quiet(read_table, back))
    assert_same_table(sample_table(), a)


def test_fits_catalogue_passes_fitsverify(tmp_path, fitsverify):
    path = write_table(sample_table(), tmp_path / "cat.fits", "fits")
    errors, report = fitsverify(path)
    assert errors == 0, report


def test_votable_is_valid(tmp_path):
    path = quiet(write_table, sample_table(), tmp_path / "cat.vot", "votable")
    stilts = shutil.which("stilts")
    if stilts is not None:
        proc = subprocess.run([stilts, "votlint", str(path)], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr
    else:  # astropy's validator; stilts is the reference (installed by `make setup`)
        from astropy.io.votable import validate

        assert validate(str(path), output=None) is True


# ----------------------------------------------------------------------------- snapshots, batches, failures
def test_snapshot_conversions_from_the_command_line(real_data, tmp_path, capsys):
    from lenghu.io.snapshots import read_snapshot

    src = real_data / "sims" / "simspin" / "SimSpin_example_IllustrisTNG.hdf5"
    assert main(["convert", str(src), str(tmp_path / "tng.zarr")]) == 0
    assert "quirk" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "tng.zarr"), str(tmp_path / "tng.hdf5")]) == 0
    assert read_snapshot(tmp_path / "tng.hdf5").counts == {0: 100, 4: 2000}
    assert main(["convert", str(tmp_path / "tng.zarr"), str(tmp_path / "split"), "--to", "gadget4", "--files", "2"]) == 0
    assert len(list((tmp_path / "split").glob("*.hdf5"))) == 2
    assert read_snapshot(tmp_path / "split").counts == {0: 100, 4: 2000}


def test_batch_converts_the_good_files_and_reports_the_bad(real_data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for parts in (WFPC2, CUBE, KAST):
        shutil.copy(real_data.joinpath(*parts), inputs)
    (inputs / "broken.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  = 16")
    report = quiet(convert_many, sorted(inputs.iterdir()), tmp_path / "out", "zarr", progress=False, workers=2)
    assert sorted(r.output.name for r in report.converted) == ["b21.zarr", "example_cube.zarr", "test0.zarr"]
    assert [f.source.name for f in report.failed] == ["broken.fits"]
    assert "broken.fits" not in {p.name for p in (tmp_path / "out").iterdir()}
    code = quiet(main, ["convert", str(inputs), str(tmp_path / "out2"), "--to", "zarr", "--quiet"])
    assert code == 3


def test_a_failed_conversion_leaves_nothing_behind(real_data, tmp_path):
    data = real_data.joinpath(*WFPC2).read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(data[:30000])
    from lenghu.errors import LenghuError

    with pytest.raises(LenghuError):
        convert(cut, tmp_path / "out.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.fits"]
    with pytest.raises(ConversionError, match="output format"):
        convert(real_data.joinpath(*WFPC2), tmp_path / "out.unknown")


# ----------------------------------------------------------------------------- property tests
IMAGE_FORMATS = ["fits", "zarr", "hdf5", "fz"]


def eulerian_circuit(nodes: list[str]) -> list[str]:
    """A walk from nodes[0] over every ordered pair of distinct nodes exactly once (Hierholzer)."""
    edges = {n: [m for m in nodes if m != n] for n in nodes}
    stack, circuit = [nodes[0]], []
    while stack:
        if edges[stack[-1]]:
            stack.append(edges[stack[-1]].pop())
        else:
            circuit.append(stack.pop())
    return circuit[::-1]


def test_circuits_cover_every_pair():
    walk = eulerian_circuit(IMAGE_FORMATS)
    assert len(walk) == 13 and len(set(zip(walk, walk[1:]))) == 12


@st.composite
def images(draw):
    kind = draw(st.sampled_from(["u1", "i2", "i4", "i8", "f4", "f8", "uint16", "scaled"]))
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    raw_kind = {"uint16": "i2", "scaled": "i2"}.get(kind, kind)
    if raw_kind.startswith("f"):
        data = rng.normal(size=shape).astype(raw_kind)
        if data.size > 1:
            data.flat[0] = np.nan
    else:
        info = np.iinfo(raw_kind)
        data = rng.integers(info.min, info.max, size=shape, dtype=raw_kind, endpoint=True)
    extensions = draw(st.integers(0, 2))
    return kind, data, extensions


def write_image_fits(path: Path, kind: str, raw: np.ndarray, extensions: int) -> None:
    """Raw values and header written with StreamingHDU (no scaling by astropy)."""
    bitpix = {"u1": 8, "i2": 16, "i4": 32, "i8": 64, "f4": -32, "f8": -64}[raw.dtype.str[1:]]

    def header(first: bool, name: str | None) -> fits.Header:
        h = fits.Header()
        h["SIMPLE" if first else "XTENSION"] = True if first else "IMAGE"
        h["BITPIX"] = bitpix
        h["NAXIS"] = raw.ndim
        for i, n in enumerate(raw.shape[::-1], 1):
            h[f"NAXIS{i}"] = n
        if not first:
            h["PCOUNT"], h["GCOUNT"] = 0, 1
        if kind == "uint16":
            h["BSCALE"], h["BZERO"] = 1, 32768
        if kind == "scaled":
            h["BSCALE"], h["BZERO"] = 0.25, 100.0
        if name:
            h["EXTNAME"] = name
        h["BUNIT"] = "adu"
        h["OBJECT"] = "random"
        h["HISTORY"] = "written by a property test"
        return h

    for i in range(extensions + 1):
        stream = fits.StreamingHDU(str(path), header(i == 0, None if i == 0 else f"SCI{i}"))
        stream.write(raw.astype(raw.dtype.newbyteorder(">")))
        stream.close()


@needs_fpack
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images())
def test_property_images_through_every_format_pair(tmp_path_factory, case):
    kind, raw, extensions = case
    folder = tmp_path_factory.mktemp("img")
    original = folder / "original.fits"
    write_image_fits(original, kind, raw, extensions)
    formats = IMAGE_FORMATS if kind != "i8" else IMAGE_FORMATS[:3]  # no tile compression of 64-bit integers
    walk = eulerian_circuit(formats)
    names = {"fits": ".fits", "zarr": ".zarr", "hdf5": ".h5", "fz": ".fits.fz"}
    current, packed = original, False
    for step, fmt in enumerate(walk[1:], 1):
        out = folder / f"step{step}{names[fmt]}"
        quiet(convert, current, out, fmt)
        packed = packed or fmt == "fz"
        if fmt == "fits":
            # CFITSIO writes every NaN as its canonical NaN (all bits set): the payload bits of NaNs
            # are the only thing a pass through .fz changes
            assert_same_fits(original, out, kind if packed and kind.startswith("f") else None)
        current = out


@st.composite
def tables(draw):
    import astropy.units as u

    n = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    t = Table()
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["i2", "i4", "i8", "f4", "f8", "U", "?"]))
        if kind == "U":
            values = np.array(["".join(rng.choice(list("abcxyz"), size=rng.integers(1, 6))) for _ in range(n)])
        elif kind == "?":
            values = rng.random(n) > 0.5
        elif kind.startswith("f"):
            values = rng.normal(size=n).astype(kind) * 1e3
        else:
            values = rng.integers(-1000, 1000, size=n).astype(kind)
        name = f"c{i}"
        t[name] = values
        if kind not in ("U", "?"):
            t[name].unit = draw(st.sampled_from([None, u.deg, u.mJy, u.km / u.s, u.adu]))
    t.meta["RUN"] = draw(st.integers(0, 10**6))
    t.meta["NOTE"] = draw(st.sampled_from(["night", "coadd"]))
    return t


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tables())
def test_property_tables_through_every_format_pair(tmp_path_factory, table):
    folder = tmp_path_factory.mktemp("tab")
    walk = eulerian_circuit(list(TABLE_FORMATS))
    current = quiet(write_table, table, folder / "t0.fits", "fits")
    for step, fmt in enumerate(walk[1:], 1):
        current = quiet(write_table, quiet(read_table, current), folder / f"t{step}.{fmt}", fmt)
        assert_same_table(table, quiet(read_table, current))


# ----------------------------------------------------------------------------- SAMP
def test_samp_send_delivers_an_image_and_a_table(real_data, tmp_path, monkeypatch):
    """A real hub (pyvo.samp, astropy's SAMP code) on localhost, and a receiving client."""
    import threading
    import time
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from pyvo.samp import SAMPHubServer, SAMPIntegratedClient

    from lenghu.io.samp import hub_params_from_lockfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lock = tmp_path / "samp.lock"
    hub = SAMPHubServer(web_profile=False, lockfile=str(lock), addr="127.0.0.1")
    hub.start()
    received: list[tuple[str, dict]] = []
    arrived = threading.Event()
    receiver = SAMPIntegratedClient(name="receiver", addr="127.0.0.1")
    try:
        receiver.connect(hub_params=hub_params_from_lockfile(lock))

        def on_message(private_key, sender_id, mtype, params, extra):
            received.append((mtype, params))
            arrived.set()

        for mtype in ("image.load.fits", "table.load.votable", "table.load.fits"):
            receiver.bind_receive_notification(mtype, on_message)
        catalogue = quiet(write_table, sample_table(), tmp_path / "cat.parquet", "parquet")
        image = real_data.joinpath(*WFPC2)
        for path in (image, catalogue):
            arrived.clear()
            assert main(["samp", "send", str(path), "--hub-lockfile", str(lock), "--to", "receiver"]) == 0
            assert arrived.wait(10), f"nothing arrived for {path.name}"
        time.sleep(0.2)
    finally:
        receiver.disconnect()
        hub.stop()
    (image_mtype, image_params), (table_mtype, table_params) = received
    assert image_mtype == "image.load.fits"
    assert Path(url2pathname(urlparse(image_params["url"]).path)) == image.resolve()
    assert table_mtype == "table.load.votable"  # Parquet is sent as a VOTable copy
    sent = Path(url2pathname(urlparse(table_params["url"]).path))
    assert sent.parent == tmp_path / "cache" / "lenghu" / "samp"
    assert_same_table(sample_table(), quiet(read_table, sent))
