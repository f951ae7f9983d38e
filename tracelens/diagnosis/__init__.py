"""The diagnosis: rules as small data over a ``TraceAnalysis`` and, when present, run.json.

- ``thresholds``: every number with the reason for it; ``sizing``: the settings math (pure);
- ``facts``: run.json reduced to what the rules read; ``context``: what they measure, derived once;
- ``plan``: how many workers (Little's law, caps, expected gain);
- ``rule`` and ``checks/``: each rule declared beside its check (TL1xx main causes, TL2xx
  secondary, TL3xx trace quality); ``engine``: the main cause and the merged recommendation;
- ``listing``: the rule table as text and markdown (``tracelens rules``, docs/rules.md).
"""

from __future__ import annotations

from tracelens.diagnosis.engine import RULES, RULES_BY_ID, diagnose
from tracelens.diagnosis.facts import RunFacts, known_settings, run_facts
from tracelens.diagnosis.findings import Diagnosis, Finding, Recommendation, Skipped
from tracelens.diagnosis.rule import Rule

__all__ = ["RULES", "RULES_BY_ID", "Diagnosis", "Finding", "Recommendation", "Rule", "RunFacts", "Skipped",
           "diagnose", "known_settings", "run_facts"]
