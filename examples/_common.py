"""Shared flags and training loop of the examples (each example defines only its dataset/model)."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def loader_args(
    description: str,
    *,
    num_workers: int,
    batch_size: int,
    epochs: int,
    persistent_workers: bool = False,
    worker_threads: int | None = None,
) -> argparse.ArgumentParser:
    """The DataLoader flags every example takes, so it can be re-run with recommended settings."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--num-workers", type=int, default=num_workers)
    ap.add_argument("--batch-size", type=int, default=batch_size)
    ap.add_argument("--epochs", type=int, default=epochs)
    ap.add_argument("--pin-memory", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument(
        "--persistent-workers", action=argparse.BooleanOptionalAction, default=persistent_workers
    )
    ap.add_argument("--prefetch-factor", type=int, default=None)
    ap.add_argument(
        "--multiprocessing-context", default=None, choices=[None, "fork", "spawn", "forkserver"]
    )
    ap.add_argument(
        "--main-threads", type=int, default=None,
        help="torch.set_num_threads in the training process (default: torch's, one per core)",
    )
    ap.add_argument(
        "--worker-threads", type=int, default=worker_threads,
        help="torch.set_num_threads in each worker (default: the DataLoader's, 1)",
    )
    return ap


def _init_worker(
    threads: int | None, user_init: Callable[[int], None] | None, worker_id: int
) -> None:
    """worker_init_fn: set the worker's torch threads, then run the example's own init."""
    if threads is not None:
        torch.set_num_threads(threads)
    if user_init is not None:
        user_init(worker_id)


def set_main_threads(args: argparse.Namespace) -> None:
    """Apply ``--main-threads`` (torch.set_num_threads) to this process, if given."""
    if args.main_threads is not None:
        torch.set_num_threads(args.main_threads)


def loader_kwargs(
    args: argparse.Namespace, worker_init_fn: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """The DataLoader keyword arguments the flags set (prefetch/persistence only with workers).

    ``--worker-threads`` becomes a ``worker_init_fn`` (composed with ``worker_init_fn``).
    For scripts that build their own DataLoader (a LightningDataModule, a DDP script).
    """
    kw: dict[str, Any] = dict(num_workers=args.num_workers, pin_memory=args.pin_memory)
    if args.num_workers > 0:
        kw["persistent_workers"] = args.persistent_workers
        kw["multiprocessing_context"] = args.multiprocessing_context
        if args.prefetch_factor is not None:
            kw["prefetch_factor"] = args.prefetch_factor
        if worker_init_fn is not None or args.worker_threads is not None:
            kw["worker_init_fn"] = functools.partial(
                _init_worker, args.worker_threads, worker_init_fn
            )
    return kw


def make_loader(dataset: Dataset[Any], args: argparse.Namespace, **extra: Any) -> DataLoader[Any]:
    """A DataLoader built from the flags (prefetch/persistence only with workers).

    Also applies ``--main-threads`` to this process and ``--worker-threads`` to each worker
    (composed with an example's own ``worker_init_fn``).
    """
    set_main_threads(args)
    kw: dict[str, Any] = dict(batch_size=args.batch_size, shuffle=True, drop_last=True)
    kw.update(loader_kwargs(args, extra.pop("worker_init_fn", None)))
    kw.update(extra)
    return DataLoader(dataset, **kw)


class SteadyRate:
    """The script's own steady-state rate: ``tick()`` at the start of every training step;
    ``summary()`` gives steps/s between the start of step ``warmup`` and the start of the last
    step (start-up, the first batches and the tail after the last step left out; epoch
    changes and validation passes between those steps are included, as a user sees them)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.ticks: list[float] = []

    def tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def rate(self) -> float | None:
        if len(self.ticks) < self.warmup + 2:
            return None
        return (len(self.ticks) - 1 - self.warmup) / (self.ticks[-1] - self.ticks[self.warmup])

    def summary(self) -> str:
        """One line, printed last by each script: ``steady-state: 12.34 steps/s (...)``."""
        rate = self.rate()
        n = len(self.ticks)
        if rate is None:
            return f"steady-state: n/a ({n} steps, fewer than warm-up {self.warmup} + 2)"
        return (
            f"steady-state: {rate:.2f} steps/s (steps {self.warmup}..{n - 1}, "
            f"{self.ticks[-1] - self.ticks[self.warmup]:.2f} s)"
        )


def train(
    model: torch.nn.Module,
    loader: DataLoader[Any],
    epochs: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    warmup_steps: int = 5,
) -> None:
    """A plain training loop (no profiler calls): forward, backward, SGD step; prints each epoch's
    rate and, last, the steady-state rate after ``warmup_steps`` (see :class:`SteadyRate`)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = loss_fn or torch.nn.functional.cross_entropy
    meter = SteadyRate(warmup_steps)
    t0 = time.perf_counter()
    steps = 0
    for epoch in range(epochs):
        for x, y in loader:
            meter.tick()
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        print(f"epoch {epoch}: {steps} steps, {steps / (time.perf_counter() - t0):.1f} steps/s")
    print(meter.summary())


def fit(
    model: torch.nn.Module,
    loader: DataLoader[Any],
    opt: torch.optim.Optimizer,
    epochs: int,
    meter: SteadyRate,
    *,
    max_steps: int = 0,
    on_epoch: Callable[[int], None] | None = None,
) -> int:
    """The training loop as users write it (forward, cross-entropy, backward, step), ticking
    ``meter`` at every step's start; ``on_epoch(epoch)`` before each epoch (e.g. a
    DistributedSampler's ``set_epoch``); stops after ``max_steps`` (0: every epoch). The steps run."""
    steps = 0
    for epoch in range(epochs):
        if on_epoch is not None:
            on_epoch(epoch)
        for x, y in loader:
            meter.tick()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()  # under DDP: the all-reduce, which waits for the slowest rank
            opt.step()
            steps += 1
            if steps == max_steps:
                return steps
    return steps


def box_blur(img: np.ndarray, passes: int) -> np.ndarray:
    """A separable 3×3 box blur of a C×H×W array, ``passes`` times: the CPU cost of an
    augmentation (about 0.2 ms per pass for 3×72×72 floats)."""
    for _ in range(passes):
        img = (img[:, :-2, :] + img[:, 1:-1, :] + img[:, 2:, :]) / 3.0
        img = np.pad(img, ((0, 0), (1, 1), (0, 0)), mode="edge")
        img = (img[:, :, :-2] + img[:, :, 1:-1] + img[:, :, 2:]) / 3.0
        img = np.pad(img, ((0, 0), (0, 0), (1, 1)), mode="edge")
    return img


def print_rate(steps: int, meter: SteadyRate) -> None:
    """The last two lines every plain example prints: steps and torch threads, then the rate."""
    print(f"{steps} steps, torch threads {torch.get_num_threads()}")
    print(meter.summary())
