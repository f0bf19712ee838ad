"""lenghu's Rice coder and .fz writer give exactly the bytes fpack (CFITSIO) writes."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from astropy.io import fits

from lenghu.convert import fz
from lenghu.convert.fz_rice import header_cards, why_not_rice
from lenghu.convert.rice import rice_rows_16, tile_bound


@pytest.fixture(scope="module")
def fpack():
    exe = shutil.which("fpack")
    assert exe, "run `make setup` (installs libcfitsio-bin)"
    return exe


def _fpack(fpack, src, out):
    subprocess.run([fpack, "-C", "-r", "-O", str(out), str(src)], check=True)
    return out.read_bytes()


def _images(rng):
    """Rows that reach every branch of the coder: constant (all-zero blocks), quiet and noisy sky (codes
    short enough to go two at a time), blocks of short and of long codes in one row, differences too large
    to Rice-code (plain 16-bit blocks), single outliers (long unary runs), the 16-bit wrap of differences,
    rows not a multiple of the 32-pixel block, a one-pixel image."""
    sky = np.round(1000 + rng.normal(0, 5, (40, 333))).astype(np.int16)
    sky[5, 17] = 30000  # an outlier: a difference coded with thousands of zeros
    sky[7, :] = 1234  # a constant row
    wild = rng.integers(-32768, 32767, (9, 100)).astype(np.int16)  # high entropy
    wrap = np.tile(np.array([-32768, 32767], dtype=np.int16), (3, 50))
    ramp = (np.arange(64 * 65).reshape(64, 65) % 700 - 350).astype(np.int16)
    steps = np.round(rng.normal(0, 3, (6, 640))).astype(np.int16)  # short codes, then long ones, in a row
    steps[:, 320:] = np.round(rng.normal(0, 3000, (6, 320))).astype(np.int16)
    return {"sky": sky, "wild": wild, "wrap": wrap, "ramp": ramp, "steps": steps,
            "one": np.array([[-7]], dtype=np.int16),
            "faint": np.round(rng.normal(0, 0.6, (20, 31))).astype(np.int16)}


def test_tiles_are_fpacks_tiles(fpack, tmp_path):
    rng = np.random.default_rng(7)
    for name, image in _images(rng).items():
        src = tmp_path / f"{name}.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image)]).writeto(src)
        packed = tmp_path / f"{name}.fz"
        _fpack(fpack, src, packed)
        with fits.open(packed, disable_image_compression=True) as hdul:
            theirs = [bytes(np.asarray(row[0], dtype=np.uint8)) for row in hdul[1].data]
        out = np.empty(image.shape[0] * tile_bound(image.shape[1]), dtype=np.uint8)
        sizes = np.empty(image.shape[0], dtype=np.int64)
        end = rice_rows_16(image, out, 0, sizes)
        ours, pos = [], 0
        for size in sizes:
            ours.append(bytes(out[pos:pos + size]))
            pos += size
        assert pos == end
        assert ours == theirs, name


def _mixed(tmp_path, rng):
    """A mosaic-like file: 16-bit images with assorted cards, and extensions lenghu leaves to fpack."""
    primary = fits.PrimaryHDU()
    primary.header["OBSERVER"] = "Lenghu"
    primary.header["COMMENT"] = "a mosaic exposure: no data in the primary HDU"
    a = fits.ImageHDU(np.round(1000 + rng.normal(0, 20, (50, 77))).astype(np.uint16), name="CCD1")
    a.header["COMMENT"] = "a comment card"
    a.header["HISTORY"] = "a history card"
    a.header["LONGSTR"] = "x" * 100  # CONTINUE cards
    a.header[""] = "a card without keyword"
    b = fits.ImageHDU(rng.normal(0, 3000, (33, 40)).astype(np.int16), name="CCD2")
    b.header["HIERARCH ESO DET CHIP ID"] = 5
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.arange(5, dtype=np.float32))],
                                          name="TABLE")
    wide = fits.ImageHDU(rng.integers(-10**6, 10**6, (20, 30)).astype(np.int32), name="INT32")
    blank = fits.ImageHDU(np.zeros((10, 64), np.int16), name="ZEROS")
    blank.header["BLANK"] = -32768  # declined: fpack's handling of BLANK is its own
    summed = fits.ImageHDU(np.ones((5, 6), np.int16), name="SUMMED")
    summed.add_checksum()  # declined too
    src = tmp_path / "mixed.fits"
    fits.HDUList([primary, a, b, table, wide, blank, summed]).writeto(src)
    return src


def test_what_is_coded_here_and_what_is_left_to_fpack(tmp_path):
    src = _mixed(tmp_path, np.random.default_rng(1))
    with open(src, "rb") as handle:
        raw = handle.read()
    from lenghu.io.fitsfile import FitsFile

    reasons = {}
    for info in FitsFile(src).hdus[1:]:
        cards = header_cards(raw[info.header_offset:info.data_offset])
        reasons[info.header.get("EXTNAME")] = why_not_rice(cards)
    assert reasons["CCD1"] is None and reasons["CCD2"] is None
    assert "16-bit" in reasons["TABLE"] and "16-bit" in reasons["INT32"]
    assert reasons["ZEROS"] == "keyword BLANK" and reasons["SUMMED"] == "keyword CHECKSUM"


@pytest.mark.parametrize("workers", [1, 3])
def test_fz_files_are_byte_for_byte_fpacks(fpack, tmp_path, fitsverify, workers):
    src = _mixed(tmp_path, np.random.default_rng(2))
    before = src.read_bytes()
    theirs = _fpack(fpack, src, tmp_path / "fpack.fz")
    ours = tmp_path / "ours.fz"
    fz.compress(src, ours, workers=workers)
    assert ours.read_bytes() == theirs
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fpack.fz", "mixed.fits", "ours.fz"]  # no scratch
    errors, report = fitsverify(ours)
    assert errors == 0, report
    with fits.open(src) as original, fits.open(ours) as packed:
        for a, b in zip(original[1:], packed[1:]):
            if a.is_image:
                np.testing.assert_array_equal(b.data, a.data)


def test_a_failing_extension_leaves_no_scratch_and_says_which_file(tmp_path, monkeypatch):
    src = _mixed(tmp_path, np.random.default_rng(3))
    out = tmp_path / "out.fz"

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr("lenghu.convert.fz_rice.code_rows", broken)
    with pytest.raises(OSError, match="disk on fire"):
        fz.compress(src, out, workers=2)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
