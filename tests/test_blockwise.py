"""Block-wise reconstruction (issue 20): blocks found from the descriptor's body region for every
registered architecture, teacher activations bounded in memory, each block's loss lowered by its stage."""

from __future__ import annotations

import math
import time
from pathlib import Path

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


# --- --budget: steps planned from measured costs, re-planned while the run goes --------------------

def test_budget_durations_parse_and_bad_ones_are_one_line():
    from scales_cli.train.budget import Costs, parse_budget, steps_that_fit
    from scales_cli.train.config import ConfigError

    assert (parse_budget("30m"), parse_budget("2h"), parse_budget("1h30m"), parse_budget("45s")) == (1800, 7200, 5400, 45)
    for bad in ("30", "2 hours", "0m", "m", "1h-5m"):
        with pytest.raises(ConfigError, match=f"--budget {bad}"):
            parse_budget(bad)
    assert steps_that_fit(100 - 4 - 16, Costs(step_s=0.5), val_every=0, save_every=0) == 160


@pytest.mark.parametrize(("val_every", "save_every", "done", "pending"),
                         [(10, 4, 0, False), (10, 4, 0, True), (7, 0, 14, False), (7, 0, 14, True), (0, 5, 3, False),
                          (1, 1, 20, True)])
def test_the_plan_counts_the_validations_and_saves_the_loop_will_do(val_every, save_every, done, pending):
    """``cost(k, N)`` against a replay of the loop's own conditions (``step % every == 0 and step < N``,
    step k's own when a re-plan comes before them, then the closing validation and save): the largest
    N that fits is the one ``steps_that_fit`` picks."""
    from scales_cli.train.budget import Costs, run_cost, steps_that_fit

    costs = Costs(step_s=1.0, val_s=3.5, save_s=0.75)

    def replay(end: int) -> float:
        seconds = 0.0
        for step in range(done if pending and done else done + 1, end + 1):
            seconds += costs.step_s if step > done else 0.0
            seconds += costs.val_s if val_every and step % val_every == 0 and step < end else 0.0
            seconds += costs.save_s if save_every and step % save_every == 0 and step < end else 0.0
        return seconds + costs.val_s + costs.save_s

    for end in range(done, done + 60):
        got = run_cost(done, end, costs, val_every=val_every, save_every=save_every, pending=pending)
        assert got == pytest.approx(replay(end)), end
    for seconds in (0.0, 4.0, 30.0, 47.3, 80.0):
        best = max([n for n in range(done, done + 100) if replay(n) <= seconds], default=done)
        assert steps_that_fit(seconds, costs, val_every=val_every, save_every=save_every, done=done, pending=pending) == best


def test_the_pacer_replans_from_the_pace_it_measures_with_validations_taken_out():
    """A fake clock: steps of 1 s that become 2 s at step 40, a 3-second validation every 10 steps. The
    re-plans see 2 s per step (not 2 s plus validations), and the run with its closing validation
    ends within one step of the budget."""
    from scales_cli.train.budget import Costs, Pacer, steps_that_fit

    now = [0.0]
    pacer = Pacer(200.0, Costs(step_s=1.0, val_s=3.0), val_every=10, save_every=0, clock=lambda: now[0])
    total = planned = steps_that_fit(200.0, pacer.costs, val_every=10, save_every=0)
    pacer.start(0)
    step, replans = 0, []
    while step < total:
        step += 1
        now[0] += 1.0 if step <= 40 else 2.0
        replan = pacer.step_done(step, total)
        if replan is not None:
            replans.append(replan)
            total = replan.new_total
        if step % 10 == 0 and step < total:
            with pacer.overhead("val"):
                now[0] += 3.0
        assert not pacer.ran_out()
    with pacer.overhead("val"):
        now[0] += 3.0
    assert planned == 152 and replans[0].step == 8  # every 5 % of the planned steps (and the window is as long)
    assert replans[0].new_total == planned and replans[0].costs.step_s == 1.0
    assert replans[-1].costs.step_s == 2.0 and total < planned
    assert 200.0 - 2.0 < now[0] <= 200.0
    assert [r.step for r in replans][-3:] == [total - 3, total - 2, total - 1]  # halving near the end
    assert not pacer.ran_out()
    now[0] = 200.5  # past the budget: the deadline
    assert pacer.ran_out() and pacer.state_dict()["spent_s"] == now[0]


def test_a_moved_end_keeps_the_lr_continuous_and_anneals_it_at_the_new_end():
    from scales_cli.train import FinetuneConfig
    from scales_cli.train.distiller import Distiller
    from scales_cli.train.optim import lr_factor

    config = FinetuneConfig(steps=20, warmup=4, schedule="cosine", lr=1e-2)
    x, t = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    fixed, moved = Distiller(nn.Conv2d(3, 3, 1), config), Distiller(nn.Conv2d(3, 3, 1), config)
    factor = lr_factor(config)
    lrs = []
    for i in range(26):
        if i < 20:  # no move: exactly the planned schedule (an unbudgeted run is unchanged)
            assert fixed.optimizer.param_groups[0]["lr"] == config.lr * factor(i)
            fixed.step(x, targets=t)
        if i == 2:
            moved.retarget(30)  # inside the warmup: the warmup keeps its 4 steps
        if i == 12:
            moved.retarget(26)
        lrs.append(moved.optimizer.param_groups[0]["lr"])
        moved.step(x, targets=t)
    assert moved.total == 26 and lrs[:4] == [config.lr * (j + 1) / 4 for j in range(4)]
    assert all(b <= a for a, b in zip(lrs[4:], lrs[5:]))  # cosine: never up again
    assert max(abs(b - a) for a, b in zip(lrs[4:], lrs[5:])) < config.lr * 0.15  # no jump at either move
    assert moved.optimizer.param_groups[0]["lr"] == 0.0 and lrs[-1] > 0  # annealed exactly at the new end

    # a first plan shorter than the warmup (all warmup, never annealed) that grows: warmup, then cosine to 0
    short = Distiller(nn.Conv2d(3, 3, 1), FinetuneConfig(steps=3, warmup=10, schedule="cosine", lr=1e-2))
    lrs = []
    for i in range(40):
        if i == 1:
            short.retarget(40)
        lrs.append(short.optimizer.param_groups[0]["lr"])
        short.step(x, targets=t)
    peak = lrs.index(max(lrs))
    assert max(lrs) == 1e-2 and lrs[1] == pytest.approx(1e-2 * 2 / 3)  # the ramp goes on from where it was, up to the peak lr
    assert all(b >= a for a, b in zip(lrs[:peak], lrs[1:peak + 1])) and all(b <= a for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert short.optimizer.param_groups[0]["lr"] == 0.0


class VirtualClock:
    """``time.perf_counter`` for a budgeted run whose seconds pass only where the test says: each
    :meth:`Distiller.step` costs ``step_s``, each validation ``val_s``, each state save ``save_s``, the
    rest nothing. The budget's planning, re-plans and deadline then run exactly as on a real clock, but
    the outcome does not depend on how busy the machine is (a 2-core CI running two test workers)."""

    def __init__(self, monkeypatch, step_s: float = 0.125, val_s: float = 0.0, save_s: float = 0.0625) -> None:  # noqa: ANN001
        from scales_cli.train.distiller import Distiller

        self.now, self.step_s, self.val_s, self.save_s = 1024.0, step_s, val_s, save_s
        self.steps = 0
        monkeypatch.setattr(time, "perf_counter", lambda: self.now)
        for name, cost in (("step", "step_s"), ("validate", "val_s"), ("save", "save_s")):
            monkeypatch.setattr(Distiller, name, self._costing(getattr(Distiller, name), cost))

    def _costing(self, fn, cost: str):  # noqa: ANN001, ANN202
        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if cost == "step_s":
                self.steps += 1
            self.now += getattr(self, cost)
            return fn(*args, **kwargs)
        return timed


BUDGETED = {**FAST, "blockwise_steps": 0, "log_every": 5}


def test_budget_plans_from_the_measured_costs_and_ends_in_its_budget(run_inputs, tmp_path, monkeypatch):
    """Steps that get 1.5x slower a third of the way in: the re-plans move the end earlier, the progress
    total follows, and the run ends inside its budget without the deadline (a one-shot plan would overrun)."""
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig
    from scales_cli.train.budget import Costs, steps_that_fit

    student, teacher, lr_images, val = run_inputs
    clock = VirtualClock(monkeypatch, step_s=0.25, val_s=0.75, save_s=0.125)  # binary fractions: exact sums
    config = FinetuneConfig(**{**BUDGETED, "val_every": 10, "save_every": 8})
    totals = []

    class Totals:
        def on_step(self, log):  # noqa: ANN001, ANN202
            totals.append(log.total)  # what the progress bar shows
            if log.step == 10:
                clock.step_s = 0.375

    started = clock.now
    result = finetune(student, teacher, [], config, data_lr=[lr_images], val=val, out=tmp_path / "run", budget="8s",
                      callbacks=[Totals()])
    spent = clock.now - started
    history = _history(tmp_path / "run")
    plan = next(r for r in history if r["kind"] == "budget")
    assert (plan["step_s"], plan["val_s"], plan["save_s"], plan["budget_s"]) == (0.25, 0.75, 0.125, 8)
    assert plan["steps"] == steps_that_fit(8 - plan["probe_s"], Costs(plan["step_s"], plan["val_s"], plan["save_s"]),
                                           val_every=10, save_every=8)
    replans = [r for r in history if r["kind"] == "budget-replan"]
    assert replans and result.steps == replans[-1]["new_total"] == totals[-1] < plan["steps"]
    assert [r["new_total"] for r in replans if r["new_total"] != r["old_total"]] == \
        [t for a, t in zip([plan["steps"], *totals], totals) if t != a]
    assert 8 * 0.9 <= spent <= 8


def test_a_slow_validation_is_planned_for_and_the_run_still_ends_in_its_budget(run_inputs, tmp_path, monkeypatch):
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig

    student, teacher, lr_images, val = run_inputs
    clock = VirtualClock(monkeypatch, step_s=0.25, val_s=1.0)  # a validation costs 4 steps, every 5 steps
    started = clock.now
    finetune(student, teacher, [], FinetuneConfig(**{**BUDGETED, "val_every": 5, "save_every": 0}), data_lr=[lr_images],
             val=val, out=tmp_path / "run", budget="8s")
    spent = clock.now - started
    history = _history(tmp_path / "run")
    assert next(r for r in history if r["kind"] == "budget")["val_s"] == pytest.approx(1.0)  # measured before step 1
    assert [r for r in history if r["kind"] == "budget-replan"]
    assert len([r for r in history if r["kind"] == "val"]) >= 2
    assert 8 * 0.9 <= spent <= 8  # unplanned, the validations alone would take over half the budget again


def test_the_deadline_stops_a_run_whose_steps_suddenly_get_slow(run_inputs, tmp_path, monkeypatch):
    import scales_cli.train.budget as budget_module
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig
    from scales_cli.train.loop import BudgetSpent

    student, teacher, lr_images, _ = run_inputs
    monkeypatch.setattr(budget_module, "REPLAN_FRACTION", 0.5)  # re-plans too rare to save it: the deadline must
    clock = VirtualClock(monkeypatch, step_s=0.125)

    class Stall:  # after the run's 2nd step, the 3rd takes longer than the whole budget
        def on_step(self, log):  # noqa: ANN001, ANN202
            if log.step == 2:
                clock.step_s = 20.0

    out = tmp_path / "run"
    with pytest.raises(BudgetSpent) as info:
        finetune(student, teacher, [], FinetuneConfig(**{**BUDGETED, "val_every": 0, "save_every": 0}),
                 data_lr=[lr_images], out=out, budget="4s", callbacks=[Stall()])
    total = next(r for r in _history(out) if r["kind"] == "budget")["steps"]
    assert info.value.exit_code == 124
    assert f"the budget ran out at step 3 of {total} (" in info.value.message and "--resume" in info.value.message
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] == 3 and state["budget"]["spent_s"] > 4 and (out / "last.safetensors").is_file()


def test_resume_of_a_budgeted_run_gets_the_time_it_has_left(run_inputs, tmp_path, monkeypatch):
    from scales_cli import finetune
    from scales_cli.errors import ScalesError
    from scales_cli.train import FinetuneConfig, TrainingInterrupted

    student, teacher, lr_images, _ = run_inputs
    clock = VirtualClock(monkeypatch, step_s=0.125)
    config = FinetuneConfig(**{**BUDGETED, "val_every": 0, "save_every": 0})
    out = tmp_path / "run"

    class StopLate:
        def on_step(self, log):  # noqa: ANN001, ANN202
            return log.elapsed > 2.5  # most of the 4-second budget is spent when it stops

    with pytest.raises(TrainingInterrupted):
        finetune(student, teacher, [], config, data_lr=[lr_images], out=out, budget="4s", callbacks=[StopLate()])
    first = torch.load(out / "state.pt", weights_only=False)
    spent = first["budget"]["spent_s"]
    assert first["budget"]["budget_s"] == 4 and spent > 2.5
    before = len(_history(out))
    started = clock.now
    result = finetune(student, teacher, [], config, data_lr=[lr_images], out=out, resume=True)  # the recorded budget
    replans = [r for r in _history(out)[before:] if r["kind"] == "budget-replan"]
    assert replans[0]["step"] == first["step"] and replans[0]["left_s"] <= 4 - spent + 1e-6  # re-planned at once, on what is left
    assert len(replans) > 1 and result.steps == replans[-1]["new_total"]  # and kept re-planning
    last = torch.load(out / "state.pt", weights_only=False)
    assert 4 * 0.9 <= last["budget"]["spent_s"] <= 4
    assert clock.now - started <= 4 - spent + 0.2  # not the whole budget again
    with pytest.raises(ScalesError, match="was started with --steps 6, not a budget"):
        plain = tmp_path / "plain"
        finetune(student, teacher, [], config, data_lr=[lr_images], out=plain)
        finetune(student, teacher, [], config, data_lr=[lr_images], out=plain, resume=True, budget="1m")


def test_resume_of_a_finished_budgeted_run_is_refused_before_any_work(run_inputs, tmp_path, monkeypatch):
    """A closed run's schedule has annealed (cosine: lr 0) and a re-plan keeps the lr continuous, so a longer
    --budget would train at lr 0 for all of it: refused in one line, nothing in OUT touched."""
    from conftest import run_cli
    from scales_cli import finetune
    from scales_cli.train import FinetuneConfig

    student, teacher, lr_images, _ = run_inputs
    VirtualClock(monkeypatch, step_s=0.125)
    out = tmp_path / "run"
    finetune(student, teacher, [], FinetuneConfig(**{**BUDGETED, "val_every": 0, "save_every": 0}), data_lr=[lr_images],
             out=out, budget="2s")
    assert torch.load(out / "state.pt", weights_only=False)["closed"] is True
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    ran = run_cli("finetune", student, "--teacher", teacher, "--data-lr", lr_images, "--out", out, "--resume",
                  "--budget", "1m", "--batch", BUDGETED["batch"], "--patch", BUDGETED["patch"])
    assert ran.code == 2 and "Traceback" not in ran.err
    assert f"--resume: the run in {out} already finished" in ran.err and "new run from" in ran.err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_budget_too_short_or_given_with_steps_is_one_line(run_inputs, tmp_path, monkeypatch):
    import scales_cli.train.budget as budget_module
    from conftest import run_cli

    student, teacher, lr_images, _ = run_inputs
    monkeypatch.setattr(budget_module, "measure_costs", lambda *a, **k: budget_module.Costs(step_s=100.0))
    out = tmp_path / "run"
    ran = run_cli("finetune", student, "--teacher", teacher, "--data-lr", lr_images, "--out", out, "--budget", "10s",
                  "--batch", 2, "--patch", 8)
    assert ran.code == 2 and "--budget 10s: too short here (one step takes 100.00 s" in ran.err and "Traceback" not in ran.err
    assert not out.exists()
    ran = run_cli("finetune", student, "--teacher", teacher, "--data-lr", lr_images, "--out", out, "--budget", "1h",
                  "--steps", 5)
    assert ran.code == 2 and "--budget 1h and --steps 5: choose one" in ran.err
