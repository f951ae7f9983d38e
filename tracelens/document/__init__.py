"""The analysis document (SPEC §3) and what an analysis returns.

- ``build``: one rank's analysis and diagnosis as its document, and the multi-rank document
  that speaks for a job;
- ``result``: :class:`Result`, the one type every route returns (the document, and the full
  per-rank analyses where they came back);
- ``distribution``: the rank views (spread across ranks, the rank × step matrix), computed
  from per-rank documents for the renderers;
- ``compare``: two documents before and after (``compare --json``, SPEC §4).
"""

from __future__ import annotations

from tracelens.document.build import SCHEMA_VERSION, build_document, build_multirank_document
from tracelens.document.result import RankResult, Result

__all__ = ["SCHEMA_VERSION", "RankResult", "Result", "build_document", "build_multirank_document"]
