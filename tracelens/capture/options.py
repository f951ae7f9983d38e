"""Options and result of one profiled run, and the analysis step a caller hands in (torch-free:
the CLI builds these before torch loads).

The recorder knows nothing of its consumers: whoever calls :func:`run_profile
<tracelens.capture.parent.profile.run_profile>` or :func:`profile
<tracelens.capture.script.inline.profile>` passes the step that analyzes the finished run
directory (the CLI and ``tracelens.profile`` pass ``tracelens.api.write_run_outputs``), and
its return value rides on the result as ``analysis``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

#: What the caller's analysis step returns (``tracelens.document.result.Result`` for the CLI's).
A = TypeVar("A")
#: The analysis step: a finished run (or job) directory in; ``analysis.json`` and
#: ``report.html`` written into it; what it found returned.
Analyze = Callable[[Path], A]

#: Loader constructor arguments that ``loader_overrides`` may set (the ``sweep`` knobs).
OVERRIDABLE_LOADER_ARGS = frozenset(
    {
        "num_workers",
        "pin_memory",
        "persistent_workers",
        "prefetch_factor",
        "batch_size",
        "multiprocessing_context",
        "timeout",
    }
)

DEFAULT_WARMUP_STEPS = 2
DEFAULT_ACTIVE_STEPS = 20
DEFAULT_TELEMETRY_INTERVAL_MS = 100.0


@dataclass(frozen=True)
class ProfileOptions:
    """Everything ``tracelens profile`` flags set.

    ``target`` is a script path, or a module name when ``module`` is true; ``args`` reach the
    script as ``sys.argv[1:]``. ``wait``/``active`` of ``None`` mean "chosen for the loader"
    (``wait`` skips worker start-up and the pre-filled prefetch queue; ``active`` defaults to
    20 batches, shrunk to fit a short loader). ``out`` is the run directory itself; when
    ``None`` it is ``runs_root/<stem>-<YYYYmmdd-HHMMSS>``.
    """

    target: str
    args: tuple[str, ...] = ()
    module: bool = False
    out: Path | None = None
    runs_root: Path = Path("tracelens-runs")
    force: bool = False
    wait: int | None = None
    warmup: int = DEFAULT_WARMUP_STEPS
    active: int | None = None
    run_to_completion: bool = False
    tensorboard_dir: Path | None = None
    no_report: bool = False
    telemetry_interval_ms: float = DEFAULT_TELEMETRY_INTERVAL_MS
    loader_overrides: dict[str, Any] = field(default_factory=dict)
    record_shapes: bool = False
    with_stack: bool = False
    profile_memory: bool = False
    #: Run the script in a child process supervised by this one (survives SIGKILL and crashes
    #: of the script); False records in this process (faster start, as ``with tracelens.profile()``).
    supervise: bool = True
    #: Record everything from the start until the first DataLoader iteration (the trace of a
    #: script that never iterates one); False starts the profiler only at the window.
    record_unstepped: bool = True

    @property
    def stem(self) -> str:
        """Name used in the default run directory: the script's stem or the module's last part."""
        if self.module:
            return self.target.rsplit(".", 1)[-1] or "module"
        return Path(self.target).stem or "script"

    def to_json(self) -> dict[str, Any]:
        """The options as JSON values (paths as strings), for the recording child process."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in out.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileOptions:
        """Inverse of :meth:`to_json`."""
        paths = {"out", "runs_root", "tensorboard_dir"}
        values: dict[str, Any] = {k: (Path(v) if k in paths and v is not None else v) for k, v in data.items()}
        values["args"] = tuple(data.get("args", ()))
        return cls(**values)

    def recording_flags(self) -> list[str]:
        """``tracelens profile`` flags that reproduce the recording settings (not --out, --force,
        --runs-root, --json), for the command each rank of a launched job runs."""
        flags = [f"--warmup={self.warmup}", f"--telemetry-interval-ms={self.telemetry_interval_ms}"]
        flags += [f"--wait={self.wait}"] if self.wait is not None else []
        flags += [f"--active={self.active}"] if self.active is not None else []
        flags += [f"--tensorboard={self.tensorboard_dir}"] if self.tensorboard_dir is not None else []
        switches = {"--run-to-completion": self.run_to_completion, "--no-report": self.no_report,
                    "--record-shapes": self.record_shapes, "--with-stack": self.with_stack,
                    "--profile-memory": self.profile_memory}
        return flags + [name for name, on in switches.items() if on]


@dataclass(frozen=True)
class ProfileResult(Generic[A]):
    """What one profiled run produced.

    ``exit_status`` is the script's own status (0, ``sys.exit(n)`` or ``os._exit(n)`` → n,
    exception → 1, Ctrl-C → 130, ended by signal s → 128 + s). ``stop_reason`` is run.json's
    (``window_captured``, ``finished``, ``exited``, ``error``, ``interrupted``, ``terminated``,
    ``killed``); ``outcome`` says in one line how the run ended and what was captured.
    """

    run_dir: Path
    exit_status: int
    stop_reason: str
    steps_captured: int
    batches_drawn: int
    window_captured: bool
    trace_path: Path | None
    run_json_path: Path
    tensorboard_dir: Path | None
    user_profiler: bool
    wall_s: float
    notes: tuple[str, ...] = ()
    analysis_path: Path | None = None  # set once the run is analyzed (:func:`analyzed`)
    report_path: Path | None = None
    analysis: A | None = None
    outcome: str | None = None
    signal: str | None = None
    rank: int | None = None  # the rank of a multi-process job (``RANK``), else None

    @property
    def has_trace(self) -> bool:
        """Whether the run left a trace to analyze."""
        return self.trace_path is not None

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the terminal (paths, steps, why a trace has no steps)."""
        lines = [f"run directory: {self.run_dir}"]
        if self.trace_path is not None:
            lines.append(f"trace: {self.trace_path} ({self.steps_captured} steps)")
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        if self.tensorboard_dir is not None:
            lines.append(f"tensorboard: tensorboard --logdir {self.tensorboard_dir}")
        lines.append(f"script stopped: {self.stop_reason} (exit status {self.exit_status})"
                     + (f": {self.outcome}" if self.outcome else ""))
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


@dataclass(frozen=True)
class JobResult(Generic[A]):
    """What a profiled multi-process job (``profile -- torchrun ...``) produced.

    ``job_dir`` holds one run directory per rank (``rank-<RANK>``) and the combined
    ``analysis.json`` / ``report.html``; ``exit_status`` is the launcher's.
    """

    job_dir: Path
    exit_status: int
    launcher: list[str]
    ranks: tuple[ProfileResult[Any], ...]
    analysis: A | None = None
    analysis_path: Path | None = None
    report_path: Path | None = None
    notes: tuple[str, ...] = ()

    @property
    def has_trace(self) -> bool:
        """Whether any rank left a trace to analyze."""
        return any(r.has_trace for r in self.ranks)

    def summary_lines(self) -> list[str]:
        """One line per rank, then the job's files and the launcher's status."""
        lines = [f"job directory: {self.job_dir} ({len(self.ranks)} rank run directories)"]
        for r in self.ranks:
            lines.append(f"  {r.run_dir.name}: {r.outcome or r.stop_reason} (exit status {r.exit_status})")
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        if self.launcher:
            lines.append(f"launcher exited with status {self.exit_status}")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines


_R = TypeVar("_R", ProfileResult[Any], JobResult[Any])


def analyzed(recorded: _R, directory: Path, analyze: Analyze[Any] | None, *, no_report: bool,
             what: str = "analysis") -> _R:
    """``recorded`` with the caller's analysis of ``directory`` (its ``analysis.json`` and
    ``report.html``); unchanged under ``--no-report``, with no step to run or no trace.

    The recording is already on disk: a failed analysis is a note, never a lost run.
    """
    if no_report or analyze is None or not recorded.has_trace:
        return recorded
    try:
        found = analyze(directory)
    except Exception as exc:
        return replace(recorded, notes=(*recorded.notes, f"{what} failed: {type(exc).__name__}: {exc}"))
    return replace(recorded, analysis=found, analysis_path=directory / "analysis.json",
                   report_path=directory / "report.html")
