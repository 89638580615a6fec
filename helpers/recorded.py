"""Recorded artifacts, for evidence that needs a system tool the reader's machine may lack.

A few claims are about GCC itself, about binutils' ``readelf``/``objdump``, or about glibc: chapter 4a's C46,
C48 and C49 and chapter 4c's C58. The pinned Go installs with the book, but where it could not be installed
(``helpers.toolless`` mode 2 checks that case) chapter 5's survey of the Go runtime (c05_go_runtime) needs it. On a
machine with those tools the evidence cells run the experiment live. Without them they show the result that
``python -m helpers.recorded`` saved in ``helpers/recorded/<key>.json`` on a machine that had them, and they
say so, naming the tool versions and the flags. Both paths go through the same JSON form, so a cell prints and
asserts the same thing either way.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
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


# key -> (tools it needs, the experiment)
EXPERIMENTS = {
    "c46_gcc_frame_pointer": (("gcc",), _c46_gcc_frame_pointer),
    "c48_readelf_objdump": (("gcc", "readelf", "objdump"), _c48_readelf_objdump),
    "c49_glibc_backtrace": (("gcc",), _c49_glibc_backtrace),
    "c58_gcc_lto_flags": (("gcc",), _c58_gcc_lto_flags),
    "c05_go_runtime": (("go",), _c05_go_runtime),
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


def record(keys=None) -> list[Path]:
    """Run the experiments with the tools installed here and save them under helpers/recorded/."""
    RECORDINGS.mkdir(exist_ok=True)
    written = []
    for key in keys or EXPERIMENTS:
        ev = _run(key)
        path = RECORDINGS / f"{key}.json"
        path.write_text(json.dumps({"key": key, "tools": ev.tools, "data": ev.data}, indent=1) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in record(sys.argv[1:] or None):
        print(f"recorded {p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p}")
