"""The label of a tapped point of an image: where it is on the sky, and how bright it is there.

The particle scenes name structures (:mod:`lenghu.viewer.app.kiosk.structures`); a telescope image has
none, so a tap names the point itself, in both languages: its sky position when the image has a celestial
WCS (right ascension and declination, as on a star chart), else its pixel, and the pixel's value with the
image's unit (``BUNIT``).
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
    sky = _sky_position(layer.wcs, x - 0.5, y - 0.5)
    if sky is None:
        return Text(f"像素 ({i}, {j})：{amount_zh}", f"Pixel ({i}, {j}): {amount_en}")
    ra, dec = sky
    return Text(f"赤经 {ra}，赤纬 {dec}：{amount_zh}", f"RA {ra}, Dec {dec}: {amount_en}")


def _sky_position(wcs, px: float, py: float) -> tuple[str, str] | None:
    """(RA as h m s, Dec as ° ′ ″) at 0-based pixel (``px``, ``py``), or None without a celestial WCS."""
    if wcs is None or not getattr(wcs, "has_celestial", False):
        return None
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra_deg, dec_deg = wcs.celestial.all_pix2world([[px, py]], 0)[0]
    if not (math.isfinite(ra_deg) and math.isfinite(dec_deg)):  # outside the projection's valid region
        return None
    coord = SkyCoord(ra_deg * u.deg, dec_deg * u.deg)
    return (coord.ra.to_string(unit=u.hourangle, sep="hms", precision=1, pad=True),
            coord.dec.to_string(unit=u.deg, sep="dms", precision=0, alwayssign=True, pad=True))
