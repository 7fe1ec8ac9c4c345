"""``scales_cli.machine``: CPU model and kernel-deciding ISA flags, in bench output and its JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from conftest import run_cli
from scales_cli.archs._registry import spec_by_name
from scales_cli.machine import KERNEL_FLAGS, Machine, parse_cpuinfo, probe

# Two processors of an AVX-512 EPYC (flags abridged), as /proc/cpuinfo lists them.
EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme sse2 avx avx2 avx512f avx512dq avx_vnni avx512_bf16 avx512_vnni avx512_bitalg avx512_vpopcntdq
bugs\t\t: sysret_ss_attrs

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme sse2 avx avx2 avx512f avx512_vnni avx512_vpopcntdq
"""
# AVX2 only; avx_vnni (the VEX form) must not be read as avx512_vnni.
AVX2 = "model name : Intel(R) Core(TM) i7-12700\nflags : fpu sse2 avx avx2 avx_vnni fma\n"
ARM = "processor : 0\nBogoMIPS : 50.00\nFeatures : fp asimd evtstrm aes crc32\nCPU part : 0xd0c\n"


def test_parse_avx512_epyc():
    assert parse_cpuinfo(EPYC) == ("AMD EPYC 9R14 96-Core Processor", ("avx512_vpopcntdq", "avx512_vnni", "avx512f", "avx2"))


def test_parse_matrix_tiles_of_a_sapphire_rapids_xeon():
    spr = "model name : Intel(R) Xeon(R) Processor\nflags : avx2 avx512f avx512_vnni avx512_vpopcntdq amx_bf16 amx_tile amx_int8\n"
    assert parse_cpuinfo(spr) == ("Intel(R) Xeon(R) Processor", KERNEL_FLAGS)


def test_parse_avx2_only_and_exact_flag_names():
    assert parse_cpuinfo(AVX2) == ("Intel(R) Core(TM) i7-12700", ("avx2",))


def test_no_flags_line_is_unknown_not_none_present():
    name, isa = parse_cpuinfo(ARM)
    assert (name, isa) == ("unknown", None)
    line = Machine(name, isa, 4, 2, "2026.4.1").describe()
    assert "ISA unknown" in line and "+" not in line


def test_describe_is_one_line_naming_present_and_absent_flags():
    line = Machine("Intel i7", ("avx2",), 8, 2, "2026.4.1", load_1min=3.25).describe()
    assert line == "Intel i7; ISA -avx512_vpopcntdq -avx512_vnni -avx512f +avx2 -amx_int8 -amx_bf16; 2 threads of 8 CPUs; OpenVINO 2026.4.1; load 3.2"


def test_probe_reads_the_given_cpuinfo_and_survives_a_missing_one(tmp_path: Path):
    info = tmp_path / "cpuinfo"
    info.write_text(AVX2)
    found = probe(3, info)
    assert (found.cpu, found.isa, found.threads) == ("Intel(R) Core(TM) i7-12700", ("avx2",), 3)
    assert found.openvino[:4].isdigit()  # openvino is a dependency: its release is known
    missing = probe(None, tmp_path / "absent")
    assert missing.isa is None and missing.cpu and "\n" not in missing.describe()


def test_bench_json_and_table_carry_the_machine(tmp_path: Path):
    path = tmp_path / "m.pth"
    torch.save(spec_by_name("imdn").build(scale=2, in_nc=3, nf=16, num_modules=1, out_nc=3).state_dict(), path)
    cli = run_cli("bench", path, "--size", "16x12", "--repeats", "1", "--threads", "1", "--json")
    assert cli.code == 0, cli.err
    machine = json.loads(cli.out)["machine"]
    here = probe(1)
    assert machine["threads"] == 1 and machine["cpu"] == here.cpu and machine["openvino"] == here.openvino
    assert machine["describe"].startswith(here.describe().split("; load")[0])
    assert machine["isa"] is None or set(machine["isa"]) == set(KERNEL_FLAGS)
    table = run_cli("bench", path, "--size", "16x12", "--repeats", "1", "--threads", "1")
    assert table.code == 0 and "machine: " in table.out and "ISA " in table.out


def test_runtimes_take_torchs_thread_count_unless_given():
    """One knob: OpenVINO and onnxruntime run on as many threads as torch, so a process limited to one
    core (OMP_NUM_THREADS=1, a test worker) does not oversubscribe the CPU with the other runtimes."""
    from scales_cli.export.openvino import compile_ir
    from scales_cli.machine import runtime_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert runtime_threads() == 1 and runtime_threads(3) == 3
        import openvino as ov

        x = ov.opset13.parameter([1, 3, -1, -1], ov.Type.f32)
        model = ov.Model([ov.opset13.relu(x)], [x])
        assert compile_ir(model, (1, 3, 4, 4)).get_property("INFERENCE_NUM_THREADS") == 1
        # OpenVINO caps the count at the cores the process may run on (taskset -c 0: 1)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        assert compile_ir(model, (1, 3, 4, 4), threads=2).get_property("INFERENCE_NUM_THREADS") == min(2, cores)
    finally:
        torch.set_num_threads(before)
