"""Print every DataLoader a script constructs and iterates, in order, with who did it.

Patches the same three places tracelens hooks (``DataLoader.__init__``, ``DataLoader.__iter__``,
``_BaseDataLoaderIter.__next__``), runs the script as ``python SCRIPT ARGS`` would, and prints
one line per construction and per iteration (epoch): the loader's number, its class (the real
``type()``, not ``__class__``, which wrappers such as accelerate's override), num_workers,
``len()``, the code that called, and how many batches that iteration drew.

    python examples/show_loaders.py examples/lightning_train.py --epochs 1
    python examples/show_loaders.py examples/hf_trainer.py --steps 30
"""

from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _BaseDataLoaderIter

EVENTS: list[list[Any]] = []  # [kind, loader no., text, batches drawn]
LOADERS: dict[int, int] = {}  # id(loader) -> number
ITERS: dict[int, list[Any]] = {}  # id(iterator) -> its "iter" event


def caller() -> str:
    """Who built or iterated: the innermost frame outside torch.utils.data and this file, and
    the innermost frame of the script's own directory when that is a different one."""
    frames = [f for f in traceback.extract_stack()[:-2]
              if "torch/utils/data" not in f.filename and not f.filename.endswith("show_loaders.py")]
    if not frames:
        return "?"

    def fmt(f: traceback.FrameSummary) -> str:
        return f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}"

    inner = frames[-1]
    own = next((f for f in reversed(frames) if str(Path(f.filename).resolve().parent) == sys.path[0]),
               None)
    return fmt(inner) + (f" (from {fmt(own)})" if own is not None and own is not inner else "")


def describe(loader: DataLoader[Any]) -> str:
    try:
        n: Any = len(loader)
    except TypeError:
        n = "no len"
    return (f"{type(loader).__module__}.{type(loader).__qualname__} num_workers="
            f"{loader.num_workers} batch_size={loader.batch_size} len={n} "
            f"dataset={type(loader.dataset).__name__} sampler={type(loader.sampler).__name__}")


orig_init, orig_iter = DataLoader.__init__, DataLoader.__iter__
orig_next = _BaseDataLoaderIter.__next__


def init(self: DataLoader[Any], *args: Any, **kwargs: Any) -> None:
    orig_init(self, *args, **kwargs)
    LOADERS[id(self)] = len(LOADERS)
    EVENTS.append(["new", LOADERS[id(self)], f"{describe(self)}  by {caller()}", None])


def iterate(self: DataLoader[Any]) -> Any:
    it = orig_iter(self)
    no = LOADERS.get(id(self), -1)
    if id(it) not in ITERS or ITERS[id(it)][1] != no:
        event = ["iter", no, f"by {caller()}", 0]
        EVENTS.append(event)
        ITERS[id(it)] = event
    else:  # persistent workers: the same iterator object is reset
        event = ["iter", no, f"(same iterator, reset) by {caller()}", 0]
        EVENTS.append(event)
        ITERS[id(it)] = event
    return it


def next_(self: Any) -> Any:
    event = ITERS.get(id(self))
    data = orig_next(self)  # StopIteration propagates uncounted
    if event is not None:
        event[3] += 1
    return data


def report() -> None:
    print("\n=== DataLoader constructions and iterations, in order ===", file=sys.stderr)
    for kind, no, text, drawn in EVENTS:
        if kind == "new":
            print(f"  new  loader #{no}: {text}", file=sys.stderr)
        else:
            print(f"  iter loader #{no}: {drawn} batches drawn, {text}", file=sys.stderr)


def main() -> None:
    DataLoader.__init__ = init  # type: ignore[method-assign]
    DataLoader.__iter__ = iterate  # type: ignore[method-assign]
    _BaseDataLoaderIter.__next__ = next_  # type: ignore[method-assign]
    script, *args = sys.argv[1:]
    sys.argv = [script, *args]
    sys.path[0] = str(Path(script).resolve().parent)
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        report()


if __name__ == "__main__":
    main()
