"""Upper bounds on every count a user types, with the reason for each: a typo must end in a
clear error, not in thousands of processes or a trace that fills the disk."""

from __future__ import annotations

from tracelens.system.procs import cores

#: analyze --jobs: rank-analysis processes per core (more only contend for the same cores).
JOBS_PER_CORE = 4
#: sweep --num-workers: DataLoader workers per usable core a trial may start (latency-bound
#: loaders gain past one per core, not past eight), and never fewer than this floor.
SWEEP_WORKERS_PER_CORE = 8
SWEEP_WORKERS_FLOOR = 64
#: sweep --steps / --warmup / --repeats / --max-rounds.
MAX_SWEEP_STEPS = 100_000
MAX_SWEEP_WARMUP = 100_000
MAX_SWEEP_REPEATS = 50
MAX_SWEEP_ROUNDS = 200
#: sweep --main-threads / --worker-threads: torch threads per process (a typo must not start
#: thousands of threads in every worker).
MAX_SWEEP_THREADS = 256
#: sweep --max-alive: trial processes alive at once (each a copy of the script and its workers).
MAX_SWEEP_ALIVE = 32
#: sweep --replay-batches: batches the ceiling trial caches (each held in memory).
MAX_REPLAY_BATCHES = 10_000
#: profile --active: batches recorded in one window (each adds its events to the trace).
MAX_ACTIVE_STEPS = 10_000
#: profile --wait and --warmup: batches skipped / profiled before the window.
MAX_WAIT_BATCHES = 10_000_000
MAX_WARMUP_STEPS = 10_000


def max_jobs() -> int:
    """The most rank-analysis processes ``analyze --jobs`` accepts here."""
    return JOBS_PER_CORE * cores()


def max_sweep_workers(usable_cores: int) -> int:
    """The most DataLoader workers one sweep trial may start on ``usable_cores``."""
    return max(SWEEP_WORKERS_FLOOR, SWEEP_WORKERS_PER_CORE * usable_cores)
