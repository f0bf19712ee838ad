"""What every fuzzer asserts about one input: only lenghu's typed errors, no hang, bounded memory."""

from __future__ import annotations

import contextlib
import resource
import signal

from lenghu.errors import LenghuError

#: Seconds one example may take before it counts as a hang.
TIMEOUT_S = 30
#: Address space an example may add to the process: a header claiming a 10^9 x 10^9 image must be
#: refused, not allocated; real reads of these small files need far less.
HEADROOM_BYTES = 2 << 30


class Hang(Exception):
    """An example ran past :data:`TIMEOUT_S`."""


def _address_space() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def bounded(timeout_s: int = TIMEOUT_S, headroom: int = HEADROOM_BYTES):
    """Run the block with an alarm and an address-space limit; restore both after.

    A hang raises :class:`Hang`; an allocation beyond the headroom raises
    MemoryError. Neither is a LenghuError, so :func:`only_typed_errors` reports them.
    """
    def on_alarm(signum, frame):
        raise Hang(f"no result after {timeout_s} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + headroom
    previous = signal.signal(signal.SIGALRM, on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    signal.alarm(timeout_s)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def only_typed_errors(call, *args, **kwargs):
    """Call ``call`` within :func:`bounded`; return its result or the LenghuError it raised.

    Anything else (a crash, a hang, an unbounded allocation) propagates and fails the test.
    """
    with bounded():
        try:
            return call(*args, **kwargs)
        except LenghuError as exc:
            assert str(exc), "a typed error without a message"
            return exc
