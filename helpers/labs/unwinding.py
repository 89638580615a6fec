"""The unwinding lab (chapter 4a): from a stack dump and CFI rows, recover the call chain.

A seed makes a stopped x86-64 thread: 3-5 nested calls, each function either keeping a frame pointer
(``push %rbp; mov %rsp,%rbp``: CFA = rbp+16) or not (CFA = rsp+N), each saving some callee-saved registers.
The student gets the registers at the stop, the CFI row each function has at the relevant pc, and the
stack words. The key is computed by the chapter's own unwinder, :func:`helpers.unwind.unwind_cfi`, over
the same data (DWARF 5 §6.4; System V AMD64 psABI §3.2.2 and §3.6.2), so lab and book cannot disagree.

    python -m helpers.labs unwinding --seed 7 -c
"""
from __future__ import annotations

from helpers.unwind import CfiRow, CfiTable, Fde, unwind_cfi, unwind_fp

from .common import Feedback, Problem, Question, check_each, format_answer, rng

NAME = "unwinding"
TITLE = "Unwind a stack with CFI rows"
CHAPTER = "chapters/04a_stack_frames_cfi.ipynb"

TEXT_BASE = 0x401000
STACK_TOP = 0x7FFD_F000
NAMES = ("main", "run", "dispatch", "parse", "lookup", "hash_key", "emit", "flush", "walk", "visit")
CALLEE_SAVED = ("rbx", "r12", "r13", "r14", "r15")
FP_CHOICES = ("same", "different")


def _build(seed: int) -> dict:
    """The whole scenario: functions, their CFI, the stack memory and the registers at the stop."""
    r = rng(seed)
    depth = r.randint(3, 5)
    names = ["main"] + r.sample(list(NAMES[1:]), depth - 1)  # outermost first
    # lay the functions out in .text, in random order
    order = list(range(depth))
    r.shuffle(order)
    funcs, addr = {}, TEXT_BASE
    for i in order:
        size = r.randrange(0x40, 0x140, 0x10)
        funcs[names[i]] = (addr, addr + size)
        addr += size + 0x10
    state = {"rbp": 0, **{reg: r.randrange(1, 1 << 16) for reg in CALLEE_SAVED}}
    mem, fdes, frames = {}, [], []
    cfa = STACK_TOP - 16 * r.randint(1, 3)
    ret = 0  # main's return address: the end of the chain
    all_fp = r.random() < 0.4  # a whole program built with -fno-omit-frame-pointer, or a mix
    for name in names:
        start, end = funcs[name]
        fp = all_fp or r.random() < 0.4
        saves = sorted(r.sample(list(CALLEE_SAVED), r.randint(0, 3)), key=CALLEE_SAVED.index)
        if not fp and r.random() < 0.5:
            saves = ["rbp"] + saves  # without a frame pointer, rbp is just another callee-saved register
        mem[cfa - 8] = ret
        slots = (["rbp"] if fp else []) + saves
        saved = {}
        for k, reg in enumerate(slots):
            saved[reg] = -16 - 8 * k
            mem[cfa - 16 - 8 * k] = state[reg]
        used = 8 + 8 * len(slots)
        locals_ = 16 * r.randint(0, 3) + (8 if used % 16 else 0)  # keep rsp 16-aligned at every call
        rsp = cfa - used - locals_
        for a in range(rsp, cfa - used, 8):
            mem[a] = r.randrange(0, 1 << 12)  # locals: small numbers, never mistaken for addresses
        body = start + r.randrange(4, 12)
        if fp:
            row = CfiRow(body, "rbp", 16, {"rip": -8, **saved})
            state["rbp"] = cfa - 16
        else:
            row = CfiRow(body, "rsp", cfa - rsp, {"rip": -8, **saved})
        for reg in saves:
            state[reg] = r.randrange(1, 1 << 16) if reg != "rbp" else r.randrange(1, 1 << 12)
        entry = CfiRow(start, "rsp", 8, {"rip": -8})
        fdes.append(Fde(start, end, (entry, row), name))
        pc = body + r.randrange(8, end - body - 4)  # where this function is: a call's return address
        frames.append((name, pc, cfa, rsp, fp))
        ret, cfa = pc, rsp
    regs = {**state, "rip": frames[-1][1], "rsp": frames[-1][3]}
    return {"names": names, "funcs": funcs, "fdes": fdes, "mem": mem, "regs": regs, "frames": frames}


def _reader(mem: dict):
    def read(addr, size):
        if size != 8 or addr not in mem:
            raise KeyError(addr)
        return mem[addr].to_bytes(8, "little")
    return read


def _rows_text(s: dict) -> list[str]:
    out = []
    for fde in sorted(s["fdes"], key=lambda f: f.start):
        row = fde.rows[1]
        out.append(f"{fde.function:<9} [{fde.start:#x}, {fde.end:#x})  from {row.pc:#x}: {row.text()}")
    return out


def generate(seed: int) -> Problem:
    s = _build(seed)
    table = CfiTable(list(s["fdes"]), ".eh_frame")
    read = _reader(s["mem"])
    cfi = unwind_cfi(table, s["regs"], read)
    fp = unwind_fp(s["regs"], read, symbolize=lambda pc: (table.fde_for(pc) or Fde(0, 0, ())).function,
                   stack=(STACK_TOP - 0x1000, STACK_TOP))
    f0, f1 = cfi.frames[0], cfi.frames[1]
    rbp1 = f0.saved["rbp"][1] if "rbp" in f0.saved else s["regs"]["rbp"]
    stack = [f"{a:#x}: {s['mem'][a]:#018x}" for a in sorted(s["mem"], reverse=True)]
    params = {
        "registers": {k: f"{s['regs'][k]:#x}" for k in ("rip", "rsp", "rbp")},
        "cfi_rows": "\n".join(_rows_text(s)),
        "stack": "\n".join(stack),
    }
    questions = [
        Question("cfa0", "CFA of frame 0 (the function rip is in): evaluate its CFI row with the registers.",
                 f0.cfa, "hex"),
        Question("ra0", "Return address of frame 0 (where it will return to).", f0.return_address, "hex"),
        Question("rbp1", "The value of rbp in frame 1 (the caller) after unwinding one frame.", rbp1, "hex"),
        Question("chain", "The call chain, innermost first (function names).", cfi.chain(), "list"),
        Question("fp_walk", "Would walking the rbp chain give the same call chain as the CFI? (same/different)",
                 "same" if fp.chain() == cfi.chain() else "different", "choice", choices=FP_CHOICES),
    ]
    return Problem(NAME, seed, params, questions, TITLE)


def workspace(problem: Problem) -> dict:
    """The problem's data as Python values for the student's own code: registers, memory
    {address: 8-byte value}, and for each function (name, start, end, body row)."""
    s = _build(problem.seed)
    funcs = [(f.function, f.start, f.end, f.rows[1]) for f in sorted(s["fdes"], key=lambda f: f.start)]
    return {"regs": {k: s["regs"][k] for k in ("rip", "rsp", "rbp")}, "mem": dict(s["mem"]), "functions": funcs}


def _context(problem: Problem) -> dict:
    s = _build(problem.seed)
    table = CfiTable(list(s["fdes"]), ".eh_frame")
    return {"s": s, "table": table, "cfi": unwind_cfi(table, s["regs"], _reader(s["mem"]))}


def _explain(problem: Problem, q: Question, value) -> str:
    c = _context(problem)
    s, cfi = c["s"], c["cfi"]
    regs, mem = s["regs"], s["mem"]
    f0 = cfi.frames[0]
    row0 = c["table"].row_at(regs["rip"])
    name0 = f0.function
    if q.id == "cfa0":
        if value == regs["rsp"]:
            return f"that is rsp; {name0}'s row says CFA = {row0.cfa_reg}{row0.cfa_offset:+d}"
        if value == f0.cfa - 8:
            return "that is where the return address is stored (CFA-8); the CFA is rsp's value before the call"
        if row0.cfa_reg == "rsp" and value == regs["rbp"] + 16:
            return f"{name0} keeps no frame pointer: its row computes the CFA from rsp, not rbp"
        if row0.cfa_reg == "rbp" and value == regs["rsp"] + 16:
            return f"{name0}'s row computes the CFA from rbp, not rsp"
        return f"evaluate {name0}'s row CFA = {row0.cfa_reg}{row0.cfa_offset:+d} with {row0.cfa_reg} from the registers"
    if q.id == "ra0":
        if value == regs["rip"]:
            return "that is rip, where frame 0 is executing; the return address is in memory at CFA-8"
        if value == mem.get(f0.cfa):
            return "you read the word at the CFA; the return address is the word at CFA-8"
        return "read the 8-byte word at CFA-8 (the rip rule in the row is [CFA-8])"
    if q.id == "rbp1":
        if "rbp" not in row0.saved and value == mem.get(f0.cfa - 16):
            return (f"{name0}'s row has no rule for rbp, so {name0} never saved it: rbp still holds the "
                    "caller's value (the register at the stop)")
        if "rbp" in row0.saved and value == regs["rbp"]:
            return f"{name0} saved rbp at CFA{row0.saved['rbp']:+d} and then changed it; read the saved copy"
        return "apply the rbp rule of frame 0's row (or, with no rule, keep the register's value)"
    if q.id == "chain":
        want = [n.lower() for n in cfi.chain()]
        got = [str(v).lower() for v in value]
        if got == want[::-1]:
            return "innermost first: start with the function rip is in and end with main"
        if got and got[0] != want[0]:
            return f"item 1 should be the function containing rip = {regs['rip']:#x} (see the pc ranges)"
        if len(got) != len(want):
            return f"you listed {len(got)} frames; unwinding stops when a return address is 0 (main's caller)"
        i = next(k for k in range(len(want)) if got[k] != want[k])
        return (f"item {i + 1} is wrong: look up the pc range containing frame {i - 1}'s return address "
                f"{cfi.frames[i - 1].return_address:#x}")
    if q.id == "fp_walk":
        return ("walk it: from rbp, the return address is [rbp+8] and the caller's rbp is [rbp]; a function whose "
                "row computes the CFA from rsp keeps no frame pointer, so check what rbp holds in its frame")
    return f"expected a {q.kind} answer"


def check(problem: Problem, answers: dict) -> list[Feedback]:
    return check_each(problem, answers, lambda q, v: _explain(problem, q, v))


def answer_key(seed: int) -> str:
    p = generate(seed)
    return "\n".join(f"{q.id}: {format_answer(q.kind, q.answer, q.width, q.item_kind)}" for q in p.questions)
