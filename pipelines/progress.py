"""Waiting for a stage's futures with a terminal progress bar."""

from __future__ import annotations

import errno
import sys
from typing import Any, Sequence


def wait_all(futures: Sequence, label: str, show: bool = True) -> tuple[list[Any], dict[str, str]]:
    """Wait for every future; return results (None for failures) and errors by future key.

    A task that raised is not re-raised: its error text (type and message,
    which for lenghu's typed errors names the file) is returned so the stage
    can record it and go on with the others. Except a full disk
    (:func:`is_disk_full`), which is raised: the run stops there.
    """
    from distributed import as_completed
    from tqdm import tqdm

    errors: dict[str, str] = {}
    bar = tqdm(total=len(futures), desc=label, unit="task", file=sys.stderr,
               disable=not show or not futures, leave=True, dynamic_ncols=True)
    with bar:
        for future in as_completed(futures):
            if future.status == "error":
                exc = future.exception()
                if is_disk_full(exc):
                    raise exc  # the run's problem, not this input's: every later write would fail too
                errors[future.key] = f"{type(exc).__name__}: {exc}"
            bar.update(1)
    results = []
    for future in futures:
        if future.key in errors:
            results.append(None)
            continue
        try:
            results.append(future.result())
        except Exception as exc:  # noqa: BLE001 - recorded: a result lost with its worker was recomputed and failed
            errors[future.key] = f"{type(exc).__name__}: {exc}"
            results.append(None)
    return results, errors


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
