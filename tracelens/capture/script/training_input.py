"""At the first backward pass: find what feeds the training loop and, unless it is a DataLoader,
time it as the window's loader (``loopfind`` finds it, ``pipeline`` times it)."""

from __future__ import annotations

import sys
from typing import Any, Protocol

from tracelens.capture.dataloader.registry import LoaderRegistry
from tracelens.capture.script.loopfind import Found, find_training_input
from tracelens.capture.script.pipeline import event_name, install_timer, shutdown_nodes, type_name
from tracelens.runjson import Loader

#: Module prefixes of the pipelines tracelens names (``Loader.framework``).
FRAMEWORKS = (("torchdata.nodes", "torchdata.nodes"), ("webdataset", "webdataset"),
              ("datasets", "datasets"), ("torchdata", "torchdata"))


class PipelineSession(Protocol):
    registry: LoaderRegistry
    notes: list[str]

    on_stop: Any

    def take_pipeline(self, loader_id: int, on_step: Any) -> None: ...


def _module_of(obj: Any) -> str:
    return type(obj).__module__ or ""


def framework_of(found: Found) -> str | None:
    """The library the pipeline comes from (``torchdata.nodes``, ``webdataset``, …); ``generator``
    for a plain generator, None for another Python iterator."""
    for obj in (found.iterable, found.iterator):
        module = _module_of(obj)
        if module == "generator":
            module = (getattr(obj, "gi_frame", None) and obj.gi_frame.f_globals.get("__name__", "")) or ""
        for prefix, name in FRAMEWORKS:
            if module == prefix or module.startswith(prefix + "."):
                return name
    return "generator" if found.kind == "generator" else None


def describe_pipeline(found: Found, loader_id: int) -> Loader:
    """The run.json loader entry of a pipeline (its knobs: ``capture.knobs``)."""
    from tracelens.capture.dataloader.knobs import pipeline_settings

    return pipeline_settings(found.iterator, found.iterable, Loader(
        id=loader_id, cls=type_name(found), dataset_kind="iterable",
        dataset_class=f"{_module_of(found.iterable)}.{type(found.iterable).__qualname__}",
        created_at=found.where, framework=framework_of(found)))


def adopt_training_input(session: PipelineSession) -> None:
    """Look for the training loop's input from the hook's stack and time it when it is no
    DataLoader; every outcome but a DataLoader leaves a note."""
    try:
        found = find_training_input(sys._getframe(2))
    except Exception as exc:  # never break the script: say it, and go on with the DataLoader hooks
        session.notes.append(f"tracelens could not look for the training loop's input ({type(exc).__name__}: {exc})")
        return
    if found is None or found.kind == "dataloader":
        return
    if found.kind == "unsupported":
        session.notes.append(f"the training loop ({found.where}) draws from {type(found.iterator).__qualname__}: "
                             f"{found.note}; wrap it in a generator or a DataLoader to measure its wait")
        return
    loader_id = session.registry.adopt_pipeline(lambda i: describe_pipeline(found, i))
    why, on_step = install_timer(found, loader_id)
    if why is not None:
        session.notes.append(f"the training loop ({found.where}) draws from {type_name(found)}, which tracelens "
                             f"could not time: {why}")
        return
    session.notes.append(
        f"the training loop ({found.where}) draws from {type_name(found)}, not a DataLoader: tracelens timed "
        f"each next() on it (trace event `{event_name(found)}`) from its second batch on")
    if framework_of(found) == "torchdata.nodes":
        session.on_stop = lambda: shutdown_nodes(found.iterator)
    session.take_pipeline(loader_id, on_step)
