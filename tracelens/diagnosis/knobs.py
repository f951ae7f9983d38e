"""Which knob of the user's input pipeline the recommended concurrency belongs to.

``recommendation.num_workers`` is the concurrency; this names where it goes, from the loader
``tracelens profile`` recorded (``loader.class``, ``loader.framework``, ``loader.pipeline``):
a DataLoader (or a subclass, by its class), torchdata.nodes' ``ParallelMapper``, webdataset's
``WebLoader``, a Hugging Face dataset behind a DataLoader, a generator or Python iterator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Knob:
    """Where the concurrency goes: ``name`` (recommendation.knob), the call that takes it,
    whether that call is a DataLoader's (its arguments apply), and what to do."""

    name: str
    call: str
    dataloader_args: bool
    text: str


def knob_for(cls: str | None, framework: str | None, pipeline: Mapping[str, Any] | None,
             num_workers: int | None, cause: str | None = None) -> Knob:
    """The knob of the loader a document is about (its ``class``, ``framework``, ``pipeline``)."""
    pipeline = pipeline or {}
    cls = cls or ""
    n = num_workers if num_workers is not None else "N"
    if framework == "torchdata.nodes":
        method = "process" if cause == "cpu_starvation" else pipeline.get("ParallelMapper.method", "thread")
        return Knob("ParallelMapper.num_workers", "ParallelMapper", False,
                    f"ParallelMapper's num_workers is this pipeline's concurrency: set num_workers={n} "
                    f"(method=\"{method}\": threads suit waiting work, processes CPU-bound work); "
                    "a Prefetcher after the Batcher keeps batches ready.")
    if framework == "webdataset":
        text = "WebLoader takes the DataLoader's arguments: set num_workers there."
        if pipeline.get("rebatch_in_main"):
            text += (" Its stages after the loader (unbatched/shuffle/batched) run in the main process, "
                     "and their time is loader time (\"loader, main process\"): batch inside the workers "
                     "(dataset.batched(B) before the WebLoader) so the main process only receives batches.")
        shards = pipeline.get("shards")
        if shards is not None:
            text += f" Keep shards ≥ workers × ranks ({shards} shard(s) now)."
        return Knob("WebLoader.num_workers", "WebLoader", True, text)
    if framework == "datasets" and "DataLoader" in cls:
        shards = pipeline.get("n_shards")
        return Knob("DataLoader.num_workers", "DataLoader", True,
                    f"a Hugging Face IterableDataset gives each worker whole shards: never more workers "
                    f"than its n_shards ({shards}); re-shard it (to_iterable_dataset(num_shards=…), more "
                    "source files) to use more.")
    if framework == "generator" or (cls and "DataLoader" not in cls and not cls.startswith("(iterator)")):
        return Knob("concurrency", cls.rsplit(".", 1)[-1] or "generator", False,
                    f"a generator or iterator has no workers: run its per-batch work {n} at a time, "
                    f"ahead of the loop (Little's law): a ThreadPoolExecutor(max_workers={n}) for waiting "
                    f"work (reads, network), processes for CPU work, or wrap it in a "
                    f"DataLoader(num_workers={n}).")
    name = cls.rsplit(".", 1)[-1] if cls and not cls.startswith("(iterator)") else "DataLoader"
    return Knob(f"{name}.num_workers", name, True, "")
