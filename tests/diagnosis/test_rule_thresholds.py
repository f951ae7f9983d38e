"""Each rule declares every threshold its precondition and check compare with: the table in
docs/rules.md and each finding's ``thresholds`` are the numbers the code really reads."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

import pytest

from tests import golden
from tracelens.api import analyze_path
from tracelens.diagnosis import context, engine, thresholds

#: Read by every finding through Context.quality_factor (the confidence scaling); it is TL304's threshold.
SHARED = {"min_steps"}


class _Recorder(dict[str, Any]):
    """THRESHOLDS that notes which rule read which name."""

    rule: ClassVar[str | None] = None
    read: ClassVar[defaultdict[str, set[str]]] = defaultdict(set)

    def __getitem__(self, name: str) -> Any:
        if _Recorder.rule is not None:
            _Recorder.read[_Recorder.rule].add(name)
        return super().__getitem__(name)


def test_rules_declare_the_thresholds_they_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thresholds, "THRESHOLDS", _Recorder(thresholds.THRESHOLDS))
    cases = {**golden.sample_cases(), **golden.shared_cases()}
    for path in cases.values():
        for rank in analyze_path(path, jobs=1).ranks:
            ctx = context.build_context(rank.analysis, rank.run)
            for rule in engine.RULES:
                _Recorder.rule = rule.id
                try:
                    if rule.requires(ctx) is None:
                        rule.check(rule, ctx)
                finally:
                    _Recorder.rule = None
    undeclared = {r.id: sorted(_Recorder.read[r.id] - set(r.thresholds) - SHARED) for r in engine.RULES}
    assert {k: v for k, v in undeclared.items() if v} == {}
