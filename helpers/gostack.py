"""gostack: real Go machine code growing its goroutine stack in an emulator, with the runtime modelled in Python.

Serves chapter 4b (article §4.2, claims C50-C55), the stack-growth viewer and the stack-growth lab.

What is real: the machine code. A Go program built by the pinned Go (helpers.toolchain.go_build) is mapped
into a helpers.emu Machine (unicorn) at its own addresses and runs unmodified, including the compiler's stack-check
prologue ``CMPQ SP, 16(R14); JBE morestack`` (cmd/internal/obj/x86/obj6.go: stacksplit).

What is modelled: the runtime. A fake ``g`` lives in emulated memory with the field offsets read from the
binary's DWARF (:mod:`helpers.goelf`), its address in R14 as ABIInternal requires
(golang/go src/cmd/compile/abi-internal.md, "amd64 architecture"). When the prologue calls
``runtime.morestack``, Python does what these functions of golang/go src/runtime/stack.go do:

* ``morestack`` (src/runtime/asm_amd64.s): save f's PC/SP/BP/ctxt in ``g.sched``;
* ``newstack``: a preemption request (stackguard0 == stackPreempt) is a preemption, not growth; otherwise
  double the size until ``funcMaxSPDelta(f) + stackGuard`` fits;
* ``copystack``/``adjustframe``/``adjustctxt``: copy the used part to the top of a new stack, move SP and BP,
  walk the frames with the pcsp table, fix each saved frame pointer and each pointer slot the compiler's
  stack maps mark live (FUNCDATA_ArgsPointerMaps/LocalsPointerMaps) and each stack object's pointer words
  (FUNCDATA_StackObjects, e.g. a closure's captured references), set
  ``stackguard0 = new.lo + stackGuard``, free (unmap) the old stack, so a stale pointer faults at once;
* ``gogo``: resume at ``g.sched.pc`` (the prologue's retry jump) with only SP, BP, ctxt and R14 restored;
  every other general register is poisoned, as the real switch does not keep them either.

Also modelled: ``shrinkstack`` (GC halves a stack that is less than 1/4 used), a round-robin scheduler over
several goroutines (``gopreempt_m`` puts the preempted goroutine at the back of the run queue), ``sysmon``'s
periodic preemption request, and the *segmented* stacks of Go <= 1.2 (a new segment linked to the old one,
released when the function returns through a ``lessstack`` stub) on the very same machine code.

Programs must not allocate: the fake g has no m (``g.m == nil``). Code that reaches the allocator, the
scheduler, a system call, a runtime lock or a panic stops with :class:`GoCannotRun`, one line naming the
runtime function reached and the program's function that called it (:data:`UNRUNNABLE`).

API::

    prog = GoProgram.build(source)          # any Go program (cached build); GoProgram.example(): STACKS_GO
    fp = FunctionProgram.build(src, "f")    # a reader's func f(n int) int in the book's harness (mark(n))
    fp.native(depth).moves(); fp.marks(fp.emulate(depth), depth).moves()   # the same moves, natively and emulated
    shrink_native(depth, park); uretprobe_native(depth, at) / uretprobe_emulated(depth, at)
    pointer_held_outside(depth) -> OutsidePointer   # an address published outside the goroutine, after a move
    g_loads(prog)                           # which prologues reach g through R14 and which through TLS
    rt = Runtime(prog, initial_stack=2048, policy="copying")     # or "segmented"
    g = rt.go("main.small", 2000, 0)         # integer args in ABIInternal registers
    run_recursion("medium", 60); run_chain(1000); run_hot_split("segmented", pad, n)   # recipes
    rt.run(max_insns=5_000_000)
    g.result; rt.events; rt.snapshot(g)
    rt.sysmon(every_insns=20_000); rt.gc()
"""
from __future__ import annotations

import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from helpers import toolchain
from helpers.emu import Machine, TraceSpec
from helpers import goelf
from helpers.goelf import GoBinary, GoBinaryError, runtime_constants
from helpers.preempt import GETG_S

# ------------------------------------------------------------------------------------------- layout

PAGE = 0x1000
STACK_ARENA = 0xC000000000   # Go's first heap arena hint on linux/amd64 (runtime/malloc.go: mallocinit)
STACK_GAP = PAGE             # an unmapped page between stacks, so running off one faults
G_AREA = 0xB000000000        # where the fake g structs live
G_STRIDE = 0x400             # one g per 1 KiB (DWARF says runtime.g is smaller than that; checked below)
LESSSTACK = 0xA000000000     # the segmented policy's return trampoline (Go <= 1.2: runtime.lessstack)
TLS_AREA = 0xB000100000      # the thread's TLS block: g at fs:-8 (runtime.tlsg, linux/amd64), for ABI0 code
POISON = 0xDEAD_BEEF_DEAD_BEEF
MAX_STACK = 64 << 20         # the model's limit (the real runtime's maxstacksize is 1 GB on 64-bit)

# ABIInternal integer argument/result registers (src/cmd/compile/abi-internal.md, amd64)
INT_ARG_REGS = ("rax", "rbx", "rcx", "rdi", "rsi", "r8", "r9", "r10", "r11")
# registers gogo does not restore: poisoned on every resume
SCRATCH_REGS = INT_ARG_REGS + ("r12", "r13")
SEGMENT_CACHE = 16           # freed segments kept per size under the segmented policy
SP_SAMPLE = 8                # trace_sp keeps every 8th instruction's SP,
SP_POINTS = 2000             # or fewer: at most this many points per run slice


class GoStackError(ValueError):
    """The model refused or the emulated program failed (fault, stack overflow, budget). One line; a
    ValueError, like every bad-input error in the book."""


class GoCannotRun(GoStackError):
    """The Go code reached runtime machinery the model does not have (allocator, scheduler, system calls,
    locks, panics). The message names the function that was reached and the Go function that called it."""


# Runtime entry points the model cannot run, and why: the emulated goroutine has no m, no P, no heap and no
# scheduler (src/runtime/malloc.go mallocgc, proc.go gopark/newproc, asm_amd64.s mcall/systemstack,
# proc.go entersyscall, lock_futex.go lock2, sema.go semacquire1, panic.go gopanic/throw, print.go printlock).
UNRUNNABLE = {
    "runtime.mallocgc": "allocates memory",
    "runtime.gopark": "blocks in the scheduler",
    "runtime.mcall": "switches to the scheduler",
    "runtime.systemstack": "switches to the system stack",
    "runtime.newproc": "starts a goroutine",
    "runtime.entersyscall": "makes a system call",
    "runtime.entersyscallblock": "makes a system call",
    "runtime.lock2": "takes a runtime lock",
    "runtime.semacquire1": "waits on a semaphore (a contended lock)",
    "runtime.gopanic": "panics",
    "runtime.panicBounds": "panics (index out of range)",
    "runtime.goPanicIndex": "panics (index out of range)",
    "runtime.panicdivide": "panics (division by zero)",
    "runtime.procPin": "pins itself to its P (sync.Pool, fmt's buffers)",
    "sync.runtime_procPin": "pins itself to its P (sync.Pool, fmt's buffers)",
    "runtime.throw": "throws a fatal error",
    "runtime.printlock": "prints with print/println",
    "runtime.deferproc": "defers through the runtime's defer records",
}


# ------------------------------------------------------------------------------------------- programs

_STACKS_GO = r'''package main

// Example programs of chapter 4b. They never allocate (the emulator's g has no m), and each frame
// records how far its caller's frame is from its own: when the stack moved between the two, the
// distance is not the frame size. The same binary runs natively (main) and in the emulator (worker).

import (
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"
)

const maxDepth = 1 << 14

// delta[n] = caller's &local - this frame's &local, for the frame with n levels still to go.
var delta [maxDepth + 1]uintptr
var N, Which, Result, Pad int
var done atomic.Int32

//go:noinline
func small(n int, parent uintptr) int {
	var local [4]int64
	me := uintptr(unsafe.Pointer(&local))
	if n <= maxDepth {
		delta[n] = parent - me
	}
	local[n&3] = int64(n)
	if n == 0 {
		return 0
	}
	return small(n-1, me) + int(local[n&3])
}

//go:noinline
func medium(n int, parent uintptr) int {
	var local [200]int64
	me := uintptr(unsafe.Pointer(&local))
	if n <= maxDepth {
		delta[n] = parent - me
	}
	local[n%200] = int64(n)
	if n == 0 {
		return 0
	}
	return medium(n-1, me) + int(local[n%200])
}

//go:noinline
func large(n int, parent uintptr) int {
	var local [10000]int64
	me := uintptr(unsafe.Pointer(&local))
	if n <= maxDepth {
		delta[n] = parent - me
	}
	local[n%10000] = int64(n)
	if n == 0 {
		return 0
	}
	return large(n-1, me) + int(local[n%10000])
}

// Pointers into the stack: each frame passes a pointer to its own local to the next one and reads
// through its own argument after the call. When the stack moves, the runtime must fix every such
// pointer it finds in the stack maps, or *p reads the freed stack.
//
//go:noinline
func chain(n int, p *int64) int64 {
	var local [4]int64
	local[n&3] = *p + 1
	if n == 0 {
		return local[n&3]
	}
	return chain(n-1, &local[n&3]) + *p
}

//go:noinline
func chainStart(n int) int64 {
	var x int64 = 5
	return chain(n, &x)
}

// The hot split: a loop that calls leaf() over and over from a fixed depth.
//
//go:noinline
func leaf(i int) int {
	var local [100]int64
	local[i%100] = int64(i)
	return int(local[(i*7)%100]) + 1
}

//go:noinline
func hot(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += leaf(i)
	}
	return s
}

//go:noinline
func pad(d, n int) int {
	var local [8]int64
	local[d&7] = int64(d)
	if d == 0 {
		return hot(n)
	}
	return pad(d-1, n) + int(local[d&7]) - d
}

//go:noinline
func worker() {
	switch Which {
	case 0:
		Result = small(N, 0)
	case 1:
		Result = medium(N, 0)
	case 3:
		Result = pad(Pad, N)
	case 4:
		Result = int(chainStart(N))
	default:
		Result = large(N, 0)
	}
	done.Store(1)
}

func main() {
	Which, _ = strconv.Atoi(os.Args[1])
	N, _ = strconv.Atoi(os.Args[2])
	go worker()
	for done.Load() == 0 {
		runtime.Gosched()
	}
	os.Stdout.WriteString("result " + strconv.Itoa(Result) + "\n")
	for n := 0; n <= N && n <= maxDepth; n++ {
		os.Stdout.WriteString(strconv.FormatUint(uint64(delta[n]), 10) + "\n")
	}
}
'''



def stacks_source(medium: int = 200) -> str:
    """STACKS_GO with ``medium``'s local array of ``medium`` int64s instead of 200 (the lab varies it)."""
    if not isinstance(medium, int) or not 1 <= medium <= 100_000:
        raise GoStackError(f"medium must be an integer in [1, 100000], not {medium!r}")
    return _STACKS_GO.replace("[200]int64", f"[{medium}]int64").replace("n%200", f"n%{medium}")


STACKS_GO = stacks_source()

FRAME_FUNCS = {"small": 0, "medium": 1, "large": 2}  # main.Which selects one in worker()
MAX_DEPTH = 1 << 14  # STACKS_GO: maxDepth


@dataclass(frozen=True)
class Prologue:
    """A function's stack-check prologue as the compiler emitted it (obj6.go: stacksplit)."""

    func: str
    frame: int          # bytes of frame below the return address (funcMaxSPDelta)
    form: str           # "small" | "medium" | "huge"
    listing: tuple      # ((address, "mnemonic operands"), ...) up to the conditional jump to morestack
    below: int = 0      # how far below SP the check looks (frame - StackSmall for medium/huge; 0 for small)


class GoProgram:
    """A Go ELF executable prepared for the emulator: its binary tables and its PT_LOAD segments."""

    def __init__(self, path, source: str | None = None):
        self.path = Path(path)
        self.source = source
        self.binary = GoBinary(self.path)
        b = self.binary
        self.morestack = b.func("runtime.morestack").entry  # ELF calls it runtime.morestack.abi0
        self.goexit = b.func("runtime.goexit").entry
        g = b.struct("runtime.g")
        fields = ("stack.lo", "stack.hi", "stackguard0", "stackguard1", "m", "sched.sp", "sched.pc", "sched.g",
                  "sched.ctxt", "sched.bp", "atomicstatus", "goid", "preempt", "preemptShrink")
        missing = [k for k in fields if k not in g]
        if missing:
            raise GoBinaryError(f"{self.path.name}: runtime.g in its DWARF has no field {missing[0]} "
                                f"(the model needs {', '.join(fields)})")
        self.g_offsets = {k: g[k] for k in fields}
        self.g_size = b.struct_size("runtime.g")
        if self.g_size > G_STRIDE:
            raise GoStackError(f"runtime.g is {self.g_size} bytes, larger than the model's slot of {G_STRIDE}")

    @classmethod
    def build(cls, source: str) -> "GoProgram":
        """``go build`` (cached) with symbols and DWARF kept, then load."""
        try:
            b = toolchain.go_build(source)
        except toolchain.ToolchainError as e:
            raise GoStackError(str(e)) from None
        return cls(b.path, source)

    @classmethod
    def load(cls, path) -> "GoProgram":
        try:
            return cls(path)
        except (GoBinaryError, OSError) as e:
            raise GoStackError(str(e).splitlines()[0]) from None

    @classmethod
    def example(cls) -> "GoProgram":
        """The book's example program :data:`STACKS_GO` (built once per process)."""
        return _example()

    # ---------------------------------------------------------------- what the compiler emitted
    def frame_size(self, func: str) -> int:
        return self.binary.max_sp_delta(self.binary.func(func))

    def prologue(self, func: str) -> Prologue:
        """Disassemble ``func`` up to its ``jbe``/``jb`` to the morestack tail and classify the form."""
        from helpers.asm import disassemble_text  # capstone; imported here to keep module import light

        f = self.binary.func(func)
        code = self.read(f.entry, min(64, f.end - f.entry))
        rows = []
        for ins in disassemble_text(code, address=f.entry):  # AT&T syntax, like objdump; text is all it needs
            rows.append((ins.address, ins.text))
            if ins.text.split(" ", 1)[0] == "jbe":
                break
        text = " ; ".join(r[1] for r in rows)
        # cmd/internal/obj/x86/obj6.go stacksplit: three sequences, by frame size vs StackSmall/StackBig
        if re.fullmatch(r"cmpq? 0x10\(%r14\), %rsp", rows[0][1]):
            form = "small"
        elif m := re.fullmatch(r"leaq? -(0x[0-9a-f]+|\d+)\(%rsp\), %r12", rows[0][1]):
            form, below = "medium", int(m.group(1), 0)
        elif (re.fullmatch(r"movq? %rsp, %r12", rows[0][1]) and rows[2][1].startswith("jb ")
              and (m := re.fullmatch(r"subq? \$(0x[0-9a-f]+|\d+), %r12", rows[1][1]))):
            form, below = "huge", int(m.group(1), 0)
        else:
            raise GoStackError(f"{func}: unrecognised prologue: {text}")
        return Prologue(func, self.frame_size(func), form, tuple(rows), below if form != "small" else 0)

    def head(self, func: str, count: int = 4) -> list[tuple[int, str]]:
        """The first ``count`` instructions of ``func`` (AT&T syntax, like objdump): [(address, text)]."""
        from helpers.asm import disassemble_text

        f = self.binary.func(func)
        ins = disassemble_text(self.read(f.entry, min(16 * count, f.end - f.entry)), address=f.entry)
        return [(i.address, i.text) for i in ins[:count]]

    def guard_from_copystack(self) -> int:
        """The constant the compiled runtime.copystack adds to new.lo before storing it at g+stackguard0.

        A second, independent reading of stackGuard: from the machine code rather than from src/.
        """
        from helpers.asm import disassemble

        f = self.binary.func("runtime.copystack")
        ins = disassemble(self.read(f.entry, f.end - f.entry), address=f.entry)
        off = self.g_offsets["stackguard0"]
        for a, b in zip(ins, ins[1:]):
            m = re.fullmatch(r"addq? \$(0x[0-9a-f]+), %(\w+)", a.text)
            if m and re.fullmatch(rf"movq? %{m.group(2)}, {off:#x}\(%\w+\)", b.text):
                return int(m.group(1), 16)
        raise GoStackError("no 'add $guard, reg; mov reg, stackguard0(g)' pair in runtime.copystack")

    def read(self, addr: int, size: int) -> bytes:
        """Bytes of the file image at a virtual address (initialised data and code)."""
        for vaddr, data, _fl in self.binary.segments:
            if vaddr <= addr and addr + size <= vaddr + len(data):
                return data[addr - vaddr:addr - vaddr + size]
        raise GoStackError(f"address {addr:#x} is not in a PT_LOAD segment")

    # ---------------------------------------------------------------- the same program, natively
    def native(self, which: str, depth: int, timeout: float = 60) -> "NativeRun":
        """Run STACKS_GO natively (a real process, real runtime) and return what its frames recorded."""
        if which not in FRAME_FUNCS:
            raise GoStackError(f"which must be one of {', '.join(FRAME_FUNCS)}, not {which!r}")
        env = {"PATH": "/usr/bin:/bin", "GODEBUG": "adaptivestackstart=0"}  # initial stacks of fixedStack bytes
        p = toolchain.run([self.path, FRAME_FUNCS[which], depth], timeout=timeout, env=env)
        if p.returncode != 0:
            raise GoStackError(f"native run failed (exit {p.returncode}): {(p.stderr or '').strip()[:120]}")
        lines = p.stdout.split()
        return NativeRun(which, depth, int(lines[1]), [int(x) for x in lines[2:]])


@lru_cache(maxsize=1)
def _example() -> GoProgram:
    return GoProgram.build(STACKS_GO)


@dataclass
class NativeRun:
    """What a run of STACKS_GO's worker recorded: the result and each frame's distance to its caller."""

    which: str
    depth: int
    result: int
    delta: list  # indexed by n (levels still to go); delta[depth] is against a caller of 0

    @property
    def frame_bytes(self) -> int:
        """The usual distance between consecutive frames (the frame size plus return address)."""
        return Counter(self.delta[:self.depth]).most_common(1)[0][0]

    def moved_at(self) -> list[int]:
        """Call depths (0 = first frame) whose frame is not where its caller's frame size says: the stack moved."""
        fb = self.frame_bytes
        return sorted(self.depth - n for n in range(min(self.depth, MAX_DEPTH + 1)) if self.delta[n] != fb)


# ------------------------------------------------------------------------------------------- a reader's function

MARK_DEPTH = 1 << 14   # the harness records stack bounds for depths 0..MARK_DEPTH
MAX_SOURCE = 20_000    # characters of Go source a reader may hand in
RESERVED = ("main", "worker", "mark", "stackBounds", "setup")
MAIN_SHAPES = ("spin", "waitgroup", "fmt")

# The harness's main starts the reader's function as a goroutine, natively; the emulator starts the same
# goroutine function. Three shapes of main, all with the same goroutine frames (see FunctionProgram.entry).
_HARNESS_MAIN = {
    "spin": ('import (\n\t"os"\n\t"runtime"\n\t"strconv"\n\t"sync/atomic"\n)\n\nvar done atomic.Int32\n\n'
             "//go:noinline\nfunc worker() {\n\tStartLo, StartHi = stackBounds()\n\tResult = int({call})\n"
             "\tFinalLo, FinalHi = stackBounds()\n\tdone.Store(1)\n}\n\n"
             "func main() {\n\tN, _ = strconv.Atoi(os.Args[1])\n\tPick, _ = strconv.Atoi(os.Args[2])\n\tgo worker()\n"
             "\tfor done.Load() == 0 {\n\t\truntime.Gosched()\n\t}\n\tos.Stdout.WriteString(report())\n}\n"),
    "waitgroup": ('import (\n\t"fmt"\n\t"os"\n\t"runtime"\n\t"strconv"\n\t"sync"\n)\n\nvar wg sync.WaitGroup\n\n'
                  "//go:noinline\nfunc setup() { wg.Add(1) }\n\n"
                  "//go:noinline\nfunc worker() {\n\tStartLo, StartHi = stackBounds()\n\tResult = int({call})\n"
                  "\tFinalLo, FinalHi = stackBounds()\n}\n\n"
                  "func main() {\n\truntime.GOMAXPROCS(2)\n\tN, _ = strconv.Atoi(os.Args[1])\n\tPick, _ = strconv.Atoi(os.Args[2])\n\tsetup()\n"
                  "\tgo func() {\n\t\tworker()\n\t\twg.Done()\n\t}()\n\twg.Wait()\n\tfmt.Print(report())\n}\n"),
    "fmt": ('import (\n\t"fmt"\n\t"os"\n\t"runtime"\n\t"strconv"\n\t"sync/atomic"\n)\n\nvar done atomic.Bool\n\n'
            "//go:noinline\nfunc worker() {\n\tStartLo, StartHi = stackBounds()\n\tResult = int({call})\n"
            "\tFinalLo, FinalHi = stackBounds()\n\tdone.Store(true)\n}\n\n"
            "func main() {\n\tfmt.Sscan(os.Args[1], &N)\n\tfmt.Sscan(os.Args[2], &Pick)\n\tgo worker()\n\tfor !done.Load() {\n\t\truntime.Gosched()\n"
            "\t}\n\tfmt.Fprint(os.Stdout, report())\n\t_ = strconv.Itoa\n}\n"),
}

_HARNESS_COMMON = '''
// The book's harness around a reader's function (helpers.gostack.FunctionProgram): it records the
// goroutine's stack bounds wherever the function calls mark(n), natively and in the emulator alike.

const markDepth = {mark_depth}

var N, Pick, Result int // N: the depth; Pick: free for the reader's code (a second argument)
var Lo, Hi [markDepth + 1]uintptr // g.stack.lo and g.stack.hi at mark(n)
var StartLo, StartHi, FinalLo, FinalHi uintptr

// stackBounds returns the running goroutine's g.stack (bounds_amd64.s).
func stackBounds() (lo, hi uintptr)

// mark records the goroutine's stack bounds at depth n (0 <= n <= markDepth).
//
//go:nosplit
func mark(n int) {
	if uint(n) <= markDepth {
		Lo[n], Hi[n] = stackBounds()
	}
}

func report() string {
	b := []byte("result " + strconv.Itoa(Result) + "\\n")
	for _, v := range []uintptr{StartLo, StartHi, FinalLo, FinalHi} {
		b = strconv.AppendUint(b, uint64(v), 10)
		b = append(b, ' ')
	}
	b = append(b, '\\n')
	for n := 0; n <= N && n <= markDepth; n++ {
		b = strconv.AppendUint(b, uint64(Lo[n]), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, uint64(Hi[n]), 10)
		b = append(b, '\\n')
	}
	return string(b)
}
'''

# ABI0 assembly has no g register: it loads g from thread-local storage, (TLS) = %fs:-8 on linux/amd64
# (golang/go src/cmd/compile/abi-internal.md; src/runtime/go_tls.h). g.stack is g's first field
# (src/runtime/runtime2.go); FunctionProgram checks that against the binary's DWARF.
BOUNDS_S = '''#include "textflag.h"

// func stackBounds() (lo, hi uintptr)
TEXT ·stackBounds(SB), NOSPLIT, $0-16
	MOVQ (TLS), AX
	MOVQ 0(AX), BX
	MOVQ BX, lo+0(FP)
	MOVQ 8(AX), BX
	MOVQ BX, hi+8(FP)
	RET
'''

_FUNC_RE = re.compile(r"^func\s+([A-Za-z_]\w*)\s*\(([^)]*)\)\s*([^{]*)\{", re.M)
_INT_TYPES = ("int", "int64", "int32", "int16", "int8", "uint", "uint64", "uint32", "uint16", "uint8", "uintptr")


def functions_in(source: str) -> list[str]:
    """Top-level functions of ``source`` with one integer parameter and an integer result (what the harness
    can call with the depth)."""
    out = []
    for name, params, result in _FUNC_RE.findall(source if isinstance(source, str) else ""):
        ps = [p.split() for p in params.split(",") if p.strip()]
        if len(ps) == 1 and len(ps[0]) == 2 and ps[0][1] in _INT_TYPES and result.strip() in _INT_TYPES:
            out.append(name)
    return out


def _reader_source(source, func: str) -> str:
    if not isinstance(source, str):
        raise GoStackError(f"the Go source must be a string, not {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise GoStackError(f"the Go source is {len(source)} characters; the book takes at most {MAX_SOURCE}")
    if "\0" in source:
        raise GoStackError("the Go source contains a NUL character")
    if not isinstance(func, str) or not re.fullmatch(r"[A-Za-z_]\w*", func):
        raise GoStackError(f"function must be a Go identifier such as 'f', not {func!r}")
    pkg = re.search(r"^\s*package\s+(\w+)", source, re.M)
    if pkg and pkg.group(1) != "main":
        raise GoStackError(f"write package main (or no package clause), not package {pkg.group(1)}")
    if 'import "C"' in source or re.search(r"^\s*import\s*\(\s*[^)]*\"C\"", source, re.M):
        raise GoStackError("cgo (import \"C\") is not available here")
    for name in RESERVED:
        if re.search(rf"^func\s+{name}\s*\(", source, re.M):
            raise GoStackError(f"func {name} is the book's harness; write only your own functions "
                               f"(reserved names: {', '.join(RESERVED)})")
    if func in RESERVED:
        raise GoStackError(f"{func} is one of the harness's functions; choose one of yours")
    names = [n for n, _p, _r in _FUNC_RE.findall(source)]
    if func not in names:
        have = ", ".join(functions_in(source)) or "none"
        raise GoStackError(f"no top-level func {func} in the source (functions taking the depth: {have})")
    if func not in functions_in(source):
        raise GoStackError(f"func {func} must take one integer (the depth) and return an integer, "
                           f"e.g. func {func}(n int) int")
    return source if pkg else "package main\n\n" + source


class FunctionProgram(GoProgram):
    """A reader's Go function inside the book's harness: built with the pinned Go, run natively or emulated.

    The harness's worker() calls ``func(N)`` on a goroutine of its own (``main`` starts it in one of
    :data:`MAIN_SHAPES`); a function that calls ``mark(n)`` has the goroutine's stack bounds recorded at
    depth ``n``, natively (through ABI0 assembly that reads g from TLS) and in the emulator alike.
    """

    def __init__(self, path, source: str, func: str, shape: str):
        super().__init__(path, source)
        self.func, self.shape = "main." + func, shape
        self.binary.func(self.func)  # the compiler may have inlined it away
        g = self.binary.struct("runtime.g")
        if (g["stack.lo"], g["stack.hi"]) != (0, 8):
            raise GoStackError(f"runtime.g.stack is at {g['stack.lo']}/{g['stack.hi']}, not 0/8 as bounds_amd64.s reads it")
        # what the native goroutine starts with: worker itself, or main's closure around it
        self.entry = "main.worker" if shape != "waitgroup" else "main.main.func1"
        self.binary.func(self.entry)

    @classmethod
    def build(cls, source: str, func: str = "f", shape: str = "spin") -> "FunctionProgram":
        """Build ``source`` (Go declarations; ``package main`` optional) with the harness calling ``func``."""
        if shape not in MAIN_SHAPES:
            raise GoStackError(f"shape must be one of {', '.join(MAIN_SHAPES)}, not {shape!r}")
        return _function_program(_reader_source(source, func), func, shape)

    def emulate(self, depth: int, initial_stack: int = 2048, policy: str = "copying", preempt_every: int | None = None,
                trace_sp: bool = False, max_insns: int = 20_000_000, timeout: float = 20.0, pick: int = 0) -> "Runtime":
        """Run the harness's goroutine in the emulator with N = ``depth`` (and Pick = ``pick``)."""
        _check_depth(depth)
        _check_pick(pick)
        rt = Runtime(self, initial_stack=initial_stack, policy=policy, trace_sp=trace_sp)
        rt.write_global("main.N", depth)
        rt.write_global("main.Pick", pick)
        if self.shape == "waitgroup":
            rt.go("main.setup")  # what main does before the go statement (wg.Add(1)), allocation-free
            rt.run(max_insns=1_000_000, timeout=timeout)
            rt.events.clear()
        rt.go(self.entry)
        rt.sysmon(preempt_every)
        rt.run(max_insns=max_insns, timeout=timeout)
        return rt

    def native(self, depth: int, timeout: float = 60, pick: int = 0) -> "Marks":  # type: ignore[override]
        """Run the program natively (a real process, the real runtime) with N = ``depth``, Pick = ``pick``."""
        _check_depth(depth)
        _check_pick(pick)
        env = {"PATH": "/usr/bin:/bin", "GODEBUG": "adaptivestackstart=0"}  # start at fixedStack bytes
        p = toolchain.run([self.path, depth, pick], timeout=timeout, env=env)
        if p.returncode != 0:
            err = [l for l in (p.stderr or "").splitlines() if l.strip()]
            raise GoStackError(f"native run failed (exit {p.returncode}): {err[0][:160] if err else ''}")
        lines = p.stdout.splitlines()
        start_lo, start_hi, fin_lo, fin_hi = (int(x) for x in lines[1].split())
        lo, hi = zip(*((int(a), int(b)) for a, b in (l.split() for l in lines[2:]))) if lines[2:] else ((), ())
        return Marks(depth, int(lines[0].split()[1]), (start_lo, start_hi), (fin_lo, fin_hi), list(lo), list(hi))

    def marks(self, rt: "Runtime", depth: int) -> "Marks":
        """What the emulated harness recorded, in the shape of :meth:`native`."""
        n = min(depth, MARK_DEPTH) + 1
        lo = rt.m.read(rt.global_addr("main.Lo"), 8 * n)
        hi = rt.m.read(rt.global_addr("main.Hi"), 8 * n)
        w = lambda raw: [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
        g = {k: rt.read_global(f"main.{k}") & (2**64 - 1) for k in ("StartLo", "StartHi", "FinalLo", "FinalHi")}
        return Marks(depth, rt.read_global("main.Result"), (g["StartLo"], g["StartHi"]), (g["FinalLo"], g["FinalHi"]),
                     w(lo), w(hi))


def _check_depth(depth) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MARK_DEPTH:
        raise GoStackError(f"depth must be an integer in [0, {MARK_DEPTH}], not {depth!r}")


def _check_pick(pick) -> None:
    if not isinstance(pick, int) or isinstance(pick, bool) or not 0 <= pick < 1 << 31:
        raise GoStackError(f"pick must be an integer in [0, 2**31), not {pick!r}")


@lru_cache(maxsize=16)
def _function_program(source: str, func: str, shape: str) -> FunctionProgram:
    # worker calls the function through a variable, so the compiler cannot inline it into worker
    harness = "package main\n\n" + _HARNESS_MAIN[shape].replace("{call}", "call(N)") + \
        _HARNESS_COMMON.replace("{mark_depth}", str(MARK_DEPTH)) + f"\nvar call = {func}\n"
    files = {"user.go": source, "harness.go": harness, "bounds_amd64.s": BOUNDS_S}
    try:
        b = toolchain.go_build(files)
    except toolchain.ToolchainError as e:
        msg = str(e).splitlines()[0].replace("./", "")
        raise GoStackError(msg) from None
    try:
        return FunctionProgram(b.path, source, func, shape)
    except GoBinaryError as e:
        raise GoStackError(str(e).splitlines()[0]) from None


@dataclass
class Marks:
    """The stack bounds a harness run recorded: at the start, at each mark(n), and after the function returned."""

    depth: int
    result: int
    start: tuple
    final: tuple
    lo: list   # lo[n], hi[n]: g.stack at mark(n); 0 where the function never marked n
    hi: list

    def moves(self) -> list[tuple[int, int]]:
        """(call depth = N - n, new stack size) for each mark(n) at which the stack is not where it was at
        the previous mark (or at the start), then ("end", size) if it moved after the last mark."""
        out, prev = [], self.start
        for n in range(min(self.depth, MARK_DEPTH), -1, -1):
            if self.hi[n]:
                if (self.lo[n], self.hi[n]) != prev:
                    out.append((self.depth - n, self.hi[n] - self.lo[n]))
                prev = (self.lo[n], self.hi[n])
        if self.final != prev:
            out.append(("end", self.final[1] - self.final[0]))
        return out

    @property
    def final_size(self) -> int:
        return self.final[1] - self.final[0]


# ------------------------------------------------------------------------------------------- shrinking, natively


def shrink_target(size: int, used: int, k: dict | None = None) -> int | None:
    """runtime/stack.go shrinkstack's decision: the halved size, or None to keep the stack. ``used`` is
    stack.hi - sched.sp of the parked goroutine."""
    k = k or runtime_constants()
    newsize = size // 2
    if newsize < k["fixedStack"]:
        return None
    if used + k["stackNosplit"] >= size // 4:
        return None
    return newsize


_SHRINK_GO = r'''package main

// A goroutine grows its stack, returns, and parks at a chosen depth; main runs GC cycles and reads the
// parked goroutine's g.stack and g.sched.sp after each (offsets from the binary's DWARF, on the command line).

import (
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"
)

func getg() uintptr // shrink_amd64.s: g from TLS

var G atomic.Uintptr
var park = make(chan int)
var Depth, Park int

//go:noinline
func grow(n int) int {
	var local [100]int64
	local[n%100] = int64(n)
	if n == 0 {
		return 0
	}
	return grow(n-1) + int(local[n%100])
}

//go:noinline
func parkAt(n int) int {
	var local [8]int64
	local[n&7] = int64(n)
	if n == 0 {
		return <-park
	}
	return parkAt(n-1) + int(local[n&7])
}

func worker() {
	G.Store(getg())
	grow(Depth)
	parkAt(Park)
}

func word(addr uintptr) uintptr { return *(*uintptr)(unsafe.Pointer(addr)) }

func main() {
	arg := func(i int) int { v, _ := strconv.Atoi(os.Args[i]); return v }
	Depth, Park = arg(1), arg(2)
	cycles, spOff, statusOff := arg(3), uintptr(arg(4)), uintptr(arg(5))
	go worker()
	for G.Load() == 0 || *(*uint32)(unsafe.Pointer(G.Load() + statusOff)) != 4 { // _Gwaiting
		runtime.Gosched()
	}
	g := G.Load()
	for i := 0; i <= cycles; i++ {
		os.Stdout.WriteString(strconv.FormatUint(uint64(word(g)), 10) + " " + strconv.FormatUint(uint64(word(g+8)), 10) +
			" " + strconv.FormatUint(uint64(word(g+spOff)), 10) + "\n")
		if i < cycles {
			runtime.GC()
		}
	}
	park <- 1
}
'''

_SHRINK_S = GETG_S  # getg() from TLS, the same assembly chapter 2b's native syscall experiment uses


def shrink_native(depth: int, park: int, cycles: int = 6, timeout: float = 60) -> list[tuple[int, int]]:
    """Natively: grow a goroutine's stack with ``depth`` frames of 832 bytes, return, park it ``park`` small
    frames deep, then run ``cycles`` GCs. Returns (stack size, used = hi - sched.sp) before each GC and after
    the last, as the real runtime left them."""
    for name, v, hi in (("depth", depth, 4000), ("park", park, 2000), ("cycles", cycles, 20)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
            raise GoStackError(f"{name} must be an integer in [0, {hi}], not {v!r}")
    prog = _shrink_program()
    off = prog.g_offsets
    env = {"PATH": "/usr/bin:/bin", "GODEBUG": "adaptivestackstart=0"}
    p = toolchain.run([prog.path, depth, park, cycles, off["sched.sp"], off["atomicstatus"]], timeout=timeout, env=env)
    if p.returncode != 0:
        raise GoStackError(f"native run failed (exit {p.returncode}): {(p.stderr or '').strip()[:160]}")
    rows = [tuple(int(x) for x in l.split()) for l in p.stdout.splitlines()]
    return [(hi - lo, hi - sp) for lo, hi, sp in rows]


def shrink_decisions(rows: list[tuple[int, int]]) -> list[tuple[int, int | None, int]]:
    """For each GC of a native run: (size before, the model's :func:`shrink_target`, the size after natively)."""
    return [(size, shrink_target(size, used), after) for (size, used), (after, _u) in zip(rows, rows[1:])]


@lru_cache(maxsize=1)
def _shrink_program() -> GoProgram:
    try:
        b = toolchain.go_build({"main.go": _SHRINK_GO, "shrink_amd64.s": _SHRINK_S})
    except toolchain.ToolchainError as e:
        raise GoStackError(str(e).splitlines()[0]) from None
    return GoProgram(b.path, _SHRINK_GO)


# ------------------------------------------------------------------------------------------- uretprobes

URETPROBE_TRAMPOLINE = 0x7FFFFFFFE000  # where Linux maps the uprobes XOL page (golang/go#27077 shows this address)

_URETPROBE_GO = r'''package main

// What a uretprobe does to a Go function: on entry to probed(At) the return address on the goroutine's
// stack is replaced by a trampoline's address; the trampoline later jumps to the saved address. Here
// hijack() does it from user space, without calls that would use stack: it finds probed's return-address
// slot by its value (RetPC, the address after probed's recursive call, read from the binary by the book)
// and writes the address of the trampoline page (movabs $orig, %r11; jmp *%r11) into it.

import (
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"
)

var N, At, Result int
var RetPC, Tramp uintptr
var done atomic.Int32

//go:noinline
func hijack() {
	var here uintptr
	slot := uintptr(unsafe.Pointer(&here))
	for *(*uintptr)(unsafe.Pointer(slot)) != RetPC {
		slot += 8
	}
	*(*uintptr)(unsafe.Pointer(Tramp + 2)) = RetPC // movabs's immediate: where the trampoline returns to
	*(*uintptr)(unsafe.Pointer(slot)) = Tramp
}

//go:noinline
func probed(n int) int {
	var local [64]int64
	local[n&63] = int64(n)
	if n == At {
		hijack()
	}
	if n == 0 {
		return 0
	}
	return probed(n-1) + int(local[n&63])
}

//go:noinline
func worker() {
	Result = probed(N)
	done.Store(1)
}

func main() {
	N, _ = strconv.Atoi(os.Args[1])
	At, _ = strconv.Atoi(os.Args[2])
	pc, _ := strconv.ParseUint(os.Args[3], 10, 64)
	RetPC = uintptr(pc)
	page, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE|syscall.PROT_EXEC,
		syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	copy(page, []byte{0x49, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0xff, 0xe3})
	Tramp = uintptr(unsafe.Pointer(&page[0]))
	go worker()
	for done.Load() == 0 {
		runtime.Gosched()
	}
	os.Stdout.WriteString("result " + strconv.Itoa(Result) + "\n")
}
'''


@dataclass
class ProbeRun:
    """One run of the uretprobe program: did it finish, its result, and the runtime's first words if not."""

    where: str          # "native" | "emulator"
    depth: int
    at: int
    ok: bool
    result: int | None
    message: str        # the runtime's (or the model's) complaint, one line; "" if ok
    moves_after: int    # stack moves after the return address was replaced (emulator only; -1 natively)


@lru_cache(maxsize=1)
def _uretprobe_program() -> GoProgram:
    try:
        b = toolchain.go_build(_URETPROBE_GO)
    except toolchain.ToolchainError as e:
        raise GoStackError(str(e).splitlines()[0]) from None
    return GoProgram(b.path, _URETPROBE_GO)


def _probe_args(depth, at) -> None:
    for name, v in (("depth", depth), ("at", at)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 2000:
            raise GoStackError(f"{name} must be an integer in [0, 2000], not {v!r}")
    if at >= depth:
        raise GoStackError(f"at ({at}) must be below depth ({depth}): probed(at) must be called by probed(at+1)")


def uretprobe_return_pc(prog: GoProgram | None = None) -> int:
    """The address after probed's recursive call: the return address in every probed frame but the first."""
    from helpers.asm import disassemble

    prog = prog or _uretprobe_program()
    f = prog.binary.func("main.probed")
    ins = disassemble(prog.read(f.entry, f.end - f.entry), address=f.entry)
    for a, b in zip(ins, ins[1:]):
        if a.mnemonic in ("call", "callq") and a.text.endswith(f" {f.entry:#x}"):
            return b.address
    raise GoStackError("main.probed has no recursive call")


def uretprobe_native(depth: int, at: int, timeout: float = 60) -> ProbeRun:
    """Natively: replace probed(at)'s return address by a trampoline, keep recursing to probed(0)."""
    _probe_args(depth, at)
    prog = _uretprobe_program()
    p = toolchain.run([prog.path, depth, at, uretprobe_return_pc(prog)], timeout=timeout,
                      env={"PATH": "/usr/bin:/bin", "GODEBUG": "adaptivestackstart=0"})
    if p.returncode == 0:
        return ProbeRun("native", depth, at, True, int(p.stdout.split()[1]), "", -1)
    lines = [l for l in (p.stderr or "").splitlines() if l.startswith(("runtime: g", "fatal error"))]
    msg = "; ".join(re.sub(r"^runtime: g \d+: ", "runtime: ", l) for l in lines[:2]) or (p.stderr or "").strip()[:160]
    return ProbeRun("native", depth, at, False, None, msg, -1)


def uretprobe_emulated(depth: int, at: int) -> ProbeRun:
    """In the emulator: the same binary, its hijack() run for real; the trampoline page is mapped at the
    uprobes address (natively main maps it with mmap). The model's copystack unwinds the stack with the
    pcsp tables whenever it moves it, and meets the trampoline's address."""
    _probe_args(depth, at)
    prog = _uretprobe_program()
    rt = Runtime(prog)
    rt.write_global("main.N", depth)
    rt.write_global("main.At", at)
    rt.write_global("main.RetPC", uretprobe_return_pc(prog))
    # what main does natively with mmap: the trampoline page, here at the uprobes XOL address
    rt.m.map(URETPROBE_TRAMPOLINE, PAGE, "rwx")
    rt.m.write(URETPROBE_TRAMPOLINE, b"\x49\xbb" + bytes(8) + b"\x41\xff\xe3")
    rt.write_global("main.Tramp", URETPROBE_TRAMPOLINE)
    grows_before = {}
    rt.m.hook_address(prog.binary.func("main.hijack").entry,  # hijack's own Go code runs; this only counts
                      lambda m, _a: grows_before.setdefault("n", len(rt.grows())) and None)
    rt.go("main.worker")

    def moves_after() -> int:  # growths attempted after the replacement (a failed one raises inside copystack)
        return len(rt.grows()) - grows_before.get("n", len(rt.grows()))

    try:
        rt.run(max_insns=20_000_000)
    except GoStackError as e:
        return ProbeRun("emulator", depth, at, False, None, str(e), moves_after() + 1)
    return ProbeRun("emulator", depth, at, True, rt.read_global("main.Result"), "", moves_after())


# ------------------------------------------------------------------------------------------- pointers held outside

_OUTSIDE_GO = r'''package main

// waiter keeps an entry on its own stack and publishes its address, as kernel code publishes a wait-queue
// entry that another CPU will write to. Go's escape analysis would move the entry to the heap if a real
// pointer to it were stored in a global; an address kept as a uintptr (or held by the kernel, or by
// another program) is invisible to the runtime, so a stack move leaves it behind.

import (
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"unsafe"
)

var Held uintptr // the address "another CPU" holds
var Now uintptr  // where the entry is after deep() returned

type waitEntry struct {
	flags   int64
	private int64
	woken   int64
}

//go:noinline
func deep(n int) int {
	var local [100]int64
	local[n%100] = int64(n)
	if n == 0 {
		return 0
	}
	return deep(n-1) + int(local[n%100])
}

//go:noinline
func waiter(n int) int {
	var e waitEntry
	e.flags = 0x77
	Held = uintptr(unsafe.Pointer(&e))
	r := deep(n) // grows the stack: the runtime moves e, and fixes every pointer it knows of
	Now = uintptr(unsafe.Pointer(&e))
	return r + int(e.flags)
}

var done atomic.Int32

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	go func() {
		waiter(n)
		done.Store(1)
	}()
	for done.Load() == 0 {
		runtime.Gosched()
	}
	os.Stdout.WriteString(strconv.FormatUint(uint64(Held), 10) + " " + strconv.FormatUint(uint64(Now), 10) + "\n")
}
'''


@dataclass
class OutsidePointer:
    """What a stack move did to an address held outside the goroutine (see :func:`pointer_held_outside`)."""

    held: int                 # the address published before the move (what the other side still holds)
    now: int                  # where the entry is after the move (the goroutine's own view)
    old_stack: tuple          # (lo, hi) of the stack the entry was on when it was published
    new_stack: tuple          # (lo, hi) of the stack at the end
    held_in_old_stack: bool   # the held address points into the old stack
    old_stack_mapped: bool    # is the old stack still there? (the model unmaps freed stacks)
    read_through_held: str    # what reading through the held address gives, one line
    value_now: int            # the entry's first word, read at its new address (0x77)
    moves: int                # how many times the stack moved while the address was held
    result: int


def pointer_held_outside(depth: int = 200, initial_stack: int = 2048) -> OutsidePointer:
    """Run ``waiter(depth)`` in the emulator: it publishes the address of a struct on its goroutine stack
    (like a kernel wait-queue entry that another CPU points to), then recurses ``depth`` levels, so the
    stack grows and moves. The goroutine's own frames are fixed by copystack; the published address is not:
    it still points into the old stack, which has been freed."""
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 5000:
        raise GoStackError(f"depth must be an integer in [0, 5000], not {depth!r}")
    prog = _outside_program()
    rt = Runtime(prog, initial_stack=initial_stack)
    g = rt.go("main.waiter", depth)
    first = rt.stack_of(g)
    rt.run(max_insns=50_000_000)
    held = rt.read_global("main.Held") & (2**64 - 1)
    now = rt.read_global("main.Now") & (2**64 - 1)
    moves = [e for e in rt.events if e.kind == "grow"]
    old = next((e.old for e in moves if e.old[0] <= held < e.old[1]), first)
    try:
        v = rt.read64(held)
        mapped, read = True, f"{v:#x}"
    except Exception as e:  # unicorn: the page is unmapped
        mapped, read = False, f"fault: {type(e).__name__}: {str(e).splitlines()[0]}"
    return OutsidePointer(held, now, tuple(old), rt.stack_of(g), old[0] <= held < old[1], mapped, read,
                          rt.read64(now) if rt._is_mapped(now) else -1, len(moves), g.result)


def pointer_held_outside_native(depth: int = 200, timeout: float = 60) -> tuple[int, int]:
    """The same program run natively: (the address published, the entry's address after the move)."""
    if not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= 5000:
        raise GoStackError(f"depth must be an integer in [0, 5000], not {depth!r}")
    p = toolchain.run([_outside_program().path, depth], timeout=timeout,
                      env={"PATH": "/usr/bin:/bin", "GODEBUG": "adaptivestackstart=0"})
    if p.returncode != 0:
        raise GoStackError(f"native run failed (exit {p.returncode}): {(p.stderr or '').strip()[:160]}")
    held, now = (int(x) for x in p.stdout.split())
    return held, now


@lru_cache(maxsize=1)
def _outside_program() -> GoProgram:
    try:
        b = toolchain.go_build(_OUTSIDE_GO)
    except toolchain.ToolchainError as e:
        raise GoStackError(str(e).splitlines()[0]) from None
    return GoProgram(b.path, _OUTSIDE_GO)


def escape_of_published_pointer() -> str:
    """The compiler's escape-analysis verdict when waiter publishes a real pointer (*waitEntry) instead of a
    uintptr: the entry is moved to the heap, so Go code can never leave a real pointer to its stack outside."""
    src = _OUTSIDE_GO.replace("var Held uintptr", "var Held *waitEntry").replace(
        "Held = uintptr(unsafe.Pointer(&e))", "Held = &e").replace(
        "uint64(Held)", "uint64(uintptr(unsafe.Pointer(Held)))")
    try:
        b = toolchain.go_build(src, gcflags="-m")
    except toolchain.ToolchainError as e:
        raise GoStackError(str(e).splitlines()[0]) from None
    lines = [l for l in b.output.splitlines() if "moved to heap: e" in l]
    return lines[0].strip().removeprefix("./") if lines else ""


def stackguard0_writers() -> list[tuple[str, int, str, str]]:
    """Every line of the pinned Go's runtime (Go and assembly) that stores to stackguard0:
    (file, line, enclosing function or TEXT symbol, text)."""
    src = toolchain.goroot() / "src" / "runtime"
    pat_go = re.compile(r"\.stackguard0\s*=[^=]|atomic\.Storeuintptr\(&\w+\.stackguard0")
    pat_s = re.compile(r"MOV\w*\s+[^,]+,\s*g_stackguard0\(")
    out = []
    for path in sorted(src.glob("*.go")) + sorted(src.glob("*.s")):
        pat = pat_go if path.suffix == ".go" else pat_s
        head = re.compile(r"^func (?:\([^)]*\) )?(\w+)" if path.suffix == ".go" else r"^TEXT\s+([^(]+)\(")
        func = "?"
        for i, line in enumerate(path.read_text().splitlines(), 1):
            m = head.match(line)
            if m:
                func = m.group(1).replace("·", ".").lstrip(".")
            if pat.search(line) and not line.lstrip().startswith("//"):
                out.append((f"src/runtime/{path.name}", i, func, line.strip()))
    return out


def expected_chain(depth: int) -> int:
    """What chainStart(depth) returns: frame j stores 6 + j and adds its caller's value (5 + j)."""
    return 6 + 6 * depth + depth * (depth - 1) // 2


def expected_sum(which: str, depth: int) -> int:
    """What small/medium/large(depth, 0) return: each frame adds n (0 + 1 + ... + depth)."""
    return depth * (depth + 1) // 2


# ------------------------------------------------------------------------------------------- state


class Frame(NamedTuple):
    func: str
    pc: int
    sp: int
    fp: int  # the caller's SP: sp + frame size + return address (traceback.go: frame.fp)


@dataclass
class Event:
    """One thing the runtime did. Addresses are emulated virtual addresses."""

    kind: str                 # "grow" | "preempt" | "shrink" | "split" | "unsplit" | "exit" | "start"
    goid: int
    insns: int                # instructions executed by all goroutines so far
    func: str                 # the function whose prologue (or return) triggered it
    pc: int
    sp: int
    old: tuple                # (lo, hi) before
    new: tuple                # (lo, hi) after
    guard_before: int
    guard_after: int
    used: int                 # bytes of stack in use (hi - sp) at the event
    frames_adjusted: int = 0  # saved frame pointers (plus sched.bp) rewritten by copystack
    pointers_adjusted: int = 0  # pointer slots the stack maps mark live that pointed into the old stack
    frames_before: tuple = ()
    frames_after: tuple = ()
    g_before: dict = field(default_factory=dict)
    g_after: dict = field(default_factory=dict)

    @property
    def old_size(self) -> int:
        return self.old[1] - self.old[0]

    @property
    def new_size(self) -> int:
        return self.new[1] - self.new[0]

    def row(self) -> dict:
        """A table row with deterministic, readable values."""
        return {"kind": self.kind, "goid": self.goid, "insns": self.insns, "func": self.func,
                "old": f"[{self.old[0]:#x}, {self.old[1]:#x})", "new": f"[{self.new[0]:#x}, {self.new[1]:#x})",
                "size": f"{self.old_size} -> {self.new_size}", "stackguard0": f"{self.guard_before:#x} -> {self.guard_after:#x}",
                "used": self.used, "frames_adjusted": self.frames_adjusted}


@dataclass
class Segment:
    """Go <= 1.2: the link from a new segment back to the old one (the old runtime's Stktop)."""

    old: tuple
    old_guard: int
    ret_sp: int   # f's entry SP on the old segment ([ret_sp] is f's return address)
    ret_pc: int
    new: tuple


class Goroutine:
    def __init__(self, goid: int, func: str, args: tuple, g: int):
        self.goid, self.func, self.args, self.g = goid, func, args, g
        self.status = "runnable"   # runnable | running | done
        self.result = None
        self.started = False
        self.segments: list[Segment] = []

    def __repr__(self):
        return f"<goroutine {self.goid} {self.func}{self.args} {self.status} result={self.result}>"


class _Stop(Exception):
    pass


# ------------------------------------------------------------------------------------------- runtime

EVENT_FRAMES = 8  # innermost frames kept in an event (a deep recursion has thousands)


def _is_runtime(name: str) -> bool:
    """Functions of the runtime and of the standard packages it is built from (not the program's own)."""
    return name.startswith(("runtime.", "internal/", "sync.", "sync/", "unsafe.")) or name == "?"


def _reader(buf, base: int):
    """read(addr) -> the 8-byte word at addr of a stack image that starts at ``base``."""
    def read(addr: int) -> int:
        i = addr - base
        if not 0 <= i <= len(buf) - 8:
            raise GoStackError(f"traceback left the stack at {addr:#x}")
        return int.from_bytes(buf[i:i + 8], "little")
    return read



class Runtime:
    """A tiny Go runtime in Python around real Go machine code running in unicorn."""

    def __init__(self, program: GoProgram, initial_stack: int = 2048, policy: str = "copying",
                 max_stack: int = MAX_STACK, trace_sp: bool = False, stack_maps: bool = True):
        if policy not in ("copying", "segmented"):
            raise GoStackError(f"policy must be 'copying' or 'segmented', not {policy!r}")
        if initial_stack < PAGE // 2 or initial_stack & (initial_stack - 1):
            raise GoStackError(f"initial_stack must be a power of two >= {PAGE // 2}, not {initial_stack}")
        self.program, self.policy, self.initial_stack, self.max_stack = program, policy, initial_stack, max_stack
        self.stack_maps = stack_maps  # False: adjust frame pointers only (shows why the maps are needed)
        self.k = runtime_constants()
        self.stack_guard = self.k["stackGuard"]
        self.stack_preempt = self.k["stackPreempt"]
        self.off = program.g_offsets
        # helpers.emu: exact instruction counts without a Python hook per instruction or block
        self.m = Machine("x86_64", data_base=None)
        self.uc = self.m.uc  # for readers of raw memory (tests, emulated_moves)
        self._map_program()
        self.m.map(G_AREA, 0x10000, "rw")
        self.m.map(LESSSTACK, PAGE, "rx")
        self.m.write(LESSSTACK, b"\xcc")  # int3: never executed, the hook fires first
        self._next_stack = STACK_ARENA
        self.stacks: dict[int, tuple] = {}   # lo -> (map_base, map_size)
        self.goroutines: list[Goroutine] = []
        self.runq: deque[Goroutine] = deque()
        self.current: Goroutine | None = None
        self.events: list[Event] = []
        self.insns = 0
        self.switches = 0          # stack switches (grow/shrink copies, segment splits and returns)
        self.bytes_copied = 0
        self.sp_trace: list[tuple] | None = [] if trace_sp else None
        self._preempt_every = None
        self._next_preempt = None
        self._stop_reason = None
        self._pc_info: dict[int, tuple] = {}
        self._cache: dict[int, list] = {}    # segmented policy: freed segments kept for reuse, by size
        self.m.map(TLS_AREA, PAGE, "rw")
        self.m.regs["fs_base"] = TLS_AREA + PAGE // 2
        for addr, reason in ((program.morestack, "morestack"), (program.goexit + 1, "goexit"), (LESSSTACK, "lessstack")):
            self.m.hook_address(addr, self._hook_stop(reason))
        for name in UNRUNNABLE:
            f = program.binary._by_name.get(name)
            if f is not None:
                self.m.hook_address(f.entry, self._hook_stop("unrunnable " + name))

    def _hook_stop(self, reason: str):
        def stop(machine, _address):
            self._stop_reason = reason
            machine.stop(reason)
        return stop

    # ---------------------------------------------------------------- memory
    def _map_program(self) -> None:
        for vaddr, data, _fl in self.program.binary.segments:
            base = vaddr & ~(PAGE - 1)
            size = (vaddr + len(data) - base + PAGE - 1) & ~(PAGE - 1)
            self.m.map(base, size, "rwx")
            self.m.write(vaddr, data)

    def _is_mapped(self, addr: int) -> bool:
        return any(base <= addr < base + size for base, size in self.stacks.values()) or any(
            v & ~(PAGE - 1) <= addr < v + len(d) for v, d, _f in self.program.binary.segments)

    def read64(self, addr: int) -> int:
        return int.from_bytes(self.m.read(addr, 8), "little")

    def write64(self, addr: int, value: int) -> None:
        self.m.write(addr, (value & (2**64 - 1)).to_bytes(8, "little"))

    def global_addr(self, name: str) -> int:
        return self.program.binary.symbol(name)

    def read_global(self, name: str, size: int = 8) -> int:
        return int.from_bytes(self.m.read(self.global_addr(name), size), "little", signed=True)

    def write_global(self, name: str, value: int, size: int = 8) -> None:
        self.m.write(self.global_addr(name), (value & (2 ** (8 * size) - 1)).to_bytes(size, "little"))

    def stackalloc(self, size: int) -> tuple:
        """A fresh stack [lo, hi) never used before; hi ends a page so an overrun above faults."""
        if size > self.max_stack:
            raise GoStackError(f"goroutine stack exceeds {self.max_stack}-byte limit (the model's maxstacksize)")
        mapsize = max(PAGE, size)
        base = self._next_stack
        self._next_stack += mapsize + STACK_GAP
        self.m.map(base, mapsize, "rw")
        hi = base + mapsize
        lo = hi - size
        self.stacks[lo] = (base, mapsize)
        return lo, hi

    def stackfree(self, stack: tuple) -> None:
        # Unmapped, not recycled: a pointer left into the old stack faults at once.
        base, mapsize = self.stacks.pop(stack[0])
        self.m.unmap(base, mapsize)

    # ---------------------------------------------------------------- g fields (real offsets, from DWARF)
    def gget(self, g: Goroutine, name: str) -> int:
        if name in ("preempt", "preemptShrink"):
            return self.m.read(g.g + self.off[name], 1)[0]
        return self.read64(g.g + self.off[name])

    def gset(self, g: Goroutine, name: str, value: int) -> None:
        if name in ("preempt", "preemptShrink"):
            self.m.write(g.g + self.off[name], bytes([value]))
        else:
            self.write64(g.g + self.off[name], value)

    def stack_of(self, g: Goroutine) -> tuple:
        return self.gget(g, "stack.lo"), self.gget(g, "stack.hi")

    def gfields(self, g: Goroutine) -> dict:
        return {k: self.gget(g, k) for k in ("stack.lo", "stack.hi", "stackguard0", "sched.sp", "sched.pc", "sched.bp")}

    # ---------------------------------------------------------------- goroutines
    def go(self, func: str, *args: int) -> Goroutine:
        """newproc: a goroutine that will call ``func(*args)`` with a return address into runtime.goexit."""
        if len(args) > len(INT_ARG_REGS):
            raise GoStackError(f"at most {len(INT_ARG_REGS)} integer arguments fit in ABIInternal registers")
        if not all(isinstance(a, int) for a in args):
            raise GoStackError("arguments must be integers")
        f = self.program.binary.func(func)  # raises for unknown functions
        if len(self.goroutines) >= 0x10000 // G_STRIDE:
            raise GoStackError("too many goroutines for the model's g area")
        goid = len(self.goroutines) + 1
        gr = Goroutine(goid, func, args, G_AREA + (goid - 1) * G_STRIDE)
        lo, hi = self.stackalloc(self.initial_stack)
        self.gset(gr, "stack.lo", lo)
        self.gset(gr, "stack.hi", hi)
        self.gset(gr, "stackguard0", lo + self.stack_guard)  # runtime/proc.go: newproc1
        self.gset(gr, "stackguard1", 2**64 - 1)              # ~0 on user goroutines (runtime2.go comment)
        self.gset(gr, "goid", goid)
        # runtime/proc.go newproc1: sp = hi - totalSize (4 words); sys_x86.go gostartcall pushes goexit+PCQuantum
        sp = hi - 4 * 8 - 8
        self.write64(sp, self.program.goexit + 1)
        self.gset(gr, "sched.sp", sp)
        self.gset(gr, "sched.pc", f.entry)
        self.gset(gr, "sched.bp", 0)
        self.gset(gr, "sched.g", gr.g)
        self.goroutines.append(gr)
        self.runq.append(gr)
        self._event("start", gr, f.entry, sp, (lo, hi), (lo, hi), lo + self.stack_guard, lo + self.stack_guard, hi - sp)
        return gr

    def sysmon(self, every_insns: int | None) -> None:
        """Request preemption of the running goroutine every ``every_insns`` instructions (None: never).

        Like sysmon's retake/preemptone (runtime/proc.go): it only sets g.preempt and stackguard0 =
        stackPreempt; the goroutine notices at its next function prologue.
        """
        if every_insns is not None and (not isinstance(every_insns, int) or every_insns < 100):
            raise GoStackError(f"every_insns must be an integer >= 100, not {every_insns!r}")
        self._preempt_every = every_insns
        self._next_preempt = None if every_insns is None else self.insns + every_insns

    def request_preempt(self, g: Goroutine | None = None) -> None:
        """runtime/preempt.go / proc.go preemptone: set g.preempt and poison stackguard0."""
        g = g or self.current or (self.runq[0] if self.runq else None)
        if g is None:
            return
        self.gset(g, "preempt", 1)
        self.gset(g, "stackguard0", self.stack_preempt)

    # ---------------------------------------------------------------- running
    def run(self, max_insns: int = 10_000_000, timeout: float = 20.0, until=None) -> "Runtime":
        """Run goroutines round-robin until all are done (or ``until(event)`` is true for a new event);
        raise GoStackError on a fault, an exhausted instruction budget or a timeout."""
        deadline = time.monotonic() + timeout
        budget_end = self.insns + max_insns
        while True:
            if self.current is None:
                if not self.runq:
                    return self
                self._execute(self.runq.popleft())
            left = budget_end - self.insns
            if left <= 0:
                raise GoStackError(f"instruction budget of {max_insns} exhausted")
            t_left = deadline - time.monotonic()
            if t_left <= 0:
                raise GoStackError(f"timed out after {timeout:g} s")
            slice_ = left if self._next_preempt is None else max(1, min(left, self._next_preempt - self.insns))
            trace = TraceSpec(regs=("rsp",), mem=False, max_steps=min(slice_, 400_000)) if self.sp_trace is not None else False
            self._stop_reason = None
            base = self.insns
            out = self.m.run(start=self.m.pc, max_insns=slice_, timeout=t_left, trace=trace)
            self.insns += out.insns
            if out.trace is not None:
                goid = self.current.goid
                step = max(SP_SAMPLE, out.trace.steps // SP_POINTS)
                self.sp_trace += [(base + i, goid, out.trace.regs_at(i)["rsp"])
                                  for i in range(0, out.trace.steps, step)]
            seen = len(self.events)
            if out.status == "stopped" and self._stop_reason == "morestack":
                self._morestack()
            elif out.status == "stopped" and self._stop_reason == "goexit":
                self._goexit()
            elif out.status == "stopped" and self._stop_reason == "lessstack":
                self._lessstack()
            elif out.status == "stopped" and (self._stop_reason or "").startswith("unrunnable "):
                name = self._stop_reason.split(" ", 1)[1]
                raise GoCannotRun(self._cannot_run(name, UNRUNNABLE[name]))
            elif out.fault is not None and out.fault.kind == "syscall":
                raise GoCannotRun(self._cannot_run(self._fname(out.pc), "executes a SYSCALL instruction"))
            elif out.status == "budget" and out.reason == "timeout":
                raise GoStackError(f"timed out after {timeout:g} s")
            elif out.status == "budget" and self._next_preempt is not None and self.insns >= self._next_preempt:
                # sysmon (runtime/proc.go: retake -> preemptone) asks the running goroutine to yield
                self._next_preempt += self._preempt_every
                self.request_preempt(self.current)
            elif out.status == "budget":
                raise GoStackError(f"instruction budget of {max_insns} exhausted")
            else:
                raise GoStackError(self._fault(out))
            if until is not None and any(until(e) for e in self.events[seen:]):
                return self

    def _execute(self, g: Goroutine) -> None:
        """runtime/proc.go: execute -- reset stackguard0 (dropping a stale preempt request) and gogo."""
        self.current = g
        g.status = "running"
        lo = self.gget(g, "stack.lo")
        if not g.segments:
            self.gset(g, "stackguard0", lo + self.stack_guard)
        self.gset(g, "preempt", 0)
        self._gogo(g, first=not g.started)
        g.started = True

    def _gogo(self, g: Goroutine, first: bool = False) -> None:
        # asm_amd64.s: gogo restores SP, BP, ctxt (DX), g (R14) and jumps to sched.pc; nothing else survives
        regs = self.m.regs
        for r in SCRATCH_REGS:
            regs[r] = POISON
        if first:
            for r, v in zip(INT_ARG_REGS, g.args):
                regs[r] = v & (2**64 - 1)
        regs["rsp"] = self.gget(g, "sched.sp")
        regs["rbp"] = self.gget(g, "sched.bp")
        regs["rdx"] = self.gget(g, "sched.ctxt")
        regs["r14"] = g.g
        self.write64(TLS_AREA + PAGE // 2 - 8, g.g)  # gogo also stores g in TLS, where ABI0 code finds it
        regs["rip"] = self.gget(g, "sched.pc")

    def _goexit(self) -> None:
        g = self.current
        g.result = self.m.regs["rax"]
        if g.result >= 2**63:
            g.result -= 2**64
        g.status = "done"
        sp = self.m.regs["rsp"]
        lo, hi = self.stack_of(g)
        self._event("exit", g, self.program.goexit + 1, sp, (lo, hi), (lo, hi), self.gget(g, "stackguard0"),
                    self.gget(g, "stackguard0"), hi - sp)
        self.current = None

    def _frames_now(self, pc: int, sp: int) -> list[Frame]:
        """Best-effort traceback of the running goroutine from (pc, sp); [] where it cannot unwind."""
        try:
            lo, hi = self._stack_containing(sp)
            return self._walk(pc, sp, _reader(self.m.read(sp, hi - sp), sp))
        except (GoStackError, GoBinaryError):
            return []

    def _reached(self, pc: int, sp: int) -> tuple[str | None, str | None]:
        """(the function the program's own innermost frame called, that frame's function): the program's own
        functions are ``main.*``; everything else is the runtime or a standard package."""
        frames = self._frames_now(pc, sp)
        for i, fr in enumerate(frames):
            if fr.func.startswith("main."):
                return (frames[i - 1].func if i else None), fr.func
        return None, None

    def _cannot_run(self, name: str, why: str) -> str:
        regs = self.m.regs
        reached, caller = self._reached(regs["rip"], regs["rsp"])
        via = f" (through {reached})" if reached and reached != name else ""
        who = caller or self._fname(regs["rip"])
        return (f"{who} reached {name}{via}, which {why}: the model cannot run that "
                f"(its goroutine has no m, no heap and no scheduler); keep the function allocation-free")

    def _fault(self, out) -> str:
        here = self._fname(out.pc)
        reached, caller = self._reached(out.pc, self.m.regs["rsp"])
        who = f"{caller} reached {reached}, which" if caller and reached else here
        hint = ""
        if (not here.startswith("main.") and out.fault is not None and out.fault.address is not None
                and out.fault.address < 0x10000):
            hint = " (a nil pointer: runtime code reading g.m, which the emulated goroutine does not have)"
        return f"goroutine {self.current.goid}: {who} stopped at {out.pc:#x} in {here}: {out.message}{hint}"

    # ---------------------------------------------------------------- morestack / newstack
    def _morestack(self) -> None:
        regs, g = self.m.regs, self.current
        if regs["r14"] != g.g:
            raise GoStackError("R14 does not hold the running goroutine's g")
        sp = regs["rsp"]
        # asm_amd64.s morestack: f's PC is at 0(SP), f's SP is 8(SP)
        self.gset(g, "sched.pc", self.read64(sp))
        self.gset(g, "sched.sp", sp + 8)
        self.gset(g, "sched.bp", regs["rbp"])
        self.gset(g, "sched.ctxt", regs["rdx"])
        self._newstack(g)

    def _newstack(self, g: Goroutine) -> None:
        guard = self.gget(g, "stackguard0")
        lo, hi = self.stack_of(g)
        pc, sp = self.gget(g, "sched.pc"), self.gget(g, "sched.sp")
        f = self.program.binary.findfunc(pc)
        fname = f.name if f else "?"
        if guard == self.stack_preempt:
            # stack.go newstack: preemption is checked first; gopreempt_m -> back of the run queue
            before = self.gfields(g)
            if self.gget(g, "preemptShrink"):
                self.gset(g, "preemptShrink", 0)
                self.shrinkstack(g)
            self.gset(g, "preempt", 0)
            g.status = "runnable"
            self.runq.append(g)
            self.current = None
            lo2, hi2 = self.stack_of(g)
            self.gset(g, "stackguard0", lo2 + self.stack_guard)  # proc.go execute() resets it when g runs again
            self._event("preempt", g, pc, sp, (lo, hi), (lo2, hi2), guard, lo2 + self.stack_guard, hi - sp,
                        g_before=before, g_after=self.gfields(g))
            return
        if sp - 8 < lo:
            raise GoStackError(f"split stack overflow: sp {sp - 8:#x} < stack.lo {lo:#x}")
        if self.policy == "segmented":
            self._split(g, f)
        else:
            oldsize = hi - lo
            newsize = oldsize * 2
            if f is not None:  # grow at least as much as the new frame needs (newstack)
                needed = self.program.binary.max_sp_delta(f) + self.stack_guard
                used = hi - sp
                while newsize - used < needed:
                    newsize *= 2
            self.copystack(g, newsize, kind="grow", func=fname)
        self._gogo(g)

    def copystack(self, g: Goroutine, newsize: int, kind: str = "grow", func: str = "") -> Event:
        """runtime/stack.go: copystack + adjustctxt + adjustframe (frame pointers only)."""
        old = self.stack_of(g)
        guard_before = self.gget(g, "stackguard0")
        before = self.gfields(g)
        pc, sp = self.gget(g, "sched.pc"), self.gget(g, "sched.sp")
        used = old[1] - sp
        new = self.stackalloc(newsize)
        delta = new[1] - old[1]
        buf = bytearray(self.m.read(old[1] - used, used))  # memmove, done on a Python copy
        base = new[1] - used

        def adjust_word(addr) -> int:  # stack.go: adjustpointer, for a word of the new stack
            i = addr - base
            p = int.from_bytes(buf[i:i + 8], "little")
            if old[0] <= p < old[1]:
                buf[i:i + 8] = (p + delta).to_bytes(8, "little")
                return 1
            return 0

        n = 0
        for name in ("sched.ctxt", "sched.bp"):  # adjustctxt
            p = self.gget(g, name)
            if old[0] <= p < old[1]:
                self.gset(g, name, p + delta)
                n += name == "sched.bp"
        frames_after = self._walk(pc, base, _reader(buf, base))
        frames_before = [Frame(f.func, f.pc, f.sp - delta, f.fp - delta) for f in frames_after[:EVENT_FRAMES]]
        ptrs = 0
        for fr in frames_after:  # adjustframe: the saved BP sits just below the return address
            if fr.fp - 8 > fr.sp:
                n += adjust_word(fr.fp - 16)
            if self.stack_maps:
                ptrs += sum(adjust_word(a) for a in self._pointer_slots(fr))
        self.m.write(base, bytes(buf))
        self.bytes_copied += used
        self.gset(g, "stack.lo", new[0])
        self.gset(g, "stack.hi", new[1])
        self.gset(g, "stackguard0", new[0] + self.stack_guard)  # stack.go copystack
        self.gset(g, "sched.sp", base)
        self.stackfree(old)
        self.switches += 1
        return self._event(kind, g, pc, sp, old, new, guard_before, new[0] + self.stack_guard, used,
                           frames_adjusted=n, pointers_adjusted=ptrs, frames_before=tuple(frames_before[:EVENT_FRAMES]),
                           frames_after=tuple(frames_after[:EVENT_FRAMES]), g_before=before,
                           g_after=self.gfields(g), func=func)

    def _pointer_slots(self, fr: Frame) -> list[int]:
        """Addresses of the words the stack maps mark as live pointers in one frame, and the pointer words
        of its stack objects (runtime/stkframe.go: getStackMap; stack.go: adjustframe -> adjustpointers)."""
        b = self.program.binary
        f = b.findfunc(fr.pc)
        key = ("maps", fr.pc)
        maps = self._pc_info.get(key)
        if maps is None:
            pcdata = -1
            target = fr.pc
            if target != f.entry:
                target -= 1  # the call instruction, not the return address
                pcdata = b.pcdata_value(f, goelf.PCDATA_STACK_MAP_INDEX, target)
            pcdata = max(pcdata, 0)
            locals_ = b.stackmap(f, goelf.FUNCDATA_LOCALS_POINTER_MAPS, pcdata) or []
            args = b.stackmap(f, goelf.FUNCDATA_ARGS_POINTER_MAPS, pcdata) or []
            maps = self._pc_info[key] = ([i for i, bit in enumerate(locals_) if bit], len(locals_),
                                         [i for i, bit in enumerate(args[:f.args // 8]) if bit],
                                         b.stack_objects(f))
        live_locals, nlocals, live_args, objects = maps
        varp = fr.fp - 8
        if varp > fr.sp:
            varp -= 8  # the saved frame pointer
        slots = []
        if varp - fr.sp > 0 and nlocals:  # locals only once the frame is allocated
            slots += [varp - 8 * nlocals + 8 * i for i in live_locals]
        slots += [fr.fp + 8 * i for i in live_args]  # argp = fp on amd64 (MinFrameSize 0)
        if varp > fr.sp:
            # stack.go adjustframe: every stack object (an address-taken variable holding pointers, such as a
            # closure's captured references), live or not, once the frame is allocated
            for off, _size, words in objects:
                p = (varp if off < 0 else fr.fp) + off
                if p >= fr.sp:
                    slots += [p + 8 * w for w in words]
        return slots

    def shrinkstack(self, g: Goroutine) -> Event | None:
        """runtime/stack.go: shrinkstack -- halve a stack that is less than a quarter used."""
        if g.status == "done" or g.segments or g is self.current:
            return None
        lo, hi = self.stack_of(g)
        newsize = shrink_target(hi - lo, hi - self.gget(g, "sched.sp"), self.k)
        if newsize is None:
            return None
        return self.copystack(g, newsize, kind="shrink", func=self._fname(self.gget(g, "sched.pc")))

    def gc(self) -> list[Event]:
        """What a GC cycle does to stacks (mgcmark.go scanstack -> shrinkstack) for every parked goroutine."""
        return [e for g in self.goroutines if (e := self.shrinkstack(g)) is not None]

    # ---------------------------------------------------------------- segmented stacks (Go <= 1.2)
    def _split(self, g: Goroutine, f) -> None:
        old = self.stack_of(g)
        guard_before = self.gget(g, "stackguard0")
        sp = self.gget(g, "sched.sp")
        frame = self.program.binary.max_sp_delta(f) if f else 0
        args = (f.args + 7) & ~7 if f else 0
        size = self.initial_stack
        while size < frame + self.stack_guard + args + 8:
            size *= 2
        cached = self._cache.get(size)
        new = cached.pop() if cached else self.stackalloc(size)
        # The new segment starts with a copy of f's arguments and a fake return address into lessstack.
        new_sp = new[1] - args - 8
        if args:
            self.m.write(new_sp + 8, self.m.read(sp + 8, args))
        self.write64(new_sp, LESSSTACK)
        g.segments.append(Segment(old, guard_before, sp, self.read64(sp), new))
        self.gset(g, "stack.lo", new[0])
        self.gset(g, "stack.hi", new[1])
        self.gset(g, "stackguard0", new[0] + self.stack_guard)
        self.gset(g, "sched.sp", new_sp)
        self.switches += 1
        self.bytes_copied += args
        self._event("split", g, self.gget(g, "sched.pc"), sp, old, new, guard_before, new[0] + self.stack_guard,
                    old[1] - sp)

    def _lessstack(self) -> None:
        """Go <= 1.2 runtime.lessstack: f returned into the stub -- go back to the old segment and free the new."""
        g = self.current
        seg = g.segments.pop()
        sp = self.m.regs["rsp"]
        guard_before = self.gget(g, "stackguard0")
        self.gset(g, "stack.lo", seg.old[0])
        self.gset(g, "stack.hi", seg.old[1])
        guard = seg.old_guard if guard_before != self.stack_preempt else self.stack_preempt
        self.gset(g, "stackguard0", guard)
        # Go <= 1.2 kept freed segments in a per-M cache (stack.c: stackfree -> stackcache); so does the model
        cached = self._cache.setdefault(seg.new[1] - seg.new[0], [])
        if len(cached) < SEGMENT_CACHE:
            cached.append(seg.new)
        else:
            self.stackfree(seg.new)
        self.switches += 1
        self.m.regs["rsp"] = seg.ret_sp + 8
        self.m.regs["rip"] = seg.ret_pc
        self._event("unsplit", g, seg.ret_pc, sp, seg.new, seg.old, guard_before, guard, seg.old[1] - seg.ret_sp - 8,
                    func=self._fname(seg.ret_pc))

    # ---------------------------------------------------------------- inspection
    def _fname(self, pc: int) -> str:
        f = self.program.binary.findfunc(pc)
        return f.name if f else "?"

    def traceback(self, g: Goroutine, pc: int | None = None, sp: int | None = None) -> list[Frame]:
        """Frames from (pc, sp) (default: g.sched) out to runtime.goexit, with the pcsp table
        (runtime/traceback.go: unwinder.resolveInternal: fp = sp + funcspdelta + PtrSize)."""
        pc = self.gget(g, "sched.pc") if pc is None else pc
        sp = self.gget(g, "sched.sp") if sp is None else sp
        segs = list(g.segments)
        out = []
        while True:
            lo, hi = (segs[-1].new if segs else self.stack_of(g)) if g.segments else self.stack_of(g)
            if not lo <= sp < hi:
                lo, hi = self._stack_containing(sp)
            chunk = _reader(self.m.read(sp, hi - sp), sp)
            frames = self._walk(pc, sp, chunk)
            out += frames
            last_ret = chunk(frames[-1].fp - 8) if frames else pc
            if last_ret == LESSSTACK and segs:  # Go <= 1.2: continue on the older segment
                seg = segs.pop()
                pc, sp = seg.ret_pc, seg.ret_sp + 8
                continue
            return out

    def _stack_containing(self, addr: int) -> tuple:
        for lo, (base, size) in self.stacks.items():
            if base <= addr < base + size:
                return lo, base + size
        raise GoStackError(f"traceback: sp {addr:#x} is not in any goroutine stack")

    def _walk(self, pc: int, sp: int, read) -> list[Frame]:
        """Unwind one contiguous stack; stops at runtime.goexit or at a return into lessstack."""
        b = self.program.binary
        known = self._pc_info  # pc -> (function name, pcsp delta): recursion repeats the same few PCs
        out = []
        while pc != LESSSTACK:
            info = known.get(pc)
            if info is None:
                f = b.findfunc(pc)
                if f is None:
                    # runtime/traceback.go (unwinder.next): a return address in no Go function; copystack's
                    # unwinder has no unwindSilentErrors, so the real runtime throws
                    caller = out[-1].func if out else "?"
                    raise GoStackError(f"runtime: unexpected return pc for {caller} called from {pc:#x}; "
                                       f"fatal error: unknown caller pc")
                info = known[pc] = (f.name, None if f.name == "runtime.goexit" else b.pcsp(f, pc))
            name, delta = info
            if delta is None:
                break
            fp = sp + delta + 8
            out.append(Frame(name, pc, sp, fp))
            pc, sp = read(fp - 8), fp
        return out

    def snapshot(self, g: Goroutine | None = None) -> dict:
        """The g fields and a traceback (function, pc, sp, fp) of a goroutine that is not running."""
        g = g or self.goroutines[-1]
        snap = {"goid": g.goid, "status": g.status, **self.gfields(g)}
        if g is self.current:  # running: sched is stale, use the CPU registers
            snap["frames"] = self.traceback(g, self.m.regs["rip"], self.m.regs["rsp"])
        else:
            snap["frames"] = [] if g.status == "done" else self.traceback(g)
        return snap

    def _event(self, kind, g, pc, sp, old, new, gb, ga, used, func=None, **kw) -> Event:
        e = Event(kind, g.goid, self.insns, func or self._fname(pc), pc, sp, tuple(old), tuple(new), gb, ga, used, **kw)
        self.events.append(e)
        return e

    def stack_history(self) -> list[dict]:
        """Each stack a goroutine lived on: {goid, lo, hi, guard, t0, t1} (t in instructions), for plotting."""
        live: dict[int, dict] = {}
        out: list[dict] = []
        for e in self.events:
            if e.kind == "preempt" or e.old == e.new and e.kind != "start":
                if e.kind == "exit" and e.goid in live:
                    live.pop(e.goid)["t1"] = e.insns
                continue
            if e.goid in live:
                live[e.goid]["t1"] = e.insns
            seg = {"goid": e.goid, "lo": e.new[0], "hi": e.new[1], "guard": e.guard_after, "t0": e.insns,
                   "t1": self.insns}
            live[e.goid] = seg
            out.append(seg)
        return out

    def grows(self) -> list[Event]:
        return [e for e in self.events if e.kind == "grow"]


# ------------------------------------------------------------------------------------------- recipes


def run_recursion(which: str = "small", depth: int = 100, initial_stack: int = 2048, policy: str = "copying",
                  preempt_every: int | None = None, program: GoProgram | None = None, trace_sp: bool = False,
                  max_insns: int = 50_000_000, timeout: float = 30.0) -> Runtime:
    """Run STACKS_GO's worker() (``which`` frame size, ``depth`` levels) in the emulator; the runtime is returned."""
    if which not in FRAME_FUNCS:
        raise GoStackError(f"which must be one of {', '.join(FRAME_FUNCS)}, not {which!r}")
    if not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise GoStackError(f"depth must be an integer in [0, {MAX_DEPTH}], not {depth!r}")
    prog = program or GoProgram.example()
    rt = Runtime(prog, initial_stack=initial_stack, policy=policy, trace_sp=trace_sp)
    rt.write_global("main.N", depth)
    rt.write_global("main.Which", FRAME_FUNCS[which])
    rt.go("main.worker")
    rt.sysmon(preempt_every)
    rt.run(max_insns=max_insns, timeout=timeout)
    return rt


def emulated_moves(rt: Runtime, depth: int) -> NativeRun:
    """What the emulated worker's frames recorded, in the same shape as a native run."""
    raw = rt.m.read(rt.global_addr("main.delta"), 8 * (min(depth, MAX_DEPTH) + 1))
    delta = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
    which = next(k for k, v in FRAME_FUNCS.items() if v == rt.read_global("main.Which"))
    return NativeRun(which, depth, rt.read_global("main.Result"), delta)


def predict_growth(frame: int, depth: int, initial_stack: int = 2048, first_used: int = 72) -> dict:
    """Pencil-and-paper newstack for a recursion of ``depth + 1`` frames of ``frame`` bytes
    (funcMaxSPDelta: locals + saved BP; each call adds ``frame + 8`` with the return address).

    ``first_used`` is hi - SP at the first frame's entry (STACKS_GO: 40 bytes from newproc1, worker's
    24-byte frame, the return address). The prologue sends frame j to morestack when
    SP - max(0, frame - StackSmall) <= stackguard0 (obj6.go: stacksplit, unsigned JBE); newstack doubles
    until ``newsize - used >= frame + stackGuard``. Copying keeps hi - SP, so only sizes change.
    The tests check this against the emulator.
    """
    for name, v, lo, hi in (("frame", frame, 0, MAX_STACK), ("depth", depth, 0, MAX_DEPTH),
                            ("first_used", first_used, 0, MAX_STACK)):
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise GoStackError(f"{name} must be an integer in [{lo}, {hi}], not {v!r}")
    if (not isinstance(initial_stack, int) or isinstance(initial_stack, bool) or initial_stack < PAGE // 2
            or initial_stack & (initial_stack - 1) or initial_stack > MAX_STACK):
        raise GoStackError(f"initial_stack must be a power of two in [{PAGE // 2}, {MAX_STACK}], not {initial_stack!r}")
    k = runtime_constants()
    guard, small = k["stackGuard"], k["StackSmall"]
    size, sizes, at = initial_stack, [], []
    for j in range(depth + 1):
        used = first_used + j * (frame + 8)
        if size - used - max(0, frame - small) <= guard:
            size *= 2
            while size - used < frame + guard:
                size *= 2
            sizes.append(size)
            at.append(j)
    return {"growths": len(sizes), "final_size": size, "sizes": sizes, "depths": at,
            "final_guard_below_hi": size - guard}


def run_chain(depth: int, initial_stack: int = 2048, stack_maps: bool = True, program: GoProgram | None = None,
              max_insns: int = 20_000_000) -> Runtime:
    """STACKS_GO's chainStart(depth): every frame holds a pointer into its caller's frame."""
    if not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise GoStackError(f"depth must be an integer in [0, {MAX_DEPTH}], not {depth!r}")
    rt = Runtime(program or GoProgram.example(), initial_stack=initial_stack, stack_maps=stack_maps)
    rt.write_global("main.N", depth)
    rt.write_global("main.Which", 4)
    rt.go("main.worker")
    return rt.run(max_insns=max_insns)


def run_hot_split(policy: str, pad: int, n: int = 100, initial_stack: int = 2048,
                  program: GoProgram | None = None, max_insns: int = 20_000_000) -> Runtime:
    """STACKS_GO's pad(pad, n): ``pad`` small frames, then a loop calling leaf() ``n`` times."""
    if not isinstance(pad, int) or not 0 <= pad <= 10_000:
        raise GoStackError(f"pad must be an integer in [0, 10000], not {pad!r}")
    if not isinstance(n, int) or not 0 <= n <= 1_000_000:
        raise GoStackError(f"n must be an integer in [0, 1000000], not {n!r}")
    rt = Runtime(program or GoProgram.example(), initial_stack=initial_stack, policy=policy)
    rt.write_global("main.N", n)
    rt.write_global("main.Pad", pad)
    rt.write_global("main.Which", 3)
    rt.go("main.worker")
    return rt.run(max_insns=max_insns)


def hot_split_depth(initial_stack: int = 2048, program: GoProgram | None = None, search: int = 64) -> int:
    """The smallest pad depth at which, under segmented stacks, every leaf() call needs a new segment."""
    for pad in range(search):
        rt = run_hot_split("segmented", pad, n=4, initial_stack=initial_stack, program=program)
        if sum(e.kind == "split" for e in rt.events) >= 4:
            return pad
    raise GoStackError(f"no hot split within {search} frames")


def asm_function(name: str, file: str = "asm_amd64.s") -> list[str]:
    """The body of ``TEXT runtime·<name>`` in the pinned Go's src/runtime/<file>, one line per instruction."""
    lines = (toolchain.goroot() / "src" / "runtime" / file).read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if re.match(rf"TEXT\s+runtime·{re.escape(name)}\(SB\)", l)), None)
    if start is None:
        raise GoStackError(f"no TEXT runtime·{name} in src/runtime/{file}")
    body = [lines[start].strip()]
    for l in lines[start + 1:]:
        if l.startswith("TEXT"):
            break
        if l.strip() and not l.strip().startswith("//"):
            body.append(l.strip())
    return body


def g_loads(program: GoProgram) -> dict[str, list[tuple[str, bool, list[str]]]]:
    """How each function's stack check reaches g: {"r14": [...], "tls": [...]} with (function, is assembly,
    first five instructions) for every function whose prologue compares SP with stackguard0 (0x10(reg)).

    ABIInternal code finds g in R14 (src/cmd/compile/abi-internal.md); ABI0 code (assembly) cannot rely on
    it and loads g from thread-local storage, ``%fs:-8`` on linux/amd64, first
    (src/cmd/internal/obj/x86/obj6.go: preprocess, "Load g from thread-local storage" unless ABIInternal).
    "Is assembly": the ELF symbol table calls the function ``<name>.abi0`` (cmd/link names ABI0 symbols so
    when both ABIs exist), or it is a file-static assembly symbol (``name<>`` in the .s file: no package).
    """
    abi0 = {n[:-5] for n in program.binary.symbols if n.endswith(".abi0")}
    out: dict[str, list] = {"r14": [], "tls": []}
    for f in program.binary.funcs:
        try:
            head = [t for _a, t in program.head(f.name, 5)]
        except (GoStackError, GoBinaryError, IndexError):
            continue
        if any(re.fullmatch(r"cmpq? 0x10\(%r\w+\), %r(sp|12)", t) for t in head):
            kind = "tls" if "%fs:0xfffffffffffffff8" in head[0] else "r14"
            out[kind].append((f.name, f.name in abi0 or "." not in f.name, head))
    return out


def classify_prologues(program: GoProgram) -> list[Prologue]:
    """The prologue of every function in the binary that has the standard one (NOSPLIT ones have none)."""
    out = []
    for f in program.binary.funcs:
        try:
            out.append(program.prologue(f.name))
        except (GoStackError, GoBinaryError, IndexError):
            continue
    return out
