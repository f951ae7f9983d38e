"""A tiny Chrome-trace builder for tests: hand-checkable traces in the dialects Kineto writes.

Times are given in µs, as in the trace. ``dialect="new"`` writes what PyTorch ≥ 1.13 writes
(lower-case categories, int ids, float ts relative to ``baseTimeNanoseconds``);
``dialect="old"`` writes the early-2021 form (a bare array, capitalized categories, string
thread ids, integer epoch-µs timestamps).
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracelens.document.schema import Document, JobDocument

HOST_PID = 4242
MAIN_TID = 4243
OLD_EPOCH_US = 1_606_910_596_288_053
NEW_BASE_NS = 1_767_189_312_000_000_000

_CATS = {
    "new": {"step": "user_annotation", "next": "user_annotation", "op": "cpu_op", "runtime": "cuda_runtime",
            "kernel": "kernel", "memcpy": "gpu_memcpy", "memset": "gpu_memset", "gpu_ann": "gpu_user_annotation"},
    "old": {"step": "Operator", "next": "Operator", "op": "Operator", "runtime": "Runtime",
            "kernel": "Kernel", "memcpy": "Memcpy", "memset": "Memset", "gpu_ann": "gpu_user_annotation"},
}


@dataclass
class TraceBuilder:
    """Collects events, then writes them as a trace file or returns the JSON text."""

    dialect: str = "new"
    device_names: tuple[str, ...] = ()
    rank: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def _ts(self, t_us: float) -> float | int:
        return int(OLD_EPOCH_US + t_us) if self.dialect == "old" else round(1_000_000.0 + t_us, 3)

    def _tid(self, tid: int) -> int | str:
        return str(tid) if self.dialect == "old" else tid

    def add(self, name: str, cat_key: str, start_us: float, dur_us: float, *,
            pid: int | str = HOST_PID, tid: int | str = MAIN_TID, **args: Any) -> TraceBuilder:
        """Any complete event; ``cat_key`` is a key of the dialect's category table or a literal."""
        cat = _CATS[self.dialect].get(cat_key, cat_key)
        ev: dict[str, Any] = {"ph": "X", "cat": cat, "name": name, "pid": pid,
                              "tid": self._tid(tid) if isinstance(tid, int) else tid,
                              "ts": self._ts(start_us), "dur": dur_us if self.dialect == "new" else int(dur_us)}
        if args:
            ev["args"] = args
        self.events.append(ev)
        return self

    def step(self, n: int, start_us: float, dur_us: float, *, mirror_on_gpu: bool = False) -> TraceBuilder:
        """A host ``ProfilerStep#n``; optionally the GPU-side mirror newer PyTorch writes."""
        self.add(f"ProfilerStep#{n}", "step", start_us, dur_us)
        if mirror_on_gpu:
            self.add(f"ProfilerStep#{n}", "gpu_ann", start_us, dur_us, pid=0, tid=7)
        return self

    def next_call(self, start_us: float, dur_us: float, iterator: str = "_SingleProcessDataLoaderIter") -> TraceBuilder:
        """A DataLoader ``__next__`` (the main process waiting for a batch)."""
        return self.add(f"enumerate(DataLoader)#{iterator}.__next__", "next", start_us, dur_us)

    def kernel(self, start_us: float, dur_us: float, device: int = 0, stream: int = 7,
               name: str = "void gemm_kernel<float>(float*)") -> TraceBuilder:
        """A GPU kernel on ``device`` (its pid) and ``stream`` (its tid)."""
        tid: int | str = f"stream {stream}" if self.dialect == "old" else stream
        return self.add(name, "kernel", start_us, dur_us, pid=device, tid=tid, device=device, stream=stream)

    def memcpy(self, start_us: float, dur_us: float, kind: str = "Pageable", device: int = 0) -> TraceBuilder:
        """A host-to-device copy from ``kind`` ("Pageable", "Pinned" or "Host") memory."""
        tid: int | str = "stream 7" if self.dialect == "old" else 7
        return self.add(f"Memcpy HtoD ({kind} -> Device)", "memcpy", start_us, dur_us, pid=device, tid=tid)

    def op(self, name: str, start_us: float, dur_us: float) -> TraceBuilder:
        """A host operator on the main thread."""
        return self.add(name, "op", start_us, dur_us)

    def instant(self, name: str, ts_us: float) -> TraceBuilder:
        """A non-complete event, which the model counts but does not keep."""
        self.events.append({"ph": "i", "name": name, "pid": "", "tid": "", "ts": self._ts(ts_us), "s": "t"})
        return self

    def document(self) -> Any:
        """The trace as the JSON value a profiler would write."""
        meta = [
            {"ph": "M", "name": "process_name", "pid": HOST_PID, "tid": 0, "args": {"name": "python"}},
            {"ph": "M", "name": "thread_name", "pid": HOST_PID, "tid": self._tid(MAIN_TID), "args": {"name": "main"}},
        ]
        events = meta + self.events
        if self.dialect == "old":
            return events
        doc: dict[str, Any] = {"schemaVersion": 1}
        if self.device_names:
            doc["deviceProperties"] = [{"id": i, "name": n, "totalGlobalMem": 80 << 30}
                                       for i, n in enumerate(self.device_names)]
        if self.rank is not None:
            doc["distributedInfo"] = {"backend": "nccl", "rank": self.rank, "world_size": 8}
        doc.update(self.extra)
        doc["traceEvents"] = events
        doc["traceName"] = "built.json"
        doc["displayTimeUnit"] = "ms"
        doc["baseTimeNanoseconds"] = NEW_BASE_NS
        return doc

    def text(self, indent: int | None = 1) -> str:
        """The JSON text (indented like Kineto's output by default)."""
        return json.dumps(self.document(), indent=indent)

    def write(self, path: Path, *, compress: bool = False, indent: int | None = 1) -> Path:
        """Write the trace; gzip it when ``compress`` (whatever the suffix)."""
        data = self.text(indent).encode()
        path.write_bytes(gzip.compress(data) if compress else data)
        return path


def starved_loop(b: TraceBuilder, steps: int = 4, *, wait_us: float = 30_000, compute_us: float = 70_000,
                 iterator: str = "_SingleProcessDataLoaderIter", copy: str | None = "Pageable",
                 mirror_on_gpu: bool = False) -> TraceBuilder:
    """``steps`` steps of: wait ``wait_us`` for data (GPU idle), then ``compute_us`` of kernels."""
    t = 0.0
    step_us = wait_us + compute_us
    for i in range(steps):
        b.step(i + 1, t, step_us, mirror_on_gpu=mirror_on_gpu)
        b.next_call(t, wait_us, iterator)
        if copy:
            b.memcpy(t + wait_us, 100, copy)
        b.kernel(t + wait_us + 100, compute_us - 200)
        t += step_us
    return b


def synthetic_job(tmp_path: Path, ranks: int, steps: int = 40, slow_rank: int = 7) -> JobDocument:
    """The multi-rank document of a job of ``ranks`` ranks, as a cluster returns it (documents
    only): two small traces analyzed (a rank waiting 10 ms per 100 ms step and 25 ms in an
    all-reduce, and the slow rank waiting 40 ms with 5 ms in the all-reduce), their documents
    copied per rank with waits varying a little by rank and step."""
    from tracelens.api import analyze_path
    from tracelens.document.build import build_multirank_document

    def analyzed(wait_ms: float, reduce_ms: float) -> dict[str, Any]:
        b = TraceBuilder()
        for i in range(steps):
            t = i * 100_000.0
            b.step(i, t, 100_000).next_call(t, wait_ms * 1000 * (1 + (i % 3) / 10))
            b.op("gloo:all_reduce", t + 95_000 - reduce_ms * 1000, reduce_ms * 1000)
        return plain(analyze_path(b.write(tmp_path / f"rank_w{wait_ms:g}.json")).document)

    normal, slow = analyzed(10, 35), analyzed(40, 5)
    docs = []
    for r in range(ranks):
        doc = copy.deepcopy(slow if r == slow_rank else normal)
        doc["rank"] = r
        doc["source"]["path"] = f"job/rank{r}.pt.trace.json.gz"
        if r != slow_rank:  # a little spread across the other ranks
            for row in doc["per_step"]:
                row["exposed_wait_ms"] = row["data_wait_ms"] = row["data_wait_ms"] * (1 + (r % 7) / 20)
        docs.append(typed(doc))
    return build_multirank_document(docs, "job/")


def job_of(doc: Any) -> JobDocument:
    """``doc``, checked to be a job's (several ranks') document."""
    from tracelens.document.schema import JobDocument

    assert isinstance(doc, JobDocument), f"not a job document: {type(doc).__name__}"
    return doc


def single_of(doc: Any) -> Document:
    """``doc``, checked to be one trace's (or rank's) document."""
    from tracelens.document.schema import Document

    assert isinstance(doc, Document), f"not a one-rank document: {type(doc).__name__}"
    return doc


def plain(doc: Any) -> Any:
    """A typed document (or anything holding one) as its JSON form: dicts and lists."""
    import msgspec

    return msgspec.to_builtins(doc)


def typed(data: dict[str, Any]) -> Document:
    """A one-rank document from its JSON form, checked as the decoder checks it."""
    import msgspec

    from tracelens.document.schema import Document

    return msgspec.convert(data, Document)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


#: A one-rank document with nothing measured: what :func:`make_document` fills in.
EMPTY_DOCUMENT: dict[str, Any] = {
    "schema_version": 1,
    "source": {"path": "trace.json", "format": "json", "ranks": None, "devices": []},
    "steps": 0,
    "metrics": {"step_time_ms_median": None, "data_wait_fraction": None, "exposed_data_wait_fraction": None,
                "gpu_busy_fraction": None},
    "loader": {"iterator": "unknown", "num_workers": None, "pin_memory": None, "persistent_workers": None,
               "prefetch_factor": None},
    "diagnosis": "undetermined",
    "recommendation": {"num_workers": None, "pin_memory": None, "persistent_workers": None,
                       "prefetch_factor": None, "notes": []},
    "findings": [],
}


def make_document(**fields: Any) -> Document:
    """A complete typed document: :data:`EMPTY_DOCUMENT` with ``fields`` (JSON values; nested
    objects merged key by key) over it."""
    return typed(_merged(EMPTY_DOCUMENT, fields))


def finding(fid: str, severity: str = "info", **fields: Any) -> dict[str, Any]:
    """A finding's JSON form (for :func:`make_document`)."""
    return {"id": fid, "kind": fid.lower(), "severity": severity, "confidence": 0.9, "title": f"finding {fid}",
            "evidence": {}, "advice": ""} | fields


def without_paths(doc: Any) -> dict[str, Any]:
    """The document's JSON form with every source path cut to its file name (a URL and a path
    then agree)."""
    out: dict[str, Any] = plain(doc)
    out["source"]["path"] = None
    for r in out.get("ranks", []):
        r["source"]["path"] = r["source"]["path"].rsplit("/", 1)[-1]
    return out
