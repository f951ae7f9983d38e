"""``report --redact``: identifiers hidden as whole tokens, words left alone.

What is hidden: absolute paths, the trace's and run's file and directory names, the script's
target and arguments, the working directory, the host name, the user name and the names of
other processes on the machine. Each is replaced only where it stands as a whole token (not
inside a longer word or name), so a script called ``script.py`` or a user called ``sub`` never
turns "OVERSUBSCRIPTION" into a mangled word.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tracelens.document.result import Result

REDACTED = "[redacted]"
_ABS_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:[\\/]|/)(?:[^\s/\\\"'<>|]+[\\/])+[^\s/\\\"'<>|,;)]*")
#: Characters that continue a token: a secret next to one of these is part of a longer name.
_TOKEN_CHAR = r"[\w-]"
MIN_SECRET_CHARS = 3  # shorter strings ("a", "vm") are too common to hide without hiding words


def _identifiers(result: Result) -> set[str]:
    found: set[str] = set()
    paths = [result.path, result.document.source.path]
    for r in result.ranks:
        paths += [*r.paths, r.analysis.path]
        run = r.run
        if run is not None:
            cmd = run.command  # cmd.kind ("script", "module") is a word, not an identifier
            found.update(s for s in (run.host, cmd.target, cmd.cwd, run.trace.path) if s)
            found.update(a for a in cmd.argv if not a.startswith("-") and re.search(r"[A-Za-z/\\]", a))
            supply = run.telemetry.supply if run.telemetry is not None else None
            found.update(o.name for o in (supply.top_other_processes if supply is not None else ()) if o.name)
    for p in paths:
        if not p:
            continue
        pp = Path(p)
        found.update({p, str(pp.resolve()), pp.name, pp.parent.name, str(pp.parent)})
    with contextlib.suppress(OSError):
        found.add(socket.gethostname())
    with contextlib.suppress(Exception):  # no user name in some containers
        found.add(getpass.getuser())
    return found


def sensitive_strings(result: Result) -> list[str]:
    """Paths, file names, host and user names that --redact hides, longest first."""
    found = _identifiers(result)
    return sorted((s for s in found if len(s) >= MIN_SECRET_CHARS and s not in {".", ".."}), key=len, reverse=True)


def _secret_pattern(secrets: Sequence[str]) -> re.Pattern[str] | None:
    if not secrets:
        return None
    alternatives = "|".join(re.escape(s) for s in sorted(secrets, key=len, reverse=True))
    return re.compile(rf"(?<!{_TOKEN_CHAR})(?:{alternatives})(?!{_TOKEN_CHAR})")


def redact_text(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every whole-token secret and every absolute path replaced by ``[redacted]``."""
    return _redact(text, _secret_pattern(secrets))


def _redact(text: str, pattern: re.Pattern[str] | None) -> str:
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _ABS_PATH.sub(REDACTED, text)


def redact_view(view: Any, secrets: Sequence[str]) -> Any:
    """``view`` with every secret (as a whole token) and every absolute path replaced by ``[redacted]``."""
    return _walk(view, _secret_pattern(secrets))


def _walk(view: Any, pattern: re.Pattern[str] | None) -> Any:
    if isinstance(view, str):
        return _redact(view, pattern)
    if isinstance(view, dict):
        return {k: _walk(v, pattern) for k, v in view.items()}
    if isinstance(view, list):
        return [_walk(v, pattern) for v in view]
    return view
