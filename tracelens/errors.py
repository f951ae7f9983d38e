"""Errors that reach the user as one line and an exit code (never a traceback)."""

from __future__ import annotations

from pathlib import Path


class TracelensError(Exception):
    """An error the CLI prints as one line, exiting with ``exit_code``."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __reduce__(self) -> tuple[object, ...]:
        # Sent between processes (a process pool, Dask workers) with its exit code intact.
        return (type(self), (str(self),), self.__dict__)


class BadInputError(TracelensError):
    """The input cannot be analyzed: missing, unreadable, or not a trace (exit 1)."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.problem), self.__dict__)


class UsageError(TracelensError):
    """The command line asks for something impossible (exit 2)."""

    exit_code = 2
