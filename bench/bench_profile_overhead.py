"""Overhead of ``tracelens profile`` outside the window.

Runs a small training loop (num_workers 0 and 2) bare and under the wrapper with a window that
never starts (``wait`` = 10⁹ batches: the DataLoader hooks count batches, no profiler runs),
each in a fresh process, several times, and compares the median steady-state throughput
(steps/s, measured by the script itself after 50 warm-up steps). Target: within 3 %.

    python bench/bench_profile_overhead.py [--repeats 5] [--steps 1500] [--skip-e2e]

On a shared or loaded machine the end-to-end spread can exceed the overhead itself; the first
table (per-batch cost of the hooks, measured in one process, interleaved, minimum of several
rounds) is the noise-robust number: overhead = hook cost / step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKLOAD = textwrap.dedent(
    """
    import json, sys, time
    import torch
    from torch.utils.data import DataLoader, Dataset

    class Items(Dataset):
        def __len__(self):
            return 10**7
        def __getitem__(self, i):
            return torch.full((64,), float(i % 5)), i % 4

    out, steps, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(Items(), batch_size=32, num_workers=workers)
    t0 = None
    for i, (x, y) in enumerate(loader):
        if i == 50:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        if i == 50 + steps:
            break
    with open(out, "w") as fh:
        json.dump({"steps_per_s": steps / (time.perf_counter() - t0)}, fh)
    """
)

WRAPPED = (
    "import sys; from tracelens.capture import ProfileOptions, run_profile; "
    "r = run_profile(ProfileOptions(target=sys.argv[1], args=tuple(sys.argv[2:5]), "
    "out=__import__('pathlib').Path(sys.argv[5]), wait=10**9, no_report=True)); "
    "sys.exit(r.exit_status)"
)


def _one(mode: str, script: Path, tmp: Path, steps: int, workers: int, i: int) -> float:
    out = tmp / f"{mode}-{workers}-{i}.json"
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
            str(tmp / f"run-{workers}-{i}"),
        ]
    subprocess.run(cmd, check=True, capture_output=True)
    return float(json.loads(out.read_text())["steps_per_s"])


def hook_cost_us(batches: int = 20_000, rounds: int = 7) -> tuple[float, float]:
    """Per-``__next__`` time (µs) of a trivial num_workers=0 loader, bare and with the hooks
    of a session whose window never starts (min over interleaved rounds)."""
    import time

    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from tracelens.capture.session import CaptureSession, SessionConfig

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
            session = CaptureSession(
                SessionConfig(run_dir=Path(d) / "r", command={}, wait=10**9, record_unstepped=False)
            )
            session.start()
            try:
                hooked.append(per_batch())
            finally:
                session.finish(0, "finished", None, shutdown_workers=True)
    return min(bare), min(hooked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--skip-e2e", action="store_true", help="only the per-batch hook cost")
    args = ap.parse_args()
    bare_us, hooked_us = hook_cost_us()
    cost = hooked_us - bare_us
    print(
        f"per-batch __next__ (num_workers=0, trivial batch): bare {bare_us:.1f} µs, "
        f"with hooks {hooked_us:.1f} µs, hook cost {cost:.1f} µs"
    )
    print(f"{'step time':>10}  {'overhead':>9}")
    for step_ms in (1.0, 5.0, 20.0, 100.0):
        print(f"{step_ms:>8.0f} ms  {cost / (step_ms * 1000):>9.2%}")
    if args.skip_e2e:
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        script = tmp / "workload.py"
        script.write_text(WORKLOAD)
        print(
            f"{'num_workers':>11}  {'bare steps/s':>14}  {'wrapped steps/s':>16}  {'overhead':>9}  spread (bare / wrapped)"
        )
        for workers in (0, 2):
            results: dict[str, list[float]] = {"bare": [], "wrapped": []}
            for i in range(args.repeats):  # interleaved, so drift hits both modes alike
                for mode in ("bare", "wrapped"):
                    results[mode].append(_one(mode, script, tmp, args.steps, workers, i))
            bare, wrapped = (statistics.median(results[m]) for m in ("bare", "wrapped"))
            spread = "  ".join(
                f"{(max(v) - min(v)) / statistics.median(v):.1%}" for v in results.values()
            )
            print(
                f"{workers:>11}  {bare:>14.1f}  {wrapped:>16.1f}  {1 - wrapped / bare:>9.1%}  {spread}"
            )


if __name__ == "__main__":
    main()
