"""elf: what a real ELF file contains, read with pyelftools.

Serves every chapter that builds something and then asks "what did the toolchain really produce?":
chapter 1/2 (static vs dynamic, interpreters, needed libraries), chapter 4 (LTO's effect on ``.text`` and
on symbols, the sections of Go binaries). It models the ELF gABI (System V ABI, "Object Files" chapter:
section header table, symbol table, program headers, dynamic section) and nothing else.

API::

    info = read_elf(path)           -> ElfInfo
    info.sections                   -> [Section(name, size, flags)]   (tuples: name, size, flags like "AX")
    info.symbols                    -> [Symbol(name, value, size, type, bind, visibility, section)]
    info.interp                     -> "/lib64/ld-linux-x86-64.so.2" or None   (PT_INTERP)
    info.needed                     -> ["libc.so.6", ...]                      (DT_NEEDED)
    info.is_static                  -> True when there is neither PT_INTERP nor DT_NEEDED
    info.text_size                  -> size of ``.text`` (0 if absent)
    info.section("name"), info.has_section("name"), info.symbol("name"), info.functions()
    info.segments                   -> [Segment(type, vaddr, memsz, filesz, offset, flags)]
    load_segments(path)             -> [(vaddr, bytes, flags)] of PT_LOAD segments (for an emulator)

Bad input (missing file, not an ELF) raises :class:`ElfError` with a one-line message.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from . import filecache
from .files import existing_file


class ElfError(ValueError):
    """The file is missing or is not a readable ELF. The message is one line."""


class Section(NamedTuple):
    name: str
    size: int
    flags: str  # readelf's letters: W (write), A (alloc), X (exec), M, S, T (TLS), G ...


class Symbol(NamedTuple):
    name: str
    value: int
    size: int
    type: str        # FUNC, OBJECT, NOTYPE, SECTION, FILE, TLS ...
    bind: str        # LOCAL, GLOBAL, WEAK
    visibility: str  # DEFAULT, HIDDEN, PROTECTED, INTERNAL
    section: str     # section name, or UND / ABS / COM


class Segment(NamedTuple):
    type: str   # PT_LOAD, PT_INTERP, ...
    vaddr: int
    memsz: int
    filesz: int
    offset: int
    flags: str  # "R", "RW", "RX" ...


# readelf's flag letters, in readelf's order (binutils readelf.c: get_elf_section_flags)
_FLAG_LETTERS = [
    (SH_FLAGS.SHF_WRITE, "W"), (SH_FLAGS.SHF_ALLOC, "A"), (SH_FLAGS.SHF_EXECINSTR, "X"),
    (SH_FLAGS.SHF_MERGE, "M"), (SH_FLAGS.SHF_STRINGS, "S"), (SH_FLAGS.SHF_INFO_LINK, "I"),
    (SH_FLAGS.SHF_LINK_ORDER, "L"), (SH_FLAGS.SHF_GROUP, "G"), (SH_FLAGS.SHF_TLS, "T"),
]


def _flags(value: int) -> str:
    return "".join(letter for bit, letter in _FLAG_LETTERS if value & bit)


def _strip_prefix(s: str, prefix: str) -> str:
    return s[len(prefix):] if s.startswith(prefix) else s


@dataclass
class ElfInfo:
    path: Path
    machine: str          # EM_X86_64, EM_386, ...
    elf_type: str         # ET_EXEC, ET_DYN, ET_REL
    bits: int
    entry: int
    sections: list[Section] = field(default_factory=list)
    symbols: list[Symbol] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    interp: str | None = None
    needed: list[str] = field(default_factory=list)

    @property
    def is_static(self) -> bool:
        return self.interp is None and not self.needed

    @property
    def text_size(self) -> int:
        s = self.section(".text")
        return s.size if s else 0

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def has_section(self, name: str) -> bool:
        return self.section(name) is not None

    def symbol(self, name: str) -> Symbol | None:
        """The first defined symbol called ``name`` (static symbols may repeat across files)."""
        return next((s for s in self.symbols if s.name == name and s.section != "UND"), None)

    def functions(self) -> list[Symbol]:
        """Defined FUNC symbols, by address."""
        return sorted((s for s in self.symbols if s.type == "FUNC" and s.section != "UND"), key=lambda s: s.value)

    def function_at(self, addr: int) -> Symbol | None:
        """The FUNC symbol whose [value, value+size) holds ``addr``."""
        for s in self.functions():
            if s.value <= addr < s.value + max(s.size, 1):
                return s
        return None


def _open(path) -> tuple[Path, "object"]:
    p = existing_file(path, error=ElfError)
    f = p.open("rb")
    if f.read(4) != b"\x7fELF":
        f.close()
        raise ElfError(f"not an ELF file (bad magic): {p.name}")
    f.seek(0)
    return p, f


# Parsed files, by (path, size, mtime_ns, content hash): a Go binary takes ~140 ms to parse and the book asks
# for the same ones again and again; hashing it costs a few ms.  A file that changed in any way (even within
# one mtime tick, with the same size) has another hash and is parsed again.
_CACHE: "OrderedDict[tuple, ElfInfo]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_ENTRIES = 64


def _key(p: Path) -> tuple:
    st = p.stat()
    h = hashlib.blake2b(digest_size=16)
    with p.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return (str(p.resolve()), st.st_size, st.st_mtime_ns, h.hexdigest())


def _copy(info: ElfInfo, path: Path) -> ElfInfo:
    """A caller's own copy (the lists may be changed by the caller; their items are immutable tuples)."""
    return dataclasses.replace(info, path=path, sections=list(info.sections), symbols=list(info.symbols),
                               segments=list(info.segments), needed=list(info.needed))


def read_elf(path) -> ElfInfo:
    """Read sections, symbols (both .symtab and .dynsym), program headers, PT_INTERP and DT_NEEDED.

    Cached per file and content (see ``_CACHE``): asking again for an unchanged file costs a hash."""
    p, f = _open(path)
    f.close()
    try:
        key = _key(p)
    except OSError as e:
        raise ElfError(f"cannot read {p.name}: {e.strerror}") from None
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    if hit is not None:
        return _copy(hit, p)
    info = filecache.cached("elf", p, "read_elf", lambda: _to_json(_parse(path)), lambda d: _from_json(d, p),
                            _READERS)
    with _CACHE_LOCK:
        _CACHE[key] = _copy(info, p)
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return info


def _to_json(info: ElfInfo) -> dict:
    return {"machine": info.machine, "elf_type": info.elf_type, "bits": info.bits, "entry": info.entry,
            "sections": info.sections, "symbols": info.symbols, "segments": info.segments, "interp": info.interp,
            "needed": info.needed}


def _rows(rows, kind, types) -> list:
    """``rows`` as ``kind`` tuples, each field of exactly the type ``types`` says (a cached entry is checked,
    not trusted)."""
    if type(rows) is not list or not all(type(r) is list and tuple(map(type, r)) == types for r in rows):
        raise ValueError(f"bad cached {kind.__name__}s")
    return list(map(kind._make, rows))


def _from_json(d: dict, p: Path) -> ElfInfo:
    if not isinstance(d, dict) or not (isinstance(d["machine"], str) and isinstance(d["elf_type"], str)
                                       and d["bits"] in (32, 64) and isinstance(d["entry"], int)
                                       and (d["interp"] is None or isinstance(d["interp"], str))):
        raise ValueError("bad cached ELF header")
    if not (isinstance(d["needed"], list) and all(isinstance(n, str) for n in d["needed"])):
        raise ValueError("bad cached DT_NEEDED list")
    return ElfInfo(p, d["machine"], d["elf_type"], d["bits"], d["entry"],
                   _rows(d["sections"], Section, (str, int, str)),
                   _rows(d["symbols"], Symbol, (str, int, int, str, str, str, str)),
                   _rows(d["segments"], Segment, (str, int, int, int, int, str)), d["interp"], d["needed"])


def _parse(path) -> ElfInfo:
    p, f = _open(path)
    try:
        with f:
            elf = ELFFile(f)
            info = ElfInfo(p, elf["e_machine"], elf["e_type"], elf.elfclass, elf["e_entry"])
            names = {}
            for i, sec in enumerate(elf.iter_sections()):
                names[i] = sec.name
                if sec["sh_type"] != "SHT_NULL":
                    info.sections.append(Section(sec.name, sec["sh_size"], _flags(sec["sh_flags"])))
            for sec in elf.iter_sections():
                if isinstance(sec, SymbolTableSection):
                    for sym in sec.iter_symbols():
                        if not sym.name:
                            continue
                        shndx = sym["st_shndx"]
                        where = {"SHN_UNDEF": "UND", "SHN_ABS": "ABS", "SHN_COMMON": "COM"}.get(shndx) \
                            if isinstance(shndx, str) else names.get(shndx, str(shndx))
                        info.symbols.append(Symbol(
                            sym.name, sym["st_value"], sym["st_size"],
                            _strip_prefix(sym["st_info"]["type"], "STT_"),
                            _strip_prefix(sym["st_info"]["bind"], "STB_"),
                            _strip_prefix(sym["st_other"]["visibility"], "STV_"),
                            where or str(shndx)))
                elif isinstance(sec, DynamicSection):
                    info.needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
            for seg in elf.iter_segments():
                fl = seg["p_flags"]
                info.segments.append(Segment(seg["p_type"], seg["p_vaddr"], seg["p_memsz"], seg["p_filesz"],
                                             seg["p_offset"], ("R" if fl & 4 else "") + ("W" if fl & 2 else "")
                                             + ("X" if fl & 1 else "")))
                if seg["p_type"] == "PT_INTERP":
                    info.interp = seg.get_interp_name()
            return info
    except _PyElfError as e:
        raise ElfError(f"cannot parse ELF {p.name}: {str(e).splitlines()[0]}") from None
    except ElfError:
        raise
    except Exception as e:  # construct/struct errors from a truncated or corrupt file
        raise ElfError(f"cannot parse ELF {p.name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


# part of filecache's key: an edit of the parser, or of the shapes it fills, reads every file again
_READERS = filecache.source_digest(_parse, _to_json, _flags, Section, Symbol, Segment) + repr(_FLAG_LETTERS)


def load_segments(path) -> list[tuple[int, bytes, str]]:
    """The PT_LOAD segments as (vaddr, memory image, flags); bytes past p_filesz are zero (.bss)."""
    p, f = _open(path)
    try:
        with f:
            elf = ELFFile(f)
            out = []
            for seg in elf.iter_segments():
                if seg["p_type"] != "PT_LOAD":
                    continue
                data = seg.data()
                data = data + bytes(seg["p_memsz"] - len(data))
                fl = seg["p_flags"]
                out.append((seg["p_vaddr"], data, ("R" if fl & 4 else "") + ("W" if fl & 2 else "") + ("X" if fl & 1 else "")))
            return out
    except Exception as e:  # pyelftools/construct errors from a truncated or corrupt file
        raise ElfError(f"cannot read segments of {p.name}: {type(e).__name__}") from None


def symbol_bytes(path, name: str) -> tuple[int, bytes]:
    """(address, bytes) of the defined symbol ``name``, read from the section that holds it."""
    info = read_elf(path)
    sym = info.symbol(name)
    if sym is None:
        raise ElfError(f"{Path(path).name} has no symbol {name!r}")
    p, f = _open(path)
    try:
        with f:
            sec = ELFFile(f).get_section_by_name(sym.section)
            if sec is None or sec["sh_type"] == "SHT_NOBITS":
                raise ElfError(f"symbol {name!r} is not in a section with contents")
            base = sec["sh_addr"] if info.elf_type != "ET_REL" else 0
            start = sym.value - base
            return sym.value, sec.data()[start:start + sym.size]
    except ElfError:
        raise
    except Exception as e:
        raise ElfError(f"cannot read symbol {name!r} from {p.name}: {type(e).__name__}") from None
