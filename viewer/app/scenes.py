"""Make a model :class:`~lenghu.viewer.model.Scene` from files on disk (no GL).

What a path is comes from its content: a ``.lod`` store, a snapshot lenghu
reads, a ``.pyr`` image pyramid, a FITS image (2-D) or cube (3-D). A FITS
image of more than ``SceneSpec.tiled_pixels`` pixels (a WFST mosaic) is shown
tiled: its pyramid is built once into the cache
(:func:`lenghu.viewer.tiles.command.cached_pyramid`). Several snapshots of one
simulation become a :class:`~lenghu.viewer.model.TimeSeries`; several
``.lod`` stores are played one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from lenghu.errors import LenghuError


class ViewerInputError(LenghuError):
    """A path given to the viewer is not something it can show."""


@dataclass
class SceneSpec:
    """Display options given on the command line (None: the viewer's defaults)."""

    budget: int = 1_000_000
    field: str | None = None
    colormap: str | None = None
    scale: str | None = None
    exposure: float = 1.0
    point_size: float = 3.0
    tonemap: str = "asinh"
    caption: str | None = None
    stretch: str | None = None
    volume_method: str | None = None
    tiled_pixels: int = 8192 * 8192
    extra: dict[str, Any] = dc_field(default_factory=dict)


def path_kind(path: str | Path) -> str:
    """``lod``, ``snapshot``, ``pyramid``, ``image`` or ``cube`` (raises ViewerInputError otherwise)."""
    from lenghu.viewer.lod.format import is_lod_store
    from lenghu.viewer.tiles.format import is_pyramid

    path = Path(path)
    if not path.exists():
        raise ViewerInputError(f"{path}: no such file or folder")
    if is_lod_store(path):
        return "lod"
    if is_pyramid(path):
        return "pyramid"
    from lenghu.io.snapshots import snapshot_format

    if snapshot_format(path) is not None:
        return "snapshot"
    from lenghu.viewer.model.layers import fits_kind

    kind = fits_kind(path) if path.is_file() else None
    if kind is not None:
        return kind
    raise ViewerInputError(f"{path}: not a snapshot, a .lod store or a FITS image/cube the viewer shows")


def _default_field(names: list[str]) -> tuple[str | None, str]:
    for name in ("grid_density", "Density", "density", "speed"):
        if name in names:
            return name, "log" if name != "speed" else "linear"
    return None, "linear"


def build_scene(paths: list[str | Path], spec: SceneSpec | None = None):
    """A Scene for ``paths`` and the number of time steps it plays (1 for a single snapshot).

    Returns
    -------
    scene : Scene
    steps : int
        Snapshots in a time series (the series time runs over 0 .. steps - 1).
    """
    from lenghu.viewer.model import ImageLayer, ParticleLayer, Scene, TimeSeries, VolumeLayer, load_particles
    from lenghu.viewer.model.colors import check_colormap

    spec = spec or SceneSpec()
    if not paths:
        raise ViewerInputError("no input given")
    kinds = [path_kind(p) for p in paths]
    kinds = ["image" if k == "pyramid" else k for k in kinds]  # pyramids and FITS images go together
    if len(set(kinds)) > 1:
        raise ViewerInputError(f"mixed inputs ({', '.join(sorted(set(kinds)))}): give snapshots, stores or FITS files")
    kind = kinds[0]
    layers = []
    steps = 1
    unit = ""
    if kind in ("snapshot", "lod"):
        if kind == "snapshot":
            try:
                frames = [load_particles(p) for p in paths]
            except (ValueError, OSError) as exc:
                raise ViewerInputError(str(exc)) from exc
            source = frames[0] if len(frames) == 1 else TimeSeries(frames)
            sources = [source]
            steps = len(frames)
            unit = frames[0].length_unit
        else:
            from lenghu.viewer.lod import LodStore

            sources = sorted((LodStore(p) for p in paths), key=lambda s: s.time)
            steps = len(sources)
            unit = sources[0].length_unit
        names = list(sources[0].field_names())
        fld, scale = _default_field(names)
        if spec.field is not None:
            if spec.field not in names:
                raise ViewerInputError(f"no field {spec.field!r} (have: {', '.join(names) or 'none'})")
            fld, scale = spec.field, spec.scale or ("log" if spec.field.lower().endswith("density") else "linear")
        for i, src in enumerate(sources):
            layers.append(ParticleLayer(
                src, field=fld, scale=spec.scale or scale, colormap=check_colormap(spec.colormap or "inferno"),
                budget=spec.budget, exposure=spec.exposure, point_size=spec.point_size, tonemap=spec.tonemap,
                visible=(i == 0)))
    elif kind == "image":
        for p in paths:
            layer = _image_layer(p, spec)
            if spec.stretch:
                layer.stretch = spec.stretch
            if spec.colormap:
                layer.colormap = spec.colormap
            layers.append(layer)
    else:
        for p in paths:
            layer = VolumeLayer.from_fits(p, method=spec.volume_method or "mip")
            if spec.colormap:
                layer.colormap = spec.colormap
            layers.append(layer)
    scene = Scene(layers, length_unit=unit)
    if spec.caption is not None:
        scene.caption = spec.caption
    return scene, steps


def _image_layer(path, spec: SceneSpec):
    """An ImageLayer, or a TiledImageLayer for a pyramid or a FITS image above ``spec.tiled_pixels`` pixels."""
    from lenghu.viewer.model import ImageLayer, TiledImageLayer
    from lenghu.viewer.tiles import PyramidError, PyramidReadError, is_pyramid
    from lenghu.viewer.tiles.command import cached_pyramid, image_pixels

    try:
        if is_pyramid(path):
            return TiledImageLayer.from_path(path)
        if image_pixels(path) > spec.tiled_pixels:
            return TiledImageLayer.from_path(cached_pyramid(path), name=Path(path).name)
    except (PyramidError, PyramidReadError, OSError) as exc:
        raise ViewerInputError(f"{path}: {exc}") from exc
    return ImageLayer.from_fits(path)


def set_series_time(scene, t: float) -> None:
    """Move every time series (or sequence of stores) of ``scene`` to fractional snapshot index ``t``."""
    from lenghu.viewer.model import ParticleLayer

    particle_layers = [layer for layer in scene.layers if isinstance(layer, ParticleLayer)]
    stores = [layer for layer in particle_layers if layer.kind == "lod"]
    if len(stores) > 1:  # stores are played one after the other (no interpolation between stores)
        index = int(min(max(round(t), 0), len(stores) - 1))
        for i, layer in enumerate(stores):
            layer.visible = i == index
    for layer in particle_layers:
        if layer.kind == "series":
            layer.time = t
