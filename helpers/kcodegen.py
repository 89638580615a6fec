"""kcodegen: the code-generation rules of the x86-64 Linux kernel, read from its build files and measured on
real machine code (C built with those rules, a real kbuild-built module, Go from the pinned toolchain).

Serves chapter 4d ("What kernel code generation forbids"). Pure Python over capstone and pyelftools.

What it reads (primary sources):

* the kernel's own build files -- the Debian kernel build tree (``linux-headers-<ver>-common``:
  ``arch/x86/Makefile``, ``Makefile``, ``arch/x86/include/asm/percpu.h``) and that kernel's ``.config``
  (``/boot/config-<ver>``); the same files are torvalds/linux ``arch/x86/Makefile`` and ``Makefile``.
  :func:`kernel_rules` finds the line that states each rule, tracks the ``ifdef``/``ifeq`` nesting around it
  and evaluates it against the configuration, so a rule that this kernel's configuration switches off
  (IBT on Debian 6.1) is reported as off, not assumed;
* a real kbuild product: a module shipped by Debian's ``linux-image`` package, compiled by kbuild;
* the compiler command kbuild really ran for a module (:func:`real_kbuild`, from helpers.linuxguest), against
  which the Makefile reading is checked;
* ELF files, with pyelftools (sections, relocations, symbols) and capstone (instructions).

API::

    tree = kernel_tree()                    -> KernelTree | None (the build tree and .config on this machine)
    read_config(text)                       -> {"CONFIG_X": "y", ...}   ("# CONFIG_X is not set" -> absent)
    conditional_lines(text)                 -> [MakeLine(lineno, text, conds)]  (Makefile and #ifdef nesting)
    eval_condition(cond, config)            -> True | False | None (None: depends on the compiler, not .config)
    kernel_rules(tree)                      -> [Finding]  one per RULES entry: file, line, flags, active
    kernel_cflags(findings)                 -> ["-mno-sse", ..., "-mcmodel=kernel", ...]  (C flags kbuild adds)
    rust_flags(tree)                        -> {rule key: "-Cno-redzone=y" | None}  (where Rust-for-Linux states a rule)
    rust_kernel_flags(tree)                 -> every stable -C flag kbuild gives rustc
    real_kbuild() / codegen_flags(flags)    -> the command kbuild really ran (helpers.linuxguest), its codegen part
    measure(path, only="")                  -> Measure: counts of every rule's footprint in an ELF file
    function_rows(path, names)              -> per-function SIMD / X15 / %fs counts
    listing(path, name, match)              -> a function's instructions, call targets named
    build_c / build_go / build_rust         -> cached builds of the chapter's sample (SAMPLE_C, SAMPLE_GO, SAMPLE_RS);
                                               gcc's objects are its recorded ones where gcc is missing
    gcc_recipes()                           -> the gcc builds of SAMPLE_C the chapter analyses (helpers.recorded)
    evidence()                              -> Evidence: kernel facts (live, or the recording) and every measurement
    matrix(ev)                              -> rows of the rules x compilers table, every cell computed
    python -m helpers.kcodegen record       -> writes helpers/recorded/kcodegen_kernel.json (and kcodegen_rust.json)

Bad input raises :class:`KcodegenError` (a ValueError) with one line.
"""
from __future__ import annotations

import glob
import hashlib
import json
import re
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import capstone
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from helpers import filecache, recorded, toolchain
from helpers.files import existing_file

RECORDING = Path(__file__).with_name("recorded") / "kcodegen_kernel.json"
REAL_MODULE = "kernel/fs/fat/fat.ko"  # a module Debian's kbuild compiled: vfat's core, many functions


class KcodegenError(ValueError):
    """Bad input to the module (not an ELF file, unknown rule, malformed build file). One line."""


# ------------------------------------------------------------------------------------------ the build tree
@dataclass(frozen=True)
class KernelTree:
    """A kernel build tree (the arch-independent ``-common`` part) and the configuration it was built with."""

    root: Path          # /usr/src/linux-headers-<ver>-common
    config: Path        # /boot/config-<ver>
    release: str        # e.g. 6.1.0-57-amd64
    modules: Path | None  # /lib/modules/<release>, where the kbuild-built modules are

    def read(self, rel: str) -> str:
        p = self.root / rel
        if not p.is_file():
            raise KcodegenError(f"{rel} not found in {self.root}")
        return p.read_text(errors="replace")


def kernel_tree(prefix: str = "/usr/src", boot: str = "/boot", modules: str = "/lib/modules") -> KernelTree | None:
    """The newest Debian kernel build tree with a matching ``config-<release>`` on this machine, or None."""
    for common in sorted(glob.glob(f"{prefix}/linux-headers-*-common"), reverse=True):
        ver = Path(common).name[len("linux-headers-"):-len("-common")]
        for cfg in sorted(glob.glob(f"{boot}/config-{ver}-*")):
            release = Path(cfg).name[len("config-"):]
            mod = Path(modules) / release
            if (Path(common) / "arch/x86/Makefile").is_file():
                return KernelTree(Path(common), Path(cfg), release, mod if mod.is_dir() else None)
    return None


def read_config(text: str) -> dict[str, str]:
    """A Kconfig ``.config``: ``CONFIG_X=y`` lines; ``# CONFIG_X is not set`` leaves X out."""
    if not isinstance(text, str):
        raise KcodegenError("read_config takes the text of a .config file")
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line.strip())
        if m:
            out[m.group(1)] = m.group(2).strip().strip('"')
    return out


# ------------------------------------------------------------------------------------------ conditionals
class Cond(NamedTuple):
    kind: str      # ifdef ifndef ifeq ifneq #ifdef #ifndef #if
    expr: str
    negated: bool  # True once the matching else was passed


class MakeLine(NamedTuple):
    lineno: int
    text: str
    conds: tuple


_OPEN = re.compile(r"^\s*(ifeq|ifneq|ifdef|ifndef)\s+(.*?)\s*$")
_CPP_OPEN = re.compile(r"^\s*#\s*(ifdef|ifndef|if)\s+(.*?)\s*$")


def conditional_lines(text: str) -> list[MakeLine]:
    """Every non-directive line of a Makefile (or C header) with the conditionals that enclose it.

    Backslash continuations are joined (the line number is the first one's). ``else ifdef X`` chains are
    handled as Make does: the ``else`` flips the enclosing test and opens a new one that the same ``endif``
    closes. An ``endif`` with nothing open raises :class:`KcodegenError`.
    """
    if not isinstance(text, str):
        raise KcodegenError("conditional_lines takes text")
    stack: list[list] = []  # each entry: [Cond, chained_depth]
    out = []
    raw = text.splitlines()
    i = 0
    while i < len(raw):
        lineno, line = i + 1, raw[i]
        while line.endswith("\\") and i + 1 < len(raw):
            i += 1
            line = line[:-1] + " " + raw[i].strip()
        i += 1
        s = line.strip()
        m = _OPEN.match(s) or _CPP_OPEN.match(s)
        if m:
            kind = ("#" if s.startswith("#") else "") + m.group(1)
            stack.append([Cond(kind, m.group(2), False), 0])
            continue
        if re.match(r"^(#\s*)?else\b", s):
            if not stack:
                raise KcodegenError(f"line {lineno}: else without an open conditional")
            top = stack[-1]
            top[0] = top[0]._replace(negated=True)
            rest = re.sub(r"^(#\s*)?else\s*", "", s)
            m = _OPEN.match(rest)
            if m:  # else ifdef X: a new test, closed by the same endif
                stack.append([Cond(m.group(1), m.group(2), False), 1])
            continue
        if re.match(r"^(#\s*)?(endif|elif)\b", s):
            if not stack:
                raise KcodegenError(f"line {lineno}: endif without an open conditional")
            if s.lstrip("# ").startswith("elif"):  # #elif: the earlier branch is over, a new test begins
                stack[-1][0] = Cond("#if", "", True)
                continue
            while stack and stack[-1][1]:
                stack.pop()
            stack.pop()
            continue
        out.append(MakeLine(lineno, line, tuple(c for c, _ in stack)))
    return out


def _subst(expr: str, config: dict) -> str | None:
    """Replace ``$(CONFIG_X)`` by its value; None if anything else remains to expand."""
    out = re.sub(r"\$\((CONFIG_\w+)\)", lambda m: config.get(m.group(1), ""), expr)
    return None if "$" in out else out


def eval_condition(cond: Cond, config: dict) -> bool | None:
    """Evaluate one enclosing conditional against a .config; None when it depends on the compiler."""
    kind = cond.kind.lstrip("#")
    if kind in ("ifdef", "ifndef"):
        name = cond.expr.strip()
        if not name.startswith("CONFIG_"):
            return None
        val = config.get(name, "") not in ("", "n")
        val = val if kind == "ifdef" else not val
    elif kind in ("ifeq", "ifneq"):
        e = cond.expr.strip()
        if e.startswith("(") and e.endswith(")"):
            depth, split = 0, None
            for j, ch in enumerate(e[1:-1]):
                depth += ch == "("
                depth -= ch == ")"
                if ch == "," and depth == 0:
                    split = j
                    break
            if split is None:
                return None
            a, b = e[1:-1][:split], e[1:-1][split + 1:]
        else:
            parts = re.findall(r'"([^"]*)"|\'([^\']*)\'', e)
            if len(parts) != 2:
                return None
            a, b = ("".join(p) for p in parts)
        a, b = _subst(a.strip(), config), _subst(b.strip(), config)
        if a is None or b is None:
            return None
        val = (a == b) if kind == "ifeq" else (a != b)
    else:  # #if EXPR: not evaluated
        return None
    return (not val) if cond.negated else val


def line_active(line: MakeLine, config: dict) -> bool | None:
    """False if any enclosing test is false; None if one depends on the compiler; else True."""
    results = [eval_condition(c, config) for c in line.conds]
    if any(r is False for r in results):
        return False
    return None if any(r is None for r in results) else True


# ------------------------------------------------------------------------------------------ the rules
@dataclass(frozen=True)
class Rule:
    key: str
    title: str
    file: str                 # path in the build tree (and in torvalds/linux)
    patterns: tuple           # regexes; every one must match an active line
    rust_file: str = ""
    rust_pattern: str = ""    # where Rust-for-Linux states the same rule, if it does


RULES = (
    Rule("sse", "no SSE/AVX (no FPU state in kernel code)", "arch/x86/Makefile",
         (r"^\s*KBUILD_CFLAGS \+= -mno-sse\b",), "arch/x86/Makefile", r"KBUILD_RUSTFLAGS \+= (-Ctarget-feature=-sse\S*)"),
    Rule("redzone", "no red zone (interrupts push onto the current stack)", "arch/x86/Makefile",
         (r"^\s*KBUILD_CFLAGS \+= -mno-red-zone",), "arch/x86/Makefile", r"KBUILD_RUSTFLAGS \+= (-Cno-redzone=y)"),
    Rule("cmodel", "kernel code model (code in the top 2 GiB)", "arch/x86/Makefile",
         (r"^\s*KBUILD_CFLAGS \+= -mcmodel=kernel",), "arch/x86/Makefile", r"KBUILD_RUSTFLAGS \+= (-Ccode-model=kernel)"),
    Rule("fentry", "ftrace: call __fentry__ at every entry", "Makefile",
         (r"^\s*CC_FLAGS_FTRACE\s*:= -pg", r"^\s*CC_FLAGS_FTRACE\s*\+= -mrecord-mcount", r"^\s*CC_FLAGS_FTRACE\s*\+= -mfentry"),
         "Makefile", r"(-Zinstrument-mcount\S*)"),
    Rule("retpoline", "retpolines and return thunks (Spectre v2, Retbleed)", "arch/x86/Makefile",
         (r"^\s*RETPOLINE_CFLAGS\s*:= ", r"^\s*RETHUNK_CFLAGS\s*:= ", r"^\s*KBUILD_CFLAGS \+= \$\(RETPOLINE_CFLAGS\)"),
         "arch/x86/Makefile", r"KBUILD_RUSTFLAGS \+= (-Zretpoline\S*)"),
    Rule("ibt", "IBT: endbr64 at every indirect-branch target", "arch/x86/Makefile",
         (r"^\s*KBUILD_CFLAGS \+= \$\(call cc-option,-fcf-protection=branch",),
         "arch/x86/Makefile", r"KBUILD_RUSTFLAGS \+= (-Zcf-protection=branch)"),
    Rule("unwind", "no asynchronous unwind tables (ORC or frame pointers instead)", "arch/x86/Makefile",
         (r"^\s*KBUILD_CFLAGS \+= -fno-asynchronous-unwind-tables",), "Makefile", r"(-Cforce-unwind-tables=n)"),
    Rule("percpu", "per-CPU data through %gs", "arch/x86/include/asm/percpu.h",
         (r"^\s*#define __percpu_seg\s+gs",)),
)
RULE_KEYS = tuple(r.key for r in RULES)

# Flags kbuild adds that are no rule of the table but shape the sample's code the same way.
EXTRA_FLAGS = (
    ("Makefile", r"^\s*KBUILD_CFLAGS \+= -O2$"),
    ("Makefile", r"^\s*KBUILD_CFLAGS\s*:= .*-fno-PIE"),
    ("Makefile", r"^\s*stackp-flags-\$\(CONFIG_STACKPROTECTOR_STRONG\)\s*:= (-fstack-protector-strong)"),
    ("arch/x86/Makefile", r"^\s*KBUILD_CFLAGS \+= -mharden-sls=all"),
    ("arch/x86/Makefile", r"^\s*KBUILD_CFLAGS \+= -fno-jump-tables"),
    ("arch/x86/Makefile", r"^\s*KBUILD_CFLAGS \+= \$\(call cc-option,-fcf-protection=none\)"),
)
# The -fno-PIE line holds many warning flags; only these code-generation flags are taken from it.
_CODEGEN = re.compile(r"^-(m|f(no-)?(PIE|pic|stack|cf-|asynchronous|jump|omit)|O\d|pg)")


class Finding(NamedTuple):
    key: str
    file: str
    lines: tuple          # ((lineno, text), ...) the lines that state the rule
    flags: tuple          # the compiler flags those lines add
    active: bool          # switched on by this kernel's configuration
    note: str             # e.g. "off: CONFIG_X86_KERNEL_IBT is not set"


def flags_of(line: str) -> list[str]:
    """Compiler flags a kbuild line adds: ``$(call cc-option,A[,B])`` gives A; plain ``-x`` words."""
    text = re.sub(r"\$\(call cc-option,\s*([^,)]*)(?:,[^)]*)?\)", r" \1 ", line)
    text = re.sub(r"\$\([^)]*\)", " ", text)
    rhs = re.split(r"[:+]?=", text, maxsplit=1)
    words = rhs[1].split() if len(rhs) == 2 else []
    return [w for w in words if w.startswith("-")]


def _stackp_active(line: str, config: dict) -> bool:
    m = re.search(r"stackp-flags-\$\((CONFIG_\w+)\)", line)
    return bool(m) and config.get(m.group(1)) == "y"


def _find(lines: list[MakeLine], pattern: str, config: dict):
    """The first line matching ``pattern`` that the configuration does not switch off (else the first match)."""
    hits = [ln for ln in lines if re.search(pattern, ln.text)]
    on = [ln for ln in hits if line_active(ln, config) is not False
          and (not re.search(r"stackp-flags-\$\(", ln.text) or _stackp_active(ln.text, config))]
    return (on[0], True) if on else ((hits[0], False) if hits else (None, False))


def _off_reason(line: MakeLine, config: dict) -> str:
    for c in line.conds:
        if eval_condition(c, config) is False:
            name = re.search(r"CONFIG_\w+", c.expr)
            return f"off: {name.group(0)} is not set" if name and not c.negated else f"off: {c.kind} {c.expr}"
    return "off"


def _config(tree: KernelTree, overrides: dict | None) -> dict:
    config = read_config(tree.config.read_text(errors="replace"))
    config.update(overrides or {})
    return {k: v for k, v in config.items() if v != ""}


def kernel_rules(tree: KernelTree, overrides: dict | None = None) -> list[Finding]:
    """Each rule of :data:`RULES` located in the build tree and evaluated against the tree's .config
    (``overrides`` changes options first, e.g. ``{"CONFIG_X86_KERNEL_IBT": "y"}``; ``""`` unsets one)."""
    config = _config(tree, overrides)
    parsed = {}
    out = []
    for rule in RULES:
        lines = parsed.setdefault(rule.file, conditional_lines(tree.read(rule.file)))
        found, flags, active, note = [], [], True, ""
        for pat in rule.patterns:
            ln, on = _find(lines, pat, config)
            if ln is None:
                raise KcodegenError(f"rule {rule.key}: no line matching {pat!r} in {rule.file}")
            found.append((ln.lineno, ln.text.strip()))
            flags += [f for f in flags_of(ln.text) if f not in flags]
            if not on and active:
                active, note = False, _off_reason(ln, config)
        out.append(Finding(rule.key, rule.file, tuple(found), tuple(flags), active, note))
    return out


def kernel_cflags(tree: KernelTree, overrides: dict | None = None) -> list[str]:
    """The code-generation flags kbuild adds for x86-64 C in this configuration, read from the build files."""
    findings = kernel_rules(tree, overrides)
    config = _config(tree, overrides)
    flags: list[str] = []
    for f in findings:
        if f.active:
            flags += [x for x in f.flags if x not in flags]
    for file, pat in EXTRA_FLAGS:
        ln, on = _find(conditional_lines(tree.read(file)), pat, config)
        if ln is not None and on:
            flags += [x for x in flags_of(ln.text) if _CODEGEN.match(x) and x not in flags]
    return flags


def rust_flags(tree: KernelTree) -> dict[str, str | None]:
    """Where Rust-for-Linux states each rule (``KBUILD_RUSTFLAGS`` in the same Makefiles), or None."""
    out = {}
    for rule in RULES:
        if not rule.rust_pattern:
            out[rule.key] = None
            continue
        m = re.search(rule.rust_pattern, tree.read(rule.rust_file))
        out[rule.key] = m.group(1) if m else None
    return out


# ------------------------------------------------------------------------------------------ measuring ELF
_SIMD = re.compile(r"%[xyz]mm\d+")
_BELOW_SP = re.compile(r"(?<![\w$])-0x[0-9a-f]+\(%rsp\b")
_INDIRECT = re.compile(r"^\*")


@dataclass
class Measure:
    """What an ELF file's code shows for each rule (counts over every function in ``.text``-like sections)."""

    path: str
    kind: str                      # "object" (ET_REL) or "executable"
    insns: int = 0
    simd: int = 0                  # instructions naming an xmm/ymm/zmm register
    x15: int = 0                   # ... of which name %xmm15 (Go's fixed zero register)
    simd_funcs: list = field(default_factory=list)   # a few function names that use SIMD
    simd_nfuncs: int = 0                              # how many functions do
    below_sp: int = 0              # memory operands at a negative offset from %rsp (the red zone)
    below_sp_funcs: list = field(default_factory=list)
    fs: int = 0                    # %fs-relative accesses (user-space TLS)
    gs: int = 0                    # %gs-relative accesses (kernel per-CPU data, kernel stack canary)
    fs_funcs: list = field(default_factory=list)
    fs_nfuncs: int = 0
    endbr64: int = 0
    funcs: int = 0
    fentry_calls: int = 0          # call sites relocated against __fentry__
    indirect: int = 0              # call/jmp through a register or memory (what retpolines replace)
    thunk_calls: int = 0           # calls/jumps to retpoline thunks (__x86_indirect_thunk_*, runtime.retpoline*)
    return_thunks: int = 0         # jmp __x86_return_thunk
    rets: int = 0                  # plain ret instructions
    relocs: dict = field(default_factory=dict)       # relocation type -> count (objects only)
    sections: dict = field(default_factory=dict)     # unwind/ftrace/retpoline bookkeeping sections -> size
    text_low: int = 0              # lowest address of executable code (executables)

    def row(self) -> dict:
        return asdict(self)


SECTIONS_OF_INTEREST = (".eh_frame", ".debug_frame", ".orc_unwind", ".orc_unwind_ip", "__mcount_loc",
                        ".retpoline_sites", ".return_sites", ".ibt_endbr_seal", ".gopclntab")


def _reloc_targets(elf: ELFFile) -> tuple[dict, dict]:
    """{(section index, offset): symbol name} for relocations in code sections, and their type histogram."""
    from elftools.elf.descriptions import describe_reloc_type
    targets, types = {}, {}
    symtab = elf.get_section_by_name(".symtab")
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection):
            continue
        applied = elf.get_section(sec["sh_info"])
        code = bool(applied["sh_flags"] & 0x4)  # SHF_EXECINSTR
        if not code:  # data and debug relocations say nothing about how code addresses things
            continue
        for r in sec.iter_relocations():
            t = describe_reloc_type(r["r_info_type"], elf)
            types[t] = types.get(t, 0) + 1
            if symtab is not None:
                sym = symtab.get_symbol(r["r_info_sym"])
                targets[(sec["sh_info"], r["r_offset"])] = sym.name
    return targets, types


@lru_cache(maxsize=32)
def _measure_cached(path: str, digest: str, only: str) -> Measure:
    """_measure_file through helpers.filecache: each notebook's kernel would count the same builds again."""
    m = filecache.cached("kcodegen-measure", path, only, lambda: asdict(_measure_file(path, only)),
                         _measure_from_json, _MEASURE_READERS)
    return replace(m, path=path)


def _measure_from_json(data: dict) -> Measure:
    """A cached Measure, checked field by field against the type of each field's default (a name: str)."""
    kinds = {f.name: str if f.default is MISSING and f.default_factory is MISSING else
             type(f.default if f.default is not MISSING else f.default_factory()) for f in fields(Measure)}
    if not isinstance(data, dict) or set(data) != set(kinds):
        raise ValueError("a cached Measure has exactly Measure's fields")
    for name, value in data.items():
        t = kinds[name]
        ok = type(value) is t and (
            value >= 0 if t is int else
            all(type(v) is str for v in value) if t is list else
            all(type(k) is str and type(v) is int for k, v in value.items()) if t is dict else True)
        if not ok:
            raise ValueError(f"bad cached Measure field {name}")
    return Measure(**data)


def _measure_file(path: str, only: str) -> Measure:
    with open(existing_file(path), "rb") as fh:
        try:
            elf = ELFFile(fh)
        except ELFError as e:
            raise KcodegenError(f"{Path(path).name}: not an ELF file ({e})") from None
        if elf["e_machine"] != "EM_X86_64":
            raise KcodegenError(f"{Path(path).name}: not an x86-64 ELF file")
        rel = elf["e_type"] == "ET_REL"
        m = Measure(path, "object" if rel else "executable")
        for name in SECTIONS_OF_INTEREST:
            s = elf.get_section_by_name(name)
            if s is not None:
                m.sections[name] = s["sh_size"]
        targets, m.relocs = _reloc_targets(elf) if rel else ({}, {})
        symtab = elf.get_section_by_name(".symtab")
        funcs = []
        if isinstance(symtab, SymbolTableSection):
            for s in symtab.iter_symbols():
                if s["st_info"]["type"] == "STT_FUNC" and s["st_size"] > 0 and isinstance(s["st_shndx"], int):
                    funcs.append((s["st_shndx"], s["st_value"], s["st_size"], s.name))
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        cs.syntax = capstone.CS_OPT_SYNTAX_ATT
        cs.skipdata = True
        seen = set()
        lows = []
        names = {} if rel else {v: n for _, v, _, n in funcs}
        for shndx, value, size, name in sorted(funcs):
            if (shndx, value) in seen or not name.startswith(only):
                continue
            seen.add((shndx, value))
            sec = elf.get_section(shndx)
            if not sec["sh_flags"] & 0x4:
                continue
            base = 0 if rel else sec["sh_addr"]
            off = value - base
            code = sec.data()[off:off + size]
            lows.append(value)
            m.funcs += 1
            _scan(m, cs, code, value, name, off, shndx, targets, names)
        m.text_low = min(lows) if lows and not rel else 0
    m.simd_nfuncs, m.fs_nfuncs = len(set(m.simd_funcs)), len(set(m.fs_funcs))
    m.simd_funcs = sorted(set(m.simd_funcs))[:8]
    m.fs_funcs = sorted(set(m.fs_funcs))[:8]
    m.below_sp_funcs = sorted(set(m.below_sp_funcs))[:8]
    return m


def _scan(m: Measure, cs, code: bytes, addr: int, name: str, sec_off: int, shndx: int, targets: dict, names: dict):
    # objects: a call's target is the relocation at its rel32 field; executables: the symbol at the address
    first = True
    for a, size, mnem, ops in cs.disasm_lite(code, addr):
        m.insns += 1
        if first and mnem == "endbr64":
            m.endbr64 += 1
        first = False
        if _SIMD.search(ops):
            m.simd += 1
            m.x15 += "%xmm15" in ops
            m.simd_funcs.append(name)
        if not mnem.startswith("lea") and _BELOW_SP.search(ops):  # lea only computes an address; it touches no memory
            m.below_sp += 1
            m.below_sp_funcs.append(name)
        if "%fs:" in ops:
            m.fs += 1
            m.fs_funcs.append(name)
        m.gs += "%gs:" in ops
        if mnem in ("ret", "retq"):
            m.rets += 1
        if mnem in ("call", "callq", "jmp", "jmpq"):
            if _INDIRECT.match(ops):
                m.indirect += 1
            if targets:
                target = targets.get((shndx, sec_off + (a - addr) + 1))
            else:
                target = names.get(int(ops, 16)) if ops.startswith("0x") else None
            if target:
                m.fentry_calls += target == "__fentry__"
                m.thunk_calls += ("__x86_indirect_thunk" in target) or ("retpoline" in target)
                m.return_thunks += "__x86_return_thunk" in target


# part of filecache's key: an edit of the counting code or of its patterns counts every build again
_MEASURE_READERS = filecache.source_digest(_measure_file, _scan, _reloc_targets, Measure) + repr(
    (SECTIONS_OF_INTEREST, _SIMD.pattern, _BELOW_SP.pattern, _INDIRECT.pattern))


def measure(path, only: str = "") -> Measure:
    """Count each rule's footprint in an x86-64 ELF object or executable (cached by content).

    ``only`` keeps the functions whose names start with it (e.g. ``"main."`` for a Go program's own code).
    """
    p = existing_file(path, error=KcodegenError)
    if not isinstance(only, str):
        raise KcodegenError("only must be a function-name prefix (a string)")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    return _measure_cached(str(p), digest, only)


def function_code(path, name: str) -> tuple[int, bytes]:
    """(address, bytes) of one function symbol of an ELF file."""
    from helpers import elf as _elf
    try:
        return _elf.symbol_bytes(path, name)
    except _elf.ElfError as e:
        raise KcodegenError(str(e)) from None


def rust_kernel_flags(tree: KernelTree, overrides: dict | None = None) -> list[str]:
    """Every stable ``-C`` code-generation flag kbuild gives rustc (``KBUILD_RUSTFLAGS`` in the top-level and
    arch Makefiles, on lines this configuration keeps). ``-Z`` flags need a nightly compiler and are left out."""
    config = _config(tree, overrides)
    out: list[str] = []
    for rel in ("Makefile", "arch/x86/Makefile"):
        for ln in conditional_lines(tree.read(rel)):
            if not re.match(r"^\s*KBUILD_RUSTFLAGS\s*[:+]?=", ln.text) or line_active(ln, config) is False:
                continue
            for w in flags_of(ln.text):
                if w.startswith("-C") and not w.endswith("=") and w not in out:
                    out.append(w)
    return out


# ------------------------------------------------------------------------------------------ real kbuild
CODEGEN_FLAG = re.compile(r"-m[a-z0-9][\w=.,-]*|-f(?!macro-prefix-map)[A-Za-z0-9][\w=+.-]*|-O[0-3s]|-pg|-std=[\w+]+")


def real_kbuild():
    """The compiler command kbuild really ran for an x86-64 module (helpers.linuxguest.kbuild_flags: a real
    module build, or its recording), or None where that helper cannot say."""
    try:
        from helpers import linuxguest
        k = linuxguest.kbuild_flags()
    except Exception as e:  # noqa: BLE001 - any failure of the VM helper means: no real build to compare with
        return {"error": str(e).splitlines()[0] if str(e) else type(e).__name__}
    return {"compiler": k.compiler, "flags": list(k.flags), "objtool": list(k.objtool), "release": k.release,
            "recorded": k.recorded}


def codegen_flags(flags) -> list[str]:
    """The code-generation part of a compiler command line (machine, -f, optimisation and ftrace flags)."""
    return [f for f in flags if CODEGEN_FLAG.fullmatch(f)]


# ------------------------------------------------------------------------------------------ the samples
# One small unit, written twice. Each function provokes one rule: clear_big (a 64-byte store: SIMD in user
# space), scratch (a leaf with a local array: the red zone), apply (an indirect call: retpolines), lookup
# (the address of a global: the code model), hit (a per-CPU counter through %gs, as the kernel's percpu.h).
SAMPLE_C = r"""struct item { struct item *next; long key; };
struct big { long a[8]; };
long table[16];
extern long __seg_gs cpu_hits;   /* per-CPU data: %gs-relative, like the kernel's this_cpu_inc() */
typedef long (*op_fn)(long);

long sum_keys(const struct item *it) { long s = 0; for (; it; it = it->next) s += it->key; return s; }
void clear_big(struct big *b) { *b = (struct big){0}; }
long apply(op_fn f, long x) { return f(x) + 1; }
long *lookup(long i) { return &table[i & 15]; }
long scratch(long k) { volatile long a[8]; for (int i = 0; i < 8; i++) a[i] = i * k; return a[k & 7]; }
void hit(void) { cpu_hits++; }
"""

SAMPLE_GO = r"""package main

type item struct {
	next *item
	key  int
}
type big struct{ a [8]int }

var table [16]int
var head item

//go:noinline
func sumKeys(it *item) int {
	s := 0
	for ; it != nil; it = it.next {
		s += it.key
	}
	return s
}

//go:noinline
func clearBig(b *big) { *b = big{} }

//go:noinline
func apply(f func(int) int, x int) int { return f(x) + 1 }

//go:noinline
func lookup(i int) *int { return &table[i&15] }

//go:noinline
func link(a, b *item) { a.next = b }

func main() {
	var b big
	clearBig(&b)
	n := &item{key: 2}
	link(&head, n)
	println(sumKeys(&head), apply(func(x int) int { return x * 2 }, 3), *lookup(5), b.a[0])
}
"""

HELLO_GO = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello, world") }\n'
# The same with cgo linked in (import "C"): the runtime then runs with a C thread library's TLS.
HELLO_CGO_GO = 'package main\n\nimport "C"\nimport "fmt"\n\nfunc main() { fmt.Println("hello, world") }\n'

# -T takes a signed 64-bit value: -0x7f000000 is 0xffffffff81000000, where x86-64 Linux links its text
# (arch/x86/include/asm/page_64_types.h: __START_KERNEL_map + the physical start).
KERNEL_TEXT = -0x7F000000
USER_CFLAGS = ("-O2",)


def c_compiler(flags=None) -> str:
    """gcc where installed (the compiler Debian builds its kernel with) or, given ``flags``, where gcc's build of
    the sample with them is recorded; else zig cc (clang)."""
    if flags is not None:
        return "gcc" if recorded.gcc_available(SAMPLE_C, tuple(flags), "obj") else "zig"
    return "gcc" if toolchain.have("gcc") else "zig"


def cflags_for(tree_or_flags, compiler: str, ibt: bool = False) -> list[str]:
    """The kernel's C flags for ``compiler``: read from the tree with CC_IS_GCC or CC_IS_CLANG set as that
    compiler would set it (or a recorded flag list); ``ibt=True`` evaluates as if CONFIG_X86_KERNEL_IBT=y."""
    if isinstance(tree_or_flags, KernelTree):
        flags = kernel_cflags(tree_or_flags, overrides=_overrides(compiler, ibt))
    else:
        flags = list(tree_or_flags[compiler if compiler in tree_or_flags else "gcc"]["ibt" if ibt else "base"])
    if compiler == "zig":
        # zig refuses a stack protector without a libc to provide __stack_chk_fail; clang has no
        # -mrecord-mcount (a clang-built kernel selects CONFIG_FTRACE_MCOUNT_USE_OBJTOOL instead)
        flags = [f for f in flags if not f.startswith(("-fstack-protector", "-mrecord-mcount"))]
    return flags


def _overrides(compiler: str, ibt: bool) -> dict:
    cc = {"CONFIG_CC_IS_GCC": "y", "CONFIG_CC_IS_CLANG": ""} if compiler == "gcc" else \
         {"CONFIG_CC_IS_GCC": "", "CONFIG_CC_IS_CLANG": "y"}
    return {**cc, **({"CONFIG_X86_KERNEL_IBT": "y"} if ibt else {})}


def build_c(flags, compiler: str | None = None) -> toolchain.Build:
    """The sample compiled to an object (compiler: :func:`c_compiler` of these flags by default). gcc's is its
    recorded object where gcc is missing; zig builds for a freestanding x86-64 target (no libc, like the kernel)."""
    compiler = compiler or c_compiler(flags)
    if compiler == "gcc":
        return recorded.gcc_build(SAMPLE_C, flags=tuple(flags), output="obj")
    target = "x86_64-freestanding-none" if compiler == "zig" else None
    return toolchain.cc(SAMPLE_C, compiler=compiler, target=target, flags=tuple(flags), output="obj")


def build_go(source: str = SAMPLE_GO, *, spectre: bool = False, kernel_text: bool = False,
             cgo: bool = False) -> toolchain.Build:
    """The pinned Go build of ``source``; ``spectre`` adds ``-spectre=ret`` to every package (compiler and
    assembler: retpolines for indirect calls), ``kernel_text`` links the text at 0xffffffff81000000."""
    return toolchain.go_build(
        source,
        gcflags="all=-spectre=ret" if spectre else None,
        flags=("-asmflags=all=-spectre=ret",) if spectre else (),
        ldflags=f"-T={KERNEL_TEXT:#x}" if kernel_text else None, cgo=cgo)


# The same unit in Rust (no_std, extern "C" so the symbols keep their names), for Rust-for-Linux's flags.
SAMPLE_RS = r"""#![no_std]
pub struct Item { pub next: *const Item, pub key: i64 }
pub struct Big { pub a: [i64; 8] }
#[no_mangle] pub static mut TABLE: [i64; 16] = [0; 16];
#[no_mangle] pub unsafe extern "C" fn sum_keys(mut it: *const Item) -> i64 {
    let mut s = 0; while !it.is_null() { s += (*it).key; it = (*it).next; } s }
#[no_mangle] pub extern "C" fn clear_big(b: &mut Big) { *b = Big { a: [0; 8] }; }
#[no_mangle] pub extern "C" fn apply(f: extern "C" fn(i64) -> i64, x: i64) -> i64 { f(x) + 1 }
#[no_mangle] pub unsafe extern "C" fn lookup(i: i64) -> *mut i64 { core::ptr::addr_of_mut!(TABLE[(i & 15) as usize]) }
#[no_mangle] pub extern "C" fn scratch(k: i64) -> i64 {
    let mut a = [0i64; 8];
    for i in 0..8 { unsafe { core::ptr::write_volatile(&mut a[i], i as i64 * k) } }
    unsafe { core::ptr::read_volatile(&a[(k & 7) as usize]) } }
#[panic_handler] fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }
"""
RUST_RECORDING = RECORDING.with_name("kcodegen_rust.json")
RUST_USER_FLAGS = ("-Copt-level=2", "-Cpanic=abort")


def rustc() -> str | None:
    """rustc on this machine (not one of the book's pins: the Rust column falls back on a recording)."""
    import shutil
    found = shutil.which("rustc") or str(Path.home() / ".cargo/bin/rustc")
    return found if Path(found).is_file() else None


def build_rust(flags) -> Path:
    """Compile :data:`SAMPLE_RS` to an object with rustc and ``flags`` (cached by rustc version and flags)."""
    exe = rustc()
    if exe is None:
        raise toolchain.ToolMissing("rustc not found (the chapter shows a recording instead)")
    if not all(isinstance(f, str) and re.fullmatch(r"-C[a-z-]+=[\w.,+-]+", f) for f in flags):
        raise KcodegenError("Rust flags must be -Cname=value code-generation options")
    version = toolchain.run([exe, "--version"], timeout=30, check=True).stdout.strip()
    key = hashlib.sha256(json.dumps([version, SAMPLE_RS, list(flags)]).encode()).hexdigest()[:20]
    out_dir = toolchain.CACHE_DIR / "builds" / f"rustc-{key}"
    obj = out_dir / "out.o"
    if not obj.is_file():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "k.rs").write_text(SAMPLE_RS)
        toolchain.run([exe, "--edition=2021", "--crate-type=lib", "--emit=obj", "-o", "out.o", *flags, "k.rs"],
                      timeout=120, cwd=out_dir, check=True)
    return obj


def _sample_digest() -> str:
    return hashlib.sha256(SAMPLE_RS.encode()).hexdigest()[:16]


def rust_measure(kernel_flags, live: bool = False) -> dict:
    """The Rust sample measured with user-space flags and with the kernel's: from the recording when it was
    made from this sample with these flags (rustc is not one of the book's pins, so every machine shows the
    same numbers), else by running rustc where it is installed. ``live=True`` always runs rustc."""
    saved = json.loads(RUST_RECORDING.read_text()) if RUST_RECORDING.exists() else None
    current = saved is not None and saved.get("flags") == list(kernel_flags) and saved.get("sample") == _sample_digest()
    if current and not live:
        return {**saved, "provenance": f"recorded by `python -m helpers.kcodegen record` with {saved['rustc']}",
                "recorded": True}
    exe = rustc()
    if exe is None:
        raise toolchain.ToolMissing("rustc not found and no recording of the Rust sample with these flags")
    version = toolchain.run([exe, "--version"], timeout=30, check=True).stdout.strip()
    return {"user": measure(build_rust(RUST_USER_FLAGS)).row(), "kernel": measure(build_rust(kernel_flags)).row(),
            "provenance": f"run here with {version}", "rustc": version, "flags": list(kernel_flags),
            "sample": _sample_digest(), "recorded": False}


# ------------------------------------------------------------------------------------------ kernel headers
def pt_regs_size(header: str) -> int:
    """sizeof(struct pt_regs) for x86-64 from arch/x86/include/asm/ptrace.h: the struct after ``#else /*
    __i386__ */``, every member an ``unsigned long`` (8 bytes); anything else raises."""
    part = header.split("#else /* __i386__ */", 1)
    if len(part) != 2:
        raise KcodegenError("ptrace.h: no x86-64 branch (#else /* __i386__ */) found")
    m = re.search(r"struct pt_regs \{(.*?)\n\};", part[1], re.S)
    if not m:
        raise KcodegenError("ptrace.h: no struct pt_regs in the x86-64 branch")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    members = [ln.strip() for ln in body.splitlines() if ln.strip()]
    if not members or not all(re.fullmatch(r"unsigned long \w+;", ln) for ln in members):
        raise KcodegenError("ptrace.h: struct pt_regs has members other than unsigned long")
    return 8 * len(members)


def _page_order_size(header: str, name: str, kasan: bool) -> int:
    """PAGE_SIZE << (N + KASAN_STACK_ORDER) from asm/page_64_types.h."""
    m = re.search(rf"#define {name}_ORDER\s+\((\d+) \+ KASAN_STACK_ORDER\)", header)
    if not m:
        raise KcodegenError(f"page_64_types.h: no {name}_ORDER")
    return 4096 << (int(m.group(1)) + (1 if kasan else 0))


def kernel_stack_facts(tree=None) -> dict:
    """pt_regs size and the kernel's interrupt stack sizes, read from the kernel's headers (or None)."""
    tree = tree or kernel_tree()
    if tree is None:
        return {}
    cfg = read_config(tree.config.read_text(errors="replace"))
    kasan = cfg.get("CONFIG_KASAN") == "y"
    pg = tree.read("arch/x86/include/asm/page_64_types.h")
    return {"pt_regs": pt_regs_size(tree.read("arch/x86/include/asm/ptrace.h")),
            "irq_stack": _page_order_size(pg, "IRQ_STACK", kasan),
            "exception_stack": _page_order_size(pg, "EXCEPTION_STACK", kasan),
            "thread_stack": _page_order_size(pg, "THREAD_SIZE", kasan)}



def header_lines(tree: KernelTree, rel: str, pattern: str) -> list[str]:
    """Lines of a kernel header that match ``pattern`` (for citing a definition verbatim)."""
    return [ln.strip() for ln in tree.read(rel).splitlines() if re.search(pattern, ln)]


# ------------------------------------------------------------------------------------------ evidence
CONFIG_KEYS = ("CONFIG_UNWINDER_ORC", "CONFIG_UNWINDER_FRAME_POINTER", "CONFIG_RETPOLINE", "CONFIG_RETHUNK",
               "CONFIG_X86_KERNEL_IBT", "CONFIG_FUNCTION_TRACER", "CONFIG_DYNAMIC_FTRACE", "CONFIG_STACKPROTECTOR_STRONG",
               "CONFIG_SLS", "CONFIG_OBJTOOL", "CONFIG_CC_IS_GCC", "CONFIG_RUST", "CONFIG_VMAP_STACK")


def kernel_facts(tree: KernelTree | None = None) -> dict:
    """Everything read from this machine's kernel: rules, flags per compiler, Rust flags, config, a kbuild
    module's measurement. JSON-able (the same form is saved as the recording)."""
    tree = tree or kernel_tree()
    if tree is None:
        raise KcodegenError("no kernel build tree (/usr/src/linux-headers-*-common with /boot/config-*) here")
    config = read_config(tree.config.read_text(errors="replace"))
    module = (tree.modules / REAL_MODULE) if tree.modules else None
    return {
        "release": tree.release,
        "tree": str(tree.root),
        "rules": [f._asdict() for f in kernel_rules(tree)],
        "cflags": {cc: {"base": kernel_cflags(tree, _overrides(cc, False)), "ibt": kernel_cflags(tree, _overrides(cc, True))}
                   for cc in ("gcc", "zig")},
        "rust": rust_flags(tree),
        "rustflags": rust_kernel_flags(tree),
        "config": {k: config.get(k, "not set") for k in CONFIG_KEYS},
        "stacks": kernel_stack_facts(tree),
        "gfp_atomic": header_lines(tree, "include/linux/gfp_types.h", r"define GFP_ATOMIC\b|GFP_ATOMIC users"),
        "onstack": header_lines(tree, "include/linux/wait.h", r"#define DECLARE_WAITQUEUE\(")
        + header_lines(tree, "include/linux/completion.h", r"define DECLARE_COMPLETION_ONSTACK\(work\) \\$"),
        "module": REAL_MODULE,
        "module_measure": measure(module).row() if module and module.is_file() else None,
    }


@dataclass(frozen=True)
class Evidence:
    facts: dict           # kernel_facts(): live, or the recording
    recorded: bool
    compiler: str         # the C compiler used for the sample
    measures: dict        # column -> Measure.row()
    kbuild: dict = field(default_factory=dict)   # real_kbuild(), plus parsed_not_in_real
    kernel_flags: list = field(default_factory=list)  # the flags the kernel-flag C build used
    rust_provenance: str = ""
    c_provenance: str = ""  # where the C objects came from: gcc here, gcc's recording, or zig cc here

    def provenance(self) -> str:
        # The release is not printed: a Debian security update changes it without changing any rule.
        if self.recorded:
            kernel = (f"kernel build files: recorded by `python -m helpers.kcodegen record` from Debian's "
                      f"linux-headers {self.facts['release']}")
        else:
            kernel = "kernel build files read here from Debian's installed linux-headers and /boot config"
        if "flags" not in self.kbuild:
            kbuild = f"no kbuild command line ({self.kbuild.get('error', 'unknown')})"
        else:
            kbuild = "kbuild's command line: " + ("recorded by `python -m helpers.linuxguest`"
                                                  if self.kbuild.get("recorded") else "from a kbuild run here")
        return f"[{kernel}; {kbuild}; C: {self.c_provenance or self.compiler}; Go: run here]"


def _facts() -> tuple[dict, bool]:
    """(kernel_facts of this machine's tree, False), else (the recording's, True)."""
    tree = kernel_tree()
    if tree is not None:
        return kernel_facts(tree), False
    if RECORDING.exists():
        return json.loads(RECORDING.read_text())["facts"], True
    raise toolchain.ToolMissing("no kernel build tree and no recording: apt-get install linux-headers-amd64 linux-image-amd64")


def _sample_flags(facts: dict, kb: dict, cc: str) -> tuple[list, list]:
    """The kernel-flag build's flags, and the same as CONFIG_X86_KERNEL_IBT=y would make them: kbuild's real
    command line where there is one and the compiler is gcc (it is gcc's), else read from the Makefiles."""
    if "flags" in kb and cc == "gcc":
        kflags = codegen_flags(kb["flags"])
        return kflags, [("-fcf-protection=branch" if f == "-fcf-protection=none" else f) for f in kflags]
    return cflags_for(facts["cflags"], cc), cflags_for(facts["cflags"], cc, ibt=True)


def _gcc_flag_sets(facts: dict, kb: dict) -> list[tuple]:
    kflags, kflags_ibt = _sample_flags(facts, kb, "gcc")
    return [tuple(f) for f in (USER_CFLAGS, kflags, kflags_ibt, cflags_for(facts["cflags"], "gcc"))]


def gcc_recipes() -> list[tuple]:
    """The gcc builds of :data:`SAMPLE_C` the chapter analyses, as (source, flags, output) for
    :func:`helpers.recorded.gcc_build`: user-space flags, kbuild's real flags (also with IBT on), and the flags
    read from the Makefiles."""
    facts, _ = _facts()
    return [(SAMPLE_C, flags, "obj") for flags in _gcc_flag_sets(facts, real_kbuild())]


def evidence() -> Evidence:
    """The chapter's measurements: the kernel's facts (live, else the recording) and fresh C and Go builds. The
    C sample is gcc's (built here, or its recorded objects where gcc is missing), else zig cc's."""
    facts, recorded_facts = _facts()
    kb = real_kbuild()
    if "flags" in kb:  # the Makefile reading must agree with what kbuild really ran
        kb["parsed_not_in_real"] = [f for f in facts["cflags"]["gcc"]["base"] if f not in kb["flags"]]
    gcc = all(recorded.gcc_available(SAMPLE_C, flags, "obj") for flags in _gcc_flag_sets(facts, kb))
    cc = "gcc" if gcc else "zig"
    kflags, kflags_ibt = _sample_flags(facts, kb, cc)
    c_provenance = (recorded.gcc_provenance().strip("[]") if gcc
                    else "zig cc here (no gcc and no recording of its builds)")
    ms = {
        "c_user": measure(build_c(USER_CFLAGS, cc).path).row(),
        "c_kernel": measure(build_c(kflags, cc).path).row(),
        "c_kernel_ibt": measure(build_c(kflags_ibt, cc).path).row(),
        "module": facts["module_measure"],
        "go_sample": measure(build_go().path, only="main.").row(),
        "go_hello": measure(build_go(HELLO_GO).path).row(),
        "go_spectre": measure(build_go(HELLO_GO, spectre=True).path).row(),
        "go_kernel_text": measure(build_go(HELLO_GO, kernel_text=True).path).row(),
        "go_cgo": measure(build_go(HELLO_CGO_GO, cgo=True).path).row(),
    }
    rust = rust_measure(facts["rustflags"])
    ms["rust_user"], ms["rust_kernel"] = rust["user"], rust["kernel"]
    return Evidence(facts, recorded_facts, cc, ms, kb, kflags, rust["provenance"], c_provenance)


def record() -> Path:
    """Save this machine's kernel facts, for machines without a kernel build tree."""
    RECORDING.parent.mkdir(exist_ok=True)
    import elftools
    tools = {"capstone": capstone.__version__, "pyelftools": elftools.__version__, "python": sys.version.split()[0]}
    facts = kernel_facts()
    RECORDING.write_text(json.dumps({"note": "python -m helpers.kcodegen record", "tools": tools,
                                     "facts": facts}, indent=1) + "\n")
    if rustc() is not None:
        live = rust_measure(facts["rustflags"], live=True)
        rows = {k: dict(live[k], path=f"rustc-{k}.o") for k in ("user", "kernel")}
        RUST_RECORDING.write_text(json.dumps({"rustc": live["rustc"], "flags": live["flags"],
                                              "sample": live["sample"], **rows}, indent=1) + "\n")
    return RECORDING


# ------------------------------------------------------------------------------------------ the table
COLUMNS = ("kernel states it", "C, user-space -O2", "C, kernel flags", "kbuild module", "Go", "Go, by flags",
           "Rust-for-Linux")
MEETS, BREAKS, NA = "meets", "breaks", "n/a"


class Cell(NamedTuple):
    text: str
    status: str   # meets | breaks | n/a


def _where(facts: dict, key: str) -> str:
    f = next(r for r in facts["rules"] if r["key"] == key)
    lines = ", ".join(str(n) for n, _ in f["lines"])
    return f"{f['file']}:{lines}" + ("" if f["active"] else f" ({f['note']})")


def _ok(cond: bool) -> str:
    return MEETS if cond else BREAKS


def matrix(ev: Evidence) -> list[dict]:
    """One row per rule: where the kernel states it, and what each compiler's output shows. Every cell is
    computed from ``ev`` (counts from the machine code; the Rust column from the kernel's Makefiles)."""
    m, rust, facts = ev.measures, ev.facts["rust"], ev.facts
    cu, ck, cki, mod, gs, gh, gsp, gk = (m[k] for k in ("c_user", "c_kernel", "c_kernel_ibt", "module", "go_sample",
                                                         "go_hello", "go_spectre", "go_kernel_text"))
    mod = mod or {}

    rk = m.get("rust_kernel")

    def rs(key):
        if rk is None:  # no rustc and no recording: the flag the Makefile states is all there is
            return Cell(rust[key], MEETS) if rust.get(key) else Cell("no flag in this kernel", NA)
        cell = {
            "sse": (f"{rk['simd']} SIMD insns", _ok(rk["simd"] == 0)),
            "redzone": (f"{rk['below_sp']} below %rsp", _ok(rk["below_sp"] == 0)),
            "cmodel": (" ".join(f"{k[9:]}:{v}" for k, v in sorted(rk["relocs"].items())), _ok("R_X86_64_32" not in rk["relocs"])),
            "fentry": (f"{rk['fentry_calls']}/{rk['funcs']} call __fentry__", _ok(rk["fentry_calls"] > 0)),
            "retpoline": (f"{rk['indirect']} indirect, {rk['rets']} ret", _ok(rk["indirect"] == 0 and rk["rets"] == 0)),
            "ibt": (f"{rk['endbr64']}/{rk['funcs']} endbr64", NA),
            "unwind": (unwind(rk), _ok(".eh_frame" not in rk["sections"])),
            "percpu": (f"%gs:{rk['gs']} %fs:{rk['fs']} (no per-CPU access in the sample)", NA),
        }[key]
        return Cell(*cell)

    def modcell(text, ok):
        return Cell(text, _ok(ok)) if mod else Cell("module not installed", NA)

    unwind = lambda x: "+".join(s for s in (".eh_frame", ".debug_frame", ".orc_unwind") if s in x["sections"]) or "none"
    rows = [
        ("sse", Cell(f"{cu['simd']} SIMD insns", _ok(cu["simd"] == 0)), Cell(f"{ck['simd']} SIMD insns", _ok(ck["simd"] == 0)),
         modcell(f"{mod.get('simd')} SIMD insns", mod.get("simd") == 0),
         Cell(f"{gs['simd']} in main.*, {gh['simd']} in hello ({gh['x15']} name X15)", _ok(gh["simd"] == 0)),
         Cell("no flag turns X15 off", NA), rs("sse")),
        ("redzone", Cell(f"{cu['below_sp']} accesses below %rsp", _ok(cu["below_sp"] == 0)),
         Cell(f"{ck['below_sp']} below %rsp", _ok(ck["below_sp"] == 0)),
         modcell(f"{mod.get('below_sp')} below %rsp", mod.get("below_sp") == 0),
         Cell(f"{gh['below_sp']} below %rsp in hello", _ok(gh["below_sp"] == 0)), Cell("(none needed)", NA), rs("redzone")),
        ("cmodel", Cell(" ".join(f"{k[9:]}:{v}" for k, v in sorted(cu["relocs"].items())), NA),
         Cell(" ".join(f"{k[9:]}:{v}" for k, v in sorted(ck["relocs"].items())), _ok("R_X86_64_32" not in ck["relocs"])),
         modcell(" ".join(f"{k[9:]}:{v}" for k, v in sorted(mod.get("relocs", {}).items())), "R_X86_64_32" not in mod.get("relocs", {})),
         Cell(f"text at {gh['text_low']:#x}", NA),
         Cell(f"-ldflags=-T: text at {gk['text_low']:#x}", _ok(gk["text_low"] >= 0xFFFFFFFF80000000)), rs("cmodel")),
        ("fentry", Cell(f"{cu['fentry_calls']}/{cu['funcs']} functions", _ok(cu["fentry_calls"] > 0)),
         Cell(f"{ck['fentry_calls']}/{ck['funcs']} call __fentry__", _ok(ck["fentry_calls"] == ck["funcs"])),
         modcell(f"{mod.get('fentry_calls')}/{mod.get('funcs')} call __fentry__", mod.get("fentry_calls", 0) > 0),
         Cell(f"{gh['fentry_calls']} __fentry__ calls", _ok(gh["fentry_calls"] > 0)), Cell("no such flag", NA), rs("fentry")),
        ("retpoline", Cell(f"{cu['indirect']} indirect, {cu['rets']} ret", _ok(cu["indirect"] == 0)),
         Cell(f"{ck['indirect']} indirect, {ck['thunk_calls']} thunk, {ck['return_thunks']} return thunk", _ok(ck["indirect"] == 0 and ck["rets"] == 0)),
         modcell(f"{mod.get('indirect')} indirect, {mod.get('thunk_calls')} thunk, {mod.get('return_thunks')} return thunk",
                 mod.get("indirect") == 0 and mod.get("rets") == 0),
         Cell(f"{gh['indirect']} indirect calls/jumps", _ok(gh["indirect"] == 0)),
         Cell(f"-spectre=ret: {gsp['indirect']} indirect, {gsp['thunk_calls']} retpoline; {gsp['rets']} plain ret",
              _ok(gsp["indirect"] == 0 and gsp["rets"] == 0)), rs("retpoline")),
        ("ibt", Cell(f"{cu['endbr64']}/{cu['funcs']} start with endbr64", NA),
         Cell(f"{ck['endbr64']}/{ck['funcs']} (IBT off here); {cki['endbr64']}/{cki['funcs']} with IBT on", _ok(cki["endbr64"] == cki["funcs"])),
         Cell(f"{mod.get('endbr64')}/{mod.get('funcs')} endbr64 (IBT off in this build)", NA) if mod else Cell("module not installed", NA),
         Cell(f"{gh['endbr64']}/{gh['funcs']} endbr64", _ok(gh["endbr64"] > 0)), Cell("no such flag", NA), rs("ibt")),
        ("unwind", Cell(unwind(cu), _ok(unwind(cu) == "none")), Cell(unwind(ck), _ok(".eh_frame" not in ck["sections"])),
         modcell(unwind(mod) if mod else "", ".eh_frame" not in mod.get("sections", {})),
         Cell(f"{unwind(gh)} + .gopclntab", _ok(".eh_frame" not in gh["sections"])), Cell("-ldflags=-w drops .debug_frame", NA),
         rs("unwind")),
        ("percpu", Cell(f"%gs:{cu['gs']} %fs:{cu['fs']}", NA), Cell(f"%gs:{ck['gs']} %fs:{ck['fs']}", _ok(ck["fs"] == 0 and ck["gs"] > 0)),
         modcell(f"%gs:{mod.get('gs')} %fs:{mod.get('fs')}", mod.get("fs") == 0),
         Cell(f"%fs:{gh['fs']} (g in TLS) %gs:{gh['gs']}", _ok(gh["fs"] == 0)), Cell("no flag moves g to %gs", NA), rs("percpu")),
    ]
    titles = {r.key: r.title for r in RULES}
    out = []
    for key, *cells in rows:
        out.append({"rule": titles[key], "key": key, "kernel states it": Cell(_where(facts, key), MEETS),
                    **dict(zip(COLUMNS[1:], cells))})
    return out


def table_text(rows: list[dict], width: int = 44) -> str:
    """The matrix as aligned text (one block per rule), for a notebook cell's output."""
    lines = []
    for r in rows:
        lines.append(f"{r['rule']}")
        for c in COLUMNS:
            cell = r[c]
            lines.append(f"    {c:<20} {cell.text[:width * 2]:<{width}} [{cell.status}]")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["record"]):
        sys.exit("usage: python -m helpers.kcodegen [record]")
    print(f"recorded {record()}")


def listing(path, name: str, match: str | None = None, limit: int = 12) -> list[str]:
    """``address: instruction`` lines of one function (AT&T syntax), optionally only those matching ``match``."""
    from helpers.asm import disassemble
    addr, code = function_code(path, name)
    targets = _object_targets(str(path), name)
    names = {} if targets else _function_names(str(path))
    rows = []
    for i in disassemble(code, address=addr):
        sym = next((targets[o] for o in range(i.address, i.address + i.size) if o in targets), None)
        if sym is None and names and i.mnemonic.startswith(("call", "jmp")) and i.op_str.startswith("0x"):
            sym = names.get(int(i.op_str, 16))
        rows.append(f"{i.address:#x}: {i.text}" + (f"    <{sym}>" if sym else ""))
    if match is not None:
        rows = [r for r in rows if re.search(match, r)]
    return rows[:limit]


def _object_targets(path: str, name: str) -> dict:
    """{offset: symbol} of the relocations in the section holding ``name`` (objects only; {} otherwise)."""
    with open(existing_file(path), "rb") as fh:
        elf = ELFFile(fh)
        if elf["e_type"] != "ET_REL":
            return {}
        symtab = elf.get_section_by_name(".symtab")
        sym = next((s for s in symtab.iter_symbols() if s.name == name), None) if symtab else None
        if sym is None:
            return {}
        targets, _ = _reloc_targets(elf)
        return {off: t for (shndx, off), t in targets.items() if shndx == sym["st_shndx"]}


@lru_cache(maxsize=8)
def _function_names(path: str) -> dict:
    from helpers import elf as _elf
    try:
        return {f.value: f.name for f in _elf.read_elf(path).functions()}
    except _elf.ElfError:
        return {}


def function_rows(path, names) -> list[dict]:
    """Per-function counts (instructions, SIMD, X15, %fs) for the named functions of an executable; a name
    matches itself or its ABI0 symbol (``runtime.memmove`` or ``runtime.memmove.abi0``)."""
    known = {n for n in _function_names(str(existing_file(path, error=KcodegenError))).values()}
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    out = []
    for n in names:
        sym = n if n in known else f"{n}.abi0" if f"{n}.abi0" in known else None
        if sym is None:
            raise KcodegenError(f"{Path(path).name} has no function {n!r}")
        addr, code = function_code(path, sym)
        m = Measure(str(path), "function")
        _scan(m, cs, code, addr, sym, 0, 0, {}, {})
        out.append({"function": sym, "insns": m.insns, "simd": m.simd, "x15": m.x15, "fs": m.fs})
    return out
