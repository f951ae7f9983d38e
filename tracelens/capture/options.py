"""Options and result of one profiled run (torch-free: the CLI builds these before torch loads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracelens.results import Result

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

    @property
    def stem(self) -> str:
        """Name used in the default run directory: the script's stem or the module's last part."""
        if self.module:
            return self.target.rsplit(".", 1)[-1] or "module"
        return Path(self.target).stem or "script"


@dataclass(frozen=True)
class ProfileResult:
    """What one profiled run produced.

    ``exit_status`` is the script's own status (0, ``sys.exit(n)`` → n, exception → 1,
    Ctrl-C → 130). ``stop_reason`` is one of ``window_captured`` (tracelens stopped the script
    after the window), ``finished``, ``exited`` (``sys.exit`` with a non-zero status),
    ``error``, ``interrupted``.
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
    analysis_path: Path | None = None  # set once the run is analyzed (``runner.analyze_run``)
    report_path: Path | None = None
    analysis: Result | None = None

    def summary_lines(self) -> list[str]:
        """Human-readable lines for the terminal (paths, steps, why a trace has no steps)."""
        lines = [f"run directory: {self.run_dir}"]
        if self.trace_path is not None:
            lines.append(f"trace: {self.trace_path} ({self.steps_captured} steps)")
        if self.report_path is not None:
            lines.append(f"report: {self.report_path}")
        if self.tensorboard_dir is not None:
            lines.append(f"tensorboard: tensorboard --logdir {self.tensorboard_dir}")
        lines.append(f"script stopped: {self.stop_reason} (exit status {self.exit_status})")
        lines.extend(f"note: {note}" for note in self.notes)
        return lines
