"""unwind: recover a call chain from a stopped x86-64 machine, two ways: DWARF CFI and the RBP chain.

Serves chapter 4a ("Stack frames and CFI", article §4.1) and the unwinding lab. It models:

* the DWARF Call Frame Information that compilers put in ``.eh_frame`` / ``.debug_frame``
  (DWARF 5 §6.4 "Call Frame Information"; LSB "Exception Frames" for ``.eh_frame``), decoded into one
  row per PC range by pyelftools: the rule for the CFA and, for each saved register, where it was saved;
* what an unwinder does with those rows (libgcc ``unwind-dw2.c``: ``uw_frame_state_for`` finds the row,
  ``uw_update_context_1`` computes the CFA and reloads saved registers, the return address is column 16);
* the frame-pointer walk that perf and old debuggers do: ``[rbp]`` is the caller's rbp, ``[rbp+8]`` the
  return address (System V AMD64 psABI §3.4.1, "the conventional use of %rbp as a frame pointer").

Core is pure Python over a ``read(addr, size) -> bytes`` callable, so it works on an emulator
(:func:`stop_at` runs a real binary in ``helpers.emu.Machine``), on a stack dump (the lab), or on
anything else. Bad input raises :class:`UnwindError` with a one-line message; walks are bounded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from helpers.elf import ElfError, ElfInfo, read_elf
from helpers.files import existing_file

# System V AMD64 psABI §3.6.2, Figure 3.36 "DWARF Register Number Mapping"
DWARF_REGS = {0: "rax", 1: "rdx", 2: "rcx", 3: "rbx", 4: "rsi", 5: "rdi", 6: "rbp", 7: "rsp",
              8: "r8", 9: "r9", 10: "r10", 11: "r11", 12: "r12", 13: "r13", 14: "r14", 15: "r15",
              16: "rip"}  # column 16 is the "return address" column
RA_COLUMN = 16
MAX_FRAMES = 64

Reader = Callable[[int, int], bytes]


class UnwindError(ValueError):
    """Bad input to the unwinder (no CFI, unreadable file, bad registers). The message is one line."""


def _reg(n: int) -> str:
    return DWARF_REGS.get(n, f"dwarf{n}")


@dataclass(frozen=True)
class CfiRow:
    """One row of the CFI table: from ``pc`` on (until the next row), CFA = ``cfa_reg`` + ``cfa_offset``
    and each register in ``saved`` sits at CFA + offset. ``other`` holds rules this book does not execute
    (e.g. ``rbx: same_value``, ``CFA: expression``)."""

    pc: int
    cfa_reg: str
    cfa_offset: int
    saved: dict = field(default_factory=dict)   # reg name -> offset from CFA
    other: dict = field(default_factory=dict)   # reg name -> rule text

    def text(self) -> str:
        parts = [f"CFA={self.cfa_reg}{self.cfa_offset:+d}"]
        parts += [f"{r}=[CFA{o:+d}]" for r, o in sorted(self.saved.items(), key=lambda kv: -kv[1])]
        parts += [f"{r}={rule}" for r, rule in self.other.items()]
        return "  ".join(parts)


@dataclass(frozen=True)
class Fde:
    """A Frame Description Entry: the rows for the code in [start, end)."""

    start: int
    end: int
    rows: tuple
    function: str | None = None

    def row_at(self, pc: int) -> CfiRow | None:
        if not self.start <= pc < self.end:
            return None
        best = None
        for row in self.rows:  # rows are sorted by pc
            if row.pc <= pc:
                best = row
            else:
                break
        return best


def _decode_fde(entry) -> Fde:
    start = entry.header["initial_location"]
    rows = []
    for r in entry.get_decoded().table:
        cfa = r["cfa"]
        if cfa.expr is not None or cfa.reg is None:
            cfa_reg, cfa_off, other = "expr", 0, {"CFA": "expression"}
        else:
            cfa_reg, cfa_off, other = _reg(cfa.reg), cfa.offset, {}
        saved = {}
        for col, rule in r.items():
            if col in ("pc", "cfa"):
                continue
            if rule.type == "OFFSET":
                saved[_reg(col)] = rule.arg
            else:
                other[_reg(col)] = rule.type.lower()
        rows.append(CfiRow(r["pc"], cfa_reg, cfa_off, saved, other))
    rows.sort(key=lambda row: row.pc)
    return Fde(start, start + entry.header["address_range"], tuple(rows))


@dataclass
class CfiTable:
    """All FDEs of one binary, from ``.eh_frame`` (what the runtime unwinder uses) or ``.debug_frame``."""

    fdes: list
    section: str
    elf: ElfInfo | None = None

    @classmethod
    def from_elf(cls, path, section: str = "auto") -> "CfiTable":
        """``section`` is ".eh_frame", ".debug_frame" or "auto" (.eh_frame if present)."""
        from elftools.elf.elffile import ELFFile

        info = read_elf(path)  # raises ElfError (one line) on a bad file
        names = {s.name for s in info.sections}
        if section == "auto":
            section = ".eh_frame" if ".eh_frame" in names else ".debug_frame"
        if section not in (".eh_frame", ".debug_frame"):
            raise UnwindError(f"section must be .eh_frame or .debug_frame, not {section!r}")
        if section not in names:
            raise UnwindError(f"{Path(path).name} has no {section} section (no CFI to unwind with)")
        try:
            with open(existing_file(path), "rb") as f:
                dwarf = ELFFile(f).get_dwarf_info()
                entries = dwarf.EH_CFI_entries() if section == ".eh_frame" else dwarf.CFI_entries()
                fdes = [_decode_fde(e) for e in entries if type(e).__name__ == "FDE"]
        except Exception as e:  # pyelftools raises many types on corrupt CFI
            raise UnwindError(f"cannot decode {section} of {Path(path).name}: {type(e).__name__}") from None
        named = []
        for fde in fdes:
            sym = info.function_at(fde.start)
            named.append(Fde(fde.start, fde.end, fde.rows, sym.name if sym else None))
        return cls(sorted(named, key=lambda f: f.start), section, info)

    def fde_for(self, pc: int) -> Fde | None:
        return next((f for f in self.fdes if f.start <= pc < f.end), None)

    def row_at(self, pc: int) -> CfiRow | None:
        fde = self.fde_for(pc)
        return fde.row_at(pc) if fde else None

    def function(self, name: str) -> Fde | None:
        return next((f for f in self.fdes if f.function == name), None)


@dataclass(frozen=True)
class CfiEntry:
    """A CIE or FDE as encoded: the raw DW_CFA_* instructions, with factored offsets already multiplied out."""

    kind: str            # "CIE" or "FDE"
    offset: int          # position in the section
    start: int | None    # FDE: first pc covered
    end: int | None
    instructions: tuple  # e.g. ("DW_CFA_def_cfa: rsp+8", "DW_CFA_offset: rip at CFA-8")


def _describe(ins, code_align: int, data_align: int) -> str:
    name, a = getattr(ins.opcode, "FQN", f"DW_CFA_{int(ins.opcode):#x}"), ins.args
    if name in ("DW_CFA_def_cfa", "DW_CFA_def_cfa_sf"):
        return f"{name}: {_reg(a[0])}+{a[1] * (data_align if name.endswith('_sf') else 1)}"
    if name == "DW_CFA_def_cfa_offset":
        return f"{name}: {a[0]}"
    if name == "DW_CFA_def_cfa_register":
        return f"{name}: {_reg(a[0])}"
    if name in ("DW_CFA_offset", "DW_CFA_offset_extended", "DW_CFA_offset_extended_sf"):
        return f"{name}: {_reg(a[0])} at CFA{a[1] * data_align:+d}"
    if name.startswith("DW_CFA_advance_loc"):
        return f"{name}: +{a[0] * code_align}"
    if name in ("DW_CFA_restore", "DW_CFA_restore_extended", "DW_CFA_same_value", "DW_CFA_undefined"):
        return f"{name}: {_reg(a[0])}"
    return name + (f": {a}" if a else "")


def cfi_entries(path, section: str = ".eh_frame") -> list:
    """The CIEs and FDEs of ``section`` as encoded (what ``readelf -wf`` prints), not yet interpreted."""
    from elftools.elf.elffile import ELFFile

    read_elf(path)  # one-line ElfError on a bad file
    try:
        with open(existing_file(path), "rb") as f:
            dwarf = ELFFile(f).get_dwarf_info()
            raw = dwarf.EH_CFI_entries() if section == ".eh_frame" else dwarf.CFI_entries()
            out = []
            for e in raw:
                kind = type(e).__name__
                if kind not in ("CIE", "FDE"):
                    continue
                cie = e if kind == "CIE" else e.cie
                ca, da = cie.header["code_alignment_factor"], cie.header["data_alignment_factor"]
                start = e.header["initial_location"] if kind == "FDE" else None
                end = start + e.header["address_range"] if kind == "FDE" else None
                out.append(CfiEntry(kind, e.offset, start, end,
                                    tuple(_describe(i, ca, da) for i in e.instructions)))
            return out
    except Exception as e:
        raise UnwindError(f"cannot decode {section} of {Path(path).name}: {type(e).__name__}") from None


def assemble(source: str) -> Path:
    """Assemble x86-64 GNU-syntax ``source`` into an object file with GNU as (``as --64``), or with
    ``zig cc -c`` when GNU as is missing. Returns the cached object's path.

    The source passes the same guard as every GNU as run in the book (:func:`helpers.asm.check_gas_source`:
    no file reads, no macros, bounded sizes), and the object is built like every other cached build
    (:func:`helpers.toolchain._cached_build`: a private temporary folder, then one atomic rename)."""
    from helpers import toolchain
    from helpers.asm import MAX_SOURCE, AsmError, check_gas_source

    if not isinstance(source, str):
        raise UnwindError(f"source must be a str, not {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise UnwindError(f"source is too long ({len(source)} characters, limit {MAX_SOURCE})")
    try:
        check_gas_source(source)
    except AsmError as e:
        raise UnwindError(f"as: {e}") from None
    if not toolchain.have("as"):
        try:
            return toolchain.cc({"cfi.s": source}, compiler="zig", target="x86_64-linux-musl", output="obj").path
        except toolchain.ToolchainError as e:
            raise UnwindError(f"zig cc: {str(e).splitlines()[0] if str(e) else 'failed'}") from None
    tool = toolchain.require("as")

    def build(workdir: Path):
        (workdir / "cfi.s").write_text(source)
        p = toolchain.run([*tool.argv, "--64", "cfi.s", "-o", "cfi.o"], timeout=30, cwd=workdir)
        if p.returncode != 0:
            msg = [l for l in p.stderr.splitlines() if "Error" in l] or p.stderr.strip().splitlines() or ["?"]
            raise UnwindError("as: " + msg[0].split("Error: ")[-1][:300])
        return "cfi.o", "", ["as", "--64", "cfi.s", "-o", "cfi.o"], tool.version

    try:
        return toolchain._cached_build("as", toolchain._digest(tool.version, source), build).path
    except toolchain.ToolchainError as e:
        raise UnwindError(f"as: {e}") from None


@dataclass(frozen=True)
class Frame:
    """One unwound frame. ``pc`` is where that function is executing (a return address for callers);
    ``return_address`` is where it will return to; ``saved`` maps each callee-saved register this frame
    saved to (address it was saved at, value found there)."""

    index: int
    pc: int
    function: str
    cfa: int
    return_address: int
    saved: dict = field(default_factory=dict)
    rule: str = ""      # the CFI row used, or "rbp chain"

    def key(self) -> tuple:
        """What two unwinders must agree on."""
        return (self.function, self.pc, self.cfa, self.return_address)


@dataclass
class Unwind:
    method: str          # "cfi" or "fp"
    frames: list
    stopped: str         # why the walk ended, one line

    def chain(self) -> list:
        return [f.function for f in self.frames]

    def table(self) -> str:
        lines = [f"{self.method}: #  function  pc                  CFA                 return address"]
        for f in self.frames:
            lines.append(f"{self.method}: {f.index}  {f.function:<8}  {f.pc:#018x}  {f.cfa:#018x}  {f.return_address:#018x}")
        lines.append(f"{self.method}: stopped: {self.stopped}")
        return "\n".join(lines)


def _u64(read: Reader, addr: int) -> int:
    if not 0 <= addr <= 0xFFFF_FFFF_FFFF_FFF8:
        raise UnwindError(f"address {addr:#x} out of range")
    data = read(addr, 8)
    if data is None or len(data) != 8:
        raise UnwindError(f"cannot read 8 bytes at {addr:#x}")
    return int.from_bytes(data, "little")


def _safe_read(read: Reader) -> Reader:
    """Turn any exception from the memory reader (unmapped page, bad dump) into None."""
    def r(addr, size):
        try:
            return read(addr, size)
        except Exception:
            return None
    return r


def _check_regs(regs: dict):
    for name in ("rip", "rsp", "rbp"):
        if name not in regs:
            raise UnwindError(f"registers must include {name}")
        if not isinstance(regs[name], int) or not 0 <= regs[name] < 1 << 64:
            raise UnwindError(f"register {name} must be a 64-bit unsigned int, got {regs[name]!r}")


def _name(symbolize, pc: int) -> str:
    return symbolize(pc) or "??"


def unwind_cfi(table: CfiTable, regs: dict, read: Reader, *, symbolize=None, max_frames: int = MAX_FRAMES) -> Unwind:
    """Unwind with CFI rows, the way libgcc's unwind-dw2.c does.

    For every frame: find the row for pc (for callers, pc-1, so the row of the *call* is used, as
    ``_Unwind_GetIPInfo`` does), CFA = reg + offset, reload each saved register from CFA+offset; the
    return address (column 16) becomes the caller's pc and the CFA becomes the caller's rsp.
    """
    _check_regs(regs)
    read = _safe_read(read)
    symbolize = symbolize or _table_symbolizer(table)
    regs = {k: v for k, v in regs.items()}
    frames = []
    for i in range(max_frames):
        pc = regs["rip"]
        lookup = pc if i == 0 else pc - 1
        row = table.row_at(lookup)
        if row is None:
            return Unwind("cfi", frames, f"no CFI row for pc {pc:#x}" + (" (end of chain)" if pc == 0 else ""))
        if row.cfa_reg not in regs:
            return Unwind("cfi", frames, f"CFA rule {row.cfa_reg}{row.cfa_offset:+d} needs an unknown register")
        cfa = (regs[row.cfa_reg] + row.cfa_offset) & (2**64 - 1)
        saved = {}
        try:
            for reg, off in row.saved.items():
                addr = (cfa + off) & (2**64 - 1)
                saved[reg] = (addr, _u64(read, addr))
        except UnwindError as e:
            return Unwind("cfi", frames, f"frame {i} ({_name(symbolize, pc)}): {e}")
        if "rip" not in saved:
            return Unwind("cfi", frames, f"frame {i}: CFI row has no return-address rule")
        ra = saved["rip"][1]
        frames.append(Frame(i, pc, _name(symbolize, pc), cfa, ra,
                            {r: v for r, v in saved.items() if r != "rip"}, row.text()))
        for reg, (_, value) in saved.items():
            regs[reg] = value
        regs["rsp"] = cfa  # DWARF 5 §6.4.4: the CFA is the caller's SP at the call site
        if ra == 0:
            return Unwind("cfi", frames, "return address 0 (end of chain)")
    return Unwind("cfi", frames, f"stopped after {max_frames} frames")


def unwind_fp(regs: dict, read: Reader, *, symbolize=None, stack: tuple | None = None,
              max_frames: int = MAX_FRAMES) -> Unwind:
    """Walk the RBP chain: frame pointer fp, caller's fp = [fp], return address = [fp+8], CFA = fp+16.

    This only works if every function on the stack did ``push %rbp; mov %rsp,%rbp``; the walk
    checks that fp stays inside ``stack`` = (lo, hi) and grows upward, and stops with the reason if not.
    Frame 0 is the function containing rip; its CFA is taken from rbp, so rip must be past its prologue.
    """
    _check_regs(regs)
    read = _safe_read(read)
    symbolize = symbolize or (lambda pc: None)
    pc, fp = regs["rip"], regs["rbp"]
    frames, prev = [], None
    for i in range(max_frames):
        if fp == 0:
            return Unwind("fp", frames, "rbp = 0 (end of chain)")
        if stack and not stack[0] <= fp < stack[1]:
            return Unwind("fp", frames, f"frame {i} ({_name(symbolize, pc)}): rbp = {fp:#x} is not a stack address")
        if prev is not None and fp <= prev:
            return Unwind("fp", frames, f"frame {i}: rbp = {fp:#x} does not move up the stack")
        try:
            caller_fp, ra = _u64(read, fp), _u64(read, fp + 8)
        except UnwindError as e:
            return Unwind("fp", frames, f"frame {i} ({_name(symbolize, pc)}): {e}")
        frames.append(Frame(i, pc, _name(symbolize, pc), fp + 16, ra, {"rbp": (fp, caller_fp)}, "rbp chain"))
        if ra == 0:
            return Unwind("fp", frames, "return address 0 (end of chain)")
        if symbolize(ra) is None:
            return Unwind("fp", frames, f"frame {i}: return address {ra:#x} is in no function")
        prev, pc, fp = fp, ra, caller_fp
    return Unwind("fp", frames, f"stopped after {max_frames} frames")


def _table_symbolizer(table: CfiTable):
    if table.elf is not None:
        def sym(pc):
            s = table.elf.function_at(pc)
            return s.name if s else None
        return sym

    def by_fde(pc):
        f = table.fde_for(pc)
        return f.function if f else None
    return by_fde


def symbolizer(info: ElfInfo):
    """pc -> name of the FUNC symbol containing it, or None."""
    funcs = info.functions()

    def sym(pc):
        for s in funcs:
            if s.value <= pc < s.value + max(s.size, 1):
                return s.name
        return None
    return sym


# ------------------------------------------------------------------------------------- the C program

# The program chapter 4a stops and unwinds. noinline (and noipa for gcc) keeps four real frames; volatile
# and the global `sink` keep work after each call so no call becomes a tail call; `top` keeps six values
# alive across its call so that, without a frame pointer, the register allocator is free to use rbp.
# The global label bp_here marks a point in leaf() after its prologue: the breakpoint.
CHAIN_C = r'''
#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noipa))
#endif
volatile long sink;

NOINLINE long leaf(long n) {
    volatile long buf[4];
    buf[0] = n; buf[1] = n * 2;
    __asm__ volatile(".globl bp_here\nbp_here:" ::: "memory");
    sink = buf[0] + buf[1];
    return buf[1] + 1;
}
NOINLINE long mid(long n) { long r = leaf(n + 1); sink = r; return r + n * n; }
NOINLINE long top(long n) {
    long a = n * 3, b = n ^ 0x55, c = n + 11, d = n * n, e = n - 9, f = n << 4;
    long r = mid(a);
    sink = r;
    return r + a * b + c * d + e * f + b * c + d * e + f * a;
}
NOINLINE long entry(long n) { long r = top(n); sink = r; return r + n; }
'''
CHAIN = ("leaf", "mid", "top", "entry")
BREAKPOINT = "bp_here"


def build_chain(compiler: str = "zig", frame_pointer: bool = True, opt: str = "-O2"):
    """Compile CHAIN_C into a static, freestanding x86-64 executable (entry point ``entry``)."""
    from helpers import toolchain

    fp = "-fno-omit-frame-pointer" if frame_pointer else "-fomit-frame-pointer"
    if compiler == "zig":
        return toolchain.cc(CHAIN_C, compiler="zig", target="x86_64-freestanding-none", output="exe",
                            flags=(opt, fp, "-fasynchronous-unwind-tables", "-nostdlib", "-static", "-Wl,-e,entry"))
    if compiler == "gcc":
        return toolchain.cc(CHAIN_C, compiler="gcc", output="exe",
                            flags=(opt, fp, "-ffreestanding", "-nostdlib", "-static", "-fno-pie", "-no-pie",
                                   "-Wl,-e,entry", "-Wl,--build-id=none"))
    raise UnwindError(f"compiler must be 'zig' or 'gcc', not {compiler!r}")


# Emulated memory layout for stop_at (named constants, not literals in code)
STACK_TOP = 0x7FFF_0000_0000
STACK_SIZE = 0x10000
INITIAL_RBP = 0  # an outermost frame has rbp = 0, as the kernel leaves it at process start


@dataclass
class Stop:
    """A machine stopped at a breakpoint: registers, a memory reader, and the stack bounds."""

    path: Path
    regs: dict
    read: Reader
    stack: tuple
    breakpoint: int
    instructions: int | None = None

    def stack_words(self, n: int | None = None) -> list:
        """(address, value) for each 8-byte word from rsp up to the top of the stack."""
        lo, hi = self.regs["rsp"], self.stack[1]
        words = [(a, int.from_bytes(self.read(a, 8), "little")) for a in range(lo, hi, 8)]
        return words[:n] if n else words


def stop_at(path, breakpoint: str = BREAKPOINT, entry: str = "entry", arg: int = 5, *,
            max_insns: int = 100_000, timeout: float = 5.0) -> Stop:
    """Load a static ELF's PT_LOAD segments into ``helpers.emu.Machine``, call ``entry(arg)`` on a fresh
    stack whose outermost return address is 0, and run until pc reaches the symbol ``breakpoint``."""
    from helpers.elf import load_segments
    from helpers.emu import Machine

    try:
        info = read_elf(path)
    except ElfError as e:
        raise UnwindError(str(e)) from None
    bp, fn = info.symbol(breakpoint), info.symbol(entry)
    if bp is None or fn is None:
        raise UnwindError(f"{Path(path).name} has no symbol {breakpoint if bp is None else entry!r}")
    m = Machine("x86_64")
    for vaddr, data, _flags in load_segments(path):
        lo = vaddr & ~0xFFF
        m.map(lo, ((vaddr + len(data) + 0xFFF) & ~0xFFF) - lo)
        m.write(vaddr, data)
    lo = STACK_TOP - STACK_SIZE
    m.map(lo, STACK_SIZE)
    rsp = STACK_TOP - 64
    m.write(rsp, (0).to_bytes(8, "little"))  # the outermost return address: 0 ends every walk
    m.regs["rsp"], m.regs["rbp"], m.regs["rdi"] = rsp, INITIAL_RBP, arg
    out = m.run(start=fn.value, until=bp.value, max_insns=max_insns, timeout=timeout)
    regs = {r: m.regs[r] for r in DWARF_REGS.values()}
    if regs["rip"] != bp.value:
        raise UnwindError(f"did not reach {breakpoint}: {getattr(out, 'status', '?')} at pc {regs['rip']:#x}")
    return Stop(Path(path), regs, m.read, (lo, STACK_TOP), bp.value, getattr(out, "insns", None))


def unwind_both(path, **kw) -> tuple[Unwind, Unwind, Stop]:
    """Stop the binary at its breakpoint and unwind with CFI (from .eh_frame) and with the RBP chain."""
    stop = stop_at(path, **kw)
    table = CfiTable.from_elf(path)
    sym = symbolizer(table.elf)
    cfi = unwind_cfi(table, stop.regs, stop.read, symbolize=sym)
    fp = unwind_fp(stop.regs, stop.read, symbolize=sym, stack=stop.stack)
    return cfi, fp, stop


# ------------------------------------------------------------------------------- frame pointers in real code

def sets_up_frame_pointer(code: bytes, address: int = 0) -> bool:
    """Whether machine code begins (after an optional endbr64) with ``push %rbp`` followed, within the next
    three instructions and before rsp moves again, by ``mov %rsp,%rbp`` (gcc may schedule an unrelated
    instruction in between)."""
    from helpers.asm import disassemble

    insns = [i.text.replace(" ", "") for i in disassemble(code[:48], address=address) if i.mnemonic != "endbr64"]
    if not insns or insns[0] != "pushq%rbp":
        return False
    for text in insns[1:4]:
        if text == "movq%rsp,%rbp":
            return True
        if "%rsp" in text or text.startswith(("push", "pop", "call", "ret", "j")):
            return False
    return False


FP_PROBE_C = "long probe(long *p, long n) { long s = 0; for (long i = 0; i < n; i++) s += p[i] * i; return s; }\n"


def gcc_default_frame_pointer(opt: str) -> bool:
    """Compile FP_PROBE_C with gcc at ``opt`` and no -f*frame-pointer flag: does gcc set up rbp?"""
    from helpers import toolchain
    from helpers.elf import symbol_bytes

    b = toolchain.cc(FP_PROBE_C, compiler="gcc", flags=(opt,), output="obj")
    addr, code = symbol_bytes(b.path, "probe")
    return sets_up_frame_pointer(code, addr)


def gcc_optimizer_setting(opt: str, flag: str = "-fomit-frame-pointer") -> str:
    """What ``gcc -Q --help=optimizers`` reports for ``flag`` at ``opt`` ("[enabled]" or "[disabled]")."""
    from helpers import toolchain

    p = toolchain.run([*toolchain.require("gcc").argv, opt, "-Q", "--help=optimizers"], timeout=30, check=True)
    for line in p.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == flag:
            return parts[-1]
    raise UnwindError(f"gcc -Q --help=optimizers does not list {flag}")


# glibc's backtrace() (bminor/glibc debug/backtrace.c) calls libgcc's _Unwind_Backtrace, a CFI unwinder.
BACKTRACE_C = r'''
#include <execinfo.h>
#include <stdio.h>
#include <string.h>
#define NOINLINE __attribute__((noinline, noipa))
volatile long sink;
NOINLINE int level3(void) {
    void *pcs[16];
    int n = backtrace(pcs, 16);
    char **names = backtrace_symbols(pcs, n);
    for (int i = 0; i < n; i++) {           /* "./out(level2+0x12) [0x...]" -> "level2" */
        char *open = strchr(names[i], '('), *plus = open ? strpbrk(open, "+)") : 0;
        if (open && plus && plus > open + 1) printf("%.*s\n", (int)(plus - open - 1), open + 1);
        else printf("?\n");
    }
    sink = n;
    return n;
}
NOINLINE int level2(void) { int n = level3(); sink += n; return n + 1; }
NOINLINE int level1(void) { int n = level2(); sink += n; return n + 1; }
int main(void) { return level1() > 0 ? 0 : 1; }
'''
BACKTRACE_FUNCS = ("level3", "level2", "level1", "main")


def glibc_backtrace(frame_pointer: bool = False) -> tuple[list, dict]:
    """Build BACKTRACE_C with gcc -O2 (±frame pointer, -rdynamic for names), run it, and return
    (function names backtrace() found, {function: sets up rbp?})."""
    from helpers import toolchain
    from helpers.elf import symbol_bytes

    fp = "-fno-omit-frame-pointer" if frame_pointer else "-fomit-frame-pointer"
    b = toolchain.cc(BACKTRACE_C, compiler="gcc", flags=("-O2", fp, "-rdynamic"), output="exe")
    p = toolchain.run([b.path], timeout=20, check=True)
    prologues = {f: sets_up_frame_pointer(*reversed(symbol_bytes(b.path, f))) for f in BACKTRACE_FUNCS}
    return p.stdout.split(), prologues


# ------------------------------------------------------------------------- what the CFI directives encode

# Our own function, annotated with the same kind of directives the article shows (article §4.1), plus a
# caller so the emulator can execute the call. Both functions are local, so GNU as resolves the call itself.
CFI_DEMO_S = """
    .text
    .type caller, @function
caller:
    .cfi_startproc
    movq %rsp, %r12            # r12 = rsp just before the call
    call demo
    ret
    .cfi_endproc
    .size caller, .-caller

    .type demo, @function
demo:
    .cfi_startproc
    .cfi_def_cfa %rsp, 8       # at entry: CFA = rsp + 8
    .cfi_offset %rip, -8       # the return address is saved at CFA - 8
    pushq %rbp
    .cfi_def_cfa_offset 16     # rsp moved down by 8, so CFA = rsp + 16
    .cfi_offset %rbp, -16      # the caller's rbp is saved at CFA - 16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp # from here on CFA = rbp + 16
    movl $42, %eax
    popq %rbp
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_endproc
    .size demo, .-demo
"""


@dataclass
class EntryObservation:
    """What really happened around ``call demo``, next to what demo's CFI rows say."""

    rsp_before_call: int
    rsp_at_entry: int
    word_at_entry_rsp: int
    return_address: int       # the address of the instruction after the call
    cfa_at_entry: int         # demo's row at its first byte, evaluated
    cfa_in_body: int          # demo's row after the prologue (rbp-based), evaluated
    saved_rbp_slot: int       # CFA-16, read in the body
    caller_rbp: int


def observe_entry(source: str = CFI_DEMO_S, rbp: int = 0x1234_5678) -> EntryObservation:
    """Assemble ``source`` with GNU as, run caller() in ``helpers.emu.Machine`` and stop inside demo()
    at its first instruction and again after ``mov %rsp,%rbp``; evaluate demo's CFI rows at both points."""
    from elftools.elf.elffile import ELFFile

    from helpers.emu import Machine

    obj = assemble(source)
    with open(existing_file(obj), "rb") as f:
        text = ELFFile(f).get_section_by_name(".text").data()
    info, table = read_elf(obj), CfiTable.from_elf(obj)
    caller, demo = info.symbol("caller").value, info.symbol("demo").value
    rows = table.function("demo").rows
    body = next(r for r in rows if r.cfa_reg == "rbp")
    m = Machine("x86_64")
    seen = {}

    def at(name):
        def cb(machine, address):
            seen[name] = {r: machine.regs[r] for r in ("rsp", "rbp", "r12")}
            seen[name]["top"] = int.from_bytes(machine.read(machine.regs["rsp"], 8), "little")
        return cb

    base = m.code_base  # Machine.run(code) writes the code here
    m.hook_address(base + demo, at("entry"))
    m.hook_address(base + body.pc, at("body"))
    m.regs["rbp"] = rbp
    out = m.run(text, start=base + caller)
    if "entry" not in seen or "body" not in seen:
        raise UnwindError(f"the demo did not reach both stops: {out}")
    e, b = seen["entry"], seen["body"]
    entry_row = rows[0]
    cfa_entry = e[entry_row.cfa_reg] + entry_row.cfa_offset
    cfa_body = b["rbp"] + body.cfa_offset
    from helpers.asm import disassemble

    insns = disassemble(text[caller:demo], address=base + caller)
    call = next(i for i in insns if i.mnemonic.startswith("call"))
    call_end = call.address + call.size
    slot = int.from_bytes(m.read(cfa_body - 16, 8), "little")
    return EntryObservation(e["r12"], e["rsp"], e["top"], call_end, cfa_entry, cfa_body, slot, rbp)


def parse_frames_interp(text: str) -> dict:
    """Parse ``objdump --dwarf=frames-interp`` output: {pc: (CFA text, {reg: "c-16", ...})}.
    Lines that are not table rows are ignored, so any text parses (possibly to {})."""
    rows, cols = {}, None
    for line in text.splitlines():
        parts = line.split()
        if parts[:2] == ["LOC", "CFA"]:
            cols = parts[2:]
        elif cols is not None and len(parts) == len(cols) + 2 and parts[0] \
                and all(c in "0123456789abcdef" for c in parts[0]):
            rows[int(parts[0], 16)] = (parts[1], {c: v for c, v in zip(cols, parts[2:]) if v != "u"})
        elif not parts:
            cols = None
    return rows


def objdump_rows(path) -> dict:
    """Run ``objdump --dwarf=frames-interp`` on ``path`` and parse its table (see parse_frames_interp)."""
    from helpers import toolchain

    p = toolchain.run([*toolchain.require("objdump").argv, "--dwarf=frames-interp", str(existing_file(path))],
                      timeout=30, check=True)
    return parse_frames_interp(p.stdout)


def rows_agree_with_objdump(table: CfiTable, objdump: dict) -> list:
    """Rows where our decoding and objdump's differ (empty when they agree on every row of every FDE)."""
    bad = []
    for fde in table.fdes:
        for row in fde.rows:
            want = objdump.get(row.pc)
            ours = (f"{row.cfa_reg}{row.cfa_offset:+d}",
                    {("ra" if r == "rip" else r): f"c{o:+d}" for r, o in row.saved.items()})
            if want is None and len(fde.rows) == 1 and ours == ("rsp+8", {"ra": "c-8"}):
                continue  # an FDE with no instructions of its own: objdump prints no table, the CIE rule holds
            if want != ours:
                bad.append((row.pc, want, ours))
    return bad
