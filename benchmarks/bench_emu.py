"""Benchmark for helpers.emu: untraced and traced instructions per second, against a naive trace hook.

Run (from the repository root):  .venv/bin/python benchmarks/bench_emu.py [--steps N]

The naive baseline is what the issue describes: a Python UC_HOOK_CODE callback (through unicorn's own
binding) that reads every traced register with ``reg_read`` on every instruction, plus a UC_HOOK_MEM_WRITE
callback. helpers.emu's trace records the same information (GPRs, PC, flags, memory writes) and computes
diffs lazily. All three are measured in this process on the same program; each figure is the best of
``--repeat`` runs. Two naive baselines: one ``reg_read`` call per register, and the binding's
``reg_read_batch``. Not a timed test: numbers depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import unicorn

from helpers.emu import DATA_BASE, Machine, TraceSpec

# mov ecx, N ; l: add rax, rcx ; mov qword ptr [DATA_BASE], rax ; xor rbx, rax ; dec rcx ; jnz l ; hlt
# 5 instructions per iteration, one of them a memory write.
def program(iterations: int) -> bytes:
    return (b"\xb9" + iterations.to_bytes(4, "little")
            + b"\x48\x01\xc8"
            + b"\x48\x89\x04\x25" + DATA_BASE.to_bytes(4, "little")
            + b"\x48\x31\xc3"
            + b"\x48\xff\xc9"
            + b"\x75\xed"
            + b"\xf4")


def insns_for(iterations: int) -> int:
    return 1 + 5 * iterations + 1


CPU = {}   # label -> best process CPU seconds (user + sys), which other processes' load does not inflate


def best(fn, repeat: int, label: str) -> float:
    walls, cpus = [], []
    for _ in range(repeat):
        c = time.process_time()
        walls.append(fn())
        cpus.append(time.process_time() - c)
    CPU[label] = min(cpus)
    return min(walls)


def run_untraced(iterations: int) -> float:
    m = Machine("x86_64")
    t = time.perf_counter()
    out = m.run(program(iterations), max_insns=10**9, timeout=60)
    dt = time.perf_counter() - t
    assert out.status == "halted" and out.insns == insns_for(iterations), out.message
    return dt


def run_traced(iterations: int, fallback: bool = False) -> float:
    m = Machine("x86_64")
    if fallback:    # what helpers.emu does when its register-file calibration is unavailable
        m._env = None
    t = time.perf_counter()
    out = m.run(program(iterations), max_insns=10**9, timeout=60,
                trace=TraceSpec(max_steps=insns_for(iterations)))
    dt = time.perf_counter() - t
    assert out.status == "halted" and out.trace.steps == insns_for(iterations), out.message
    return dt


def run_naive(iterations: int, batch: bool = False) -> float:
    m = Machine("x86_64")
    names = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
             "r14", "r15", "rip", "rflags"]
    ids = [m._table[n][0] for n in names]
    states, writes = [], []

    def on_code(uc, address, size, _):
        states.append(tuple(uc.reg_read(i) for i in ids))

    def on_code_batch(uc, address, size, _):
        states.append(uc.reg_read_batch(ids))

    def on_write(uc, access, address, size, value, _):
        writes.append((len(states) - 1, address, size, value))
    m.uc.hook_add(unicorn.UC_HOOK_CODE, on_code_batch if batch else on_code)
    m.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, on_write)
    t = time.perf_counter()
    out = m.run(program(iterations), max_insns=10**9, timeout=600)
    dt = time.perf_counter() - t
    assert out.status == "halted" and len(states) == insns_for(iterations), out.message
    return dt


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1_000_000, help="traced instructions per run (default 1e6)")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    it_traced = max(1, a.steps // 5)
    it_naive = max(1, it_traced // 5)            # the naive hook is slow: a fifth of the work
    it_untraced = it_traced * 20
    res = {
        "untraced": insns_for(it_untraced) / best(lambda: run_untraced(it_untraced), a.repeat, "untraced"),
        "traced": insns_for(it_traced) / best(lambda: run_traced(it_traced), a.repeat, "traced"),
        "fallback": insns_for(it_naive) / best(lambda: run_traced(it_naive, fallback=True), a.repeat, "fallback"),
        "naive": insns_for(it_naive) / best(lambda: run_naive(it_naive), a.repeat, "naive"),
        "naive_batch": insns_for(it_naive) / best(lambda: run_naive(it_naive, batch=True), a.repeat, "naive_batch"),
    }
    n = {"untraced": insns_for(it_untraced), "traced": insns_for(it_traced), "fallback": insns_for(it_naive),
         "naive": insns_for(it_naive), "naive_batch": insns_for(it_naive)}
    cpu = {k: n[k] / CPU[k] for k in n}
    m = Machine("x86_64")
    out = m.run(program(1000), trace=True)
    t = time.perf_counter()
    rows = out.trace.table(limit=1000)
    inspect = (time.perf_counter() - t) / len(rows)   # wall clock
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"helpers.emu benchmark (python {platform.python_version()}, unicorn {unicorn.__version__}, "
          f"fast paths {Machine().fast})")
    print(f"  host: {os.cpu_count()} CPUs, load average {load:.1f} at the end (other work slows every figure)")
    print(f"  untraced run:                 {res['untraced'] / 1e6:8.2f} M instructions/s")
    print(f"  traced run (helpers.emu):     {res['traced'] / 1e6:8.2f} M instructions/s")
    print(f"  traced, fallback path:        {res['fallback'] / 1e6:8.2f} M instructions/s"
          "  (raw uc_reg_read_batch per step)")
    print(f"  naive hook, reg_read each:    {res['naive'] / 1e6:8.2f} M instructions/s")
    print(f"  naive hook, reg_read_batch:   {res['naive_batch'] / 1e6:8.2f} M instructions/s")
    print(f"  traced / naive (reg_read):    {res['traced'] / res['naive']:8.1f} x")
    print(f"  traced / naive (batch):       {res['traced'] / res['naive_batch']:8.1f} x")
    print(f"  goal of 1 M traced/s:         {'met' if res['traced'] >= 1e6 else 'NOT met'} (wall clock)")
    print("  per CPU-second of this process (unaffected by other processes' load):")
    for k, label in (("untraced", "untraced"), ("traced", "traced (helpers.emu)"), ("fallback", "traced, fallback"),
                     ("naive", "naive, reg_read each"), ("naive_batch", "naive, reg_read_batch")):
        print(f"    {label + ':':28s}{cpu[k] / 1e6:8.2f} M instructions/s")
    print(f"    goal of 1 M traced/s:       {'met' if cpu['traced'] >= 1e6 else 'NOT met'}")
    print(f"  lazy inspection (table row):  {inspect * 1e6:8.1f} us per step")
    return {"wall": res, "cpu": cpu}


if __name__ == "__main__":
    main()


def bench_trace(quick: bool = False) -> list:
    """`make bench` rows: traced emulation against a naive per-instruction hook, in the same run."""
    from harness import Row
    it = 20_000 if quick else 100_000
    best(lambda: run_traced(it), 1 if quick else 3, "traced")
    best(lambda: run_naive(it // 5), 1 if quick else 3, "naive")
    traced, naive = insns_for(it) / CPU["traced"], insns_for(it // 5) / CPU["naive"]   # per CPU-second
    return Row("emulator: traced run, per CPU-second", traced / 1e6, "M insn/s", "naive hook, reg_read each",
               naive / 1e6, higher_is_better=True, goal="≥ 1 M insn/s", met=traced >= 1e6)


def bench_machine_memory(quick: bool = False) -> list:
    """Address space one Machine reserves, against a unicorn engine with its default translation buffer."""
    import gc
    from harness import Row
    from helpers import emu

    def vm():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmSize")) / 1024
    emu._probe_layout()
    gc.collect()
    before = vm()
    keep = [emu.Machine() for _ in range(5)]
    ours = (vm() - before) / 5
    del keep
    freed = vm() - before
    before = vm()
    raw = []
    for _ in range(5):
        u = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        u.reg_read(unicorn.x86_const.UC_X86_REG_RAX)     # unicorn initialises (and reserves) lazily
        raw.append(u)
    default = (vm() - before) / 5
    del raw
    gc.collect()
    return Row("emulator: address space per Machine", ours, "MiB", "a unicorn engine, default buffer", default,
               goal="freed with the machine", met=freed < ours, note=f"{freed:.0f} MiB left after 5 were dropped")
