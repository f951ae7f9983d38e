"""torchrun as the profiled command, and a rank's place in its job (fast: no training runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tracelens.capture.destination import JOB_PARENT_ENV, RankEnv, job_label, rank_env
from tracelens.capture.options import ProfileOptions
from tracelens.capture.parent.launch import launcher_args, plan_launch, rank_command
from tracelens.errors import UsageError


@pytest.mark.parametrize(
    ("target", "args", "module", "expected"),
    [
        ("torchrun", ("--nproc_per_node=2", "train.py"), False, ["--nproc_per_node=2", "train.py"]),
        ("/opt/venv/bin/torchrun", ("train.py",), False, ["train.py"]),
        ("torch.distributed.run", ("train.py", "--lr", "1"), True, ["train.py", "--lr", "1"]),
        ("python3", ("-m", "torch.distributed.run", "train.py"), False, ["train.py"]),
        (sys.executable, ("-m", "torch.distributed.run", "train.py"), False, ["train.py"]),
        ("train.py", ("--nproc_per_node=2",), False, None),
        ("python3", ("train.py",), False, None),
        ("mypkg.train", (), True, None),
    ],
)
def test_the_launcher_is_recognised_by_name_path_or_module(
    target: str, args: tuple[str, ...], module: bool, expected: list[str] | None
) -> None:
    assert launcher_args(target, args, module) == expected


def test_torchrun_arguments_split_into_its_options_and_the_script() -> None:
    torch = pytest.importorskip("torch")
    assert torch is not None
    plan = plan_launch(["--nproc-per-node", "2", "--standalone", "train.py", "--lr", "9", "-m", "x"])
    assert plan.launcher_opts == ("--nproc-per-node", "2", "--standalone")
    assert (plan.script, plan.script_args, plan.module) == ("train.py", ("--lr", "9", "-m", "x"), False)
    # -m and --no-python python [-m] X: tracelens' own --no-python replaces them
    plan = plan_launch(["--nproc_per_node=2", "-m", "pkg.train", "--lr", "1"])
    assert (plan.launcher_opts, plan.script, plan.module) == (("--nproc_per_node=2",), "pkg.train", True)
    plan = plan_launch(["--no-python", "python3", "train.py", "a"])
    assert (plan.launcher_opts, plan.script, plan.script_args) == ((), "train.py", ("a",))
    plan = plan_launch(["--no-python", "python", "-m", "pkg.train"])
    assert (plan.script, plan.module) == ("pkg.train", True)
    with pytest.raises(UsageError, match=r"runs \./a\.out, not Python"):
        plan_launch(["--no-python", "./a.out"])
    with pytest.raises(UsageError, match="the ranks already run `tracelens profile`"):
        plan_launch(["--no-python", "tracelens", "profile", "train.py"])
    with pytest.raises(UsageError, match=r"^torchrun: "):
        plan_launch(["--nnodes"])


def test_each_rank_runs_tracelens_profile_into_the_job_directory(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    assert torch is not None
    plan = plan_launch(["--nproc_per_node=2", "train.py", "--slow-ms", "3"])
    options = ProfileOptions(target="train.py", wait=2, active=8, no_report=True)
    cmd = rank_command(plan, options, tmp_path / "job")
    launcher = cmd.index("torch.distributed.run")
    tail = cmd[cmd.index("--no-python"):]
    assert cmd[launcher + 1] == "--nproc_per_node=2"
    assert tail[1] == sys.executable and tail[tail.index("-m") + 1:tail.index("-m") + 3] == ["tracelens", "profile"]
    assert {"--wait=2", "--active=8", "--no-report", f"--out={tmp_path / 'job'}"} <= set(tail)
    assert tail[-4:] == ["--", "train.py", "--slow-ms", "3"]


def test_a_rank_is_found_from_the_launcher_environment() -> None:
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "TORCHELASTIC_RUN_ID": "none"}
    assert rank_env(env) == RankEnv(rank=1, world_size=2, local_rank=1, run_id=None)
    assert rank_env({**env, "TORCHELASTIC_RUN_ID": "job-7"}) == RankEnv(1, 2, 1, "job-7")
    assert rank_env({"RANK": "0"}) is None
    assert rank_env({"RANK": "2", "WORLD_SIZE": "2"}) is None
    assert rank_env({"RANK": "x", "WORLD_SIZE": "2"}) is None
    # the default job directory: the rendezvous id (a uuid shortened), else the launcher process
    uuid = "3f1c2a9b-1111-2222-3333-444455556666"
    assert job_label(RankEnv(0, 2, 0, uuid)) == "3f1c2a9b"
    assert job_label(RankEnv(0, 2, 0, "my job/1")) == "my_job_1"
    label = job_label(RankEnv(0, 2, 0, None))
    assert label.endswith(f"-{__import__('os').getppid()}")
    assert JOB_PARENT_ENV == "TRACELENS_JOB_PARENT"


def test_options_survive_the_trip_to_the_recording_child() -> None:
    options = ProfileOptions(target="t.py", args=("--a", "1"), out=Path("o"), wait=3,
                             tensorboard_dir=Path("tb"), loader_overrides={"num_workers": 2})
    assert ProfileOptions.from_json(options.to_json()) == options


def test_the_nodes_of_one_rendezvous_are_one_job_and_a_single_node_is_none() -> None:
    pytest.importorskip("torch")
    common = ["--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d", "--rdzv_endpoint=host0:29500"]
    node0 = plan_launch([*common, "--node_rank=0", "train.py"]).job
    node1 = plan_launch([*common, "--node_rank=1", "train.py"]).job
    assert node0 is not None and node0 == node1 and node0.max_nodes == 2
    other = plan_launch([*common, "--rdzv_id=run2", "train.py"]).job
    assert other is not None and other.key != node0.key
    assert plan_launch(["--nnodes=1:4", "--master_addr=h", "--master_port=1", "train.py"]).job is not None
    assert plan_launch(["--nproc_per_node=2", "train.py"]).job is None
    assert plan_launch(["--nnodes=2", "--standalone", "train.py"]).job is None
