"""The analysis document (SPEC §3) and what an analysis returns.

- ``schema``: analysis.json declared once as msgspec structs (:class:`Document` for one trace
  or rank, :class:`JobDocument` for several ranks), with its one encoder and decoder;
- ``build``: one rank's analysis and diagnosis as its document, and the multi-rank document
  that speaks for a job;
- ``result``: :class:`Result`, the one type every route returns (the document, and the full
  per-rank analyses where they came back);
- ``distribution``: the rank views (spread across ranks, the rank × step matrix), computed
  from per-rank documents for the renderers;
- ``compare``: two documents before and after (``compare --json``, SPEC §4).
"""

from __future__ import annotations

from tracelens.document.build import build_document, build_multirank_document
from tracelens.document.result import RankResult, Result
from tracelens.document.schema import (
    SCHEMA_VERSION,
    AnalysisDocument,
    Document,
    JobDocument,
    decode_document,
    encode_document,
    read_document,
)

__all__ = ["SCHEMA_VERSION", "AnalysisDocument", "Document", "JobDocument", "RankResult", "Result",
           "build_document", "build_multirank_document", "decode_document", "encode_document", "read_document"]
