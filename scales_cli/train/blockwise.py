"""Block-wise reconstruction: each binarized body block first learns, alone, to reproduce its teacher block.

Why: end-to-end distillation runs the whole student and teacher on every step, and a binarized block
early in the body only sees the gradient that survives every block after it. Post-training
quantization gets most of its accuracy from reconstructing one block at a time (BRECQ); here that is
a stage before the end-to-end run of :mod:`.loop`, offered by ``FinetuneConfig.blockwise_steps``.

Blocks (:func:`plan_blocks`): the body's modules (the descriptor's ``body`` region, the same paths in
student and teacher because the rewrite keeps names), with ``nn.Sequential``/``nn.ModuleList``
containers opened into their children, keeping each module that holds at least one binary layer and
that the forward calls exactly once. Nothing is named per architecture. With ``pairs``, two
consecutive blocks whose second one eats the first one's output train together (one *unit*).

For a unit ``u`` with input ``X_u`` (below) and teacher output ``T_u`` (captured by forward hooks),
the student unit ``S_u`` minimises the distillation distance of
:mod:`.losses` on the teacher block's scale (``m = mean |T_u|``, so every block weighs alike):

    L_u = D(S_u(X_u) / m, T_u / m),   D = L1 or Charbonnier (``config.loss``)

with the SAME training step as end-to-end distillation (:class:`.distiller.Distiller`, on the unit
as its module and ``T_u`` as targets): its own optimizer and warmup+cosine schedule over
``blockwise_steps`` per unit (warmup ``min(warmup, blockwise_steps)``), clipping as
configured, no EMA and no two-stage bypass (the block is trained fully binary). ``X_u`` is the
teacher's own input (``blockwise_inputs: teacher``: each unit's problem independent of the others),
or the student's (``student``: its prefix, whose earlier blocks are already reconstructed, so the
block learns to correct the error it will really receive: asymmetric reconstruction, AdaRound's and
BRECQ's choice). Which wins end to end is measured in docs/results.md.

Memory and cost: the teacher runs once per crop batch and is cut short (an exception from the hook)
after the unit's last block, so a unit early in the body costs only a prefix of the teacher (with
student inputs, the student's prefix up to the unit runs too, without gradients). The (input,
output) pairs of a unit are computed ahead in chunks of as many batches as fit in ``cache_mb``; when
a unit's steps need more, the next chunk replaces the last one (streamed: every step sees fresh
crops, nothing is reused, at most one chunk is alive). Each batch is computed alone, so chunk
boundaries change no number and a resumed run recomputes its chunk bit-identically.

>>> from scales_cli.train.blockwise import plan_blocks                               # doctest: +SKIP
>>> plan = plan_blocks(student, teacher, desc.region_of, desc.regions["body"], x)   # doctest: +SKIP
>>> [u.name for u in plan.units]                                                    # doctest: +SKIP
['IMDB1', 'IMDB2', 'IMDB3', 'IMDB4', 'IMDB5', 'IMDB6', 'LR_conv']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..binary.layers import BinaryLayer
from ..errors import ScalesError
from .losses import DISTILL_LOSSES, LossParts

CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential, nn.ModuleList)
# where a unit's inputs come from: (student, teacher) -> the network whose prefix makes them (None: the teacher)
BLOCK_INPUTS: dict[str, Callable[[nn.Module, nn.Module], nn.Module | None]] = {
    "teacher": lambda student, teacher: None,
    "student": lambda student, teacher: student,
}
BLOCK_TERM = "block"  # the name of the reconstruction term in logs and history


@dataclass(frozen=True)
class Unit:
    """One reconstruction unit: one body block, or two consecutive ones trained together."""

    paths: tuple[str, ...]

    @property
    def name(self) -> str:
        return "+".join(self.paths)


@dataclass(frozen=True)
class BlockPlan:
    """The units in forward order, and the body modules with binary layers that no unit covers (and why)."""

    units: tuple[Unit, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def _has_binary(module: nn.Module) -> bool:
    return any(isinstance(m, BinaryLayer) for m in module.modules())


def candidate_blocks(student: nn.Module, region_of: Callable[[str], str], body_roots: Sequence[str]) -> list[str]:
    """Body modules holding binary layers, containers opened, in module order (not yet forward order)."""
    modules = dict(student.named_modules())
    found: list[str] = []

    def visit(path: str) -> None:
        module = modules[path]
        if not _has_binary(module):
            return
        inside = [f"{path}.{n}" if n else path for n, _ in module.named_modules()]
        whole_body = all(region_of(p) == "body" for p in inside)
        if isinstance(module, CONTAINERS) or not whole_body:  # open it: its children are the blocks
            for name, _ in module.named_children():
                visit(f"{path}.{name}")
            return
        found.append(path)

    for root in body_roots:
        if root in modules and root:
            visit(root)
    return found


@dataclass
class _Call:
    order: int  # position among all recorded calls of the forward
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any


@contextmanager
def _recording(model: nn.Module, paths: Sequence[str]) -> Iterator[dict[str, list[_Call]]]:
    """Forward hooks recording every call (args, kwargs, output) of each path, in call order."""
    calls: dict[str, list[_Call]] = {}
    modules = dict(model.named_modules())

    def hook_for(path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            count = sum(len(v) for v in calls.values())
            calls.setdefault(path, []).append(_Call(count, args, kwargs, output))

        return hook

    handles = [modules[p].register_forward_hook(hook_for(p), with_kwargs=True) for p in paths]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def plan_blocks(
    student: nn.Module, teacher: nn.Module, region_of: Callable[[str], str], body_roots: Sequence[str],
    probe: Tensor, *, pairs: bool = False,
) -> BlockPlan:
    """The units of the stage, found by one teacher forward on ``probe`` (a crop batch, input units).

    A candidate is kept when the teacher calls it once per forward with a tensor first argument and a
    tensor output; units are in call order. ``pairs`` joins block i and i+1 when i+1's first argument
    is i's output (a chain), pairing greedily from the start.
    """
    candidates = candidate_blocks(student, region_of, body_roots)
    with torch.no_grad(), _recording(teacher, candidates) as calls:
        teacher(probe)
    skipped, kept = [], []
    for path in candidates:
        seen = calls.get(path, [])
        if len(seen) != 1:
            skipped.append((path, f"called {len(seen)} times per forward (expected once)"))
        elif not (seen[0].args and isinstance(seen[0].args[0], Tensor) and isinstance(seen[0].output, Tensor)):
            skipped.append((path, "its first argument or its output is not a tensor"))
        else:
            kept.append(path)
    kept.sort(key=lambda p: calls[p][0].order)
    units: list[Unit] = []
    i = 0
    while i < len(kept):
        nxt = kept[i + 1] if i + 1 < len(kept) else None
        if pairs and nxt is not None and _chained(calls[kept[i]][0], calls[nxt][0]):
            units.append(Unit((kept[i], nxt)))
            i += 2
        else:
            units.append(Unit((kept[i],)))
            i += 1
    return BlockPlan(tuple(units), tuple(skipped))


def _chained(first: _Call, second: _Call) -> bool:
    a, b = first.output, second.args[0]
    return a is b or (a.shape == b.shape and torch.equal(a, b))


class UnitModule(nn.Module):
    """The student's blocks of one unit as one module: ``forward(x)`` runs them in order.

    Arguments after the first (token sizes, attention masks of windowed blocks) are the teacher's from
    the probe: they depend only on the crop size, which is fixed for a run. The blocks are the
    student's own modules (shared parameters), so training this trains the student in place.
    """

    def __init__(self, blocks: Sequence[nn.Module], extra: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.extra = tuple(extra)

    def forward(self, x: Tensor) -> Tensor:
        for block, (args, kwargs) in zip(self.blocks, self.extra, strict=True):
            x = block(x, *args, **kwargs)
        return x


def unit_module(student: nn.Module, teacher: nn.Module, unit: Unit, probe: Tensor) -> UnitModule:
    """The student's unit, with the non-first arguments its blocks got in a teacher forward on ``probe``."""
    with torch.no_grad(), _recording(teacher, unit.paths) as calls:
        teacher(probe)
    modules = dict(student.named_modules())
    extra = [(tuple(calls[p][0].args[1:]), dict(calls[p][0].kwargs)) for p in unit.paths]
    return UnitModule([modules[p] for p in unit.paths], extra)


class _Enough(Exception):
    """Raised from a hook to end a teacher forward once the unit's output is captured."""


def _capture(model: nn.Module, x: Tensor, *, input_of: str | None = None, output_of: str | None = None) -> list[Tensor]:
    """The first argument of module ``input_of`` and/or the output of ``output_of`` in one forward of
    ``model`` on ``x``, in that order, ending the forward as soon as the last one is taken (only a
    prefix of the network's cost)."""
    modules = dict(model.named_modules())
    got: list[Tensor] = []

    def before(m: nn.Module, args: tuple) -> None:
        got.append(args[0].detach().clone())
        if output_of is None:
            raise _Enough

    def after(m: nn.Module, args: tuple, output: Tensor) -> None:
        got.append(output.detach().clone())
        raise _Enough

    handles = []
    if input_of is not None:
        handles.append(modules[input_of].register_forward_pre_hook(before))
    if output_of is not None:
        handles.append(modules[output_of].register_forward_hook(after))
    try:
        with torch.no_grad():
            model(x)
    except _Enough:
        pass
    finally:
        for h in handles:
            h.remove()
    if len(got) != len(handles):
        raise ScalesError(f"block-wise stage: the forward never reached {output_of or input_of}")
    return got


def teacher_pair(teacher: nn.Module, unit: Unit, x: Tensor, inputs_from: nn.Module | None = None) -> tuple[Tensor, Tensor]:
    """(input of the unit's first block, teacher output of its last block) for crops ``x``.

    The input is the teacher's own (one teacher forward gives both), or with ``inputs_from`` (the
    student) that network's: the student's prefix, whose earlier blocks are already reconstructed, so
    the block learns to correct the error it will really receive (asymmetric reconstruction, as
    AdaRound and BRECQ do).
    """
    if inputs_from is None:
        x_in, target = _capture(teacher, x, input_of=unit.paths[0], output_of=unit.paths[-1])
        return x_in, target
    return _capture(inputs_from, x, input_of=unit.paths[0])[0], _capture(teacher, x, output_of=unit.paths[-1])[0]


class ActivationCache:
    """Teacher (input, output) pairs of one unit for steps ``0 .. steps-1``, at most ``cap_bytes`` alive.

    ``crops(t)`` is step t's input batch. Pairs are computed ahead in chunks of as many batches as
    fit (at least one); a step outside the chunk drops it and computes the next one from that step.
    """

    def __init__(self, teacher: nn.Module, unit: Unit, crops: Callable[[int], Tensor], steps: int, cap_bytes: int,
                 autocast: Callable[[], Any], inputs_from: nn.Module | None = None) -> None:
        self.teacher, self.unit, self.crops, self.steps = teacher, unit, crops, steps
        self.inputs_from = inputs_from
        self.cap_bytes, self.autocast = cap_bytes, autocast
        self.start = 0
        self.pairs: list[tuple[Tensor, Tensor]] = []
        self.chunk = 0  # batches per chunk, known after the first pair

    def _pair(self, t: int) -> tuple[Tensor, Tensor]:
        with self.autocast():
            x, y = teacher_pair(self.teacher, self.unit, self.crops(t), self.inputs_from)
        return x, y.float()

    def get(self, t: int) -> tuple[Tensor, Tensor]:
        if not (self.start <= t < self.start + len(self.pairs)):
            self.pairs = []  # drop the old chunk before computing the next
            first = self._pair(t)
            if not self.chunk:
                size = sum(v.numel() * v.element_size() for v in first)
                self.chunk = max(1, self.cap_bytes // max(1, size))
            self.start, self.pairs = t, [first]
            self.pairs += [self._pair(i) for i in range(t + 1, min(t + self.chunk, self.steps))]
        return self.pairs[t - self.start]


@dataclass(frozen=True)
class BlockReconstruction:
    """``L_u = D(S / m, T / m)`` with ``m = mean |T|`` (module doc); the Distiller's objective for a unit."""

    kind: str = "l1"
    eps: float = 1e-3

    def __call__(self, outputs: Tensor, targets: Tensor, hr: Tensor | None = None, feats: Any = None) -> LossParts:
        t = targets.detach().float()
        m = t.abs().mean() + 1e-8
        total = DISTILL_LOSSES[self.kind](outputs.float() / m, t / m, self.eps)
        return LossParts(total, {BLOCK_TERM: float(total.detach())})


@dataclass(frozen=True)
class BlockStepLog:
    """One step of the stage: ``step`` of ``total`` over all units, and where in which unit."""

    step: int
    total: int
    unit: int
    units: int
    name: str
    unit_step: int
    unit_steps: int
    loss: float
    lr: float


@dataclass(frozen=True)
class UnitDone:
    """A finished unit: its reconstruction loss on its first batch before and after its steps."""

    unit: int
    name: str
    before: float
    after: float


class BlockwiseStage:
    """The stage's state and its step: units in order, ``steps_per_unit`` steps each (``config`` gives
    the loss, lr and optimizer settings of the end-to-end run).

    ``crops(g)`` gives the input batch (``input_range`` units) of stage step ``g`` (0-based, over all
    units), a pure function of ``g``, so a resumed stage sees the same crops. :meth:`state_dict` /
    :meth:`load_state_dict` carry the position and the open unit's optimizer and schedule.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, plan: BlockPlan, config: Any,
                 crops: Callable[[int], Tensor], *, steps_per_unit: int, cache_mb: int = 512, inputs: str = "teacher",
                 device: torch.device | str = "cpu", autocast: Callable[[], Any] | None = None) -> None:
        from contextlib import nullcontext

        self.student, self.teacher, self.plan, self.crops = student, teacher, plan, crops
        self.per_unit = int(steps_per_unit)
        # the unit's own schedule (the run's warmup, capped at the unit's steps by the schedule, then
        # cosine to 0) and the end-to-end run's optimizer settings; fully binary, no EMA
        self.unit_config = config.replace(steps=self.per_unit, ema=0.0, two_stage="off", progressive=0.0, schedule="cosine")
        self.objective = BlockReconstruction(config.loss, config.charbonnier_eps)
        self.cap_bytes = int(cache_mb) * 2**20
        self.inputs_from = BLOCK_INPUTS[inputs](student, teacher)
        self.device = torch.device(device)
        self.autocast = autocast or nullcontext
        self.total = len(plan.units) * self.per_unit
        self.done = 0
        self.before: float | None = None  # the open unit's loss before its first step
        self._open_unit: int | None = None
        self._distiller: Any = None
        self._cache: ActivationCache | None = None

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def _open(self, k: int) -> None:
        from .distiller import Distiller

        unit = self.plan.units[k]
        base = k * self.per_unit
        module = unit_module(self.student, self.teacher, unit, self.crops(base))
        self._distiller = Distiller(module, self.unit_config, objective=self.objective, device=self.device)
        self._cache = ActivationCache(self.teacher, unit, lambda t: self.crops(base + t), self.per_unit,
                                      self.cap_bytes, self.autocast, self.inputs_from)
        self._open_unit = k

    def unit_loss(self) -> float:
        """The open unit's reconstruction loss on its first batch (no gradient, training mode kept)."""
        k = self._open_unit
        with torch.no_grad(), self.autocast():
            x, target = teacher_pair(self.teacher, self.plan.units[k], self.crops(k * self.per_unit), self.inputs_from)
            return float(self.objective(self._distiller.model(x), target).total)

    def step(self) -> tuple[BlockStepLog, UnitDone | None]:
        """One Distiller step on the current unit; a :class:`UnitDone` when that step finished it."""
        k, t = divmod(self.done, self.per_unit)
        if self._open_unit != k:
            self._open(k)
            self.before = self.unit_loss()
        x, target = self._cache.get(t)
        result = self._distiller.step(x, targets=target)
        self.done += 1
        unit = self.plan.units[k]
        log = BlockStepLog(self.done, self.total, k, len(self.plan.units), unit.name, t + 1, self.per_unit,
                           result.loss, result.lr)
        finished = None
        if t + 1 == self.per_unit:
            finished = UnitDone(k, unit.name, float(self.before), self.unit_loss())
            self._open_unit, self._distiller, self._cache, self.before = None, None, None, None
        return log, finished

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"done": self.done, "before": self.before}
        if self._distiller is not None:
            state["optimizer"] = self._distiller.optimizer.state_dict()
            state["scheduler"] = self._distiller.scheduler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue where :meth:`state_dict` was taken (the student's weights are restored by the caller)."""
        self.done = int(state["done"])
        k, t = divmod(self.done, self.per_unit)
        if t and not self.finished:  # inside a unit: reopen it with its optimizer and schedule
            self._open(k)
            self._distiller.optimizer.load_state_dict(state["optimizer"])
            self._distiller.scheduler.load_state_dict(state["scheduler"])
            self._distiller.completed = t
            self.before = state["before"]


BLOCK_SAMPLE_OFFSET = 2**40  # the stage's crops are other samples than the end-to-end run's


def stage_crops(train_set: Any, batch: int, device: torch.device, input_range: float) -> Callable[[int], Tensor]:
    """Stage step g's LR crops (``input_range`` units): samples ``OFFSET + g*batch + j`` of ``train_set``
    (a pure function of the seed and g, see :mod:`.data`)."""

    def crops(g: int) -> Tensor:
        base = BLOCK_SAMPLE_OFFSET + g * batch
        lr = torch.stack([train_set[i][0] for i in range(base, base + batch)])
        return lr.to(device) * input_range

    return crops


def make_stage(student: nn.Module, teacher: nn.Module, descriptor: Any, config: Any, train_set: Any,
               device: torch.device, autocast: Callable[[], Any] | None = None) -> BlockwiseStage:
    """The stage of ``config.blockwise_steps`` steps per unit for the student ``descriptor`` describes."""
    crops = stage_crops(train_set, config.batch, device, float(descriptor.input_range))
    plan = plan_blocks(student, teacher, descriptor.region_of, descriptor.regions.get("body", ()), crops(0),
                       pairs=config.blockwise_pairs)
    if not plan.units:
        raise ScalesError(f"--blockwise-steps {config.blockwise_steps}: the {descriptor.arch} student has no binarized "
                          "body block called once per forward (use --blockwise-steps 0)")
    return BlockwiseStage(student, teacher, plan, config, crops, steps_per_unit=config.blockwise_steps, inputs=config.blockwise_inputs,
                          cache_mb=config.blockwise_cache_mb, device=device, autocast=autocast)
