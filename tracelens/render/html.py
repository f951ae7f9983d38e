"""Pages: the jinja2 environment (autoescape, strict undefined), the page script and its
Content-Security-Policy (files are written by :mod:`tracelens.system.atomic`).

Templates live in the repository's top-level ``templates/`` and are carried inside the wheel
as ``tracelens/templates`` (see pyproject.toml).
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracelens.errors import TracelensError
from tracelens.render.format import fmt_ms, fmt_value, px
from tracelens.vocab import pct

if TYPE_CHECKING:
    import jinja2

SCRIPT_NAME = "tracelens.js"


def templates_dir() -> Path:
    """The templates: inside the package (wheel), else the repository's top-level ``templates/``."""
    pkg = Path(__file__).resolve().parents[1]  # the tracelens package
    candidates = (pkg / "templates", pkg.parent / "templates")
    for cand in candidates:
        if (cand / "base.html.j2").is_file():
            return cand
    raise TracelensError(
        "tracelens templates not found (looked in " + " and ".join(str(c) for c in candidates)
        + "): reinstall tracelens"
    )


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The jinja2 environment every page uses: autoescaping on, undefined names are errors."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=pct, ms=fmt_ms, num=fmt_value, px=px)
    return env


@lru_cache(maxsize=1)
def _page_script() -> tuple[str, str]:
    """The inline script and its CSP hash source."""
    text = (templates_dir() / SCRIPT_NAME).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return text, f"'sha256-{digest}'"


def render_page(template_name: str, **context: Any) -> str:
    """Render ``templates/<template_name>``; pages extending base.html.j2 get script and CSP.

    The Content-Security-Policy allows no network request at all, inline styles, data: images
    and only the page's own script (by hash), so even a name that escaped escaping could not run.
    """
    from markupsafe import Markup

    script, source = _page_script()
    context.setdefault("page_script", Markup(script))
    context.setdefault(
        "page_csp",
        f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src {source}; "
        "base-uri 'none'; form-action 'none'",
    )
    return str(environment().get_template(template_name).render(**context))
