"""Products written strip by strip (lenghu.io.streamed_fits) against astropy's own writer, and raw
frames assembled strip by strip against the whole-frame assembly."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from lenghu.calib.assemble import StripAssembler, assemble
from lenghu.calib.masks import MASK_DTYPE
from lenghu.calib.overscan import OverscanConfig
from lenghu.io.products import (MasterFile, ProvenanceEntry, _mask_header, _primary, stream_image_product,
                                write_image_product)
from lenghu.io.raw import open_raw_detector, read_raw
from lenghu.io.streamed_fits import encode_checksum, ones_complement_sum


def _astropy_product(path, sci, var, mask, cards, provenance, config_hash, extra):
    """What write_image_product wrote before it streamed: one astropy HDUList.writeto."""
    table = Table({"ROLE": [e.role for e in provenance], "PATH": [e.path for e in provenance],
                   "CHECKSUM": [e.checksum for e in provenance]})
    prov_hash = hashlib.sha256("\n".join(f"{e.role} {e.path} {e.checksum}" for e in provenance).encode()).hexdigest()
    sci_hdu = fits.ImageHDU(sci, header=extra.copy(), name="SCI")
    sci_hdu.header["BUNIT"] = "electron"
    var_hdu = fits.ImageHDU(var, header=extra.copy(), name="VAR")
    var_hdu.header["BUNIT"] = "electron2"
    mask_header = extra.copy()
    mask_header.update(_mask_header())
    mask_hdu = fits.ImageHDU(mask, header=mask_header, name="MASK")
    hdul = fits.HDUList([_primary(cards, prov_hash, config_hash), sci_hdu, var_hdu, mask_hdu,
                         fits.BinTableHDU(table, name="PROVENANCE")])
    for hdu in hdul:
        hdu.add_checksum(when="HDU checksum")
    hdul.writeto(path)


@pytest.fixture
def planes():
    rng = np.random.default_rng(2)
    shape = (301, 77)
    return (rng.normal(100, 30, shape).astype(np.float32), rng.random(shape).astype(np.float32) * 50,
            rng.integers(0, 128, shape).astype(MASK_DTYPE))


def test_streamed_product_has_the_bytes_astropy_writes(planes, tmp_path, fitsverify):
    sci, var, mask = planes
    sci[3, 4] = np.nan
    var[5, 6] = np.inf
    extra = fits.Header()
    extra["OBSERVER"] = "nobody"
    cards = {"OBJECT": ("M 31", "target"), "EXPTIME": (30.0, "s"), "NCRPIX": (0, "pixels flagged as cosmic rays")}
    prov = [ProvenanceEntry("raw", "/data/raw/x.fits", "a" * 64), ProvenanceEntry("bias", "/m/b.fits", "b" * 64)]
    _astropy_product(tmp_path / "astropy.fits", sci, var, mask, cards, prov, "c" * 64, extra)
    write_image_product(tmp_path / "whole.fits", sci, var, mask, cards, prov, "c" * 64, extra)
    # strips out of order and of uneven sizes, and a primary card set at the end
    with stream_image_product(tmp_path / "strips.fits", sci.shape, {**cards, "NCRPIX": (-1, "placeholder")}, prov,
                              "c" * 64, extra) as out:
        for y0, y1 in ((200, 301), (0, 7), (7, 200)):
            out.write_rows(y0, sci[y0:y1], var[y0:y1], mask[y0:y1])
        out.update_primary({"NCRPIX": (0, "pixels flagged as cosmic rays")})
    reference = (tmp_path / "astropy.fits").read_bytes()
    assert (tmp_path / "whole.fits").read_bytes() == reference
    assert (tmp_path / "strips.fits").read_bytes() == reference
    errors, report = fitsverify(tmp_path / "strips.fits")
    assert errors == 0, report
    with fits.open(tmp_path / "strips.fits", checksum=True) as hdul:  # astropy checks CHECKSUM/DATASUM
        for hdu in hdul:
            assert hdu.verify_checksum() == 1 and hdu.verify_datasum() in (1, 2)


def test_a_product_with_rows_missing_or_an_error_never_appears(planes, tmp_path):
    sci, var, mask = planes
    target = tmp_path / "p.fits"
    with pytest.raises(ValueError, match="rows never written"):
        with stream_image_product(target, sci.shape, {}, [], "c" * 64) as out:
            out.write_rows(0, sci[:100], var[:100], mask[:100])
    with pytest.raises(RuntimeError, match="boom"):
        with stream_image_product(target, sci.shape, {}, [], "c" * 64) as out:
            out.write_rows(0, sci, var, mask)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # no product, no temporary


def test_checksum_helpers_agree_with_astropy():
    data = np.random.default_rng(3).integers(0, 2**32, 7200, dtype=np.uint64).astype(">u4").tobytes()
    hdu = fits.ImageHDU(np.frombuffer(data, dtype=">i4").reshape(60, 120))  # signed: no BZERO rescaling
    assert ones_complement_sum(data) == int(hdu._calculate_datasum())
    # additive over 4-byte aligned pieces
    assert ones_complement_sum(data[4000:], ones_complement_sum(data[:4000])) == ones_complement_sum(data)
    for value in (0, 1, 0xFFFFFFFF, 0x3A3B3C3D, 123456789):
        assert encode_checksum(value) == hdu._char_encode(value)


def test_master_file_reads_rows_as_written(planes, tmp_path):
    sci, var, mask = planes
    write_image_product(tmp_path / "m.fits", sci, var, mask, {}, [], "c" * 64)
    part = MasterFile(tmp_path / "m.fits", "bias").rows(17, 91)
    np.testing.assert_array_equal(part.image, sci[17:91])
    np.testing.assert_array_equal(part.variance, var[17:91])
    np.testing.assert_array_equal(part.mask, mask[17:91])
    assert part.image.dtype == np.float32 and part.image.dtype.isnative


@pytest.fixture(scope="module")
def wfst_flat(tmp_path_factory):
    from lenghu.simulate.config import NightConfig
    from lenghu.simulate.night import simulate_night

    root = tmp_path_factory.mktemp("strip_asm")
    simulate_night(NightConfig(scale="1/16", seed=3, n_bias=0, n_dark=0, n_flat=1, n_science=0, filters=("r",),
                               detectors=("CCD5",), truth_images=False), root, progress=False)
    return str(next((root / "raw").glob("*.fits*")))


@pytest.mark.parametrize("method", ["row_median", "median", "row_poly"])
@pytest.mark.parametrize("flipped", [False, True])
def test_strip_assembly_equals_whole_frame_assembly(wfst_flat, method, flipped):
    """WFST's 16 amplifiers assembled strip by strip from rows read off the file give the very arrays
    of the whole-frame assembly; also with the upper amplifiers read out flipped in y and some in x
    (no shipped instrument has flips, cameras that say so in DETSEC do)."""
    from dataclasses import replace

    from lenghu.io.raw import AmplifierPixels, instrument_for

    instrument = instrument_for(wfst_flat, "wfst")
    config = OverscanConfig(method=method)
    reader = open_raw_detector(wfst_flat, instrument, "CCD5")
    detector = reader.detector
    if flipped:
        amps = tuple(replace(a, detector_section=replace(a.detector_section, flip_y=i >= 8, flip_x=i % 3 == 0))
                     for i, a in enumerate(detector.amplifiers))
        detector = replace(detector, amplifiers=amps)
        raw = reader.rows(0, reader.raw_shape[0])
        pixels = [AmplifierPixels(a, raw[a.data_section.slices], raw[a.overscan_section.slices]) for a in amps]
    else:
        pixels = read_raw(wfst_flat, instrument, detectors=["CCD5"]).frames[0].amplifiers
    whole = assemble(pixels, detector, config)
    strips = StripAssembler(reader.rows, detector, config, chunk_rows=97)
    ny = whole.image.shape[0]
    cuts = list(range(0, ny, 41)) + [ny]
    for field in ("image", "read_variance", "saturated", "no_data"):
        got = np.concatenate([getattr(strips.rows(a, b), field) for a, b in zip(cuts[:-1], cuts[1:])])
        np.testing.assert_array_equal(got, getattr(whole, field), err_msg=field)
    assert strips.read_noise == whole.read_noise and strips.overscan_level == whole.overscan_level
    # The masters' lean path: the same electrons, NaN exactly where there are no data.
    signal = np.concatenate([strips.signal_rows(a, b) for a, b in zip(cuts[:-1], cuts[1:])])
    np.testing.assert_array_equal(np.isnan(signal), whole.no_data)
    np.testing.assert_array_equal(signal[~whole.no_data], whole.image[~whole.no_data])


def test_signal_rows_marks_missing_pixels_and_uncovered_columns(wfst_flat):
    """A NaN or infinite raw value, and a column no amplifier covers, are NaN in the masters' input rows."""
    from dataclasses import replace

    from lenghu.io.raw import instrument_for

    reader = open_raw_detector(wfst_flat, instrument_for(wfst_flat, "wfst"), "CCD5")
    raw = reader.rows(0, reader.raw_shape[0]).copy()
    amp0 = reader.detector.amplifiers[0]
    raw[amp0.data_section.y0 + 2, amp0.data_section.x0 + 3] = np.nan
    raw[amp0.data_section.y0 + 4, amp0.data_section.x0 + 5] = np.inf
    config = OverscanConfig(method="median")
    full = StripAssembler(lambda a, b: raw[a:b], reader.detector, config)
    signal = full.signal_rows(0, full.shape[0])
    frame = full.rows(0, full.shape[0])
    np.testing.assert_array_equal(np.isnan(signal), frame.no_data)
    assert frame.no_data.sum() == 2
    # Without amplifier 0 its pixels are covered by nothing.
    detector = replace(reader.detector, amplifiers=reader.detector.amplifiers[1:])
    partial = StripAssembler(lambda a, b: raw[a:b], detector, config)
    part = partial.signal_rows(0, partial.shape[0])
    assert np.isnan(part[amp0.detector_section.slices]).all()
    assert np.isfinite(np.delete(part.ravel(), np.flatnonzero(np.isnan(part)))).all()
    assert np.isnan(part).sum() == amp0.detector_section.shape[0] * amp0.detector_section.shape[1]


@pytest.mark.parametrize("method", ["row_median", "median"])
def test_no_data_is_counted_without_assembling_and_levels_are_reused(wfst_flat, method):
    """What a master's input pass measures: the pixels without data (a NaN and an infinite raw value, a
    row whose overscan is all NaN, amplifiers that cover nothing) as signal_rows would give them, and
    overscan levels that a second assembler of the frame reuses to give the very same rows."""
    from dataclasses import replace

    from lenghu.io.raw import instrument_for

    reader = open_raw_detector(wfst_flat, instrument_for(wfst_flat, "wfst"), "CCD5")
    raw = reader.rows(0, reader.raw_shape[0]).copy()
    amp0, amp5 = reader.detector.amplifiers[0], reader.detector.amplifiers[5]
    raw[amp0.data_section.y0 + 2, amp0.data_section.x0 + 3] = np.nan
    raw[amp0.data_section.y0 + 4, amp0.data_section.x0 + 5] = np.inf
    raw[amp5.overscan_section.y0 + 7, amp5.overscan_section.x0:amp5.overscan_section.x1] = np.nan
    raw[amp5.data_section.y0 + 7, amp5.data_section.x0 + 1] = np.nan  # on that row: counted once
    config = OverscanConfig(method=method)
    for detector in (reader.detector, replace(reader.detector, amplifiers=reader.detector.amplifiers[1:])):
        measured = StripAssembler(lambda a, b: raw[a:b], detector, config, chunk_rows=97)
        signal = measured.signal_rows(0, measured.shape[0])
        assert measured.no_data_pixels() == int(np.isnan(signal).sum()) > 1
        again = StripAssembler(lambda a, b: raw[a:b], detector, config, levels=measured.levels())
        cuts = list(range(0, measured.shape[0], 50)) + [measured.shape[0]]
        rows = np.concatenate([again.signal_rows(a, b) for a, b in zip(cuts[:-1], cuts[1:])])
        np.testing.assert_array_equal(rows, signal)
        assert again.read_variance_layout() == measured.read_variance_layout()
    # Integer raw data without BLANK cannot lack a value: then only the levels are looked at.
    clean = StripAssembler(reader.rows, reader.detector, config)
    assert not reader.may_lack_data
    assert clean.no_data_pixels(raw_may_be_missing=False) == 0 == clean.no_data_pixels()


def test_a_product_written_in_parts_by_several_writers_has_the_same_bytes(planes, tmp_path, fitsverify):
    """Row ranges written through separate writers (as separate worker processes do) and joined give the
    file one writer gives; cards set at the end land in the header; nothing is left beside the file."""
    import pickle

    from lenghu.io.products import begin_shared_product, finish_shared_product

    sci, var, mask = planes
    provenance = [ProvenanceEntry("input", "/raw/a.fits", "ab" * 32)]
    cards = {"OBSTYPE": ("MASTER_BIAS", "kind"), "HIERARCH LH Q NOISE": "undefined"}
    write_image_product(tmp_path / "one.fits", sci, var, mask, dict(cards, **{"HIERARCH LH Q NOISE": 1.25}),
                        provenance, "c" * 64)
    product = begin_shared_product(tmp_path / "parts.fits", sci.shape, cards, provenance, "c" * 64)
    parts = []
    for y0, y1 in ((200, 301), (0, 120), (120, 200)):  # any order, each through its own (pickled) copy
        copy = pickle.loads(pickle.dumps(product))
        with copy.writer() as out:
            out.write_rows(y0, sci[y0:y1], var[y0:y1], mask[y0:y1])
            parts.append(out.written())
    path, checksum = finish_shared_product(product, parts, {"HIERARCH LH Q NOISE": 1.25})
    assert path == tmp_path / "parts.fits"
    assert path.read_bytes() == (tmp_path / "one.fits").read_bytes()
    assert checksum == hashlib.sha256(path.read_bytes()).hexdigest()  # of the final bytes
    errors, report = fitsverify(tmp_path / "parts.fits")
    assert errors == 0, report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.fits", "parts.fits"]


def test_a_product_with_a_part_missing_is_refused_and_leaves_nothing(planes, tmp_path):
    from lenghu.io.products import begin_shared_product, finish_shared_product

    sci, var, mask = planes
    product = begin_shared_product(tmp_path / "m.fits", sci.shape, {}, [], "c" * 64)
    with product.writer() as out:
        out.write_rows(0, sci[:100], var[:100], mask[:100])
        part = out.written()
    with pytest.raises(ValueError, match="never written"):
        finish_shared_product(product, [part], {})
    assert list(tmp_path.iterdir()) == []


def test_a_master_finish_recomputed_after_the_file_was_made_reads_it_back(tmp_path):
    """A worker that dies holding a finished master's result makes Dask recompute the finishing tasks:
    they must neither fail on the renamed temporary nor write again, and give the same answer."""
    from lenghu.calib.masters import MasterConfig, MasterQuality
    from lenghu.io.products import begin_shared_product, master_cards
    from lenghu.pipelines import tasks

    rng = np.random.default_rng(4)
    outputs = tasks.create_combine_outputs(str(tmp_path / "work"), (40, 24))
    for name, values in (("image", rng.normal(5, 2, (40, 24))), ("variance", np.full((40, 24), 4.0)),
                         ("n_used", np.full((40, 24), 7))):
        plane = np.load(outputs[name], mmap_mode="r+")
        plane[:] = values
        plane.flush()
        del plane
    final = tmp_path / "masters" / "bias_X.fits"
    product = begin_shared_product(final, (40, 24), master_cards("bias", "X", None, MasterQuality.placeholder(
        "bias", 7)), [], "c" * 64)
    plan = tasks.plan_master_file("bias", outputs, 7, MasterConfig(), [])
    parts = [tasks.write_master_rows(product, plan, outputs, a, b) for a, b in ((0, 17), (17, 40))]
    first = tasks.finish_master_product(product, plan, parts)
    before = final.read_bytes()
    assert product.finished()
    again = [tasks.write_master_rows(product, plan, outputs, a, b) for a, b in ((0, 17), (17, 40))]
    second = tasks.finish_master_product(product, plan, again)
    assert final.read_bytes() == before
    assert second["checksum"] == first["checksum"]
    assert second["quality"] == pytest.approx({k: round(v, 6) if isinstance(v, float) else v
                                               for k, v in first["quality"].items()})
