"""How values read: milliseconds, evidence values, SVG coordinates (percentages: ``vocab.pct``),
and text with its hidden characters made visible."""

from __future__ import annotations

import math
import re
from typing import Any


def fmt_ms(x: float | None) -> str:
    """Milliseconds with precision that suits the size."""
    if x is None or not math.isfinite(x):
        return "n/a"
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f} ms"
    if a >= 10:
        return f"{x:.1f} ms"
    if a >= 1:
        return f"{x:.2f} ms"
    return f"{x:.3f} ms"


def fmt_value(v: Any) -> str:
    """Any evidence value as short text."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if abs(v) >= 1e4:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        items = [fmt_value(x) for x in v[:12]]
        return ", ".join(items) + (f", … ({len(v)} in all)" if len(v) > 12 else "")
    if isinstance(v, dict):
        return "; ".join(f"{k}: {fmt_value(x)}" for k, x in list(v.items())[:12])
    return str(v)


def px(x: float) -> str:
    """A pixel coordinate with one decimal (keeps the SVG small)."""
    r = round(float(x), 1)
    return str(int(r)) if r == int(r) else str(r)


def rounded(x: float, digits: int = 4) -> float:
    """``x`` rounded for a view (4 digits by default)."""
    return round(float(x), digits)


#: Characters that change what a reader sees without being seen: terminal controls (escape
#: sequences, bells, carriage returns), bidirectional overrides and isolates (a right-to-left
#: override makes "gnp.exe" read as "exe.png"), zero-width characters and the byte-order mark.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: Any) -> str:
    """``text`` with every hidden or direction-changing character written as its escape (``\\x1b``,
    ``\\u202e``), so a crafted name cannot drive a terminal or disguise itself in a page."""
    return _HIDDEN.sub(_escape, str(text))


def visible_all(value: Any) -> Any:
    """:func:`visible` applied to every string inside a JSON-like value."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {k: visible_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [visible_all(v) for v in value]
    return value
