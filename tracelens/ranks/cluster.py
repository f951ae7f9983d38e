"""Run rank jobs on a Dask distributed cluster; only the per-rank documents come back.

Each rank's file(s) are read and analyzed on a worker by the same job function as on a local
pool (:func:`tracelens.ranks.engine.run_rank_job`: remote files are spooled into the worker's
local directory), and only its document — a few kilobytes — travels back; the cross-rank
document is built on the client (:func:`tracelens.ranks.engine.assemble`).

Faults: a worker lost mid-run has its ranks recomputed elsewhere by the scheduler (and a job
that raises a transient error is retried ``retries`` times), so the result is the same; a rank
whose input is bad comes back as that rank's error; an unreachable scheduler is one error line.

Imported only when a scheduler address is given (``--scheduler`` / ``TRACELENS_SCHEDULER``);
needs ``pip install "tracelens-dataloader[cluster]"`` on the client and on every worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tracelens.document.result import RankOutcome
from tracelens.errors import TracelensError
from tracelens.ranks.engine import RankProgress, failed_outcome, run_rank_job
from tracelens.ranks.plan import RankJob

SCHEDULER_ENV = "TRACELENS_SCHEDULER"
CONNECT_TIMEOUT_S = 5.0  # to reach the scheduler
WORKER_WAIT_S = 30.0  # for at least one worker to join
RETRIES = 2  # extra tries of a job that raised (worker loss is handled by the scheduler itself)
KEY_PREFIX = "tracelens-rank"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
GLIBC_MMAP_THRESHOLD_MAX = 32 << 20  # bytes: glibc's own ceiling for its dynamic mmap threshold (64-bit)
_malloc_tuned = False
INSTALL_HINT = 'pip install "tracelens-dataloader[cluster]"'


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise TracelensError(f"--scheduler needs Dask distributed: {INSTALL_HINT}") from None
    return distributed


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """The scheduler's identity (``type``, ``n_workers``, ...); a one-line error if there is none.

    Checked before a ``Client`` is made: a client that fails to connect prints a traceback
    when it is garbage-collected, and a port that is not a Dask scheduler can make it fail in
    odd ways. A plain socket first (refused / unknown host / silent), then Dask's identity call.
    """
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, loc = parse_address(address, strict=False)
        probe: tuple[str, int] | None = None
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, port = parse_host_port(loc)
            probe = (host, int(port))
    except ValueError as exc:
        raise TracelensError(f"{address}: not a Dask scheduler address ({exc})") from None
    unreachable = f"cannot reach the Dask scheduler at {address}"
    if probe is not None:
        try:
            socket.create_connection(probe, timeout=timeout_s).close()
        except TimeoutError:
            raise TracelensError(f"{unreachable}: no answer within {timeout_s:g} s") from None
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise TracelensError(f"{unreachable}: {reason.lower()}") from None
    try:
        info = asyncio.run(asyncio.wait_for(_identity(address, timeout_s), timeout_s + 1))
    except (TimeoutError, asyncio.TimeoutError):
        raise TracelensError(f"{unreachable}: no Dask answer within {timeout_s:g} s (is it a Dask scheduler?)") from None
    except Exception as exc:
        raise TracelensError(f"{unreachable}: not a Dask scheduler ({type(exc).__name__})") from None
    if not isinstance(info, dict) or info.get("type") != "Scheduler":
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        raise TracelensError(f"{address} is not a Dask scheduler (it is a {kind})")
    return info


async def _identity(address: str, timeout_s: float) -> Any:
    from distributed.core import rpc

    remote = rpc(address, timeout=timeout_s)
    try:
        return await remote.identity()
    finally:
        await remote.close_rpc()


def connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address``; one-line errors otherwise."""
    distributed = _distributed()
    check_reachable(address, timeout_s)
    try:
        return distributed.Client(address, timeout=timeout_s, set_as_default=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    _collect_quietly()
    raise TracelensError(f"cannot connect to the Dask scheduler at {address}: {reason}")


def _collect_quietly() -> None:
    """Collect a half-built client now, so its finalizer's complaint is not printed."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def _undo_nanny_malloc_trim() -> None:
    """Let glibc reuse freed memory in a worker that a nanny started with ``MALLOC_TRIM_THRESHOLD_``.

    Dask's nanny sets that variable on its workers, and setting it also pins glibc's mmap
    threshold at 128 KiB: every array the loader allocates becomes a fresh mmap, with ~10x
    the page faults and 15-40 % more CPU per rank (bench/results-cluster.md). These values are
    the ones glibc reaches by itself; a worker may keep up to ~64 MB more after a task.
    """
    global _malloc_tuned
    if _malloc_tuned or "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    _malloc_tuned = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD_MAX)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to undo
        pass


def _analyze_on_worker(job: RankJob) -> RankOutcome:
    """The task: one rank analyzed on a worker, spooling into its local directory; only its
    document travels back (the full analysis stays on the worker)."""
    from distributed import get_worker

    _undo_nanny_malloc_trim()
    worker = get_worker()
    outcome = run_rank_job(job, spool_dir=worker.local_directory)
    return replace(outcome, worker=worker.address, detail=None)


def task_keys(rank_jobs: Sequence[RankJob], token: str) -> list[str]:
    """``tracelens-rank-<rank>-<token>``, one distinct key per job (Dask runs a key once).

    A job without a rank, or one of several jobs of the same rank, is labelled by its index.
    """
    labels = [str(j.rank) if j.rank is not None else f"job{i}" for i, j in enumerate(rank_jobs)]
    if len(set(labels)) < len(labels):
        labels = [f"{label}.{i}" for i, label in enumerate(labels)]
    return [f"{KEY_PREFIX}-{label}-{token}" for label in labels]


def analyze_ranks_on_cluster(address: str, rank_jobs: Sequence[RankJob], *,
                             on_progress: RankProgress | None = None, retries: int = RETRIES,
                             connect_timeout_s: float = CONNECT_TIMEOUT_S,
                             worker_wait_s: float = WORKER_WAIT_S) -> list[RankOutcome]:
    """Run ``rank_jobs`` on the Dask cluster at ``address``; their outcomes in job order.

    ``on_progress(done, total, bytes_read)`` is called as ranks finish. A job that raised even
    after ``retries`` (or killed its workers) is that rank's error; losing the scheduler is
    an error for the whole run.
    """
    as_completed = _distributed().as_completed
    client = connect(address, connect_timeout_s)
    try:
        try:
            client.wait_for_workers(1, timeout=worker_wait_s)
        except (TimeoutError, OSError):
            raise TracelensError(f"the Dask scheduler at {address} has no workers (waited {worker_wait_s:g} s)") from None
        token = uuid.uuid4().hex[:12]
        keys = task_keys(rank_jobs, token)
        index = {k: i for i, k in enumerate(keys)}
        # Results are fetched as tasks finish, concurrently in the client's event loop: one
        # gather at a time waited on busy workers and held back runs of many small ranks.
        futures = client.map(_analyze_on_worker, list(rank_jobs), key=keys, retries=retries)
        pending = as_completed(futures, loop=client.loop, with_results=True, raise_errors=False)
        del futures  # a result leaves the workers once it is here
        outcomes: list[RankOutcome | None] = [None] * len(rank_jobs)
        done = nbytes = cancelled = 0
        for batch in pending.batches():
            for fut, result in batch:
                i = index[fut.key]
                if isinstance(result, RankOutcome):
                    outcome = result
                elif fut.cancelled():
                    cancelled += 1
                    outcome = failed_outcome(rank_jobs[i], ConnectionError("cancelled: the scheduler lost it"))
                else:  # a task that raised even after its retries: (type, exception, traceback)
                    outcome = failed_outcome(rank_jobs[i], result[1] if isinstance(result, tuple) else result)
                outcomes[i] = outcome
                done += 1
                nbytes += outcome.bytes_read
            if on_progress is not None:
                on_progress(done, len(rank_jobs), nbytes)
        if cancelled:
            raise TracelensError(f"lost the Dask scheduler at {address}: {cancelled} of {len(rank_jobs)} ranks were not analyzed")
        return [o for o in outcomes if o is not None]
    finally:
        client.close()
