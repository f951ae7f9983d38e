"""The window's loader and schedule, and the notes that say how they were chosen (see
``session`` for the rules): kept apart from the session's state machine."""

from __future__ import annotations

from typing import Any

from tracelens.capture.dataloader.registry import LoaderRegistry
from tracelens.capture.options import DEFAULT_ACTIVE_STEPS
from tracelens.runjson import Loader, Schedule


def default_wait(loader: Loader) -> int:
    """Batches to skip before the window: worker start-up and the batches prefetched before the
    first ``__next__`` (num_workers × prefetch_factor), between 3 and 16."""
    prefetched = (loader.num_workers or 0) * (loader.prefetch_factor or 0)
    return max(3, min(prefetched, 16))


def choose_schedule(loader: Loader, wait: int | None, warmup: int, active: int | None,
                    stop_after_window: bool) -> Schedule:
    """The window for ``loader`` (the one whose batches are the steps).

    Explicit values win; default ``wait`` is :func:`default_wait`, ``active`` 20 batches. An
    epoch shorter than the window does not shrink it: the window spans epochs.
    """
    return Schedule(wait=wait if wait is not None else default_wait(loader), warmup=warmup,
                    active=active if active is not None else DEFAULT_ACTIVE_STEPS,
                    stop_after_window=stop_after_window)


def is_exhausted(it: Any) -> bool:
    """Whether this ``__next__`` on a map-style iterator can only raise ``StopIteration`` (an
    iterable-style stream tells only by raising: that call then opens a step of its own)."""
    try:
        from torch.utils.data.dataloader import _DatasetKind

        if it._dataset_kind != _DatasetKind.Map or it._sampler_iter is None:
            return False
        return bool(it._num_yielded >= len(it))
    except Exception:
        return False


def no_window_note(registry: LoaderRegistry, loader_id: int | None, schedule: Schedule | None,
                   wait: int | None) -> str:
    """Why a run that drew batches has no window."""
    if loader_id is None or schedule is None:
        drawn = max((r.batches_drawn for r in registry.records), default=0)
        asked = wait if wait is not None else "its default"
        return (f"no loader drew {asked} batches (the most: {drawn}) and none fed a backward pass "
                "before the script ended: no trace; re-run with a smaller --wait on a longer run")
    drawn = registry.records[loader_id].batches_drawn
    return (f"the training loader (#{loader_id}) drew {drawn} batches, fewer than the {schedule.wait} "
            f"skipped before the window: no trace; re-run with --wait {max(0, drawn - 12)} or on a longer run")


def choice_note(registry: LoaderRegistry, loader_id: int | None, provisional: bool) -> str | None:
    """How the window's loader was chosen, when there was a choice to make."""
    if loader_id is None:
        return None
    if provisional:
        return (f"no batch was followed by a backward pass or an optimizer step before the window: "
                f"it records loader #{loader_id}, which drew the most batches (an inference loop, or an "
                "evaluation before training)")
    others = [r.info.id for r in registry.records if r.info.id != loader_id and r.batches_drawn and not r.nested]
    if not others:
        return None
    return (f"the window records the training loader #{loader_id} (its batches fed backward passes); "
            f"batches of loader(s) {', '.join(f'#{o}' for o in others)} are not steps (a loader that "
            "feeds no backward pass, such as validation, lies between steps)")
