"""The ``scales`` command: thin Typer commands (parse -> library call -> render).

Library errors (:class:`~scales_cli.errors.ScalesError`) become one line on stderr and their exit
code; nothing else is caught here, so real bugs still show a traceback.
"""

from __future__ import annotations

import sys

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
from . import inspect_cmd  # noqa: E402,F401


def main() -> None:
    try:
        app(standalone_mode=False)
    except ScalesError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except __import__("click").exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
