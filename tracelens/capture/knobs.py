"""The settings of a pipeline that is no DataLoader, read from its objects (best effort)."""

from __future__ import annotations

from tracelens.capture.loopfind import Found
from tracelens.runjson import Loader


def pipeline_settings(found: Found, loader: Loader) -> Loader:
    """``loader`` with what ``found``'s pipeline tells of its concurrency."""
    return loader
