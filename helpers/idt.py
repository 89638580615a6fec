"""helpers.idt -- IDT gate descriptors and interrupt delivery, as the x86 CPU defines them.

Serves chapter 3 (article §3.1): the gate workbench, the delivery viewer, the IDT lab, and the checks of
claims C32-C37. Pure Python: no emulator, no widgets, no plotting (``install`` at the bottom plugs the
model into ``helpers.emu`` and imports it only when called).

Primary sources modelled:

* Intel SDM Vol. 3A §6.11 (IDT descriptors, Figure 6-2), §6.12 (exception- and interrupt-handling
  procedures, the stack frame), §6.13 (error code), §6.14.1 (64-bit mode IDT: 16-byte gates, Figure 6-8),
  §6.14.2 (64-bit mode stack frame: SS:RSP always pushed, RSP aligned to 16 bytes), §6.14.5 (IST);
  Table 6-5 (conditions for generating a double fault).
* Intel SDM Vol. 2A "INT n/INTO/INT3/INT1 -- Call to Interrupt Procedure" (Operation, IA-32e-MODE): the
  gate DPL check applies only to software interrupts; error codes ``(vector << 3) + 2 + EXT``.
* torvalds/linux arch/x86/include/asm/desc_defs.h (``struct gate_struct``, ``struct idt_bits``,
  ``GATE_INTERRUPT = 0xE``, ``GATE_TRAP = 0xF``, ``gate_offset()``) and arch/x86/kernel/idt.c
  (``INTG``/``SYSG``/``ISTG``: e.g. #BP is a DPL-3 interrupt gate, #DF an IST gate).

Byte layout of a long-mode gate (``struct gate_struct``, little endian)::

    bytes 0-1  offset 15:0        bytes 2-3  segment selector
    byte  4    IST (bits 2:0), bits 7:3 zero
    byte  5    type (3:0), 0 (4), DPL (6:5), P (7)
    bytes 6-7  offset 31:16       bytes 8-11 offset 63:32     bytes 12-15 reserved (zero)
"""
from __future__ import annotations

import re

import dataclasses
from dataclasses import dataclass, field

MODES = ("long", "protected")
GATE_SIZE = {"long": 16, "protected": 8}  # Intel SDM Vol. 3A §6.14.1: 64-bit IDT gates are 16 bytes

# System-descriptor type codes (Intel SDM Vol. 3A Table 3-2; desc_defs.h GATE_INTERRUPT/GATE_TRAP/GATE_TASK).
TYPE_OF = {
    "long": {"interrupt": 0xE, "trap": 0xF},
    "protected": {"interrupt": 0xE, "trap": 0xF, "task": 0x5},
}
KIND_OF = {mode: {v: k for k, v in table.items()} for mode, table in TYPE_OF.items()}
# Types that are gates in protected mode but that this model does not build (16-bit gates).
UNMODELLED = {0x6: "16-bit interrupt gate", 0x7: "16-bit trap gate"}

# Exceptions that push an error code (Intel SDM Vol. 3A Table 6-1): #DF #TS #NP #SS #GP #PF #AC #CP.
ERROR_CODE_VECTORS = frozenset({8, 10, 11, 12, 13, 14, 17, 21})
MNEMONIC = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
            10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
            19: "#XM", 20: "#VE", 21: "#CP", 29: "#VC"}
VECTOR_OF = {v: k for k, v in MNEMONIC.items()}
# Double-fault classes (Intel SDM Vol. 3A Table 6-4 / 6-5).
CONTRIBUTORY = frozenset({0, 10, 11, 12, 13})
PAGE_FAULT = 14

# RFLAGS bits touched by delivery (Intel SDM Vol. 2A INT n Operation: TF, VM, RF, NT cleared; IF for
# interrupt gates only).
RFLAGS_BITS = {"CF": 0, "TF": 8, "IF": 9, "DF": 10, "NT": 14, "RF": 16, "VM": 17, "AC": 18}
TF, IF, NT, RF, VM = (1 << RFLAGS_BITS[n] for n in ("TF", "IF", "NT", "RF", "VM"))

# Linux's flat segments (torvalds/linux arch/x86/include/asm/segment.h: __KERNEL_CS = 2*8, __KERNEL_DS = 3*8,
# __USER_DS = 5*8+3, __USER_CS = 6*8+3). The model needs only each code segment's DPL.
KERNEL_CS, KERNEL_DS, USER_DS, USER_CS = 0x10, 0x18, 0x2B, 0x33
DEFAULT_GDT = {KERNEL_CS: 0, USER_CS & ~3: 3}  # selector index*8 -> DPL of a present 64-bit code segment

U16, U32, U64 = 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


class GateError(ValueError):
    """A gate field out of range, bytes of the wrong length, or bytes that are not a gate in that mode."""


# --------------------------------------------------------------------------------------------------
# Gate descriptors
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One bit field of an encoded gate: bits ``lo``..``hi`` (inclusive) of the little-endian descriptor."""

    name: str
    lo: int
    hi: int
    value: int
    note: str = ""

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    @property
    def bytes(self) -> tuple[int, ...]:
        return tuple(range(self.lo // 8, self.hi // 8 + 1))


# (name, lo, hi, note) per mode: Intel SDM Vol. 3A Figure 6-8 (64-bit) and Figure 6-2 (32-bit).
LAYOUT = {
    "long": (
        ("offset_low", 0, 15, "handler offset 15:0"),
        ("selector", 16, 31, "code segment selector"),
        ("ist", 32, 34, "interrupt stack table index (0 = none)"),
        ("zero", 35, 39, "must be 0"),
        ("type", 40, 43, "0xE interrupt gate, 0xF trap gate"),
        ("s", 44, 44, "0 = system descriptor"),
        ("dpl", 45, 46, "highest CPL allowed to use INT n"),
        ("p", 47, 47, "present"),
        ("offset_middle", 48, 63, "handler offset 31:16"),
        ("offset_high", 64, 95, "handler offset 63:32"),
        ("reserved", 96, 127, "must be 0"),
    ),
    "protected": (
        ("offset_low", 0, 15, "handler offset 15:0"),
        ("selector", 16, 31, "code segment (task gate: TSS) selector"),
        ("zero", 32, 39, "reserved, 0"),
        ("type", 40, 43, "0xE interrupt, 0xF trap, 0x5 task"),
        ("s", 44, 44, "0 = system descriptor"),
        ("dpl", 45, 46, "highest CPL allowed to use INT n"),
        ("p", 47, 47, "present"),
        ("offset_high", 48, 63, "handler offset 31:16"),
    ),
}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise GateError(f"mode: {mode!r} is not one of {', '.join(MODES)}")


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GateError(f"{name}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise GateError(f"{name}: {value:#x} is out of range {lo:#x}..{hi:#x}")
    return value


@dataclass(frozen=True)
class Gate:
    """One IDT entry. ``kind`` is ``"interrupt"`` or ``"trap"`` (and ``"task"`` in protected mode)."""

    offset: int
    selector: int
    ist: int = 0
    kind: str = "interrupt"
    dpl: int = 0
    present: bool = True

    @property
    def type(self) -> int:
        return TYPE_OF["protected"][self.kind] if self.kind in TYPE_OF["protected"] else -1

    def validate(self, mode: str = "long") -> "Gate":
        """Raise GateError naming the first field that cannot be encoded in ``mode``."""
        _check_mode(mode)
        if self.kind not in TYPE_OF[mode]:
            extra = " (task gates do not exist in 64-bit mode, Intel SDM Vol. 3A §6.14.1)" if self.kind == "task" else ""
            raise GateError(f"kind: {self.kind!r} is not a {mode}-mode gate kind {sorted(TYPE_OF[mode])}{extra}")
        _check_int("offset", self.offset, 0, U64 if mode == "long" else U32)
        _check_int("selector", self.selector, 0, U16)
        _check_int("ist", self.ist, 0, 7 if mode == "long" else 0)
        _check_int("dpl", self.dpl, 0, 3)
        if not isinstance(self.present, bool):
            raise GateError(f"present: expected True or False, got {self.present!r}")
        if self.kind == "task" and self.offset:
            raise GateError("offset: a task gate has no handler offset (those bits are reserved)")
        return self

    def encode(self, mode: str = "long") -> bytes:
        """The descriptor bytes: 16 in long mode (``struct gate_struct``), 8 in protected mode."""
        self.validate(mode)
        bits = self.ist | (TYPE_OF[mode][self.kind] << 8) | (self.dpl << 13) | (int(self.present) << 15)
        lo = (self.offset & U16) | (self.selector << 16) | (bits << 32) | (((self.offset >> 16) & U16) << 48)
        if mode == "protected":
            return lo.to_bytes(8, "little")
        return lo.to_bytes(8, "little") + (self.offset >> 32).to_bytes(4, "little") + bytes(4)

    @classmethod
    def decode(cls, raw, mode: str = "long", *, strict: bool = True) -> "Gate":
        """Bytes (or a hex string) back into a Gate. ``strict`` also rejects non-zero reserved bits."""
        _check_mode(mode)
        raw = _gate_bytes(raw)
        if len(raw) != GATE_SIZE[mode]:
            raise GateError(f"length: a {mode}-mode gate is {GATE_SIZE[mode]} bytes, got {len(raw)}")
        v = int.from_bytes(raw, "little")
        f = {name: (v >> lo) & ((1 << (hi - lo + 1)) - 1) for name, lo, hi, _ in LAYOUT[mode]}
        typ = f["type"] | (f["s"] << 4)
        if typ not in KIND_OF[mode]:
            if mode == "protected" and typ in UNMODELLED:
                raise GateError(f"type: {typ:#x} is a {UNMODELLED[typ]}, which this model does not cover")
            what = "a code/data segment (S=1)" if f["s"] else f"type {typ:#x}"
            valid = ", ".join(f"{t:#x} {k}" for t, k in sorted(KIND_OF[mode].items()))
            raise GateError(f"type: byte 5 = {raw[5]:#04x} gives {what}, not a {mode}-mode gate ({valid})")
        kind = KIND_OF[mode][typ]
        if strict:
            for name in ("zero", "reserved"):
                if f.get(name):
                    _, lo, hi, _ = next(l for l in LAYOUT[mode] if l[0] == name)
                    raise GateError(f"{name}: bits {lo}-{hi} must be zero, got {f[name]:#x}")
        if mode == "long":
            offset = f["offset_low"] | (f["offset_middle"] << 16) | (f["offset_high"] << 32)
            ist = f["ist"]
        else:
            offset = f["offset_low"] | (f["offset_high"] << 16)
            ist = 0
            if kind == "task":
                if strict and offset:
                    raise GateError(f"offset: bits of a task gate's offset fields are reserved, got {offset:#x}")
                offset = 0
        return cls(offset=offset, selector=f["selector"], ist=ist, kind=kind, dpl=f["dpl"], present=bool(f["p"]))

    def fields(self, mode: str = "long") -> list[Field]:
        """The per-field bit layout with this gate's values (for the bit-field drawing and the labs)."""
        return layout(self.encode(mode), mode)

    def describe(self, mode: str = "long") -> str:
        """One line a reader can check against the SDM."""
        if self.kind == "task":
            return f"task gate: TSS selector {self.selector:#06x}, DPL {self.dpl}, P={int(self.present)}"
        ist = f", IST {self.ist}" if mode == "long" else ""
        clears = "clears IF" if self.kind == "interrupt" else "leaves IF"
        return (f"{self.kind} gate (type {TYPE_OF[mode][self.kind]:#x}, {clears}): handler {self.selector:#06x}:"
                f"{self.offset:#x}, DPL {self.dpl}, P={int(self.present)}{ist}")


def _gate_bytes(raw) -> bytes:
    """Bytes or a hex string -> bytes; anything else is a one-line GateError (not a TypeError)."""
    if isinstance(raw, str):
        return parse_hex(raw)
    if isinstance(raw, (bytes, bytearray, memoryview)):
        return bytes(raw)
    if isinstance(raw, (list, tuple)) and len(raw) <= 64 and all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in raw):
        return bytes(raw)
    raise GateError(f"gate bytes: expected bytes or a hex string such as '00 10 10 00 00 8e ...', "
                    f"got {type(raw).__name__}")


def parse_hex(text: str) -> bytes:
    """'8e 00 ...', '0x8e,0x0,...', '\\x8e\\x00', '8e00...' -> bytes; GateError with one line on bad input.

    Commas, white space and ``\\x`` separate bytes, so a short item is a whole byte: ``0x0a, 0, 0`` is three
    bytes (as Python's ``hex()`` writes them). An item of more than two digits is a run of bytes in the order
    written (``8e00`` is 8e 00), and must have an even number of digits.
    """
    if not isinstance(text, str):
        raise GateError(f"hex: expected text, got {type(text).__name__}")
    out = bytearray()
    for item in re.split(r"[\s,]+|\\x", text):
        digits = item[2:] if item[:2] in ("0x", "0X") else item
        if not digits:
            if item:
                raise GateError(f"hex: {item!r} has no digits after 0x")
            continue
        bad = next((c for c in digits if c not in "0123456789abcdefABCDEF"), None)
        if bad is not None:
            raise GateError(f"hex: {bad!r} in {item!r} is not a hex digit")
        if len(digits) <= 2:
            out.append(int(digits, 16))
        elif len(digits) % 2:
            raise GateError(f"hex: {item!r} has an odd number of hex digits ({len(digits)}); each byte needs two")
        else:
            out += bytes.fromhex(digits)
    if not out:
        raise GateError("hex: no hex digits given")
    return bytes(out)


def layout(raw, mode: str = "long") -> list[Field]:
    """Split descriptor bytes into their fields, whether or not they form a valid gate."""
    _check_mode(mode)
    raw = _gate_bytes(raw)
    if len(raw) != GATE_SIZE[mode]:
        raise GateError(f"length: a {mode}-mode gate is {GATE_SIZE[mode]} bytes, got {len(raw)}")
    v = int.from_bytes(raw, "little")
    return [Field(name, lo, hi, (v >> lo) & ((1 << (hi - lo + 1)) - 1), note) for name, lo, hi, note in LAYOUT[mode]]


def field_diff(before, after, mode: str = "long") -> list[tuple[str, int, int]]:
    """Which fields differ between two encodings: [(field, old, new)]. Used to show what a store really hits."""
    return [(a.name, a.value, b.value) for a, b in zip(layout(before, mode), layout(after, mode)) if a.value != b.value]


def hexbytes(raw: bytes) -> str:
    return " ".join(f"{b:02x}" for b in raw)


# --------------------------------------------------------------------------------------------------
# Delivery (64-bit mode)
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TSS:
    """The 64-bit TSS stack pointers (Intel SDM Vol. 3A §7.7): RSP0-2 for CPL changes, IST1-7."""

    rsp: tuple[int, int, int] = (0xFFFF_C900_0000_4000, 0, 0)
    ist: tuple[int, ...] = (0xFFFF_FE00_0000_A000, 0xFFFF_FE00_0000_C000, 0xFFFF_FE00_0000_E000, 0, 0, 0, 0)

    def ist_stack(self, n: int) -> int:
        return self.ist[n - 1]


@dataclass(frozen=True)
class Slot:
    """One 8-byte slot of the pushed frame."""

    name: str
    address: int
    value: int


@dataclass
class Delivery:
    """What the CPU did for one event. ``faults`` lists every exception raised on the way, in order."""

    vector: int
    software: bool
    faults: list = field(default_factory=list)  # [(mnemonic, error_code)]
    delivered: int | None = None  # the vector whose handler runs; None = shutdown (triple fault)
    gate: Gate | None = None
    frame: list = field(default_factory=list)  # [Slot], top-down: first pushed (highest address) first
    rip: int | None = None
    rsp: int | None = None
    rflags: int | None = None
    cs: int | None = None
    ss: int | None = None
    cpl: int | None = None
    stack_switched: bool = False
    stack_source: str = "none"  # "IST<n>", "RSP<n>" or "none" (same privilege, current stack)
    rflags_before: int = 0
    notes: list = field(default_factory=list)

    @property
    def fault(self) -> str | None:
        """The last exception raised: None (delivered as asked), '#GP', '#NP', '#SS', '#DF', or 'triple fault'."""
        if self.delivered is None and self.faults:
            return "triple fault"
        return self.faults[-1][0] if self.faults else None

    @property
    def error_code(self) -> int | None:
        return self.faults[-1][1] if self.faults else None

    @property
    def if_before(self) -> bool:
        return bool(self.rflags_before & IF)

    @property
    def if_after(self) -> bool | None:
        return None if self.rflags is None else bool(self.rflags & IF)

    def summary(self) -> str:
        lines = []
        for name, code in self.faults:
            lines.append(f"raised {name} (error code {code:#x})")
        if self.delivered is None:
            lines.append("no handler could be entered: triple fault, the processor shuts down")
            return "\n".join(lines)
        lines.append(f"entered vector {self.delivered} at {self.cs:#06x}:{self.rip:#x} on "
                     f"{'a new stack (' + self.stack_source + ')' if self.stack_switched else 'the current stack'}, "
                     f"RSP={self.rsp:#x}, CPL {self.cpl}")
        lines.append(f"IF {int(self.if_before)} -> {int(self.if_after)}")
        return "\n".join(lines)


class _Fault(Exception):
    def __init__(self, vector: int, code: int, why: str):
        super().__init__(why)
        self.vector, self.code, self.why = vector, code, why


def canonical(addr: int) -> bool:
    """48-bit canonical form (Intel SDM Vol. 1 §3.3.7.1): bits 63:47 all equal."""
    top = addr >> 47
    return top == 0 or top == (1 << 17) - 1


def _check_event(vector, cpl, rip, rsp, rflags):
    _check_int("vector", vector, 0, 255)
    _check_int("cpl", cpl, 0, 3)
    _check_int("rip", rip, 0, U64)
    _check_int("rsp", rsp, 0, U64)
    _check_int("rflags", rflags, 0, U64)


def _gate_at(idt, vector: int):
    """IDT entry: a Gate, bytes (decoded leniently, as the CPU ignores reserved bits), or absent (zeros)."""
    entry = idt.get(vector) if hasattr(idt, "get") else None
    if entry is None:
        return None
    if isinstance(entry, Gate):
        return entry
    try:
        return Gate.decode(bytes(entry), "long", strict=False)
    except GateError:
        return None


# What the model can follow: the Intel SDM, or QEMU 7.2's TCG, which the book's test kernel measured
# (helpers.guests.idtk, chapter 3a) and which differs from the SDM in three ways:
#  1. An error code that names an IDT entry: the SDM puts the vector in the index field, bits 15:3, like a
#     selector (Vol. 3A §6.13 "Error Code": (vector << 3) | IDT | EXT); QEMU 7.2 pushes vector * 16 + 2 in
#     64-bit mode. QEMU fixed it in January 2023 for 8.0 (commit "i386: Emit correct error code for 64-bit
#     IDT entry", QEMU issue #1382); Debian 12's QEMU 7.2 does not have the fix.
#  2. EXT (error code bit 0): the SDM sets it when an external event (a hardware interrupt, or an earlier
#     exception being delivered) caused the fault; QEMU 7.2 leaves it 0 in 64-bit delivery.
#  3. RF in the pushed RFLAGS: for any fault-class exception (other than an instruction-breakpoint #DB) the
#     value pushed for RF is 1 (Vol. 3A §16.3.1.1 "Instruction-Breakpoint Exception Condition" in order
#     no. 253668-032US; the section of the same name in Vol. 3B of later editions). QEMU 7.2 pushes RF as
#     it was (0).
# The default is the SDM, the architecture's definition (and what Intel and AMD hardware documents);
# "qemu-7.2" reproduces the machine the book can run, so that the cross-check can be exact.
FOLLOWS = ("sdm", "qemu-7.2")
# Fault-class exceptions (Intel SDM Vol. 3A Table 6-1, "Type" column): #DE #BR #UD #NM #TS #NP #SS #GP #PF
# #MF #AC #XM #VE #CP. (#DB is a fault or a trap; #DF and #MC are aborts.)
FAULT_CLASS = frozenset({0, 5, 6, 7, 10, 11, 12, 13, 14, 16, 17, 19, 20, 21})


def _attempt(vector, idt, limit, ext, software, cpl, gdt, tss, rsp, follows="sdm"):
    """One pass through INT n's IA-32e-MODE checks (Intel SDM Vol. 2A). Returns (gate, new_cpl, stack) or raises."""
    qemu = follows == "qemu-7.2"
    if qemu:  # see FOLLOWS: the IDT index times 16, and no EXT bit
        ext, idt_code, sw_code = 0, (vector << 4) + 2, (vector << 4) + 2
    else:  # error code: index (bits 15:3) + IDT bit (bit 1) + EXT (bit 0), SDM Vol. 3A §6.13
        idt_code, sw_code = (vector << 3) + 2 + ext, (vector << 3) + 2
    if vector * 16 + 15 > limit:
        raise _Fault(13, idt_code, f"vector {vector}: entry ends at byte {vector * 16 + 15:#x}, beyond the IDT limit {limit:#x}")
    gate = _gate_at(idt, vector)
    if gate is None or gate.kind not in TYPE_OF["long"]:
        raise _Fault(13, idt_code, f"vector {vector}: IDT entry is not an interrupt or trap gate")
    if software and gate.dpl < cpl:
        # Only INT n / INT3 check the gate's DPL; exceptions and hardware interrupts ignore it.
        raise _Fault(13, sw_code, f"vector {vector}: software INT from CPL {cpl} through a DPL {gate.dpl} gate")
    if not gate.present:
        raise _Fault(11, idt_code, f"vector {vector}: gate not present (P=0)")
    sel = gate.selector
    if sel & ~3 == 0:
        raise _Fault(13, ext, f"vector {vector}: gate's code-segment selector is null")
    if (sel & ~7) not in gdt:
        raise _Fault(13, (sel & ~3) + ext, f"vector {vector}: selector {sel:#x} names no code segment")
    code_dpl = gdt[sel & ~7]
    if code_dpl > cpl:
        raise _Fault(13, (sel & ~3) + ext, f"vector {vector}: target code DPL {code_dpl} > CPL {cpl}")
    if not canonical(gate.offset):
        raise _Fault(13, ext, f"vector {vector}: handler offset {gate.offset:#x} is not canonical")
    if gate.ist:
        new_rsp, source = tss.ist_stack(gate.ist), f"IST{gate.ist}"
    elif code_dpl < cpl:
        new_rsp, source = tss.rsp[code_dpl], f"RSP{code_dpl}"
    else:
        new_rsp, source = rsp, "none"
    if not canonical(new_rsp):
        raise _Fault(12, ext, f"vector {vector}: new stack {new_rsp:#x} is not canonical")
    return gate, code_dpl, new_rsp, source


def _double_fault_class(first: int, second: int) -> str:
    """Intel SDM Vol. 3A Table 6-5: 'double' if the pair makes a #DF, else 'serial'."""
    if first == PAGE_FAULT and (second in CONTRIBUTORY or second == PAGE_FAULT):
        return "double"
    if first in CONTRIBUTORY and second in CONTRIBUTORY:
        return "double"
    return "serial"


def deliver(vector: int, idt, *, cpl: int = 0, software: bool = True, rip: int, rsp: int, rflags: int = 0x202,
            tss: TSS | None = None, limit: int = 256 * 16 - 1, error_code: int | None = None, insn_len: int = 2,
            cs: int | None = None, ss: int | None = None, gdt: dict | None = None, follows: str = "sdm") -> Delivery:
    """Model what an x86-64 CPU does for ``vector`` (Intel SDM Vol. 2A "INT n", Vol. 3A §6.12-6.14).

    ``idt`` maps vector -> Gate (or 16 raw bytes); a missing vector reads as an all-zero entry.
    ``software=True`` is ``INT n``/``INT3`` at address ``rip`` (``insn_len`` bytes long, so it returns to
    ``rip + insn_len``); ``software=False`` is an exception or hardware interrupt that resumes at ``rip``
    (exceptions in ERROR_CODE_VECTORS push ``error_code``, default 0). ``tss`` supplies RSP0-2 and IST1-7.
    If a check fails, the resulting exception is delivered in turn (and a contributory pair becomes #DF;
    a fault while delivering #DF is a triple fault), as the CPU does.
    ``follows`` is ``"sdm"`` (the default) or ``"qemu-7.2"``: see FOLLOWS for the three differences.
    """
    if follows not in FOLLOWS:
        raise GateError(f"follows: {follows!r} is not one of {', '.join(FOLLOWS)}")
    _check_event(vector, cpl, rip, rsp, rflags)
    _check_int("limit", limit, 0, U16)
    if error_code is not None:
        _check_int("error_code", error_code, 0, U32)
    tss = tss or TSS()
    gdt = DEFAULT_GDT if gdt is None else gdt
    cs = (KERNEL_CS if cpl == 0 else USER_CS) if cs is None else cs
    ss = (KERNEL_DS if cpl == 0 else USER_DS) if ss is None else ss
    result = Delivery(vector=vector, software=software, rflags_before=rflags)

    event, is_sw, code, ret_rip = vector, software, error_code, rip + insn_len if software else rip
    while True:
        try:
            gate, new_cpl, new_rsp, source = _attempt(event, idt, limit, 0 if is_sw else 1, is_sw, cpl, gdt, tss, rsp,
                                                      follows)
            break
        except _Fault as f:
            result.notes.append(f.why)
            prev = event if not is_sw else None
            result.faults.append((MNEMONIC[f.vector], f.code))
            if prev == 8:  # a fault while delivering #DF: shutdown (Intel SDM Vol. 3A §6.15, interrupt 8)
                result.notes.append("fault during #DF delivery: triple fault")
                return result
            if prev is not None and _double_fault_class(prev, f.vector) == "double":
                result.faults.append(("#DF", 0))
                event, code = 8, 0
                result.notes.append(f"{MNEMONIC.get(prev, prev)} then {MNEMONIC[f.vector]}: double fault (SDM Table 6-5)")
            else:
                event, code = f.vector, f.code
            # A fault is reported at the faulting instruction: the saved RIP is the INT itself.
            is_sw, ret_rip = False, rip

    pushes_code = (not is_sw) and event in ERROR_CODE_VECTORS
    aligned = new_rsp & ~0xF  # 64-bit mode aligns RSP to 16 bytes before pushing (SDM Vol. 3A §6.14.2)
    pushed_flags = rflags & ~RF if is_sw else rflags  # INT n clears RF at its start: it pushes RF=0
    if result.faults and event in FAULT_CLASS and follows == "sdm":
        pushed_flags |= RF  # a fault pushes RF=1 (SDM §16.3.1.1, see FOLLOWS); QEMU 7.2 does not
    values = [("SS", ss), ("RSP", rsp), ("RFLAGS", pushed_flags), ("CS", cs), ("RIP", ret_rip)]
    if pushes_code:
        values.append(("error code", code or 0))
    frame, top = [], aligned
    if aligned < 8 * len(values):  # RSP wraps around 0 into the top of the address space, as the CPU's does
        result.notes.append(f"the new stack {new_rsp:#x} wraps around address 0 (a TSS stack pointer left 0?); "
                            "this model has no paging: a real CPU page-faults here unless that memory is mapped")
    for name, value in values:
        top = (top - 8) & U64
        frame.append(Slot(name, top, value))
    new_flags = rflags & ~(TF | NT | RF | VM)
    if gate.kind == "interrupt":
        new_flags &= ~IF
    result.delivered, result.gate, result.frame = event, gate, frame
    result.rip, result.rsp, result.rflags = gate.offset, top, new_flags
    result.cs, result.cpl = (gate.selector & ~3) | new_cpl, new_cpl
    # On a CPL change, SS becomes a null selector with RPL = new CPL (SDM Vol. 3A §6.14.2); else unchanged.
    result.ss = new_cpl if new_cpl != cpl else ss
    result.stack_switched, result.stack_source = source != "none", source
    return result


IA32_SYSCALL_VECTOR = 0x80  # torvalds/linux arch/x86/include/asm/irq_vectors.h


def linux_idt(ia32_emulation: bool = True, amd_mem_encrypt: bool = True) -> dict[int, Gate]:
    """A few gates as Linux 64-bit installs them (torvalds/linux arch/x86/kernel/idt.c: def_idts, then
    idt_setup_ist_traps): INTG = interrupt gate DPL 0, SYSG = interrupt gate DPL 3, ISTG = IST index + 1.
    With CONFIG_IA32_EMULATION (Debian's kernel has it) ``SYSG(IA32_SYSCALL_VECTOR, ...)`` puts a DPL-3 gate at
    0x80, so ``int $0x80`` from user space enters the kernel; with CONFIG_AMD_MEM_ENCRYPT #VC (vector 29) gets
    an IST gate (``ISTG(X86_TRAP_VC, ..., IST_INDEX_VC)``). Handler offsets are placeholders in the kernel text
    range; the attributes are Linux's."""
    base = 0xFFFF_FFFF_8160_0000
    intg = lambda v: Gate(base + 0x40 * v, KERNEL_CS, 0, "interrupt", 0)
    sysg = lambda v: Gate(base + 0x40 * v, KERNEL_CS, 0, "interrupt", 3)
    istg = lambda v, idx: Gate(base + 0x40 * v, KERNEL_CS, idx + 1, "interrupt", 0)
    # IST_INDEX_DF = 0, IST_INDEX_NMI = 1, IST_INDEX_DB = 2, IST_INDEX_MCE = 3, IST_INDEX_VC = 4 (asm/page_64_types.h)
    table = {0: intg(0), 1: istg(1, 2), 2: istg(2, 1), 3: sysg(3), 4: sysg(4), 6: intg(6),
             8: istg(8, 0), 11: intg(11), 12: intg(12), 13: intg(13), 14: intg(14), 18: istg(18, 3)}
    if amd_mem_encrypt:
        table[29] = istg(29, 4)
    if ia32_emulation:
        table[IA32_SYSCALL_VECTOR] = sysg(IA32_SYSCALL_VECTOR)
    return dict(sorted(table.items()))


# --------------------------------------------------------------------------------------------------
# The emulator: unicorn reports `int n` to a hook and does nothing else; this plugs `deliver` in.
# --------------------------------------------------------------------------------------------------
def read_idt(read, base: int, limit: int) -> dict[int, bytes]:
    """Every 16-byte entry that lies within ``limit``, read with ``read(address, size)``."""
    return {v: bytes(read(base + 16 * v, 16)) for v in range(min(256, (limit + 1) // 16))}


# Layout of the emulated machine (unicorn-samples style: named addresses, all below 2 GiB so that a
# sign-extended 32-bit immediate reaches them). The program runs at helpers.emu.CODE_BASE.
GDT_BASE = 0x0200_0000  # helpers.emu's data region
IDT_BASE = 0x0200_1000  # 256 * 16 bytes
HANDLER_PAGE = 0x0104_0000
DEMO_HANDLER = HANDLER_PAGE  # the gate under test points here
FAULT_HANDLER = {13: HANDLER_PAGE + 0x100, 11: HANDLER_PAGE + 0x200, 8: HANDLER_PAGE + 0x300}
KSTACK_BASE, IST_BASE = 0x0400_0000, 0x0410_0000
# RSP0 deliberately not 16-byte aligned, to show the CPU's alignment (SDM Vol. 3A §6.14.2).
DEMO_TSS = TSS(rsp=(KSTACK_BASE + 0x3FF8, 0, 0),
               ist=(IST_BASE + 0x2000, IST_BASE + 0x4000, IST_BASE + 0x6000, 0, 0, 0, 0))
USER_RSP = 0x0300_8000  # inside helpers.emu's stack region


def _gdt_bytes() -> bytes:
    """Linux-like flat GDT: 0x10 kernel code (L=1), 0x18 kernel data, 0x28 user data, 0x30 user code."""
    def seg(access: int, flags: int) -> bytes:  # limit 0xFFFFF, base 0 (Intel SDM Vol. 3A §3.4.5)
        return bytes([0xFF, 0xFF, 0, 0, 0, access, (flags << 4) | 0xF, 0])
    return bytes(16) + seg(0x9A, 0xA) + seg(0x92, 0xC) + bytes(8) + seg(0xF2, 0xC) + seg(0xFA, 0xA)


def _handler_source(vector_mark: int, error_code: bool, resume: int | None, halt: bool = False) -> str:
    # r12 = which handler ran, r13 = RFLAGS as the handler sees them, r14 = RSP at entry, r15 = error code
    lines = ["pushfq", "popq %r13", "movq %rsp, %r14", f"movq ${vector_mark}, %r12"]
    if halt:
        return "\n".join(lines + ["hlt"])
    if error_code:
        lines.append("popq %r15")
    if resume is not None:  # like a kernel fixup: continue after the instruction that faulted
        lines.append(f"movq ${resume:#x}, (%rsp)")
    return "\n".join(lines + ["iretq"])


@dataclass
class IntRun:
    """An ``int n`` (or a hardware interrupt) run in the emulator, with the model's account beside it."""

    delivery: Delivery
    emulated: bool
    outcome: object = None  # helpers.emu.Outcome
    idtr: tuple | None = None  # (base, limit) that the program's lidt loaded
    handler: int | None = None  # which handler ran: the vector, or None
    handler_rflags: int | None = None  # RFLAGS read by pushfq inside the handler
    handler_rsp: int | None = None
    error_code: int | None = None  # what the fault handler popped
    frame_in_memory: list = field(default_factory=list)  # (name, address, value) read back from memory
    back: dict = field(default_factory=dict)  # registers after iretq returned: cpl, rflags, rip_ok
    cpl: int = 3

    def report(self) -> str:
        d = self.delivery
        lines = []
        if self.emulated:
            event = (f"executes int {d.vector:#x}" if d.software
                     else f"is interrupted by a hardware interrupt on vector {d.vector:#x}")
            lines.append(f"lidt loaded IDTR base={self.idtr[0]:#x} limit={self.idtr[1]:#x}; CPL {self.cpl} {event}")
        lines.append(d.summary())
        if self.emulated:
            if self.handler is not None:
                lines.append(f"emulator: handler for vector {self.handler} ran; pushfq there read RFLAGS="
                             f"{self.handler_rflags:#x} (IF={self.handler_rflags >> 9 & 1}), RSP={self.handler_rsp:#x}")
            if self.error_code is not None:
                lines.append(f"emulator: the handler popped error code {self.error_code:#x}")
            if self.back:
                lines.append(f"emulator: iretq returned to CPL {self.back['cpl']} at the next instruction: "
                             f"{self.back['rip_ok']}; RFLAGS={self.back['rflags']:#x} (IF={self.back['rflags'] >> 9 & 1})")
            lines.append(f"emulator outcome: {self.outcome.message}")
        return "\n".join(lines)


def _program(vector: int, cpl: int, software: bool, rflags: int) -> str:
    enter = ([f"pushq ${USER_DS:#x}", f"pushq ${USER_RSP:#x}", f"pushq ${rflags:#x}", f"pushq ${USER_CS:#x}",
              "pushq $user", "iretq"] if cpl == 3 else [f"pushq ${rflags:#x}", "popfq"])
    event = f"int ${vector:#x}" if software else "nop"  # a hardware interrupt arrives before this nop
    return "\n".join([f"lidt {GDT_BASE + 0x3000:#x}", *enter, "user:", "movq $0x1111, %rbx", "event:", event,
                      "after:", "movq $0x600d, %rbx", "nop"]) + "\n"


def run_int(gate: Gate, vector: int = 0x80, *, cpl: int = 3, software: bool = True, rflags: int = 0x202,
            emulate: bool = True, max_insns: int = 10_000, timeout: float = 1.0) -> IntRun:
    """Install ``gate`` at ``vector`` (plus #GP/#NP/#DF gates, as Linux has them) in an emulated x86-64
    machine, load the IDT with a real ``lidt``, drop to ``cpl`` with a real ``iretq``, and raise the event:
    ``int $vector`` (software) or a hardware interrupt before a ``nop``. unicorn only reports the event;
    :func:`deliver` decides what the CPU does, the callback writes the frame into emulated memory and moves
    RIP/RSP/RFLAGS/CS/SS, and the handler then really runs in unicorn and returns with a real ``iretq``.
    """
    if not isinstance(gate, Gate):
        raise GateError(f"gate: expected a Gate, got {type(gate).__name__}")
    _check_int("vector", vector, 32, 255)
    _check_int("cpl", cpl, 0, 3)
    if cpl not in (0, 3):
        raise GateError("cpl: the demo machine has segments for CPL 0 and CPL 3 only")
    if not isinstance(software, bool):
        raise GateError(f"software: expected True or False, got {type(software).__name__}")
    _check_int("rflags", rflags, 0, (1 << 64) - 1)
    if rflags >> 22:  # Intel SDM Vol. 1 §3.4.3, Figure 3-8: bits 22-63 of RFLAGS are reserved (zero)
        raise GateError(f"rflags: {rflags:#x} sets reserved bits (22-63 must be zero; e.g. 0x202 is IF set)")
    gate.validate("long")
    table = {vector: gate, 13: Gate(FAULT_HANDLER[13], KERNEL_CS), 11: Gate(FAULT_HANDLER[11], KERNEL_CS),
             8: Gate(FAULT_HANDLER[8], KERNEL_CS, ist=1)}
    from helpers.asm import assemble
    from helpers.emu import CODE_BASE

    prog = assemble(_program(vector, cpl, software, rflags), address=CODE_BASE)
    labels = {name: CODE_BASE + off for name, off in _label_offsets(prog, ("event", "after")).items()}
    if not emulate:
        d = deliver(vector, table, cpl=cpl, software=software, rip=labels["event"],
                    rsp=USER_RSP if cpl == 3 else 0, rflags=rflags, tss=DEMO_TSS)
        return IntRun(d, False, cpl=cpl)
    from helpers.emu import Machine

    m = Machine("x86_64")
    m.map(KSTACK_BASE, 0x4000, "rw")
    m.map(IST_BASE, 0x8000, "rw")
    m.map(HANDLER_PAGE, 0x1000, "rwx")
    m.write(GDT_BASE, _gdt_bytes())
    for v, g in table.items():
        m.write(IDT_BASE + 16 * v, g.encode("long"))
    m.write(GDT_BASE + 0x3000, (256 * 16 - 1).to_bytes(2, "little") + IDT_BASE.to_bytes(8, "little"))  # IDTR image
    handlers = {gate.offset: _handler_source(vector, False, None),
                FAULT_HANDLER[13]: _handler_source(13, True, labels["after"]),
                FAULT_HANDLER[11]: _handler_source(11, True, labels["after"]),
                FAULT_HANDLER[8]: _handler_source(8, True, None, halt=True)}
    for addr, src in handlers.items():
        if HANDLER_PAGE <= addr < HANDLER_PAGE + 0x1000:
            m.write(addr, assemble(src, address=addr).code)
    m.regs["gdtr"] = (GDT_BASE, len(_gdt_bytes()) - 1)
    m.regs["cs"], m.regs["ss"] = KERNEL_CS, KERNEL_DS
    # unicorn has no way to raise the privilege level: writing CS/SS changes only the selectors, and
    # the CPL stays what the last real segment load made it. So a CPU context captured now, at CPL 0,
    # is restored when delivery enters ring 0 from ring 3, and the registers are loaded on top of it.
    kernel_context = m.uc.context_save()
    run = IntRun(None, True, cpl=cpl)

    def enter(machine, vec, sw, pc, next_pc, code):
        base, limit = _idtr(machine)
        entries = read_idt(machine.read, base, limit)
        cs, ss = machine.regs["cs"], machine.regs["ss"]
        d = deliver(vec, entries, cpl=cs & 3, software=sw, rip=pc, insn_len=next_pc - pc, rsp=machine.regs["rsp"],
                    rflags=machine.regs["rflags"], tss=DEMO_TSS, limit=limit, cs=cs, ss=ss, error_code=code)
        run.delivery, run.idtr = d, (base, limit)
        if d.delivered is None:
            machine.stop("triple fault: the CPU would shut down")
            return True
        for slot in d.frame:
            machine.write_u64(slot.address, slot.value)
        if d.cpl != cs & 3:
            gprs = {name: machine.regs[name] for name in _GPRS}
            machine.uc.context_restore(kernel_context)
            machine.regs.update(gprs)
            machine.regs["idtr"] = (base, limit)
        machine.regs["cs"], machine.regs["ss"] = d.cs, d.ss
        machine.regs["rsp"], machine.regs["rflags"], machine.regs["rip"] = d.rsp, d.rflags, d.rip
        return True

    def on_int(machine, vec):
        info = machine.interrupt
        return enter(machine, vec, info.software, info.pc, info.next_pc, info.error_code)

    fired = []

    def on_hw(machine, address):
        if not fired:
            fired.append(address)
            enter(machine, vector, False, address, address, None)
        return True

    seen = {}

    def at_handler(machine, address):  # the frame exactly as the handler finds it on its stack
        d = run.delivery
        if d is not None and d.delivered is not None and "frame" not in seen:
            rsp = machine.regs["rsp"]
            seen["frame"] = [(s.name, rsp + 8 * (len(d.frame) - 1 - i), machine.read_u64(rsp + 8 * (len(d.frame) - 1 - i)))
                             for i, s in enumerate(d.frame)]
        return True

    for addr in {gate.offset, *FAULT_HANDLER.values()}:
        if HANDLER_PAGE <= addr < HANDLER_PAGE + 0x1000:
            m.hook_address(addr, at_handler)
    m.on_interrupt(on_int)
    if not software:
        m.hook_address(labels["event"], on_hw)
    run.outcome = m.run(prog.code, max_insns=max_insns, timeout=timeout)
    r = m.regs
    if run.delivery is None:  # the event never happened (cannot occur unless the program changed)
        raise GateError("run_int: the emulated program raised no event")
    d = run.delivery
    if d.delivered is not None:
        run.handler = r["r12"] if r["r12"] in (vector, 8, 11, 13) else None
        run.handler_rflags, run.handler_rsp = r["r13"], r["r14"]
        run.error_code = r["r15"] if d.frame and d.frame[-1].name == "error code" else None
        run.frame_in_memory = seen.get("frame", [])
        if run.outcome.status == "finished":
            run.back = {"cpl": r["cs"] & 3, "rflags": r["rflags"], "rip_ok": r["rbx"] == 0x600D}
    return run


_GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def _idtr(machine) -> tuple[int, int]:
    value = machine.regs["idtr"]
    # helpers.emu gives (base, limit); unicorn's raw form is (selector, base, limit, flags)
    return (value[1], value[2]) if len(value) == 4 else (value[0], value[1])


def _label_offsets(prog, names) -> dict:
    """Offsets of the ``event`` and ``after`` labels, found from the listing's marker instructions."""
    lines = prog.listing
    mark = next(i for i, l in enumerate(lines) if "0x1111" in l.text)
    after = next(l for l in lines if "0x600d" in l.text)
    return {"event": lines[mark + 1].address - prog.address, "after": after.address - prog.address}


@dataclass
class StoreResult:
    """What a store into an IDT entry in emulated memory really changed."""

    source: str
    before: bytes
    after: bytes
    changed: list  # [(field, old, new)]
    gate: Gate | None  # the entry decoded after the store, or None
    error: str | None  # why it no longer decodes as a gate

    def report(self) -> str:
        lines = [f"before: {hexbytes(self.before)}", f"after:  {hexbytes(self.after)}"]
        lines += [f"  {name:14} {old:#x} -> {new:#x}" for name, old, new in self.changed]
        lines.append(f"decodes as: {self.gate.describe()}" if self.gate else f"no longer a gate: {self.error}")
        return "\n".join(lines)


# The article's §3.1 store, rewritten in our own AT&T code: point RAX at IDT entry 0, store a handler
# address as a quadword, then store the word 0x8e00 at offset 2.
ARTICLE_STORE = f"""movq ${IDT_BASE:#x}, %rax
movq ${DEMO_HANDLER:#x}, (%rax)
movw $0x8e00, 2(%rax)
"""


def store_into_gate(source: str, before: Gate | bytes) -> StoreResult:
    """Put ``before`` at IDT entry 0 in emulated memory, run ``source`` (AT&T), and decode the entry."""
    from helpers.asm import assemble
    from helpers.emu import CODE_BASE, Machine

    raw = before.encode("long") if isinstance(before, Gate) else _gate_bytes(before)
    if len(raw) != GATE_SIZE["long"]:
        raise GateError(f"length: a long-mode gate is {GATE_SIZE['long']} bytes, got {len(raw)}")
    code = assemble(source, address=CODE_BASE).code      # before the machine: bad source costs no engine
    m = Machine("x86_64")
    m.write(IDT_BASE, raw)
    out = m.run(code, max_insns=1000, timeout=1.0)
    if out.status != "finished":
        raise GateError(f"store program did not finish: {out.message}")
    after = m.read(IDT_BASE, 16)
    try:
        gate, error = Gate.decode(after, strict=False), None
    except GateError as e:
        gate, error = None, str(e)
    return StoreResult(source, raw, after, field_diff(raw, after), gate, error)
