"""Every real checkpoint in ../shared loads strictly by auto-detection alone, as `scales inspect --json`
shows a user: right architecture, scale, learnable-parameter count (MANIFEST.md) and sha256 prefix."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

# file -> (architecture, scale, learnable params, sha256[:12]) as recorded in MANIFEST.md
EXPECTED = {
    "IMDN_x2.pth": ("imdn", 2, 694_404, "740b39653592"),
    "IMDN_x3.pth": ("imdn", 3, 703_059, "11b1716a19bc"),
    "IMDN_x4.pth": ("imdn", 4, 715_176, "e660c3822114"),
    "RFDN_x4.pth": ("rfdn", 4, 433_448, "11af8ec8ebd6"),
    "RLFN_x4.pth": ("rlfn", 4, 317_218, "ca81b7757708"),
    "BSRN_x4.pth": ("bsrn", 4, 156_288, "29ac393975ec"),
    "IMDTN_x4.pth": ("imdtn", 4, 371_532, "2eec5fc0276b"),
    "PAN_x4.pth": ("pan", 4, 272_419, "739fab99ee7b"),
    "CARN-M.pth": ("carn-m", 4, 414_811, "d48a759a8450"),
    "SRGAN_G_x4.pth": ("srgan-g", 4, 734_092, "f4c381640826"),
}


def test_manifest_lists_exactly_these(checkpoints):
    assert sorted(p.name for p in checkpoints.glob("*.pth")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_inspect_json(name, checkpoints, tmp_path):
    # A copy under a neutral name proves detection never reads the file name.
    neutral = tmp_path / "weights.pth"
    neutral.write_bytes((checkpoints / name).read_bytes())
    result = run_cli("inspect", neutral, "--json")
    assert result.code == 0, result.err
    info = json.loads(result.out)
    arch, scale, params, sha = EXPECTED[name]
    assert (info["arch"], info["scale"], info["params"]) == (arch, scale, params)
    assert info["sha256"].startswith(sha)
    assert set(info["regions"]) == {"head", "body", "tail"} and all(info["regions"].values())
