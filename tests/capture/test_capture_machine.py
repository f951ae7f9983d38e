"""Machine facts without torch: cgroup quotas and the environment allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracelens.capture.machine import facts as machine


def test_cgroup_v2_takes_the_smallest_quota_on_the_path(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "a" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "a" / "b" / "cpu.max").write_text("400000 100000\n")
    assert machine._cgroup_v2_quota(tmp_path, "0::/a/b\n") == pytest.approx(1.5)
    assert machine._cgroup_v2_quota(tmp_path, "0::/\n") is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    d = tmp_path / "cpu,cpuacct"
    d.mkdir()
    (d / "cpu.cfs_quota_us").write_text("-1\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    assert machine._cgroup_v1_quota(tmp_path) is None
    (d / "cpu.cfs_quota_us").write_text("250000\n")
    assert machine._cgroup_v1_quota(tmp_path) == pytest.approx(2.5)


def test_only_allow_listed_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    facts = machine.env_facts()
    assert (
        facts["thread_env"] == {"OMP_NUM_THREADS": "3"} or "OMP_NUM_THREADS" in facts["thread_env"]
    )
    assert "hunter2" not in repr(facts)
    assert facts["local_world_size"] == 4


def test_core_facts_are_consistent() -> None:
    facts = machine.core_facts()
    assert facts["usable_cores"] >= 1
    assert facts["usable_cores"] <= (facts["logical_cores"] or facts["usable_cores"])
