"""gostackgen: a seeded generator of Go programs for checking the stack-growth model against the real runtime.

Each seed gives one program (:func:`random_program`): a few recursive functions with random frame sizes
across the compiler's three prologue forms (frame <= StackSmall, <= StackBig, larger; cmd/internal/obj/x86/
obj6.go: stacksplit), in four recursion shapes, inside one of the harness's ``main`` shapes
(:data:`helpers.gostack.MAIN_SHAPES`: a goroutine started with an atomic flag, with a sync.WaitGroup and fmt,
or with fmt alone). Every function calls ``mark(n)``, so the harness records where the goroutine's stack is
at each depth. :func:`check_program` runs each function natively (the real runtime) and in the emulator
(:mod:`helpers.gostack`), and returns the differences: the depths at which the stack moved, the sizes it
moved to, the final size and the result must all be equal.

Shapes:

* ``linear``: f(n) calls f(n-1);
* ``mutual``: two functions of different frame sizes call each other;
* ``pointer``: each frame passes a pointer to its own local to the next and reads through its own pointer
  after the call (the runtime must adjust it when the stack moves: stack maps);
* ``closure``: each frame builds a closure that captures a local by reference and calls it through a
  non-inlined helper; the closure lives on the stack and holds a pointer into it (stack objects).

    python -m helpers.gostackgen --programs 200 --seed 1     # the long campaign (make fuzz-gostack)
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass

from helpers import gostack

SHAPES = ("linear", "mutual", "pointer", "closure")
FORMS = ("small", "medium", "huge")
# int64 elements of a frame's local array for each prologue form: the frame adds ~24-64 bytes to 8*K
ELEMENTS = {"small": (1, 8), "medium": (24, 480), "huge": (560, 3000)}
STACK_BUDGET = 3 << 20  # bytes a program's deepest recursion may use (natively and in the model)


@dataclass
class Entry:
    shape: str
    forms: tuple      # prologue form wanted for each function of the shape
    depth: int
    preempt: int | None = None  # the emulated sysmon asks for preemption this often (moves must not change)


@dataclass
class GeneratedProgram:
    seed: int
    source: str
    main_shape: str
    entries: list     # [Entry]; Pick = index selects one


def _elements(r: random.Random, form: str) -> int:
    lo, hi = ELEMENTS[form]
    return r.randint(lo, hi)


def _linear(i: int, k: int, c: int) -> str:
    return f"""//go:noinline
func lin{i}(n int) int {{
	mark(n)
	var local [{k}]int64
	local[n%{k}] = int64(n) ^ {c}
	if n <= 0 {{
		return int(local[0] & 0xff)
	}}
	return lin{i}(n-1) + int(local[n%{k}]&0xff)
}}
"""


def _mutual(i: int, ka: int, kb: int, c: int) -> str:
    return f"""//go:noinline
func mutA{i}(n int) int {{
	mark(n)
	var local [{ka}]int64
	local[n%{ka}] = int64(n) + {c}
	if n <= 0 {{
		return 1
	}}
	return mutB{i}(n-1) + int(local[n%{ka}]&7)
}}

//go:noinline
func mutB{i}(n int) int {{
	mark(n)
	var local [{kb}]int64
	local[n%{kb}] = int64(n) * {c}
	if n <= 0 {{
		return 2
	}}
	return mutA{i}(n-1) ^ int(local[n%{kb}]&15)
}}
"""


def _pointer(i: int, k: int, c: int) -> str:
    return f"""//go:noinline
func ptr{i}(n int, p *int64) int64 {{
	mark(n)
	var local [{k}]int64
	local[n%{k}] = *p + 1
	if n <= 0 {{
		return local[n%{k}]
	}}
	return ptr{i}(n-1, &local[n%{k}]) + *p
}}

//go:noinline
func ptrStart{i}(n int) int {{
	var x int64 = {c}
	return int(ptr{i}(n, &x) & 0xffffff)
}}
"""


def _closure(i: int, k: int, c: int) -> str:
    return f"""//go:noinline
func apply{i}(f func(int) int, n int) int {{
	return f(n)
}}

//go:noinline
func clo{i}(n int) int {{
	mark(n)
	var local [{k}]int64
	k := n*3 + {c}
	step := func(m int) int {{
		local[m%{k}] += int64(k)
		if m <= 0 {{
			return k
		}}
		return clo{i}(m-1) + int(local[m%{k}]&0xff)
	}}
	return apply{i}(step, n)
}}
"""


ENTRY_NAME = {"linear": "lin{i}", "mutual": "mutA{i}", "pointer": "ptrStart{i}", "closure": "clo{i}"}


def random_program(seed: int, entries: int | None = None) -> GeneratedProgram:
    """The program for ``seed``: 2-4 functions (or ``entries``), each a random shape and frame forms."""
    r = random.Random(seed)
    pre = random.Random(f"preempt {seed}")  # a stream of its own: the programs of a seed never change
    n = entries or r.randint(2, 4)
    parts, ents, cases = [], [], []
    for i in range(n):
        shape = r.choice(SHAPES)
        c = r.randint(1, 999)
        if shape == "mutual":
            forms = (r.choice(FORMS), r.choice(FORMS))
            ka, kb = (_elements(r, f) for f in forms)
            parts.append(_mutual(i, ka, kb, c))
            per_level = 8 * (ka + kb) // 2 + 64
        else:
            forms = (r.choice(FORMS),)
            k = _elements(r, forms[0])
            parts.append({"linear": _linear, "pointer": _pointer, "closure": _closure}[shape](i, k, c))
            per_level = 8 * k + (160 if shape == "closure" else 64)
        depth = r.randint(1, max(1, min(gostack.MARK_DEPTH, STACK_BUDGET // per_level, 3000)))
        ents.append(Entry(shape, forms, depth, pre.choice((None, None, 500, 2000, 20_000))))
        cases.append(f"\tcase {i}:\n\t\treturn {ENTRY_NAME[shape].format(i=i)}(n)\n")
    dispatch = ("//go:noinline\nfunc run(n int) int {\n\tswitch Pick {\n" + "".join(cases)
                + "\t}\n\treturn -1\n}\n")
    source = "package main\n\n" + "\n".join(parts) + "\n" + dispatch
    return GeneratedProgram(seed, source, r.choice(gostack.MAIN_SHAPES), ents)


def build(gp: GeneratedProgram) -> gostack.FunctionProgram:
    return gostack.FunctionProgram.build(gp.source, "run", gp.main_shape)


def check_program(gp: GeneratedProgram, program: gostack.FunctionProgram | None = None) -> list[str]:
    """Run every function of ``gp`` natively and emulated; one line per disagreement ([] if none)."""
    prog = program or build(gp)
    bad = []
    for pick, e in enumerate(gp.entries):
        native = prog.native(e.depth, pick=pick)
        emu = prog.marks(prog.emulate(e.depth, pick=pick, preempt_every=e.preempt, max_insns=200_000_000,
                                      timeout=60), e.depth)
        what = f"seed {gp.seed} function {pick} ({e.shape}, {'/'.join(e.forms)}, depth {e.depth}, preempt {e.preempt})"
        if native.moves() != emu.moves():
            bad.append(f"{what}: native moves {native.moves()} != emulated {emu.moves()}")
        if native.result != emu.result:
            bad.append(f"{what}: native result {native.result} != emulated {emu.result}")
        if native.final_size != emu.final_size:
            bad.append(f"{what}: native final stack {native.final_size} != emulated {emu.final_size}")
    return bad


def campaign(programs: int, seed: int = 0, out=sys.stdout) -> tuple[int, int, list[str]]:
    """Check ``programs`` generated programs from ``seed`` on; returns (programs, functions, failures)."""
    funcs, failures = 0, []
    for s in range(seed, seed + programs):
        gp = random_program(s)
        try:
            bad = check_program(gp)
        except gostack.GoStackError as e:  # the model (or a build) failed where the real runtime did not
            bad = [f"seed {s}: {str(e).splitlines()[0]}"]
        failures += bad
        funcs += len(gp.entries)
        print(f"seed {s}: {len(gp.entries)} functions ({', '.join(e.shape for e in gp.entries)}), "
              f"main {gp.main_shape}: {'MISMATCH ' + bad[0] if bad else 'same as native'}", file=out, flush=True)
    return programs, funcs, failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    t = time.monotonic()
    n, funcs, failures = campaign(a.programs, a.seed)
    for f in failures:
        print("MISMATCH", f)
    print(f"gostack vs native: {n} programs, {funcs} functions tried, {len(failures)} mismatches, "
          f"{time.monotonic() - t:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
