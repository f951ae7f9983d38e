"""The settings a sweep tries: DataLoader overrides, grids of them, and their command-line lists."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """The DataLoader arguments one trial overrides (None: the script's own value)."""

    num_workers: int
    pin_memory: bool | None = None
    prefetch_factor: int | None = None

    def overrides(self) -> dict[str, Any]:
        """Constructor arguments to override (prefetch_factor only applies with workers)."""
        out: dict[str, Any] = {"num_workers": self.num_workers}
        if self.pin_memory is not None:
            out["pin_memory"] = self.pin_memory
        if self.prefetch_factor is not None and self.num_workers > 0:
            out["prefetch_factor"] = self.prefetch_factor
        return out

    def label(self) -> str:
        """Short label: ``4``, ``4 pin``, ``4 pf=8``."""
        parts = [str(self.num_workers)]
        if self.pin_memory:
            parts.append("pin")
        if self.prefetch_factor is not None and self.num_workers > 0:
            parts.append(f"pf={self.prefetch_factor}")
        return " ".join(parts)


def grid(num_workers: Sequence[int], pin_memory: Sequence[bool | None] = (None,),
         prefetch_factor: Sequence[int | None] = (None,)) -> list[Setting]:
    """Every combination, without duplicates (prefetch_factor is moot without workers)."""
    seen: dict[Setting, None] = {}
    for w, pin, pf in itertools.product(num_workers, pin_memory, prefetch_factor):
        seen.setdefault(Setting(w, pin, pf if w > 0 else None), None)
    return list(seen)


def parse_int_list(text: str, name: str) -> list[int]:
    """``"0,2,4"`` → [0, 2, 4]; non-negative, in the given order, duplicates dropped."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise ValueError(f"{name} must be integers separated by commas, not {text!r}") from exc
    if not values or any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative integers separated by commas, not {text!r}")
    return list(dict.fromkeys(values))


def parse_bool_list(text: str, name: str) -> list[bool]:
    """``"false,true"`` → [False, True]."""
    table = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    out = []
    for x in text.lower().replace(" ", "").split(","):
        if x not in table:
            raise ValueError(f"{name} takes true/false values separated by commas, not {text!r}")
        out.append(table[x])
    return list(dict.fromkeys(out))
