"""Block-wise reconstruction (issue 20): blocks found from the descriptor's body region for every
registered architecture, teacher activations bounded in memory, each block's loss lowered by its stage."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scales_cli.archs._registry import all_specs
from scales_cli.archs.descriptor import region_summary
from scales_cli.binary import BinaryLayer
from scales_cli.recipe import load_recipe, rewrite
from scales_cli.recipe.rewrite import default_recipe_name
from scales_cli.train.blockwise import ActivationCache, BlockReconstruction, Unit, plan_blocks, teacher_pair, unit_module

pytestmark = pytest.mark.usefixtures("one_thread")


def _smallest_example(spec) -> dict:  # noqa: ANN001
    """The example with the smallest product of its sizes (the rewrite test's proxy for cost)."""
    def numbers(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            return [x for v in node.values() for x in numbers(v)]
        if isinstance(node, tuple | list):
            return [x for v in node for x in numbers(v)]
        return [node] if isinstance(node, int | float) and not isinstance(node, bool) and node > 1 else []

    return dict(min(spec.examples, key=lambda example: math.prod(numbers(dict(example)))))


def _pair(spec):  # noqa: ANN001, ANN202
    example = _smallest_example(spec)
    specialised = spec.specialise(example)
    torch.manual_seed(0)
    teacher = spec.build(**{**spec.defaults, **example}).eval()
    student, _ = rewrite(teacher, load_recipe(default_recipe_name(teacher, region_of=specialised.region_of)),
                         region_of=specialised.region_of)
    return specialised, teacher, student


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_every_architecture_has_body_blocks_that_reproduce_the_teacher_path(spec):
    specialised, teacher, student = _pair(spec)
    body = region_summary(specialised, teacher)["body"]
    probe = torch.rand(1, 3, 16, 16)
    plan = plan_blocks(student, teacher, specialised.region_of, body, probe, pairs=True)
    assert plan.units, f"{spec.name}: no body block found"
    modules = dict(student.named_modules())
    covered = {p for u in plan.units for p in u.paths} | {p for p, _ in plan.skipped}
    for unit in plan.units:
        for path in unit.paths:
            assert specialised.region_of(path) == "body"
            assert any(isinstance(m, BinaryLayer) for m in modules[path].modules())
    for name, m in student.named_modules():  # every binary layer of the body is inside some block
        if isinstance(m, BinaryLayer) and specialised.region_of(name) == "body":
            assert any(name == p or name.startswith(p + ".") for p in covered), name
    # the plan's first unit, run on the teacher's captured input, gives the teacher's output when the
    # student is the teacher (the unit is the same function as the teacher's path through it)
    for unit in plan.units[:2]:
        x, target = teacher_pair(teacher, unit, probe)
        with torch.no_grad():
            assert torch.allclose(unit_module(teacher, teacher, unit, probe)(x), target, atol=1e-5)


def test_pairs_join_only_chained_blocks():
    specialised, teacher, student = _pair(next(s for s in all_specs() if s.name == "imdn"))
    body = region_summary(specialised, teacher)["body"]
    probe = torch.rand(1, 3, 12, 12)
    single = plan_blocks(student, teacher, specialised.region_of, body, probe)
    paired = plan_blocks(student, teacher, specialised.region_of, body, probe, pairs=True)
    blocks = int(_smallest_example(specialised)["num_modules"])
    assert [u.name for u in single.units] == [f"IMDB{i}" for i in range(1, blocks + 1)] + ["LR_conv"]
    # IMDB blocks chain; LR_conv eats the concatenation's conv, not the last IMDB's output: alone
    assert [u.paths for u in paired.units][-1] == ("LR_conv",)
    imdb = [f"IMDB{i}" for i in range(1, blocks + 1)]
    expected = [tuple(imdb[i:i + 2]) for i in range(0, blocks, 2)]  # an odd count leaves the last one alone
    assert [u.paths for u in paired.units][:-1] == expected


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 3, 3, padding=1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.c(self.b(self.a(x)))


def test_student_inputs_come_from_the_students_prefix():
    teacher, student = _Counting().eval(), _Counting().eval()
    x = torch.rand(1, 3, 8, 8)
    got, target = teacher_pair(teacher, Unit(("b",)), x, inputs_from=student)
    with torch.no_grad():
        assert torch.equal(got, student.a(x)) and torch.equal(target, teacher.b(teacher.a(x)))
        assert not torch.equal(got, teacher.a(x))


def test_cache_is_bounded_streams_fresh_batches_and_stops_the_teacher_early():
    net = _Counting().eval()
    seen: list[str] = []
    net.c.register_forward_hook(lambda *a: seen.append("c"))
    crops = lambda t: torch.full((2, 3, 8, 8), float(t))  # noqa: E731
    per_batch = 2 * (2 * 8 * 8 * 8 * 4)  # input and output of block b, float32
    cache = ActivationCache(net, Unit(("b",)), crops, steps=7, cap_bytes=3 * per_batch, autocast=lambda: torch.no_grad())
    for t in range(7):
        x, y = cache.get(t)
        assert len(cache.pairs) <= 3  # never more than the cap holds
        with torch.no_grad():
            assert torch.equal(x, net.a(crops(t))) and torch.equal(y, net.b(net.a(crops(t))))
    assert cache.chunk == 3 and net.calls == 7  # each batch through the teacher exactly once
    assert not seen  # the forward stopped after block b: block c never ran
    x, _ = cache.get(2)  # a step outside the chunk (a resume) recomputes the same numbers
    with torch.no_grad():
        assert torch.equal(x, net.a(crops(2)))


def test_reconstruction_loss_is_scale_free():
    s, t = torch.rand(2, 4, 5, 5), torch.rand(2, 4, 5, 5)
    for kind in ("l1", "charbonnier"):
        a = BlockReconstruction(kind, 1e-3)(s, t).total
        b = BlockReconstruction(kind, 1e-3)(100 * s, 100 * t).total
        assert torch.allclose(a, b, rtol=1e-4)
    assert float(BlockReconstruction("l1")(t, t).total) == 0.0


# --- the stage inside `scales finetune` -------------------------------------------------------------

FAST = {"steps": 6, "batch": 2, "patch": 8, "warmup": 2, "log_every": 2, "val_every": 4, "save_every": 4,
        "blockwise_steps": 6, "lr": 2e-3}


@pytest.fixture
def run_inputs(tmp_path):  # noqa: ANN001, ANN201
    from _train_helpers import make_pair, write_images

    student, teacher = make_pair(tmp_path)
    return student, teacher, write_images(tmp_path / "lr", 4, (20, 16)), write_images(tmp_path / "val", 2, (32, 32), seed=5) / "sub"


def _history(out):  # noqa: ANN001, ANN202
    import json

    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("inputs", ["teacher", "student"])
def test_the_stage_lowers_each_blocks_reconstruction_loss_then_runs_end_to_end(run_inputs, tmp_path, inputs):
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig

    student, teacher, lr_images, val = run_inputs
    out = tmp_path / "run"
    finetune(student, teacher, [], FinetuneConfig(**FAST, blockwise_inputs=inputs), data_lr=[lr_images], val=val, out=out)
    history = _history(out)
    done = [r for r in history if r["kind"] == "block_done"]
    assert [r["block"] for r in done] == ["IMDB1", "IMDB2", "LR_conv"]  # the tiny IMDN's body, in order
    for r in done:
        assert r["after"] < r["before"], r
    kinds = [r["kind"] for r in history]
    # the stage comes first, the student is scored after it (step 0), then the end-to-end steps
    assert kinds.index("val") > max(i for i, k in enumerate(kinds) if k.startswith("block"))
    assert history[kinds.index("val")]["step"] == 0 and sum(k == "train" for k in kinds) == 3
    assert max(r["block_step"] for r in history if r["kind"] == "block") == 3 * FAST["blockwise_steps"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_student_it_writes_loads_in_every_command(run_inputs, tmp_path):
    from conftest import run_cli

    student, teacher, lr_images, val = run_inputs
    out = tmp_path / "run"
    ran = run_cli("finetune", student, "--teacher", teacher, "--data-lr", lr_images, "--out", out, "--steps", 2,
                  "--batch", 2, "--patch", 8, "--warmup", 1, "--blockwise-steps", 2, "--blockwise-pairs", "--json")
    assert ran.code == 0, ran.err
    trained = out / "student.safetensors"
    report = run_cli("report", trained, "--data", val, "--json", tmp_path / "r.json")
    assert report.code == 0, report.err
    exported = run_cli("export", trained, "-o", tmp_path / "s.onnx", "--format", "float")
    assert exported.code == 0, exported.err
    assert (tmp_path / "s.onnx").stat().st_size > 0
    assert run_cli("inspect", trained).code == 0
    image = next(iter(sorted(val.glob("*.png"))))
    upscaled = run_cli("upscale", trained, image, "--out", tmp_path / "up")
    assert upscaled.code == 0, upscaled.err
    assert any((tmp_path / "up").iterdir())


def _stop_at_block(step: int):  # noqa: ANN202
    class Stopper:
        def on_block_step(self, log):  # noqa: ANN001, ANN202
            return log.step == step  # a stop request, handled as Ctrl-C's flag is

    return Stopper()


def test_resume_across_the_stage_boundary_is_bit_identical(run_inputs, tmp_path):
    from safetensors.torch import load_file

    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig, TrainingInterrupted

    student, teacher, lr_images, val = run_inputs
    config = FinetuneConfig(**{**FAST, "save_every": 5}, ema=0.9, blockwise_pairs=True)
    full, part = tmp_path / "full", tmp_path / "part"
    finetune(student, teacher, [], config, data_lr=[lr_images], val=val, out=full)
    with pytest.raises(TrainingInterrupted) as info:  # inside the second unit, between saves
        finetune(student, teacher, [], config, data_lr=[lr_images], val=val, out=part, callbacks=[_stop_at_block(8)])
    assert "block-wise step 8 of 12" in info.value.message
    state = torch.load(part / "state.pt", weights_only=False)
    assert state["step"] == 0 and state["blockwise"]["stage"]["done"] == 8
    finetune(student, teacher, [], config, data_lr=[lr_images], val=val, out=part, resume=True)
    for name in ("last.safetensors", "student.safetensors"):
        a, b = load_file(full / name), load_file(part / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(_history(full)) == strip(_history(part))
    a, b = (torch.load(p / "state.pt", weights_only=False) for p in (full, part))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_blockwise_settings_are_checked():
    from scales_cli.train import FinetuneConfig, build_config
    from scales_cli.train.config import ConfigError

    with pytest.raises(ConfigError, match="--blockwise-steps -1"):
        FinetuneConfig(blockwise_steps=-1)
    with pytest.raises(ConfigError, match="--blockwise-cache-mb 0"):
        FinetuneConfig(blockwise_cache_mb=0)
    with pytest.raises(ConfigError, match="--blockwise-inputs 'teachers': expected one of teacher, student"):
        FinetuneConfig(blockwise_inputs="teachers")
    with pytest.raises(ConfigError, match="blockwise_pairs must be true or false"):
        build_config({"blockwise_pairs": 1})
    assert build_config({"blockwise-pairs": True}).blockwise_pairs is True


# --- --budget: steps from a measured step time ------------------------------------------------------

def test_budget_durations_parse_and_bad_ones_are_one_line():
    from scales_cli.train.budget import parse_budget, steps_for_budget
    from scales_cli.train.config import ConfigError

    assert (parse_budget("30m"), parse_budget("2h"), parse_budget("1h30m"), parse_budget("45s")) == (1800, 7200, 5400, 45)
    for bad in ("30", "2 hours", "0m", "m", "1h-5m"):
        with pytest.raises(ConfigError, match=f"--budget {bad}"):
            parse_budget(bad)
    assert steps_for_budget(100, probe_seconds=4, step_seconds=0.5, stage_seconds=16) == 160


def test_budget_picks_the_steps_from_the_measured_step_time(run_inputs, tmp_path, monkeypatch):
    import scales_cli.train.budget as budget_module
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig

    student, teacher, lr_images, _ = run_inputs
    config = FinetuneConfig(**{**FAST, "val_every": 0, "save_every": 0, "blockwise_steps": 0})
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # the first optimizer imports for seconds: not in this probe
    out = tmp_path / "real"  # the real measurement: the run takes exactly the steps its record says fit
    result = finetune(student, teacher, [], config, data_lr=[lr_images], out=out, budget="6s")
    record = next(r for r in _history(out) if r["kind"] == "budget")
    assert record["step_s"] > 0 and record["budget_s"] == 6
    assert result.steps == record["steps"] == math.floor((6 - record["probe_s"]) / record["step_s"])

    measured = {"seconds": 0.25}  # a machine twice as slow gets half the steps
    monkeypatch.setattr(budget_module, "measure_step_seconds", lambda *a, **k: measured["seconds"])
    picked = []
    for seconds in (0.25, 0.5):
        measured["seconds"] = seconds
        out = tmp_path / f"fake{seconds}"
        finetune(student, teacher, [], config.replace(steps=1), data_lr=[lr_images], out=out, budget="8s")
        record = next(r for r in _history(out) if r["kind"] == "budget")
        assert record["steps"] == math.floor((8 - record["probe_s"]) / seconds)
        picked.append(record["steps"])
    assert picked[0] in range(2 * picked[1] - 1, 2 * picked[1] + 2)


def test_a_budget_too_short_or_given_with_steps_is_one_line(run_inputs, tmp_path, monkeypatch):
    import scales_cli.train.budget as budget_module
    from conftest import run_cli

    student, teacher, lr_images, _ = run_inputs
    monkeypatch.setattr(budget_module, "measure_step_seconds", lambda *a, **k: 100.0)
    out = tmp_path / "run"
    ran = run_cli("finetune", student, "--teacher", teacher, "--data-lr", lr_images, "--out", out, "--budget", "10s",
                  "--batch", 2, "--patch", 8)
    assert ran.code == 2 and "--budget 10s: too short here (one step takes 100.00 s" in ran.err and "Traceback" not in ran.err
    assert not out.exists()
    ran = run_cli("finetune", student, "--teacher", teacher, "--data-lr", lr_images, "--out", out, "--budget", "1h",
                  "--steps", 5)
    assert ran.code == 2 and "--budget 1h and --steps 5: choose one" in ran.err
