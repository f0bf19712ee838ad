"""Raw frames in: real Kast blue and WFPC2 files, synthetic WFST files, broken files."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lenghu.errors import (
    FrameError,
    MissingExtensionError,
    MissingKeywordError,
    SectionError,
    ShapeError,
    TruncatedFileError,
    UnclassifiedFrameError,
    UnreadableFileError,
)
from lenghu.instruments import load_instrument, scale_instrument
from lenghu.io import AssumedValueWarning, detect_instrument, instrument_for, read_raw, read_record
from lenghu.io.coords import observation_mjd, parse_angle
from lenghu.io.fitsfile import FitsFile

KAST = load_instrument("kast_blue")
GENERIC = load_instrument("generic")
WFST = load_instrument("wfst")
WFST_SMALL = scale_instrument(WFST, 1 / 64)

KAST_FRAMES = {  # name: (type, exptime)
    "b21": ("bias", 0.0), "b22": ("bias", 0.0), "b23": ("bias", 0.0),
    "b11": ("flat", 15.0), "b12": ("flat", 15.0), "b13": ("flat", 15.0),
    "b1": ("arc", 30.0),
    "b24": ("science", 30.0), "b27": ("science", 1200.0),
}
MJD_2015_05_20 = 57162  # checked: 2015-05-20 is JD 2457162.5 at 0h


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def kast(real_data: Path, name: str) -> Path:
    return real_data / "ccd" / "kast_blue" / f"{name}.fits.gz"


def mjd_by_hand(date_obs: str) -> float:
    """MJD of a 2015-05-20 ISO time, without astropy.time."""
    day, clock = date_obs.split("T")
    assert day == "2015-05-20"
    h, m, s = clock.split(":")
    return MJD_2015_05_20 + (int(h) * 3600 + int(m) * 60 + float(s)) / 86400


# --- Kast blue: real frames -----------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(KAST_FRAMES))
def test_kast_record(real_data, name):
    path = kast(real_data, name)
    record = read_record(path, KAST)
    frame_type, exptime = KAST_FRAMES[name]
    assert record.frame_type == frame_type
    assert record.exptime == exptime
    assert record.detectors == ("KAST_BLUE",)
    assert record.instrument == "kast_blue"
    date_obs = fits.getheader(path)["DATE-OBS"]
    assert record.mjd == pytest.approx(mjd_by_hand(date_obs), abs=1e-8)
    assert record.path == str(path)


@pytest.mark.realdata
def test_kast_pointing_and_object(real_data):
    record = read_record(kast(real_data, "b1"), KAST)
    assert record.object == "Arcs"
    assert record.ra == pytest.approx((9 + 21 / 60 + 46.0 / 3600) * 15)  # '09:21:46.0' is hours
    assert record.dec == pytest.approx(37 + 25 / 60 + 56.0 / 3600)
    assert read_record(kast(real_data, "b24"), KAST).object == "Feige 66"


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["b21", "b22", "b23"])
def test_kast_bias_overscan_levels(real_data, name):
    exposure = read_raw(kast(real_data, name), KAST)
    assert exposure.record.frame_type == "bias"
    (frame,) = exposure.frames
    a, b = frame.amplifier("A"), frame.amplifier("B")
    for amp in (a, b):
        assert amp.data.shape == (350, 1024)
        assert amp.data.dtype == np.float32
        assert amp.overscan.shape == (350, 31)
        assert not amp.data.flags.writeable
    assert abs(np.median(a.overscan) - 943) < 3
    assert abs(np.median(b.overscan) - 965) < 3
    # a bias's data sit at the overscan level too
    assert abs(np.median(a.data) - np.median(a.overscan)) < 5


@pytest.mark.realdata
def test_kast_pixels_equal_astropy_and_flat_level(real_data):
    path = kast(real_data, "b11")
    exposure = read_raw(path, KAST)
    reference = fits.getdata(path).astype(np.float32)  # astropy applies BZERO = 32768
    a, b = exposure.frames[0].amplifiers
    np.testing.assert_array_equal(a.data, reference[:, 0:1024])
    np.testing.assert_array_equal(b.data, reference[:, 1024:2048])
    np.testing.assert_array_equal(a.overscan, reference[:, 2049:2080])
    np.testing.assert_array_equal(b.overscan, reference[:, 2080:2111])
    assert reference.max() > 32767  # BZERO really matters here
    # the dome flat is bright in amp B (about 26000 ADU), much fainter in amp A
    assert 20000 < np.median(b.data) < 30000
    assert b.data.max() > 26000
    assert np.median(a.data) < 0.3 * np.median(b.data)


@pytest.mark.realdata
def test_real_files_unchanged_by_reading(real_data):
    paths = [kast(real_data, n) for n in KAST_FRAMES] + [real_data / "ccd" / "wfpc2_mef" / "test0.fits"]
    before = {p: (sha256(p), p.stat().st_mtime_ns) for p in paths}
    for p in paths[:-1]:
        read_raw(p, KAST)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssumedValueWarning)
        read_raw(paths[-1], GENERIC)
    assert {p: (sha256(p), p.stat().st_mtime_ns) for p in paths} == before


@pytest.mark.realdata
def test_kast_read_with_generic(real_data):
    with pytest.warns(AssumedValueWarning, match=r"b21\.fits\.gz.*read noise"):
        exposure = read_raw(kast(real_data, "b21"), GENERIC)
    (frame,) = exposure.frames
    assert frame.detector.name == "CCD"
    (amp,) = frame.amplifiers
    assert amp.data.shape == (350, 2048)  # DATASEC = [1:2048,1:350]
    assert amp.overscan is None  # Kast has no BIASSEC
    assert np.isnan(amp.amplifier.read_noise.value)
    assert "read_noise" in amp.amplifier.assumed
    assert amp.amplifier.saturation.value == 65535  # uint16 via BZERO


# --- WFPC2: a multi-extension file with no sections, read with generic ---------------------


@pytest.mark.realdata
def test_wfpc2_read_with_generic_one_detector_per_chip(real_data):
    """Decision: read it. Each chip extension is one detector (EXTNAME+EXTVER), the
    whole image is data, there is no overscan, and a warning names the file."""
    path = real_data / "ccd" / "wfpc2_mef" / "test0.fits"
    record = read_record(path, GENERIC)
    assert record.detectors == ("SCI1", "SCI2", "SCI3", "SCI4")
    assert record.frame_type == "science"
    assert record.exptime == pytest.approx(0.23)
    # DATE-OBS = '19/05/94' (old dd/mm/yy) + TIME-OBS = '15:41:16'; EXPSTART is the MJD
    assert record.mjd == pytest.approx(fits.getheader(path)["EXPSTART"], abs=2 / 86400)
    with pytest.warns(AssumedValueWarning, match=r"test0\.fits \[SCI\d\].*DATASEC.*whole 40x40"):
        exposure = read_raw(path, GENERIC)
    assert [f.detector.name for f in exposure.frames] == ["SCI1", "SCI2", "SCI3", "SCI4"]
    with fits.open(path) as hdul:
        for k, frame in enumerate(exposure.frames, start=1):
            (amp,) = frame.amplifiers
            assert amp.overscan is None
            np.testing.assert_array_equal(amp.data, hdul[k].data.astype(np.float32))
            assert amp.amplifier.saturation.value == 4095  # SATURATE from the primary header
            assert amp.amplifier.gain.value == 1.0 and {"gain", "read_noise", "data_section"} <= amp.amplifier.assumed
    assert np.median(exposure.frame("SCI2").amplifiers[0].data) == 349
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AssumedValueWarning)
        only = read_raw(path, GENERIC, detectors=["SCI3"])
    assert [f.detector.name for f in only.frames] == ["SCI3"]
    assert only.record.detectors == record.detectors


# --- synthetic WFST multi-extension files ----------------------------------------------


def write_wfst(path: Path, instrument=WFST_SMALL, compress=False, skip=(), imagetyp="object", seed=1) -> dict:
    """A WFST raw file as docs/raw_format.md describes it; returns the stored uint16 arrays."""
    rng = np.random.default_rng(seed)
    primary = fits.PrimaryHDU()
    h = primary.header
    h["TELESCOP"] = "WFST 2.5m"
    h["INSTRUME"] = "WFST"
    h["OBSERVAT"] = "Lenghu"
    h["DATE-OBS"] = "2024-03-01T15:20:30.000"
    h["MJD-OBS"] = 60370.639236111
    h["EXPTIME"] = 30.0
    h["IMAGETYP"] = imagetyp
    h["FILTER"] = "r"
    h["OBJECT"] = "field 0042"
    h["RA"] = 150.125
    h["DEC"] = 2.2
    h["EXPNUM"] = 42
    h["SIMULATE"] = True
    hdus = [primary]
    truth = {}
    for det in instrument.detectors:
        if det.name in skip:
            continue
        ny, nx = det.raw_shape
        data = rng.integers(500, 65535, size=(ny, nx), dtype=np.uint16)
        header = fits.Header()
        header["CCDNAME"] = det.name
        header["DETSIZE"] = f"[1:{det.shape[1]},1:{det.shape[0]}]"
        for amp in det.amplifiers:
            header[f"DATASEC{amp.name}"] = amp.data_section.to_fits()
            header[f"BIASSEC{amp.name}"] = amp.overscan_section.to_fits()
            header[f"CCDSEC{amp.name}"] = amp.detector_section.to_fits()
            header[f"GAIN{amp.name}"] = amp.gain.value
        if compress:
            hdus.append(fits.CompImageHDU(data, header=header, name=det.name, compression_type="RICE_1"))
        else:
            hdus.append(fits.ImageHDU(data, header=header, name=det.name))
        truth[det.name] = data
    fits.HDUList(hdus).writeto(path)
    return truth


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "fz"])
def test_wfst_synthetic_roundtrip(tmp_path, compress):
    path = tmp_path / ("wfst_20240301_00042.fits" + (".fz" if compress else ""))
    truth = write_wfst(path, compress=compress)
    checksum = sha256(path)
    header = fits.getheader(path, "CCD1")
    assert header["BZERO"] == 32768 and header["BITPIX"] == 16  # stored as int16 + BZERO
    record = read_record(path, WFST_SMALL)
    assert record.detectors == tuple(f"CCD{i}" for i in range(1, 10))
    assert (record.frame_type, record.filter, record.exptime, record.object) == ("science", "r", 30.0, "field 0042")
    assert record.mjd == 60370.639236111
    assert (record.ra, record.dec) == (150.125, 2.2)
    exposure = read_raw(path, WFST_SMALL)
    assert [f.detector.name for f in exposure.frames] == list(truth)
    for frame in exposure.frames:
        stored = truth[frame.detector.name]
        assert len(frame.amplifiers) == 16
        for amp in frame.amplifiers:
            assert amp.data.dtype == np.float32
            np.testing.assert_array_equal(amp.data, stored[amp.amplifier.data_section.slices].astype(np.float32))
            overscan = stored[amp.amplifier.overscan_section.slices].astype(np.float32)
            np.testing.assert_array_equal(amp.overscan, overscan)
        assert frame.header["CCDNAME"] == frame.detector.name
    assert max(float(a.data.max()) for a in exposure.frames[0].amplifiers) > 60000
    assert sha256(path) == checksum


def test_wfst_geometry_is_the_documented_layout():
    det = WFST_SMALL.detector("CCD1")
    ny, nx, o = 72, 18, 8  # 4616/64, 1152/64, max(8, 32/64)
    assert det.raw_shape == (2 * ny, 8 * (nx + o))
    amp_k = det.amplifiers[9]  # row 1, column 1
    assert amp_k.data_section.slices == (slice(ny, 2 * ny), slice(nx + o, 2 * nx + o))
    assert amp_k.overscan_section.slices == (slice(ny, 2 * ny), slice(2 * nx + o, 2 * nx + 2 * o))


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "fz"])
def test_wfst_read_one_detector_only(tmp_path, compress, monkeypatch):
    path = tmp_path / ("one.fits" + (".fz" if compress else ""))
    truth = write_wfst(path, compress=compress)
    seen = []
    original_read = FitsFile.read_image

    def spy(self, info):
        seen.append(info.index)
        array = original_read(self, info)
        if not compress:
            assert isinstance(array, np.memmap)  # plain files are mapped, not read whole
        return array

    monkeypatch.setattr(FitsFile, "read_image", spy)
    decompressed = []
    original_decompress = FitsFile._decompress
    monkeypatch.setattr(
        FitsFile, "_decompress", lambda self, info: decompressed.append(info.index) or original_decompress(self, info)
    )
    exposure = read_raw(path, WFST_SMALL, detectors="CCD5")
    assert [f.detector.name for f in exposure.frames] == ["CCD5"]
    assert seen == [5]
    assert decompressed == ([5] if compress else [])
    amp = exposure.frames[0].amplifier("P")
    np.testing.assert_array_equal(amp.data, truth["CCD5"][amp.amplifier.data_section.slices])
    assert len(exposure.record.detectors) == 9


def test_wfst_missing_extension(tmp_path):
    path = tmp_path / "partial.fits"
    write_wfst(path, skip=("CCD5",))
    record = read_record(path, WFST_SMALL)
    assert "CCD5" not in record.detectors and len(record.detectors) == 8
    with pytest.raises(MissingExtensionError, match=r"partial\.fits.*CCD5"):
        read_raw(path, WFST_SMALL, detectors=["CCD5"])
    with pytest.raises(ValueError, match="no detector 'CCD10'"):
        read_raw(path, WFST_SMALL, detectors=["CCD10"])


@pytest.mark.realdata
def test_wrong_instrument_is_a_missing_extension(real_data):
    with pytest.raises(MissingExtensionError, match=r"b21\.fits\.gz.*CCD1"):
        read_record(kast(real_data, "b21"), WFST_SMALL)


def test_wfst_wrong_shape(tmp_path):
    path = tmp_path / "small.fits"
    write_wfst(path)
    assert read_record(path, WFST).frame_type == "science"  # headers only: no shape check
    with pytest.raises(ShapeError, match=r"small\.fits.*CCD1.*208x144.*9472x9232"):
        read_raw(path, WFST, detectors=["CCD1"])


def test_wfst_unclassified(tmp_path):
    path = tmp_path / "focus.fits"
    write_wfst(path, imagetyp="focus", skip=tuple(f"CCD{i}" for i in range(2, 10)))
    with pytest.raises(UnclassifiedFrameError, match=r"focus\.fits.*IMAGETYP='focus'"):
        read_record(path, WFST_SMALL)


def test_wfst_missing_filter_without_default(tmp_path):
    path = tmp_path / "nofilter.fits"
    write_wfst(path, skip=tuple(f"CCD{i}" for i in range(2, 10)))
    with fits.open(path) as hdul:
        del hdul[0].header["FILTER"]
        hdul.writeto(tmp_path / "nofilter2.fits")
    with pytest.raises(MissingKeywordError, match=r"nofilter2\.fits.*FILTER"):
        read_record(tmp_path / "nofilter2.fits", WFST_SMALL)


def test_detect_instrument(tmp_path, real_data):
    path = tmp_path / "w.fits"
    write_wfst(path, skip=tuple(f"CCD{i}" for i in range(2, 10)))
    assert detect_instrument(fits.getheader(path)) == "wfst"
    assert detect_instrument(fits.getheader(kast(real_data, "b1"))) == "kast_blue"
    assert detect_instrument(fits.getheader(real_data / "ccd" / "wfpc2_mef" / "test0.fits")) is None
    assert detect_instrument({}) is None
    assert instrument_for(path).name == "wfst"
    assert instrument_for(kast(real_data, "b1")).name == "kast_blue"
    assert instrument_for(real_data / "ccd" / "wfpc2_mef" / "test0.fits").name == "generic"
    assert instrument_for(path, "kast_blue").name == "kast_blue"


# --- generic: sections, scaling and float data from the header --------------------------


def write_single(path: Path, data: np.ndarray, **cards) -> None:
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("_", "-")] = value
    fits.PrimaryHDU(data, header=header).writeto(path)


def test_generic_bscale_bzero_sections_and_gain(tmp_path):
    rng = np.random.default_rng(3)
    stored = rng.integers(-3000, 3000, size=(20, 50), dtype=np.int16)
    path = tmp_path / "scaled.fits"
    write_single(
        path, stored, IMAGETYP="flat", EXPTIME=5.0, DATE_OBS="2023-07-01", UT="20:00:00", FILTER="V",
        DATASEC="[1:40,1:20]", BIASSEC="[50:43,1:20]", GAIN=2.5, RDNOISE=4.0, SATURATE=60000,
    )
    with fits.open(path, mode="update", do_not_scale_image_data=True) as hdul:  # our own file
        hdul[0].header["BSCALE"] = 2.0
        hdul[0].header["BZERO"] = 100.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumedValueWarning)  # everything is in the header: no warning
        exposure = read_raw(path, GENERIC)
    record = exposure.record
    assert (record.frame_type, record.filter, record.exptime) == ("flat", "V", 5.0)
    assert record.mjd == pytest.approx(60126 + 20 / 24)  # 2023-07-01 = MJD 60126
    (amp,) = exposure.frames[0].amplifiers
    np.testing.assert_array_equal(amp.data, stored[:, :40].astype(np.float32) * 2 + 100)
    np.testing.assert_array_equal(amp.overscan, stored[:, 42:50].astype(np.float32) * 2 + 100)
    assert amp.amplifier.overscan_section.flip_x  # written reversed
    assert amp.amplifier.gain.value == 2.5 and amp.amplifier.read_noise.value == 4.0
    assert amp.amplifier.saturation.value == 60000
    assert "gain" not in amp.amplifier.assumed


def test_generic_float_data_and_configured_fallbacks(tmp_path):
    stored = np.linspace(-1.5, 1e5, 12 * 16, dtype=np.float32).reshape(12, 16)
    path = tmp_path / "float.fits"
    write_single(path, stored, EXPTIME=0.0, MJD_OBS=60000.25)
    user = tmp_path / "cam.toml"
    user.write_text('extends = "generic"\nname = "cam"\n[header_sections]\ngain = 1.9\nread_noise = "3.3 electron"\n')
    cam = load_instrument(user)
    with pytest.warns(AssumedValueWarning, match=r"float\.fits.*1\.9 e-/ADU from the instrument file"):
        exposure = read_raw(path, cam)
    assert exposure.record.frame_type == "bias"  # EXPTIME 0
    assert exposure.record.mjd == 60000.25
    (amp,) = exposure.frames[0].amplifiers
    np.testing.assert_array_equal(amp.data, stored)
    assert amp.amplifier.gain.value == 1.9 and amp.amplifier.read_noise.value == 3.3
    assert {"gain", "read_noise"} <= amp.amplifier.assumed
    assert np.isinf(amp.amplifier.saturation.value)


@pytest.mark.realdata
@pytest.mark.parametrize("kind", ["bz2", "fz"])
def test_kast_recompressed_reads_the_same(tmp_path, real_data, kind):
    original = kast(real_data, "b21")
    path = tmp_path / f"b21.fits.{kind}"
    if kind == "bz2":
        path.write_bytes(bz2.compress(gzip.decompress(original.read_bytes())))
    else:  # fpack-like: empty primary, the image Rice-compressed in HDU 1
        with fits.open(original) as hdul:
            image = fits.CompImageHDU(hdul[0].data, header=hdul[0].header, compression_type="RICE_1")
            fits.HDUList([fits.PrimaryHDU(), image]).writeto(path)
    copy, real = read_raw(path, KAST), read_raw(original, KAST)
    assert copy.record.frame_type == "bias" and copy.record.mjd == real.record.mjd
    for a, b in zip(copy.frames[0].amplifiers, real.frames[0].amplifiers):
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.overscan, b.overscan)


# --- broken files ---------------------------------------------------------------------


def kast_copy(real_data: Path, tmp_path: Path, name: str, out: str, edit) -> Path:
    with fits.open(kast(real_data, name)) as hdul:
        data, header = hdul[0].data, hdul[0].header.copy()
    data, header = edit(data, header)
    path = tmp_path / out
    fits.PrimaryHDU(data, header=header).writeto(path)
    return path


def both_readers(path: Path, instrument, error: type[FrameError], pattern: str, raw_only=False):
    readers = (read_raw,) if raw_only else (read_record, read_raw)
    for reader in readers:
        with pytest.raises(error) as info:
            reader(path, instrument)
        assert path.name in str(info.value)
        assert re.search(pattern, str(info.value)), str(info.value)
        assert info.value.path == str(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fits"
    path.touch()
    both_readers(path, KAST, UnreadableFileError, "empty")


def test_not_fits(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("these are my observing notes\n" * 200)
    both_readers(path, KAST, UnreadableFileError, "not a FITS file")


def test_garbage_header(tmp_path):
    path = tmp_path / "garbage.fits"
    card = b"SIMPLE  =                    T".ljust(80)
    path.write_bytes(card + np.random.default_rng(0).integers(0, 256, 2800 * 3, dtype=np.uint8).tobytes())
    both_readers(path, KAST, UnreadableFileError, "garbage header")


def test_header_without_required_keywords(tmp_path):
    path = tmp_path / "nobitpix.fits"
    path.write_bytes((b"SIMPLE  =                    T".ljust(80) + b"END".ljust(80)).ljust(2880))
    both_readers(path, KAST, UnreadableFileError, "BITPIX")


def test_missing_file(tmp_path):
    both_readers(tmp_path / "nowhere.fits", KAST, UnreadableFileError, "cannot open")


def kast_data_end(whole: bytes) -> int:
    """End of the pixels of a decompressed Kast frame: header blocks, then 350 x 2112 int16."""
    end_card = next(i for i in range(0, len(whole), 80) if whole[i : i + 8] == b"END     ")
    return (end_card // 2880 + 1) * 2880 + 350 * 2112 * 2


@pytest.mark.realdata
@pytest.mark.parametrize("where", ["half", "last_pixel", "header"])
def test_truncated_plain_copy(tmp_path, real_data, where):
    whole = gzip.decompress(kast(real_data, "b21").read_bytes())
    data_end = kast_data_end(whole)
    cut = {"half": len(whole) // 2, "last_pixel": data_end - 2, "header": 1000}[where]
    path = tmp_path / "b21_cut.fits"
    path.write_bytes(whole[:cut])
    pattern = "ends inside the header" if where == "header" else f"ending at byte {data_end}.*only {cut} bytes"
    both_readers(path, KAST, TruncatedFileError, pattern)


@pytest.mark.realdata
def test_missing_final_padding_is_tolerated(tmp_path, real_data):
    whole = gzip.decompress(kast(real_data, "b21").read_bytes())
    path = tmp_path / "b21_nopad.fits"
    path.write_bytes(whole[: kast_data_end(whole)])  # every pixel there, the block padding not
    assert len(whole) % 2880 == 0 and path.stat().st_size % 2880 != 0
    assert read_raw(path, KAST).record.frame_type == "bias"


@pytest.mark.realdata
def test_truncated_gzip(tmp_path, real_data):
    packed = kast(real_data, "b21").read_bytes()
    path = tmp_path / "b21_cut.fits.gz"
    path.write_bytes(packed[: len(packed) // 2])
    both_readers(path, KAST, TruncatedFileError, "compressed data end early")


def test_truncated_fz(tmp_path):
    path = tmp_path / "cut.fits.fz"
    write_wfst(path, compress=True)
    packed = path.read_bytes()
    path.write_bytes(packed[: len(packed) - 5000])
    both_readers(path, WFST_SMALL, TruncatedFileError, "truncated")


@pytest.mark.realdata
@pytest.mark.parametrize(
    "datasec, pattern",
    [
        ("[1:4096,1:350]", r"outside the 2112x350 image"),
        ("[1:2048;1:350]", "is not a section"),
        ("[0:10,1:5]", "start at 1"),
    ],
)
def test_generic_section_errors(tmp_path, real_data, datasec, pattern):
    def edit(data, header):
        header["DATASEC"] = datasec
        return data, header

    path = kast_copy(real_data, tmp_path, "b24", "b24_badsec.fits", edit)
    assert read_record(path, GENERIC).frame_type == "science"  # the record needs no section
    both_readers(path, GENERIC, SectionError, pattern, raw_only=True)


@pytest.mark.realdata
def test_missing_exptime(tmp_path, real_data):
    def edit(data, header):
        del header["EXPTIME"]
        return data, header

    path = kast_copy(real_data, tmp_path, "b24", "b24_noexp.fits", edit)
    checksum = sha256(path)
    both_readers(path, KAST, MissingKeywordError, "EXPTIME")
    assert sha256(path) == checksum
    # a bias needs no exposure time: OBJECT = 'Bias' classifies it, exptime is 0
    bias = kast_copy(real_data, tmp_path, "b21", "b21_noexp.fits", edit)
    record = read_record(bias, KAST)
    assert (record.frame_type, record.exptime) == ("bias", 0.0)


@pytest.mark.realdata
def test_bad_exptime_and_date(tmp_path, real_data):
    def bad_exptime(data, header):
        header["EXPTIME"] = "long"
        return data, header

    def no_date(data, header):
        del header["DATE-OBS"]
        return data, header

    path = kast_copy(real_data, tmp_path, "b24", "b24_badexp.fits", bad_exptime)
    both_readers(path, KAST, MissingKeywordError, "EXPTIME = 'long'")
    path = kast_copy(real_data, tmp_path, "b24", "b24_nodate.fits", no_date)
    both_readers(path, KAST, MissingKeywordError, "DATE-OBS")


@pytest.mark.realdata
def test_kast_wrong_shape(tmp_path, real_data):
    path = kast_copy(real_data, tmp_path, "b21", "b21_crop.fits", lambda d, h: (d[:, :2000], h))
    both_readers(path, KAST, ShapeError, "2000x350.*2112x350", raw_only=True)


# --- coordinates and times ------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kind, degrees",
    [
        ("09:21:46.0", "ra", 140.44166666666666),
        ("09 21 46.0", "ra", 140.44166666666666),
        (" 37:25:56.0 ", "dec", 37.43222222222222),
        ("-05:30:00", "dec", -5.5),
        ("-00:30:00", "dec", -0.5),
        (150.5, "ra", 150.5),
        ("150.5", "ra", 150.5),
        (-10.0, "ra", 350.0),
        ("9h21m46s", "ra", 140.44166666666666),
        ("north", "dec", None),
        (95.0, "dec", None),
        ("", "ra", None),
    ],
)
def test_parse_angle(value, kind, degrees):
    result = parse_angle(value, kind)
    if degrees is None:
        assert result is None
    else:
        assert result == pytest.approx(degrees)
        assert type(result) is float


def test_observation_mjd_forms():
    rules = GENERIC.rules
    assert observation_mjd({"MJD-OBS": 59000.5}, rules, "f") == 59000.5
    iso = observation_mjd({"DATE-OBS": "2015-05-20T01:35:27.67"}, rules, "f")
    assert iso == pytest.approx(mjd_by_hand("2015-05-20T01:35:27.67"), abs=1e-9)
    assert observation_mjd({"DATE-OBS": "2015-05-20", "TIME-OBS": "01:35:27.67"}, rules, "f") == pytest.approx(iso)
    hours = observation_mjd({"DATE-OBS": "2015-05-20", "UT": 1.5}, rules, "f")
    assert hours == pytest.approx(MJD_2015_05_20 + 1.5 / 24)
    assert observation_mjd({"DATE-OBS": "20/05/95", "UT": "12:00:00"}, rules, "f") == pytest.approx(49857.5)
    with pytest.raises(MissingKeywordError, match=r"^f: DATE-OBS = '2015-05-20' has no time of day"):
        observation_mjd({"DATE-OBS": "2015-05-20"}, rules, "f")
    with pytest.raises(MissingKeywordError, match="not a date"):
        observation_mjd({"DATE-OBS": "yesterday"}, rules, "f")
    with pytest.raises(MissingKeywordError, match="no observation time"):
        observation_mjd({}, rules, "f")


@pytest.mark.parametrize("kind", ["plain", "fz", "gz"])
def test_files_are_opened_read_only(tmp_path, monkeypatch, kind):
    from lenghu.io import fitsfile

    path = tmp_path / {"plain": "w.fits", "fz": "w.fits.fz", "gz": "w.fits.gz"}[kind]
    write_wfst(path, compress=kind == "fz", skip=tuple(f"CCD{i}" for i in range(3, 10)))
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (kind == "gz")  # astropy gzips a .gz name
    before = (sha256(path), path.stat().st_mtime_ns)
    modes = []

    def spy(name, real):
        def wrapped(*args, **kwargs):
            mode = kwargs.get("mode", args[1] if len(args) > 1 else "r")
            modes.append((name, mode))
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(fitsfile, "open", spy("open", open), raising=False)
    monkeypatch.setattr(fitsfile.gzip, "open", spy("gzip", gzip.open))
    monkeypatch.setattr(fitsfile.fits, "open", spy("fits", fits.open))
    monkeypatch.setattr(fitsfile.np, "memmap", spy("memmap", np.memmap))
    exposure = read_raw(path, WFST_SMALL)
    assert [f.detector.name for f in exposure.frames] == ["CCD1", "CCD2"]
    assert modes and all(mode in ("r", "rb", "readonly") for _, mode in modes), modes
    assert {name for name, _ in modes} >= {"plain": {"open", "memmap"}, "fz": {"open", "fits"}, "gz": {"gzip"}}[kind]
    assert (sha256(path), path.stat().st_mtime_ns) == before
