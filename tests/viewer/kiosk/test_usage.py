"""The anonymous usage log: counts per scene per hour, kept across restarts, nothing personal (no GL)."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from lenghu.viewer.app.kiosk.usage import COLUMNS, UsageLog


class FakeClock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


def test_counts_per_scene_per_hour_and_merges_after_a_restart(tmp_path):
    t0 = dt.datetime(2026, 7, 1, 10, 59, 0).timestamp()
    clock = FakeClock(t0)
    path = tmp_path / "usage.csv"
    log = UsageLog(path, flush_seconds=3600, clock=clock)
    for _ in range(3):
        log.record("web", "drag")
    log.record("web", "tap")
    clock.t += 120  # 11:01
    log.record("web", "button")
    log.record("field", "zoom")
    log.close()
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert tuple(rows[0].keys()) == COLUMNS  # hour, scene, counts: no positions, no ids, no times finer than 1 h
    table = {(r["hour"], r["scene"]): r for r in rows}
    assert table[("2026-07-01T10:00", "web")]["drag"] == "3" and table[("2026-07-01T10:00", "web")]["total"] == "4"
    assert table[("2026-07-01T11:00", "web")]["button"] == "1"
    assert table[("2026-07-01T11:00", "field")]["zoom"] == "1"
    # a restarted kiosk adds to the same rows
    log2 = UsageLog(path, clock=clock)
    log2.record("web", "button")
    log2.close()
    rows = {(r["hour"], r["scene"]): r for r in csv.DictReader(open(path, encoding="utf-8"))}
    assert rows[("2026-07-01T11:00", "web")]["button"] == "2"


def test_flushes_periodically_and_rejects_unknown_kinds(tmp_path):
    clock = FakeClock(1e9)
    log = UsageLog(tmp_path / "u.csv", flush_seconds=60, clock=clock)
    log.record("a", "tap")
    assert not (tmp_path / "u.csv").exists()
    clock.t += 61
    log.record("a", "tap")
    assert (tmp_path / "u.csv").exists()
    with pytest.raises(ValueError):
        log.record("a", "face")


def test_a_damaged_log_is_set_aside(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("who,what\nx,y\n")
    log = UsageLog(path, clock=FakeClock(1e9))
    assert log.counts == {} and not path.exists() and list(tmp_path.glob("u.csv.damaged-*"))
