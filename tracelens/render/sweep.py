"""Rendering of a sweep: the terminal table and the one-file HTML page with the scaling curve."""

from __future__ import annotations

from typing import Any

from tracelens.render.charts import nice_axis, stacked_bars_spec
from tracelens.render.format import fmt_ms
from tracelens.render.html import render_page
from tracelens.render.wording import settings_diff


def sweep_diff(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The ``DataLoader(...)`` change from the script's own settings to the chosen ones."""
    if doc["best"] is None:
        return []
    best = doc["best"]
    return settings_diff(doc["baseline"] or {}, best, unknown_note="the script's own value is unknown",
                         threads_main=best.get("torch_threads_main"),
                         threads_per_worker=best.get("torch_threads_per_worker"))


def format_sweep(doc: dict[str, Any]) -> str:
    """The terminal table and the choice."""
    has_samples = any(t.get("samples_per_s") for t in doc["trials"])
    head = f"  {'setting':<12} {'steps/s':>9} {'IQR':>7} {'min–max':>15}"
    head += f" {'samples/s':>10}" if has_samples else ""
    head += f" {'data wait':>9} {'worker CPU':>10} {'cores used':>10} {'CPU wait':>8} {'others':>6} {'rounds':>6}"
    lines = [head]
    for i, t in enumerate(doc["trials"]):
        mark = " <- best" if i == doc.get("best_index") else " (fastest)" if i == doc.get("fastest") else ""
        cpu = "n/a" if t["worker_cpu_fraction"] is None else f"{100 * t['worker_cpu_fraction']:.0f} %"
        row = (f"  {t['label']:<12} {t['steps_per_s']:>9,.1f} {t['steps_per_s_spread']:>7,.1f} "
               f"{t['steps_per_s_min']:>7,.1f}–{t['steps_per_s_max']:<7,.1f}")
        if has_samples:
            row += f" {t['samples_per_s'] or 0:>10,.0f}"
        used = "n/a" if t.get("cores_used") is None else f"{t['cores_used']:.2f}"
        rq = "n/a" if t.get("run_queue_delay_per_s") is None else f"{t['run_queue_delay_per_s']:.2f}"
        others = "n/a" if t.get("other_cpu_cores") is None else f"{t['other_cpu_cores']:.2f}"
        rounds = f"{len(t.get('rounds') or [])}{'*' if t.get('stopped_early') else ''}"
        row += f" {100 * t['exposed_data_wait_fraction']:>7.1f} % {cpu:>10} {used:>10} {rq:>8} {others:>6} {rounds:>6}{mark}"
        if t.get("unusable"):
            row = f"  {t['label']:<12} not compared: {t.get('error') or t.get('unusable')}"
        lines.append(row)
    lines.append("")
    lines.append(doc["reason"])
    lines.extend(ceiling_lines(doc.get("ceiling")))
    if doc["best"] is not None:
        lines.append("")
        lines.extend(f"  {ln['op']} {ln['text']}" for ln in sweep_diff(doc))
    for n in doc.get("notes", []):
        lines.append(f"note: {n}")
    dist = doc.get("disturbance")
    if dist and dist.get("too_disturbed"):
        lines.append(f"warning: {dist['text']}")
    lines.append("(cores used: CPU seconds per second of the trial's processes; CPU wait: seconds per "
                 "second their threads waited runnable for a core — a busy machine or more threads "
                 "than cores; others: cores used by processes outside the sweep during the trial's "
                 "rounds; rounds: * = stopped early, see the notes)")
    return "\n".join(lines)


def ceiling_lines(c: dict[str, Any] | None) -> list[str]:
    """The measured and estimated ceilings, for the terminal."""
    if not c:
        return []
    measured = "n/a" if c["measured"] is None else f"{c['measured']:.2f}×"
    if c.get("measured_ci"):
        measured += f" ({c['measured_ci'][0]:.2f}–{c['measured_ci'][1]:.2f} round by round)"
    estimated = "n/a" if c["estimated"] is None else f"{c['estimated']:.2f}×"
    step = "n/a" if c.get("compute_step_ms") is None else f"{c['compute_step_ms']:.2f} ms"
    out = ["", f"Speed-up ceiling (a free loader): measured {measured}, estimated {estimated} "
               f"(1 / (1 − exposed data wait) of num_workers={c.get('baseline_label')}); "
               f"replay {c['replay_steps_per_s']:,.1f} steps/s, a compute-bound step of {step}."]
    out += [f"  ceiling note: {n}" for n in c.get("notes", [])]
    return out


def scaling_chart(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The scaling curve: mean rate per setting (in num_workers order) with the interquartile
    range (box) and min–max (whisker) of its window rates; the y axis from the report's
    :func:`tracelens.report.nice_axis`."""
    trials = [(i, t) for i, t in enumerate(doc["trials"]) if not t.get("unusable")]
    if not trials:
        return None
    trials.sort(key=lambda it: (it[1]["num_workers"], it[1]["label"]))
    points = []
    for i, t in trials:
        points.append({
            "label": t["label"], "rate": t["steps_per_s"], "q1": t["steps_per_s_q1"], "q3": t["steps_per_s_q3"],
            "min": t["steps_per_s_min"], "max": t["steps_per_s_max"], "is_best": i == doc.get("best_index"),
            "tip": (f"num_workers={t['label']}: {t['steps_per_s']:,.1f} steps/s (all steps / all time); "
                    f"window rates {t['steps_per_s_min']:,.1f}–{t['steps_per_s_max']:,.1f}, "
                    f"IQR {t['steps_per_s_q1']:,.1f}–{t['steps_per_s_q3']:,.1f}; "
                    f"data wait {100 * t['exposed_data_wait_fraction']:.1f} %"),
        })
    top = max(max(p["max"], p["rate"]) for p in points)
    return {"title": "Throughput against the setting", "points": points,
            "y_axis": nice_axis(top, unit="steps/s"),
            "note": "Dot: mean rate (all measured steps / their time); box: interquartile range of the "
                    "window rates; whisker: min–max; green: the chosen setting."}


def step_split_chart(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Mean step time per setting, split into the exposed data wait and the rest (stacked bars)."""
    trials = sorted((t for t in doc["trials"] if not t.get("unusable") and t["steps_per_s"] > 0),
                    key=lambda t: (t["num_workers"], t["label"]))
    if not trials:
        return None
    bars = []
    for t in trials:
        step = 1000.0 / t["steps_per_s"]
        wait = step * t["exposed_data_wait_fraction"]
        bars.append({"label": t["label"], "values": [round(wait, 4), round(max(step - wait, 0.0), 4)],
                     "tip": f"num_workers={t['label']}: step {fmt_ms(step)}, of which waiting for data "
                            f"{fmt_ms(wait)} ({100 * t['exposed_data_wait_fraction']:.1f} %)"})
    return stacked_bars_spec(
        "Mean step time: waiting for data and the rest",
        [{"key": "wait", "label": "waiting for data (DataLoader.__next__)", "cls": "c-exposed"},
         {"key": "rest", "label": "the rest of the step", "cls": "c-other"}],
        bars, y_unit="ms", x_label="num_workers",
    )


def render_sweep_html(doc: dict[str, Any]) -> str:
    """The one-file report page (the report's base layout and chart macros, offline): choice,
    scaling curve, step-time split, table and the DataLoader diff."""
    return render_page("sweep.html.j2", doc=doc, scaling=scaling_chart(doc), split=step_split_chart(doc),
                       diff=sweep_diff(doc), command=" ".join([doc["command"]["target"], *doc["command"]["args"]]))
