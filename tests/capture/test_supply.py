"""The CPU supply over a telemetry window: the job is its process tree, other processes are the
rest, and run.json records both (older files without the record still load)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tracelens.capture.machine import supply
from tracelens.runjson import encode_run_info, read_run_info

REPO = Path(__file__).resolve().parents[2]
SPIN = "import time\nt = time.time()\nwhile time.time() - t < 30: pass"


def _us(t_ns: int | None) -> float | None:
    return None if t_ns is None else t_ns / 1000.0


def test_the_job_root_is_the_outermost_tracelens_else_the_launcher_else_this_process() -> None:
    me, parent = os.getpid(), os.getppid()
    assert supply.job_root({supply.JOB_ROOT_ENV: str(parent)}) == parent
    assert supply.job_root({supply.JOB_ROOT_ENV: "999999999"}) == me  # not a live process
    assert supply.job_root({"RANK": "1", "WORLD_SIZE": "2"}) == parent  # torchrun ... tracelens profile
    assert supply.job_root({}) == me
    assert supply.with_job_root({"A": "b"}) == {"A": "b", supply.JOB_ROOT_ENV: str(me)}


def test_a_neighbour_is_other_cpu_and_a_child_of_the_job_is_the_job() -> None:
    # GIVEN a CPU-bound neighbour (not below this process) and a CPU-bound child of this process
    # (the neighbour is started through a shell that exits at once: it is nobody's child here)
    out = subprocess.run(["sh", "-c", f"'{sys.executable}' -c '{SPIN}' >/dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True)
    hog = int(out.stdout.strip())
    child = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(0.3)
        rec = supply.SupplyRecorder(os.getpid(), None)
        rec.begin()
        for _ in range(6):  # the telemetry's own processes: this one only
            rec.tick({os.getpid(): time.process_time_ns()})
            time.sleep(0.2)
        rec.end()
    finally:
        os.kill(hog, 9)
        child.kill()
        child.wait()
    s = rec.to_struct(_us)
    # THEN the neighbour's core is other, the child's is the job's, and the neighbour is named
    assert s is not None and s.other_cpu_cores is not None and s.job_cpu_cores is not None
    assert child.pid in rec.job and hog not in rec.job
    assert s.other_cpu_cores >= 0.25 and s.job_cpu_cores >= 0.25  # 2 spinning processes, shared cores
    assert hog in [o.pid for o in s.top_other_processes]
    assert child.pid not in [o.pid for o in s.top_other_processes]
    assert s.cores_left is not None and s.cpus is not None and s.cores_left <= s.cpus
    # AND every sample has its interval's columns, the first none
    cols = s.samples
    assert len(cols.t_us) == len(cols.other_cpu_cores) == len(cols.cores_left) == 6
    assert cols.other_cpu_cores[0] is None and all(v is not None for v in cols.other_cpu_cores[1:])


def test_cores_left_are_capped_by_the_quota_minus_the_cgroups_other_processes() -> None:
    from tracelens.capture.machine.cpu_supply import SupplyInterval

    rec = supply.SupplyRecorder(os.getpid(), quota_cores=1.5)
    iv = SupplyInterval(wall_s=1.0, cpus=4, busy_cores=2.0, job_cores=0.5, other_cores=1.5,
                        cgroup_cores=1.0, throttled_fraction=0.0, pressure_fraction=0.0)
    # 4 CPUs − 1.5 other = 2.5, but the quota of 1.5 less the 0.5 its cgroup's others used = 1.0
    assert rec.cores_left(iv) == 1.0


def test_run_json_records_the_supply_and_older_files_load_without_it(tmp_path: Path) -> None:
    old = read_run_info(REPO / "sample_traces" / "latency_bound_reads")
    assert old.telemetry is not None and old.telemetry.supply is None
    rec = supply.SupplyRecorder(os.getpid(), None)
    rec.begin()
    for _ in range(3):
        rec.tick({os.getpid(): time.process_time_ns()})
        time.sleep(0.05)
    rec.end()
    import msgspec

    new = msgspec.structs.replace(old, telemetry=msgspec.structs.replace(old.telemetry, supply=rec.to_struct(_us)))
    (tmp_path / "run.json").write_bytes(encode_run_info(new))
    back = read_run_info(tmp_path)
    assert back.telemetry is not None and back.telemetry.supply is not None
    assert back.telemetry.supply.job_root_pid == os.getpid() and back.telemetry.supply.job_processes >= 1
