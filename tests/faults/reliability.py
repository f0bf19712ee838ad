"""pytest plugin: record every fault-injection, fuzzing and security case for docs/reliability.md.

Registered by ``tests/conftest.py`` (``pytest_plugins``), so it is active in
every test process (xdist workers and controller alike). A case is a test
marked ``@pytest.mark.reliability(kind=..., case=..., promise=...)``, or one of
the older fault tests in ``tests/pipelines`` listed in :data:`EXISTING` by node
id. For each case the plugin records the test's outcome, its duration, the
number of hypothesis examples it ran (tests count them with :func:`counted`)
and what the test itself reported through ``record_property`` (``observed``,
``data_lost``, ``method``). The controller merges them into
``build/reliability.json`` (``LENGHU_RELIABILITY_JSON`` overrides) at the end
of the session: a case run again replaces its old record (with the time it was
recorded), so a partial run updates only its own cases; cases whose test file
is gone are dropped. ``tools/reliability_table.py`` renders the table from it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import pytest

RECORD_KEY = "lenghu_reliability"
#: Properties a test may record with ``record_property`` that go into the table.
REPORTED = ("observed", "data_lost", "method")
DEFAULT_JSON = Path(__file__).resolve().parents[2] / "build" / "reliability.json"

_counts: Counter[str] = Counter()
_current: list[str | None] = [None]
_records: list[dict] = []
_config: list[pytest.Config] = []

_PIPELINES = "tests/pipelines/"
#: Fault cases written before tests/faults existed (issue 3); recorded by node id, not moved.
EXISTING: dict[str, dict[str, str]] = {
    _PIPELINES + "test_reduce_faults.py::test_a_killed_worker_is_survived_with_identical_products": dict(
        kind="fault", case="SIGKILL of a dask worker after the first master was written (external scheduler)",
        promise="run finishes; products bit-identical to an undisturbed run"),
    _PIPELINES + "test_reduce_faults.py::test_a_killed_driver_leaves_only_whole_files_and_the_rerun_completes": dict(
        kind="fault", case="SIGKILL of the driver during signature removal, then a rerun",
        promise="cluster processes exit; only whole, checksummed files; rerun skips the masters and "
                "gives bit-identical products"),
    _PIPELINES + "test_reduce_faults.py::test_a_changed_raw_file_has_its_products_redone": dict(
        kind="fault", case="a raw science file replaced between two runs",
        promise="exactly its products are redone; registry holds the new checksum"),
    _PIPELINES + "test_reduce_faults.py::test_a_second_run_on_a_busy_output_folder_is_refused": dict(
        kind="fault", case="a run started on an output folder whose lock is held",
        promise="refused with exit 1 and a message naming the holder; folder untouched"),
    _PIPELINES + "test_reduce_faults.py::test_a_rerun_skips_everything_and_force_redoes_it_identically": dict(
        kind="fault", case="a rerun of a finished night, then --force",
        promise="nothing rewritten; --force rewrites every product with identical data"),
    _PIPELINES + "test_reduce_bad_input.py::test_bad_frames_are_recorded_and_good_ones_reduced": dict(
        kind="fault", case="truncated, empty, garbage, wrong-shape and all-NaN raw files in a night",
        promise="good frames reduced; each bad one recorded with a typed reason naming it; raw unchanged"),
}


def counted(test):
    """Count the calls of a hypothesis test body (one per example) for the reliability table.

    Put it under ``@given``: ``@given(...)`` then ``@counted`` then ``def test...``.
    """

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        if _current[0] is not None:
            _counts[_current[0]] += 1
        return test(*args, **kwargs)

    return wrapper


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(kind, case, promise): a case of docs/reliability.md "
                                       "(kind: fault, fuzz or security)")
    _config[:] = [config]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _current[0] = item.nodeid
    try:
        yield
    finally:
        _current[0] = None


def _case_of(item) -> dict[str, str] | None:
    marker = item.get_closest_marker("reliability")
    if marker is not None:
        return {k: str(v) for k, v in marker.kwargs.items()}
    return EXISTING.get(item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    case = _case_of(item)
    if case is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        info = dict(case, examples=_counts.get(item.nodeid, 0))
        report.user_properties.append((RECORD_KEY, info))


def _is_controller() -> bool:
    return bool(_config) and not hasattr(_config[0], "workerinput")


def pytest_runtest_logreport(report) -> None:
    if not _is_controller():
        return
    props = dict((k, v) for k, v in report.user_properties)
    case = props.get(RECORD_KEY)
    if case is None:
        return
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    else:
        outcome = report.outcome
    record = dict(case, test=report.nodeid, outcome=outcome, seconds=round(report.duration, 2))
    for key in REPORTED:
        if key in props:
            record[key] = props[key]
    if outcome == "failed":
        record["failure"] = str(report.longrepr).strip().splitlines()[-1][:300] if report.longrepr else ""
    elif outcome in ("xfailed", "xpassed"):
        record["failure"] = str(report.wasxfail)[:400]
    _records.append(record)


def _previous(path: Path) -> list[dict]:
    """Cases recorded by earlier sessions whose test file still exists (a partial run updates only its own)."""
    try:
        cases = json.loads(path.read_text())["cases"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    root = Path(__file__).resolve().parents[2]
    return [c for c in cases if isinstance(c, dict) and (root / c.get("test", "").split("::")[0]).is_file()]


def pytest_sessionfinish(session, exitstatus) -> None:
    if not _is_controller() or not _records:
        return
    path = Path(os.environ.get("LENGHU_RELIABILITY_JSON", DEFAULT_JSON))
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    cases = {c["test"]: c for c in _previous(path)}
    cases.update({r["test"]: dict(r, recorded=now) for r in _records})
    document = {
        "finished": now,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "hypothesis_profile": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
        "this_session": len(_records),
        "cases": sorted(cases.values(), key=lambda r: (r["kind"], r["test"])),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(document, indent=1))
    os.replace(tmp, path)
