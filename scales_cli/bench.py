"""Time whole forward passes of several models the same way, interleaved, and report their ratios.

Interleaving (model A, B, C, A, B, C, ...) exposes every model to the same machine state — a busy
neighbour, a frequency change — so the *ratios* of medians hold even where the absolute times drift.
Each model is warmed up first (OpenVINO compiles for the input shape on its first call; torch
allocates its buffers). Exported files (``.xml``/``.onnx``) run in their runtime behind the same
torch interface as checkpoints (:func:`scales_cli.loading.load`), so one call compares a torch FP
teacher, an OpenVINO FP teacher and an OpenVINO binary student.

>>> from scales_cli.bench import bench                      # doctest: +SKIP
>>> result = bench([("fp", teacher), ("binary", student)])  # doctest: +SKIP
>>> result.speedup("binary", over="fp")                     # doctest: +SKIP
2.4
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import torch

from .archs.descriptor import SRDescriptor
from .errors import ScalesError
from .inputs import Upscaler
from .machine import Machine, probe

DEFAULT_SIZE = (320, 180)  # LR width x height: a 1280x720 output at x4, the SR papers' OPs size


@dataclass(frozen=True)
class Timing:
    """Seconds per forward pass of one model, one entry per repeat."""

    label: str
    runtime: str
    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class BenchResult:
    size: tuple[int, int]
    threads: int
    repeats: int
    timings: tuple[Timing, ...]
    machine: Machine | None = None  # CPU and ISA: ratios differ between machines (scales_cli.machine)

    def timing(self, label: str) -> Timing:
        found = next((t for t in self.timings if t.label == label), None)
        if found is None:
            raise KeyError(label)
        return found

    def speedup(self, label: str, *, over: str) -> float:
        """How many times faster ``label`` is than ``over`` (ratio of medians)."""
        return self.timing(over).median / self.timing(label).median

    def to_json(self) -> dict[str, Any]:
        base = self.timings[0]
        return {
            "input_size": list(self.size),
            "threads": self.threads,
            "repeats": self.repeats,
            "models": [
                {"label": t.label, "runtime": t.runtime, "median_s": t.median, "min_s": min(t.seconds), "max_s": max(t.seconds),
                 "speedup_vs_first": base.median / t.median}
                for t in self.timings
            ],
            "machine": None if self.machine is None else self.machine.to_json(),
        }


def bench(
    models: Sequence[tuple[str, SRDescriptor]],
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    repeats: int = 7,
    threads: int = 2,
    seed: int = 0,
    on_run: Callable[[], None] | None = None,
) -> BenchResult:
    """Median seconds per forward pass of each model on one seeded ``1x3xHxW`` input, interleaved.

    Each model is fed as :class:`~scales_cli.inputs.Upscaler` feeds it (its input range, sides padded to
    its smallest input); only the forward pass itself is timed.
    """
    if not models:
        raise ScalesError("nothing to time: pass at least one MODEL")
    if repeats < 1:
        raise ScalesError(f"--repeats {repeats}: expected at least 1")
    if threads < 1:
        raise ScalesError(f"--threads {threads}: expected at least 1")
    width, height = size
    torch.set_num_threads(threads)
    for _, desc in models:
        runner = getattr(desc.model, "runner", None)
        if runner is not None and hasattr(runner, "threads"):
            runner.threads = threads  # exported models: the runtime gets the same thread budget
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
    upscalers = [Upscaler.of(desc) for _, desc in models]
    samples: list[list[float]] = [[] for _ in models]
    with ExitStack() as placed:
        for up in upscalers:  # every model in eval mode for the run, its own flags restored after
            placed.enter_context(up.placed())
        inputs = [up.model_input(x) for up in upscalers]  # scaled to its range, padded to its smallest side
        for up, xi in zip(upscalers, inputs, strict=True):
            up.run_model(xi)  # warm-up: shape-specific compilation and allocation are not timed
        for _ in range(repeats):
            for i, (up, xi) in enumerate(zip(upscalers, inputs, strict=True)):
                start = time.perf_counter()
                up.run_model(xi)
                samples[i].append(time.perf_counter() - start)
                if on_run is not None:
                    on_run()
    timings = tuple(
        Timing(label, str(desc.extra.get("runtime", "torch")), tuple(s)) for (label, desc), s in zip(models, samples, strict=True)
    )
    # probed after the runs: its 1-minute load average tells how busy the machine was while they ran
    return BenchResult((width, height), threads, repeats, timings, probe(threads))
