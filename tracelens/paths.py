"""Where outputs go by default: a fresh, timestamped directory under a root."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def timestamped_dir(root: Path, name: str, now: datetime | None = None) -> Path:
    """``root/<name>-<YYYYmmdd-HHMMSS>`` that does not exist yet (``-2``, ``-3``... when it does)."""
    base = root / f"{name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
