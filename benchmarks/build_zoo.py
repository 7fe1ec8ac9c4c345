"""Build (or rebuild) the binary model zoo in ``zoo/``: one fine-tuned student per MIT-licensed teacher.

For each teacher, through the real CLI (every command is recorded in the manifest):

1. ``scales binarize TEACHER --recipe <default> --calibrate T91``
2. ``scales finetune`` by distillation on BSD200 + T91, both as HR (``--t91 hr``, the default since
   2026-12-03; ``--t91 lr-only`` gives T91 as LR-only inputs, as the earlier manifests record); both
   disjoint from Set5/Set14
3. the fine-tuned student re-stored with float16 tensors (half the bytes; loaders read it as float32)
4. ``scales report`` on Set5 and Set14 (student, teacher, bicubic) -> the manifest's figures
5. ``scales export`` of the student (openvino, scales ONNX) and of the teacher (openvino, float ONNX)
6. ``scales bench`` OpenVINO teacher vs OpenVINO student (and torch teacher) -> the speed-up

    .venv/bin/python benchmarks/build_zoo.py --steps 1500 [--only rlfn_x4] [--shared ../shared]

``--continue`` trains the stored student further instead of steps 1-2 (a second cosine cycle from a fresh
seed); the manifest keeps the earlier commands, sums steps and wall time, and lists each stage in ``stages``::

    .venv/bin/python benchmarks/build_zoo.py --only rlfn_x4 --recipe cnn-int8 --continue --budget 70m --lr 1e-3 --seed 1

Figures are measured on the stored (float16) file, so ``scales report zoo/NAME.safetensors`` reproduces
them exactly; tests/test_zoo.py checks it to 0.01 dB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from scales_cli.train.config import AUTOCAST_MODES

REPO = Path(__file__).resolve().parents[1]
SCALES = [sys.executable, "-m", "scales_cli"]
STORED_NOTE = "with float16 tensors (scales_cli.zoo.store_float16)"  # ends the training commands of a manifest
ENV = dict(os.environ)  # main() sets OMP_NUM_THREADS from --threads for every command

# MIT-licensed teachers in ../shared (MANIFEST.md: NTIRE2022_ESR model zoo and CARN-pytorch, both MIT).
TEACHERS: dict[str, dict[str, str]] = {
    "rlfn_x4": {"file": "RLFN_x4.pth", "source": "ofsoundof/NTIRE2022_ESR model_zoo/team04_rlfn.pth", "license": "MIT"},
    "rfdn_x4": {"file": "RFDN_x4.pth", "source": "ofsoundof/NTIRE2022_ESR model_zoo/rfdn_baseline.pth", "license": "MIT"},
    "bsrn_x4": {"file": "BSRN_x4.pth", "source": "ofsoundof/NTIRE2022_ESR model_zoo/team18_bsrn.pth", "license": "MIT"},
    "imdtn_x4": {"file": "IMDTN_x4.pth", "source": "ofsoundof/NTIRE2022_ESR model_zoo/team09_imdtn.pth", "license": "MIT"},
    "carn_m_x4": {"file": "CARN-M.pth", "source": "nmhkahn/CARN-pytorch checkpoint/carn_m.pth", "license": "MIT"},
}


T91_AS: dict[str, tuple[str, dict]] = {
    "hr": ("--data", {"train_hr": ["BSD200", "T91"]}),
    "lr-only": ("--data-lr", {"train_hr": ["BSD200"], "train_lr_only": "T91"}),
}
"""--t91 -> (the finetune option that passes T91, the manifest's record of the training data)."""


def run(args: list[str | Path], log: list[str], done: bool = False) -> str:
    """Run ``scales ARGS``; record the command as a user would type it; return stdout. ``done``: record it as
    run by an earlier invocation of this script (``--keep-finetune``) and run nothing."""
    words = [str(a) for a in args]
    log.append("scales " + shlex.join(words) + ("  # ran in an earlier invocation (--keep-finetune)" if done else ""))
    if done:
        return ""
    proc = subprocess.run([*SCALES, *words], capture_output=True, text=True, cwd=REPO, env=ENV)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): scales {shlex.join(words)}\n{proc.stderr[-3000:]}")
    return proc.stdout


def tag(args: argparse.Namespace) -> str:
    """The zoo name's suffix: ``--tag``, else ``--recipe``, else ``cnn`` (the CNNs' default recipe)."""
    return args.tag or args.recipe or "cnn"


def work_dir(name: str, args: argparse.Namespace) -> Path:
    """``out/zoo-build/NAME-TAG``: each student of a teacher builds in its own folder (one per recipe)."""
    return REPO / "out" / "zoo-build" / f"{name}-{tag(args)}"


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def build(name: str, teacher: dict[str, str], args: argparse.Namespace) -> dict:
    from scales_cli.train.checkpoint import HISTORY_FILE, read_history
    from scales_cli.zoo import store_float16

    shared = Path(args.shared).resolve()
    ckpt = shared / "checkpoints" / teacher["file"]
    bench_dir = shared / "data" / "benchmarks"
    train = shared / "data" / "train"
    work = work_dir(name, args)
    work.mkdir(parents=True, exist_ok=True)
    commands: list[str] = []
    start = time.time()
    calibrated = work / f"{name}-calibrated.safetensors"
    target = REPO / "zoo" / f"{name}-{tag(args)}.safetensors"
    previous = json.loads(target.with_suffix(".json").read_text()) if args.continue_ else None
    finetuned = work / ("finetune-continued" if previous else "finetune")
    kept = finetuned / ("student.safetensors" if args.budget else "last.safetensors")  # the best on Set5, else the last
    # --keep-finetune: a build that failed after its fine-tune (e.g. at the export) goes on from that fine-tune
    kept_run = args.keep_finetune and kept.is_file()
    if kept_run:
        start -= max((r.get("time", 0.0) for r in read_history(finetuned / HISTORY_FILE)), default=0.0)
    if previous:
        source = work / f"{name}-start.safetensors"  # a copy: the zoo file is overwritten at the end
        commands += earlier_commands(previous)
        commands.append(f"# continued from {rel(target)} as stored then (benchmarks/build_zoo.py --continue):")
        commands.append(shlex.join(["cp", rel(target), rel(source)]))
        if not kept_run:
            shutil.copyfile(target, source)
    else:
        source = calibrated
        recipe = ["--recipe", args.recipe] if args.recipe else []
        run(["binarize", ckpt, *recipe, "--calibrate", train / "T91", "-o", calibrated, "--force"], commands, done=kept_run)
    # BSD200 as HR (LR made by MATLAB bicubic); T91 as HR too, or as LR-only inputs (--t91 lr-only). As HR its
    # LR inputs are bicubic like the test sets' (84 of its 91 images give 128 px HR crops at x4); as LR-only
    # its sharp originals are inputs of another distribution, which measured 0.2 dB worse (docs/results.md).
    # --budget: train for that long, validate on Set5 every --val-every steps and keep the best (Set14 is
    # never seen by training or selection); otherwise --steps with one validation at the end, keep the last
    length = ["--budget", args.budget, "--val", bench_dir / "Set5", "--val-every", args.val_every] if args.budget \
        else ["--steps", args.steps, "--val-every", 0]
    run(["finetune", source, "--teacher", ckpt, "--data", train / "BSD200", T91_AS[args.t91][0], train / "T91",
         *length, "--batch", args.batch, "--patch", args.patch, "--lr", args.lr, "--schedule", "cosine",
         "--warmup", args.warmup, "--autocast", args.autocast, "--seed", args.seed, *(["--device", args.device] if args.device else []),
         "--out", finetuned, "--force", "--json"], commands, done=kept_run)
    commands += [f"# {args.note}"] if args.note else []
    store_float16(kept, target)
    commands.append(f"# {rel(target)} = {rel(kept)} {STORED_NOTE}")
    wall = time.time() - start

    report_json = work / "report.json"
    run(["report", target, ckpt, "--data", bench_dir / "Set5", "--data", bench_dir / "Set14", "--bicubic", "--ops",
         "--json", report_json, "--force"], commands)
    report = json.loads(report_json.read_text())

    export = export_and_bench(target, ckpt, work, name, args, commands)
    entry = {
        "name": target.stem,
        "file": target.name,
        "teacher": {**teacher, "sha256": _sha(ckpt)},
        "recipe": _meta(target).get("scales.recipe_name"),
        "storage": "float16 tensors (read back as float32); binary weights keep their signs",
        "commands": commands,
        "data": {**T91_AS[args.t91][1], "calibration": "T91", "test": ["Set5", "Set14"]},
        "steps": max((r.get("step", 0) for r in read_history(finetuned / HISTORY_FILE) if r.get("kind") == "train"), default=0)
        if args.budget else args.steps, "budget": args.budget, "batch": args.batch, "patch": args.patch, "lr": args.lr, "warmup": args.warmup, "schedule": "cosine",
        "autocast": args.autocast,
        "wall_time_s": round(wall, 1),
        "device": _device(args),
        "trained_on": args.trained_on,
        "training_device": args.trained_on_detail or (f"this machine's CPU ({_cpu_name()}), {args.threads} thread(s)"
                                                      if args.trained_on == "CPU" else args.trained_on),
        **_figures(report, target, ckpt),
        "export": export,
    }
    return with_earlier_stages(entry, previous) if previous else entry


STAGE_KEYS = ("steps", "budget", "batch", "patch", "lr", "warmup", "schedule", "autocast", "data", "wall_time_s", "device",
              "trained_on", "training_device")


def stage_of(manifest: dict) -> dict:
    """One training stage's settings, as a manifest (or a continued build's entry) states them."""
    return {k: manifest.get(k) for k in STAGE_KEYS}


def earlier_commands(previous: dict) -> list[str]:
    """The commands that trained ``previous`` (a manifest), up to the re-store line: its own report, exports
    and bench measured a student that the continued one replaces."""
    out: list[str] = []
    for line in previous["commands"]:
        if line.startswith("# ") and line.endswith(STORED_NOTE):
            break
        out.append(line)
    return out


def with_earlier_stages(entry: dict, previous: dict) -> dict:
    """``entry`` (the continued stage) with the whole training in it: ``stages`` lists each stage's settings,
    ``steps`` and ``wall_time_s`` are the totals, ``budget`` reads ``50m + 70m``; the other top-level
    settings (lr, ...) are the last stage's."""
    stages = [*(previous.get("stages") or [stage_of(previous)]), stage_of(entry)]
    return {**entry, "stages": stages,
            "steps": sum(int(s["steps"] or 0) for s in stages),
            "wall_time_s": round(sum(float(s["wall_time_s"] or 0.0) for s in stages), 1),
            "budget": " + ".join(str(s["budget"]) for s in stages)}


def export_and_bench(target: Path, ckpt: Path, work: Path, name: str, args: argparse.Namespace, commands: list[str]) -> dict:
    """Export the stored student (openvino, scales ONNX) and its teacher (openvino, float ONNX), then
    ``scales bench`` the two IRs and the torch teacher: the manifest's ``export`` block."""
    files = {
        "student_openvino": work / f"{name}.xml", "student_scales_onnx": work / f"{name}.onnx",
        "teacher_openvino": work / f"{name}-teacher.xml", "teacher_float_onnx": work / f"{name}-teacher.onnx",
    }
    run(["export", target, "-o", files["student_openvino"], "--format", "openvino", "--force"], commands)
    run(["export", target, "-o", files["student_scales_onnx"], "--format", "scales", "--force"], commands)
    run(["export", ckpt, "-o", files["teacher_openvino"], "--format", "openvino", "--force"], commands)
    run(["export", ckpt, "-o", files["teacher_float_onnx"], "--format", "float", "--force"], commands)
    sizes = {k: v.stat().st_size + (v.with_suffix(".bin").stat().st_size if v.suffix == ".xml" else 0) for k, v in files.items()}
    bench = json.loads(run(["bench", files["teacher_openvino"], files["student_openvino"], ckpt, "--repeats", args.repeats,
                            "--threads", args.threads, "--json"], commands))
    speed = {Path(m["label"]).name: m for m in bench["models"]}
    ov_teacher, ov_student = speed[files["teacher_openvino"].name], speed[files["student_openvino"].name]
    return {
        "sizes_bytes": sizes,
        "openvino_speedup": ov_teacher["median_s"] / ov_student["median_s"],
        "torch_teacher_over_openvino_student": speed[ckpt.name]["median_s"] / ov_student["median_s"],
        "bench": bench,
    }


def reexport(name: str, teacher: dict[str, str], args: argparse.Namespace) -> dict:
    """Redo only the exports and the bench of an existing zoo entry (after an exporter change): the
    stored student, its training and its PSNR figures are kept; the commands run are appended."""
    path = REPO / "zoo" / f"{name}-{tag(args)}.json"
    manifest = json.loads(path.read_text())
    ckpt = Path(args.shared).resolve() / "checkpoints" / teacher["file"]
    work = work_dir(name, args)
    work.mkdir(parents=True, exist_ok=True)
    commands = manifest["commands"]
    commands.append("# exports and bench redone (benchmarks/build_zoo.py --reexport):")
    manifest["export"] = export_and_bench(REPO / "zoo" / manifest["file"], ckpt, work, name, args, commands)
    manifest["export_device"] = _device(args)
    return manifest


def _device(args: argparse.Namespace) -> str:
    """The machine in words, with its 1-minute load average; called right after the bench, so the load is
    the bench's own plus whatever else ran (a busy neighbour core slows the bench)."""
    load = os.getloadavg()[0]
    return (f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), {args.threads} thread(s); "
            f"1-min load average {load:.1f} right after the bench")


def _cpu_name() -> str:
    from scales_cli.machine import read_cpu

    return read_cpu()[0]


def _sha(path: Path) -> str:
    from scales_cli.io import sha256_of

    return sha256_of(path)


def _meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        return dict(fh.metadata() or {})


def _figures(report: dict, student: Path, teacher: Path) -> dict:
    """Set5/Set14 PSNR/SSIM of student, teacher and bicubic, and the student's params/OPs, from report JSON."""
    out: dict = {"results": {}, "teacher_results": {}, "bicubic_results": {}}
    keys = {str(student): "results", str(teacher): "teacher_results"}
    for row in report["groups"][0]["rows"]:
        key = "bicubic_results" if row["kind"] == "bicubic" else keys.get(str(Path(row["checkpoint"])))
        if key is None:
            continue
        for dataset, result in row["results"].items():
            out[key][dataset] = {"psnr": result["psnr"], "ssim": result["ssim"]}
        if key == "results":
            out["params"], out["ops"] = row["cost"]["params"], row["cost"]["ops"]
            out["ops_input_size"] = row["cost"]["input_size"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(REPO.parent / "shared"))
    parser.add_argument("--only", nargs="*", choices=sorted(TEACHERS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every step (fine-tune, bench)")
    parser.add_argument("--tag", default=None, help="zoo name suffix (default: --recipe, else cnn)")
    parser.add_argument("--recipe", default=None, help="binarize --recipe (default: the architecture's default)")
    parser.add_argument("--budget", default=None, help="finetune --budget (e.g. 45m) instead of --steps; keeps the best on Set5")
    parser.add_argument("--val-every", type=int, default=500, help="with --budget: validate on Set5 every N steps")
    parser.add_argument("--warmup", type=int, default=50, help="finetune --warmup steps")
    parser.add_argument("--autocast", default="auto", choices=AUTOCAST_MODES,
                        help="finetune --autocast (bf16: the training forwards in bf16, faster on CPUs with AMX-BF16)")
    parser.add_argument("--seed", type=int, default=0, help="finetune --seed (crops and initial RNG)")
    parser.add_argument("--device", default=None, help="finetune --device (e.g. cuda on a lent GPU; default: finetune's own)")
    parser.add_argument("--trained-on", default="CPU",
                        help="the device the fine-tune ran on, as `scales zoo` names it (e.g. 'NVIDIA H200'; default: CPU, "
                             "this machine's); with --keep-finetune, a fine-tune run elsewhere and copied into out/zoo-build/NAME-TAG")
    parser.add_argument("--trained-on-detail", default=None,
                        help="that device in words for the manifest's training_device (runtime, sharing); default: "
                             "this machine's CPU and --threads, or --trained-on")
    parser.add_argument("--note", default=None, help="a comment line recorded after the finetune command (how it ran)")
    parser.add_argument("--t91", default="hr", choices=sorted(T91_AS),
                        help="T91 as HR images (finetune --data) or as LR-only inputs (--data-lr, the earlier builds)")
    parser.add_argument("--continue", dest="continue_", action="store_true",
                        help="train the stored zoo student further (a new stage from it) instead of binarizing the teacher afresh")
    parser.add_argument("--keep-finetune", action="store_true",
                        help="reuse the finished fine-tune in out/zoo-build/NAME-TAG (a build that failed after it) instead of training again")
    parser.add_argument("--reexport", action="store_true",
                        help="keep the stored students and their figures; redo only the exports and the bench")
    args = parser.parse_args()
    ENV["OMP_NUM_THREADS"] = str(args.threads)
    for name in args.only or TEACHERS:
        manifest = (reexport if args.reexport else build)(name, TEACHERS[name], args)
        path = REPO / "zoo" / f"{manifest['name']}.json"
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        print(f"wrote {rel(path)}: Set5 {manifest['results']['Set5']['psnr']:.2f} dB, "
              f"OpenVINO speed-up {manifest['export']['openvino_speedup']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
