"""Patches on torch classes that route DataLoader and profiler events to the active session.

The patches are installed once per session and removed when it finishes; while no session is
active each patched method only checks one module global, so a loader outside a session costs
one extra Python call per batch. Backward passes (``torch.autograd.backward``, which
``Tensor.backward`` calls) and optimizer steps (torch's global step hook) tell the session which
loader trains: one call per backward pass or step, none per batch.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, Protocol


class SessionEvents(Protocol):
    """What the patches call on the active session (``CaptureSession`` and ``TimingSession``)."""

    loader_overrides: dict[str, Any]

    def apply_overrides(self, arguments: dict[str, Any]) -> dict[str, Any]: ...

    def register_loader(self, loader: Any, applied: dict[str, Any] | None = None) -> int: ...

    def on_iter(self, loader: Any, orig: Any) -> Any: ...

    def on_next(self, it: Any, orig: Any) -> Any: ...

    def on_backward(self) -> None: ...

    def on_user_profiler(self, name: str, prof: Any = None) -> None: ...


_ACTIVE: SessionEvents | None = None
_ORIGINALS: dict[tuple[Any, str], Any] = {}
_HANDLES: list[Any] = []
_CLEANUPS: list[Callable[[], None]] = []
#: Per thread, which hooked calls are under way: a subclass's ``__next__`` that calls
#: ``super().__next__()`` (StatefulDataLoader), or a DataLoader drawn inside a timed pipeline's
#: ``next()``, reaches the session once, at the outermost call.
_DEPTH = threading.local()


def inside(kind: str) -> bool:
    """Whether a hooked ``kind`` call (``next``, ``iter``, ``init``) is under way in this thread."""
    return bool(getattr(_DEPTH, kind, 0))


class outermost:
    """Marks a hooked ``kind`` call as under way in this thread while the block runs."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        setattr(_DEPTH, self.kind, getattr(_DEPTH, self.kind, 0) + 1)

    def __exit__(self, *exc: object) -> None:
        setattr(_DEPTH, self.kind, getattr(_DEPTH, self.kind, 1) - 1)


def active_session() -> SessionEvents | None:
    """The session that receives DataLoader events now, if any."""
    return _ACTIVE


def _targets() -> dict[tuple[Any, str], Callable[..., Any]]:
    import torch.autograd
    import torch.autograd.profiler as autograd_profiler
    import torch.profiler
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    return {
        (DataLoader, "__init__"): _make_init_hook,
        (DataLoader, "__iter__"): _make_iter_hook,
        (_BaseDataLoaderIter, "__next__"): _make_next_hook,
        (torch.profiler.profile, "start"): _make_profiler_start_hook,
        (autograd_profiler.profile, "__enter__"): _make_profiler_start_hook,
        (torch.autograd, "backward"): _make_backward_hook,
    }


#: Whether an optimizer step was seen in this session, and whether the event being delivered
#: is one (a generator's timer arms itself at the last event of a step).
STEPS = {"seen": False, "now": False}


def _optimizer_step_hook(optimizer: Any, args: Any, kwargs: Any) -> None:
    session = _ACTIVE
    if session is not None:
        STEPS["seen"] = STEPS["now"] = True
        try:
            session.on_backward()
        finally:
            STEPS["now"] = False


def install(session: SessionEvents) -> None:
    """Route DataLoader and profiler events to ``session`` (one session at a time)."""
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError("a tracelens capture session is already active in this process")
    for (cls, name), make in _targets().items():
        _patch(cls, name, make)
    from torch.utils.data import DataLoader
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    from tracelens.capture.dataloader.subclasses import patch_subclasses

    patch_subclasses(_patch, {DataLoader: {"__init__": _make_init_hook, "__iter__": _make_iter_hook},
                              _BaseDataLoaderIter: {"__next__": _make_next_hook}}, _ABSENT)
    try:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _HANDLES.append(register_optimizer_step_post_hook(_optimizer_step_hook))
    except ImportError:  # torch < 2.0: backward passes alone tell the training loader
        pass
    _ACTIVE = session


def _patch(cls: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``cls.name`` (its own attribute) by ``make(original)``, once."""
    if (cls, name) in _ORIGINALS:
        return
    orig = cls.__dict__.get(name, _ABSENT)
    _ORIGINALS[(cls, name)] = orig
    setattr(cls, name, make(orig))


def patch(cls: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``cls.name`` by ``make(its own attribute, or the absent marker)`` until
    :func:`uninstall` (pipeline timers use it for the iterator class they time)."""
    _patch(cls, name, make)


def add_cleanup(fn: Callable[[], None]) -> None:
    """Call ``fn`` at :func:`uninstall` (a trace function to remove)."""
    _CLEANUPS.append(fn)


def uninstall() -> None:
    """Restore the original methods."""
    global _ACTIVE
    for fn in _CLEANUPS:
        fn()
    _CLEANUPS.clear()
    STEPS.update(seen=False, now=False)
    for (cls, name), orig in _ORIGINALS.items():
        if orig is _ABSENT:
            if name in cls.__dict__:
                delattr(cls, name)
        else:
            setattr(cls, name, orig)
    _ORIGINALS.clear()
    for handle in _HANDLES:
        handle.remove()
    _HANDLES.clear()
    _ACTIVE = None


#: Marks a patched attribute the class did not have (uninstall deletes it).
_ABSENT = object()


def _make_init_hook(orig: Callable[..., None]) -> Callable[..., None]:
    signature = inspect.signature(orig)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        session = _ACTIVE
        if session is None or inside("init") or getattr(self, "_tracelens_id", None) is not None:
            orig(self, *args, **kwargs)
            return
        applied: dict[str, Any] = {}
        if session.loader_overrides:
            from tracelens.capture.dataloader.subclasses import bind_overrides

            args, kwargs, applied = bind_overrides(signature, self, args, kwargs, session.apply_overrides)
        with outermost("init"):
            orig(self, *args, **kwargs)
        session.register_loader(self, applied)

    __init__.__wrapped__ = orig  # type: ignore[attr-defined]
    return __init__


def _make_iter_hook(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __iter__(self: Any) -> Any:
        session = _ACTIVE
        if session is None or inside("iter"):
            return orig(self)
        with outermost("iter"):
            return session.on_iter(self, orig)

    __iter__.__wrapped__ = orig  # type: ignore[attr-defined]
    return __iter__


def _make_next_hook(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __next__(self: Any) -> Any:
        session = _ACTIVE
        if session is None or inside("next"):
            return orig(self)
        with outermost("next"):
            return session.on_next(self, orig)

    __next__.__wrapped__ = orig  # type: ignore[attr-defined]
    return __next__


def _make_backward_hook(orig: Callable[..., Any]) -> Callable[..., Any]:
    def backward(*args: Any, **kwargs: Any) -> Any:
        session = _ACTIVE
        if session is not None:
            session.on_backward()
        return orig(*args, **kwargs)

    backward.__wrapped__ = orig  # type: ignore[attr-defined]
    return backward


def _make_profiler_start_hook(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def start(self: Any) -> Any:
        session = _ACTIVE
        if session is not None and not getattr(self, "_tracelens_own", False):
            session.on_user_profiler(f"{type(self).__module__}.{type(self).__qualname__}", self)
        return orig(self)

    start.__wrapped__ = orig  # type: ignore[attr-defined]
    return start
