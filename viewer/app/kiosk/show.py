"""The show file (``show.toml``): typed configuration of a kiosk show, validated on load (no GL).

A show is a ``[show]`` table (title, idle time, admin chord, ...), an optional
``[quality]`` table (frame-rate target and point-budget range) and a
playlist of ``[[scene]]`` tables, each with its data, a camera tour, a
duration and captions in Chinese and English. See ``docs/kiosk.md`` for the
reference. Every error names the file, the line and the field::

    show.toml:14: scene[2].duration: must be > 0 s (got -3)

``tomllib`` reports positions of syntax errors; for semantic errors the line
of the offending key (or of its table) is found by :func:`locate`, a small
scan of the text (tomllib keeps no positions, and no well-kept library
parses TOML with positions for the standard library's dialect).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenghu.errors import ConfigError

LANGUAGES = ("zh", "en")
TOUR_KINDS = ("auto", "orbit", "file", "still")
MODIFIERS = ("ctrl", "alt", "shift", "meta")


class ShowError(ConfigError):
    """A show file is invalid; ``line`` (1-based, 0 when unknown) and ``field`` say where."""

    def __init__(self, source: str | Path, line: int, field_name: str, problem: str):
        self.line = line
        self.field = field_name
        where = f"{source}:{line}" if line else str(source)
        super().__init__(where, f"{field_name}: {problem}" if field_name else problem)
        self.source = str(source)


@dataclass(frozen=True)
class Text:
    """The same text in Chinese and English."""

    zh: str
    en: str

    def get(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


@dataclass(frozen=True)
class Chord:
    """A key chord: modifiers (subset of ctrl/alt/shift/meta) and one key (lower case name)."""

    modifiers: frozenset[str]
    key: str

    @classmethod
    def parse(cls, text: str) -> "Chord":
        parts = [p.strip().lower() for p in str(text).split("+")]
        if len(parts) < 2 or any(not p for p in parts):
            raise ValueError(f"need modifiers and a key like 'ctrl+alt+shift+q', got {text!r}")
        *mods, key = parts
        bad = [m for m in mods if m not in MODIFIERS]
        if bad:
            raise ValueError(f"unknown modifier {bad[0]!r} (use {', '.join(MODIFIERS)})")
        if len(set(mods)) < 2:
            # one modifier is too easy to hit by chance on a public keyboard
            raise ValueError(f"the admin chord needs at least two modifiers, got {text!r}")
        return cls(frozenset(mods), key)

    def __str__(self) -> str:
        return "+".join([m for m in MODIFIERS if m in self.modifiers] + [self.key])


@dataclass(frozen=True)
class SceneConfig:
    """One ``[[scene]]`` of the playlist.

    Attributes
    ----------
    name : str
        Short identifier (used in the usage log and the resume state).
    data : tuple of Path
        Snapshots (several: a time series), a ``.lod`` store, a FITS image or cube (absolute paths).
    duration : float
        Seconds the scene plays in attract mode before the next one.
    caption : Text
    tour : str
        ``auto`` (fly between the most prominent structures of a particle scene),
        ``orbit`` (turn around the data), ``still`` or ``file`` (``tour_file``, a tour JSON).
    tour_file : Path or None
    structures : int
        Stops of an ``auto`` tour (the most massive friends-of-friends groups).
    field, colormap, scale : str or None
        Particle colouring (None: the viewer's defaults).
    exposure : float
    point_size : float, px
    volume_method, stretch : str or None
    mass_unit_msun : float
        Solar masses (per h when the length unit is per h) of one unit of the particles' ``mass`` field
        (1e10: Gadget's convention).
    splat_growth : float
        A point standing for w particles (a lowered budget) is drawn ``w ** splat_growth`` times larger.
        The viewer's 0.5 keeps the picture smooth but makes the fill cost independent of the budget, so
        lowering the budget would not raise the frame rate on a software renderer; the kiosk's 0.25 lets
        adaptive quality work (frame time about proportional to sqrt(budget)).
    line : int
        Line of the ``[[scene]]`` header in the show file.
    """

    name: str
    data: tuple[Path, ...]
    duration: float
    caption: Text
    tour: str = "orbit"
    tour_file: Path | None = None
    structures: int = 5
    field: str | None = None
    colormap: str | None = None
    scale: str | None = None
    exposure: float = 1.0
    point_size: float = 3.0
    volume_method: str | None = None
    stretch: str | None = None
    mass_unit_msun: float = 1e10
    splat_growth: float = 0.25
    line: int = 0


@dataclass(frozen=True)
class QualityConfig:
    """Adaptive quality: the point budget is adjusted to hold ``target_fps``.

    Attributes
    ----------
    target_fps : float, frames/s
    min_budget, max_budget, start_budget : int, points per frame
    """

    target_fps: float = 30.0
    min_budget: int = 5_000
    max_budget: int = 4_000_000
    start_budget: int = 300_000


@dataclass(frozen=True)
class ShowConfig:
    """A whole show (see the module docstring).

    Attributes
    ----------
    path : Path
        The show file; ``folder`` is its folder (relative paths are relative to it).
    title : Text
    language : str
        Language at start and after each idle return (``zh`` or ``en``).
    idle_seconds : float, s
        Attract mode starts after this long without input.
    label_seconds : float, s
        How long a tapped structure's label stays.
    admin_chord : Chord
        The only way out (Esc, Alt-F4, Ctrl-Q do nothing).
    allow_outside : bool
        Allow data paths outside the show folder.
    usage_log : Path or None
        CSV of interactions per scene per hour (None: no log).
    size : (int, int), px
        Window size when not full screen and the rehearsal's default size.
    quality : QualityConfig
    scenes : tuple of SceneConfig
    """

    path: Path
    title: Text
    scenes: tuple[SceneConfig, ...]
    language: str = "zh"
    idle_seconds: float = 60.0
    label_seconds: float = 6.0
    admin_chord: Chord = Chord(frozenset({"ctrl", "alt", "shift"}), "q")
    allow_outside: bool = False
    usage_log: Path | None = None
    size: tuple[int, int] = (1280, 720)
    quality: QualityConfig = field(default_factory=QualityConfig)

    @property
    def folder(self) -> Path:
        return self.path.parent


# ---------------------------------------------------------------------- locating lines
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")


def locate(text: str, table: str, index: int | None = None, key: str | None = None) -> int:
    """The 1-based line of ``key`` in the ``index``-th ``[[table]]`` (or in ``[table]``); 0 when not found.

    Without ``key`` (or when the key is not written on its own line), the table's header line.
    ``key`` may be dotted (``caption.zh``): the first part is searched, then the last part inside an
    inline table on that line or in a following ``[table.sub]`` section.
    """
    lines = text.splitlines()
    count = -1
    start = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if not m:
            continue
        name = m.group(2).strip()
        if name == table and (m.group(1) == "[[") == (index is not None):
            count += 1
            if index is None or count == index:
                start = i
                break
    if start is None:
        return 0
    if key is None:
        return start + 1
    first = key.split(".")[0]
    pattern = re.compile(rf"^\s*[\"']?{re.escape(first)}[\"']?\s*[.=]")
    for j in range(start + 1, len(lines)):
        m = _HEADER.match(lines[j])
        if m and not m.group(2).strip().startswith(f"{table}."):
            break
        if pattern.match(lines[j]):
            return j + 1
    return start + 1


# ---------------------------------------------------------------------- validation helpers
class _Checker:
    """Reads typed values out of the parsed TOML, raising ShowError with the line and field."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text

    def fail(self, table: str, index: int | None, key: str | None, problem: str):
        name = f"{table}[{index}]" if index is not None else table
        fieldname = f"{name}.{key}" if key else name
        raise ShowError(self.path, locate(self.text, table, index, key), fieldname, problem)

    def unknown(self, table: str, index: int | None, data: dict, allowed: set[str]):
        extra = sorted(set(data) - allowed)
        if extra:
            self.fail(table, index, extra[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def get(self, data: dict, table: str, index: int | None, key: str, kind, default=..., check=None, what=""):
        if key not in data:
            if default is ...:
                self.fail(table, index, key, "missing (required)")
            return default
        value = data[key]
        ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
        if not ok:
            self.fail(table, index, key, f"must be {what or _kind_name(kind)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(table, index, key, f"must be finite, got {value!r}")
        if check is not None:
            problem = check(value)
            if problem:
                self.fail(table, index, key, f"{problem} (got {value!r})")
        return value

    def text_pair(self, data: dict, table: str, index: int | None, key: str, default=...) -> Text:
        value = self.get(data, table, index, key, dict, default, what="a table with zh and en")
        if value is default and default is not ...:
            return value
        for lang in LANGUAGES:
            if lang not in value or not isinstance(value[lang], str) or not value[lang].strip():
                self.fail(table, index, f"{key}.{lang}", "missing or empty: captions are bilingual (zh and en)")
        self.unknown(table, index, value, set(LANGUAGES))
        return Text(value["zh"], value["en"])

    def path_in_show(self, raw: str, table: str, index: int | None, key: str, allow_outside: bool,
                     must_exist: bool = True) -> Path:
        folder = self.path.parent.resolve()
        p = Path(raw).expanduser()
        full = (p if p.is_absolute() else folder / p).resolve()
        if not allow_outside and not full.is_relative_to(folder):
            self.fail(table, index, key, f"{raw!r} is outside the show folder {folder} "
                                          "(set allow_outside = true in [show] to allow it)")
        if must_exist and not full.exists():
            self.fail(table, index, key, f"{raw!r}: no such file or folder ({full})")
        return full


def _kind_name(kind) -> str:
    names = {str: "a string", bool: "true or false", int: "an integer", float: "a number", dict: "a table",
             list: "a list"}
    if isinstance(kind, tuple):
        return "a number" if set(kind) == {int, float} else " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _positive(v) -> str | None:
    return None if v > 0 else "must be > 0"


_NUMBER = (int, float)
SHOW_KEYS = {"title", "language", "idle_seconds", "label_seconds", "admin_chord", "allow_outside", "usage_log",
             "size"}
QUALITY_KEYS = {"target_fps", "min_budget", "max_budget", "start_budget"}
SCENE_KEYS = {"name", "data", "duration", "caption", "tour", "tour_file", "structures", "field", "colormap", "scale",
              "exposure", "point_size", "volume_method", "stretch", "mass_unit_msun", "splat_growth"}


def load_show(path: str | Path) -> ShowConfig:
    """Read and validate a show file.

    Raises
    ------
    ShowError
        Naming the file, the line and the field, for syntax and semantic errors alike.
    """
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise ShowError(path, 0, "", f"cannot read the show file: {exc.strerror or exc}") from exc
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[:exc.start].count(b"\n") + 1
        raise ShowError(path, line, "", "not UTF-8 text") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = int(m.group(1)) if m else 0
        raise ShowError(path, line, "", f"TOML syntax: {str(exc).split(' (at line')[0]}") from exc
    return parse_show(data, path, text)


def parse_show(data: dict[str, Any], path: Path, text: str = "") -> ShowConfig:
    """Validate parsed TOML ``data`` of the show file ``path`` (``text``: its source, for line numbers)."""
    c = _Checker(path, text)
    extra = sorted(set(data) - {"show", "quality", "scene"})
    if extra:
        line = next((n + 1 for n, s in enumerate(text.splitlines()) if re.match(rf"^\s*\[*\s*{re.escape(extra[0])}\b", s)),
                    0)
        raise ShowError(path, line, extra[0], "unknown table or key (allowed: [show], [quality], [[scene]])")
    show = data.get("show")
    if not isinstance(show, dict):
        c.fail("show", None, None, "missing [show] table (title, language, idle_seconds, admin_chord ...)")
    t = "show"
    c.unknown(t, None, show, SHOW_KEYS)
    title = c.text_pair(show, t, None, "title")
    language = c.get(show, t, None, "language", str, "zh",
                     lambda v: None if v in LANGUAGES else f"must be one of {', '.join(LANGUAGES)}")
    idle = float(c.get(show, t, None, "idle_seconds", _NUMBER, 60.0, _positive))
    label_s = float(c.get(show, t, None, "label_seconds", _NUMBER, 6.0, _positive))
    chord_text = c.get(show, t, None, "admin_chord", str, "ctrl+alt+shift+q")
    try:
        chord = Chord.parse(chord_text)
    except ValueError as exc:
        c.fail(t, None, "admin_chord", str(exc))
    if chord.key in ("escape", "esc", "f4") and chord.modifiers <= {"alt"}:
        c.fail(t, None, "admin_chord", "must not be a common exit key")
    allow_outside = c.get(show, t, None, "allow_outside", bool, False)
    usage = c.get(show, t, None, "usage_log", str, None)
    usage_path = None
    if usage:
        usage_path = c.path_in_show(usage, t, None, "usage_log", allow_outside, must_exist=False)
        if not usage_path.parent.is_dir():
            c.fail(t, None, "usage_log", f"the folder {usage_path.parent} does not exist")
    size = c.get(show, t, None, "size", list, [1280, 720], lambda v: None if len(v) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) and 16 <= x <= 16384 for x in v)
        else "must be [width, height] in pixels (16 .. 16384)")
    qt = data.get("quality", {})
    if not isinstance(qt, dict):
        c.fail("quality", None, None, "must be a table")
    c.unknown("quality", None, qt, QUALITY_KEYS)
    q = "quality"
    target = float(c.get(qt, q, None, "target_fps", _NUMBER, 30.0, lambda v: None if 1 <= v <= 240
                         else "must be between 1 and 240 frames/s"))
    lo = c.get(qt, q, None, "min_budget", int, 5_000, lambda v: None if v >= 1000 else "must be >= 1000 points")
    hi = c.get(qt, q, None, "max_budget", int, 4_000_000, lambda v: None if v >= lo else f"must be >= min_budget {lo}")
    start = c.get(qt, q, None, "start_budget", int, min(max(300_000, lo), hi),
                  lambda v: None if lo <= v <= hi else f"must lie in [min_budget, max_budget] = [{lo}, {hi}]")
    quality = QualityConfig(target, lo, hi, start)
    scenes_raw = data.get("scene")
    if not scenes_raw:
        c.fail("scene", None, None, "the show has no [[scene]] tables")
    if not isinstance(scenes_raw, list):
        c.fail("scene", None, None, "must be [[scene]] tables (an array of tables), not [scene]")
    scenes = []
    names = set()
    for i, sc in enumerate(scenes_raw):
        scenes.append(_parse_scene(c, sc, i, allow_outside))
        if scenes[-1].name in names:
            c.fail("scene", i, "name", f"duplicate scene name {scenes[-1].name!r}")
        names.add(scenes[-1].name)
    return ShowConfig(path=path.resolve(), title=title, scenes=tuple(scenes), language=language, idle_seconds=idle,
                      label_seconds=label_s, admin_chord=chord, allow_outside=allow_outside, usage_log=usage_path,
                      size=(int(size[0]), int(size[1])), quality=quality)


def _parse_scene(c: _Checker, sc: dict, i: int, allow_outside: bool) -> SceneConfig:
    t = "scene"
    c.unknown(t, i, sc, SCENE_KEYS)
    name = c.get(sc, t, i, "name", str, check=lambda v: None if re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", v)
                 else "must be 1-64 letters, digits, '-' or '_'")
    raw = c.get(sc, t, i, "data", (str, list), what="a path or a list of paths")
    items = [raw] if isinstance(raw, str) else raw
    if not items or not all(isinstance(x, str) and x for x in items):
        c.fail(t, i, "data", "must be a non-empty path or list of paths")
    data = tuple(c.path_in_show(x, t, i, "data", allow_outside) for x in items)
    duration = float(c.get(sc, t, i, "duration", _NUMBER, check=lambda v: None if v > 0 else "must be > 0 s"))
    caption = c.text_pair(sc, t, i, "caption")
    tour = c.get(sc, t, i, "tour", str, "orbit",
                 lambda v: None if v in TOUR_KINDS else f"must be one of {', '.join(TOUR_KINDS)}")
    tour_file = None
    if tour == "file":
        tf = c.get(sc, t, i, "tour_file", str)
        tour_file = c.path_in_show(tf, t, i, "tour_file", allow_outside)
    elif "tour_file" in sc:
        c.fail(t, i, "tour_file", "only with tour = \"file\"")
    structures = c.get(sc, t, i, "structures", int, 5, lambda v: None if 1 <= v <= 50 else "must be 1 .. 50")
    opt = {}
    for key in ("field", "colormap", "volume_method", "stretch"):
        opt[key] = c.get(sc, t, i, key, str, None)
    opt["scale"] = c.get(sc, t, i, "scale", str, None, lambda v: None if v in ("linear", "log")
                         else "must be linear or log")
    if opt["colormap"] is not None:
        from lenghu.viewer.model.colors import check_colormap

        try:
            check_colormap(opt["colormap"])
        except ValueError as exc:
            c.fail(t, i, "colormap", str(exc))
    exposure = float(c.get(sc, t, i, "exposure", _NUMBER, 1.0, _positive))
    point_size = float(c.get(sc, t, i, "point_size", _NUMBER, 3.0, lambda v: None if 0.5 <= v <= 64
                             else "must be 0.5 .. 64 px"))
    mass_unit = float(c.get(sc, t, i, "mass_unit_msun", _NUMBER, 1e10, _positive))
    growth = float(c.get(sc, t, i, "splat_growth", _NUMBER, 0.25, lambda v: None if 0 <= v <= 0.5
                         else "must be 0 .. 0.5"))
    return SceneConfig(name=name, data=data, duration=duration, caption=caption, tour=tour, tour_file=tour_file,
                       structures=structures, exposure=exposure, point_size=point_size, mass_unit_msun=mass_unit,
                       splat_growth=growth,
                       line=locate(c.text, "scene", i), **opt)
