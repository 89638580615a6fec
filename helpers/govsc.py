"""govsc: Go versus C, measured with the real toolchains (chapter 1), and the runtime evidence chapter 5 argues from.

Serves ``chapters/01_go_vs_c.ipynb`` (article §1: hello world, binary size and runtime share, static vs dynamic
linking, cgo and ``net``, ``main`` without ``return``, ignored errors and ``go vet``, goroutine vs thread cost) and
``chapters/05_conclusion.ipynb`` (what the Go runtime needs from its host: syscalls, threads, signals, write barriers).

Primary sources it models or reads:

* ISO C99/C11 §5.1.2.2.3 "Program termination" (reaching the ``}`` of ``main`` returns 0); C90 §5.1.2.2.3 (status
  undefined);
* golang/go ``src/runtime/stack.go`` (``stackMin``, ``fixedStack``, ``stackGuard``, ``startingStackSize``,
  ``gcComputeStartingStackSize``), ``src/runtime/proc.go`` (``newproc1``: fresh goroutines get ``malg(stackMin)``;
  ``gfget``: recycled ones get ``startingStackSize``), ``src/runtime/runtime1.go`` (``adaptivestackstart`` default),
  ``src/syscall/zsysnum_linux_amd64.go`` (syscall numbers) -- all read from the pinned Go tree (``goroot()/src``).

* musl as the pinned zig ships it, ``lib/libc/musl/src/internal/pthread_impl.h`` (``DEFAULT_STACK_SIZE``,
  ``DEFAULT_STACK_MAX``) and ``src/env/__init_tls.c`` (the default thread stack raised to ``PT_GNU_STACK``'s
  ``p_memsz``): :func:`musl_stack_rule`, checked against programs linked with several ``-z stack-size`` values
  (:func:`musl_thread_stacks`);
* the Go specification (unused variables, assignment counts): :func:`compile_errors` shows gc's messages.

Every program is built and run through :mod:`helpers.toolchain` (timeouts, no shell, cached builds).
"""
from __future__ import annotations

import ast
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from helpers import toolchain
from helpers.elf import read_elf
from helpers.files import existing_file

# A cold zig cache builds musl (and compiler-rt) from source for the first static musl executable: minutes on a
# small CI machine. Later builds take a second. Go builds of the standard library behave the same way.
BUILD_TIMEOUT = 900

# ---- the programs ------------------------------------------------------------------------------------------
C_HELLO = '#include <stdio.h>\n\nint main(void) {\n    printf("Hello, World\\n");\n    return 0;\n}\n'
# The same program without `return 0`: what the article calls undefined behaviour (article §1).
C_HELLO_NO_RETURN = '#include <stdio.h>\n\nint main(void) {\n    printf("Hello, World\\n");\n}\n'
GO_HELLO = 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("Hello, World")\n}\n'
GO_NET = ('package main\n\nimport (\n\t"fmt"\n\t"net"\n)\n\n'
          'func main() {\n\t_, err := net.LookupHost("localhost")\n\tfmt.Println(err == nil)\n}\n')
GO_USER = ('package main\n\nimport (\n\t"fmt"\n\t"os/user"\n)\n\n'
           'func main() {\n\t_, err := user.Current()\n\tfmt.Println(err == nil)\n}\n')
# Every returned error is dropped, in the three usual ways: a bare call, a blank identifier, a deferred call.
GO_IGNORED_ERROR = '''package main

import (
	"fmt"
	"os"
)

func main() {
	os.Remove("/nonexistent/file")        // error result dropped entirely
	f, _ := os.Open("/nonexistent/file")  // error assigned to _
	defer f.Close()                       // error of a deferred call dropped
	fmt.Println("still running, f is nil:", f == nil)
}
'''

# What the compiler does insist on. The spec ("Variable declarations") lets an implementation reject a variable
# that is declared and never used, and gc does; "Assignment statements" requires the counts on both sides to match,
# so a call that returns (T, error) cannot be assigned to one name. Both programs must fail to compile.
GO_UNUSED_ERR = '''package main

import "os"

func main() {
	f, err := os.Open("/nonexistent/file")
	_ = f
}
'''
GO_HALF_ASSIGNED = '''package main

import "os"

func main() {
	f := os.Open("/nonexistent/file")
	_ = f
}
'''

# Goroutine stacks: how much stack a new goroutine used before its first stack copy (runtime/stack.go:
# copystack moves the frames and adjusts pointers into the stack, but not integers, so the pointer `top` and
# the integer `orig` disagree from the first copy on).
GO_STACK_PROBE = r'''package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"unsafe"
)

// deep uses about 1 KiB of stack per level, so a goroutine parked at its bottom has a grown stack.
//
//go:noinline
func deep(level int, ready, park chan struct{}) byte {
	var pad [1024]byte
	pad[level%1024] = byte(level)
	if level == 0 {
		ready <- struct{}{}
		<-park
		return pad[0]
	}
	return deep(level-1, ready, park) + pad[level%1024]
}

// probe recurses until the stack is copied and returns the bytes in use just before the copy.
//
//go:noinline
func probe(top *[64]byte, orig uintptr, used uintptr) uintptr {
	var pad [64]byte
	pad[0] = byte(used)
	if uintptr(unsafe.Pointer(top)) != orig {
		return used
	}
	here := orig - uintptr(unsafe.Pointer(&pad))
	return probe(top, orig, here) + uintptr(pad[0]&0)
}

func stackBeforeCopy(park chan struct{}, out chan uintptr) {
	var top [64]byte
	out <- probe(&top, uintptr(unsafe.Pointer(&top)), 0)
	<-park
}

func main() {
	warm, _ := strconv.Atoi(os.Args[1]) // KiB of stack 100 warm-up goroutines use before a GC; 0 = none
	n, _ := strconv.Atoi(os.Args[2])    // new goroutines to probe afterwards (all kept alive)
	if warm > 0 {
		park, ready, done := make(chan struct{}), make(chan struct{}), make(chan byte)
		for i := 0; i < 100; i++ {
			go func() { done <- deep(warm, ready, park) }()
			<-ready
		}
		runtime.GC() // scans the deep stacks; gcComputeStartingStackSize runs at the end of marking
		close(park)
		for i := 0; i < 100; i++ {
			<-done
		}
	}
	park, out := make(chan struct{}), make(chan uintptr)
	for i := 0; i < n; i++ {
		go stackBeforeCopy(park, out)
		fmt.Println(<-out)
	}
	close(park)
}
'''

# Memory per parked goroutine, from runtime.MemStats deltas.
GO_PARKED = r'''package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
)

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	park, started := make(chan struct{}), make(chan struct{})
	for i := 0; i < n; i++ {
		go func() { started <- struct{}{}; <-park }()
		<-started
	}
	runtime.ReadMemStats(&after)
	fmt.Printf("{\"n\": %d, \"goroutines\": %d, \"stack_inuse\": %d, \"heap_inuse\": %d, \"sys\": %d}\n", n,
		runtime.NumGoroutine(), after.StackInuse-before.StackInuse, after.HeapInuse-before.HeapInuse,
		after.Sys-before.Sys)
	close(park)
}
'''

# Creation cost: start N goroutines that exit at once and wait for all; best of `rounds` (nanoseconds per goroutine).
GO_SPAWN = r'''package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	rounds, _ := strconv.Atoi(os.Args[2])
	best := time.Duration(1 << 62)
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		t0 := time.Now()
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() { wg.Done() }()
		}
		wg.Wait()
		if d := time.Since(t0); d < best {
			best = d
		}
	}
	fmt.Println(float64(best.Nanoseconds()) / float64(n))
}
'''

# The same for POSIX threads: create and join N threads that return at once (nanoseconds per thread).
C_SPAWN = r'''#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *noop(void *arg) { return arg; }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    int n = atoi(argv[1]), rounds = atoi(argv[2]);
    pthread_t *t = malloc(sizeof *t * n);
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        for (int i = 0; i < n; i++)
            if (pthread_create(&t[i], NULL, noop, NULL) != 0) return 1;
        for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
        double d = now_ns() - t0;
        if (d < best) best = d;
    }
    printf("%f\n", best / n);
    return 0;
}
'''

# A thread's default stack size, as the C library reports it for a default attribute object.
C_THREAD_STACK = r'''#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>

int main(void) {
    pthread_attr_t a;
    size_t size = 0;
#ifdef __GLIBC__
    pthread_getattr_default_np(&a);
#else
    pthread_attr_init(&a);
#endif
    pthread_attr_getstacksize(&a, &size);
    printf("%zu\n", size);
    return 0;
}
'''

# A pointer store into a global: with the GC running concurrently, the compiler must emit a write barrier.
GO_WRITE_BARRIER = '''package main

var sink *int

//go:noinline
func store(p *int) {
	sink = p
}

func main() {
	x := new(int)
	store(x)
	println(*sink)
}
'''

# What the runtime has set up by the time main runs: threads and caught signals, from /proc/self/status.
GO_PROC_STATUS = '''package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\\n") {
		if strings.HasPrefix(line, "Threads:") || strings.HasPrefix(line, "SigCgt:") {
			fmt.Println(line)
		}
	}
}
'''


# ---- builds: sizes, linkage, runtime share -------------------------------------------------------------------
@dataclass(frozen=True)
class BuildRow:
    name: str
    tool: str
    flags: str
    size: int        # bytes on disk
    text: int        # bytes of .text
    interp: str | None
    needed: tuple[str, ...]
    output: str      # what the program printed

    @property
    def static(self) -> bool:
        return self.interp is None and not self.needed


def _row(name: str, build: toolchain.Build, run: bool = True) -> BuildRow:
    info = read_elf(build.path)
    out = toolchain.run([build.path], timeout=30).stdout.strip() if run else ""
    return BuildRow(name, build.tool, " ".join(build.command[1:-3] if build.command[0] != "go" else build.command[2:-3]),
                    build.path.stat().st_size, info.text_size, info.interp, tuple(info.needed), out)


def hello_builds() -> list[BuildRow]:
    """Hello world in C (gcc if present: dynamic and static; zig cc: static musl) and in Go, built and run."""
    rows = []
    gcc = dict(compiler="gcc", output="exe", timeout=BUILD_TIMEOUT)
    if toolchain.have("gcc"):
        rows.append(_row("C, gcc -O2", toolchain.cc(C_HELLO, flags=("-O2",), **gcc)))
        rows.append(_row("C, gcc -O2 -static", toolchain.cc(C_HELLO, flags=("-O2", "-static"), **gcc)))
    rows.append(_row("C, zig cc musl -static", toolchain.cc(C_HELLO, compiler="zig", target="x86_64-linux-musl",
                                                            output="exe", flags=("-O2", "-static", "-s"),
                                                            timeout=BUILD_TIMEOUT)))
    rows.append(_row("Go, go build", toolchain.go_build(GO_HELLO, timeout=BUILD_TIMEOUT)))
    rows.append(_row("Go, go build -ldflags=-s -w", toolchain.go_build(GO_HELLO, ldflags="-s -w", timeout=BUILD_TIMEOUT)))
    return rows


RUNTIME_PREFIXES = ("runtime.", "runtime/", "internal/runtime/")


def symbol_category(name: str) -> str:
    """runtime (package runtime and internal/runtime/...), main, or other (the rest of the standard library)."""
    if name.startswith(RUNTIME_PREFIXES):
        return "runtime"
    if name.startswith("main."):
        return "main"
    return "other packages"


def code_by_package(path) -> dict[str, dict[str, int]]:
    """{category: {"functions": n, "bytes": size}} summed over the FUNC symbols of a Go binary's .symtab."""
    out: dict[str, dict[str, int]] = {}
    for s in read_elf(path).symbols:
        if s.type == "FUNC" and s.size:
            d = out.setdefault(symbol_category(s.name), {"functions": 0, "bytes": 0})
            d["functions"] += 1
            d["bytes"] += s.size
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))


def linkage_matrix() -> list[dict]:
    """Go programs built with cgo off and on: is the result static? (PT_INTERP / DT_NEEDED via helpers.elf)."""
    rows = []
    for name, src in (("hello (fmt)", GO_HELLO), ("net.LookupHost", GO_NET), ("os/user.Current", GO_USER)):
        for cgo in (False, True):
            info = read_elf(toolchain.go_build(src, cgo=cgo, timeout=BUILD_TIMEOUT).path)
            rows.append({"program": name, "CGO_ENABLED": int(cgo), "static": info.is_static,
                         "PT_INTERP": info.interp or "-", "DT_NEEDED": ", ".join(info.needed) or "-"})
    return rows


def default_cgo_enabled() -> str:
    """What ``go env CGO_ENABLED`` says with the variable unset: "1" when a C compiler is on PATH (Go >= 1.20)."""
    return toolchain.go("env", "CGO_ENABLED", env={"CGO_ENABLED": ""}).stdout.strip()


# ---- main without return ---------------------------------------------------------------------------------
def exit_status_matrix(stds=("c89", "c99", "c11"), opts=("-O0", "-O2")) -> list[dict]:
    """Exit status of C_HELLO_NO_RETURN per compiler, -std and optimisation level, and whether it warned."""
    compilers = (["gcc"] if toolchain.have("gcc") else []) + ["zig"]
    rows = []
    for comp in compilers:
        for std in stds:
            for opt in opts:
                flags = (f"-std={std}", opt, "-Wall") + (("-static",) if comp == "zig" else ())
                b = toolchain.cc(C_HELLO_NO_RETURN, compiler=comp, output="exe", flags=flags,
                                 target="x86_64-linux-musl" if comp == "zig" else None, timeout=BUILD_TIMEOUT)
                p = toolchain.run([b.path], timeout=30)
                rows.append({"compiler": "gcc" if comp == "gcc" else "zig cc (clang)", "std": std, "opt": opt,
                             "exit status": p.returncode, "warning": "-Wreturn-type" in b.output})
    return rows


# ---- errors ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VetResult:
    built: bool
    program_output: str
    vet_status: int
    vet_output: str


def vet(source: str = GO_IGNORED_ERROR) -> VetResult:
    """Build and run ``source``, then run ``go vet`` (all default analyzers) on it in a scratch module."""
    b = toolchain.go_build(source, timeout=BUILD_TIMEOUT)
    out = toolchain.run([b.path], timeout=30).stdout.strip()
    work = toolchain.CACHE_DIR / "vet" / toolchain._digest(source)
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.go").write_text(source)
    (work / "go.mod").write_text("module example\n\ngo 1.27\n")
    p = toolchain.go("vet", ".", cwd=work, timeout=BUILD_TIMEOUT)
    return VetResult(True, out, p.returncode, (p.stdout + p.stderr).strip())


def compile_errors(source: str) -> list[str]:
    """The error lines ``go build`` prints for ``source`` (a ``main.go``), ``[]`` if it compiles.

    Runs in a scratch module under the build cache; paths in the messages are relative (``./main.go:6:5: ...``).
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be Go source text, got {type(source).__name__}")
    work = toolchain.CACHE_DIR / "compile-errors" / toolchain._digest(source)
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.go").write_text(source)
    (work / "go.mod").write_text("module example\n\ngo 1.27\n")
    p = toolchain.go("build", "-o", os.devnull, ".", cwd=work, timeout=BUILD_TIMEOUT)
    if p.returncode == 0:
        return []
    return [l for l in (p.stderr + p.stdout).splitlines() if l.strip() and not l.startswith("#")]


def vet_analyzers() -> list[str]:
    """Names of the analyzers ``go vet`` runs (from ``go tool vet help``)."""
    p = toolchain.go("tool", "vet", "help", timeout=60)
    names = re.findall(r"^\s{4}(\w+)\s", p.stdout + p.stderr, re.M)
    return sorted(set(names))


# ---- Go's own constants, read from the pinned source ----------------------------------------------------------
LINUX_AMD64 = {"goos.IsWindows": 0, "goos.IsPlan9": 0, "goos.IsIos": 0, "goos.IsAix": 0, "goos.IsOpenbsd": 0,
               "goarch.IsArm64": 0, "isRace": 0}
CONST_FILES = {"": "runtime/stack.go", "abi.": "internal/abi/stack.go", "sys.": "internal/runtime/sys/consts.go"}
_CONST_RE = re.compile(r"^\s*(?:const\s+)?([A-Za-z_]\w*)\s*=\s*([^/\n]+?)\s*(?://.*)?$")


def _const_lines(text: str):
    """``name = expr`` lines inside ``const ( ... )`` blocks and single ``const x = ...`` lines."""
    inside = False
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("const ("):
            inside = True
            continue
        if inside and s == ")":
            inside = False
            continue
        if inside or s.startswith("const "):
            m = _CONST_RE.match(line)
            if m:
                yield m.group(1), m.group(2)


def _eval(expr: str, env: dict) -> int:
    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return env[f"{node.value.id}.{node.attr}"]
        if isinstance(node, ast.BinOp):
            ops = {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__, ast.BitOr: int.__or__,
                   ast.RShift: int.__rshift__, ast.LShift: int.__lshift__}
            return ops[type(node.op)](ev(node.left), ev(node.right))
        raise KeyError(ast.dump(node))
    return ev(ast.parse(expr, mode="eval").body)


def go_stack_constants(goroot: Path | None = None, platform: dict = LINUX_AMD64) -> dict[str, int]:
    """Evaluate the stack constants of the pinned Go source for a platform (default linux/amd64).

    Returns e.g. {"stackMin": ..., "fixedStack": ..., "stackGuard": ..., "abi.StackSmall": ...}, computed from
    ``src/runtime/stack.go``, ``src/internal/abi/stack.go`` and ``src/internal/runtime/sys/consts.go``.
    """
    src = Path(goroot or toolchain.goroot()) / "src"
    pending = [(prefix + name, expr) for prefix, rel in CONST_FILES.items()
               for name, expr in _const_lines((src / rel).read_text())]
    env = dict(platform)
    for _ in range(len(pending)):
        left = []
        for name, expr in pending:
            try:
                env[name] = _eval(expr, env)
            except (KeyError, SyntaxError, TypeError):
                left.append((name, expr))
        if len(left) == len(pending):
            break
        pending = left
    return {k: v for k, v in env.items() if k not in platform}


def source_lines(rel: str, pattern: str, goroot: Path | None = None) -> list[tuple[int, str]]:
    """(line number, line) of ``src/<rel>`` in the pinned Go tree matching the regex ``pattern``."""
    text = (Path(goroot or toolchain.goroot()) / "src" / rel).read_text()
    return [(i, l.rstrip()) for i, l in enumerate(text.splitlines(), 1) if re.search(pattern, l)]


def max_stack_size(goroot: Path | None = None) -> int:
    """``maxstacksize`` on 64-bit platforms, from ``runtime/proc.go`` (set in ``main``)."""
    text = (Path(goroot or toolchain.goroot()) / "src" / "runtime" / "proc.go").read_text()
    m = re.search(r"if goarch\.PtrSize == 8 \{\s*maxstacksize = (\d+)", text)
    if not m:
        raise ValueError("maxstacksize for 64-bit not found in runtime/proc.go")
    return int(m.group(1))


# ---- goroutine versus thread -----------------------------------------------------------------------------
def _positive(**values) -> None:
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _round2(x: int) -> int:
    return 1 << (x - 1).bit_length()


def probe_starting_stacks(warm_kib: int = 0, n: int = 8, godebug: str | None = None) -> list[int]:
    """Stack size of each of ``n`` new goroutines, inferred from where its first stack copy happened.

    A goroutine's stack is copied when SP would cross ``lo + stackGuard``; so ``size = round2(used + stackGuard)``
    (runtime/stack.go: newstack). ``warm_kib`` > 0 first parks 100 goroutines on ~``warm_kib`` KiB stacks and runs
    a GC, which feeds ``gcComputeStartingStackSize``.
    """
    _positive(n=n)
    if not isinstance(warm_kib, int) or not 0 <= warm_kib <= 1 << 16:
        raise ValueError(f"warm_kib must be an integer in 0..65536, got {warm_kib!r}")
    guard = go_stack_constants()["stackGuard"]
    b = toolchain.go_build(GO_STACK_PROBE, timeout=BUILD_TIMEOUT)
    env = {**os.environ, **({"GODEBUG": godebug} if godebug else {})}
    p = toolchain.run([b.path, str(warm_kib), str(n)], env=env, timeout=60, check=True)
    return [_round2(int(used) + guard) for used in p.stdout.split()]


def parked_goroutine_cost(n: int = 10000) -> dict[str, float]:
    """Bytes per parked goroutine (stack, heap, total from the OS) from runtime.MemStats deltas."""
    _positive(n=n)
    b = toolchain.go_build(GO_PARKED, timeout=BUILD_TIMEOUT)
    d = json.loads(toolchain.run([b.path, str(n)], timeout=60, check=True).stdout)
    return {"goroutines": d["goroutines"], **{k: d[k] / n for k in ("stack_inuse", "heap_inuse", "sys")}}


def thread_default_stacks() -> dict[str, int]:
    """Default pthread stack size in bytes, per C library available: musl (zig cc, static) and glibc (gcc)."""
    out = {"musl": int(toolchain.run([toolchain.cc(C_THREAD_STACK, compiler="zig", target="x86_64-linux-musl",
                                                   output="exe", flags=("-O2", "-static"), timeout=BUILD_TIMEOUT).path],
                                     timeout=30, check=True).stdout)}
    if toolchain.have("gcc"):
        b = toolchain.cc(C_THREAD_STACK, compiler="gcc", output="exe", flags=("-O2", "-pthread"), timeout=BUILD_TIMEOUT)
        out["glibc"] = int(toolchain.run([b.path], timeout=30, check=True).stdout)
    return out


MUSL_PTHREAD_IMPL = "lib/libc/musl/src/internal/pthread_impl.h"   # musl as zig ships it (the libc zig cc links)
MUSL_INIT_TLS = "lib/libc/musl/src/env/__init_tls.c"


def zig_lib_dir() -> Path:
    """The pinned ziglang package's ``lib/`` parent (it carries the musl sources that ``zig cc`` builds)."""
    return Path(toolchain.require("zig").argv[0]).resolve().parent


def musl_stack_rule(zig_dir: Path | None = None) -> dict[str, int | str]:
    """musl's default thread stack rule, read from the musl source that the pinned zig ships.

    ``DEFAULT_STACK_SIZE`` is musl's own default (128 KiB); at start-up ``static_init_tls`` raises it to a static
    program's ``PT_GNU_STACK`` ``p_memsz`` when that is larger, capped at ``DEFAULT_STACK_MAX``. Returns both
    constants and the source lines of the rule; raises ValueError if the pinned source no longer says so.
    """
    root = Path(zig_dir) if zig_dir else zig_lib_dir()
    header, init = (root / MUSL_PTHREAD_IMPL).read_text(), (root / MUSL_INIT_TLS).read_text()
    consts = {}
    for name in ("DEFAULT_STACK_SIZE", "DEFAULT_STACK_MAX"):
        m = re.search(rf"^#define {name} (.+)$", header, re.M)
        if not m:
            raise ValueError(f"{MUSL_PTHREAD_IMPL} does not define {name}")
        consts[name] = _eval(m.group(1).strip(), {})
    m = re.search(r"if \(phdr->p_type == PT_GNU_STACK &&.*?;", init, re.S)
    if not m or "DEFAULT_STACK_MAX" not in m.group(0) or "__default_stacksize" not in m.group(0):
        raise ValueError(f"{MUSL_INIT_TLS} no longer raises the default stack from PT_GNU_STACK")
    return {**consts, "rule": " ".join(m.group(0).split())}


def musl_default_stack(gnu_stack_memsz: int | None, rule: dict) -> int:
    """What musl's rule gives for a static program whose ``PT_GNU_STACK`` has ``p_memsz`` (None: no header)."""
    size = rule["DEFAULT_STACK_SIZE"]
    if gnu_stack_memsz is not None and gnu_stack_memsz > size:
        size = min(gnu_stack_memsz, rule["DEFAULT_STACK_MAX"])
    return size


def gnu_stack_size(path) -> int | None:
    """``p_memsz`` of the ``PT_GNU_STACK`` program header (pyelftools), or None if there is none."""
    with open(existing_file(path), "rb") as fh:
        for seg in ELFFile(fh).iter_segments():
            if seg["p_type"] == "PT_GNU_STACK":
                return seg["p_memsz"]
    return None


def readelf_gnu_stack(path) -> str | None:
    """The ``GNU_STACK`` line of ``readelf -lW``, or None where binutils' readelf is not installed."""
    if not toolchain.have("readelf"):
        return None
    out = toolchain.run([*toolchain.require("readelf").argv, "-lW", str(existing_file(path))], timeout=30,
                        check=True).stdout
    return next((" ".join(l.split()) for l in out.splitlines() if l.split()[:1] == ["GNU_STACK"]), None)


def musl_thread_stacks(stack_sizes=(None, 256 << 10, 64 << 10, 32 << 20)) -> list[dict]:
    """Link the default-stack probe with zig cc (static musl) once per ``-z stack-size`` (None: zig's default).

    Each row: the link flag, ``PT_GNU_STACK`` ``p_memsz`` read back with pyelftools, readelf's line (or None),
    and the default stack size the program itself reports at run time.
    """
    rows = []
    for size in stack_sizes:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= 1 << 32):
            raise ValueError(f"stack size must be a positive byte count up to 4 GiB, got {size!r}")
        extra = () if size is None else (f"-Wl,-z,stack-size={size}",)
        b = toolchain.cc(C_THREAD_STACK, compiler="zig", target="x86_64-linux-musl", output="exe",
                         flags=("-O2", "-static", *extra), timeout=BUILD_TIMEOUT)
        rows.append({"link": extra[0] if extra else "(zig's default)", "gnu_stack": gnu_stack_size(b.path),
                     "readelf": readelf_gnu_stack(b.path),
                     "runtime": int(toolchain.run([b.path], timeout=30, check=True).stdout)})
    return rows


def creation_cost(n: int = 2000, rounds: int = 5) -> dict[str, float]:
    """Nanoseconds to create (and finish) one goroutine and one POSIX thread, best of ``rounds`` runs of ``n``.

    The thread program is built with gcc -pthread where present, else zig cc (static musl).
    """
    _positive(n=n, rounds=rounds)
    go_bin = toolchain.go_build(GO_SPAWN, timeout=BUILD_TIMEOUT).path
    if toolchain.have("gcc"):
        c = toolchain.cc(C_SPAWN, compiler="gcc", output="exe", flags=("-O2", "-pthread"), timeout=BUILD_TIMEOUT)
    else:
        c = toolchain.cc(C_SPAWN, compiler="zig", target="x86_64-linux-musl", output="exe", flags=("-O2", "-static"),
                         timeout=BUILD_TIMEOUT)
    g = float(toolchain.run([go_bin, str(n), str(rounds)], timeout=120, check=True).stdout)
    t = float(toolchain.run([c.path, str(n), str(rounds)], timeout=120, check=True).stdout)
    return {"goroutine_ns": g, "thread_ns": t, "ratio": t / g, "thread_libc": "glibc" if toolchain.have("gcc") else "musl"}


# ---- chapter 5: what the runtime needs from its host ------------------------------------------------------------
def syscall_names(goroot: Path | None = None) -> dict[int, str]:
    """{number: "mmap", ...} for linux/amd64 from Go's own ``src/syscall/zsysnum_linux_amd64.go``."""
    text = (Path(goroot or toolchain.goroot()) / "src" / "syscall" / "zsysnum_linux_amd64.go").read_text()
    return {int(n): name.lower() for name, n in re.findall(r"^\s*SYS_(\w+)\s*=\s*(\d+)", text, re.M)}


SYSCALL_WRAPPERS = ("internal/runtime/syscall/linux.Syscall6", "syscall.RawSyscall6", "syscall.Syscall6",
                    "syscall.rawSyscallNoError", "syscall.rawVforkSyscall", "internal/runtime/syscall.Syscall6")


def runtime_syscalls(path) -> dict[str, list[str]]:
    """Syscalls a static Go binary can make: {syscall name: [functions issuing it]}.

    Found by disassembling every function (capstone): a ``syscall`` instruction, or a call to one of the
    SYSCALL_WRAPPERS, preceded within the function by ``mov eax, imm`` (Go's ``MOVL $SYS_x, AX``).
    Numbers passed in from callers (e.g. ``syscall.Syscall(trap, ...)``) are not counted: this is a lower bound.
    """
    import capstone

    info = read_elf(path)
    names = syscall_names()
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    text = info.section(".text")
    if text is None:
        raise ValueError(f"{Path(path).name} has no .text section")
    with open(existing_file(path), "rb") as f:
        elf = ELFFile(f)
        sec = elf.get_section_by_name(".text")
        base, data = sec["sh_addr"], sec.data()
    wrappers = {s.value for s in info.symbols if s.name in SYSCALL_WRAPPERS and s.type == "FUNC"}
    found: dict[str, set[str]] = {}
    for sym in info.functions():
        if not sym.size or not (base <= sym.value < base + text.size):
            continue
        code = data[sym.value - base: sym.value - base + sym.size]
        if b"\x0f\x05" not in code and not wrappers:
            continue
        eax = None
        for addr, _size, mnem, ops in md.disasm_lite(code, sym.value):
            if mnem == "mov" and re.match(r"^(eax|rax), (0x[0-9a-f]+|\d+)$", ops):
                eax = int(ops.split(", ")[1], 0)
            elif mnem == "syscall" or (mnem == "call" and ops.startswith("0x") and int(ops, 16) in wrappers):
                if eax is not None and eax in names:
                    found.setdefault(names[eax], set()).add(sym.name)
                eax = None
            elif mnem == "ret":
                eax = None
    return {k: sorted(v) for k, v in sorted(found.items())}


def proc_status() -> dict[str, object]:
    """Threads and caught signals of a Go hello-world-sized program, read from its own /proc/self/status."""
    b = toolchain.go_build(GO_PROC_STATUS, timeout=BUILD_TIMEOUT)
    out = toolchain.run([b.path], timeout=30, check=True).stdout
    fields = dict(l.split(":", 1) for l in out.splitlines())
    mask = int(fields["SigCgt"].strip(), 16)
    return {"threads": int(fields["Threads"]), "caught": [s for s in range(1, 65) if mask >> (s - 1) & 1]}


def write_barrier_listing() -> tuple[str, list[str]]:
    """``go tool objdump`` of ``main.store`` (a pointer store into a global) and the runtime calls it makes."""
    b = toolchain.go_build(GO_WRITE_BARRIER, timeout=BUILD_TIMEOUT)
    p = toolchain.go("tool", "objdump", "-s", "^main.store$", str(b.path), timeout=BUILD_TIMEOUT)
    # objdump columns: file:line, address, encoding, instruction; keep the instruction (addresses are not the point)
    lines = [[f for f in l.split("\t") if f.strip()][-1].strip() for l in p.stdout.splitlines()
             if l.strip() and not l.startswith("TEXT")]
    calls = sorted({m for l in lines for m in re.findall(r"CALL (runtime\.\w+)", l)})
    return "\n".join(lines), calls


def go_buildmodes() -> list[str]:
    """The build modes ``go help buildmode`` documents (the list a .ko would have to be in)."""
    p = toolchain.go("help", "buildmode", timeout=60)
    return re.findall(r"^\t-buildmode=(\S+)", p.stdout, re.M)


def go_ports() -> list[str]:
    """``go tool dist list``: every GOOS/GOARCH the pinned toolchain can target."""
    return toolchain.go("tool", "dist", "list", timeout=60).stdout.split()


def summarize_counts(values) -> dict:
    return dict(sorted(Counter(values).items()))


# ---- chapter 5: kernel stacks are fixed-size --------------------------------------------------------------------
# Excerpt (the #define lines only) of torvalds/linux arch/x86/include/asm/page_64_types.h at commit
# 031616c434db05ce766f76c62865f55698e0924f, as read with the search tool's read_file. x86-64 base pages are 4 KiB
# (PAGE_SHIFT 12: Intel SDM Vol. 3A §4.5; torvalds/linux arch/x86/include/asm/page_types.h).
LINUX_PAGE_64_TYPES = """\
#ifdef CONFIG_KASAN
#define KASAN_STACK_ORDER 1
#else
#define KASAN_STACK_ORDER 0
#endif

#define THREAD_SIZE_ORDER\t(2 + KASAN_STACK_ORDER)
#define THREAD_SIZE  (PAGE_SIZE << THREAD_SIZE_ORDER)
"""
X86_PAGE_SHIFT = 12


def linux_thread_size(kasan: bool = False, header: str = LINUX_PAGE_64_TYPES) -> int:
    """THREAD_SIZE (one task's kernel stack, fixed at creation) evaluated from the header's own #defines."""
    order = None
    in_kasan = None
    for line in header.splitlines():
        s = line.strip()
        if s.startswith("#ifdef CONFIG_KASAN"):
            in_kasan = True
        elif s.startswith("#else"):
            in_kasan = False
        elif s.startswith("#endif"):
            in_kasan = None
        elif s.startswith("#define KASAN_STACK_ORDER") and (in_kasan is None or in_kasan == kasan):
            order = int(s.split()[-1])
    m = re.search(r"#define THREAD_SIZE_ORDER\s*\((\d+) \+ KASAN_STACK_ORDER\)", header)
    if order is None or not m:
        raise ValueError("THREAD_SIZE_ORDER / KASAN_STACK_ORDER not found in the header excerpt")
    return (1 << X86_PAGE_SHIFT) << (int(m.group(1)) + order)


# ---- chapter 5: §5's case study, what the primary sources say ---------------------------------------------------
@dataclass(frozen=True)
class Reading:
    """One look-up in a primary source (read with the search tool's read_file/find_files; commit as stored)."""

    claim: str       # C63 / C64
    named: str       # what the article names
    source: str      # owner/repo path
    commit: str
    found: bool      # does the named thing exist as the article uses it?
    note: str


CASE_STUDY_READINGS = (
    Reading("C63", "Tide `Service::call`", "http-rs/tide src/endpoint.rs", "05cab7faff0f5759906aae8b75f80655579766a6",
            False, "Tide's handler trait is `Endpoint<State>` with `fn call(&self, req: Request<State>)`; "
                   "middleware is `Middleware::handle`. No `Service` trait in the files read."),
    Reading("C63", "`hyper::Timeout`", "hyperium/hyper src/common/timeout.rs", "61d7e91f01259f1f58a4959d3c9393f16ed22b53",
            False, "Only a crate-private `pub(crate) struct Timeout` in one stored version; nothing public named "
                   "`hyper::Timeout`."),
    Reading("C63", "a Tower `Layer` that adds a timeout", "tower-rs/tower tower/src/timeout/mod.rs",
            "ce2cc55e124cbc4b3e3fdd738ccc00d17bb404df", True,
            "Tower does have `timeout::Timeout` and `TimeoutLayer` (layer.rs): the real home of the type the "
            "article attributes to hyper."),
    Reading("C63", "the gateway's latency, breaker and incident figures", "(no source)", "", False,
            "An anonymous team's production numbers: no repository, paper or data set to check them against."),
    Reading("C64", "`tokio::time::sleep` granularity", "tokio-rs/tokio tokio/src/time/sleep.rs",
            "023e956fc8db32ddb5e860779933ef8a2603fed0", True,
            "Documented: `Sleep` works at millisecond granularity and waits until the deadline is reached "
            "(it never completes early)."),
    Reading("C64", "a ±2.3 s drift from task-scheduling granularity", "tokio-rs/tokio tokio/src/time/sleep.rs",
            "023e956fc8db32ddb5e860779933ef8a2603fed0", False,
            "Granularity is 1 ms, three orders of magnitude below 2.3 s, and a sleep cannot end before its deadline, "
            "so a '±' drift has no mechanism there; a late wake-up of seconds needs a blocked executor thread."),
)


def case_study_verdict(claim: str, readings=CASE_STUDY_READINGS) -> str:
    """The verdict the readings support: a named API that does not exist -> fabricated; a named mechanism the
    source contradicts -> wrong; nothing missing -> holds."""
    rows = [r for r in readings if r.claim == claim]
    if not rows:
        raise ValueError(f"no readings for {claim}")
    missing_api = [r for r in rows if not r.found and r.named.startswith(("Tide", "`hyper"))]
    if missing_api:
        return "fabricated"
    if any(not r.found for r in rows):
        return "wrong"
    return "holds"


# Biscuit's headline measurements, as its abstract states them: Cutler, Kaashoek, Morris, "The benefits and
# costs of writing a POSIX kernel in a high-level language", OSDI '18 (usenix.org/conference/osdi18/presentation/cutler).
# Read in the abstract as reproduced by the paper's proceedings transcript and by MIT EECS's announcement of
# Cutler's doctoral thesis; the evaluation itself is §8 of the paper.
BISCUIT_ABSTRACT = (
    ("share of kernel CPU time spent on HLL features (mostly GC and thread-stack expansion checks)", "up to 13%",
     "kernel-intensive benchmarks, NGINX and Redis among them"),
    ("longest single GC-related pause suffered by NGINX", "115 µs", "one pause"),
    ("longest sum of GC delays during one complete NGINX request", "600 µs", "one client request"),
    ("Go versus C on nearly identical system-call, page-fault and context-switch paths", "Go 5% to 15% slower",
     "the same code paths written in both languages"),
)
