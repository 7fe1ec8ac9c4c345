"""The ``scales`` command: thin Typer commands (parse -> library call -> render).

Library errors (:class:`~scales_cli.errors.ScalesError`) become one line on stderr and their exit
code; nothing else is caught here, so real bugs still show a traceback.
"""

from __future__ import annotations

import sys
import warnings

import typer

from ..errors import ScalesError

app = typer.Typer(
    name="scales",
    help="Binarize pretrained super-resolution networks with SCALES; measure and export them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# One module per command group; each registers its commands on `app` (explicit list, no scanning).
from . import archs_cmd, binarize_cmd, demo_cmd, inspect_cmd, report_cmd, upscale_cmd  # noqa: E402,F401


@app.callback()
def _root() -> None:
    """Binarize pretrained super-resolution networks with SCALES; measure and export them."""


def main() -> None:
    """Console entry point: Typer handles usage errors (exit 2); ScalesError becomes one line."""
    if not sys.warnoptions:  # library warnings are not for our users (``python -W ...`` still shows them)
        warnings.simplefilter("ignore")
    try:
        app()
    except ScalesError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
