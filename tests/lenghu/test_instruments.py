"""Instrument files: loading, user overrides, errors, sections, rules, scaling."""

from __future__ import annotations

import astropy.units as u
import pytest

from lenghu.errors import ConfigError, UnknownInstrumentError
from lenghu.instruments import (
    Section,
    SectionSyntaxError,
    available_instruments,
    load_instrument,
    scale_instrument,
)


# --- the shipped instruments ------------------------------------------------------------


def test_available_instruments():
    assert available_instruments() == ["generic", "kast_blue", "wfst"]


def test_load_wfst():
    wfst = load_instrument("wfst")
    assert wfst.raw_layout == "mef"
    assert wfst.pixel_scale == 0.333 * u.arcsec / u.pixel
    assert wfst.filters == ("u", "g", "r", "i", "z", "w")
    assert wfst.site.latitude.to_value(u.deg) == pytest.approx(38.606944)
    assert wfst.site.longitude.to_value(u.deg) == pytest.approx(93.895278)
    assert [d.name for d in wfst] == [f"CCD{i}" for i in range(1, 10)]
    det = wfst.detector("CCD5")
    assert det.hdu == "CCD5"
    assert det.shape == (9232, 9216)  # 2 x 4616 rows, 8 x 1152 columns
    assert det.raw_shape == (9232, 9472)  # plus 8 x 32 overscan columns
    assert len(det.amplifiers) == 16 and det.amplifiers[0].name == "A" and det.amplifiers[-1].name == "P"
    assert det.offset == (0.0, 0.0)  # the centre CCD
    assert wfst.detector("CCD1").offset == (-(9232 + 200), -(9216 + 200))
    amp = det.amplifier("C")
    assert amp.gain == 1.60 * u.electron / u.adu and amp.read_noise == 6.4 * u.electron
    assert amp.bias_level == 1035 * u.adu
    assert {"gain", "read_noise", "amplifier_rows"} <= amp.assumed  # not public: say so
    assert wfst.assumptions


def test_load_kast_blue_matches_pypeit_geometry():
    kast = load_instrument("kast_blue")
    assert kast.raw_layout == "single"
    (det,) = kast.detectors
    assert det.hdu == 0 and det.raw_shape == (350, 2112) and det.shape == (350, 2048)
    a, b = det.amplifiers
    assert a.data_section.slices == (slice(0, 350), slice(0, 1024))
    assert a.overscan_section.slices == (slice(0, 350), slice(2049, 2080))  # columns 2050-2080, 1-based
    assert b.data_section.slices == (slice(0, 350), slice(1024, 2048))
    assert b.overscan_section.slices == (slice(0, 350), slice(2080, 2111))
    assert a.gain == b.gain == 1.2 * u.electron / u.adu
    assert a.read_noise == 3.7 * u.electron


def test_load_generic():
    generic = load_instrument("generic")
    assert generic.raw_layout == "header" and generic.detectors == ()
    assert generic.sections_from_header
    hs = generic.header_sections
    assert (hs.data_key, hs.overscan_key, hs.gain_key, hs.read_noise_key) == ("DATASEC", "BIASSEC", "GAIN", "RDNOISE")
    assert hs.gain is None and hs.read_noise is None
    assert generic.rules.default_filter == "none"


# --- frame-type rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, expected",
    [
        ({"OBSTYPE": "DARK", "OBJECT": "Bias", "EXPTIME": 0}, "bias"),  # the Kast bias trap
        ({"OBSTYPE": "OBJECT", "OBJECT": "Dome Flat", "EXPTIME": 15}, "flat"),
        ({"OBSTYPE": "OBJECT", "OBJECT": "Arcs", "EXPTIME": 30}, "arc"),
        ({"OBJECT": "J1217p3905", "EXPTIME": 1200, "LAMPSTAG": "off"}, "science"),
        ({"OBJECT": "Feige 66", "EXPTIME": 30, "LAMPSTA2": "on"}, "flat"),
        ({"OBJECT": "Feige 66", "EXPTIME": 30, "LAMPSTAF": "on "}, "arc"),
        ({"OBJECT": "Feige 66"}, None),
    ],
)
def test_kast_rules(header, expected):
    assert load_instrument("kast_blue").rules.classify(header) == expected


@pytest.mark.parametrize(
    "header, expected",
    [
        ({"IMAGETYP": "zero", "EXPTIME": 0}, "bias"),
        ({"IMAGETYP": "Dark Frame", "EXPTIME": 300}, "dark"),
        ({"OBSTYPE": "SKYFLAT", "EXPTIME": 3}, "flat"),
        ({"IMAGETYP": "comparison", "EXPTIME": 3}, "arc"),
        ({"EXPOSURE": 0.0}, "bias"),
        ({"ITIME": 60.0}, "science"),
        ({"OBJECT": "M31"}, None),
    ],
)
def test_generic_rules(header, expected):
    assert load_instrument("generic").rules.classify(header) == expected


# --- user files ------------------------------------------------------------------------


def test_user_file_extends_wfst_and_overrides_gain(tmp_path):
    path = tmp_path / "my_wfst.toml"
    path.write_text('extends = "wfst"\n[detector_template]\ngain = "2.0 electron/adu"\n')
    mine = load_instrument(path)
    base = load_instrument("wfst")
    assert mine.source == str(path)
    assert len(mine.detectors) == 9
    for det, ref in zip(mine.detectors, base.detectors):
        assert all(a.gain == 2.0 * u.electron / u.adu for a in det.amplifiers)
        # everything else as in wfst
        assert [a.read_noise for a in det.amplifiers] == [a.read_noise for a in ref.amplifiers]
        assert det.raw_shape == ref.raw_shape and det.offset == ref.offset
    assert mine.pixel_scale == base.pixel_scale and mine.rules == base.rules


def test_user_file_per_amplifier_list(tmp_path):
    path = tmp_path / "w.toml"
    gains = ", ".join(str(1.0 + k / 10) for k in range(16))
    path.write_text(f'extends = "wfst"\n[detector_template]\ngain = [{gains}]\n')
    det = load_instrument(path).detector("CCD9")
    assert det.amplifier("P").gain.value == pytest.approx(2.5)
    path.write_text('extends = "wfst"\n[detector_template]\ngain = [1.0, 2.0]\n')
    with pytest.raises(ConfigError, match=r"w\.toml.*detector_template\.gain has 2 values for 16"):
        load_instrument(path)


BAD_FILES = {
    # file text, what the message must say (the field)
    "gain_word": ('extends = "wfst"\n[detector_template]\ngain = "fast"\n', r"'detector_template\.gain'.*'fast'"),
    "pixel_scale_unit": ('extends = "kast_blue"\npixel_scale = "3 m"\n', r"'pixel_scale'.*'3 m'"),
    "no_site": (
        'name = "x"\npixel_scale = 0.3\n[headers]\n[[headers.frame_type]]\ntype = "bias"\n'
        'any = [{key = "IMAGETYP", match = "bias"}]\n',
        r"missing field 'site'",
    ),
    "syntax": ("name = [\n", "not valid TOML"),
    "layout": ('extends = "kast_blue"\nraw_layout = "zip"\n', r"raw_layout 'zip'"),
    "unknown_field": ('extends = "kast_blue"\ncolour = "blue"\n', r"unknown top-level fields \['colour'\]"),
    "frame_type": ('extends = "kast_blue"\n[[headers.frame_type]]\ntype = "junk"\n', r"type 'junk'"),
    "condition": (
        'extends = "kast_blue"\n[[headers.frame_type]]\ntype = "bias"\nany = [{key = "X", like = "y"}]\n',
        r"unknown condition fields \['like'\]",
    ),
    "overscan_outside": (
        'extends = "kast_blue"\n[[detector]]\nname = "K"\nshape = [350, 2048]\nraw_shape = [350, 2112]\n'
        '[[detector.amplifier]]\nname = "A"\ndata_section = "[1:1024,1:350]"\n'
        'overscan_section = "[2050:2200,1:350]"\ndetector_section = "[1:1024,1:350]"\n',
        r"amplifier A: overscan section \[2050:2200,1:350\] lies outside 2112x350",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_instrument_file(tmp_path, case):
    text, pattern = BAD_FILES[case]
    path = tmp_path / f"bad_{case}.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_instrument(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(str(path))


def test_extends_loop_and_unknown_names(tmp_path):
    loop = tmp_path / "loop.toml"
    loop.write_text(f'extends = "{loop}"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_instrument(loop)
    with pytest.raises(UnknownInstrumentError, match="hubble.*shipped: generic, kast_blue, wfst"):
        load_instrument("hubble")
    with pytest.raises(UnknownInstrumentError, match="no such instrument file"):
        load_instrument(tmp_path / "missing.toml")


def test_generic_user_fallbacks(tmp_path):
    path = tmp_path / "cam.toml"
    path.write_text('extends = "generic"\n[header_sections]\ngain = 1.9\nread_noise = "3.3 electron"\ndata = "IMSEC"\n')
    hs = load_instrument(path).header_sections
    assert hs.gain == 1.9 * u.electron / u.adu and hs.read_noise == 3.3 * u.electron
    assert hs.data_key == "IMSEC" and hs.overscan_key == "BIASSEC"


# --- sections --------------------------------------------------------------------------


def test_section_parsing():
    s = Section.from_fits("[1:1024,1:350]")
    assert (s.y0, s.y1, s.x0, s.x1) == (0, 350, 0, 1024)
    assert s.shape == (350, 1024) and not s.flip_x and not s.flip_y
    assert s.to_fits() == "[1:1024,1:350]"
    assert Section.from_fits(" [ 2050 : 2080 , 1 : 350 ] ").slices == (slice(0, 350), slice(2049, 2080))


def test_reversed_section():
    s = Section.from_fits("[1024:1,350:11]")
    assert (s.y0, s.y1, s.x0, s.x1) == (10, 350, 0, 1024)
    assert s.flip_x and s.flip_y
    assert s.to_fits() == "[1024:1,350:11]"
    assert Section.from_fits("[5:5,3:1]").shape == (3, 1)


@pytest.mark.parametrize(
    "text",
    ["[1:10]", "1:10,1:10", "[1:10,1:10", "[a:b,c:d]", "[0:10,1:5]", "[1:10,1:-5]", "[1.5:10,1:5]", "", None, 12],
)
def test_malformed_sections(text):
    with pytest.raises(SectionSyntaxError):
        Section.from_fits(text)


def test_section_geometry():
    s = Section.from_fits("[11:20,1:5]")
    assert s.fits_inside((5, 20)) and not s.fits_inside((4, 20)) and not s.fits_inside((5, 19))
    moved = s.shifted(5, -10)
    assert moved.to_fits() == "[1:10,6:10]"
    with pytest.raises(SectionSyntaxError):
        s.shifted(0, -11)


# --- scaling ---------------------------------------------------------------------------


def test_scale_instrument():
    wfst = load_instrument("wfst")
    small = scale_instrument(wfst, 1 / 64)
    det = small.detector("CCD1")
    assert det.grid.amp_shape == (72, 18) and det.grid.overscan_columns == 8
    assert det.shape == (144, 144) and det.raw_shape == (144, 208)
    assert det.amplifiers[5].data_section.to_fits() == "[131:148,1:72]"
    assert det.amplifiers[5].overscan_section.to_fits() == "[149:156,1:72]"
    assert det.amplifiers[5].detector_section.to_fits() == "[91:108,1:72]"
    assert [a.gain for a in det.amplifiers] == [a.gain for a in wfst.detector("CCD1").amplifiers]
    assert small.pixel_scale == wfst.pixel_scale
    big = wfst.detector("CCD1")
    assert det.offset == pytest.approx((big.offset[0] * 144 / 9232, big.offset[1] * 144 / 9216))
    assert scale_instrument(wfst, 1) is wfst
    for factor in (0, -0.5, 1.5):
        with pytest.raises(ValueError):
            scale_instrument(wfst, factor)
    with pytest.raises(ValueError, match="no amplifier grid"):
        scale_instrument(load_instrument("kast_blue"), 0.5)
