"""Shared fixtures. Tests that read ../shared skip with a reason when it is absent, unless
SCALES_REQUIRE_SHARED=1 (CI), where its absence is a failure."""

from __future__ import annotations

import io
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCALES_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if path.exists():
        return path
    if os.environ.get("SCALES_REQUIRE_SHARED") == "1":
        pytest.fail(f"SCALES_REQUIRE_SHARED=1 but {path} is missing")
    pytest.skip(f"{path} not present (the ../shared folder of checkpoints and data)")
    raise AssertionError  # unreachable


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and fair to the other tests on a 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def checkpoints(shared: Path) -> Path:
    return _need(shared / "checkpoints")


@pytest.fixture(scope="session")
def benchmarks(shared: Path) -> Path:
    return _need(shared / "data" / "benchmarks")


@pytest.fixture(scope="session")
def train_data(shared: Path) -> Path:
    return _need(shared / "data" / "train")


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


def run_cli(*args: object) -> CliResult:
    """``scales ARGS`` in-process through the real entry point (:func:`scales_cli.cli.main`).

    Library errors become their one line and exit code exactly as in the console script; anything
    uncaught propagates as the exception it is (the test fails, as a traceback would). A subprocess
    costs ~1.5 s of start-up per call, so only one test per command runs the console script.
    """
    from scales_cli.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["scales", *map(str, args)]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return CliResult(code, out.getvalue(), err.getvalue())
