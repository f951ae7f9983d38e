"""The settings a sweep tries: DataLoader overrides and thread counts, grids of them, and their
command-line lists."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Setting:
    """What one trial changes (None: the script's own value).

    ``num_workers`` None is the script's own loader as it stands (the baseline a ceiling is
    measured against); ``main_threads`` is ``torch.set_num_threads`` in the training process,
    ``worker_threads`` the same in each DataLoader worker; ``replay`` is the ceiling trial: the
    script's own settings, its training loader replaced after warm-up by batches cached from it.
    """

    num_workers: int | None
    pin_memory: bool | None = None
    prefetch_factor: int | None = None
    main_threads: int | None = None
    worker_threads: int | None = None
    replay: bool = False

    @property
    def is_own(self) -> bool:
        """The script exactly as it is (no override at all)."""
        return self.num_workers is None and not self.replay and self.pin_memory is None and \
            self.prefetch_factor is None and self.main_threads is None and self.worker_threads is None

    def overrides(self) -> dict[str, Any]:
        """DataLoader constructor arguments to override (prefetch_factor only applies with workers)."""
        out: dict[str, Any] = {}
        if self.num_workers is not None:
            out["num_workers"] = self.num_workers
        if self.pin_memory is not None:
            out["pin_memory"] = self.pin_memory
        if self.prefetch_factor is not None and self.num_workers != 0:
            out["prefetch_factor"] = self.prefetch_factor
        return out

    def label(self) -> str:
        """Short label: ``4``, ``4 pin``, ``4 pf=8``, ``2 mt=1 wt=2``, ``own``, ``replay``."""
        if self.replay:
            return "replay"
        parts = ["own" if self.num_workers is None else str(self.num_workers)]
        if self.pin_memory:
            parts.append("pin")
        if self.prefetch_factor is not None and self.num_workers != 0:
            parts.append(f"pf={self.prefetch_factor}")
        if self.main_threads is not None:
            parts.append(f"mt={self.main_threads}")
        if self.worker_threads is not None and self.num_workers != 0:
            parts.append(f"wt={self.worker_threads}")
        return " ".join(parts)

    def resolved(self, num_workers: int) -> Setting:
        """The script's own loader named by its worker count (what the trial constructed)."""
        return replace(self, num_workers=num_workers) if self.num_workers is None and not self.replay else self


#: The ceiling trial (the script's own settings, replayed batches).
REPLAY = Setting(None, replay=True)
#: The script as it is.
OWN = Setting(None)


def grid(num_workers: Sequence[int], pin_memory: Sequence[bool | None] = (None,),
         prefetch_factor: Sequence[int | None] = (None,), main_threads: Sequence[int | None] = (None,),
         worker_threads: Sequence[int | None] = (None,)) -> list[Setting]:
    """Every combination, without duplicates (prefetch_factor and worker threads are moot
    without workers)."""
    seen: dict[Setting, None] = {}
    for w, pin, pf, mt, wt in itertools.product(num_workers, pin_memory, prefetch_factor, main_threads,
                                                worker_threads):
        seen.setdefault(Setting(w, pin, pf if w > 0 else None, mt, wt if w > 0 else None), None)
    return list(seen)


def parse_int_list(text: str, name: str, minimum: int = 0) -> list[int]:
    """``"0,2,4"`` → [0, 2, 4]; at least ``minimum``, in the given order, duplicates dropped."""
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as exc:
        raise ValueError(f"{name} must be integers separated by commas, not {text!r}") from exc
    if not values or any(v < minimum for v in values):
        kind = "non-negative" if minimum == 0 else f"at least {minimum},"
        raise ValueError(f"{name} must be {kind} integers separated by commas, not {text!r}")
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
