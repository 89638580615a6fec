"""lto: link-time optimisation measured on real builds, and the sections real linkers emit.

Serves chapter 4c ("LTO and linker sections", article §4.3-§4.4). It models nothing by hand: it compiles a
two-file C program with and without ``-flto`` (gcc and ``zig cc``/clang), reads the results with
:mod:`helpers.elf`, disassembles with :mod:`helpers.asm`, and times real runs. It also builds Go binaries
(plain, ``-ldflags=-s -w``, cgo) and lists their real ELF sections.

Where gcc is missing, gcc's builds are the files gcc made on a machine that had it, recorded with their inputs
by ``python -m helpers.recorded gcc`` (:func:`helpers.recorded.gcc_build`): every analysis below still reads real
gcc output, and those programs run here too wherever their C library (glibc) is installed (:func:`runnable`).
The cgo binary is too large to keep, so without gcc its section table is the recording (key c60_cgo_sections).

What the Linux kernel's sources say is recorded in :data:`KERNEL_SOURCES`: short, cited facts read from
torvalds/linux (and the mailing-list patches that added them). A cell that asserts against them checks cited
text, not a run, and says so; what the running kernel does (init sections, kprobes, its configuration and
kbuild's flags) comes from :mod:`helpers.linuxguest`.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field, fields
from functools import lru_cache

from helpers import recorded, toolchain
from helpers.elf import Section, read_elf, symbol_bytes

# Two translation units: main.c calls mix() from mix.c in a loop. Without LTO the compiler of main.c cannot
# see mix()'s body, so it must emit a call; with LTO the link step sees both and may inline it.
# never_called() is dead code that only whole-program analysis can drop.
SOURCES = {
    "main.c": r'''#include <stdio.h>
#include <stdlib.h>
unsigned mix(unsigned i);
int main(int argc, char **argv) {
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], 0, 10) : 1000;
    unsigned acc = 0;
    for (unsigned i = 0; i < n; i++) acc += mix(i);
    printf("%u\n", acc);
    return 0;
}
''',
    "mix.c": r'''unsigned mix(unsigned i) { return (i * 2654435761u) ^ (i >> 7); }
unsigned never_called(unsigned x) { return x * 7u; }
''',
}
OUR_FUNCTIONS = ("main", "mix", "never_called")


def expected_result(n: int) -> int:
    """What the C program prints, computed in Python (so every build can be checked for correctness)."""
    acc = 0
    for i in range(n):
        acc = (acc + (((i * 2654435761) & 0xFFFFFFFF) ^ (i >> 7))) & 0xFFFFFFFF
    return acc


@dataclass
class LtoBuild:
    compiler: str
    lto: bool
    path: object
    text_size: int
    functions: tuple          # which of OUR_FUNCTIONS survive as symbols
    calls_in_main: tuple      # names of direct call targets in main (None for unresolved)
    listing: str = field(repr=False, default="")
    recorded: bool = False    # gcc's program from helpers/recorded/gcc/ (gcc is missing here)

    @property
    def label(self) -> str:
        return f"{self.compiler} {'-flto' if self.lto else 'no LTO'}"


OBJECT_FLAGS = (("-O2",), ("-O2", "-flto"))   # what an object holds, without and with -flto


def gcc_recipes() -> list[tuple]:
    """The gcc builds this chapter analyses, as (source, flags, output) for :func:`helpers.recorded.gcc_build`:
    the program without and with -flto, and mix.c's object with :data:`OBJECT_FLAGS`."""
    return [(SOURCES, ("-O2", *lto), "exe") for lto in ((), ("-flto",))] + \
           [({"mix.c": SOURCES["mix.c"]}, flags, "obj") for flags in OBJECT_FLAGS]


def compilers() -> list[str]:
    """gcc (run here, or its recorded builds where gcc is missing) and zig cc (pinned); zig alone when neither
    gcc nor a recording of its builds is here."""
    return ["gcc", "zig"] if all(recorded.gcc_available(*r) for r in gcc_recipes()) else ["zig"]


def build(compiler: str = "zig", lto: bool = False, opt: str = "-O2") -> LtoBuild:
    """Build SOURCES into an executable (gcc: dynamic against the host libc, or its recorded build where gcc is
    missing; zig: static musl)."""
    flags = [opt] + (["-flto"] if lto else [])
    if compiler == "zig":
        b = toolchain.cc(SOURCES, compiler="zig", target="x86_64-linux-musl", flags=(*flags, "-static"), output="exe")
    elif compiler == "gcc":
        b = recorded.gcc_build(SOURCES, flags=flags, output="exe")
    else:
        raise ValueError(f"compiler must be 'gcc' or 'zig', not {compiler!r}")
    info = read_elf(b.path)
    names = {s.name for s in info.functions()}
    calls, listing = calls_from(b.path, "main", info)
    return LtoBuild(compiler, lto, b.path, info.text_size, tuple(f for f in OUR_FUNCTIONS if f in names),
                    tuple(calls), listing, b.recorded)


def calls_from(path, function: str, info=None) -> tuple[list, str]:
    """Direct call targets of ``function`` (symbol names; unnamed targets such as PLT stubs as hex) and its
    disassembly; None marks an indirect call."""
    from helpers.asm import disassemble, format_listing

    info = info or read_elf(path)
    addr, code = symbol_bytes(path, function)
    insns = disassemble(code, address=addr)
    by_addr = {s.value: s.name for s in info.functions()}
    calls = []
    for i in insns:
        if i.mnemonic.startswith("call"):
            try:
                target = int(i.op_str.lstrip("*$"), 16)
            except ValueError:
                calls.append(None)  # indirect call
                continue
            calls.append(by_addr.get(target, f"{target:#x}"))  # PLT stubs have no symbol
    return calls, format_listing(insns)


def experiment() -> list[LtoBuild]:
    """Every compiler, without and with -flto."""
    return [build(c, lto) for c in compilers() for lto in (False, True)]


def run_once(b: LtoBuild, n: int) -> tuple[int, float]:
    """Run the binary once; return (printed result, wall seconds)."""
    t0 = time.perf_counter()
    p = toolchain.run([b.path, str(n)], timeout=60, check=True)
    return int(p.stdout.strip()), time.perf_counter() - t0


def runnable(builds) -> list[LtoBuild]:
    """The builds whose programs run on this machine: every one, except a recorded gcc program where the C
    library it was linked against is missing (it is dynamic against glibc)."""
    return [b for b in builds if not b.recorded or _runs(str(b.path))]


@lru_cache(maxsize=None)
def _runs(path: str) -> bool:
    try:
        return toolchain.run([path, "10"], timeout=10).returncode == 0
    except (OSError, toolchain.ToolchainError):  # no loader for it (ToolMissing), not executable, wrong format
        return False


def check_results(builds, n: int = 100_000) -> int:
    """Run every build on ``n`` and check it prints :func:`expected_result` (LTO must not change meaning)."""
    want = expected_result(n)
    for b in builds:
        got, _ = run_once(b, n)
        if got != want:
            raise AssertionError(f"{b.label} printed {got}, expected {want}")
    return want


def timings(builds, n: int = 50_000_000, repeats: int = 5) -> dict:
    """Interleaved repeated runs (so machine noise hits every build alike); label -> median seconds.
    All builds must print the same result on every run."""
    samples = {b.label: [] for b in builds}
    for _ in range(repeats):
        results = set()
        for b in builds:
            got, dt = run_once(b, n)
            results.add(got)
            samples[b.label].append(dt)
        if len(results) != 1:
            raise AssertionError(f"builds disagree on the result: {sorted(results)}")
    return {k: statistics.median(v) for k, v in samples.items()}


def speedups(times: dict) -> dict:
    """{compiler: (seconds without LTO, seconds with -flto)} for each compiler :func:`timings` timed both ways."""
    return {c: (times[f"{c} no LTO"], times[f"{c} -flto"]) for c in compilers()
            if f"{c} no LTO" in times and f"{c} -flto" in times}


# ------------------------------------------------------------------------------ what Linux supports
# Facts read from primary sources with the project's source index; each names its file. Cells assert
# against these (e.g. "no GCC LTO flags in mainline's LTO block").
KERNEL_SOURCES = {
    "lto_makefile": {
        "source": "torvalds/linux Makefile (the `ifdef CONFIG_LTO_CLANG` block added by 'kbuild: add support "
                  "for Clang LTO', Sami Tolvanen, merged for v5.12; later releases reorder it but add no GCC flags)",
        "lines": ("ifdef CONFIG_LTO_CLANG", "ifdef CONFIG_LTO_CLANG_THIN",
                  "CC_FLAGS_LTO := -flto=thin -fsplit-lto-unit", "else", "CC_FLAGS_LTO := -flto", "endif",
                  "CC_FLAGS_LTO += -fvisibility=hidden", "endif",
                  "ifdef CONFIG_LTO", "KBUILD_CFLAGS += $(CC_FLAGS_LTO)", "export CC_FLAGS_LTO", "endif"),
    },
    "lto_kconfig": {
        "source": "torvalds/linux arch/Kconfig (config HAS_LTO_CLANG, choice 'Link Time Optimization (LTO)')",
        "options": ("LTO_NONE", "LTO_CLANG_FULL", "LTO_CLANG_THIN"),
        "has_lto_clang_depends": ("CC_IS_CLANG", "LD_IS_LLD"),
        "since": "5.12",
    },
    "gcc_lto_series": {
        "source": "Andi Kleen, '[PATCH 30/47] Kbuild, lto: Add Link Time Optimization support' (posted 2022, "
                  "linux-kbuild); not merged into torvalds/linux",
        "in_mainline": False,
    },
    "init_sections": {
        "source": "torvalds/linux include/linux/init.h (__init, __exit) and include/asm-generic/vmlinux.lds.h "
                  "(INIT_TEXT, EXIT_TEXT)",
        "__init": ".init.text",
        "__exit": ".exit.text",
    },
    "kprobes": {
        "kprobe_register": ("kernel/trace/trace_kprobe.c", "static int kprobe_register(struct trace_event_call *event, "
                            "enum trace_reg type, void *data)",
                            "trace-event reg callback: TRACE_REG_REGISTER -> enable_trace_kprobe, "
                            "TRACE_REG_UNREGISTER -> disable_trace_kprobe"),
        "check_ftrace_location": ("kernel/kprobes.c", "static int check_ftrace_location(struct kprobe *p)",
                                  "if ftrace_location(addr) == addr: sets KPROBE_FLAG_FTRACE, or returns -EINVAL "
                                  "when CONFIG_KPROBES_ON_FTRACE is off"),
        "check_kprobe_address_safe": ("kernel/kprobes.c", "static int check_kprobe_address_safe(struct kprobe *p, "
                                      "struct module **probed_mod)",
                                      "-EINVAL outside kernel/module text or in reserved areas; -ENOENT for an "
                                      "address in a module's .init.text once the module is past MODULE_STATE_COMING"),
        "_kprobe_addr": ("kernel/kprobes.c", "static kprobe_opcode_t *_kprobe_addr(kprobe_opcode_t *addr, "
                         "const char *symbol_name, unsigned long offset, bool *on_func_entry)",
                         "-ENOENT when kprobe_lookup_name() finds no such symbol, or kallsyms_lookup_size_offset() "
                         "no symbol at the address (a freed init function); runs before the address checks"),
        "ftrace_location": ("kernel/trace/ftrace.c", "unsigned long ftrace_location(unsigned long ip)",
                            "address of the ftrace patch site (mcount/fentry call) in the function at ip, else 0"),
        "kprobe_ftrace_handler": ("arch/x86/kernel/kprobes/ftrace.c",
                                  "void kprobe_ftrace_handler(unsigned long ip, unsigned long parent_ip, "
                                  "struct ftrace_ops *ops, struct ftrace_regs *fregs)",
                                  "the ftrace callback that runs a kprobe's handlers; returns nothing"),
    },
}


def returns_value(signature: str) -> bool:
    """Whether a C function signature declares a return value (anything but void)."""
    head = signature.split("(")[0].split()
    return head[-2] != "void" if len(head) >= 2 else True


# ------------------------------------------------------------------------------ Go linker sections
GO_PROGRAM = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello from Go") }\n'
GO_CGO_PROGRAM = ('package main\n\n// int twice(int x) { return 2 * x; }\nimport "C"\nimport "fmt"\n\n'
                  'func main() { fmt.Println("cgo says", C.twice(21)) }\n')
KERNEL_INIT_SECTIONS = (".init.text", ".exit.text")


@dataclass
class GoSections:
    variant: str
    sections: list        # [(name, size, flags)]
    symbols: int
    text_size: int
    is_static: bool
    interp: str | None

    def names(self) -> list:
        return [s.name for s in self.sections]


CGO_VARIANT = "go build (cgo)"


def go_variants() -> dict:
    """Build the two Go binaries the chapter compares that need no C compiler; variant -> toolchain.Build."""
    return {
        "go build": toolchain.go_build(GO_PROGRAM),
        'go build -ldflags="-s -w"': toolchain.go_build(GO_PROGRAM, ldflags="-s -w"),
    }


def _go_sections(variant: str, path) -> GoSections:
    info = read_elf(path)
    return GoSections(variant, info.sections, len(info.symbols), info.text_size, info.is_static, info.interp)


def cgo_sections() -> GoSections:
    """The cgo build of :data:`GO_CGO_PROGRAM`, linked by gcc (needs gcc: cgo would use zig cc without it)."""
    toolchain.require("gcc")
    return _go_sections(CGO_VARIANT, toolchain.go_build(GO_CGO_PROGRAM, cgo=True).path)


def go_sections() -> list[GoSections]:
    """The three Go binaries' sections: plain and ``-s -w`` built here; the cgo build's from gcc's link here,
    or, where gcc is missing, the recording of it (``recorded.evidence("c60_cgo_sections")``)."""
    out = [_go_sections(variant, b.path) for variant, b in go_variants().items()]
    cgo = recorded.evidence("c60_cgo_sections").data
    kept = {f.name: cgo[f.name] for f in fields(GoSections)}
    out.append(GoSections(**{**kept, "sections": [Section(*s) for s in cgo["sections"]]}))
    return out


def search_go_source(root, needle: str, *, limit: int = 20) -> list[str]:
    """Files under ``root`` (a Go source tree) whose text contains ``needle`` (bounded, no shell)."""
    from pathlib import Path

    hits = []
    for p in sorted(Path(root).rglob("*.go")):
        try:
            if needle in p.read_text(errors="ignore"):
                hits.append(str(p.relative_to(root)))
        except OSError:
            continue
        if len(hits) >= limit:
            break
    return hits


# ------------------------------------------------------------------------------ what an LTO object holds

@dataclass
class LtoObject:
    compiler: str
    flags: tuple
    kind: str             # "ELF" or "LLVM bitcode" (or the first bytes in hex)
    lto_sections: tuple   # GCC's GIMPLE streams: .gnu.lto_*
    text_size: int        # native code in the object (.text)


def lto_object(compiler: str = "gcc", flags=("-O2", "-flto")) -> LtoObject:
    """Compile mix.c to an object with ``flags`` and describe what is inside (gcc: its recorded object where
    gcc is missing)."""
    from helpers.elf import ElfError

    if compiler == "gcc":
        b = recorded.gcc_build({"mix.c": SOURCES["mix.c"]}, flags=flags, output="obj")
    else:
        b = toolchain.cc({"mix.c": SOURCES["mix.c"]}, compiler=compiler,
                         target="x86_64-linux-musl" if compiler == "zig" else None, flags=tuple(flags), output="obj")
    head = b.path.read_bytes()[:4]
    if head == b"BC\xc0\xde":  # LLVM bitcode wrapper magic (LLVM docs, "LLVM Bitcode File Format")
        return LtoObject(compiler, tuple(flags), "LLVM bitcode", (), 0)
    try:
        info = read_elf(b.path)
    except ElfError:
        return LtoObject(compiler, tuple(flags), head.hex(), (), 0)
    lto = tuple(sorted({s.name.rsplit(".", 1)[0] if s.name.count(".") > 2 else s.name
                        for s in info.sections if s.name.startswith(".gnu.lto_")}))
    return LtoObject(compiler, tuple(flags), "ELF", lto, info.text_size)


def objects() -> list[LtoObject]:
    """mix.c's object with each of :data:`OBJECT_FLAGS`, for every compiler of :func:`compilers`."""
    return [lto_object(c, flags) for c in compilers() for flags in OBJECT_FLAGS]


def gcc_link_uses_plugin(flags=("-O2", "-flto", "-fuse-linker-plugin")) -> bool:
    """Link SOURCES with gcc -v and report whether collect2/ld was given GCC's LTO plugin."""
    b = toolchain.cc(SOURCES, compiler="gcc", flags=(*flags, "-v"), output="exe")
    return "liblto_plugin" in b.output


GO_LINKNAME_PROGRAM = ('package main\n\nimport (\n\t"fmt"\n\t_ "unsafe"\n)\n\n'
                       '//go:linkname initSection runtime.initSection\nvar initSection struct{}\n\n'
                       'func main() { fmt.Println(initSection) }\n')


def try_go_build(source: str) -> str:
    """Build ``source`` with the pinned Go; return "ok" or the compiler's one-line error."""
    try:
        toolchain.go_build(source)
        return "ok"
    except toolchain.ToolchainError as e:
        return str(e)


def hot_loop(b: LtoBuild) -> list[str]:
    """The lines of main's listing that form its first loop: from the target of the first backward
    conditional jump up to that jump."""
    lines = b.listing.splitlines()
    addrs = [int(l.split(":")[0], 16) for l in lines]
    for k, line in enumerate(lines):
        text = line.split("  ")[-1].strip()
        if text.startswith("j") and not text.startswith("jmp"):
            try:
                target = int(text.split()[-1], 16)
            except ValueError:
                continue
            if target < addrs[k] and target in addrs:
                return lines[addrs.index(target):k + 1]
    return []


# ------------------------------------------------------------------------------ what the figure draws
def function_sizes(b: LtoBuild) -> dict:
    """{function: size in bytes, or None when it is not in the linked program} for OUR_FUNCTIONS."""
    info = read_elf(b.path)
    sizes = {s.name: s.size for s in info.functions()}
    return {f: sizes.get(f) for f in OUR_FUNCTIONS}


def effect_rows(builds) -> list[dict]:
    """Per build: its label, the sizes of our functions, and the direct calls to ``mix`` left in ``main``."""
    return [{"label": b.label, "sizes": function_sizes(b), "calls_to_mix": b.calls_in_main.count("mix")}
            for b in builds]


C_PROGRAM = '#include <stdio.h>\nint main(void) { puts("hello from C"); return 0; }\n'


def c_sections(static: bool = True) -> list:
    """Sections of a C hello world linked by zig cc (static musl), to set beside a Go binary's."""
    b = toolchain.cc(C_PROGRAM, compiler="zig", target="x86_64-linux-musl", flags=("-O2", "-static"), output="exe")
    return read_elf(b.path).sections
