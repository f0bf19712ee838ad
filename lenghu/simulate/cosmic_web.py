"""A synthetic cosmic web by the Zel'dovich approximation, written as Gadget-4 snapshots.

Particles start on a cubic grid of n^3 points q (spacing L/n) and move along
the linear displacement field psi(q) scaled by the growth factor,

    x(q, z) = q + D(z) psi(q),          psi_k = i k / k^2 delta_k,

where delta_k is a Gaussian random field with the linear LCDM power spectrum
of :mod:`lenghu.simulate.cosmology` at z = 0 (so delta = -div psi). The
comoving velocity is dx/dt = H(a) f(a) D(a) psi, and Gadget stores
``sqrt(a) dx/dt`` in km/s (peculiar velocity = sqrt(a) * stored).

The work is split into a pure part (:func:`zeldovich_displacement`,
:func:`particle_slab`) and one function with I/O (:func:`simulate_cosmic_web`)
that streams particles into :mod:`lenghu.io.gadget4` files slab by slab.

Memory: the field is made in single precision with real-to-complex FFTs. For
n = 464 (10^8 particles) the three displacement components (3 x 0.4 GB) are
kept, and during their computation the density modes and one work array of
complex modes (0.4 GB each) live beside them: about 2.5 GB at the peak, i.e.
about 24 bytes per particle. Particles are written in slabs of grid planes of
a few million particles.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft

from lenghu.errors import ConfigError
from lenghu.io.gadget4 import (
    COORDINATES,
    DEFAULT_MAX_FILE_BYTES,
    PARTICLE_IDS,
    VELOCITIES,
    SnapshotHeader,
    files_needed,
    open_snapshot,
    snapshot_paths,
)
from lenghu.simulate.cosmology import (
    H0_KM_S_PER_MPC_H,
    Cosmology,
    growth_factor,
    growth_rate,
    hubble_e,
    linear_power,
    particle_mass_gadget,
    power_spectrum_amplitude,
)

#: Redshift of the first snapshot when there are several and none is given.
DEFAULT_REDSHIFT_START = 10.0
#: Particles per written slab (whole grid planes are taken, at least one).
SLAB_PARTICLES = 2**22
#: Particle type of the dark matter (Gadget's "halo" type 1).
DM_TYPE = 1
FIELDS = {DM_TYPE: [COORDINATES, VELOCITIES, PARTICLE_IDS]}
SOURCE = "simulate cosmic-web"


def grid_size_for(particles: int) -> int:
    """Particles per grid side, n = round(N^(1/3)) (e.g. 10^8 -> 464, i.e. 99,897,344 particles)."""
    return int(round(particles ** (1.0 / 3.0)))


@dataclass(frozen=True)
class CosmicWebConfig:
    """What to simulate and how to write it.

    Attributes
    ----------
    particles : int
        Requested number of particles N; the grid has n^3 particles with
        n = round(N^(1/3)) (see :attr:`num_particles`).
    snapshots : int
        Number of snapshots K, spaced uniformly in the scale factor a from
        ``redshift_start`` to z = 0 (uniform in a is uniform in growth during
        matter domination, so a viewer sees even steps).
    box_mpc_h : float
        Side of the periodic box, Mpc/h (comoving).
    seed : int
        Seed of the Gaussian random field (numpy PCG64). The same seed and grid
        give bit-identical files; a different grid size gives a different field.
    redshift_start : float or None
        Redshift of the first snapshot. None: 10 when K > 1, and z = 0 for a
        single snapshot (a single snapshot at z > 0 is a set of initial conditions).
    files_per_snapshot : int or None
        Files per snapshot; None splits only when a file would exceed
        ``max_file_bytes``.
    cosmology : Cosmology
    max_file_bytes : int
        Size above which a snapshot is split automatically, bytes.
    compress : bool
        Write the datasets gzip-compressed (lossless), as the sample data are.
    """

    particles: int
    snapshots: int = 1
    box_mpc_h: float = 100.0
    seed: int = 0
    redshift_start: float | None = None
    files_per_snapshot: int | None = None
    cosmology: Cosmology = field(default_factory=Cosmology)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    compress: bool = False

    def __post_init__(self):
        def bad(problem: str):
            raise ConfigError(SOURCE, problem)

        if not isinstance(self.particles, (int, np.integer)) or self.particles < 4:
            bad(f"particles must be an integer >= 4 (the smallest that rounds to a 2^3 grid), got {self.particles!r}")
        if not isinstance(self.snapshots, (int, np.integer)) or not 1 <= self.snapshots <= 10000:
            bad(f"snapshots must be an integer in 1..10000, got {self.snapshots!r}")
        if not (math.isfinite(self.box_mpc_h) and self.box_mpc_h > 0):
            bad(f"box must be a positive number of Mpc/h, got {self.box_mpc_h!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.redshift_start is not None:
            if not (math.isfinite(self.redshift_start) and 0 <= self.redshift_start <= 1e4):
                bad(f"redshift-start must be in [0, 10000], got {self.redshift_start!r}")
            if self.snapshots > 1 and self.redshift_start <= 0:
                bad(f"with {self.snapshots} snapshots, redshift-start must be > 0 (the last one is at z = 0)")
        if self.files_per_snapshot is not None:
            if not isinstance(self.files_per_snapshot, (int, np.integer)) or self.files_per_snapshot < 1:
                bad(f"files-per-snapshot must be an integer >= 1, got {self.files_per_snapshot!r}")
            if self.files_per_snapshot > self.num_particles:
                bad(f"files-per-snapshot ({self.files_per_snapshot}) exceeds the particle count ({self.num_particles})")
        if self.max_file_bytes < 1:
            bad("max_file_bytes must be >= 1")

    @property
    def grid_size(self) -> int:
        """Particles per side, n = round(N^(1/3))."""
        return grid_size_for(self.particles)

    @property
    def num_particles(self) -> int:
        """The actual particle count, n^3."""
        return self.grid_size**3

    @property
    def redshifts(self) -> tuple[float, ...]:
        """Redshift of each snapshot, first (highest) to last (z = 0 when K > 1)."""
        return tuple(float(1.0 / a - 1.0) for a in self.scale_factors)

    @property
    def scale_factors(self) -> tuple[float, ...]:
        """Scale factor of each snapshot, uniform in a."""
        if self.snapshots == 1:
            z = 0.0 if self.redshift_start is None else self.redshift_start
            return (1.0 / (1.0 + z),)
        z0 = DEFAULT_REDSHIFT_START if self.redshift_start is None else self.redshift_start
        a = np.linspace(1.0 / (1.0 + z0), 1.0, self.snapshots)
        a[-1] = 1.0
        return tuple(float(x) for x in a)

    @property
    def num_files(self) -> int:
        """Files per snapshot (given, or the fewest that keep each under ``max_file_bytes``)."""
        if self.files_per_snapshot is not None:
            return self.files_per_snapshot
        counts = [0] * 6
        counts[DM_TYPE] = self.num_particles
        return files_needed(counts, FIELDS, self.max_file_bytes)


def _wavenumbers(n: int, box_mpc_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Wavenumbers (h/Mpc) along a full axis and along the last (halved, rfft) axis."""
    full = 2.0 * math.pi / box_mpc_h * np.fft.fftfreq(n, d=1.0 / n)
    half = 2.0 * math.pi / box_mpc_h * np.arange(n // 2 + 1, dtype=float)
    return full, half


def _plane_k2(i: int, full: np.ndarray, half: np.ndarray) -> np.ndarray:
    """|k|^2 on plane i of the rfft grid, float64, shape (n, n//2 + 1)."""
    return full[i] ** 2 + full[:, None] ** 2 + half[None, :] ** 2


def _zero_nyquist(modes: np.ndarray) -> None:
    """Zero the Nyquist planes of an rfft grid (even n): i k psi is not Hermitian there."""
    n = modes.shape[0]
    if n % 2 == 0:
        modes[n // 2] = 0
        modes[:, n // 2] = 0
        modes[:, :, -1] = 0


def linear_density_modes(n: int, box_mpc_h: float, seed: int, cosmo: Cosmology, workers: int = -1) -> np.ndarray:
    """Fourier modes of a Gaussian random density field at z = 0, on an n^3 grid.

    Unit white noise is drawn in real space (so a seed means the same field
    whatever the FFT library) and coloured by sqrt(P(k) n^3 / L^3), which
    makes the modes' variance n^6 P(k) / L^3: the unnormalised DFT convention
    of numpy, i.e. P(k) = <|delta_k|^2> L^3 / n^6. The k = 0 and Nyquist modes are zero.

    Parameters
    ----------
    n : int
        Grid points per side.
    box_mpc_h : float
        Box side, Mpc/h.
    seed : int
    cosmo : Cosmology
    workers : int
        Threads for the FFT (-1: all); the result does not depend on it.

    Returns
    -------
    ndarray
        complex64, shape (n, n, n//2 + 1): ``scipy.fft.rfftn`` of delta(x).
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, n, n), dtype=np.float32)
    modes = scipy.fft.rfftn(noise, workers=workers, overwrite_x=True)
    del noise
    full, half = _wavenumbers(n, box_mpc_h)
    amplitude = power_spectrum_amplitude(cosmo)
    scale = n**3 / box_mpc_h**3
    # Plane by plane: a full float64 |k| grid would be 8 n^3 bytes (0.8 GB at n = 464) per temporary.
    for i in range(n):
        k = np.sqrt(_plane_k2(i, full, half))
        colour = np.sqrt(linear_power(k, cosmo, amplitude) * scale)
        modes[i] *= colour.astype(np.float32)
    modes[0, 0, 0] = 0
    _zero_nyquist(modes)
    return modes


def zeldovich_displacement(
    n: int, box_mpc_h: float, seed: int, cosmo: Cosmology, workers: int = -1, on_step=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The linear displacement field psi(q) at z = 0 (D = 1) on the n^3 particle grid.

    psi_k = i k / k^2 delta_k, so that delta = -div psi; each component is
    transformed back on its own to keep the memory at one complex work array.

    Parameters
    ----------
    n, box_mpc_h, seed, cosmo, workers
        As for :func:`linear_density_modes`.
    on_step : callable, optional
        Called with no argument after each of the four FFT stages (progress).

    Returns
    -------
    tuple of 3 ndarray
        psi_x, psi_y, psi_z, float32, shape (n, n, n), Mpc/h; element [i, j, k]
        belongs to the particle at q = (i, j, k) L / n.
    """
    step = on_step or (lambda: None)
    modes = linear_density_modes(n, box_mpc_h, seed, cosmo, workers)
    step()
    full, half = _wavenumbers(n, box_mpc_h)
    work = np.empty_like(modes)
    components = []
    for axis in range(3):
        for i in range(n):
            k2 = _plane_k2(i, full, half)
            inv_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
            k_axis = (full[i], full[:, None], half[None, :])[axis]
            work[i] = modes[i] * (1j * k_axis * inv_k2).astype(np.complex64)
        components.append(scipy.fft.irfftn(work, s=(n, n, n), workers=workers, overwrite_x=True))
        step()
    del modes, work
    return components[0], components[1], components[2]


def velocity_factor(a: float, cosmo: Cosmology) -> float:
    """Gadget velocity per unit displacement field: sqrt(a) H(a) f(a) D(a), (km/s) per (Mpc/h).

    The comoving velocity of the Zel'dovich solution is dx/dt = dD/dt psi =
    H f D psi; Gadget stores sqrt(a) dx/dt.
    """
    d = float(growth_factor(a, cosmo))
    f = float(growth_rate(a, cosmo))
    return math.sqrt(a) * H0_KM_S_PER_MPC_H * float(hubble_e(a, cosmo)) * f * d


def particle_slab(
    psi: tuple[np.ndarray, np.ndarray, np.ndarray],
    planes: tuple[int, int],
    growth: float,
    vel_factor: float,
    box_mpc_h: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, velocities and ids of the particles of grid planes ``planes[0] .. planes[1] - 1``.

    Parameters
    ----------
    psi : tuple of 3 ndarray
        From :func:`zeldovich_displacement`, Mpc/h.
    planes : (int, int)
        First and one-past-last grid plane along the first axis.
    growth : float
        D(a).
    vel_factor : float
        From :func:`velocity_factor`, (km/s) per (Mpc/h).
    box_mpc_h : float

    Returns
    -------
    positions : ndarray
        float32 (m, 3), comoving Mpc/h, wrapped into [0, L).
    velocities : ndarray
        float32 (m, 3), sqrt(a) dx/dt in km/s.
    ids : ndarray
        uint64 (m,), 1 + the grid index i n^2 + j n + k: the same particle has
        the same id in every snapshot.
    """
    i0, i1 = planes
    n = psi[0].shape[0]
    m = (i1 - i0) * n * n
    cell = box_mpc_h / n
    grid = (
        (np.arange(i0, i1) * cell)[:, None, None],
        (np.arange(n) * cell)[None, :, None],
        (np.arange(n) * cell)[None, None, :],
    )
    positions = np.empty((i1 - i0, n, n, 3), dtype=np.float32)
    velocities = np.empty((i1 - i0, n, n, 3), dtype=np.float32)
    for axis in range(3):
        disp = psi[axis][i0:i1]
        # float64 before the wrap: in float32 a position just below 0 would wrap to exactly L.
        x = np.mod(grid[axis] + growth * disp.astype(np.float64), box_mpc_h)
        positions[..., axis] = x
        velocities[..., axis] = disp * np.float32(vel_factor)
    positions[positions >= np.float32(box_mpc_h)] = 0.0  # float32 rounding up to L is position 0
    ids = np.arange(i0 * n * n + 1, i1 * n * n + 1, dtype=np.uint64)
    return positions.reshape(m, 3), velocities.reshape(m, 3), ids


def snapshot_header(config: CosmicWebConfig, a: float) -> SnapshotHeader:
    """The Gadget-4 header of the snapshot at scale factor ``a``."""
    cosmo = config.cosmology
    counts = [0] * 6
    counts[DM_TYPE] = config.num_particles
    masses = [0.0] * 6
    masses[DM_TYPE] = particle_mass_gadget(cosmo, config.box_mpc_h, config.num_particles)
    from lenghu import __version__

    return SnapshotHeader(
        num_part_total=tuple(counts),
        mass_table=tuple(masses),
        time=a,
        redshift=1.0 / a - 1.0,
        box_size=config.box_mpc_h,
        omega0=cosmo.omega_m,
        omega_lambda=cosmo.omega_lambda,
        omega_baryon=0.0,  # the particles carry all the matter; omega_b only shaped the spectrum
        hubble_param=cosmo.h,
        parameters=(
            ("GridSize", config.grid_size),
            ("Seed", int(config.seed)),
            ("Sigma8", cosmo.sigma8),
            ("PrimordialIndex", cosmo.n_s),
            ("OmegaBaryonTransfer", cosmo.omega_b),
            ("PowerSpectrumType", "Eisenstein & Hu 1998 no-wiggle transfer function"),
            ("GrowthFactor", float(growth_factor(a, cosmo))),
            ("TimeBegin", config.scale_factors[0]),
            ("Generator", f"lenghu {__version__} simulate cosmic-web (Zel'dovich approximation)"),
        ),
        config=(("IDS_64BIT", 1), ("NGENIC", config.grid_size)),
    )


def simulate_cosmic_web(config: CosmicWebConfig, out: str | Path, progress: bool = True) -> list[Path]:
    """Simulate the cosmic web and write one Gadget-4 snapshot per redshift.

    Parameters
    ----------
    config : CosmicWebConfig
    out : path
        Output folder; ``snapshot_NNN.hdf5`` (or ``snapdir_NNN/``) files appear
        in it, each only once complete. Existing files of the same name are replaced.
    progress : bool
        Show tqdm progress bars on stderr (only when stderr is a terminal).

    Returns
    -------
    list of Path
        Every file written, snapshot by snapshot.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    n = config.grid_size
    cosmo = config.cosmology
    disable = None if progress else True  # None: tqdm turns itself off when stderr is not a tty
    with tqdm(total=4, desc="Gaussian field", unit="FFT", file=sys.stderr, disable=disable) as bar:
        psi = zeldovich_displacement(n, config.box_mpc_h, config.seed, cosmo, on_step=lambda: bar.update(1))
    planes_per_slab = max(1, SLAB_PARTICLES // (n * n))
    written: list[Path] = []
    total = config.num_particles * config.snapshots
    with tqdm(total=total, desc="particles", unit="", unit_scale=True, file=sys.stderr, disable=disable) as bar:
        for number, a in enumerate(config.scale_factors):
            growth = float(growth_factor(a, cosmo))
            vel = velocity_factor(a, cosmo)
            with open_snapshot(out, number, snapshot_header(config, a), FIELDS, config.num_files,
                               compress=config.compress) as snap:
                for i0 in range(0, n, planes_per_slab):
                    i1 = min(n, i0 + planes_per_slab)
                    positions, velocities, ids = particle_slab(psi, (i0, i1), growth, vel, config.box_mpc_h)
                    start = i0 * n * n
                    snap.write(DM_TYPE, COORDINATES.name, start, positions)
                    snap.write(DM_TYPE, VELOCITIES.name, start, velocities)
                    snap.write(DM_TYPE, PARTICLE_IDS.name, start, ids)
                    bar.update(ids.size)
            written.extend(snapshot_paths(out, number, config.num_files))
    return written
