"""Overhead of ``tracelens profile`` outside the window.

Runs a small training loop (num_workers 0 and 2) bare and under the wrapper with a window that
never starts (``wait`` = 10⁹ batches: the DataLoader hooks count batches, no profiler runs),
each in a fresh process, several times, and compares the median steady-state throughput
(steps/s, measured by the script itself after 50 warm-up steps). Target: within 3 %.
The script also reports the CPU time (user + system, main process and workers) per step, which
a shared machine disturbs far less than throughput: the wrapper's CPU cost per step.

    python bench/bench_profile_overhead.py [--repeats 5] [--steps 1500] [--skip-e2e]
        [--baseline-src DIR]

``--baseline-src DIR`` adds a third mode, the wrapper imported from another source tree (for
example ``git archive <commit> tracelens templates | tar -x -C DIR``), interleaved with the
others, to measure what a change to the wrapper gains. Results and the load average before and
after are printed as markdown tables (bench/results-profile-overhead.md keeps the last ones).

On a shared or loaded machine the end-to-end spread can exceed the overhead itself; the first
table (per-batch cost of the hooks, measured in one process, interleaved, minimum of several
rounds) is the noise-robust number: overhead = hook cost / step time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKLOAD = textwrap.dedent(
    """
    import json, sys, time
    import psutil
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Items(Dataset):
        def __len__(self):
            return 10**7
        def __getitem__(self, i):
            return torch.full((64,), float(i % 5)), i % 4

    out, steps, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # One intra-op thread: with the default (one per core) the main process's OpenMP threads
    # spin-wait against the workers on a 2-core machine and the run lands in one of two modes
    # (measured: 83 or 450 steps/s, CPU 12 or 3 ms/step, by chance), which hides a 3 % effect.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(Items(), batch_size=32, num_workers=workers)
    t0 = None
    me = psutil.Process()

    def cpu_s():  # this process and its DataLoader workers (user + system)
        total = 0.0
        for p in [me, *me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    for i, (x, y) in enumerate(loader):
        if i == 50:
            c0 = cpu_s()
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        if i == 50 + steps:
            break
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    with open(out, "w") as fh:
        json.dump({"steps_per_s": steps / wall, "cpu_ms_per_step": 1000 * cpu / steps}, fh)
    """
)

WRAPPED = (
    "import sys; from tracelens.capture import ProfileOptions, run_profile; "
    "r = run_profile(ProfileOptions(target=sys.argv[1], args=tuple(sys.argv[2:5]), "
    "out=__import__('pathlib').Path(sys.argv[5]), wait=10**9, no_report=True)); "
    "sys.exit(r.exit_status)"
)


REPO = Path(__file__).resolve().parent.parent


def _one(
    mode: str,
    script: Path,
    tmp: Path,
    steps: int,
    workers: int,
    i: int,
    src: Path | None = None,
    label: str | None = None,
) -> tuple[float, float]:
    """One fresh process: ``bare``, or ``wrapped`` importing tracelens from ``src`` (default:
    this checkout), run from a neutral directory so the import is the one chosen."""
    out = tmp / f"{label or mode}-{workers}-{i}.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src or REPO)
    if mode == "bare":
        cmd = [sys.executable, str(script), str(out), str(steps), str(workers)]
    else:
        cmd = [
            sys.executable,
            "-c",
            WRAPPED,
            str(script),
            str(out),
            str(steps),
            str(workers),
            str(tmp / f"run-{label or mode}-{workers}-{i}"),
        ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp, env=env)
    res = json.loads(out.read_text())
    return float(res["steps_per_s"]), float(res["cpu_ms_per_step"])


def hook_cost_us(batches: int = 20_000, rounds: int = 7) -> tuple[float, float]:
    """Per-``__next__`` time (µs) of a trivial num_workers=0 loader, bare and with the hooks
    of a session whose window never starts (min over interleaved rounds)."""
    import time

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tracelens.capture.options import ProfileOptions
    from tracelens.capture.script.session import CaptureSession

    loader = DataLoader(TensorDataset(torch.zeros(batches, 1)), batch_size=1)

    def per_batch() -> float:
        t0 = time.perf_counter_ns()
        for _ in loader:
            pass
        return (time.perf_counter_ns() - t0) / batches / 1000.0

    bare: list[float] = []
    hooked: list[float] = []
    with tempfile.TemporaryDirectory() as d:
        for _ in range(rounds):
            bare.append(per_batch())
            session = CaptureSession(ProfileOptions("bench.py", wait=10**9, record_unstepped=False), Path(d) / "r", {})
            session.start()
            try:
                hooked.append(per_batch())
            finally:
                session.finish(0, "finished", None, shutdown_workers=True)
    return min(bare), min(hooked)


def _train_rate(source: Any, model: Any, opt: Any, steps: int) -> float:
    """Steps/s of the workload's training step over ``steps`` batches of ``source``, after 50."""
    import time

    import torch

    t0 = 0.0
    for i, (x, y) in enumerate(source):
        if i == 50:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i == 50 + steps:
            break
    return steps / (time.perf_counter() - t0)


def _paired(loop: Callable[[], float], rounds: int) -> list[tuple[float, float]]:
    """``loop()`` bare and under a capture session whose window never starts (as `tracelens
    profile`: it records until the first loader, then waits), in adjacent pairs, order alternating."""
    from tracelens.capture.options import ProfileOptions
    from tracelens.capture.script.session import CaptureSession

    def wrapped(run_dir: Path) -> float:
        session = CaptureSession(ProfileOptions("bench.py", wait=10**9, no_report=True), run_dir, {})
        session.start()
        try:
            return loop()
        finally:
            session.finish(0, "finished", None, shutdown_workers=True)

    out = []
    with tempfile.TemporaryDirectory() as d:
        loop()  # warm the allocator and the code paths once
        for r in range(rounds):
            if r % 2 == 0:
                bare = loop()
                hooked = wrapped(Path(d) / f"r{r}")
            else:
                hooked = wrapped(Path(d) / f"r{r}")
                bare = loop()
            out.append((bare, hooked))
    return out


def _model() -> tuple[Any, Any]:
    """The workload's model and optimizer (1 math thread: see WORKLOAD)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def paired_rounds(workers: int, steps: int, rounds: int) -> list[tuple[float, float]]:
    """Steady-state steps/s of the workload loop, bare and under a capture session whose window
    never starts, in adjacent pairs in this process (order alternating), so that a change in the
    machine's load hits both halves of a pair alike. Returns [(bare, wrapped), ...]."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Items(Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return 10**7

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.full((64,), float(i % 5)), i % 4

    model, opt = _model()
    return _paired(lambda: _train_rate(DataLoader(Items(), batch_size=32, num_workers=workers), model, opt, steps),
                   rounds)


def paired_pipeline_rounds(kind: str, steps: int, rounds: int) -> list[tuple[float, float]]:
    """As :func:`paired_rounds` for a loop fed by a pipeline that is no DataLoader: ``generator``
    (timed through a trace function) or ``class`` (an iterator class whose ``__next__`` is
    wrapped); the same batches, model and step as the DataLoader workload, built in the loop."""
    import torch

    model, opt = _model()

    def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([torch.full((64,), float((i * 32 + k) % 5)) for k in range(32)])
        return x, torch.tensor([(i * 32 + k) % 4 for k in range(32)])

    def generator() -> Any:
        i = 0
        while True:
            yield batch(i)
            i += 1

    class Batches:
        def __init__(self) -> None:
            self.i = -1

        def __iter__(self) -> Batches:
            return self

        def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
            self.i += 1
            return batch(self.i)

    return _paired(lambda: _train_rate(generator() if kind == "generator" else Batches(), model, opt, steps), rounds)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--workers", default="0,2", help="num_workers values, comma-separated")
    ap.add_argument("--skip-e2e", action="store_true", help="no separate-process runs")
    ap.add_argument("--pipelines", default="generator,class",
                    help="pipelines without a DataLoader in the paired rounds (generator, class)")
    ap.add_argument("--rounds", type=int, default=15, help="paired in-process rounds (0: none)")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        help="also run the wrapper from this source tree (interleaved)",
    )
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; load average (1, 5, 15 min) at start: {_load()}\n")
    bare_us, hooked_us = hook_cost_us()
    cost = hooked_us - bare_us
    print(
        f"per-batch __next__ (num_workers=0, trivial batch): bare {bare_us:.1f} µs, "
        f"with hooks {hooked_us:.1f} µs, hook cost {cost:.1f} µs\n"
    )
    print("| step time | hook overhead |\n|---:|---:|")
    for step_ms in (1.0, 5.0, 20.0, 100.0):
        print(f"| {step_ms:.0f} ms | {cost / (step_ms * 1000):.2%} |")
    if args.rounds:
        print(
            f"\npaired rounds in one process ({args.rounds} pairs of {args.steps} steps, order "
            "alternating; overhead = 1 − median of wrapped / bare per pair):\n"
        )
        print(
            "| num_workers | step ms (bare) | bare steps/s | wrapped steps/s | overhead | "
            "IQR of per-pair overhead |\n|---:|---:|---:|---:|---:|---|"
        )
        for workers in (int(w) for w in args.workers.split(",")):
            pairs = paired_rounds(workers, args.steps, args.rounds)
            ratios = sorted(w / b for b, w in pairs)
            q1, q3 = (ratios[int(f * (len(ratios) - 1))] for f in (0.25, 0.75))
            bare = statistics.median(b for b, _ in pairs)
            hooked = statistics.median(w for _, w in pairs)
            print(
                f"| {workers} | {1000 / bare:.2f} | {bare:.1f} | {hooked:.1f} | "
                f"{1 - statistics.median(ratios):+.1%} | {1 - q3:+.1%} … {1 - q1:+.1%} |"
            )
        for kind in (k for k in args.pipelines.split(",") if k):
            pairs = paired_pipeline_rounds(kind, args.steps, args.rounds)
            ratios = sorted(w / b for b, w in pairs)
            q1, q3 = (ratios[int(f * (len(ratios) - 1))] for f in (0.25, 0.75))
            bare = statistics.median(b for b, _ in pairs)
            hooked = statistics.median(w for _, w in pairs)
            print(
                f"| {kind} (no DataLoader) | {1000 / bare:.2f} | {bare:.1f} | {hooked:.1f} | "
                f"{1 - statistics.median(ratios):+.1%} | {1 - q3:+.1%} … {1 - q1:+.1%} |"
            )
        print(f"\nload average after the paired rounds: {_load()}")
    if args.skip_e2e:
        return
    modes = ["bare", "wrapped"] + (["baseline"] if args.baseline_src else [])
    others = modes[1:]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        script = tmp / "workload.py"
        script.write_text(WORKLOAD)
        names = {"wrapped": "wrapped", "baseline": "wrapped (baseline src)"}
        rate_head = (
            "| num_workers | bare steps/s |"
            + "".join(f" {names[m]} steps/s | overhead |" for m in others)
            + f" spread ({' / '.join(modes)}) |"
        )
        cpu_head = "| num_workers | bare CPU ms/step |" + "".join(
            f" {names[m]} CPU ms/step | extra CPU |" for m in others
        )
        rate_rows, cpu_rows = [], []
        for workers in (int(w) for w in args.workers.split(",")):
            rates: dict[str, list[float]] = {m: [] for m in modes}
            cpus: dict[str, list[float]] = {m: [] for m in modes}
            for i in range(args.repeats):  # interleaved, so drift hits every mode alike
                for mode in modes:
                    src = args.baseline_src if mode == "baseline" else None
                    kind = "bare" if mode == "bare" else "wrapped"
                    rate, cpu = _one(kind, script, tmp, args.steps, workers, i, src, mode)
                    rates[mode].append(rate)
                    cpus[mode].append(cpu)
            rate = {m: statistics.median(v) for m, v in rates.items()}
            cpu = {m: statistics.median(v) for m, v in cpus.items()}
            spread = " / ".join(
                f"{(max(v) - min(v)) / statistics.median(v):.0%}" for v in rates.values()
            )
            rate_rows.append(
                f"| {workers} | {rate['bare']:.1f} |"
                + "".join(f" {rate[m]:.1f} | {1 - rate[m] / rate['bare']:+.1%} |" for m in others)
                + f" {spread} |"
            )
            cpu_rows.append(
                f"| {workers} | {cpu['bare']:.3f} |"
                + "".join(f" {cpu[m]:.3f} | {cpu[m] / cpu['bare'] - 1:+.1%} |" for m in others)
            )
            print(f"  ... num_workers={workers} done (load {_load()})", file=sys.stderr)
        print(
            f"\nend-to-end, median of {args.repeats} interleaved runs of {args.steps} steps each "
            "(overhead = 1 − wrapped / bare throughput; spread = (max − min) / median):\n"
        )
        print(
            "\n".join([rate_head, "|" + "---:|" * (rate_head.count("|") - 2) + "---|", *rate_rows])
        )
        print("\nCPU time (main process + workers) per steady-state step, same runs:\n")
        print("\n".join([cpu_head, "|" + "---:|" * (cpu_head.count("|") - 1), *cpu_rows]))
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
