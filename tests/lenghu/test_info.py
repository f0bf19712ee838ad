"""``lenghu info``: counts, shapes, units and WCS of every real file, checked against values read here.

FITS header values are parsed in this file from the raw 80-character cards;
snapshot counts come from the Gadget-2 header bytes (``struct``) or from the
HDF5 dataset lengths (h5py).
"""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import h5py
import pytest

from lenghu.cli import main
from lenghu.io.inspect import describe, sniff


def raw_cards(path: Path) -> list[dict[str, object]]:
    """Keyword -> value of each HDU's header, parsed from the bytes (strings unquoted, numbers as float/int)."""
    data = path.read_bytes()
    hdus, off = [], 0
    while off < len(data):
        cards, pos, done = {}, off, False
        while not done:
            for i in range(0, 2880, 80):
                card = data[pos + i : pos + i + 80].decode("ascii")
                if card[:8].strip() == "END":
                    done = True
                    break
                if card[8:10] == "= ":
                    text = card[10:]
                    if text.strip().startswith("'"):
                        cards[card[:8].strip()] = text.strip()[1:].split("'")[0].rstrip()
                    else:
                        value = text.split("/")[0].strip()
                        try:
                            cards[card[:8].strip()] = int(value)
                        except ValueError:
                            try:
                                cards[card[:8].strip()] = float(value.replace("D", "E"))
                            except ValueError:
                                cards[card[:8].strip()] = value
            pos += 2880
        naxis = int(cards.get("NAXIS", 0))
        size = abs(int(cards["BITPIX"])) // 8 if naxis else 0
        for i in range(1, naxis + 1):
            size *= int(cards[f"NAXIS{i}"])
        hdus.append(cards)
        off = pos + -(-size // 2880) * 2880
    return hdus


def info_json(path: Path, capsys) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


def test_wfpc2_mef(real_data, capsys):
    path = real_data / "ccd" / "wfpc2_mef" / "test0.fits"
    cards = raw_cards(path)
    info = info_json(path, capsys)
    assert (info["format"], info["kind"]) == ("fits", "mef")
    assert len(info["hdus"]) == len(cards) == 5
    assert info["hdus"][0]["shape"] is None
    for i in range(1, 5):
        hdu, c = info["hdus"][i], cards[i]
        assert hdu["name"] == c["EXTNAME"] == "SCI"
        assert hdu["shape"] == [c["NAXIS2"], c["NAXIS1"]] == [40, 40]
        assert hdu["stored_dtype"] == "int16" and c["BITPIX"] == 16
        wcs = hdu["wcs"]
        assert wcs["ctype"] == [c["CTYPE1"], c["CTYPE2"]]
        assert wcs["crval"] == [c["CRVAL1"], c["CRVAL2"]]
        assert wcs["crpix"] == [c["CRPIX1"], c["CRPIX2"]]
        assert wcs["cd"] == [[c["CD1_1"], c["CD1_2"]], [c["CD2_1"], c["CD2_2"]]]
    assert info["hdus"][1]["wcs"]["celestial"] is False  # chip 1 says CTYPE 'UNITLESS'/'LINE'
    assert all(info["hdus"][i]["wcs"]["celestial"] for i in (2, 3, 4))  # the WF chips: RA---TAN/DEC--TAN
    assert "HDU 0: BSCALE/BZERO in a header without data" in info["quirks"]


def test_spectral_cube(real_data, capsys):
    path = real_data / "cubes" / "example_cube.fits"
    [c] = raw_cards(path)
    info = info_json(path, capsys)
    assert (info["format"], info["kind"]) == ("fits", "cube")
    [hdu] = info["hdus"]
    assert hdu["shape"] == [c["NAXIS4"], c["NAXIS3"], c["NAXIS2"], c["NAXIS1"]] == [1, 7, 4, 3]
    assert hdu["stored_dtype"] == hdu["physical_dtype"] == "float32" and c["BITPIX"] == -32
    assert hdu["bunit"] == c["BUNIT"] == "Jy/beam"
    wcs = hdu["wcs"]
    assert wcs["ctype"] == [c["CTYPE1"], c["CTYPE2"], c["CTYPE3"], ""]
    assert wcs["crval"] == [c["CRVAL1"], c["CRVAL2"], c["CRVAL3"], c["CRVAL4"]]
    assert wcs["crpix"] == [c["CRPIX1"], c["CRPIX2"], c["CRPIX3"], c["CRPIX4"]]
    assert wcs["cdelt"][:3] == pytest.approx([c["CDELT1"], c["CDELT2"], c["CDELT3"]])
    assert wcs["cunit"][:3] == ["deg", "deg", "m / s"]
    assert wcs["spectral_axis"] == 2 and wcs["celestial"] is True
    assert wcs["degenerate_axes"] == [4]
    assert wcs["restfrq"] == c["RESTFREQ"]


def _gadget2_counts(path: Path) -> tuple[int, ...]:
    head = path.read_bytes()[:260]
    e = "<" if struct.unpack("<i", head[:4])[0] == 256 else ">"
    return struct.unpack(e + "6i", head[4:28])


@pytest.mark.parametrize("name", ["galaxy_littleendian.dat", "gassphere_littleendian.dat", "gassphere_bigendian.dat"])
def test_gadget2_binaries(real_data, capsys, name):
    path = real_data / "sims" / "gadget2_vaex" / name
    npart = _gadget2_counts(path)
    info = info_json(path, capsys)
    assert (info["format"], info["kind"]) == ("gadget2", "snapshot")
    snap = info["snapshot"]
    assert {t["part_type"]: t["count"] for t in snap["types"]} == {t: n for t, n in enumerate(npart) if n}
    assert snap["total"] == sum(npart)
    assert snap["units"]["assumed"] is True and snap["units"]["length_cm"] == pytest.approx(3.085678e21)
    positions = next(f for f in snap["types"][0]["fields"] if f["name"] == "positions")
    assert positions["shape"] == [snap["types"][0]["count"], 3] and positions["dtype"] == "float32"
    if name.startswith("gassphere"):
        assert any("totals are all 0" in q for q in info["quirks"])


def test_simspin_gadget_binary(real_data, capsys):
    path = real_data / "sims" / "simspin" / "SimSpin_example_Gadget"
    npart = _gadget2_counts(path)
    snap = info_json(path, capsys)["snapshot"]
    assert {t["part_type"]: t["count"] for t in snap["types"]} == {2: npart[2], 3: npart[3]} == {2: 1000, 3: 1500}
    assert snap["time"] == 10.0 and snap["comoving"] is False


@pytest.mark.parametrize("name,dialect", [
    ("SimSpin_example_HDF5.hdf5", "gadget-hdf5"),
    ("SimSpin_example_EAGLE.hdf5", "eagle-hdf5"),
    ("SimSpin_example_IllustrisTNG.hdf5", "illustristng-hdf5"),
])
def test_hdf5_snapshots(real_data, capsys, name, dialect):
    path = real_data / "sims" / "simspin" / name
    with h5py.File(path) as h5:
        counts = {int(g[8:]): h5[g]["Coordinates"].shape[0] for g in h5 if g.startswith("PartType")}
        header = dict(h5["Header"].attrs)
        coord_dtype = {int(g[8:]): str(h5[g]["Coordinates"].dtype) for g in h5 if g.startswith("PartType")}
    info = info_json(path, capsys)
    assert (info["format"], info["kind"]) == ("hdf5", "snapshot")
    snap = info["snapshot"]
    assert snap["source_format"] == dialect
    assert {t["part_type"]: t["count"] for t in snap["types"]} == counts
    assert snap["box_size"] == [float(header["BoxSize"][0])] * 3
    assert snap["time"] == float(header["Time"][0])
    assert snap["redshift"] == float(header["Redshift"][0])
    for t in snap["types"]:
        f = next(f for f in t["fields"] if f["name"] == "positions")
        assert f["dtype"] == coord_dtype[t["part_type"]]
    if dialect == "eagle-hdf5":
        assert snap["units"]["length_cm"] == 3.085678e24 and snap["units"]["assumed"] is False
        assert snap["hubble_param"] == pytest.approx(float(header["HubbleParam"][0]))
    if dialect == "illustristng-hdf5":
        assert snap["units"]["length_cm"] == float(header["UnitLength_in_cm"][0])
        assert len([q for q in info["quirks"] if "counts taken from the datasets" in q]) == 2


def test_text_output_and_converted_stores(real_data, tmp_path, capsys):
    from lenghu.convert.api import convert

    path = real_data / "cubes" / "example_cube.fits"
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "1 x 7 x 4 x 3 float32" in text and "RA---ARC/DEC--ARC/VRAD" in text and "Jy/beam" in text
    convert(path, tmp_path / "cube.zarr")
    info = describe(tmp_path / "cube.zarr")
    assert (info.format, info.kind) == ("zarr", "cube")
    assert info.hdus[0].shape == (1, 7, 4, 3) and info.hdus[0].wcs["ctype"][2] == "VRAD"
    convert(path, tmp_path / "cube.h5")
    assert describe(tmp_path / "cube.h5").hdus[0].bunit == "Jy/beam"


def test_sniff_goes_by_content(tmp_path, real_data):
    fake = tmp_path / "looks_like.fits"
    fake.write_text("a,b\n1,2\n")
    assert sniff(fake) == "csv"
    renamed = tmp_path / "snapshot.txt"
    renamed.write_bytes((real_data / "sims" / "gadget2_vaex" / "gassphere_bigendian.dat").read_bytes())
    assert sniff(renamed) == "gadget2"
    assert main(["info", str(tmp_path / "missing.fits")]) == 1
