"""The IDT lab (chapter 3): encode a gate, decode one, and predict what the CPU does on delivery.

Every answer is computed by the book's own model, :mod:`helpers.idt` (Intel SDM Vol. 3A §6.11-6.14,
Vol. 2A "INT n"; Linux's ``struct gate_struct``). The checker names the byte or field that is wrong and the
rule behind it, e.g. "byte 5 should be 0x8f: you encoded an interrupt gate (type 0xE)...".

    python -m helpers.labs idt --seed 7 -c
"""
from __future__ import annotations

from helpers import idt
from helpers.idt import Gate, TSS

from .common import Feedback, Problem, Question, check_each, format_answer, rng

NAME = "idt"
TITLE = "IDT gates: encode, decode, deliver"
CHAPTER = "chapters/03a_idt_gates.ipynb"

FAULTS = ("none", "#GP", "#NP", "#DF")
FRAME_NAMES = ("SS", "RSP", "RFLAGS", "CS", "RIP", "error code")
KERNEL_TEXT = 0xFFFF_FFFF_8100_0000
LAB_TSS = TSS(rsp=(0xFFFF_C900_0001_4000, 0, 0), ist=(0xFFFF_FE00_0000_B000, 0xFFFF_FE00_0000_D000,
                                                      0xFFFF_FE00_0000_F000, 0, 0, 0, 0))


def _random_gate(r, *, allow_absent: bool) -> Gate:
    return Gate(offset=KERNEL_TEXT + r.randrange(0, 1 << 24, 16), selector=r.choice([idt.KERNEL_CS, 0x08]),
                ist=r.choice([0, 0, 1, 2, 3]), kind=r.choice(["interrupt", "trap"]), dpl=r.choice([0, 0, 3]),
                present=(r.randrange(4) != 0) if allow_absent else True)


def _idt_for(vector: int, gate: Gate) -> dict:
    """Linux's exception gates (helpers.idt.linux_idt) plus the lab's gate at ``vector``."""
    table = dict(idt.linux_idt())
    table[vector] = gate
    return table


def _scenario(r):
    vector = r.randrange(0x30, 0xF0)
    case = r.choice(["dpl", "absent", "ok", "ok", "hw"])
    gate = _random_gate(r, allow_absent=False)
    if case == "dpl":
        gate = Gate(gate.offset, idt.KERNEL_CS, gate.ist, gate.kind, 0, True)
    elif case == "absent":
        gate = Gate(gate.offset, idt.KERNEL_CS, gate.ist, gate.kind, 3, False)
    else:
        gate = Gate(gate.offset, idt.KERNEL_CS, gate.ist, gate.kind, r.choice([0, 3]), True)
    software = case != "hw"
    cpl = 3 if case in ("dpl", "hw") else r.choice([0, 3])
    rsp = (0x7FFF_FFFF_E000 if cpl == 3 else 0xFFFF_C900_0001_3F00) + r.randrange(0, 0x100, 8)
    rflags = 0x202  # IF set
    event = f"INT ${vector:#x} (2 bytes) at RIP=0x401000" if software else f"hardware interrupt {vector:#x} while RIP=0x401000"
    return vector, gate, dict(software=software, cpl=cpl, rsp=rsp, rflags=rflags, event=event)


def generate(seed: int) -> Problem:
    r = rng(seed)
    enc = _random_gate(r, allow_absent=False)
    dec = _random_gate(r, allow_absent=True)
    vector, gate, ev = _scenario(r)  # _rng_after_gates replays exactly these draws
    d = idt.deliver(vector, _idt_for(vector, gate), cpl=ev["cpl"], software=ev["software"], rip=0x401000,
                    rsp=ev["rsp"], rflags=ev["rflags"], tss=LAB_TSS)
    params = {
        "encode_handler": f"{enc.offset:#x}", "encode_selector": f"{enc.selector:#06x}", "encode_ist": enc.ist,
        "encode_kind": enc.kind, "encode_dpl": enc.dpl,
        "decode_bytes": dec.encode("long"),
        "vector": f"{vector:#x}", "gate_kind": gate.kind, "gate_dpl": gate.dpl, "gate_ist": gate.ist,
        "gate_present": gate.present, "gate_handler": f"{gate.offset:#x}",
        "event": "INT n" if ev["software"] else "hardware interrupt", "cpl": ev["cpl"], "rip": "0x401000",
        "rsp": f"{ev['rsp']:#x}", "rflags": f"{ev['rflags']:#x}",
        "rsp0": f"{LAB_TSS.rsp[0]:#x}", "ist1": f"{LAB_TSS.ist[0]:#x}", "ist2": f"{LAB_TSS.ist[1]:#x}",
        "ist3": f"{LAB_TSS.ist[2]:#x}",
        "other_gates": "IDT[8] (#DF): interrupt gate, IST 1; IDT[11] (#NP) and IDT[13] (#GP): interrupt gates, "
                       "DPL 0, IST 0, selector 0x10, as Linux installs them",
    }
    qs = [
        Question("encode", "The 16 bytes of the long-mode gate described by the encode_* parameters, "
                           "lowest address first (the gate is present).",
                 enc.encode("long"), "bytes", width=16),
        Question("decode_handler", "decode_bytes: the handler address (hex).", dec.offset, "hex"),
        Question("decode_kind", "decode_bytes: interrupt or trap gate?", dec.kind, "choice", choices=("interrupt", "trap")),
        Question("decode_dpl", "decode_bytes: the gate's DPL.", dec.dpl, "int"),
        Question("decode_ist", "decode_bytes: the IST index (0 = none).", dec.ist, "int"),
        Question("decode_present", "decode_bytes: is the gate present? (yes/no)", "yes" if dec.present else "no",
                 "choice", choices=("yes", "no")),
        Question("fault", "deliver: the event (event, vector, cpl, rsp, rflags) goes through IDT[vector], the gate "
                          "described by gate_*. Which exception does it raise first ('none' if it goes through)?",
                 d.faults[0][0] if d.faults else "none", "choice", choices=FAULTS),
        Question("vector", "deliver: which vector's handler finally runs?", d.delivered, "int"),
        Question("frame", "deliver: the names of the 8-byte slots pushed, first pushed first "
                          "(from, listed alphabetically: CS, error code, RFLAGS, RIP, RSP, SS).",
                 [s.name for s in d.frame], "list"),
        Question("if_after", "deliver: RFLAGS.IF when the handler starts (0 or 1).", int(d.if_after), "int"),
        Question("rsp", "deliver: RSP when the handler starts (hex).", d.rsp, "hex"),
    ]
    return Problem(NAME, seed, params, qs, TITLE)


# ----------------------------------------------------------------------------------------------- checking
MEANING = {
    "offset_low": "handler offset bits 15:0, little endian",
    "selector": "the code-segment selector",
    "ist": "the IST index (bits 2:0 of byte 4)",
    "zero": "bits 7:3 of byte 4, which must be zero",
    "type": "the gate type: 0xE interrupt gate (clears IF), 0xF trap gate (leaves IF)",
    "s": "bit 4 of byte 5, which is 0 for system descriptors",
    "dpl": "the DPL (bits 6:5 of byte 5)",
    "p": "the present bit (bit 7 of byte 5)",
    "offset_middle": "handler offset bits 31:16 (bytes 6-7)",
    "offset_high": "handler offset bits 63:32 (bytes 8-11)",
    "reserved": "bytes 12-15, reserved and zero",
}


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _explain_encode(q: Question, got: bytes) -> str:
    """Which field of the student's gate is wrong, and why, without the key's bytes."""
    want = q.answer
    for wf, gf in zip(idt.layout(want), idt.layout(got)):
        if wf.value == gf.value:
            continue
        where = f"byte {wf.bytes[0]}" if len(wf.bytes) == 1 else f"bytes {wf.bytes[0]}-{wf.bytes[-1]}"
        if wf.name == "type":
            kinds = idt.KIND_OF["long"]
            yours = f"you encoded {_a(kinds[gf.value])} gate (type 0x{gf.value:X})" if gf.value in kinds else \
                f"type 0x{gf.value:X} is not a 64-bit gate"
            return f"{where} (the type, bits 3:0 of byte 5) is wrong: {yours}; the problem asks for " \
                   f"{_a(kinds[wf.value])} gate"
        if wf.name in ("offset_low", "offset_middle", "offset_high"):
            swapped = int.from_bytes(got[wf.bytes[0]:wf.bytes[-1] + 1], "big") == wf.value
            hint = " (you wrote it big-endian; x86 stores it little-endian)" if swapped else ""
            return f"{where} are wrong: they hold {MEANING[wf.name]}{hint}"
        holds = "holds" if len(wf.bytes) == 1 else "hold"
        return f"{where} {holds} {MEANING[wf.name]}: {gf.value:#x} is not what the problem gives for it"
    return "the bytes differ from the gate described"  # unreachable: some field differs


def _explain(problem: Problem, q: Question, value) -> str:
    p = problem
    dec = idt.Gate.decode(p.params["decode_bytes"])
    raw = p.params["decode_bytes"]
    if q.id == "encode":
        return _explain_encode(q, value)
    if q.id == "decode_handler":
        f = {x.name: x.value for x in idt.layout(raw)}
        if value == f["offset_low"] + f["offset_middle"] + f["offset_high"] or value == f["offset_low"] + f["offset_high"]:
            return ("you added the offset fields; the CPU concatenates them: "
                    "offset_high << 32 | offset_middle << 16 | offset_low")
        if value == dec.offset & 0xFFFF_FFFF:
            return "that is only the low 32 bits: bytes 8-11 hold offset bits 63:32"
        return "rebuild the offset from bytes 0-1 (bits 15:0), 6-7 (bits 31:16) and 8-11 (bits 63:32), little endian"
    if q.id == "decode_kind":
        return (f"byte 5 is {raw[5]:#04x}: the type is its low nibble (bits 3:0); SDM Vol. 3A §3.5, Table 3-2, "
                "gives the 64-bit meaning of each type")
    if q.id == "decode_dpl":
        return f"byte 5 is {raw[5]:#04x}: the DPL is bits 6:5 of it (shift right by 5, keep two bits)"
    if q.id == "decode_ist":
        return f"byte 4 is {raw[4]:#04x}: the IST index is bits 2:0 of byte 4"
    if q.id == "decode_present":
        return f"byte 5 is {raw[5]:#04x}: the present bit is bit 7"
    return _explain_delivery(problem, q, value)


def _explain_delivery(problem: Problem, q: Question, value) -> str:
    key = problem.key()
    if q.id == "fault":
        if value == "#GP" and problem.params["event"] != "INT n":
            return "the DPL check applies only to software INT n/INT3; a hardware interrupt ignores the gate's DPL"
        return ("apply the checks in the order of SDM Vol. 2A, INT n (Operation): the IDT limit, the gate type, "
                "the DPL against CPL (software INT n only), then the present bit; the first that fails decides")
    if q.id == "vector":
        return ("when a check fails the CPU delivers the exception it raised, through that exception's own gate"
                if key["fault"] != "none" else "no check failed, so the event's own gate is used")
    if q.id == "frame":
        names = list(value)
        if names[:2] != ["SS", "RSP"]:
            return ("in 64-bit mode the CPU pushes the old stack pointer (SS, then RSP) first, even without a "
                    "privilege change (SDM Vol. 3A §6.14.2)")
        if "error code" in names and "error code" not in key["frame"]:
            return "INT n and hardware interrupts push no error code; only some exceptions (#GP, #NP, #PF, ...) do"
        if "error code" not in names and "error code" in key["frame"]:
            return "the handler that runs is an exception that pushes an error code after RIP"
        return "the slots are not in the order the CPU pushes them: see SDM Vol. 3A §6.14.2, Figure 6-9"
    if q.id == "if_after":
        return ("IF in the handler depends on the type of the gate the handler finally runs through: an interrupt "
                "gate (type 0xE) clears IF; a trap gate (type 0xF) leaves it as it was")
    if q.id == "rsp":
        return ("take the new stack (IST if the gate has one, else RSP0 on a CPL change, else the current RSP), "
                "round it down to 16 bytes, then subtract 8 per pushed slot")
    return ""


def _vector_gate(problem: Problem):
    vector, gate, _ = _scenario(_rng_after_gates(problem.seed))
    return vector, gate


def _rng_after_gates(seed: int):
    r = rng(seed)
    _random_gate(r, allow_absent=False)
    _random_gate(r, allow_absent=True)
    return r


def check(problem: Problem, answers: dict) -> list[Feedback]:
    return check_each(problem, answers, lambda q, v: _explain(problem, q, v))


def answer_key(seed: int) -> str:
    """The instructor's key for ``seed`` as plain text (the CLI's ``-c`` output)."""
    p = generate(seed)
    return "\n".join(f"{q.id}: {format_answer(q.kind, q.answer, q.width, q.item_kind)}" for q in p.questions)


# ----------------------------------------------------------------------------------------------- on QEMU
def on_qemu(problem: Problem, encoded) -> str:
    """Run the student's encoded gate on a real CPU implementation: QEMU, booting the book's test kernel
    (helpers.guests.idtk), and say attribute by attribute what the CPU made of it.

    The test kernel has its own code segment and handlers, so the offset and selector fields are replaced by
    the kernel's (selector 0x10, the stub for vector 0x80); every other bit -- IST, type, DPL, P, the zero and
    reserved bits -- is the student's. ``INT 0x80`` then runs from CPL 0 and from CPL 3: the handler's RFLAGS
    show the type (IF), its RSP the stack (IST), and whether CPL 3 gets in the DPL. One line per attribute;
    bad input or a missing QEMU is one line too."""
    from helpers import vm
    from helpers.guests import idtk
    if encoded is None:
        return "nothing to run yet: set answers['encode'] to your 16 bytes first"
    try:
        raw = idt.parse_hex(encoded) if isinstance(encoded, str) else bytes(encoded)
    except (TypeError, ValueError) as e:
        return f"cannot run that: {e}"
    if len(raw) != 16:
        return f"cannot run that: a long-mode gate is 16 bytes, got {len(raw)}"
    stub = idtk.stub(idtk.V)
    mine = bytearray(raw)
    mine[0:2], mine[2:4] = (stub & 0xFFFF).to_bytes(2, "little"), idt.KERNEL_CS.to_bytes(2, "little")
    mine[6:8], mine[8:12] = ((stub >> 16) & 0xFFFF).to_bytes(2, "little"), (stub >> 32).to_bytes(4, "little")
    runs = [idtk.Scenario(f"lab gate, INT 0x80 from CPL {cpl}", idtk.V, cpl=cpl, rflags=0x202, gates={idtk.V: bytes(mine)})
            for cpl in (0, 3)]
    try:
        batch = idtk.run(runs)
    except vm.VMError as e:  # VMMissing included: one line saying what to install
        return f"QEMU check not run: {e}"
    (_, k), (_, u) = batch
    p = problem.params
    tops = {idtk.KSTACK_TOP: 0, **{top: n + 1 for n, top in enumerate(idtk.IST_TOPS)}}
    lines = [f"QEMU ran your gate's attribute bytes {idt.hexbytes(bytes(mine[4:6]))} (and reserved bytes "
             f"{idt.hexbytes(bytes(mine[12:16]))}) at IDT[0x80]: {batch.run.qemu}"]
    if k.vector != idtk.V:
        what = {11: "#NP: the present bit is clear", 13: "#GP: the CPU does not accept it as a 64-bit gate"}
        lines.append(f"  INT 0x80 at CPL 0 raised {what.get(k.vector, f'vector {k.vector}')}; the problem asks for "
                     f"a present {p['encode_kind']} gate")
        return "\n".join(lines)
    kind = "interrupt" if not k.rflags & idt.IF else "trap"
    ist = next((n for top, n in tops.items() if 0 < top - k.rsp <= 128), None)
    dpl3 = u.vector == idtk.V
    checks = [("kind", kind, p["encode_kind"], f"IF={k.rflags >> 9 & 1} in the handler"),
              ("IST", ist, p["encode_ist"], f"handler entered with RSP {k.rsp:#x}"),
              ("DPL", "3" if dpl3 else "0-2", "3" if p["encode_dpl"] == 3 else "0-2",
               "INT 0x80 from CPL 3 " + ("got in" if dpl3 else "raised #GP"))]
    for what, got, want, how in checks:
        mark = "ok" if got == want else "DIFFERENT"
        lines.append(f"  {what:5} machine: {got!s:9} problem: {want!s:9} {mark:9} ({how})")
    return "\n".join(lines)
