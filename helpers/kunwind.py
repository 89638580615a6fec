"""kunwind: how the Linux kernel itself unwinds its stack, read from the real kernel Debian ships.

Serves chapter 4a (the kernel's side of "how a debugger finds the callers"). User space unwinds with DWARF CFI
(``.eh_frame``); x86-64 Linux builds without asynchronous unwind tables (``-fno-asynchronous-unwind-tables`` in
``arch/x86/Makefile``) and, with ``CONFIG_UNWINDER_ORC``, has objtool (``tools/objtool``, run by kbuild with
``--orc``) write its own table instead: ORC, "Oops Rewind Capability". Two sections per object:

* ``.orc_unwind_ip``: one 32-bit PC-relative address per row (where the row starts);
* ``.orc_unwind``: one 6-byte ``struct orc_entry`` per row (torvalds/linux ``arch/x86/include/asm/orc_types.h``):
  ``s16 sp_offset; s16 bp_offset;`` then, little-endian bitfields, ``sp_reg:4 bp_reg:4 type:2 end:1``. The
  previous frame's stack pointer is ``sp_reg + sp_offset``; the caller's ``rbp`` was saved at
  ``prev_sp + bp_offset`` (or is untouched, ``bp_reg = UNDEFINED``); the return address sits at ``prev_sp - 8``.
  The kernel's reader is ``arch/x86/kernel/unwind_orc.c`` (``unwind_next_frame``).

This module decodes both sections of a kbuild-built module with pyelftools (resolving ``.orc_unwind_ip``'s
relocations, since a module is a relocatable object) and reads the register names from the installed kernel's
``orc_types.h``. Where Debian's kernel packages are missing, :func:`evidence` returns the recording in
``helpers/recorded/kunwind_module.json`` that ``python -m helpers.kunwind`` made, and says so.

API::

    orc_registers(text=None)        -> {number: "sp", ...}   (from orc_types.h; the cited copy without headers)
    read_orc(path)                  -> [OrcRow]  every row of a module, sorted by address
    unwind_sections(path)           -> {".eh_frame": 0, ".orc_unwind": n, ...} bytes per section (0: absent)
    function_code(path, name)       -> bytes of a function in a relocatable object
    straight_line_sp(code)          -> {offset: caller sp - rsp} through a function's straight-line start
    evidence(module, function)      -> OrcEvidence (live from /lib/modules, or the recording)
"""
from __future__ import annotations

import glob
import json
import re
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from .files import existing_file

MODULE = "kernel/fs/fat/fat.ko"   # a module Debian's kbuild compiled: the FAT file system
FUNCTION = "fat_get_cluster"      # one of its functions, with a prologue of pushes and a sub
ORC_TYPES_H = "arch/x86/include/asm/orc_types.h"
RECORDING = Path(__file__).with_name("recorded") / "kunwind_module.json"
# orc_types.h's register numbers, for machines without the kernel headers (tests compare it with the header).
CITED_REGISTERS = {0: "undefined", 1: "prev_sp", 2: "dx", 3: "di", 4: "bp", 5: "sp", 6: "r10", 7: "r13",
                   8: "bp_indirect", 9: "sp_indirect"}
ORC_TYPES = {0: "call", 1: "regs", 2: "regs_partial"}   # UNWIND_HINT_TYPE_* (include/linux/objtool.h)
SECTIONS = (".eh_frame", ".debug_frame", ".orc_unwind", ".orc_unwind_ip", "__mcount_loc")


class KunwindError(ValueError):
    """Not an ELF object, no ORC sections, or a malformed header. One line."""


@dataclass(frozen=True)
class OrcRow:
    function: str        # the function the row's address falls in ("" if none)
    offset: int          # from the function's start
    sp_reg: str          # previous sp = sp_reg + sp_offset
    sp_offset: int
    bp_reg: str          # "undefined": rbp untouched; "prev_sp": saved at prev_sp + bp_offset
    bp_offset: int
    type: str
    end: bool            # no caller beyond this frame (entry code)

    def text(self) -> str:
        if self.sp_reg == "undefined":
            return "no unwind information (end of stack or unreachable)" if self.end else "undefined"
        cfa = f"prev_sp = {self.sp_reg}{self.sp_offset:+d}"
        bp = "rbp untouched" if self.bp_reg == "undefined" else f"rbp at {self.bp_reg}{self.bp_offset:+d}"
        return f"{cfa}; return address at prev_sp-8; {bp}"


def kernel_tree_file(rel: str, pattern: str = "/usr/src/linux-headers-*-common"):
    hits = sorted(Path(p) / rel for p in glob.glob(pattern) if (Path(p) / rel).is_file())
    return hits[-1] if hits else None


def orc_registers(text: str | None = None) -> dict[int, str]:
    """``ORC_REG_*`` numbers and names from ``orc_types.h`` (``text``, default: the installed header; without
    one, the cited copy :data:`CITED_REGISTERS`)."""
    if text is not None and not isinstance(text, str):
        raise KunwindError("orc_registers needs orc_types.h's text (a str)")
    if text is None:
        path = kernel_tree_file(ORC_TYPES_H)
        if path is None:
            return dict(CITED_REGISTERS)
        text = path.read_text()
    regs = {int(v): n.lower() for n, v in re.findall(r"^#define ORC_REG_(\w+)\s+(\d+)\s*$", text, re.M) if n != "MAX"}
    if not regs:
        raise KunwindError(f"{ORC_TYPES_H}: no ORC_REG_* definitions")
    return regs


def _open(path):
    path = existing_file(path, error=KunwindError)
    try:
        fh = open(path, "rb")
        return fh, ELFFile(fh)
    except (OSError, ELFError, TypeError, ValueError) as e:
        raise KunwindError(f"{Path(str(path)).name}: not a readable ELF file ({e})") from None


def unwind_sections(path) -> dict[str, int]:
    """Bytes in each unwind-related section of an ELF file (0 where the section is absent)."""
    fh, elf = _open(path)
    with fh:
        return {name: (elf.get_section_by_name(name).data_size if elf.get_section_by_name(name) else 0)
                for name in SECTIONS}


def read_orc(path, registers: dict | None = None) -> list[OrcRow]:
    """Every ORC row of a relocatable kernel object, with the function each row's address falls in."""
    regs = registers or orc_registers()
    fh, elf = _open(path)
    with fh:
        ip_sec, orc_sec = elf.get_section_by_name(".orc_unwind_ip"), elf.get_section_by_name(".orc_unwind")
        if ip_sec is None or orc_sec is None:
            raise KunwindError(f"{Path(str(path)).name}: no .orc_unwind/.orc_unwind_ip sections (not built with ORC)")
        n = ip_sec.data_size // 4
        if orc_sec.data_size != 6 * n:
            raise KunwindError(f"{Path(str(path)).name}: {n} addresses but {orc_sec.data_size} bytes of orc_entry")
        symtab = elf.get_section_by_name(".symtab")
        ips = {}
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and elf.get_section(sec["sh_info"]).name == ".orc_unwind_ip":
                for r in sec.iter_relocations():
                    sym = symtab.get_symbol(r["r_info_sym"])
                    ips[r["r_offset"] // 4] = (sym["st_shndx"], sym["st_value"] + r["r_addend"])
        funcs = [(s["st_shndx"], s["st_value"], s["st_size"], s.name) for s in symtab.iter_symbols()
                 if s["st_info"]["type"] == "STT_FUNC" and isinstance(s["st_shndx"], int)]
        raw = orc_sec.data()
        rows = []
        for i in range(n):
            if i not in ips:
                raise KunwindError(f"{Path(str(path)).name}: .orc_unwind_ip entry {i} has no relocation")
            shndx, ip = ips[i]
            sp_off, bp_off, bits = struct.unpack_from("<hhH", raw, 6 * i)
            fn = next(((name, ip - v) for sx, v, size, name in funcs if sx == shndx and v <= ip < v + max(size, 1)),
                      ("", ip))
            rows.append(OrcRow(fn[0], fn[1], regs.get(bits & 0xF, str(bits & 0xF)), sp_off,
                               regs.get((bits >> 4) & 0xF, str((bits >> 4) & 0xF)), bp_off,
                               ORC_TYPES.get((bits >> 8) & 0x3, str((bits >> 8) & 0x3)), bool((bits >> 10) & 1)))
    return sorted(rows, key=lambda r: (r.function, r.offset))


def function_code(path, function: str, limit: int = 256) -> bytes:
    """The first ``limit`` bytes of ``function`` in a relocatable object (relocations left unapplied)."""
    fh, elf = _open(path)
    with fh:
        sym = next((s for s in elf.get_section_by_name(".symtab").iter_symbols()
                    if s.name == function and s["st_info"]["type"] == "STT_FUNC"), None)
        if sym is None or not isinstance(sym["st_shndx"], int):
            raise KunwindError(f"{Path(str(path)).name}: no function {function!r}")
        data = elf.get_section(sym["st_shndx"]).data()
        return data[sym["st_value"]: sym["st_value"] + min(sym["st_size"], limit)]


def straight_line_sp(code: bytes) -> dict[int, int]:
    """For the straight-line start of a function (up to its first branch or return): at each instruction
    boundary, how far above the current ``rsp`` the caller's stack pointer is (8 at entry: the return address).
    Counts ``push`` (+8), ``pop`` (-8) and ``sub``/``add`` of an immediate to ``%rsp``; a ``call`` (such as the
    entry's ``call __fentry__``) returns with ``rsp`` unchanged. This is what an unwinder needs, computed from the machine code alone."""
    import capstone
    if not isinstance(code, (bytes, bytearray)):
        raise KunwindError("straight_line_sp needs the function's bytes")
    cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    off, out = 8, {0: 8}
    for insn in cs.disasm(code, 0):
        m = insn.mnemonic
        if m.startswith("push"):
            off += 8
        elif m.startswith("pop"):
            off -= 8
        elif m in ("sub", "add") and insn.op_str.startswith("rsp, "):
            try:
                imm = int(insn.op_str.split(", ")[1], 0)
            except ValueError:
                break
            off += imm if m == "sub" else -imm
        elif m.startswith(("j", "ret", "int3", "ud2")):
            break
        out[insn.address + insn.size] = off
    return out


@dataclass(frozen=True)
class OrcEvidence:
    module: str
    release: str
    function: str
    sections: dict       # section -> bytes
    rows_total: int      # ORC rows in the whole module
    rows: list           # [OrcRow] of ``function``
    code: bytes          # the function's first bytes
    recorded: bool

    def provenance(self) -> str:
        how = "recorded by `python -m helpers.kunwind`" if self.recorded else "read here"
        return f"[{how}: {self.module} of Debian's linux-image {self.release}]"


def _live(module: str):
    for d in sorted(glob.glob("/lib/modules/*/"), reverse=True):
        path = Path(d) / module
        if path.is_file():
            return path, Path(d).name
    return None, None


def evidence(module: str = MODULE, function: str = FUNCTION) -> OrcEvidence:
    """A Debian module's unwind sections and one function's ORC rows and code: live from /lib/modules, else the
    recording."""
    if not isinstance(module, str) or ".." in module or module.startswith("/") or not module.endswith(".ko"):
        raise KunwindError("module must be a path under /lib/modules/<release>/ ending in .ko")
    path, release = _live(module)
    if path is not None:
        rows = read_orc(path)
        mine = [r for r in rows if r.function == function]
        if not mine:
            raise KunwindError(f"{module}: no ORC rows for {function!r}")
        return OrcEvidence(module, release, function, unwind_sections(path), len(rows), mine,
                           function_code(path, function), recorded=False)
    if not RECORDING.exists():
        raise KunwindError(f"{module} not found (apt-get install linux-image-amd64) and no recording")
    saved = json.loads(RECORDING.read_text())
    if (saved["module"], saved["function"]) != (module, function):
        raise KunwindError(f"{module} not found here; the recording is of {saved['module']} {saved['function']}")
    return OrcEvidence(module, saved["release"], function, saved["sections"], saved["rows_total"],
                       [OrcRow(**r) for r in saved["rows"]], bytes.fromhex(saved["code"]), True)


def record(module: str = MODULE, function: str = FUNCTION) -> Path:
    ev = evidence(module, function)
    if ev.recorded:
        raise KunwindError("cannot record: the module is not installed here")
    RECORDING.write_text(json.dumps({"module": ev.module, "release": ev.release, "function": ev.function,
                                     "sections": ev.sections, "rows_total": ev.rows_total,
                                     "rows": [asdict(r) for r in ev.rows], "code": ev.code.hex()}, indent=1) + "\n")
    return RECORDING


if __name__ == "__main__":
    print("recorded", record(*(sys.argv[1:3] or [MODULE, FUNCTION])))
