"""The start page's first experiment: assemble a few instructions, run them in the emulator, and see which
registers changed.

Core model only (no widgets): :func:`run_source` returns a :class:`Run` that a notebook prints and the
start page's widget (``helpers.widgets.asmrun``) shows. Any bad input -- garbage assembly, an unknown
architecture, code that faults or never ends -- comes back as a one-line message, never a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass

from .asm import Assembly, AsmError, assemble
from .emu import CODE_BASE, EmuError, Machine, Outcome

# The registers worth showing a newcomer, per architecture (flags last).
SHOWN = {
    "x86_64": ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
               "r12", "r13", "r14", "r15", "rip", "rflags"),
    "x86_32": ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip", "eflags"),
}
MAX_INSNS = 10_000   # a first program never needs more; a loop that does is reported, not hung on
TIMEOUT = 0.5        # seconds of emulation per run


@dataclass(frozen=True)
class Run:
    assembly: Assembly
    outcome: Outcome
    before: dict
    after: dict

    def changed(self) -> list[tuple[str, int, int]]:
        """``(register, before, after)`` for every shown register whose value changed."""
        return [(r, self.before[r], self.after[r]) for r in self.before if self.before[r] != self.after[r]]

    def report(self) -> str:
        width = 16 if self.assembly.arch == "x86_64" else 8
        lines = [str(self.assembly), "", f"outcome: {self.outcome.message}", "registers that changed:"]
        lines += [f"  {r:>6}: {b:#0{width + 2}x} -> {a:#0{width + 2}x}" for r, b, a in self.changed()]
        return "\n".join(lines)


def run_source(source: str, arch: str = "x86_64", syntax: str = "att") -> Run:
    """Assemble ``source`` and run it on a fresh machine. Raises ``ValueError`` (AsmError/EmuError) with one line."""
    if arch not in SHOWN:
        raise ValueError(f"unknown architecture {arch!r}: choose x86_64 or x86_32")
    # Assemble first: a bad program then costs no emulator engine at all.
    assembly = assemble(source, arch=arch, syntax=syntax, address=CODE_BASE)
    if not assembly.code:
        raise AsmError("nothing to run: the source has no instructions")
    machine = Machine(arch, code_base=CODE_BASE)
    end = machine.load(assembly.code)
    machine.fresh_stack(return_address=end)
    machine.pc = machine.code_base
    names = SHOWN[arch]
    before = {r: machine.regs[r] for r in names}
    outcome = machine.run(start=machine.code_base, until=end, max_insns=MAX_INSNS, timeout=TIMEOUT)
    after = {r: machine.regs[r] for r in names}
    return Run(assembly, outcome, before, after)


__all__ = ["Run", "run_source", "AsmError", "EmuError", "SHOWN"]
