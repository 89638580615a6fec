"""abi: calling conventions as data, and where each argument of a call really lands.

Serves chapter 2 (``chapters/02a_calling_conventions.ipynb`` and ``02b_g0_mcall.ipynb``) and the
calling-convention lab (``helpers/labs/callconv.py``). It models:

* the i386 System V psABI ("System V Application Binary Interface, Intel386 Architecture Processor
  Supplement", chapter "Function Calling Sequence"): ``cdecl``;
* the GCC manual, "x86 Function Attributes": ``regparm (number)``, ``fastcall``, ``stdcall``;
* the x86-64 System V psABI ("System V AMD64 ABI", §3.2.3 "Parameter Passing"): ``sysv-x86_64``;
* Go's register ABI on amd64 (golang/go ``src/cmd/compile/abi-internal.md``, "amd64 architecture"):
  ``go-abiinternal``.

Only word-sized integer and pointer arguments are modelled (``int``/``unsigned``/pointers on i386,
``long``/pointers/Go ``int`` on amd64). Wider, floating-point and struct arguments follow extra rules
the book does not need; :func:`place_arguments` refuses them with a one-line error.

The second half of the module proves the tables against real compilers: :func:`callee_source` writes C
(or Go) callees for a convention, :func:`load_object` relocates a compiled object's ``.text`` for the
emulator, and :func:`run_call` sets registers and stack exactly as :func:`place_arguments` says, runs the
callee in :mod:`helpers.emu` and returns what it computed and how it left the stack.

API::

    CONVENTIONS[name] -> Convention(arg_regs, ret_regs, callee_saved, caller_saved, cleanup, source, ...)
    place_arguments(conv, [ints]) -> Placement (.registers(), .stack(), .stack_bytes, .callee_pops, .table())
    return_registers(conv, words)
    compile_flags(conv, "zig"|"gcc") -> kwargs for helpers.toolchain.cc
    load_object(obj) / load_functions(exe, names) -> LoadedText;  run_call(text, func, conv, args) -> CallResult
    trace_call(text, caller, callee, conv) -> registers and stack at the callee's first instruction
    agreement(conv, compiler) -> number of emulated calls that matched (asserts each)
    call_site_arguments(insns, arch) -> constants a compiled caller puts in registers / on the stack
    compiled_calls(conv) -> {n: CompiledCall}: the real call with n arguments, one cached build per convention
    pushed_registers(insns), clobber_source(conv): which registers a prologue saves
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------------
# The conventions (data)
# --------------------------------------------------------------------------------------------------
PSABI_I386 = "System V ABI Intel386 psABI 1.1 §2.2 (Function Calling Sequence)"
GCC_X86_ATTRS = "GCC manual, x86 Function Attributes"
PSABI_AMD64 = "x86-64 psABI (System V AMD64 ABI) §3.2.3 Parameter Passing"
GO_ABI = "golang/go src/cmd/compile/abi-internal.md (amd64 architecture)"


@dataclass(frozen=True)
class Convention:
    """One calling convention, as its primary source states it."""
    name: str
    arch: str                      # "x86_32" | "x86_64"
    arg_regs: tuple[str, ...]      # integer argument registers, in order
    ret_regs: tuple[str, ...]      # word result, then the high half (or the 2nd Go result)
    callee_saved: tuple[str, ...]  # a callee must preserve these (besides the stack pointer)
    caller_saved: tuple[str, ...]  # a call may clobber these
    cleanup: str                   # who pops stack arguments: "caller" | "callee"
    attribute: str                 # how C spells it ("" = the default), or the language for Go
    source: str
    special: dict = field(default_factory=dict, compare=False)  # register -> fixed meaning

    @property
    def word(self) -> int:
        return 4 if self.arch == "x86_32" else 8

    @property
    def sp(self) -> str:
        return "esp" if self.arch == "x86_32" else "rsp"


_I386_CALLEE = ("ebx", "esi", "edi", "ebp")
_I386_CALLER = ("eax", "ecx", "edx")


def _i386(name, regs, cleanup, attribute, source):
    return Convention(name, "x86_32", regs, ("eax", "edx"), _I386_CALLEE, _I386_CALLER, cleanup, attribute, source)


CONVENTIONS: dict[str, Convention] = {c.name: c for c in [
    _i386("cdecl", (), "caller", "", PSABI_I386),
    # GCC manual, regparm: "pass arguments number one to number in registers EAX, EDX, and ECX"
    _i386("regparm(1)", ("eax",), "caller", "__attribute__((regparm(1)))", GCC_X86_ATTRS),
    _i386("regparm(2)", ("eax", "edx"), "caller", "__attribute__((regparm(2)))", GCC_X86_ATTRS),
    _i386("regparm(3)", ("eax", "edx", "ecx"), "caller", "__attribute__((regparm(3)))", GCC_X86_ATTRS),
    # GCC manual, fastcall: "first argument in ECX, second in EDX ... called function pops the arguments"
    _i386("fastcall", ("ecx", "edx"), "callee", "__attribute__((fastcall))", GCC_X86_ATTRS),
    # GCC manual, stdcall: "the called function pops off the stack space used to pass arguments"
    _i386("stdcall", (), "callee", "__attribute__((stdcall))", GCC_X86_ATTRS),
    Convention("sysv-x86_64", "x86_64", ("rdi", "rsi", "rdx", "rcx", "r8", "r9"), ("rax", "rdx"),
               ("rbx", "rbp", "r12", "r13", "r14", "r15"),
               ("rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"), "caller", "", PSABI_AMD64),
    # abi-internal.md: "RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11" for arguments AND results;
    # "There are no callee-save registers"; R14 = current goroutine; R15 = GOT temporary if dynlink.
    Convention("go-abiinternal", "x86_64", ("rax", "rbx", "rcx", "rdi", "rsi", "r8", "r9", "r10", "r11"),
               ("rax", "rbx", "rcx", "rdi", "rsi", "r8", "r9", "r10", "r11"), (),
               ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r15"),
               "caller", "Go", GO_ABI,
               special={"r14": "current goroutine g", "r15": "GOT temporary if dynlink", "rdx": "closure context",
                        "x15": "zero"}),
]}

C_CONVENTIONS = tuple(n for n, c in CONVENTIONS.items() if c.attribute != "Go")


def convention(name) -> Convention:
    """Look a convention up by name (or pass a Convention through)."""
    if isinstance(name, Convention):
        return name
    try:
        return CONVENTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown convention {name!r} (known: {', '.join(CONVENTIONS)})") from None


# --------------------------------------------------------------------------------------------------
# Where arguments go
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """Argument ``index`` (0-based) with ``value`` lives in ``register`` or at ``[sp + offset]``."""
    index: int
    value: int
    register: str | None = None
    offset: int | None = None      # from the stack pointer at the callee's first instruction

    @property
    def where(self) -> str:
        return f"%{self.register}" if self.register else f"{self.offset}(%sp)"


@dataclass(frozen=True)
class Placement:
    convention: Convention
    slots: tuple[Slot, ...]
    stack_bytes: int               # bytes of stack arguments the caller pushed

    def registers(self) -> dict[str, int]:
        return {s.register: s.value for s in self.slots if s.register}

    def stack(self) -> dict[int, int]:
        return {s.offset: s.value for s in self.slots if s.register is None}

    @property
    def callee_pops(self) -> int:
        """Bytes the callee's ``ret $n`` removes (0 when the caller cleans up)."""
        return self.stack_bytes if self.convention.cleanup == "callee" else 0

    def table(self) -> str:
        """Plain text, one argument a line (stable: used in notebooks and the lab key)."""
        c = self.convention
        lines = [f"{c.name}: {len(self.slots)} argument(s), {self.stack_bytes} stack byte(s), "
                 f"{c.cleanup} cleans the stack"]
        for s in self.slots:
            where = f"%{s.register}" if s.register else f"{s.offset}(%{c.sp}) at entry"
            lines.append(f"  arg{s.index} = {s.value:#x}".ljust(26) + where)
        return "\n".join(lines)


MAX_ARGS = 16


def place_arguments(conv, args) -> Placement:
    """Where each integer argument of a call goes under ``conv`` (a name or a Convention).

    Stack offsets are from the stack pointer at the callee's first instruction, where ``0(%sp)`` holds the
    return address: i386 psABI puts the first stack argument at ``4(%esp)``, the AMD64 psABI and Go's
    ABIInternal at ``8(%rsp)``. Arguments that do not fit in registers are pushed right to left, so they
    appear in order at increasing addresses (both psABIs; abi-internal.md "stack-assigned" arguments).
    """
    c = convention(conv)
    args = list(args) if not isinstance(args, (str, bytes)) else None
    if args is None:
        raise ValueError("args must be a list of integers")
    if len(args) > MAX_ARGS:
        raise ValueError(f"at most {MAX_ARGS} arguments are modelled, got {len(args)}")
    bits = 8 * c.word
    slots, offset, regs = [], c.word, list(c.arg_regs)
    for i, a in enumerate(args):
        if isinstance(a, bool) or not isinstance(a, int):
            raise ValueError(f"argument {i} is {a!r}: only word-sized integers are modelled")
        if not -(1 << (bits - 1)) <= a < (1 << bits):
            raise ValueError(f"argument {i} = {a} does not fit in a {bits}-bit word")
        v = a & ((1 << bits) - 1)
        if regs:
            slots.append(Slot(i, v, register=regs.pop(0)))
        else:
            slots.append(Slot(i, v, offset=offset))
            offset += c.word
    return Placement(c, tuple(slots), offset - c.word)


def return_registers(conv, words: int = 1) -> tuple[str, ...]:
    """Registers holding a result of ``words`` machine words (C: 1 or 2, low half first; Go: up to 9)."""
    c = convention(conv)
    limit = len(c.ret_regs) if c.attribute == "Go" else 2
    if not 1 <= words <= limit:
        raise ValueError(f"{c.name} returns 1..{limit} words in registers, not {words}")
    return c.ret_regs[:words]


# --------------------------------------------------------------------------------------------------
# Real compilers: callee and caller sources
# --------------------------------------------------------------------------------------------------
# Odd, distinct multipliers: the callee's result reveals any argument read from the wrong place.
WEIGHTS = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59)
CALLEE_ARGS = 11   # one C/Go callee per count 0..CALLEE_ARGS-1: enough to overflow every register set


def expected(args, conv) -> int:
    """What the test callees ``f<n>`` compute: sum(w_i * a_i) mod 2**word_bits (``0x1234`` for n = 0)."""
    c = convention(conv)
    mask = (1 << (8 * c.word)) - 1
    if not args:
        return 0x1234
    return sum(w * (a & mask) for w, a in zip(WEIGHTS, args)) & mask


def _ctype(c: Convention) -> str:
    return "unsigned" if c.arch == "x86_32" else "unsigned long"


def callee_source(conv, count: int = CALLEE_ARGS) -> str:
    """C (or, for go-abiinternal, Go) defining ``f0 .. f{count-1}``, each computing :func:`expected`."""
    c = convention(conv)
    if c.attribute == "Go":
        out = ["package main", ""]
        for n in range(count):
            params = ", ".join(f"a{i}" for i in range(n))
            body = " + ".join(f"{WEIGHTS[i]}*a{i}" for i in range(n)) or "0x1234"
            out += ["//go:noinline", f"func F{n}({params + ' uint' if n else ''}) uint {{ return {body} }}", ""]
        calls = ", ".join(f"F{n}({', '.join(['1'] * n)})" for n in range(count))
        out += ["var sink uint", "", "func main() {", f"\tfor _, v := range []uint{{{calls}}} {{ sink += v }}",
                "\tprintln(sink)", "}", ""]
        return "\n".join(out)
    t = _ctype(c)
    out = []
    for n in range(count):
        params = ", ".join(f"{t} a{i}" for i in range(n)) or "void"
        body = " + ".join(f"{WEIGHTS[i]}u*a{i}" for i in range(n)) or "0x1234"
        attr = (c.attribute + " ") if c.attribute else ""
        out.append(f"{t} {attr}f{n}({params}) {{ return {body}; }}")
    return "\n".join(out) + "\n"


def caller_source(conv, args, name: str = "f", attribute: str | None = None) -> str:
    """C for ``call_{name}()`` calling an external ``{name}`` with constant ``args`` under ``conv``.

    ``attribute`` overrides the convention's spelling (e.g. to show that ``regparm`` on x86-64 is ignored).
    """
    c = convention(conv)
    if c.attribute == "Go":
        raise ValueError("caller_source writes C; Go callers come from go_build")
    t = _ctype(c)
    attr = c.attribute if attribute is None else attribute
    params = ", ".join([t] * len(args)) or "void"
    vals = ", ".join(f"{a & ((1 << 8 * c.word) - 1):#x}u" for a in args)
    return (f"extern {t} {attr + ' ' if attr else ''}{name}({params});\n"
            f"{t} call_{name}(void) {{ return {name}({vals}) + 1; }}\n")


def pushed_registers(insns) -> list[str]:
    """Registers a function's prologue pushes: the run of ``push %reg`` at its start (a frame-pointer
    ``mov %esp, %ebp`` in between is skipped)."""
    out = []
    for i in insns:
        if i.mnemonic.startswith("push") and i.op_str.startswith("%"):
            out.append(i.op_str[1:])
        elif i.text in ("movl %esp, %ebp", "movq %rsp, %rbp"):
            continue
        else:
            break
    return out


def clobber_source(conv) -> str:
    """C for ``clobber(x)``: an empty asm statement that tells the compiler every general register dies.

    Whatever the compiler must save and restore around it is, by definition, callee-saved in its ABI.
    """
    c = convention(conv)
    regs = (("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp") if c.arch == "x86_32" else
            ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"))
    t = _ctype(c)
    return (f"{t} clobber({t} x) {{\n  __asm__ volatile(\"\" ::: "
            + ", ".join(f'"{r}"' for r in regs) + ', "memory");\n  return x;\n}\n')


def compile_flags(conv, compiler: str) -> dict:
    """Arguments for :func:`helpers.toolchain.cc` that build ``conv``'s code with ``compiler``.

    -O2 and -fno-pic everywhere: small leaf code with no GOT, which the emulator can run from a bare object.
    ``-fno-asynchronous-unwind-tables`` keeps the object to the sections the book looks at.
    """
    c = convention(conv)
    common = ["-O2", "-fno-pic", "-fno-asynchronous-unwind-tables", "-fno-stack-protector"]
    if compiler == "zig":
        target = "x86-freestanding-none" if c.arch == "x86_32" else "x86_64-freestanding-none"
        return {"compiler": "zig", "target": target, "flags": common}
    if compiler == "gcc":
        return {"compiler": "gcc", "flags": (["-m32"] if c.arch == "x86_32" else ["-m64"]) + common}
    raise ValueError(f"unknown compiler {compiler!r} (use 'zig' or 'gcc')")


def patchable_entry(conv, compiler: str, function: str = "f3", nops: int = 5) -> bytes:
    """The first ``nops`` bytes of ``function`` built with ``-fpatchable-function-entry=nops``.

    The compiler reserves NOP bytes at each function's entry for code patching to rewrite later. ftrace uses this
    flag on several architectures; on x86 it uses ``-mfentry``, whose entry call is likewise turned into a NOP at
    boot (torvalds/linux arch/x86/kernel/ftrace.c). Either way the patch site does not depend on the convention.
    """
    from . import toolchain
    kw = compile_flags(conv, compiler)
    kw["flags"] = kw["flags"] + [f"-fpatchable-function-entry={nops}"]
    _addr, code = load_object(toolchain.cc(callee_source(conv, 4), **kw).path).function(function)
    return code[:nops]


# --------------------------------------------------------------------------------------------------
# Objects into the emulator
# --------------------------------------------------------------------------------------------------
CODE_BASE = 0x0010_0000     # where .text is loaded
STACK_TOP = 0x0030_0000     # initial stack pointer region (grows down)
STACK_SIZE = 0x1_0000
RETURN_ADDR = 0x0040_0000   # sentinel return address: reaching it means the callee returned


@dataclass
class LoadedText:
    """``.text`` of a relocatable object, linked at ``base``: code bytes and function addresses."""
    arch: str
    base: int
    code: bytes
    functions: dict[str, tuple[int, int]]   # name -> (address, size)

    def function(self, name: str) -> tuple[int, bytes]:
        if name not in self.functions:
            raise ValueError(f"no function {name!r} in .text (have: {', '.join(sorted(self.functions))})")
        addr, size = self.functions[name]
        return addr, self.code[addr - self.base: addr - self.base + size]


# R_386_32=1, R_386_PC32=2, R_386_PLT32=4; R_X86_64_64=1, R_X86_64_PC32=2, R_X86_64_PLT32=4, R_X86_64_32/32S=10/11
_PCREL = {2, 4}


def load_object(path, base: int = CODE_BASE) -> LoadedText:
    """Link a relocatable object's ``.text`` at ``base``, resolving calls between its own functions.

    Only relocations against symbols defined in ``.text`` are supported (leaf code and local calls);
    anything else (data, external symbols) raises ValueError naming the symbol.
    """
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    import struct
    with open(path, "rb") as f:
        elf = ELFFile(f)
        arch = "x86_32" if elf.elfclass == 32 else "x86_64"
        text = elf.get_section_by_name(".text")
        if text is None:
            raise ValueError(f"{path}: no .text section")
        tidx = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".text")
        code = bytearray(text.data())
        symtab = elf.get_section_by_name(".symtab")
        funcs = {}
        for s in symtab.iter_symbols():
            if s["st_shndx"] == tidx and s["st_info"]["type"] == "STT_FUNC" and s.name:
                funcs[s.name] = (base + s["st_value"], s["st_size"])
        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection) or sec["sh_info"] != tidx:
                continue
            for r in sec.iter_relocations():
                sym = symtab.get_symbol(r["r_info_sym"])
                if sym["st_shndx"] != tidx:
                    raise ValueError(f"relocation against {sym.name or 'a section'} outside .text is not supported")
                off, typ = r["r_offset"], r["r_info_type"]
                addend = r["r_addend"] if r.is_RELA() else struct.unpack_from("<i", code, off)[0]
                target = base + sym["st_value"] + addend
                if typ in _PCREL:
                    val = (target - (base + off)) & 0xFFFFFFFF
                elif typ in (1, 10, 11) and not (arch == "x86_64" and typ == 1):
                    val = target & 0xFFFFFFFF
                else:
                    raise ValueError(f"relocation type {typ} is not supported")
                struct.pack_into("<I", code, off, val)
    return LoadedText(arch, base, bytes(code), funcs)


def load_functions(path, names) -> LoadedText:
    """The named functions of a linked executable (e.g. a Go binary), at their link addresses.

    Symbols come from :func:`helpers.elf.read_elf`, bytes from its PT_LOAD segments; the functions must be
    leaf code (the emulator maps nothing else of the program).
    """
    from helpers.elf import load_segments, read_elf
    info = read_elf(path)
    segs = load_segments(path)
    funcs, lo, hi = {}, None, None
    for n in names:
        s = info.symbol(n)
        if s is None or s.type != "FUNC":
            raise ValueError(f"{n!r} is not a function in {path}")
        funcs[n] = (s.value, s.size)
        lo = s.value if lo is None else min(lo, s.value)
        hi = s.value + s.size if hi is None else max(hi, s.value + s.size)
    base = lo & ~0xFFF
    for vaddr, data, flags in segs:
        if vaddr <= base and hi <= vaddr + len(data):
            code = data[base - vaddr: hi - vaddr]
            return LoadedText("x86_32" if info.bits == 32 else "x86_64", base, code, funcs)
    raise ValueError(f"functions {', '.join(names)} are not inside one loadable segment")


@dataclass(frozen=True)
class CallResult:
    value: int            # the word result register after return
    sp_after: int         # sp after the callee's ret minus sp just before the ``call`` (= bytes the callee popped)
    entry_regs: dict      # argument registers as the callee saw them at its first instruction
    insns: int
    ret_words: tuple = () # the first two result registers after return (C: low, high half)


def _machine(arch: str, code_base: int):
    from helpers.emu import Machine
    return Machine(arch, code_base=code_base, stack_base=STACK_TOP - STACK_SIZE, stack_size=STACK_SIZE,
                   data_base=None)


def run_call(text: LoadedText, func: str, conv, args, *, max_insns: int = 100_000,
             extra_regs: dict | None = None) -> CallResult:
    """Call ``func`` from ``text`` exactly as :func:`place_arguments` says and run it to its ``ret``.

    The caller's part is done here, by the book: arguments into registers and stack slots, then the return
    address pushed. ``sp_after`` is 0 when the caller must still pop its stack arguments (cdecl, regparm,
    SysV, Go) and ``stack_bytes`` when the callee popped them (``ret $n``: fastcall, stdcall).
    """
    c = convention(conv)
    if c.arch != text.arch:
        raise ValueError(f"{c.name} is an {c.arch} convention but the object is {text.arch}")
    p = place_arguments(c, args)
    addr, _ = text.function(func)
    m = _machine(c.arch, text.base)
    m.load(text.code, text.base)
    m.load(b"\xf4" * 16, RETURN_ADDR)  # hlt: never executed, run() stops on arrival
    w = c.word
    sp0 = STACK_TOP - 0x1000           # room above for Go's spill area and red zone
    for off, v in p.stack().items():   # stack arguments: offsets are from the callee's entry sp
        m.write(sp0 - w + off, v.to_bytes(w, "little"))
    entry_sp = sp0 - w
    m.write(entry_sp, RETURN_ADDR.to_bytes(w, "little"))
    regs = {r: 0 for r in (("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp") if w == 4 else
                           ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11"))}
    regs.update(p.registers())
    regs.update(extra_regs or {})
    regs[c.sp] = entry_sp
    m.regs.update(regs)
    seen = {}

    def at_entry(machine, _address):
        for r in c.arg_regs:
            seen[r] = machine.regs[r]
    m.hook_address(addr, at_entry)
    out = m.run(start=addr, until=RETURN_ADDR, max_insns=max_insns, timeout=5.0)
    if out.status != "finished":
        raise RuntimeError(f"{func} did not return: {out}")
    return CallResult(m.regs[c.ret_regs[0]], m.regs[c.sp] - sp0, seen, out.insns,
                      tuple(m.regs[r] for r in c.ret_regs[:2]))


# --------------------------------------------------------------------------------------------------
# Reading a real call site
# --------------------------------------------------------------------------------------------------
_MOV_IMM = re.compile(r"^\$(-?0x[0-9a-f]+|-?\d+), %(\w+)$")


def call_site_arguments(insns, arch: str = "x86_32") -> dict:
    """From a caller's disassembly (AT&T, :func:`helpers.asm.disassemble`) up to its first ``call``:
    constants moved into registers, constants pushed or stored to the stack, and what follows the call.

    Returns ``{"registers": {reg: value}, "stack": [values, lowest address first], "cleanup": bytes of
    arguments the caller pops after the call}``. Compilers fold stack-alignment padding into the same
    ``sub``/``add`` pair (gcc: ``sub $0xc,%esp`` ... ``add $0x2c,%esp``), so cleanup is the ``add`` after
    the call minus the ``sub`` before the pushes. It reads the simple shapes gcc and clang emit at -O2 for
    constant arguments; the notebook compares it with :func:`place_arguments`.
    """
    regs, pushes, stores, cleanup, called, reserved = {}, [], {}, 0, False, 0
    sp = "esp" if arch == "x86_32" else "rsp"
    for i in insns:
        ops = i.op_str
        if called:
            mm = re.match(rf"^\$(0x[0-9a-f]+|\d+), %{sp}$", ops)
            if i.mnemonic.startswith("add") and mm:
                cleanup = int(mm.group(1), 0)
            if i.mnemonic.startswith(("add", "lea", "ret", "pop", "mov", "inc")):
                continue
            break
        if i.mnemonic.startswith("call"):
            called = True
            continue
        sub = re.match(rf"^\$(0x[0-9a-f]+|\d+), %{sp}$", ops)
        if i.mnemonic.startswith("sub") and sub:
            reserved += int(sub.group(1), 0)
            continue
        m = _MOV_IMM.match(ops)
        if i.mnemonic.startswith("mov") and m:
            reg = m.group(2)
            regs[_full(reg, arch)] = int(m.group(1), 0)
            continue
        if i.mnemonic.startswith("xor"):
            a = re.match(r"^%(\w+), %(\w+)$", ops)
            if a and a.group(1) == a.group(2):
                regs[_full(a.group(1), arch)] = 0
                continue
        if i.mnemonic.startswith("push"):
            m2 = re.match(r"^\$(-?0x[0-9a-f]+|-?\d+)$", ops)
            if m2:
                pushes.append(int(m2.group(1), 0))
            continue
        m3 = re.match(rf"^\$(-?0x[0-9a-f]+|-?\d+), (0x[0-9a-f]+|\d+)?\(%{sp}\)$", ops)
        if i.mnemonic.startswith("mov") and m3:
            stores[int(m3.group(2) or "0", 0)] = int(m3.group(1), 0)
    stack = list(reversed(pushes)) + [stores[k] for k in sorted(stores)]
    return {"registers": regs, "stack": stack, "cleanup": max(cleanup - reserved, 0) if called else 0}


def _full(reg: str, arch: str = "x86_32") -> str:
    """The register a write to ``reg`` defines, named as the convention tables name it.

    On x86-64 a 32-bit write zero-extends into the whole register (Intel SDM Vol. 1 §3.4.1.1), so
    ``movl $1, %edi`` sets %rdi.
    """
    if re.fullmatch(r"r\d+[dwb]?", reg):
        return re.sub(r"[dwb]$", "", reg)
    if arch == "x86_64" and len(reg) == 3 and reg[0] == "e":
        return "r" + reg[1:]
    return reg


def available_compilers() -> list[str]:
    """C compilers present here, zig first (always installed with the book's pins); gcc when the host has it."""
    from helpers import toolchain
    return [c for c in ("zig", "gcc") if toolchain.have(c)]


def trace_call(text: LoadedText, caller: str, callee: str, conv, *, stack_words: int = 4,
               max_insns: int = 100_000) -> dict:
    """Run ``caller`` (a compiled function that calls ``callee`` in the same object) in the emulator and
    stop-look at the callee's first instruction: the argument registers and the first stack words above
    the return address. Returns {"regs": {...}, "stack": [...], "result": caller's return value}."""
    c = convention(conv)
    if c.arch != text.arch:
        raise ValueError(f"{c.name} is an {c.arch} convention but the object is {text.arch}")
    start, _ = text.function(caller)
    target, _ = text.function(callee)
    m = _machine(c.arch, text.base)
    m.load(text.code, text.base)
    m.load(b"\xf4" * 16, RETURN_ADDR)
    w = c.word
    sp = STACK_TOP - 0x1000
    m.write(sp, RETURN_ADDR.to_bytes(w, "little"))
    m.regs.update({c.sp: sp})
    seen = {}

    def at_callee(machine, _address):
        if not seen:
            s = machine.regs[c.sp]
            seen["regs"] = {r: machine.regs[r] for r in (("eax", "edx", "ecx") if w == 4 else c.arg_regs)}
            seen["stack"] = [int.from_bytes(machine.read(s + w * (k + 1), w), "little") for k in range(stack_words)]
    m.hook_address(target, at_callee)
    out = m.run(start=start, until=RETURN_ADDR, max_insns=max_insns, timeout=5.0)
    if out.status != "finished" or not seen:
        raise RuntimeError(f"{caller} did not call {callee} and return: {out}")
    return {**seen, "result": m.regs[c.ret_regs[0]]}


# --------------------------------------------------------------------------------------------------
# Real compiled call sites, for the widget and the chapter (one build per convention, cached)
# --------------------------------------------------------------------------------------------------
WIDGET_MAX_ARGS = 8


def canonical_args(n: int) -> list[int]:
    """0x11, 0x22, ...: constants that are easy to spot in a listing."""
    return [0x11 * (i + 1) for i in range(n)]


def callers_source(conv, max_args: int = WIDGET_MAX_ARGS) -> str:
    """C (or Go) with ``call_<n>`` calling an external ``f<n>`` with :func:`canonical_args` (n = 0..max)."""
    c = convention(conv)
    if c.attribute == "Go":
        out = ["package main", ""]
        for n in range(max_args + 1):
            params = ", ".join(f"a{i}" for i in range(n))
            out += ["//go:noinline", f"func F{n}({params + ' uint' if n else ''}) uint {{ return 0 }}", "",
                    "//go:noinline", f"func Call{n}() uint {{ return F{n}({', '.join(map(hex, canonical_args(n)))}) + 1 }}",
                    ""]
        out += ["var sink uint", "", "func main() {",
                "\t" + "; ".join(f"sink += Call{n}()" for n in range(max_args + 1)), "}", ""]
        return "\n".join(out)
    return "".join(caller_source(c, canonical_args(n), name=f"f{n}").replace("call_f", "call_")
                   for n in range(max_args + 1))


@dataclass(frozen=True)
class CompiledCall:
    convention: str
    nargs: int
    tool: str           # e.g. "zig 0.17.1" or "go1.27.3"
    command: str
    listing: str        # offsets from the function start, AT&T syntax


def compiled_calls(conv, compiler: str = "zig") -> dict[int, CompiledCall]:
    """{n: CompiledCall} for n = 0..WIDGET_MAX_ARGS, from ONE real build (cached on disk and in memory)."""
    return _compiled_calls(convention(conv).name, compiler)


@functools.lru_cache(maxsize=32)
def _compiled_calls(name: str, compiler: str) -> dict:
    from helpers import toolchain
    from helpers.asm import disassemble
    from helpers.elf import read_elf
    c = convention(name)
    if c.attribute == "Go":
        b = toolchain.go_build(callers_source(c))
        names = {n: f"main.Call{n}" for n in range(WIDGET_MAX_ARGS + 1)}
        funcs = load_functions(b.path, list(names.values()))
        tool = b.tool
    else:
        b = toolchain.cc(callers_source(c), **compile_flags(c, compiler))
        names = {n: f"call_{n}" for n in range(WIDGET_MAX_ARGS + 1)}
        info = read_elf(b.path)
        from elftools.elf.elffile import ELFFile
        with open(b.path, "rb") as f:
            code = ELFFile(f).get_section_by_name(".text").data()
        funcs = LoadedText(c.arch, 0, code, {s.name: (s.value, s.size) for s in info.functions()
                                             if s.section == ".text"})
        tool = toolchain.require(compiler).version
    symbols = {}
    if c.attribute == "Go":
        symbols = {s.value: s.name for s in read_elf(b.path).functions()}
    out = {}
    for n, fn in names.items():
        addr, code = funcs.function(fn)
        lines = []
        for i in disassemble(code, arch=c.arch, address=addr):
            text = i.text
            m = re.match(r"^(j\w+|call\w*)\s+(0x[0-9a-f]+|\d+)$", text)
            if m:
                t = int(m.group(2), 0)
                if c.attribute != "Go" and m.group(1).startswith("call"):
                    where = f"f{n}"        # an unrelocated call in an object: its only target is f<n>
                elif addr <= t < addr + len(code):
                    where = f"+{t - addr:#x}"
                else:
                    where = symbols.get(t, m.group(2))
                text = f"{m.group(1)} {where}"
            lines.append(f"+{i.address - addr:#04x}  {text}")
        out[n] = CompiledCall(c.name, n, tool, " ".join(b.command), "\n".join(lines))
    return out


def agreement(conv, compiler: str = "zig", trials: int = 5, seed: int = 2) -> int:
    """Build ``conv``'s callees f0..f10 with a real compiler (Go's for go-abiinternal), run each on ``trials``
    seeded random argument lists placed by :func:`place_arguments`, and assert every result and stack
    cleanup. Returns the number of emulated calls that agreed (the book's notebook check; tests use hypothesis)."""
    import random
    from helpers import toolchain
    c = convention(conv)
    if c.attribute == "Go":
        text = load_functions(toolchain.go_build(callee_source(c)).path, [f"main.F{n}" for n in range(CALLEE_ARGS)])
    else:
        text = load_object(toolchain.cc(callee_source(c), **compile_flags(c, compiler)).path)
    rng, ok = random.Random(seed), 0
    for n in range(CALLEE_ARGS):
        for _ in range(trials):
            args = [rng.getrandbits(8 * c.word) for _ in range(n)]
            r = run_call(text, f"main.F{n}" if c.attribute == "Go" else f"f{n}", c, args)
            assert r.value == expected(args, c), (c.name, compiler, args)
            assert r.sp_after == place_arguments(c, args).callee_pops, (c.name, compiler, args)
            ok += 1
    return ok
