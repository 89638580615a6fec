"""Benchmark for helpers.abi: chapter 2a's emulated calls with one reused machine per convention, against a
fresh emulator machine for every call (what the chapter did before: 849 machines in one run).

Run (from the repository root):  .venv/bin/python benchmarks/bench_abi.py [--repeat R]

Both variants run the same work: abi.agreement for every convention (11 callees x 5 argument lists) and
abi.observed_arguments for 0..8 arguments. The baseline empties abi's machine pool before every call, so each
call builds its own unicorn engine. Prints both times, their ratio and how many machines each made. Not a timed
test: numbers depend on the machine and its load; the ratio is what to read.
"""
from __future__ import annotations

import argparse
import time
from unittest import mock

from helpers import abi, emu


def workload() -> int:
    calls = 0
    for name in abi.CONVENTIONS:
        calls += abi.agreement(name, "go" if name == "go-abiinternal" else "zig")
        for n in range(abi.WIDGET_MAX_ARGS + 1):
            abi.observed_arguments(name, n)
            calls += 1
    return calls


def measured(fresh: bool, repeat: int) -> tuple[float, int, int]:
    made = [0]
    real_init = emu.Machine.__init__

    def counting(self, *a, **k):
        made[0] += 1
        real_init(self, *a, **k)
    real_machine = abi._machine

    def fresh_machine(c, text):
        abi._POOL.clear()
        abi._POOL_LOADED.clear()
        return real_machine(c, text)
    best, calls = float("inf"), 0
    for _ in range(repeat):
        abi._POOL.clear()
        abi._POOL_LOADED.clear()
        made[0] = 0
        with mock.patch.object(emu.Machine, "__init__", counting), \
                mock.patch.object(abi, "_machine", fresh_machine if fresh else real_machine):
            t = time.perf_counter()
            calls = workload()
            best = min(best, time.perf_counter() - t)
    return best, calls, made[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    workload()                                   # warm: builds and ELF reads are cached after this
    t_new, calls, m_new = measured(True, a.repeat)
    t_pool, _, m_pool = measured(False, a.repeat)
    print(f"{calls} emulated calls")
    print(f"  fresh machine per call (baseline): {t_new:.3f} s, {m_new} machines")
    print(f"  one machine per convention:        {t_pool:.3f} s, {m_pool} machines")
    print(f"  ratio: {t_new / t_pool:.1f}x faster")


if __name__ == "__main__":
    main()
