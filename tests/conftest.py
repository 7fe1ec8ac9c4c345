"""Shared fixtures. Tests that read ../shared skip with a reason when it is absent, unless
SCALES_REQUIRE_SHARED=1 (CI), where its absence is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCALES_SHARED", REPO.parent / "shared"))


def _share_the_cores() -> None:
    """Under pytest-xdist, give each worker its share of the cores, in every runtime it starts.

    torch, OpenVINO and onnxruntime each size their pool to the whole CPU; two workers on two cores
    then run four busy threads and the suite took about 1.5x longer (spin-waiting OpenMP threads).
    ``OMP_NUM_THREADS`` reaches subprocesses (CLI and torchrun tests) and torch, whose count
    ``scales_cli.machine.runtime_threads`` hands on to OpenVINO and onnxruntime.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2 or "OMP_NUM_THREADS" in os.environ:
        return
    share = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(share)
    if "torch" in sys.modules:  # imported before this file (a plugin): the variable came too late for it
        sys.modules["torch"].set_num_threads(share)


_share_the_cores()


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
    """What a shell sees of one ``scales`` call: the exit code and everything written to stdout and
    stderr (Python streams and the file descriptors underneath, where onnxruntime, OpenVINO and
    other C++ libraries write)."""

    code: int
    out: str
    err: str

    def __iter__(self) -> Iterator[object]:
        """``code, out, err = run_cli(...)``."""
        return iter((self.code, self.out, self.err))

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()

    def refused(self, *names: str, code: int = 2) -> str:
        """Assert the CLI's promise on bad input and return its line: exit ``code``, no traceback, one
        stderr line, and that line names each of ``names`` (the file, option or value at fault)."""
        assert "Traceback" not in self.err, self.err
        assert self.code == code, (self.code, self.err)
        assert len(self.err_lines) == 1, self.err
        line = self.err_lines[0]
        for name in names:
            assert name in line, (name, line)
        return line


def run_cli(*args: object) -> CliResult:
    """``scales ARGS`` in-process through the real entry point (:func:`scales_cli.cli.main`).

    Library errors and usage errors become their one line and exit code exactly as in the console
    script, and stdout/stderr are captured at the file-descriptor level, so a native library's log
    line counts as it would in a terminal. Anything uncaught propagates as the exception it is (the
    test fails, as a traceback would), with what was printed attached as a note. ``main()`` silences
    warnings globally, as a fresh process may; here that stays inside the call. A subprocess costs
    ~1.5 s of start-up per call: :func:`run_console` is for the few tests where the process is the
    point (the console script, its warnings).
    """
    from scales_cli.cli import main

    argv = sys.argv
    sys.argv = ["scales", *map(str, args)]
    try:
        with _captured_fds() as read, warnings.catch_warnings():
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = _exit_code(exc)
            except BaseException as exc:
                if hasattr(exc, "add_note"):  # Python >= 3.11
                    out, err = read()
                    exc.add_note(f"scales {' '.join(sys.argv[1:])}\n--- stdout ---\n{out}--- stderr ---\n{err}")
                raise
            out, err = read()
    finally:
        sys.argv = argv
    return CliResult(code, out, err)


def run_console(*args: object, timeout: float = 180) -> CliResult:
    """``python -m scales_cli ARGS`` as a real process: the console script, warnings and all."""
    proc = subprocess.run([sys.executable, "-m", "scales_cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def _exit_code(exc: SystemExit) -> int:
    """The status a process would end with: ``sys.exit("text")`` prints the text and ends with 1."""
    if exc.code is None or isinstance(exc.code, int):
        return int(exc.code or 0)
    print(exc.code, file=sys.stderr)
    return 1


@contextmanager
def _captured_fds() -> Iterator[Callable[[], tuple[str, str]]]:
    """Point file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr`` over them) at temporary
    files for the block; yield a function that returns what was written so far, decoded."""
    sys.stdout.flush()
    sys.stderr.flush()
    streams = sys.stdout, sys.stderr
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        saved = [os.dup(1), os.dup(2)]
        os.dup2(out_file.fileno(), 1)
        os.dup2(err_file.fileno(), 2)
        sys.stdout, sys.stderr = (open(fd, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False) for fd in (1, 2))

        def read() -> tuple[str, str]:
            sys.stdout.flush()
            sys.stderr.flush()
            return tuple(_contents(f) for f in (out_file, err_file))  # type: ignore[return-value]

        try:
            yield read
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.close()  # closefd=False: flushes, leaves the descriptor to the dup2 below
            sys.stdout, sys.stderr = streams
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _contents(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode("utf-8", errors="replace")
