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
from . import (  # noqa: E402,F401
    archs_cmd, bench_cmd, binarize_cmd, demo_cmd, export_cmd, finetune_cmd, inspect_cmd, report_cmd, upscale_cmd, zoo_cmd,
)


@app.callback()
def _root() -> None:
    """Binarize pretrained super-resolution networks with SCALES; measure and export them."""


# Click's base exception for usage errors (missing argument, bad choice, unknown option). Typer
# vendors click in recent releases, so it is found through a class Typer exports.
_CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Console entry point: usage errors and :class:`ScalesError` become one line and exit 2.

    Click would print usage errors as a multi-line box; running it with ``standalone_mode=False``
    lets us print them as every other refusal is printed, with the command's ``--help`` as the hint.
    """
    if not sys.warnoptions:  # library warnings are not for our users (``python -W ...`` still shows them)
        warnings.simplefilter("ignore")
    try:
        code = app(standalone_mode=False)
    except ScalesError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except _CLICK_ERROR as exc:
        command = getattr(getattr(exc, "ctx", None), "command_path", "scales")
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        if message:  # empty for "no arguments": click has just printed the help
            print(f"error: {message} (see {command} --help)", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
