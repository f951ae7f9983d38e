"""The DataLoaders of one session: overrides, constructor settings, iterators and counters.

Both the profiling session and the sweep's timing session compose a :class:`LoaderRegistry`;
the hooks reach it through them. Settings are recorded as the run.json ``Loader`` struct at
registration (with where the loader was built and by which framework: ``origin``); only the
counters change afterwards.

Training evidence: a backward pass (or an optimizer step) is credited to the loader whose batch
was drawn last before it (:meth:`LoaderRegistry.on_backward`): evaluation loops run without
backward, so a validation or sanity-check loader never gets any. A loader drawn exactly once
between consecutive backward passes, :data:`CO_DRAW_STREAK` times in a row, fed them too (a
step drawing from two loaders, ``zip(labeled, unlabeled)``); a validation pass drawn between
two training steps draws many batches, or none, and never builds such a streak.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from tracelens.capture.options import OVERRIDABLE_LOADER_ARGS
from tracelens.runjson import Loader

#: The loader assumed for a ``__next__`` on an iterator no registered loader created.
UNKNOWN_LOADER = Loader(id=-1)
#: Backward passes in a row after each of which a loader had drawn exactly one batch (but not
#: the last one): it feeds the training step beside the loader drawn last.
CO_DRAW_STREAK = 3
#: Settings DataLoader rejects without workers, and their neutral values.
_NEEDS_WORKERS = (("prefetch_factor", None), ("persistent_workers", False), ("multiprocessing_context", None))


@dataclass
class LoaderRecord:
    """One registered loader: its settings (fixed) and how it was used (counters)."""

    info: Loader
    created_ns: int
    iter_calls: int = 0
    iterators_created: int = 0
    batches_drawn: int = 0
    fed_backward: int = 0  # backward passes its batches fed (training evidence)
    drawn_at_backward: int = 0  # batches_drawn at the last backward pass
    co_draw_streak: int = 0  # backward passes in a row after exactly one batch of it

    @property
    def training(self) -> bool | None:
        """Its batches fed backward passes: True; drawn but none did: False; never drawn: None."""
        if self.fed_backward:
            return True
        return False if self.batches_drawn else None

    def to_struct(self, us: Callable[[int | None], float | None]) -> Loader:
        """The run.json entry, with ``us`` converting wall-clock ns to trace µs."""
        return msgspec.structs.replace(
            self.info, created_us=us(self.created_ns), iter_calls=self.iter_calls,
            iterators_created=self.iterators_created, batches_drawn=self.batches_drawn,
            training=self.training)


def jsonable(value: Any) -> Any:
    """``value`` if JSON has it, else its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def _mp_context_name(ctx: Any) -> str:
    if ctx is None:
        import multiprocessing

        return f"default:{multiprocessing.get_start_method(allow_none=False)}"
    if isinstance(ctx, str):
        return ctx
    getter = getattr(ctx, "get_start_method", None)
    return str(getter()) if callable(getter) else type(ctx).__name__


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except Exception:
        return None


def describe_loader(loader: Any, loader_id: int, applied: dict[str, Any],
                    origin: tuple[str | None, str | None] = (None, None)) -> Loader:
    """A constructed DataLoader's settings as the run.json struct (counters zero); ``origin`` is
    (created_at, framework) from :func:`~tracelens.capture.dataloader.origin.loader_origin`."""
    from torch.utils.data import IterableDataset
    from torch.utils.data._utils.collate import default_collate, default_convert

    dataset = loader.dataset
    workers = int(loader.num_workers)
    return Loader(
        id=loader_id,
        cls=f"{type(loader).__module__}.{type(loader).__qualname__}",
        num_workers=workers,
        batch_size=loader.batch_size,
        pin_memory=bool(loader.pin_memory),
        pin_memory_device=getattr(loader, "pin_memory_device", "") or None,
        persistent_workers=bool(loader.persistent_workers),
        prefetch_factor=loader.prefetch_factor if workers > 0 else None,
        multiprocessing_context=_mp_context_name(loader.multiprocessing_context) if workers > 0 else None,
        drop_last=bool(loader.drop_last),
        timeout_s=float(loader.timeout),
        has_worker_init_fn=loader.worker_init_fn is not None,
        has_collate_fn=loader.collate_fn not in (default_collate, default_convert),
        dataset_class=f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        dataset_kind="iterable" if isinstance(dataset, IterableDataset) else "map",
        dataset_len=_length(dataset),
        sampler_class=type(loader.sampler).__qualname__ if loader.sampler is not None else None,
        batches_per_epoch=_length(loader),
        overrides_applied=applied,
        created_at=origin[0],
        framework=origin[1],
    )


def describe_iterator(it: Any, loader_id: int) -> Loader:
    """The settings an iterator no registered loader created still shows (best effort: it was
    created before the session, or by a DataLoader subclass that bypasses ``__iter__``)."""
    dataset = getattr(it, "_dataset", None)
    workers = int(getattr(it, "_num_workers", 0) or 0)
    sampler = getattr(it, "_index_sampler", None)
    kind = getattr(it, "_dataset_kind", 0)
    return Loader(
        id=loader_id, cls=f"(iterator) {type(it).__module__}.{type(it).__qualname__}",
        num_workers=workers, batch_size=getattr(sampler, "batch_size", None),
        pin_memory=bool(getattr(it, "_pin_memory", False)),
        persistent_workers=bool(getattr(it, "_persistent_workers", False)),
        prefetch_factor=getattr(it, "_prefetch_factor", None) if workers > 0 else None,
        drop_last=bool(getattr(it, "_drop_last", False)), timeout_s=float(getattr(it, "_timeout", 0) or 0),
        dataset_class=f"{type(dataset).__module__}.{type(dataset).__qualname__}" if dataset is not None else "",
        dataset_kind="iterable" if kind == 1 else "map", dataset_len=_length(dataset),
        sampler_class=type(sampler).__qualname__ if sampler is not None else None,
        batches_per_epoch=_length(it),
    )


class LoaderRegistry:
    """Every DataLoader of a session, the ``worker_init_fn`` wrappers and the live iterators."""

    def __init__(self, overrides: dict[str, Any], record_dir: Path, *, worker_threads: int | None = None) -> None:
        unknown = set(overrides) - OVERRIDABLE_LOADER_ARGS
        if unknown:
            raise ValueError(f"cannot override DataLoader argument(s): {sorted(unknown)}")
        self.overrides = dict(overrides)
        self.record_dir = record_dir
        self.worker_threads = worker_threads  # torch threads set in each worker (sweep), None: keep
        self.records: list[LoaderRecord] = []
        self.lock = threading.RLock()
        self._refs: list[weakref.ref[Any]] = []
        self._user_worker_init: dict[int, Any] = {}
        self._iterators: weakref.WeakSet[Any] = weakref.WeakSet()

    def apply_overrides(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Apply the overrides to bound DataLoader arguments (in place); return what changed."""
        applied: dict[str, Any] = {}
        for key, value in self.overrides.items():
            if arguments.get(key, _MISSING) != value:
                applied[key] = {"from": jsonable(arguments.get(key)), "to": jsonable(value)}
            arguments[key] = value
        if arguments.get("num_workers", 0) == 0:
            for key, neutral in _NEEDS_WORKERS:
                if arguments.get(key, neutral) != neutral:
                    applied.setdefault(key, {"from": jsonable(arguments[key]), "to": neutral})
                    arguments[key] = neutral
        return applied

    def register(self, loader: Any, applied: dict[str, Any] | None = None, *, constructed: bool = True) -> int:
        """Record a loader's settings, where it was built (``constructed``: called from its
        ``__init__``; else from its first ``__iter__``, where only the framework is told) and
        wrap its ``worker_init_fn``; its id (once per loader)."""
        existing = getattr(loader, "_tracelens_id", None)
        if existing is not None:
            return int(existing)
        from tracelens.capture.dataloader.origin import loader_origin
        from tracelens.capture.dataloader.worker import WorkerInit

        created_at, framework = loader_origin()
        with self.lock:
            loader_id = len(self.records)
            info = describe_loader(loader, loader_id, applied or {},
                                   (created_at if constructed else None, framework))
            self.records.append(LoaderRecord(info, time.time_ns()))
            object.__setattr__(loader, "_tracelens_id", loader_id)
            self._refs.append(weakref.ref(loader))
            if loader.num_workers > 0:
                # a framework that builds a loader from another's attributes (accelerate's
                # DataLoaderShard) copies our wrapper: wrap the user's own function, not ours, so
                # this loader's workers file their batches under this loader
                user_fn = loader.worker_init_fn
                while isinstance(user_fn, WorkerInit):
                    user_fn = user_fn.user_fn
                self._user_worker_init[loader_id] = user_fn
                loader.worker_init_fn = WorkerInit(user_fn, str(self.record_dir), loader_id, self.worker_threads)
        return loader_id

    def on_iter(self, loader: Any) -> LoaderRecord:
        """A loader's ``__iter__`` (one epoch) starts."""
        record = self.records[self.register(loader, constructed=False)]
        with self.lock:
            record.iter_calls += 1
        return record

    def on_iterator(self, loader: Any, it: Any) -> None:
        """Tag a new iterator with its loader and count it (with non-persistent workers: one per epoch)."""
        loader_id = int(loader._tracelens_id)
        if getattr(it, "_tracelens_loader_id", None) is None:
            with contextlib.suppress(Exception):
                it._tracelens_loader_id = loader_id
            self.records[loader_id].iterators_created += 1
            with contextlib.suppress(TypeError):
                self._iterators.add(it)

    def adopt_iterator(self, it: Any) -> int:
        """A record (and id, set on ``it``) for an iterator no registered loader created."""
        with self.lock:
            existing = getattr(it, "_tracelens_loader_id", None)
            if existing is not None:
                return int(existing)
            loader_id = len(self.records)
            self.records.append(LoaderRecord(describe_iterator(it, loader_id), time.time_ns()))
            self.records[loader_id].iterators_created = 1
            with contextlib.suppress(Exception):
                it._tracelens_loader_id = loader_id
            with contextlib.suppress(TypeError):
                self._iterators.add(it)
        return loader_id

    def count_batch(self, loader_id: int | None) -> None:
        """One batch drawn from ``loader_id``."""
        if loader_id is not None:
            self.records[loader_id].batches_drawn += 1

    def on_backward(self, last: int | None) -> int | None:
        """A backward pass (or optimizer step) after batches were drawn: credit the loader drawn
        ``last`` and those on a co-draw streak (module docstring). Returns ``last``, or None when
        no batch was drawn since the previous one (a second backward of the same step)."""
        with self.lock:
            drawn = [(r, r.batches_drawn - r.drawn_at_backward) for r in self.records]
            if last is None or not any(d for _, d in drawn):
                return None
            for r, d in drawn:
                r.drawn_at_backward = r.batches_drawn
                if r.info.id == last:
                    r.fed_backward += 1
                    continue
                r.co_draw_streak = r.co_draw_streak + 1 if d == 1 else 0
                if r.co_draw_streak >= CO_DRAW_STREAK:
                    r.fed_backward += 1
        return last

    def is_training(self, loader_id: int | None) -> bool:
        """Whether ``loader_id``'s batches have fed a backward pass so far."""
        return loader_id is not None and self.records[loader_id].fed_backward > 0

    def any_training(self) -> bool:
        """Whether any loader's batches have fed a backward pass so far."""
        return any(r.fed_backward for r in self.records)

    def most_drawn(self, loader_id: int) -> bool:
        """Whether no other loader has drawn more batches than ``loader_id``."""
        n = self.records[loader_id].batches_drawn
        return all(r.batches_drawn <= n for r in self.records)

    def record_of(self, loader_id: int | None) -> Loader:
        """The settings of ``loader_id`` (``UNKNOWN_LOADER`` for an unregistered iterator)."""
        return self.records[loader_id].info if loader_id is not None else UNKNOWN_LOADER

    def known_workers(self) -> dict[int, tuple[int, int]]:
        """pid → (loader id, worker id) of every worker that has written its record file."""
        found: dict[int, tuple[int, int]] = {}
        try:
            names = os.listdir(self.record_dir)
        except OSError:
            return found
        for name in names:
            parts = name[:-4].split("-") if name.endswith(".rec") else []
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                found[int(parts[2])] = (int(parts[0]), int(parts[1]))
        return found

    def restore(self) -> None:
        """Give loaders back their own ``worker_init_fn`` and forget this session's ids, so a
        loader reused in a later session is registered afresh."""
        for ref in self._refs:
            loader = ref()
            if loader is None:
                continue
            loader_id = loader._tracelens_id
            if loader_id in self._user_worker_init:
                with contextlib.suppress(Exception):
                    loader.worker_init_fn = self._user_worker_init[loader_id]
            with contextlib.suppress(AttributeError):
                object.__delattr__(loader, "_tracelens_id")
        for it in list(self._iterators):
            with contextlib.suppress(AttributeError):
                del it._tracelens_loader_id

    def shutdown_iterators(self) -> None:
        """Stop the workers of every live iterator."""
        for it in list(self._iterators):
            shutdown = getattr(it, "_shutdown_workers", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()


class _Missing:
    pass


_MISSING = _Missing()
