"""Golden documents: every ``analyze --json`` document of the sample and shared traces, and the
report view model of every recorded sample, as recorded before a refactor.

``python -m tests.golden --update`` records them again (do it only when a change to a document is
intended, and say why in the commit); ``tests/test_golden.py`` recomputes and compares them.
Paths inside documents are written relative to ``<repo>`` and ``<shared>``, so the file does not
depend on where the checkout lives. The shared traces' documents are kept apart
(``shared.json.gz``) and are only compared when ``../shared/traces`` is present.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, SHARED_TRACES

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
SAMPLES_FILE = GOLDEN_DIR / "samples.json.gz"
SHARED_FILE = GOLDEN_DIR / "shared.json.gz"
SAMPLES = REPO / "sample_traces"
#: Directories of several ranks' traces in ../shared/traces, analyzed as one job each.
SHARED_RANK_DIRS = ("param/train/compute/python/test/data/dlrm_kineto", "hta/tests/data/trace_filter")


def _is_sample_case(p: Path) -> bool:
    """A run directory, a job directory of rank run directories, the ranks directory, or a
    trace file that is neither inside them."""
    if p.is_dir():
        return ((p / "run.json").is_file() or p.name == "ranks"
                or any((r / "run.json").is_file() for r in p.glob("rank-*")))
    in_group = (p.parent / "run.json").is_file() or p.parent.name == "ranks"
    return p.name.endswith((".json", ".json.gz")) and p.name != "run.json" and not in_group


def sample_cases() -> dict[str, Path]:
    """Every trace file, run directory and rank directory under sample_traces/."""
    return {str(p.relative_to(SAMPLES)): p for p in sorted(SAMPLES.rglob("*")) if _is_sample_case(p)}


def shared_cases() -> dict[str, Path]:
    """Every trace file in ../shared/traces, plus the multi-rank directories."""
    if not SHARED_TRACES.is_dir():
        return {}
    cases = {str(p.relative_to(SHARED_TRACES)): p
             for p in sorted(SHARED_TRACES.rglob("*.json*")) if p.is_file()}
    for rel in SHARED_RANK_DIRS:
        if (SHARED_TRACES / rel).is_dir():
            cases[rel + "/"] = SHARED_TRACES / rel
    return cases


def _unversioned(value: Any) -> Any:
    """``value`` with the writer's version in every analysis document's ``tool`` as ``<version>``
    (a release must not change a golden record)."""
    if isinstance(value, list):
        return [_unversioned(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _unversioned(v) for k, v in value.items()}
    tool = out.get("tool")
    if isinstance(tool, dict) and tool.get("name") == "tracelens" and "schema_version" in out:
        out["tool"] = {**tool, "version": "<version>"}
    return out


def _normalize(obj: Any) -> Any:
    """JSON round trip (documents through their encoder) with the checkout's absolute paths
    and the writer's version replaced by placeholders."""
    from tracelens.document.schema import to_json

    text = to_json(obj).decode()
    text = text.replace(str(SHARED_TRACES.resolve()), "<shared>").replace(str(SHARED_TRACES), "<shared>")
    text = text.replace(str(REPO.resolve()), "<repo>").replace(str(REPO), "<repo>")
    return _unversioned(json.loads(text))


def document(path: Path) -> dict[str, Any]:
    """The ``analyze --json`` document of ``path``, normalized."""
    from tracelens.api import analyze_path

    return _normalize(analyze_path(path, jobs=1).document)


def view(path: Path) -> dict[str, Any]:
    """The report view model of a run directory, normalized."""
    from tracelens.api import analyze_path
    from tracelens.render.report import build_view

    return _normalize(build_view(analyze_path(path, jobs=1)))


def record_samples() -> dict[str, Any]:
    """Documents and views of sample_traces/."""
    out: dict[str, Any] = {}
    for name, path in sample_cases().items():
        out[f"document:{name}"] = document(path)
        if path.is_dir() and (path / "run.json").is_file():
            out[f"view:{name}"] = view(path)
    return out


def record_shared() -> dict[str, Any]:
    """Documents of ../shared/traces (empty when it is absent)."""
    return {f"document:{name}": document(path) for name, path in shared_cases().items()}


def read(path: Path) -> dict[str, Any]:
    """A recorded golden file."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def write(path: Path, data: dict[str, Any]) -> None:
    """Write a golden file reproducibly (sorted keys, no gzip timestamp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(data, sort_keys=True, indent=1).encode()
    path.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))


def differences(expected: Any, actual: Any, where: str = "", limit: int = 20) -> list[str]:
    """Paths at which two JSON values differ (the first ``limit``)."""
    out: list[str] = []

    def walk(a: Any, b: Any, at: str) -> None:
        if len(out) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                if k not in a or k not in b:
                    out.append(f"{at}.{k}: {'missing' if k not in b else 'new'}")
                else:
                    walk(a[k], b[k], f"{at}.{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{at}[{i}]")
        elif a != b or type(a) is not type(b):
            out.append(f"{at}: {a!r:.120} -> {b!r:.120}")

    walk(expected, actual, where)
    return out


def main(argv: list[str]) -> int:
    if argv != ["--update"]:
        print("usage: python -m tests.golden --update", file=sys.stderr)
        return 2
    write(SAMPLES_FILE, record_samples())
    if SHARED_TRACES.is_dir():
        write(SHARED_FILE, record_shared())
    print(f"wrote {SAMPLES_FILE.relative_to(REPO)}" + (f" and {SHARED_FILE.relative_to(REPO)}" if SHARED_TRACES.is_dir() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
