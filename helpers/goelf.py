"""goelf: what the Go runtime itself knows about a Go binary, read back from the ELF file.

Serves chapter 4b (goroutine stacks): the stack-growth model in :mod:`helpers.gostack` needs the same
tables the real runtime uses, read from the real binary rather than typed in:

* ``.gopclntab`` -- the function table and each function's *pcsp* table (SP delta at every PC), as the
  runtime's ``findfunc``/``pcvalue``/``funcMaxSPDelta`` read them. Format of Go 1.20 and later (magic
  0xfffffff1): golang/go src/runtime/symtab.go (``pcHeader``, ``step``, ``readvarint``, ``funcMaxSPDelta``),
  src/runtime/runtime2.go (``_func``), src/internal/abi/symtab.go (the magic numbers).
* DWARF ``.debug_info`` -- field offsets of runtime structs (``runtime.g``, ``runtime.gobuf``), so the
  model never hard-codes ``stackguard0 = +0x10``; it asks the binary.
* constants of the pinned Go tree (``stackGuard``, ``stackPreempt``, ...) evaluated from ``src/`` for
  linux/amd64 (:func:`runtime_constants`).

API::

    b = GoBinary(path)
    b.symbol("main.delta") -> address;  b.funcs; b.findfunc(pc) -> Func | None;  b.func("main.small")
    b.pcsp(func, pc) -> SP delta (bytes below the entry SP, return address excluded);  b.max_sp_delta(func)
    b.struct("runtime.g") -> {"stack.lo": 0, "stack.hi": 8, "stackguard0": 16, "sched.sp": ..., ...}
    b.struct_size("runtime.g")
    runtime_constants() -> {"stackGuard": 928, "stackPreempt": 0xfffffffffffffade, ...}

Bad input raises :class:`GoBinaryError` (a ValueError) with one line.
"""
from __future__ import annotations

import ast
import bisect
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from elftools.elf.elffile import ELFFile

from helpers import elf as _elf
from helpers import filecache
from helpers import toolchain
from helpers.files import existing_file

GO120_MAGIC = 0xFFFFFFF1  # internal/abi/symtab.go: Go120PCLnTabMagic
PCDATA_STACK_MAP_INDEX = 1      # internal/abi/symtab.go
FUNCDATA_ARGS_POINTER_MAPS = 0  # internal/abi/symtab.go
FUNCDATA_LOCALS_POINTER_MAPS = 1
FUNCDATA_STACK_OBJECTS = 2
PC_QUANTUM = 1  # internal/runtime/sys: PCQuantum on amd64


class GoBinaryError(ValueError):
    """Not a Go binary the model can read (no .gopclntab, old format, missing DWARF...). One line."""


@dataclass(frozen=True)
class Func:
    """One row of the runtime's function table (runtime2.go: _func)."""

    name: str
    entry: int
    end: int
    args: int       # in/out argument bytes (stack ABI0 view)
    pcsp: int       # offset of the pcsp table in pctab
    funcid: int
    pcdata: tuple = ()    # offsets in pctab of the PCDATA tables (0 = none)
    funcdata: tuple = ()  # offsets from go:func.* of the FUNCDATA blobs (None = none)

    def __contains__(self, pc: int) -> bool:
        return self.entry <= pc < self.end


def _readvarint(p: bytes, i: int) -> tuple[int, int]:
    # runtime/symtab.go: readvarint
    v = shift = 0
    while True:
        b = p[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7


def pcvalue_steps(table: bytes, off: int, entry: int):
    """Yield (start_pc, end_pc, value) runs of one pc-value table (runtime/symtab.go: step)."""
    pc, val, i, first = entry, -1, off, True
    while True:
        uv, i2 = _readvarint(table, i)
        if uv == 0 and not first:
            return
        first = False
        val += -(uv & 1) ^ (uv >> 1)  # zig-zag decoded value delta
        pcd, i = _readvarint(table, i2)
        start, pc = pc, pc + pcd * PC_QUANTUM
        yield start, pc, val


class GoBinary:
    """A Go ELF executable with its pclntab and the DWARF layout of runtime structs."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.info = _elf.read_elf(self.path)
        except _elf.ElfError as e:
            raise GoBinaryError(str(e)) from None
        if self.info.machine != "EM_X86_64":
            raise GoBinaryError(f"{self.path.name}: only linux/amd64 Go binaries are modelled, not {self.info.machine}")
        self.symbols = {s.name: s for s in self.info.symbols if s.section != "UND"}
        sec = self.info.section(".gopclntab")
        if sec is None:
            raise GoBinaryError(f"{self.path.name}: no .gopclntab section (not a Go binary, or stripped with -s?)")
        with self.path.open("rb") as f:
            e = ELFFile(f)
            self._pcln = e.get_section_by_name(".gopclntab").data()
            self.segments = [(vaddr, data, fl) for vaddr, data, fl in _elf.load_segments(self.path)]
        self._parse_pclntab()

    # ------------------------------------------------------------------ symbols and memory
    def symbol(self, name: str) -> int:
        s = self.symbols.get(name)
        if s is None:
            raise GoBinaryError(f"{self.path.name}: no symbol {name!r}")
        return s.value

    def symbol_size(self, name: str) -> int:
        self.symbol(name)
        return self.symbols[name].size

    # ------------------------------------------------------------------ pclntab
    def _parse_pclntab(self) -> None:
        p = self._pcln
        magic, pad1, pad2, min_lc, ptr = struct.unpack_from("<IBBBB", p, 0)
        if magic != GO120_MAGIC:
            raise GoBinaryError(f"{self.path.name}: pclntab magic {magic:#x}, only the Go 1.20+ format ({GO120_MAGIC:#x}) is read")
        if ptr != 8 or min_lc != 1:
            raise GoBinaryError(f"{self.path.name}: pclntab for ptrSize={ptr}, minLC={min_lc}; expected amd64 (8, 1)")
        # runtime/symtab.go: pcHeader {magic, pad1, pad2, minLC, ptrSize, nfunc, nfiles, _, funcnameOffset,
        #                              cuOffset, filetabOffset, pctabOffset, pclnOffset}
        nfunc, _nfiles, _unused, funcname_off, _cu, _filetab, pctab_off, pcln_off = struct.unpack_from("<8Q", p, 8)
        # The entry offsets are relative to moduledata.text (runtime/symtab.go: textAddr), i.e. runtime.text.
        text = self.symbol("runtime.text")
        self._pctab = memoryview(p)[pctab_off:]
        ftab = pcln_off
        funcs = []
        for k in range(nfunc):
            entry_off, func_off = struct.unpack_from("<II", p, ftab + 8 * k)
            end_off, _ = struct.unpack_from("<II", p, ftab + 8 * (k + 1))
            # runtime2.go: _func {entryOff u32, nameOff i32, args i32, deferreturn u32, pcsp u32, pcfile u32,
            #                     pcln u32, npcdata u32, cuOffset u32, startLine i32, funcID u8, flag u8, _ u8, nfuncdata u8}
            fo = pcln_off + func_off
            _e, name_off, args, _dr, pcsp = struct.unpack_from("<IiiII", p, fo)
            funcid = p[fo + 40]
            npcdata, = struct.unpack_from("<I", p, fo + 28)
            nfuncdata = p[fo + 43]
            # the _func header is followed by pcdata [npcdata]uint32 and funcdata [nfuncdata]uint32
            pcdata = struct.unpack_from(f"<{npcdata}I", p, fo + 44)
            fdata = struct.unpack_from(f"<{nfuncdata}I", p, fo + 44 + 4 * npcdata)
            start = funcname_off + name_off
            name = p[start:p.index(b"\0", start)].decode()
            funcs.append(Func(name, text + entry_off, text + end_off, args, pcsp, funcid, pcdata,
                              tuple(None if d == 0xFFFFFFFF else d for d in fdata)))
        self.funcs = funcs
        self._entries = [f.entry for f in funcs]
        self._by_name = {f.name: f for f in funcs}

    def findfunc(self, pc: int) -> Func | None:
        """The function containing ``pc`` (runtime/symtab.go: findfunc), or None."""
        i = bisect.bisect_right(self._entries, pc) - 1
        if i < 0 or pc >= self.funcs[i].end:
            return None
        return self.funcs[i]

    def func(self, name: str) -> Func:
        f = self._by_name.get(name)
        if f is None:
            raise GoBinaryError(f"{self.path.name}: no function {name!r} in .gopclntab")
        return f

    def pcsp_table(self, f: Func) -> list[tuple[int, int, int]]:
        """The pcsp runs of ``f``: [(start_pc, end_pc, sp_delta)]."""
        return _pcsp_runs(self, f)

    def pcsp(self, f: Func, pc: int) -> int:
        """Bytes the function has pushed below its entry SP (return address excluded) at ``pc``
        (runtime/symtab.go: funcspdelta)."""
        cache = self.__dict__.setdefault("_pcsp_at", {})
        v = cache.get(pc)
        if v is not None:
            return v
        for start, end, val in _pcsp_runs(self, f):
            if start <= pc < end:
                cache[pc] = val
                return val
        raise GoBinaryError(f"pc {pc:#x} has no pcsp entry in {f.name}")

    def max_sp_delta(self, f: Func) -> int:
        """runtime/symtab.go: funcMaxSPDelta -- the most stack the function's own frame needs."""
        return max([0] + [v for _s, _e, v in _pcsp_runs(self, f)])

    def pcdata_value(self, f: Func, table: int, pc: int) -> int:
        """runtime/symtab.go: pcdatavalue -- the value of PCDATA table ``table`` at ``pc`` (-1 if none)."""
        if table >= len(f.pcdata) or f.pcdata[table] == 0:
            return -1
        for start, end, val in pcvalue_steps(self._pctab, f.pcdata[table], f.entry):
            if start <= pc < end:
                return val
        return -1

    def stackmap(self, f: Func, kind: int, index: int) -> list[bool] | None:
        """runtime/symtab.go: funcdata + stackmapdata -- bit ``i`` says word ``i`` holds a live pointer.

        ``kind`` is FUNCDATA_ArgsPointerMaps (0) or FUNCDATA_LocalsPointerMaps (1); ``index`` the
        PCDATA_StackMapIndex value. None when the function has no such map.
        """
        if kind >= len(f.funcdata) or f.funcdata[kind] is None:
            return None
        addr = self._gofunc + f.funcdata[kind]
        n, nbit = struct.unpack("<ii", self._image(addr, 8))
        if not 0 <= index < n:
            raise GoBinaryError(f"{f.name}: stack map index {index} out of range [0, {n})")
        stride = (nbit + 7) >> 3
        data = self._image(addr + 8 + index * stride, stride)
        return [bool(data[i >> 3] >> (i & 7) & 1) for i in range(nbit)]

    def stack_objects(self, f: Func) -> list[tuple[int, int, tuple]]:
        """runtime/stkframe.go getStackMap + runtime/stack.go stackObjectRecord: the frame's stack objects
        (address-taken variables, tracked whether live or not) as [(off, size, pointer word indices)];
        ``off`` < 0 is from varp, >= 0 from argp. The pointer mask is at moduledata.rodata + gcdataoff."""
        cache = self.__dict__.setdefault("_objs", {})
        if f.entry in cache:
            return cache[f.entry]
        out = []
        k = FUNCDATA_STACK_OBJECTS
        if k < len(f.funcdata) and f.funcdata[k] is not None:
            addr = self._gofunc + f.funcdata[k]
            n, = struct.unpack("<Q", self._image(addr, 8))
            if n > 1 << 16:
                raise GoBinaryError(f"{f.name}: {n} stack objects is not a plausible count")
            rodata = self.symbol("runtime.rodata")
            for i in range(n):
                off, size, ptr_bytes, gcdataoff = struct.unpack("<iiiI", self._image(addr + 8 + 16 * i, 16))
                words = ptr_bytes // 8
                mask = self._image(rodata + gcdataoff, (words + 7) // 8) if words else b""
                out.append((off, size, tuple(w for w in range(words) if mask[w >> 3] >> (w & 7) & 1)))
        cache[f.entry] = out
        return out

    @property
    def _gofunc(self) -> int:
        return self.symbol("go:func.*")  # moduledata.gofunc: the base of FUNCDATA offsets

    def _image(self, addr: int, size: int) -> bytes:
        for vaddr, data, _fl in self.segments:
            if vaddr <= addr and addr + size <= vaddr + len(data):
                return data[addr - vaddr:addr - vaddr + size]
        raise GoBinaryError(f"address {addr:#x} is not in a PT_LOAD segment")

    # ------------------------------------------------------------------ DWARF
    def struct(self, name: str) -> dict[str, int]:
        """Flattened member offsets of a struct type from DWARF, e.g. {"sched.sp": 56}."""
        return dict(self._struct(name)[1])

    def struct_size(self, name: str) -> int:
        return self._struct(name)[0]

    def _struct(self, name: str):
        types = _dwarf_structs(str(self.path))
        if name not in types:
            raise GoBinaryError(f"{self.path.name}: no DWARF type {name} (the model reads {', '.join(WANTED_STRUCTS)})")
        return types[name]


def _pcsp_runs(b: GoBinary, f: Func):
    if f.pcsp == 0:
        return ()
    key = (str(b.path), f.pcsp, f.entry)
    cache = b.__dict__.setdefault("_pcsp_cache", {})
    runs = cache.get(key)
    if runs is None:
        runs = cache[key] = tuple(pcvalue_steps(b._pctab, f.pcsp, f.entry))
    return runs


WANTED_STRUCTS = ("runtime.g", "runtime.gobuf", "runtime.stack", "runtime.m")
REQUIRED_STRUCTS = ("runtime.g", "runtime.gobuf")


def _dwarf_structs(path: str) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    st = Path(path).stat()
    return _dwarf_structs_of(path, st.st_size, st.st_mtime_ns)  # a rebuilt file at the same path is read again


# Reading a Go binary's DWARF for these structs takes about 0.4 s (pyelftools parses every DIE of the units it
# walks), and each notebook's kernel would read the same binaries again: helpers.filecache keeps the layouts.
@lru_cache(maxsize=8)
def _dwarf_structs_of(path: str, _size: int, _mtime: int, wanted: tuple = WANTED_STRUCTS) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """_read_dwarf_structs, through the content-keyed cache on disk."""
    return filecache.cached("dwarf-structs", path, wanted, lambda: _read_dwarf_structs(path, wanted),
                            lambda data: _layouts_from_json(data, wanted), _READER_SOURCE)


def _layouts_from_json(data, wanted: tuple) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """A cached layout, checked: the required structs present, sizes and offsets non-negative ints."""
    if not isinstance(data, dict):
        raise ValueError("a cached layout is a JSON object")
    out = {}
    for name, (size, members) in data.items():
        if name not in wanted or not isinstance(size, int) or size <= 0:
            raise ValueError(f"bad cached layout for {name!r}")
        rows = [(m, off) for m, off in members]
        if not all(isinstance(m, str) and isinstance(off, int) and 0 <= off < size for m, off in rows):
            raise ValueError(f"bad cached member of {name!r}")
        out[name] = (size, rows)
    if any(n not in out for n in REQUIRED_STRUCTS):
        raise ValueError("cached layout lacks a required struct")
    return out


def _read_dwarf_structs(path: str, wanted: tuple) -> dict[str, tuple[int, list[tuple[str, int]]]]:
    """{struct: (byte_size, [(flattened member, offset)])} for each ``wanted`` struct type, wherever the DWARF
    holds it.

    The Go linker emits many compile units named ``runtime`` (cmd/link/internal/ld/dwarf.go splits a package
    into several units, and puts type DIEs in whichever unit first refers to them), so every unit is searched:
    the ``runtime`` ones first, from the last (where the linker's type units usually sit), then all others.
    Only a type that is in no unit at all is an error.
    """
    with open(existing_file(path), "rb") as fh:
        e = ELFFile(fh)
        if not e.has_dwarf_info():
            raise GoBinaryError(f"{Path(path).name}: no DWARF (built with -w?); the model reads struct offsets from it")
        dw = e.get_dwarf_info()
        cus = list(dw.iter_CUs())

        def cu_name(cu) -> bytes | None:
            a = cu.get_top_DIE().attributes.get("DW_AT_name")
            return a.value if a else None

        order = ([cu for cu in reversed(cus) if cu_name(cu) == b"runtime"]
                 + [cu for cu in cus if cu_name(cu) != b"runtime"])
        out = {}
        for cu in order:
            for die in cu.get_top_DIE().iter_children():
                if (die.tag == "DW_TAG_structure_type" and "DW_AT_name" in die.attributes  # not the typedefs
                        and "DW_AT_byte_size" in die.attributes):                     # not a declaration
                    n = die.attributes["DW_AT_name"].value.decode(errors="replace")
                    if n in wanted and n not in out:
                        out[n] = (die.attributes["DW_AT_byte_size"].value, _flatten(die, "", 0, 0))
            if len(out) == len(wanted):
                break
    missing = [n for n in wanted if n in REQUIRED_STRUCTS and n not in out]
    if missing:
        raise GoBinaryError(f"{Path(path).name}: no DWARF type {missing[0]} in any of its {len(cus)} compile units")
    return out


def _flatten(die, prefix: str, base: int, depth: int) -> list[tuple[str, int]]:
    rows = []
    for m in die.iter_children():
        if m.tag != "DW_TAG_member" or "DW_AT_name" not in m.attributes:
            continue
        name = prefix + m.attributes["DW_AT_name"].value.decode()
        off = base + m.attributes["DW_AT_data_member_location"].value
        rows.append((name, off))
        t = m.get_DIE_from_attribute("DW_AT_type") if "DW_AT_type" in m.attributes else None
        while t is not None and t.tag == "DW_TAG_typedef" and "DW_AT_type" in t.attributes:  # Go names types by typedef
            t = t.get_DIE_from_attribute("DW_AT_type")
        # descend into embedded structs (g.stack, g.sched) but not through pointers
        if t is not None and t.tag == "DW_TAG_structure_type" and depth < 2:
            tn = t.attributes.get("DW_AT_name")
            if tn and tn.value.decode() in ("runtime.stack", "runtime.gobuf"):
                rows += _flatten(t, name + ".", off, depth + 1)
    return rows


_READER_SOURCE = filecache.source_digest(_read_dwarf_structs, _flatten)   # part of the cache key


# ---------------------------------------------------------------------- constants from the pinned src/

LINUX_AMD64 = {"goos.IsWindows": 0, "goos.IsPlan9": 0, "goos.IsIos": 0, "goos.IsAix": 0, "goos.IsOpenbsd": 0,
               "goarch.IsArm64": 0, "isRace": 0, "goarch.PtrSize": 8}


def _const_expr(text: str, name: str) -> str:
    m = re.search(rf"^\s*(?:const\s+)?{re.escape(name)}\s*(?:[A-Za-z.]+\s*)?=\s*([^\n/]+)", text, re.M)
    if not m:
        raise GoBinaryError(f"constant {name} not found in the pinned Go source")
    return m.group(1).strip()


def _eval(expr: str, env: dict) -> int:
    """Evaluate a Go constant expression of + - * & << and names (no calls) with Python's ast."""
    py = expr
    for k in sorted(env, key=len, reverse=True):
        py = re.sub(rf"(?<![\w.]){re.escape(k)}(?![\w])", f"({env[k]})", py)
    tree = ast.parse(py, mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Add, ast.Sub,
                                 ast.Mult, ast.BitAnd, ast.LShift, ast.USub, ast.FloorDiv)):
            raise GoBinaryError(f"cannot evaluate Go constant expression {expr!r}")
    return int(eval(compile(tree, "<go-const>", "eval")))  # only arithmetic nodes survive the check above


@lru_cache(maxsize=1)
def runtime_constants() -> dict[str, int]:
    """Stack constants of the pinned Go for linux/amd64, evaluated from its src/ (never typed in).

    golang/go src/internal/abi/stack.go (StackNosplitBase, StackSmall, StackBig),
    src/internal/runtime/sys/consts.go (StackGuardMultiplier), src/runtime/stack.go (stackSystem, stackMin,
    stackNosplit, stackGuard, stackPreempt, stackForceMove).
    """
    src = toolchain.goroot() / "src"
    abi = (src / "internal/abi/stack.go").read_text()
    sysc = (src / "internal/runtime/sys/consts.go").read_text()
    stack = (src / "runtime/stack.go").read_text()
    env = dict(LINUX_AMD64)
    for n in ("StackNosplitBase", "StackSmall", "StackBig"):
        env["abi." + n] = _eval(_const_expr(abi, n), env)
    env["sys.StackGuardMultiplier"] = _eval(_const_expr(sysc, "StackGuardMultiplier"), env)
    env["uintptrMask"] = (1 << 64) - 1  # runtime/stack.go: uintptrMask = 1<<(8*goarch.PtrSize) - 1
    for n in ("stackSystem", "stackMin", "stackNosplit", "stackGuard", "stackPreempt", "stackFork", "stackForceMove"):
        env[n] = _eval(_const_expr(stack, n), env)
    env["fixedStack"] = _fixed_stack(env["stackMin"] + env["stackSystem"])
    out = {k: env[k] for k in ("stackSystem", "stackMin", "fixedStack", "stackNosplit", "stackGuard",
                               "stackPreempt", "stackForceMove")}
    out.update(StackSmall=env["abi.StackSmall"], StackBig=env["abi.StackBig"],
               StackNosplitBase=env["abi.StackNosplitBase"], StackGuardMultiplier=env["sys.StackGuardMultiplier"])
    return out


def _fixed_stack(n: int) -> int:
    # runtime/stack.go: fixedStack0..6 round stackMin+stackSystem up to a power of two
    n -= 1
    for s in (1, 2, 4, 8, 16):
        n |= n >> s
    return n + 1
