"""The ``lenghu`` command: parses arguments, then hands over to the library.

Each subcommand lives in its own module under :mod:`lenghu.commands` with two
functions, ``add_parser(subparsers)`` and ``run(args) -> int``. Those modules
import only argparse at module level, so ``lenghu --help`` is instant and works
without Dask or a GL library; the heavy parts are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import threading

from lenghu import __version__

# Subcommand modules, in the order --help lists them.
COMMAND_MODULES = (
    "lenghu.commands.reduce",
    "lenghu.commands.measure",
    "lenghu.commands.registry",
    "lenghu.commands.simulate",
    "lenghu.commands.instruments",
    "lenghu.commands.info",
    "lenghu.commands.convert",
    "lenghu.commands.samp",
    "lenghu.commands.demo",
    "lenghu.commands.render",
    "lenghu.commands.view",
    "lenghu.commands.kiosk",
)

DESCRIPTION = """\
lenghu: pipelines, conversion and a viewer for the Lenghu observatory
(Saishiteng mountain, Qinghai; WFST 2.5 m) and for large simulations.

Run `lenghu COMMAND --help` for each command's options and examples."""

EXIT_CODES = """\
exit status:
  0  success
  1  the command failed (the message says why)
  2  bad command line
  3  the run finished but some inputs failed (they are listed with reasons)
"""


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands registered)."""
    parser = argparse.ArgumentParser(
        prog="lenghu",
        description=DESCRIPTION,
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lenghu {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def _quiet_dask(record: logging.LogRecord) -> bool:
    """Drop Dask's and its web servers' records below WARNING."""
    return record.levelno >= logging.WARNING or not record.name.startswith(("distributed", "bokeh", "tornado"))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lenghu`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:  # Dask's own INFO chatter only with -vv (Dask resets its loggers' levels)
        for handler in logging.getLogger().handlers:
            handler.addFilter(_quiet_dask)
    from lenghu.errors import LenghuError

    try:
        return int(args._run(args) or 0)
    except LenghuError as exc:
        print(f"lenghu {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"lenghu {args.command}: interrupted", file=sys.stderr)
        return 130


def console(argv: list[str] | None = None) -> None:
    """Entry point of the ``lenghu`` console script and of ``python -m lenghu``: :func:`main`, then
    :func:`exit_without_teardown` with its status."""
    exit_without_teardown(main(argv))


def exit_without_teardown(status: int) -> None:
    """End the process with ``status`` once exit handlers have run and the streams are flushed, skipping
    the interpreter's teardown.

    Freeing every module and object of a run (astropy, Dask, numba) takes 0.3 s on the 2-core machine of
    BENCHMARKS.md, 5% of making a bias and a flat master. Nothing is lost: products are whole and
    closed when :func:`main` returns, and the ``atexit`` handlers (coverage's too) run here. Where a
    thread other than the main one is still running, it exits normally instead (it would be joined).
    """
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(status)
    logging.shutdown()
    atexit._run_exitfuncs()  # what a normal exit runs first; not exported by the module, stable since 2.x
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (lenghu ... | head) or stream: nothing left to say
            status = status or 1
    os._exit(status)


if __name__ == "__main__":  # pragma: no cover
    console()
