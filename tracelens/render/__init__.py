"""Renderers: they only format. Views in data units, then text or jinja2 templates.

``format``/``charts``/``wording`` are shared; ``html`` renders pages and writes files atomically;
``report`` (with ``telemetry`` and ``redact``), ``terminal``, ``compare`` and ``sweep`` are the
outputs. Nothing here analyzes, and nothing imports the capture package.
"""
