"""Image pyramids of a whole exposure: 9 CCDs (raw MEF, or calibrated products) placed on one canvas."""

from __future__ import annotations

import hashlib
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from lenghu.calib.assemble import assemble
from lenghu.calib.overscan import OverscanConfig
from lenghu.instruments import load_instrument
from lenghu.io.raw import instrument_for, read_raw
from lenghu.viewer.tiles import (MissingDetectorWarning, PyramidError, PyramidOptions, TileStore, build_pyramid)
from lenghu.viewer.tiles.canvas import open_source

RAW = Path(__file__).resolve().parents[2] / "sample_data/night/raw"
EXPOSURE = "wfst_20251120_00015"  # a 9-CCD science exposure of the sample night (1/36 scale: 256 x 256 CCDs)
OTHER = "wfst_20251120_00014"
TILE = 64


def _canvas(store: TileStore) -> np.ndarray:
    """Level 0 of a pyramid as one array (rows upwards, FITS order)."""
    lv = store.levels[0]
    full = np.concatenate([np.concatenate([store.read_tile(0, ty, tx) for tx in range(lv.tiles[1])], axis=1)
                           for ty in range(lv.tiles[0])])
    return full[: store.shape[0], : store.shape[1]]


def _calibrate(raw: Path, out: Path, ccd: str) -> Path:
    """The calibrated product of one CCD of an exposure, made by the pipeline's own per-CCD task (no masters)."""
    from lenghu.calib.cosmics import CosmicRayConfig
    from lenghu.calib.isr import IsrConfig
    from lenghu.pipelines.tasks import calibrate

    final = out / f"{raw.name.split('.')[0]}_{ccd}.fits"
    calibrate(str(raw), "auto", ccd, {}, IsrConfig(cosmic_rays=CosmicRayConfig(enabled=False)), str(final), [],
              "test")
    return final


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """(raw exposure, its sha256, the products of it, a product of another exposure)."""
    folder = tmp_path_factory.mktemp("exposure")
    raw = RAW / f"{EXPOSURE}.fits.fz"
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    (folder / "calibrated").mkdir()
    products = [_calibrate(raw, folder / "calibrated", f"CCD{k}") for k in range(1, 10)]
    (folder / "other").mkdir()
    foreign = _calibrate(RAW / f"{OTHER}.fits.fz", folder / "other", "CCD2")
    return raw, digest, products, foreign


def _expected_corners(shape: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Bottom-left canvas pixel of each CCD from the instrument file's position and mosaic_gap, by hand."""
    wfst = load_instrument("wfst")
    full = wfst.detectors[0].shape
    gap = (200, 200)  # wfst.toml mosaic_gap
    pitch = [(full[i] + gap[i]) * shape[i] / full[i] for i in range(2)]
    positions = {f"CCD{3 * r + c + 1}": (r, c) for r in range(3) for c in range(3)}  # wfst.toml position
    return {name: (int(round(r * pitch[0])), int(round(c * pitch[1]))) for name, (r, c) in positions.items()}


def test_raw_exposure_is_assembled_ccd_by_ccd_on_one_canvas(night, tmp_path):
    raw, digest, *_ = night
    store = TileStore(build_pyramid(raw, tmp_path / "raw.pyr", PyramidOptions(tile=TILE)).path)
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == digest  # raw input never modified
    canvas = _canvas(store)
    inst = instrument_for(raw)
    ccd = inst.detectors[0].shape
    assert ccd == (256, 256)
    corners = _expected_corners(ccd)
    # 3 CCDs and 2 gaps (200 px at full size -> 5 or 6 px at 1/36) along each axis
    assert store.shape == (corners["CCD9"][0] + ccd[0], corners["CCD9"][1] + ccd[1])
    exposure = read_raw(raw, inst)
    covered = np.zeros(store.shape, bool)
    for frame in exposure.frames:
        want = assemble(frame.amplifiers, frame.detector, OverscanConfig()).image  # the whole-frame assembly
        y0, x0 = corners[frame.detector.name]
        np.testing.assert_array_equal(canvas[y0:y0 + ccd[0], x0:x0 + ccd[1]], want)
        covered[y0:y0 + ccd[0], x0:x0 + ccd[1]] = True
    assert covered.sum() == 9 * ccd[0] * ccd[1]
    assert np.isnan(canvas[~covered]).all()  # the gaps
    meta = {m["name"]: m for m in store.meta["mosaic"]}
    assert meta["CCD5"]["y0"] == corners["CCD5"][0] and meta["CCD5"]["x0"] == corners["CCD5"][1]
    # the central CCD is in the middle of the canvas; CCD1 (position [0, 0]) at the bottom left
    cy, cx = corners["CCD5"][0] + ccd[0] / 2, corners["CCD5"][1] + ccd[1] / 2
    assert abs(cy - store.shape[0] / 2) <= 1 and abs(cx - store.shape[1] / 2) <= 1
    assert corners["CCD1"] == (0, 0) and corners["CCD3"][0] == 0 and corners["CCD3"][1] > corners["CCD2"][1]
    assert "raw exposure" in store.meta["source"] and store.header["RAWFILE"] == raw.name
    # stretch limits from the subsample of all CCDs: near those of every assembled pixel
    every = np.concatenate([assemble(f.amplifiers, f.detector, OverscanConfig()).image.ravel()
                            for f in exposure.frames])
    lo, hi = store.limits("percentile", 99.0)
    want = np.percentile(every, [1.0, 99.0])
    spread = want[1] - want[0]
    assert abs(lo - want[0]) < 0.05 * spread and abs(hi - want[1]) < 0.05 * spread


def test_calibrated_products_of_an_exposure_form_one_canvas(night, tmp_path):
    raw, _, products, _ = night
    pattern = str(products[0].parent / f"{EXPOSURE}_*.fits")
    store = TileStore(build_pyramid(pattern, tmp_path / "cal.pyr", PyramidOptions(tile=TILE)).path)
    canvas = _canvas(store)
    ccd = (256, 256)
    corners = _expected_corners(ccd)
    covered = np.zeros(store.shape, bool)
    for path in products:
        with fits.open(path) as hdul:
            name, sci = hdul[0].header["CCDNAME"], hdul["SCI"].data.astype(np.float32)
        y0, x0 = corners[name]
        np.testing.assert_array_equal(canvas[y0:y0 + ccd[0], x0:x0 + ccd[1]], sci)
        covered[y0:y0 + ccd[0], x0:x0 + ccd[1]] = True
    assert np.isnan(canvas[~covered]).all()
    assert store.header["RAWFILE"] == raw.name and "calibrated products, 9 detectors" in store.meta["source"]
    # the same placement as the raw exposure's canvas
    raw_store = TileStore(build_pyramid(raw, tmp_path / "raw.pyr", PyramidOptions(tile=TILE)).path)
    assert raw_store.shape == store.shape and raw_store.meta["mosaic"][4]["x0"] == store.meta["mosaic"][4]["x0"]


def test_products_of_another_exposure_or_twice_one_ccd_are_refused(night, tmp_path):
    _, _, products, foreign = night
    with pytest.raises(PyramidError, match=rf"{foreign.name}.*{OTHER}.*one exposure per pyramid"):
        build_pyramid(products[:4] + [foreign], tmp_path / "mixed.pyr")
    twin = tmp_path / "twin.fits"
    shutil.copy(products[2], twin)
    with pytest.raises(PyramidError, match=r"twin.fits: detector CCD3 again"):
        build_pyramid(products + [twin], tmp_path / "twin.pyr")
    plain = tmp_path / "plain.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((8, 8), np.float32), name="SCI")]).writeto(plain)
    with pytest.raises(PyramidError, match=r"plain.fits: no CCDNAME or RAWFILE"):
        build_pyramid(products[:2] + [plain], tmp_path / "plain.pyr")
    assert not list(tmp_path.glob("*.pyr")) and not list(tmp_path.glob(".*build-*"))  # nothing half-written


def test_a_missing_ccd_is_a_nan_gap_with_a_warning(night, tmp_path):
    _, _, products, _ = night
    some = [p for p in products if not p.name.endswith("_CCD5.fits")]
    with pytest.warns(MissingDetectorWarning, match="CCD5"):
        store = TileStore(build_pyramid(some, tmp_path / "hole.pyr", PyramidOptions(tile=TILE)).path)
    canvas = _canvas(store)
    y0, x0 = _expected_corners((256, 256))["CCD5"]
    assert store.shape == (779, 779)
    assert np.isnan(canvas[y0:y0 + 256, x0:x0 + 256]).all()
    with fits.open(products[0]) as hdul:
        np.testing.assert_array_equal(canvas[:256, :256], hdul["SCI"].data)


def test_canvas_bands_read_only_their_rows(night, monkeypatch):
    """A band of the canvas opens only the CCDs it crosses, reads only their rows, and closes finished ones."""
    raw, *_ = night
    src = open_source(raw)
    calls = []
    for p in src.placed:
        opener = p.open

        def traced(_open=opener, _name=p.name):
            rows, close = _open()
            return (lambda a, b: calls.append((_name, a, b)) or rows(a, b)), close

        p.open = traced
    try:
        band = src.rows(200, 300)  # crosses the top of row 0 of CCDs, the gap, the bottom of row 1
        assert band.shape == (100, src.shape[1])
        assert sorted(calls) == sorted([(f"CCD{k}", 200, 256) for k in (1, 2, 3)]
                                       + [(f"CCD{k}", 0, 300 - 262) for k in (4, 5, 6)])
        calls.clear()
        src.rows(600, 700)
        assert {c[0] for c in calls} == {"CCD7", "CCD8", "CCD9"}
        assert set(src._open) == {6, 7, 8}  # the lower rows of CCDs were closed
    finally:
        src.close()


def test_exposure_build_memory_is_a_band_whatever_the_number_of_ccds(tmp_path):
    """A 3x3 canvas of 2048^2 CCDs (48 MiB of pixels) built with a band of the canvas at a time."""
    from lenghu.viewer.tiles.canvas import CanvasSource, Placed

    n = 2048
    files = []
    for k in range(9):
        path = tmp_path / f"ccd{k}.fits"
        rows = np.arange(n, dtype=np.float32)[:, None] + np.float32(10_000 * k)
        fits.PrimaryHDU(np.broadcast_to(rows, (n, n)).astype(np.float32)).writeto(path)
        files.append(path)

    def opener(path):
        def open_():
            from lenghu.viewer.tiles.canvas import ImageSource

            src = ImageSource(path)
            return src.rows, src.close

        return open_

    placed = [Placed(f"ccd{k}", str(files[k]), (k // 3) * (n + 100), (k % 3) * (n + 100), (n, n), opener(files[k]))
              for k in range(9)]
    tracemalloc.start()
    try:
        result = build_pyramid(CanvasSource(placed, "nine"), tmp_path / "nine.pyr", PyramidOptions(tile=256,
                                                                                            sample_pixels=200_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    store = TileStore(result.path)
    assert store.shape == (3 * n + 200, 3 * n + 200)
    # the canvas is 154 MiB; one band is 256 rows x 6344 columns float32 = 6.2 MiB, held with a few copies
    # (the band, its tiles, the CCD rows read); the stretch sample (kept small here, 0.8 MiB) adds to it
    assert peak < 30 * 2**20, peak / 2**20
    # canvas pixel (y 2200, x 4400) is row 52 of image k = 5 (placed at y0 2148, x0 4296): tile (8, 17)
    assert store.read_tile(0, 8, 17)[2200 - 8 * 256, 4400 - 17 * 256] == 52 + 10_000 * 5
    assert np.isnan(store.read_tile(0, 8, 8)[2100 - 8 * 256, 0])  # row 2100: the gap between rows of images


def test_cli_builds_an_exposure_from_a_glob(night, tmp_path, capsys):
    from lenghu.cli import main

    _, _, products, _ = night
    pattern = str(products[0].parent / f"{EXPOSURE}_*.fits")
    assert main(["convert", pattern, str(tmp_path / "exp.pyr")]) == 0
    assert "779 x 779 pixels" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "nothing_*.fits"), str(tmp_path / "none.pyr")]) == 1
    assert "no files match" in capsys.readouterr().err
