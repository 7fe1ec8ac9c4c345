"""Our cost counter next to published Params/OPs figures, to pin down each paper's convention.

Prints, per configuration: our params, MACs with and without attention matmuls, at the output size
the papers use (1280x720), and the published figure. Random weights (costs depend on shapes only).

    .venv/bin/python benchmarks/published_ops.py
"""

from __future__ import annotations

from scales_cli.archs._registry import spec_by_name
from scales_cli.metrics.cost import count_cost

# (label, arch, config, LR input (w, h) for a 1280x720 output, published figure and its source)
CASES = [
    ("MSRResNet x4", "msrresnet", {"scale": 4, "num_feat": 64, "num_block": 16}, (320, 180),
     "146.1G MACs (BasicSR / efficient-SR convention)"),
    ("SwinIR-light x2", "swinir", {"scale": 2, "embed_dim": 60, "depths": (6,) * 4, "num_heads": (6,) * 4,
     "window_size": 8, "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect"}, (640, 360),
     "195.6G Mult-Adds (SwinIR paper); 391.2G OPs (SCALES Table IV)"),
    ("SwinIR-light x4", "swinir", {"scale": 4, "embed_dim": 60, "depths": (6,) * 4, "num_heads": (6,) * 4,
     "window_size": 8, "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect"}, (320, 180),
     "49.6G Mult-Adds (SwinIR paper); 99.2G OPs (SCALES Table IV)"),
]


def main() -> None:
    print(f"{'model':<17} {'params':>10} {'MACs':>9} {'MACs w/o attn':>14}  published")
    for label, arch, config, size, published in CASES:
        spec = spec_by_name(arch)
        model = spec.build(**{**spec.defaults, **config}).eval()
        full = count_cost(model, size)
        conv_linear = count_cost(model, size, attention=False)
        print(f"{label:<17} {full.params_total:>10,} {full.macs_fp / 1e9:>8.2f}G {conv_linear.macs_fp / 1e9:>13.2f}G  {published}")


if __name__ == "__main__":
    main()
