"""Terminal summary of an analysis: the verdict, the numbers, the DataLoader change, findings.

The wording (verdict sentence, settings diff) is shared with the HTML report
(:mod:`tracelens.render.wording`). Colour only on a terminal that supports it: ``NO_COLOR``
(non-empty) turns it off, ``FORCE_COLOR`` on, ``TERM=dumb`` off. Strings from the trace are
stripped of control characters so a crafted name cannot drive the terminal.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable
from typing import Any, TextIO

from tracelens.document.distribution import rank_distribution
from tracelens.document.schema import AnalysisDocument, Document, JobDocument
from tracelens.render.breakdown import breakdown_line, breakdown_view
from tracelens.render.format import fmt_ms, visible
from tracelens.render.wording import (
    busy_machine_line,
    recommendation_view,
    settings_call,
    user_code_edit,
    verdict_sentence,
)
from tracelens.vocab import SETTING_KEYS, pct, severity_rank

__all__ = ["format_summary", "print_summary", "use_color"]

SEVERITY_COLOR = {"high": "1;31", "medium": "1;33", "low": "1;36", "info": "2"}
DIFF_COLOR = {"+": "32", "-": "31", " ": "0"}
TONE_COLOR = {"healthy": "1;32", "undetermined": "1;33"}
def use_color(stream: TextIO) -> bool:
    """Whether to colour output written to ``stream``."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty() and os.environ.get("TERM") != "dumb"



def _clean(s: Any) -> str:
    """``s`` with terminal control and direction-changing characters escaped (see ``visible``)."""
    return visible(s)


def _width() -> int:
    return max(60, min(110, shutil.get_terminal_size((100, 24)).columns))


def _wrap(text: str, indent: str) -> list[str]:
    return textwrap.wrap(_clean(text), width=_width(), initial_indent=indent, subsequent_indent=indent) or [indent]


def _first_sentence(text: str, at_least: int = 60) -> str:
    """The first sentences of ``text`` making at least ``at_least`` characters."""
    out = ""
    for part in re.split(r"(?<=[.!?])\s+", text.strip()):
        out = f"{out} {part}".strip()
        if len(out) >= at_least:
            break
    return out


def format_summary(doc: AnalysisDocument, color: bool = False, cwd: str | None = None) -> str:
    """A few lines a person reads at a glance, for one rank's document or a multi-rank one;
    ``cwd`` (the run's working directory) lets the change be shown as an edit of the user's file."""
    def c(code: str, s: str) -> str:
        return f"\x1b[{code}m{s}\x1b[0m" if color else s

    if isinstance(doc, JobDocument):
        return _format_ranks(doc, color, c, cwd)

    m = doc.metrics
    lines = [c("1", f"tracelens: {_clean(doc.source.path)}")]
    label = doc.diagnosis.replace("_", " ").upper()
    tone = TONE_COLOR.get(doc.diagnosis, "1;31")
    sentence = _wrap(verdict_sentence(doc), "  ")
    lines.append("  " + c(tone, label))
    lines += [c("1", ln) for ln in sentence]
    if m.step_time_ms_median is not None:
        n = m.measured_steps or doc.steps or 0
        lines.append(
            f"  step {fmt_ms(m.step_time_ms_median)} median over {n} step{'s' if n != 1 else ''}"
            f" · data wait {pct(m.data_wait_fraction)}"
            f" · exposed {pct(m.exposed_data_wait_fraction)}"
            f" · GPU busy {pct(m.gpu_busy_fraction)}"
        )
    parts = breakdown_view(doc)
    if parts is not None:
        lines += _wrap(breakdown_line(parts), "  ")
    if doc.fallback:
        lines += _wrap(f"steps: {doc.fallback}", "  ")
    busy = busy_machine_line(doc)
    if busy is not None:
        lines += [c("33", ln) for ln in _wrap(busy, "  ")]
    for w in doc.warnings:
        lines += [c("33", ln) for ln in _wrap(f"warning: {w}", "  ")]

    rec = recommendation_view(doc, edit=user_code_edit(doc, cwd))
    src = rec["source"]
    if rec["changed"]:
        lines.append("")
        fw = rec["framework"]
        if fw is not None:
            lines += [c("1", ln) for ln in _wrap(f"{fw['framework']}: {fw['text']}", "  ")]
            lines += [c(DIFF_COLOR[d["op"]], f"  {d['op']} {_clean(d['text'])}") for d in fw["lines"]]
        if src is not None and src["lines"]:
            lines.append(c("1", f"  edit the {src['target']}(...) call at {_clean(src['where'])}:"))
        else:
            if src is not None and src["problem"]:
                lines += _wrap(f"your code could not be edited: {src['problem']}; the settings to use:", "  ")
            where = f" ({_clean(rec['created_at'])})" if rec["created_at"] else ""
            lines.append(c("1", f"  {'the same as a ' if fw and fw['lines'] else ''}change to {rec['call']}{where}:"))
        lines += [c(DIFF_COLOR.get(d["op"], "2"), f"  {_clean(d['text'])}" if d["op"] == "@" else f"  {d['op']} {_clean(d['text'])}")
                  for d in rec["diff"]]
        if src is not None and src["unresolved"]:
            lead = ("also, by hand: " if src["lines"] else
                    f"the call at {src['where']} takes these from keyword arguments built elsewhere: set ")
            lines += _wrap(lead + "; ".join(src["unresolved"]), "  ")
        if rec["knob_advice"]:
            lines += _wrap(f"- {rec['knob_advice']}", "    ")
        if rec["env"]:
            lines.append(c("1", "  and start training with:"))
            lines += [c(DIFF_COLOR["+"], f"  + export {_clean(e)}") for e in rec["env"]]
        if rec["expected"]:
            bound = f", at most {rec['bound']}" if rec["bound"] else ""
            lines.append(f"  expected: steps up to {rec['expected']} faster (estimate{bound})")
        if rec["measure"]:
            lines += _wrap(f"measure the gain on this machine: {rec['measure']}", "  ")
    elif rec["keep"]:
        lines.append("  keep the DataLoader settings as they are (the trace does not show "
                     + ", ".join(rec["keep"]) + ")")
    else:
        recommended = {k: getattr(doc.recommendation, k) for k in SETTING_KEYS}
        lines.append("  keep the DataLoader settings: " + settings_call(recommended))
    for note in doc.recommendation.notes:
        lines += _wrap("- " + _first_sentence(note), "    ")

    if doc.findings:
        lines.append("")
        lines.append(c("1", "  findings:"))
        for f in sorted(doc.findings, key=lambda f: -severity_rank(f.severity)):
            sev = c(SEVERITY_COLOR.get(f.severity, "0"), f"{f.severity.upper():<6}")
            head = _wrap(f"{f.id} {f.title} (confidence {f.confidence:.0%})", " " * 11)
            lines.append(f"    {sev} " + head[0].lstrip())
            lines += head[1:]
            if f.advice and f.severity in ("high", "medium"):
                lines += [c("2", ln) for ln in _wrap(_first_sentence(f.advice), " " * 11)]
    return "\n".join(lines)


#: Up to this many ranks the terminal lists every one; beyond, the spread and the worst ranks.
RANK_TABLE_MAX = 16


def _rank_row(r: Document, slowest: int) -> str:
    m = r.metrics
    verdict = f"waits for rank {r.waits_for_rank}" if r.waits_for_rank is not None else r.diagnosis
    return (f"  {r.rank:>5}  {r.steps:>5}  {fmt_ms(m.step_time_ms_median):>12}  "
            f"{pct(m.data_wait_fraction):>9}  {pct(m.exposed_data_wait_fraction):>8}  "
            f"{fmt_ms(m.collective_ms_per_step or 0.0):>11}  "
            f"{pct(m.gpu_busy_fraction):>8}  {verdict}" + (" <- slowest" if r.rank == slowest else ""))


def _spread_lines(doc: JobDocument) -> list[str]:
    """The spread of data wait across many ranks, and the worst of them."""
    dist = rank_distribution(doc.ranks)
    lines = []
    for label, sp in (("data wait", dist.data_wait), ("exposed wait", dist.exposed_wait)):
        lines.append(f"  {label:<13} median {pct(sp.median)}, p90 {pct(sp.p90)}, max {pct(sp.max)} "
                     f"(of step time, over {sp.ranks:,} ranks)")
    lines.append(f"  the {len(dist.worst)} ranks waiting most (exposed data wait):")
    by_rank = {r.rank: r for r in doc.ranks}
    lines += [f"{_rank_row(by_rank[w.rank], doc.slowest_rank)}  {_clean(w.name)}" for w in dist.worst if w.rank in by_rank]
    return lines


def _format_ranks(doc: JobDocument, color: bool, c: Callable[[str, str], str], cwd: str | None = None) -> str:
    ranks = doc.ranks
    lines = [c("1", f"tracelens: {len(ranks):,} ranks in {_clean(doc.source.path)}")]
    header = (f"  {'rank':>5}  {'steps':>5}  {'step median':>12}  {'data wait':>9}  {'exposed':>8}  "
              f"{'collectives':>11}  {'GPU busy':>8}  diagnosis")
    if len(ranks) <= RANK_TABLE_MAX:
        lines.append(header)
        for r in ranks:
            row = _rank_row(r, doc.slowest_rank)
            lines.append(c("1", row) if r.rank == doc.slowest_rank else row)
    else:
        lines += _spread_lines(doc)
    for f in doc.findings:
        if f.kind == "rank_straggler":
            lines.append("")
            lines += [c(SEVERITY_COLOR.get(f.severity, "0"), ln) for ln in _wrap(f"{f.id} {f.title}", "  ")]
            lines += _wrap(_first_sentence(f.advice), "    ")
    lines.append("")
    lines.append(c("1", f"Slowest rank {doc.slowest_rank}") + " (every rank waits for it at the next collective):")
    lines.append(format_summary(doc.slowest(), color, cwd))
    return "\n".join(lines)


def print_summary(doc: AnalysisDocument, stream: TextIO | None = None, cwd: str | None = None) -> None:
    """Print :func:`format_summary`, with colour when the stream is a colour terminal."""
    out = stream or sys.stdout
    text = format_summary(doc, color=use_color(out), cwd=cwd) + "\n"
    try:
        out.write(text)
    except UnicodeEncodeError:  # a terminal that cannot show "×" or "·"
        enc = getattr(out, "encoding", None) or "ascii"
        out.write(text.encode(enc, "replace").decode(enc))
