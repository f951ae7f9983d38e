"""The words every layer shares: severities, diagnoses, the DataLoader settings tracelens
recommends (their keys and PyTorch's defaults), and how a fraction reads as a percentage."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any


class Severity(str, enum.Enum):
    """How much a finding matters; compares and sorts by :attr:`rank`, reads as its value."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    def __str__(self) -> str:
        return str(self.value)

    @property
    def rank(self) -> int:
        """0 (info) to 3 (high)."""
        return _SEVERITY_RANK[self.value]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every value, from the least to the most severe."""
        return tuple(s.value for s in cls)


_SEVERITY_RANK = {s.value: i for i, s in enumerate(Severity)}


def severity_rank(value: str) -> int:
    """The rank of a severity given as text (unknown text ranks below ``info``)."""
    return _SEVERITY_RANK.get(str(value), -1)


#: The main causes a diagnosis names (SPEC §3).
DIAGNOSES = ("cpu_starvation", "io_bound", "oversubscription", "input_bound", "healthy", "undetermined")

#: The DataLoader arguments tracelens recommends, in the order they are shown.
SETTING_KEYS = ("num_workers", "pin_memory", "persistent_workers", "prefetch_factor")

#: PyTorch's DataLoader defaults: recommending an unknown current value at its default changes nothing.
DATALOADER_DEFAULTS: dict[str, Any] = {"num_workers": 0, "pin_memory": False, "persistent_workers": False,
                                       "prefetch_factor": None}


def is_dataloader_default(key: str, value: Any) -> bool:
    """Whether ``value`` is PyTorch's default for ``key`` (prefetch_factor: 2 with workers, None without)."""
    if key == "prefetch_factor":
        return value in (None, 2)
    return bool(value == DATALOADER_DEFAULTS.get(key))


@dataclass(frozen=True)
class LoaderSettings:
    """DataLoader settings as known (None = unknown)."""

    num_workers: int | None = None
    pin_memory: bool | None = None
    persistent_workers: bool | None = None
    prefetch_factor: int | None = None
    batch_size: int | None = None


def pct(fraction: float | None, digits: int = 1) -> str:
    """A fraction as a percentage, ``"n/a"`` when unknown: ``pct(0.1234) == "12.3 %"``."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.{digits}f} %"
