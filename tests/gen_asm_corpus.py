"""A held-out corpus for helpers.asm: random programs from a grammar of its own, with GNU as references.

Run:  .venv/bin/python tests/gen_asm_corpus.py [--seed N] [--programs 40] [--out corpus.json]

The grammar here is not the one the tests in test_asm.py draw from (nor the hand-written references of
gen_asm_refs.py): other mnemonics, operand shapes and number spellings, labels with forward and backward
jumps, in both modes and both syntaxes. Nothing in helpers.asm was tuned on it, and every run can draw a new
sample (a fresh seed), so it measures what a reader's next program will meet. References come from GNU as
and GNU ld (``-Ttext``, ``--oformat=binary``) through helpers.toolchain.run, never from helpers.asm; a
program GNU as rejects or warns about is dropped (the reader would get that message too).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.toolchain import run  # noqa: E402

MODES = [("x86_64", "att"), ("x86_64", "intel"), ("x86_32", "att"), ("x86_32", "intel")]
GPR = {64: ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r12", "r15"],
       32: ["eax", "ebx", "ecx", "edx", "esi", "edi", "ebp"],
       16: ["ax", "bx", "cx", "dx", "si", "di"],
       8: ["al", "bl", "cl", "dl"]}
X64_ONLY = {"r8d", "r9d", "r12d", "r15d"}
TWO = ["mov", "add", "sub", "and", "or", "xor", "cmp", "adc", "sbb", "test", "xchg"]
ONE = ["inc", "dec", "neg", "not", "mul", "div", "idiv"]
NOARG = {"x86_64": ["nop", "ret", "leave", "cqto", "cltq", "cld", "std", "clc", "stc", "cmc", "pause", "ud2"],
         "x86_32": ["nop", "ret", "leave", "cltd", "cwtl", "cld", "std", "clc", "stc", "cmc", "pause", "ud2"]}
SUFFIX = {8: "b", 16: "w", 32: "l", 64: "q"}
PTR = {8: "byte", 16: "word", 32: "dword", 64: "qword"}
CC = ["e", "ne", "b", "ae", "l", "ge", "le", "g", "s", "ns", "o"]


def _num(rng, lo, hi):
    v = rng.randint(lo, hi)
    if v < 0:
        return f"-{abs(v)}" if rng.random() < 0.5 else f"-{abs(v):#x}"
    return str(v) if rng.random() < 0.4 else f"{v:#x}"


def _widths(arch):
    return [8, 16, 32, 64] if arch == "x86_64" else [8, 16, 32]


def _mem(rng, arch, syntax, bits):
    base = rng.choice(GPR[64 if arch == "x86_64" else 32][:7])
    index = rng.choice([None] + [r for r in GPR[64 if arch == "x86_64" else 32][:6] if r not in ("rsp", "esp")])
    scale = rng.choice([1, 2, 4, 8])
    disp = rng.choice([0, rng.randint(-128, 127), rng.randint(-(1 << 20), 1 << 20)])
    if syntax == "att":
        idx = f",%{index},{scale}" if index else ""
        return f"{disp if disp else ''}(%{base}{idx})"
    inner = base + (f"+{index}*{scale}" if index else "") + (f"{disp:+d}" if disp else "")
    return f"{PTR[bits]} ptr [{inner}]"


def statement(rng, arch, syntax):
    bits = rng.choice(_widths(arch))
    regs = [r for r in GPR[bits] if arch == "x86_64" or r not in X64_ONLY]
    r1, r2 = rng.choice(regs), rng.choice(regs)
    att = syntax == "att"
    lo, hi = {8: (-128, 127), 16: (-32768, 32767), 32: (-(1 << 31), (1 << 31) - 1), 64: (-(1 << 31), (1 << 31) - 1)}[bits]
    kind = rng.choice(["rr", "ri", "rm", "mr", "mi", "one", "onem", "noarg", "push", "setcc", "cmov", "shift",
                       "lea", "movzx"])
    if kind == "rr":
        m = rng.choice(TWO)
        return f"{m} %{r2}, %{r1}" if att else f"{m} {r1}, {r2}"
    if kind == "ri":
        m = rng.choice([t for t in TWO if t != "xchg"])
        imm = _num(rng, lo, hi)
        return f"{m} ${imm}, %{r1}" if att else f"{m} {r1}, {imm}"
    if kind in ("rm", "mr"):
        m = rng.choice([t for t in TWO if t != "test" or kind == "mr"])
        mem = _mem(rng, arch, syntax, bits)
        if kind == "rm":
            return f"{m} {mem}, %{r1}" if att else f"{m} {r1}, {mem}"
        return f"{m} %{r1}, {mem}" if att else f"{m} {mem}, {r1}"
    if kind == "mi":
        m = rng.choice([t for t in TWO if t != "xchg"])
        return (f"{m}{SUFFIX[bits]} ${_num(rng, lo, hi)}, {_mem(rng, arch, syntax, bits)}" if att
                else f"{m} {_mem(rng, arch, syntax, bits)}, {_num(rng, lo, hi)}")
    if kind == "one":
        m = rng.choice(ONE)
        return f"{m} %{r1}" if att else f"{m} {r1}"
    if kind == "onem":
        m = rng.choice(ONE[:4])
        return f"{m}{SUFFIX[bits]} {_mem(rng, arch, syntax, bits)}" if att else f"{m} {_mem(rng, arch, syntax, bits)}"
    if kind == "noarg":
        return rng.choice(NOARG[arch])
    if kind == "push":
        w = 64 if arch == "x86_64" else 32
        r = rng.choice(GPR[w])
        op = rng.choice(["push", "pop"])
        if rng.random() < 0.3 and op == "push":
            imm = _num(rng, -128, 127)
            return f"push ${imm}" if att else f"push {imm}"
        return f"{op} %{r}" if att else f"{op} {r}"
    if kind == "setcc":
        r = rng.choice(GPR[8])
        return f"set{rng.choice(CC)} %{r}" if att else f"set{rng.choice(CC)} {r}"
    if kind == "cmov":
        w = rng.choice([32, 64] if arch == "x86_64" else [32])
        a, b = rng.choice(GPR[w]), rng.choice(GPR[w])
        c = rng.choice(CC)
        return f"cmov{c} %{b}, %{a}" if att else f"cmov{c} {a}, {b}"
    if kind == "shift":
        m = rng.choice(["shl", "shr", "sar", "rol", "ror"])
        n = _num(rng, 2, 31)
        return f"{m} ${n}, %{r1}" if att else f"{m} {r1}, {n}"
    if kind == "lea":
        w = 64 if arch == "x86_64" else 32
        r = rng.choice(GPR[w])
        mem = _mem(rng, arch, syntax, w)
        return f"lea {mem}, %{r}" if att else f"lea {r}, {mem.split(' ptr ')[-1]}"
    w = 64 if arch == "x86_64" else 32
    dst = rng.choice(GPR[w if rng.random() < 0.5 else 32])
    src = rng.choice(GPR[8])
    if att:
        return f"movzb{'q' if dst in GPR[64] else 'l'} %{src}, %{dst}"
    return f"movzx {dst}, {src}"


def program(rng, arch, syntax, size=None):
    size = size or rng.randint(1, 12)
    lines, labels = [], 0
    for _ in range(size):
        r = rng.random()
        if r < 0.12:
            lines.append(f"L{labels}:")
            labels += 1
        elif r < 0.22 and labels:
            j = rng.choice(["jmp", "je", "jne", "jl", "jg", "call"])
            lines.append(f"{j} L{rng.randrange(labels + 1)}")
        else:
            lines.append(statement(rng, arch, syntax))
    if any(l.endswith(f"L{labels}") for l in lines):
        lines.append(f"L{labels}:")          # a forward target
        lines.append("nop")
    return "\n".join(lines)


def corpus(seed: int, per_mode: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"arch": a, "syntax": s, "address": rng.choice([0, 0x1000, 0x400000, 0x1000000]),
             "source": program(rng, a, s)} for a, s in MODES for _ in range(per_mode)]


def reference(arch: str, syntax: str, address: int, source: str) -> bytes | None:
    """GNU as + GNU ld bytes at ``address``, or None when GNU as rejects or warns about the program."""
    asm, ld = shutil.which("as"), shutil.which("ld")
    with tempfile.TemporaryDirectory(prefix="asm-corpus-") as d:
        s, o, b = (os.path.join(d, n) for n in ("in.s", "in.o", "out.bin"))
        Path(s).write_text((".intel_syntax noprefix\n" if syntax == "intel" else "") + source + "\n")
        p = run([asm, "--64" if arch == "x86_64" else "--32", "-o", o, s], timeout=30)
        if p.returncode != 0 or "Warning" in p.stderr:
            return None
        emul = "elf_x86_64" if arch == "x86_64" else "elf_i386"
        p = run([ld, "-m", emul, f"-Ttext={address:#x}", "-e", f"{address:#x}", "--oformat=binary", "-o", b, o],
                timeout=30)
        return Path(b).read_bytes() if p.returncode == 0 else None


def with_references(cases: list[dict]) -> list[dict]:
    out = []
    for c in cases:
        ref = reference(c["arch"], c["syntax"], c["address"], c["source"])
        if ref is not None:
            out.append({**c, "hex": ref.hex()})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=None, help="default: a fresh one")
    ap.add_argument("--programs", type=int, default=40, help="programs per mode (4 modes)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    cases = with_references(corpus(seed, a.programs))
    data = {"generator": "tests/gen_asm_corpus.py", "seed": seed, "cases": cases}
    text = json.dumps(data, indent=1) + "\n"
    if a.out:
        a.out.write_text(text)
        print(f"wrote {a.out}: {len(cases)} programs (seed {seed})")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
