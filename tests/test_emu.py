"""Tests for helpers.emu: table-driven scenarios (unicorn-samples style: bytes + the assembly they encode),
interrupts and address hooks that redirect, exact budgets, traces checked against a manual run, and
hypothesis runs of random bytes. Code is given as bytes constants so these tests do not depend on
helpers.asm; each constant's assembly (Intel syntax) is in the comment next to it.
"""
from __future__ import annotations

import struct
import time

import pytest
import unicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.emu import (CODE_BASE, DATA_BASE, STACK_BASE, STACK_SIZE, STATUSES, EmuError, FaultInfo, Machine,
                         Outcome, Trace, TraceSpec)

B = CODE_BASE
ACC = {"x86_64": "rax", "x86_32": "eax"}


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


# ------------------------------------------------------------------------------------------------------
# Scenario table: (name, arch, code, expected status, expected insns, fault kind, fault address, regs)
# ------------------------------------------------------------------------------------------------------
SCENARIOS = [
    # mov rax, 5 ; add rax, 7 ; imul rax, rax, 3
    ("arith", "x86_64", h("48c7c005000000 4883c007 486bc003"), "finished", 3, None, None, {"rax": 36}),
    # mov eax, 5 ; add eax, 7 ; imul eax, eax, 3
    ("arith", "x86_32", h("b805000000 83c007 6bc003"), "finished", 3, None, None, {"eax": 36}),
    # mov eax, 1 ; hlt ; mov eax, 2
    ("hlt", "x86_64", h("b801000000 f4 b802000000"), "halted", 2, None, None, {"rax": 1, "rip": B + 6}),
    ("hlt", "x86_32", h("b801000000 f4 b802000000"), "halted", 2, None, None, {"eax": 1, "eip": B + 6}),
    # mov eax, 9 ; hlt            (hlt is the last instruction: halted, not finished)
    ("hlt-last", "x86_64", h("b809000000 f4"), "halted", 2, None, None, {"rax": 9}),
    ("hlt-last", "x86_32", h("b809000000 f4"), "halted", 2, None, None, {"eax": 9}),
    # mov al, 0xf4                (ends in an f4 byte but is no hlt)
    ("f4-byte", "x86_64", h("b0f4"), "finished", 1, None, None, {"al": 0xF4}),
    # mov rax, qword ptr [0x900000]
    ("unmapped-read", "x86_64", h("488b042500009000"), "fault", 0, "unmapped read", 0x900000, {}),
    # mov eax, dword ptr [0x900000]
    ("unmapped-read", "x86_32", h("a100009000"), "fault", 0, "unmapped read", 0x900000, {}),
    # nop ; mov qword ptr [0x900000], 1
    ("unmapped-write", "x86_64", h("90 48c7042500009000 01000000"), "fault", 1, "unmapped write", 0x900000,
     {"rip": B + 1}),
    # nop ; mov dword ptr [0x900000], 1
    ("unmapped-write", "x86_32", h("90 c70500009000 01000000"), "fault", 1, "unmapped write", 0x900000,
     {"eip": B + 1}),
    # mov rax, 0x900000 ; jmp rax
    ("unmapped-fetch", "x86_64", h("48c7c000009000 ffe0"), "fault", 2, "unmapped fetch", 0x900000, {}),
    # mov eax, 0x900000 ; jmp eax
    ("unmapped-fetch", "x86_32", h("b800009000 ffe0"), "fault", 2, "unmapped fetch", 0x900000, {}),
    # nop ; ud2
    ("invalid", "x86_64", h("90 0f0b"), "fault", 1, "invalid instruction", None, {"rip": B + 1}),
    ("invalid", "x86_32", h("90 0f0b"), "fault", 1, "invalid instruction", None, {"eip": B + 1}),
    # nop ; int3                  (software interrupt: counted, PC after it)
    ("int3", "x86_64", h("90 cc"), "fault", 2, "interrupt", B + 1, {"rip": B + 2}),
    ("int3", "x86_32", h("90 cc"), "fault", 2, "interrupt", B + 1, {"eip": B + 2}),
    # nop ; int 0x80
    ("int80", "x86_64", h("90 cd80"), "fault", 2, "interrupt", B + 1, {"rip": B + 3}),
    ("int80", "x86_32", h("90 cd80"), "fault", 2, "interrupt", B + 1, {"eip": B + 3}),
    # xor ecx, ecx ; div rcx      (#DE is a fault: not counted, PC stays on the div)
    ("div0", "x86_64", h("31c9 48f7f1"), "fault", 1, "exception", B + 2, {"rip": B + 2}),
    # xor ecx, ecx ; div ecx
    ("div0", "x86_32", h("31c9 f7f1"), "fault", 1, "exception", B + 2, {"eip": B + 2}),
    # syscall
    ("syscall", "x86_64", h("0f05"), "fault", 1, "syscall", B, {}),
    # mov eax, 7 ; ret            (returns to the end of the code: finished)
    ("ret", "x86_64", h("b807000000 c3"), "finished", 2, None, None, {"rax": 7}),
    ("ret", "x86_32", h("b807000000 c3"), "finished", 2, None, None, {"eax": 7}),
    # push 0x11 ; pop rbx         (stack round trip)
    ("push-pop", "x86_64", h("6a11 5b"), "finished", 2, None, None, {"rbx": 0x11}),
    ("push-pop", "x86_32", h("6a11 5b"), "finished", 2, None, None, {"ebx": 0x11}),
]


@pytest.mark.parametrize("name,arch,code,status,insns,kind,addr,regs", SCENARIOS,
                         ids=[f"{s[1]}-{s[0]}" for s in SCENARIOS])
def test_scenarios(name, arch, code, status, insns, kind, addr, regs):
    m = Machine(arch)
    out = m.run(code)
    assert isinstance(out, Outcome)
    assert (out.status, out.insns) == (status, insns), out.message
    assert "\n" not in out.message and out.message
    if kind is None:
        assert out.fault is None
    else:
        assert out.fault.kind == kind, out.message
        if addr is not None:
            assert out.fault.address == addr, out.message
    for r, v in regs.items():
        assert m.regs[r] == v, (r, out.message)
    assert out.pc == m.pc
    # the same outcome again: the machine is reusable after every scenario
    again = m.run(code)
    assert (again.status, again.insns, again.fault and again.fault.kind) == (status, insns, kind)


def test_fault_messages_name_address_and_instruction():
    m = Machine("x86_64")
    out = m.run(h("90 48c7042500009000 01000000"))  # nop ; mov qword ptr [0x900000], 1
    assert out.message == (f"fault: unmapped write at 0x900000 by 'mov qword ptr [0x900000], 1' at {B + 1:#x}")
    assert out.fault == FaultInfo("unmapped write", 0x900000, B + 1, "mov qword ptr [0x900000], 1",
                                  access="write", size=8)
    out = m.run(h("31c9 48f7f1"))                    # xor ecx, ecx ; div rcx
    assert out.fault.vector == 0 and "#DE" in out.message and "div rcx" in out.message


def test_protection_fault():
    m = Machine("x86_64")
    m.protect(DATA_BASE, 0x1000, "r")
    out = m.run(h("c70425 00000002 01000000"))     # mov dword ptr [0x2000000], 1
    assert out.status == "fault" and out.fault.kind == "protection" and out.fault.access == "write"
    assert out.fault.address == DATA_BASE and out.insns == 0
    m.protect(DATA_BASE, 0x1000, "rw")
    assert m.run(h("c70425 00000002 01000000")).status == "finished"
    assert m.read_u32(DATA_BASE) == 1


def test_stack_is_not_executable():
    m = Machine("x86_64")
    m.write(STACK_BASE, h("90"))
    out = m.run(h("48c7c0 00000003 ffe0"))         # mov rax, 0x3000000 ; jmp rax
    assert out.fault.kind == "protection" and out.fault.access == "fetch"


# ------------------------------------------------------------------------------------------------------
# Budget and timeout
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["x86_64", "x86_32"])
@pytest.mark.parametrize("budget", [1, 2, 7, 1000, 450_001])
def test_budget_is_exact_on_jmp_self(arch, budget):
    m = Machine(arch)
    out = m.run(h("90 ebfe"), max_insns=budget)     # nop ; jmp $
    assert out.status == "budget" and out.reason == "budget"
    assert out.insns == budget
    assert out.message == f"stopped after {budget} instructions (budget)"


def test_budget_zero_runs_nothing():
    m = Machine()
    out = m.run(h("90"), max_insns=0)
    assert (out.status, out.insns, m.pc) == ("budget", 0, B)


def test_budget_counts_a_counted_loop_exactly():
    m = Machine("x86_64")
    # mov ecx, 1000 ; l: add rax, rcx ; dec rcx ; jnz l ; hlt        = 1 + 3*1000 + 1 instructions
    code = h("b9e8030000 4801c8 48ffc9 75f8 f4")
    out = m.run(code)
    assert (out.status, out.insns, m.regs["rax"]) == ("halted", 3002, 500500)
    out = m.run(code, max_insns=1500)
    assert (out.status, out.insns) == ("budget", 1500)


def test_timeout():
    m = Machine()
    t = time.perf_counter()
    out = m.run(h("ebfe"), max_insns=10**15, timeout=0.2)  # jmp $
    assert time.perf_counter() - t < 2.0
    assert out.status == "budget" and out.reason == "timeout"
    assert out.message == f"stopped after {out.insns} instructions: timeout after 0.2 s"
    assert out.insns > 1000


def test_continue_after_budget():
    m = Machine()
    # mov ecx, 100 ; l: dec ecx ; jnz l ; hlt
    code = h("b964000000 ffc9 75fc f4")
    first = m.run(code, max_insns=51)
    rest = m.run(max_insns=10_000)                 # no code: continue from the current PC
    assert first.insns + rest.insns == 1 + 200 + 1 and rest.status == "halted"


# ------------------------------------------------------------------------------------------------------
# Reuse, memory and registers
# ------------------------------------------------------------------------------------------------------
def test_reuse_after_fault_and_rewritten_code():
    m = Machine("x86_64")
    out = m.run(h("48c7c005000000 48c7042500009000 01000000"))  # mov rax, 5 ; mov qword ptr [0x900000], 1
    assert out.fault.kind == "unmapped write" and m.regs["rax"] == 5
    assert m.read(B, 7) == h("48c7c005000000")
    m.map(0x900000, 0x1000, "rw")
    out = m.run(max_insns=10)                       # retry the faulting instruction, now mapped
    assert m.read_u64(0x900000) == 1 and out.insns == 1
    # new code at the same address must run (unicorn keeps stale translations unless told)
    assert m.run(h("48c7c007000000")).status == "finished" and m.regs["rax"] == 7  # mov rax, 7
    assert m.run(h("48c7c009000000")).status == "finished" and m.regs["rax"] == 9  # mov rax, 9


def test_registers_api():
    m = Machine("x86_64")
    m.regs["rax"] = 0x1122334455667788
    assert m.regs["eax"] == 0x55667788 and m.regs["al"] == 0x88 and m.regs["ah"] == 0x77
    m.regs["r9"] = -1
    assert m.regs["r9"] == 2**64 - 1
    regs = m.registers()
    assert list(regs)[:4] == ["rax", "rbx", "rcx", "rdx"] and "rip" in regs and "rflags" in regs
    assert m.registers(["rax"]) == {"rax": 0x1122334455667788}
    m.regs["idtr"] = (0x5000, 0xFFF)
    assert m.regs["idtr"] == (0x5000, 0xFFF)
    m32 = Machine("x86_32")
    assert set(m32.registers()) == {"eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags"}
    for bad, mach in (("rax", m32), ("r8", m32), ("foo", m), ("", m)):
        with pytest.raises(EmuError, match=repr(bad)):
            mach.regs[bad]
        with pytest.raises(ValueError):
            mach.regs[bad] = 1
    with pytest.raises(EmuError, match="out of range"):
        m32.regs["eax"] = 2**32
    with pytest.raises(EmuError):
        m.regs["rax"] = "5"
    assert "rax" in m.regs and "rax" not in m32.regs


def test_memory_api():
    m = Machine("x86_64")
    m.map(0x10_0000, 10, "rw")                     # rounded out to one page
    assert (0x10_0000, 0x10_1000, "rw-") in m.regions()
    m.write_u64(0x10_0ff8, 0xDEADBEEF)
    assert m.read_u64(0x10_0ff8) == 0xDEADBEEF and m.read_u32(0x10_0ffc) == 0
    m.map(0x10_0800, 0x1000, "rw")                  # overlapping: extends, keeps the old contents
    assert m.read_u64(0x10_0ff8) == 0xDEADBEEF and m.read(0x10_1800, 1) == b"\0"
    m.unmap(0x10_1000, 0x1000)
    with pytest.raises(EmuError, match="not mapped"):
        m.read(0x10_1000, 1)
    with pytest.raises(EmuError, match="not mapped"):
        m.write(0x7000_0000, b"x")
    with pytest.raises(EmuError, match="permissions"):
        m.map(0x20_0000, 1, "rwz")
    with pytest.raises(EmuError):
        Machine("arm64")
    m32 = Machine("x86_32")
    with pytest.raises(EmuError, match="address space|out of range"):
        m32.map(0xFFFF_F000, 0x2000)


def test_bad_run_arguments():
    m = Machine()
    for kw in ({"max_insns": -1}, {"max_insns": 1.5}, {"timeout": 0}, {"timeout": "1"}, {"trace": "yes"},
               {"trace": TraceSpec(regs=("rax", "xmm0"))}):
        with pytest.raises(EmuError):
            m.run(h("90"), **kw)
    with pytest.raises(EmuError):
        m.run(12345)


# ------------------------------------------------------------------------------------------------------
# Interrupts: on_interrupt can deliver (redirect) and the run really continues at the new PC
# ------------------------------------------------------------------------------------------------------
# main:    mov eax, 1 ; int 0x80 ; mov ebx, 2 ; hlt      handler (code_base + 0x100): mov ecx, 3 ; ret
MAIN = h("b801000000 cd80 bb02000000 f4")
HANDLER = h("b903000000 c3")


@pytest.mark.parametrize("arch", ["x86_64", "x86_32"])
@pytest.mark.parametrize("vector,main", [(0x80, MAIN), (3, MAIN.replace(h("cd80"), h("90cc")))])
def test_interrupt_handler_redirects_and_returns(arch, vector, main):
    m = Machine(arch)
    m.load(HANDLER, B + 0x100)
    seen = []

    def deliver(machine, v):
        # a minimal delivery: push the return address (the PC after `int`) and enter the handler
        seen.append((v, machine.interrupt.software, machine.interrupt.next_pc))
        machine.push(machine.pc)
        machine.pc = B + 0x100
        return True
    m.on_interrupt(deliver)
    out = m.run(main)
    assert out.status == "halted", out.message
    assert [m.regs[r] for r in ("eax", "ebx", "ecx")] == [1, 2, 3]
    assert seen == [(vector, True, B + 5 + len(main) - len(MAIN) + 2)]
    assert out.insns == (6 if vector == 0x80 else 7)   # mov, [nop,] int, mov ecx, ret, mov ebx, hlt


def test_interrupt_handler_declines_and_can_be_removed():
    m = Machine()
    m.on_interrupt(lambda machine, v: False)
    out = m.run(h("cd80"))
    assert out.fault.kind == "interrupt" and out.fault.vector == 0x80 and "declined" in out.message
    m.on_interrupt(None)
    assert "with no handler" in m.run(h("cd80")).message
    with pytest.raises(EmuError):
        m.on_interrupt(42)


@pytest.mark.parametrize("arch", ["x86_64", "x86_32"])
def test_repeated_exceptions_stay_de_not_df(arch):
    # unicorn keeps QEMU's "exception in flight" after reporting #DE; without the reset the second #DE
    # turns into #DF (8) and a third into a triple-fault reset.
    m = Machine(arch)
    seen = []

    def skip_div(machine, v):
        seen.append((v, machine.interrupt.software, machine.interrupt.pc))
        machine.pc = machine.pc + 2               # skip `div ecx` (2 bytes)
        return True
    m.on_interrupt(skip_div)
    # xor ecx, ecx ; div ecx ; div ecx ; div ecx ; mov eax, 5 ; hlt
    out = m.run(h("31c9 f7f1 f7f1 f7f1 b805000000 f4"))
    assert out.status == "halted" and m.regs["eax"] == 5
    assert seen == [(0, False, B + 2), (0, False, B + 4), (0, False, B + 6)]
    assert out.insns == 3                           # the three divs faulted: not counted
    m.on_interrupt(None)
    for _ in range(3):                              # and across runs
        assert m.run(h("31c9 f7f1")).fault.vector == 0


def test_exception_error_code_for_gp():
    m = Machine("x86_64")
    # mov ax, 0x1234 ; mov ds, ax      (selector 0x1234 is beyond the GDT limit: #GP with error code 0x1234)
    out = m.run(h("66b83412 8ed8"))
    assert out.fault.kind == "exception" and out.fault.vector == 13
    assert out.fault.error_code == 0x1234 and "#GP" in out.message


def test_syscall_handler():
    m = Machine("x86_64")

    def sys(machine, name):
        machine.regs["rax"] = 42 if name == "syscall" else -1
        return True
    m.on_syscall(sys)
    out = m.run(h("b83c000000 0f05 4889c3 f4"))      # mov eax, 60 ; syscall ; mov rbx, rax ; hlt
    assert out.status == "halted" and m.regs["rbx"] == 42 and out.insns == 4


def test_hook_exception_is_an_outcome():
    m = Machine()

    def boom(machine, v):
        raise RuntimeError("handler bug")
    m.on_interrupt(boom)
    out = m.run(h("cc"))
    assert out.status == "fault" and out.fault.kind == "hook error"
    assert isinstance(out.fault.exception, RuntimeError) and "handler bug" in out.message
    m.on_interrupt(None)
    assert m.run(h("90")).status == "finished"


# ------------------------------------------------------------------------------------------------------
# hook_address
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["x86_64", "x86_32"])
def test_hook_address_redirect(arch):
    m = Machine(arch)
    m.load(h("b907000000 f4"), B + 0x100)           # at +0x100: mov ecx, 7 ; hlt
    calls = []

    def to_other(machine, addr):
        calls.append(addr)
        machine.pc = B + 0x100
    m.hook_address(B + 1, to_other)
    out = m.run(h("90 b801000000 f4"))              # nop ; mov eax, 1 (hooked) ; hlt
    assert out.status == "halted" and calls == [B + 1]
    assert m.regs["ecx"] == 7 and m.regs["eax"] == 0  # the hooked instruction never ran
    assert out.insns == 3                              # nop, mov ecx, hlt


def test_hook_address_without_redirect_runs_the_instruction_once_per_visit():
    m = Machine("x86_64")
    calls = []
    # mov ecx, 5 ; l: inc rax (hooked) ; dec ecx ; jnz l ; hlt
    code = h("b905000000 48ffc0 ffc9 75f9 f4")
    handle = m.hook_address(B + 5, lambda machine, a: calls.append(machine.regs["rax"]))
    out = m.run(code)
    assert out.status == "halted" and m.regs["rax"] == 5 and calls == [0, 1, 2, 3, 4]
    assert out.insns == 1 + 3 * 5 + 1
    m.remove_hook(handle)
    calls.clear()
    m.regs["rax"] = 0
    assert m.run(code).insns == 17 and calls == []
    with pytest.raises(EmuError):
        m.remove_hook(handle)


def test_hook_address_stop_and_resume():
    m = Machine("x86_64")
    m.hook_address(B + 5, lambda machine, a: False)
    out = m.run(h("b801000000 b802000000 f4"))      # mov eax, 1 ; mov eax, 2 (hooked) ; hlt
    assert out.status == "stopped" and out.pc == B + 5 and m.regs["rax"] == 1 and out.insns == 1
    out = m.run()                                   # resume: the hook does not stop us twice
    assert out.status == "halted" and m.regs["rax"] == 2 and out.insns == 2

    def stop_here(machine, a):
        machine.stop("breakpoint")
    m2 = Machine("x86_64")
    m2.hook_address(B, stop_here)
    out = m2.run(h("90"))
    assert out.status == "stopped" and out.reason == "breakpoint" and "breakpoint" in out.message


def test_hook_may_remap_memory():
    # like a stack-growth model: the hook moves the stack to a new region and unmaps the old one
    m = Machine("x86_64")
    new = 0x0500_0000

    def grow(machine, addr):
        machine.map(new, 0x1000, "rw")
        machine.sp = new + 0x800
        machine.unmap(STACK_BASE, STACK_SIZE)
    m.hook_address(B + 2, grow)
    out = m.run(h("6a01 6a02 58 58 f4"), fresh_stack=True)  # push 1 ; push 2 (hooked) ; pop rax ; pop rax ; hlt
    # after the move the second pop reads above the new stack's top half: still mapped, so zero
    assert out.status == "halted", out.message
    assert m.read_u64(new + 0x800 - 8) == 2 and m.regs["rax"] == 0
    with pytest.raises(EmuError):
        m.read(STACK_BASE, 1)


# ------------------------------------------------------------------------------------------------------
# Trace
# ------------------------------------------------------------------------------------------------------
TRACE_PROGRAM_64 = h(
    "48c7c005000000"   # mov rax, 5
    "4883e806"         # sub rax, 6              (borrow: CF, SF)
    "4801c0"           # add rax, rax
    "50"               # push rax
    "4889e3"           # mov rbx, rsp
    "48c7430811000000"  # mov qword ptr [rbx+8], 0x11
    "e801000000"       # call +1  (to the pop below, skipping the next byte)
    "cc"               # int3 (skipped)
    "59"               # pop rcx               (the return address)
    "5a"               # pop rdx
    "4831c0"           # xor rax, rax          (ZF, PF)
    "48ffc8"           # dec rax
    "f4"               # hlt
)
TRACE_PROGRAM_32 = h(
    "b805000000"       # mov eax, 5
    "83e806"           # sub eax, 6
    "01c0"             # add eax, eax
    "50"               # push eax
    "89e3"             # mov ebx, esp
    "c7430811000000"   # mov dword ptr [ebx+8], 0x11
    "e801000000"       # call +1
    "cc"               # int3 (skipped)
    "59"               # pop ecx
    "5a"               # pop edx
    "31c0"             # xor eax, eax
    "48"               # dec eax
    "f4"               # hlt
)


def manual_run(arch, code):
    """Reference: a per-instruction hook that reads every traced register through the unicorn API."""
    m = Machine(arch)
    names = list(Machine(arch)._a["traced"]) + [m.pc_name]
    ids = [m._table[n][0] for n in names]
    states, writes = [], []

    def on_code(uc, address, size, _):
        states.append({n: uc.reg_read(i) & ((1 << m.bits) - 1) for n, i in zip(names, ids)})

    def on_write(uc, access, address, size, value, _):
        writes.append((len(states) - 1, address, size, value & ((1 << (8 * size)) - 1)))
    m.uc.hook_add(unicorn.UC_HOOK_CODE, on_code)
    m.uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, on_write)
    out = m.run(code)
    final = {n: m.regs[n] for n in names}
    return out, states, writes, final


@pytest.mark.parametrize("arch,code", [("x86_64", TRACE_PROGRAM_64), ("x86_32", TRACE_PROGRAM_32)])
def test_trace_matches_manual_run(arch, code):
    ref_out, states, writes, final = manual_run(arch, code)
    m = Machine(arch)
    m.run(h("90"))                                  # a previous untraced run on the same machine
    out = m.run(code, trace=True)
    tr = out.trace
    assert isinstance(tr, Trace) and out.status == ref_out.status == "halted"
    assert tr.steps == len(tr) == out.insns == ref_out.insns == len(states)
    for i, ref in enumerate(states):
        assert tr.regs_at(i) == ref, f"step {i}: {tr.step(i).insn}"
    assert tr.regs_at(tr.steps) == final
    for i in range(tr.steps):
        s = tr.step(i)
        want = {k: (states[i][k], (states[i + 1] if i + 1 < len(states) else final)[k])
                for k in tr.names if states[i][k] != (states[i + 1] if i + 1 < len(states) else final)[k]}
        assert s.reg_changes == want
        assert s.next_pc == (states[i + 1] if i + 1 < len(states) else final)[m.pc_name]
    assert tr.mem_writes() == writes
    flags = m.flags_name
    assert tr.step(1).insn.startswith("sub") and tr.step(1).reg_changes[flags][1] & 0x81 == 0x81  # CF, SF
    rows = tr.table(limit=3)
    assert len(rows) == 3 and rows[0][:3] == (0, B, tr.step(0).insn)
    assert all(isinstance(v, (int, str)) for row in rows for v in row)


def test_trace_with_fault_budget_and_truncation():
    m = Machine("x86_64")
    out = m.run(h("48ffc0 48ffc0 48c7042500009000 01000000"), trace=True)  # inc rax ×2 ; mov [0x900000], 1
    assert out.status == "fault" and out.insns == out.trace.steps == 2
    out = m.run(h("48ffc0 ebfb"), trace=True, max_insns=101)              # l: inc rax ; jmp l
    assert out.status == "budget" and out.trace.steps == 101
    out = m.run(h("48ffc0 ebfb"), trace=TraceSpec(max_steps=10, regs=("rax",)), max_insns=1000)
    assert out.insns == 1000 and out.trace.steps == 10 and out.trace.truncated
    assert set(out.trace.step(0).reg_changes) == {"rax"}
    assert out.trace.regs_at(10)["rip"] == out.trace.step(9).next_pc == B
    assert out.trace.regs_at(10)["rax"] == out.trace.regs_at(0)["rax"] + 5     # 5 × (inc ; jmp)


def test_trace_records_hook_writes_and_redirects():
    m = Machine("x86_64")
    m.load(HANDLER, B + 0x100)

    def deliver(machine, v):
        machine.push(machine.pc)
        machine.pc = B + 0x100
        return True
    m.on_interrupt(deliver)
    out = m.run(MAIN, trace=True)
    tr = out.trace
    assert out.status == "halted" and tr.steps == out.insns == 6
    assert [tr.step(i).insn.split()[0] for i in range(6)] == ["mov", "int", "mov", "ret", "mov", "hlt"]
    s = tr.step(1)
    assert s.next_pc == B + 0x100 and s.mem_writes == [(m.stack_top - 24 - 8, 8, B + 7)]
    m.hook_address(B + 7, lambda machine, a: setattr(machine, "pc", B + 12))   # skip `mov ebx, 2`
    out = m.run(MAIN, trace=True)
    assert [st_.insn.split()[0] for st_ in out.trace] == ["mov", "int", "mov", "ret", "hlt"]
    assert out.insns == 5


@pytest.mark.skipif(not Machine().fast["trace"], reason="calibrated register-file access unavailable")
def test_fast_paths_are_in_use():
    assert Machine("x86_64").fast == Machine("x86_32").fast == {"counter": True, "trace": True,
                                                               "exceptions": True}


# ------------------------------------------------------------------------------------------------------
# Random bytes
# ------------------------------------------------------------------------------------------------------
MACHINES = {}


def machine(arch):
    if arch not in MACHINES:
        MACHINES[arch] = Machine(arch)
    return MACHINES[arch]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=st.binary(min_size=0, max_size=64), arch=st.sampled_from(["x86_64", "x86_32"]),
       traced=st.booleans())
def test_random_bytes_always_give_a_structured_outcome(code, arch, traced):
    m = machine(arch)
    m.reset()
    out = m.run(code, max_insns=500, timeout=1.0, trace=traced)
    assert isinstance(out, Outcome) and out.status in STATUSES
    assert 0 <= out.insns <= 500
    assert out.message and "\n" not in out.message
    assert (out.fault is not None) == (out.status == "fault")
    if traced:
        assert out.trace.steps == out.insns
    m.registers()                                   # inspectable
    # reusable: a known program still computes the right thing
    m.reset()
    again = m.run(h("b805000000 83c007"))          # mov eax, 5 ; add eax, 7
    assert again.status == "finished" and m.regs[ACC[arch]] == 12, again.message


# ------------------------------------------------------------------------------------------------------
# The slow, exact fallbacks (used if unicorn's internals cannot be located) give the same answers
# ------------------------------------------------------------------------------------------------------
@pytest.fixture
def slow_paths(monkeypatch):
    import helpers.emu as emu
    monkeypatch.setattr(emu, "_LAYOUT", emu._Layout(None, None, None, None))
    assert Machine().fast == {"counter": False, "trace": False, "exceptions": False}


@pytest.mark.parametrize("name,arch,code,status,insns,kind,addr,regs", SCENARIOS,
                         ids=[f"{s[1]}-{s[0]}" for s in SCENARIOS])
def test_scenarios_on_slow_paths(slow_paths, name, arch, code, status, insns, kind, addr, regs):
    test_scenarios(name, arch, code, status, insns, kind, addr, regs)


@pytest.mark.parametrize("arch,code", [("x86_64", TRACE_PROGRAM_64), ("x86_32", TRACE_PROGRAM_32)])
def test_trace_on_slow_paths(slow_paths, arch, code):
    test_trace_matches_manual_run(arch, code)


def test_hooks_and_budget_on_slow_paths(slow_paths):
    test_hook_address_redirect("x86_64")
    test_hook_address_without_redirect_runs_the_instruction_once_per_visit()
    test_interrupt_handler_redirects_and_returns("x86_32", 0x80, MAIN)
    test_trace_records_hook_writes_and_redirects()
    test_trace_with_fault_budget_and_truncation()
    for budget in (1, 7, 1000):
        test_budget_is_exact_on_jmp_self("x86_64", budget)


def test_hook_that_rewrites_code_ahead_takes_effect():
    # the rewritten instruction is in the same translation block as the hook: stale unless refreshed
    m = Machine("x86_64")
    m.hook_address(B, lambda machine, a: machine.write(B + 1, h("b802000000")))  # -> mov eax, 2
    out = m.run(h("90 b801000000 f4"))              # nop (hooked) ; mov eax, 1 ; hlt
    assert out.status == "halted" and m.regs["eax"] == 2 and out.insns == 3


def test_hook_setting_registers_only_needs_no_restart():
    m = Machine("x86_64")
    visits = []

    def bump(machine, a):
        visits.append(a)
        machine.regs["rbx"] = machine.regs["rbx"] + 10
    m.hook_address(B + 5, bump)
    # mov ecx, 2000 ; l: inc rax (hooked) ; dec ecx ; jnz l ; hlt
    out = m.run(h("b9d0070000 48ffc0 ffc9 75f9 f4"))
    assert out.status == "halted" and len(visits) == 2000
    assert (m.regs["rax"], m.regs["rbx"], out.insns) == (2000, 20000, 1 + 3 * 2000 + 1)


# ---------------------------------------------------------------- memory (issue 13)
def test_machine_and_engine_are_freed_without_the_cyclic_collector():
    import gc
    import weakref

    from helpers.emu import TCG_BUFFER_SIZE
    gc.disable()
    try:
        m = Machine()
        assert m.uc.ctl_get_tcg_buffer_size() == TCG_BUFFER_SIZE      # not unicorn's 1 GiB default
        m.hook_address(m.code_base, lambda mm, a: None)
        m.on_interrupt(lambda mm, v: False)
        m.run(bytes.fromhex("b801000000cd80"), trace=True)
        m.regs["rax"]
        engine, machine = weakref.ref(m.uc), weakref.ref(m)
        del m
        assert machine() is None and engine() is None
    finally:
        gc.enable()


def test_hook_errors_still_reach_the_outcome():
    m = Machine()
    m.hook_address(m.code_base, lambda mm, a: 1 / 0)
    out = m.run(bytes.fromhex("90"))
    assert out.fault.kind == "hook error" and "ZeroDivisionError" in out.message


_UNDER_LIMIT = r"""
import resource, sys
from helpers import emu
from helpers.playground import run_source
emu._probe_layout()
run_source("nop")
vm = lambda: int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
limit = vm() + (400 << 20)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
bad = ["mov %eax", "movz %eax, %ebx", ".incbin \"/etc/hostname\"", "jmp nowhere"]
runs = ["mov $0, %eax\nmov (%rax), %eax", "ud2", "1: jmp 1b", "int $3", "hlt"]
n = 0
for i in range(30):
    try:
        r = run_source(bad[i % len(bad)])
    except ValueError:
        n += 1
    r = run_source(runs[i % len(runs)])
    n += r.outcome.status != "finished"
print(n, vm() < limit)
"""


def test_failed_runs_stay_within_an_address_space_limit():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", _UNDER_LIMIT], capture_output=True, text=True, timeout=300, cwd=root,
                       env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert p.returncode == 0, p.stderr[-800:]
    assert p.stdout.split() == ["60", "True"]


def test_huge_regions_and_top_addresses_are_one_line_errors():
    with pytest.raises(EmuError, match="stack_size"):
        Machine(stack_size=4 << 30)
    with pytest.raises(EmuError, match="data_size"):
        Machine(data_size=1 << 40)
    m = Machine()
    h = m.hook_address(2**64 - 1, lambda mm, a: None)   # the last address of the 64-bit space
    m.remove_hook(h)
    with pytest.raises(EmuError):
        Machine("x86_32").hook_address(2**64 - 1, lambda mm, a: None)


def test_a_truncated_trace_says_so_in_the_outcome():
    from helpers.emu import TraceSpec
    loop = bytes.fromhex("b9e8030000" "ffc9" "75fc")          # mov $1000, %ecx; 1: dec %ecx; jnz 1b
    out = Machine().run(loop, trace=TraceSpec(max_steps=10))
    assert out.trace.truncated and out.insns == 2001
    assert "the trace recorded only the first 10 of 2001 instructions" in out.message
    assert out.trace.notice in repr(out.trace)
    full = Machine().run(loop, trace=True)
    assert not full.trace.truncated and "trace" not in full.message


def test_layout_probe_is_not_fooled_by_a_copy_of_its_pattern(monkeypatch):
    """The probe finds unicorn's register file by values it writes into the registers; a copy of those values in
    front of the real place (the probe's own bytes object can be there) must be passed over, not taken."""
    import helpers.emu as emu
    found = emu._probe_layout()
    assert None not in (found.counter_off, found.cpu_off, found.regs_delta, found.dr0_delta), found
    real = emu._pread
    starts = (struct.pack("<Q", 0x5EED_0000_1111_0000), struct.pack("<Q", 0x0D0D_5EED_0000_0001))
    decoys = []

    def pread_with_decoy(addr, n):
        blob = real(addr, n)
        for start, size in zip(starts, (128, 16)):
            i = blob.find(start)
            if n == 1 << 16 and i >= 256:       # put a copy of what the probe looks for at the region's start
                decoys.append(addr)
                blob = blob[i:i + size] + blob[size:]
        return blob
    monkeypatch.setattr(emu, "_LAYOUT", None)
    monkeypatch.setattr(emu, "_pread", pread_with_decoy)
    assert emu._probe_layout() == found and len(decoys) >= 2
