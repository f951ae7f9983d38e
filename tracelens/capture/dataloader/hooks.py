"""Patches on torch classes that route DataLoader and profiler events to the active session.

The patches are installed once per session and removed when it finishes; while no session is
active each patched method only checks one module global, so a loader outside a session costs
one extra Python call per batch. Backward passes (``torch.autograd.backward``, which
``Tensor.backward`` calls) and optimizer steps (torch's global step hook) tell the session which
loader trains: one call per backward pass or step, none per batch.
"""

from __future__ import annotations

import inspect
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

    def on_user_profiler(self, name: str) -> None: ...


_ACTIVE: SessionEvents | None = None
_ORIGINALS: dict[tuple[Any, str], Any] = {}
_HANDLES: list[Any] = []


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


def _optimizer_step_hook(optimizer: Any, args: Any, kwargs: Any) -> None:
    session = _ACTIVE
    if session is not None:
        session.on_backward()


def install(session: SessionEvents) -> None:
    """Route DataLoader and profiler events to ``session`` (one session at a time)."""
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError("a tracelens capture session is already active in this process")
    for (cls, name), make in _targets().items():
        orig = cls.__dict__[name]
        _ORIGINALS[(cls, name)] = orig
        setattr(cls, name, make(orig))
    try:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        _HANDLES.append(register_optimizer_step_post_hook(_optimizer_step_hook))
    except ImportError:  # torch < 2.0: backward passes alone tell the training loader
        pass
    _ACTIVE = session


def uninstall() -> None:
    """Restore the original methods."""
    global _ACTIVE
    for (cls, name), orig in _ORIGINALS.items():
        setattr(cls, name, orig)
    _ORIGINALS.clear()
    for handle in _HANDLES:
        handle.remove()
    _HANDLES.clear()
    _ACTIVE = None


def _make_init_hook(orig: Callable[..., None]) -> Callable[..., None]:
    signature = inspect.signature(orig)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        session = _ACTIVE
        if session is None or getattr(self, "_tracelens_id", None) is not None:
            orig(self, *args, **kwargs)
            return
        applied: dict[str, Any] = {}
        if session.loader_overrides:
            bound = signature.bind(self, *args, **kwargs)
            applied = session.apply_overrides(bound.arguments)
            args, kwargs = bound.args[1:], dict(bound.kwargs)
        orig(self, *args, **kwargs)
        session.register_loader(self, applied)

    __init__.__wrapped__ = orig  # type: ignore[attr-defined]
    return __init__


def _make_iter_hook(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __iter__(self: Any) -> Any:
        session = _ACTIVE
        if session is None:
            return orig(self)
        return session.on_iter(self, orig)

    __iter__.__wrapped__ = orig  # type: ignore[attr-defined]
    return __iter__


def _make_next_hook(orig: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __next__(self: Any) -> Any:
        session = _ACTIVE
        if session is None:
            return orig(self)
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
            session.on_user_profiler(f"{type(self).__module__}.{type(self).__qualname__}")
        return orig(self)

    start.__wrapped__ = orig  # type: ignore[attr-defined]
    return start
