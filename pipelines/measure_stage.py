"""The measure stage: detection, astrometry, photometric calibration and a catalogue per product.

One task per calibrated product (:func:`measure_product`, run on a worker):
detect and measure sources (:func:`lenghu.measure.measure_image`), match
them to the reference catalogue by pattern and fit a TAN-SIP WCS
(:func:`lenghu.measure.astrometry.solve_astrometry`), fit the zeropoint
(:func:`lenghu.measure.zeropoint.measure_zeropoint`), write the catalogue,
and, only when the astrometric fit is good, write the new WCS into the
calibrated product (a poor fit flags the product, ``ASTSTAT``, and leaves
its WCS as it was).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenghu.calib.masks import MaskBit
from lenghu.measure import MeasureConfig, measure_image, write_catalog
from lenghu.measure.astrometry import AstrometryConfig, solve_astrometry
from lenghu.measure.zeropoint import ZeropointConfig, measure_zeropoint

# Reference stars this far outside the image (degrees) are still offered to the matcher,
# since the initial WCS may be off by a few arcminutes.
REFERENCE_MARGIN_DEG = 0.1


@dataclass(frozen=True)
class MeasureStageConfig:
    """Settings of the measure stage, one part per step."""

    measure: MeasureConfig = field(default_factory=MeasureConfig)
    astrometry: AstrometryConfig = field(default_factory=AstrometryConfig)
    zeropoint: ZeropointConfig = field(default_factory=ZeropointConfig)
    catalog_format: str = "fits"


def _reference(refcat: str, wcs, shape: tuple[int, int], filter_name: str):
    from astropy.table import Table

    table = Table.read(refcat)
    column = f"mag_{filter_name}"
    if column not in table.colnames:
        mags = [c for c in table.colnames if c.startswith("mag_")]
        if not mags:
            raise ValueError(f"{refcat}: no mag_* column")
        column = mags[0]
    ny, nx = shape
    corners = wcs.all_pix2world([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1], [nx / 2, ny / 2]], 0)
    ra0, dec0 = corners[-1]
    radius = np.max(np.hypot((corners[:, 0] - ra0) * math.cos(math.radians(dec0)), corners[:, 1] - dec0))
    ra = np.asarray(table["ra"], dtype=float)
    dec = np.asarray(table["dec"], dtype=float)
    dra = ((ra - ra0 + 180.0) % 360.0 - 180.0) * math.cos(math.radians(dec0))
    near = np.hypot(dra, dec - dec0) < radius + REFERENCE_MARGIN_DEG
    return ra[near], dec[near], np.asarray(table[column], dtype=float)[near], column


def load_image(path: str):
    """SCI, VAR, MASK (None where absent), the image header and the primary header of a FITS file.

    A lenghu product has SCI/VAR/MASK extensions; any other FITS image is read
    from its first HDU with pixels. Planes come in native byte order without
    a second full-size copy (:func:`lenghu.measure.pixels.read_plane`: the
    file's pages mapped copy-on-write, never written): converting FITS's
    big-endian planes afterwards, or letting numpy work on them as they are,
    cost 5-10 s more per full-size CCD.
    """
    from astropy.io import fits

    from lenghu.errors import FrameError
    from lenghu.measure.pixels import read_plane

    with fits.open(path, mode="readonly", memmap=True) as hdul:
        names = [hdu.name for hdu in hdul]
        if "SCI" in names:
            index = names.index("SCI")
            planes = {name: (names.index(name) if name in names else None) for name in ("VAR", "MASK")}
        else:
            with_data = [i for i, hdu in enumerate(hdul) if hdu.is_image and hdu.header.get("NAXIS", 0) == 2
                         and hdu.header.get("NAXIS1", 0) > 0 and hdu.header.get("NAXIS2", 0) > 0]
            if not with_data:
                raise FrameError(path, "no 2-D image in the file")
            index, planes = with_data[0], {"VAR": None, "MASK": None}
        header, primary = hdul[index].header.copy(), hdul[0].header.copy()
    sci = read_plane(path, index)
    if sci.dtype != np.float32:
        sci = sci.astype(np.float32)
    var = read_plane(path, planes["VAR"]) if planes["VAR"] is not None else None
    mask = read_plane(path, planes["MASK"]) if planes["MASK"] is not None else None
    return sci, var, mask, header, primary


def measure_arrays(sci, var, mask, header, primary, refcat: str | None, config: MeasureStageConfig):
    """Catalogue, quality figures and the astrometric result (or None) of one image."""
    from astropy.wcs import WCS

    exptime = float(primary.get("EXPTIME", header.get("EXPTIME", 0.0)) or 0.0)
    filter_name = str(primary.get("FILTER", header.get("FILTER", "none"))).strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITS WCS cards written by other software: fixed silently by astropy
        initial = WCS(header) if "CTYPE1" in header else None
    catalog = measure_image(sci, var, mask, wcs=None, config=config.measure)
    table = catalog.table
    quality: dict[str, Any] = {"n_sources": len(table), "filter": filter_name, "exptime": exptime,
                               "airmass": primary.get("AIRMASS"), "mjd": primary.get("MJD-OBS"),
                               "sky_e": float(table.meta.get("BKGGLOB", np.nan)),
                               "astrometry": "no reference catalogue or WCS", "zeropoint": None}
    point = np.asarray(table["point_like"], bool) & (np.asarray(table["flags"]) == 0)
    if point.any() and initial is not None and initial.has_celestial:
        scale = float(np.sqrt(abs(np.linalg.det(initial.celestial.pixel_scale_matrix))) * 3600.0)
        quality["fwhm_arcsec"] = float(np.median(np.asarray(table["fwhm"])[point]) * scale)
    wcs, astro = initial, None
    if refcat and initial is not None and initial.has_celestial and len(table):
        ra, dec, mag, column = _reference(refcat, initial, sci.shape, filter_name)
        # Centroids stay good next to a repaired cosmic ray or hot pixel; saturated, truncated or
        # blended sources and those touching missing data do not.
        bad_bits = int(MaskBit.SAT | MaskBit.NO_DATA | MaskBit.BLEED)
        usable = (np.asarray(table["flags"]) == 0) & ((np.asarray(table["mask_flags"]) & bad_bits) == 0)
        astro = solve_astrometry(np.asarray(table["xwin"]), np.asarray(table["ywin"]),
                                 np.asarray(table["flux_auto"]), ra, dec, mag, initial, sci.shape,
                                 usable=usable, config=config.astrometry)
        quality.update(astrometry=astro.status.value, astrometry_reason=astro.reason,
                       astrometry_rms_arcsec=astro.rms_arcsec, astrometry_matches=astro.n_matched)
        if astro.ok:
            wcs = astro.wcs
            det, ref = astro.detection_index, astro.reference_index
            _add_residuals(table, det, astro.residuals_arcsec)
            aper = max((c for c in table.colnames if c.startswith("flux_aper_") and not c.endswith("_err")),
                       key=lambda c: int(c.split("_")[-1]))
            zp = measure_zeropoint(np.asarray(table[aper])[det], np.asarray(table[aper + "_err"])[det],
                                   mag[ref], exptime, config=config.zeropoint)
            quality.update(zeropoint=zp.zeropoint_mag if zp.ok else None, zeropoint_err=zp.error_mag if zp.ok else None,
                           zeropoint_stars=zp.n_used, zeropoint_status=zp.status.value, reference_column=column)
    _add_sky_and_magnitudes(table, wcs, quality, exptime)
    return table, quality, astro


def measure_product(product: str, refcat: str | None, config: MeasureStageConfig, catalog_path: str) -> dict[str, Any]:
    """Measure one calibrated product; write its catalogue, and its WCS when astrometry succeeds."""
    from lenghu.io.products import update_product_wcs
    from lenghu.pipelines.registry import file_checksum

    table, quality, astro = measure_arrays(*load_image(product), refcat, config)
    if astro is not None and astro.ok:
        update_product_wcs(product, astro.wcs, {
            "ASTSTAT": ("OK", "astrometry: fitted to the reference catalogue"),
            "ASTRMS": (round(float(astro.rms_arcsec), 5), "[arcsec] fit residual"),
            "ASTNMAT": (int(astro.n_matched), "matched reference stars")})
    elif astro is not None:
        update_product_wcs(product, None, {"ASTSTAT": ("FAILED", f"astrometry: {astro.status.value}"[:47])})
    write_catalog(table, catalog_path)
    return {"path": catalog_path, "checksum": file_checksum(catalog_path), "product_checksum": file_checksum(product),
            "quality": quality}


def _add_residuals(table, index: np.ndarray, residuals: np.ndarray) -> None:
    """Astrometric residuals (reference minus fit, arcsec) of the matched sources; NaN elsewhere."""
    import astropy.units as u

    for axis, name in enumerate(("astrom_dra", "astrom_ddec")):
        column = np.full(len(table), np.nan, dtype=np.float32)
        if len(index) == len(residuals):
            column[index] = residuals[:, axis]
        table[name] = column * u.arcsec
        table[name].description = (f"astrometric residual, reference minus fit, in "
                                   f"{'RA cos(Dec)' if axis == 0 else 'Dec'} (matched stars only)")


def _add_sky_and_magnitudes(table, wcs, quality: dict[str, Any], exptime: float) -> None:
    """ICRS positions from the (fitted or header) WCS and calibrated magnitudes."""
    import astropy.units as u

    if wcs is not None and len(table):
        ra, dec = wcs.all_pix2world(np.asarray(table["xwin"]), np.asarray(table["ywin"]), 0)
        table["ra"] = ra * u.deg
        table["dec"] = dec * u.deg
        table["ra"].description = "right ascension of (xwin, ywin), ICRS"
        table["dec"].description = "declination of (xwin, ywin), ICRS"
        table.meta["WCSSRC"] = "fitted" if quality.get("astrometry") == "ok" else "header"
    zp = quality.get("zeropoint")
    if zp is not None and exptime > 0:
        for name in [c for c in table.colnames if c.startswith("flux_") and not c.endswith("_err")
                     and c != "flux_iso" and c != "flux_radius"]:
            flux = np.asarray(table[name], dtype=float)
            err = np.asarray(table[name + "_err"], dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                mag = np.where(flux > 0, zp - 2.5 * np.log10(flux / exptime), np.nan)
                mag_err = np.where(flux > 0, 2.5 / np.log(10) * err / flux, np.nan)
            key = name.replace("flux_", "mag_")
            table[key] = mag.astype(np.float32) * u.mag
            table[key + "_err"] = mag_err.astype(np.float32) * u.mag
            table[key].description = f"AB magnitude from {name} (zeropoint {zp:.4f} for 1 e-/s)"
        table.meta["MAGZP"] = zp
        table.meta["MAGZPERR"] = quality.get("zeropoint_err")


def catalog_name(product: Path, fmt: str) -> str:
    """The catalogue file name of a calibrated product."""
    suffix = {"fits": ".cat.fits", "parquet": ".parquet", "votable": ".vot", "ecsv": ".ecsv"}[fmt]
    return product.name.replace(".fits", "") + suffix


def find_refcat(raw_dir: Path) -> Path | None:
    """``refcat.fits`` beside or above the raw folder (where ``lenghu simulate night`` writes it)."""
    for folder in (raw_dir, raw_dir.parent):
        candidate = folder / "refcat.fits"
        if candidate.is_file():
            return candidate
    return None


def run_measure_stage(request, client, registry, run_id: int, summary, out: Path, config_hash: str) -> None:
    """Driver side: one :func:`measure_product` task per calibrated product not yet measured."""
    from lenghu import __version__
    from lenghu.pipelines.progress import wait_all
    from lenghu.pipelines.registry import file_checksum, inputs_key

    config = request.config.measure
    refcat = request.refcat or find_refcat(request.raw_dir)
    ref_sum = file_checksum(refcat) if refcat else "none"
    jobs = []
    for row in registry.products(kind="calibrated", status="ok"):
        product = Path(row["path"])
        catalog = out / "catalogs" / catalog_name(product, config.catalog_format)
        key = inputs_key([row["inputs_key"], ref_sum], request.config.measure_hash(), __version__)
        if not request.force and registry.product_is_current(catalog, key):
            summary.skipped += 1
            summary.catalogs.append(str(catalog))
            continue
        jobs.append((row, catalog, key))
    if not jobs:
        return
    if refcat is None and request.progress:
        print("Measure: no reference catalogue (--refcat); catalogues get header-WCS positions and no magnitudes")
    futures = [client.submit(measure_product, row["path"], str(refcat) if refcat else None, config, str(catalog),
                             pure=False) for row, catalog, key in jobs]
    results, errors = wait_all(futures, "measure", request.progress)
    for (row, catalog, key), result, future in zip(jobs, results, futures):
        if result is None:
            summary.failed_products[str(catalog)] = errors.get(future.key, "task failed")
            continue
        # the product's WCS may have been rewritten: keep the registry's checksum in step with the file
        registry.update_checksum(row["path"], result["product_checksum"])
        registry.record_product(str(catalog), kind="catalog", detector=row["detector"], filter=row["filter"],
                                exposure=row["exposure"], checksum=result["checksum"], key=key,
                                inputs=[{"role": "calibrated", "path": row["path"], "checksum": result["product_checksum"]},
                                        {"role": "refcat", "path": str(refcat), "checksum": ref_sum}],
                                config_hash=config_hash, quality=result["quality"], run_id=run_id)
        summary.catalogs.append(str(catalog))
        if result["quality"].get("astrometry") not in ("ok", "no reference catalogue or WCS"):
            summary.flagged[row["path"]] = f"astrometry {result['quality']['astrometry']}: " \
                                           f"{result['quality'].get('astrometry_reason', '')}"
