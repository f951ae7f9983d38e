"""The import graph is a stack: no cycles (counting imports inside functions and under
``TYPE_CHECKING``), every import points down the declared layers, the analysis core never
imports torch or the capture package, capture (the recorder) never imports what consumes its
recordings, renderers never import capture, and no module is over 600 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tracelens"

#: Lowest first. A module may import modules of its own layer or of lower layers (a name
#: stands for the module and everything under it; the longest name that matches decides).
#: Capture is the first stage: it records a trace and run.json (written with the run.json
#: structs) and hands the run directory to an analysis step its caller passes in, so it sits
#: below everything that reads a recording. Inside it the folders follow where the code runs,
#: from what is read off the machine up to the torch-free ``tracelens profile`` process. The
#: analysis path then climbs in order: load -> model -> analysis -> diagnosis -> document (one
#: rank each; ranks/ runs them and assembles the job) -> render, with api/ on top as the public
#: face; sweep and the CLI stand above (docs/architecture.md).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("tracelens._version", "tracelens.errors", "tracelens.vocab", "tracelens.system"),  # words, the OS
    ("tracelens.model", "tracelens.intervals", "tracelens.columnset", "tracelens.rowsplit"),  # the columnar trace, the interval algebra
    ("tracelens.load", "tracelens.runjson"),  # reading: traces into the model, run.json typed
    ("tracelens.capture.options", "tracelens.capture.destination"),  # recording: options, results, the run dir
    ("tracelens.capture.machine",),  # what is read from the machine: facts, CPU supply, telemetry
    ("tracelens.capture.dataloader",),  # the DataLoader patches and loader bookkeeping (script, workers)
    ("tracelens.capture.recorded",),  # what is written: run.json, how the run ended, TensorBoard
    ("tracelens.capture.script",),  # the script's process: the session and its entry points
    ("tracelens.capture.parent",),  # the torch-free ``tracelens profile`` process
    ("tracelens.capture",),  # capture's face: run_profile, profile
    ("tracelens.analysis", "tracelens.breakdown", "tracelens.steps"),  # SPEC §2 metrics, the per-step table and its breakdown
    ("tracelens.diagnosis",),  # rules over the analysis and run.json
    ("tracelens.document",),  # the documents, the result type, two compared
    ("tracelens.ranks",),  # a location -> rank jobs -> this process, a local pool or Dask -> a result
    ("tracelens.render",),  # views, text and HTML
    ("tracelens.api", "tracelens.docgen"),  # the public entry points; generated docs
    ("tracelens.sweep",),
    ("tracelens.cli", "tracelens.__main__", "tracelens._entry"),
    ("tracelens",),  # the package face: the public API, above everything it re-exports
)
#: The analysis core: reads traces and run.json, computes, diagnoses. No torch, no capture.
CORE = ("tracelens.errors", "tracelens.vocab", "tracelens.system", "tracelens.model", "tracelens.intervals",
        "tracelens.columnset", "tracelens.rowsplit", "tracelens.steps",
        "tracelens.load", "tracelens.runjson", "tracelens.analysis", "tracelens.breakdown", "tracelens.diagnosis",
        "tracelens.document", "tracelens.ranks", "tracelens.api")
RENDERERS = ("tracelens.render",)
#: Lines a module may have at most (STYLE: small modules with one job).
MAX_MODULE_LINES = 600
#: Upward imports still to remove (each names the importer and the imported module).
KNOWN_UPWARD: frozenset[tuple[str, str]] = frozenset()


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imported(mods: dict[str, Path], module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """Every name an import statement refers to: tracelens modules and top-level packages."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if mods[module].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    out: set[str] = set()
    for name in names:
        if not name.startswith("tracelens"):
            out.add(name.split(".")[0])
            continue
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name != module:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> everything it imports anywhere in its source (functions and TYPE_CHECKING too)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found |= _imported(mods, name, node)
        graph[name] = found
    return graph


def _layer(module: str) -> int:
    best, depth = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    return best


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among tracelens modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(x for x in graph[m] if x in graph):
            if state.get(n) == 1:
                return [*stack[stack.index(n):], n]
            if n not in state and (c := visit(n)) is not None:
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)) is not None:
            return c
    return None


def test_every_module_has_a_layer() -> None:
    assert [m for m in import_graph() if _layer(m) < 0] == []


def test_no_import_cycle_anywhere() -> None:
    assert find_cycle(import_graph()) is None


def test_imports_point_down_the_layers() -> None:
    graph = import_graph()
    upward = sorted((m, n) for m, ns in graph.items() for n in ns
                    if n in graph and _layer(n) > _layer(m) and (m, n) not in KNOWN_UPWARD)
    assert upward == []
    stale = [pair for pair in KNOWN_UPWARD if pair[1] not in graph.get(pair[0], set())]
    assert stale == [], "an upward import listed as known is gone: remove it from KNOWN_UPWARD"


@pytest.mark.parametrize("forbidden", ["torch", "tracelens.capture"])
def test_analysis_core_needs_neither_torch_nor_capture(forbidden: str) -> None:
    graph = import_graph()
    bad = sorted(m for m, ns in graph.items() if _within(m, CORE) and any(_within(n, (forbidden,)) for n in ns))
    assert bad == []


def test_the_recorder_never_imports_what_consumes_its_recordings() -> None:
    graph = import_graph()
    consumers = ("tracelens.api", "tracelens.render", "tracelens.document", "tracelens.ranks",
                 "tracelens.diagnosis", "tracelens.analysis", "tracelens.sweep", "tracelens.cli")
    bad = sorted((m, n) for m, ns in graph.items()
                 if _within(m, ("tracelens.capture",)) for n in ns if _within(n, consumers))
    assert bad == []


def test_renderers_never_import_capture() -> None:
    graph = import_graph()
    bad = sorted(m for m, ns in graph.items()
                 if _within(m, RENDERERS) and any(_within(n, ("tracelens.capture",)) for n in ns))
    assert bad == []


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_every_layer_names_something_that_exists() -> None:
    graph = import_graph()
    stale = [p for layer in LAYERS for p in layer if not any(m == p or m.startswith(p + ".") for m in graph)]
    assert stale == []


def test_the_checker_sees_imports_inside_functions_and_type_checking() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tracelens.api import x\n"
              "def f():\n    import tracelens.capture.script.session\n")
    mods = _modules()
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found |= _imported(mods, "tracelens.load", node)
    assert {"tracelens.api", "tracelens.capture.script.session"} <= found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
