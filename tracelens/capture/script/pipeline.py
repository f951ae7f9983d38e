"""Time the ``next()`` of any input pipeline that feeds the training loop (no code change).

At the first backward pass or optimizer step the session asks :mod:`loopfind` for the training
loop's input. Unless it is a DataLoader (timed by the DataLoader hooks), it is timed here:

- an iterator written as a Python class (``torchdata.nodes``' ``LoaderIterator``, a custom
  iterator): its class's ``__next__`` is replaced, for instances of exactly that class, so every
  epoch's iterator is timed; the hooks restore it when the session ends;
- a generator (a generator function, webdataset's pipelines): Python gives no way to wrap it, so
  a trace function (``sys.settrace``) is told when a generator of that code resumes (``call``)
  and yields or ends (``return``). It is armed at each optimizer step (a backward pass in a
  loop without one) and disarms itself at the yield, so only the calls between the step and the next batch meet it
  (each returns no local trace function and runs untraced); the generator's own frame gets no
  line events.

Each ``next()`` goes through the session as a DataLoader ``__next__`` does (steps, window,
batch timings), and in the recorded window it is the trace event ``tracelens#next(<type>)``,
which analysis reads as the data wait. A DataLoader drawn inside it (webdataset's WebLoader)
is then part of its wait, not a loader of its own.
"""

from __future__ import annotations

import contextlib
import dis
import sys
import types
from typing import Any, Protocol

from tracelens.capture.dataloader import hooks
from tracelens.capture.script.loopfind import Found

#: The trace event around each ``next()`` of the training loop's input pipeline.
EVENT_PREFIX = "tracelens#next("
_YIELD = dis.opmap.get("YIELD_VALUE", -1)


class PipelineEvents(Protocol):
    """What the timers call on the session."""

    def begin_next(self, loader_id: int, it: Any) -> int: ...

    def end_next(self, loader_id: int, t0: int, stopped: bool) -> None: ...

    def recording(self) -> bool: ...


def type_name(found: Found) -> str:
    """``module.qualname`` of what is timed (a generator's function)."""
    it = found.iterator
    if isinstance(it, types.GeneratorType):
        code = it.gi_code
        module = (it.gi_frame.f_globals.get("__name__", "") if it.gi_frame is not None else "") or ""
        return f"{module}.{getattr(code, 'co_qualname', code.co_name)}".lstrip(".")
    return f"{type(it).__module__}.{type(it).__qualname__}"


def event_name(found: Found) -> str:
    """The trace event of one ``next()``: ``tracelens#next(<type>)``."""
    return f"{EVENT_PREFIX}{type_name(found)})"


class _Event:
    """A ``record_function`` opened and closed by hand (the generator timer's two callbacks)."""

    def __init__(self, name: str) -> None:
        import torch.profiler

        self.rf: Any = torch.profiler.record_function(name)
        self.rf.__enter__()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.rf.__exit__(None, None, None)


def _timed_call(session: PipelineEvents, loader_id: int, it: Any, orig: Any, event: str) -> Any:
    t0 = session.begin_next(loader_id, it)
    rf = _Event(event) if session.recording() else None
    try:
        data = orig(it)
    except StopIteration:
        if rf is not None:
            rf.close()
        session.end_next(loader_id, t0, True)
        raise
    except BaseException:
        if rf is not None:
            rf.close()
        raise
    if rf is not None:
        rf.close()
    session.end_next(loader_id, t0, False)
    return data


def time_class(cls: type, loader_id: int, event: str) -> None:
    """Time ``next()`` on instances of exactly ``cls`` (its ``__next__`` may be inherited)."""
    orig = cls.__next__  # type: ignore[attr-defined]

    def make(_own: Any) -> Any:
        def __next__(self: Any) -> Any:
            session = hooks.active_session()
            if session is None or type(self) is not cls or hooks.inside("next"):
                return orig(self)
            with hooks.outermost("next"):
                return _timed_call(session, loader_id, self, orig, event)  # type: ignore[arg-type]

        __next__.__wrapped__ = orig  # type: ignore[attr-defined]
        return __next__

    hooks.patch(cls, "__next__", make)


class GeneratorTimer:
    """Times each resumption of generators of one code object (see the module docstring)."""

    def __init__(self, code: types.CodeType, loader_id: int, event: str) -> None:
        self.code, self.loader_id, self.event = code, loader_id, event
        self.frame: types.FrameType | None = None
        self.t0 = 0
        self.rf: _Event | None = None
        self.depth: Any = None

    def install(self) -> bool:
        """Start timing (False where another trace function, a debugger or coverage, is set)."""
        if sys.gettrace() is not None:
            return False
        self.arm()
        hooks.add_cleanup(self.uninstall)
        return True

    def arm(self) -> None:
        """Catch the generator's next resumption: called at each backward pass and optimizer
        step, it arms at the step where the loop has one (the fewest calls until the next batch)."""
        if sys.gettrace() is None and (hooks.STEPS["now"] or not hooks.STEPS["seen"]):
            sys.settrace(self._call)

    def uninstall(self) -> None:
        if sys.gettrace() == self._call:
            sys.settrace(None)
        self._finish(stopped=False, record=False)

    def _call(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if frame.f_code is not self.code or event != "call" or self.frame is not None:
            return None
        session = hooks.active_session()
        if session is None or hooks.inside("next"):
            return None
        frame.f_trace_lines = False
        self.depth = hooks.outermost("next")
        self.depth.__enter__()
        self.frame = frame
        try:
            self.t0 = session.begin_next(self.loader_id, None)  # type: ignore[attr-defined]
        except BaseException:  # StopRun: the window is recorded, the script stops here
            self._finish(stopped=False, record=False)
            raise
        self.rf = _Event(self.event) if session.recording() else None  # type: ignore[attr-defined]
        return self._local

    def _local(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "return" and frame is self.frame:
            code = frame.f_code.co_code
            at_yield = 0 <= frame.f_lasti < len(code) and code[frame.f_lasti] == _YIELD
            if at_yield and sys.gettrace() == self._call:
                sys.settrace(None)  # disarmed until the next step: the step's own calls run untraced
            self._finish(stopped=not at_yield, record=True)
            return None
        return self._local

    def _finish(self, *, stopped: bool, record: bool) -> None:
        if self.frame is None:
            return
        self.frame = None
        if self.rf is not None:
            self.rf.close()
            self.rf = None
        if self.depth is not None:
            self.depth.__exit__()
            self.depth = None
        session = hooks.active_session()
        if record and session is not None:
            session.end_next(self.loader_id, self.t0, stopped)  # type: ignore[attr-defined]


def shutdown_nodes(iterator: Any) -> None:
    """Stop the threads and processes of a torchdata.nodes graph (each node's ``_shutdown``): a
    script stopped once the window is recorded then exits cleanly (daemon threads still running
    torch code while the interpreter exits abort it)."""
    seen: list[Any] = []
    todo = [iterator]
    while todo and len(seen) < 64:
        node = todo.pop()
        if node is None or any(node is s for s in seen):
            continue
        seen.append(node)
        stop = getattr(node, "_shutdown", None)
        if callable(stop):
            with contextlib.suppress(Exception):
                stop()
        todo += [getattr(node, a, None) for a in ("source", "root", "_it")]


def install_timer(found: Found, loader_id: int) -> tuple[str | None, Any]:
    """Start timing ``found``'s ``next()``: (None, or why it could not be timed; the function to
    call at each step, or None)."""
    event = event_name(found)
    if found.kind == "class":
        time_class(type(found.iterator), loader_id, event)
        return None, None
    if found.kind == "generator":
        timer = GeneratorTimer(found.iterator.gi_code, loader_id, event)
        if not timer.install():
            return "another trace function (a debugger or coverage) is set, so its generator cannot be timed", None
        return None, timer.arm
    return found.note or "it cannot be timed", None
