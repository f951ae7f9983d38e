"""DataLoader subclasses that override the hooked methods (torchdata's ``StatefulDataLoader``
overrides ``__init__`` without calling DataLoader's, and ``__iter__``; its iterators override
``__next__``): their own methods are hooked too, those defined before the session and those
defined during it (through the base's ``__init_subclass__``). The hooks' per-thread depth makes a
subclass method that calls the base's reach the session once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

Make = Callable[[Any], Any]
Patch = Callable[[Any, str, Make], None]


def _all_subclasses(base: type) -> list[type]:
    found: list[type] = []
    todo: list[type] = list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        if cls not in found:
            found.append(cls)
            todo.extend(cls.__subclasses__())
    return found


def _patch_own(cls: type, names: dict[str, Make], patch: Patch) -> None:
    for name, make in names.items():
        if name in cls.__dict__:
            patch(cls, name, make)


def patch_subclasses(patch: Patch, table: dict[type, dict[str, Make]], absent: object) -> None:
    """Hook the methods named in ``table`` that each base's subclasses define themselves, now
    and for subclasses created later (``absent``: the marker of a base without its own
    ``__init_subclass__``)."""
    for base, names in table.items():
        for sub in _all_subclasses(base):
            _patch_own(sub, names, patch)
        patch(base, "__init_subclass__", _subclass_hook(base, names, patch, absent))


def _subclass_hook(base: type, names: dict[str, Make], patch: Patch, absent: object) -> Make:
    def make(orig: Any) -> Any:
        def __init_subclass__(cls: type, **kwargs: Any) -> None:
            if orig is absent:
                super(base, cls).__init_subclass__(**kwargs)  # type: ignore[arg-type]
            else:
                orig.__get__(None, cls)(**kwargs)
            _patch_own(cls, names, patch)

        return classmethod(__init_subclass__)

    return make


def bind_overrides(signature: inspect.Signature, self: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                   apply: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """Apply the loader overrides to a constructor call (DataLoader's or a subclass's, whose
    ``**kwargs`` may carry them); returns (args, kwargs, what changed). An override the signature
    has no place for is not applied (the session refuses such a trial: ``check_overrides``)."""
    bound = signature.bind(self, *args, **kwargs)
    params = signature.parameters
    varkw = next((n for n, p in params.items() if p.kind is inspect.Parameter.VAR_KEYWORD), None)
    extra: dict[str, Any] = dict(bound.arguments.get(varkw, {})) if varkw else {}
    merged = {k: v for k, v in bound.arguments.items() if k != varkw} | extra
    before = set(merged)
    applied = apply(merged)
    for key, value in merged.items():
        if key in params and key != varkw:
            bound.arguments[key] = value
        elif varkw is not None:
            extra[key] = value
        elif key not in before:
            applied.pop(key, None)
    if varkw is not None:
        bound.arguments[varkw] = extra
    return bound.args[1:], dict(bound.kwargs), applied
