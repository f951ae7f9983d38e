"""A rule as data: id, kind, default severity, precondition, thresholds and its check.

Each check module declares its rules with :func:`rule` right above the check function, so the
thresholds a rule declares sit beside the code that reads them.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tracelens.diagnosis.context import Context
from tracelens.diagnosis.findings import Finding
from tracelens.diagnosis.thresholds import threshold
from tracelens.vocab import Severity

#: How to re-record a trace that cannot answer (trace-quality advice).
RERUN_PROFILER = (
    "torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], "
    "schedule=torch.profiler.schedule(wait=5, warmup=2, active=20), "
    "on_trace_ready=torch.profiler.tensorboard_trace_handler(LOGDIR), with_stack=False) "
    "with prof.step() after every batch, or simply `tracelens profile train.py ARGS`"
)
#: What to do when CPU-bound loading cannot get more workers.
PER_SAMPLE_COST_ADVICE = (
    "cache decoded samples (decode once, store tensors or uint8 arrays), move augmentation to "
    "the GPU (torchvision.transforms.v2 on CUDA tensors, DALI), precompute deterministic "
    "transforms offline"
)
#: What to do when latency-bound loading cannot get more workers.
STORAGE_ADVICE = (
    "read from faster or local storage, pack samples into sequential shards (WebDataset, "
    "tar/Parquet/LMDB) instead of one small file per sample, cache the dataset in RAM"
)


#: Returns the reason to skip a rule, or None when it applies.
Precondition = Callable[[Context], "str | None"]
Check = Callable[["Rule", Context], "Finding | None"]


@dataclass(frozen=True)
class Rule:
    """One rule as data: what it is, when it applies, which thresholds, and its check."""

    id: str
    kind: str
    severity: Severity  # default; a check may raise or lower it with the evidence
    title: str
    precondition: str  # in words, for the listing
    thresholds: tuple[str, ...]
    requires: Precondition
    check: Check
    main: bool = False  # decides the main diagnosis


def declare_rule(id: str, kind: str, severity: Severity, title: str, *, precondition: str,
                 thresholds: tuple[str, ...] = (), requires: Precondition,
                 main: bool = False) -> Callable[[Check], Rule]:
    """Declare a rule above its check function: ``@declare_rule(...) def check(rule, ctx)``
    makes the module-level name the :class:`Rule`."""
    def make(check: Check) -> Rule:
        return Rule(id, kind, severity, title, precondition, thresholds, requires, check, main)

    return make


def make_finding(rule: Rule, ctx: Context, severity: Severity | None = None, confidence: float = 0.8, *,
                 title: str | None = None, evidence: dict[str, Any], advice: str,
                 settings: dict[str, Any] | None = None) -> Finding:
    """A finding of ``rule``: confidence scaled by the trace's quality, evidence rounded."""
    return Finding(
        id=rule.id,
        kind=rule.kind,
        severity=severity or rule.severity,
        confidence=round(min(1.0, confidence * ctx.quality_factor), 2),
        title=title or rule.title,
        evidence={k: rounded(v) for k, v in evidence.items()},
        advice=advice,
        settings=settings or {},
        thresholds={n: threshold(n) for n in rule.thresholds},
    )


def input_bound_severity(exposed_fraction: float) -> Severity:
    """High from the highly-input-bound threshold on, else medium."""
    return Severity.HIGH if exposed_fraction >= threshold("exposed_wait_high_fraction") else Severity.MEDIUM


def rounded(v: Any) -> Any:
    """Evidence values as JSON: floats to 4 digits, non-finite as None."""
    if isinstance(v, float):
        return round(v, 4) if math.isfinite(v) else None
    return v


# --- preconditions ---------------------------------------------------------------------------


def needs_steps(ctx: Context) -> str | None:
    """Steps with DataLoader events to measure."""
    if ctx.steady is None:
        return "no steps to measure"
    if ctx.analysis.next_calls == 0:
        return "no DataLoader __next__ events"
    return None


def needs_telemetry(ctx: Context) -> str | None:
    """Loader telemetry (run.json) to tell the cause."""
    if (r := needs_steps(ctx)) is not None:
        return r
    if ctx.loading is None:
        return "no loader telemetry (a saved trace without run.json): the cause cannot be measured"
    return None


def needs_machine(ctx: Context) -> str | None:
    """Machine facts (run.json) for the core budget."""
    if ctx.facts is None or ctx.budget is None:
        return "no machine facts (run.json): the core budget is unknown"
    return None


def needs_gpu(ctx: Context) -> str | None:
    """GPU activity in the trace."""
    if (r := needs_steps(ctx)) is not None:
        return r
    if not ctx.analysis.has_gpu_activity:
        return "no GPU activity in the trace"
    return None


def needs_workers(ctx: Context) -> str | None:
    """Worker processes."""
    if (r := needs_steps(ctx)) is not None:
        return r
    if not ctx.multi_process:
        return "num_workers=0: no worker processes"
    return None


def always(ctx: Context) -> str | None:
    """No precondition."""
    return None


def sweep_command(ctx: Context, *, workers: Sequence[int | None] = (), threads: bool = False) -> str:
    """The ``tracelens sweep`` command that measures what an estimate cannot: ``workers`` as
    ``--num-workers``, and the main process's math threads (1 and the current count) with ``threads``."""
    f = ctx.facts
    flags: list[str] = []
    counts = sorted({w for w in workers if w is not None})
    if len(counts) == 1:  # a sweep compares: the count beside twice as many (0 beside 2)
        counts = sorted({counts[0], 2 * counts[0] or 2})
    if counts:
        flags += ["--num-workers", ",".join(str(w) for w in counts)]
    if threads and f is not None and f.torch_threads_main and f.torch_threads_main > 1:
        flags += ["--main-threads", f"1,{f.torch_threads_main}"]
    rec = f.recording if f is not None else None
    if rec is None or rec.kind == "api":
        target = ["train.py", "ARGS"]
    else:
        target = (["-m", shlex.quote(rec.target)] if rec.kind == "module" else [shlex.quote(rec.target)])
        target += [shlex.quote(a) for a in rec.args]
    return " ".join(["tracelens sweep", *flags, *target])
