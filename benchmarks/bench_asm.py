"""helpers.asm: the in-process assembler against GNU as + objcopy run per call, on a held-out corpus.

The corpus is tests/gen_asm_corpus.py's grammar (not the one the tests tune on), 4 modes; every program's
bytes are checked against GNU as + GNU ld in the same run. The baseline is what pwntools' ``asm()`` does: write
the source, run ``as``, run ``objcopy -O binary -j .text``, read the bytes -- two subprocesses per call.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import Row, median, p95, times

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _gas_objcopy(source: str, arch: str, syntax: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="bench-asm-") as d:
        s, o, b = (os.path.join(d, n) for n in ("a.s", "a.o", "a.bin"))
        Path(s).write_text((".intel_syntax noprefix\n" if syntax == "intel" else "") + source + "\n")
        subprocess.run(["as", "--64" if arch == "x86_64" else "--32", "-o", o, s], check=True,
                       capture_output=True, timeout=60)
        subprocess.run(["objcopy", "-O", "binary", "-j", ".text", o, b], check=True, capture_output=True, timeout=60)
        return Path(b).read_bytes()


def bench_assembler(quick: bool = False) -> list[Row]:
    import gen_asm_corpus as G
    from helpers import asm
    from helpers.asm import assemble

    cases = G.with_references(G.corpus(seed=13, per_mode=8 if quick else 40))
    assemble("nop")                                                      # engines made, modules loaded
    base = times(lambda i: _gas_objcopy(cases[i % len(cases)]["source"], cases[i % len(cases)]["arch"],
                                        cases[i % len(cases)]["syntax"]), n=min(len(cases), 20 if quick else 60))
    same = sum(assemble(c["source"], c["arch"], c["syntax"], c["address"]).code.hex() == c["hex"] for c in cases)
    backends = [assemble(c["source"], c["arch"], c["syntax"], c["address"]).backend for c in cases]

    def fresh(i):               # an edited program: one new statement (a number changed), the rest met before
        c = cases[i % len(cases)]
        edit = f"mov ${i + 7}, %ecx" if c["syntax"] == "att" else f"mov ecx, {i + 7}"
        assemble(edit + "\n" + c["source"], c["arch"], c["syntax"], c["address"])

    def cold(i):                # nothing met before (every memo and cache empty)
        asm.memo_clear()
        c = cases[i % len(cases)]
        assemble(c["source"], c["arch"], c["syntax"], c["address"])

    def comment(i):             # an edit of a comment only: the same statements
        c = cases[i % len(cases)]
        assemble(c["source"] + f"\n# note {i}", c["arch"], c["syntax"], c["address"])

    def again(i):
        c = cases[i % len(cases)]
        assemble(c["source"], c["arch"], c["syntax"], c["address"])

    n = len(cases)
    t_fresh, t_cold, t_again = times(fresh, n), times(cold, n), times(again, n * 5)
    t_comment = times(comment, n)
    asm.memo_clear()
    b = median(base) * 1e3
    ident = f"byte-identical to GNU as on {same}/{len(cases)} held-out programs, {backends.count('keystone')} " \
            "in-process"
    return [
        Row("assemble: an edited program (one statement new)", median(t_fresh) * 1e3, "ms", "as + objcopy per call", b,
            goal="≥ 50× faster, byte-identical", met=median(t_fresh) * 50 <= median(base) and same == len(cases),
            note=ident),
        Row("assemble: a comment edited", median(t_comment) * 1e3, "ms", "as + objcopy per call", b),
        Row("assemble: a program never seen (all memos empty)", median(t_cold) * 1e3, "ms", "as + objcopy per call", b),
        Row("assemble: the same program again (cache)", median(t_again) * 1e3, "ms", "as + objcopy per call", b),
    ]


def bench_run_click(quick: bool = False) -> list[Row]:
    """The start page's assemble-and-run widget: one Run click on the example program."""
    from helpers import asm, playground
    from helpers.widgets.asmrun import AsmRunner

    w = AsmRunner()
    clicks = times(lambda i: w.run(), n=50 if quick else 300, warmup=3)
    real = playground.assemble

    def gnu(source, arch, syntax, address):
        return asm.assemble(source, arch=arch, syntax=syntax, address=address, backend="gnu-as")
    playground.assemble = gnu
    try:
        asm.cache_clear()
        old = times(lambda i: (asm.cache_clear(), w.run()), n=20 if quick else 60, warmup=1)
    finally:
        playground.assemble = real
    return Row("asm widget: Run click, p95", p95(clicks) * 1e3, "ms", "same click, GNU as per click (p95)",
               p95(old) * 1e3, goal="< 16 ms p95", met=p95(clicks) < 0.016)


def _text_bytes() -> tuple[bytes, int, Path]:
    """.text of a real program (the C unwinding chain, built by zig), and a file objdump can read."""
    from elftools.elf.elffile import ELFFile

    from helpers import toolchain
    src = "\n".join(f"long f{i}(long *a, long n) {{ long s = 0; for (long k = 0; k < n; k++) s += a[k] * {i} ^ "
                    f"(s >> 3); return s + {i}; }}" for i in range(120))
    obj = toolchain.cc(src, target="x86_64-linux-musl", flags=["-O2"]).path
    with open(obj, "rb") as f:
        text = ELFFile(f).get_section_by_name(".text")
        return text.data(), text["sh_addr"], obj


def bench_disassemble(quick: bool = False) -> list[Row]:
    from helpers.asm import disassemble, disassemble_text
    code, addr, obj = _text_bytes()
    n_insns = len(disassemble_text(code, address=addr))
    k = 3 if quick else 10
    objdump = median(times(lambda i: subprocess.run(["objdump", "-d", "-j", ".text", str(obj)], check=True,
                                                    capture_output=True, timeout=60), n=k))
    full = median(times(lambda i: disassemble(code, address=addr), n=k))
    text = median(times(lambda i: disassemble_text(code, address=addr), n=k))
    return [Row(f"disassemble (register details), {n_insns} insns", full * 1e3, "ms", "objdump -d (a subprocess)",
                objdump * 1e3),
            Row(f"disassemble_text (text only), {n_insns} insns", text * 1e3, "ms", "disassemble (details)",
                full * 1e3)]


def bench_register_names(quick: bool = False) -> Row:
    """helpers.asm's set of register names at import: one capstone instance, not one per name."""
    import capstone

    from helpers import asm
    n = capstone.x86.X86_REG_ENDING

    def one(i):
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        return {cs.reg_name(k) for k in range(1, n)} - {None}

    def per_name(i):             # what the module did before issue 13
        return {capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).reg_name(k) for k in range(1, n)} - {None}
    assert one(0) == per_name(0) == asm._REGISTERS
    k = 5 if quick else 20
    return Row("register-name set at import (1 capstone instance)", median(times(one, k)) * 1e3, "ms",
               f"one instance per name ({n - 1})", median(times(per_name, k)) * 1e3)
