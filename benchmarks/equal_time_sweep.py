"""Which fine-tuning option wins at equal wall time? Budgeted `scales finetune` runs, two at once, one per core.

Each arm is one CLI call with `--budget` (printed), one thread pinned to one core, so two arms share the
machine the same way and each gets the steps its option affords in the same wall time: an option that
costs time per step pays for it here, as it would for a user. Every arm starts from the same student,
data, batch, patch, lr, seed and validation set; only the arm's own options differ. The table gives
steps, seconds per step, Set5 at each validation, the kept (best Set5) student's Set5 and Set14 by
`scales report` (Set14 is never seen by training or selection); benchmarks/quality_per_hour.py draws the
arms' Set5 curves from their run folders (docs/results.md, "Equal-time sweep").

    python benchmarks/equal_time_sweep.py --student IMDN_x4-cnn.safetensors --budget 25m --out sweep \
        --arms base progressive0.5
    python benchmarks/equal_time_sweep.py --student IMDN_x4-cnn.safetensors --out sweep --table-only  # reprint

Arms run in the order given, one per core of ``--cores`` at a time (default 0 1: in pairs); a last group
short of arms leaves a core idle, so it is not timed as the others are. ``--cores 0`` runs the arms one
after another on core 0 (e.g. while core 1 does other work that stays the same for every arm). A folder
that already holds a finished arm is kept (``--rerun`` to start it over).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

from scales_cli.io import atomic_write  # noqa: E402
from scales_cli.machine import probe  # noqa: E402
from scales_cli.train.checkpoint import BEST_FILE, HISTORY_FILE, read_history  # noqa: E402

SCALES = str(Path(sys.executable).with_name("scales"))  # the console script beside this interpreter

ARMS: dict[str, list[str]] = {
    "base": [],
    "ema0.999": ["--ema", "0.999"],
    "feature0.01": ["--feature-weight", "0.01"],
    "feature0.03": ["--feature-weight", "0.03"],
    "lr4e-3": ["--lr", "4e-3"],
    "feature0.01+scale-lr1e-2": ["--feature-weight", "0.01", "--scale-lr", "1e-2"],
    "progressive0.5": ["--progressive", "0.5"],
    "progressive0.25": ["--progressive", "0.25"],
    "scale-lr1e-2": ["--scale-lr", "1e-2"],
    "scale-lr5e-4": ["--scale-lr", "5e-4"],
    "scale-lr4e-3": ["--scale-lr", "4e-3"],
    "scale-lr1e-2+warmup500": ["--scale-lr", "1e-2", "--warmup", "500"],
    "bf16": ["--autocast", "bf16"],
    "patch48": ["--patch", "48"],
    "patch24": ["--patch", "24"],
    "batch16": ["--batch", "16"],
    "batch4": ["--batch", "4"],
    "charbonnier": ["--loss", "charbonnier"],
    "two-stage-activations-first": ["--two-stage", "activations-first"],
}
"""Arm name -> the `scales finetune` options it adds to the common ones (below)."""


def common_options(args: argparse.Namespace) -> list[str]:
    return ["--teacher", str(args.teacher), *sum((["--data", str(d)] for d in args.data), []),
            *sum((["--data-lr", str(d)] for d in args.data_lr), []), "--val", str(args.val), "--budget", args.budget,
            "--batch", "8", "--patch", "32", "--lr", str(args.lr), "--schedule", "cosine", "--warmup", "50",
            "--val-every", str(args.val_every), "--save-every", "1000", "--seed", str(args.seed)]


def arm_command(args: argparse.Namespace, name: str) -> list[str]:
    """The arm's CLI call: the common options, then the arm's own (a later option wins in typer)."""
    return [SCALES, "finetune", str(args.student), *common_options(args), *ARMS[name], "--out", str(args.out / name), "--force"]


def finished(args: argparse.Namespace, name: str) -> bool:
    """The arm's `scales finetune` closed (its log ends with the summary line) and left its kept student."""
    log = args.out / f"{name}.log"
    return (args.out / name / BEST_FILE).is_file() and log.is_file() and "finetune: " in log.read_text(errors="replace")


def _records(run: Path) -> list[dict[str, Any]]:
    path = run / HISTORY_FILE
    return read_history(path) if path.is_file() else []


def run_arms(args: argparse.Namespace, names: list[str]) -> None:
    todo = [n for n in names if args.rerun or not finished(args, n)]
    width = len(args.cores)  # arms at once: one per core given
    for i in range(0, len(todo), width):
        procs = []
        for core, name in zip(args.cores, todo[i : i + width], strict=False):
            cmd = ["taskset", "-c", str(core), *arm_command(args, name)]
            print("OMP_NUM_THREADS=1 " + " ".join(cmd), flush=True)
            with (args.out / f"{name}.log").open("w") as log:  # the child keeps its own copy of the handle
                procs.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})))
        for name, proc in procs:
            if proc.wait() != 0:
                print(f"arm {name}: scales finetune exited {proc.returncode}; see {args.out / name}.log", file=sys.stderr)


def scored(args: argparse.Namespace, name: str) -> dict[str, float]:
    """Set5/Set14 of the arm's kept student, by `scales report --json` (cached next to the run)."""
    out = args.out / name / "report.json"
    if not out.is_file():
        subprocess.run([SCALES, "report", str(args.out / name / BEST_FILE), "--data", str(args.val),
                        "--data", str(args.test), "--json", str(out), "--force"], check=True, stdout=subprocess.DEVNULL)
    doc = json.loads(out.read_text())
    row = next(r for r in doc["groups"][0]["rows"] if r["kind"] == "model")
    return {dataset: result["psnr"] for dataset, result in row["results"].items()}


def table(args: argparse.Namespace, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        records = _records(args.out / name)
        vals = [r for r in records if r.get("kind") == "val"]
        trains = [r for r in records if r.get("kind") == "train"]
        if not vals or not trains:
            print(f"arm {name}: no finished run in {args.out / name}", file=sys.stderr)
            continue
        steps, seconds = trains[-1]["step"], trains[-1]["time"]
        rows.append({"arm": name, "options": " ".join(ARMS[name]) or "(none)", "steps": steps,
                     "s_per_step": seconds / steps, "val": {v["step"]: v["psnr"] for v in vals},
                     "val_minutes": {v["step"]: v["time"] / 60 for v in vals}, **scored(args, name)})
    return rows


def print_table(rows: list[dict[str, Any]], every: int) -> None:
    marks = sorted({s for r in rows for s in r["val"] if s % every == 0})
    head = ["arm", "options", "steps", "s/step", *[f"Set5 @{s}" for s in marks], "Set5 (kept)", "Set14 (kept)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * 2 + "---:|" * (len(head) - 2))
    for r in rows:
        cells = [r["arm"], f"`{r['options']}`", str(r["steps"]), f"{r['s_per_step']:.3f}",
                 *[f"{r['val'][s]:.2f}" if s in r["val"] else "-" for s in marks], f"{r['Set5']:.2f}", f"{r['Set14']:.2f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, required=True, help="the calibrated student every arm starts from")
    ap.add_argument("--teacher", type=Path, default=SHARED / "checkpoints" / "IMDN_x4.pth")
    ap.add_argument("--data", type=Path, nargs="*", default=[SHARED / "data" / "train" / "BSD200"])
    ap.add_argument("--data-lr", type=Path, nargs="*", default=[SHARED / "data" / "train" / "T91"])
    ap.add_argument("--val", type=Path, default=SHARED / "data" / "benchmarks" / "Set5")
    ap.add_argument("--test", type=Path, default=SHARED / "data" / "benchmarks" / "Set14", help="scored after, never seen")
    ap.add_argument("--budget", default="25m")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0, help="the crops' seed, the same for every arm (another seed: another --out)")
    ap.add_argument("--arms", nargs="+", default=["base"], choices=sorted(ARMS))
    ap.add_argument("--cores", type=int, nargs="+", default=[0, 1],
                    help="the cores arms are pinned to, one arm per core at a time (one core: the arms run one after another)")
    ap.add_argument("--out", type=Path, default=Path("sweep"))
    ap.add_argument("--rerun", action="store_true", help="start finished arms over")
    ap.add_argument("--table-only", action="store_true", help="only reprint the table of the runs in --out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {probe(threads=1).describe()}; budget {args.budget} per arm, one at a time on each of cores "
          f"{' '.join(map(str, args.cores))}, one thread each", flush=True)
    if not args.table_only:
        run_arms(args, args.arms)
    rows = table(args, args.arms)
    print_table(rows, args.val_every)
    atomic_write(args.out / "sweep.json", lambda tmp: Path(tmp).write_text(json.dumps(rows, indent=1)), force=True)


if __name__ == "__main__":
    main()
