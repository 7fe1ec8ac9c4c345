"""Errors the user can act on.

Every failure caused by input (a file, a recipe, an option) is a :class:`ScalesError`: the CLI prints
its one-line message and exits with its code, never a traceback. Library callers catch the subclass
they care about.
"""

from __future__ import annotations


class ScalesError(Exception):
    """A user-facing failure: one line, naming the file or value and what was expected."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class CheckpointError(ScalesError):
    """A checkpoint file is missing, unreadable, unsafe or not a super-resolution state dict."""


class DetectionError(ScalesError):
    """No registered architecture claims a state dict, or its shapes do not fit the one claimed."""


class RecipeError(ScalesError):
    """A recipe file is malformed, has unknown keys, or selects nothing."""


class DataError(ScalesError):
    """An image or dataset folder is missing, empty, unreadable or inconsistent."""


class OutputExistsError(ScalesError):
    """An output file exists and --force was not given."""
