"""A detector and its one amplifier built from a file's own header (``generic``).

For instruments whose ``raw_layout`` is ``"header"``, each image HDU is one
detector with one amplifier, described by its header: the data section
(``TRIMSEC``, else ``DATASEC``, else the whole image), the serial overscan
(``BIASSEC``), ``GAIN``, ``RDNOISE`` and ``SATURATE`` (keyword names from the
instrument's ``[header_sections]``). Gain, read noise and saturation are
looked up in the HDU's header, then in the primary header. Where they are
missing, the instrument's configured values are used, else gain 1 e-/ADU and
read noise NaN (a later pipeline measures it from biases); every value not
read from the file is listed in the amplifier's ``assumed`` set and reported
with an :class:`AssumedValueWarning` naming the file.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

import astropy.units as u

from lenghu.values import finite_float
from lenghu.errors import SectionError, ShapeError
from lenghu.instruments.model import ELECTRON_PER_ADU, Amplifier, Detector, HeaderSections
from lenghu.instruments.sections import Section, SectionSyntaxError


class AssumedValueWarning(UserWarning):
    """A value a file should give was assumed; the message names the file and the values."""


def header_detector(
    path: str,
    name: str,
    index: int,
    hdu: int | str,
    image_shape: tuple[int, ...],
    values: Mapping[str, Any],
    primary: Mapping[str, Any],
    sections: HeaderSections,
    integer_range: tuple[float, float] | None,
) -> Detector:
    """The detector described by one image HDU's header.

    Parameters
    ----------
    path : str
        The file (for messages).
    name, index, hdu
        Detector name, 1-based index and the HDU (index or EXTNAME) holding it.
    image_shape : tuple of int
        The HDU's numpy shape; must be 2-D.
    values, primary : mapping
        The HDU's header values and the primary header's (looked up second
        for gain, read noise and saturation; never for sections).
    sections : HeaderSections
        Keyword names and fallback values from the instrument.
    integer_range : (float, float) or None
        Smallest and largest value the stored integers can represent after
        BZERO/BSCALE (the default saturation), None for float data.

    Raises
    ------
    ShapeError
        The image is not 2-D.
    SectionError
        A section is malformed or lies outside the image.
    """
    if len(image_shape) != 2:
        raise ShapeError(path, f"{name}: image has {len(image_shape)} axes {image_shape}; a detector needs 2")
    raw_shape = (int(image_shape[0]), int(image_shape[1]))
    if min(raw_shape) < 1:
        raise ShapeError(path, f"{name}: image of {raw_shape[1]}x{raw_shape[0]} pixels holds no data")
    notes: list[str] = []
    assumed: set[str] = set()

    data = _section(path, name, values, sections.trim_key, raw_shape) or _section(
        path, name, values, sections.data_key, raw_shape
    )
    if data is None:
        data = Section(0, raw_shape[0], 0, raw_shape[1])
        assumed.add("data_section")
        whole = f"{raw_shape[1]}x{raw_shape[0]}"
        notes.append(f"no {sections.trim_key}/{sections.data_key}: the whole {whole} image is data")
    overscan = _section(path, name, values, sections.overscan_key, raw_shape)
    if overscan is not None:
        overscan = _align_overscan(overscan, data)
        if overscan is None:
            assumed.add("overscan_section")
            notes.append(f"{sections.overscan_key} does not span the data rows: no overscan used")

    def number(key: str, lowest: float) -> float | None:
        for source in (values, primary):
            value = finite_float(source.get(key))
            if value is not None and value >= lowest:
                return value
        return None

    gain = number(sections.gain_key, 1e-12)
    if gain is None:
        assumed.add("gain")
        if sections.gain is not None:
            gain_q = sections.gain.to(ELECTRON_PER_ADU)
            notes.append(f"no {sections.gain_key}: gain {gain_q.value:g} e-/ADU from the instrument file")
        else:
            gain_q = 1.0 * ELECTRON_PER_ADU
            notes.append(f"no {sections.gain_key}: gain assumed 1 e-/ADU")
    else:
        gain_q = gain * ELECTRON_PER_ADU

    noise = number(sections.read_noise_key, 0.0)
    if noise is None:
        assumed.add("read_noise")
        if sections.read_noise is not None:
            noise_q = sections.read_noise.to(u.electron)
            notes.append(f"no {sections.read_noise_key}: read noise {noise_q.value:g} e- from the instrument file")
        else:
            noise_q = math.nan * u.electron
            notes.append(f"no {sections.read_noise_key}: read noise unknown (NaN; measure it from biases)")
    else:
        noise_q = noise * u.electron

    saturation = number(sections.saturation_key, 1e-12)
    if saturation is None:
        assumed.add("saturation")
        saturation = integer_range[1] if integer_range is not None else math.inf
    assumed.add("bias_level")

    if notes:
        warnings.warn(f"{path} [{name}]: " + "; ".join(notes), AssumedValueWarning, stacklevel=3)
    amp = Amplifier(
        name="A",
        data_section=data,
        overscan_section=overscan,
        detector_section=Section(0, data.shape[0], 0, data.shape[1]),
        gain=gain_q,
        read_noise=noise_q,
        bias_level=math.nan * u.adu,
        saturation=saturation * u.adu,
        assumed=frozenset(assumed),
    )
    return Detector(
        name=name,
        index=index,
        hdu=hdu,
        shape=data.shape,
        raw_shape=raw_shape,
        amplifiers=(amp,),
        assumed=frozenset(assumed),
    )


def _section(path: str, name: str, values: Mapping[str, Any], key: str, shape: tuple[int, int]) -> Section | None:
    text = values.get(key)
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        section = Section.from_fits(str(text))
    except SectionSyntaxError as exc:
        raise SectionError(path, f"{name}: {key} = {text!r} is not a section: {exc}") from exc
    if not section.fits_inside(shape):
        raise SectionError(
            path, f"{name}: {key} = {text!r} lies outside the {shape[1]}x{shape[0]} image (NAXIS1 x NAXIS2)"
        )
    return section


def _align_overscan(overscan: Section, data: Section) -> Section | None:
    """The overscan restricted to the data's rows, or None where it does not span them."""
    if overscan.y0 > data.y0 or overscan.y1 < data.y1:
        return None
    return Section(data.y0, data.y1, overscan.x0, overscan.x1, overscan.flip_x, overscan.flip_y)


