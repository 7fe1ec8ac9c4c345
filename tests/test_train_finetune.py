"""The fine-tuning library: loss goes down and every binary parameter learns; resume is bit-exact;
NaN stops keep the last good state; outputs load like any student; data errors are one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import scales_cli.train.distiller as distiller_module
from scales_cli import finetune
from scales_cli.loading import load
from scales_cli.binary import BinaryLayer
from scales_cli.binary.modes import LayerMode
from scales_cli.errors import DataError, OutputExistsError, ScalesError
from scales_cli.train import FinetuneConfig, TrainingDiverged, TrainingInterrupted, build_config
from scales_cli.train.checkpoint import load_state
from scales_cli.train.data import StepSampler, TrainSet, load_train_images
from scales_cli.train.losses import distillation_loss
from scales_cli.train.optim import is_side_parameter, lr_factor, parameter_groups

from _train_helpers import make_pair, write_images

FAST = {"steps": 12, "batch": 2, "patch": 8, "warmup": 2, "log_every": 2, "val_every": 4, "save_every": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return make_pair(tmp_path)


@pytest.fixture
def lr_images(tmp_path: Path) -> Path:
    return write_images(tmp_path / "lr", 4, (20, 16))


@pytest.fixture
def val_set(tmp_path: Path) -> Path:
    return write_images(tmp_path / "val", 2, (32, 32), seed=5) / "sub"


def _history(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def test_a_few_steps_lower_the_loss_and_every_binary_parameter_gets_a_gradient(pair, lr_images, val_set, tmp_path):
    student_path, teacher_path = pair
    student, teacher = load(student_path).model.train(), load(teacher_path).model
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        target = teacher(x)
    distillation_loss(student(x), target).total.backward()
    binary = [m for m in student.modules() if isinstance(m, BinaryLayer)]
    assert binary
    for name, p in student.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
    for layer in binary:  # alpha, beta, both branches and the latent weights all learn
        for p in (layer.act.alpha, layer.act.beta, layer.weight, layer.spatial.weight, layer.channel.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0

    out = tmp_path / "run"
    result = finetune(student_path, teacher_path, [], FinetuneConfig(**{**FAST, "steps": 24, "lr": 2e-3, "val_every": 8}),
                      data_lr=[lr_images], val=val_set, out=out)
    losses = [r["loss"] for r in _history(out) if r["kind"] == "train"]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    assert result.steps == 24 and result.best_psnr is not None
    for name in ("student.safetensors", "last.safetensors", "state.pt", "history.jsonl", "curves.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sum(r["kind"] == "val" for r in _history(out)) == 24 // 8


def test_outputs_load_like_any_student_and_record_their_training(pair, lr_images, tmp_path):
    student_path, teacher_path = pair
    out = tmp_path / "run"
    finetune(student_path, teacher_path, [], FinetuneConfig(**FAST), data_lr=[lr_images], out=out)
    with safe_open(student_path, "pt") as f:
        before = f.metadata()
    for name in ("student.safetensors", "last.safetensors"):
        with safe_open(out / name, "pt") as f:
            meta = f.metadata()
        assert {k: v for k, v in meta.items() if k not in ("scales.training", "scales.version")} == {
            k: v for k, v in before.items() if k != "scales.version"
        }
        training = json.loads(meta["scales.training"])
        assert training["steps"] == 12 and training["data_lr"] == [str(lr_images)] and training["loss"] == "l1"
        desc = load(out / name)  # the same loader every command uses
        assert desc.arch == "imdn" and desc.extra["student"]["recipe"] == "cnn"
    assert load_file(out / "student.safetensors").keys() == load_file(student_path).keys()


def _stop_at(step: int):
    class Stopper:
        def on_step(self, log):  # noqa: ANN001
            # a stop request, handled exactly as Ctrl-C's flag (the real SIGINT path is tested through
            # the console script in test_train_cli; a signal sent to a pytest-xdist worker can kill it)
            return log.step == step

    return Stopper()


def test_resume_continues_bit_identically(pair, lr_images, val_set, tmp_path):
    student_path, teacher_path = pair
    config = FinetuneConfig(**FAST, ema=0.9, feature_weight=0.1, scale_lr=5e-4)
    full = tmp_path / "full"
    finetune(student_path, teacher_path, [], config, data_lr=[lr_images], val=val_set, out=full)

    part = tmp_path / "part"
    with pytest.raises(TrainingInterrupted) as info:
        finetune(student_path, teacher_path, [], config, data_lr=[lr_images], val=val_set, out=part, callbacks=[_stop_at(5)])
    assert info.value.exit_code == 130 and "step 5 of 12" in info.value.message
    assert torch.load(part / "state.pt", weights_only=False)["step"] == 5
    with pytest.raises(OutputExistsError):
        finetune(student_path, teacher_path, [], config, data_lr=[lr_images], val=val_set, out=part)
    finetune(student_path, teacher_path, [], config, data_lr=[lr_images], val=val_set, out=part, resume=True)

    for name in ("last.safetensors", "student.safetensors"):
        a, b = load_file(full / name), load_file(part / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}:{key} differs after resume"
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(_history(full)) == strip(_history(part))
    full_state = torch.load(full / "state.pt", weights_only=False)
    part_state = torch.load(part / "state.pt", weights_only=False)
    for a, b in zip(full_state["optimizer"]["state"].values(), part_state["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_settings_is_refused(pair, lr_images, tmp_path):
    student_path, teacher_path = pair
    out = tmp_path / "run"
    finetune(student_path, teacher_path, [], FinetuneConfig(**FAST), data_lr=[lr_images], out=out)
    with pytest.raises(ScalesError, match=r"--resume: .*lr="):
        finetune(student_path, teacher_path, [], FinetuneConfig(**{**FAST, "lr": 5e-4}), data_lr=[lr_images], out=out, resume=True)


def test_a_nan_loss_stops_naming_the_step_and_keeps_the_last_good_state(pair, lr_images, tmp_path, monkeypatch):
    student_path, teacher_path = pair
    calls = {"n": 0}
    real = distiller_module.distillation_loss

    def poisoned(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        parts = real(*args, **kwargs)
        if calls["n"] == 7:
            return type(parts)(parts.total * math.nan, parts.terms)
        return parts

    monkeypatch.setattr(distiller_module, "distillation_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        finetune(student_path, teacher_path, [], FinetuneConfig(**FAST), data_lr=[lr_images], out=out)
    assert info.value.exit_code == 1
    assert info.value.message.startswith("step 7: loss nan") and "step 6" in info.value.message
    state = torch.load(out / "state.pt", weights_only=False)
    assert state["step"] == 6
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    last = load_file(out / "last.safetensors")
    assert all(torch.equal(last[k], state["model"][k]) for k in last)


def test_hr_folders_give_aligned_crops_of_the_matlab_lr(tmp_path):
    from scales_cli.metrics.resize import imresize

    hr_dir = write_images(tmp_path / "hr", 3, (36, 34))
    images = load_train_images([hr_dir], [], 2, 8)
    assert len(images) == 3 and all(im.hr is not None for im in images)
    for im in images:  # modcrop to 36x34, LR 18x17, exactly the benchmark LR
        assert tuple(im.hr.shape) == (3, 34, 36) and tuple(im.lr.shape) == (3, 17, 18)
        expect = imresize(im.hr.permute(1, 2, 0).numpy(), 0.5)
        assert torch.equal(im.lr, torch.from_numpy(expect).permute(2, 0, 1))
    ts = TrainSet(images, 2, 8, seed=3, with_hr=True)
    lr, hr = ts[7]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
    # the HR crop is aligned with its LR: downscaling it lands near the LR crop (bicubic support crosses the crop edge)
    down = torch.nn.functional.avg_pool2d(hr[None], 2)[0]
    assert (down - lr)[:, 2:-2, 2:-2].abs().mean() < 0.05
    assert torch.equal(ts[7][0], TrainSet(images, 2, 8, seed=3, with_hr=True)[7][0])  # a function of (seed, index)
    ranks = [list(StepSampler(0, 3, 2, rank, 2)) for rank in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1]) and list(StepSampler(1, 3, 2, 0, 2)) == ranks[0][2:]


def test_hr_weight_trains_on_hr_data_and_refuses_lr_only_folders(pair, lr_images, tmp_path):
    student_path, teacher_path = pair
    hr_dir = write_images(tmp_path / "hr", 3, (40, 40))
    out = tmp_path / "run"
    finetune(student_path, teacher_path, [hr_dir], FinetuneConfig(**FAST, hr_weight=0.5), out=out)
    assert "hr" in [r for r in _history(out) if r["kind"] == "train"][-1]
    with pytest.raises(ScalesError, match="--hr-weight 0.5: needs HR images, but --data-lr"):
        finetune(student_path, teacher_path, [hr_dir], FinetuneConfig(**FAST, hr_weight=0.5), data_lr=[lr_images], out=tmp_path / "x")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d.mkdir(), "holds no images"),
        (lambda d: (d.mkdir(), (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")), "bad.png: not a readable image"),
        (lambda d: write_images(d, 1, (6, 6)), "is smaller than one training patch"),
        (lambda d: None, "not a folder"),
    ],
)
def test_bad_data_folders_are_one_line_errors_before_any_work(pair, tmp_path, make, expected):
    student_path, teacher_path = pair
    folder = tmp_path / "data"
    make(folder)
    out = tmp_path / "run"
    with pytest.raises(DataError, match=expected) as info:
        finetune(student_path, teacher_path, [], FinetuneConfig(**FAST), data_lr=[folder], out=out)
    assert "\n" not in info.value.message
    assert not out.exists()


def test_config_layers_and_their_errors():
    cfg = build_config({"lr": 1, "schedule": "constant", "milestones": [0.3]}, {"lr": 5e-4, "steps": None})
    assert cfg.lr == 5e-4 and cfg.schedule == "constant" and cfg.milestones == (0.3,) and cfg.steps == 1000
    with pytest.raises(ScalesError, match="unknown fine-tuning setting 'stpes' \\(did you mean steps\\?\\)"):
        build_config({"stpes": 10})
    with pytest.raises(ScalesError, match="--schedule 'linear': expected one of cosine, multistep, constant"):
        FinetuneConfig(schedule="linear")
    f = lr_factor(FinetuneConfig(steps=10, warmup=2, schedule="cosine"))
    assert [f(0), f(1), f(2)] == [0.5, 1.0, 1.0] and f(9) < 0.05
    g = lr_factor(FinetuneConfig(steps=100, warmup=0, schedule="multistep", milestones=(0.5,), gamma=0.1))
    assert (g(49), g(50)) == (1.0, pytest.approx(0.1))
    assert is_side_parameter("IMDB1.c1.act.alpha") and is_side_parameter("IMDB1.c1.spatial.weight")
    assert is_side_parameter("IMDB1.c1.wbin.log_scale")  # a learned weight scale trains with the scales
    assert not is_side_parameter("IMDB1.c1.weight")


def test_side_parameters_get_the_weights_lr_unless_scale_lr_says(pair):
    student = load(pair[0]).model
    lrs = lambda config: {g["name"]: (g["lr"], len(g["params"])) for g in parameter_groups(student, config)}  # noqa: E731
    default = lrs(FinetuneConfig(lr=2e-3))
    assert default["weights"][0] == default["scales"][0] == 2e-3 and default["scales"][1] > 0
    assert lrs(FinetuneConfig(lr=2e-3, scale_lr=1e-2))["scales"][0] == 1e-2


def test_teacher_must_be_the_students_own(pair, lr_images, tmp_path):
    student_path, _ = pair
    (tmp_path / "other").mkdir()
    _, other_teacher = make_pair(tmp_path / "other", seed=1)
    with pytest.raises(ScalesError, match="is not the teacher student.safetensors was made from") as info:
        finetune(student_path, other_teacher, [], FinetuneConfig(**FAST), data_lr=[lr_images], out=tmp_path / "run")
    assert info.value.exit_code == 2
    assert not (tmp_path / "run").exists()


def test_state_file_is_checked(tmp_path):
    from scales_cli.train.checkpoint import RunIdentity

    bad = tmp_path / "state.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(ScalesError, match="not a readable training state"):
        load_state(bad, RunIdentity({}, "", "", 1))


def test_demo_training_images_fit_the_demo_patch():
    """`scales demo` fine-tunes on demo/train as HR at its patch size: every embedded image must give
    one aligned crop at x4 (a smaller image added there would make `make demo` fail at step 3)."""
    from scales_cli.cli.demo_cmd import DEMO, FINETUNE_PATCH
    from scales_cli.train.data import load_train_images

    images = load_train_images([DEMO / "train"], [], scale=4, patch=int(FINETUNE_PATCH))
    assert len(images) == 5 and all(img.hr is not None and min(img.lr.shape[1:]) >= int(FINETUNE_PATCH) for img in images)


def _staged_run_resumes_exactly(pair, lr_images, val_set, tmp_path: Path, config: FinetuneConfig, stop: int) -> dict:
    """Run ``config`` whole, and again stopped after step ``stop`` then resumed: both end bit-identical and fully
    binary. Returns the whole run's last weights (to compare with a run without the staging)."""
    full, part = tmp_path / "full", tmp_path / "part"
    result = finetune(pair[0], pair[1], [], config, data_lr=[lr_images], val=val_set, out=full)
    assert all(m.mode is LayerMode.BINARY for m in result.model.modules() if isinstance(m, BinaryLayer))
    with pytest.raises(TrainingInterrupted):
        finetune(pair[0], pair[1], [], config, data_lr=[lr_images], val=val_set, out=part, callbacks=[_stop_at(stop)])
    finetune(pair[0], pair[1], [], config, data_lr=[lr_images], val=val_set, out=part, resume=True)
    a, b = load_file(full / "last.safetensors"), load_file(part / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    return a


def test_two_stage_bypasses_one_binarizer_first_then_trains_the_full_student(pair, lr_images, val_set, tmp_path):
    """activations-first: the weights enter the convs as FP latent weights for the first stage, then
    binary; validation always scores the fully binary student; a resume across the stage switch is exact."""
    import torch.nn.functional as F

    from scales_cli.train.stages import bypassed, fully_binary, set_stage

    assert [bypassed("activations-first", s, 12, 0.5) for s in (0, 5, 6, 11)] == ["weights", "weights", None, None]
    assert bypassed("weights-first", 0, 12, 0.25) == "activations" and bypassed("off", 0, 12, 0.5) is None

    student = load(pair[0]).model.eval()
    layer = next(m for m in student.modules() if isinstance(m, BinaryLayer) and isinstance(m, torch.nn.Conv2d))
    x = torch.randn(1, layer.in_channels, 6, 6)
    binary = layer._conv_forward(*layer.operands(x), None)
    set_stage(student, "weights")
    a, w = layer.operands(x)
    assert torch.equal(w, layer.weight) and torch.equal(a, layer.act(x))
    assert torch.allclose(layer._conv_forward(a, w, None), F.conv2d(layer.act(x), layer.weight, None, layer.stride, layer.padding))
    with fully_binary(student):
        assert torch.equal(layer._conv_forward(*layer.operands(x), None), binary)
    assert layer.mode is LayerMode.FP_WEIGHTS  # restored after the block
    set_stage(student, "activations")
    assert torch.equal(layer.operands(x)[0], x) and layer.mode is LayerMode.FP_ACTIVATIONS

    a = _staged_run_resumes_exactly(pair, lr_images, val_set, tmp_path, FinetuneConfig(**FAST, two_stage="activations-first"), 3)
    one = load_file(finetune(pair[0], pair[1], [], FinetuneConfig(**FAST), data_lr=[lr_images], out=tmp_path / "one").last)
    assert any(not torch.equal(a[k], one[k]) for k in a)  # the first stage changed the trajectory
    with pytest.raises(ScalesError, match="--two-stage"):
        FinetuneConfig(two_stage="both")
    with pytest.raises(ScalesError, match="--first-stage"):
        FinetuneConfig(two_stage="weights-first", first_stage=1.0)


def test_progressive_binarization_switches_the_body_blocks_in_forward_order(pair, lr_images, val_set, tmp_path):
    """--progressive f: block k turns binary at round(k f T / N), the blocks after it compute their float
    layers exactly; validation scores the fully binary student; a resume across the switches is exact."""
    from scales_cli.train.distiller import Distiller
    from scales_cli.train.losses import feature_paths
    from scales_cli.train.stages import binary_blocks, progressive_switches

    assert progressive_switches(4, 100, 0.5) == [0, 12, 25, 38]
    assert [binary_blocks(s, 100, 0.5, 4) for s in (0, 11, 12, 37, 38, 99)] == [1, 1, 2, 3, 4, 4]
    assert binary_blocks(0, 100, 0.0, 4) == 4

    student = load(pair[0])
    blocks = feature_paths(student.model, student.regions["body"])
    assert len(blocks) >= 3
    teacher = load(pair[1]).model.eval()
    config = FinetuneConfig(**{**FAST, "steps": 30}, progressive=0.9)
    distiller = Distiller(student.model, config, teacher=teacher, block_paths=blocks)
    modules = dict(student.model.named_modules())

    def modes(path: str) -> set[LayerMode]:  # a block with no binary layer (IMDN's 1x1 ``c`` under cnn) counts as switched
        return {m.mode for m in modules[path].modules() if isinstance(m, BinaryLayer)} or {LayerMode.OFF}

    distiller.step(torch.rand(2, 3, 8, 8))  # step 1 plays step 0: only the first block binary
    assert modes(blocks[0]) == {LayerMode.BINARY} and all(modes(p) == {LayerMode.OFF} for p in blocks[1:])
    switch = progressive_switches(len(blocks), 30, 0.9)[1]
    while distiller.completed < switch + 1:
        distiller.step(torch.rand(2, 3, 8, 8))
    assert modes(blocks[1]) == {LayerMode.BINARY} and all(modes(p) == {LayerMode.OFF} for p in blocks[2:])
    distiller.finish()
    assert all(m.mode is LayerMode.BINARY for m in student.model.modules() if isinstance(m, BinaryLayer))

    a = _staged_run_resumes_exactly(pair, lr_images, val_set, tmp_path, config, 7)
    one = load_file(finetune(pair[0], pair[1], [], FinetuneConfig(**{**FAST, "steps": 30}), data_lr=[lr_images],
                             out=tmp_path / "one").last)
    assert any(not torch.equal(a[k], one[k]) for k in a)  # the FP blocks changed the trajectory
    with pytest.raises(ScalesError, match="--progressive"):
        FinetuneConfig(progressive=1.0)


def test_distiller_step_trains_any_module_on_given_targets_and_a_bad_step_changes_nothing():
    """The step a block-wise stage reuses: no teacher, cached targets; the optimizer, schedule, EMA and
    clipping of finetune; a non-finite loss raises NonFiniteStep before anything changes."""
    from scales_cli.train import Distiller, NonFiniteStep, OutputDistillation

    torch.manual_seed(0)
    block = torch.nn.Conv2d(3, 3, 3, padding=1)
    x, target = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    config = FinetuneConfig(steps=30, warmup=0, schedule="constant", lr=1e-2, ema=0.5, clip_grad=1.0)
    distiller = Distiller(block, config, objective=OutputDistillation(kind="charbonnier"))
    first = distiller.step(x, targets=target)
    for _ in range(28):
        last = distiller.step(x, targets=target)
    assert (first.step, last.step, distiller.completed) == (1, 29, 29) and last.loss < 0.7 * first.loss
    assert last.lr == pytest.approx(1e-2) and set(last.terms) == {"distill"}
    assert not torch.equal(distiller.eval_model.weight, block.weight)  # the EMA is its own copy
    before = {k: v.clone() for k, v in block.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in distiller.optimizer.state.values()]
    with pytest.raises(NonFiniteStep, match="step 30: loss nan"):
        distiller.step(x, targets=target * math.nan)
    assert all(torch.equal(before[k], v) for k, v in block.state_dict().items()) and distiller.completed == 29
    assert all(torch.equal(m, s["exp_avg"]) for m, s in zip(moments, distiller.optimizer.state.values()))
    with pytest.raises(ScalesError, match="no targets given and no teacher"):
        distiller.step(x)


@pytest.mark.parametrize("isa, expected", [(("avx512f", "avx2", "amx_int8", "amx_bf16"), True),
                                           (("avx512_vnni", "avx512f", "avx2"), False), (None, False)])
def test_auto_autocast_picks_bf16_on_cuda_and_on_cpus_with_amx_bf16_only(monkeypatch, isa, expected):
    monkeypatch.setattr(distiller_module, "local_isa", lambda: isa)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert distiller_module.AUTOCAST["auto"](cpu) is expected and distiller_module.AUTOCAST["auto"](cuda)
    assert (distiller_module.bf16_autocast(cpu, "auto") is not distiller_module.nullcontext) is expected
    assert distiller_module.bf16_autocast(cpu, "off") is distiller_module.nullcontext
    assert not distiller_module.AUTOCAST["off"](cuda) and distiller_module.AUTOCAST["bf16"](cpu)


def test_local_isa_reads_this_machines_flags_once():
    from scales_cli.machine import CPUINFO, local_isa, parse_cpuinfo

    if not CPUINFO.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    assert local_isa() == parse_cpuinfo(CPUINFO.read_text(errors="replace"))[1]
    assert local_isa() is local_isa()  # cached: one read per process


def test_bf16_autocast_on_the_cpu_trains_keeps_float32_state_and_codes_reach_the_conv_in_bf16(pair):
    student = load(pair[0]).model
    teacher = load(pair[1]).model.eval()
    seen: list[torch.dtype] = []
    layer = next(m for m in student.modules() if isinstance(m, BinaryLayer) and m.act is not None and hasattr(m.act, "beta"))
    handle = layer.act.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    config = FinetuneConfig(steps=30, warmup=0, schedule="constant", lr=2e-3, autocast="bf16")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 12, 12)
    d = distiller_module.Distiller(student, config, teacher=teacher)
    losses = [d.step(x).loss for _ in range(30)]
    handle.remove()
    assert all(math.isfinite(v) for v in losses) and min(losses[-5:]) < losses[0]
    assert seen and set(seen) == {torch.bfloat16}  # the binarizer's codes stay bf16 into the conv
    assert all(p.dtype == torch.float32 for p in student.parameters())
    assert all(s["exp_avg"].dtype == torch.float32 for s in d.optimizer.state.values())


def test_int8_activations_round_in_float32_under_bf16_autocast():
    """bf16 has no fraction above 128: x / s computed in it would lose LSQ's rounding error r - u."""
    from scales_cli.binary.int8 import Int8Activation

    x = torch.tensor([0.78515625, 0.3515625, 0.5], dtype=torch.bfloat16)  # exact in bf16; x / s = 200.2, 89.6, 127.5
    grads = []
    for inputs, autocast in ((x.float(), False), (x, True)):
        q = Int8Activation()
        q.set_range(0.0, 1.0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = q(inputs)
        y.sum().backward()
        assert y.dtype == torch.float32
        grads.append(q.scale.grad.clone())
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0
