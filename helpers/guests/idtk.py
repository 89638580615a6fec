"""helpers.guests.idtk -- the book's bare-metal IDT test kernel, run on QEMU, and the model beside it.

Chapter 3a and labs/idt check :func:`helpers.idt.deliver` (a model written from the Intel SDM) against a
real implementation of x86-64 interrupt delivery: QEMU's. This module

* generates the scenario part of ``idt_kernel.S`` from a list of :class:`Scenario` (each: the gates to
  install, as the bytes :meth:`helpers.idt.Gate.encode` produced; the TSS stack pointers; the event: ``INT n``
  or a local-APIC self-IPI, at CPL 0 or 3, with given RFLAGS and RSP),
* builds the kernel with the pinned ``zig cc`` (cached by content), boots all scenarios in one QEMU run
  (:func:`helpers.vm.cached_boot`), and parses the console into one :class:`Observation` per scenario,
* runs :func:`helpers.idt.deliver` on the same inputs and compares the two field by field (:func:`compare`).

The kernel is ``helpers/guests/idt_kernel.S``; its comment describes the console protocol.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .. import idt, toolchain, vm
from ..idt import Gate, TSS

HERE = Path(__file__).parent
SOURCE = HERE / "idt_kernel.S"

# Memory layout (identity-mapped). The linker's default layout puts the image at 64 KiB; the handler stubs come
# first in .text, so their address is fixed by the toolchain alone (build() checks it in the ELF).
STUB_BASE = 0x0001_10F0  # handler stub for vector v at STUB_BASE + 16 * v (zig 0.17.1 lld: image base 0x10000)
RUNNER_TOP = 0x0080_4000  # the kernel's own stack between scenarios
KSTACK_TOP = 0x0080_5000  # RSP before a CPL-0 event
USTACK_TOP = 0x0080_6000  # RSP before a CPL-3 event
RSP0_TOP = 0x0080_7000  # TSS.RSP0
IST_TOPS = (0x0080_8000, 0x0080_9000, 0x0080_A000)  # TSS.IST1-3
POISON = 0x5A5A_5A5A_5A5A_5A5A  # stack fill: a word the CPU did not write reads this
LAPIC = 0xFEE0_0000
KERNEL_CS, KERNEL_DS, USER_DS, USER_CS = idt.KERNEL_CS, idt.KERNEL_DS, idt.USER_DS, idt.USER_CS
BOOT_TIMEOUT = 120.0  # seconds; one batch takes about a second under TCG, this only guards against hangs
MAX_SCENARIOS = 2000

DEFAULT_TSS = TSS(rsp=(RSP0_TOP, 0, 0), ist=(*IST_TOPS, 0, 0, 0, 0))


def stub(vector: int) -> int:
    """The address of the kernel's handler stub for ``vector``."""
    return STUB_BASE + 16 * vector


@lru_cache(maxsize=1)
def _baseline_bytes() -> tuple[bytes, ...]:
    return tuple(g.encode("long") for _, g in sorted(baseline_idt().items()))


def baseline_idt() -> dict[int, Gate]:
    """The IDT the kernel starts every scenario from: an interrupt gate, DPL 0, selector 0x10, for each of the
    256 vectors, pointing at its stub; #DF uses IST1, as Linux's does (arch/x86/kernel/idt.c, ISTG)."""
    return {v: Gate(stub(v), KERNEL_CS, ist=1 if v == 8 else 0) for v in range(256)}


@dataclass
class Scenario:
    """One event for the kernel to raise. ``gates`` maps vector -> Gate, or 16 raw bytes, patched over
    :func:`baseline_idt`; ``event`` is ``"int"`` (``INT vector``, 2 bytes) or ``"hw"`` (a local-APIC
    self-IPI with that vector, taken before the instruction at the event address); ``rsp`` is the stack
    pointer before the event (default: KSTACK_TOP at CPL 0, USTACK_TOP at CPL 3); ``limit`` the IDTR limit
    (an entry beyond it cannot be used)."""

    name: str
    vector: int
    event: str = "int"
    cpl: int = 0
    rflags: int = 0x202
    gates: dict = field(default_factory=dict)
    tss: TSS = DEFAULT_TSS
    rsp: int | None = None
    limit: int = 256 * 16 - 1  # the IDTR limit loaded for this scenario (with lidt)
    note: str = ""

    def __post_init__(self):
        if self.event not in ("int", "hw"):
            raise vm.VMError(f"{self.name}: event must be 'int' or 'hw', got {self.event!r}")
        if self.cpl not in (0, 3):
            raise vm.VMError(f"{self.name}: the test kernel has segments for CPL 0 and 3 only, got {self.cpl!r}")
        if not (isinstance(self.vector, int) and 0 <= self.vector <= 255):
            raise vm.VMError(f"{self.name}: vector must be 0..255, got {self.vector!r}")
        if self.event == "hw" and not (0x20 <= self.vector <= 0xFE and self.rflags & idt.IF):
            raise vm.VMError(f"{self.name}: a self-IPI needs a vector 0x20..0xfe and IF=1")
        if not isinstance(self.rflags, int) or self.rflags & ~0x4_0ED7 or not self.rflags & 2:
            raise vm.VMError(f"{self.name}: rflags {self.rflags!r}: only CF PF AF ZF SF IF DF OF AC, with bit 1 set")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or not 0 <= self.limit <= 256 * 16 - 1:
            raise vm.VMError(f"{self.name}: limit must be 0..0xfff (the IDT has 256 entries), got {self.limit!r}")
        if self.cpl == 3 and self.rflags & 0x3000:
            raise vm.VMError(f"{self.name}: IOPL must stay 0")
        for v, g in self.gates.items():
            if not (isinstance(v, int) and 0 <= v <= 255):
                raise vm.VMError(f"{self.name}: gate vector {v!r} out of range")
            if not isinstance(g, Gate) and len(bytes(g)) != 16:
                raise vm.VMError(f"{self.name}: gate {v:#x} must be a Gate or 16 bytes")

    @property
    def start_rsp(self) -> int:
        return self.rsp if self.rsp is not None else (KSTACK_TOP if self.cpl == 0 else USTACK_TOP)

    def gate_bytes(self) -> dict[int, bytes]:
        """Every patched entry as the bytes that go into the IDT (Gate.encode() for Gate objects)."""
        return {v: (g.encode("long") if isinstance(g, Gate) else bytes(g)) for v, g in self.gates.items()}

    def idt_bytes(self) -> dict[int, bytes]:
        table = dict(enumerate(_baseline_bytes()))
        table.update(self.gate_bytes())
        return table

    def stack_tops(self) -> tuple[int, ...]:
        return (self.start_rsp, self.tss.rsp[0], *self.tss.ist[:3])


# --------------------------------------------------------------------------------------------------
# Generating and building the kernel
# --------------------------------------------------------------------------------------------------
def _quads(raw: bytes) -> tuple[int, int]:
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def scenarios_inc(scenarios) -> str:
    """The generated assembly: the pristine IDT (Gate.encode() bytes) and one block per scenario."""
    out = ["/* Generated by helpers/guests/idtk.py: do not edit. */", "    .text", "    .code64"]
    n = len(scenarios)
    for i, s in enumerate(scenarios):
        nxt = f"scenario_{i + 1}" if i + 1 < n else "finish"
        out += [f"/* {i}: {s.name} */", f"scenario_{i}:", f"    movl ${i}, cur_scen(%rip)",
                f"    movq ${nxt}, next_scenario(%rip)", "    call restore_idt"]
        for v, raw in sorted(s.gate_bytes().items()):
            lo, hi = _quads(raw)
            out += [f"    movabs ${lo:#x}, %rax", f"    mov %rax, idt + {16 * v}",
                    f"    movabs ${hi:#x}, %rax", f"    mov %rax, idt + {16 * v + 8}"]
        for v in sorted(s.gates):
            out += [f"    mov ${v}, %ebx", "    call show_gate"]
        tss_fields = [(4, s.tss.rsp[0]), (12, s.tss.rsp[1]), (20, s.tss.rsp[2])]
        tss_fields += [(36 + 8 * k, s.tss.ist[k]) for k in range(7)]
        for off, value in tss_fields:
            out += [f"    movabs ${value:#x}, %rax", f"    mov %rax, tss + {off}"]
        for k, top in enumerate(s.stack_tops()):
            out += [f"    movabs ${top:#x}, %rax", f"    mov %rax, stack_tops + {8 * k}"]
        out += [f"    movw ${s.limit:#x}, idt_ptr(%rip)", "    lidt idt_ptr(%rip)"]
        out += [f"    lea event_{i}(%rip), %rax", "    call begin_scenario"]
        if s.event == "hw":  # ICR low: vector, fixed delivery, destination shorthand "self" (bits 19:18 = 01)
            out += [f"    mov ${LAPIC:#x}, %edi", f"    movl ${0x40000 | s.vector:#x}, 0x300(%rdi)"]
        ss, cs = (KERNEL_DS, KERNEL_CS) if s.cpl == 0 else (USER_DS, USER_CS)
        out += [f"    pushq ${ss:#x}", f"    movabs ${s.start_rsp:#x}, %rax", "    push %rax",
                f"    pushq ${s.rflags:#x}", f"    pushq ${cs:#x}", f"    pushq $event_{i}", "    iretq",
                f"event_{i}:", f"    int ${s.vector:#x}" if s.event == "int" else "    nop",
                "    jmp no_event" if s.cpl == 0 else "    ud2"]
    out += ["    .data", "    .align 16", "idt_pristine:"]
    for raw in _baseline_bytes():
        out.append("    .byte " + ", ".join(f"{b:#04x}" for b in raw))
    return "\n".join(out) + "\n"


DEFINES = {"RUNNER_TOP": RUNNER_TOP}
MARKER = "/* @SCENARIOS@"


def kernel_source(scenarios) -> str:
    """idt_kernel.S with the generated scenarios in place of its @SCENARIOS@ line."""
    text = SOURCE.read_text()
    at = text.index(MARKER)
    end = text.index("\n", at)
    return text[:at] + scenarios_inc(scenarios) + text[end + 1:]


def build(scenarios) -> toolchain.Build:
    """The kernel ELF for ``scenarios``, built with the pinned zig cc (cached by the sources' content)."""
    scenarios = list(scenarios)
    if not scenarios:
        raise vm.VMError("build: no scenarios")
    if len(scenarios) > MAX_SCENARIOS:
        raise vm.VMError(f"build: at most {MAX_SCENARIOS} scenarios per boot, got {len(scenarios)}")
    files = {"idt_kernel.S": kernel_source(scenarios)}
    flags = ["-nostdlib", "-static", "-ffreestanding", "-Wl,--build-id=none",
             *(f"-D{k}={v:#x}" for k, v in DEFINES.items())]
    try:
        b = toolchain.cc(files, compiler="zig", target="x86-freestanding-none", flags=flags, output="exe")
    except toolchain.ToolMissing as e:
        raise vm.VMMissing(f"building the test kernel: {e}") from None
    except toolchain.ToolchainError as e:
        raise vm.VMError(f"building the test kernel: {e}") from None
    found = _symbol(b.path, "stubs")
    if found != STUB_BASE:
        raise vm.VMError(f"test kernel: the handler stubs landed at {found!r}, not {STUB_BASE:#x} (a different linker?)")
    return b


@lru_cache(maxsize=64)
def _symbol(path: Path, name: str) -> int | None:
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        symtab = ELFFile(f).get_section_by_name(".symtab")
        syms = symtab.get_symbol_by_name(name) if symtab else None
        return syms[0]["st_value"] if syms else None


def versions() -> dict:
    return {"compiler": toolchain.require("zig").version}


# --------------------------------------------------------------------------------------------------
# Running and parsing
# --------------------------------------------------------------------------------------------------
@dataclass
class Observation:
    """What QEMU did for one scenario, as the test kernel printed it."""

    index: int
    event_rip: int | None = None
    gates: dict = field(default_factory=dict)  # vector -> the 16 bytes read back from the live IDT
    vector: int | None = None  # the handler that ran; None: no handler (see ``outcome``)
    rsp: int | None = None  # RSP at handler entry
    rflags: int | None = None  # RFLAGS inside the handler (pushfq)
    words: list = field(default_factory=list)  # the stack from RSP up to the top: frame words, then padding
    outcome: str = "missing"  # "delivered", "no event", "triple fault", "missing" (the run ended before it)

    def to_json(self) -> dict:
        return {"index": self.index, "event_rip": self.event_rip, "gates": {str(k): v.hex() for k, v in self.gates.items()},
                "vector": self.vector, "rsp": self.rsp, "rflags": self.rflags, "words": self.words,
                "outcome": self.outcome}

    @classmethod
    def from_json(cls, d: dict) -> "Observation":
        return cls(d["index"], d["event_rip"], {int(k): bytes.fromhex(v) for k, v in d["gates"].items()}, d["vector"],
                   d["rsp"], d["rflags"], list(d["words"]), d["outcome"])


def parse(console: str, n: int, *, triple_fault: bool = False) -> list[Observation]:
    """The kernel's console lines -> one Observation per scenario (see idt_kernel.S for the format)."""
    obs = [Observation(i) for i in range(n)]
    started = []
    for line in console.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("S", "G", "E", "N"):
            continue
        try:
            nums = [int(p, 16) for p in parts[1:]]
        except ValueError:
            continue
        if not nums or not 0 <= nums[0] < n:
            continue
        o = obs[nums[0]]
        if parts[0] == "S" and len(nums) == 2:
            o.event_rip = nums[1]
            started.append(o.index)
        elif parts[0] == "G" and len(nums) == 18:
            o.gates[nums[1]] = bytes(nums[2:])
        elif parts[0] == "N":
            o.outcome = "no event"
        elif parts[0] == "E" and len(nums) >= 5 and o.outcome == "missing":
            o.vector, o.rsp, o.rflags = nums[1], nums[2], nums[3]
            o.words = nums[5:5 + nums[4]]
            o.outcome = "delivered"
    if triple_fault and started and obs[started[-1]].outcome == "missing":
        obs[started[-1]].outcome = "triple fault"
    return obs


@dataclass
class Batch:
    """One boot of the test kernel: the scenarios, what QEMU did for each, and the run itself."""

    scenarios: list
    observations: list
    run: vm.GuestRun

    def __iter__(self):
        return iter(zip(self.scenarios, self.observations))


def _check_batch(scenarios) -> list:
    scenarios = list(scenarios)
    for s in scenarios[:-1]:
        if model(s, 0).delivered is None:
            raise vm.VMError(f"{s.name}: a triple fault ends the boot, so it must be the last scenario")
    return scenarios


def run(scenarios, *, timeout: float = BOOT_TIMEOUT) -> Batch:
    """Build the kernel for ``scenarios`` and boot it once (cached); a triple fault may end the batch."""
    scenarios = _check_batch(scenarios)
    kernel = build(scenarios)
    spec_key = {"guest": "idt_kernel", "compiler": toolchain.require("zig").version}
    r = vm.cached_boot(spec_key, kernel=kernel.path, memory_mb=64, timeout=timeout, accel="tcg", check=False)
    return Batch(scenarios, _finish(scenarios, r), r)


def _finish(scenarios, r: vm.GuestRun) -> list:
    if r.stop not in ("debug-exit", "triple fault") or (r.stop == "debug-exit" and r.exit_code != 0):
        raise vm.VMError(f"test kernel run ended by {r.stop}; last console lines: {r.tail()}")
    obs = parse(r.console, len(scenarios), triple_fault=r.stop == "triple fault")
    missing = [o.index for o in obs if o.outcome == "missing"]
    if missing:
        raise vm.VMError(f"test kernel printed nothing for scenario {missing[0]} ({scenarios[missing[0]].name}); "
                         f"last console lines: {r.tail()}")
    if r.stop == "debug-exit" and "DONE" not in r.console:
        raise vm.VMError(f"test kernel exited without finishing; last console lines: {r.tail()}")
    return obs


# --------------------------------------------------------------------------------------------------
# The model on the same inputs, and the comparison
# --------------------------------------------------------------------------------------------------
def model(s: Scenario, event_rip: int, follows: str = "sdm") -> idt.Delivery:
    """:func:`helpers.idt.deliver` for scenario ``s`` with the event at ``event_rip`` (``follows``: see
    helpers.idt.FOLLOWS)."""
    cs, ss = (KERNEL_CS, KERNEL_DS) if s.cpl == 0 else (USER_CS, USER_DS)
    return idt.deliver(s.vector, s.idt_bytes(), cpl=s.cpl, software=s.event == "int", rip=event_rip, insn_len=2,
                       rsp=s.start_rsp, rflags=s.rflags, tss=s.tss, limit=s.limit, cs=cs, ss=ss,
                       follows=follows)


def machine_frame(d: idt.Delivery, o: Observation) -> list:
    """The words QEMU pushed, named after the model's slots (top-down, first pushed first)."""
    n = len(d.frame)
    return list(reversed(o.words[:n]))


def outcome(o: Observation) -> str:
    """'delivered', 'no event' (the event transferred no control: the instruction after it ran, which at CPL 3
    is a ud2, so #UD), or 'triple fault'."""
    return o.outcome


def compare(s: Scenario, o: Observation, follows: str = "sdm") -> list[tuple[str, object, object]]:
    """[(field, QEMU, model)] for every field where QEMU and the model disagree (empty: they agree)."""
    d = model(s, o.event_rip or 0, follows)
    want = "triple fault" if d.delivered is None else "delivered"
    if o.outcome != want:
        return [("outcome", o.outcome, want)]
    diffs = [(f"gate {v:#x} bytes", o.gates.get(v, b"").hex(), raw.hex())
             for v, raw in sorted(s.gate_bytes().items()) if o.gates.get(v) != raw]
    if d.delivered is None:
        return diffs
    for name, got, exp in (("vector", o.vector, d.delivered), ("RSP", o.rsp, d.rsp),
                           ("RFLAGS in handler", o.rflags, d.rflags), ("frame words", len(o.words) >= len(d.frame), True)):
        if got != exp:
            diffs.append((name, got, exp))
    for slot, got in zip(d.frame, machine_frame(d, o)):
        if got != slot.value:
            diffs.append((slot.name, got, slot.value))
    padding = o.words[len(d.frame):]
    if any(w != POISON for w in padding):
        diffs.append(("padding", [hex(w) for w in padding], "untouched"))
    return diffs


# --------------------------------------------------------------------------------------------------
# The scenarios of chapter 3a, and a seeded random sample
# --------------------------------------------------------------------------------------------------
V = 0x80  # the chapter's running vector


def scenarios() -> list[Scenario]:
    """The hand-picked scenarios, in the chapter's order (the triple fault last: it ends the boot)."""
    g = lambda **kw: Gate(stub(kw.pop("vector", V)), KERNEL_CS, **kw)
    not_a_gate = bytearray(g(dpl=3).encode()); not_a_gate[5] = 0x80 | (3 << 5) | 0x9  # type 9: a 64-bit TSS
    return [
        Scenario("int 0x80, CPL 0, gate DPL 0", V, cpl=0, gates={V: g(dpl=0)}),
        Scenario("int 0x80, CPL 3, gate DPL 3", V, cpl=3, gates={V: g(dpl=3)}),
        Scenario("int 0x80, CPL 3, gate DPL 0 (#GP)", V, cpl=3, gates={V: g(dpl=0)}),
        Scenario("int 0x80, CPL 0, gate DPL 3", V, cpl=0, gates={V: g(dpl=3)}),
        Scenario("gate not present (#NP)", V, cpl=3, gates={V: g(dpl=3, present=False)}),
        Scenario("type 9 is not a gate (#GP)", V, cpl=3, gates={V: bytes(not_a_gate)}),
        Scenario("interrupt gate clears IF", V, cpl=3, rflags=0x202, gates={V: g(dpl=3, kind="interrupt")}),
        Scenario("trap gate leaves IF", V, cpl=3, rflags=0x202, gates={V: g(dpl=3, kind="trap")}),
        Scenario("IST2 stack, CPL 0", V, cpl=0, gates={V: g(dpl=0, ist=2)}),
        Scenario("IST2 stack, CPL 3", V, cpl=3, gates={V: g(dpl=3, ist=2)}),
        Scenario("RSP0 not 16-byte aligned", V, cpl=3, gates={V: g(dpl=3)}, tss=TSS(rsp=(RSP0_TOP - 8, 0, 0), ist=DEFAULT_TSS.ist)),
        Scenario("CPL 0 stack not 16-byte aligned", V, cpl=0, rsp=KSTACK_TOP - 8, gates={V: g(dpl=0)}),
        Scenario("hardware interrupt, CPL 3, gate DPL 0", 0x40, event="hw", cpl=3, gates={0x40: g(vector=0x40, dpl=0)}),
        Scenario("hardware interrupt, CPL 0", 0x40, event="hw", cpl=0, gates={0x40: g(vector=0x40, dpl=0)}),
        Scenario("vector beyond the IDT limit (#GP)", V, cpl=0, gates={V: g(dpl=0)}, limit=V * 16 - 1),
        Scenario("#NP, then #NP delivering it: #DF", V, cpl=3,
                 gates={V: g(dpl=3, present=False), 11: g(vector=11, present=False)}),
        Scenario("#DF cannot be delivered either: triple fault", V, cpl=3,
                 gates={V: g(dpl=3, present=False), 11: g(vector=11, present=False), 8: g(vector=8, ist=1, present=False)}),
    ]


def random_scenarios(n: int = 240, seed: int = 3) -> list[Scenario]:
    """A seeded sample of gate x event combinations: gate kind, DPL, P, IST, selector (null, data, beyond the
    GDT limit, the TSS...), type byte; event INT n or self-IPI, at CPL 0 or 3; RFLAGS; RSP0 and the stack
    aligned or not; the IDT limit just including or just excluding the vector. No triple faults."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        vec = rng.choice([0x21, 0x40, 0x80, 0x81, 0xEE, 0xFD])
        cpl = rng.choice([0, 3])
        event = rng.choice(["int", "int", "hw"])
        rflags = 0x202 if event == "hw" else rng.choice([0x2, 0x202, 0x246, 0x2C3, 0x40A93 if cpl == 0 else 0x203])
        if event == "hw":
            rflags |= rng.choice([0, 0x1, 0x40, 0x40000 if cpl == 0 else 0])
        kind = rng.choice(["interrupt", "trap"])
        sel = rng.choice([KERNEL_CS] * 6 + [KERNEL_DS, USER_CS, 0x0, 0x8, 0x13, 0x10 | 3, 0x40, 0x48, 0x58])
        gate = Gate(stub(vec), sel, ist=rng.choice([0, 0, 0, 1, 2, 3]), kind=kind, dpl=rng.choice([0, 3, 1, 2]),
                    present=rng.random() > 0.15)
        raw = bytearray(gate.encode())
        if rng.random() < 0.08:
            raw[5] = (raw[5] & 0xF0) | rng.choice([0x0, 0x1, 0x4, 0x9, 0xC])  # not a 64-bit gate type
        gates = {vec: bytes(raw)}
        if rng.random() < 0.1:
            gates[13] = Gate(stub(13), KERNEL_CS, ist=rng.choice([0, 3]), present=rng.random() > 0.5).encode()
        rsp0 = rng.choice([RSP0_TOP, RSP0_TOP - 8, RSP0_TOP - 0x18])
        ist = (IST_TOPS[0], rng.choice([IST_TOPS[1], IST_TOPS[1] - 8]), IST_TOPS[2], 0, 0, 0, 0)
        rsp = rng.choice([None, None, (KSTACK_TOP if cpl == 0 else USTACK_TOP) - 8])
        limit = rng.choice([256 * 16 - 1] * 17 + [vec * 16 + 15, vec * 16 + 14, 0x7FF])  # just in, just out
        s = Scenario(f"random {len(out)}", vec, event=event, cpl=cpl, rflags=rflags, gates=gates,
                     tss=TSS(rsp=(rsp0, 0, 0), ist=ist), rsp=rsp, limit=limit)
        if model(s, 0).delivered is None:
            continue
        out.append(s)
    return out


def batch() -> list[Scenario]:
    """Everything chapter 3a runs, in one boot: the random sample, then the hand-picked rows (the triple
    fault last)."""
    return random_scenarios() + scenarios()


@vm.experiment("idt_kernel")
def _prepare_batch() -> dict:
    kernel = build(batch())
    return {"key": {"guest": "idt_kernel", "compiler": toolchain.require("zig").version},
            "boot": {"kernel": kernel.path, "memory_mb": 64, "timeout": BOOT_TIMEOUT, "accel": "tcg", "check": False},
            "versions": versions()}


def chapter_batch() -> Batch:
    """The chapter's one boot (live, cached, or the recording where QEMU is missing)."""
    scen = batch()
    r = vm.run_experiment("idt_kernel")
    return Batch(scen, _finish(scen, r), r)


# --------------------------------------------------------------------------------------------------
# One gate on the machine: the delivery viewer's "Run it on QEMU" and the IDT lab's check
# --------------------------------------------------------------------------------------------------
@dataclass
class Check:
    """One scenario run on QEMU, with the model's account (SDM and QEMU 7.2 flavours) beside it."""

    scenario: Scenario
    observation: Observation
    run: vm.GuestRun

    @property
    def sdm(self) -> idt.Delivery:
        return model(self.scenario, self.observation.event_rip, "sdm")

    def differences(self, follows: str = "sdm") -> list:
        return compare(self.scenario, self.observation, follows)

    def rows(self) -> list[tuple[str, str, str]]:
        """(what, QEMU, model per the SDM) for the handler, RSP, RFLAGS in the handler, and each frame word."""
        o, d = self.observation, self.sdm
        hexs = lambda v: "-" if v is None else f"{v:#x}"
        if o.outcome != "delivered":
            return [("outcome", o.outcome, "triple fault" if d.delivered is None else "delivered")]
        rows = [("handler for vector", hexs(o.vector), hexs(d.delivered)), ("RSP at entry", hexs(o.rsp), hexs(d.rsp)),
                ("RFLAGS in handler", hexs(o.rflags), hexs(d.rflags))]
        frame = list(reversed(o.words[:len(d.frame)]))
        rows += [(f"pushed {slot.name}", hexs(got), hexs(slot.value)) for slot, got in zip(d.frame, frame)]
        return rows

    def report(self) -> str:
        lines = [f"{'':22} {'QEMU':>20} {'model (SDM)':>20}"]
        for what, got, want in self.rows():
            lines.append(f"{what:22} {got:>20} {want:>20}{'  <- differs' if got != want else ''}")
        qemu_flavour = "agrees" if not self.differences("qemu-7.2") else "DISAGREES"
        lines.append(f"model with follows='qemu-7.2' {qemu_flavour} with QEMU field by field "
                     f"{self.run.provenance()}")
        return "\n".join(lines)


def check_gate(gate, vector: int = V, *, cpl: int = 3, event: str = "int", rflags: int = 0x202,
               timeout: float = BOOT_TIMEOUT) -> Check:
    """Install ``gate`` (a Gate, or 16 bytes) at ``vector`` in the test kernel, raise the event on QEMU (one
    boot, cached), and return QEMU's result with the model's. A gate whose handler offset is not a stub of
    the kernel is refused: the CPU would run whatever lies there."""
    raw = gate.encode("long") if isinstance(gate, Gate) else bytes(gate)
    if len(raw) != 16:
        raise vm.VMError(f"gate: a long-mode gate is 16 bytes, got {len(raw)}")
    layout = {f.name: f.value for f in idt.layout(raw)}
    offset = layout["offset_low"] | layout["offset_middle"] << 16 | layout["offset_high"] << 32
    if not (STUB_BASE <= offset < STUB_BASE + 16 * 256 and (offset - STUB_BASE) % 16 == 0):
        raise vm.VMError(f"gate offset {offset:#x} is not one of the test kernel's handler stubs "
                         f"(stub(v) = {STUB_BASE:#x} + 16*v, e.g. {stub(vector):#x} for vector {vector:#x})")
    s = Scenario(f"check vector {vector:#x}", vector, event=event, cpl=cpl, rflags=rflags, gates={vector: raw})
    if model(s, 0).delivered is None:  # the kernel could not report: the boot would just end
        s.note = "triple fault"
    b = run([s], timeout=timeout)
    return Check(s, b.observations[0], b.run)
