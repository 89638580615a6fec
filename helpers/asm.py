"""helpers.asm -- assemble and disassemble x86 (32- and 64-bit) for the book.

Serves every chapter that shows machine code (the start page's assemble/run
widget, chapter 3's IDT and `int $n` experiments, chapter 2's calling
conventions).  It models the GNU assembler: GNU as (binutils) is the
reference, and the bytes we return are the bytes `as` would produce.

Backends
  * ``gnu-as``   -- the system GNU assembler (``as --64``/``--32``), run through
    helpers.toolchain.run with a timeout and no shell; ``.text`` is read back
    with pyelftools and the few relocations `as` leaves for a flat binary at
    ``address`` (absolute label addresses, absolute branch targets) are
    applied here.  External symbols are rejected.
  * ``keystone`` -- keystone-engine 0.9.2, for machines without GNU as.
    keystone returns WRONG bytes without any error in several cases (listed
    in the "keystone 0.9.2 bugs" section below); this module rewrites the
    source so those bugs cannot fire, refuses the forms it cannot fix with
    AsmError("... not supported without GNU as"), and cross-checks every
    instruction keystone emits by decoding it with capstone.  keystone itself
    runs in a worker process with a per-request timeout, because some input
    makes it loop forever.
  * ``auto``     -- keystone in this process for statements of a conservative
    grammar (checked the same way), GNU as for whatever that path refuses.
    Each statement goes through the keystone pipeline once, alone, and what it
    contributes is memoized, so a program of statements met before (labels,
    instructions, direct jumps and calls to its labels) is put together
    without keystone; the new statements of a program take one keystone call
    in all.  Results are cached by (source, arch, syntax, address).

Disassembly uses capstone in detail mode (registers read/written include the
implicit ones capstone knows, e.g. ``push`` reads and writes %rsp; capstone 5
lists none for ``syscall``).

Reference: tests/gen_asm_refs.py records GNU as + ld output for 340+
instructions and 12 programs; tests/test_asm.py holds both backends to it and
compares both with GNU as on random instructions and programs it never saw.

Every failure is an AsmError (a ValueError) with a one-line message that
names the source line: ``line 2: unknown instruction 'movz'``.
"""
from __future__ import annotations

import atexit
import dataclasses
import functools
import itertools
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from typing import Iterable, NamedTuple, Sequence

import capstone

ARCHES = ("x86_64", "x86_32")
SYNTAXES = ("att", "intel")
BACKENDS = ("auto", "keystone", "gnu-as")
AS_TIMEOUT = 20.0          # seconds for one `as` run
MAX_SOURCE = 200_000       # characters; bigger input is refused, not slowly chewed
MAX_CODE = 1 << 20         # bytes of machine code


class AsmError(ValueError):
    """Bad assembly input (or a form no available backend encodes correctly). One line, at most
    ``MAX_ERROR`` characters: a message that quotes the reader's input never echoes a whole program."""

    def __init__(self, message="assembly failed", *args):
        text = " ".join(str(message).split())
        super().__init__(text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 1] + "…", *args)


MAX_ERROR = 240


# ----------------------------------------------------------------------------
# Result types
# ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Line:
    """One listing line: an instruction (or undecodable data) at an address."""
    address: int
    bytes: bytes
    text: str


@dataclasses.dataclass(frozen=True)
class Insn:
    """One decoded instruction (capstone detail mode)."""
    address: int
    bytes: bytes
    mnemonic: str
    op_str: str
    regs_read: tuple = ()
    regs_written: tuple = ()

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    @property
    def size(self) -> int:
        return len(self.bytes)


MAX_LISTING = 400   # lines of a listing shown to a reader; the rest is counted ("… N more lines")


def format_listing(items: Iterable, max_lines: int | None = MAX_LISTING) -> str:
    """objdump-like text for Insn or Line objects: ``0x1000: 48 89 e5   mov %rsp,%rbp``.

    At most ``max_lines`` lines (None: all), then one line saying how many more there are."""
    items = list(items)
    shown = items if max_lines is None else items[:max(0, max_lines)]
    width = max((len(it.bytes) for it in shown), default=0) * 3 - 1
    lines = [f"{it.address:#x}: {it.bytes.hex(' '):<{width}}  {it.text}".rstrip() for it in shown]
    if len(items) > len(shown):
        lines.append(f"… {len(items) - len(shown)} more lines")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Assembly:
    code: bytes
    listing: list
    arch: str
    syntax: str
    address: int
    backend: str

    def __str__(self) -> str:
        return format_listing(self.listing)

    def __len__(self) -> int:
        return len(self.code)


# ----------------------------------------------------------------------------
# Disassembly (capstone)
# ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _capstone(arch: str, syntax: str, skipdata: bool = True) -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86,
                     capstone.CS_MODE_64 if arch == "x86_64" else capstone.CS_MODE_32)
    cs.detail = True
    if syntax == "att":
        cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    cs.skipdata = skipdata       # undecodable bytes become ".byte 0x.." entries
    return cs


def _check_mode(arch, syntax, address):
    if arch not in ARCHES:
        raise AsmError(f"unknown arch {arch!r} (use one of {', '.join(ARCHES)})")
    if syntax not in SYNTAXES:
        raise AsmError(f"unknown syntax {syntax!r} (use one of {', '.join(SYNTAXES)})")
    limit = 1 << (64 if arch == "x86_64" else 32)
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address < limit:
        raise AsmError(f"address {address!r} is not a valid {arch} address")


def _insn(cs: capstone.Cs, i) -> Insn:
    read = written = ()
    if i.id != 0:        # skipdata entries have no detail
        try:
            r, w = i.regs_access()          # explicit + implicit registers
        except capstone.CsError:
            r, w = list(i.regs_read) + [], list(i.regs_write)
        read = tuple(cs.reg_name(x) for x in r)
        written = tuple(cs.reg_name(x) for x in w)
    return Insn(i.address, bytes(i.bytes), i.mnemonic, i.op_str, read, written)


def _code_to_decode(code, arch: str, syntax: str, address: int) -> bytes:
    """The checks both decoders make: a known mode, bytes, and code that fits the address space."""
    _check_mode(arch, syntax, address)
    if not isinstance(code, (bytes, bytearray, memoryview)):
        raise AsmError(f"code must be bytes, not {type(code).__name__}")
    code = bytes(code)
    if address + len(code) > (1 << (64 if arch == "x86_64" else 32)):
        raise AsmError(f"code at {address:#x} runs past the end of the {arch} address space")
    return code


def disassemble(code, arch: str = "x86_64", syntax: str = "att", address: int = 0) -> list:
    """Decode ``code`` into a list of Insn (undecodable bytes appear as ``.byte``)."""
    code = _code_to_decode(code, arch, syntax, address)
    cs = _capstone(arch, syntax)
    try:
        return [_insn(cs, i) for i in cs.disasm(code, address)]
    except capstone.CsError as e:          # pragma: no cover - capstone internal failure
        raise AsmError(f"capstone could not decode: {e}") from None


@functools.lru_cache(maxsize=None)
def _capstone_lite(arch: str, syntax: str, skipdata: bool = True) -> capstone.Cs:
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64 if arch == "x86_64" else capstone.CS_MODE_32)
    if syntax == "att":
        cs.syntax = capstone.CS_OPT_SYNTAX_ATT
    cs.skipdata = skipdata
    return cs


def disassemble_text(code, arch: str = "x86_64", syntax: str = "att", address: int = 0) -> list:
    """Like :func:`disassemble`, for callers that need only addresses, bytes and text: a list of
    :class:`Line` from capstone's detail-free decoder (several times faster; same text)."""
    code = _code_to_decode(code, arch, syntax, address)
    out, mv = [], memoryview(code)
    for a, size, mnem, ops in _capstone_lite(arch, syntax).disasm_lite(code, address):
        off = a - address
        out.append(Line(a, bytes(mv[off:off + size]), f"{mnem} {ops}".strip()))
    return out


def _listing(code: bytes, arch: str, syntax: str, address: int) -> list:
    return disassemble_text(code, arch, syntax, address)


# ----------------------------------------------------------------------------
# Source splitting shared by both backends
# ----------------------------------------------------------------------------
_BAD_CHAR = re.compile(r"[^\t\n\r\x20-\x7e]")


def _validate_source(source) -> str:
    if not isinstance(source, str):
        raise AsmError(f"source must be a str, not {type(source).__name__}")
    if len(source) > MAX_SOURCE:
        raise AsmError(f"source is too long ({len(source)} characters, limit {MAX_SOURCE})")
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    for lineno, stmt in _statements(source):      # comments may be in any language
        m = _BAD_CHAR.search(stmt)
        if m:
            raise AsmError(f"line {lineno}: unsupported character {m.group()!r} (plain ASCII only)")
        for tok in _NUM_TOKEN.findall(stmt):      # int() of 5000 digits is slow, then refused by Python
            if len(tok) > MAX_DIGITS:
                raise AsmError(f"line {lineno}: number '{tok[:20]}...' is too long (at most {MAX_DIGITS} "
                               "characters)")
    if "\0" in source:
        raise AsmError(f"line {source.count(chr(10), 0, source.index(chr(0))) + 1}: NUL character")
    return source


def _statements(source: str):
    """Yield (line_number, statement) pairs: GNU as x86 rules -- '#' starts a
    comment, ';' separates statements (outside string literals)."""
    for lineno, line in enumerate(source.split("\n"), 1):
        if '"' not in line:              # the common case, without a character loop
            for part in line.split("#", 1)[0].split(";"):
                yield lineno, part.strip()
            continue
        cur, quote = [], False
        for ch in line:
            if ch == '"':
                quote = not quote
            elif not quote and ch == "#":
                break
            elif not quote and ch == ";":
                yield lineno, "".join(cur).strip()
                cur = []
                continue
            cur.append(ch)
        yield lineno, "".join(cur).strip()


def _line_of(source: str, word: str) -> int:
    """First source line that mentions ``word`` as a token (for error messages)."""
    pat = re.compile(r"(?<![\w.$])" + re.escape(word) + r"(?![\w.$])")
    for lineno, stmt in _statements(source):
        if pat.search(stmt):
            return lineno
    return 1


# ----------------------------------------------------------------------------
# Backend: GNU as
# ----------------------------------------------------------------------------
def _run(argv: Sequence[str]):
    """helpers.toolchain.run: list argv, no shell, timeout (ToolchainError on expiry)."""
    from helpers.toolchain import run
    return run(list(argv), timeout=AS_TIMEOUT)


@functools.lru_cache(maxsize=None)
def gnu_as() -> str | None:
    """Path of a GNU assembler that can target x86 (checked once), or None."""
    from helpers.toolchain import ToolchainError
    for name in ("x86_64-linux-gnu-as", "as"):   # an aarch64 host's plain `as` is not x86
        path = shutil.which(name)
        if not path:
            continue
        try:
            ver = _run([path, "--version"])
            if "GNU assembler" not in (ver.stdout or ""):
                continue
            with tempfile.TemporaryDirectory(prefix="asm-probe-") as d:
                src = os.path.join(d, "p.s")
                with open(src, "w") as f:
                    f.write("nop\n")
                if _run([path, "--64", "-o", os.path.join(d, "p.o"), src]).returncode == 0:
                    return str(path)
        except (OSError, ToolchainError):
            continue
    return None


def gnu_as_version() -> str | None:
    """First line of ``as --version`` (e.g. 'GNU assembler (GNU Binutils for Debian) 2.40')."""
    path = gnu_as()
    if path is None:
        return None
    return (_run([path, "--version"]).stdout or "").splitlines()[0].strip()


_GAS_DIAG = re.compile(r"^(?P<file>[^:\n]*):(?P<line>\d+): (?P<kind>Error|Warning): (?P<msg>.*)$", re.M)


MAX_MESSAGE = 160   # characters of a diagnostic shown to the reader (gas echoes whole operands)


def _clip(text: str, n: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1] + "…"


def _gas_message(msg: str) -> str:
    m = re.match(r"no such instruction: `(\S+)", msg)
    if m:
        return f"unknown instruction '{_clip(m.group(1), 40)}'"
    return _clip(msg.replace("`", "'").strip())


def _gas_failure(stderr: str) -> str:
    """One line about the reader's input for a GNU as failure that is not a plain Error/Warning: an internal
    error ("... Please report this bug."), a fatal error, a crash."""
    m = re.search(r"^[^:\n]*:(\d+): (?:Internal error|Fatal error)[^\n]*", stderr, re.M)
    line = m.group(1) if m else "1"
    if m and "Internal error" in m.group():
        return f"line {line}: GNU as failed on this statement with an internal error (a binutils bug); rewrite it"
    useful = [l for l in stderr.strip().splitlines()
              if l.strip() and "Please report this bug" not in l and "invoked from here" not in l]
    last = useful[-1].split(": ", 1)[-1] if useful else "unknown failure"
    return f"line {line}: GNU as failed: {_clip(last)}"


# Relocation types we can apply ourselves for a flat image at `address`:
# type -> (size in bytes, pc-relative, signed-range check)
# (System V x86-64 psABI §4.4 table "Relocation Types"; i386 psABI §2.3)
_RELOCS = {
    "x86_64": {1: (8, False, None), 2: (4, True, True), 4: (4, True, True), 10: (4, False, False),
               11: (4, False, True), 12: (2, False, False), 13: (2, True, True), 14: (1, False, False),
               15: (1, True, True), 24: (8, True, True)},
    "x86_32": {1: (4, False, None), 2: (4, True, None), 20: (2, False, False), 21: (2, True, True),
               22: (1, False, False), 23: (1, True, True)},
}


def _fits(value: int, size: int, signed, arch: str) -> bool:
    """Does a relocated value fit its field?  Addresses wrap at the arch's width
    (0xffffffff80000000 is -0x80000000 to a sign-extended 32-bit field)."""
    width = 64 if arch == "x86_64" else 32
    value %= 1 << width
    if signed is None or 8 * size == width:  # full-width field: wraps like the CPU does
        return True
    bits = 8 * size
    if signed:
        value -= (1 << width) if value >= 1 << (width - 1) else 0
        return -(1 << (bits - 1)) <= value < (1 << (bits - 1))
    return value < (1 << bits)


def _gnu_assemble(source: str, arch: str, syntax: str, address: int) -> bytes:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    path = gnu_as()
    if path is None:
        raise AsmError("GNU as (binutils, x86 target) is not installed; use backend='keystone' "
                       "or install binutils (apt-get install binutils)")
    check_gas_source(source)
    with tempfile.TemporaryDirectory(prefix="helpers-asm-") as d:
        pre, user, obj = (os.path.join(d, n) for n in ("prologue.s", "input.s", "out.o"))
        with open(pre, "w") as f:          # separate file, so line numbers in input.s stay the reader's
            f.write(".intel_syntax noprefix\n" if syntax == "intel" else ".att_syntax prefix\n")
        with open(user, "w") as f:
            f.write(source if source.endswith("\n") else source + "\n")
        argv = [path, "--64" if arch == "x86_64" else "--32", "-o", obj, pre, user]
        from helpers.toolchain import ToolchainError
        try:
            proc = _run(argv)
        except ToolchainError as e:
            raise AsmError(f"line 1: GNU as did not finish: {e}") from None
        diags = [m for m in _GAS_DIAG.finditer(proc.stderr or "")
                 if not m["msg"].startswith("no instruction mnemonic suffix given and no register "
                                            "operands; using default")]   # "sysret": the default is GNU's
        # Warnings count as errors: gas warns e.g. "0x1ff shortened to 0xff" and
        # then emits bytes that are not what the reader wrote.
        for m in sorted(diags, key=lambda m: (m["kind"] != "Error", int(m["line"]))):
            raise AsmError(f"line {m['line']}: {_gas_message(m['msg'])}")
        if proc.returncode != 0:
            raise AsmError(_gas_failure(proc.stderr or ""))
        if os.path.getsize(obj) > 4 * MAX_CODE:
            raise AsmError(f"line 1: the program is larger than {MAX_CODE} bytes")
        with open(obj, "rb") as f:
            elf = ELFFile(f)
            text = elf.get_section_by_name(".text")
            if text is not None and text["sh_size"] > MAX_CODE:
                raise AsmError(f"line 1: the program is larger than {MAX_CODE} bytes")
            code = bytearray(text.data()) if text is not None else bytearray()
            text_index = elf.get_section_index(".text")
            for sec in elf.iter_sections():
                if (sec["sh_flags"] & 2) and sec.name not in (".text", ".eh_frame") \
                        and sec["sh_size"] > 0 and not sec.name.startswith(".note"):
                    raise AsmError(f"line {_line_of(source, sec.name)}: only .text is supported, "
                                   f"the program also fills section {sec.name}")
            symtab = elf.get_section_by_name(".symtab")
            for sec in elf.iter_sections():
                if not isinstance(sec, RelocationSection):
                    continue
                if elf.get_section(sec["sh_info"]).name != ".text":
                    continue
                for rel in sec.iter_relocations():
                    _apply_reloc(code, rel, sec.is_RELA(), symtab, text_index, arch, address, source)
    return bytes(code)


# ----------------------------------------------------------------------------
# The guard in front of every GNU as run (this module, helpers.unwind.assemble,
# and through them run_source, the assembly runner and store_into_gate)
# ----------------------------------------------------------------------------
# GNU as can read files (.incbin, .include), build directive names it was never
# shown (.macro, .irp, .irpc: "\\arg" substitution) and write gigabytes before
# its timeout (".space 0x1000000000", ".ds.b", ".dcb.b", ".nops", ". = 1<<40",
# ".fill").  So the guard is an allowlist, applied to the statements GNU as
# will see once comments are gone: a statement is an instruction, a label, a
# symbol assignment, or one of the directives below.  Macros and conditional
# assembly are refused outright, and the words "incbin" and "include" anywhere
# (comments and strings too).  Sizes must be plain numbers and their sum is
# bounded.  Lexical rules from the GNU as manual ("Syntax": Preprocessing,
# Comments, Strings, Characters, Statements) and binutils gas/config/tc-i386.c
# (comment_chars "#", line_comment_chars "/" at line start, ';' separates).
_ALLOWED = {
    # sections and modes
    ".text", ".data", ".bss", ".section", ".previous", ".pushsection", ".popsection",
    ".code16", ".code32", ".code64", ".intel_syntax", ".att_syntax", ".arch",
    # symbols
    ".globl", ".global", ".local", ".hidden", ".protected", ".weak", ".type", ".size",
    ".set", ".equ", ".equiv",
    # data (bounded by the source's own length)
    ".byte", ".word", ".short", ".value", ".hword", ".2byte", ".long", ".int", ".4byte",
    ".quad", ".8byte", ".ascii", ".asciz", ".string",
    # call frame information (chapter 4a)
    ".cfi_startproc", ".cfi_endproc", ".cfi_def_cfa", ".cfi_def_cfa_offset", ".cfi_def_cfa_register",
    ".cfi_adjust_cfa_offset", ".cfi_offset", ".cfi_rel_offset", ".cfi_restore", ".cfi_undefined",
    ".cfi_same_value", ".cfi_register", ".cfi_remember_state", ".cfi_restore_state", ".cfi_sections",
    ".cfi_signal_frame", ".cfi_escape", ".cfi_return_column",
    # bounded sizes (see _SIZED)
    ".space", ".skip", ".zero", ".fill", ".nops", ".org", ".align", ".balign", ".p2align",
    ".rept", ".endr",
}
_SIZED = {".space", ".skip", ".zero", ".fill", ".nops", ".org", ".align", ".balign", ".p2align", ".rept"}
_FORBIDDEN_WORDS = re.compile(r"incbin|include", re.I)
MAX_REPEAT = 100_000           # product of nested .rept counts
MAX_FILL = 4 * MAX_CODE        # bytes all sized directives (times their repeats) may ask for
MAX_DIGITS = 40                # characters in one number (2**128 has 39 digits)


def gas_statements(source: str):
    """Yield (line_number, statement) as GNU as splits them: C comments (``/* */``) and ``#`` comments
    removed, statements separated by newlines and ``;``, strings (with backslash escapes) and character
    constants (``'c``) kept whole.  Anything this reading could get wrong is refused with an AsmError:
    an unterminated string or comment, a ``/`` line comment, a backslash outside a string."""
    n, i, lineno = len(source), 0, 1
    cur, start = [], 1
    while i < n:
        ch = source[i]
        if ch == "\n":
            yield start, "".join(cur).strip()
            cur, lineno, start = [], lineno + 1, lineno + 1
            i += 1
        elif ch == ";":
            yield start, "".join(cur).strip()
            cur, start = [], lineno
            i += 1
        elif ch == "#":
            while i < n and source[i] != "\n":
                i += 1
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            if end < 0:
                raise AsmError(f"line {lineno}: unterminated /* comment")
            lineno += source.count("\n", i, end)
            cur.append(" ")
            i = end + 2
        elif ch == "/" and not "".join(cur).strip():
            raise AsmError(f"line {lineno}: a line may not start with '/' (write comments with #)")
        elif ch == '"':
            j = i + 1
            while j < n and source[j] not in '"\n':
                j += 2 if source[j] == "\\" else 1
            if j >= n or source[j] != '"':
                raise AsmError(f"line {lineno}: unterminated string")
            cur.append(source[i:j + 1])
            i = j + 1
        elif ch == "'":
            k = 3 if source[i + 1:i + 2] == "\\" else 2
            if source[i + 1:i + k].count("\n") or i + k > n:
                raise AsmError(f"line {lineno}: incomplete character constant")
            cur.append(source[i:i + k])
            i += k
        elif ch == "\\":
            raise AsmError(f"line {lineno}: '\\' is only allowed inside strings (macros are not supported)")
        else:
            cur.append(ch)
            i += 1
    yield start, "".join(cur).strip()


_GUARD_LABEL = re.compile(r"^\s*(?:[A-Za-z_.$][\w.$]*|[0-9]+)\s*:(?!:)")
_DIRECTIVE = re.compile(r"\.[A-Za-z_.$][\w.$]*")
_ASSIGN = re.compile(r"[A-Za-z_.$][\w.$]*\s*==?(?!=)")     # "name = expr" (the name is never ".": see below)


def _plain(arg: str, lineno: int, name: str) -> int:
    arg = arg.strip()
    if len(arg) > MAX_DIGITS:
        raise AsmError(f"line {lineno}: number '{arg[:20]}...' is too long")
    v = _number(arg, "att") if arg else 0
    if v is None:
        raise AsmError(f"line {lineno}: {name} takes plain numbers here, not '{arg}'")
    return v


def check_gas_source(source: str) -> None:
    """Refuse (AsmError, one line naming the source line) anything GNU as should not be given: see above.
    Shared by every path in the book that runs GNU as."""
    m = _FORBIDDEN_WORDS.search(source)
    if m:
        lineno = source.count("\n", 0, m.start()) + 1
        raise AsmError(f"line {lineno}: '{m.group().lower()}' is not allowed anywhere in the program "
                       "(the program must be self-contained)")
    nest, total = [], 0
    for lineno, stmt in gas_statements(source):
        while True:
            lab = _GUARD_LABEL.match(stmt)
            if not lab:
                break
            stmt = stmt[lab.end():].strip()
        if not stmt:
            continue
        if stmt.startswith('"'):
            raise AsmError(f"line {lineno}: quoted symbol names are not supported")
        if re.match(r"\.\s*(=|$|,)", stmt) or re.match(r"\.(set|equ|equiv)\s+\.\s*,", stmt, re.I):
            raise AsmError(f"line {lineno}: assigning to '.' (the location counter) is not supported; use .org")
        for tok in _NUM_TOKEN.findall(stmt):
            if len(tok) > MAX_DIGITS:
                raise AsmError(f"line {lineno}: number '{tok[:20]}...' is too long")
        repeat = functools.reduce(lambda a, b: a * b, nest, 1)
        if _ASSIGN.match(stmt):
            continue
        d = _DIRECTIVE.match(stmt)
        if not d:
            if '"' in stmt:
                raise AsmError(f"line {lineno}: strings belong in .ascii/.asciz/.string")
            total += 16 * repeat                   # an instruction is at most 15 bytes
        else:
            name = d.group().lower()
            if name not in _ALLOWED:
                what = ("macros are" if name in (".macro", ".endm", ".irp", ".irpc", ".purgem", ".exitm",
                                                 ".altmacro", ".noaltmacro") else "it is")
                raise AsmError(f"line {lineno}: directive '{d.group()}' is not supported here ({what} "
                               "not on the book's list of safe directives)")
            args = [a for a in stmt[d.end():].split(",")]
            if name == ".endr":
                if nest:
                    nest.pop()
                continue
            if name in _SIZED:
                nums = [_plain(a, lineno, name) for a in args]
                if name == ".rept":
                    nest.append(max(nums[0], 1))
                    repeat *= nest[-1]
                    if repeat > MAX_REPEAT:
                        raise AsmError(f"line {lineno}: .rept {nums[0]} repeats too often "
                                       f"(at most {MAX_REPEAT} in all)")
                    continue
                if name == ".p2align":
                    if nums[0] > 30:
                        raise AsmError(f"line {lineno}: .p2align {nums[0]} would make the program larger "
                                       f"than {MAX_CODE} bytes")
                    size = 1 << nums[0]
                elif name == ".fill":
                    size = nums[0] * min(nums[1] if len(nums) > 1 else 1, 8)
                else:
                    size = nums[0]
                total += size * repeat
                if size > MAX_CODE or total > MAX_FILL:
                    raise AsmError(f"line {lineno}: {name} {args[0].strip()} would make the program larger "
                                   f"than {MAX_CODE} bytes")
            else:
                total += (len(stmt) * 8 if name not in (".ascii", ".asciz", ".string") else len(stmt)) * repeat
        if total > MAX_FILL:
            raise AsmError(f"line {lineno}: the program would be larger than {MAX_CODE} bytes")


def _apply_reloc(code, rel, is_rela, symtab, text_index, arch, address, source):
    rtype, off = rel["r_info_type"], rel["r_offset"]
    sym = symtab.get_symbol(rel["r_info_sym"])
    name = sym.name
    if rel["r_info_sym"] != 0 and sym["st_shndx"] == "SHN_UNDEF":
        raise AsmError(f"line {_line_of(source, name)}: undefined symbol '{name}' "
                       "(external symbols need a linker; define it in the program)")
    if rtype not in _RELOCS[arch]:
        raise AsmError(f"line {_line_of(source, name) if name else 1}: relocation type {rtype} "
                       "is not supported in a flat binary")
    size, pcrel, signed = _RELOCS[arch][rtype]
    if rel["r_info_sym"] == 0 or sym["st_shndx"] == "SHN_ABS":
        s = sym["st_value"]
    elif sym["st_shndx"] == text_index:
        s = address + sym["st_value"]
    else:
        raise AsmError(f"line {_line_of(source, name)}: symbol '{name}' is not in .text")
    addend = rel["r_addend"] if is_rela else int.from_bytes(code[off:off + size], "little", signed=True)
    value = s + addend - (address + off if pcrel else 0)
    if not _fits(value, size, signed, arch):
        raise AsmError(f"line {_line_of(source, name) if name else 1}: value {value:#x} does not fit "
                       f"a {8 * size}-bit field (at offset {off:#x})")
    code[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


# ----------------------------------------------------------------------------
# Backend: keystone 0.9.2, with workarounds
# ----------------------------------------------------------------------------
# keystone 0.9.2 bugs, observed here (x86, Python binding, libkeystone 0.9.2):
#  K1 radix: ks_option(KS_OPT_SYNTAX, <any syntax, even INTEL>) switches the
#     engine to radix 16: "subq $16, %rsp" -> 48 83 ec 16 (sub $0x16).  An
#     engine WITHOUT the option has an uninitialised radix: decimal in a fresh
#     process, but hex when it reuses the memory of a freed radix-16 engine
#     (observed: sub rsp,16 -> ec 10 while the other engine lives, ec 16 after
#     it is freed).  Fix: every number is rewritten to explicit 0x-hex first,
#     which reads the same in either radix.
#  K2 silent nothing: "int $128" (radix-16 0x128 > 255) returns encoding=None
#     with count 0 and NO error.  Fix: K1's rewrite, plus empty output for
#     non-empty source is an error, plus the capstone cross-check below.
#  K3 numeric local labels: "1: dec %eax; jnz 1b" -> KS_ERR_ASM_LABEL_INVALID,
#     "jmp 1f" -> invalid operand ("1b" is hex 0x1b under K1).  Fix: rewrite
#     "N:" / "Nb" / "Nf" to unique named labels, following GNU as semantics.
#  K4 32-bit far jumps: "ljmp $0x8, $0x1000" -> invalid mnemonic; Intel
#     "jmp 0x8:0x1000" / "jmp far ..." -> invalid operand.  GNU as gives
#     ea 00 10 00 00 08 00.  Fix: direct far jmp/call with a selector and
#     offset are encoded here (EA/9A ptr16:32); other far forms are refused.
#  K5 32-bit Intel lidt/lgdt/sidt/sgdt: "lidt [eax]" -> 66 0f 01 18 (a stray
#     operand-size prefix; GNU as: 0f 01 18).  Fix: refused in that mode.
#  K6 AT&T "mov $0x10, %rax" -> 48 b8 + imm64 (movabs); GNU as picks the
#     7-byte 48 c7 c0 form whenever the value fits a signed 32-bit immediate.
#     Fix: rewritten to "movq" in that case, and for "$label" (GNU: C7 + a
#     32-bit signed relocation), after which keystone matches GNU as.
#  K7 out-of-range immediates are silently truncated: "mov $0x1ff, %al" ->
#     b0 ff (GNU as warns; we treat that as an error).  Caught by the
#     capstone cross-check (each number of the source must appear, in range).
#  K8 "jmp 0x1000" (absolute target): keystone picks EB rel8, GNU as always
#     the rel32 form.  Fix: rel32 placeholder, patched after layout.
#  K9 64-bit absolute memory "movq %gs:0x10, %rax" -> 65 48 8b 05 10 00 00 00,
#     i.e. %gs:0x10(%rip) -- a DIFFERENT address; "mov 0x1000, %eax" -> the
#     moffs64 form A1.  GNU as: 65 48 8b 04 25 10 00 00 00 (SIB, no base).
#     Fix: rewritten with a %riz index (keystone then emits GNU's bytes); the
#     cross-check rejects any %rip base or moffs form the source did not ask for.
#  K10 "int $3" -> cd 03; GNU as emits int3 (cc).  Fix: rewritten to int3.
#  K11 segment registers: "mov %ax, %ds" -> 66 8e d8, "movw %fs, (%rax)" ->
#     66 8c 20, "mov %fs, %rax" -> 48 8c e0, 32-bit Intel "push ds" -> 66 1e;
#     GNU as emits none of these prefixes.  Fix: Sreg moves are said with no
#     size and a 32-bit register (keystone then matches); "push ds" is refused.
#  K12 Intel "mov eax, lab" (GNU: load from memory at lab, a1 ...) -> keystone
#     encodes the immediate "mov eax, offset lab" (b8 ...).  Fix: refused.
#  K13 keystone loops forever on some input (the one-character program "<",
#     in any syntax; also "-", "[t", "* *").  Fix: keystone runs in a worker
#     process with a per-request timeout (_KsWorker), and only statements of a
#     conservative operand grammar reach it.
#  K14 "nopw 0x0(%rax,%rax,1)" -> 66 0f 18 24 00, a prefetch-hint opcode (GNU:
#     66 0f 1f 04 00).  Fix: multi-byte nops are refused.
# Beyond these, _cross_check decodes every instruction keystone emits and
# compares it with the statement: numbers, label values, registers, and any
# 0x66 / REX.W prefix the statement gives no reason for.
_KS_FAR = re.compile(r"^(?P<m>(?:jmp|call)\s+far(?:\s+ptr)?|l?(?:jmp|call)l?)\s+(?P<ops>.*)$", re.I)
_NUM_TOKEN = re.compile(r"(?<![\w.])[0-9][\w$.]*")
_LABEL_DEF = re.compile(r"^\s*([A-Za-z_.$][\w.$]*|[0-9]+)\s*:(?!:)")
_ABS_BRANCH = re.compile(r"(?P<m>jmp[lq]?|call[lq]?|j[a-z]{1,4})\s+(?P<target>[0-9]\w*)", re.I)
# condition-code nibbles, Intel SDM Vol. 2A Jcc table
_CC = {"o": 0, "no": 1, "b": 2, "c": 2, "nae": 2, "ae": 3, "nb": 3, "nc": 3, "e": 4, "z": 4, "ne": 5,
       "nz": 5, "be": 6, "na": 6, "a": 7, "nbe": 7, "s": 8, "ns": 9, "p": 10, "pe": 10, "np": 11,
       "po": 11, "l": 12, "nge": 12, "ge": 13, "nl": 13, "le": 14, "ng": 14, "g": 15, "nle": 15}
_PREFIXES = {"rep", "repe", "repz", "repne", "repnz", "lock", "data16", "data32", "addr32", "addr16",
             "cs", "ds", "es", "fs", "gs", "ss"}
_INSN_PREFIXES = _PREFIXES - {"cs", "ds", "es", "fs", "gs", "ss"}
_DESCRIPTOR_TABLE = re.compile(r"^(lidt|lgdt|sidt|sgdt)[lqw]?\b", re.I)
_REG64 = re.compile(r"%(?:r[a-d]x|r[sd]i|r[sb]p|r(?:[89]|1[0-5]))", re.I)
# the front end's other patterns, compiled once (they run for every new statement)
_KS_BAD_CHAR = re.compile(r"[^\w%$,()\[\]:+\-*.\s]")
_NO_OP_SYMBOL = re.compile(r"\.(?:globl|global|local|hidden) [a-z_.$][\w.$]*"
                           r"|\.type [a-z_.$][\w.$]*, *[@%](?:function|object|notype)")
_LOCAL_REF = re.compile(r"(?<![\w$.])([0-9]+)([bfBF])(?![\w$.])")
_FAR_PAIR = re.compile(r"\s*[\w.$]+\s*:\s*[\w.$]+\s*")
_ST_OPEN = re.compile(r"%?st\s*\(\s*$", re.I)
_BRANCH_MNEM = re.compile(r"j[a-z]+|call[lqw]?|loop[a-z]*|xbegin")
_SREG = re.compile(r"%?[c-gs]s", re.I)
_SIZE_PTR = re.compile(r"^(?:word|dword|qword)\s+ptr\s+", re.I)
_GPR16_32_64 = re.compile(r"(%?)(r|e|)([abcd]x|si|di|sp|bp)", re.I)
_OFFSET = re.compile(r"\boffset\b", re.I)
_BRACKETS = re.compile(r"\[.*?\]")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_INTEL_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_.][\w.$]*")
_WORD = re.compile(r"[A-Za-z_]\w*")
_ATT_ABS_MEM = re.compile(r"(\*?)(\s*%[c-gs]s\s*:)?\s*([^$%(*\s][^$%()]*)", re.I)
_ATT_IMM = re.compile(r"\$(-?)(0x[0-9a-f]+)", re.I)
_SYMBOL = re.compile(r"[A-Za-z_][\w.$]*")
_ST_REG = re.compile(r"\bst\s*\(\s*(?:0x)?([0-7])\s*\)")
_ATT_REG_NAME = re.compile(r"%(st\(\d\)|\w+)")
_INTEL_REG_NAME = re.compile(r"(?<![\w.$])(st\(\d\)|[a-z_]\w*)")
_WORD_PTR = re.compile(r"(?<![dqxy])word\s+ptr")
_W_SUFFIX = re.compile(r"[a-z]+w")
_Q_SUFFIX = re.compile(r"[a-z0-9]+q")


_REG_CS = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)   # one instance, for the names only
_REG_NAMES = {"x86_64": tuple(_REG_CS.reg_name(i) for i in range(capstone.x86.X86_REG_ENDING))}  # its reg_name
_REG_CS.mode = capstone.CS_MODE_32
_REG_NAMES["x86_32"] = tuple(_REG_CS.reg_name(i) for i in range(capstone.x86.X86_REG_ENDING))  # eflags, not rflags
_REGISTERS = set(_REG_NAMES["x86_64"]) - {None}
del _REG_CS
_OP_IMM, _OP_REG, _OP_MEM = capstone.x86.X86_OP_IMM, capstone.x86.X86_OP_REG, capstone.x86.X86_OP_MEM
_INTEL_WORDS = {"byte", "word", "dword", "qword", "fword", "tbyte", "xmmword", "ymmword", "ptr",
                "far", "near", "short", "st"}
_STRING_OPS = re.compile(r"(rep[a-z]*\s+)?(movs|stos|lods|scas|cmps|ins|outs)[bwlqd]?$|xlatb?$", re.I)


# A conservative operand grammar: keystone only ever sees statements of this
# shape (K13: fragments such as "-", "[t", "* *" make keystone 0.9.2 loop forever).
_G_NUM = r"0x[0-9a-fA-F]+"
_G_TERM = rf"(?:{_G_NUM}|[0-9]|[A-Za-z_.][\w.$]*)"     # one digit reads alike in any radix
_G_EXPR = rf"[-+]?\s*{_G_TERM}(?:\s*[-+*]\s*[-+]?\s*{_G_TERM})*"
_G_ATT_REG = r"%(?:st\s*\(\s*0x[0-7]\s*\)|[a-z][a-z0-9]*)"
_G_ATT_MEM = (rf"(?:%[c-gs]s\s*:\s*)?(?:(?:{_G_EXPR})?\s*\(\s*(?:{_G_ATT_REG})?\s*"
              rf"(?:,\s*{_G_ATT_REG}\s*(?:,\s*(?:{_G_NUM}|[1248])\s*)?)?\)|{_G_EXPR})")
_G_ATT_OP = rf"\$\s*{_G_EXPR}|\*?\s*{_G_ATT_REG}|\*?\s*{_G_ATT_MEM}"
_G_SIZE = r"(?:(?:byte|word|dword|fword|qword|tbyte|xmmword|ymmword)\s+ptr\s+)?"
_G_INTEL_OP = (rf"{_G_SIZE}(?:[c-gs]s\s*:\s*)?\[\s*{_G_EXPR}\s*\]|st\s*\(\s*0x[0-7]\s*\)"
               rf"|{_G_SIZE}{_G_EXPR}")
_G_STMT = {syn: re.compile(rf"(?:[a-z][a-z0-9]*\s+)*?[a-z][a-z0-9]*(?:\s+(?:{op})(?:\s*,\s*(?:{op}))*)?",
                           re.I)
           for syn, op in (("att", _G_ATT_OP), ("intel", _G_INTEL_OP))}


def _ks_parses(text: str, syntax: str) -> bool:
    return _G_STMT[syntax].fullmatch(text.strip()) is not None


def _split_insn(text: str):
    """'rep movsb' -> (['rep'], 'movsb', []); operands split at top-level commas."""
    words = text.split(None, 1)
    prefixes = []
    while len(words) == 2 and words[0].lower() in _INSN_PREFIXES:
        prefixes.append(words[0])
        words = words[1].split(None, 1)
    if not words:
        return prefixes, "", []
    rest = words[1] if len(words) > 1 else ""
    if not any(ch in rest for ch in "()[]"):     # no nesting: every comma is a top-level one
        ops = [op.strip() for op in rest.split(",")]
        if not ops[-1]:
            ops.pop()
        return prefixes, words[0], ops
    ops, depth, cur = [], 0, ""
    for ch in rest:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            ops.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        ops.append(cur.strip())
    return prefixes, words[0], ops


def _mnemonic(low: str) -> str:
    """_split_insn(low)[1], without splitting the operands."""
    words = low.split()
    k = 0
    while k < len(words) - 1 and words[k] in _INSN_PREFIXES:
        k += 1
    return words[k] if words else ""


def _join(prefixes, mnem, ops) -> str:
    return " ".join(prefixes + [mnem]) + (" " + ", ".join(ops) if ops else "")


def _number(tok: str, syntax: str):
    """Value of one numeric token under GNU as rules, or None if it is not a number."""
    t = tok.lower()
    m = _NUMBER.fullmatch(t)
    if m is None:
        return None
    if m.lastgroup == "bin":
        return int(t[2:], 2)
    return int(t, {"hex": 16, "oct": 8, "dec": 10}[m.lastgroup])


_NUMBER = re.compile(r"(?P<hex>0x[0-9a-f]+)|(?P<bin>0b[01]+)|(?P<oct>0[0-7]*)|(?P<dec>[1-9][0-9]*)")


_ADDED: "OrderedDict[tuple, tuple]" = OrderedDict()   # _KsProgram._add's results, per statement
_ADDED_ENTRIES = 4096
_FRONT: "OrderedDict[tuple, tuple]" = OrderedDict()   # _KsProgram._front's results, per raw statement


class _KsProgram:
    """Source rewritten for keystone, plus what the cross-check needs per instruction."""

    def __init__(self, source: str, arch: str, syntax: str):
        self.arch, self.syntax = arch, syntax
        stmts = []                       # [lineno, labels, instruction text]
        for lineno, raw in _statements(source):
            key = (arch, syntax, raw)
            hit = _FRONT.get(key)
            if hit is None:
                hit = _FRONT[key] = self._front(lineno, raw)
                if len(_FRONT) > _ADDED_ENTRIES:
                    _FRONT.popitem(last=False)
            stmts.append([lineno, list(hit[0]), hit[1]])
        # a bare prefix statement ("rep; movsb") belongs to the next instruction
        merged = []
        for st in stmts:
            if merged and merged[-1][2] and merged[-1][2].lower() in _PREFIXES:
                prev = merged.pop()
                if st[1]:
                    raise AsmError(f"line {st[0]}: a label cannot follow the prefix '{prev[2]}'")
                st = [prev[0], prev[1], f"{prev[2]} {st[2]}".strip()]
            merged.append(st)
        if merged and merged[-1][2].lower() in _PREFIXES:
            raise AsmError(f"line {merged[-1][0]}: prefix '{merged[-1][2]}' without an instruction")
        self._number_labels(merged)
        self.branches = {}               # insn index -> absolute target (K8)
        self.lines = []                  # keystone source lines
        self.insns = []                  # (lineno, source text, numbers, keystone text)
        self.label_index = {}            # label -> index of the instruction it precedes
        for lineno, labels, stmt in merged:
            for lab in labels:
                if lab in self.label_index:      # GNU as accepts it again at the same place only
                    if self.label_index[lab] != len(self.insns):
                        raise AsmError(f"line {lineno}: symbol '{lab}' is already defined")
                    continue
                self.lines.append(f"{lab}:")
                self.label_index[lab] = len(self.insns)
            if stmt:
                self._add(lineno, stmt)

    def _front(self, lineno, stmt: str) -> tuple:
        """(labels, instruction text) of one statement; memoized by the caller (it depends on nothing else)."""
        labels = []
        while True:
            m = _LABEL_DEF.match(stmt)
            if not m:
                break
            labels.append(m.group(1))
            stmt = stmt[m.end():].strip()
        if stmt.startswith(".") and self._no_op_directive(stmt):
            stmt = ""
        bad = _KS_BAD_CHAR.search(stmt)
        if bad:                          # K13: e.g. "<" makes keystone loop forever
            raise AsmError(f"line {lineno}: character {bad.group()!r} is not supported without GNU as")
        if stmt.startswith("."):
            word = stmt.split()[0] if stmt.split() else stmt
            raise AsmError(f"line {lineno}: directive '{word}' is not supported without GNU as")
        return tuple(labels), stmt

    def _no_op_directive(self, stmt: str) -> bool:
        """Directives that change no byte here (so keystone need not see them)."""
        low = " ".join(stmt.lower().split())
        return (low in (".text", ".section .text", f".code{self.arch[-2:]}")
                or _NO_OP_SYMBOL.fullmatch(low) is not None
                or (self.syntax == "intel" and low == ".intel_syntax noprefix")
                or (self.syntax == "att" and low in (".att_syntax", ".att_syntax prefix")))

    # K3: numeric local labels -> unique names (GNU as manual, "Local Labels")
    def _number_labels(self, stmts):
        defs = {}                        # "1" -> [statement index, ...]
        for idx, (_, labels, _) in enumerate(stmts):
            for lab in labels:
                if lab.isdigit():
                    defs.setdefault(str(int(lab)), []).append(idx)
        if not defs:                     # nothing to rename; a reference is to an undefined label
            for lineno, _, text in stmts:
                m = _LOCAL_REF.search(text)
                if m:
                    raise AsmError(f"line {lineno}: undefined local label '{m.group(0)}'")
            return
        counter = {}
        for idx, st in enumerate(stmts):
            lineno, labels, text = st
            for i, lab in enumerate(labels):
                if lab.isdigit():
                    n = str(int(lab))
                    k = counter.get(n, 0)
                    counter[n] = k + 1
                    labels[i] = f"__asm_local_{n}_{k}"

            def ref(m, idx=idx, lineno=lineno):
                n, direction = str(int(m.group(1))), m.group(2).lower()
                where = defs.get(n, [])
                if direction == "b":     # most recent definition at or before this statement
                    cand = [j for j, d in enumerate(where) if d <= idx]
                    k = cand[-1] if cand else None
                else:                    # next definition after this statement
                    cand = [j for j, d in enumerate(where) if d > idx]
                    k = cand[0] if cand else None
                if k is None:
                    raise AsmError(f"line {lineno}: undefined local label '{m.group(0)}'")
                return f"__asm_local_{n}_{k}"
            st[2] = _LOCAL_REF.sub(ref, text) if text else text

    def _add(self, lineno, stmt: str):
        """Add one statement; what it adds depends only on (arch, syntax, statement), so it is memoized."""
        key = (self.arch, self.syntax, stmt)
        hit = _ADDED.get(key)
        if hit is None:
            n_lines, n_insns = len(self.lines), len(self.insns)
            self._add_new(lineno, stmt)
            last = len(self.insns) - 1
            _ADDED[key] = (tuple(self.lines[n_lines:]), tuple([i[1:] for i in self.insns[n_insns:]]),
                           self.branches.get(last) if last >= n_insns else None)
            if len(_ADDED) > _ADDED_ENTRIES:
                _ADDED.popitem(last=False)
            return
        lines, insns, branch = hit
        self.lines += lines
        self.insns += [(lineno, *i) for i in insns]
        if branch is not None:
            self.branches[len(self.insns) - 1] = branch

    def _add_new(self, lineno, stmt: str):
        low = stmt.lower()
        if self.arch == "x86_32" and self.syntax == "intel" and _DESCRIPTOR_TABLE.match(low):
            raise AsmError(f"line {lineno}: '{stmt.split()[0]}' in 32-bit Intel syntax is "   # K5
                           "mis-encoded by keystone 0.9.2; not supported without GNU as")
        far = _KS_FAR.match(stmt)
        if far and not far["ops"].lstrip().startswith("*") and (
                (far["m"].lower().startswith("l") and far["ops"].lstrip().startswith("$"))
                or "far" in far["m"].lower()
                or _FAR_PAIR.fullmatch(far["ops"])):
            self._far(lineno, stmt, far)
            return
        br = _ABS_BRANCH.fullmatch(stmt)
        if br and _number(br["target"], self.syntax) is not None \
                and self._abs_branch(lineno, stmt, br):
            return
        values = []

        def hexify(m):                   # K1: every number becomes explicit hex
            tok = m.group(0)                 # (never a renamed local label: those start with "_")
            v = _number(tok, self.syntax)
            if v is None:
                raise AsmError(f"line {lineno}: bad number '{tok}'")
            start = m.start()
            before = stmt[:start].rstrip()
            st_reg = before.endswith("(") and _ST_OPEN.search(before)
            neg = before.endswith("-")
            if not st_reg:
                values.append(-v if neg else v)
            return hex(v)
        text = _NUM_TOKEN.sub(hexify, stmt)
        text = self._fix_forms(lineno, text)
        if not _ks_parses(text, self.syntax):   # K13: malformed operands can hang keystone
            raise AsmError(f"line {lineno}: cannot parse '{stmt}'")
        if text == "int3":               # K10 rewrite: the 3 is now in the opcode
            values = []
        self.lines.append(text)
        self.insns.append((lineno, stmt, values, text))

    def _fix_forms(self, lineno, text: str) -> str:
        """Rewrite forms keystone encodes differently from GNU as (K6, K9-K12)."""
        prefixes, mnem, ops = _split_insn(text)
        low, x64 = mnem.lower(), self.arch == "x86_64"
        branch = _BRANCH_MNEM.fullmatch(low) is not None
        # K10: GNU as assembles "int $3" as the one-byte int3 (CC); keystone gives CD 03
        if low == "int" and len(ops) == 1 and ops[0].lstrip("$") == "0x3":
            return _join(prefixes, "int3", [])
        # K11: moves to/from a segment register: keystone adds 0x66 ("mov %ax, %ds",
        # "movw %fs, (%rax)", Intel "mov word ptr [eax], ds") or REX.W ("mov %fs, %rax");
        # GNU as emits neither (Intel SDM Vol. 2B MOV: Sreg moves ignore operand size).
        # Said with no size and a 32-bit register, keystone emits GNU's bytes.
        if low in ("mov", "movw", "movl", "movq") and len(ops) == 2 and any(
                _SREG.fullmatch(o.strip()) for o in ops):
            dest = len(ops) - 1 if self.syntax == "att" else 0
            to_sreg = _SREG.fullmatch(ops[dest].strip()) is not None
            for i, o in enumerate(ops):
                o = _SIZE_PTR.sub("", o.strip())
                # r64 -> r32 always; r16 -> r32 only when loading the Sreg ("mov %ds, %ax" keeps 66)
                m = _GPR16_32_64.fullmatch(o)
                if m and (m.group(2).lower() == "r" or (to_sreg and not m.group(2))):
                    o = f"{m.group(1)}e{m.group(3)}"
                ops[i] = o
            return _join(prefixes, "mov", ops)
        # K11 too: 32-bit Intel "push ds" -> 66 1e (GNU as: 1e); no spelling avoids it
        if self.syntax == "intel" and not x64 and low in ("push", "pop") and len(ops) == 1 \
                and ops[0].strip().lower() in ("cs", "ds", "es", "ss"):
            raise AsmError(f"line {lineno}: '{text}' in 32-bit Intel syntax gets a stray 0x66 from "
                           "keystone 0.9.2; not supported without GNU as")
        # K14: "nopw 0x0(%rax,%rax,1)" -> 66 0f 18 /4 (a prefetch-hint opcode) instead
        # of GNU's 66 0f 1f /0; multi-byte nops are refused
        if low in ("nop", "nopw", "nopl", "nopq") and ops:
            raise AsmError(f"line {lineno}: multi-byte '{mnem}' is mis-encoded by keystone 0.9.2; "
                           "not supported without GNU as")
        if self.syntax == "intel" and _OFFSET.search(text):
            raise AsmError(f"line {lineno}: 'offset' is not supported without GNU as")
        if self.syntax == "intel" and not branch:
            for op in ops:               # K12: GNU Intel "mov eax, lab" loads memory; keystone
                bare = _BRACKETS.sub("", op)     # makes it an immediate
                for ident in _INTEL_IDENT.findall(bare):
                    if ident.lower() not in _REGISTERS and ident.lower() not in _INTEL_WORDS:
                        raise AsmError(f"line {lineno}: symbol operand '{ident}' without brackets is "
                                       "not supported without GNU as (write [" + ident + "])")
        if x64:                          # K9: absolute memory operands
            for i, op in enumerate(ops):
                if self.syntax == "att":
                    m = _ATT_ABS_MEM.fullmatch(op.strip())
                    if m and (not branch or m.group(1)):
                        ops[i] = f"{m.group(1)}{m.group(2) or ''}{m.group(3).strip()}(,%riz,1)"
                else:
                    m = _BRACKET.search(op)
                    if m and not any(t.lower() in _REGISTERS for t in _WORD.findall(m.group(1))):
                        ops[i] = op[:m.start()] + f"[riz*1+{m.group(1).strip()}]" + op[m.end():]
        # K6: keystone picks movabs for "mov $imm, %r64"; GNU as uses C7 /0 when imm fits
        if x64 and low == "mov" and len(ops) == 2 and self.syntax == "att":
            m = _ATT_IMM.fullmatch(ops[0].strip())
            if m and _REG64.fullmatch(ops[1].strip()):
                v = int(m.group(2), 16) * (-1 if m.group(1) else 1)
                if -(1 << 31) <= _signed(v, 64) < (1 << 31):     # GNU reads the number as 64 bits
                    mnem = "movq"
            elif ops[0].strip().startswith("$") and _REG64.fullmatch(ops[1].strip()):
                mnem = "movq"            # "$label": GNU uses C7 /0 + R_X86_64_32S too
        return _join(prefixes, mnem, ops)

    def _abs_branch(self, lineno, stmt, br):
        # K8: "jmp 0x1000" -- keystone picks the 2-byte EB rel8 form; GNU as always
        # emits the rel32 form (E9/E8/0F 8x) for an absolute target, which needs a
        # relocation in its object file.  We emit a fixed-size placeholder and
        # patch rel32 once the instruction's address is known (_patch_branches).
        m = br["m"].lower()
        if m in ("jmp", "jmpl", "jmpq"):
            raw = b"\xe9"
        elif m in ("call", "calll", "callq"):
            raw = b"\xe8"
        elif m[1:] in _CC:
            raw = bytes([0x0F, 0x80 + _CC[m[1:]]])
        else:
            return False                 # jecxz, jrcxz...: keystone's rel8 matches GNU as
        self.lines.append(".byte " + ", ".join(hex(b) for b in raw + bytes(4)))
        self.insns.append((lineno, stmt, None, None))
        self.branches[len(self.insns) - 1] = _number(br["target"], self.syntax)
        return True

    def _far(self, lineno, stmt, far):   # K4: direct far jmp/call ptr16:32 (Intel SDM Vol. 2A JMP/CALL)
        if self.arch != "x86_32":
            raise AsmError(f"line {lineno}: direct far {far['m']} needs GNU as "
                           "(keystone 0.9.2 mis-handles far jumps)")
        ops = far["ops"].strip()
        if self.syntax == "att":
            parts = [p.strip() for p in ops.split(",")]
            ok = len(parts) == 2 and all(p.startswith("$") for p in parts)
            parts = [p[1:] for p in parts] if ok else []
        else:
            parts = [p.strip() for p in ops.split(":")]
            ok = len(parts) == 2
        sel = _number(parts[0], self.syntax) if ok else None
        off = parts[1] if ok else ""
        off_num = _number(off, self.syntax) if off[:1].isdigit() else None
        if sel is None or sel >= 1 << 16 or not (
                (off_num is not None and off_num < 1 << 32) or _SYMBOL.fullmatch(off)):
            raise AsmError(f"line {lineno}: far {far['m'].split()[0]} '{ops}' is not supported without "
                           "GNU as (only 'selector, offset' with a number or label offset)")
        op = "0x9a" if "call" in far["m"].lower() else "0xea"
        # ".long label" is resolved by keystone to the label's absolute address
        self.lines.append(f".byte {op}; .long {hex(off_num) if off_num is not None else off}; "
                          f".word {hex(sel)}")
        self.insns.append((lineno, stmt, None, None))


# The worker: keystone runs only here, in a child process (K13).  Protocol: one
# JSON request per line on stdin, one JSON answer per line on stdout.
_KS_CHILD = r"""
import json, sys
import keystone as K
engines = {}
def engine(arch, syntax):
    if (arch, syntax) not in engines:
        ks = K.Ks(K.KS_ARCH_X86, K.KS_MODE_64 if arch == "x86_64" else K.KS_MODE_32)
        ks.syntax = K.KS_OPT_SYNTAX_ATT if syntax == "att" else K.KS_OPT_SYNTAX_INTEL
        engines[arch, syntax] = ks
    return engines[arch, syntax]
sys.stdout.write("ready\n"); sys.stdout.flush()
for line in sys.stdin:
    req, missing = json.loads(line), []
    ks = engine(req["arch"], req["syntax"])
    def resolver(name, value):       # only records a missing symbol; never invents a value
        missing.append(name.decode(errors="replace"))
        return False
    ks.sym_resolver = resolver
    try:
        enc, _ = ks.asm(req["text"].encode(), req["address"])
        out = {"hex": bytes(enc or b"").hex(), "err": None}
    except K.KsError as e:
        out = {"hex": None, "err": str(e).split(" (KS_ERR")[0]}
    out["missing"] = missing
    sys.stdout.write(json.dumps(out) + "\n"); sys.stdout.flush()
"""


class _KsWorker:
    """A long-lived child process that runs keystone, so that keystone's hangs and
    crashes (K13) cost a restart and an AsmError instead of the reader's kernel.
    No shell; every request has a timeout; the process is ours and is killed by pid."""

    def __init__(self):
        self.proc = None
        self.lock = threading.Lock()
        atexit.register(self.stop)

    def start(self) -> bool:
        self.owner = os.getpid()
        self.proc = subprocess.Popen([sys.executable, "-c", _KS_CHILD], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buf = b""
        if self._readline(KS_START_TIMEOUT) != b"ready":
            self.stop()
            return False
        return True

    def _readline(self, timeout: float):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], left)[0] if left > 0 else []
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:                # timed out (hang) or EOF (crash)
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def stop(self):
        if self.proc is not None and getattr(self, "owner", None) != os.getpid():
            self.proc = None             # inherited through fork: not ours to kill
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
            self.proc = None

    def call(self, req: dict, timeout: float):
        with self.lock:
            if self.proc is not None and self.owner != os.getpid():
                self.proc = None         # forked: the parent's worker is not ours to use
            if self.proc is None or self.proc.poll() is not None:
                self.stop()
                if not self.start():
                    raise AsmError("line 1: the keystone worker process did not start "
                                   "(is keystone-engine installed?)")
            try:
                self.proc.stdin.write((json.dumps(req) + "\n").encode())
                self.proc.stdin.flush()
                line = self._readline(timeout)
            except OSError:
                line = None
            if line is None:
                self.stop()
                return None
            return json.loads(line)


_WORKER = _KsWorker()
KS_TIMEOUT = 2.0                         # seconds per keystone request (it answers in < 1 ms)
KS_START_TIMEOUT = 30.0


def _ks_asm(text: str, arch: str, syntax: str, address: int):
    """-> (bytes or None, error text or None, missing symbols); "hung" error on hang/crash."""
    r = _WORKER.call({"text": text, "arch": arch, "syntax": syntax, "address": address}, KS_TIMEOUT)
    if r is None:
        return None, "hung", []
    return (None if r["hex"] is None else bytes.fromhex(r["hex"])), r["err"], r["missing"]


# keystone in this process, for auto's fast path.  Only statements of the conservative operand grammar
# (_ks_parses, checked by _KsProgram for every statement) ever reach it, which keeps K13's hangs out; the
# explicit backend="keystone" still runs keystone in the worker process.
_KS_ENGINES: dict = {}
_KS_MISSING: list = []
_KS_LOCK = threading.Lock()


def _ks_engine(arch: str, syntax: str):
    ks = _KS_ENGINES.get((arch, syntax))
    if ks is None:
        import keystone as K
        ks = K.Ks(K.KS_ARCH_X86, K.KS_MODE_64 if arch == "x86_64" else K.KS_MODE_32)
        ks.syntax = K.KS_OPT_SYNTAX_ATT if syntax == "att" else K.KS_OPT_SYNTAX_INTEL

        def resolver(name, value):       # only records a missing symbol; never invents a value
            _KS_MISSING.append(name.decode(errors="replace"))
            return False
        ks.sym_resolver = resolver
        _KS_ENGINES[arch, syntax] = ks
    return ks


def _ks_asm_here(text: str, arch: str, syntax: str, address: int):
    """Like _ks_asm, in this process: -> (bytes or None, error text or None, missing symbols)."""
    import keystone as K
    with _KS_LOCK:
        _KS_MISSING.clear()
        try:
            enc, _ = _ks_engine(arch, syntax).asm(text.encode(), address, as_bytes=True)
            return enc or b"", None, list(_KS_MISSING)
        except K.KsError as e:
            return None, str(e).split(" (KS_ERR")[0], list(_KS_MISSING)


# Encodings of single statements that name no label and are no branch: nothing keystone emits for them depends
# on where they sit (numbers are absolute, K8's branches are placeholders patched later), so a program is the
# concatenation of its statements' bytes, and a statement met before costs no keystone call.
_PIECES: "OrderedDict[tuple, bytes]" = OrderedDict()
_PIECES_ENTRIES = 4096
_BRANCHY = re.compile(r"^(?:[a-z0-9]+\s+)*?(?:j[a-z]+|call[a-z]*|loop[a-z]*|xbegin|lcall|ljmp)\b", re.I)
_CUT = "__asm_cut_"                      # labels _pieces puts between statements


_LABEL_BRANCH = re.compile(r"(jmp|call|j[a-z]{1,4})[lqw]?\s+([A-Za-z_.][\w.$]*)", re.I)
_IDENT = re.compile(r"(?<![\w.$%])[A-Za-z_.][\w.$]*")


def _pieces(lines: list, arch: str, syntax: str) -> list:
    """keystone's bytes for each of ``lines`` (statements that name no label and are no branch), or None where
    keystone refuses one or emits nothing. Lines met before come from _PIECES; the others from ONE keystone call
    (its cost is mostly fixed): a label after each line and a table of those labels' addresses at the end
    (".long") give exactly the bytes each line produced. If that call fails, each new line is asked alone."""
    memo = [_PIECES.get((arch, syntax, line)) for line in lines]
    new = list(dict.fromkeys(line for line, b in zip(lines, memo) if b is None))
    if not new:
        return memo
    got = {}
    if len(new) > 1 and not any(_CUT in line for line in new):
        n = len(new)
        text = "\n".join(f"{line}\n{_CUT}{k}:" for k, line in enumerate(new)) + \
            "".join(f"\n.long {_CUT}{k}" for k in range(n))
        code, err, missing = _ks_asm_here(text, arch, syntax, 0)
        if err is None and not missing and len(code) > 4 * n:
            ends, start = struct.unpack(f"<{n}I", code[-4 * n:]), 0
            if ends[-1] == len(code) - 4 * n:
                for line, end in zip(new, ends):
                    if end <= start:     # a line with no bytes (K2) or labels out of order: ask alone
                        got = {}
                        break
                    got[line], start = code[start:end], end
    for line in new:
        if line not in got:
            b, err, missing = _ks_asm_here(line, arch, syntax, 0)
            got[line] = b if err is None and not missing and b else None
    for line, b in got.items():
        if b is not None:
            _PIECES[arch, syntax, line] = b
    while len(_PIECES) > _PIECES_ENTRIES:
        _PIECES.popitem(last=False)
    return [got[line] if b is None else b for line, b in zip(lines, memo)]


def _branch_kind(mnemonic: str):
    """"jmp", "call" or a condition ("ne") for a direct branch _layout can place, else None (jecxz, loop...)."""
    mn = mnemonic.lower()
    return mn if mn in ("jmp", "call") else mn[1:] if mn[1:] in _CC else None


def _layout(items: list, arch: str, address: int):
    """Place items -- ("label", name), ("bytes", b, ...) or ("br", kind, label, ...) -- from ``address``, with
    direct jumps and calls to labels relaxed the way GNU as does (Intel SDM Vol. 2A JMP/Jcc/CALL: EB rel8 or E9
    rel32, 70+cc rel8 or 0F 80+cc rel32, E8 rel32 -- short wherever the final displacement fits, found by growing
    until nothing changes). -> (each item's bytes, each item's address and then the end, each label's address),
    or None if a branch cannot reach its label."""
    sizes = [0 if it[0] == "label" else len(it[1]) if it[0] == "bytes" else 5 if it[1] == "call" else 2
             for it in items]
    branches = [i for i, it in enumerate(items) if it[0] == "br"]
    while True:
        starts = list(itertools.accumulate(sizes, initial=address))
        where = {it[1]: starts[i] for i, it in enumerate(items) if it[0] == "label"}
        grew = False
        for i in branches:
            if sizes[i] == 2 and not -128 <= where[items[i][2]] - starts[i + 1] <= 127:
                sizes[i] = 5 if items[i][1] == "jmp" else 6
                grew = True
        if not grew:
            break
    parts = [it[1] if it[0] == "bytes" else b"" for it in items]
    for i in branches:
        kind, rel = items[i][1], where[items[i][2]] - starts[i + 1]
        if arch == "x86_32":
            rel = (rel + (1 << 31)) % (1 << 32) - (1 << 31)      # 32-bit EIP wraps
        if not -(1 << 31) <= rel < (1 << 31):
            return None
        rel32 = (rel & 0xFFFFFFFF).to_bytes(4, "little")
        if sizes[i] == 2:
            parts[i] = bytes([0xEB if kind == "jmp" else 0x70 + _CC[kind], rel & 0xFF])
        else:
            op = b"\xe8" if kind == "call" else b"\xe9" if kind == "jmp" else bytes([0x0F, 0x80 + _CC[kind]])
            parts[i] = op + rel32
    return parts, starts, where


def _ks_program_here(prog, arch: str, syntax: str, address: int):
    """keystone's bytes for the program, from memoized statements where it can: statements that name no label
    are position-independent pieces (_pieces), direct jumps and calls to labels are placed by _layout. Anything
    else is one whole-program keystone call. The cross-check then judges the result either way."""
    whole = "\n".join(prog.lines)
    labels = set(prog.label_index)
    items, lines = [], []                # items: ("label", name) | ("bytes", index in lines) | ("br", kind, name)
    for line in prog.lines:
        if line.endswith(":") and line[:-1] in labels:
            items.append(("label", line[:-1]))
            continue
        m = _LABEL_BRANCH.fullmatch(line)
        if m and m.group(2) in labels:
            kind = _branch_kind(m.group(1))
            if kind is None:
                return _ks_asm_here(whole, arch, syntax, address)
            items.append(("br", kind, m.group(2)))
            continue
        if _BRANCHY.match(line) or any(w in labels for w in _IDENT.findall(line)):
            return _ks_asm_here(whole, arch, syntax, address)
        items.append(("bytes", len(lines)))
        lines.append(line)
    pieces = _pieces(lines, arch, syntax)
    if None in pieces:                   # the whole-program call reports it properly
        return _ks_asm_here(whole, arch, syntax, address)
    placed = _layout([("bytes", pieces[it[1]]) if it[0] == "bytes" else it for it in items], arch, address)
    if placed is None:
        return _ks_asm_here(whole, arch, syntax, address)
    return b"".join(placed[0]), None, []


def _keystone_assemble(source: str, arch: str, syntax: str, address: int) -> bytes:
    return _keystone_build(source, arch, syntax, address, _ks_asm)[0]


def _keystone_build(source: str, arch: str, syntax: str, address: int, ks_asm) -> tuple[bytes, list | None]:
    """-> (code, listing): the listing comes from the same capstone decode as the cross-check."""
    prog = _KsProgram(source, arch, syntax)
    if not prog.insns:
        return b"", []
    if ks_asm is _ks_asm_here:
        code, err, missing = _ks_program_here(prog, arch, syntax, address)
    else:
        code, err, missing = ks_asm("\n".join(prog.lines), arch, syntax, address)
    if err == "hung":
        raise AsmError(f"line {prog.insns[0][0]}: keystone 0.9.2 hung or crashed on this program; "
                       "not supported without GNU as")
    if missing:
        name = missing[0]
        raise AsmError(f"line {_line_of(source, name)}: undefined symbol '{name}' "
                       "(external symbols need a linker; define it in the program)")
    if err is not None or not code:
        # find the offending statement: assemble each one alone
        own = [l for l in prog.lines if not l.endswith(":")]
        for (lineno, stmt, _, _), line in zip(prog.insns, own):
            one, e1, miss1 = ks_asm(line, arch, syntax, address)
            if e1 == "hung":
                raise AsmError(f"line {lineno}: keystone 0.9.2 hung or crashed on '{stmt}'; "
                               "not supported without GNU as")
            if e1 is not None and not miss1:
                raise AsmError(f"line {lineno}: {_ks_message(e1, stmt)}")
            if e1 is None and not one:   # K2: success with no bytes
                raise AsmError(f"line {lineno}: keystone produced no bytes for '{stmt}'")
        raise AsmError(f"line {prog.insns[0][0]}: keystone failed: {(err or 'no output').lower()}")
    decoded = _cross_check(prog, code, arch, syntax, address)
    code = _patch_branches(prog, code, decoded, arch)
    listing = []
    for idx, i in enumerate(decoded):
        if idx in prog.branches:         # patched after the decode: decode those bytes again
            off = i.address - address
            listing += disassemble_text(code[off:off + i.size], arch, syntax, i.address)
        else:
            listing.append(Line(i.address, i.bytes, f"{i.mnemonic} {i.op_str}".strip()))
    return code, listing


def _ks_message(err: str, stmt: str) -> str:
    stmt = _clip(stmt, 60)
    words = stmt.split()
    if err.lower().startswith("invalid mnemonic"):
        prefixes, mnem, _ = _split_insn(stmt)
        return f"unknown instruction '{mnem or (words[0] if words else stmt)}'"
    return f"{err.lower()} in '{stmt}'"


def _patch_branches(prog, code: bytes, decoded, arch: str) -> bytes:
    code = bytearray(code)
    for idx, target in prog.branches.items():
        insn = decoded[idx]
        end = insn.address + insn.size
        rel = target - end
        if arch == "x86_32":
            rel = (rel + (1 << 31)) % (1 << 32) - (1 << 31)   # 32-bit EIP wraps
        if not -(1 << 31) <= rel < (1 << 31):
            raise AsmError(f"line {prog.insns[idx][0]}: branch target {target:#x} is out of "
                           "rel32 range")
        off = end - 4 - decoded[0].address
        code[off:off + 4] = (rel & 0xFFFFFFFF).to_bytes(4, "little")
    return bytes(code)


def _regs_in_text(text: str, syntax: str) -> set:
    text = text.lower()
    if "st" in text:
        text = _ST_REG.sub(r"st(\1)", text)       # st(0x1) -> st(1)
    if syntax == "att":
        names = _ATT_REG_NAME.findall(text)
    else:
        names = [n for n in _INTEL_REG_NAME.findall(text)
                 if n in _REGISTERS or n == "st"]
    return {"st(0)" if n == "st" else n for n in names} - {"riz", "eiz"}


class _Decoded(NamedTuple):
    address: int
    size: int
    bytes: bytes
    mnemonic: str
    op_str: str


# Verdicts of the per-instruction check for statements that name no label (then nothing in the check
# depends on where the instruction sits): (arch, syntax, statement, keystone text, values, bytes) -> why.
_CHECKED: "OrderedDict[tuple, str | None]" = OrderedDict()
_CHECKED_ENTRIES = 4096


def _remember(key: tuple, why) -> None:
    _CHECKED[key] = why
    while len(_CHECKED) > _CHECKED_ENTRIES:
        _CHECKED.popitem(last=False)


def _cross_check(prog: _KsProgram, code: bytes, arch: str, syntax: str, address: int):
    """Decode keystone's output with capstone and check it against the source:
    one instruction per statement covering every byte; every number of the
    statement present and in range among the decoded immediates and
    displacements (K1, K2, K7); the registers named in the statement exactly
    the decoded operand registers (K9: keystone turns absolute addresses into
    %rip-relative ones); no 64-bit moffs form unless movabs was asked for.

    One detail-free decode gives the instruction boundaries and the listing's text; capstone's operand
    details are decoded only for instructions whose verdict is not already known."""
    mv = memoryview(code)
    decoded = [_Decoded(a, n, bytes(mv[a - address:a - address + n]), m, o)
               for a, n, m, o in _capstone_lite(arch, syntax, skipdata=False).disasm_lite(code, address)]
    if sum(i.size for i in decoded) != len(code) or len(decoded) != len(prog.insns):
        lineno = prog.insns[min(len(decoded), len(prog.insns) - 1)][0]
        raise AsmError(f"line {lineno}: keystone output does not decode to one instruction per "
                       "statement; not supported without GNU as")
    end = address + len(code)
    labels = {name: decoded[i].address if i < len(decoded) else end
              for name, i in prog.label_index.items()}
    cs = None
    for (lineno, stmt, values, text), d in zip(prog.insns, decoded):
        if values is None:
            continue
        refs = [m for m in _LABEL_REF.finditer(text) if m.group(1) in labels]
        key = None if refs else (arch, syntax, stmt, text, tuple(values), d.bytes)
        br = _LABEL_BRANCH.fullmatch(text) if len(refs) == 1 else None
        if key is not None and key in _CHECKED:
            why = _CHECKED[key]
        elif br and br.group(2) == refs[0].group(1) and _branch_lands(d.mnemonic, d.op_str, br.group(1),
                                                                       labels[br.group(2)], arch):
            why = None                   # a direct jump/call to a label: its decoded target is the label
        else:
            cs = cs or _capstone(arch, syntax, skipdata=False)
            insn = next(cs.disasm(d.bytes, d.address, 1), None)
            if insn is None:             # capstone decodes nothing that would run past 2**64 (or 2**32)
                raise AsmError(f"line {lineno}: code at {address:#x} runs past the end of the {arch} "
                               "address space")
            why = _check_one(insn, stmt, values, text, refs, labels, arch, syntax)
            if key is not None:
                _remember(key, why)
        if why:
            raise AsmError(f"line {lineno}: keystone encoded '{_clip(stmt, 60)}' as '{d.mnemonic} "
                           f"{d.op_str}' ({why}); not supported without GNU as")
    return decoded


def _branch_lands(mnemonic: str, op_str: str, asked: str, target: int, arch: str) -> bool:
    """Does the decoded direct branch (detail-free: mnemonic and op_str) go where the statement's ``asked``
    mnemonic (as _LABEL_BRANCH reads it) said, to ``target``?"""
    mn, want = mnemonic.lower(), asked.lower()
    if not (mn == want or (mn[:-1] == want and mn[-1] in "lqw")     # "callq" for "call"
            or (want[0] == "j" and mn.startswith("j") and want not in ("jmp",)
                and mn[1:] in _CC and want[1:] in _CC and _CC[mn[1:]] == _CC[want[1:]])):
        return False
    try:
        got = int(op_str.strip(), 16)
    except ValueError:
        return False
    return got == target % (1 << (64 if arch == "x86_64" else 32))


_LABEL_REF = re.compile(r"(?<![\w.%])([A-Za-z_.][\w.$]*)(?:\s*([-+])\s*(0x[0-9a-f]+))?", re.I)


def _check_one(insn, stmt, values, text, refs, labels, arch, syntax):
    """Why the decoded ``insn`` is not what ``stmt`` asked for, or None."""
    found, regs, rip, reg_name = [], set(), None, _REG_NAMES[arch]
    for op in insn.operands:
        if op.type == _OP_IMM:
            found.append((op.imm, op.size or 8))
        elif op.type == _OP_REG:
            regs.add(reg_name[op.reg])
        elif op.type == _OP_MEM:
            mem = op.mem
            found.append((mem.disp, 8 if arch == "x86_64" else 4))
            found.append((mem.scale, 8))
            regs.update(reg_name[r] for r in (mem.base, mem.index, mem.segment) if r)
            if mem.base == capstone.x86.X86_REG_RIP:
                rip = insn.address + insn.size + mem.disp
    why, values = None, list(values)
    # label references: "lab", "lab+0x4", "lab-0x8" must decode to the label's address (+n)
    for m in refs:
        n = int(m.group(3), 16) * (-1 if m.group(2) == "-" else 1) if m.group(3) else 0
        if n in values:
            values.remove(n)
        want_v = labels[m.group(1)] + n
        if not (any(_same(want_v, got, size) for got, size in found)
                or (rip is not None and (rip - want_v) % (1 << 64) == 0)):
            why = f"label {m.group(1)} = {want_v:#x} lost or out of range"
    for v in values:
        if not any(_same(v, got, size) for got, size in found) and not _implicit_one(v, insn):
            why = f"value {v:#x} lost or out of range"
    want = _regs_in_text(text, syntax)
    if not _STRING_OPS.match(insn.mnemonic) and not why:
        # capstone lists x87's implicit st(0) ("fld %st(1)"); "ds" is the default segment
        extra, missing = regs - want - {"st(0)"}, want - regs - {"ds", "st(0)"}
        if extra or missing:
            why = f"registers {sorted(extra | missing)} differ"
    why = why or _prefix_problem(insn, text, want, arch)
    if arch == "x86_64" and insn.opcode[0] in (0xA0, 0xA1, 0xA2, 0xA3) and "movabs" not in stmt.lower():
        why = "64-bit moffs form instead of GNU as's ModRM form"
    return why


_R16 = {"ax", "bx", "cx", "dx", "si", "di", "sp", "bp"} | {f"r{i}w" for i in range(8, 16)}
_R64 = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp"} | {f"r{i}" for i in range(8, 16)}


def _prefix_problem(insn, text: str, regs: set, arch: str):
    """A stray operand-size prefix (0x66) or REX.W the statement gives no reason
    for -- the shape of K5 and K11, checked on every instruction."""
    low = text.lower()                   # judged on the source, never on capstone's reading
    if any(r.startswith(("xmm", "ymm", "mm", "st")) for r in regs):
        return None                      # SSE/x87: 0x66 and REX.W are part of the opcode
    asked = _mnemonic(low)
    if insn.prefix[2] == 0x66 and not (
            regs & _R16 or _WORD_PTR.search(low) or "data16" in low or _W_SUFFIX.fullmatch(asked)):
        return "a 0x66 prefix the statement does not ask for"
    if arch == "x86_64" and insn.rex & 8 and not (
            regs & _R64 or "qword" in low or _Q_SUFFIX.fullmatch(asked)
            or asked in ("cqto", "cqo", "cdqe", "movabs", "movsxd", "cmpxchg16b")):
        return "a REX.W prefix the statement does not ask for"
    return None


def _same(v: int, got: int, size: int) -> bool:
    bits = 8 * size
    if not -(1 << (bits - 1)) <= v < (1 << bits):      # does not fit the field: truncated (K7)
        return False
    mask = (1 << bits) - 1
    return (v & mask) == (got & mask)


def _implicit_one(v: int, insn) -> bool:
    # "shl $1, %eax" is encoded D1 /4 (shift by one); capstone shows no immediate.
    return v == 1 and insn.opcode[0] in (0xD0, 0xD1)


# ----------------------------------------------------------------------------
# auto's fast path: a program assembled from statements checked one by one
# ----------------------------------------------------------------------------
# A program whose statements are all label definitions, instructions that name no label and are no branch, and
# direct jumps and calls to its own labels is, for the pipeline above (_KsProgram, _ks_program_here,
# _cross_check), the concatenation of its instructions' bytes with the branches placed by _layout: each
# instruction's bytes, its verdict and its listing text depend on the statement alone. So each statement goes
# through that pipeline once, alone (_learn), and what it contributes is memoized (_Stmt). A program made only
# of such statements is then put together here without rewriting, keystone or a detail decode; anything else
# (a statement _learn refused, a prefix on its own line, a numeric label, a label an instruction names, a label
# defined twice, a string) returns None and takes the full path, with its errors and line numbers. The tests
# hold the two paths equal on generated programs, errors included.
class _Stmt(NamedTuple):
    labels: tuple                        # label names the statement defines
    code: bytes | None                   # an instruction's bytes (checked alone), or None
    text: str                            # its listing text (the same at any address)
    branch: str | None                   # or a direct branch to a label: _branch_kind's "jmp", "call", "ne"...
    asked: str                           # the branch's mnemonic as written (for _branch_lands)
    target: str | None                   # the branch's label
    names: frozenset                     # identifiers the instruction names


_STMTS: dict = {}                        # (arch, syntax) -> OrderedDict: raw statement -> _Stmt, or None
_STMTS_ENTRIES = 4096
_UNKNOWN = object()
_ELSEWHERE = 0x7FFF_F000                 # a second address at which a piece's listing text must not change


def _learn(raws: list, arch: str, syntax: str) -> dict:
    """raw statement -> _Stmt (or None: the full path handles programs with it), each statement through the
    pipeline alone; the new instructions among them take one keystone call and two decodes in all."""
    out, pending = {}, []
    for raw in raws:
        out[raw] = None
        try:
            _validate_source(raw)
            prog = _KsProgram(raw, arch, syntax)
        except AsmError:
            continue
        labels = tuple(prog.label_index)
        if labels and any("__asm_" in lab for lab in labels):
            continue                     # numeric local labels (renamed by _number_labels)
        if not prog.insns:
            out[raw] = _Stmt(labels, None, "", None, "", None, frozenset())
            continue
        (_, _, values, text) = prog.insns[-1]
        if len(prog.insns) != 1 or values is None:   # far jumps, absolute branches: their bytes depend on more
            continue
        names = frozenset(_IDENT.findall(text)).union([m.group(1) for m in _LABEL_REF.finditer(text)])
        br = _LABEL_BRANCH.fullmatch(text)
        kind = _branch_kind(br.group(1)) if br and br.group(2) != text.split()[0] else None   # not "jmp jmp"
        if kind is not None:
            out[raw] = _Stmt(labels, None, "", kind, br.group(1), br.group(2), names)
        elif not (_BRANCHY.match(text) or "__asm_" in text or (labels and names.intersection(labels))):
            pending.append((raw, prog.insns[0], labels, names))
    codes = _pieces([p[1][3] for p in pending], arch, syntax)
    done = [(p, code) for p, code in zip(pending, codes) if code is not None]
    cs, lite = _capstone(arch, syntax, skipdata=False), _capstone_lite(arch, syntax, skipdata=False)
    # _cross_check's work for instructions that name no label: one decode in detail mode (for the check), one
    # without details at another address (the listing's text, which must not depend on the address)
    codes = [code for _, code in done]
    here = _each(codes, 0, lambda b, a: ((i.address, i.size, i) for i in cs.disasm(b, a)))
    there = _each(codes, _ELSEWHERE, lambda b, a: ((d[0], d[1], d[2:]) for d in lite.disasm_lite(b, a)))
    for ((raw, (_, stmt, values, text), labels, names), code), insn, other in zip(done, here, there):
        if insn is None:
            continue                     # not one instruction
        key = (arch, syntax, stmt, text, tuple(values), code)
        why = _CHECKED[key] if key in _CHECKED else _check_one(insn, stmt, values, text, [], {}, arch, syntax)
        _remember(key, why)
        if why is None and other == (insn.mnemonic, insn.op_str):
            out[raw] = _Stmt(labels, code, f"{insn.mnemonic} {insn.op_str}".strip(), None, "", None, names)
            _remember_shape(raw, values, insn, out[raw], arch, syntax)
    _memo_stmts(out, arch, syntax)
    return out


def _memo_stmts(stmts: dict, arch: str, syntax: str) -> None:
    memo = _STMTS.setdefault((arch, syntax), OrderedDict())
    memo.update(stmts)
    while len(memo) > _STMTS_ENTRIES:
        memo.popitem(last=False)


def _each(codes: list, address: int, decode) -> list:
    """For each of ``codes``, laid end to end from ``address``: the item ``decode(code, at)`` yields for it as
    ``(address, size, item)`` when the code is exactly one instruction, else None. One decode of them all; a
    code is decoded alone only where that decode's boundaries miss the codes' own."""
    found = {a: (n, item) for a, n, item in decode(b"".join(codes), address)} if len(codes) > 1 else {}
    out, at = [], address
    for code in codes:
        hit = found.get(at)
        if hit is None or hit[0] != len(code):
            hit = next(((n, item) for _, n, item in decode(code, at)), None)
        out.append(hit[1] if hit is not None and hit[0] == len(code) else None)
        at += len(code)
    return out


# Statements that differ from one learned before only in their numbers ("mov $5, %ecx" after "mov $7, %ecx").
# GNU as picks an instruction's form from its numbers only through their ranges (binutils, gas/config/tc-i386.c:
# fits_in_signed_byte, fits_in_unsigned_byte, fits_in_signed_word and friends, on the number and on it truncated
# to the operand size; a zero displacement is dropped; "shl $1" and "int $3" have forms of their own). So when
# every number of the new statement falls in the same ranges as the learned one's (_value_class), GNU as emits the
# same form, and the bytes are the learned bytes with each number written into its field, at the offset and size
# capstone's decode of the learned bytes gave (imm_offset, disp_offset). A number with no field of its own (a
# scale, an implicit 1, two numbers in one field) keeps its statement off this path. tests/test_asm.py holds it
# to GNU as on every range boundary.
class _Shape(NamedTuple):
    stmt: _Stmt                          # the statement learned (its labels and names hold for the new one)
    code: bytes
    fields: tuple                        # per number, in source order: (offset, size) of its field in ``code``


_SHAPES: "OrderedDict[tuple, _Shape]" = OrderedDict()   # (arch, syntax, statement with "#" for numbers,
#                                                          _value_class of each number) -> _Shape
_SHAPES_ENTRIES = 4096
_SCALE = re.compile(r",\s*#\s*\)|\*\s*#|#\s*\*")        # AT&T (base,index,scale); Intel index*scale
_RANGES = tuple((-(1 << (b - 1)), (1 << (b - 1)) - 1) for b in (8, 16, 32, 64)) + \
    tuple((0, (1 << b) - 1) for b in (8, 16, 32, 64))


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _value_class(v: int) -> tuple:
    """Which of GNU as's ranges ``v`` falls in: as written, and truncated to 16, 32 and 64 bits (read signed)."""
    views = (v, _signed(v, 16), _signed(v, 32), _signed(v, 64))
    return (v == 0, v == 1, v == 3, v < 0) + tuple(lo <= w <= hi for w in views for lo, hi in _RANGES)


def _shape_numbers(raw: str, syntax: str):
    """(shape, numbers) of a statement: the numbers as _KsProgram reads them (a "-" before one negates it), and the
    statement with each replaced by "#"; None where a number is not a plain field value."""
    numbers = []
    for m in _NUM_TOKEN.finditer(raw):
        tok = m.group(0)
        v = _number(tok, syntax) if len(tok) <= MAX_DIGITS else None
        before = raw[:m.start()].rstrip()
        if v is None or (before.endswith("(") and _ST_OPEN.search(before)):
            return None
        numbers.append(-v if before.endswith("-") else v)
    if not numbers:
        return None
    shape = _NUM_TOKEN.sub("#", raw)
    return None if _SCALE.search(shape) else (shape, numbers)


def _field_bytes(v: int, size: int) -> bytes:
    return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _remember_shape(raw: str, values: list, insn, stmt: _Stmt, arch: str, syntax: str) -> None:
    """File ``raw``'s learned bytes under its shape when each of its numbers sits alone in a field of its own."""
    found = _shape_numbers(raw, syntax)
    if found is None or found[1] != list(values):
        return
    shape, numbers = found
    fields = [(insn.imm_offset, insn.imm_size), (insn.disp_offset, insn.disp_size)]
    code, placed = stmt.code, []
    for v in numbers:
        hits = [(off, n) for off, n in fields if n and code[off:off + n] == _field_bytes(v, n)]
        if len(hits) != 1 or hits[0] in placed:
            return
        placed.append(hits[0])
    _SHAPES[arch, syntax, shape, tuple(map(_value_class, numbers))] = _Shape(stmt, code, tuple(placed))
    while len(_SHAPES) > _SHAPES_ENTRIES:
        _SHAPES.popitem(last=False)


def _from_shape(raw: str, arch: str, syntax: str):
    """raw's _Stmt from a learned statement of the same shape whose numbers fall in the same ranges, or _UNKNOWN."""
    found = _shape_numbers(raw, syntax)
    shape = found and _SHAPES.get((arch, syntax, found[0], tuple(map(_value_class, found[1]))))
    if not shape:
        return _UNKNOWN
    code = bytearray(shape.code)
    for v, (off, n) in zip(found[1], shape.fields):
        code[off:off + n] = _field_bytes(v, n)
    code = bytes(code)
    lite = _capstone_lite(arch, syntax, skipdata=False)
    here, there = (next(lite.disasm_lite(code, at), None) for at in (0, _ELSEWHERE))
    if here is None or here[1] != len(code) or there is None or here[2:] != there[2:]:
        return _UNKNOWN
    stmt = shape.stmt._replace(code=code, text=f"{here[2]} {here[3]}".strip())
    _memo_stmts({raw: stmt}, arch, syntax)
    return stmt


def _fast_build(source: str, arch: str, syntax: str, address: int):
    """(code, listing) from memoized statements (see above), or None: then the full path decides."""
    if len(source) > MAX_SOURCE or '"' in source or "\0" in source:
        return None
    if "\r" in source:
        source = source.replace("\r\n", "\n").replace("\r", "\n")
    if "#" in source:                    # (no string literal: '#' starts a comment, ';' ends a statement)
        source = _COMMENT.sub("", source)
    raws = [r for r in map(str.strip, source.replace(";", "\n").split("\n")) if r]
    memo = _STMTS.get((arch, syntax), {})
    stmts = [memo.get(r, _UNKNOWN) for r in raws]
    if _UNKNOWN in stmts:
        stmts = [_from_shape(r, arch, syntax) if s is _UNKNOWN else s for r, s in zip(raws, stmts)]
    if _UNKNOWN in stmts:
        new = _learn(list(dict.fromkeys(r for r, s in zip(raws, stmts) if s is _UNKNOWN)), arch, syntax)
        stmts = [new[r] if s is _UNKNOWN else s for r, s in zip(raws, stmts)]
    if None in stmts:
        return None
    labels = [lab for s in stmts for lab in s.labels]
    defined = set(labels)
    if len(defined) != len(labels):        # a label defined twice (GNU as accepts some of these): the full path
        return None
    items = []
    for s in stmts:
        if s.labels:
            items += [("label", lab) for lab in s.labels]
        if s.code is not None:
            if defined and not defined.isdisjoint(s.names):
                return None
            items.append(("bytes", s.code, s.text))
        elif s.branch is not None:
            if s.target not in defined or s.names & defined != {s.target}:
                return None
            items.append(("br", s.branch, s.target, s.asked))
    placed = _layout(items, arch, address)
    if placed is None:
        return None
    parts, starts, where = placed
    code = b"".join(parts)
    if starts[-1] > (1 << (64 if arch == "x86_64" else 32)) - 16:
        return None                      # near the top, capstone's decode decides: the full path
    listing = []
    for it, b, at in zip(items, parts, starts):
        if it[0] == "bytes":
            listing.append(Line(at, b, it[2]))
        elif it[0] == "br":
            d = next(_capstone_lite(arch, syntax, skipdata=False).disasm_lite(b, at), None)
            if d is None or d[1] != len(b) or not _branch_lands(d[2], d[3], it[3], where[it[2]], arch):
                return None              # the full path's check decides
            listing.append(Line(at, b, f"{d[2]} {d[3]}".strip()))
    return code, listing


_COMMENT = re.compile(r"#[^\n]*")


# ----------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------
_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_ENTRIES = 512


def cache_clear() -> None:
    """Forget every cached assembly (tests that swap a backend's internals call this)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def memo_clear() -> None:
    """Forget every cached assembly and every statement learned (as if none had been met: benchmarks, tests)."""
    cache_clear()
    for memo in (_ADDED, _CHECKED, _PIECES, _FRONT, _STMTS, _SHAPES):
        memo.clear()


def assemble(source: str, arch: str = "x86_64", syntax: str = "att", address: int = 0,
             backend: str = "auto") -> Assembly:
    """Assemble ``source`` to bytes as GNU as would, placed at ``address``.

    backend: "auto" (keystone in this process for statements of the safe grammar, checked instruction by
    instruction against capstone's decode; GNU as for everything else, or when that check refuses),
    "gnu-as", "keystone" (keystone in an isolated worker process).
    Results are cached by (source, arch, syntax, address, backend), so assembling a program again (a Run
    click on unchanged source) costs a dictionary look-up.
    Raises AsmError with a one-line "line N: ..." message on bad input.
    """
    _check_mode(arch, syntax, address)
    if backend not in BACKENDS:
        raise AsmError(f"unknown backend {backend!r} (use one of {', '.join(BACKENDS)})")
    if not isinstance(source, str):
        raise AsmError(f"source must be a str, not {type(source).__name__}")
    key = (source, arch, syntax, address, backend, gnu_as())
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    if hit is None:
        hit = _assemble(source, arch, syntax, address, backend)
        with _CACHE_LOCK:
            _CACHE[key] = hit
            while len(_CACHE) > CACHE_ENTRIES:
                _CACHE.popitem(last=False)
    code, listing, used = hit
    return Assembly(code, list(listing), arch, syntax, address, used)


def _assemble(source: str, arch: str, syntax: str, address: int, backend: str) -> tuple:
    if backend == "auto":
        built = _fast_build(source, arch, syntax, address)
        if built is not None:
            return built[0], tuple(built[1]), "keystone"
    source = _validate_source(source)
    listing = None
    if backend == "auto":
        try:
            code, listing = _keystone_build(source, arch, syntax, address, _ks_asm_here)
            backend = "keystone"
        except AsmError:
            if gnu_as() is None:
                raise
            code, backend = _gnu_assemble(source, arch, syntax, address), "gnu-as"
    elif backend == "gnu-as":
        code = _gnu_assemble(source, arch, syntax, address)
    else:
        code, listing = _keystone_build(source, arch, syntax, address, _ks_asm)
    if address + len(code) > (1 << (64 if arch == "x86_64" else 32)):
        raise AsmError(f"line 1: code at {address:#x} runs past the end of the {arch} address space")
    if listing is None:
        listing = _listing(code, arch, syntax, address)
    return code, tuple(listing), backend


__all__ = ["assemble", "disassemble", "disassemble_text", "format_listing", "check_gas_source", "cache_clear", "memo_clear", "AsmError", "Assembly", "Insn", "Line",
           "gnu_as", "gnu_as_version", "ARCHES", "SYNTAXES", "BACKENDS"]
