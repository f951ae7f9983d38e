"""Probes that run inside DataLoader worker processes (fork, spawn and forkserver alike).

``WorkerInit`` replaces a loader's ``worker_init_fn``; it is a module-level class, so it pickles
for ``spawn``. In the worker it times every ``fetch`` (one batch: indexing the dataset and
collating) and records one line per batch in ``<record_dir>/<loader>-<worker>-<pid>.rec``:
``start_ns,end_ns,cpu_ns`` with ``time.time_ns()`` (the trace's clock) and the worker's
process CPU time. The JSON header line (pid, worker id, torch threads) is written when the
worker starts (the telemetry sampler finds workers by their files); batch lines are buffered
and appended every quarter second or so and when the worker exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

_ORIGINAL_ATTR = "__tracelens_original__"
#: Per-worker cap on batch records (a 1-hour run must not fill the disk).
MAX_RECORDS_PER_WORKER = 20_000
#: A worker appends its buffered batch records at most this often (ns) ...
FLUSH_INTERVAL_NS = 250_000_000
#: ... or once this many are pending, and when it exits.
FLUSH_RECORDS = 1024


def _fetcher_classes() -> list[type]:
    from torch.utils.data._utils import fetch

    return [fetch._MapDatasetFetcher, fetch._IterableDatasetFetcher]


def original_fetch(cls: type) -> Callable[..., Any]:
    """The unpatched ``fetch`` of a fetcher class."""
    current = cls.__dict__["fetch"]
    return getattr(current, _ORIGINAL_ATTR, current)


class FetchGate:
    """Switch for a fetch probe: while ``on`` is False the patched ``fetch`` only calls the
    original (no clock reads, no record)."""

    on = True


def patch_fetch(
    record: Callable[[int, int, int], None],
    cpu_clock: Callable[[], int],
    gate: FetchGate | None = None,
) -> None:
    """Time every fetcher ``fetch`` call: ``record(start_ns, end_ns, cpu_ns)`` (while
    ``gate.on``, when a gate is given)."""
    gate = gate or FetchGate()
    for cls in _fetcher_classes():
        orig = original_fetch(cls)

        def fetch(self: Any, index: Any, _orig: Callable[..., Any] = orig) -> Any:
            if not gate.on:
                return _orig(self, index)
            c0 = cpu_clock()
            t0 = time.time_ns()
            try:
                return _orig(self, index)
            finally:
                record(t0, time.time_ns(), cpu_clock() - c0)

        setattr(fetch, _ORIGINAL_ATTR, orig)
        cls.fetch = fetch  # type: ignore[attr-defined]


def unpatch_fetch() -> None:
    """Restore the original ``fetch`` methods."""
    for cls in _fetcher_classes():
        cls.fetch = original_fetch(cls)  # type: ignore[attr-defined]


class _RecordFile:
    """Per-batch records of one worker, kept in memory and appended to the file in blocks.

    A write per batch is a system call per batch in every worker, on cores the workers share
    with the training process (bench/results-profile-overhead.md: not measurable against the
    noise of a shared 2-core machine, but nothing the window needs). Records are written at
    most every :data:`FLUSH_INTERVAL_NS` (so the telemetry and a killed worker lose at most
    that much), when :data:`FLUSH_RECORDS` are pending, and when the worker exits (a
    ``multiprocessing`` finalizer: DataLoader workers leave through ``Process._bootstrap``,
    which runs them).
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.count = 0
        self.pending: list[tuple[int, int, int]] = []
        self.last_flush_ns = time.time_ns()
        with contextlib.suppress(Exception):
            from multiprocessing import util

            util.Finalize(None, self.flush, exitpriority=100)

    def write_line(self, line: str) -> None:
        os.write(self.fd, line.encode())

    def record(self, start_ns: int, end_ns: int, cpu_ns: int) -> None:
        if self.count < MAX_RECORDS_PER_WORKER:
            self.count += 1
            self.pending.append((start_ns, end_ns, cpu_ns))
            if (
                end_ns - self.last_flush_ns >= FLUSH_INTERVAL_NS
                or len(self.pending) >= FLUSH_RECORDS
                or self.count == MAX_RECORDS_PER_WORKER
            ):
                self.flush()

    def flush(self) -> None:
        """Append the pending records (one ``os.write``)."""
        self.last_flush_ns = time.time_ns()
        if not self.pending:
            return
        rows, self.pending = self.pending, []
        with contextlib.suppress(OSError):
            self.write_line("".join(f"{s},{e},{c}\n" for s, e, c in rows))


class WorkerInit:
    """Picklable ``worker_init_fn`` wrapper: registers the worker, times its batches, then
    calls the user's own ``worker_init_fn`` (if any) unchanged; with ``threads`` (a sweep
    setting) it then sets ``torch.set_num_threads(threads)``, after the user's own call."""

    def __init__(
        self, user_fn: Callable[[int], Any] | None, record_dir: str, loader_id: int,
        threads: int | None = None,
    ) -> None:
        self.user_fn = user_fn
        self.record_dir = record_dir
        self.loader_id = loader_id
        self.threads = threads

    def __call__(self, worker_id: int) -> None:
        started_ns = time.time_ns()
        rec: _RecordFile | None = None
        try:
            path = os.path.join(self.record_dir, f"{self.loader_id}-{worker_id}-{os.getpid()}.rec")
            rec = _RecordFile(path)
            patch_fetch(rec.record, time.process_time_ns)
        except Exception:
            rec = None  # telemetry must never break the user's loader
        if self.user_fn is not None:
            self.user_fn(worker_id)
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        if rec is not None:
            try:
                import torch

                threads: int | None = int(torch.get_num_threads())
            except Exception:
                threads = None
            header = {
                "loader_id": self.loader_id,
                "worker_id": worker_id,
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "torch_threads": threads,
                "started_ns": started_ns,
                "init_done_ns": time.time_ns(),
            }
            rec.write_line("#" + json.dumps(header) + "\n")


def read_record_file(path: str) -> tuple[dict[str, Any] | None, list[tuple[int, int, int]]]:
    """Parse one worker record file: (header or None, [(start_ns, end_ns, cpu_ns), ...])."""
    header: dict[str, Any] | None = None
    rows: list[tuple[int, int, int]] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("#"):
                    with contextlib.suppress(ValueError):
                        header = json.loads(line[1:])
                    continue
                parts = line.strip().split(",")
                if len(parts) != 3:
                    continue  # a line cut by a killed worker
                try:
                    rows.append((int(parts[0]), int(parts[1]), int(parts[2])))
                except ValueError:
                    continue
    except OSError:
        pass
    return header, rows
