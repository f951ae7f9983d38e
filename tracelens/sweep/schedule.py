"""The sweep's rounds: start one trial process per setting (at most ``max_alive`` at once), wait
until each is warm, then grant every live trial one measurement round per sweep round, in an
order that rotates; after each round stop the settings that cannot win, and stop the sweep once
the comparisons are conclusive (or at ``max_rounds``, or the time budget).

Around each trial's round the parent reads the CPU supply (:mod:`tracelens.capture.machine.cpu_supply`):
the busy time of the machine's CPUs less the sweep's own processes gives the cores used by
other processes during that round, recorded per trial and per round.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from tracelens.sweep.pool import TrialPool, TrialProcess, TrialTimeout, memory_available_bytes
from tracelens.sweep.rounds import (
    Measured,
    RoundRecord,
    beaten_by,
    choose,
    measured,
    paired,
    rotation,
    undecided,
)
from tracelens.sweep.settings import OWN, REPLAY, Setting
from tracelens.sweep.stats import AUTO_MAX_WORKERS_PER_CORE, next_auto_workers
from tracelens.sweep.trials import (
    RoundSummary,
    SweepPlan,
    Trial,
    beyond_budget,
    cpu_bound,
    failure,
)
from tracelens.system.procs import sigterm_raises

#: Launches the trial of a setting (its number, for its files); returns at once.
Launcher = Callable[[Setting, int], TrialProcess]
#: A reading of the CPU supply: (the machine's sample, the sweep's own CPU ns so far).
Probe = Callable[[], tuple[Any, int | None]]
#: A round waits at most this long (s) for its trial's workers to go quiet afterwards.
SETTLE_MAX_S = 2.0
#: A trial that says nothing for this long (s) during a round, or its start-up, is ended
#: (unless the time budget left is longer).
MIN_TRIAL_TIMEOUT_S = 60.0
#: Start no more trials while the memory left is below this many times a live trial's.
MEMORY_HEADROOM = 2.0
#: The ceiling's rounds go on (to ``max_rounds``) until its round-by-round interval spans at
#: most this factor (1.5: about ±20 % around the measured speed-up).
CEILING_CI_SPAN = 1.5


def round_steps(steps: int, min_rounds: int, num_workers: int) -> int:
    """Steps a round measures at least: the setting's ``steps`` spread over its rounds, and at
    least 2 rounds of its workers (N workers deliver in bursts of up to N)."""
    return max(3, math.ceil(steps / max(1, min_rounds)), 2 * num_workers)


def discard_steps(num_workers: int, prefetch_factor: int | None, replay: bool) -> int:
    """Steps a round skips first: the batches the workers queued while the script was blocked
    (num_workers × prefetch_factor), and one more."""
    if replay or num_workers == 0:
        return 1
    return num_workers * (prefetch_factor or 2) + 1


@dataclass
class Slot:
    """A setting in the sweep and the state of its trial."""

    key: int
    setting: Setting
    proc: TrialProcess | None = None
    started: float = 0.0
    ended: float | None = None
    ready: dict[str, Any] | None = None
    startup_s: float | None = None
    rounds: list[RoundRecord] = field(default_factory=list)
    final: dict[str, Any] | None = None
    stopped: str | None = None
    loader_id: int | None = None
    duplicate: bool = False  # the script's own loader, the same as a setting of the grid
    leaving: bool = False  # measured no more; stopped with the next batch of stops

    @property
    def live(self) -> bool:
        return self.proc is not None and self.ready is not None and self.final is None and not self.leaving

    @property
    def candidate(self) -> bool:
        return not self.setting.replay

    def loader(self) -> dict[str, Any]:
        return dict((self.ready or {}).get("loader") or {})

    def measured(self) -> Measured:
        return measured(self.setting, self.rounds)

    def trial(self) -> Trial:
        raw = {**(self.ready or {}), **(self.final or {})}
        if not raw.get("loader"):
            raw["loader"] = self.loader()
        m = self.measured()
        wall = (self.ended or self.started) - self.started if self.started else 0.0
        return Trial(self.setting, m.throughput, tuple(self.rounds), raw, wall, self.startup_s, self.stopped)


class Progress:
    """One line per trial round, per sweep round (with the running best and an ETA) and per
    trial started or stopped, on a stream (stderr)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.t0 = time.perf_counter()

    def line(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(f"[sweep {time.perf_counter() - self.t0:5.1f} s] {text}\n")
            self.stream.flush()


class Scheduler:
    """Runs the rounds of one sweep (:func:`tracelens.sweep.run.run_sweep` builds the result)."""

    def __init__(self, plan: SweepPlan, launch: Launcher, probe: Probe, progress: Progress,
                 auto_start: int | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.plan = plan
        self.launch = launch
        self.probe = probe
        self.progress = progress
        self.clock = clock
        self.auto = not plan.settings
        self.auto_start = max(0, auto_start or 0)
        self.slots: list[Slot] = []
        self.pending: list[Setting] = []
        self.summaries: list[RoundSummary] = []
        self.notes: list[str] = []
        self.started = 0.0
        self.startup_wall_s = 0.0
        self.round_no = 0
        self.baseline_key: int | None = None

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        self.started = self.clock()
        plan = self.plan
        self.pending = list(plan.settings) if not self.auto else [self._auto_setting(self.auto_start)]
        if plan.ceiling:
            self.pending += [OWN, REPLAY]
        with TrialPool() as pool, sigterm_raises():
            while True:
                self._fill(pool)
                live = [s for s in self.slots if s.live]
                if not live:
                    break
                if self.round_no and not self._budget_allows(live):
                    self.notes.append(f"time budget of {plan.time_budget_s:.0f} s reached after round "
                                      f"{self.round_no}")
                    break
                self.round_no += 1
                self._round(pool, live)
                self._prune()
                if self.auto and not self.pending:
                    self._auto_next()
                if self._done():
                    break
                self._make_room()
                self._stop_leaving(pool)
            self._stop_leaving(pool, everyone=True)

    def elapsed(self) -> float:
        return self.clock() - self.started

    # --- starting trials ----------------------------------------------------------------------

    def _fill(self, pool: TrialPool) -> None:
        """Start pending settings while there is room (processes, memory, time); wait until each is warm."""
        new: list[Slot] = []
        while self.pending:
            live = sum(1 for s in self.slots if s.live) + len(new)
            if live >= self.plan.max_alive or (live and not self._memory_allows()):
                break
            if self.slots and not self._time_allows_start():
                skipped = ", ".join(s.label() for s in self.pending)
                self.notes.append(f"time budget of {self.plan.time_budget_s:.0f} s: not measured: {skipped}")
                self.pending = []
                break
            setting = self.pending.pop(0)
            if self._cannot_win(setting):
                self.notes.append(f"{setting.label()}: not measured: the loading is CPU-bound, and more workers "
                                  f"than the {self.plan.usable_cores} usable core(s) cannot be chosen")
                continue
            slot = Slot(len(self.slots), setting, started=self.clock())
            self.slots.append(slot)
            slot.proc = pool.add(slot.key, self.launch(setting, slot.key))
            new.append(slot)
        if not new:
            return
        self.progress.line(f"starting {len(new)} trial process(es): {', '.join(s.setting.label() for s in new)}")
        t0 = self.clock()
        for slot in new:
            assert slot.proc is not None
            try:
                ready = slot.proc.wait_ready(self._timeout())
            except TrialTimeout as exc:
                ready = None
                slot.stopped = f"not ready: {exc}"
            slot.startup_s = self.clock() - slot.started
            if ready is None:
                self._end(pool, slot, slot.stopped or "the script ended before its loader was warm")
                self.progress.line(f"{slot.setting.label()}: no measurement possible ({failure(slot.trial())})")
                continue
            slot.ready = ready
            slot.loader_id = (ready.get("loader") or {}).get("id")
            self._resolve_own(pool, slot)
            if slot.live:
                lo = slot.loader()
                self.progress.line(f"{slot.setting.label()}: ready after {slot.startup_s:.1f} s "
                                   f"(loader #{lo.get('id')}, {ready.get('loader_choice')}, "
                                   f"warm-up {ready.get('warmup')} batches)")
        self.startup_wall_s += self.clock() - t0

    def _resolve_own(self, pool: TrialPool, slot: Slot) -> None:
        """The script's own loader: name it by its worker count; when the grid has the same
        setting, that trial is the baseline and this one ends."""
        if slot.setting != OWN:
            return
        workers = int(slot.loader().get("num_workers", 0) or 0)
        resolved = slot.setting.resolved(workers)
        twin = next((s for s in self.slots if s is not slot and s.setting == resolved and s.final is None), None)
        if twin is not None:
            self.baseline_key = twin.key
            self._end(pool, slot, None)
            slot.duplicate = True
            return
        slot.setting = resolved
        self.baseline_key = slot.key
        if resolved in self.pending:
            self.pending.remove(resolved)

    def _cannot_win(self, setting: Setting) -> bool:
        """A setting beyond the core budget once the loading is known to be CPU-bound."""
        if not self.plan.early_stop or not beyond_budget(setting, self.plan.usable_cores):
            return False
        cands = self._candidates()
        within = [s for s in cands if not beyond_budget(s.setting, self.plan.usable_cores)]
        return bool(within) and cpu_bound([s.trial() for s in cands])

    def _memory_allows(self) -> bool:
        sizes = [m for s in self.slots if s.live and s.proc is not None and (m := s.proc.memory_bytes())]
        avail = memory_available_bytes()
        if not sizes or avail is None:
            return True
        return avail >= MEMORY_HEADROOM * max(sizes)

    def _time_allows_start(self) -> bool:
        startups = [s.startup_s for s in self.slots if s.startup_s is not None]
        need = max(startups, default=0.0) + self.plan.min_rounds * self._round_estimate(1)
        return self.elapsed() + need <= self.plan.time_budget_s

    def _timeout(self) -> float:
        return max(MIN_TRIAL_TIMEOUT_S, self.plan.time_budget_s - self.elapsed())

    # --- one round ----------------------------------------------------------------------------

    def _grant(self, slot: Slot) -> dict[str, Any]:
        lo = slot.loader()
        workers = int(lo.get("num_workers", 0) or 0)
        return {"round": self.round_no, "min_steps": round_steps(self.plan.steps, self.plan.min_rounds, workers),
                "min_ns": int(self.plan.round_s * 1e9), "max_steps": 10**9,
                "discard": discard_steps(workers, lo.get("prefetch_factor"), slot.setting.replay),
                "settle_max_s": SETTLE_MAX_S if workers else 0.0}

    def _round(self, pool: TrialPool, live: list[Slot]) -> None:
        t0 = self.clock()
        others: list[float] = []
        order = [live[i] for i in rotation(list(range(len(live))), self.round_no)]
        for slot in order:
            rec = self._measure(pool, slot)
            if rec is None:
                continue
            if rec.other_cores is not None:
                others.append(rec.other_cores)
            busy = "" if rec.other_cores is None else f", other processes {rec.other_cores:.2f} cores"
            self.progress.line(f"round {self.round_no}: {slot.setting.label()}: {rec.rate:,.1f} steps/s over "
                               f"{rec.steps} steps, data wait {100 * rec.wait_ns / max(rec.ns, 1):.0f} %{busy} "
                               f"({rec.wall_s:.1f} s)")
        wall = self.clock() - t0
        self.summaries.append(RoundSummary(self.round_no, tuple(s.setting.label() for s in order), wall,
                                           sum(others) / len(others) if others else None))
        self.progress.line(self._round_line(wall))

    def _measure(self, pool: TrialPool, slot: Slot) -> RoundRecord | None:
        assert slot.proc is not None
        s0, j0 = self.probe()
        c0 = slot.proc.cpu_ns()
        t0 = self.clock()
        try:
            msg = slot.proc.measure(self._grant(slot), self._timeout())
        except TrialTimeout as exc:
            self._end(pool, slot, f"round {self.round_no} timed out ({exc})")
            return None
        wall = self.clock() - t0
        s1, j1 = self.probe()
        c1 = slot.proc.cpu_ns() if msg is not None else None
        if msg is None:  # the script ended (or failed) during the round
            self._end(pool, slot, None)
            part = (slot.final or {}).get("partial_round")
            if part and part.get("loader_id") == slot.loader_id:
                rec = _record(self.round_no, part, wall, None, None, None, partial=True)
                if rec.steps:
                    slot.rounds.append(rec)
            slot.stopped = slot.stopped or _ended(slot)
            self.progress.line(f"round {self.round_no}: {slot.setting.label()}: {slot.stopped}")
            return None
        if msg.get("loader_id") != slot.loader_id:  # the training loader showed up late: start again
            slot.rounds = []
            slot.loader_id = msg.get("loader_id")
        supply = _supply(s0, s1, j0, j1)
        trial_cores = (c1 - c0) / 1e9 / wall if c0 is not None and c1 is not None and wall > 0 else None
        rec = _record(self.round_no, msg, wall, supply, trial_cores, msg.get("settle_s"))
        slot.rounds.append(rec)
        return rec

    def _round_line(self, wall: float) -> str:
        items = [s for s in self.slots if s.candidate and s.rounds]
        best = ""
        if items:
            c = choose([s.measured() for s in items])
            b = items[c.best]
            best = f" | best so far: {b.setting.label()} at {b.measured().throughput.steps_per_s:,.1f} steps/s"
        live = [s for s in self.slots if s.live]
        left = max(0, self.plan.max_rounds - self.round_no)
        eta = left * wall + len(self.pending) * (self.plan.min_rounds * self._round_estimate(1))
        return (f"round {self.round_no} done in {wall:.1f} s, {len(live)} setting(s) still measured{best} | "
                f"{self.elapsed():.0f} s so far, ETA at most {eta:.0f} s more")

    def _round_estimate(self, trials: int) -> float:
        per = [r.wall_s for s in self.slots for r in s.rounds[-1:]]
        one = sum(per) / len(per) if per else 2 * self.plan.round_s
        return one * trials

    def _budget_allows(self, live: list[Slot]) -> bool:
        return self.elapsed() + self._round_estimate(len(live)) <= self.plan.time_budget_s

    # --- deciding -----------------------------------------------------------------------------

    def _candidates(self, *, live_only: bool = False) -> list[Slot]:
        return [s for s in self.slots if s.candidate and s.rounds and (s.live or not live_only)]

    def _prune(self) -> None:
        """Stop the live settings that cannot win: another beats them round by round (after
        ``min_rounds``), or CPU-bound loading puts them beyond the core budget."""
        if not self.plan.early_stop:
            return
        plan = self.plan
        trials = [s.trial() for s in self._candidates()]
        bound = cpu_bound(trials)
        within = [s for s in self._candidates() if not beyond_budget(s.setting, plan.usable_cores)]
        keep = {self.baseline_key} if any(s.setting.replay and s.live for s in self.slots) else set()
        live = self._candidates(live_only=True)
        for slot in live:
            if slot.key in keep:
                continue
            if bound and within and beyond_budget(slot.setting, plan.usable_cores):
                self._leave(slot, f"stopped after {len(slot.rounds)} round(s): the loading is CPU-bound, "
                                      f"and more workers than the {plan.usable_cores} usable core(s) cannot be chosen")
                continue
            winner = beaten_by(slot.measured(), [s.measured() for s in live if s is not slot], plan.min_rounds)
            if winner is not None:
                p = paired(winner.rounds, slot.rounds)
                by = f"{p.ratio:.2f}× (round by round, {p.lo:.2f}–{p.hi:.2f})" if p else "beyond the noise"
                self._leave(slot, f"stopped after {len(slot.rounds)} rounds: it cannot win "
                                      f"({winner.setting.label()} is faster by {by})")

    def _done(self) -> bool:
        """Conclusive: every live setting has its minimum rounds and no pair of live candidates
        is undecided (and the ceiling's two trials share their minimum rounds); or every live
        setting has its maximum rounds."""
        live = [s for s in self.slots if s.live]
        if not live:
            return not self.pending
        if all(len(s.rounds) >= self.plan.max_rounds for s in live):
            return not self.pending
        if self.pending or not self.plan.early_stop:
            return False
        if any(len(s.rounds) < self.plan.min_rounds for s in live):
            return False
        return not undecided([s.measured() for s in live if s.candidate]) and self._ceiling_settled()

    def _ceiling_settled(self) -> bool:
        """The replay against the baseline: known to within :data:`CEILING_CI_SPAN` (or over)."""
        replay = next((s for s in self.slots if s.setting.replay and s.live), None)
        base = next((s for s in self.slots if s.key == self.baseline_key and s.live), None)
        if replay is None or base is None:
            return True
        p = paired(replay.rounds, base.rounds)
        return p is not None and p.hi <= CEILING_CI_SPAN * p.lo

    def _make_room(self) -> None:
        """With settings waiting and no room: keep the best and the fastest so far, retire the
        rest once they have their minimum rounds."""
        live = [s for s in self.slots if s.live]
        if not self.pending or len(live) < self.plan.max_alive:
            return
        if any(len(s.rounds) < self.plan.min_rounds for s in live):
            return
        cands = [s for s in live if s.candidate]
        if not cands:
            return
        c = choose([s.measured() for s in cands])
        keep = {cands[c.best].key, cands[c.fastest].key, self.baseline_key}
        for slot in live:
            if slot.key not in keep and not slot.setting.replay:
                self._leave(slot, f"retired after {len(slot.rounds)} rounds to make room for the settings "
                                      "still to measure")

    def _leave(self, slot: Slot, reason: str) -> None:
        """Measure ``slot`` no more; its process is stopped with the next batch of stops (several
        scripts unwind at once, and not at all between two measurements of a round)."""
        slot.leaving = True
        self._note_stop(slot, reason)

    def _stop_leaving(self, pool: TrialPool, *, everyone: bool = False) -> None:
        """Stop the leaving trials (``everyone``: every trial still running), all at once."""
        going = [s for s in self.slots if s.final is None and s.key in pool.live and (s.leaving or everyone)]
        finals = pool.stop_all([s.key for s in going]) if going else {}
        for slot in going:
            slot.final = finals[slot.key]
            slot.ended = self.clock()

    def _note_stop(self, slot: Slot, reason: str | None) -> None:
        if reason and not slot.stopped:
            slot.stopped = reason
            self.progress.line(f"{slot.setting.label()}: {reason}")

    def _end(self, pool: TrialPool, slot: Slot, reason: str | None) -> None:
        if slot.final is None and slot.key in pool.live:
            slot.final = pool.stop(slot.key)
        slot.ended = self.clock()
        self._note_stop(slot, reason)

    # --- auto ---------------------------------------------------------------------------------

    def _auto_setting(self, workers: int) -> Setting:
        p = self.plan
        return Setting(workers, p.auto_pin_memory, p.auto_prefetch_factor if workers > 0 else None,
                       p.auto_main_threads, p.auto_worker_threads if workers > 0 else None)

    def _auto_next(self) -> None:
        """The next num_workers of the auto exploration, once every tried one has its minimum rounds."""
        tried = {s.setting.num_workers: s for s in self.slots if s.candidate and s.setting.num_workers is not None
                 and s.setting == self._auto_setting(s.setting.num_workers)}
        if any(s.live and len(s.rounds) < self.plan.min_rounds for s in tried.values()):
            return
        results = {w: s.measured() for w, s in tried.items() if s.rounds}
        cap = max(1, AUTO_MAX_WORKERS_PER_CORE * self.plan.usable_cores)
        if cpu_bound([s.trial() for s in tried.values()]):
            cap = max(1, min(cap, self.plan.usable_cores))
        from tracelens.sweep.rounds import faster

        w = next_auto_workers({k: v for k, v in results.items() if k <= cap}, min(self.auto_start, cap), cap,
                              faster=faster, rate=lambda m: m.throughput.steps_per_s)
        if w is None or w in tried:
            return
        if any(s.rounds == [] and s.final is not None for s in tried.values()):
            self.notes.append("a setting measured no step: auto exploration stopped")
            return
        self.pending.append(self._auto_setting(w))


def _supply(s0: Any, s1: Any, j0: int | None, j1: int | None) -> Any:
    if s0 is None or s1 is None or j0 is None or j1 is None:
        return None
    from tracelens.capture.machine.cpu_supply import interval

    return interval(s0, s1, j1 - j0)


def _record(round_no: int, msg: dict[str, Any], wall: float, supply: Any, trial_cores: float | None,
            settle_s: float | None, partial: bool = False) -> RoundRecord:
    con = msg.get("contention") or {}
    steps = tuple(int(x) for x in msg.get("step_ns", []))
    return RoundRecord(
        round=round_no, step_ns=steps, wait_ns=int(sum(msg.get("wait_ns", [])[: len(steps)])),
        other_cores=None if supply is None else supply.other_cores,
        trial_cores=trial_cores, busy_cores=None if supply is None else supply.busy_cores,
        cpu_per_s=con.get("cpu_per_s"), run_queue_delay_per_s=con.get("run_queue_delay_per_s"),
        worker_demand=con.get("worker_demand"), wall_s=wall, settle_s=settle_s,
        discarded=int(msg.get("discarded", 0) or 0), partial=partial)


def _ended(slot: Slot) -> str:
    final = slot.final or {}
    if final.get("script_error") and final.get("exit_status"):
        return f"the script failed ({final['script_error']}) after {len(slot.rounds)} round(s)"
    if final.get("error"):
        return str(final["error"])
    return f"the script ended after {len(slot.rounds)} round(s) ({final.get('stop_reason')})"
