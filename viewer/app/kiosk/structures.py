"""The most prominent structures of a particle scene and an automatic tour between them (no GL).

Two finders: peaks of the smoothed density on a grid (:func:`density_peaks`, the default, for
simulations with little collapse such as a Zel'dovich web) and friends-of-friends groups.

Friends-of-friends structures are friends-of-friends groups (Davis et al. 1985): particles
closer than ``b`` times the mean interparticle separation are linked, and
a group is a connected set. The pairs come from SciPy's ``cKDTree``
(periodic boxes via ``boxsize``) and the groups from
``scipy.sparse.csgraph.connected_components``. To keep the cost small on a
kiosk computer the groups are found on a uniform random subsample of at
most ``max_points`` particles (the linking length is then relative to the
subsample's separation, so the groups are the same overdensity contours,
coarser); each group's mass is its particles' mass times N / n.

A group's **size** is its diameter, twice the root-mean-square distance of
its members from its centre of mass (minimum image in a periodic box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lenghu.viewer.app.kiosk.show import Text


@dataclass(frozen=True)
class Structure:
    """One group: ``center`` (world units), ``mass_msun`` (solar masses, per h when lengths are per h),
    ``size`` (diameter, world units), ``members`` (particles of the subsample)."""

    center: tuple[float, float, float]
    mass_msun: float | None
    size: float
    members: int


def friends_of_friends(positions: np.ndarray, masses: np.ndarray | None = None, box_size=(0.0, 0.0, 0.0),
                       linking: float = 0.2, min_members: int = 20, max_points: int = 40_000, count: int = 5,
                       mass_unit_msun: float = 1e10, seed: int = 0) -> list[Structure]:
    """The ``count`` most massive friends-of-friends groups, most massive first.

    Parameters
    ----------
    positions : (N, 3) array
    masses : (N,) array or None
        Per-particle masses in units of ``mass_unit_msun`` solar masses (None: masses unknown).
    box_size : 3 floats
        Periodic box (zeros: not periodic).
    linking : float
        Linking length in units of the mean interparticle separation (of the subsample).
    min_members : int
        Smallest group kept (subsample particles).
    max_points : int
        Largest subsample used.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    n_all = len(pos)
    if n_all == 0:
        return []
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n_all, max_points, replace=False)) if n_all > max_points else np.arange(n_all)
    p = pos[idx]
    box = np.asarray(box_size, dtype=np.float64)
    periodic = bool(np.all(box > 0))
    if periodic:
        p = np.mod(p, box)
        volume = float(np.prod(box))
    else:
        lo, hi = p.min(axis=0), p.max(axis=0)
        volume = float(np.prod(np.maximum(hi - lo, 1e-12)))
    n = len(p)
    ll = linking * (volume / n) ** (1.0 / 3.0)
    tree = cKDTree(p, boxsize=box if periodic else None)
    pairs = tree.query_pairs(ll, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    weight = n_all / n
    m = None if masses is None else np.asarray(masses, dtype=np.float64)[idx]
    group_mass = np.bincount(labels, weights=m) * weight if m is not None else sizes * weight
    order = [g for g in np.argsort(-group_mass, kind="stable") if sizes[g] >= min_members][:count]
    out = []
    for g in order:
        members = p[labels == g]
        ref = members[0]
        d = members - ref
        if periodic:
            d -= box * np.round(d / box)
        centre = ref + d.mean(axis=0)
        r = d - d.mean(axis=0)
        size = 2.0 * float(np.sqrt((r * r).sum(axis=1).mean()))
        if periodic:
            centre = np.mod(centre, box)
        mass = float(group_mass[g]) * mass_unit_msun if m is not None else None
        out.append(Structure(tuple(float(x) for x in centre), mass, size, int(sizes[g])))
    return out


def density_peaks(positions: np.ndarray, masses: np.ndarray | None = None, box_size=(0.0, 0.0, 0.0),
                  grid: int = 32, smoothing_cells: float = 1.0, contrast: float = 5.0, count: int = 5,
                  mass_unit_msun: float = 1e10, max_points: int = 400_000, seed: int = 0) -> list[Structure]:
    """The ``count`` highest peaks of the smoothed density, each with the sphere around it of mean density
    ``contrast`` times the mean (its mass and diameter), highest first.

    Suited to simulations where few particles have collapsed into haloes (a Zel'dovich web has sheets
    and filaments, and friends-of-friends at b = 0.2 finds hardly any group there). The density is
    counted on a ``grid``^3 mesh (``numpy.histogramdd``), smoothed with a Gaussian of ``smoothing_cells``
    cells (``scipy.ndimage``, wrapped in a periodic box); peaks are the local maxima over 5^3 cells.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    n_all = len(pos)
    if n_all == 0:
        return []
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n_all, max_points, replace=False)) if n_all > max_points else np.arange(n_all)
    p = pos[idx]
    m = None if masses is None else np.asarray(masses, dtype=np.float64)[idx]
    box = np.asarray(box_size, dtype=np.float64)
    periodic = bool(np.all(box > 0))
    if periodic:
        p = np.mod(p, box)
        lo, hi = np.zeros(3), box
    else:
        lo, hi = p.min(axis=0), p.max(axis=0) + 1e-9
    mode = "wrap" if periodic else "constant"
    counts, _ = np.histogramdd(p, bins=grid, range=list(zip(lo, hi)))
    dens = ndimage.gaussian_filter(counts, smoothing_cells, mode=mode)
    peaks = (dens == ndimage.maximum_filter(dens, size=5, mode=mode)) & (dens > dens.mean())
    cells = np.argwhere(peaks)
    cells = cells[np.argsort(-dens[peaks], kind="stable")][:count]
    cell = (hi - lo) / grid
    tree = cKDTree(p, boxsize=box if periodic else None)
    volume = float(np.prod(hi - lo))
    mean_n = len(p) / volume
    weight = n_all / len(p)
    radii = np.geomspace(0.25, 6.0, 40) * float(cell.mean())
    out = []
    for c in cells:
        centre = lo + (c + 0.5) * cell
        inside = tree.query_ball_point(np.tile(centre, (len(radii), 1)), radii, return_length=True)
        mean_density = inside / (4.0 / 3.0 * np.pi * radii**3)
        ok = np.nonzero(mean_density >= contrast * mean_n)[0]
        r = radii[ok[-1]] if len(ok) else radii[0]
        members = tree.query_ball_point(centre, r)
        if not members:
            continue
        if m is not None:
            mass = float(m[members].sum()) * weight * mass_unit_msun
        else:
            mass = None
        out.append(Structure(tuple(float(x) for x in centre), mass, 2.0 * float(r), len(members)))
    return out


def find_structures(data, count: int = 5, mass_unit_msun: float = 1e10, finder: str = "peaks") -> list[Structure]:
    """Structures of a :class:`~lenghu.viewer.model.ParticleData` by ``finder`` (``peaks`` or ``fof``)."""
    masses = data.fields.get("mass")
    if finder == "fof":
        return friends_of_friends(data.positions, masses, data.box_size, count=count, mass_unit_msun=mass_unit_msun)
    if finder == "peaks":
        return density_peaks(data.positions, masses, data.box_size, count=count, mass_unit_msun=mass_unit_msun)
    raise ValueError(f"unknown structure finder {finder!r} (peaks, fof)")


def format_mass(msun: float | None, per_h: bool) -> tuple[str, str]:
    """(Chinese, English) text of a mass in solar masses, e.g. ``8.0×10¹⁴ solar masses/h``.

    Words, not the ☉ symbol: the CJK font the kiosk uses (WenQuanYi Micro Hei) has no glyph for it.
    """
    if msun is None or not math.isfinite(msun) or msun <= 0:
        return "质量未知", "mass unknown"
    e = int(math.floor(math.log10(msun)))
    mant = msun / 10**e
    sup = str(e).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    h = "/h" if per_h else ""
    return f"{mant:.1f}×10{sup} 倍太阳质量{h}", f"{mant:.1f}×10{sup} solar masses{h}"


def structure_text(rank: int, s: Structure, length_unit: str) -> Text:
    """The bilingual caption of structure number ``rank`` (1-based): mass and size with units."""
    per_h = length_unit.endswith("/h")
    mass_zh, mass_en = format_mass(s.mass_msun, per_h)
    size = f"{s.size:.2g} {length_unit}".strip()
    return Text(f"结构 {rank}：质量 {mass_zh}，直径约 {size}",
                f"Structure {rank}: mass {mass_en}, about {size} across")


@dataclass(frozen=True)
class Stop:
    """A stretch of a tour with its caption: from ``start`` to ``end`` seconds."""

    start: float
    end: float
    text: Text
    structure: int | None = None


class ChainTour:
    """Tours played one after the other; each piece is a two-keyframe :class:`~lenghu.viewer.model.Tour`, so
    the camera eases in and out of every keyframe and holds exactly where two pieces share a state."""

    def __init__(self, keyframes, fps: float = 30.0):
        from lenghu.viewer.model import Tour

        self.fps = fps
        self.pieces = [Tour([a, b], fps) for a, b in zip(keyframes[:-1], keyframes[1:])]
        self.starts = [k.t for k in keyframes]

    @property
    def duration(self) -> float:
        return self.starts[-1]

    def state_at(self, t: float):
        i = int(np.searchsorted(self.starts, t, side="right")) - 1
        i = min(max(i, 0), len(self.pieces) - 1)
        return self.pieces[i].state_at(t)


def structure_tour(structures: list[Structure], lo, hi, duration: float, length_unit: str,
                   series_steps: int = 1, overview_text: Text | None = None):
    """A tour that shows the whole box, then flies to each structure in turn; returns (ChainTour, stops).

    The first 20% of the time turns around the whole volume (a time series grows from its first to its
    last snapshot meanwhile); the rest is shared by the structures: fly in (45% of a leg), then hold on
    the structure while turning slowly (50%).
    """
    from lenghu.viewer.model import Keyframe, TurntableCamera

    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    home = TurntableCamera(azimuth=30, elevation=25, fov=45).fit(lo, hi).to_dict()
    last_series = float(series_steps - 1) if series_steps > 1 else None
    keys = [Keyframe(0.0, home, None, 0.0 if series_steps > 1 else None)]
    stops: list[Stop] = []
    t_overview = 0.2 * duration if structures else duration
    keys.append(Keyframe(t_overview, dict(home, azimuth=home["azimuth"] + 60), None, last_series))
    if overview_text is not None:
        stops.append(Stop(0.0, t_overview, overview_text))
    if structures:
        leg = (duration - t_overview) / len(structures)
        box = float(np.max(hi - lo))
        az = home["azimuth"] + 60
        for i, s in enumerate(structures):
            az += 70
            dist = max(4.0 * s.size, box / 6.0)
            t_arrive = t_overview + (i + 0.45) * leg
            t_leave = t_overview + (i + 0.95) * leg
            cam = {"type": "turntable", "center": list(s.center), "azimuth": az, "elevation": 20.0,
                   "distance": dist, "fov": 45.0}
            keys.append(Keyframe(t_arrive, cam, None, last_series))
            keys.append(Keyframe(t_leave, dict(cam, azimuth=az + 25), None, last_series))
            stops.append(Stop(t_overview + i * leg, t_overview + (i + 1) * leg, structure_text(i + 1, s, length_unit),
                              i))
    return ChainTour(keys, 30.0), stops
