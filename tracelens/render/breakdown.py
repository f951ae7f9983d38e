"""The median step's breakdown as the terminal and the report show it: the same parts, the
same rounding (``fmt_ms``), from the document's ``metrics.step_breakdown``."""

from __future__ import annotations

from typing import Any

from tracelens.document.schema import Document
from tracelens.render.format import fmt_ms
from tracelens.vocab import pct

LABELS = {"data_wait_exposed_ms": "data wait, exposed", "data_wait_hidden_ms": "data wait, hidden",
          "forward_ms": "forward", "backward_ms": "backward", "optimizer_ms": "optimizer",
          "collective_ms": "collectives", "other_ms": "other"}
#: CSS class of each part (colours in tracelens.css).
CLASSES = {"data_wait_exposed_ms": "p-exposed", "data_wait_hidden_ms": "p-hidden", "forward_ms": "p-forward",
           "backward_ms": "p-backward", "optimizer_ms": "p-optimizer", "collective_ms": "p-collective",
           "other_ms": "p-other"}


def breakdown_view(doc: Document) -> dict[str, Any] | None:
    """The parts of the median step (one rank's document), each with its text and share; None
    when the document has no steps."""
    b = doc.metrics.step_breakdown
    if b is None or not b.step_ms:
        return None
    step_ms = float(b.step_ms)
    parts = [{"key": k, "label": LABELS[k], "ms": v, "text": fmt_ms(v), "share": v / step_ms,
              "share_text": pct(v / step_ms), "css": CLASSES[k]} for k, v in b.parts().items()]
    gpu = b.gpu_busy_ms
    steps = list(b.steps)
    which = (f"step {steps[0]}" if len(steps) == 1 else
             "the mean of steps " + " and ".join(str(x) for x in steps) + " (the two middle ones)")
    return {"steps": steps, "which": which, "step_ms": step_ms, "step_text": fmt_ms(step_ms), "parts": parts,
            "gpu_busy": fmt_ms(gpu) if gpu is not None else None,
            "gpu_busy_share": pct(float(gpu) / step_ms) if gpu is not None else None}


#: Shorter labels for the one terminal line.
SHORT = {"data_wait_exposed_ms": "exposed wait", "data_wait_hidden_ms": "hidden wait"}


def breakdown_line(view: dict[str, Any]) -> str:
    """One line: ``median step: exposed wait 71.7 ms, forward 16.3 ms, …`` (parts of zero left
    out; the step's own length is on the line above)."""
    shown = [f"{SHORT.get(p['key'], p['label'])} {p['text']}" for p in view["parts"] if p["ms"] > 0]
    gpu = f" (GPU busy {view['gpu_busy']})" if view["gpu_busy"] is not None else ""
    return "median step: " + ", ".join(shown) + gpu
