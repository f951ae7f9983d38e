"""tracelens: why a PyTorch training run's GPU waits for data, and which DataLoader settings fix it.

Public API (no torch needed for analysis)::

    import tracelens
    result = tracelens.analyze_path("trace.json.gz")   # file, run dir or directory of ranks
    trace = tracelens.load_trace("trace.json.gz")       # the columnar model
    analysis = tracelens.analyze_trace(trace)           # SPEC §2 metrics + per-step table
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tracelens._version import __version__

if TYPE_CHECKING:
    from tracelens.analysis import TraceAnalysis, analyze_trace
    from tracelens.api import analyze_path
    from tracelens.document.result import Result
    from tracelens.errors import BadInputError, TracelensError
    from tracelens.load import load_trace
    from tracelens.model import Trace

#: Public names and the module each comes from, imported on first use: a process that imports
#: only part of tracelens (the recording child of ``tracelens profile``) skips numpy and pandas.
_LAZY = {
    "TraceAnalysis": "tracelens.analysis", "analyze_trace": "tracelens.analysis",
    "analyze_path": "tracelens.api", "BadInputError": "tracelens.errors",
    "TracelensError": "tracelens.errors", "load_trace": "tracelens.load", "Trace": "tracelens.model",
    "Result": "tracelens.document.result",
}

__all__ = [
    "BadInputError",
    "Result",
    "Trace",
    "TraceAnalysis",
    "TracelensError",
    "__version__",
    "analyze_path",
    "analyze_trace",
    "load_trace",
    "profile",
]


def profile(*args: Any, **kwargs: Any) -> Any:
    """``with tracelens.profile(...) as session:`` inside a training script (needs torch); the
    run directory is analyzed when the block ends, as ``tracelens analyze`` would."""
    from tracelens.api import write_run_outputs
    from tracelens.capture import profile as _profile

    kwargs.setdefault("analyze", write_run_outputs)
    return _profile(*args, **kwargs)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracelens' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
