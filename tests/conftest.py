"""Shared fixtures. Tests that read ../shared skip with a reason when it is absent, unless
SCALES_REQUIRE_SHARED=1 (CI), where its absence is a failure."""

from __future__ import annotations

import os
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
