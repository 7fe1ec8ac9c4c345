"""A ``channel_mean`` student -> the same student with a trained weight scale (``weight: channel_learned``).

Issue 20 probe: does decoupling the output scale of a binary conv from the size of its latent weights
let a trained student climb further? This writes a new student file that computes exactly what the old
one does: every binary layer's recipe options get ``weight: channel_learned`` and a
``wbin.log_scale`` (C_out,) equal to log of the mean |W_o| the old file derived from its weights. Then
``scales finetune`` trains it (its scale in the ``--scale-lr`` group).

    python benchmarks/learned_weight_scale.py goal2h2/student.safetensors -o goal2h2-learned.safetensors
"""

from __future__ import annotations

import argparse
import sys

import yaml
from safetensors import safe_open
from safetensors.torch import save_file

from scales_cli.binary.weight import log_channel_mean
from scales_cli.io import atomic_write


def with_learned_scale(recipe_yaml: str) -> str:
    """The recipe with ``weight: channel_learned`` in its defaults' options (binary rules inherit it)."""
    recipe = yaml.safe_load(recipe_yaml)
    defaults = recipe.setdefault("defaults", {})
    defaults.setdefault("options", {})["weight"] = "channel_learned"
    for rule in recipe.get("rules", []):
        if "options" in rule:
            rule["options"].pop("weight", None)
    return yaml.safe_dump(recipe, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    with safe_open(args.student, "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key in [k for k in tensors if k.endswith(".act.alpha")]:  # one per binary layer
        layer = key[: -len(".act.alpha")]
        if f"{layer}.wbin.log_scale" in tensors:
            sys.exit(f"{args.student}: already has a learned weight scale ({layer})")
        tensors[f"{layer}.wbin.log_scale"] = log_channel_mean(tensors[f"{layer}.weight"]).contiguous()
    meta["scales.recipe"] = with_learned_scale(meta["scales.recipe"])
    meta["scales.recipe_text"] = meta["scales.recipe"]
    meta.pop("scales.training", None)
    atomic_write(args.output, lambda tmp: save_file(tensors, str(tmp), metadata=meta), force=args.force)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
