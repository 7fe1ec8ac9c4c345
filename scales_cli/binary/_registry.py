"""One lookup for every name -> factory registry of the binary package (recipes name pieces by string)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from scales_cli.errors import RecipeError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, what: str) -> T:
    """``registry[name]``, or a :class:`RecipeError` naming the option, the value and the choices."""
    try:
        return registry[name]
    except KeyError:
        choices = ", ".join(sorted(registry))
        raise RecipeError(f"unknown {what} {name!r}; expected one of: {choices}") from None
