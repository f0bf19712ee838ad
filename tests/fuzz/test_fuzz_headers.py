"""Fuzzing section strings, header geometry and whole FITS headers through the raw reader."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given
from hypothesis import strategies as st

from lenghu.errors import LenghuError, TruncatedFileError
from lenghu.instruments.model import HeaderSections
from lenghu.instruments.sections import Section
from lenghu.io.header_geometry import header_detector

from ..faults.reliability import counted
from .guard import only_typed_errors

ONLY_TYPED = "only LenghuError subclasses come out: no other exception, no hang, bounded memory"

# Text that looks like a section often enough to reach the number handling.
_number = st.one_of(st.integers(-5, 10**20).map(str), st.text("0123456789-+ .eE", max_size=6))
_section_like = st.builds(lambda a, b, c, d, sep, br: f"{br[0]}{a}:{b}{sep}{c}:{d}{br[1]}",
                          _number, _number, _number, _number, st.sampled_from([",", ";", " ,", ", "]),
                          st.sampled_from([("[", "]"), ("(", ")"), ("[", ""), (" [ ", " ] "), ("", "")]))
section_text = st.one_of(st.text(max_size=40), _section_like)


@pytest.mark.reliability(kind="fuzz", case="section strings ([x1:x2,y1:y2]): random text and near-sections",
                         promise=ONLY_TYPED)
@given(text=section_text)
@counted
def test_section_strings(text):
    result = only_typed_errors(Section.from_fits, text)
    if isinstance(result, Section):
        assert Section.from_fits(result.to_fits()) == result  # what parses round-trips


@pytest.mark.reliability(kind="fuzz", case="valid section strings round-trip", promise="parse(format(s)) == s")
@given(x=st.tuples(st.integers(1, 10**6), st.integers(1, 10**6)), y=st.tuples(st.integers(1, 10**6),
                                                                              st.integers(1, 10**6)))
@counted
def test_valid_sections_round_trip(x, y):
    text = f"[{x[0]}:{x[1]},{y[0]}:{y[1]}]"
    section = Section.from_fits(text)
    assert section.to_fits() == text
    assert section.shape == (abs(y[1] - y[0]) + 1, abs(x[1] - x[0]) + 1)


_value = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                   st.text(max_size=30), section_text)
_KEYS = ("DATASEC", "BIASSEC", "TRIMSEC", "GAIN", "RDNOISE", "SATURATE")


@pytest.mark.reliability(kind="fuzz", case="header geometry of `generic` frames: random DATASEC/BIASSEC/TRIMSEC/"
                                           "GAIN/RDNOISE/SATURATE values and image shapes", promise=ONLY_TYPED)
@given(values=st.dictionaries(st.sampled_from(_KEYS), _value),
       primary=st.dictionaries(st.sampled_from(_KEYS), _value),
       shape=st.one_of(st.tuples(st.integers(0, 5000), st.integers(0, 5000)),
                       st.lists(st.integers(0, 50), max_size=4).map(tuple)))
@counted
def test_header_geometry(values, primary, shape):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # assumed values are announced by warnings; not what is tested
        only_typed_errors(header_detector, "frame.fits", "CCD", 1, 0, shape, values, primary, HeaderSections(),
                          (0.0, 65535.0))


_CARDS = {
    "IMAGETYP": st.sampled_from(["object", "bias", "flat", "dark", "", "zero", "light"]) | st.text(max_size=12),
    "EXPTIME": st.floats(allow_nan=True) | st.text(max_size=8) | st.integers(-10**12, 10**12),
    "DATE-OBS": st.sampled_from(["2025-11-20T15:00:00", "2025-13-40", "", "yesterday"]) | st.text(max_size=20),
    "MJD-OBS": st.floats(allow_nan=True),
    "RA": st.text(max_size=15) | st.floats(allow_nan=True),
    "DEC": st.text(max_size=15) | st.floats(allow_nan=True),
    "FILTER": st.text(max_size=20),
    "OBJECT": st.text(max_size=60),
    "DATASEC": section_text, "BIASSEC": section_text, "TRIMSEC": section_text,
    "GAIN": st.floats(allow_nan=True) | st.text(max_size=6), "RDNOISE": st.floats(allow_nan=True),
    "BZERO": st.sampled_from([0, 32768, 1e30, -1]), "BSCALE": st.sampled_from([1, 0, -2.5, 1e-30]),
    "INSTRUME": st.sampled_from(["Kast", "WFST", "", "WFPC2"]) | st.text(max_size=10),
    "TELESCOP": st.sampled_from(["Shane", "WFST", ""]) | st.text(max_size=10),
}


def _printable(text: str) -> str:
    return "".join(ch for ch in text if 32 <= ord(ch) < 127)


@st.composite
def fits_header(draw) -> fits.Header:
    header = fits.Header()
    for key in draw(st.lists(st.sampled_from(sorted(_CARDS)), unique=True, max_size=len(_CARDS))):
        value = draw(_CARDS[key])
        if isinstance(value, str):
            value = _printable(value)
        if isinstance(value, float) and not np.isfinite(value):
            value = str(value)  # FITS cannot hold NaN or infinity: as text, the way broken writers do
        header[key] = value
    return header


@pytest.mark.reliability(kind="fuzz", case="FITS frames with random header cards (type, times, coordinates, "
                                           "sections, gain, scaling) through `lenghu info` and the raw reader",
                         promise=ONLY_TYPED)
@given(header=fits_header(), shape=st.sampled_from([(20, 30), (1, 1), (3, 40)]),
       instrument=st.sampled_from(["auto", "generic", "kast_blue"]))
@counted
def test_random_headers_through_the_raw_reader(header, shape, instrument, tmp_path_factory):
    from lenghu.io.inspect import describe
    from lenghu.io.raw import instrument_for, read_raw, read_record

    path = tmp_path_factory.mktemp("hdr") / "frame.fits"
    data = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    scale = {k: header.pop(k) for k in ("BZERO", "BSCALE") if k in header}
    hdu = fits.PrimaryHDU(data, header=header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hdu.writeto(path, output_verify="silentfix")
        if scale:  # written as cards, not applied: the reader must cope with whatever a camera wrote
            with fits.open(path, mode="update", do_not_scale_image_data=True) as hdul:
                hdul[0].header.update(scale)
        only_typed_errors(describe, path)
        inst = only_typed_errors(instrument_for, path, instrument)
        if not isinstance(inst, LenghuError):
            record = only_typed_errors(read_record, path, inst)
            if not isinstance(record, LenghuError):
                exposure = only_typed_errors(read_raw, path, inst)
                if not isinstance(exposure, LenghuError):  # what was read is the file's pixels, whole
                    assert sum(np.asarray(a.data).size for f in exposure.frames for a in f.amplifiers) > 0


def _header_bytes(cards: list[tuple[str, object]]) -> bytes:
    text = "".join(fits.Card(k, v).image for k, v in cards) + "END".ljust(80)
    return text.ljust((len(text) + 2879) // 2880 * 2880).encode()


@pytest.mark.reliability(kind="fuzz", case="headers claiming huge images (NAXISn up to 10^12) over a few bytes "
                                           "of data", promise="TruncatedFileError naming the file; nothing allocated")
@given(naxis1=st.integers(1, 10**12), naxis2=st.integers(1, 10**12), bitpix=st.sampled_from([8, 16, 32, -32, -64]))
@counted
def test_a_header_claiming_a_huge_image_is_not_allocated(naxis1, naxis2, bitpix, tmp_path_factory):
    from lenghu.io.inspect import describe
    from lenghu.io.raw import instrument_for, read_raw

    if naxis1 * naxis2 * abs(bitpix) // 8 <= 2880:
        naxis1 = 10**6  # the claim must exceed the one block of data written
    path = tmp_path_factory.mktemp("huge") / "huge.fits"
    path.write_bytes(_header_bytes([("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", 2), ("NAXIS1", naxis1),
                                    ("NAXIS2", naxis2), ("IMAGETYP", "object"), ("EXPTIME", 1.0)]) + bytes(2880))
    only_typed_errors(describe, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        error = only_typed_errors(lambda: read_raw(path, instrument_for(path, "generic")))
    assert isinstance(error, TruncatedFileError) and "huge.fits" in str(error), error


def test_section_syntax_errors_are_typed():
    """Regression (found by test_section_strings): SectionSyntaxError was a bare ValueError."""
    with pytest.raises(LenghuError):
        Section.from_fits("[1:2,3]")


def test_a_zero_size_image_is_a_shape_error_naming_the_file():
    """Regression (found by test_header_geometry): a 0 x N image raised an untyped error."""
    from lenghu.errors import ShapeError

    with pytest.raises(ShapeError, match="frame.fits"):
        header_detector("frame.fits", "CCD", 1, 0, (0, 10), {}, {}, HeaderSections(), None)
