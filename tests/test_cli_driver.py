"""The test driver itself: ``run_cli`` must see what a shell would (codes, one-line errors, native writes)."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from conftest import _captured_fds, run_cli


def test_native_writes_to_the_descriptors_are_captured_with_python_ones():
    """onnxruntime and OpenVINO log from C++ straight to fd 2: a one-line check must count those lines."""
    with _captured_fds() as read:
        print("from python")
        print("python error", file=sys.stderr)
        os.write(1, b"native out\n")
        os.write(2, b"native error\n")
        out, err = read()
    assert out.splitlines() == ["from python", "native out"]
    assert err.splitlines() == ["python error", "native error"]


def test_usage_error_goes_through_mains_mapping():
    result = run_cli("inspect", "--bogus")
    assert result.refused("No such option: --bogus", "--help").startswith("error: ")
    assert result.out == ""


def test_help_and_uncaught_errors(monkeypatch):
    assert run_cli("--help").code == 0 and "binarize" in run_cli("--help").out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_cli("--help")  # main() silences warnings, but only inside the call
        with pytest.raises(UserWarning):
            warnings.warn("still an error here", UserWarning)

    import scales_cli.cli.inspect_cmd as inspect_cmd

    def broken(*_args, **_kwargs):
        print("half a table")
        raise RuntimeError("a bug")

    monkeypatch.setattr(inspect_cmd, "load_model", broken)
    with pytest.raises(RuntimeError, match="a bug") as info:
        run_cli("inspect", "x.pth")
    if sys.version_info >= (3, 11):  # exception notes
        assert "half a table" in "\n".join(info.value.__notes__)
