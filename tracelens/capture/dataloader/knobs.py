"""The settings of an input pipeline in its own terms, read from its objects (best effort):
what ``Loader.pipeline`` records and the advice names (``diagnosis.knobs``).

- torchdata.nodes: the node graph from the ``Loader``'s root (``source`` links):
  ``ParallelMapper.num_workers``/``method``, ``Prefetcher.prefetch_factor``, ``PinMemory``,
  ``Batcher.batch_size``; the concurrency is the mappers' workers;
- webdataset: the DataLoader inside the pipeline (its workers, batch size), the stages after it
  (run in the main process: ``rebatch_in_main``) and the shards of its dataset;
- a Hugging Face ``datasets`` IterableDataset (through a DataLoader): ``n_shards``, the most
  workers that get data (``max_workers``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec

from tracelens.runjson import Loader

#: Nodes followed from a torchdata.nodes root (a pipeline is a chain, rarely long).
MAX_NODES = 64


def _nodes(root: Any) -> list[Any]:
    seen: list[Any] = []
    todo = [root]
    while todo and len(seen) < MAX_NODES:
        node = todo.pop()
        if node is None or any(node is s for s in seen):
            continue
        seen.append(node)
        todo += [getattr(node, a, None) for a in ("source", "root")]
    return seen


def torchdata_nodes(iterator: Any) -> dict[str, Any]:
    """``{ParallelMapper.num_workers: …, …}`` of the graph under a torchdata.nodes Loader."""
    knobs: dict[str, Any] = {}
    workers = 0
    for node in _nodes(iterator):
        name = type(node).__name__
        if name == "ParallelMapper":
            n = int(getattr(node, "num_workers", 0) or 0)
            workers += n
            knobs["ParallelMapper.num_workers"] = knobs.get("ParallelMapper.num_workers", 0) + n
            knobs["ParallelMapper.method"] = str(getattr(node, "method", "thread"))
        elif name == "Prefetcher":
            knobs["Prefetcher.prefetch_factor"] = getattr(node, "prefetch_factor", None)
        elif name == "PinMemory":
            knobs["PinMemory"] = True
        elif name == "Batcher":
            knobs["Batcher.batch_size"] = getattr(node, "batch_size", None)
    knobs["concurrency"] = workers
    return knobs


def _shards(dataset: Any) -> int | None:
    """Shards of a webdataset or Hugging Face dataset (None: unknown)."""
    for attr in ("num_shards", "n_shards"):
        with contextlib.suppress(Exception):
            value = getattr(dataset, attr)
            if isinstance(value, int):
                return value
    for stage in getattr(dataset, "pipeline", None) or []:
        urls = getattr(stage, "urls", None)
        if isinstance(urls, list | tuple):
            return len(urls)
    return None


def webdataset_knobs(iterable: Any) -> dict[str, Any]:
    """The DataLoader inside a webdataset pipeline and the stages after it (main process)."""
    from torch.utils.data import DataLoader

    stages = list(getattr(iterable, "pipeline", None) or [])
    knobs: dict[str, Any] = {}
    for i, stage in enumerate(stages):
        if isinstance(stage, DataLoader):
            knobs.update({"DataLoader.num_workers": int(stage.num_workers), "DataLoader.batch_size": stage.batch_size,
                          "concurrency": int(stage.num_workers),
                          "rebatch_in_main": len(stages) > i + 1, "main_process_stages": len(stages) - i - 1})
            shards = _shards(stage.dataset)
            if shards is not None:
                knobs["shards"] = shards
            break
    return knobs


def dataset_knobs(dataset: Any) -> dict[str, Any]:
    """A Hugging Face IterableDataset's shards (the most DataLoader workers that get data)."""
    if not type(dataset).__module__.startswith("datasets."):
        return {}
    shards = _shards(dataset)
    return {"n_shards": shards} if shards is not None else {}


def pipeline_settings(iterator: Any, iterable: Any, loader: Loader) -> Loader:
    """``loader`` with what the pipeline (the loop's ``iterable`` and its live ``iterator``)
    tells of its knobs and concurrency."""
    framework = loader.framework
    knobs: dict[str, Any] = {}
    try:
        if framework == "torchdata.nodes":
            knobs = torchdata_nodes(iterator)
        elif framework == "webdataset":
            knobs = webdataset_knobs(iterable)
    except Exception:  # a pipeline's internals are not ours: say nothing rather than break the run
        knobs = {}
    concurrency = knobs.pop("concurrency", None)
    batch = knobs.get("Batcher.batch_size", knobs.get("DataLoader.batch_size"))
    return msgspec.structs.replace(
        loader, pipeline=knobs, num_workers=int(concurrency or 0),
        batch_size=batch if isinstance(batch, int) else None,
        max_workers=knobs.get("shards") if framework == "webdataset" else None)


def with_dataset_knobs(loader: Loader, dataset: Any) -> Loader:
    """A DataLoader's entry with its dataset's shards (Hugging Face ``datasets``)."""
    knobs = dataset_knobs(dataset)
    if not knobs:
        return loader
    return msgspec.structs.replace(loader, pipeline=knobs, max_workers=knobs["n_shards"], framework=loader.framework or "datasets")
