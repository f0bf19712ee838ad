"""Calibrated products and masters as FITS: SCI, VAR, MASK and PROVENANCE.

One file per detector per exposure (DESIGN.md's calibrated-product
contract): ``SCI`` float32 electrons, ``VAR`` float32 electrons^2, ``MASK``
int32 bits (``MP_*`` cards name them), a ``PROVENANCE`` table (role, path,
checksum of every input and calibration file), the software version and the
config hash in the primary header. Files appear only whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from astropy.io import fits
from astropy.table import Table

from lenghu import __version__
from lenghu.calib.masks import MASK_DTYPE, MaskBit
from lenghu.calib.masters import MasterFrame
from lenghu.errors import FrameError
from lenghu.io.atomic import atomic_path

_SKIP_KEYS = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT",
              "EXTNAME", "BZERO", "BSCALE", "BUNIT", "CHECKSUM", "DATASUM", "ZIMAGE", "ZBITPIX", "ZCMPTYPE"}


@dataclass(frozen=True)
class ProvenanceEntry:
    """One file a product depends on."""

    role: str       # raw, bias, dark, flat, input
    path: str
    checksum: str


def _mask_header() -> fits.Header:
    header = fits.Header()
    for key, bit, comment in MaskBit.header_cards():
        header[key] = (bit, comment)
    return header


def _primary(cards: Mapping[str, object], provenance_hash: str, config_hash: str) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    for key, value in cards.items():
        primary.header[key] = value
    primary.header["LENGHUV"] = (__version__, "lenghu version that wrote this file")
    # SHA-256 hex digests fill the card: no room for a comment (see docs/reduce.md)
    primary.header["CONFHASH"] = config_hash[:64]
    primary.header["PROVHASH"] = provenance_hash[:64]
    return primary


def copy_cards(source: fits.Header, target: fits.Header, wcs_only: bool = False) -> None:
    """Copy descriptive cards (or only WCS cards) from a raw header, skipping structural ones."""
    from astropy.wcs import WCS

    if wcs_only:
        if "CTYPE1" not in source:
            return
        wcs = WCS(source, relax=True)
        if wcs.has_celestial:
            target.update(wcs.to_header(relax=True))
        return
    for card in source.cards:
        if card.keyword in _SKIP_KEYS or card.keyword in ("COMMENT", "HISTORY", ""):
            continue
        target.append(card, end=True)


def write_image_product(
    path: str | Path,
    sci: np.ndarray,
    var: np.ndarray,
    mask: np.ndarray,
    primary_cards: Mapping[str, object],
    provenance: Iterable[ProvenanceEntry],
    config_hash: str,
    image_header: fits.Header | None = None,
) -> Path:
    """Write SCI/VAR/MASK/PROVENANCE atomically; return the path.

    ``image_header`` (WCS and other per-image cards) goes into SCI, VAR and MASK.
    """
    path = Path(path)
    entries = list(provenance)
    table = Table(
        {
            "ROLE": [e.role for e in entries] or np.array([], dtype="U8"),
            "PATH": [e.path for e in entries] or np.array([], dtype="U8"),
            "CHECKSUM": [e.checksum for e in entries] or np.array([], dtype="U64"),
        }
    )
    import hashlib

    prov_hash = hashlib.sha256("\n".join(f"{e.role} {e.path} {e.checksum}" for e in entries).encode()).hexdigest()
    extra = image_header if image_header is not None else fits.Header()
    sci_hdu = fits.ImageHDU(np.asarray(sci, dtype=np.float32), header=extra.copy(), name="SCI")
    sci_hdu.header["BUNIT"] = "electron"
    var_hdu = fits.ImageHDU(np.asarray(var, dtype=np.float32), header=extra.copy(), name="VAR")
    var_hdu.header["BUNIT"] = "electron2"
    mask_header = extra.copy()
    mask_header.update(_mask_header())
    mask_hdu = fits.ImageHDU(np.asarray(mask, dtype=MASK_DTYPE), header=mask_header, name="MASK")
    prov_hdu = fits.BinTableHDU(table, name="PROVENANCE")
    hdul = fits.HDUList([_primary(primary_cards, prov_hash, config_hash), sci_hdu, var_hdu, mask_hdu, prov_hdu])
    for hdu in hdul:
        hdu.add_checksum(when="HDU checksum")  # no timestamp: reruns give identical bytes
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="exception")
    return path


def write_master(path: str | Path, master: MasterFrame, detector: str, filter_name: str | None,
                 provenance: Iterable[ProvenanceEntry], config_hash: str) -> Path:
    """Write a master frame with its quality figures in the primary header."""
    cards: dict[str, object] = {
        "OBSTYPE": (f"MASTER_{master.kind.upper()}", "lenghu master calibration"),
        "CCDNAME": (detector, "detector"),
    }
    if filter_name:
        cards["FILTER"] = (filter_name, "filter")
    for key, value in master.quality.items():
        if isinstance(value, float) and not np.isfinite(value):
            value = "undefined"  # FITS headers cannot hold NaN or infinity (e.g. noise of a 1-frame master)
        elif isinstance(value, float):
            value = round(value, 6)
        cards[f"HIERARCH LH Q {key.upper()}"[:40]] = value
    return write_image_product(path, master.image, master.variance, master.mask, cards, provenance, config_hash)


def read_master(path: str | Path, kind: str) -> MasterFrame:
    """Read a master written by :func:`write_master`, memory-mapped (rows load when used)."""
    try:
        with fits.open(path, mode="readonly", memmap=True) as hdul:
            return MasterFrame(
                kind=kind,
                image=hdul["SCI"].data,
                variance=hdul["VAR"].data,
                mask=hdul["MASK"].data,
                path=str(path),
            )
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise FrameError(path, f"not a readable lenghu master ({exc})") from exc


def update_product_wcs(path: str | Path, wcs, cards: Mapping[str, object]) -> Path:
    """Replace the celestial WCS of a product's image extensions (None: keep it) and add ``cards``
    to its primary header; rewritten atomically, checksums updated."""
    from astropy.wcs import WCS

    path = Path(path)
    with fits.open(path, mode="readonly", memmap=False) as hdul:
        hdul = fits.HDUList([hdu.copy() for hdu in hdul])
    for key, value in cards.items():
        hdul[0].header[key] = value
    if wcs is not None:
        new = wcs.to_header(relax=True)
        for name in ("SCI", "VAR", "MASK"):
            header = hdul[name].header
            old = WCS(header, relax=True).to_header(relax=True) if "CTYPE1" in header else fits.Header()
            for key in list(old.keys()) + [k for k in header if k.startswith(("A_", "B_", "AP_", "BP_"))]:
                header.remove(key, ignore_missing=True, remove_all=True)
            header.update(new)
    for hdu in hdul:
        hdu.add_checksum(when="HDU checksum")
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="exception")
    return path
