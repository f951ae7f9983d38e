"""``analysis.json`` (``analyze --json``, SPEC §3) declared once, as msgspec structs.

:mod:`tracelens.document.build` builds these structs; :func:`encode_document` writes them and
:func:`decode_document` / :func:`read_document` read them back, so every consumer (the
renderers, compare, the CLI) holds the typed document. The field descriptions below are the
documentation: ``docs/analysis-json.md`` is generated from them (``python -m tracelens.docgen``).

Two shapes: :class:`Document`, one trace or one rank (a multi-rank job's rank objects are
Documents too), and :class:`JobDocument`, several ranks with the job's diagnosis. The keys SPEC §3
requires are required here; the others take their defaults when a file lacks them, so files of
earlier 1.x writers still load (one without ``tool`` reads as written by an unknown version).
Unknown keys are ignored. A key that is present only sometimes (``rank``, ``waits_for_rank``,
``failed_ranks``, a job finding's ``rank``) is omitted when it has no value, as it always was.

Times are ms and shares of step time are fractions (0..1) unless a name says otherwise; numbers
are rounded (ms to 4 decimals, fractions to 6) and ``null`` where the trace cannot give them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Annotated, Any, TypeAlias

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from tracelens.document import jsondoc
from tracelens.errors import BadInputError
from tracelens.runjson import OtherProcessCpu, Tool
from tracelens.vocab import DIAGNOSES, Severity

#: The analysis.json format this code writes and the newest it reads.
SCHEMA_VERSION = 1


def _d(text: str) -> Meta:
    return Meta(description=text)


def _present(value: Any) -> Any:
    return None if value is UNSET else value


class _Doc(Struct, frozen=True, kw_only=True):
    """Base of every analysis.json struct: frozen, keyword-only, unknown keys ignored."""


class Source(_Doc, frozen=True, kw_only=True):
    """What was analyzed."""

    path: Annotated[str, _d("the trace file, or the files of one rank joined by ` + `; a URL when read from storage")]
    format: Annotated[str, _d("`json` or `json.gz`")]
    ranks: Annotated[list[int] | None, _d("the rank the trace declares (`distributedInfo.rank`), else null")]
    devices: Annotated[list[str], _d("the GPUs with activity in the trace, e.g. `GPU 0: NVIDIA H100`")]


class StepBreakdown(_Doc, frozen=True, kw_only=True):
    """The median step split into disjoint parts from the trace's own events (``tracelens/breakdown.py``):
    the parts sum to ``step_ms``, which equals ``step_time_ms_median`` (for an even count of steps,
    the mean of the two middle steps' parts)."""

    steps: Annotated[list[int], _d("the step(s) it is made of: the middle one, or the two middle ones")]
    step_ms: Annotated[float, _d("its length; equals `step_time_ms_median`")]
    data_wait_exposed_ms: Annotated[float, _d("DataLoader `__next__` with the GPU idle")]
    data_wait_hidden_ms: Annotated[float, _d("DataLoader `__next__` while the GPU works")]
    forward_ms: Annotated[float, _d("from the batch's arrival to the first autograd event (or the optimizer, or the step's end)")]
    backward_ms: Annotated[float, _d("from the first to the last autograd event (the engine's thread counts)")]
    optimizer_ms: Annotated[float, _d("`Optimizer.step#…` and `Optimizer.zero_grad#…`")]
    collective_ms: Annotated[float, _d("collective communication outside the parts above")]
    other_ms: Annotated[float, _d("the rest of the step")]
    gpu_busy_ms: Annotated[float | None, _d("GPU activity in it (beside the parts, not one of them); null without a GPU")] = None

    def parts(self) -> dict[str, float]:
        """The parts in reading order (ms), keyed by their field names."""
        return {k: float(getattr(self, k)) for k in PART_FIELDS}


#: The parts of a step breakdown, in the order a reader follows a step (they sum to the step).
PART_FIELDS = ("data_wait_exposed_ms", "data_wait_hidden_ms", "forward_ms", "backward_ms", "optimizer_ms",
               "collective_ms", "other_ms")


class Metrics(_Doc, frozen=True, kw_only=True):
    """The SPEC §2 metrics over the measured steps."""

    step_time_ms_median: Annotated[float | None, _d("median host step duration")]
    data_wait_fraction: Annotated[float | None, _d("time in DataLoader `__next__` / step time")]
    exposed_data_wait_fraction: Annotated[float | None, _d(
        "data wait with no GPU activity / step time (equals `data_wait_fraction` without GPU activity)")]
    gpu_busy_fraction: Annotated[float | None, _d("GPU activity (kernels, copies, memsets) / step time; null without any")]
    step_time_ms_total: Annotated[float | None, _d("the measured steps' durations summed")] = None
    measured_steps: Annotated[int, _d("the steps the metrics cover (`steps`, or the fallback's)")] = 0
    speedup_ceiling: Annotated[float | None, _d("1 / (1 − exposed_data_wait_fraction): steps if the exposed wait were gone")] = None
    gpu_idle_other_fraction: Annotated[float | None, _d("GPU idle and not waiting for data / step time")] = None
    sync_ms_per_step: Annotated[float | None, _d("host time in device, stream and event synchronizations per step")] = None
    next_calls: Annotated[int, _d("DataLoader `__next__` events in the trace")] = 0
    collective_ms_per_step: Annotated[float | None, _d("time inside collective communication per step; null: none seen")] = None
    step_breakdown: Annotated[StepBreakdown | None, _d("the median step split into its parts; null without steps")] = None

    def mean_step_ms(self) -> float | None:
        """The mean measured step (ms)."""
        total, n = self.step_time_ms_total, self.measured_steps
        return float(total) / n if total is not None and n else None

    def exposed_wait_ms_per_step(self) -> float | None:
        """Mean exposed data wait per step (ms): the exposed fraction of the total step time, per step."""
        frac, total, n = self.exposed_data_wait_fraction, self.step_time_ms_total, self.measured_steps
        return None if frac is None or total is None or not n else float(frac) * float(total) / n


class Loader(_Doc, frozen=True, kw_only=True):
    """The DataLoader the numbers are about: its settings as known, and which loader it is
    (from run.json; null for a bare trace)."""

    iterator: Annotated[str, _d("`single_process`, `multi_process` or `unknown`, from the `__next__` event names")]
    num_workers: Annotated[int | None, _d("null: unknown (not in the trace)")]
    pin_memory: Annotated[bool | None, _d("null: unknown")]
    persistent_workers: Annotated[bool | None, _d("null: unknown")]
    prefetch_factor: Annotated[int | None, _d("null: unknown, or no workers")]
    iterator_names: Annotated[list[str], _d("the distinct `__next__` event names")] = field(default_factory=list)
    id: Annotated[int | None, _d("its number in run.json's `loaders`")] = None
    cls: Annotated[str | None, _d("its class (module.qualname)")] = field(default=None, name="class")
    dataset_class: Annotated[str | None, _d("the dataset's class")] = None
    dataset_len: Annotated[int | None, _d("`len(dataset)` when defined")] = None
    batches_per_epoch: Annotated[int | None, _d("`len(loader)` when defined")] = None
    batch_size: Annotated[int | None, _d("DataLoader argument")] = None
    created_at: Annotated[str | None, _d("where it was built: `file:line in function`")] = None
    framework: Annotated[str | None, _d("`transformers`, `lightning`, `accelerate`, or null (the script's own)")] = None
    training: Annotated[bool | None, _d("its batches fed backward passes; null when not seen")] = None
    pipeline: Annotated[dict[str, Any], _d(
        "the pipeline's own knobs when it is no plain DataLoader (run.json's `loaders[].pipeline`)")] = field(
        default_factory=dict)
    max_workers: Annotated[int | None, _d("the most workers that get data (a sharded dataset's shards)")] = None


class Recommendation(_Doc, frozen=True, kw_only=True):
    """The complete DataLoader settings to use next, composed from every finding that changes one."""

    num_workers: Annotated[int | None, _d("null: keep the current value (see `keep_current`)")]
    pin_memory: Annotated[bool | None, _d("null: keep the current value")]
    persistent_workers: Annotated[bool | None, _d("null: keep the current value")]
    prefetch_factor: Annotated[int | None, _d("null: PyTorch's default, or keep the current value")]
    notes: Annotated[list[str], _d("the reasoning, one paragraph per change")]
    expected_speedup: Annotated[float | None, _d("predicted step-rate gain of applying these settings (1.0: none)")] = None
    torch_threads_per_worker: Annotated[int | None, _d("`torch.set_num_threads` in each worker; null: leave it")] = None
    torch_threads_main: Annotated[int | None, _d("`torch.set_num_threads` in the main process; null: leave it")] = None
    env: Annotated[dict[str, str], _d("environment variables to start training with (thread counts)")] = field(
        default_factory=dict)
    keep_current: Annotated[list[str], _d("settings the evidence does not show: keep their current value")] = field(
        default_factory=list)
    knob: Annotated[str | None, _d(
        "where `num_workers` (the concurrency) goes: `DataLoader.num_workers`, `StatefulDataLoader.num_workers`, "
        "`ParallelMapper.num_workers`, `WebLoader.num_workers`, `concurrency` (a generator)")] = None
    knob_advice: Annotated[str | None, _d("how to apply it in that pipeline's own terms")] = None
    expected_speedup_bound: Annotated[float | None, _d(
        "the most the change can gain, from the evidence named in `expected_basis` (never below `expected_speedup`)")] = None
    expected_basis: Annotated[str | None, _d(
        "where the gain and its bound come from, and what they leave out")] = None
    measure_with: Annotated[str | None, _d(
        "the `tracelens sweep` command that measures what one run cannot estimate (null: nothing left out)")] = None
    parts: Annotated[list[RecommendationPart], _d("each changed setting and the finding it comes from")] = field(
        default_factory=list)


class RecommendationPart(_Doc, frozen=True, kw_only=True):
    """One setting of the recommendation and the finding it comes from."""

    setting: Annotated[str, _d("the setting (`env.NAME` for an environment variable)")]
    value: Annotated[Any, _d("its value")] = None
    rule: Annotated[str, _d("the finding's rule id")] = ""
    kind: Annotated[str, _d("the finding's kind")] = ""
    reason: Annotated[str, _d("the finding's title: the evidence behind the value")] = ""


class CpuSupplySummary(_Doc, frozen=True, kw_only=True):
    """run.json's CPU supply over the window (who else used the cores), window means in cores."""

    usable_cores: Annotated[float | None, _d("the cores the job may use")] = None
    busy_cores: Annotated[float | None, _d("busy cores of its CPUs (every process)")] = None
    job_cpu_cores: Annotated[float | None, _d("cores used by the job's own processes")] = None
    other_cpu_cores: Annotated[float | None, _d("cores used by processes outside the job")] = None
    cores_left: Annotated[float | None, _d("cores the job could use")] = None
    cgroup_throttled_fraction: Annotated[float | None, _d("share of the window the cgroup quota held it back")] = None
    pressure_fraction: Annotated[float | None, _d("CPU pressure (PSI some), machine-wide")] = None
    top_other_processes: Annotated[list[OtherProcessCpu], _d("the busiest processes outside the job")] = field(
        default_factory=list)


class Finding(_Doc, frozen=True, kw_only=True):
    """One rule's observation: the evidence that triggered it and what to do.

    ``evidence``, ``settings`` and ``thresholds`` are open mappings: each rule names its own
    evidence (docs/rules.md lists the rules), so a new rule adds keys without a schema change."""

    id: Annotated[str, _d("the rule, e.g. `TL103`")]
    kind: Annotated[str, _d("what it found, e.g. `io_bound`, `pageable_memcpy`, `rank_straggler`")]
    severity: Annotated[str, _d("`" + "`, `".join(reversed(Severity.names())) + "`")]
    confidence: Annotated[float, _d("0..1")]
    title: Annotated[str, _d("one line")]
    evidence: Annotated[dict[str, Any], _d(
        "the numbers behind it, named by the rule (free-form: units in the key's suffix, `_ms`, `_fraction`, ...)")]
    advice: Annotated[str, _d("what to do, in prose")]
    settings: Annotated[dict[str, Any], _d(
        "the settings it proposes (setting keys, `expected_speedup`, thread counts; free-form: the recommendation "
        "composes them)")] = field(default_factory=dict)
    thresholds: Annotated[dict[str, int | float], _d("the thresholds it compared with (diagnosis/thresholds.py)")] = field(
        default_factory=dict)
    rank_: Annotated[int | UnsetType, _d(
        "in a job document: the rank the finding comes from (absent on the job's own `rank_straggler`)")] = field(
        default=UNSET, name="rank")

    @property
    def rank(self) -> int | None:
        """The rank a job finding comes from; None for a rank's own findings and the job's own."""
        return _present(self.rank_)


class SkippedRule(_Doc, frozen=True, kw_only=True):
    """A rule whose precondition did not hold."""

    id: Annotated[str, _d("the rule")]
    reason: Annotated[str, _d("why it was not evaluated")]


class Device(_Doc, frozen=True, kw_only=True):
    """One GPU (trace process) with activity, measured on its own."""

    device: Annotated[int, _d("the trace's pid of the device")]
    label: Annotated[str, _d("`GPU <n>: <name>` from `deviceProperties`, else `GPU <n>`")]
    busy_ms: Annotated[float, _d("its activity inside the steps (unrounded)")]
    busy_fraction: Annotated[float, _d("its activity / step time")]
    exposed_data_wait_fraction: Annotated[float, _d("data wait while this device is idle / step time")]


class Copies(_Doc, frozen=True, kw_only=True):
    """Host-to-device copies inside the steps."""

    h2d_pageable: Annotated[int, _d("copies from pageable memory")] = 0
    h2d_pinned: Annotated[int, _d("copies from pinned memory")] = 0
    h2d_other: Annotated[int, _d("copies whose source memory is not named (e.g. ROCm's `Host -> Device`)")] = 0
    h2d_pageable_ms_per_step: Annotated[float, _d("pageable copy time per step (unrounded)")] = 0.0
    h2d_pageable_host_blocked_ms_per_step: Annotated[float, _d(
        "host time in copy calls while pageable copies ran, per step (unrounded)")] = 0.0


class TraceFacts(_Doc, frozen=True, kw_only=True):
    """What the file held and what reading it skipped."""

    events: Annotated[int, _d("events read")] = 0
    truncated: Annotated[bool, _d("the file ends early: analyzed up to its last complete event")] = False
    skipped_events: Annotated[int, _d("malformed events skipped")] = 0
    with_stack: Annotated[bool, _d("Python stacks were recorded")] = False
    has_gpu_activity: Annotated[bool, _d("kernel, memcpy or memset events")] = False
    bad_time_events: Annotated[int, _d("events skipped for an unusable `ts` or `dur`")] = 0
    bad_time_examples: Annotated[list[str], _d("a few of them: `name: dur=-5`")] = field(default_factory=list)
    dropped_steps: Annotated[int, _d("of which ProfilerStep# events (the step list is incomplete)")] = 0
    dropped_waits: Annotated[int, _d("of which DataLoader `__next__` events (waits may be missing)")] = 0
    zero_length_steps: Annotated[int, _d("steps of zero duration")] = 0


class StepRow(_Doc, frozen=True, kw_only=True):
    """One measured step (ms)."""

    step: Annotated[int, _d("its number (ProfilerStep#N, or the fallback's order)")]
    start_ms: Annotated[float | None, _d("from the first measured step's start")] = None
    duration_ms: Annotated[float | None, _d("its duration")] = None
    data_wait_ms: Annotated[float | None, _d("time in `__next__`")] = None
    gpu_busy_ms: Annotated[float | None, _d("GPU activity; null without any")] = None
    exposed_wait_ms: Annotated[float | None, _d("data wait with the GPU idle")] = None
    next_calls: Annotated[int, _d("`__next__` calls that started in it")] = 0
    next_longest_ms: Annotated[float | None, _d("the longest of them")] = None
    collective_ms: Annotated[float | None, _d("time inside collectives")] = None
    part_data_wait_exposed_ms: Annotated[float | None, _d("the step breakdown: data wait with the GPU idle")] = None
    part_data_wait_hidden_ms: Annotated[float | None, _d("data wait while the GPU works")] = None
    part_forward_ms: Annotated[float | None, _d("forward (the batch's arrival to the first autograd event)")] = None
    part_backward_ms: Annotated[float | None, _d("backward (the autograd events' span)")] = None
    part_optimizer_ms: Annotated[float | None, _d("the optimizer step and zero_grad")] = None
    part_collective_ms: Annotated[float | None, _d("collectives outside the parts above")] = None
    part_other_ms: Annotated[float | None, _d("the rest; the seven parts sum to `duration_ms`")] = None


class Document(_Doc, frozen=True, kw_only=True):
    """One trace, or one rank of a job (its traces analyzed together): SPEC §3."""

    schema_version: Annotated[int, _d(f"{SCHEMA_VERSION}")]
    tool: Annotated[Tool, _d("the writer (read from a file without it: version null)")] = field(default_factory=Tool)
    source: Source
    steps: Annotated[int, _d("host ProfilerStep# events (0 when a fallback found the steps)")]
    metrics: Metrics
    loader: Loader
    diagnosis: Annotated[str, _d("the main loader-related cause: `" + "`, `".join(DIAGNOSES) + "` (SPEC §3)")]
    recommendation: Recommendation
    findings: Annotated[list[Finding], _d("the main cause's finding first, then the rest")]
    diagnosis_confidence: Annotated[float | None, _d("0..1; null when undetermined")] = None
    rules_skipped: Annotated[list[SkippedRule], _d("rules whose precondition did not hold")] = field(default_factory=list)
    step_source: Annotated[str, _d("`profiler_steps`, `dataloader_next` (the fallback) or `none`")] = "none"
    fallback: Annotated[str | None, _d("how steps were found when the trace has no ProfilerStep#")] = None
    devices: Annotated[list[Device], _d("per GPU")] = field(default_factory=list)
    copies: Copies = field(default_factory=Copies)
    trace: TraceFacts = field(default_factory=TraceFacts)
    warnings: Annotated[list[str], _d("what the reader of the numbers should know about the file")] = field(
        default_factory=list)
    # Built as numpy columns (jsondoc.Rows / Values: read-only sequences of the same rows and
    # numbers), read from a file as lists.
    per_step: Annotated[Sequence[StepRow], _d("every measured step")] = field(default_factory=list)
    next_wait_ms: Annotated[Sequence[float], _d("each `__next__` wait inside the steps, in order")] = field(
        default_factory=list)
    cpu_supply: Annotated[CpuSupplySummary | None, _d(
        "who used the cores during the window (run.json `telemetry.supply`); null for a bare trace")] = None
    rank_: Annotated[int | UnsetType, _d(
        "the rank (a job's rank objects always; one trace when it declares one)")] = field(default=UNSET, name="rank")
    waits_for_rank_: Annotated[int | UnsetType, _d(
        "in a job: the straggler whose collective wait hides this rank's own data wait")] = field(
        default=UNSET, name="waits_for_rank")

    @property
    def rank(self) -> int | None:
        """The rank, when known."""
        return _present(self.rank_)

    @property
    def waits_for_rank(self) -> int | None:
        """The straggler this rank waits for at the collectives, when it does."""
        return _present(self.waits_for_rank_)

    def step_durations(self) -> list[float]:
        """Every measured step's duration (ms)."""
        return [float(r.duration_ms) for r in self.per_step if r.duration_ms is not None]


class JobSource(_Doc, frozen=True, kw_only=True):
    """The job analyzed."""

    path: Annotated[str, _d("the job's location as given (a directory or a URL)")]
    format: Annotated[str, _d("`directory`")] = "directory"
    ranks: Annotated[list[int], _d("the ranks analyzed, in order")] = field(default_factory=list)


class FailedRank(_Doc, frozen=True, kw_only=True):
    """A rank that could not be analyzed."""

    rank: Annotated[int | None, _d("its rank, when the plan knew it")]
    paths: Annotated[list[str], _d("its trace files")]
    error: Annotated[str, _d("why, in one line")]


class JobDocument(_Doc, frozen=True, kw_only=True):
    """Several ranks of one job: each rank's document, and the job's diagnosis, recommendation
    and findings (the slowest rank's, led by `rank_straggler` when one rank holds the others)."""

    schema_version: Annotated[int, _d(f"{SCHEMA_VERSION}")]
    tool: Annotated[Tool, _d("the writer (read from a file without it: version null)")] = field(default_factory=Tool)
    source: JobSource
    ranks: Annotated[list[Document], _d("each rank's document, with its `rank`")]
    slowest_rank: Annotated[int, _d("the rank with the largest exposed data wait: every rank waits for it")]
    slowest_rank_exposed_data_wait_fraction: Annotated[float | None, _d("its exposed data wait")] = None
    step_time_ms_median_max: Annotated[float | None, _d("the largest median step over the ranks")] = None
    diagnosis: Annotated[str, _d("the slowest rank's diagnosis")]
    recommendation: Annotated[Recommendation, _d("the slowest rank's, for every rank's loader")]
    findings: Annotated[list[Finding], _d("`rank_straggler` first when found, then the slowest rank's with their `rank`")]
    rank_straggler: Annotated[int | None, _d("the rank whose loader holds the others at the collectives")] = None
    failed_ranks_: Annotated[list[FailedRank] | UnsetType, _d("the ranks that could not be analyzed (absent: none)")] = field(
        default=UNSET, name="failed_ranks")

    @property
    def failed_ranks(self) -> list[FailedRank]:
        """The ranks that could not be analyzed (empty: none)."""
        return [] if isinstance(self.failed_ranks_, UnsetType) else self.failed_ranks_

    def slowest(self) -> Document:
        """The slowest rank's document."""
        return next((r for r in self.ranks if r.rank == self.slowest_rank), self.ranks[0])


#: What ``analyze --json`` writes: one trace's (or rank's) document, or a job's.
AnalysisDocument: TypeAlias = Document | JobDocument


def rank_documents(document: AnalysisDocument) -> list[Document]:
    """The rank objects of a document (a single-rank document is its own rank)."""
    return list(document.ranks) if isinstance(document, JobDocument) else [document]


def all_findings(document: AnalysisDocument) -> list[Finding]:
    """The job's findings and every rank's (a single document's own)."""
    if isinstance(document, Document):
        return list(document.findings)
    return [*document.findings, *(f for r in document.ranks for f in r.findings)]


# ----------------------------------------------------------------- encoding and decoding
def to_json(value: Any) -> bytes:
    """``value`` (structs, within plain containers) as indented JSON text, as analyze has always
    written it (ASCII, Python's float repr, struct fields in declaration order); a document's
    per-step columns (:mod:`tracelens.document.jsondoc`) as the lists they stand for."""
    return (jsondoc.dumps(value) + "\n").encode()


def encode_document(document: AnalysisDocument) -> bytes:
    """The analysis.json bytes of ``document`` (:func:`write_document` streams them instead)."""
    return to_json(document)


def write_document(document: AnalysisDocument, fp: IO[str]) -> None:
    """Write the analysis.json text of ``document`` to ``fp``, the per-step rows a block at a
    time (a document of millions of steps never becomes one string)."""
    jsondoc.write(document, fp)


class _Shape(Struct):
    """Just enough of a document to tell a job's from one rank's."""

    ranks: msgspec.Raw | UnsetType = UNSET
    schema_version: Any = None


_SHAPE = msgspec.json.Decoder(_Shape)
_DOCUMENT = msgspec.json.Decoder(Document)
_JOB_DOCUMENT = msgspec.json.Decoder(JobDocument)


def decode_document(data: bytes, path: str | Path = "analysis.json") -> AnalysisDocument:
    """Decode an analysis.json document of this version or an earlier 1.x one (``path`` only
    names the file in errors)."""
    try:
        shape = _SHAPE.decode(data)
        version = shape.schema_version
        if not isinstance(version, int) or isinstance(version, bool):
            raise BadInputError(path, "not a tracelens analysis document (no integer schema_version)")
        if version > SCHEMA_VERSION or version < 1:
            raise BadInputError(path, f"unsupported analysis.json schema_version {version} "
                                      f"(this tracelens reads 1 to {SCHEMA_VERSION}): upgrade tracelens")
        doc: AnalysisDocument = _DOCUMENT.decode(data) if shape.ranks is UNSET else _JOB_DOCUMENT.decode(data)
    except msgspec.ValidationError as exc:
        raise BadInputError(path, f"malformed analysis document: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadInputError(path, f"cannot read analysis document: {exc}") from None
    return doc


def read_document(path: str | Path) -> AnalysisDocument:
    """Read an analysis.json file (or a run directory's)."""
    p = Path(path)
    if p.is_dir():
        p = p / "analysis.json"
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise BadInputError(p, "no such file") from None
    except OSError as exc:
        raise BadInputError(p, f"cannot read it: {exc.strerror or exc}") from None
    return decode_document(data, p)
