"""gointr: real Go machine code meeting kernel interrupt context in an emulator, and the runtime facts behind it.

Serves chapter 4d, "The garbage collector in interrupt context" and "Go does run on bare metal".

What is real: the machine code. :data:`INTR_GO` is built by the pinned Go and mapped into unicorn by
:class:`helpers.gostack.Runtime` at its own addresses, with a fake ``g`` whose field offsets come from the
binary's DWARF. The interrupt is delivered as the CPU does it (:func:`helpers.idt.deliver`: Intel SDM Vol. 3A
§6.12-6.14, IST stacks included), and the handler returns with a real ``iretq`` through a flat GDT.

What is modelled, and from where:

* ``runtime.writeBarrier``, ``g.m``, ``m.p`` and ``p.wbBuf`` live in emulated memory at the offsets DWARF gives;
  ``runtime.gcWriteBarrier2`` is the real compiled code (golang/go src/runtime/asm_amd64.s, gcWriteBarrier<>);
* stack constants are evaluated from the pinned Go source (:func:`helpers.goelf.runtime_constants`), the
  kernel's stack sizes and ``struct pt_regs`` from the kernel's headers (:func:`kernel_stack_facts`).

API::

    barrier_offsets()                         -> g.m, m.p, p.wbBuf.next/end as gcWriteBarrier's machine code uses them
    wb = write_barrier_run(with_p=False)      -> WbRun: the path through runtime.gcWriteBarrier2 and how it ended
    irq = interrupt_run("stub" | "go", where="prologue" | "barrier" | "user", ist_below=False)  -> IrqRun
    sequential_barrier_run()                  -> the write-barrier buffer when the two stores do not overlap
    stack_budget(facts)                       -> StackBudget: stackGuard vs an interrupt frame plus pt_regs
    newstack_check(), pragma_in_runtime()     -> the pinned runtime's lines that the chapter cites
    compile_pragma(pragma)                    -> (ok, first error line) of a package main using the pragma
    oom_run(limit_mb)                         -> OomRun: a native Go run under RLIMIT_AS

Bad input raises :class:`GoIntrError` (a ValueError) with one line.
"""
from __future__ import annotations

import re
import resource
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from helpers import idt, toolchain
from helpers.goelf import runtime_constants
from helpers.gostack import GoProgram, Runtime, INT_ARG_REGS, POISON, SCRATCH_REGS

INTR_GO = r"""package main

type node struct {
	next *node
	val  int
}

// Objects the demonstrations link together (in .bss: nothing in this program allocates).
var slots [8]node

//go:noinline
func link(a, b *node) { a.next = b }

// step is the interrupted code: an ordinary Go function with a stack check and a pointer store.
//
//go:noinline
func step(v int) int {
	link(&slots[v&3], &slots[(v+1)&3])
	return v
}

// onIRQ is an ordinary Go function used as an interrupt handler: the thing Go kernels never do.
//
//go:noinline
func onIRQ(v int) int {
	link(&slots[4+v&3], &slots[4+(v+1)&3])
	return v
}

func main() {
	println(step(1), onIRQ(1))
}
"""

# The emulated "CPU" area: a flat GDT, the interrupt stubs, an IST stack, a fake M and P.
CPU_AREA = 0xD0_0000_0000
GDT = CPU_AREA
STUBS = CPU_AREA + 0x1000
WAKE = CPU_AREA + 0x2000          # the word the stub sets: "IRQ pending, wake the handler goroutine"
IST_ABOVE = CPU_AREA + 0x10000    # top of a 16 KiB interrupt stack above the goroutine stacks
IST_BELOW = 0x90_0000_0000        # ... or below them (addresses compare differently with stackguard0)
IST_SIZE = 0x4000
M_AREA = CPU_AREA + 0x20000
P_AREA = CPU_AREA + 0x21000
WBBUF = CPU_AREA + 0x30000        # the P's write-barrier buffer (runtime/mwbbuf.go: wbBuf.buf)
VECTOR = 0x20                     # the first vector Linux gives to device interrupts (FIRST_EXTERNAL_VECTOR)
KCS, KDS = idt.KERNEL_CS, idt.KERNEL_DS


class GoIntrError(ValueError):
    """Bad input to one of this module's experiments. One line."""


@lru_cache(maxsize=1)
def program() -> GoProgram:
    return GoProgram.build(INTR_GO)


def _gdt() -> bytes:
    # Flat segments, Intel SDM Vol. 3A §3.4.5: null, null, 0x10 code (L=1, DPL 0), 0x18 data
    seg = lambda access, flags: bytes([0xFF, 0xFF, 0, 0, 0, access, (flags << 4) | 0xF, 0])
    return bytes(16) + seg(0x9A, 0xA) + seg(0x92, 0xC)


# ---------------------------------------------------------------------------------------- the bench
class Bench:
    """A gostack Runtime plus a CPU: GDT, an IDT gate for :data:`VECTOR`, interrupt stubs, M and P."""

    def __init__(self, ist_below: bool = False, with_p: bool = True, barrier: bool = False):
        self.prog = program()
        self.rt = Runtime(self.prog, initial_stack=8192)
        self.m = self.rt.m
        b = self.prog.binary
        self.m.map(CPU_AREA, 0x40000, "rwx")
        self.ist_top = IST_BELOW + IST_SIZE if ist_below else IST_ABOVE
        if ist_below:
            self.m.map(IST_BELOW, IST_SIZE, "rw")
        self.m.write(GDT, _gdt())
        self.m.regs["gdtr"] = (GDT, len(_gdt()) - 1)
        self.m.regs["cs"], self.m.regs["ss"] = KCS, KDS
        self.off = barrier_offsets(self.prog)
        self.with_p = with_p
        if barrier:
            self.rt.write_global("runtime.writeBarrier", 1, size=1)  # runtime/mgc.go: writeBarrier.enabled
        self.events: list[str] = []
        self.fired = False
        self.delivery = None

    def start(self, func: str, *args: int):
        """newproc + execute + gogo (runtime/proc.go, asm_amd64.s), done through the model's public state."""
        g = self.rt.go(func, *args)
        self.rt.runq.clear()
        self.rt.current = g
        if self.with_p:  # every goroutine runs on the one M and P; the P's buffer is set up once
            self.rt.gset(g, "m", M_AREA)
            if not self.m.read_u64(M_AREA + self.off["m_p"]):
                self.m.write_u64(M_AREA + self.off["m_p"], P_AREA)
                self.m.write_u64(P_AREA + self.off["wbBuf_next"], WBBUF)
                self.m.write_u64(P_AREA + self.off["wbBuf_end"], WBBUF + 0x100)
        r = self.m.regs
        for name in SCRATCH_REGS:
            r[name] = POISON
        for name, v in zip(INT_ARG_REGS, args):
            r[name] = v
        r["rsp"], r["rbp"], r["r14"], r["rip"] = self.rt.gget(g, "sched.sp"), 0, g.g, self.rt.gget(g, "sched.pc")
        return g

    def fn(self, name: str) -> int:
        return self.prog.binary.func(name).entry

    def name_at(self, pc: int) -> str:
        f = self.prog.binary.findfunc(pc)
        if f is not None:
            return f"{f.name}+{pc - f.entry:#x}"
        if STUBS + 0x800 <= pc < STUBS + 0x1000:
            return f"non-Go code+{pc - STUBS - 0x800:#x}"
        return f"stub+{pc - STUBS:#x}" if STUBS <= pc < STUBS + 0x800 else f"{pc:#x}"

    def watch(self, *names: str) -> None:
        """Log each entry into the named functions (a hook at each entry address)."""
        for n in names:
            self.m.hook_address(self.fn(n), lambda mach, a, n=n: self.events.append(f"enter {n} (SP={mach.regs['rsp']:#x})"))

    def install_stub(self, source: str) -> int:
        from helpers.asm import assemble
        code = assemble(source, address=STUBS).code
        self.m.write(STUBS, code)
        return STUBS

    def install_user(self, source: str) -> int:
        from helpers.asm import assemble
        addr = STUBS + 0x800
        self.m.write(addr, assemble(source, address=addr).code)
        return addr

    def interrupt_at(self, pc: int, handler: int, ist: int = 1, once: bool = True) -> None:
        """Raise a hardware interrupt just before ``pc`` runs, delivered through an IDT gate to ``handler``."""
        gate = idt.Gate(handler, KCS, ist, "interrupt", 0)
        tss = idt.TSS(ist=(self.ist_top, 0, 0, 0, 0, 0, 0))

        def fire(mach, address):
            if once and self.fired:
                return True
            self.fired = True
            r = mach.regs
            d = idt.deliver(VECTOR, {VECTOR: gate}, cpl=0, software=False, rip=address, rsp=r["rsp"],
                            rflags=r["rflags"], tss=tss, cs=KCS, ss=KDS)
            for slot in d.frame:
                mach.write_u64(slot.address, slot.value)
            r["rsp"], r["rflags"], r["rip"] = d.rsp, d.rflags, d.rip
            self.delivery = d
            self.events.append(f"interrupt at {self.name_at(address)}: {d.stack_source} stack, RSP={d.rsp:#x}")
            return True
        self.m.hook_address(pc, fire)

    def run(self, max_insns: int = 200_000, timeout: float = 5.0):
        out = self.m.run(start=self.m.pc, max_insns=max_insns, timeout=timeout)
        return out


def _fault_text(bench: Bench, out) -> str:
    if out.fault is None:
        return out.message
    f = out.fault
    return f"{f.kind} at {f.address:#x} in {bench.name_at(f.pc)}" if f.address is not None else f"{f.kind} in {bench.name_at(f.pc)}"


# ---------------------------------------------------------------------------------------- (a) the write barrier
@dataclass
class WbRun:
    with_p: bool
    events: list
    status: str          # "returned" | "fault" | ...
    detail: str
    stored: bool         # slots[1].next == &slots[2] after the run
    buffer: list         # pointers recorded in the P's wbBuf (new value, old value, ...)


def write_barrier_run(with_p: bool = False, max_insns: int = 100_000) -> WbRun:
    """``step(1)`` stores a pointer while ``runtime.writeBarrier`` is set. Without an M/P (g.m == nil, as in
    an interrupt that borrowed no runtime context) gcWriteBarrier's ``g.m.p`` load faults; with a P the
    pointers land in the P's buffer (runtime/mwbbuf.go)."""
    bench = Bench(with_p=with_p, barrier=True)
    bench.watch("main.step", "main.link", "runtime.gcWriteBarrier2")
    bench.start("main.step", 1)
    out = bench.run(max_insns=max_insns)
    status = "returned" if out.status == "stopped" and "goexit" in out.reason else out.status
    slots = bench.rt.global_addr("main.slots")
    stored = bench.m.read_u64(slots + 16) == slots + 32
    buf = [bench.m.read_u64(WBBUF + 8 * i) for i in range(4)]
    return WbRun(with_p, bench.events, status, _fault_text(bench, out), stored, [v for v in buf if v])


# ---------------------------------------------------------------------------------------- (4) interrupts
STUB_RIGHT = f"""
pushq %rax
movabsq ${WAKE:#x}, %rax
lock orq $1, (%rax)
popq %rax
iretq
"""


def _stub_go(handler: int) -> str:
    # An interrupt entry that calls ordinary Go: save the scratch registers, pass v=3 in RAX (ABIInternal),
    # call the Go function, restore, iretq. It does not (cannot) set up a g: R14 is whatever was interrupted.
    saves = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11")
    return "\n".join([*(f"pushq %{r}" for r in saves), "movq $3, %rax", f"movabsq ${handler:#x}, %r11",
                      "callq *%r11", *(f"popq %{r}" for r in reversed(saves)), "iretq"]) + "\n"


@dataclass
class IrqRun:
    stub: str
    where: str
    events: list
    status: str
    detail: str
    result: int | None        # step's return value if the goroutine finished
    woken: bool               # the stub's wake-up word was set
    interrupted_stored: bool  # slots[1].next == &slots[2] (the interrupted store)
    handler_stored: bool      # slots[7].next == &slots[4] (the handler's store)
    buffer: list              # pointers in the P's write-barrier buffer
    delivery: str = ""
    morestack_sp: int | None = None   # SP when runtime.morestack was entered, if it was
    g_stack: tuple = ()               # the interrupted goroutine's stack [lo, hi)


def interrupt_run(stub: str = "stub", where: str = "prologue", ist_below: bool = False,
                  max_insns: int = 200_000) -> IrqRun:
    """Run ``step(1)`` in a goroutine and raise an interrupt inside it.

    ``where``: ``"prologue"`` (between the stack check's ``cmp`` and ``jbe``) or ``"barrier"`` (inside
    gcWriteBarrier<>, after it read ``wbBuf.next`` and before it stored the new value; the GC is marking).
    ``stub``: ``"stub"`` (a no-split assembly stub that sets a wake-up bit and returns, as TamaGo, Biscuit
    and eggos do) or ``"go"`` (an entry that calls the ordinary Go function ``onIRQ``).
    ``ist_below`` puts the interrupt stack below the goroutine stacks (address order decides the stack check).
    """
    if stub not in ("stub", "go"):
        raise GoIntrError(f"stub must be 'stub' or 'go', not {stub!r}")
    if where not in WHERE:
        raise GoIntrError(f"where must be one of {', '.join(WHERE)}, not {where!r}")
    bench = Bench(ist_below=ist_below, with_p=True, barrier=(where == "barrier"))
    handler = bench.install_stub(STUB_RIGHT if stub == "stub" else _stub_go(bench.fn("main.onIRQ")))
    bench.watch("main.onIRQ", "runtime.morestack", "runtime.gcWriteBarrier2")
    bench.start("main.step", 1)
    if where == "prologue":
        at = bench.fn("main.step") + _insn_len(bench, bench.fn("main.step"))  # the jbe after the cmp
    elif where == "barrier":
        at = _after_next_load(bench)
    else:  # code that is not Go (user space, C, ABI0 assembly) owns R14; it runs until the interrupt
        at = bench.install_user(USER_CODE)
        bench.m.regs["rip"] = at
    bench.interrupt_at(at + (USER_IRQ_AFTER if where == "user" else 0), handler)
    out = bench.run(max_insns=max_insns)
    finished = (out.status == "stopped" and "goexit" in out.reason) or (where == "user" and out.status == "halted")
    result = bench.m.regs["rax"] if finished else None
    if finished and stub == "stub" and bench.m.read_u64(WAKE) == 1:
        # the scheduler sees the wake-up word and runs the handler as an ordinary goroutine (TamaGo's
        # ServiceInterrupts, Biscuit's IRQsched, eggos's traploop): on its own stack, with a g and a P
        bench.start("main.onIRQ", 3)
        served = bench.run(max_insns=max_insns)
        ok = served.status == "stopped" and "goexit" in served.reason
        bench.events.append(f"woken goroutine ran main.onIRQ(3): {'returned' if ok else served.message}")
    lo, hi = bench.rt.stack_of(bench.rt.current)
    sp = None
    if out.status == "stopped" and "morestack" in out.reason:
        sp = bench.m.regs["rsp"]
        bench.events.append(f"morestack called with SP={sp:#x}, outside the goroutine's stack [{lo:#x}, {hi:#x})")
    slots = bench.rt.global_addr("main.slots")
    rd = bench.m.read_u64
    buf = [rd(WBBUF + 8 * i) for i in range(8)]
    return IrqRun(stub, where, bench.events, "returned" if finished else out.status,
                  _fault_text(bench, out) if not finished else "step returned",
                  result, rd(WAKE) == 1,
                  rd(slots + 16) == slots + 32, rd(slots + 7 * 16) == slots + 4 * 16,
                  [v for v in buf if v], bench.delivery.summary().splitlines()[0] if bench.delivery else "",
                  sp, (lo, hi))


WHERE = ("prologue", "barrier", "user")
# Code that uses R14 for itself, as user space or C may: the interrupt arrives at its third instruction.
USER_CODE = "movabsq $0x1234, %r14\nincq %rax\nincq %rax\nhlt\n"
USER_IRQ_AFTER = 10 + 3  # movabs (10 bytes) + one inc (3 bytes)


def _insn_len(bench: Bench, pc: int) -> int:
    from helpers.asm import disassemble
    return disassemble(bench.prog.read(pc, 16), address=pc)[0].size


_BARRIER_LOADS = (("g_m", r"movq? (0x[0-9a-f]+)\(%r14\), %r13"), ("m_p", r"movq? (0x[0-9a-f]+)\(%r13\), %r13"),
                  ("wbBuf_next", r"movq? (0x[0-9a-f]+)\(%r13\), %r12"), ("wbBuf_end", r"cmpq? (0x[0-9a-f]+)\(%r13\), %r12"))


@lru_cache(maxsize=4)
def _barrier_offsets(path: str) -> dict:
    prog = program() if str(program().path) == path else GoProgram.load(path)
    from helpers.asm import disassemble
    f = prog.binary.func("gcWriteBarrier")
    ins = disassemble(prog.read(f.entry, f.end - f.entry), address=f.entry)
    out, i = {}, 0
    for name, pat in _BARRIER_LOADS:  # in program order: g.m, m.p, p.wbBuf.next, p.wbBuf.end
        while i < len(ins) and not re.fullmatch(pat, ins[i].text):
            i += 1
        if i == len(ins):
            raise GoIntrError(f"gcWriteBarrier: no {name} access ({pat}) found")
        out[name] = int(re.fullmatch(pat, ins[i].text).group(1), 16)
        out[name + "_pc"] = ins[i].address
        out[name + "_next_pc"] = ins[i + 1].address
    return out


def barrier_offsets(prog: GoProgram | None = None) -> dict:
    """The offsets g.m, m.p, p.wbBuf.next and p.wbBuf.end as the compiled gcWriteBarrier<> uses them
    (asm_amd64.s: ``MOVQ g_m(R14), R13; MOVQ m_p(R13), R13; MOVQ (p_wbBuf+wbBuf_next)(R13), R12; CMPQ ...end``),
    read from its machine code, with the address of each access."""
    prog = prog or program()
    return dict(_barrier_offsets(str(prog.path)))


def _after_next_load(bench: Bench) -> int:
    """The instruction after gcWriteBarrier<>'s load of wbBuf.next: the reservation is read, not yet committed."""
    return bench.off["wbBuf_next_next_pc"]


def sequential_barrier_run() -> list:
    """Both stores of the interrupt experiment, one after the other (no interrupt): what the P's buffer
    should hold. Returns the non-nil pointers recorded."""
    bench = Bench(with_p=True, barrier=True)
    for fn in ("main.step", "main.onIRQ"):
        bench.start(fn, 1 if fn == "main.step" else 3)
        out = bench.run()
        if not (out.status == "stopped" and "goexit" in out.reason):
            raise GoIntrError(f"{fn} did not return: {out.message}")
    return [v for v in (bench.m.read_u64(WBBUF + 8 * i) for i in range(8)) if v]


def slot_names(values, prog: GoProgram | None = None) -> list[str]:
    """Name pointers into main.slots as ``&slots[i]``."""
    prog = prog or program()
    base = prog.binary.symbol("main.slots")
    return [f"&slots[{(v - base) // 16}]" if base <= v < base + 8 * 16 else f"{v:#x}" for v in values]


def newstack_check() -> list[str]:
    """The pinned runtime's test in newstack that throws when SP is below the goroutine's stack."""
    src = (toolchain.goroot() / "src/runtime/stack.go").read_text().splitlines()
    i = next((n for n, l in enumerate(src) if l.strip() == "if sp < gp.stack.lo {"), None)
    if i is None or "throw(" not in src[i + 3]:
        raise GoIntrError("stack.go: newstack's 'sp < gp.stack.lo' check not found")
    return [f"src/runtime/stack.go:{i + 1}: {src[i].strip()}", f"src/runtime/stack.go:{i + 4}: {src[i + 3].strip()}"]


# ---------------------------------------------------------------------------------------- (c) stack budget
@dataclass(frozen=True)
class StackBudget:
    stack_guard: int
    stack_small: int
    stack_nosplit: int
    hw_frame: int            # bytes the CPU pushes for an interrupt without error code (64-bit mode)
    pt_regs: int             # sizeof(struct pt_regs) on x86-64
    fits_best: int           # interrupt entries (pt_regs) that fit in the guard when SP sits at stackguard0
    fits_worst: int          # ... when a nosplit chain has used its whole budget
    irq_stack: int | None    # the kernel's per-CPU IRQ stack (IRQ_STACK_SIZE)
    exception_stack: int | None  # each IST exception stack (EXCEPTION_STKSZ)
    gsignal: int             # Go's own signal stack per M (runtime/os_linux.go: mpreinit)


def gsignal_size() -> int:
    src = (toolchain.goroot() / "src/runtime/os_linux.go").read_text()
    m = re.search(r"mp\.gsignal = malg\((\d+) \* 1024\)", src)
    if not m:
        raise GoIntrError("os_linux.go: mpreinit's gsignal allocation not found")
    return int(m.group(1)) * 1024


def stack_budget(facts: dict | None = None) -> StackBudget:
    """stackGuard (pinned Go source) against an interrupt frame (CPU model) and pt_regs (kernel headers:
    ``facts`` is :func:`helpers.kcodegen.kernel_stack_facts`, live or recorded)."""
    from helpers import kcodegen
    k = runtime_constants()
    facts = kcodegen.kernel_stack_facts() if facts is None else facts
    d = idt.deliver(VECTOR, {VECTOR: idt.Gate(0x1000, KCS, 0, "interrupt", 0)}, cpl=0, software=False,
                    rip=0x1000, rsp=0x8000, cs=KCS, ss=KDS)
    hw = 8 * len(d.frame)
    pt = facts.get("pt_regs")
    if pt is None:
        raise GoIntrError("no kernel headers: struct pt_regs size unknown")
    best = k["stackGuard"] // pt
    worst = (k["stackGuard"] - k["StackSmall"] - k["stackNosplit"]) // pt
    return StackBudget(k["stackGuard"], k["StackSmall"], k["stackNosplit"], hw, pt, best, worst,
                       facts.get("irq_stack"), facts.get("exception_stack"), gsignal_size())


# ---------------------------------------------------------------------------------------- (b) pragmas
def compile_pragma(pragma: str) -> tuple[bool, str]:
    """Build a package main whose function carries ``//go:<pragma>``: (built?, the compiler's first error)."""
    if not isinstance(pragma, str) or not re.fullmatch(r"[a-z]+", pragma):
        raise GoIntrError(f"pragma must be a lower-case word such as 'nosplit', not {pragma!r}")
    src = f"package main\n\n//go:{pragma}\nfunc handler(p **int, v *int) {{ *p = v }}\n\n" \
          "func main() {\n\tvar x int\n\tvar p *int\n\thandler(&p, &x)\n\tprintln(p != nil)\n}\n"
    try:
        toolchain.go_build(src)
        return True, ""
    except toolchain.ToolchainError as e:
        return False, str(e).removeprefix("go build failed: ")


def pragma_in_runtime(func: str = "sighandler", pragma: str = "nowritebarrierrec") -> str:
    """The line of the pinned runtime that gives ``func`` the pragma (src/runtime/signal_unix.go)."""
    src = (toolchain.goroot() / "src/runtime/signal_unix.go").read_text()
    m = re.search(rf"//go:{pragma}\nfunc {func}\(", src)
    if not m:
        raise GoIntrError(f"signal_unix.go: {func} has no //go:{pragma}")
    return f"src/runtime/signal_unix.go:{src[:m.start()].count(chr(10)) + 1}: //go:{pragma} / func {func}(...)"


# ---------------------------------------------------------------------------------------- (e) out of memory
OOM_GO = r"""package main

import (
	"fmt"
	"os"
)

var keep [][]byte

func main() {
	defer func() {
		if r := recover(); r != nil { // never runs: running out of memory is not a panic
			fmt.Println("recovered:", r)
		}
	}()
	for i := 1; ; i++ {
		b := make([]byte, 16<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
		fmt.Fprintf(os.Stdout, "allocated %d MiB\n", i*16)
	}
}
"""


@dataclass(frozen=True)
class OomRun:
    limit_mb: int
    exit_code: int
    fatal: str            # the "fatal error: ..." line
    cause: str            # the "runtime: out of memory: cannot allocate N-byte block" line, without the in-use count
    recovered: bool       # did the program's recover() see anything?
    allocated_mb: int     # the last amount the program reported


def oom_run(limit_mb: int = 1024, timeout: float = 60) -> OomRun:
    """Run :data:`OOM_GO` natively with its address space limited by ``setrlimit(RLIMIT_AS)``."""
    if not isinstance(limit_mb, int) or not 600 <= limit_mb <= 8192:
        raise GoIntrError(f"limit_mb must be an integer in [600, 8192], not {limit_mb!r}")
    exe = toolchain.go_build(OOM_GO).path

    def limit():  # runs in the child before exec
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))

    try:
        p = subprocess.run([str(exe)], capture_output=True, text=True, timeout=timeout, preexec_fn=limit,
                           env={"GOTRACEBACK": "single"}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise GoIntrError(f"the out-of-memory run did not end within {timeout:g} s") from None
    err = p.stderr.splitlines()
    fatal = next((l for l in err if l.startswith("fatal error:")), "")
    cause = next((re.sub(r" \(\d+ in use\)", "", l) for l in err if l.startswith("runtime: out of memory")), "")
    mb = [int(x) for x in re.findall(r"allocated (\d+) MiB", p.stdout)]
    return OomRun(limit_mb, p.returncode, fatal, cause, "recovered:" in p.stdout, mb[-1] if mb else 0)
