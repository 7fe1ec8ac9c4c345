"""``scales finetune`` from the command line: options and --config, --json, one-line exit-2 errors,
SIGINT saves and exits 130, and a 2-process torchrun (gloo, CPU) that agrees and writes once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _train_helpers import make_pair, write_images
from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["--batch", "2", "--patch", "8", "--warmup", "2", "--val-every", "0", "--save-every", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    student, teacher = make_pair(tmp_path)
    lr = write_images(tmp_path / "lr", 4, (20, 16))
    return student, teacher, lr


def test_json_run_with_a_config_file_where_options_win(setup, tmp_path):
    student, teacher, lr = setup
    cfg = tmp_path / "ft.yaml"
    cfg.write_text("steps: 4\nlr: 1.0e-2\nschedule: constant\nloss: charbonnier\n")
    code, out, err = run_cli("finetune", str(student), "--teacher", str(teacher), "--data-lr", str(lr),
                         "--config", str(cfg), "--lr", "2e-3", *TINY, "--out", "run", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["steps"] == 4 and result["config"]["lr"] == 2e-3 and result["config"]["loss"] == "charbonnier"
    assert result["config"]["schedule"] == "constant"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "curves.png", "history.jsonl", "last.safetensors", "state.pt", "student.safetensors"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--config", "missing.yaml"], "--config missing.yaml: no such file"),
        (["--schedule", "linear"], "--schedule 'linear': expected one of cosine, multistep, constant"),
        (["--steps", "0"], "--steps 0: expected a positive integer"),
        (["--data-lr", "nowhere"], "--data-lr nowhere: not a folder"),
        (["--teacher", "student.safetensors"], "is a binarized student"),
        (["--val", "nowhere"], "nowhere"),
    ],
)
def test_mistakes_are_one_line_exit_2_and_write_nothing(setup, tmp_path, extra, expected):
    student, teacher, lr = setup
    args = ["finetune", str(student), "--teacher", str(teacher), "--data-lr", str(lr), *TINY, "--steps", "2", "--out", "run"]
    if extra[0] in ("--teacher", "--data-lr"):  # replace, not add
        i = args.index(extra[0])
        args[i + 1] = extra[1]
    else:
        args += extra
    code, out, err = run_cli(*args)
    assert code == 2 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert not (tmp_path / "run").exists()


def test_teacher_mismatch_is_one_line_exit_2(setup, tmp_path):
    student, _, lr = setup
    (tmp_path / "other").mkdir()
    _, other = make_pair(tmp_path / "other", seed=3)
    code, _, err = run_cli("finetune", str(student), "--teacher", str(other), "--data-lr", str(lr), *TINY, "--out", "run")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is not the teacher" in err and "Traceback" not in err


def test_an_existing_run_is_refused_without_resume_or_force(setup, tmp_path):
    student, teacher, lr = setup
    base = ["finetune", str(student), "--teacher", str(teacher), "--data-lr", str(lr), *TINY, "--steps", "2", "--out", "run"]
    assert run_cli(*base).code == 0
    before = (tmp_path / "run" / "state.pt").read_bytes()
    code, _, err = run_cli(*base)
    assert code == 2 and "already holds a run" in err and "--resume" in err and "Traceback" not in err
    assert (tmp_path / "run" / "state.pt").read_bytes() == before
    history = tmp_path / "run" / "history.jsonl"
    history.write_text('{"kind": "budget", "steps": 99}\n' + history.read_text())  # a stepless record of the old run
    assert run_cli(*base, "--force").code == 0
    kinds = [json.loads(line)["kind"] for line in history.read_text().splitlines()]
    assert "budget" not in kinds and kinds.count("train") == 1  # --force starts the history over: nothing kept


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_sigint_saves_the_state_and_exits_130(setup, tmp_path):
    student, teacher, lr = setup
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "scales_cli", "finetune", str(student), "--teacher", str(teacher), "--data-lr", str(lr),
           *TINY, "--steps", "100000", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    history = out / "history.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (history.is_file() and history.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "interrupted at step" in lines[0] and "--resume" in lines[0]
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] >= 20
    last = load_file(out / "last.safetensors")
    assert all(torch.equal(last[k], state["model"][k]) for k in last)


@pytest.mark.slow
def test_torchrun_two_ranks_end_identical_write_once_and_print_once(setup, tmp_path):
    """One 2-process launch of ``scales finetune`` (gloo, CPU): both ranks end with the same weights,
    rank 0 alone writes history and files, and rank 0 alone prints the summary and the 'wrote ...' line
    (one gate, ``main_rank``, decides for the human and the --json output alike). The script wraps the
    library call the CLI makes so that each rank can save the weights it ended with."""
    student, teacher, lr = setup
    out = tmp_path / "run"
    script = tmp_path / "ddp.py"
    script.write_text(
        "import os, sys, torch\n"
        "import scales_cli.train as train\n"
        "library = train.finetune\n"
        "def kept(*args, **kwargs):\n"
        "    result = library(*args, **kwargs)\n"
        f"    torch.save(result.model.state_dict(), {str(tmp_path)!r} + f'/rank{{os.environ[\"RANK\"]}}.pt')\n"
        "    return result\n"
        "train.finetune = kept\n"
        "from scales_cli.cli import main\n"
        "main()\n"
    )
    options = [*TINY, "--steps", "6", "--log-every", "2", "--val-every", "3", "--save-every", "3",
               "--val", str(lr / "sub"), "--device", "cpu", "--out", str(out)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           "finetune", str(student), "--teacher", str(teacher), "--data-lr", str(lr), *options]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [2, 4, 6]  # rank 0 alone writes
    assert [r["step"] for r in records if r["kind"] == "val"] == [3, 6]
    training = json.loads(__import__("safetensors").safe_open(out / "last.safetensors", "pt").metadata()["scales.training"])
    assert training["world_size"] == 2 and training["steps"] == 6
    state = torch.load(out / "state.pt", weights_only=False)
    assert all(torch.equal(state["model"][k], a[k]) for k in a)
    assert done.stdout.count("finetune: 6 steps") == 1, done.stdout
    assert done.stderr.count("wrote ") == 1, done.stderr[-3000:]


def test_an_unwritable_out_is_refused_before_any_work(setup, tmp_path):
    student, teacher, lr = setup
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli("finetune", str(student), "--teacher", str(teacher), "--data-lr", str(lr),
                       *TINY, "--out", str(blocker / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not a writable folder" in err and "Traceback" not in err


def test_every_config_field_is_an_option_of_scales_finetune():
    """One declaration per setting (train/config.py): each field has its --flag, and its help ends in its default."""
    import dataclasses

    import typer.main

    from scales_cli.cli import app
    from scales_cli.train import FinetuneConfig

    command = typer.main.get_command(app).commands["finetune"]
    flags = {opt: param for param in command.params for opt in param.opts}
    for f in dataclasses.fields(FinetuneConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in flags, f"FinetuneConfig.{f.name} has no {flag} option"
        assert flags[flag].default is None  # not given: the --config file or the field's default applies
        assert f.default is None or "(default " in (flags[flag].help or ""), flag


def test_options_reach_the_config_and_left_out_ones_keep_the_defaults(setup, monkeypatch, tmp_path):
    import scales_cli.train
    from conftest import run_cli
    from scales_cli.errors import ScalesError

    student, teacher, lr = setup
    seen = []

    def fake(student, teacher, data, config, **kwargs):  # noqa: ANN001, ANN003, ANN202 - records the parsed settings
        seen.append(config)
        raise ScalesError("stop here")

    monkeypatch.setattr(scales_cli.train, "finetune", fake)
    base = ["finetune", student, "--teacher", teacher, "--data-lr", lr]
    assert run_cli(*base).code == 2
    assert seen[-1] == scales_cli.train.FinetuneConfig()
    cfg = tmp_path / "ft.yaml"
    cfg.write_text("gamma: 0.3\nlog_every: 7\nmilestones: [0.2]\n")
    args = ["--milestones", "0.3", "--milestones", "0.6", "--charbonnier-eps", "0.01", "--log-every", "3",
            "--workers", "0", "--scale-lr", "1e-4", "--config", cfg]
    assert run_cli(*base, *args).code == 2
    got = seen[-1]
    assert (got.milestones, got.gamma, got.charbonnier_eps, got.log_every, got.workers, got.scale_lr) == ((0.3, 0.6), 0.3, 0.01, 3, 0, 1e-4)
