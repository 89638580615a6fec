"""Recorded artifacts, for evidence that needs a system tool the reader's machine may lack.

A few claims are about GCC itself, about binutils' ``readelf``/``objdump``, or about glibc: chapter 4a's C46,
C48 and C49 and chapter 4c's C58. The pinned Go installs with the book, but where it could not be installed
(``helpers.toolless`` mode 2 checks that case) chapter 5's survey of the Go runtime (c05_go_runtime) needs it. On a
machine with those tools the evidence cells run the experiment live. Without them they show the result that
``python -m helpers.recorded`` saved in ``helpers/recorded/<key>.json`` on a machine that had them, and they
say so, naming the tool versions and the flags. Both paths go through the same JSON form, so a cell prints and
asserts the same thing either way.

Chapters 4c and 4d analyse gcc's *products*: the objects and programs :mod:`helpers.lto` and
:mod:`helpers.kcodegen` build with gcc. Those are recorded as files, not as results: ``python -m helpers.recorded
gcc`` builds every one of them (:func:`gcc_recipes`) with the gcc installed there and keeps it in
``helpers/recorded/gcc/`` (a few KB each) with its inputs, flags and gcc's version. :func:`gcc_build` returns gcc's
build of the same inputs: compiled here where gcc is installed, else that recorded file. Every size, listing and
count the chapters print is then read, here, from real gcc output, and :func:`gcc_provenance` says which it was.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import toolchain

RECORDINGS = Path(__file__).with_name("recorded")
OPT_LEVELS = ("-O0", "-O1", "-O2")


def _c46_gcc_frame_pointer() -> dict:
    from . import unwind
    return {"flags": "gcc -Q --help=optimizers; gcc -O<n> -S", "levels": {
        opt: {"setting": unwind.gcc_optimizer_setting(opt), "frame_pointer": unwind.gcc_default_frame_pointer(opt)}
        for opt in OPT_LEVELS}}


def _c48_readelf_objdump() -> dict:
    from . import unwind
    build = unwind.build_chain("gcc", frame_pointer=True)
    raw = toolchain.run([*toolchain.require("readelf").argv, "-wf", build.path], timeout=30, check=True).stdout
    interp = unwind.objdump_rows(build.path)
    return {"flags": " ".join(build.command), "readelf_head": raw.splitlines()[:14],
            "checks": {"DW_CFA_def_cfa": "DW_CFA_def_cfa" in raw, "FDE": "FDE" in raw,
                       "Return address column: 16": "Return address column: 16" in raw},
            "objdump_rows": len(interp),
            "rows_that_differ": unwind.rows_agree_with_objdump(unwind.CfiTable.from_elf(build.path), interp)}


def _c49_glibc_backtrace() -> dict:
    from . import unwind
    names, prologues = unwind.glibc_backtrace(frame_pointer=False)
    return {"flags": "gcc -O2 -fomit-frame-pointer (glibc backtrace())", "names": names, "prologues": prologues}


def _c58_gcc_lto_flags() -> dict:
    from . import lto
    slim = lto.lto_object("gcc", ("-O2", "-flto=auto"))
    fat = lto.lto_object("gcc", ("-O2", "-flto=auto", "-ffat-lto-objects"))
    return {"flags": "gcc -O2 -flto=auto [-ffat-lto-objects] [-f(no-)use-linker-plugin]",
            "slim": {"text_size": slim.text_size, "lto_sections": len(slim.lto_sections)},
            "fat": {"text_size": fat.text_size, "lto_sections": len(fat.lto_sections)},
            "plugin_with": lto.gcc_link_uses_plugin(("-O2", "-flto=auto", "-fuse-linker-plugin")),
            "plugin_without": lto.gcc_link_uses_plugin(("-O2", "-flto=auto", "-fno-use-linker-plugin"))}


def _c05_go_runtime() -> dict:
    from . import govsc
    status = govsc.proc_status()
    listing, calls = govsc.write_barrier_listing()
    return {"flags": "go build of helpers.govsc's programs; go tool objdump; go help buildmode; go tool dist list; "
                     "the pinned runtime's sources",
            "syscalls": govsc.runtime_syscalls(toolchain.go_build(govsc.GO_HELLO).path),
            # how many threads depends on the machine's cores; that there is more than one does not
            "threads_before_main": status["threads"] > 1, "caught": sorted(status["caught"]),
            "sig_preempt": govsc.source_lines("runtime/signal_unix.go", r"^const sigPreempt"),
            "max_stack_size": govsc.max_stack_size(),
            "starting_stack": max(govsc.probe_starting_stacks(warm_kib=16, n=150)),
            "write_barrier": {"listing": listing, "calls": calls},
            "buildmodes": govsc.go_buildmodes(), "ports": govsc.go_ports()}


def _c60_cgo_sections() -> dict:
    # A cgo program is linked by the C compiler (gcc here): its sections are the external linker's. The binary
    # is over 2 MB, so its section table is what is kept, not the file.
    from . import lto
    g = lto.cgo_sections()
    return {"flags": "go build of lto.GO_CGO_PROGRAM with CGO_ENABLED=1, CC=gcc (external link)",
            "variant": g.variant, "sections": [list(s) for s in g.sections], "symbols": g.symbols,
            "text_size": g.text_size, "is_static": g.is_static, "interp": g.interp}


# key -> (tools it needs, the experiment)
EXPERIMENTS = {
    "c46_gcc_frame_pointer": (("gcc",), _c46_gcc_frame_pointer),
    "c48_readelf_objdump": (("gcc", "readelf", "objdump"), _c48_readelf_objdump),
    "c49_glibc_backtrace": (("gcc",), _c49_glibc_backtrace),
    "c58_gcc_lto_flags": (("gcc",), _c58_gcc_lto_flags),
    "c05_go_runtime": (("go",), _c05_go_runtime),
    "c60_cgo_sections": (("gcc", "go"), _c60_cgo_sections),
}


@dataclass(frozen=True)
class Evidence:
    key: str
    data: dict
    tools: dict          # tool -> version line of the tool that produced the data
    recorded: bool       # True: loaded from helpers/recorded/, the tools being missing here

    def provenance(self) -> str:
        how = "recorded by `python -m helpers.recorded`" if self.recorded else "run here"
        return f"[{how} with {'; '.join(self.tools.values())}; {self.data['flags']}]"


def _run(key: str) -> Evidence:
    needs, experiment = EXPERIMENTS[key]
    tools = {t: toolchain.require(t).version for t in needs}
    return Evidence(key, json.loads(json.dumps(experiment())), tools, recorded=False)


def evidence(key: str) -> Evidence:
    """The experiment's result: live when its tools are installed, else the recording (or a one-line ToolMissing)."""
    if key not in EXPERIMENTS:
        raise KeyError(f"no recorded experiment {key!r} (have: {', '.join(EXPERIMENTS)})")
    needs, _ = EXPERIMENTS[key]
    if all(toolchain.have(t) for t in needs):
        return _run(key)
    path = RECORDINGS / f"{key}.json"
    if not path.exists():
        missing = next(t for t in needs if not toolchain.have(t))
        raise toolchain.ToolMissing(f"{missing} not found and no recording of {key}: {toolchain.HINTS[missing]}")
    saved = json.loads(path.read_text())
    return Evidence(key, saved["data"], saved["tools"], recorded=True)


# ------------------------------------------------------------------------------------------ gcc's products
GCC_DIR = RECORDINGS / "gcc"
GCC_MANIFEST = GCC_DIR / "builds.json"
_SUFFIX = {"obj": ".o", "exe": ".out"}


def gcc_key(source, flags=(), output: str = "obj") -> str:
    """The name of one gcc build in the recording: a hash of its sources, flags and output kind (not of gcc's
    version, which a machine without gcc cannot know; the manifest names it)."""
    files = {"main.c": source} if isinstance(source, str) else dict(source)
    blob = json.dumps([sorted(files.items()), list(flags), output])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def _manifest() -> dict:
    return json.loads(GCC_MANIFEST.read_text()) if GCC_MANIFEST.exists() else {"tool": "", "builds": {}}


def _gcc_entry(source, flags, output) -> dict | None:
    return _manifest()["builds"].get(gcc_key(source, flags, output))


def gcc_available(source, flags=(), output: str = "obj") -> bool:
    """Whether :func:`gcc_build` can give this build here: gcc is installed, or the recording has it."""
    return toolchain.have("gcc") or _gcc_entry(source, tuple(flags), output) is not None


def gcc_build(source, *, flags=(), output: str = "obj") -> toolchain.Build:
    """gcc's build of ``source`` (``output`` "obj" or "exe"): compiled here (cached) where gcc is installed, else
    the file ``python -m helpers.recorded gcc`` recorded from the same inputs (``Build.recorded`` is then True).
    Neither: one-line :class:`toolchain.ToolMissing`; a recorded file that does not match its checksum:
    :class:`toolchain.ToolchainError`."""
    flags = tuple(flags)
    if toolchain.have("gcc"):
        return toolchain.cc(source, compiler="gcc", flags=flags, output=output)
    entry = _gcc_entry(source, flags, output)
    if entry is None:
        raise toolchain.ToolMissing(f"gcc not found and no recording of this gcc build ({' '.join(flags) or 'no flags'}"
                                    f", {output}): {toolchain.HINTS['gcc']}")
    path = GCC_DIR / entry["file"]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        raise toolchain.ToolchainError(f"helpers/recorded/gcc/{entry['file']} is missing or damaged: "
                                       "re-run `python -m helpers.recorded gcc` on a machine with gcc")
    return toolchain.Build(path, entry["compiler_output"], tuple(entry["command"]), _manifest()["tool"],
                           cached=True, recorded=True)


def gcc_provenance() -> str:
    """Where gcc's builds came from here: gcc run here, or the recording (naming the gcc that made it)."""
    if toolchain.have("gcc"):
        return f"[gcc's builds: run here with {toolchain.require('gcc').version}]"
    tool = _manifest()["tool"] or "no gcc (no recording either)"
    return f"[gcc's builds: recorded by `python -m helpers.recorded gcc` with {tool}; read from helpers/recorded/gcc/]"


def gcc_recipes() -> list[tuple]:
    """Every gcc build the chapters analyse, as (source, flags, output): helpers.lto's (chapter 4c) and
    helpers.kcodegen's (chapter 4d). The recording holds exactly these."""
    from . import kcodegen, lto
    out, seen = [], set()
    for source, flags, output in [*lto.gcc_recipes(), *kcodegen.gcc_recipes()]:
        key = gcc_key(source, flags, output)
        if key not in seen:
            seen.add(key)
            out.append((source, tuple(flags), output))
    return out


def record_gcc() -> list[Path]:
    """Build every recipe with the gcc installed here and keep the products, and only those, in helpers/recorded/gcc/."""
    tool = toolchain.require("gcc").version
    GCC_DIR.mkdir(parents=True, exist_ok=True)
    builds = {}
    for source, flags, output in gcc_recipes():
        b = toolchain.cc(source, compiler="gcc", flags=flags, output=output)
        key = gcc_key(source, flags, output)
        name = key + _SUFFIX[output]
        data = b.path.read_bytes()
        (GCC_DIR / name).write_bytes(data)
        (GCC_DIR / name).chmod(0o755 if output == "exe" else 0o644)
        files = {"main.c": source} if isinstance(source, str) else dict(source)
        builds[key] = {"file": name, "output": output, "flags": list(flags), "command": list(b.command),
                       "compiler_output": b.output, "sha256": hashlib.sha256(data).hexdigest(), "sources": files}
    for old in GCC_DIR.iterdir():  # products of recipes that no chapter builds any more
        if old.name != GCC_MANIFEST.name and old.name not in {e["file"] for e in builds.values()}:
            old.unlink()
    GCC_MANIFEST.write_text(json.dumps({"note": "python -m helpers.recorded gcc", "tool": tool, "builds": builds},
                                       indent=1) + "\n")
    _manifest.cache_clear()
    return [GCC_MANIFEST, *(GCC_DIR / e["file"] for e in builds.values())]


def record(keys=None) -> list[Path]:
    """Run the experiments with the tools installed here and save them under helpers/recorded/; the key
    ``gcc`` records gcc's builds (:func:`record_gcc`). No keys: every experiment and gcc's builds."""
    RECORDINGS.mkdir(exist_ok=True)
    written = []
    for key in keys or [*EXPERIMENTS, "gcc"]:
        if key == "gcc":
            written += record_gcc()
            continue
        if key not in EXPERIMENTS:
            raise KeyError(f"no recorded experiment {key!r} (have: {', '.join(EXPERIMENTS)}, gcc)")
        ev = _run(key)
        path = RECORDINGS / f"{key}.json"
        path.write_text(json.dumps({"key": key, "tools": ev.tools, "data": ev.data}, indent=1) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    try:
        paths = record(sys.argv[1:] or None)
    except (KeyError, toolchain.ToolchainError) as e:
        sys.exit(f"python -m helpers.recorded: {e.args[0] if isinstance(e, KeyError) else e}")
    for p in paths:
        print(f"recorded {p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p}")
