"""The label of a tapped point of an image or a cube: where it is on the sky, and how bright it is there.

The particle scenes name structures (:mod:`lenghu.viewer.app.kiosk.structures`); a telescope image or a
data cube has none, so a tap names the point itself, in both languages: its sky position when the data have
a celestial WCS (right ascension and declination, as on a star chart), else its pixel, and the value with
the data's unit (``BUNIT``). In a cube the point is the brightest voxel under the finger (what a maximum
intensity projection shows there), and its spectral coordinate is named too (velocity, frequency or
wavelength).
"""

from __future__ import annotations

import math

from lenghu.viewer.app.kiosk.show import Text


def image_text(layer, x: float, y: float) -> Text | None:
    """The bilingual label of world point (``x``, ``y``) of an image layer, or None off the image.

    The layer's pixel (i, j) covers world ``[i, i + 1) x [j, j + 1)``; its WCS (0-based pixel
    coordinates, pixel centres at integers) is evaluated at the tapped point itself.
    """
    i, j = math.floor(x), math.floor(y)
    ny, nx = layer.shape
    if not (0 <= i < nx and 0 <= j < ny):
        return None
    value = layer.value_at(i, j)
    unit = f" {layer.unit}" if getattr(layer, "unit", "") else ""
    if math.isfinite(value):
        amount_zh, amount_en = f"亮度 {value:.4g}{unit}", f"brightness {value:.4g}{unit}"
    else:
        amount_zh, amount_en = "此处无数据", "no data here"
    sky = None
    if layer.wcs is not None and getattr(layer.wcs, "has_celestial", False):
        sky = _sky_text(*layer.wcs.celestial.all_pix2world([[x - 0.5, y - 0.5]], 0)[0])
    if sky is None:
        return Text(f"像素 ({i}, {j})：{amount_zh}", f"Pixel ({i}, {j}): {amount_en}")
    ra, dec = sky
    return Text(f"赤经 {ra}，赤纬 {dec}：{amount_zh}", f"RA {ra}, Dec {dec}: {amount_en}")


def voxel_text(layer, i: int, j: int, k: int) -> Text:
    """The bilingual label of voxel (``i``, ``j``, ``k``) (x, y, spectral plane) of a volume layer."""
    value = float(layer.data[k, j, i])
    unit = f" {layer.unit}" if getattr(layer, "unit", "") else ""
    amount_zh, amount_en = f"亮度 {value:.4g}{unit}", f"brightness {value:.4g}{unit}"
    world = _cube_world(layer.wcs, layer.data.shape, i, j, k)
    if world is None:
        return Text(f"体素 ({i}, {j}, {k})：{amount_zh}", f"Voxel ({i}, {j}, {k}): {amount_en}")
    (ra, dec), spectral = world
    where_zh, where_en = f"赤经 {ra}，赤纬 {dec}", f"RA {ra}, Dec {dec}"
    if spectral is not None:
        where_zh, where_en = f"{where_zh}，{spectral[0]}", f"{where_en}, {spectral[1]}"
    return Text(f"{where_zh}：{amount_zh}", f"{where_en}: {amount_en}")


def _cube_world(wcs, shape: tuple[int, int, int], i: int, j: int, k: int):
    """((RA, Dec) texts, spectral (zh, en) texts or None) of a voxel, or None when the WCS does not say.

    The cube's data had its length-1 axes dropped; those WCS axes are at pixel 0. Only the usual layout
    is read: the celestial axes are the first two data axes.
    """
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return None
    lengths = list(wcs.pixel_shape) if wcs.pixel_shape is not None else list(shape[::-1])
    kept = [a for a, n in enumerate(lengths) if n > 1]
    if len(kept) != 3 or sorted((wcs.wcs.lng, wcs.wcs.lat)) != kept[:2]:
        return None
    pixel = [0.0] * wcs.naxis
    for axis, value in zip(kept, (i, j, k)):
        pixel[axis] = float(value)
    world = wcs.all_pix2world([pixel], 0)[0]
    sky = _sky_text(world[wcs.wcs.lng], world[wcs.wcs.lat])
    if sky is None:
        return None
    spec = wcs.wcs.spec
    return sky, (_spectral_text(world[spec], wcs.wcs.ctype[spec], str(wcs.wcs.cunit[spec])) if spec >= 0 else None)


def _spectral_text(value: float, ctype: str, unit: str) -> tuple[str, str] | None:
    """(zh, en) of a spectral coordinate in the unit people say: km/s, GHz or nm."""
    import astropy.units as u

    kind = ctype[:4].upper()
    try:
        quantity = value * u.Unit(unit or "")
        if kind in ("VRAD", "VOPT", "VELO", "VELR", "ZOPT", "BETA") and quantity.unit.is_equivalent(u.km / u.s):
            v = quantity.to_value(u.km / u.s)
            return f"速度 {v:.4g} km/s", f"velocity {v:.4g} km/s"
        if kind == "FREQ":
            f = quantity.to_value(u.GHz)
            return f"频率 {f:.6g} GHz", f"frequency {f:.6g} GHz"
        if kind in ("WAVE", "AWAV"):
            w = quantity.to_value(u.nm)
            return f"波长 {w:.6g} nm", f"wavelength {w:.6g} nm"
    except (ValueError, u.UnitsError):  # a unit astropy does not know or does not convert: say nothing of it
        return None
    return None


def _sky_text(ra_deg: float, dec_deg: float) -> tuple[str, str] | None:
    """(RA as h m s, Dec as ° ′ ″), or None where the WCS gives no finite position."""
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)):  # outside the projection's valid region
        return None
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    coord = SkyCoord(ra_deg * u.deg, dec_deg * u.deg)
    return (coord.ra.to_string(unit=u.hourangle, sep="hms", precision=1, pad=True),
            coord.dec.to_string(unit=u.deg, sep="dms", precision=0, alwayssign=True, pad=True))
