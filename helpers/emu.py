"""helpers.emu -- a small x86-32 / x86-64 machine over unicorn, with a budget, a timeout and a cheap trace.

Serves every chapter that runs machine code: the start page's assemble-and-run widget (issue 2 §5),
chapter 2's calling-convention runs, chapter 3's interrupt delivery (``helpers.idt`` plugs its IDT model
into :meth:`Machine.on_interrupt`) and chapter 4's goroutine stacks (``hook_address`` on
``runtime.morestack``). It models an x86 CPU as unicorn 2.1.4 (QEMU 5's TCG, target i386/x86_64) does;
where unicorn and the Intel SDM differ, the docstrings say so.

Pure Python core: no widgets, no plotting. The whole public surface::

    m = Machine("x86_64")                       # or "x86_32"; stack and data regions mapped
    out = m.run(code)                           # -> Outcome(status, insns, pc, fault, trace, message)
    m.regs["rax"]; m.regs["eax"] = 5; m.registers()
    m.map(addr, size, "rw"); m.write(addr, b"..."); m.read(addr, n); m.read_u64(addr)
    m.on_interrupt(cb)        # cb(machine, vector) -> True (handled: may move RIP/RSP) / False (stop)
    m.on_syscall(cb)          # cb(machine, "syscall" | "sysenter") -> True / False
    m.hook_address(addr, cb)  # cb(machine, address); may move the PC; False or m.stop() stops the run
    out = m.run(code, trace=True); out.trace.step(3).reg_changes; out.trace.table(20)

Statuses: ``finished`` (reached ``until``; for ``run(code)`` that is the end of the code), ``halted``
(``hlt`` executed), ``fault`` (see :class:`FaultInfo` kinds), ``budget`` (instruction budget or wall-clock
timeout; ``reason`` says which), ``stopped`` (a hook called :meth:`Machine.stop` or returned False).
No ``UcError`` ever escapes; the machine stays readable and can run again after any outcome.

How it stays fast and exact (unicorn quirks met on the way, each checked in tests/test_emu.py):

* unicorn has no API for "how many instructions ran". ``emu_start(count=n)`` stops after exactly n,
  but on any other stop the number is lost. Counting in a per-instruction Python hook costs ~0.3 us per
  instruction. Instead this module reads unicorn's own counter (``uc_struct.emu_counter``, filled by the
  count hook ``emu_start`` installs: unicorn-engine/unicorn v2.1.4 uc.c ``hook_count_cb``,
  include/uc_priv.h) at an offset found once per process by a calibration run and re-validated per
  machine; if that ever fails it falls back to a Python counting hook (slower, same answers, tested).
* Trace mode must record >= 1 M instructions/s. A Python hook that calls ``reg_read`` for each register
  manages far less (benchmarks/bench_emu.py). Here the per-instruction hook is a
  ``functools.partial(bytearray.extend, memoryview)`` whose memoryview aliases QEMU's live register file
  (``CPUX86State.regs .. hflags2``, 184 bytes, unicorn's qemu/target/i386/cpu.h, located by calibration):
  no Python frame and no foreign call per instruction (~1.7 M instructions per CPU-second here). Register diffs, EFLAGS (QEMU keeps
  them lazily as cc_op/cc_src/cc_dst; they are rebuilt by handing the recorded bytes back to a scratch
  unicorn's ``cpu_compute_eflags``) and disassembly are all computed lazily when a step is inspected.
* Redirecting from a hook: a handled interrupt always ends the current ``emu_start`` (``emu_stop``) and
  :meth:`Machine.run` restarts at whatever PC the callback left, until the budget, the timeout or a
  terminal event. So does an address hook that moved the PC, wrote memory or changed mappings (the
  translation cache is refreshed before the restart); one that only read or set other registers lets
  the instruction run in place. A hook that stopped without moving the PC is skipped once on restart.
* Timeout: not unicorn's timer thread (its stop can race with the count hook and miscount by one), but
  chunks of instructions sized from the measured rate (~50 ms each), with the clock checked in between.
* ``uc_mem_write`` does not invalidate translated blocks: rewriting code and running again executes the
  stale code. Every :meth:`Machine.write` marks its range; the translation cache is dropped for marked
  ranges before the next ``emu_start``.
* After a CPU exception is reported to a hook, QEMU keeps it as ``old_exception``; the next contributory
  exception then turns into #DF (Intel SDM Vol. 3A §6.15, Table 6-5) and a third into a triple-fault
  reset. Unicorn never clears it because it never delivers. This module resets it to -1 after each one.
* A fetch fault in any instruction of a translation block aborts the whole block: instructions before
  it in the same block do not run (a real CPU would run them). ``insns`` reports what unicorn ran.
* Unicorn reports a non-canonical access (64-bit) as "unmapped read/write" at a truncated address.
* ``until`` is implemented by unicorn as an imitated ``hlt`` at that address, so a real ``hlt`` that ends
  right at ``until`` (the last instruction of ``run(code)``) looks identical. A code hook bounded to
  ``until - 1`` (only when that byte is 0xF4) notes the counter when a hlt there starts.
* In a ``syscall`` hook unicorn advances RIP past the instruction *after* the hook returns, so an
  ``on_syscall`` handler may change registers and memory but should not move the PC.
* Hooks added after code was translated are only called if the translation already calls hooks at that
  address; helpers.emu drops the affected translations when it adds or removes a hook.
"""
from __future__ import annotations

import array
import bisect
import ctypes
import functools
import os
import struct
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterator

import capstone
import unicorn
from unicorn import UcError
from unicorn import x86_const as X

__all__ = [
    "Machine", "Outcome", "FaultInfo", "InterruptInfo", "Trace", "TraceSpec", "Step", "EmuError",
    "CODE_BASE", "DATA_BASE", "DATA_SIZE", "STACK_BASE", "STACK_SIZE", "PAGE_SIZE",
    "DEFAULT_MAX_INSNS", "DEFAULT_TIMEOUT", "STATUSES", "VECTOR_NAMES",
]

# Memory layout, unicorn-samples style (their ADDRESS = 0x1000000). Below 4 GiB so both modes share it,
# above a typical ELF's 0x400000 so loading a binary at its own addresses does not collide.
PAGE_SIZE = 0x1000
CODE_BASE = 0x0100_0000
DATA_BASE = 0x0200_0000
DATA_SIZE = 0x1_0000
STACK_BASE = 0x0300_0000
STACK_SIZE = 0x1_0000
DEFAULT_MAX_INSNS = 100_000
DEFAULT_TIMEOUT = 1.0       # seconds of wall clock per run()

STATUSES = ("finished", "halted", "fault", "budget", "stopped")

# Intel SDM Vol. 3A §6.3.1, Table 6-1 "Protected-Mode Exceptions and Interrupts".
VECTOR_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                9: "CSO", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC",
                18: "#MC", 19: "#XM", 20: "#VE", 21: "#CP"}

_NO_UNTIL = 1 << 63          # never a PC in either mode (non-canonical in 64-bit, > 4 GiB in 32-bit)
_CHUNK_SECONDS = 0.05        # target wall time of one emu_start chunk (timeout granularity)
_REC = 184                   # bytes of CPUX86State recorded per traced step: regs[16] .. hflags2
_REC_FMT = struct.Struct("<16QQQQQQIiII")  # regs[16], eip, eflags, cc_dst, cc_src, cc_src2, cc_op, df, hflags, hflags2
# QEMU's register file order (target/i386/cpu.h: R_EAX=0, R_ECX, R_EDX, R_EBX, R_ESP, R_EBP, R_ESI, R_EDI)
_QEMU_GPR = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di")


class EmuError(ValueError):
    """Bad input to the emulator (unknown register, unmapped address, bad argument). One line, at most 240
    characters (a message that quotes the reader's value never echoes all of it)."""

    def __init__(self, message="emulator error", *args):
        text = " ".join(str(message).split())
        super().__init__(text if len(text) <= 240 else text[:239] + "…", *args)


# ---------------------------------------------------------------------------------------------------
# Registers
# ---------------------------------------------------------------------------------------------------
def _reg_table(bits: int) -> dict[str, tuple[int, int]]:
    """name -> (unicorn id, width in bits) for one mode."""
    t: dict[str, tuple[int, int]] = {}

    def add(name, const, width):
        t[name] = (getattr(X, "UC_X86_REG_" + const), width)

    for n in ("ax", "bx", "cx", "dx"):
        add("e" + n, "E" + n.upper(), 32)
        add(n, n.upper(), 16)
        add(n[0] + "l", n[0].upper() + "L", 8)
        add(n[0] + "h", n[0].upper() + "H", 8)
    for n in ("si", "di", "bp", "sp"):
        add("e" + n, "E" + n.upper(), 32)
        add(n, n.upper(), 16)
    for s in ("cs", "ds", "es", "fs", "gs", "ss"):
        add(s, s.upper(), 16)
    for c in (0, 2, 3, 4):
        add(f"cr{c}", f"CR{c}", bits)
    for d in range(8):
        add(f"dr{d}", f"DR{d}", bits)
    add("eflags", "EFLAGS", 32)
    add("flags", "FLAGS", 16)
    t["idtr"] = (X.UC_X86_REG_IDTR, -1)   # (base, limit) tuples
    t["gdtr"] = (X.UC_X86_REG_GDTR, -1)
    if bits == 64:
        for n in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp"):
            add("r" + n, "R" + n.upper(), 64)
        for n in ("si", "di", "bp", "sp"):
            add(n + "l", n.upper() + "L", 8)
        for i in range(8, 16):
            add(f"r{i}", f"R{i}", 64)
            add(f"r{i}d", f"R{i}D", 32)
            add(f"r{i}w", f"R{i}W", 16)
            add(f"r{i}b", f"R{i}B", 8)
        add("rip", "RIP", 64)
        add("rflags", "RFLAGS", 64)
        add("fs_base", "FS_BASE", 64)
        add("gs_base", "GS_BASE", 64)
        add("cr8", "CR8", 64)
    else:
        add("eip", "EIP", 32)
    return t


_ARCHES = {
    "x86_64": dict(mode=unicorn.UC_MODE_64, cs=capstone.CS_MODE_64, bits=64, pc="rip", sp="rsp",
                   flags="rflags",
                   main=("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
                         "r12", "r13", "r14", "r15", "rip", "rflags")),
    "x86_32": dict(mode=unicorn.UC_MODE_32, cs=capstone.CS_MODE_32, bits=32, pc="eip", sp="esp",
                   flags="eflags",
                   main=("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags")),
}
for _a in _ARCHES.values():
    _a["table"] = _reg_table(_a["bits"])
    # traced registers: name -> index into the recorded QEMU register file (-1 = flags)
    if _a["bits"] == 64:
        _a["traced"] = {**{"r" + n: i for i, n in enumerate(_QEMU_GPR)}, **{f"r{i}": i for i in range(8, 16)},
                        "rflags": -1}
    else:
        _a["traced"] = {**{"e" + n: i for i, n in enumerate(_QEMU_GPR)}, "eflags": -1}


class Registers:
    """Mapping-like view of a machine's registers: ``m.regs["rax"]``, ``m.regs["eax"] = 1``, ``"r8" in m.regs``.

    Names are lower-case and per mode (x86_32 has no ``rax``/``r8``). ``idtr``/``gdtr`` read and take
    ``(base, limit)``. Unknown names raise :class:`EmuError` naming the register.
    """

    def __init__(self, machine: "Machine"):
        self._m = machine

    def __getitem__(self, name: str) -> int:
        return self._m._reg_read(name)

    def __setitem__(self, name: str, value) -> None:
        self._m._reg_write(name, value)

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.lower() in self._m._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._m._table)

    def __len__(self) -> int:
        return len(self._m._table)

    def keys(self):
        return self._m._table.keys()

    def get(self, name, default=None):
        return self[name] if name in self else default

    def update(self, values=(), **kw) -> None:
        for k, v in dict(values, **kw).items():
            self[k] = v

    def __repr__(self) -> str:
        return "Registers(" + ", ".join(f"{k}={v:#x}" for k, v in self._m.registers().items()) + ")"


# ---------------------------------------------------------------------------------------------------
# Outcome records
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InterruptInfo:
    """An interrupt or exception as unicorn reported it (valid inside an ``on_interrupt`` callback).

    ``software``: raised by ``int n``/``int3``/``into`` (PC already past the instruction: the return
    address a real CPU would push) rather than by a faulting instruction (PC at that instruction).
    ``error_code``: the code QEMU computed for the vectors that push one (SDM Vol. 3A §6.13), else None.
    """
    vector: int
    software: bool
    pc: int                  # address of the instruction that raised it
    next_pc: int             # the PC the machine holds now (return address for the handler)
    error_code: int | None = None

    @property
    def name(self) -> str:
        return VECTOR_NAMES.get(self.vector, f"vector {self.vector}")


@dataclass(frozen=True)
class FaultInfo:
    """Why a run stopped with status ``fault``.

    kind: ``unmapped read``/``unmapped write``/``unmapped fetch``, ``protection`` (``access`` says
    read/write/fetch), ``unaligned``, ``invalid instruction``, ``interrupt`` (software ``int n``/``int3``
    with no handler, or the handler declined), ``exception`` (CPU exception such as #DE, #GP), ``syscall``
    (``syscall``/``sysenter`` with no handler), ``hook error`` (a callback raised; ``exception`` holds it).
    """
    kind: str
    address: int | None      # faulting data/fetch address; for interrupts the raising instruction
    pc: int                  # address of the instruction involved
    insn: str                # that instruction's text (capstone, Intel syntax) or "<unmapped>"
    access: str | None = None
    size: int | None = None
    vector: int | None = None
    error_code: int | None = None
    exception: BaseException | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outcome:
    """What :meth:`Machine.run` did. ``str(outcome)`` is the one-line ``message``."""
    status: str              # one of STATUSES
    insns: int               # instructions executed (completed), exact
    pc: int                  # the machine's PC now
    fault: FaultInfo | None = None
    trace: "Trace | None" = field(default=None, repr=False)
    message: str = ""
    reason: str = ""         # finished: "until"; budget: "budget" | "timeout"; stopped: the stop reason
    elapsed: float = field(default=0.0, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status in ("finished", "halted")

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------------------------
# Trace
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceSpec:
    """What a traced run reports. ``regs``: register names whose changes steps report (default: the
    general-purpose registers and the flags of the mode). ``mem``: record memory writes.
    ``max_steps``: keep at most this many steps (184 bytes each); the run goes on untraced after that."""
    regs: tuple | None = None
    mem: bool = True
    max_steps: int = 200_000


@dataclass(frozen=True)
class Step:
    """One executed instruction: where, what, and what it changed (registers: ``{name: (old, new)}``;
    memory: ``[(address, size, value)]``, including writes made by Python hooks during that step)."""
    index: int
    pc: int
    next_pc: int
    insn: str
    reg_changes: dict
    mem_writes: list


class Trace:
    """The steps of a traced run. Recording stored raw register-file bytes; everything here is lazy.

    ``len(trace)``/``trace.steps``: number of steps; ``trace.step(i)``: a :class:`Step`;
    ``trace.regs_at(i)``: registers before step i (``i == steps``: after the last one);
    ``trace.table(limit)``: rows of plain values (see ``COLUMNS``) for a widget.
    """
    COLUMNS = ("step", "pc", "instruction", "register changes", "memory writes")

    def __init__(self, arch: str, names: tuple, store: bytes, final: bytes, writes: list, code: dict,
                 flags_mode: str, truncated: bool):
        self.arch = arch
        self.names = names
        self._a = _ARCHES[arch]
        self._store = store
        self._final = final
        self._n = len(store) // _REC
        self._code = code                  # pc -> instruction bytes, captured when the run ended
        self._flags_mode = flags_mode      # "lazy": rebuild from cc_op/cc_src/cc_dst; "direct": recorded
        self.truncated = truncated         # True when max_steps cut the recording short
        self.notice = ""                   # then: one line saying so (also in the run's Outcome.message)
        self._flags_cache: dict[int, int] = {}
        self._insn_cache: dict[int, str] = {}
        self._wraw = writes                # flat (store length when written, address, size, value) ...
        self._woff = None                  # the lengths, built on first use (bisect per step)

    # -- raw access --------------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self._n

    def __len__(self) -> int:
        return self._n

    def _rec(self, i: int) -> tuple:
        if i == self._n:
            return _REC_FMT.unpack(self._final)
        return _REC_FMT.unpack_from(self._store, i * _REC)

    def _raw(self, i: int) -> bytes:
        return self._final if i == self._n else bytes(self._store[i * _REC:(i + 1) * _REC])

    def _flags(self, i: int, rec: tuple) -> int:
        if self._flags_mode == "direct":
            return rec[17]
        v = self._flags_cache.get(i)
        if v is None:
            v = self._flags_cache[i] = _flags_oracle(self.arch).compute(self._raw(i))
        return v

    def _check(self, i: int, allow_end: bool = False) -> int:
        if isinstance(i, bool) or not isinstance(i, int):
            raise EmuError(f"step index must be an int, not {type(i).__name__}")
        n = self._n + (1 if allow_end else 0)
        j = i + self._n if i < 0 else i
        if not 0 <= j < n:
            raise EmuError(f"step {i} out of range: the trace has {self._n} steps")
        return j

    @property
    def pcs(self) -> list:
        """The PC of every step, in order."""
        return [self._rec(i)[16] & self._mask for i in range(self._n)]

    @property
    def _mask(self) -> int:
        return (1 << self._a["bits"]) - 1

    def regs_at(self, i: int) -> dict:
        """Registers (the traced set, plus the PC) before step ``i``; ``i == steps`` is after the last."""
        i = self._check(i, allow_end=True)
        rec = self._rec(i)
        out = {}
        for name, idx in self._a["traced"].items():
            out[name] = (self._flags(i, rec) if idx < 0 else rec[idx]) & self._mask
        out[self._a["pc"]] = rec[16] & self._mask
        return out

    def insn_at(self, pc: int) -> str:
        s = self._insn_cache.get(pc)
        if s is None:
            s = self._insn_cache[pc] = _disasm_one(self._a["cs"], self._code.get(pc, b""), pc)
        return s

    def step(self, i: int) -> Step:
        i = self._check(i)
        rec0, rec1 = self._rec(i), self._rec(i + 1)
        m = self._mask
        changes = {}
        for name in self.names:
            idx = self._a["traced"][name]
            if idx < 0:
                a, b = self._flags(i, rec0) & m, self._flags(i + 1, rec1) & m
            else:
                a, b = rec0[idx] & m, rec1[idx] & m
            if a != b:
                changes[name] = (a, b)
        pc = rec0[16] & m
        return Step(i, pc, rec1[16] & m, self.insn_at(pc), changes, self._writes_of(i))

    def _writes_of(self, i: int) -> list:
        # a write recorded when the store held k records belongs to step k - 1
        if self._woff is None:
            self._woff = array.array("Q", self._wraw[0::4])
        lo = bisect.bisect_left(self._woff, (i + 1) * _REC)
        hi = bisect.bisect_left(self._woff, (i + 2) * _REC, lo)
        w = self._wraw
        return [(w[k + 1], w[k + 2], w[k + 3] & ((1 << (8 * min(w[k + 2], 8))) - 1)) for k in range(4 * lo, 4 * hi, 4)]

    def __iter__(self) -> Iterator[Step]:
        return (self.step(i) for i in range(self._n))

    def mem_writes(self) -> list:
        """Every recorded write as (step, address, size, value)."""
        w = self._wraw
        return [(w[k] // _REC - 1, w[k + 1], w[k + 2], w[k + 3] & ((1 << (8 * min(w[k + 2], 8))) - 1))
                for k in range(0, len(w), 4) if w[k] >= _REC]

    def table(self, limit: int = 50, start: int = 0) -> list:
        """Up to ``limit`` rows from step ``start``: (step, pc, instruction, changes, writes), plain values."""
        rows = []
        for i in range(max(0, start), min(self._n, max(0, start) + max(0, limit))):
            s = self.step(i)
            ch = ", ".join(f"{k}: {a:#x}->{b:#x}" for k, (a, b) in s.reg_changes.items())
            mw = ", ".join(f"[{a:#x}]={v:#x}/{n}" for a, n, v in s.mem_writes)
            rows.append((i, s.pc, s.insn, ch, mw))
        return rows

    def __repr__(self) -> str:
        return f"<Trace {self.arch}: {self._n} steps{' (truncated: ' + self.notice + ')' if self.truncated else ''}>"


_CAPSTONE: dict[int, capstone.Cs] = {}


def _disasm_one(cs_mode: int, code: bytes, pc: int) -> str:
    if not code:
        return "<unmapped>"
    cs = _CAPSTONE.get(cs_mode)
    if cs is None:
        cs = _CAPSTONE[cs_mode] = capstone.Cs(capstone.CS_ARCH_X86, cs_mode)
    for insn in cs.disasm(code, pc, 1):
        return f"{insn.mnemonic} {insn.op_str}".strip()
    return "(bad) " + code[:4].hex(" ")


# ---------------------------------------------------------------------------------------------------
# Where unicorn 2.1.4 keeps its instruction counter and QEMU's register file (found by calibration)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layout:
    counter_off: int | None   # uc_struct.emu_counter (include/uc_priv.h), from the handle
    cpu_off: int | None       # uc_struct.cpu (CPUState *), from the handle
    regs_delta: int | None    # X86CPU.env.regs, from the CPUState pointer
    dr0_delta: int | None     # env.dr[0], from env.regs; error_code/exception_is_int/old_exception sit near


_LAYOUT: _Layout | None = None


def _pread(addr: int, n: int) -> bytes:
    """Read this process's memory without risking a segfault (an unmapped address gives b'')."""
    fd = os.open("/proc/self/mem", os.O_RDONLY)
    try:
        return os.pread(fd, n, addr)
    except OSError:
        return b""
    finally:
        os.close(fd)


# unicorn reserves a translation buffer per engine, 1 GiB by default (QEMU's DEFAULT_CODE_GEN_BUFFER_SIZE on a
# 64-bit host): 30 machines were 30 GiB of address space, more than a hub's limit.  The book's programs
# translate a few hundred kilobytes at most, and a full buffer only means a flush (QEMU tb_flush), so 32 MiB.
TCG_BUFFER_SIZE = 32 << 20
MAX_REGION = 256 << 20       # bytes of one stack or data region (mapping is cheap, zeroing 4 GiB is not)


def _new_uc(mode: int):
    """A unicorn engine with the small translation buffer (set before the engine initialises itself)."""
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, mode)
    try:
        uc.ctl_set_tcg_buffer_size(TCG_BUFFER_SIZE)
    except (AttributeError, UcError):  # pragma: no cover - older bindings: the default buffer
        pass
    return uc


def _drop_tb(uc, lo: int, hi: int) -> None:
    """Drop translated blocks for [lo, hi). unicorn takes 64-bit bounds and refuses lo >= hi, so a range that
    ends at the top of the address space (hi = 2**64) is clamped."""
    hi = min(hi, (1 << 64) - 1)
    uc.ctl_remove_cache(min(lo, hi - 1), hi)


def _uch(uc) -> int:
    return uc._uch.value


def _register_place(uc, regs: list, magic: list, base: int) -> int | None:
    """Where in the 64 KiB from ``base`` the 8-byte registers ``regs`` (holding ``magic``) live, or None. A hit
    counts only if other values written to the registers appear there too: a copy of the pattern elsewhere (the
    probe's own bytes object can lie behind some pointer) is passed over. The registers keep ``magic``."""
    pack = struct.Struct(f"<{len(regs)}Q").pack
    other = [v ^ 0x00A5_0000_0000_A500 for v in magic]
    blob, pat = _pread(base, 1 << 16), pack(*magic)
    k = blob.find(pat)
    while k >= 0:
        for r, v in zip(regs, other):
            uc.reg_write(r, v)
        follows = _pread(base + k, len(pat)) == pack(*other)
        for r, v in zip(regs, magic):
            uc.reg_write(r, v)
        if follows:
            return k
        k = blob.find(pat, k + 1)
    return None


def _probe_layout() -> _Layout:
    """Find the offsets once per process. Every step is validated; a miss leaves that field None."""
    global _LAYOUT
    if _LAYOUT is not None:
        return _LAYOUT
    counter_off = cpu_off = regs_delta = dr0_delta = None
    try:
        uc = _new_uc(unicorn.UC_MODE_64)
        h = _uch(uc)
        uc.mem_map(0x1000, 0x1000)
        # 1. emu_counter: two runs of n nops with distinctive counts; size_t counter then size_t count.
        cands = None
        for n, count in ((37, 0x7A5C31), (11, 0x3B1D27)):
            uc.mem_write(0x1000, b"\x90" * n)
            uc.ctl_remove_cache(0x1000, 0x1000 + 64)
            uc.emu_start(0x1000, 0x1000 + n, count=count)
            blob = _pread(h, 8192)
            hits = {o for o in range(0, len(blob) - 15, 8) if struct.unpack_from("<QQ", blob, o) == (n, count)}
            cands = hits if cands is None else cands & hits
        if cands and len(cands) == 1:
            counter_off = cands.pop()
        # 2. the register file: distinctive values in the 16 GPRs, searched behind each pointer of uc_struct.
        gprs = [getattr(X, "UC_X86_REG_R" + n.upper()) for n in _QEMU_GPR] + \
               [getattr(X, f"UC_X86_REG_R{i}") for i in range(8, 16)]
        magic = [0x5EED_0000_0000_0000 | (0x1111 * (i + 1)) << 16 | i for i in range(16)]
        for r, v in zip(gprs, magic):
            uc.reg_write(r, v)
        blob = _pread(h, 8192)
        for o in range(0, len(blob) - 7, 8):
            p = struct.unpack_from("<Q", blob, o)[0]
            if p < 0x10000 or p >= 1 << 47 or p & 7:
                continue
            k = _register_place(uc, gprs, magic, p)
            if k is not None:
                cpu_off, regs_delta = o, k
                break
        if regs_delta is not None:
            env = struct.unpack_from("<Q", _pread(h + cpu_off, 8))[0] + regs_delta
            # 3. env.dr[0..1] (target/i386/cpu.h: error_code, exception_is_int, exception_next_eip, dr[8],
            #    cpu_breakpoint[4], old_exception), checked with a #DE and an int3.
            drs, dr_magic = [X.UC_X86_REG_DR0, X.UC_X86_REG_DR1], [0x0D0D_5EED_0000_0001, 0x0D1D_5EED_0000_0002]
            for r, v in zip(drs, dr_magic):
                uc.reg_write(r, v)
            k = _register_place(uc, drs, dr_magic, env)
            if k:   # env.dr sits after error_code and exception_is_int, never at env.regs itself
                seen = []
                uc.hook_add(unicorn.UC_HOOK_INTR, lambda u, n, d: (seen.append(
                    struct.unpack("<ii", _pread(env + k - 16 + 4, 4) + _pread(env + k + 96, 4))), u.emu_stop()))
                uc.reg_write(X.UC_X86_REG_RCX, 0)
                uc.mem_write(0x1000, b"\x48\xf7\xf1\xcc")      # div rcx (#DE, a fault); int3 (software)
                uc.ctl_remove_cache(0x1000, 0x1100)
                uc.emu_start(0x1000, 0x1004, count=10)
                uc.emu_start(0x1003, 0x1004, count=10)
                if seen == [(0, 0), (1, 0)]:
                    dr0_delta = k
        uc.reg_write(X.UC_X86_REG_DR0, 0)
        uc.reg_write(X.UC_X86_REG_DR1, 0)
        del uc
    except Exception:  # noqa: BLE001 - any surprise means "no shortcut": the slow paths stay correct
        pass
    _LAYOUT = _Layout(counter_off, cpu_off, regs_delta, dr0_delta)
    return _LAYOUT


class _FlagsOracle:
    """EFLAGS from recorded register-file bytes: QEMU's own cpu_compute_eflags, in a scratch unicorn."""

    def __init__(self, arch: str):
        a = _ARCHES[arch]
        self.uc = _new_uc(a["mode"])
        self.reg = X.UC_X86_REG_RFLAGS if a["bits"] == 64 else X.UC_X86_REG_EFLAGS
        self.env = _bind_env(self.uc, a["bits"])
        if self.env is None:
            raise EmuError("register-file layout unavailable")
        self.val = ctypes.c_uint64()
        self.read = (functools.partial(_uclib.uc_reg_read, self.uc._uch, self.reg, ctypes.byref(self.val))
                     if _uclib is not None else None)

    def compute(self, raw: bytes) -> int:
        ctypes.memmove(self.env, raw, _REC)
        if self.read is None:
            return self.uc.reg_read(self.reg)
        self.val.value = 0
        self.read()
        return self.val.value


_ORACLES: dict[str, _FlagsOracle] = {}


def _flags_oracle(arch: str) -> _FlagsOracle:
    o = _ORACLES.get(arch)
    if o is None:
        o = _ORACLES[arch] = _FlagsOracle(arch)
    return o


def _bind_env(uc, bits: int) -> int | None:
    """Address of this engine's env.regs, validated by writing two registers and reading them back."""
    lay = _probe_layout()
    if lay.regs_delta is None:
        return None
    first, last = (X.UC_X86_REG_RAX, X.UC_X86_REG_R15) if bits == 64 else (X.UC_X86_REG_EAX, X.UC_X86_REG_EDI)
    m1, m2 = (0x0BAD_5EED, 0x0CAB_1E00) if bits == 32 else (0x0BAD_5EED_0000_0001, 0x0CAB_1E00_0000_0002)
    old = uc.reg_read(first), uc.reg_read(last)     # also makes unicorn create its CPU (it does so lazily)
    raw = _pread(_uch(uc) + lay.cpu_off, 8)
    if len(raw) != 8:
        return None
    env = struct.unpack("<Q", raw)[0] + lay.regs_delta
    uc.reg_write(first, m1)
    uc.reg_write(last, m2)
    got = _pread(env, _REC)
    uc.reg_write(first, old[0])
    uc.reg_write(last, old[1])
    if len(got) != _REC:
        return None
    vals = struct.unpack_from("<16Q", got)
    if vals[0] != m1 or vals[15 if bits == 64 else 7] != m2:
        return None
    return env


# ---------------------------------------------------------------------------------------------------
# Raw hooks (the per-instruction ones must not go through the binding's generic wrapper)
# ---------------------------------------------------------------------------------------------------
try:
    from unicorn.unicorn_py3.unicorn import uc_hook_h as _uc_hook_h, uclib as _uclib
except ImportError:  # pragma: no cover - other binding layouts: use Uc.hook_add (slower, same result)
    _uclib = None
_CB_NOARGS = ctypes.CFUNCTYPE(None)   # the C side passes (uc, address, size, user_data); unused here
_CB_CODE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint32, ctypes.c_void_p)
# (uc, access, address, size, value); the trailing user_data is not declared: one conversion fewer
_CB_MEM = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int, ctypes.c_int64)


def _raw_hook_add(uc, htype: int, cfunc, pyfunc_for_binding) -> tuple:
    """Add a hook with a raw ctypes callback; returns (handle, keepalive)."""
    if _uclib is None:
        return uc.hook_add(htype, pyfunc_for_binding), None
    h = _uc_hook_h()
    err = _uclib.uc_hook_add(uc._uch, ctypes.byref(h), htype, cfunc, None, ctypes.c_uint64(1), ctypes.c_uint64(0))
    if err != unicorn.UC_ERR_OK:
        raise UcError(err)
    return h.value, cfunc


def _raw_hook_del(uc, handle: int) -> None:
    if _uclib is None:
        uc.hook_del(handle)
    else:
        _uclib.uc_hook_del(uc._uch, _uc_hook_h(handle))


# The machine's own hooks.  The binding's Uc.hook_add wraps each callback in a closure over the engine, so an
# engine with hooks is a reference cycle that only the cyclic collector frees -- with its translation buffer
# and guest memory.  These callbacks are raw ctypes functions that hold only a weak reference to the machine
# (and nothing of the engine), so a machine and its engine are freed the moment the last reference goes.
_CB_INTR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p)
_CB_INVALID = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64, ctypes.c_int,
                               ctypes.c_int64, ctypes.c_void_p)
_CB_SYS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def _machine_hook(m, htype: int, cbtype, method: str, begin: int = 1, end: int = 0, insn: int | None = None,
                  **kw) -> int:
    ref = weakref.ref(m)

    def call(*args):
        mm = ref()
        if mm is None:
            return False
        try:
            return getattr(mm, method)(mm.uc, *args, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to run(), as the binding would
            mm._hook_error = e
            mm.uc.emu_stop()
            return False

    if _uclib is None:  # pragma: no cover - other binding layouts: the binding's hooks (a cycle, still correct)
        extra = () if insn is None else (insn,)
        return m.uc.hook_add(htype, lambda _uc, *a: call(*a), None, begin, end, *extra)
    cfunc = cbtype(lambda _h, *a: call(*a))
    h = _uc_hook_h()
    extra = () if insn is None else (ctypes.c_int(insn),)
    err = _uclib.uc_hook_add(m.uc._uch, ctypes.byref(h), htype, cfunc, None, ctypes.c_uint64(begin),
                             ctypes.c_uint64(end), *extra)
    if err != unicorn.UC_ERR_OK:
        raise UcError(err)
    m._cfuncs[h.value] = cfunc
    return h.value


def _machine_hook_del(m, handle: int) -> None:
    _raw_hook_del(m.uc, handle)
    m._cfuncs.pop(handle, None)


class _Recorder:
    """Per-run trace recording: one 184-byte register-file record per instruction, plus memory writes."""

    def __init__(self, m: "Machine", spec: TraceSpec):
        self.m, self.spec = m, spec
        self.store = bytearray()
        self.writes: list = []             # flat: store length when written, address, size, value, ...
        self.handles: list = []
        self.keep: list = []
        self.truncated = False
        self.final: bytes | None = None
        if m._env is not None:
            self.flags_mode = "lazy"
            view = memoryview((ctypes.c_char * _REC).from_address(m._env)).cast("B")
            self.snapshot = view.tobytes
            self.code_cb = _CB_NOARGS(functools.partial(self.store.extend, view))
            py = lambda *a: self.store.extend(view)  # noqa: E731 - binding fallback
        else:  # slow path: read the registers through the API into the same record layout
            self.flags_mode = "direct"
            buf = (ctypes.c_char * _REC)()
            bits = m.bits
            ids, offs = [], []
            for i, n in enumerate(_QEMU_GPR):
                ids.append(getattr(X, f"UC_X86_REG_{'R' if bits == 64 else 'E'}{n.upper()}"))
                offs.append(8 * i)
            if bits == 64:
                ids += [getattr(X, f"UC_X86_REG_R{i}") for i in range(8, 16)]
                offs += [8 * i for i in range(8, 16)]
            ids += [X.UC_X86_REG_RIP if bits == 64 else X.UC_X86_REG_EIP,
                    X.UC_X86_REG_RFLAGS if bits == 64 else X.UC_X86_REG_EFLAGS]
            offs += [128, 136]
            cids = (ctypes.c_int * len(ids))(*ids)
            ptrs = (ctypes.c_void_p * len(ids))(*[ctypes.addressof(buf) + o for o in offs])
            n_ids = len(ids)
            uc = m.uc

            def snap():
                ctypes.memset(buf, 0, _REC)
                uc._do_reg_read_batch(cids, ptrs, n_ids)
                return bytes(buf)
            self.snapshot = snap
            rec_ext = self.store.extend
            py = lambda *a: rec_ext(snap())  # noqa: E731
            self.code_cb = _CB_NOARGS(py)
        self.code_py = py
        w_ext, ln = self.writes.extend, self.store.__len__

        def on_write(h, access, addr, size, value):
            w_ext((ln(), addr, size, value))
        self.mem_cb = _CB_MEM(on_write)
        self.mem_py = lambda uc, access, addr, size, value, ud: w_ext((ln(), addr, size, value))

    @property
    def nrec(self) -> int:
        return len(self.store) // _REC

    def room(self) -> int:
        return self.spec.max_steps - self.nrec

    def attach(self) -> None:
        uc = self.m.uc
        h, k = _raw_hook_add(uc, unicorn.UC_HOOK_CODE, self.code_cb, lambda u, a, s, d: self.code_py())
        self.handles.append(h)
        self.keep.append(k)
        if self.spec.mem:
            h, k = _raw_hook_add(uc, unicorn.UC_HOOK_MEM_WRITE, self.mem_cb, self.mem_py)
            self.handles.append(h)
            self.keep.append(k)
        uc.ctl_flush_tb()   # blocks translated without the hook would not call it

    def detach(self) -> None:
        if self.handles:
            for h in self.handles:
                _raw_hook_del(self.m.uc, h)
            self.handles = []
            self.m.uc.ctl_flush_tb()

    def release(self) -> None:
        """Drop the references to the machine and the callbacks (which refer back to the recorder), so
        neither waits for the cyclic collector."""
        self.detach()
        self.m = self.code_cb = self.mem_cb = self.code_py = self.mem_py = self.snapshot = None
        self.keep = []

    def host_write(self, addr: int, data: bytes) -> None:
        """A write made by Python during the run (a hook): attributed to the current step."""
        for o in range(0, len(data), 8):
            chunk = data[o:o + 8]
            self.writes.extend((len(self.store), addr + o, len(chunk), int.from_bytes(chunk, "little")))

    def trim(self, keep: int) -> None:
        """Drop records beyond ``keep`` (instructions that were counted by a hook but did not complete)."""
        cut = keep * _REC
        if len(self.store) > cut:
            del self.store[cut:]
            # writes made by Python hooks at that point belong to the last completed step
            w = self.writes
            j = len(w) - 4
            while j >= 0 and w[j] > cut:
                w[j] = cut
                j -= 4

    def finish(self, names: tuple) -> Trace:
        self.detach()
        final = self.final if self.final is not None else self.snapshot()
        store = self.store                 # handed over, not copied (the recorder is done)
        with memoryview(store) as mv, mv.cast("Q") as q:
            pcs = set(q[16::_REC // 8])
        code = {pc: self.m._read_avail(pc, 15) for pc in pcs}
        return Trace(self.m.arch, names, store, final, self.writes, code, self.flags_mode, self.truncated)


# ---------------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------------
_PERMS = {"r": unicorn.UC_PROT_READ, "w": unicorn.UC_PROT_WRITE, "x": unicorn.UC_PROT_EXEC}
_ERR_KIND = {
    unicorn.UC_ERR_READ_UNMAPPED: ("unmapped read", "read"),
    unicorn.UC_ERR_WRITE_UNMAPPED: ("unmapped write", "write"),
    unicorn.UC_ERR_FETCH_UNMAPPED: ("unmapped fetch", "fetch"),
    unicorn.UC_ERR_READ_PROT: ("protection", "read"),
    unicorn.UC_ERR_WRITE_PROT: ("protection", "write"),
    unicorn.UC_ERR_FETCH_PROT: ("protection", "fetch"),
    unicorn.UC_ERR_READ_UNALIGNED: ("unaligned", "read"),
    unicorn.UC_ERR_WRITE_UNALIGNED: ("unaligned", "write"),
    unicorn.UC_ERR_FETCH_UNALIGNED: ("unaligned", "fetch"),
    unicorn.UC_ERR_INSN_INVALID: ("invalid instruction", None),
    unicorn.UC_ERR_EXCEPTION: ("exception", None),
}
# Errors raised by an instruction after unicorn's count hook counted it (it did not complete).
_COUNTED_NOT_DONE = {unicorn.UC_ERR_READ_UNMAPPED, unicorn.UC_ERR_WRITE_UNMAPPED, unicorn.UC_ERR_READ_PROT,
                     unicorn.UC_ERR_WRITE_PROT, unicorn.UC_ERR_READ_UNALIGNED, unicorn.UC_ERR_WRITE_UNALIGNED,
                     unicorn.UC_ERR_INSN_INVALID, unicorn.UC_ERR_EXCEPTION}
# Vectors that push an error code (Intel SDM Vol. 3A §6.13, Table 6-1).
_ERROR_CODE_VECTORS = {8, 10, 11, 12, 13, 14, 17, 21}


def _perms(perms) -> int:
    if isinstance(perms, int) and not isinstance(perms, bool) and 0 <= perms <= 7:
        return perms
    if not isinstance(perms, str) or any(c not in "rwx-" for c in perms):
        raise EmuError(f"permissions must be a string of r, w, x (e.g. 'rw'), not {perms!r}")
    v = 0
    for c in perms:
        v |= _PERMS.get(c, 0)
    return v


def _perm_str(p: int) -> str:
    return "".join(c if p & b else "-" for c, b in _PERMS.items())


def _int(name: str, v, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise EmuError(f"{name} must be an int, not {type(v).__name__}")
    if not lo <= v < hi:
        raise EmuError(f"{name} {v:#x} out of range [{lo:#x}, {hi:#x})")
    return v


class Machine:
    """An x86 machine: unicorn engine plus mapped stack/data regions, hooks, and a budgeted run loop.

    ``Machine(arch="x86_64" | "x86_32", *, code_base, stack_base, stack_size, data_base, data_size)``.
    The stack (``rw``) and data (``rw``) regions are mapped now; the code region (``rwx``) is mapped by
    ``run(code)``. ``data_base=None`` maps no data region. ``stack_top`` is the stack region's end.
    """

    def __init__(self, arch: str = "x86_64", *, code_base: int = CODE_BASE, stack_base: int = STACK_BASE,
                 stack_size: int = STACK_SIZE, data_base: int | None = DATA_BASE, data_size: int = DATA_SIZE):
        if arch not in _ARCHES:
            raise EmuError(f"unknown arch {arch!r}: use 'x86_64' or 'x86_32'")
        a = _ARCHES[arch]
        self.arch, self.bits = arch, a["bits"]
        self.pc_name, self.sp_name, self.flags_name = a["pc"], a["sp"], a["flags"]
        self._a = a
        self._table = a["table"]
        self._word = self.bits // 8
        top = 1 << self.bits
        self.code_base = _int("code_base", code_base, 0, top)
        self.stack_base = _int("stack_base", stack_base, 0, top)
        self.stack_size = _int("stack_size", stack_size, 1, min(top - self.stack_base, MAX_REGION) + 1)
        self.stack_top = self.stack_base + self.stack_size
        self.data_base = None if data_base is None else _int("data_base", data_base, 0, top)
        if self.data_base is not None:
            _int("data_size", data_size, 1, min(top - self.data_base, MAX_REGION) + 1)
        self.data_size = data_size
        self.uc = _new_uc(a["mode"])   # escape hatch for experts; run() owns hooks
        self.interrupt: InterruptInfo | None = None          # the interrupt being handled (in callbacks)
        self._dirty: list = []
        self._addr_hooks: dict[int, tuple] = {}               # handle -> (address, callback)
        self._addr_uc: dict[int, int] = {}                    # address -> unicorn hook handle
        self._next_handle = 1
        self._intr_cb = None
        self._sys_cb = None
        self._running = False
        self._recorder: _Recorder | None = None
        self._skip_at: int | None = None
        self._event = None
        self._mem_fault = None
        self._stop_reason: str | None = None
        self._chunk = {False: 100_000, True: 20_000}   # instructions per emu_start; adapted to ~50 ms
        self._bind()
        self._cfuncs: dict = {}
        self._hook_error = None
        _machine_hook(self, unicorn.UC_HOOK_INTR, _CB_INTR, "_hook_intr")
        _machine_hook(self, unicorn.UC_HOOK_MEM_UNMAPPED | unicorn.UC_HOOK_MEM_PROT, _CB_INVALID, "_hook_mem_invalid")
        for ins, name in ((X.UC_X86_INS_SYSCALL, "syscall"), (X.UC_X86_INS_SYSENTER, "sysenter")):
            _machine_hook(self, unicorn.UC_HOOK_INSN, _CB_SYS, "_hook_sys", insn=ins, name=name)
        self.map(self.stack_base, self.stack_size, "rw")
        if self.data_base is not None:
            self.map(self.data_base, _int("data_size", data_size, 1, top - self.data_base + 1), "rw")
        self._reg_write(self.sp_name, self._fresh_sp())
        self._ctx0 = self.uc.context_save()

    def close(self) -> None:
        """Release the engine now (translation buffer and guest memory) instead of when the last reference
        to the machine goes. The machine cannot run afterwards. Safe to call twice."""
        self.__dict__.pop("uc", None)
        self._cfuncs = {}

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def regs(self) -> Registers:
        """``m.regs["rax"]``, ``m.regs["eax"] = 5``: a view made on each use, so the machine holds no
        reference to itself (it is freed, engine and all, as soon as the last reference goes)."""
        return Registers(self)

    def reset(self) -> None:
        """Put the CPU back in its initial state (registers, control registers, segments, flags);
        memory, mappings and hooks stay. Useful after running arbitrary bytes (which may, e.g., set CR0.PG)."""
        if self._running:
            raise EmuError("reset() cannot be called from inside a hook")
        self.uc.context_restore(self._ctx0)
        self.uc.ctl_flush_tb()
        self._skip_at = None
        self.interrupt = None

    # -- layout binding ------------------------------------------------------------------------------
    def _bind(self) -> None:
        lay = _probe_layout()
        h = _uch(self.uc)
        self._env = _bind_env(self.uc, self.bits)
        self._counter = None
        if lay.counter_off is not None:
            self._counter = ctypes.c_size_t.from_address(h + lay.counter_off)
        self._exc_is_int = self._exc_err = self._old_exc = None
        if self._env is not None and lay.dr0_delta is not None:
            dr0 = self._env + lay.dr0_delta
            self._exc_err = ctypes.c_int32.from_address(dr0 - 16)      # env.error_code
            self._exc_is_int = ctypes.c_int32.from_address(dr0 - 12)   # env.exception_is_int
            self._old_exc = ctypes.c_int32.from_address(dr0 + 96)      # env.old_exception
        self._py_count = [0, None]   # fallback counter: count, address of the last counted instruction
        if self._counter is None:  # slow, exact fallback: a counting hook, added before any other code hook
            c = self._py_count

            def count(h, address, size, ud):
                c[0] += 1
                c[1] = address
            self._count_keep = _CB_CODE(count)
            _raw_hook_add(self.uc, unicorn.UC_HOOK_CODE, self._count_keep, lambda u, a, s_, d: count(u, a, s_, d))

    @property
    def fast(self) -> dict:
        """Which calibrated shortcuts this machine uses (False means the slower, exact fallback)."""
        return {"counter": self._counter is not None, "trace": self._env is not None,
                "exceptions": self._old_exc is not None}

    def _count_read(self) -> int:
        return self._counter.value if self._counter is not None else self._py_count[0]

    # -- memory --------------------------------------------------------------------------------------
    def _range(self, addr, size, what="map") -> tuple[int, int]:
        top = 1 << self.bits
        addr = _int("address", addr, 0, top)
        size = _int("size", size, 1, top + 1)
        lo, hi = addr & ~(PAGE_SIZE - 1), (addr + size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if hi > top:
            raise EmuError(f"cannot {what} {addr:#x}+{size:#x}: beyond the {self.bits}-bit address space")
        return lo, hi

    def regions(self) -> list:
        """Mapped regions as (start, end_exclusive, perms) with perms like 'rw-'."""
        return [(b, e + 1, _perm_str(p)) for b, e, p in sorted(self.uc.mem_regions())]

    def map(self, addr: int, size: int, perms="rwx") -> None:
        """Map [addr, addr+size) rounded out to pages. Pages already mapped are kept (contents too) and
        get ``perms`` like the new ones, so overlapping requests (e.g. two ELF segments) just work."""
        lo, hi = self._range(addr, size)
        p = _perms(perms)
        cur = lo
        try:
            for b, e, _ in self.regions():
                if e <= cur or b >= hi:
                    continue
                if b > cur:
                    self.uc.mem_map(cur, b - cur, p)
                self.uc.mem_protect(max(b, cur), min(e, hi) - max(b, cur), p)
                cur = min(e, hi)
            if cur < hi:
                self.uc.mem_map(cur, hi - cur, p)
        except UcError as e:
            raise EmuError(f"cannot map {lo:#x}-{hi:#x}: {e}") from None
        self._dirty.append((lo, hi))

    def unmap(self, addr: int, size: int) -> None:
        """Unmap the mapped pages of [addr, addr+size) (rounded out to pages)."""
        lo, hi = self._range(addr, size, "unmap")
        parts = [(max(b, lo), min(e, hi)) for b, e, _ in self.regions() if b < hi and e > lo]
        if not parts:
            raise EmuError(f"nothing is mapped in {lo:#x}-{hi:#x}")
        for b, e in parts:
            self.uc.mem_unmap(b, e - b)
        self._dirty.append((lo, hi))

    def protect(self, addr: int, size: int, perms) -> None:
        """Change the permissions of mapped pages."""
        lo, hi = self._range(addr, size, "protect")
        try:
            self.uc.mem_protect(lo, hi - lo, _perms(perms))
        except UcError as e:
            raise EmuError(f"cannot protect {lo:#x}-{hi:#x}: {e}") from None
        self._dirty.append((lo, hi))

    def write(self, addr: int, data) -> None:
        """Write bytes (ignores page permissions, as a debugger does)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise EmuError(f"data must be bytes, not {type(data).__name__}")
        data = bytes(data)
        if not data:
            return
        addr = _int("address", addr, 0, 1 << self.bits)
        try:
            self.uc.mem_write(addr, data)
        except UcError:
            raise EmuError(f"cannot write {len(data)} bytes at {addr:#x}: not mapped") from None
        self._dirty.append((addr, addr + len(data)))
        if self._recorder is not None and self._running and self._recorder.handles:
            self._recorder.host_write(addr, data)

    def read(self, addr: int, n: int) -> bytes:
        addr = _int("address", addr, 0, 1 << self.bits)
        n = _int("size", n, 0, 1 << 32)
        if n == 0:
            return b""
        try:
            return bytes(self.uc.mem_read(addr, n))
        except UcError:
            raise EmuError(f"cannot read {n} bytes at {addr:#x}: not mapped") from None

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (_int("value", value, -(1 << 63), 1 << 64) & (2**64 - 1)).to_bytes(8, "little"))

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (_int("value", value, -(1 << 31), 1 << 32) & (2**32 - 1)).to_bytes(4, "little"))

    def _read_avail(self, addr: int, n: int) -> bytes:
        """Up to n bytes at addr, fewer where the mapping ends, b'' if unmapped. Never raises."""
        for k in range(n, 0, -1):
            try:
                return bytes(self.uc.mem_read(addr, k))
            except (UcError, OverflowError, ValueError):
                continue
        return b""

    def insn_at(self, addr: int) -> str:
        """The instruction at addr as text (Intel syntax), '<unmapped>' or '(bad) ..'."""
        return _disasm_one(self._a["cs"], self._read_avail(addr, 15), addr)

    # -- registers -----------------------------------------------------------------------------------
    def _reg(self, name) -> tuple[int, int]:
        if not isinstance(name, str):
            raise EmuError(f"register name must be a string, not {type(name).__name__}")
        ent = self._table.get(name.lower())
        if ent is None:
            raise EmuError(f"unknown register {name!r} for {self.arch}")
        return ent

    def _reg_read(self, name) -> int:
        rid, width = self._reg(name)
        v = self.uc.reg_read(rid)
        if width < 0:
            return (v[1], v[2])
        return v & ((1 << width) - 1)

    def _reg_write(self, name, value) -> None:
        rid, width = self._reg(name)
        try:
            if width < 0:
                if not (isinstance(value, tuple) and len(value) == 2):
                    raise EmuError(f"{name} takes a (base, limit) tuple, not {value!r}")
                base = _int(f"{name} base", value[0], 0, 1 << self.bits)
                limit = _int(f"{name} limit", value[1], 0, 1 << 16)
                self.uc.reg_write(rid, (0, base, limit, 0))
                return
            value = _int(f"value for {name}", value, -(1 << (width - 1)), 1 << width)
            self.uc.reg_write(rid, value & ((1 << width) - 1))
        except UcError as e:
            raise EmuError(f"cannot set {name} to {value!r}: {e}") from None

    def registers(self, names=None) -> dict:
        """Current values: the mode's main registers (GPRs, PC, flags), or the given names."""
        return {n: self._reg_read(n) for n in (self._a["main"] if names is None else names)}

    @property
    def pc(self) -> int:
        return self._reg_read(self.pc_name)

    @pc.setter
    def pc(self, value: int) -> None:
        self._reg_write(self.pc_name, value)

    @property
    def sp(self) -> int:
        return self._reg_read(self.sp_name)

    @sp.setter
    def sp(self, value: int) -> None:
        self._reg_write(self.sp_name, value)

    def _fresh_sp(self) -> int:
        # 16 spare bytes above a return-address slot: at entry (sp + word) is 16-byte aligned, as the
        # x86-64 SysV psABI §3.2.2 and the i386 psABI (since GCC 4.5) expect at a call.
        return self.stack_top - 16 - self._word

    def push(self, value: int) -> int:
        """Push a word on the emulated stack; returns the new stack pointer."""
        sp = self.sp - self._word
        (self.write_u64 if self.bits == 64 else self.write_u32)(sp, value)
        self.sp = sp
        return sp

    # -- hooks ---------------------------------------------------------------------------------------
    def on_interrupt(self, callback: Callable | None) -> None:
        """``callback(machine, vector) -> bool`` for ``int n``, ``int3``, ``into`` and CPU exceptions
        (#DE, #GP...). True: handled (it may set RIP/RSP, memory, e.g. deliver through an IDT) and the run
        continues at the PC it left. False: the run stops with a fault of kind ``interrupt``/``exception``.
        ``machine.interrupt`` (an :class:`InterruptInfo`) says whether it was software and the error code.
        ``None`` removes the handler (the default: stop)."""
        if callback is not None and not callable(callback):
            raise EmuError("on_interrupt needs a callable or None")
        self._intr_cb = callback

    def on_syscall(self, callback: Callable | None) -> None:
        """``callback(machine, "syscall" | "sysenter") -> bool`` (True: handled, continue after it; it may
        change registers and memory but not the PC). Default: stop with a fault of kind ``syscall``."""
        if callback is not None and not callable(callback):
            raise EmuError("on_syscall needs a callable or None")
        self._sys_cb = callback

    def hook_address(self, addr: int, callback: Callable) -> int:
        """Call ``callback(machine, address)`` each time execution reaches ``addr`` (before that
        instruction runs). It may move the PC (and SP, memory, mappings); the run continues at the PC it
        leaves. Returning False or calling :meth:`stop` ends the run with status ``stopped``. Costs nothing
        elsewhere: a unicorn code hook bounded to that single address. Returns a handle."""
        addr = _int("address", addr, 0, 1 << self.bits)
        if not callable(callback):
            raise EmuError("hook_address needs a callable")
        handle = self._next_handle
        self._next_handle += 1
        self._addr_hooks[handle] = (addr, callback)
        if addr not in self._addr_uc:
            self._addr_uc[addr] = _machine_hook(self, unicorn.UC_HOOK_CODE, _CB_CODE, "_hook_code", addr, addr)
            _drop_tb(self.uc, addr, addr + 1)
        return handle

    def remove_hook(self, handle: int) -> None:
        if handle not in self._addr_hooks:
            raise EmuError(f"no hook with handle {handle!r}")
        addr, _ = self._addr_hooks.pop(handle)
        if not any(a == addr for a, _ in self._addr_hooks.values()):
            _machine_hook_del(self, self._addr_uc.pop(addr))
            _drop_tb(self.uc, addr, addr + 1)

    def stop(self, reason: str = "stopped by a hook") -> None:
        """From inside a callback: end the run after it returns (status ``stopped``, this reason)."""
        self._stop_reason = str(reason) or "stopped by a hook"

    def _hook_intr(self, uc, intno, _ud) -> None:
        pc_now = self.pc
        if self._exc_is_int is not None:
            software = bool(self._exc_is_int.value)
            ec = self._exc_err.value & 0xFFFFFFFF
        else:  # without the calibrated layout: recognise the instruction that ends at the PC
            software = self._read_avail(pc_now - 2, 2) == bytes([0xCD, intno & 0xFF]) or (
                self._read_avail(pc_now - 1, 1) == {3: b"\xcc", 4: b"\xce", 1: b"\xf1"}.get(intno))
            ec = None
        if not software and self._old_exc is not None:
            self._old_exc.value = -1    # unicorn never delivers, so nothing else clears "exception in flight"
        insn_pc = pc_now
        if software:
            insn_pc = pc_now - 2 if self._read_avail(pc_now - 2, 1) == b"\xcd" else pc_now - 1
        info = InterruptInfo(intno, software, insn_pc, pc_now,
                             ec if (not software and intno in _ERROR_CODE_VECTORS) else None)
        self.interrupt = info
        handled, err = False, None
        if self._intr_cb is not None:
            try:
                handled = bool(self._intr_cb(self, intno))
            except Exception as e:  # noqa: BLE001 - reported as a structured "hook error" outcome
                err = e
        self._event = ("intr", info, handled, err)
        uc.emu_stop()

    def _hook_sys(self, uc, _ud, name) -> None:
        pc = self.pc
        handled, err = False, None
        if self._sys_cb is not None:
            try:
                handled = bool(self._sys_cb(self, name))
            except Exception as e:  # noqa: BLE001
                err = e
        self._event = ("sys", name, pc, handled, err)
        uc.emu_stop()

    def _hook_code(self, uc, address, _size, _ud) -> None:
        if self._skip_at == address:     # resuming at a hook that already ran and left the PC here
            self._skip_at = None
            return
        err = None
        dirty = len(self._dirty)
        for addr, cb in list(self._addr_hooks.values()):
            if addr != address:
                continue
            try:
                if cb(self, address) is False and self._stop_reason is None:
                    self._stop_reason = f"hook at {address:#x} returned False"
            except Exception as e:  # noqa: BLE001
                err = e
                break
        if err is None and self._stop_reason is None and len(self._dirty) == dirty and self.pc == address:
            return   # registers only (or nothing) changed: the instruction runs now, no restart needed
        self._event = ("code", address, err)
        uc.emu_stop()

    def _hook_mem_invalid(self, uc, access, address, size, value, _ud) -> bool:
        self._mem_fault = (access, address, size, value)
        return False

    # -- running -------------------------------------------------------------------------------------
    def _flush_dirty(self) -> None:
        if self._dirty:
            for lo, hi in self._dirty:
                _drop_tb(self.uc, lo, hi)
            self._dirty = []

    def load(self, code, addr: int | None = None) -> int:
        """Map enough pages (rwx) at ``addr`` (default code_base) and write ``code``; returns the end."""
        if not isinstance(code, (bytes, bytearray, memoryview)):
            raise EmuError(f"code must be bytes, not {type(code).__name__}")
        code = bytes(code)
        addr = self.code_base if addr is None else addr
        if code:
            self.map(addr, len(code), "rwx")
            self.write(addr, code)
        return addr + len(code)

    def fresh_stack(self, return_address: int = 0) -> int:
        """Reset the stack pointer to the top of the stack region with ``return_address`` in the slot a
        ``call`` would have filled (so a trailing ``ret`` lands there). Returns the new stack pointer."""
        sp = self._fresh_sp()
        (self.write_u64 if self.bits == 64 else self.write_u32)(sp, return_address)
        self.sp = sp
        return sp

    def run(self, code=None, *, start: int | None = None, until: int | None = None,
            max_insns: int = DEFAULT_MAX_INSNS, timeout: float = DEFAULT_TIMEOUT, trace=False,
            fresh_stack: bool | None = None) -> Outcome:
        """Run and return an :class:`Outcome`. Never raises for anything the emulated code does.

        ``code``: bytes written at ``code_base``; then ``start`` defaults to ``code_base``, ``until`` to the
        end of the code, and the stack pointer is reset with the end of the code as return address
        (``fresh_stack=False`` keeps it). Without code: ``start`` defaults to the current PC and there is
        no ``until``. ``max_insns`` (exact) and ``timeout`` (seconds, checked every ~50 ms) always apply.
        ``trace``: True or a :class:`TraceSpec` records a :class:`Trace`.
        Raises :class:`EmuError` only for bad arguments (or run() called from inside a hook).
        """
        if self._running:
            raise EmuError("run() cannot be called from inside a hook; change registers and return instead")
        max_insns = _int("max_insns", max_insns, 0, 1 << 62)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < 1e6:
            raise EmuError(f"timeout must be a positive number of seconds, not {timeout!r}")
        spec = trace if isinstance(trace, TraceSpec) else (TraceSpec() if trace else None)
        if trace not in (True, False, None) and not isinstance(trace, TraceSpec):
            raise EmuError(f"trace must be True, False or a TraceSpec, not {trace!r}")
        names = None
        if spec is not None:
            names = tuple(self._a["traced"]) if spec.regs is None else tuple(r.lower() for r in spec.regs
                                                                            if isinstance(r, str))
            bad = [r for r in (spec.regs or ()) if not isinstance(r, str) or r.lower() not in self._a["traced"]]
            if bad:
                raise EmuError(f"cannot trace register {bad[0]!r} on {self.arch}; traceable: "
                               + ", ".join(self._a["traced"]))
            _int("max_steps", spec.max_steps, 0, 1 << 40)
        top = 1 << self.bits
        if code is not None:
            end = self.load(code)
            start = self.code_base if start is None else start
            until = end if until is None else until
            if fresh_stack is not False:
                self.fresh_stack(_int("until", until, 0, top))
        else:
            start = self.pc if start is None else start
            if fresh_stack:
                self.fresh_stack(0 if until is None else _int("until", until, 0, top))
        start = _int("start", start, 0, top)
        until_addr = _NO_UNTIL if until is None else _int("until", until, 0, top)
        if self._skip_at != start:
            self._skip_at = None
        self._reg_write(self.pc_name, start)          # so the PC is right even if nothing runs
        rec = _Recorder(self, spec) if spec is not None else None
        # `until` is unicorn's exit check, which imitates hlt: a hlt just before `until` would look the
        # same. A hook bounded to that one address notes the count when a hlt there starts.
        hlt_probe = None
        self._hlt_seen = None
        if until is not None and until > 0 and self._read_avail(until - 1, 1) == b"\xf4":
            hlt_probe = _machine_hook(self, unicorn.UC_HOOK_CODE, _CB_CODE, "_hook_hlt", until - 1, until - 1)
        t0 = time.perf_counter()
        deadline = t0 + timeout
        total, pc = 0, start
        result = None
        self._running = True
        self._recorder = rec
        try:
            if rec is not None and spec.max_steps > 0:
                rec.attach()
            while result is None:
                left = max_insns - total
                now = time.perf_counter()
                if left <= 0:
                    result = ("budget", "budget", None, None)
                    break
                if now >= deadline:
                    result = ("budget", "timeout", None, None)
                    break
                traced = bool(rec and rec.handles)
                n = min(left, self._chunk[traced])
                if traced:
                    n = min(n, max(1, rec.room()))
                self._flush_dirty()
                self._event = self._mem_fault = self._stop_reason = self._hlt_seen = None
                self._py_count[:] = [0, None]
                err = hook_exc = None
                n0 = rec.nrec if traced else 0
                t_seg = time.perf_counter()
                try:
                    self.uc.emu_start(pc, until_addr, 0, n)
                except UcError as e:
                    err = e
                except Exception as e:  # noqa: BLE001 - raised by one of our hooks through the binding
                    hook_exc = e
                if self._hook_error is not None:   # raised by one of our hooks (see _machine_hook)
                    hook_exc, self._hook_error = self._hook_error, None
                dt = time.perf_counter() - t_seg
                raw = self._count_read()
                ev = self._event
                if raw > n:
                    done = n
                elif (err is not None and err.errno in _COUNTED_NOT_DONE) or (ev and ev[0] == "code") or (
                        ev and ev[0] == "intr" and not ev[1].software):
                    done = max(raw - 1, 0)
                else:
                    done = raw
                total += done
                if done > 1000 and dt > 0:
                    self._chunk[traced] = int(min(max(done / dt * _CHUNK_SECONDS, 1000), 50_000_000))
                if traced:
                    rec.trim(n0 + done)   # drop a record of an instruction that was counted, not completed
                pc = self.pc
                # unicorn's count hook runs first: it alone sees instruction n+1 (fast path: raw == n+1)
                result = self._classify(err, hook_exc, ev, raw > n or (self._counter is None and raw >= n),
                                        pc, until_addr, raw)
                if traced and result is None and rec.room() <= 0:
                    rec.truncated = True
                    rec.final = rec.snapshot()   # the state after the last recorded step
                    rec.detach()
        finally:
            self._running = False
            self._recorder = None
            if hlt_probe is not None:
                _machine_hook_del(self, hlt_probe)
        try:
            return self._outcome(result, total, rec, names, time.perf_counter() - t0, timeout)
        finally:
            if rec is not None:
                rec.release()

    def _hook_hlt(self, uc, address, _size, _ud) -> None:
        self._hlt_seen = self._count_read()

    def _classify(self, err, hook_exc, ev, chunk_end: bool, pc: int, until_addr: int, raw: int):
        """None to keep going, else (status, reason, FaultInfo | None, handler_declined)."""
        if hook_exc is not None:
            return ("fault", "hook error", FaultInfo("hook error", None, pc, self.insn_at(pc),
                                                     exception=hook_exc), False)
        if err is not None:
            kind, access = _ERR_KIND.get(err.errno, ("emulator error", None))
            mf = self._mem_fault
            return ("fault", kind, FaultInfo(kind, mf[1] if mf else pc, pc, self.insn_at(pc), access=access,
                                             size=mf[2] if mf else None), False)
        if ev is not None:
            if ev[0] == "intr":
                _, info, handled, e = ev
                if e is not None:
                    return ("fault", "hook error", FaultInfo("hook error", info.pc, info.pc, self.insn_at(info.pc),
                                                             vector=info.vector, exception=e), False)
                if self._stop_reason:
                    return ("stopped", self._stop_reason, None, False)
                if handled:
                    return None
                kind = "interrupt" if info.software else "exception"
                return ("fault", kind, FaultInfo(kind, info.pc, info.pc, self.insn_at(info.pc), vector=info.vector,
                                                 error_code=info.error_code), self._intr_cb is not None)
            if ev[0] == "sys":
                _, name, spc, handled, e = ev
                if e is not None:
                    return ("fault", "hook error", FaultInfo("hook error", spc, spc, name, exception=e), False)
                if self._stop_reason:
                    return ("stopped", self._stop_reason, None, False)
                if handled:
                    return None
                return ("fault", "syscall", FaultInfo("syscall", spc, spc, self.insn_at(spc)),
                        self._sys_cb is not None)
            _, address, e = ev
            if pc == address:
                self._skip_at = address       # the hooked instruction runs first when we (re)start here
            if e is not None:
                return ("fault", "hook error", FaultInfo("hook error", address, address, self.insn_at(address),
                                                         exception=e), False)
            if self._stop_reason:
                return ("stopped", self._stop_reason, None, False)
            return None
        fast = self._counter is not None
        if chunk_end and fast:
            return None
        if pc == until_addr and not (self._hlt_seen is not None and self._hlt_seen == raw):
            return ("finished", "until", None, False)
        last = self._py_count[1]
        if self._read_avail(pc - 1, 1) == b"\xf4" and (fast or (last is not None and self.insn_at(last) == "hlt"
                                                                   and pc - 15 <= last < pc)):
            return ("halted", "hlt", None, False)
        if chunk_end:
            return None
        return ("fault", "unknown stop", FaultInfo("unknown stop", None, pc, self.insn_at(pc)), False)

    def _outcome(self, result, total: int, rec, names, elapsed: float, timeout: float) -> Outcome:
        status, reason, f, declined = result
        pc = self.pc
        if status == "budget":
            msg = (f"stopped after {total} instructions (budget)" if reason == "budget" else
                   f"stopped after {total} instructions: timeout after {timeout:g} s")
        elif status == "finished":
            msg = f"finished after {total} instructions at {pc:#x}"
        elif status == "halted":
            msg = f"halted by 'hlt' at {pc - 1:#x} after {total} instructions"
        elif status == "stopped":
            msg = f"stopped at {pc:#x} after {total} instructions: {reason}"
        else:
            msg = "fault: " + self._fault_text(f, declined)
        tr = rec.finish(names) if rec is not None else None
        if tr is not None and tr.truncated:   # said where the reader sees the run, not only in a flag
            tr.notice = (f"the trace recorded only the first {tr.steps} of {total} instructions "
                         f"(TraceSpec max_steps={rec.spec.max_steps})")
            msg += f"; {tr.notice}"
        return Outcome(status, total, pc, f, tr, msg.replace("\n", " "), reason, elapsed)

    def _fault_text(self, f: FaultInfo, declined: bool) -> str:
        k = f.kind
        if k in ("unmapped read", "unmapped write", "unaligned"):
            return f"{k}{' ' + f.access if k == 'unaligned' else ''} at {f.address:#x} by '{f.insn}' at {f.pc:#x}"
        if k == "unmapped fetch":
            return f"unmapped fetch at {f.address:#x}" + ("" if f.address == f.pc else f" (block at {f.pc:#x})")
        if k == "protection":
            return f"protection ({f.access}) at {f.address:#x} by '{f.insn}' at {f.pc:#x}"
        if k == "invalid instruction":
            return f"invalid instruction '{f.insn}' at {f.pc:#x}"
        why = "declined by the handler" if declined else "with no handler"
        if k == "interrupt":
            return f"interrupt {f.vector:#x} from '{f.insn}' at {f.pc:#x} {why}"
        if k == "exception":
            ec = "" if f.error_code is None else f", error code {f.error_code:#x}"
            return (f"exception {VECTOR_NAMES.get(f.vector, '?')} (vector {f.vector}{ec}) by '{f.insn}' at {f.pc:#x}"
                    f" {why}")
        if k == "syscall":
            return f"'{f.insn}' at {f.pc:#x} {why}"
        if k == "hook error":
            e = f.exception
            return f"hook raised {type(e).__name__}: {e} (at {f.pc:#x})"
        return f"{k} at {f.pc:#x} ('{f.insn}')"

    def __repr__(self) -> str:
        return f"<Machine {self.arch} pc={self.pc:#x} sp={self.sp:#x}>"
