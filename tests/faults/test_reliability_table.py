"""tools/reliability_table.py renders what the plugin recorded, including failures and known bugs."""

from __future__ import annotations

import importlib.util
import json

from .helpers import REPO


def _tool():
    spec = importlib.util.spec_from_file_location("reliability_table", REPO / "tools" / "reliability_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCUMENT = {
    "finished": "2026-01-01 00:00:00 UTC", "machine": "x86_64, 2 cores", "hypothesis_profile": "ci",
    "cases": [
        {"kind": "fault", "case": "worker killed", "promise": "same products", "examples": 0, "test": "t::a",
         "outcome": "passed", "seconds": 3.0, "observed": "exit 0", "data_lost": 0},
        {"kind": "fault", "case": "disk | full", "promise": "clear error", "examples": 0, "test": "t::b",
         "outcome": "xfailed", "seconds": 1.0, "failure": "SIGBUS from memmaps"},
        {"kind": "fault", "case": "lost one", "promise": "same products", "examples": 0, "test": "t::c",
         "outcome": "failed", "seconds": 1.0, "data_lost": 2, "failure": "AssertionError: products lost"},
        {"kind": "fuzz", "case": "sections", "promise": "typed errors", "examples": 1234, "test": "t::d",
         "outcome": "passed", "seconds": 0.5},
        {"kind": "security", "case": "localhost", "promise": "loopback", "examples": 0, "test": "t::e",
         "outcome": "passed", "seconds": 0.1, "observed": "127.0.0.1"},
    ],
}


def test_the_table_counts_cases_examples_failures_and_data_lost(tmp_path):
    text = _tool().render(DOCUMENT)
    assert "| faults injected | 3 cases |" in text
    assert "| inputs fuzzed | 1 fuzzers, 1,234 generated inputs |" in text
    assert "| failed | 1 |" in text and "| known bugs (strict xfail, reported for fixing) | 1 |" in text
    assert "summed over the cases that measure it) | 2 |" in text  # the failed case's loss is not hidden
    assert "disk \\| full" in text  # table cells escaped
    assert "**known bug** (xfail)" in text and "SIGBUS from memmaps" in text
    assert "**FAILED**" in text and "AssertionError: products lost" in text


def test_the_tool_writes_the_page_from_a_json_file(tmp_path):
    source = tmp_path / "records.json"
    source.write_text(json.dumps(DOCUMENT))
    target = tmp_path / "reliability.md"
    assert _tool().main(["x", str(source), str(target)]) == 0
    assert target.read_text().startswith("# Reliability")
    assert not list(tmp_path.glob(".*tmp*"))


def test_earlier_cases_are_kept_unless_their_test_file_is_gone(tmp_path):
    from .reliability import _previous

    path = tmp_path / "records.json"
    path.write_text(json.dumps({"cases": [
        {"test": "tests/faults/test_killed.py::test_x", "kind": "fault"},
        {"test": "tests/faults/test_removed_long_ago.py::test_y", "kind": "fault"}]}))
    assert [c["test"] for c in _previous(path)] == ["tests/faults/test_killed.py::test_x"]
    path.write_text("{not json")
    assert _previous(path) == []
