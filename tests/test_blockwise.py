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
    assert all(len(u.paths) == 2 for u in paired.units[:-1])


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
