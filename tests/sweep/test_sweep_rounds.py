"""sweep rounds: paired comparisons, early stops, interleaving, the bound on live trials, the
ceiling and the disturbance verdict (pure functions and fake trials; no process starts)."""

from __future__ import annotations

import math

import pytest

from tests.sweep.sweep_fakes import FakeWorld, table
from tracelens.render.sweep import format_sweep, render_sweep_html
from tracelens.sweep import REPLAY, Setting, SweepPlan, grid, paired, run_sweep, sweep_document
from tracelens.sweep.rounds import (
    Measured,
    RoundRecord,
    disturbance,
    equivalent,
    faster,
    measured,
    rotation,
    t90,
    throughput,
    undecided,
)


def rounds_of(rates: list[float], steps: int = 20, others: list[float] | None = None) -> list[RoundRecord]:
    out = []
    for i, r in enumerate(rates):
        out.append(RoundRecord(i + 1, (int(1e9 / r),) * steps, 0, other_cores=others[i] if others else None))
    return out


def m(label: int, rates: list[float], others: list[float] | None = None) -> Measured:
    return measured(Setting(label), rounds_of(rates, others=others))


def test_a_load_shared_by_both_settings_cancels_round_by_round() -> None:
    # GIVEN two settings whose rates swing 2x with the outside load, B always 10 % slower
    load = [1.0, 2.0, 1.3, 1.9, 1.1]
    a = m(2, [100 / x for x in load])
    b = m(0, [90 / x for x in load])
    # THEN unpaired, their rate intervals overlap widely; round by round A is 1.11x, surely
    assert a.throughput.ci_lo < b.throughput.ci_hi
    p = paired(a.rounds, b.rounds)
    assert p is not None and p.ratio == pytest.approx(100 / 90) and p.lo == pytest.approx(p.hi)
    assert faster(a, b) and not faster(b, a)


def test_paired_needs_three_common_rounds() -> None:
    a, b = rounds_of([100, 100]), rounds_of([50, 50])
    assert paired(a, b) is None
    # AND only rounds both measured are compared
    late = [RoundRecord(r, (10_000_000,) * 10, 0) for r in (2, 3, 4)]
    assert paired(rounds_of([100, 100, 100, 100]), late) is not None
    assert paired(rounds_of([100, 100]), late) is None


def test_equal_settings_are_equivalent_once_their_ratio_is_tight() -> None:
    a, b = m(2, [100, 101, 99, 100]), m(4, [101, 100, 100, 99])
    assert equivalent(a, b) and not faster(a, b) and not faster(b, a)
    assert undecided([a, b]) == []
    # BUT a noisy pair whose ratio swings both ways is neither
    c, d = m(2, [100, 130, 80, 100]), m(4, [110, 100, 100, 115])
    assert not equivalent(c, d) and not faster(c, d) and not faster(d, c)
    assert undecided([c, d]) == [(0, 1)]


def test_a_setting_slower_by_less_than_the_floor_is_not_beaten() -> None:
    a, b = m(4, [104, 104, 104]), m(2, [100, 100, 100])
    assert not faster(a, b)  # 4 % < the 5 % floor, however sure


def test_throughput_over_rounds_uses_a_t_interval_from_three_rounds() -> None:
    t = throughput(rounds_of([90, 100, 110]))
    assert t.steps == 60 and t.window_rates == (90.0, 100.0, 110.0)
    half = t90(2) * 10 / math.sqrt(3)
    assert t.ci_hi - t.ci_lo == pytest.approx(2 * half, rel=1e-6)
    assert t90(100) == 1.645 and math.isinf(t90(0))


def test_rotation_puts_every_setting_first_in_turn() -> None:
    keys = [0, 1, 2]
    firsts = [rotation(keys, r)[0] for r in range(1, 4)]
    assert sorted(firsts) == keys and rotation(keys, 1) == [1, 2, 0]


def test_too_disturbed_when_the_load_moved_and_the_settings_stayed_apart_undecided() -> None:
    # GIVEN two settings 8 % apart whose rounds the outside load moved by a core and more
    a = m(2, [100, 60, 100, 70], others=[0.1, 1.4, 0.2, 1.2])
    b = m(4, [108, 66, 90, 80], others=[0.1, 1.4, 0.2, 1.2])
    und = undecided([a, b])
    d = disturbance([a, b], und)
    assert und and d.too_disturbed and d.other_cores_max == pytest.approx(1.4)
    assert "too disturbed" in d.text
    # AND a quiet machine with separated settings is not
    q = disturbance([m(0, [50, 50, 50], [0.0] * 3), m(2, [100, 101, 99], [0.0] * 3)], [])
    assert not q.too_disturbed


# --- the scheduler, with fake trials ----------------------------------------------------------

def world(rates: dict[str, float], **kw: object) -> FakeWorld:
    return FakeWorld(table(rates), **kw)  # type: ignore[arg-type]


def test_rounds_interleave_the_settings_in_a_rotating_order() -> None:
    w = world({"0": 10.0, "2": 10.2, "4": 10.1})
    run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 4])), steps=20, max_rounds=4), w.launch)
    by_round: dict[int, list[str]] = {}
    for r, label in w.calls:
        by_round.setdefault(r, []).append(label)
    # THEN every round measures every setting once, each first in turn
    assert all(sorted(v) == ["0", "2", "4"] for v in by_round.values())
    assert {v[0] for v in by_round.values()} == {"0", "2", "4"}


def test_a_setting_that_cannot_win_stops_after_the_minimum_rounds() -> None:
    # GIVEN 0 workers 4x slower than 2 and 4, which are equal
    w = world({"0": 10.0, "2": 40.0, "4": 40.4})
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 4])), steps=20, max_rounds=8), w.launch)
    by = {t.setting.label(): t for t in result.trials}
    # THEN 0 is measured in 3 rounds only and says why; the sweep ends at 3 rounds, conclusive
    assert len(by["0"].rounds) == 3 and "cannot win" in (by["0"].stopped or "")
    assert len(by["2"].rounds) == 3 and len(result.rounds) == 3
    assert result.choice is not None and result.trials[result.choice.best].setting.num_workers == 2
    # AND without early stops every setting runs every round
    full = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 4])), steps=20, max_rounds=5,
                               early_stop=False), world({"0": 10.0, "2": 40.0, "4": 40.4}).launch)
    assert [len(t.rounds) for t in full.trials] == [5, 5, 5]


def test_an_undecided_pair_is_measured_until_the_maximum_rounds() -> None:
    # GIVEN 2 and 4 whose rates alternate which is faster round by round (the load moves)
    def rates(s: Setting) -> float:
        return {0: 10.0, 2: 40.0, 4: 40.0}[s.num_workers or 0]

    loads = {2: [1.0, 1.3, 0.8, 1.2, 0.9, 1.3], 4: [1.25, 0.9, 1.2, 0.85, 1.3, 0.9]}
    calls: dict[int, int] = {2: 0, 4: 0, 0: 0}

    def per_setting(s: Setting) -> float:
        w = s.num_workers or 0
        if w == 0:
            return rates(s)
        i = calls[w]
        calls[w] += 1
        return rates(s) / loads[w][i % 6]

    w = FakeWorld(per_setting)
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 4])), steps=20, max_rounds=6), w.launch)
    by = {t.setting.label(): t for t in result.trials}
    assert len(by["2"].rounds) == 6 and len(by["4"].rounds) == 6 and len(by["0"].rounds) == 3


def test_no_more_trials_alive_than_the_bound() -> None:
    w = world({str(k): 10.0 * (k + 1) for k in range(6)})
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid(list(range(6)))), steps=20, max_alive=2,
                                 usable_cores=8), w.launch)
    assert w.max_alive_seen <= 2 and len(w.launched) == 6
    assert result.choice is not None and result.trials[result.choice.best].setting.num_workers == 5


def test_settings_beyond_the_budget_of_cpu_bound_loading_are_not_started() -> None:
    # GIVEN CPU-bound loading and room for two trials at a time: 0 and 2 first, then 8 and 16
    w = world({"0": 10.0, "2": 20.0, "8": 21.0, "16": 21.0}, demand=lambda s: 1.0 if s.num_workers else None)
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 8, 16])), steps=20, max_alive=2,
                                 usable_cores=2), w.launch)
    # THEN 8 and 16 are never started, and the notes say why
    assert w.launched == ["0", "2"]
    assert sum("CPU-bound" in n and "not measured" in n for n in result.notes) == 2


def test_the_ceiling_is_measured_against_the_script_s_own_loader() -> None:
    # GIVEN a script whose own loader (2 workers) runs 20 steps/s waiting 60 % of each step,
    # and whose loop runs 80 steps/s with a free loader
    w = FakeWorld(table({"0": 12.0, "2": 20.0, "4": 30.0, "replay": 80.0}), own_workers=2,
                  wait_fraction=lambda s: 0.6 if s.num_workers == 2 else 0.1)
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 4])), steps=20, ceiling=True), w.launch)
    c = result.ceiling
    # THEN the grid's 2 is the baseline (the script's own), and the replay is not a trial
    assert c is not None and c.baseline is not None and result.trials[c.baseline].setting == Setting(2)
    assert [t.setting.label() for t in result.trials] == ["0", "2", "4"]
    assert c.measured == pytest.approx(4.0, rel=1e-3) and c.estimated == pytest.approx(2.5, rel=1e-3)
    assert c.paired is not None and c.paired.rounds >= 3
    # AND the baseline kept being measured as long as the replay ran, though 4 beats it
    assert len(result.trials[c.baseline].rounds) == len(c.replay.rounds)
    doc = sweep_document(result)
    assert doc["ceiling"]["measured"] == pytest.approx(4.0, rel=1e-3) and doc["ceiling"]["baseline_label"] == "2"
    assert doc["ceiling"]["compute_step_ms"] == pytest.approx(12.5, rel=1e-3)


def test_a_ceiling_without_the_own_setting_in_the_grid_measures_it_too() -> None:
    w = FakeWorld(table({"0": 12.0, "4": 30.0, "2": 20.0, "replay": 80.0}), own_workers=2)
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 4])), steps=20, ceiling=True), w.launch)
    assert [t.setting.label() for t in result.trials] == ["0", "4", "2"]
    assert result.ceiling is not None and result.ceiling.baseline == 2
    assert REPLAY.label() == "replay" and "own" in w.launched


def test_thread_settings_are_part_of_the_grid_and_the_choice() -> None:
    # GIVEN 1 main thread faster than the script's own (more) threads on a busy machine
    settings = tuple(grid([2], main_threads=[1, 2]))
    assert [s.label() for s in settings] == ["2 mt=1", "2 mt=2"]
    w = world({"2 mt=1": 30.0, "2 mt=2": 18.0})
    result = run_sweep(SweepPlan(target="t.py", settings=settings, steps=20), w.launch)
    doc = sweep_document(result)
    assert doc["best"]["torch_threads_main"] == 1 and doc["best"]["num_workers"] == 2
    assert grid([0, 2], worker_threads=[1, 2]) == [Setting(0), Setting(2, worker_threads=1), Setting(2, worker_threads=2)]


def test_other_cpu_per_round_is_recorded_from_the_probe() -> None:
    from tracelens.capture.machine.cpu_supply import SupplySample

    t = [0]

    def probe() -> tuple[SupplySample, int]:
        # the machine's CPUs are 1.5 cores busy; the sweep's own processes use 0.5 of them
        t[0] += 1_000_000_000
        return SupplySample(t[0], 2, int(1.5 * t[0]), None, None, None, None, None), int(0.5 * t[0])

    w = world({"0": 10.0, "2": 20.0})
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2])), steps=20), w.launch, probe)
    doc = sweep_document(result)
    assert all(r["other_cpu_cores"] == pytest.approx(1.0) for t in doc["trials"] for r in t["rounds"])
    assert doc["trials"][0]["other_cpu_cores"] == pytest.approx(1.0)
    assert all(r["other_cpu_cores"] == pytest.approx(1.0) for r in doc["rounds"])


def test_a_trial_that_crashes_is_reported_with_its_exception() -> None:
    # GIVEN 4 workers whose script raises after two rounds, and 2 workers whose script raises
    # during its warm-up (no loader fed a backward pass yet)
    w = world({"0": 10.0, "2": 20.0, "4": 30.0})
    w.fail_after = {"4": (2, "RuntimeError: CUDA out of memory"), "2": (0, "ValueError: bad sample 17")}
    result = run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2, 4])), steps=20), w.launch)
    doc = sweep_document(result)
    by = {t["label"]: t for t in doc["trials"]}
    # THEN each is reported by its exception, never as a loader that fed nothing
    assert "RuntimeError: CUDA out of memory" in by["4"]["stopped_early"]
    assert "ValueError: bad sample 17" in (by["2"]["error"] or by["2"]["stopped_early"] or "")
    text = format_sweep(doc)
    assert "RuntimeError: CUDA out of memory" in text and "ValueError: bad sample 17" in text
    assert "no loader fed" not in text
    # AND the crashed setting is not chosen over the one that ran
    assert doc["best"]["num_workers"] == 0


def test_a_crashed_replay_names_its_exception_in_the_ceiling() -> None:
    w = FakeWorld(table({"0": 12.0, "replay": 80.0}), own_workers=0)
    w.fail_after = {"replay": (1, "MemoryError: cache")}
    result = run_sweep(SweepPlan(target="t.py", settings=(Setting(0),), steps=20, ceiling=True), w.launch)
    assert result.ceiling is not None
    assert any("MemoryError: cache" in n for n in result.ceiling.notes), result.ceiling.notes
    assert "no loader fed" not in format_sweep(sweep_document(result))


def test_the_terminal_shows_the_measured_ceiling_beside_the_estimate() -> None:
    w = FakeWorld(table({"0": 12.0, "2": 20.0, "replay": 80.0}), own_workers=2,
                  wait_fraction=lambda s: 0.6 if s.num_workers == 2 else 0.1)
    doc = sweep_document(run_sweep(SweepPlan(target="t.py", settings=tuple(grid([0, 2])), steps=20, ceiling=True),
                                   w.launch))
    line = next(ln for ln in format_sweep(doc).splitlines() if ln.startswith("Speed-up ceiling"))
    assert "measured 4.00×" in line and "estimated 2.50×" in line, line
    html = render_sweep_html(doc)
    assert "Speed-up ceiling" in html and "4.00×" in html and "2.50×" in html
