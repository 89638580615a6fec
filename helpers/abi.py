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
    observed_arguments(conv, n) -> where the compiled caller put each argument ("%eax", "4(%esp)", ...)
    predicted_locations(conv, n) -> the same, as place_arguments says
    fentry_sites(conv, cc) / ftrace_call(conv, cc, func, args, nop=...) -> the kernel's -pg -mfentry entry call,
        what a tracer sees there, and the run with the call patched to the kernel's NOP
    kernel_header(rel), kernel_nop5(arch), syscall_stub_prototypes(text), ip_setter(text): read Debian's kernel
        build tree (linux-headers), where installed

Every emulated call runs on one machine per convention (``_machine``), reset between calls.
"""
from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass, field

from .files import existing_file

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
    if isinstance(args, (str, bytes, dict)) or not hasattr(args, "__iter__"):
        raise ValueError(f"args must be a list of integers, not {type(args).__name__}")
    args = [a for a, _ in zip(args, range(MAX_ARGS + 1))]   # a bounded look at any iterable
    if len(args) > MAX_ARGS:
        raise ValueError(f"at most {MAX_ARGS} arguments are modelled, got {len(args)}")
    bits = 8 * c.word
    slots, offset, regs = [], c.word, list(c.arg_regs)
    for i, a in enumerate(args):
        if isinstance(a, bool) or not isinstance(a, int):
            raise ValueError(f"argument {i} is {repr(a)[:40]}: only word-sized integers are modelled")
        if not -(1 << (bits - 1)) <= a < (1 << bits):
            raise ValueError(f"argument {i} = {a:#x} does not fit in a {bits}-bit word" if a.bit_length() < 200 else
                             f"argument {i} ({a.bit_length()} bits) does not fit in a {bits}-bit word")
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


# The flags kbuild adds for ftrace on x86 (torvalds/linux Makefile, CC_FLAGS_FTRACE: -pg, then -mrecord-mcount
# where CONFIG_FTRACE_MCOUNT_USE_CC, then -mfentry where CONFIG_HAVE_FENTRY). clang has no -mrecord-mcount for x86:
# with clang, kbuild has objtool write the same __mcount_loc table (CONFIG_FTRACE_MCOUNT_USE_OBJTOOL).
FTRACE_FLAGS = {"gcc": ["-pg", "-mrecord-mcount", "-mfentry"], "zig": ["-pg", "-mfentry"]}
FENTRY = "__fentry__"


@dataclass(frozen=True)
class FentrySite:
    """The first instruction of a function compiled with the kernel's ftrace flags."""
    function: str
    raw: bytes            # its bytes (the call's displacement still unrelocated)
    text: str             # capstone's rendering
    target: str | None    # the symbol the call is relocated against (``__fentry__``)
    recorded: bool        # listed in ``__mcount_loc`` (gcc's -mrecord-mcount), where ftrace finds its sites


def ftrace_build(conv, compiler: str):
    """Build ``conv``'s callees f0..f4 with the kernel's ftrace flags (:data:`FTRACE_FLAGS`); the cached Build."""
    from . import toolchain
    if compiler not in FTRACE_FLAGS:
        raise ValueError(f"unknown compiler {compiler!r} (use 'zig' or 'gcc')")
    c = convention(conv)
    if c.attribute == "Go":
        raise ValueError("go-abiinternal: Go has no -mfentry; the kernel's ftrace flags are C compiler flags")
    kw = compile_flags(c, compiler)
    kw["flags"] = kw["flags"] + FTRACE_FLAGS[compiler]
    return toolchain.cc(callee_source(c, 5), **kw)


def fentry_sites(conv, compiler: str) -> dict[str, FentrySite]:
    """{function: FentrySite} for :func:`ftrace_build`'s object: each function's first instruction, the symbol
    its relocation names, and whether ``__mcount_loc`` lists that address."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from helpers.asm import disassemble
    c = convention(conv)
    path = ftrace_build(c, compiler).path
    with open(existing_file(path), "rb") as f:
        elf = ELFFile(f)
        names = [s.name for s in elf.iter_sections()]
        tidx = names.index(".text")
        code = elf.get_section(tidx).data()
        symtab = elf.get_section_by_name(".symtab")
        relocs, mcount = {}, set()
        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection):
                continue
            target_sec = names[sec["sh_info"]]
            for r in sec.iter_relocations():
                sym = symtab.get_symbol(r["r_info_sym"])
                if target_sec == ".text":
                    relocs[r["r_offset"]] = sym.name
                elif target_sec == "__mcount_loc":   # each entry: .text + (site offset)
                    site = r["r_addend"] if r.is_RELA() else int.from_bytes(
                        elf.get_section_by_name("__mcount_loc").data()[r["r_offset"]:r["r_offset"] + c.word], "little")
                    mcount.add(site)
        out = {}
        for s in symtab.iter_symbols():
            if s["st_shndx"] == tidx and s["st_info"]["type"] == "STT_FUNC":
                start = s["st_value"]
                first = disassemble(code[start:start + 15], arch=c.arch, address=start)[0]
                out[s.name] = FentrySite(s.name, bytes(first.bytes), first.text,
                                         relocs.get(start + 1) if first.mnemonic.startswith("call") else None,
                                         start in mcount)
    return dict(sorted(out.items()))


KERNEL_HEADERS = "/usr/src/linux-headers-*-common"   # Debian's linux-headers package: the kernel's build tree
NOPS_H = "arch/x86/include/asm/nops.h"
SDM_NOP5 = bytes.fromhex("0f1f440000")   # Intel SDM Vol. 2B, NOP: the recommended 5-byte form


def kernel_header(rel: str, pattern: str = KERNEL_HEADERS):
    """Path of ``rel`` in the newest installed kernel build tree (Debian's linux-headers), or None."""
    import glob
    from pathlib import Path
    hits = sorted(Path(p) / rel for p in glob.glob(pattern) if (Path(p) / rel).is_file())
    return hits[-1] if hits else None


def kernel_nop5(arch: str, text: str | None = None) -> bytes:
    """The 5-byte NOP the kernel patches over ``call __fentry__`` (``x86_nops[5]``, from ``BYTES_NOP5`` in
    ``arch/x86/include/asm/nops.h``: one definition for 32-bit kernels, one for ``CONFIG_64BIT``).

    ``text`` is that header's text (default: read from the installed kernel tree). Raises ValueError if the
    header does not define it."""
    if arch not in ("x86_32", "x86_64"):
        raise ValueError(f"arch must be 'x86_32' or 'x86_64', got {arch!r}")
    if text is None:
        path = kernel_header(NOPS_H)
        if path is None:
            raise ValueError(f"no kernel build tree with {NOPS_H} here (apt-get install linux-headers-amd64)")
        text = path.read_text()
    if not isinstance(text, str):
        raise ValueError("kernel_nop5 needs nops.h's text (a str)")
    defs, branch = {"x86_32": {}, "x86_64": {}}, None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#ifndef CONFIG_64BIT"):
            branch = "x86_32"
        elif s.startswith("#else") and branch == "x86_32":
            branch = "x86_64"
        elif s.startswith("#endif") and "CONFIG_64BIT" in s:
            branch = None
        m = re.match(r"#define (BYTES_NOP\d)\s+(.+)$", s)
        if m and branch:
            defs[branch][m.group(1)] = m.group(2).split("/*")[0].strip()

    def expand(name, depth=0):
        if depth > 8 or name not in defs[arch]:
            raise ValueError(f"{NOPS_H}: cannot expand {name} for {arch}")
        out = []
        for part in defs[arch][name].split(","):
            part = part.strip()
            out += expand(part, depth + 1) if part.startswith("BYTES_NOP") else [int(part, 16)]
        return out
    nop = bytes(expand("BYTES_NOP5"))
    if len(nop) != 5:
        raise ValueError(f"{NOPS_H}: BYTES_NOP5 has {len(nop)} bytes for {arch}")
    return nop


def _macro_body(text: str, name_re: str) -> tuple[str, str] | None:
    """(name and parameters, body joined on one line) of the first ``#define`` matching ``name_re``."""
    m = re.search(rf"^#define ({name_re}\([^)]*\))[ \t]*((?:.*\\\n)*.*)$", text, re.M)
    if m is None:
        return None
    parts = (part.strip().rstrip("\\").strip() for part in m.group(2).splitlines())
    return m.group(1), " ".join(p for p in parts if p)


def syscall_stub_prototypes(text: str) -> dict[str, str]:
    """From ``arch/x86/include/asm/syscall_wrapper.h``: {abi: the prototype ``__SYS_STUBx`` gives each syscall
    stub of that ABI}, e.g. {"x64": "long __x64_sys<name>(const struct pt_regs *regs)", "ia32": ...}."""
    if not isinstance(text, str):
        raise ValueError("syscall_stub_prototypes needs the header's text (a str)")
    stub = _macro_body(text, r"__SYS_STUBx")
    if stub is None:
        raise ValueError("syscall_wrapper.h: no __SYS_STUBx macro")
    proto = re.match(r"(long __##abi##_##name\([^)]*\))", stub[1])
    if proto is None:
        raise ValueError("syscall_wrapper.h: __SYS_STUBx does not start with a `long __abi_name(...)` prototype")
    abis = sorted(set(re.findall(r"__SYS_STUBx\((\w+), sys##name", text)))
    return {a: proto.group(1).replace("##abi##", a).replace("_##name", "_sys<name>") for a in abis}


def ip_setter(text: str) -> str:
    """From ``arch/x86/include/asm/ftrace.h``: how an ftrace handler (livepatch) sets the instruction pointer the
    trampoline will return to: ``"ftrace_instruction_pointer_set(fregs, _ip): ... regs.ip = (_ip)"``."""
    if not isinstance(text, str):
        raise ValueError("ip_setter needs the header's text (a str)")
    m = _macro_body(text, r"ftrace_(?:regs_set_instruction_pointer|instruction_pointer_set)")
    if m is None:
        raise ValueError("ftrace.h defines neither ftrace_regs_set_instruction_pointer nor ftrace_instruction_pointer_set")
    body = re.sub(r"^do \{\s*|;?\s*\}\s*while \(0\)$", "", m[1]).strip().rstrip(";")
    return f"{m[0]}: {body}"


def ftrace_call(conv, compiler: str, func: str, args, *, nop: bytes | None = None) -> dict:
    """Call ``func`` of :func:`ftrace_build`'s object in the emulator, as :func:`run_call` does, with its
    ``call __fentry__`` pointing at a stub (a bare ``ret``) that records what a tracer would see: the argument
    registers and the stack words above the stub's return address. ``nop``: first overwrite the 5-byte call with
    these bytes, as ftrace does at boot (``ftrace_nop_replace``). Returns {"value", "tracer": None or {...}}."""
    c = convention(conv)
    if nop is not None and (not isinstance(nop, (bytes, bytearray)) or len(nop) != 5):
        raise ValueError("nop must be the 5 bytes that replace the call (x86 ftrace's MCOUNT_INSN_SIZE)")
    text = load_object(ftrace_build(c, compiler).path, stubs=(FENTRY,))
    addr, code = text.function(func)
    if code[:1] != b"\xe8":
        raise ValueError(f"{func} does not begin with a call (built without -mfentry?)")
    if nop is not None:
        patched = bytearray(text.code)
        patched[addr - text.base: addr - text.base + 5] = nop
        text = LoadedText(text.arch, text.base, bytes(patched), text.functions)
    p = place_arguments(c, args)
    seen = {}

    def at_fentry(machine, _address):
        sp = machine.regs[c.sp]
        seen["regs"] = {r: machine.regs[r] for r in c.arg_regs}
        seen["stack"] = [int.from_bytes(machine.read(sp + c.word * k, c.word), "little") for k in range(8)]
    with _machine(c, text) as (m, hook):
        hook(text.functions[FENTRY][0], at_fentry)
        r = _run_call(m, hook, c, p, addr, func, 100_000, None)
    return {"value": r.value, "tracer": seen or None, "entry": addr}


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


def load_object(path, base: int = CODE_BASE, stubs=()) -> LoadedText:
    """Link a relocatable object's ``.text`` at ``base``, resolving calls between its own functions.

    Only relocations against symbols defined in ``.text`` are supported (leaf code and local calls), plus
    calls to the undefined symbols named in ``stubs``: each gets a one-byte ``ret`` after the code, listed in
    ``functions`` under its name (e.g. ``__fentry__``). Anything else raises ValueError naming the symbol.
    """
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    import struct
    with open(existing_file(path), "rb") as f:
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
        stub_at = {}
        for name in stubs:
            code += b"\xcc" * (-len(code) % 16)              # int3 padding, then the stub
            stub_at[name] = len(code)
            funcs[name] = (base + len(code), 1)
            code += b"\xc3"                                   # ret
        for sec in elf.iter_sections():
            if not isinstance(sec, RelocationSection) or sec["sh_info"] != tidx:
                continue
            for r in sec.iter_relocations():
                sym = symtab.get_symbol(r["r_info_sym"])
                if sym.name in stub_at and sym["st_shndx"] == "SHN_UNDEF":
                    sym_value = stub_at[sym.name]
                elif sym["st_shndx"] != tidx:
                    raise ValueError(f"relocation against {sym.name or 'a section'} outside .text is not supported")
                else:
                    sym_value = sym["st_value"]
                off, typ = r["r_offset"], r["r_info_type"]
                addend = r["r_addend"] if r.is_RELA() else struct.unpack_from("<i", code, off)[0]
                target = base + sym_value + addend
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


# One emulator machine per convention, reused for every call (a unicorn engine costs far more to create than a
# call costs to run; chapter 2a alone makes hundreds of calls). _machine() hands it out clean, see below.
_POOL: dict[str, object] = {}
_POOL_LOADED: dict[str, list[tuple[int, int]]] = {}   # convention -> code ranges written by the last call


@contextlib.contextmanager
def _machine(c: Convention, text: LoadedText):
    """The convention's machine, with nothing left of the previous call: CPU state reset (registers, flags,
    translated code), previously loaded code and the whole stack zeroed, ``text`` and the ``hlt`` sentinel at
    RETURN_ADDR loaded, and every address hook the caller adds (through ``hook``) removed again on exit."""
    from helpers.emu import Machine
    m = _POOL.get(c.name)
    if m is None:
        m = _POOL[c.name] = Machine(c.arch, code_base=text.base, stack_base=STACK_TOP - STACK_SIZE,
                                    stack_size=STACK_SIZE, data_base=None)
    m.reset()
    for addr, n in _POOL_LOADED.pop(c.name, []):
        m.write(addr, bytes(n))
    m.write(STACK_TOP - STACK_SIZE, bytes(STACK_SIZE))
    m.load(text.code, text.base)
    m.load(b"\xf4" * 16, RETURN_ADDR)  # hlt: never executed, run() stops on arrival
    _POOL_LOADED[c.name] = [(text.base, len(text.code))]
    handles = []
    try:
        yield m, lambda addr, cb: handles.append(m.hook_address(addr, cb))
    finally:
        for h in handles:
            m.remove_hook(h)


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
    with _machine(c, text) as (m, hook):
        return _run_call(m, hook, c, p, addr, func, max_insns, extra_regs)


def _run_call(m, hook, c: Convention, p: Placement, addr: int, func: str, max_insns: int,
              extra_regs: dict | None) -> CallResult:
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
    hook(addr, at_entry)
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
    with _machine(c, text) as (m, hook):
        return _trace_call(m, hook, c, start, target, caller, callee, stack_words, max_insns)


def _trace_call(m, hook, c: Convention, start: int, target: int, caller: str, callee: str, stack_words: int,
                max_insns: int) -> dict:
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
    hook(target, at_callee)
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


@functools.lru_cache(maxsize=32)
def _callers_text(name: str, compiler: str) -> LoadedText:
    """:func:`callers_source` built once (cached on disk) and loaded once per process: every ``call_<n>`` with its
    callee (C: ``ret`` stubs for the external ``f<n>``; Go: the real ``main.F<n>``)."""
    from helpers import toolchain
    c = convention(name)
    if c.attribute == "Go":
        names = [f"main.{f}{n}" for n in range(WIDGET_MAX_ARGS + 1) for f in ("Call", "F")]
        return load_functions(toolchain.go_build(callers_source(c)).path, names)
    return load_object(toolchain.cc(callers_source(c), **compile_flags(c, compiler)).path,
                       stubs=tuple(f"f{k}" for k in range(WIDGET_MAX_ARGS + 1)))


def predicted_locations(conv, nargs: int) -> list[str]:
    """Where :func:`place_arguments` puts :func:`canonical_args` ``(nargs)``: ``"%eax"``, ``"4(%esp)"``, ..."""
    c = convention(conv)
    return [s.where.replace("(%sp)", f"(%{c.sp})") for s in place_arguments(c, canonical_args(nargs)).slots]


GO_FAKE_G = STACK_TOP - STACK_SIZE   # a zeroed g for Go callers: stackguard0 = 0, so the prologue check passes


def observed_arguments(conv, nargs: int, compiler: str = "zig") -> list[str]:
    """Where the real compiler's caller put each argument: run ``call_<n>`` (C) or ``main.Call<n>`` (Go) of
    :func:`callers_source`, compiled, in the emulator; at the callee's first instruction find each of the
    :func:`canonical_args` constants among the registers and the stack slots. Returns one location per
    argument, as :meth:`Placement.where` spells it (``"%eax"``, ``"4(%esp)"``), or ``"?"`` if not found."""
    c = convention(conv)
    if not isinstance(nargs, int) or isinstance(nargs, bool) or not 0 <= nargs <= WIDGET_MAX_ARGS:
        raise ValueError(f"nargs must be an integer from 0 to {WIDGET_MAX_ARGS}, got {nargs!r}")
    if compiler not in ("zig", "gcc"):
        raise ValueError(f"unknown compiler {compiler!r} (use 'zig' or 'gcc')")
    text = _callers_text(c.name, "go" if c.attribute == "Go" else compiler)
    if c.attribute == "Go":
        caller, callee, extra = f"main.Call{nargs}", f"main.F{nargs}", {"r14": GO_FAKE_G}
    else:
        caller, callee, extra = f"call_{nargs}", f"f{nargs}", {}
    start, _ = text.function(caller)
    target, _ = text.function(callee)
    w, seen = c.word, {}
    names = (("eax", "ebx", "ecx", "edx", "esi", "edi") if w == 4 else
             ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"))

    def at_callee(machine, _address):
        if not seen:
            sp = machine.regs[c.sp]
            seen["regs"] = {r: machine.regs[r] for r in names}
            seen["stack"] = {w * k: int.from_bytes(machine.read(sp + w * k, w), "little") for k in range(1, 12)}
            machine.stop("reached the callee")   # what the callee does next is not the question
    with _machine(c, text) as (m, hook):
        sp = STACK_TOP - 0x1000
        m.write(sp, RETURN_ADDR.to_bytes(w, "little"))
        m.regs.update({c.sp: sp, **extra})
        hook(target, at_callee)
        out = m.run(start=start, until=RETURN_ADDR, max_insns=100_000, timeout=5.0)
    if not seen:
        raise RuntimeError(f"{caller} did not call {callee}: {out}")
    where = []
    for v in canonical_args(nargs):
        reg = next((r for r, x in seen["regs"].items() if x == v), None)
        off = next((o for o, x in seen["stack"].items() if x == v), None)
        where.append(f"%{reg}" if reg else f"{off}(%{c.sp})" if off is not None else "?")
    return where


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
