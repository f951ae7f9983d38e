"""The ``tracelens`` command's entry point (``python -m tracelens`` too).

Loading the command takes a moment (typer, the commands): a Ctrl-C meanwhile ends it with one
line and status 130 instead of an import traceback. Then :func:`tracelens.cli.main`, the error
boundary, takes over.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Load the command line and run it."""
    try:
        from tracelens.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("tracelens: interrupted\n")
        sys.exit(130)
    cli_main()
