"""The public Python API resolves, and `import scales_cli` does not import torch eagerly."""

from __future__ import annotations

import subprocess
import sys

import scales_cli


def test_every_public_name_resolves():
    for name in scales_cli.__all__:
        assert getattr(scales_cli, name) is not None, name


def test_import_is_light():
    code = "import sys, scales_cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_cli_import_is_light():
    """`scales --help` must not pay for torch or numpy: commands import them when they run."""
    code = "import sys, scales_cli.cli; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False False"
