"""What machine a timing was taken on: CPU model, the ISA features that pick OpenVINO's kernels, threads.

Speed ratios between a binary student, an INT8 model and an FP32 model are properties of the machine,
not of the models alone. OpenVINO's CPU plugin picks its kernels from the instruction set:

- ``avx512_vpopcntdq``: a vector popcount, used by the BinaryConvolution kernel (the XNOR-popcount of a
  1-bit conv); without it the popcount is emulated with shuffles and the binary kernel is several
  times slower (measured: ~10x an FP conv with it, ~2x on an AVX2-only CPU, docs/results.md);
- ``avx512_vnni``: 8-bit multiply-accumulate in one instruction (INT8 convolutions, ``*_I8`` kernels);
- ``avx512f`` / ``avx2``: the width of every FP kernel;
- ``amx_int8`` / ``amx_bf16``: matrix tiles (Intel Sapphire Rapids and later). oneDNN runs INT8 and bf16
  convolutions on them, in OpenVINO (INT8 models) and in torch (``scales finetune --autocast bf16``,
  whose speed-up over float32 depends on them).

So each benchmark prints :meth:`Machine.describe` beside its figures, and ``scales bench --json`` stores
:meth:`Machine.to_json`, so that figures from different machines are told apart.

>>> from scales_cli.machine import parse_cpuinfo
>>> parse_cpuinfo("model name : AMD EPYC\\nflags : fpu avx2 avx512f avx512_vnni\\n")
('AMD EPYC', ('avx512_vnni', 'avx512f', 'avx2'))
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

KERNEL_FLAGS: tuple[str, ...] = ("avx512_vpopcntdq", "avx512_vnni", "avx512f", "avx2", "amx_int8", "amx_bf16")
"""The /proc/cpuinfo flags that decide OpenVINO's (and oneDNN's) CPU kernels: the vector ones, the most
specific first, then the matrix tiles."""

UNKNOWN = "unknown"
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Machine:
    """The CPU a figure was measured on, and how much of it the measurement used.

    ``isa`` holds the :data:`KERNEL_FLAGS` the CPU has; ``None`` where they could not be read (not
    Linux, or no flags line), which is not the same as "none of them".
    """

    cpu: str
    isa: tuple[str, ...] | None
    logical_cpus: int
    threads: int | None
    openvino: str
    load_1min: float | None = None  # the 1-minute load average when probed: how busy the machine was

    def describe(self) -> str:
        """One line, e.g. ``AMD EPYC; ISA +avx512_vpopcntdq +avx512_vnni +avx512f +avx2 -amx_int8 -amx_bf16; 2 threads of 2 CPUs; OpenVINO 2026.4.1; load 1.3``."""
        if self.isa is None:
            isa = f"ISA {UNKNOWN}"
        else:
            isa = "ISA " + " ".join(("+" if flag in self.isa else "-") + flag for flag in KERNEL_FLAGS)
        threads = f"{self.threads} threads of {self.logical_cpus} CPUs" if self.threads else f"{self.logical_cpus} CPUs"
        parts = [self.cpu, isa, threads, f"OpenVINO {self.openvino}"]
        if self.load_1min is not None:
            parts.append(f"load {self.load_1min:.1f}")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "cpu": self.cpu,
            "isa": None if self.isa is None else {flag: flag in self.isa for flag in KERNEL_FLAGS},
            "logical_cpus": self.logical_cpus,
            "threads": self.threads,
            "openvino": self.openvino,
            "load_1min": self.load_1min,
            "describe": self.describe(),
        }


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...] | None]:
    """CPU model name and the :data:`KERNEL_FLAGS` present, from the text of ``/proc/cpuinfo``.

    Reads the first processor's ``model name`` and ``flags`` lines (x86; every core lists the same).
    Without a ``flags`` line (ARM says ``Features``, with none of these flags) the ISA is ``None``.
    """
    name, flags = UNKNOWN, None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key == "model name" and name == UNKNOWN and value.strip():
            name = value.strip()
        elif key == "flags" and flags is None:
            present = set(value.split())
            flags = tuple(flag for flag in KERNEL_FLAGS if flag in present)
    return name, flags


def read_cpu(cpuinfo: Path = CPUINFO) -> tuple[str, tuple[str, ...] | None]:
    """This CPU's model name and :data:`KERNEL_FLAGS`; off Linux the name from platform, the flags unknown."""
    try:
        return parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    except OSError:
        return (platform.processor() or platform.machine() or UNKNOWN), None


@lru_cache(maxsize=1)
def local_isa() -> tuple[str, ...] | None:
    """This CPU's :data:`KERNEL_FLAGS` (``None`` where unknown), read once: choices such as
    ``scales finetune --autocast auto`` depend on them and are made many times in one process."""
    return read_cpu()[1]


def openvino_version() -> str:
    """The installed OpenVINO release (``2026.4.1``), read from package metadata without importing it."""
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return UNKNOWN


def probe(threads: int | None = None, cpuinfo: Path = CPUINFO) -> Machine:
    """This machine; ``threads`` is what the measurement used (``None``: not stated)."""
    name, isa = read_cpu(cpuinfo)
    try:
        load: float | None = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = None
    return Machine(cpu=name, isa=isa, logical_cpus=os.cpu_count() or 0, threads=threads, openvino=openvino_version(),
                   load_1min=load)


def runtime_threads(threads: int | None = None) -> int:
    """Intra-op threads for OpenVINO and onnxruntime: ``threads`` when given, else torch's count.

    Each runtime otherwise sizes its own pool to the whole CPU, so a process (or a test worker) that
    asked torch for fewer threads (``OMP_NUM_THREADS``, ``torch.set_num_threads``) would still run
    OpenVINO and onnxruntime on every core: on a 2-core machine with two busy processes that
    oversubscription made the test suite about 1.5x slower. One knob sets all three runtimes.
    """
    if threads:
        return int(threads)
    import torch

    return max(1, torch.get_num_threads())
