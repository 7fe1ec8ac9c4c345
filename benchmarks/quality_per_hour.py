"""Set5 PSNR against wall minutes of fine-tuning, from the ``history.jsonl`` of finished runs (issue 20).

Quality per CPU-hour is what a user of a 2-core machine buys: this script draws, for each run folder of
``scales finetune``, its validation records (``kind == "val"``, seconds since the run started, Y-PSNR)
against minutes, one panel per teacher, beside horizontal lines a reader compares with (the NNCF INT8
model of the same teacher, a goal). It measures nothing itself: every point is a record the run wrote,
so the figure is as honest as the runs (state their machine and threads with ``--machine``)::

    python benchmarks/quality_per_hour.py \\
        "IMDN x4:cnn, plain distillation=/work/runs/budget30" \\
        --hline "IMDN x4:NNCF INT8 (29.96)=29.96" --hline "IMDN x4:30-min goal=30.6" \\
        --machine "AMD EPYC, AVX-512, 2 threads" --png docs/quality-per-hour.png

A run argument is ``PANEL:LABEL=RUN_DIR``; ``--dataset`` picks the validation set (default Set5). The
table printed (and written beside the PNG as ``.md``) gives each run's first and best PSNR, the minutes
to its best, and, per horizontal line, the first minute the run reached it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from scales_cli.io import atomic_write  # noqa: E402
from scales_cli.train.checkpoint import HISTORY_FILE, read_history  # noqa: E402
from scales_cli.train.plots import write_png  # noqa: E402


@dataclass(frozen=True)
class Curve:
    """One run's validation points: minutes since its start and Y-PSNR."""

    panel: str
    label: str
    run: Path
    minutes: tuple[float, ...]
    psnr: tuple[float, ...]

    def first_reaching(self, db: float) -> float | None:
        """The first minute at which the run's validation reached ``db`` (``None``: never)."""
        return next((m for m, p in zip(self.minutes, self.psnr, strict=True) if p >= db), None)


def _split(text: str, what: str) -> tuple[str, str, str]:
    head, sep, value = text.rpartition("=")
    panel, colon, label = head.partition(":")
    if not sep or not colon or not panel or not label or not value:
        raise SystemExit(f"{what} {text!r}: expected PANEL:LABEL=VALUE")
    return panel, label, value


def read_curve(spec: str, dataset: str) -> Curve:
    """The ``PANEL:LABEL=RUN_DIR`` argument's validation records on ``dataset``; one line when there are none."""
    panel, label, folder = _split(spec, "run")
    history = Path(folder) / HISTORY_FILE
    if not history.is_file():
        raise SystemExit(f"run {folder}: no {HISTORY_FILE} (a `scales finetune --out` folder was expected)")
    records = read_history(history)
    val = [r for r in records if r.get("kind") == "val" and r.get("dataset", dataset) == dataset]
    if not val:
        raise SystemExit(f"run {folder}: no {dataset} validation records in {HISTORY_FILE} (run with --val .../{dataset})")
    return Curve(panel, label, Path(folder), tuple(r["time"] / 60 for r in val), tuple(r["psnr"] for r in val))


def table(curves: list[Curve], lines: list[tuple[str, str, float]], dataset: str) -> str:
    """Markdown: per run, first/best PSNR, minutes to best, and the first minute at each line of its panel."""
    rows = [f"| panel | run | first {dataset} dB (min) | best dB (min) | reached |", "|---|---|---:|---:|---|"]
    for c in curves:
        best = max(range(len(c.psnr)), key=c.psnr.__getitem__)
        reached = []
        for panel, label, db in lines:
            if panel == c.panel:
                minute = c.first_reaching(db)
                reached.append(f"{label}: " + ("never" if minute is None else f"{minute:.1f} min"))
        rows.append(f"| {c.panel} | {c.label} | {c.psnr[0]:.2f} ({c.minutes[0]:.1f}) | {c.psnr[best]:.2f} "
                    f"({c.minutes[best]:.1f}) | {'; '.join(reached) or '-'} |")
    return "\n".join(rows) + "\n"


def draw(path: Path, curves: list[Curve], lines: list[tuple[str, str, float]], dataset: str, machine: str) -> Path:
    """One panel per PANEL (two a row): each run's PSNR against minutes, the horizontal lines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(c.panel for c in curves))
    cols = min(2, len(panels))  # two panels a row: four stay readable
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(8.5 * cols, 4.8 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        for c in (c for c in curves if c.panel == panel):
            ax.plot(c.minutes, c.psnr, marker="o", ms=3, lw=1.2, label=c.label)
        for i, (p, label, db) in enumerate(x for x in lines if x[0] == panel):
            ax.axhline(db, ls=(":", "--", "-.")[i % 3], lw=1.2, color=("black", "darkgoldenrod", "teal")[i % 3], label=label)
        ax.set_title(panel)
        ax.set_xscale("log")  # minutes-long short runs beside hour-long ones
        ax.set_xlabel("wall minutes of fine-tuning (log scale)")
        ax.set_ylabel(f"{dataset} Y-PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the curves, not over them
    if machine:
        fig.suptitle(machine, fontsize=9)
    return write_png(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="PANEL:LABEL=RUN_DIR (a scales finetune --out folder)")
    ap.add_argument("--hline", action="append", default=[], help="PANEL:LABEL=DB, a horizontal line (NNCF INT8, a goal)")
    ap.add_argument("--dataset", default="Set5", help="validation set of the records (default Set5)")
    ap.add_argument("--machine", default="", help="the machine and threads the runs used, printed on the picture")
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "quality-per-hour.png")
    args = ap.parse_args()
    curves = [read_curve(spec, args.dataset) for spec in args.runs]
    lines = []
    for spec in args.hline:
        panel, label, value = _split(spec, "--hline")
        try:
            lines.append((panel, label, float(value)))
        except ValueError:
            raise SystemExit(f"--hline {spec!r}: {value!r} is not a number of dB") from None
    text = table(curves, lines, args.dataset)
    print(text, end="")
    draw(args.png, curves, lines, args.dataset, args.machine)
    atomic_write(args.png.with_suffix(".md"), lambda tmp: Path(tmp).write_text(text), force=True)
    print(f"wrote {args.png} and {args.png.with_suffix('.md')}")


if __name__ == "__main__":
    main()
