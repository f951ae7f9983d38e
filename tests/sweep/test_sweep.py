"""sweep: statistics and choice (pure, fake trials), then short real CPU runs of a demo loader.
The rounds, the scheduling and the ceiling are in test_sweep_rounds.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.sweep.sweep_fakes import FakeWorld, table
from tracelens.render.sweep import format_sweep, render_sweep_html, sweep_diff
from tracelens.sweep import (
    Setting,
    SweepPlan,
    Throughput,
    choose,
    grid,
    next_auto_workers,
    parse_int_list,
    run_sweep,
    summarize,
    sweep_document,
    window_rates,
    write_outputs,
)
from tracelens.sweep.schedule import discard_steps, round_steps

DEMO = Path(__file__).resolve().parent / "sweep_scripts" / "loader_demo.py"


def tp(rate: float, spread: float = 0.0, ci: float | None = None) -> Throughput:
    """A throughput with window quartiles rate ± spread and a mean-rate interval rate ± ci."""
    ci = spread / 2 if ci is None else ci
    return Throughput(rate, 2 * spread, rate - spread, rate + spread, (rate,), 50, 0.1,
                      q1=rate - spread, q3=rate + spread, ci_lo=rate - ci, ci_hi=rate + ci)


def test_window_rates_average_bursts() -> None:
    # GIVEN 4 workers delivering in bursts: 3 ready batches (1 ms) then one 97 ms wait
    steps = [1_000_000, 1_000_000, 1_000_000, 97_000_000] * 5
    # THEN every 4-step window reads 40 steps/s, although the median step says 1000/s
    assert window_rates(steps, 5) == pytest.approx([40.0] * 5)


def test_summarize_pools_repeats_and_measures_wait() -> None:
    t = summarize([([10_000_000] * 10, [5_000_000] * 10), ([20_000_000] * 10, [0] * 10)], windows=2)
    assert t.window_rates == (100.0, 100.0, 50.0, 50.0)
    assert t.steps_per_s == pytest.approx(20 / 0.3)  # all steps / all time, not a mean of rates
    assert t.min == 50.0 and t.max == 100.0 and t.spread == pytest.approx(50.0)
    assert t.data_wait_fraction == pytest.approx(50 / 300)
    assert t.steps == 20


def test_choice_is_cheapest_within_noise() -> None:
    settings = [Setting(0), Setting(2), Setting(4), Setting(8)]
    c = choose(settings, [tp(10), tp(19.5), tp(20), tp(19.8)])
    assert c.fastest == 2 and c.best == 1  # 2 workers are within 5 % of 4 and cheaper
    c = choose(settings, [tp(10), tp(15), tp(20), tp(19.8)])
    assert c.best == 2


def test_noisy_fastest_does_not_absorb_a_clearly_slower_setting() -> None:
    # GIVEN 16 workers whose windows swing 70-290 steps/s and 0 workers steady at 12.6
    settings = [Setting(0), Setting(16)]
    c = choose(settings, [tp(12.6, 0.2), tp(117.0, 95.0)])
    # THEN the intervals of the mean rates do not overlap: 16 is chosen
    assert c.best == 1
    # AND overlapping intervals count as "cannot tell": the cheaper one is chosen
    assert choose(settings, [tp(100.0, 10.0, ci=8.0), tp(117.0, 15.0, ci=10.0)]).best == 0
    # BUT window rates that overlap (a busy machine) while the means are well measured do not
    # make a slower setting equal
    assert choose(settings, [tp(100.0, 20.0, ci=4.0), tp(117.0, 25.0, ci=5.0)]).best == 1


def test_bootstrap_interval_narrows_with_more_steps() -> None:
    rng = np.random.default_rng(1)
    short = summarize([(list(rng.integers(5_000_000, 15_000_000, 50)), [0] * 50)])
    long = summarize([(list(rng.integers(5_000_000, 15_000_000, 2000)), [0] * 2000)])
    assert short.ci_lo < short.steps_per_s < short.ci_hi
    assert long.ci_lo < long.steps_per_s < long.ci_hi
    assert (long.ci_hi - long.ci_lo) < (short.ci_hi - short.ci_lo)
    assert summarize([([10_000_000] * 20, [0] * 20)]).ci_lo == pytest.approx(100.0)


def test_choice_prefers_no_pinned_memory_then_shallow_prefetch() -> None:
    settings = grid([4], [False, True], [2, 8])
    rates = [tp(20.0), tp(21.0), tp(20.5), tp(20.2)]
    assert settings[choose(settings, rates).best] == Setting(4, False, 2)


def test_grid_drops_prefetch_without_workers() -> None:
    assert grid([0, 2], [None], [2, 4]) == [Setting(0), Setting(2, None, 2), Setting(2, None, 4)]
    assert Setting(0, None, None).overrides() == {"num_workers": 0}
    assert parse_int_list("0, 4,4,16", "x") == [0, 4, 16]
    with pytest.raises(ValueError):
        parse_int_list("a,b", "x")


def test_rounds_span_rounds_of_workers_and_skip_the_refilled_queue() -> None:
    # GIVEN 50 steps per setting over 3 rounds
    assert round_steps(50, 3, 0) == 17
    # THEN 16 workers still need 2 bursts of 16 batches per round
    assert round_steps(50, 3, 16) == 32
    # AND a round skips what the workers queued while the script was blocked, plus one
    assert discard_steps(4, 2, replay=False) == 9 and discard_steps(4, None, replay=False) == 9
    assert discard_steps(0, None, replay=False) == 1 and discard_steps(8, 2, replay=True) == 1


def _explore(curve: dict[int, float], start: int, max_workers: int = 64) -> list[int]:
    seen: dict[int, Throughput] = {}
    order = []
    while (w := next_auto_workers(seen, start, max_workers)) is not None:
        order.append(w)
        seen[w] = tp(curve[w])
    return order


def test_auto_doubles_until_no_gain_cpu_bound() -> None:
    # CPU-bound on 2 cores: throughput saturates at 2 workers
    curve = {0: 10, 1: 11, 2: 20, 4: 20.3, 8: 19}
    assert _explore(curve, 0) == [0, 1, 2, 4]
    assert _explore({0: 10, 1: 10.2, 2: 10.3, 4: 10}, 0) == [0, 1, 2]  # nothing helps


def test_auto_latency_bound_keeps_doubling_to_the_cap() -> None:
    curve = {w: 10.0 * max(w, 0.5) for w in (0, 1, 2, 4, 8, 16)}
    assert _explore(curve, 0, max_workers=16) == [0, 1, 2, 4, 8, 16]


def test_auto_from_a_recommendation_also_tries_cheaper() -> None:
    curve = {0: 10, 1: 19, 2: 20, 4: 20.2, 8: 20.1}
    assert _explore(curve, 4) == [4, 8, 2, 1]


def _world(rates: dict[int, float], **kw: Any) -> FakeWorld:
    return FakeWorld(table({str(k): v for k, v in rates.items()}), **kw)


def test_run_sweep_with_fake_trials_writes_spec_document(tmp_path: Path) -> None:
    plan = SweepPlan(target="train.py", settings=tuple(grid([0, 2, 4])), steps=20, usable_cores=2)
    result = run_sweep(plan, _world({0: 10.0, 2: 19.6, 4: 20.0}).launch)
    doc = sweep_document(result)
    assert doc["schema_version"] == 1
    assert doc["best"] == {"num_workers": 2, "pin_memory": False, "persistent_workers": False, "prefetch_factor": 2,
                           "torch_threads_main": None, "torch_threads_per_worker": None}
    t = doc["trials"][2]
    assert t["steps_per_s"] == pytest.approx(20.0, rel=1e-3) and t["samples_per_s"] == pytest.approx(1280, rel=1e-3)
    assert {"steps_per_s_spread", "exposed_data_wait_fraction", "pin_memory", "prefetch_factor"} <= set(t)
    assert doc["baseline"]["num_workers"] == 0
    assert "CPU-bound" in doc["reason"] and "up to the noise" in doc["reason"]
    json.dumps(doc, allow_nan=False)
    assert "+     num_workers=2," in format_sweep(doc)
    html = render_sweep_html(doc)
    assert "<svg" in html and "num_workers=2" in html


def test_run_sweep_auto_with_fake_trials() -> None:
    plan = SweepPlan(target="train.py", steps=10, usable_cores=2)
    result = run_sweep(plan, _world({0: 10, 1: 10.5, 2: 20, 4: 20.2, 8: 19.0, 16: 18}).launch, auto_start=0)
    assert [t.setting.num_workers for t in result.trials] == [0, 1, 2, 4]
    assert result.choice is not None and result.trials[result.choice.best].setting.num_workers == 2


def test_failed_trials_leave_no_choice_and_name_the_script_s_error() -> None:
    # GIVEN a script that raises before its loader is warm
    world = _world({0: 10.0}, fail_before_ready={"0": "ValueError: no data here"})
    result = run_sweep(SweepPlan(target="t.py", settings=(Setting(0),)), world.launch)
    # THEN there is no choice, and the reason is the script's exception, not the loader's absence
    assert result.choice is None and "ValueError: no data here" in result.reason
    doc = sweep_document(result)
    assert doc["best"] is None and "ValueError: no data here" in doc["trials"][0]["error"]
    assert "no loader fed" not in format_sweep(doc)


def test_a_trial_of_a_handful_of_steps_is_not_chosen() -> None:
    # GIVEN num_workers=0 measured properly, and 4 workers whose script ended before a round
    # gave 10 steps (3 steps, which look fastest)
    world = _world({0: 10.0, 4: 50.0}, end_after={"4": 0}, partial={"4": 3})
    result = run_sweep(SweepPlan(target="t.py", settings=(Setting(0), Setting(4)), steps=20), world.launch)
    # THEN the sweep does not choose from it, and sweep.json says why
    assert result.choice is not None and result.trials[result.choice.best].setting.num_workers == 0
    doc = sweep_document(result)
    assert doc["trials"][1]["unusable"] and doc["trials"][1]["steps_measured"] == 3
    assert "only 3 steady step(s)" in doc["trials"][1]["error"]


def test_sweep_diff_marks_changes_from_the_scripts_own_settings() -> None:
    doc = {"baseline": {"num_workers": 0, "pin_memory": False, "prefetch_factor": None},
           "best": {"num_workers": 4, "pin_memory": False, "prefetch_factor": 2}}
    lines = [(ln["op"], ln["text"]) for ln in sweep_diff(doc)]
    assert ("-", "    num_workers=0,") in lines and ("+", "    num_workers=4,") in lines
    assert (" ", "    pin_memory=False,") in lines
    assert not any("prefetch_factor" in text for _, text in lines)  # 2 is PyTorch's default with workers


@pytest.mark.slow
def test_real_sweep_on_the_article_loader(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # GIVEN the article's loader (1 ms sleep per item, batch 64) and 0 or 4 workers
    out = subprocess.run(
        [sys.executable, "-m", "tracelens", "sweep", "--num-workers", "0,4", "--steps", "20",
         "--out", str(tmp_path / "s"), "-q", str(DEMO), "--items", "6000"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "s" / "sweep.json").read_text())
    zero, four = doc["trials"]
    # THEN one process reads about 1/(64 × 1 ms) ≈ 15 batches/s and 4 sleeping workers
    # about 4× that even on 2 cores: the sweep picks 4
    assert 8 < zero["steps_per_s"] < 17
    assert four["steps_per_s"] > 2 * zero["steps_per_s"]
    assert four["num_workers"] == 4 and four["batch_size"] == 64
    assert doc["best"]["num_workers"] == 4
    assert zero["exposed_data_wait_fraction"] > 0.9
    assert (tmp_path / "s" / "report.html").read_text().count("<svg") == 2


@pytest.mark.slow
def test_real_trial_script_error_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('no data here')\n")
    out = subprocess.run([sys.executable, "-m", "tracelens", "sweep", "--num-workers", "0", "-q",
                          "--out", str(tmp_path / "s"), str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "not compared" in out.stdout and "SystemExit: 'no data here'" in out.stdout
    assert "no loader fed" not in out.stdout and "Traceback" not in out.stderr


def _assert_offline_page(html: str) -> None:
    """A tracelens page: the report's layout (CSP, shared CSS and script), nothing fetched."""
    assert html.startswith("<!doctype html>")
    assert "Content-Security-Policy" in html and "default-src" in html
    assert '<main class="page">' in html and "svg.svg-chart" in html  # base.html.j2 + tracelens.css
    body = html.split("<body>", 1)[1]
    assert "http" not in body and " src=" not in body and "<link" not in body


def test_sweep_page_uses_the_report_layout_and_chart_macros(tmp_path: Path) -> None:
    plan = SweepPlan(target="train.py", settings=tuple(grid([0, 2, 4])), steps=20, usable_cores=2)
    doc = sweep_document(run_sweep(plan, _world({0: 10.0, 2: 19.6, 4: 20.0}).launch))
    html = render_sweep_html(doc)
    _assert_offline_page(html)
    assert html.count('<svg class="svg-chart"') == 2  # scaling curve + step-time split
    assert "Throughput against the setting" in html and "waiting for data" in html
    assert 'class="ln add"' in html and "num_workers=2," in html  # the DataLoader diff
    assert "use num_workers=2" in html
    js, page = write_outputs(run_sweep(plan, _world({0: 10.0, 2: 19.6, 4: 20.0}).launch), tmp_path)
    assert page.read_text(encoding="utf-8").count("<svg") == 2 and js.is_file()


def test_sweep_page_without_measurements_renders() -> None:
    world = _world({0: 10.0}, fail_before_ready={"0": "RuntimeError: failed <x>"})
    doc = sweep_document(run_sweep(SweepPlan(target="t.py", settings=(Setting(0),)), world.launch))
    html = render_sweep_html(doc)
    _assert_offline_page(html)
    assert "no setting measured" in html and "failed &lt;x&gt;" in html and "<svg" not in html


def _busy_world(rates: dict[int, float], demand: float) -> FakeWorld:
    """Trials on a shared machine: workers that want a CPU ``demand`` of the time and, beyond
    2 workers, win CPU time from other processes, so more workers measure faster."""
    return _world(rates, demand=lambda s: demand if s.num_workers else None)


def test_cpu_bound_choice_stops_at_the_core_budget_on_a_busy_machine() -> None:
    # GIVEN CPU-bound loading on 2 cores shared with other work: 4 and 8 workers measure faster
    rates = {0: 15.0, 1: 15.0, 2: 18.0, 4: 30.0, 8: 27.0}
    plan = SweepPlan(target="t.py", settings=tuple(grid([0, 1, 2, 4, 8])), steps=20, usable_cores=2)
    result = run_sweep(plan, _busy_world(rates, demand=1.0).launch)
    # THEN the choice stays within the core budget, and 4 and 8 are stopped after one round
    assert result.choice is not None and result.trials[result.choice.best].setting.num_workers == 2
    assert all("CPU-bound" in (t.stopped or "") for t in result.trials if (t.setting.num_workers or 0) > 2)
    assert "CPU-bound" in result.reason and sweep_document(result)["cpu_bound"] is True
    # AND auto stops adding workers at the budget
    auto = run_sweep(SweepPlan(target="t.py", steps=20, usable_cores=2), _busy_world(rates, 1.0).launch, auto_start=0)
    assert [t.setting.num_workers for t in auto.trials] == [0, 1, 2]
    # BUT latency-bound loading (workers seldom want a CPU) may go beyond the cores
    result = run_sweep(plan, _busy_world(rates, demand=0.1).launch)
    assert result.choice is not None and result.trials[result.choice.best].setting.num_workers == 4


@pytest.mark.slow
def test_real_ceiling_replays_the_training_loader(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    # GIVEN a training loop of 5 ms per step fed by a loader of 64 × 1 ms in the main process
    out = subprocess.run(
        [sys.executable, "-m", "tracelens", "sweep", "--num-workers", "0", "--ceiling", "--steps", "20", "-q",
         "--out", str(tmp_path / "s"), str(DEMO), "--items", "100000", "--train", "--compute-ms", "5"],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads((tmp_path / "s" / "sweep.json").read_text())
    c = doc["ceiling"]
    # THEN the grid's 0 is the script's own loader, the replay is no trial, and both ceilings
    # say about (64 + 5) / 5: measured from the replay, estimated from the wait
    assert c["baseline_label"] == "0" and [t["label"] for t in doc["trials"]] == ["0"]
    assert c["replay"]["batches"] == 16 and c["replay"]["copied_on_serve"] is False
    assert 5 < c["measured"] < 25 and 5 < c["estimated"] < 25, c
    assert 0.5 < c["measured"] / c["estimated"] < 2
    assert 4 < c["compute_step_ms"] < 9
    assert "Speed-up ceiling (a free loader): measured" in out.stdout
    assert "Speed-up ceiling" in (tmp_path / "s" / "report.html").read_text()


def _trial_processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupted_sweep_leaves_no_trial_process(tmp_path: Path, sig: str) -> None:
    import signal
    import time

    pytest.importorskip("torch")
    out_dir = tmp_path / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracelens", "sweep", "--num-workers", "0,2", "--out", str(out_dir),
         str(DEMO), "--items", "1000000"], stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    # WHEN the sweep is interrupted once its trial processes (and their workers) measure
    for line in proc.stderr:
        if "round 1:" in line:
            break
    marker = str(out_dir / "trials")
    assert len(_trial_processes(marker)) >= 4  # two trials, two workers
    proc.send_signal(getattr(signal, sig))
    rest = proc.stderr.read()
    proc.wait(timeout=60)
    # THEN the sweep exits 128 + the signal with one line, no traceback
    assert proc.returncode == 128 + getattr(signal, sig), rest
    assert "Traceback" not in rest and rest.strip().splitlines()[-1].startswith("tracelens: ")
    # THEN every trial process and worker is gone
    deadline = time.monotonic() + 10
    while _trial_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _trial_processes(marker) == []


@pytest.mark.parametrize(("stop", "status", "line"), [
    ("SIGTERM", 143, "tracelens: terminated; the trials were ended"),
    ("SIGINT", 130, "tracelens: interrupted; the trials were ended"),
])
def test_a_stopped_sweep_exits_128_plus_the_signal_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        stop: str, status: int, line: str) -> None:
    import tracelens.cli
    import tracelens.sweep
    from tracelens.system.procs import Terminated

    def stopped(*args: object, **kwargs: object) -> None:
        raise Terminated() if stop == "SIGTERM" else KeyboardInterrupt()

    script = tmp_path / "train.py"
    script.write_text("pass\n")
    monkeypatch.setattr(tracelens.sweep, "sweep", stopped)
    monkeypatch.setattr(sys, "argv", ["tracelens", "sweep", "--num-workers", "0", "-q", str(script)])
    # WHEN the sweep is stopped by SIGTERM (raised as Terminated) or Ctrl-C
    with pytest.raises(SystemExit) as exit_:
        tracelens.cli.main()
    # THEN it exits 128 + the signal, with one line and no traceback
    err = capsys.readouterr().err
    assert exit_.value.code == status
    assert err.strip() == line and "Traceback" not in err
