"""``lenghu simulate cosmic-web``: a Zel'dovich-approximation cosmic web as Gadget-4 HDF5 snapshots."""

from __future__ import annotations

import argparse

EPILOG = """\
The particle count is rounded to a cube: n^3 particles with n = round(N^(1/3)),
e.g. --particles 100000000 gives 464^3 = 99,897,344 particles. The actual count
is printed. Memory needed: about 24 bytes per particle (2.5 GB for 10^8).
A snapshot over 1 GiB is split into several files (snapdir_NNN/) unless
--files-per-snapshot is given. The same seed gives bit-identical files.

examples:
  lenghu simulate cosmic-web web/ --particles 1000000
  lenghu simulate cosmic-web web/ --particles 1e8 --snapshots 20 --redshift-start 10 --files-per-snapshot 2
  lenghu simulate cosmic-web ics/ --particles 262144 --box 50 --redshift-start 49   (initial conditions)
"""


def _count(text: str) -> int:
    """An integer count that may be written 1e8 or 100_000_000."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def add_parser(kinds_subparsers) -> argparse.ArgumentParser:
    parser = kinds_subparsers.add_parser(
        "cosmic-web",
        help="a cosmic web by the Zel'dovich approximation, written as Gadget-4 HDF5 snapshots",
        description=(
            "Displace a grid of dark-matter particles along a Gaussian random field with an LCDM "
            "linear power spectrum (Eisenstein & Hu no-wiggle, sigma8 0.81, Omega_m 0.3, h 0.7) "
            "by the Zel'dovich approximation, and write Gadget-4 HDF5 snapshots from "
            "--redshift-start to z = 0 (positions in Mpc/h, velocities sqrt(a) dx/dt in km/s)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("out", metavar="OUT", help="output folder (created; snapshots of the same name are replaced)")
    parser.add_argument(
        "--particles", "-n", type=_count, required=True, metavar="N",
        help="total number of particles, rounded to a cube n^3 with n = round(N^(1/3)) (1e6, 1e8 are accepted)",
    )
    parser.add_argument("--snapshots", type=int, default=1, metavar="K",
                        help="number of snapshots, uniform in scale factor from --redshift-start to z = 0 (default 1: z = 0 only)")
    parser.add_argument("--box", type=float, default=100.0, metavar="L", help="box side, comoving Mpc/h (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--redshift-start", type=float, default=None, metavar="Z",
                        help="redshift of the first snapshot (default 10 when K > 1; with K = 1 the one snapshot is at Z, default 0)")
    parser.add_argument("--files-per-snapshot", type=int, default=None, metavar="M",
                        help="split each snapshot into M files (default: split only above 1 GiB per file)")
    parser.add_argument("--compress", action="store_true",
                        help="gzip-compress the datasets losslessly (about 40%% smaller; slower to write)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    import time

    from lenghu.simulate.cosmic_web import CosmicWebConfig, simulate_cosmic_web

    config = CosmicWebConfig(
        particles=args.particles,
        snapshots=args.snapshots,
        box_mpc_h=args.box,
        seed=args.seed,
        redshift_start=args.redshift_start,
        files_per_snapshot=args.files_per_snapshot,
        compress=args.compress,
    )
    n = config.grid_size
    redshifts = ", ".join(f"{z:.3g}" for z in config.redshifts)
    print(
        f"cosmic web: {config.num_particles:,} particles ({n}^3; {args.particles:,} requested), "
        f"box {config.box_mpc_h:g} Mpc/h, seed {config.seed}, {config.snapshots} snapshot(s) at z = {redshifts}, "
        f"{config.num_files} file(s) per snapshot"
    )
    start = time.perf_counter()
    paths = simulate_cosmic_web(config, args.out, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    folders = sorted({str(p.parent) for p in paths})
    print(f"wrote {len(paths)} file(s) in {', '.join(folders)} in {elapsed:.1f} s")
    return 0
