"""``OUT/curves.png``: training loss and validation PSNR against step (matplotlib, imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write


def draw_curves(path: Path, history: Sequence[Mapping[str, Any]], title: str = "") -> Path:
    """Two panels from ``history.jsonl`` records: ``kind == "train"`` losses and ``kind == "val"`` PSNR."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    train = [r for r in history if r.get("kind") == "train"]
    val = [r for r in history if r.get("kind") == "val"]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
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
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), force=True)
    finally:
        plt.close(fig)
