"""Shared fixtures: the real-data folder and the fitsverify checker."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Records fault, fuzzing and security cases for docs/reliability.md (see tests/faults/reliability.py).
pytest_plugins = ("tests.faults.reliability",)

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("LENGHU_REAL_DATA", REPO.parent / "shared" / "real_data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/real_data``; tests that need it skip only where it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} is absent (set LENGHU_REAL_DATA)")
    return REAL_DATA


def fitsverify_errors(path: str | Path) -> tuple[int, str]:
    """Run ``fitsverify`` on ``path``; return (number of errors, full report)."""
    exe = shutil.which("fitsverify")
    if exe is None:
        raise RuntimeError("fitsverify is not installed: run `make setup` (it installs it with apt)")
    proc = subprocess.run([exe, "-e", str(path)], capture_output=True, text=True, timeout=120)
    report = proc.stdout + proc.stderr
    errors = 0
    for line in report.splitlines():
        # Summary line: "**** Verification found 0 warning(s) and 0 error(s). ****"
        if "Verification found" in line and "error(s)" in line:
            errors += int(line.split("and")[1].split("error")[0])
    if "Verification found" not in report:
        errors = max(errors, 1)
    return errors, report


@pytest.fixture(scope="session")
def fitsverify():
    """The :func:`fitsverify_errors` checker."""
    return fitsverify_errors
