"""Find the iterator that feeds the training loop, from inside a backward pass or optimizer step.

Called once, at the first backward pass (or optimizer step) of a session: it walks up the stack
from the hook to the script's frames and, in each, finds the ``for`` loops that enclose the
running instruction (``dis``: a ``FOR_ITER`` at offset f whose exit lies after the frame's
``f_lasti``), innermost first. The loop's iterator lives on the frame's value stack, which
Python does not expose, so the loop's *iterable* is rebuilt from the instructions before its
``GET_ITER`` (names, attributes and calls, evaluated without calling anything) and its live
iterator found from there:

- an object that is its own iterator (a generator, a ``torchdata.nodes`` node) is the iterator;
- an iterable (a ``torchdata.nodes.Loader``, a webdataset pipeline) is referred to by its live
  iterator: an object with ``__next__`` holding it, or a suspended generator whose frame holds it
  (``gc.get_referrers``);
- ``for b in batches(...)`` with ``batches`` a generator function: the suspended generator of
  that code (``gc.get_objects``);
- ``enumerate(x)``, ``zip(x, …)``, ``tqdm(x)``: the wrapped ``x`` (its ``next()`` is the wait).

Loops over containers (lists, tuples, ranges, tensors: gradient accumulation, optimizers) are
skipped; a DataLoader (or its iterator) is reported as such: the DataLoader hooks time it.
Nothing here imports torch.
"""

from __future__ import annotations

import builtins
import dis
import gc
import inspect
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Frames looked at above the hook (the loop may sit a few calls above ``loss.backward()``).
MAX_FRAMES = 40
#: Line starts tried backwards from a loop's ``GET_ITER`` to rebuild a multi-line iterable.
MAX_LINES_BACK = 4
_CONTAINERS = (list, tuple, range, dict, set, frozenset, str, bytes, bytearray)


@dataclass(frozen=True)
class Found:
    """The training loop's input: ``iterator`` to time (None when ``kind`` is ``dataloader``)."""

    kind: str  # "dataloader", "class" (a Python iterator class), "generator", "unsupported"
    iterator: Any
    iterable: Any  # what the loop names (the iterator itself when it names one)
    where: str  # "file:line in function" of the loop
    note: str | None = None  # why it cannot be timed (kind "unsupported")


@dataclass(frozen=True)
class _Call:
    func: Any
    args: tuple[Any, ...]


_UNKNOWN = object()


def _skip_dirs() -> tuple[str, ...]:
    here = str(Path(__file__).resolve().parents[1])
    dirs = [here, str(Path(inspect.__file__).resolve().parent)]  # tracelens, the stdlib
    try:
        import torch

        dirs.append(str(Path(torch.__file__).resolve().parent))
    except Exception:
        pass
    return tuple(dirs)


def _user_frame(filename: str, skip: tuple[str, ...]) -> bool:
    try:
        path = str(Path(filename).resolve())
    except (OSError, ValueError):
        return True
    return not any(path.startswith(d + "/") for d in skip) and not filename.startswith("<frozen")


def enclosing_loops(code: types.CodeType, lasti: int) -> list[int]:
    """Offsets of the ``GET_ITER`` of each ``for`` loop enclosing ``lasti``, innermost first."""
    instrs = list(dis.get_instructions(code))
    loops = []
    for i, ins in enumerate(instrs):
        if ins.opname == "FOR_ITER" and i and instrs[i - 1].opname == "GET_ITER":
            exit_ = ins.argval if isinstance(ins.argval, int) else -1
            if ins.offset < lasti < exit_:
                loops.append(i - 1)
    return [instrs[i].offset for i in sorted(loops, key=lambda i: -instrs[i].offset)]


def _evaluate(instrs: list[dis.Instruction], frame: types.FrameType) -> Any:
    """The value the instructions leave on the stack, without calling anything (calls become
    ``_Call``); ``_UNKNOWN`` for any instruction outside names, attributes, constants and calls."""
    stack: list[Any] = []
    f_locals = frame.f_locals
    for ins in instrs:
        op = ins.opname
        if op in ("LOAD_FAST", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_NAME", "LOAD_GLOBAL"):
            name = ins.argval
            if op == "LOAD_GLOBAL" and isinstance(ins.arg, int) and ins.arg & 1 and ins.argrepr.startswith("NULL"):
                stack.append(None)
            if name in f_locals and op != "LOAD_GLOBAL":
                stack.append(f_locals[name])
            elif name in frame.f_globals:
                stack.append(frame.f_globals[name])
            elif hasattr(builtins, name):
                stack.append(getattr(builtins, name))
            else:
                return _UNKNOWN
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            if not stack or stack[-1] is _UNKNOWN:
                return _UNKNOWN
            try:
                value = inspect.getattr_static(stack[-1], ins.argval)
                if isinstance(value, property | types.FunctionType | classmethod | staticmethod):
                    value = getattr(stack[-1], ins.argval)
            except Exception:
                return _UNKNOWN
            stack[-1] = value
        elif op == "LOAD_CONST":
            stack.append(ins.argval)
        elif op in ("PUSH_NULL", "PRECALL", "KW_NAMES", "NOP", "RESUME", "CACHE"):
            if op == "PUSH_NULL":
                stack.append(None)
        elif op in ("CALL", "CALL_FUNCTION", "CALL_METHOD"):
            n = int(ins.arg or 0)
            if len(stack) < n + 1:
                return _UNKNOWN
            args = tuple(stack[len(stack) - n:])
            del stack[len(stack) - n:]
            func = stack.pop()
            if stack and stack[-1] is None:
                stack.pop()
            elif func is None and stack:
                func = stack.pop()
            stack.append(_Call(func, args))
        else:
            return _UNKNOWN
    return stack[-1] if len(stack) == 1 or (len(stack) == 2 and stack[0] is None) else _UNKNOWN


def loop_iterable(frame: types.FrameType, get_iter_offset: int) -> tuple[Any, int | None]:
    """The loop's iterable rebuilt from the instructions before its ``GET_ITER``, and the line
    of the loop."""
    instrs = list(dis.get_instructions(frame.f_code))
    end = next(i for i, ins in enumerate(instrs) if ins.offset == get_iter_offset)
    starts = [i for i in range(end, -1, -1) if instrs[i].starts_line is not None][:MAX_LINES_BACK]
    line = instrs[starts[0]].starts_line if starts else None
    for start in starts:
        value = _evaluate(instrs[start:end], frame)
        if value is not _UNKNOWN:
            return value, instrs[start].starts_line
    return _UNKNOWN, line


def _is_container(obj: Any) -> bool:
    if isinstance(obj, _CONTAINERS):
        return True
    mod = type(obj).__module__
    return mod.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter")


def _is_dataloader(obj: Any) -> bool:
    for cls in type(obj).__mro__:
        if cls.__module__ == "torch.utils.data.dataloader" and cls.__name__ in ("DataLoader", "_BaseDataLoaderIter"):
            return True
    return False


def _generators_of(code: types.CodeType) -> list[Any]:
    return [o for o in gc.get_objects()
            if type(o) is types.GeneratorType and o.gi_code is code and o.gi_frame is not None
            and not o.gi_running]


def _iterator_of(iterable: Any) -> Any:
    """The live iterator created from ``iterable`` (a referrer with ``__next__``, or a
    suspended generator whose frame holds it); None when there is none."""
    found: list[Any] = []
    for ref in gc.get_referrers(iterable):
        if isinstance(ref, types.GeneratorType):
            frame = ref.gi_frame
            if frame is not None and not ref.gi_running and any(v is iterable for v in frame.f_locals.values()):
                found.append(ref)
        elif isinstance(ref, dict):
            owners = [o for o in gc.get_referrers(ref) if getattr(o, "__dict__", None) is ref]
            found += [o for o in owners if hasattr(type(o), "__next__")]
        elif hasattr(type(ref), "__next__") and not isinstance(ref, type | types.FrameType):
            found.append(ref)
    found = [f for f in found if f is not iterable]
    return found[-1] if found else None


def classify(iterator: Any, iterable: Any, where: str) -> Found:
    """How ``iterator`` can be timed."""
    if _is_dataloader(iterator) or _is_dataloader(iterable):
        return Found("dataloader", None, iterable, where)
    if isinstance(iterator, types.GeneratorType):
        return Found("generator", iterator, iterable, where)
    nxt = getattr(type(iterator), "__next__", None)
    if isinstance(nxt, types.FunctionType):
        return Found("class", iterator, iterable, where)
    return Found("unsupported", None, iterable, where,
                 note=f"its iterator ({type(iterator).__module__}.{type(iterator).__qualname__}) is not "
                      "written in Python, so its next() cannot be timed")


def resolve(value: Any, where: str) -> Found | None:
    """The loop's input from the rebuilt iterable; None when the loop is not over a data
    pipeline (a container, a range) or nothing can be found."""
    if value is _UNKNOWN or value is None:
        return None
    if isinstance(value, _Call):
        func = value.func
        if inspect.isgeneratorfunction(func):
            gens = _generators_of(func.__code__)
            return classify(gens[-1], gens[-1], where) if gens else None
        wrapped = [f for f in (resolve(arg, where) for arg in value.args) if f is not None]
        if any(f.kind == "dataloader" for f in wrapped):  # tqdm(loader): the DataLoader hooks time it
            return next(f for f in wrapped if f.kind == "dataloader")
        if isinstance(func, type) and func.__module__ != "builtins" and hasattr(func, "__iter__"):
            made = [o for o in gc.get_objects() if type(o) is func]  # built in the loop's header
            if made:
                return resolve(made[-1], where)
        if func in (enumerate, zip, iter, reversed) or isinstance(func, type):
            return wrapped[0] if wrapped else None
        return None
    if _is_container(value) or isinstance(value, types.ModuleType | type):
        return None
    if _is_dataloader(value):
        return Found("dataloader", None, value, where)
    if hasattr(type(value), "__next__"):
        if type(value).__module__ == "builtins" and not isinstance(value, types.GeneratorType):
            return None
        return classify(value, value, where)
    if not hasattr(type(value), "__iter__"):
        return None
    it = _iterator_of(value)
    return classify(it, value, where) if it is not None else None


def find_training_input(start: types.FrameType | None) -> Found | None:
    """The input of the innermost ``for`` loop over a data pipeline enclosing ``start``."""
    skip = _skip_dirs()
    frame, seen = start, 0
    while frame is not None and seen < MAX_FRAMES:
        seen += 1
        code = frame.f_code
        if _user_frame(code.co_filename, skip):
            for get_iter in enclosing_loops(code, frame.f_lasti):
                value, line = loop_iterable(frame, get_iter)
                found = resolve(value, f"{Path(code.co_filename).name}:{line} in {code.co_name}")
                if found is not None:
                    return found
        frame = frame.f_back
    return None
