"""The CPU supply readers: /proc/stat, cgroup counters, PSI, per-process CPU, and a real neighbour."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tracelens.capture.machine import cpu_supply as cs

PROC_STAT = """cpu  300 0 100 500 10 0 0 0 0 0
cpu0 100 0 50 250 5 0 0 0 0 0
cpu1 200 0 50 250 5 0 0 0 0 0
cpu2 1 0 1 900 0 0 0 7 0 0
intr 1 2 3
"""


def test_busy_time_counts_only_the_cpus_asked_for_and_includes_steal() -> None:
    tick = cs._TICK_NS
    assert cs.cpus_busy_ns(None, PROC_STAT) == (3, (150 + 250 + 9) * tick)
    assert cs.cpus_busy_ns({1}, PROC_STAT) == (1, 250 * tick)
    assert cs.cpus_busy_ns({2}, PROC_STAT) == (1, 9 * tick)  # 7 ticks of steal are busy
    assert cs.cpus_busy_ns({9}, PROC_STAT) is None


def test_pressure_reads_the_some_total() -> None:
    text = "some avg10=1.95 avg60=1.65 avg300=1.06 total=5585287\nfull avg10=0.00 total=0\n"
    assert cs.pressure_some_us(text) == 5585287
    assert cs.pressure_some_us("") is None


def test_cgroup_v2_counters_are_read_from_the_process_cgroup(tmp_path: Path) -> None:
    node = tmp_path / "job.slice"
    node.mkdir()
    (node / "cpu.stat").write_text("usage_usec 2000\nuser_usec 1500\nsystem_usec 500\n"
                                   "nr_periods 10\nnr_throttled 4\nthrottled_usec 300\n")
    assert cs.cgroup_counters(tmp_path, "0::/job.slice\n") == (2_000_000, 300_000, 10, 4)


def test_cgroup_v1_counters_come_from_cpuacct_and_cpu(tmp_path: Path) -> None:
    (tmp_path / "cpuacct").mkdir()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpuacct" / "cpuacct.usage").write_text("123456\n")
    (tmp_path / "cpu" / "cpu.stat").write_text("nr_periods 7\nnr_throttled 2\nthrottled_time 99\n")
    assert cs.cgroup_counters(tmp_path, "1:cpu:/\n") == (123456, 99, 7, 2)


def test_interval_gives_cores_outside_the_job_never_negative() -> None:
    a = cs.SupplySample(0, 2, 1_000_000_000, 0, 0, 0, 0, 0)
    b = cs.SupplySample(2_000_000_000, 2, 4_000_000_000, 1_000_000_000, 500_000_000, 20, 5, 1_000_000)
    iv = cs.interval(a, b, job_cpu_ns=1_000_000_000)
    assert iv is not None
    assert iv.busy_cores == pytest.approx(1.5)
    assert iv.job_cores == pytest.approx(0.5)
    assert iv.other_cores == pytest.approx(1.0)
    assert iv.cgroup_cores == pytest.approx(0.5)
    assert iv.throttled_fraction == pytest.approx(0.25)
    assert iv.pressure_fraction == pytest.approx(0.5)
    assert cs.interval(a, b, job_cpu_ns=9e9).other_cores == 0.0  # type: ignore[union-attr]
    assert cs.interval(b, a, job_cpu_ns=0) is None


def test_process_cpu_parses_names_with_spaces_and_parentheses() -> None:
    fields = " ".join(["S"] + ["0"] * 10 + ["30", "20"] + ["0"] * 30)
    assert cs.process_cpu(f"42 (my (odd) name) {fields}") == ("my (odd) name", 50 * cs._TICK_NS)
    assert cs.process_cpu("garbage") is None


def test_busiest_others_excludes_the_job_and_ranks_by_cores() -> None:
    s = 1_000_000_000
    before = {1: ("init", 0), 10: ("hog", 1 * s), 11: ("train", 0), 12: ("recycled", 5 * s)}
    after = {1: ("init", 0), 10: ("hog", 3 * s), 11: ("train", 2 * s), 12: ("other", 1 * s), 13: ("new", s)}
    rows = cs.busiest_others(before, after, job_pids={11}, wall_s=2.0)
    assert [(r.pid, r.name, r.cores) for r in rows] == [(10, "hog", 1.0), (12, "other", 0.5), (13, "new", 0.5)]


def test_a_real_cpu_bound_neighbour_shows_as_cpu_outside_the_job() -> None:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        a, before = cs.sample(), cs.processes_cpu()
        time.sleep(1.0)
        b, after = cs.sample(), cs.processes_cpu()
    finally:
        hog.kill()
        hog.wait()
    iv = cs.interval(a, b, job_cpu_ns=0.0)
    assert iv is not None and iv.other_cores is not None
    assert iv.other_cores >= 0.5
    others = cs.busiest_others(before, after, job_pids=(), wall_s=iv.wall_s)
    assert hog.pid in [r.pid for r in others]
    assert next(r for r in others if r.pid == hog.pid).cores >= 0.5


def test_descendants_include_the_children_of_this_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        import os
        assert {os.getpid(), child.pid} <= cs.descendants(os.getpid())
    finally:
        child.kill()
        child.wait()


def test_a_process_that_renames_itself_is_not_counted_from_zero() -> None:
    # GIVEN a kernel worker that took another name between the scans, and a reused pid
    first = {7: cs.ProcessRow("kworker/0:1-a", 2, 5_000, 100), 8: cs.ProcessRow("old", 1, 9_000, 50)}
    last = {7: cs.ProcessRow("kworker/0:1-b", 2, 6_000, 100), 8: cs.ProcessRow("new", 1, 1_000, 900)}
    before, after = cs.cpu_between(first, last)
    rows = cs.busiest_others(before, after, job_pids=(), wall_s=1e-6, min_cores=0.0)
    # THEN the renamed worker used 1 µs, the new process on the reused pid all of its 1 µs
    assert {(r.pid, round(r.cores, 3)) for r in rows} == {(7, 1.0), (8, 1.0)}
