"""``OUT/curves.png``: training loss and validation PSNR against step (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write


def draw_curves(path: Path, history: Sequence[Mapping[str, Any]], title: str = "") -> Path:
    """Panels from ``history.jsonl`` records: ``kind == "train"`` losses and ``kind == "val"`` PSNR, and
    before them, when the run had a block-wise stage, each block's ``kind == "block"`` loss."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    train = [r for r in history if r.get("kind") == "train"]
    val = [r for r in history if r.get("kind") == "val"]
    blocks = [r for r in history if r.get("kind") == "block"]
    fig, axes = plt.subplots(1, 3 if blocks else 2, figsize=(15 if blocks else 10, 4), dpi=100)
    ax_loss, ax_val = axes[-2], axes[-1]
    if blocks:
        _draw_blocks(axes[0], blocks)
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="total")
        for term in ("distill", "hr", "feature"):  # the terms, when the total has more than one
            if any("hr" in r or "feature" in r for r in train) and any(term in r for r in train):
                ax_loss.plot([r["step"] for r in train], [r.get(term, float("nan")) for r in train], lw=1, alpha=0.7, label=term)
        ax_loss.set_yscale("log")
        ax_loss.legend(loc="upper right")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(True, alpha=0.3)
    if val:
        ax_val.plot([r["step"] for r in val], [r["psnr"] for r in val], marker="o", lw=1)
        ax_val.set_title(f"best {max(r['psnr'] for r in val):.2f} dB", fontsize=10)
    ax_val.set_xlabel("step")
    ax_val.set_ylabel("validation Y-PSNR (dB)")
    ax_val.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=11)
    return write_png(fig, path)


def write_png(fig: Any, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` atomically (a reader never sees half a PNG), and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), force=True)
    finally:
        plt.close(fig)


def _draw_blocks(ax: Any, blocks: Sequence[Mapping[str, Any]]) -> None:
    """The block-wise stage (before step 1): each block's reconstruction loss against the stage's step."""
    for name in dict.fromkeys(r["block"] for r in blocks):
        rows = [r for r in blocks if r["block"] == name]
        ax.plot([r["block_step"] for r in rows], [r["loss"] for r in rows], lw=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("block-wise step")
    ax.set_ylabel("block reconstruction loss")
    ax.set_title("block-wise stage", fontsize=10)
    ax.legend(loc="upper right", fontsize=7)
    ax.grid(True, alpha=0.3)
