"""Fuzzing mutated copies of the real files in ../shared/real_data: FITS images, MEF, cubes and
Gadget-2 snapshots (both byte orders), through `lenghu info`'s code path, the raw reader and the
snapshot reader. Mutations: byte flips (mostly in headers and block markers, where parsers decide
what to allocate), truncations, and header cards replaced by corrupted ones."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenghu.errors import LenghuError

from ..conftest import REAL_DATA
from ..faults.reliability import counted
from .guard import only_typed_errors

ONLY_TYPED = "only LenghuError subclasses come out: no other exception, no hang, bounded memory"


def _load(relative: str) -> bytes:
    path = REAL_DATA / relative
    if not path.is_file():
        pytest.fail(f"{path} is missing: the fuzzers need ../shared/real_data (set LENGHU_REAL_DATA)")
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


FITS_FILES = ("ccd/wfpc2_mef/test0.fits", "cubes/example_cube.fits", "ccd/kast_blue/b21.fits.gz",
              "detection/sep_emmi/image.fits")
SNAPSHOTS = ("sims/gadget2_vaex/gassphere_littleendian.dat", "sims/gadget2_vaex/gassphere_bigendian.dat")

_CORRUPT_VALUES = ["-1", "0", "1000000000", "999999999999999999999", "'text'", "1.5", "NaN", "", "T", "-32",
                   "'[1:99999,1:2]'", "1E400", "2147483648"]
_CARD_KEYS = ["NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "BITPIX", "BZERO", "BSCALE", "EXTEND", "XTENSION", "PCOUNT",
              "GCOUNT", "DATASEC", "BIASSEC", "EXPTIME", "CRPIX1", "CDELT3", "CTYPE1", "NEXTEND", "END"]


@st.composite
def mutated(draw, originals: tuple[str, ...], fits_cards: bool) -> tuple[str, bytes]:
    name = draw(st.sampled_from(originals))
    data = bytearray(_load(name))
    hot = min(len(data), 2880 * 4)  # headers and the first markers: where sizes are decided
    for _ in range(draw(st.integers(0, 6))):
        where = draw(st.one_of(st.integers(0, hot - 1), st.integers(0, len(data) - 1)))
        data[where] = draw(st.integers(0, 255))
    if fits_cards:
        for _ in range(draw(st.integers(0, 3))):
            key = draw(st.sampled_from(_CARD_KEYS))
            at = data.find(key.ljust(8).encode() if key != "END" else b"END" + b" " * 77)
            if at >= 0 and at % 80 == 0:
                card = f"{key:<8}= {draw(st.sampled_from(_CORRUPT_VALUES)):>20}" if key != "END" else "ENDX"
                data[at:at + 80] = card.ljust(80).encode()[:80]
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return name, bytes(data)


def _write(tmp_path_factory, name: str, data: bytes) -> Path:
    suffix = ".dat" if name.endswith(".dat") else ".fits"
    path = tmp_path_factory.mktemp("mut") / ("mutated" + suffix)
    path.write_bytes(data)
    return path


@pytest.mark.reliability(kind="fuzz", case="mutated real FITS files (WFPC2 MEF, a spectral cube, a Kast frame, an "
                                           "EMMI image): byte flips, corrupted cards, truncations, through "
                                           "`lenghu info` and the raw reader", promise=ONLY_TYPED)
@given(case=mutated(FITS_FILES, fits_cards=True))
@counted
def test_mutated_fits_files(case, tmp_path_factory):
    from lenghu.io.inspect import describe, format_info
    from lenghu.io.raw import instrument_for, read_raw, read_record

    name, data = case
    path = _write(tmp_path_factory, name, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = only_typed_errors(describe, path)
        if not isinstance(info, LenghuError):
            only_typed_errors(format_info, info)
            only_typed_errors(lambda: info.as_dict())
        inst = only_typed_errors(instrument_for, path, "auto")
        if not isinstance(inst, LenghuError):
            record = only_typed_errors(read_record, path, inst)
            if not isinstance(record, LenghuError):
                exposure = only_typed_errors(read_raw, path, inst)
                if not isinstance(exposure, LenghuError):
                    for frame in exposure.frames:
                        for amp in frame.amplifiers:
                            assert np.asarray(amp.data).size > 0


@pytest.mark.reliability(kind="fuzz", case="mutated Gadget-2 snapshots (both byte orders): header bytes, block "
                                           "markers and data flipped, files truncated, through `lenghu info` and the "
                                           "snapshot reader (positions computed)", promise=ONLY_TYPED)
@given(case=mutated(SNAPSHOTS, fits_cards=False))
@counted
def test_mutated_gadget2_snapshots(case, tmp_path_factory):
    from lenghu.io.inspect import describe
    from lenghu.io.snapshots import read_snapshot

    name, data = case
    path = _write(tmp_path_factory, name, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_typed_errors(describe, path)
        snap = only_typed_errors(read_snapshot, path)
        if not isinstance(snap, LenghuError):
            _compute_positions(snap)


def _compute_positions(snap) -> None:
    """Read every particle's position (what a converter or the viewer does next)."""
    for particles in snap.particles.values():
        positions = only_typed_errors(lambda: np.asarray(particles.positions.compute()))
        if not isinstance(positions, LenghuError):
            assert positions.ndim == 2 and positions.shape[1] == 3, positions.shape


_HEADER_FIELDS = ("npart", "massarr", "time", "redshift", "flag_sfr", "flag_feedback", "npartTotal", "flag_cooling",
                  "num_files", "BoxSize", "Omega0", "OmegaLambda", "HubbleParam")


@pytest.mark.reliability(kind="fuzz", case="Gadget-2 header fields set to random values (counts, mass table, "
                                           "number of files, box size, 64-bit totals)", promise=ONLY_TYPED)
@given(field=st.sampled_from(_HEADER_FIELDS), index=st.integers(0, 5),
       value=st.one_of(st.integers(-2**31, 2**32 - 1), st.floats(allow_nan=True, width=32)),
       which=st.sampled_from(SNAPSHOTS))
@counted
def test_random_gadget2_header_fields(field, index, value, which, tmp_path_factory):
    from lenghu.io.inspect import describe
    from lenghu.io.snapshots import read_snapshot
    from lenghu.io.snapshots.gadget2 import header_dtype

    data = bytearray(_load(which))
    order = "<" if "little" in which else ">"
    dtype = header_dtype(order)
    header = np.frombuffer(bytes(data[4:4 + dtype.itemsize]), dtype=dtype).copy()
    names = [n for n in dtype.names if n.lower() == field.lower()]
    if names:
        column = header[names[0]]
        target = column[0] if column.ndim == 1 else column[0, index % column.shape[1]]
        try:
            with np.errstate(all="ignore"):
                cast = np.array(value).astype(np.asarray(target).dtype)
        except (OverflowError, ValueError):
            cast = np.asarray(target)
        if column.ndim == 1:
            header[names[0]][0] = cast
        else:
            header[names[0]][0, index % column.shape[1]] = cast
        data[4:4 + dtype.itemsize] = header.tobytes()
    path = _write(tmp_path_factory, which, bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_typed_errors(describe, path)
        snap = only_typed_errors(read_snapshot, path)
        if not isinstance(snap, LenghuError):
            _compute_positions(snap)


def test_a_damaged_fits_file_sniffed_as_csv_is_a_typed_error(tmp_path):
    """Regression (found by test_mutated_fits_files): a FITS file whose first byte was flipped was read
    as CSV (its header has commas) and raised UnicodeDecodeError from its binary data."""
    from lenghu.io.inspect import describe

    data = bytearray(_load("ccd/wfpc2_mef/test0.fits"))
    data[0] = 1
    path = tmp_path / "damaged.fits"
    path.write_bytes(bytes(data))
    with pytest.raises(LenghuError, match="damaged.fits"):
        describe(path)


@pytest.mark.parametrize("card", ["BSCALE  = 'not a number'", "BSCALE  = '      1 / DATA SCALE FACTOR'",
                                  "BSCALE  = 1.0.0", "BITPIX  =                   17"])
def test_an_unparsable_scaling_card_is_a_typed_error(card, tmp_path):
    """Regression (found by the long fuzz run): an unparsable BSCALE raised astropy's VerifyError or a
    ValueError out of `lenghu info`; an invalid BITPIX a KeyError."""
    from lenghu.io.inspect import describe

    data = bytearray(_load("ccd/kast_blue/b21.fits.gz"))
    key = card[:8].encode()
    at = next(i for i in range(0, 2880 * 10, 80) if data[i:i + 8] == key)
    data[at:at + 80] = card.ljust(80).encode()
    path = tmp_path / "scaled.fits"
    path.write_bytes(bytes(data))
    with pytest.raises(LenghuError, match="scaled.fits"):
        describe(path)


@pytest.mark.parametrize("card", ["BSCALE  = '      1 / DATA SCALE FACTOR'", "BZERO   = 'text'"])
def test_an_unparsable_scaling_card_is_refused_by_the_raw_reader(card, tmp_path):
    """Regression (found by the long fuzz run): the raw reader scaled pixels with an unparsable BSCALE
    and raised a bare ValueError."""
    from lenghu.errors import UnreadableFileError
    from lenghu.io.raw import instrument_for, read_raw

    data = bytearray(_load("ccd/kast_blue/b21.fits.gz"))
    at = next(i for i in range(0, 2880 * 10, 80) if data[i:i + 8] == card[:8].encode())
    data[at:at + 80] = card.ljust(80).encode()
    path = tmp_path / "scaled.fits"
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableFileError, match="scaled.fits"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_raw(path, instrument_for(path, "kast_blue"))


def test_a_non_string_ctype_is_a_typed_error(tmp_path):
    """Regression (found by the long fuzz run): CTYPE1 = -1 raised AttributeError from astropy.wcs."""
    from lenghu.io.inspect import describe

    data = bytearray(_load("cubes/example_cube.fits"))
    at = next(i for i in range(0, 2880 * 4, 80) if data[i:i + 8] == b"CTYPE1  ")
    data[at:at + 80] = "CTYPE1  =                   -1".ljust(80).encode()
    path = tmp_path / "cube.fits"
    path.write_bytes(bytes(data))
    with pytest.raises(LenghuError, match="cube.fits"):
        describe(path)
