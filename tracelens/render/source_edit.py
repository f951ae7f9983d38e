"""The recommended settings as an edit of the user's own code: the ``DataLoader(...)`` call at
``created_at`` (or the script's ``TrainingArguments(...)`` for Hugging Face ``Trainer``), read
with :mod:`ast`, every argument the user wrote kept, only what the recommendation changes
changed, shown as a unified diff that ``git apply`` accepts.

Pure text work: :func:`edit_call` takes the source text; :func:`source_edit` reads the file
(relative to the run's working directory) and says why when it cannot.
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracelens.vocab import DATALOADER_DEFAULTS, SETTING_KEYS

#: Hugging Face ``TrainingArguments`` keys for the DataLoader settings, and their defaults there.
TRAINING_ARGUMENTS = {"num_workers": "dataloader_num_workers", "pin_memory": "dataloader_pin_memory",
                      "persistent_workers": "dataloader_persistent_workers",
                      "prefetch_factor": "dataloader_prefetch_factor"}
TRAINING_ARGUMENTS_DEFAULTS = {"num_workers": 0, "pin_memory": True, "persistent_workers": False,
                               "prefetch_factor": None}
MAX_SOURCE_BYTES = 2_000_000  # a training script larger than this is not read
LINE_SLACK = 3  # lines a call may have moved since the run (an import added above it)
_CREATED_AT = re.compile(r"^(?P<path>.+?):(?P<line>\d+)(?: in (?P<function>.*))?$")
_ABSENT = object()


@dataclass(frozen=True)
class SourceEdit:
    """The change as an edit of one file: ``diff`` is a unified diff (``a/``, ``b/`` headers,
    ``git apply`` accepts it), ``call`` the edited call's text, ``unresolved`` what the edit could
    not do (to do by hand), ``problem`` why there is no edit at all."""

    path: str
    line: int
    target: str = "DataLoader"
    diff: str = ""
    call: str = ""
    unresolved: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def where(self) -> str:
        """``file:line`` of the call."""
        return f"{self.path}:{self.line}"


def parse_created_at(created_at: str | None) -> tuple[str, int, str | None] | None:
    """``(path, line, function)`` of ``file:line in function``; None when it is not one."""
    m = _CREATED_AT.match(created_at or "")
    return (m["path"], int(m["line"]), m["function"]) if m else None


def source_edit(created_at: str | None, cwd: str | None, recommendation: Mapping[str, Any],
                current: Mapping[str, Any], framework: str | None = None) -> SourceEdit | None:
    """The edit of the file at ``created_at`` (relative paths are under ``cwd``, the run's
    working directory); None when the run does not say where the loader was built."""
    where = parse_created_at(created_at)
    if where is None:
        return None
    rel, line, function = where
    target = "TrainingArguments" if framework == "transformers" else "DataLoader"
    path = Path(rel)
    if not path.is_absolute() and cwd:
        path = Path(cwd) / path
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            return SourceEdit(rel, line, target, problem=f"{rel} is larger than {MAX_SOURCE_BYTES:,} bytes: not read")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        return SourceEdit(rel, line, target, problem=f"{rel} cannot be read here ({reason})")
    return edit_call(text, rel, line, recommendation, current, target=target, function=function)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _calls(node: ast.AST, target: str) -> list[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call) and _name(n.func).endswith(target)]


def _find_call(tree: ast.Module, line: int, target: str, function: str | None = None) -> ast.Call | None:
    """The ``target`` call at ``line`` (inside ``function`` when the run named one and the file
    has it: the line may have moved since the run, the function rarely does)."""
    calls = _calls(tree, target)
    if target == "TrainingArguments":  # Trainer builds the loader; its arguments are wherever they are made
        return calls[0] if len(calls) == 1 else None
    if function and function != "<module>":
        defs = [d for d in ast.walk(tree) if isinstance(d, (ast.FunctionDef, ast.AsyncFunctionDef)) and d.name == function]
        inside = [c for d in defs for c in _calls(d, target)]
        if len(inside) == 1:
            return inside[0]
        if inside:
            calls = inside
    around = [c for c in calls if c.lineno <= line <= (c.end_lineno or c.lineno)]
    if around:
        return max(around, key=lambda c: (c.lineno, c.col_offset))
    # a few lines added or removed above it since the run: only when one call is that near
    near = [c for c in calls if min(abs(c.lineno - line), abs((c.end_lineno or c.lineno) - line)) <= LINE_SLACK]
    return near[0] if len(near) == 1 else None


class _Text:
    """The source as bytes (ast offsets count UTF-8 bytes), edited by absolute offsets."""

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")
        self.starts = [0]
        for i, b in enumerate(self.data):
            if b == 0x0A:
                self.starts.append(i + 1)
        self.edits: list[tuple[int, int, bytes]] = []

    def pos(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def node_span(self, node: ast.AST) -> tuple[int, int]:
        return (self.pos(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.pos(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def line_text(self, line: int) -> str:
        end = self.starts[line] if line < len(self.starts) else len(self.data)
        return self.data[self.starts[line - 1]:end].decode("utf-8")

    def replace(self, start: int, end: int, new: str) -> None:
        self.edits.append((start, end, new.encode("utf-8")))

    def result(self) -> str:
        data = self.data
        # last first; of two insertions at one place, the one asked for first ends up first
        order = sorted(range(len(self.edits)), key=lambda i: (self.edits[i][0], self.edits[i][1], i), reverse=True)
        for i in order:
            start, end, new = self.edits[i]
            data = data[:start] + new + data[end:]
        return data.decode("utf-8")


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _ABSENT


def _changes(call: ast.Call, recommendation: Mapping[str, Any], current: Mapping[str, Any],
             names: Mapping[str, str], defaults: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``{argument: new value or _ABSENT (remove it)}`` and what cannot be edited."""
    written = {kw.arg: kw for kw in call.keywords if kw.arg is not None}
    splat = next((kw for kw in call.keywords if kw.arg is None), None)
    keep = set(recommendation.get("keep_current") or [])
    changes: dict[str, Any] = {}
    unresolved: list[str] = []
    for key in SETTING_KEYS:
        if key in keep or key not in recommendation:
            continue
        arg, rec = names[key], recommendation[key]
        kw = written.get(arg)
        if kw is not None:
            lit = _literal(kw.value)
            have = lit if lit is not _ABSENT else current.get(key)
            if have == rec or (key == "prefetch_factor" and {have, rec} <= {None, 2}
                               and recommendation.get("num_workers")):
                continue  # None and 2 are the same depth with workers
            if rec is None and key == "prefetch_factor":
                changes[arg] = _ABSENT  # without workers, DataLoader refuses any prefetch_factor
            else:
                changes[arg] = rec
            continue
        if splat is not None:
            have = current.get(key)
            same_depth = key == "prefetch_factor" and {have, rec} <= {None, 2} and recommendation.get("num_workers")
            if have != rec and not same_depth and not (have is None and rec == defaults.get(key)):
                unresolved.append(f"{arg}={rec!r} (the call passes **{ast.unparse(splat.value)}: set it there)")
            continue
        if rec is None or rec == defaults.get(key) or (key == "prefetch_factor" and rec == 2):
            continue  # the default the call already gets
        changes[arg] = rec
    return changes, unresolved


def _arg_nodes(call: ast.Call) -> list[ast.AST]:
    nodes: list[ast.AST] = [*call.args, *call.keywords]
    return sorted(nodes, key=lambda n: (n.lineno, n.col_offset))  # type: ignore[attr-defined]


def _remove_keyword(text: _Text, call: ast.Call, kw: ast.keyword) -> None:
    nodes = _arg_nodes(call)
    i = next(j for j, n in enumerate(nodes) if n is kw)
    start, end = text.node_span(kw)
    own_line = text.line_text(kw.lineno)[:kw.col_offset].strip() == "" and \
        re.fullmatch(r"\s*,?\s*(#.*)?\s*", text.line_text(kw.end_lineno or kw.lineno)[kw.end_col_offset or 0:] or "")
    if own_line and kw.lineno != call.lineno and (kw.end_lineno or kw.lineno) != call.end_lineno:
        text.replace(text.pos(kw.lineno, 0), text.pos((kw.end_lineno or kw.lineno) + 1, 0), "")
    elif i + 1 < len(nodes):
        text.replace(start, text.node_span(nodes[i + 1])[0], "")
    elif i > 0:
        text.replace(text.node_span(nodes[i - 1])[1], end, "")
    else:
        text.replace(start, end, "")


def _insert_keywords(text: _Text, call: ast.Call, items: list[str]) -> None:
    if not items:
        return
    nodes = _arg_nodes(call)
    if not nodes:
        close = text.pos(call.end_lineno or call.lineno, (call.end_col_offset or 1) - 1)
        text.replace(close, close, ", ".join(items))
        return
    last = nodes[-1]
    last_end = text.node_span(last)[1]
    own_line = text.line_text(last.lineno)[:last.col_offset].strip() == ""  # type: ignore[attr-defined]
    end_line = last.end_lineno or last.lineno  # type: ignore[attr-defined]
    if own_line and end_line != call.end_lineno:
        indent = re.match(r"\s*", text.line_text(last.lineno)).group(0)  # type: ignore[union-attr, attr-defined]
        rest = text.line_text(end_line)[last.end_col_offset:]  # type: ignore[attr-defined]
        comma = re.match(r"\s*,", rest)
        if comma:  # trailing commas: one more line in the same style
            at = text.pos(end_line + 1, 0)
            text.replace(at, at, "".join(f"{indent}{item},\n" for item in items))
        else:
            text.replace(last_end, last_end, "".join(f",\n{indent}{item}" for item in items))
        return
    text.replace(last_end, last_end, "".join(f", {item}" for item in items))


def _statement_of(tree: ast.Module, call: ast.Call) -> tuple[ast.stmt, ast.stmt]:
    """The innermost statement holding ``call`` and the top-level one."""
    top = next(s for s in tree.body if s.lineno <= call.lineno <= (s.end_lineno or s.lineno))
    inner = top
    for node in ast.walk(top):
        if isinstance(node, ast.stmt) and node.lineno <= call.lineno <= (node.end_lineno or node.lineno) \
                and node.lineno >= inner.lineno and not isinstance(node, (ast.FunctionDef, ast.ClassDef,
                                                                          ast.AsyncFunctionDef)):
            inner = node
    return inner, top


def _imports_torch(tree: ast.Module) -> bool:
    return any(isinstance(s, ast.Import) and any(a.name == "torch" for a in s.names) for s in tree.body)


def _thread_edits(text: _Text, tree: ast.Module, call: ast.Call, recommendation: Mapping[str, Any],
                  unresolved: list[str], *, worker_init: bool = True) -> list[str]:
    """Lines for the thread advice; returns the keywords to add to the call."""
    per_worker, main = recommendation.get("torch_threads_per_worker"), recommendation.get("torch_threads_main")
    if per_worker is None and main is None:
        return []
    inner, top = _statement_of(tree, call)
    if not _imports_torch(tree):
        imports = [st for st in tree.body if isinstance(st, (ast.Import, ast.ImportFrom))]
        at = text.pos((imports[-1].end_lineno or imports[-1].lineno) + 1, 0) if imports else text.pos(top.lineno, 0)
        text.replace(at, at, "import torch\n")
    keywords: list[str] = []
    if per_worker is not None:
        if not worker_init:
            unresolved.append(f"torch.set_num_threads({per_worker}) in each DataLoader worker (a worker_init_fn)")
        elif any(kw.arg == "worker_init_fn" for kw in call.keywords):
            unresolved.append(f"torch.set_num_threads({per_worker}) at the start of your worker_init_fn")
        else:
            first = min([top.lineno, *(d.lineno for d in getattr(top, "decorator_list", []))])
            at = text.pos(first, 0)
            text.replace(at, at, f"def set_worker_threads(worker_id):  # each DataLoader worker\n"
                                 f"    torch.set_num_threads({per_worker})\n\n\n")
            keywords.append("worker_init_fn=set_worker_threads")
    if main is not None:
        indent = re.match(r"\s*", text.line_text(inner.lineno)).group(0)  # type: ignore[union-attr]
        at = text.pos(inner.lineno, 0)
        text.replace(at, at, f"{indent}torch.set_num_threads({main})  # the main process\n")
    return keywords


def edit_call(source: str, path: str, line: int, recommendation: Mapping[str, Any],
              current: Mapping[str, Any], *, target: str = "DataLoader", function: str | None = None) -> SourceEdit:
    """Edit the ``target`` call around ``line`` of ``source`` (file ``path``, as shown) to the
    recommended settings; ``current`` holds the recorded values (for arguments the source
    computes). Arguments the recommendation does not change stay exactly as written."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as e:
        return SourceEdit(path, line, target, problem=f"{path} does not parse as Python ({type(e).__name__})")
    call = _find_call(tree, line, target, function)
    if call is None:
        what = (f"no single {target}(...) call in {path}" if target == "TrainingArguments"
                else f"no {target}(...) call at {path}:{line} (the file may have changed since the run)")
        return SourceEdit(path, line, target, problem=what)
    tf = target == "TrainingArguments"
    names = TRAINING_ARGUMENTS if tf else {k: k for k in SETTING_KEYS}
    defaults = TRAINING_ARGUMENTS_DEFAULTS if tf else DATALOADER_DEFAULTS
    changes, unresolved = _changes(call, recommendation, current, names, defaults)
    text = _Text(source)
    written = {kw.arg: kw for kw in call.keywords if kw.arg is not None}
    added: list[str] = []
    for arg, value in changes.items():
        kw = written.get(arg)
        if kw is None:
            added.append(f"{arg}={value!r}")
        elif value is _ABSENT:
            _remove_keyword(text, call, kw)
        else:
            start, end = text.node_span(kw.value)
            text.replace(start, end, repr(value))
    added += _thread_edits(text, tree, call, recommendation, unresolved, worker_init=not tf)
    _insert_keywords(text, call, added)
    new = text.result()
    call_line = call.lineno
    if new == source:
        return SourceEdit(path, call_line, target, unresolved=unresolved,
                          call=_statement_text(source, call_line, target))
    return SourceEdit(path, call_line, target, diff=unified_diff(source, new, path),
                      call=_statement_text(new, call_line, target), unresolved=unresolved)


def _statement_text(source: str, line: int, target: str) -> str:
    """The statement holding the ``target`` call nearest ``line``, dedented: what "copy the new
    call" copies (lines inserted above the call shift it down a few lines)."""
    tree = ast.parse(source)
    calls = _calls(tree, target)
    if not calls:
        return ""
    nearest = min(calls, key=lambda c: (abs(c.lineno - line), c.lineno))
    inner, _ = _statement_of(tree, nearest)
    lines = source.splitlines()[inner.lineno - 1:inner.end_lineno or inner.lineno]
    return textwrap.dedent("\n".join(lines))


def unified_diff(old: str, new: str, path: str, context: int = 3) -> str:
    """A ``git apply``-able unified diff of one file (``a/path``, ``b/path``)."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out = []
    for ln in difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", n=context):
        out.append(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n")
    return "".join(out)


def diff_lines(diff: str) -> list[dict[str, str]]:
    """The diff as ``{op, text}`` lines for display (file headers dropped, hunk headers as ``@``)."""
    lines = []
    for ln in diff.splitlines():
        if ln.startswith(("--- ", "+++ ", "\\ ")):
            continue
        op = ln[:1] if ln[:1] in "+- @" else " "
        lines.append({"op": op, "text": ln if op == "@" else ln[1:]})  # a hunk header is shown whole
    return lines
