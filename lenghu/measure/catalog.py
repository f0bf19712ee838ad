"""The source catalogue of one image: an astropy Table with a unit on every column, and its files.

One row per source. Positions are in pixels, **0-based**: the centre of the
first pixel is (0, 0) (SExtractor's ``X_IMAGE`` minus 1; FITS ``CRPIX``
minus 1), and in ICRS degrees from the windowed centroid when the image has a
celestial WCS (``ra``, ``dec``; astropy's ``all_pix2world``, SIP included).
Fluxes are electrons of the calibrated image; magnitudes, when a zeropoint is
given, are ``zeropoint - 2.5 log10(flux)``. Dimensionless columns (ids,
flags, ratios) carry the dimensionless unit ``""``.

Formats (:func:`write_catalog`, chosen by ``format`` or the file's suffix):

``fits`` (default; ``.fits``, ``.fit``, ``.fits.gz``)
    A binary table in extension 1, ``TUNITn`` on every column, ``TCOMMn``
    with each column's description, the settings in the header. Passes
    ``fitsverify`` with no errors.
``parquet`` (``.parquet``, ``.pq``)
    Written with pyarrow; each field's metadata holds its ``unit`` and
    ``description`` (for pyarrow/pandas readers), and the schema metadata
    holds astropy's ``table_meta_yaml`` (units, descriptions, table meta), so
    ``Table.read`` restores the table as written.
``votable`` (``.vot``, ``.votable``, ``.xml``)
    VOTable 1.4, BINARY2 serialisation; ``stilts votlint`` prints nothing.
``ecsv`` (``.ecsv``)
    astropy's enhanced CSV (units and meta in its YAML header).

Units in files: fluxes are written as ``electron``. It is not in the FITS
standard's list of units (astropy refuses to write it and warns; the FITS
standard lets unrecognised unit strings through) nor in VOUnit's, but it is
what the values are: flat-fielded, gain-corrected electrons, the ``BUNIT`` of
the calibrated ``SCI`` plane. The FITS standard's ``ct`` would say ADU counts,
which these are not. astropy reads ``electron`` back as ``u.electron`` in its
generic format, which :func:`read_catalog` uses.

Every file appears only whole (:func:`lenghu.io.atomic.atomic_path`).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import astropy.units as u
import numpy as np
from astropy.table import Column, Table

from lenghu import __version__
from lenghu.io.atomic import atomic_path
from lenghu.measure.background import Background
from lenghu.measure.detect import Detections
from lenghu.measure.photometry import Photometry

CatalogFormat = Literal["fits", "parquet", "votable", "ecsv"]

#: Suffix -> format for :func:`write_catalog` and :func:`read_catalog`.
SUFFIX_FORMATS: dict[str, CatalogFormat] = {
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits",
    ".parquet": "parquet", ".pq": "parquet",
    ".vot": "votable", ".votable": "votable", ".xml": "votable",
    ".ecsv": "ecsv",
}

DIMENSIONLESS = u.dimensionless_unscaled

#: FITS header comments of the table meta keywords.
META_COMMENTS = {
    "LENGHUV": "lenghu version that wrote this catalogue",
    "PIXORIG": "pixel coordinates: centre of the first pixel",
    "IMAGEW": "[pix] image width",
    "IMAGEH": "[pix] image height",
    "HASWCS": "ra, dec from the image's celestial WCS",
    "RADESYS": "frame of ra, dec",
    "BKGGLOB": "[electron] mean background",
    "BKGRMS": "[electron] mean background RMS",
    "BACKBOX": "[pix] background box (width, height)",
    "BACKFILT": "background filter, boxes (width, height)",
    "DETTHR": "detection threshold, sigma of background RMS",
    "DETNOISE": "noise of the threshold: map or global",
    "MINAREA": "[pix] minimum detection area",
    "DFILTER": "detection kernel",
    "DBNTHR": "deblending sub-thresholds",
    "DBCONT": "deblending minimum contrast",
    "CLEAN": "cleaning of spurious detections",
    "CLEANPAR": "cleaning efficiency",
    "KRONFACT": "Kron factor",
    "KRONMINR": "Kron minimum scale, units of a and b",
    "KRONWIN": "Kron window, units of a and b",
    "NAPER": "number of circular apertures",
    "SLOCUS": "[pix] half-light radius of point sources",
    "SLSPREAD": "relative spread of the stellar locus",
    "SEEING": "[pix] FWHM of point sources (2 x SLOCUS)",
    "MAGZP": "[mag] mag = MAGZP - 2.5 log10(flux / electron)",
    "MAGZPERR": "[mag] error of MAGZP (not in the mag errors)",
}


@dataclass(frozen=True, eq=False)
class Catalog:
    """The catalogue of one image.

    Attributes
    ----------
    table : astropy.table.Table
        One row per source; every column has a unit and a description (see
        :func:`build_catalog`); the settings in ``table.meta``.
    """

    table: Table

    def __len__(self) -> int:
        return len(self.table)

    def write(self, path: str | Path, format: CatalogFormat | None = None) -> Path:
        """Write the catalogue (see :func:`write_catalog`); returns the path."""
        return write_catalog(self.table, path, format=format)


def _col(data: Any, unit: u.UnitBase, description: str, dtype: Any = None) -> Column:
    return Column(np.asarray(data, dtype=dtype), unit=unit, description=description)


def _magnitudes(flux: np.ndarray, err: np.ndarray, zeropoint: float) -> tuple[np.ndarray, np.ndarray]:
    """AB magnitudes and their errors from fluxes; NaN where the flux is not positive."""
    positive = np.isfinite(flux) & (flux > 0)
    safe = np.where(positive, flux, 1.0)
    mag = np.where(positive, zeropoint - 2.5 * np.log10(safe), np.nan)
    mag_err = np.where(positive, 2.5 / np.log(10.0) * err / safe, np.nan)
    return mag, mag_err


def build_catalog(detections: Detections, photometry: Photometry, background: Background,
                  wcs: Any = None, zeropoint: float | None = None, zeropoint_err: float | None = None,
                  meta: Mapping[str, Any] | None = None) -> Catalog:
    """Assemble the catalogue from the detections and their photometry.

    Parameters
    ----------
    detections : Detections
    photometry : Photometry
        Measured on the same detections (same order).
    background : Background
        The image's background (shape and settings go to the meta).
    wcs : astropy.wcs.WCS, optional
        The image's WCS (0-based pixel convention of ``all_pix2world(..., 0)``);
        with it the catalogue has ``ra``, ``dec`` (ICRS deg) of the windowed centroids.
    zeropoint : float, optional
        Magnitude of a source giving 1 electron in this image; with it the
        catalogue has ``mag_auto`` and ``mag_aper_<i>`` (and their errors,
        from the flux errors only).
    zeropoint_err : float, optional
        Error of the zeropoint, mag (recorded in the meta).
    meta : mapping, optional
        Extra table meta (FITS keywords of at most 8 characters).

    Returns
    -------
    Catalog

    Columns
    -------
    ``id`` (1-based), ``x``, ``y``, ``x_err``, ``y_err`` (isophotal barycentre),
    ``xwin``, ``ywin`` (windowed), ``ra``, ``dec`` (with a WCS), ``a``, ``b``,
    ``theta`` (deg, counter-clockwise from +x), ``ellipticity``, ``npix``,
    ``flux_iso``, ``peak``, ``flux_auto``, ``flux_auto_err``, ``kron_radius``,
    ``flux_aper_<i>``, ``flux_aper_<i>_err`` (radius ``aperture_radii[i]``),
    ``snr`` (AUTO), ``mag_auto``, ``mag_auto_err``, ``mag_aper_<i>``,
    ``mag_aper_<i>_err`` (with a zeropoint), ``flux_radius``, ``fwhm``,
    ``flags`` (sep), ``mask_flags`` (MASK bits),
    ``size_ratio``, ``point_like``.
    """
    det, ph = detections, photometry
    if len(det) != len(ph):
        raise ValueError(f"{len(det)} detections but {len(ph)} measurements")
    n = len(det)
    pix, e = u.pix, u.electron
    t = Table()
    t["id"] = _col(np.arange(1, n + 1), DIMENSIONLESS, "source number, 1-based", np.int64)
    t["x"] = _col(det.x, pix, "isophotal barycentre x, 0-based pixels", np.float64)
    t["y"] = _col(det.y, pix, "isophotal barycentre y, 0-based pixels", np.float64)
    t["x_err"] = _col(np.sqrt(np.clip(det.errx2, 0, None)), pix, "error of x", np.float64)
    t["y_err"] = _col(np.sqrt(np.clip(det.erry2, 0, None)), pix, "error of y", np.float64)
    t["xwin"] = _col(ph.xwin, pix, "windowed centroid x, 0-based pixels", np.float64)
    t["ywin"] = _col(ph.ywin, pix, "windowed centroid y, 0-based pixels", np.float64)
    has_wcs = wcs is not None
    if has_wcs:
        celestial = wcs.celestial if hasattr(wcs, "celestial") else wcs
        if celestial.naxis != 2 or not getattr(celestial, "has_celestial", True):
            raise ValueError("the WCS has no celestial axes")
        if n:
            ra, dec = celestial.all_pix2world(ph.xwin, ph.ywin, 0)
        else:
            ra = dec = np.zeros(0)
        t["ra"] = _col(ra, u.deg, "right ascension of (xwin, ywin), ICRS", np.float64)
        t["dec"] = _col(dec, u.deg, "declination of (xwin, ywin), ICRS", np.float64)
    t["a"] = _col(det.a, pix, "profile RMS along the major axis", np.float32)
    t["b"] = _col(det.b, pix, "profile RMS along the minor axis", np.float32)
    t["theta"] = _col(np.degrees(det.theta), u.deg, "major axis angle, counter-clockwise from +x", np.float32)
    t["ellipticity"] = _col(ph.ellipticity, DIMENSIONLESS, "1 - b/a", np.float32)
    t["npix"] = _col(det.npix, pix**2, "pixels in the isophotal footprint", np.int32)
    t["flux_iso"] = _col(det.isophotal_flux, e, "sum of the isophotal footprint", np.float64)
    t["peak"] = _col(det.peak, e, "brightest pixel above the background", np.float32)
    t["flux_auto"] = _col(ph.kron_flux, e, "flux in the Kron ellipse", np.float64)
    t["flux_auto_err"] = _col(ph.kron_flux_err, e, "error of flux_auto", np.float64)
    t["kron_radius"] = _col(ph.kron_radius, DIMENSIONLESS, "Kron scale used, units of a and b", np.float32)
    for i, radius in enumerate(ph.aperture_radii):
        t[f"flux_aper_{i}"] = _col(ph.aperture_flux[:, i], e, f"flux within a radius of {radius:g} pix of "
                                                              f"(xwin, ywin)", np.float64)
        t[f"flux_aper_{i}_err"] = _col(ph.aperture_flux_err[:, i], e, f"error of flux_aper_{i}", np.float64)
    snr = np.divide(ph.kron_flux, ph.kron_flux_err, out=np.zeros(n), where=ph.kron_flux_err > 0)
    t["snr"] = _col(snr, DIMENSIONLESS, "flux_auto / flux_auto_err", np.float32)
    if zeropoint is not None:
        zp = float(zeropoint)
        mag, mag_err = _magnitudes(ph.kron_flux, ph.kron_flux_err, zp)
        t["mag_auto"] = _col(mag, u.mag, "zeropoint - 2.5 log10(flux_auto)", np.float32)
        t["mag_auto_err"] = _col(mag_err, u.mag, "error of mag_auto from flux_auto_err", np.float32)
        for i in range(len(ph.aperture_radii)):
            mag, mag_err = _magnitudes(ph.aperture_flux[:, i], ph.aperture_flux_err[:, i], zp)
            t[f"mag_aper_{i}"] = _col(mag, u.mag, f"zeropoint - 2.5 log10(flux_aper_{i})", np.float32)
            t[f"mag_aper_{i}_err"] = _col(mag_err, u.mag, f"error of mag_aper_{i}", np.float32)
    t["flux_radius"] = _col(ph.flux_radius, pix, "half-light radius (of flux_auto)", np.float32)
    t["fwhm"] = _col(ph.fwhm, pix, "2 x flux_radius (FWHM of a Gaussian of that half-light radius)",
                     np.float32)
    t["flags"] = _col(ph.flags, DIMENSIONLESS, "sep flags: 1 merged, 2 truncated, 4 deblend overflow, "
                                               "8 singular, 16 aperture truncated, 32 has masked, "
                                               "64 all masked, 128 non-positive, 256 xwin = x", np.int32)
    t["mask_flags"] = _col(ph.mask_flags, DIMENSIONLESS, "OR of MASK bits under the apertures (MP_* cards)",
                           np.int32)
    t["size_ratio"] = _col(ph.size_ratio, DIMENSIONLESS, "flux_radius / stellar locus (SLOCUS)", np.float32)
    t["point_like"] = _col(ph.point_like, DIMENSIONLESS, "size_ratio within the stellar locus", bool)

    bc, dc, pc = background.config, det.config, ph.config
    ny, nx = background.shape
    t.meta.update({
        "LENGHUV": __version__, "PIXORIG": 0.0, "IMAGEW": int(nx), "IMAGEH": int(ny), "HASWCS": has_wcs,
    })
    if has_wcs:
        t.meta["RADESYS"] = "ICRS"
    t.meta.update({
        "BKGGLOB": float(background.global_level), "BKGRMS": float(background.global_rms),
        "BACKBOX": f"{bc.box_width},{bc.box_height}", "BACKFILT": f"{bc.filter_width},{bc.filter_height}",
        "DETTHR": float(dc.threshold), "DETNOISE": dc.noise, "MINAREA": int(dc.min_area),
        "DFILTER": dc.filter if dc.filter != "gaussian" else f"gaussian {dc.filter_fwhm:g} pix",
        "DBNTHR": int(dc.deblend_nthresh), "DBCONT": float(dc.deblend_cont), "CLEAN": bool(dc.clean),
        "CLEANPAR": float(dc.clean_param), "KRONFACT": float(pc.kron_factor), "KRONMINR": float(pc.kron_min_radius),
        "KRONWIN": float(pc.kron_window), "NAPER": len(ph.aperture_radii),
    })
    for i, radius in enumerate(ph.aperture_radii):
        t.meta[f"APRAD{i}"] = float(radius)
    locus = ph.stellar_locus
    t.meta["SLOCUS"] = float(locus) if np.isfinite(locus) else "none"
    t.meta["SLSPREAD"] = float(ph.locus_spread) if np.isfinite(ph.locus_spread) else "none"
    t.meta["SEEING"] = float(2 * locus) if np.isfinite(locus) else "none"
    if zeropoint is not None:
        t.meta["MAGZP"] = float(zeropoint)
        if zeropoint_err is not None:
            t.meta["MAGZPERR"] = float(zeropoint_err)
    for key, value in (meta or {}).items():
        t.meta[str(key).upper()] = value
    return Catalog(table=t)


# ---------------------------------------------------------------------------------------------------------------
# Writers and readers


def catalog_format(path: str | Path, format: str | None = None) -> CatalogFormat:
    """The format of ``path``: ``format`` if given, else from its suffix.

    Raises
    ------
    ValueError
        Unknown format or suffix.
    """
    if format is not None:
        if format not in ("fits", "parquet", "votable", "ecsv"):
            raise ValueError(f"catalogue format {format!r} is not fits, parquet, votable or ecsv")
        return format  # type: ignore[return-value]
    name = Path(path).name.lower()
    for suffix in sorted(SUFFIX_FORMATS, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIX_FORMATS[suffix]
    raise ValueError(f"{path}: cannot tell the catalogue format from the suffix; use one of "
                     f"{', '.join(sorted(SUFFIX_FORMATS))} or pass format=")


def _unit_string(unit: u.UnitBase | None, fmt: str) -> str:
    """``unit`` in the FITS/VOUnit syntax where it is standard, astropy's generic syntax otherwise."""
    if unit is None or unit == DIMENSIONLESS:
        return ""
    try:
        return unit.to_string(fmt)
    except ValueError:  # not in that standard (electron): written as astropy's generic string
        return unit.to_string("generic")


def write_catalog(table: Table | Catalog, path: str | Path, format: CatalogFormat | None = None) -> Path:
    """Write a catalogue so that the file appears only whole.

    Parameters
    ----------
    table : Table or Catalog
    path : str or Path
        Destination; replaced if it exists.
    format : {"fits", "parquet", "votable", "ecsv"}, optional
        Default: from the suffix of ``path``.

    Returns
    -------
    Path
    """
    if isinstance(table, Catalog):
        table = table.table
    path = Path(path)
    fmt = catalog_format(path, format)
    writer = {"fits": _write_fits, "parquet": _write_parquet, "votable": _write_votable, "ecsv": _write_ecsv}[fmt]
    with atomic_path(path) as tmp:
        writer(table, tmp)
    return path


def _write_fits(table: Table, path: Path) -> None:
    from astropy.io import fits

    with warnings.catch_warnings():
        # astropy warns that 'electron' is not a FITS unit and drops it; it is put back below.
        warnings.filterwarnings("ignore", message=r"The unit '.*' could not be saved in native FITS format")
        hdu = fits.table_to_hdu(Table(table, copy=False))
    header = hdu.header
    for i, name in enumerate(table.colnames, start=1):
        col = table[name]
        hdu.columns[name].unit = _unit_string(col.unit, "fits")  # TUNITn on every column
        if col.description:
            header[f"TCOMM{i}"] = col.description[:68]
    for key, comment in META_COMMENTS.items():
        if key in header:
            header.comments[key] = comment
    for key in header:
        if re.fullmatch(r"APRAD\d+", key):
            header.comments[key] = "[pix] radius of circular aperture"
    header.add_comment("Pixel coordinates are 0-based: the centre of the first pixel is (0, 0).")
    header.add_comment("TUNIT 'electron' (not in the FITS standard list): electrons of the calibrated image.")
    hdu.name = "CATALOG"
    primary = fits.PrimaryHDU()
    primary.header["LENGHUV"] = (__version__, META_COMMENTS["LENGHUV"])
    fits.HDUList([primary, hdu]).writeto(path, checksum=True)


def _write_ecsv(table: Table, path: Path) -> None:
    table.write(path, format="ascii.ecsv")


def _write_votable(table: Table, path: Path) -> None:
    from astropy.io.votable import from_table
    from astropy.io.votable.exceptions import W50
    from astropy.io.votable.tree import Param

    votable = from_table(table)
    vo_table = votable.get_first_table()
    vo_table.description = "lenghu source catalogue; pixel coordinates are 0-based"
    for key, value in table.meta.items():  # the settings, as PARAMs (from_table drops table.meta)
        if isinstance(value, (bool, np.bool_)):
            param = Param(votable, name=key, datatype="boolean", value=bool(value))
        elif isinstance(value, (int, np.integer)):
            param = Param(votable, name=key, datatype="long", value=int(value))
        elif isinstance(value, (float, np.floating)):
            param = Param(votable, name=key, datatype="double", value=float(value))
        else:
            param = Param(votable, name=key, datatype="char", arraysize="*", value=str(value))
        if key in META_COMMENTS:
            param.description = META_COMMENTS[key]
        vo_table.params.append(param)
    with warnings.catch_warnings():
        # W50: 'electron' is not a VOUnit; it is written as is (see the module docstring).
        warnings.filterwarnings("ignore", category=W50)
        votable.to_xml(str(path), tabledata_format="binary2")


def _write_parquet(table: Table, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import meta as table_meta

    fields, arrays = [], []
    for name in table.colnames:
        col = table[name]
        data = np.asarray(col)
        data = data.astype(data.dtype.newbyteorder("="), copy=False)
        field_meta = {"unit": _unit_string(col.unit, "generic"), "description": col.description or ""}
        fields.append(pa.field(name, pa.from_numpy_dtype(data.dtype), metadata=field_meta))
        arrays.append(pa.array(data))
    yaml_header = "\n".join(table_meta.get_yaml_from_table(table))
    schema_meta = {
        "table_meta_yaml": yaml_header,  # what astropy's parquet reader restores units and meta from
        "lenghu": json.dumps({"version": __version__, "pixel_origin": 0}),
    }
    schema = pa.schema(fields, metadata=schema_meta)
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path)


def read_catalog(path: str | Path, format: CatalogFormat | None = None) -> Table:
    """Read a catalogue written by :func:`write_catalog`, units and meta restored.

    Parameters
    ----------
    path : str or Path
    format : {"fits", "parquet", "votable", "ecsv"}, optional
        Default: from the suffix.

    Returns
    -------
    astropy.table.Table
    """
    from astropy.io.votable.exceptions import W50
    from astropy.units import UnitsWarning

    fmt = catalog_format(path, format)
    if fmt == "parquet":
        return _read_parquet(Path(path))
    with warnings.catch_warnings():
        # 'electron' is not a FITS unit or a VOUnit; astropy warns and keeps it, re-parsed below.
        warnings.filterwarnings("ignore", message=r"'.*' did not parse as fits unit", category=UnitsWarning)
        warnings.filterwarnings("ignore", category=W50)
        if fmt == "fits":
            table = Table.read(path, format="fits", hdu=1)
        elif fmt == "votable":
            from astropy.io.votable import parse

            vo_table = parse(str(path)).get_first_table()
            table = vo_table.to_table()
            for param in vo_table.params:
                value = param.value
                table.meta[param.name] = value.item() if hasattr(value, "item") else value
        else:
            table = Table.read(path, format="ascii.ecsv")
    for name in table.colnames:
        table[name].unit = _generic_unit(table[name].unit)
    return table


def _generic_unit(unit: u.UnitBase | None) -> u.UnitBase | None:
    """``unit`` re-parsed in astropy's generic format (a unit a reader made up, such as VOUnit's
    'electron', becomes ``u.electron``); None and dimensionless stay as they are."""
    if unit is None or unit == DIMENSIONLESS:
        return unit
    text = str(unit) if isinstance(unit, u.UnrecognizedUnit) else unit.to_string("generic")
    try:
        return u.Unit(text, format="generic")
    except ValueError:  # a unit astropy does not know: kept as the reader gave it
        return unit


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq
    from astropy.table import meta as table_meta

    arrow = pq.read_table(path)
    table = Table()
    for field, column in zip(arrow.schema, arrow.columns):
        fmeta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        unit = fmeta.get("unit") or None
        table[field.name] = Column(column.to_numpy(), unit=u.Unit(unit, format="generic") if unit else None,
                                   description=fmeta.get("description") or None)
    schema_meta = arrow.schema.metadata or {}
    if b"table_meta_yaml" in schema_meta:
        header = table_meta.get_header_from_yaml(schema_meta[b"table_meta_yaml"].decode().splitlines())
        table.meta.update(header.get("meta", {}))
    return table
