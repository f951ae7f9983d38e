"""``report --redact``: paths, file names, the host name, the command line and the names of other
processes on the machine hidden."""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracelens.document.result import Result

REDACTED = "[redacted]"
_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:[\\/]|/)(?:[^\s/\\\"'<>|]+[\\/])+[^\s/\\\"'<>|,;)]*")


def sensitive_strings(result: Result) -> list[str]:
    """Paths, file names and host names that --redact removes, longest first."""
    found: set[str] = set()
    paths = [result.path, result.document.source.path]
    for r in result.ranks:
        paths += [*r.paths, r.analysis.path]
        run = r.run
        if run is not None:
            cmd = run.command
            found.update(s for s in (run.host, cmd.kind, cmd.target, cmd.cwd, run.trace.path, *cmd.argv) if s)
            supply = run.telemetry.supply if run.telemetry is not None else None
            found.update(o.name for o in (supply.top_other_processes if supply is not None else ()) if o.name)
    for p in paths:
        if not p:
            continue
        pp = Path(p)
        found.update({p, str(pp.resolve()), pp.name, pp.parent.name, str(pp.parent)})
    with contextlib.suppress(OSError):
        found.add(socket.gethostname())
    return sorted((s for s in found if len(s) >= 3 and s not in {".", ".."}), key=len, reverse=True)


def redact_view(view: Any, secrets: Sequence[str]) -> Any:
    """``view`` with every secret and every absolute path replaced by ``[redacted]``."""
    if isinstance(view, str):
        for s in secrets:
            if s in view:
                view = view.replace(s, REDACTED)
        return _ABS_PATH.sub(REDACTED, view)
    if isinstance(view, dict):
        return {k: redact_view(v, secrets) for k, v in view.items()}
    if isinstance(view, list):
        return [redact_view(v, secrets) for v in view]
    return view
