"""Terminal summary of an analysis: the verdict, the numbers, the settings to use."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

VERDICTS = {
    "healthy": "The DataLoader keeps up: little of the step is spent waiting for data.",
    "input_bound": "The run is input-bound: the step waits for data.",
    "cpu_starvation": "The run is input-bound: loading is CPU-bound and short of processes doing it.",
    "io_bound": "The run is input-bound: loading mostly waits (I/O or latency), not computes.",
    "oversubscription": "Loader processes and threads oversubscribe the CPU cores and slow the step.",
    "undetermined": "The trace cannot say whether data loading slows this run.",
}
SEVERITY_COLOR = {"high": "31", "medium": "33", "low": "36", "info": "2"}


def _use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f} ms"


def settings_call(settings: dict[str, Any]) -> str:
    """``DataLoader(num_workers=..., ...)`` for the settings given."""
    keys = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")
    parts = [f"{k}={settings[k]!r}" for k in keys if settings.get(k) is not None]
    return "DataLoader(..., " + ", ".join(parts) + ")"


def format_summary(doc: dict[str, Any], color: bool = False) -> str:
    """A few lines a person reads at a glance, for one rank's document or a multi-rank one."""
    def c(code: str, s: str) -> str:
        return f"\x1b[{code}m{s}\x1b[0m" if color else s

    if "ranks" in doc and isinstance(doc["ranks"], list):
        lines = [c("1", f"tracelens: {len(doc['ranks'])} ranks in {doc['source']['path']}")]
        lines.append(f"  {'rank':>4}  {'steps':>5}  {'step median':>12}  {'data wait':>9}  {'exposed':>8}  {'GPU busy':>8}  diagnosis")
        for r in doc["ranks"]:
            m = r["metrics"]
            mark = " <- slowest" if r["rank"] == doc["slowest_rank"] else ""
            lines.append(
                f"  {r['rank']:>4}  {r['steps']:>5}  {_ms(m['step_time_ms_median']):>12}  "
                f"{_pct(m['data_wait_fraction']):>9}  {_pct(m['exposed_data_wait_fraction']):>8}  "
                f"{_pct(m['gpu_busy_fraction']):>8}  {r['diagnosis']}{mark}"
            )
        lines.append("")
        slow = next(r for r in doc["ranks"] if r["rank"] == doc["slowest_rank"])
        lines.append(c("1", f"Slowest rank {doc['slowest_rank']}") + " (every rank waits for it at the next collective):")
        lines.append(format_summary(slow, color))
        return "\n".join(lines)

    m = doc["metrics"]
    lines = [c("1", f"tracelens: {doc['source']['path']}")]
    verdict = VERDICTS.get(doc["diagnosis"], doc["diagnosis"])
    ceiling = m.get("speedup_ceiling")
    if doc["diagnosis"] not in ("healthy", "undetermined") and ceiling:
        verdict += f" Removing the exposed wait would make steps up to {ceiling:.2f}x faster."
    tone = "32" if doc["diagnosis"] == "healthy" else "33" if doc["diagnosis"] == "undetermined" else "31"
    lines.append(c(tone + ";1", f"  {doc['diagnosis']}: ") + verdict)
    steps_line = f"  steps: {doc['steps']}"
    if doc.get("fallback"):
        steps_line += f" ({doc['fallback']}; {m.get('measured_steps', 0)} measured)"
    lines.append(steps_line)
    if m["step_time_ms_median"] is not None:
        lines.append(f"  step time (median):   {_ms(m['step_time_ms_median'])}")
        lines.append(f"  data wait:            {_pct(m['data_wait_fraction'])} of step time")
        lines.append(f"  exposed data wait:    {_pct(m['exposed_data_wait_fraction'])} (GPU idle while waiting)")
        lines.append(f"  GPU busy:             {_pct(m['gpu_busy_fraction'])}")
    loader = doc["loader"]
    lines.append(f"  loader iterator:      {loader['iterator']}")
    for w in doc.get("warnings", []):
        lines.append(c("33", f"  warning: {w}"))
    findings = doc.get("findings", [])
    if findings:
        lines.append("  findings:")
        for f in findings:
            sev = c(SEVERITY_COLOR.get(f["severity"], "0"), f"[{f['severity']}]")
            lines.append(f"    {sev} {f['title']} (confidence {f['confidence']:.0%})")
            if f.get("advice"):
                lines.append(f"        {f['advice']}")
    rec = doc["recommendation"]
    lines.append("  recommended: " + c("1", settings_call(rec)))
    for n in rec.get("notes", []):
        lines.append(f"    - {n}")
    return "\n".join(lines)


def print_summary(doc: dict[str, Any], stream: TextIO | None = None) -> None:
    """Print :func:`format_summary`, with colour when the stream is a colour terminal."""
    out = stream or sys.stdout
    out.write(format_summary(doc, color=_use_color(out)) + "\n")
