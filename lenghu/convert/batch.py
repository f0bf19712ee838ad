"""Convert many files at once: in parallel on Dask's threads, with a progress bar, bad files reported.

Each input is one task; a file that fails is recorded with its error and the
others go on (a batch must not stop at the first broken file of a night).
Conversions inside a task may run their own dask computations (Zarr writes);
dask's threaded scheduler gives each worker thread its own pool for those.
"""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass, field
from pathlib import Path

from lenghu.convert.api import ConversionResult, ConvertOptions, convert
from lenghu.convert.formats import output_name

TASK_PREFIX = "lenghu-convert-file"


@dataclass(frozen=True)
class Failure:
    """One input that could not be converted, and why."""

    source: Path
    error: str


@dataclass(frozen=True)
class BatchReport:
    """What :func:`convert_many` did."""

    converted: tuple[ConversionResult, ...] = field(default_factory=tuple)
    failed: tuple[Failure, ...] = field(default_factory=tuple)
    seconds: float = 0.0


def expand_inputs(pattern: str | Path) -> list[Path]:
    """The inputs a folder or glob names: a folder's entries (hidden ones excepted), or the glob's matches.

    A folder that is itself one input (a Zarr store, a ``snapdir``) is not
    expanded: give its parent or a glob.
    """
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if not p.name.startswith("."))
    return sorted(Path(p) for p in glob.glob(str(pattern)))


def is_batch(pattern: str | Path) -> bool:
    """True when the input names several files: a glob, or a folder that is not itself one input."""
    from lenghu.io.inspect import sniff

    text = str(pattern)
    if any(ch in text for ch in "*?["):
        return True
    path = Path(pattern)
    return path.is_dir() and sniff(path) == "folder"


def _one(source: Path, out_dir: Path, to: str, options: ConvertOptions) -> ConversionResult | Failure:
    try:
        return convert(source, out_dir / output_name(source, to), to, options)
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch; it is reported, not hidden
        return Failure(source, f"{type(exc).__name__}: {exc}")


def convert_many(
    sources: list[Path],
    out_dir: str | Path,
    to: str,
    options: ConvertOptions | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> BatchReport:
    """Convert ``sources`` into ``out_dir`` (named by :func:`output_name`), in parallel.

    Parameters
    ----------
    sources : list of Path
    out_dir : path
        Created if needed.
    to : str
        Output format.
    options : ConvertOptions, optional
    workers : int, optional
        Threads (default: dask's default, one per core).
    progress : bool
        A tqdm bar on stderr, advanced as each file finishes.
    """
    import sys

    import dask
    from dask.callbacks import Callback
    from tqdm.auto import tqdm

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    options = options or ConvertOptions()
    tasks = [
        dask.delayed(_one, pure=False)(s, out_dir, to, options, dask_key_name=f"{TASK_PREFIX}-{i}")
        for i, s in enumerate(sources)
    ]
    bar = tqdm(total=len(tasks), desc="convert", unit="file", file=sys.stderr, disable=None if progress else True)

    class _FileProgress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if isinstance(key, str) and key.startswith(TASK_PREFIX):
                bar.update(1)

    with bar, _FileProgress():
        results = dask.compute(*tasks, scheduler="threads", num_workers=workers)
    converted = tuple(r for r in results if isinstance(r, ConversionResult))
    failed = tuple(r for r in results if isinstance(r, Failure))
    return BatchReport(converted, failed, time.perf_counter() - start)
