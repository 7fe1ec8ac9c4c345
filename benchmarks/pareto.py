"""The Pareto picture: Set5 PSNR against measured OpenVINO latency, FP32 and NNCF INT8 beside our students (issue 21, step 5).

For each teacher checkpoint (default IMDN x4 and RLFN x4 of ``../shared/checkpoints``):

1. the OpenVINO FP32 IR and its NNCF INT8 IRs (PTQ with NNCF's defaults, and with the first and last
   convolution kept FP), made as ``benchmarks/int8_baseline.py`` makes them (:mod:`ir_steps`);
2. for every recipe (default ``int8 cnn lsf-chl lsf cnn-int8 lsf-int8``), three ``scales`` commands, each run
   as a user types it (from the repository root, ``OMP_NUM_THREADS=--threads``), each command and wall time kept::

       scales binarize TEACHER --recipe R --calibrate ../shared/data/train/T91 -o OUT/TEACHER/R.safetensors
       scales finetune OUT/TEACHER/R.safetensors --teacher TEACHER --data ../shared/data/train/BSD200 \\
           --data-lr ../shared/data/train/T91 --val ../shared/data/benchmarks/Set5 --val-every 0 \\
           --steps 800 --batch 8 --patch 32 --lr 2e-3 --schedule cosine --warmup 50 --out OUT/TEACHER/R --force
       scales export OUT/TEACHER/R/student.safetensors -o OUT/TEACHER/R/student.xml --format openvino --force

   every recipe with the same fine-tune budget (steps, batch, patch, data, schedule), validated on Set5 once,
   at the end; each command's output goes to a ``.log`` beside its result;
3. one scoring of every IR of the teacher (Y-PSNR on ``--data``, default Set5 and Set14, by the library behind
   ``scales report``) and one interleaved timing run (the library behind ``scales bench``; one seeded
   1x3x180x320 input, ``--repeats`` rounds);
4. writes ``OUT/pareto.json`` (every figure, command, wall time, timing round and the machine line),
   ``OUT/pareto.md`` (the table it prints) and the picture (``--png``, default docs/pareto.png): one panel per
   teacher, latency against Set5 PSNR, the non-dominated points joined.

``--reuse`` keeps every output already in OUT (IRs, binarized and fine-tuned students with the same budget;
a fine-tune stopped half-way is continued with ``--resume``), so a crashed run continues where it stopped.
A recipe whose step fails is reported (table, JSON, exit status 1) and the others go on.
``--plot-only OUT/pareto.json`` draws the picture (and prints the table) again from a results file::

    .venv/bin/pip install -c constraints.txt -e '.[bench]'
    python benchmarks/pareto.py                                # both teachers, six recipes, 800 steps each
    python benchmarks/pareto.py --teachers RLFN_x4 --recipes cnn,int8 --steps 3 --data Set5 --repeats 2 \\
        --out /tmp/pareto-smoke --png /tmp/pareto-smoke.png  # a smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

from ir_steps import DEFAULT_CALIB, REPO, SHARED, Calibration, Candidate, Run, StepFailed, export_ir, run_scales, score, shown, teacher_irs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from scales_cli.bench import BenchResult, bench
from scales_cli.export.parity import UNPROBED
from scales_cli.loading import load
from scales_cli.machine import probe
from scales_cli.recipe.schema import builtin_names
from scales_cli.train.checkpoint import read_history

CHECKPOINTS = SHARED / "checkpoints"
BENCHMARKS = SHARED / "data" / "benchmarks"
TRAIN = SHARED / "data" / "train"
DEFAULT_TEACHERS = ("IMDN_x4", "RLFN_x4")
DEFAULT_RECIPES = ("int8", "cnn", "lsf-chl", "lsf", "cnn-int8", "lsf-int8")
DEFAULT_SCORE_SETS = ("Set5", "Set14")
DEFAULT_PNG = REPO / "docs" / "pareto.png"
RUNS_FILE = "runs.json"  # per student folder: the commands that made it, their wall times and the budget
IR_GAP_DB = 0.1  # a student's IR scoring this far from its torch self (the fine-tune's validation) is flagged

console = Console()


@dataclass(frozen=True)
class Budget:
    """The fine-tune settings every recipe gets: the same steps, crops, data, schedule and validation."""

    steps: int
    data: tuple[Path, ...]
    data_lr: tuple[Path, ...]
    val: Path
    batch: int = 8
    patch: int = 32
    lr: float = 2e-3
    schedule: str = "cosine"
    warmup: int = 50
    val_every: int = 0  # 0: validated once, at the end; N: also every N steps (a Set5 curve against minutes)

    def options(self) -> list[object]:
        """The ``scales finetune`` options that say it."""
        data = [w for d in self.data for w in ("--data", d)] + [w for d in self.data_lr for w in ("--data-lr", d)]
        return [*data, "--val", self.val, "--val-every", self.val_every, "--steps", self.steps, "--batch", self.batch, "--patch", self.patch,
                "--lr", self.lr, "--schedule", self.schedule, "--warmup", self.warmup]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "data": [shown(d) for d in self.data], "data_lr": [shown(d) for d in self.data_lr],
                "val": shown(self.val)}


@dataclass(frozen=True)
class Student:
    """One recipe's student of one teacher: its IR (None where a step failed) and the commands that made it."""

    recipe: str
    xml: Path | None
    runs: dict[str, dict[str, Any]]  # "binarize" / "finetune" / "export" -> command, seconds, log, reused
    error: str | None = None


# ------------------------------------------------------------------------------------------ arguments


def fail(message: str) -> NoReturn:
    """Bad input: one line, exit status 2 (argparse's convention)."""
    print(f"pareto: {message}", file=sys.stderr)
    sys.exit(2)


def teacher_path(name: str) -> Path:
    """A checkpoint path, or a name of ``../shared/checkpoints`` (``RLFN_x4``: ``RLFN_x4.pth``)."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    for candidate in (CHECKPOINTS / name, CHECKPOINTS / f"{name}.pth"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.stem for p in CHECKPOINTS.glob("*.pth"))) if CHECKPOINTS.is_dir() else "none"
    fail(f"teacher {name}: no such file, nor {CHECKPOINTS / (name + '.pth')} (names there: {known})")


def folder(name: str | Path, base: Path) -> Path:
    """A folder path, or a name of ``base`` (``Set5``: ``../shared/data/benchmarks/Set5``)."""
    for candidate in (Path(name), base / name):
        if candidate.is_dir():
            return candidate.resolve()
    fail(f"{name}: no such folder (nor {base / name})")


def split(values: list[str] | None, default: tuple[str, ...]) -> list[str]:
    """``--x a,b --x c`` -> ``[a, b, c]``; the default where none is given."""
    return [v for value in values for v in value.split(",") if v] if values else list(default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teachers", action="append", metavar="NAMES",
                    help=f"comma-separated checkpoints, or names in ../shared/checkpoints (default {','.join(DEFAULT_TEACHERS)})")
    ap.add_argument("--recipes", action="append", metavar="NAMES", help=f"comma-separated built-in recipes (default {','.join(DEFAULT_RECIPES)})")
    ap.add_argument("--steps", type=int, default=800, help="fine-tune steps of every student (default 800)")
    ap.add_argument("--val-every", type=int, default=0,
                    help="also validate every N steps, for a Set5-against-minutes curve (default 0: at the end only)")
    ap.add_argument("--train-data", action="append", metavar="DIR",
                    help="fine-tune HR folders, finetune --data (default ../shared/data/train/BSD200)")
    ap.add_argument("--train-data-lr", action="append", metavar="DIR",
                    help="fine-tune LR-only folders, finetune --data-lr (default ../shared/data/train/T91)")
    ap.add_argument("--val", default="Set5", help="fine-tune validation set, scored once at the end (default Set5)")
    ap.add_argument("--calibrate", default=str(DEFAULT_CALIB), help="binarize --calibrate folder, and NNCF's (default T91)")
    ap.add_argument("--calib-images", type=int, default=91, help="images of --calibrate for NNCF, one crop each (default 91)")
    ap.add_argument("--data", action="append", metavar="SETS",
                    help="comma-separated benchmark folders or names to score on; the first is the picture's y "
                         "(default Set5,Set14)")
    ap.add_argument("--size", default="320x180", help="LR input WIDTHxHEIGHT for timing (default 320x180)")
    ap.add_argument("--repeats", type=int, default=10, help="interleaved timed runs per model (default 10)")
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the scales commands, and OpenVINO's "
                                                           "threads in the timing (default 2)")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "pareto", help="work folder (default out/pareto)")
    ap.add_argument("--png", type=Path, default=DEFAULT_PNG, help="the picture (default docs/pareto.png)")
    ap.add_argument("--reuse", action="store_true", help="keep outputs already in --out (continue a crashed run)")
    ap.add_argument("--plot-only", type=Path, metavar="JSON", help="only draw --png (and print the table) from this pareto.json")
    args = ap.parse_args(argv)
    if args.plot_only is not None:
        if not args.plot_only.is_file():
            fail(f"--plot-only {args.plot_only}: no such file")
        return args
    known = builtin_names()
    args.recipes = split(args.recipes, DEFAULT_RECIPES)
    for r in args.recipes:
        if r not in known:
            fail(f"unknown recipe {r!r} (built-in: {', '.join(known)})")
    args.teachers = [teacher_path(t) for t in split(args.teachers, DEFAULT_TEACHERS)]
    args.data = [folder(d, BENCHMARKS) for d in split(args.data, DEFAULT_SCORE_SETS)]
    args.val = folder(args.val, BENCHMARKS)
    args.calibrate = folder(args.calibrate, TRAIN)
    args.train_data = tuple(folder(d, TRAIN) for d in split(args.train_data, ("BSD200",)))
    args.train_data_lr = tuple(folder(d, TRAIN) for d in split(args.train_data_lr, ("T91",)))
    size = args.size.lower().split("x")
    if len(size) != 2 or not all(v.isdigit() and int(v) > 0 for v in size):
        fail(f"--size {args.size}: expected WIDTHxHEIGHT, e.g. 320x180")
    args.size = (int(size[0]), int(size[1]))
    for name in ("steps", "repeats", "threads", "calib_images"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} {getattr(args, name)}: expected at least 1")
    if len({t.stem for t in args.teachers}) < len(args.teachers):
        fail("--teachers: two checkpoints with the same file name (their folders in --out would collide)")
    if importlib.util.find_spec("nncf") is None:
        fail("nncf is not installed (the benchmark extra): .venv/bin/pip install -c constraints.txt -e '.[bench]'")
    args.out = args.out.resolve()
    return args


# ------------------------------------------------------------------------------------------ students


def progress_bar() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def run_json(run: Run | None, reused: dict[str, Any] | None = None) -> dict[str, Any]:
    """A step's record: the run, or (nothing ran) the earlier run's record marked reused."""
    if run is not None:
        return {"command": run.command, "seconds": round(run.seconds, 1), "log": run.log and shown(Path(run.log)), "reused": False}
    return {**(reused or {"command": None, "seconds": None, "log": None}), "reused": True}


def history_steps(history: Path, on_step: Callable[[int], None]) -> Callable[[], None]:
    """A poll that reads the new ``train`` records of a fine-tune's ``history.jsonl`` and reports their step."""
    offset = 0

    def poll() -> None:
        nonlocal offset
        if not history.is_file():
            return
        with history.open() as fh:
            fh.seek(offset if offset <= history.stat().st_size else 0)
            for line in fh.readlines():
                if line.endswith("\n") and '"kind": "train"' in line:
                    on_step(int(json.loads(line)["step"]))
            offset = fh.tell()

    return poll


def final_validation(history: Path) -> float | None:
    """The PSNR of the last ``val`` record of a fine-tune's ``history.jsonl``: the torch student on --val."""
    if not history.is_file():
        return None
    records = [r for r in read_history(history) if r.get("kind") == "val"]
    return records[-1]["psnr"] if records else None


def make_student(teacher: Path, recipe: str, work: Path, budget: Budget, args: argparse.Namespace, progress: Progress) -> Student:
    """Binarize, fine-tune and export one recipe's student (each step skipped with ``--reuse`` where done)."""
    env = {"OMP_NUM_THREADS": str(args.threads)}
    binarized, run_dir = work / f"{recipe}.safetensors", work / recipe
    trained, xml = run_dir / "student.safetensors", run_dir / "student.xml"
    record_file = run_dir / RUNS_FILE
    earlier = json.loads(record_file.read_text()) if args.reuse and record_file.is_file() else {}
    runs: dict[str, dict[str, Any]] = {}
    name = f"{teacher.stem} {recipe}"

    task = progress.add_task("")

    def save() -> None:
        record_file.write_text(json.dumps({"budget": budget.to_json(), "runs": runs}, indent=2) + "\n")

    def phase(description: str, total: float | None = None) -> None:
        nonlocal task
        progress.remove_task(task)
        task = progress.add_task(f"{name}: {description}", total=total)

    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        fresh = not (args.reuse and binarized.is_file())  # a step re-runs when the one before it did
        phase("binarize")
        runs["binarize"] = run_json(run_scales("binarize", teacher, "--recipe", recipe, "--calibrate", args.calibrate,
                                               "-o", binarized, "--force", env=env, log=run_dir / "binarize.log")
                                    if fresh else None, earlier.get("runs", {}).get("binarize"))
        save()
        same_budget = earlier.get("budget") == budget.to_json()
        done = args.reuse and not fresh and same_budget and trained.is_file()
        resume = args.reuse and not fresh and same_budget and not done and (run_dir / "state.pt").is_file()
        if not (done or resume):
            trained.unlink(missing_ok=True)  # a student of an earlier budget must not pass for this one if the run stops
        phase(f"finetune{' (resumed)' if resume else ''}", budget.steps)
        poll = history_steps(run_dir / "history.jsonl", lambda step: progress.update(task, completed=step))
        runs["finetune"] = run_json(None if done else run_scales(
            "finetune", binarized, "--teacher", teacher, *budget.options(), "--out", run_dir, "--resume" if resume else "--force",
            env=env, log=run_dir / ("finetune-resume.log" if resume else "finetune.log"), every=poll), earlier.get("runs", {}).get("finetune"))
        if resume:
            runs["finetune"]["resumed"] = True
        runs["finetune"]["val_psnr"] = final_validation(run_dir / "history.jsonl")
        save()
        fresh = fresh or not done
        phase("export")
        try:
            _, export = export_ir(trained, xml, args.reuse and not fresh, env=env, log=run_dir / "export.log")
            runs["export"] = run_json(export, earlier.get("runs", {}).get("export"))
        except StepFailed as exc:
            if UNPROBED not in str(exc):
                raise
            # the check could not explain the file layer by layer (the runtime fuses it otherwise than its probed
            # copy): the file is timed and scored all the same, and the table and picture say it is unproven
            _, export = export_ir(trained, xml, False, check=False, env=env, log=run_dir / "export-unchecked.log")
            runs["export"] = {**run_json(export), "parity": f"unproven: {reason(str(exc))}"}
        save()
        return Student(recipe, xml, runs)
    except StepFailed as exc:
        progress.console.print(f"{name} failed: {exc}", markup=False, style="red")
        return Student(recipe, None, runs, str(exc))
    finally:
        progress.remove_task(task)


# ------------------------------------------------------------------------------------------ one teacher


def ir_bytes(xml: Path) -> int:
    return xml.stat().st_size + xml.with_suffix(".bin").stat().st_size


def scored(candidates: list[Candidate], data: list[Path]) -> dict[str, dict[str, float]]:
    with progress_bar() as progress:
        task = progress.add_task(f"score {len(candidates)} models on {', '.join(d.name for d in data)}", total=None)
        return score(candidates, data, on_plan=lambda n: progress.update(task, total=n),
                     on_image=lambda _: progress.advance(task))


def timed(candidates: list[Candidate], args: argparse.Namespace) -> BenchResult:
    with progress_bar() as progress:
        task = progress.add_task(f"time {len(candidates)} models, {args.repeats} interleaved rounds", total=len(candidates) * args.repeats)
        return bench([(c.label, load(c.path)) for c in candidates], size=args.size, repeats=args.repeats, threads=args.threads,
                     on_run=lambda: progress.advance(task))


def teacher_results(teacher: Path, args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    """Every model of one teacher: made, scored and timed; the teacher's part of ``pareto.json``."""
    work = args.out / teacher.stem
    work.mkdir(parents=True, exist_ok=True)
    console.rule(f"{teacher.stem}: FP32 and NNCF INT8 IRs")
    calibration = Calibration(args.calibrate, args.calib_images, 64)
    irs = teacher_irs(teacher, work, calibration, args.reuse, env={"OMP_NUM_THREADS": str(args.threads)})
    console.rule(f"{teacher.stem}: {len(args.recipes)} students, {budget.steps} fine-tune steps each")
    students: list[Student] = []
    with progress_bar() as progress:
        overall = progress.add_task(f"{teacher.stem} students", total=len(args.recipes))
        for recipe in args.recipes:
            students.append(make_student(teacher, recipe, work, budget, args, progress))
            progress.advance(overall)
    student_labels = {s.recipe: f"{irs.name} {s.recipe}" for s in students}
    candidates = [*irs.candidates, *(Candidate(student_labels[s.recipe], s.xml, "student") for s in students if s.xml)]
    console.rule(f"{teacher.stem}: score and time")
    psnr = scored(candidates, args.data)
    result = timed(candidates, args)
    fp32, nncf = candidates[0].label, candidates[1].label
    names = ["FP32", "NNCF INT8", "NNCF INT8, first/last conv FP"]

    def model(c: Candidate, name: str, recipe: str | None, student: Student | None) -> dict[str, Any]:
        t = result.timing(c.label)
        return {"label": c.label, "name": name, "kind": c.kind, "recipe": recipe, "file": shown(c.path), "ir_bytes": ir_bytes(c.path),
                "median_ms": t.median * 1e3, "all_ms": [s * 1e3 for s in t.seconds],
                "speedup_vs_fp32": result.speedup(c.label, over=fp32), "speedup_vs_nncf_int8": result.speedup(c.label, over=nncf),
                "psnr": psnr[c.label], "runs": student.runs if student else {}, "error": None}

    models = [model(c, n, None, None) for c, n in zip(irs.candidates, names, strict=True)]
    for s in students:
        if s.xml is None:
            models.append({"label": student_labels[s.recipe], "name": s.recipe, "kind": "student", "recipe": s.recipe,
                           "runs": s.runs, "error": s.error})
        else:
            models.append(model(next(c for c in candidates if c.label == student_labels[s.recipe]), s.recipe, s.recipe, s))
    return {"teacher": irs.name, "checkpoint": shown(teacher), "runs": [run_json(r) for r in irs.runs], "models": models,
            "bench": result.to_json(), "machine": result.machine.describe() if result.machine else probe(args.threads).describe()}


# ------------------------------------------------------------------------------------------ table and picture


def unproven(model: dict[str, Any]) -> str | None:
    """Why the check could not prove the model's IR (it was exported with ``--no-check``), else None."""
    return (model["runs"].get("export") or {}).get("parity")


def reason(failure: str) -> str:
    """A :class:`StepFailed` message from the exit status on (the command before it is in the JSON)."""
    return failure.split(": exit ")[-1]


def table(payload: dict[str, Any]) -> str:
    """The markdown table of every model, then a line for each student whose IR scores otherwise than
    its torch self did at the end of its fine-tune (the same Y-PSNR on the same set)."""
    sets = payload["settings"]["data"]
    names = [Path(d).name for d in sets]
    val = Path(payload["settings"]["budget"]["val"]).name
    lines = [f"| teacher | model | recipe | fine-tune steps | fine-tune s | ms | vs FP32 | vs NNCF INT8 | "
             f"{' | '.join(f'{n} dB' for n in names)} | fine-tune {val} dB (torch) | IR bytes |",
             "|---|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(names) + "---:|---:|"]
    notes = []
    for t in payload["teachers"]:
        for m in t["models"]:
            ft = m["runs"].get("finetune") or {}
            student = m["kind"] == "student"
            steps = payload["settings"]["budget"]["steps"] if ft else "-"
            seconds = f"{ft['seconds']:.0f}" if ft.get("seconds") is not None else "-"
            torch_db = f"{ft['val_psnr']:.2f}" if ft.get("val_psnr") is not None else "-"
            head = f"| {t['teacher']} | {'student' if student else m['name']} | {m['recipe'] or '-'} | {steps} | {seconds} |"
            if m["error"]:
                why = reason(m["error"]).replace("|", "\\|")
                lines.append(f"{head} failed: exit {why} |" + " |" * (len(names) + 4))
                continue
            db = " | ".join(f"{m['psnr'][n]:.2f}" if n in m["psnr"] else "-" for n in names)
            if unproven(m):
                head = head.replace(f"| {m['recipe']} |", f"| {m['recipe']} (parity unproven) |")
                notes.append(f"- {t['teacher']} {m['recipe']}: exported with `--no-check`; the check said: {unproven(m)}")
            lines.append(f"{head} {m['median_ms']:.1f} | {m['speedup_vs_fp32']:.2f}x | {m['speedup_vs_nncf_int8']:.2f}x | {db} | "
                         f"{torch_db} | {m['ir_bytes']:,} |")
            if ft.get("val_psnr") is not None and val in m["psnr"] and abs(m["psnr"][val] - ft["val_psnr"]) > IR_GAP_DB:
                notes.append(f"- {t['teacher']} {m['recipe']}: the IR scores {m['psnr'][val]:.2f} dB on {val}, the torch student "
                             f"{ft['val_psnr']:.2f} dB: the IR does not compute what the student does")
    return "\n".join(lines + ([""] + notes if notes else []))


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points (none faster and at least as good), fastest first."""
    best, front = float("-inf"), []
    for ms, db in sorted(points, key=lambda p: (p[0], -p[1])):
        if db > best:
            front.append((ms, db))
            best = db
    return front


def draw(payload: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    settings = payload["settings"]
    y_set = Path(settings["data"][0]).name
    teachers = payload["teachers"]
    fig, axes = plt.subplots(1, len(teachers), figsize=(max(9.0, 6.5 * len(teachers)), 5.6), squeeze=False)
    style = {"fp32": dict(marker="*", s=220, color="black", zorder=4),
             "nncf-int8": dict(marker="s", s=70, color="tab:red", zorder=3),
             "student": dict(marker="o", s=55, color="tab:blue", zorder=3)}
    for ax, t in zip(axes[0], teachers, strict=True):
        shown_models = [m for m in t["models"] if not m["error"] and y_set in m["psnr"]]
        for kind, legend in (("fp32", "OpenVINO FP32"), ("nncf-int8", "NNCF INT8 (PTQ)"), ("student", "our students")):
            pts = [m for m in shown_models if m["kind"] == kind]
            if pts:
                ax.scatter([m["median_ms"] for m in pts], [m["psnr"][y_set] for m in pts], label=legend, **style[kind])
        for m in shown_models:
            ax.annotate(m["name"] + (" (parity unproven)" if unproven(m) else ""), (m["median_ms"], m["psnr"][y_set]), textcoords="offset points", xytext=(6, 4), fontsize=8)
        front = frontier([(m["median_ms"], m["psnr"][y_set]) for m in shown_models])
        if len(front) > 1:
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", ls="--", lw=1, zorder=1,
                    label="Pareto front")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 40, 60, 100 ms rather than 4x10^1
        ms = [m["median_ms"] for m in shown_models]
        few = max(ms) / min(ms) < 10  # within a decade every minor tick is labelled, else 2 and 5 of each decade
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _, few=few: f"{v:g}" if few or f"{v:.0e}"[0] in "25" else ""))
        ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
        ax.set_xlabel(f"OpenVINO CPU latency, ms (median of {settings['repeats']}, log scale)")
        ax.set_ylabel(f"{y_set} Y-PSNR, dB")
        ax.set_title(t["teacher"])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        failed = [m["name"] for m in t["models"] if m["error"]]
        if failed:
            ax.text(0.01, 0.01, "failed: " + ", ".join(failed), transform=ax.transAxes, fontsize=8, color="tab:red")
    b = settings["budget"]
    width, height = settings["size"]
    fig.suptitle(f"{y_set} Y-PSNR vs OpenVINO latency (1x3x{height}x{width}, {settings['threads']} threads)\n"
                 f"students: {b['steps']} fine-tune steps each (batch {b['batch']}, patch {b['patch']}, lr {b['lr']:g} "
                 f"{b['schedule']}, warmup {b['warmup']})", fontsize=11)
    fig.text(0.5, 0.01, "machine: " + teachers[0]["machine"], ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.035, 1, 0.97))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    args = parse_args()
    if args.plot_only is not None:
        payload = json.loads(args.plot_only.read_text())
        console.print(table(payload), markup=False, soft_wrap=True)
        draw(payload, args.png)
        console.print(f"wrote {args.png}")
        return
    started = time.time()
    budget = Budget(args.steps, args.train_data, args.train_data_lr, args.val, val_every=args.val_every)
    payload: dict[str, Any] = {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "settings": {"teachers": [shown(t) for t in args.teachers], "recipes": args.recipes, "budget": budget.to_json(),
                     "calibrate": shown(args.calibrate), "nncf_calibration_images": args.calib_images,
                     "data": [shown(d) for d in args.data], "size": list(args.size), "repeats": args.repeats, "threads": args.threads,
                     "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "teachers": [],
    }
    target = args.out / "pareto.json"
    args.out.mkdir(parents=True, exist_ok=True)
    for teacher in args.teachers:
        payload["teachers"].append(teacher_results(teacher, args, budget))
        payload["seconds"] = time.time() - started
        target.write_text(json.dumps(payload, indent=2) + "\n")  # after each teacher: a crash keeps what is done
    payload["machine_after"] = probe(args.threads).to_json()
    target.write_text(json.dumps(payload, indent=2) + "\n")
    text = table(payload)
    (args.out / "pareto.md").write_text(text + "\n")
    console.print()
    console.print(text, markup=False, soft_wrap=True)
    for t in payload["teachers"]:
        console.print(f"{t['teacher']} machine: {t['machine']}", markup=False, soft_wrap=True)
    draw(payload, args.png)
    console.print(f"wrote {target}, {args.out / 'pareto.md'}, {args.png}  ({payload['seconds'] / 60:.0f} min)", soft_wrap=True)
    if any(m["error"] for t in payload["teachers"] for m in t["models"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
