"""Read instrument TOML files into :class:`~lenghu.instruments.model.Instrument`.

An instrument is named (``wfst``, ``kast_blue``, ``generic``: files shipped in
``lenghu/instruments/data``) or given as a path to a TOML file. A user file may
start with ``extends = "wfst"`` and then set only what differs: its tables are
merged over the named instrument's (arrays of tables such as ``[[detector]]``
replace the parent's whole).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import astropy.units as u

from lenghu.errors import ConfigError, UnknownInstrumentError
from lenghu.instruments.layout import AmplifierGrid
from lenghu.instruments.model import (
    ELECTRON_PER_ADU,
    Amplifier,
    Detector,
    HeaderSections,
    Instrument,
    Site,
)
from lenghu.instruments.rules import parse_rules
from lenghu.instruments.sections import Section, SectionSyntaxError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_RAW_LAYOUTS = ("mef", "single", "header")


def available_instruments() -> list[str]:
    """Names of the instruments shipped with lenghu."""
    folder = resources.files("lenghu.instruments") / "data"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_instrument(name_or_path: str | Path) -> Instrument:
    """Load a shipped instrument by name, or a TOML file by path.

    Raises
    ------
    UnknownInstrumentError
        Neither a shipped name nor an existing file.
    ConfigError
        The file is not valid TOML or a value is missing, malformed or has the wrong unit.
    """
    table, source = _read_table(name_or_path, seen=())
    try:
        return _build(table, source)
    except ConfigError:
        raise
    except (KeyError, TypeError, ValueError, SectionSyntaxError) as exc:
        raise ConfigError(source, _describe(exc)) from exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc)


def _read_table(name_or_path: str | Path, seen: tuple[str, ...]) -> tuple[dict, str]:
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UnknownInstrumentError(text, "no such instrument file")
        source = str(path)
        raw = path.read_bytes()
    else:
        if text not in available_instruments():
            raise UnknownInstrumentError(
                text, f"unknown instrument; shipped: {', '.join(available_instruments())}, or give a TOML path"
            )
        resource = resources.files("lenghu.instruments") / "data" / f"{text}.toml"
        source = f"lenghu/instruments/data/{text}.toml"
        raw = resource.read_bytes()
    if source in seen:
        raise ConfigError(source, "instrument files extend each other in a loop")
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(source, f"not valid TOML: {exc}") from exc
    parent = table.pop("extends", None)
    if parent is not None:
        parent_table, _ = _read_table(parent, seen + (source,))
        table = _merge(parent_table, table)
    return table, source


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict:
    """Tables merged key by key; everything else (arrays of tables too) replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def quantity(value: Any, unit: u.UnitBase, field: str) -> u.Quantity:
    """``"1.6 electron/adu"`` or a bare number (taken in ``unit``) as a Quantity in ``unit``."""
    try:
        q = u.Quantity(value) if isinstance(value, str) else float(value) * unit
        return q.to(unit)
    except (TypeError, ValueError, u.UnitsError) as exc:
        raise ValueError(f"field {field!r}: {value!r} is not a quantity in {unit}") from exc


def _build(table: Mapping[str, Any], source: str) -> Instrument:
    known = {
        "name", "telescope", "camera", "pixel_scale", "filters", "raw_layout", "assumptions",
        "site", "headers", "detector_template", "detector", "header_sections",
    }
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown top-level fields {sorted(unknown)}")
    layout = table.get("raw_layout", "mef")
    if layout not in _RAW_LAYOUTS:
        raise ValueError(f"raw_layout {layout!r} is not one of {_RAW_LAYOUTS}")
    site_t = table["site"]
    site = Site(
        name=site_t["name"],
        latitude=quantity(site_t["latitude"], u.deg, "site.latitude"),
        longitude=quantity(site_t["longitude"], u.deg, "site.longitude"),
        elevation=quantity(site_t["elevation"], u.m, "site.elevation"),
        median_seeing=quantity(site_t.get("median_seeing", 1.0), u.arcsec, "site.median_seeing"),
    )
    header_sections = None
    if layout == "header":
        hs = table.get("header_sections", {})
        header_sections = HeaderSections(
            data_key=hs.get("data", "DATASEC"),
            overscan_key=hs.get("overscan", "BIASSEC"),
            trim_key=hs.get("trim", "TRIMSEC"),
            gain_key=hs.get("gain_key", "GAIN"),
            read_noise_key=hs.get("read_noise_key", "RDNOISE"),
            saturation_key=hs.get("saturation_key", "SATURATE"),
            gain=quantity(hs["gain"], ELECTRON_PER_ADU, "header_sections.gain") if "gain" in hs else None,
            read_noise=quantity(hs["read_noise"], u.electron, "header_sections.read_noise")
            if "read_noise" in hs
            else None,
        )
        detectors: tuple[Detector, ...] = ()
    else:
        detectors = _detectors(table)
    return Instrument(
        name=table["name"],
        telescope=table.get("telescope", "unknown"),
        camera=table.get("camera", table["name"]),
        site=site,
        pixel_scale=quantity(table["pixel_scale"], u.arcsec / u.pixel, "pixel_scale"),
        filters=tuple(table.get("filters", ())),
        detectors=detectors,
        rules=parse_rules(table["headers"]),
        raw_layout=layout,
        header_sections=header_sections,
        assumptions=tuple(table.get("assumptions", ())),
        source=source,
    )


def _detectors(table: Mapping[str, Any]) -> tuple[Detector, ...]:
    entries = table.get("detector", [])
    if not entries:
        raise ValueError("no [[detector]] tables")
    # found by fuzzing: with a [[detector]] line lost, TOML gives a table or strings here
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'detector' must be a list of [[detector]] tables")
    for entry in entries:
        amps = entry.get("amplifier", [])
        if not isinstance(amps, list) or not all(isinstance(a, dict) for a in amps):
            raise ValueError(f"detector {entry.get('name')!r}: 'amplifier' must be a list of "
                             "[[detector.amplifier]] tables")
    template = table.get("detector_template")
    if template is not None:
        return tuple(_grid_detector(entry, template, i + 1, len(entries)) for i, entry in enumerate(entries))
    return tuple(_explicit_detector(entry, i + 1) for i, entry in enumerate(entries))


def _per_amp(template: Mapping[str, Any], key: str, unit: u.UnitBase, count: int) -> list[u.Quantity]:
    value = template[key]
    if isinstance(value, list):
        if len(value) != count:
            raise ValueError(f"detector_template.{key} has {len(value)} values for {count} amplifiers")
        return [quantity(v, unit, f"detector_template.{key}") for v in value]
    return [quantity(value, unit, f"detector_template.{key}")] * count


def _grid_detector(entry: Mapping[str, Any], template: Mapping[str, Any], index: int, total: int) -> Detector:
    merged = _merge(template, entry)
    grid = AmplifierGrid(
        rows=int(merged["amplifier_rows"]),
        columns=int(merged["amplifier_columns"]),
        amp_shape=_pair(merged["amplifier_shape"], "amplifier_shape"),
        overscan_columns=int(merged.get("overscan_columns", 0)),
    )
    return grid_detector(
        name=entry["name"],
        index=index,
        grid=grid,
        position=_pair(entry.get("position", (0, index - 1)), "position", minimum=0),
        gap=_pair(merged.get("mosaic_gap", (0, 0)), "mosaic_gap", minimum=0),
        mosaic_shape=_mosaic_shape(entry, total),
        electrical={
            "gain": _per_amp(merged, "gain", ELECTRON_PER_ADU, grid.count),
            "read_noise": _per_amp(merged, "read_noise", u.electron, grid.count),
            "bias_level": _per_amp(merged, "bias_level", u.adu, grid.count),
            "saturation": _per_amp(merged, "saturation", u.adu, grid.count),
        },
        dark_current=quantity(merged.get("dark_current", 0.0), u.electron / u.s, "dark_current"),
        pixel_size=quantity(merged.get("pixel_size", 15.0), u.um, "pixel_size"),
        assumed=frozenset(merged.get("assumed", ())),
    )


def _pair(value: Any, field: str, minimum: int = 1) -> tuple[int, int]:
    """Two integers ``[ny, nx]`` of at least ``minimum`` (found by fuzzing: ``shape = ""`` or a
    one-element ``position`` gave an IndexError later)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise ValueError(f"field {field!r}: {value!r} is not two integers [ny, nx] of at least {minimum}")
    return int(value[0]), int(value[1])


def _mosaic_shape(entry: Mapping[str, Any], total: int) -> tuple[int, int]:
    side = round(total ** 0.5)
    return (side, side) if side * side == total else (1, total)


def grid_detector(
    name: str,
    index: int,
    grid: AmplifierGrid,
    position: tuple[int, int],
    gap: tuple[int, int],
    mosaic_shape: tuple[int, int],
    electrical: Mapping[str, list[u.Quantity]],
    dark_current: u.Quantity,
    pixel_size: u.Quantity,
    assumed: frozenset[str],
) -> Detector:
    """A detector built from an amplifier grid, placed at ``position`` in a mosaic."""
    ny, nx = grid.shape
    rows, cols = mosaic_shape
    dy = (position[0] - (rows - 1) / 2) * (ny + gap[0])
    dx = (position[1] - (cols - 1) / 2) * (nx + gap[1])
    return Detector(
        name=name,
        index=index,
        hdu=name,
        shape=grid.shape,
        raw_shape=grid.raw_shape,
        amplifiers=grid.amplifiers(assumed=assumed, **electrical),
        offset=(float(dy), float(dx)),
        dark_current=dark_current,
        pixel_size=pixel_size,
        grid=grid,
        assumed=assumed,
    )


def _explicit_detector(entry: Mapping[str, Any], index: int) -> Detector:
    amps = []
    for amp in entry.get("amplifier", []):
        overscan = amp.get("overscan_section")
        amps.append(
            Amplifier(
                name=amp["name"],
                data_section=_section(amp, "data_section"),
                overscan_section=_section(amp, "overscan_section") if overscan else None,
                detector_section=_section(amp, "detector_section"),
                gain=quantity(amp.get("gain", 1.0), ELECTRON_PER_ADU, "gain"),
                read_noise=quantity(amp.get("read_noise", 5.0), u.electron, "read_noise"),
                bias_level=quantity(amp.get("bias_level", 0.0), u.adu, "bias_level"),
                saturation=quantity(amp.get("saturation", 65535), u.adu, "saturation"),
                assumed=frozenset(amp.get("assumed", ())),
            )
        )
    if not amps:
        raise ValueError(f"detector {entry.get('name')!r} has no [[detector.amplifier]] tables")
    return Detector(
        name=entry["name"],
        index=index,
        hdu=entry.get("hdu", 0),
        shape=_pair(entry["shape"], "shape"),
        raw_shape=_pair(entry["raw_shape"], "raw_shape"),
        amplifiers=tuple(amps),
        offset=tuple(float(v) for v in entry.get("offset", (0.0, 0.0))),
        dark_current=quantity(entry.get("dark_current", 0.0), u.electron / u.s, "dark_current"),
        pixel_size=quantity(entry.get("pixel_size", 15.0), u.um, "pixel_size"),
        assumed=frozenset(entry.get("assumed", ())),
    )


def _section(amp: Mapping[str, Any], key: str) -> Section:
    try:
        return Section.from_fits(amp[key])
    except SectionSyntaxError as exc:
        raise ValueError(f"amplifier {amp.get('name')!r} field {key!r}: {exc}") from exc


def scale_instrument(instrument: Instrument, factor: float) -> Instrument:
    """The instrument with every grid detector ``factor`` times as large per side.

    The pixel scale stays: a scaled detector sees a smaller patch of sky with
    the same sampling, so PSFs and star counts per pixel stay realistic. Gaps
    between detectors scale with the detectors.
    """
    if factor == 1:
        return instrument
    if not 0 < factor <= 1:
        raise ValueError(f"scale must be in (0, 1], got {factor}")
    detectors = []
    for det in instrument.detectors:
        if det.grid is None:
            raise ValueError(f"instrument {instrument.name}: detector {det.name} has no amplifier grid to scale")
        grid = det.grid.scaled(factor)
        amps = det.amplifiers
        scaled_amps = grid.amplifiers(
            gain=[a.gain for a in amps],
            read_noise=[a.read_noise for a in amps],
            bias_level=[a.bias_level for a in amps],
            saturation=[a.saturation for a in amps],
            assumed=amps[0].assumed if amps else frozenset(),
        )
        oy, ox = det.offset
        sy, sx = grid.shape[0] / det.shape[0], grid.shape[1] / det.shape[1]
        detectors.append(
            replace(
                det,
                shape=grid.shape,
                raw_shape=grid.raw_shape,
                amplifiers=scaled_amps,
                offset=(oy * sy, ox * sx),
                grid=grid,
            )
        )
    return instrument.with_detectors(tuple(detectors))
