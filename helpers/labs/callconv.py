"""The calling-convention lab (chapter 2a): where do a call's arguments live, and which convention is this?

A seed makes two tasks, both keyed by the chapter's own model :func:`helpers.abi.place_arguments` (checked
there against gcc, clang and Go by emulation), so lab and book cannot disagree:

* **Part A** -- a C prototype and a convention: name where chosen arguments are at the callee's first
  instruction (a register such as ``%edx``, or a stack slot such as ``8(%esp)``), and how many bytes the callee
  pops on return.
* **Part B** -- a 32-bit caller, assembled and disassembled, that loads registers (in a shuffled order, as
  compilers do), pushes the rest right to left, calls ``f`` and maybe pops: recover the convention and the
  argument values in order.

Sources: i386 psABI (Function Calling Sequence), GCC manual "x86 Function Attributes", AMD64 psABI §3.2.3,
golang/go src/cmd/compile/abi-internal.md.

    python -m helpers.labs callconv --seed 7 -c
"""
from __future__ import annotations

import re

from helpers import abi

from .common import Feedback, Problem, Question, check_each, echo, format_answer, rng

NAME = "callconv"
TITLE = "Calling conventions: where the arguments are"
CHAPTER = "chapters/02a_calling_conventions.ipynb"

PART_A_CONVENTIONS = ("cdecl", "regparm(1)", "regparm(2)", "regparm(3)", "fastcall", "stdcall",
                      "sysv-x86_64", "go-abiinternal")
PART_B_CONVENTIONS = ("cdecl", "regparm(1)", "regparm(2)", "regparm(3)", "fastcall", "stdcall")
FUNCS = ("sys_hook", "dev_write", "queue_work", "map_pages", "copy_block", "irq_ack", "page_fault", "tcp_send")
PARAMS = ("struct pt_regs *regs", "int code", "long *addr", "unsigned flags", "void *buf", "int len",
          "unsigned long pfn", "char *name", "int cpu", "void *ctx")
CODE_ADDR = 0x8048000


# ------------------------------------------------------------------------------------------ locations
def canonical_location(raw) -> str:
    """'EDX', 'edx', '%edx' -> '%edx';  '8(%esp)', '[esp+8]', 'esp+8' -> '8(%esp)'. ValueError otherwise."""
    text = str(raw).strip().lower().replace(" ", "")
    m = re.fullmatch(r"%?([a-z][a-z0-9]{1,3})", text)
    if m and m.group(1) in _REGISTERS:
        return "%" + m.group(1)
    m = (re.fullmatch(r"(0x[0-9a-f]+|\d+)?\(%?([er]sp)\)", text)
         or re.fullmatch(r"\[?%?([er]sp)\+(0x[0-9a-f]+|\d+)\]?", text))
    if m:
        off, reg = (m.group(1), m.group(2)) if text[0] != "[" and not text.startswith(("esp", "rsp", "%esp", "%rsp")) \
            else (m.group(2), m.group(1))
        return f"{int(off or '0', 0)}(%{reg})"
    raise ValueError(f"{echo(repr(str(raw)))} is not a location: write a register name with its %, or a stack slot "
                     "as offset(%esp) or offset(%rsp), the offset in bytes")


_REGISTERS = {"eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi",
              "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}


def _where(slot, conv) -> str:
    return f"%{slot.register}" if slot.register else f"{slot.offset}(%{conv.sp})"


# ------------------------------------------------------------------------------------------ the problem
def _part_a(r):
    name = r.choice(PART_A_CONVENTIONS)
    conv = abi.convention(name)
    hi = min(len(conv.arg_regs) + 3, len(PARAMS))
    n = r.randint(min(max(3, len(conv.arg_regs) + 1), hi), hi)   # usually some stack arguments
    params = r.sample(list(PARAMS), n)
    func = r.choice(FUNCS)
    if conv.attribute == "Go":
        gp = [p.split()[-1].lstrip("*") + " " + ("uintptr" if "*" in p else "int") for p in params]
        proto = f"func {func}({', '.join(gp)}) int"
    else:
        attr = (conv.attribute + " ") if conv.attribute else ""
        proto = f"long {attr}{func}({', '.join(params)});"
    asked = sorted(r.sample(range(n), min(3, n)))
    if all(abi.place_arguments(conv, [0] * n).slots[k].register for k in asked):
        asked[-1] = n - 1                               # always ask about at least one stack argument
    return {"convention": name, "prototype": proto, "nargs": n, "asked": asked,
            "names": [p.split()[-1].lstrip("*") for p in params]}


def _part_b(r):
    name = r.choice(PART_B_CONVENTIONS)
    conv = abi.convention(name)
    n = len(conv.arg_regs) + r.randint(1, 3)            # at least one stack argument: cleanup shows
    values = [r.randrange(1, 0x100) for _ in range(n)]
    p = abi.place_arguments(conv, values)
    loads = [f"movl ${s.value:#x}, %{s.register}" for s in p.slots if s.register]
    r.shuffle(loads)
    pushes = [f"pushl ${s.value:#x}" for s in reversed(p.slots) if s.register is None]
    # compilers interleave register loads with pushes; keep each push order (right to left) intact
    body = pushes[:]
    for ld in loads:
        body.insert(r.randint(0, len(body)), ld)
    tail = ["calll f"] + ([f"addl ${p.stack_bytes:#x}, %esp"] if conv.cleanup == "caller" else []) + ["retl"]
    return {"convention": name, "values": values, "source": "\n".join(body + tail + ["f:", "retl"])}


def _listing(source: str) -> str:
    from helpers.asm import assemble, disassemble
    asm = assemble(source, arch="x86_32", syntax="att", address=CODE_ADDR)
    insns = disassemble(asm.code, arch="x86_32", address=CODE_ADDR)
    end = next(i for i, x in enumerate(insns) if x.mnemonic.startswith("ret")) + 1   # the caller, not f
    f_addr = insns[end].address
    lines = []
    for i in insns[:end]:
        text = i.text.replace(f"{f_addr:#x}", "<f>")
        lines.append(f"{i.address:#x}: {i.bytes.hex(' '):<17} {text}")
    return "\n".join(lines)


def generate(seed: int) -> Problem:
    r = rng(seed)
    a, b = _part_a(r), _part_b(r)
    conv_a = abi.convention(a["convention"])
    pa = abi.place_arguments(conv_a, list(range(a["nargs"])))
    params = {
        "part_a_convention": a["convention"],
        "part_a_prototype": a["prototype"],
        "part_b_caller": _listing(b["source"]),
        "part_b_nargs": len(b["values"]),
    }
    qs = []
    for k in a["asked"]:
        qs.append(Question(f"a_arg{k}", f"Part A: where is argument {k + 1} ({a['names'][k]}) at the callee's first "
                           f"instruction? (a register like %edx, or a stack slot like 8(%esp))",
                           _where(pa.slots[k], conv_a), "str"))
    qs.append(Question("a_pops", "Part A: how many bytes of arguments does the callee itself pop when it returns?",
                       pa.callee_pops, "int"))
    qs.append(Question("b_convention", "Part B: which calling convention does this caller use for f?",
                       b["convention"], "choice", choices=PART_B_CONVENTIONS))
    qs.append(Question("b_args", "Part B: the values of f's arguments, first argument first (hex).",
                       b["values"], "list", item_kind="hex"))
    return Problem(NAME, seed, params, qs, TITLE)


# ------------------------------------------------------------------------------------------ checking
def _context(problem: Problem):
    r = rng(problem.seed)
    return _part_a(r), _part_b(r)


def _explain(problem: Problem, q: Question, value) -> str:
    a, b = _context(problem)
    if q.id.startswith("a_arg"):
        conv = abi.convention(a["convention"])
        p = abi.place_arguments(conv, list(range(a["nargs"])))
        k = int(q.id[5:])
        where = {_where(s, conv): s.index for s in p.slots}
        if value == f"0(%{conv.sp})":
            return f"0(%{conv.sp}) holds the return address the call pushed; stack arguments start above it"
        if value in where:
            return f"{value} holds argument {where[value] + 1} ({a['names'][where[value]]}), not argument {k + 1}"
        if value.startswith("%") and p.slots[k].register is None:
            return (f"{conv.name} passes only {len(conv.arg_regs)} argument(s) in registers; argument {k + 1} is "
                    "on the stack")
        if value.startswith("%"):
            return (f"{value} is not one of {conv.name}'s argument registers (abi.CONVENTIONS[{conv.name!r}].arg_regs "
                    "lists them, in the order they are filled)")
        if p.slots[k].register:
            return f"argument {k + 1} of {conv.name} is in a register, not on the stack"
        return (f"stack arguments lie above the return address at 0(%{conv.sp}), one {conv.word}-byte slot each, in "
                "argument order (pushed right to left); count only the arguments that did not get a register")
    if q.id == "a_pops":
        conv = abi.convention(a["convention"])
        p = abi.place_arguments(conv, list(range(a["nargs"])))
        if conv.cleanup == "caller":
            return f"under {conv.name} the caller removes the stack arguments after the call; the callee pops nothing"
        if value == p.stack_bytes + conv.word:
            return "the return address is popped by ret itself; count only the argument bytes (ret $n)"
        return f"{conv.name}'s callee pops all of its stack arguments: count the {conv.word}-byte slots on the stack"
    if q.id == "b_convention":
        right, chosen = abi.convention(b["convention"]), abi.convention(value)
        used = [x for x in ("eax", "edx", "ecx") if x in abi.place_arguments(right, b["values"]).registers()]
        if chosen.cleanup != right.cleanup:
            return ("look right after the call: " + ("an add to %esp means the caller cleans up, which "
                    if right.cleanup == "caller" else "nothing is removed from %esp, so the callee pops, which ")
                    + f"{chosen.name} does not do")
        return (f"the caller loads {', '.join('%' + x for x in used) or 'no register'} before the call; "
                f"{chosen.name} passes arguments in {', '.join('%' + x for x in chosen.arg_regs) or 'no register'}")
    if q.id == "b_args":
        vals = b["values"]
        if len(value) != len(vals):
            return f"f takes {len(vals)} arguments; you gave {len(value)}"
        if sorted(value) == sorted(vals):
            conv = abi.convention(b["convention"])
            nreg = len(conv.arg_regs)
            if value[nreg:] == list(reversed(vals[nreg:])):
                return "the stack arguments are pushed right to left: the LAST push is the first stack argument"
            return (f"registers come first, in {conv.name} order "
                    f"({', '.join('%' + x for x in conv.arg_regs) or 'none'}), whatever order the loads appear in")
        wrong = next(i for i, (u, v) in enumerate(zip(value, vals)) if u != v)
        return f"argument {wrong + 1} is not {format_answer('hex', value[wrong])}: find where it is loaded or pushed"
    return ""


def _normalise(problem: Problem, answers):
    if not isinstance(answers, dict):
        return answers
    out = dict(answers)
    for q in problem.questions:
        if q.id.startswith("a_arg") and isinstance(out.get(q.id), str):
            try:
                out[q.id] = canonical_location(out[q.id])
            except ValueError:
                pass                      # check_each reports it; the str parser accepts anything
    return out


def check(problem: Problem, answers: dict) -> list[Feedback]:
    answers = _normalise(problem, answers)
    fb = check_each(problem, answers, lambda q, v: _explain(problem, q, v))
    out = []
    for f in fb:                          # a location that is not a location: say so, in one line
        q = problem.question(f.question)
        if q.id.startswith("a_arg") and not f.ok and isinstance(answers, dict) and q.id in answers:
            try:
                canonical_location(answers[q.id])
            except ValueError as e:
                f = Feedback(f.question, False, str(e))
        out.append(f)
    return out
