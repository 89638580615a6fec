"""helpers.preempt -- real Go programs that show how goroutines are preempted and what escape analysis does.

Serves chapter 3 (article §3.2-3.3, claims C38-C45). Every experiment builds a small Go program with the
pinned toolchain (``helpers.toolchain.go_build``, cached) and runs it with a timeout and no shell; the Go
program prints one JSON line and Python parses it. Pure Python: no widgets, no plotting.

What it models, and where that is written down (the pinned Go tree ships ``src/``, see ``go_source``):

* golang/go src/runtime/preempt.go -- synchronous safe points (the stack-bound check in function prologues)
  and asynchronous safe points reached with a signal; ``asyncPreempt``, ``wantAsyncPreempt``,
  ``isAsyncSafePoint``.
* golang/go src/runtime/signal_unix.go -- ``sigPreempt = _SIGURG``, ``preemptM`` (signalM), ``doSigPreempt``
  (injects a call to ``asyncPreempt`` into the signalled thread's context).
* golang/go src/runtime/proc.go -- ``sysmon`` runs on its own M without a P (``newm(sysmon, nil, -1)``);
  ``retake`` preempts a G that has run ``forcePreemptNS`` (10 ms); ``preemptone`` sets ``gp.preempt``,
  ``gp.stackguard0 = stackPreempt`` and, unless ``GODEBUG=asyncpreemptoff=1``, calls ``preemptM``.
* golang/go src/runtime/stack.go -- ``stackPreempt``.
* golang/go src/runtime/proc.go -- ``reentersyscall`` (read statement by statement: :func:`reentersyscall_sequence`),
  ``retake``/``setBlockOnExitSyscall``/``takeP``; :func:`observe_syscall` watches a goroutine blocked in
  ``read(2)`` from another goroutine on the same single P (chapter 2b, C16).

Every run is bounded twice: the Go program stops by itself (its spinner runs a calibrated number of
iterations, ``SPIN_MS`` of work) and the subprocess has a timeout; a run that times out is reported as
"not finished within N s", never as a hang.
"""
from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from helpers import toolchain
from helpers.elf import symbol_bytes

RUN_TIMEOUT = 30.0  # seconds for one run of an experiment binary
SPIN_MS = 400  # how long the spinner computes; keeps each run near a second on a 2-core CI machine

# The spinner and the sleeper, both on one P (GOMAXPROCS=1). SPIN_KIND=loop spins in a loop with no calls
# (no prologue runs, so no synchronous safe point); SPIN_KIND=call calls a function with a stack check on
# every iteration (a synchronous safe point each time).
PREEMPT_GO = r'''package main

import (
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// spin is a loop with no calls: nothing in it ever checks for a preemption request.
//
//go:noinline
func spin(n uint64) uint64 {
	var x uint64
	for i := uint64(0); i < n; i++ {
		x ^= i * 0x9E3779B97F4A7C15
		x = x<<7 | x>>57
	}
	return x
}

// step is not a leaf, so the compiler gives it the stack-bound check in its prologue.
//
//go:noinline
func step(x, i uint64) uint64 { return mix(x^i*0x9E3779B97F4A7C15) }

//go:noinline
func mix(x uint64) uint64 { return x<<7 | x>>57 }

//go:noinline
func spinCalls(n uint64) uint64 {
	var x uint64
	for i := uint64(0); i < n; i++ {
		x = step(x, i)
	}
	return x
}

type result struct {
	Kind        string  `json:"kind"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	SpinMS      float64 `json:"spin_ms"`
	LatenessUS  []int64 `json:"lateness_us"`
	FirstWakeMS float64 `json:"first_wake_ms"`
	Checksum    uint64  `json:"checksum"`
}

func main() {
	target, _ := strconv.Atoi(os.Getenv("SPIN_MS"))
	if target <= 0 || target > 3000 {
		target = 600
	}
	kind := os.Getenv("SPIN_KIND")
	work := spin
	if kind == "call" {
		work = spinCalls
	} else {
		kind = "loop"
	}
	// Calibrate the iteration count for target ms of work (the calibration itself is a few ms).
	const probe = 1 << 21
	t0 := time.Now()
	work(probe)
	n := uint64(float64(target) * 1e6 * probe / float64(time.Since(t0).Nanoseconds()+1))

	lateness := make([]int64, 0, 4096)
	var spinning atomic.Bool
	var first atomic.Int64
	ready, done := make(chan bool), make(chan uint64)
	go func() { // the sleeper: how late does a 1 ms sleep wake while the spinner runs?
		ready <- true
		for {
			t := time.Now()
			time.Sleep(time.Millisecond)
			woke := time.Now()
			if spinning.Load() {
				lateness = append(lateness, woke.Sub(t).Microseconds()-1000)
				first.CompareAndSwap(0, woke.UnixNano())
			}
		}
	}()
	<-ready
	var startNs, endNs atomic.Int64
	go func() {
		// The flag is set by the spinner itself, right before the loop, so that a wake-up counts only
		// when it happened while the loop held (or had been preempted from) the P.
		startNs.Store(time.Now().UnixNano())
		spinning.Store(true)
		x := work(n)
		spinning.Store(false)
		endNs.Store(time.Now().UnixNano())
		done <- x
	}()
	x := <-done
	elapsed := time.Duration(endNs.Load() - startNs.Load())
	fw := -1.0
	if f := first.Load(); f != 0 {
		fw = float64(f-startNs.Load()) / 1e6
	}
	json.NewEncoder(os.Stdout).Encode(result{kind, runtime.GOMAXPROCS(0), float64(elapsed.Microseconds()) / 1000,
		lateness, fw, x})
}
'''

# The article's §3.3 example, rewritten: a function returns a pointer made with unsafe.Pointer from the
# address of its local. `clobber` then reuses the stack region the local would have lived in.
ESCAPE_GO = r'''package main

import (
	"fmt"
	"unsafe"
)

//go:noinline
func leak() *int {
	x := 1729
	return (*int)(unsafe.Pointer(&x))
}

//go:noinline
func local() int {
	y := 7
	p := (*int)(unsafe.Pointer(&y))
	return *p
}

//go:noinline
func clobber(n int) int {
	var buf [512]int
	for i := range buf {
		buf[i] = n + i
	}
	return buf[n%512]
}

func main() {
	p := leak()
	clobber(99)
	fmt.Println("after clobber:", *p, local())
}
'''

# Where user-level signal handling runs: a goroutine receives the signal from os/signal's channel.
SIGNAL_GO = r'''package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	s := <-c
	buf := make([]byte, 4096)
	header := strings.SplitN(string(buf[:runtime.Stack(buf, false)]), "\n", 2)[0]
	fmt.Println("received:", s)
	fmt.Println("handled in:", header)
}
'''

# A goroutine blocked in a system call, observed from another goroutine on the one P (GOMAXPROCS=1). The sleeper
# calls syscall.Syscall(SYS_READ) on an empty pipe (Syscall, unlike RawSyscall, goes through entersyscall) and
# stays in the kernel until main writes. main can only run again if sysmon's retake takes the P away from the
# sleeper's M (proc.go: retake -> setBlockOnExitSyscall -> takeP -> handoffp). main then reads the sleeper's g and
# m through their addresses, at the field offsets the Python side passes in from this binary's own DWARF.
SYSCALL_GO = r'''package main

import (
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// getg returns the running goroutine's g pointer (getg_amd64.s: the TLS slot the runtime keeps it in).
func getg() uintptr

func off(name string) uintptr {
	v, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		panic("missing offset " + name)
	}
	return uintptr(v)
}

func u64(addr uintptr) uint64 { return *(*uint64)(unsafe.Pointer(addr)) }
func u32(addr uintptr) uint32 { return atomic.LoadUint32((*uint32)(unsafe.Pointer(addr))) }

const gscan = 0x1000 // runtime2.go: _Gscan, the bit sysmon holds briefly while it inspects a goroutine

func main() {
	gStatus, gGuard, gM := off("G_ATOMICSTATUS"), off("G_STACKGUARD0"), off("G_M")
	mLocks, mP, mOldP := off("M_LOCKS"), off("M_P"), off("M_OLDP")
	gsyscall := uint32(off("GSYSCALL"))
	var fds [2]int
	if err := syscall.Pipe(fds[:]); err != nil {
		panic(err)
	}
	var sleeper atomic.Uintptr
	done := make(chan struct{})
	go func() {
		sleeper.Store(getg())
		var b [1]byte
		syscall.Syscall(syscall.SYS_READ, uintptr(fds[0]), uintptr(unsafe.Pointer(&b[0])), 1)
		close(done)
	}()
	t0 := time.Now()
	for sleeper.Load() == 0 || u32(sleeper.Load()+gStatus)&^gscan != gsyscall {
		if time.Since(t0) > 5*time.Second {
			panic("the sleeper never entered its system call")
		}
		runtime.Gosched()
	}
	resumedUs := time.Since(t0).Microseconds()
	work := 0 // main now runs Go code on the only P while the sleeper is still in the kernel
	for t := time.Now(); time.Since(t) < 20*time.Millisecond; {
		work++
	}
	sg := sleeper.Load()
	sm := uintptr(u64(sg + gM))
	me := uintptr(u64(getg() + gM))
	buf := make([]byte, 1<<16)
	var states []string
	for _, block := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		states = append(states, strings.SplitN(block, "\n", 2)[0])
	}
	r := map[string]any{
		"status": u32(sg+gStatus) &^ gscan, "stackguard0": u64(sg + gGuard), "m_locks": int32(u32(sm + mLocks)),
		"m_p": u64(sm + mP), "m_oldp": u64(sm + mOldP), "main_p": u64(me + mP), "same_m": sm == me,
		"goroutines": states, "main_loops": work, "resumed_us": resumedUs,
	}
	syscall.Write(fds[1], []byte{1})
	select {
	case <-done:
		r["sleeper_returned"] = true
	case <-time.After(5 * time.Second):
		r["sleeper_returned"] = false
	}
	out, _ := json.Marshal(r)
	os.Stdout.Write(append(out, '\n'))
}
'''
GETG_S = '''#include "textflag.h"

// func getg() uintptr
TEXT ·getg(SB), NOSPLIT, $0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET
'''
G_FIELDS = {"G_ATOMICSTATUS": ("runtime.g", "atomicstatus"), "G_STACKGUARD0": ("runtime.g", "stackguard0"),
            "G_M": ("runtime.g", "m"), "M_LOCKS": ("runtime.m", "locks"), "M_P": ("runtime.m", "p"),
            "M_OLDP": ("runtime.m", "oldp")}


class ExperimentError(RuntimeError):
    """An experiment could not run (build failed, bad output). The message is one line."""


@dataclass
class PreemptRun:
    """One run of PREEMPT_GO. ``lateness_ms``: how late each 1 ms sleep woke while the spinner ran."""

    kind: str  # "loop" (no calls) or "call" (a prologue check every iteration)
    godebug: str
    finished: bool
    spin_ms: float = 0.0
    lateness_ms: list = field(default_factory=list)
    first_wake_ms: float | None = None  # None: the sleeper never ran while the spinner ran
    timeout: float = RUN_TIMEOUT
    gomaxprocs: int = 1

    @property
    def wakes(self) -> int:
        return len(self.lateness_ms)

    @property
    def starved(self) -> bool:
        """The sleeper never got the CPU while the spinner ran."""
        return self.finished and self.wakes == 0

    def percentile(self, p: float) -> float | None:
        if not self.lateness_ms:
            return None
        xs = sorted(self.lateness_ms)
        return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.lateness_ms) if self.lateness_ms else None

    def verdict(self) -> str:
        """A deterministic, qualitative sentence (what the notebook prints)."""
        label = f"{self.kind} spinner, GODEBUG={self.godebug or '(default)'}"
        if self.gomaxprocs != 1:
            label += f", GOMAXPROCS={self.gomaxprocs}"
        if not self.finished:
            return f"{label}: not finished within {self.timeout:g} s"
        if self.starved:
            return f"{label}: the sleeper never ran while the spinner ran (not preempted until it finished)"
        if self.gomaxprocs != 1:
            return f"{label}: the sleeper woke again and again while the spinner ran (it had a P of its own)"
        return f"{label}: the spinner was preempted; the sleeper woke again and again while it ran"


def build_preempt():
    return toolchain.go_build(PREEMPT_GO)


def run_preempt(kind: str = "loop", godebug: str = "", spin_ms: int = SPIN_MS, timeout: float = RUN_TIMEOUT,
                gomaxprocs: int = 1) -> PreemptRun:
    """Run the spinner/sleeper program (on one P by default). ``godebug="asyncpreemptoff=1"`` turns signals off."""
    if kind not in ("loop", "call"):
        raise ValueError(f"kind: {kind!r} is not 'loop' or 'call'")
    if not (isinstance(spin_ms, int) and 10 <= spin_ms <= 3000):
        raise ValueError(f"spin_ms: {spin_ms!r} is not an integer in 10..3000")
    if not (isinstance(gomaxprocs, int) and 1 <= gomaxprocs <= 64):
        raise ValueError(f"gomaxprocs: {gomaxprocs!r} is not an integer in 1..64")
    exe = build_preempt().path
    env = {"GOMAXPROCS": str(gomaxprocs), "GODEBUG": godebug, "SPIN_MS": str(spin_ms), "SPIN_KIND": kind}
    try:
        p = toolchain.run([exe], timeout=timeout, env=env)
    except toolchain.ToolchainError:
        return PreemptRun(kind, godebug, finished=False, timeout=timeout, gomaxprocs=gomaxprocs)
    data = _json_line(p.stdout, p.stderr)
    return PreemptRun(kind, godebug, True, data["spin_ms"], [us / 1000 for us in data["lateness_us"]],
                      None if data["first_wake_ms"] < 0 else data["first_wake_ms"], timeout, gomaxprocs)


def _json_line(stdout: str, stderr: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith("{"):
            return json.loads(line)
    last = (stderr or stdout).strip().splitlines()
    raise ExperimentError(f"experiment printed no result: {last[-1] if last else '(no output)'}")


# --------------------------------------------------------------------------------------------------
# Machine code: does a loop have a preemption check?
# --------------------------------------------------------------------------------------------------
# The prologue's stack-bound check on amd64: compare SP with g.stackguard0, g being in R14 (ABIInternal,
# golang/go src/cmd/compile/abi-internal.md) and stackguard0 at offset 0x10 of g (src/runtime/runtime2.go).
STACK_CHECK = re.compile(r"cmp\w*\s+(%rsp, 0x10\(%r14\)|0x10\(%r14\), %rsp)")


@dataclass
class FunctionCode:
    name: str
    address: int
    listing: list  # [helpers.asm.Insn]
    stack_check: bool  # has the prologue's CMP SP, stackguard0
    calls: list  # call targets (text)
    loop_back: bool  # a backward jump: the function contains a loop

    def text(self) -> str:
        return "\n".join(f"{i.address:#x}: {i.text}" for i in self.listing)


def inspect_function(path, name: str) -> FunctionCode:
    from helpers.asm import disassemble

    addr, code = symbol_bytes(path, name)     # helpers.elf's cached symbols; a missing one is one line
    insns = disassemble(code, "x86_64", "att", addr)
    # Go pads functions with int3; stop at the first padding run after the last ret/jmp.
    body = [i for i in insns if i.mnemonic != "int3"]
    # a loop: a backward jump, other than the morestack path's jump back to the function's entry
    back = any(i.mnemonic.startswith("j") and _target(i) is not None and addr < _target(i) < i.address for i in body)
    return FunctionCode(name, addr, body, any(STACK_CHECK.search(i.text) for i in body),
                        [i.op_str for i in body if i.mnemonic.startswith("call")], back)


def _target(insn) -> int | None:
    try:
        return int(insn.op_str, 16)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Escape analysis and signal handling
# --------------------------------------------------------------------------------------------------
@dataclass
class EscapeResult:
    decisions: list  # compiler lines, e.g. "./main.go:11:2: moved to heap: x"
    output: str  # what the program printed

    def moved_to_heap(self) -> list[str]:
        return [m.group(1) for d in self.decisions if (m := re.search(r"moved to heap: (\w+)", d))]


def escape_analysis(source: str = ESCAPE_GO, timeout: float = RUN_TIMEOUT) -> EscapeResult:
    """Build with ``-gcflags=-m`` (the compiler prints its escape decisions) and run the program."""
    b = toolchain.go_build(source, gcflags="-m")
    decisions = [l.strip() for l in b.output.splitlines() if l.strip() and not l.startswith("#")]
    p = toolchain.run([b.path], timeout=timeout, env={"GOMAXPROCS": "1"})
    if p.returncode != 0:
        raise ExperimentError(f"escape example exited {p.returncode}: {p.stderr.strip()[:200]}")
    return EscapeResult(decisions, p.stdout.strip())


def signal_context(timeout: float = RUN_TIMEOUT) -> str:
    """Run SIGNAL_GO; its output names the goroutine that handled SIGUSR1."""
    b = toolchain.go_build(SIGNAL_GO)
    p = toolchain.run([b.path], timeout=timeout, env={"GOMAXPROCS": "1"})
    if p.returncode != 0:
        raise ExperimentError(f"signal example exited {p.returncode}: {p.stderr.strip()[:200]}")
    return p.stdout.strip()


# --------------------------------------------------------------------------------------------------
# Reading the pinned runtime's source
# --------------------------------------------------------------------------------------------------
def go_source(relpath: str) -> str:
    """Text of a file in the pinned Go tree, e.g. ``go_source("runtime/preempt.go")``."""
    path = toolchain.goroot() / "src" / relpath
    if not path.is_file():
        raise ExperimentError(f"{relpath} is not in the pinned Go tree ({toolchain.GO_VERSION})")
    return path.read_text()


def go_func(relpath: str, name: str) -> str:
    """The source of top-level ``func name`` (up to the closing brace at column 0) in a pinned Go file."""
    text = go_source(relpath)
    if relpath.endswith(".s"):  # assembly: from the TEXT line to the next TEXT line
        m = re.search(rf"^TEXT ·{re.escape(name)}\(SB\).*?(?=^TEXT |\Z)", text, re.S | re.M)
    else:
        m = re.search(rf"^func (\([^)]*\) )?{re.escape(name)}\([^\n]*{{\n.*?^}}", text, re.S | re.M)
    if m is None:
        raise ExperimentError(f"func {name} not found in {relpath}")
    return m.group(0)


def go_const(relpath: str, name: str) -> str:
    """The right-hand side of ``name = ...`` (a const or var) in a pinned Go file."""
    m = re.search(rf"^\s*(?:const\s+)?{re.escape(name)}\s*=\s*(.+?)\s*(//.*)?$", go_source(relpath), re.M)
    if m is None:
        raise ExperimentError(f"{name} not found in {relpath}")
    return m.group(1)


# --------------------------------------------------------------------------------------------------
# A model of the asynchronous-preemption path, step by step, from the pinned source
# --------------------------------------------------------------------------------------------------
ASYNC_PATH = (
    # (who, what, file, function) -- each function is checked to exist in the pinned tree by the notebook
    ("sysmon (own M, no P)", "sees a P running the same G for >= forcePreemptNS", "runtime/proc.go", "retake"),
    ("sysmon", "sets gp.preempt and stackguard0 = stackPreempt, then signals the M", "runtime/proc.go", "preemptone"),
    ("sysmon", "tgkill(SIGURG) to the spinning thread, once per pending request", "runtime/signal_unix.go", "preemptM"),
    ("kernel -> spinning thread", "signal handler runs on the M's gsignal stack", "runtime/signal_unix.go", "sighandler"),
    ("signal handler", "wants preemption and PC is an async safe point: push a call to asyncPreempt", "runtime/signal_unix.go", "doSigPreempt"),
    ("spinning goroutine", "returns from the signal into asyncPreempt: saves all registers", "runtime/preempt_amd64.s", "asyncPreempt"),
    ("spinning goroutine", "switches to g0 and reschedules (gopreempt_m), or parks if a GC asked", "runtime/preempt.go", "asyncPreempt2"),
)


# --------------------------------------------------------------------------------------------------
# A model of sysmon's timing: why a 1 ms sleep next to a spinning goroutine wakes ~2 time slices late
# --------------------------------------------------------------------------------------------------
def sysmon_delays(cycles: int) -> list[float]:
    """sysmon's sleep before each cycle, in ms, when every retake returns 0 (no P retaken from a syscall):
    20 us for the first 50 idle cycles, then doubling up to 10 ms (golang/go src/runtime/proc.go: sysmon)."""
    return [us / 1000 for us in _sysmon_delays_us(cycles)]


def _sysmon_delays_us(cycles: int | None):
    delay_us, idle = 0, 0
    while cycles is None or idle < cycles:
        if idle == 0:
            delay_us = 20
        elif idle > 50:
            delay_us *= 2
        delay_us = min(delay_us, 10 * 1000)
        yield delay_us
        idle += 1


def model_lateness(duration_ms: float = 600.0, sleep_ms: float = 1.0, force_preempt_ms: float = 10.0,
                   signal_ms: float = 0.0) -> list[float]:
    """Replay proc.go's sysmon/retake rules against the spinner/sleeper pair on one P; return each wake's lateness (ms).

    retake records a P's schedtick and the time it first *saw* it (pd.schedwhen); it preempts when the same
    schedtick is still running forcePreemptNS after that first sighting. Each preemption lets the sleeper run
    (if its timer is due) and puts the spinner back with a new schedtick. ``signal_ms`` adds the time from
    sysmon's check to the goroutine actually stopping. Time is kept in whole microseconds (no float drift).
    """
    if not (0 < duration_ms <= 60_000 and sleep_ms > 0 and force_preempt_ms > 0 and signal_ms >= 0):
        raise ValueError("duration_ms, sleep_ms and force_preempt_ms must be positive, signal_ms >= 0")
    end, sleep, force, sig = (round(x * 1000) for x in (duration_ms, sleep_ms, force_preempt_ms, signal_ms))
    t, schedtick, seen_tick, seen_at = 0, 1, None, 0
    deadline, out = sleep, []  # the sleeper parked at t=0 until t=sleep
    for delay in _sysmon_delays_us(None):
        t += delay
        if t >= end:
            return out
        if seen_tick != schedtick:  # retake: first sighting of this schedtick
            seen_tick, seen_at = schedtick, t
        elif seen_at + force <= t:  # retake -> preemptone -> preemptM (SIGURG)
            stop = t + sig
            if deadline <= stop:
                out.append((stop - deadline) / 1000)
                deadline = stop + sleep
            schedtick += 1  # the spinner is rescheduled: a new schedtick, a new time slice
    return out


# --------------------------------------------------------------------------------------------------
# A goroutine in a system call: reentersyscall read as a sequence, and the same state observed natively
# --------------------------------------------------------------------------------------------------
def top_level_statements(func_source: str) -> list[str]:
    """The statements directly in a Go function's body, in order, comments dropped and each compound
    statement (``if ... {``, ``for ... {``) given by its head, e.g. ``["gp := getg()", "gp.m.locks++", ...]``.

    A small brace-depth scanner over the gofmt'ed source the pinned tree ships: enough for runtime
    functions, which keep one statement per line. Raises ValueError if the text is not a ``func`` with a body.
    """
    if not isinstance(func_source, str):
        raise ValueError("top_level_statements needs a Go function's source text")
    lines = func_source.splitlines()
    if not lines or not lines[0].startswith("func ") or not lines[0].rstrip().endswith("{"):
        raise ValueError("not a Go function: the first line must be `func ... {`")
    out, depth = [], 1
    for raw in lines[1:]:
        code = re.sub(r'"(?:\\.|[^"\\])*"', '""', raw)          # braces inside strings do not count
        code = code.split("//", 1)[0].strip()
        if not code:
            continue
        if depth == 1 and not code.startswith("}"):
            out.append(raw.split("//", 1)[0].strip())
        depth += code.count("{") - code.count("}")
        if depth <= 0:
            break
    if depth > 0:
        raise ValueError("unbalanced braces: the function body does not close")
    return out


def reentersyscall_sequence() -> list[str]:
    """``reentersyscall``'s top-level statements in the pinned ``runtime/proc.go``."""
    return top_level_statements(go_func("runtime/proc.go", "reentersyscall"))


def stack_preempt() -> int:
    """``stackPreempt`` for a 64-bit target, evaluated from its definition in the pinned ``runtime/stack.go``."""
    expr = go_const("runtime/stack.go", "stackPreempt")
    m = re.fullmatch(r"uintptrMask & (-?\d+)", expr)
    if m is None:
        raise ExperimentError(f"stackPreempt is now defined as {expr!r}; update the evaluator")
    return ((1 << 64) - 1) & int(m.group(1))


@dataclass
class SyscallObservation:
    """What main saw of a goroutine blocked in ``read(2)`` through ``syscall.Syscall``, on one P."""
    status: int            # g.atomicstatus (scan bit cleared), read after main has worked for 20 ms
    stackguard0: int
    m_locks: int           # the sleeper's m.locks while it sits in the kernel
    m_p: int               # the sleeper's m.p (0: its P was taken)
    m_oldp: int            # the P reentersyscall recorded (exitsyscall tries it first)
    main_p: int            # the P main runs on
    same_m: bool           # main on the sleeper's thread? (never: that thread is in the kernel)
    goroutines: list[str]  # runtime.Stack(all) headers, e.g. "goroutine 18 [syscall]:"
    main_loops: int        # work main did while the sleeper was blocked
    sleeper_returned: bool
    resumed_us: int        # how long main waited for the P (varies from run to run)


def observe_syscall(timeout: float = RUN_TIMEOUT) -> SyscallObservation:
    """Build SYSCALL_GO, read its own DWARF for the g/m field offsets, run it on GOMAXPROCS=1 and parse its line."""
    from helpers.goelf import GoBinary

    b = toolchain.go_build({"main.go": SYSCALL_GO, "getg_amd64.s": GETG_S})
    binary = GoBinary(b.path)
    env = {k: str(binary.struct(s)[f]) for k, (s, f) in G_FIELDS.items()}
    env["GSYSCALL"] = str(gstatus_values()["_Gsyscall"])
    try:
        p = toolchain.run([b.path], timeout=timeout, env={**env, "GOMAXPROCS": "1"})
    except toolchain.ToolchainError:
        raise ExperimentError(f"the system-call experiment did not finish within {timeout:g} s") from None
    d = _json_line(p.stdout, p.stderr)
    return SyscallObservation(**{k: d[k] for k in SyscallObservation.__dataclass_fields__})


def gstatus_values() -> dict[str, int]:
    """The goroutine states of the pinned ``runtime/runtime2.go`` with their values: the ``_Gidle = iota`` block,
    one name per line (comments skipped), numbered from 0 in order."""
    text = go_source("runtime/runtime2.go")
    start = text.find("_Gidle = iota")
    if start < 0:
        raise ExperimentError("runtime/runtime2.go has no `_Gidle = iota` block")
    names = []
    for line in text[start:].splitlines():
        code = line.split("//", 1)[0].strip()
        if code == ")" or "=" in code and not code.startswith("_Gidle"):
            break
        if code:
            names.append(code.split()[0])
    return {n: k for k, n in enumerate(names)}
