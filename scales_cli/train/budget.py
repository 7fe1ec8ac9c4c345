"""``scales finetune --budget 30m``: a user says how long, the run fits its steps into that time.

Costs are measured, not guessed. Before step 1, on a copy of the student: ``probe`` steps of the very
:class:`.distiller.Distiller` step the run will take (same crops, batch, device and threads) after
one untimed step (first-call allocations), then one validation as the loop does it (the ``--val``
set scored, a best student written, ``curves.png`` drawn: its first call pays one-off costs, so v
starts high and the re-plans lower it) and one save (``state.pt`` and ``last.safetensors``), both in a
temporary folder. With

    t  seconds of one end-to-end step          V  --val-every (0, or no --val: no periodic validation)
    v  seconds of one validation               S  --save-every (0: no periodic save)
    s  seconds of one save                     L  seconds left, k steps completed

(without ``--val``, v is what the run's close does instead: write the student and draw the curves)

the run ends at the largest N >= k whose remaining cost fits in what is left:

    cost(k, N) = (N - k) t + v (⌊(N-1)/V⌋ - ⌊(f-1)/V⌋) + s (⌊(N-1)/S⌋ - ⌊(f-1)/S⌋) + (v + s)  <=  L

(the periodic validations and saves of steps f .. N-1, then the closing validation and save; a
count whose interval is 0 is 0). f = k + 1, except in a re-plan made right after step k, before
that step's own validation and save: then f = k. The first plan has k = 0 and

    L = B - m - b - [b > 0] (v + s)

``B`` the budget, ``m`` the seconds since :func:`~scales_cli.train.loop.finetune` was called (loading
the files and this measurement; the process start and imports before it are not counted), ``b`` the
block-wise stage's estimate (its step count times its step time measured the same way on its last,
costliest unit, whose teacher prefix is the longest) and the stage's own closing validation and save.

During the run the plan is redone (a :class:`Pacer`, fed by the loop): every ``⌈5 % of N⌉`` steps,
and in the last stretch every half of the steps still planned, ``t`` becomes the wall seconds per step
over the last ``⌈5 % of N⌉`` steps (everything the loop does, validation and save time taken out),
``v`` and ``s`` the last ones measured, ``L = B - spent`` and N moves (a ``budget-replan`` record in
``history.jsonl``). Why 5 %: the step time drifts during a run (0.29 s measured, 0.35-0.43 s late in
an IMDN x4 run, docs/results.md), so the last stretch is the one planned blind, and 5 % of a run
bounds what a drift there can cost to a small share of the budget; a window of 5 % of the steps (300
steps of 0.3 s in a 30-minute run) averages out step noise, and 20 re-plans cost nothing next to the
steps. The halving near the end keeps the last steps' estimate fresh, so that a late slowdown moves
the end in rather than pushing the closing validation past the budget. Re-planning after every step
would follow noise; re-planning only at validations would re-plan rarely or never (``--val-every 0``). The lr schedule and the two-stage
switch follow the moved end (:class:`.optim.Horizon`: continuous, annealed at the new end). After a
block-wise stage, and at the start of a resumed run, the end is re-planned at once.

If the wall clock passes ``B`` anyway (a sudden slowdown between re-plans), the run stops as Ctrl-C
stops it (state and ``last.safetensors`` saved; ``loop.BudgetSpent``, exit 124 as ``timeout(1)``),
saying that the budget ran out at step k of N. ``state.pt`` records the budget, the seconds spent
and the last costs (and the Distiller its horizon), so ``--resume`` gets ``B - spent`` (``B``: the
``--budget`` given again, else the recorded one), re-plans at once and keeps re-planning.

Budgeted runs are not bit-reproducible: their step count, and so the lr of each step, depend on the
measured times. Unbudgeted runs never re-plan and are unchanged (their ``--resume`` is bit-exact).

>>> parse_budget("1h30m"), parse_budget("90s"), parse_budget("2h")
(5400.0, 90.0, 7200.0)
>>> steps_that_fit(600, Costs(step_s=1.5, val_s=10, save_s=2), val_every=100, save_every=50)
362
"""

from __future__ import annotations

import copy
import math
import re
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .config import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
REPLAN_FRACTION = 0.05  # re-plan (and measure the step time over) this share of the planned steps; see the module doc


def parse_budget(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``30m``, ``2h`` or ``1h30m``; anything else is one line."""
    s = str(text).strip().lower()
    parts = _PART.findall(s)
    if not parts or "".join(a + u for a, u in parts) != s:
        raise ConfigError(f"--budget {text}: expected a duration such as 90s, 30m, 2h or 1h30m")
    seconds = sum(float(a) * _UNITS[u] for a, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--budget {text}: expected a duration above zero")
    return seconds


@dataclass(frozen=True)
class Costs:
    """Measured seconds of one end-to-end step (t), one validation pass (v) and one save (s)."""

    step_s: float
    val_s: float = 0.0
    save_s: float = 0.0

    def to_json(self) -> dict[str, float]:
        return {"step_s": round(self.step_s, 6), "val_s": round(self.val_s, 4), "save_s": round(self.save_s, 4)}


def _count(first: int, end: int, every: int) -> int:
    """Periodic events (validations, saves) of steps first .. end-1: those at multiples of ``every``."""
    return (end - 1) // every - (first - 1) // every if every and end > first else 0


def run_cost(done: int, end: int, costs: Costs, *, val_every: int, save_every: int, pending: bool = False) -> float:
    """``cost(k, N)`` of the module doc: the seconds from step ``done`` to the end of a run of ``end`` steps
    (``pending``: step ``done``'s own validation and save are still to come, f = k)."""
    first = done if pending and done > 0 else done + 1
    return ((end - done) * costs.step_s + costs.val_s * _count(first, end, val_every)
            + costs.save_s * _count(first, end, save_every) + costs.val_s + costs.save_s)


def steps_that_fit(seconds: float, costs: Costs, *, val_every: int, save_every: int, done: int = 0,
                   pending: bool = False) -> int:
    """The largest N >= ``done`` with ``cost(done, N) <= seconds`` (``done`` when not even the close fits)."""
    def fits(n: int) -> bool:
        return run_cost(done, n, costs, val_every=val_every, save_every=save_every, pending=pending) <= seconds

    low, high = done, done + max(0, math.floor(seconds / max(costs.step_s, 1e-9))) + 1  # cost rises >= t a step
    while high - low > 1:  # fits(low) or low == done; not fits(high)
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


@dataclass(frozen=True)
class BudgetPlan:
    """What ``--budget`` decided before step 1, recorded in ``history.jsonl`` as a ``budget`` record."""

    budget_s: float
    probe_s: float  # m of the module doc: loading and measuring
    costs: Costs
    stage_s: float
    steps: int

    def record(self) -> dict[str, Any]:
        return {"kind": "budget", "budget_s": self.budget_s, "probe_s": round(self.probe_s, 3), **self.costs.to_json(),
                "stage_s": round(self.stage_s, 3), "steps": self.steps}


@dataclass(frozen=True)
class Replan:
    """One re-plan: at ``step``, the end moved from ``old_total`` to ``new_total`` (a ``budget-replan`` record)."""

    step: int
    old_total: int
    new_total: int
    costs: Costs
    left_s: float

    def record(self) -> dict[str, Any]:
        return {"kind": "budget-replan", "step": self.step, "old_total": self.old_total, "new_total": self.new_total,
                **self.costs.to_json(), "left_s": round(self.left_s, 2)}


class Pacer:
    """A budgeted run's clock and its re-plans (module doc). The loop tells it each completed step
    (:meth:`step_done`, which returns a :class:`Replan` when one is due) and times its validations
    and saves in :meth:`overhead`; :meth:`ran_out` is the deadline. ``clock`` is injectable for tests.
    """

    def __init__(self, budget_s: float, costs: Costs, *, val_every: int, save_every: int, spent_s: float = 0.0,
                 since: float | None = None, clock: Callable[[], float] | None = None) -> None:
        self.budget_s, self.costs, self.val_every, self.save_every = float(budget_s), costs, val_every, save_every
        # time.perf_counter looked up now, not at import: the loop, the probe and the pacer read one clock
        self._clock, self._spent_before = clock or time.perf_counter, float(spent_s)
        self._since = clock() if since is None else since
        self._overheads = 0.0  # seconds spent in validations and saves so far (taken out of the step time)
        self._marks: deque[tuple[int, float]] = deque()  # (step, clock minus overheads) of recent steps
        self._last_replan = 0

    def spent(self) -> float:
        """Seconds of the budget used: earlier processes' (``spent_s``) plus this one's since ``since``."""
        return self._spent_before + self._clock() - self._since

    def left(self) -> float:
        return self.budget_s - self.spent()

    def ran_out(self) -> bool:
        return self.left() < 0

    @contextmanager
    def overhead(self, kind: str) -> Iterator[None]:
        """Time a validation (``"val"``) or a save (``"save"``): its seconds become v or s, and leave t."""
        started = self._clock()
        try:
            yield
        finally:
            seconds = self._clock() - started
            self._overheads += seconds
            self.costs = replace(self.costs, **{f"{kind}_s": seconds})

    def start(self, step: int) -> None:
        """The end-to-end steps start (or resume) after ``step``: the step-time window starts here."""
        self._marks = deque([(step, self._clock() - self._overheads)])
        self._last_replan = step

    def step_done(self, step: int, total: int) -> Replan | None:
        """Record that ``step`` completed; a :class:`Replan` when one is due (module doc), else None."""
        window = max(1, math.ceil(REPLAN_FRACTION * total))
        self._marks.append((step, self._clock() - self._overheads))
        while len(self._marks) > 2 and self._marks[-1][0] - self._marks[1][0] >= window:
            self._marks.popleft()
        since = step - self._last_replan
        if step >= total or since < min(window, max(1, math.ceil((total - step) / 2))):
            return None
        return self.replan(step, total, pending=True)  # the loop validates and saves step k after this

    def replan(self, step: int, total: int, *, pending: bool = False) -> Replan:
        """The end that fits the time left, from the step time measured over the window (module doc);
        ``pending``: step ``step``'s own validation and save are still to come."""
        (first_step, first_t), (last_step, last_t) = self._marks[0], self._marks[-1]
        if last_step > first_step:
            self.costs = replace(self.costs, step_s=(last_t - first_t) / (last_step - first_step))
        self._last_replan = step
        left = self.left()
        new_total = steps_that_fit(left, self.costs, val_every=self.val_every, save_every=self.save_every, done=step,
                                   pending=pending)
        return Replan(step, total, new_total, self.costs, left)

    def state_dict(self) -> dict[str, float]:
        """What ``state.pt`` records so that ``--resume`` gets the time left (:func:`resumed_pacer`)."""
        return {"budget_s": self.budget_s, "spent_s": self.spent(), **self.costs.to_json()}


def resumed_pacer(recorded: dict[str, float], budget_s: float | None, *, val_every: int, save_every: int,
                  since: float | None = None) -> Pacer:
    """The :class:`Pacer` of a resumed run: ``budget_s`` (the recorded budget when None) minus the seconds spent."""
    costs = Costs(recorded["step_s"], recorded["val_s"], recorded["save_s"])
    return Pacer(recorded["budget_s"] if budget_s is None else budget_s, costs, val_every=val_every,
                 save_every=save_every, spent_s=recorded["spent_s"], since=since)


def time_steps(step: Callable[[int], Any], probe: int) -> float:
    """Median seconds of ``step(i)`` for ``i = 1 .. probe``, after an untimed ``step(0)``."""
    step(0)
    times = []
    for i in range(1, probe + 1):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def measure_costs(model: nn.Module, config: Any, batch: Callable[[int], Tensor], probe: int = 3, *,
                  validate: Callable[[Any, Path], Any] | None = None, **distiller_options: Any) -> Costs:
    """:class:`Costs` of the run, measured on a copy of ``model`` (the run's model is untouched):
    ``probe`` end-to-end :meth:`Distiller.step` calls, then ``validate(distiller, folder)`` once (when
    given) and one save of the state and of a student file, all writing into a temporary folder."""
    from .checkpoint import RunIdentity, save_trained_student
    from .distiller import Distiller

    twin = copy.deepcopy(model)
    rng = torch.get_rng_state()
    try:
        with Distiller(twin, config, **distiller_options) as distiller:
            step_s = time_steps(lambda i: distiller.step(batch(i)), probe)
            with tempfile.TemporaryDirectory(prefix="scales-budget-") as tmp:
                folder = Path(tmp)
                val_s = _one(lambda: validate(distiller, folder)) if validate is not None else 0.0
                save_s = _one(lambda: (distiller.save(folder / "state.pt", RunIdentity({}, "", "", 1)),
                                       save_trained_student(folder / "last.safetensors", distiller.eval_model, {}, {})))
    finally:
        torch.set_rng_state(rng)  # the run starts from the same RNG state as an unbudgeted one
    return Costs(step_s, val_s, save_s)


def measure_stage_seconds(stage: Any, probe: int = 3) -> float:
    """The block-wise stage's estimate ``b``: its steps times the step time of its last unit (on a twin)."""
    per_unit = stage.per_unit
    stage.load_state_dict({"done": (len(stage.plan.units) - 1) * per_unit})
    probe = min(probe, per_unit - 1)
    if probe < 1:  # one step per unit: time that step, its unit's set-up included
        return stage.total * _one(stage.step)
    return stage.total * time_steps(lambda i: stage.step(), probe)


def _one(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def plan_budget(text: str, student: Any, teacher: Any, config: Any, images: Any, device: torch.device, *,
                val_set: Any = None, since: float | None = None) -> BudgetPlan:
    """Measure (module doc) and pick the end-to-end steps for the budget ``text``; one line when none fit.
    ``since``: the ``time.perf_counter()`` the budget counts from (default: now)."""
    from .blockwise import make_stage
    from .data import TrainSet
    from .distiller import OutputDistillation, bf16_autocast

    budget_s = parse_budget(text)
    since = time.perf_counter() if since is None else since
    r = float(student.input_range)
    teacher_model = teacher.model.to(device).eval()
    for p in teacher_model.parameters():
        p.requires_grad_(False)
    train_set = TrainSet(images, student.scale, config.patch, config.seed, False)

    def batch(i: int) -> Tensor:
        return torch.stack([train_set[j][0] for j in range(i * config.batch, (i + 1) * config.batch)]).to(device) * r

    def validate(distiller: Any, folder: Path) -> None:  # as loop._Run.validate: score, write a best, draw
        from .checkpoint import save_trained_student
        from .plots import draw_curves

        psnr, ssim = distiller.validate(student, val_set) if val_set is not None else (0.0, 0.0)
        save_trained_student(folder / "student.safetensors", distiller.eval_model, {}, {})
        draw_curves(folder / "curves.png", [{"kind": "val", "step": 0, "psnr": psnr, "ssim": ssim}])

    model = student.model.to(device).train()
    costs = measure_costs(model, config, batch, validate=validate, teacher=teacher_model,
                          objective=OutputDistillation.from_config(config, r), device=device)
    stage_s = closing = 0.0
    if config.blockwise_steps:
        twin = copy.deepcopy(model)
        stage = make_stage(twin, teacher_model, student, config, train_set, device, bf16_autocast(device, config.autocast))
        stage_s, closing = measure_stage_seconds(stage), costs.val_s + costs.save_s  # the stage closes with both
    probe_s = time.perf_counter() - since
    steps = steps_that_fit(budget_s - probe_s - stage_s - closing, costs, save_every=config.save_every,
                           val_every=config.val_every if val_set is not None else 0)
    if steps < 1:
        raise ConfigError(
            f"--budget {text}: too short here (one step takes {costs.step_s:.2f} s, loading and measuring took {probe_s:.0f} s"
            + (f", one validation takes {costs.val_s:.1f} s" if costs.val_s else "")
            + (f", the block-wise stage needs ~{stage_s:.0f} s" if stage_s else "") + ")"
        )
    return BudgetPlan(budget_s, probe_s, costs, stage_s, steps)
