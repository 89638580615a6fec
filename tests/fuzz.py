"""The fuzz campaign: hypothesis inputs at every entry point a reader can reach, each batch in its own process.

    .venv/bin/python -m tests.fuzz --total 100000        # `make fuzz`: the long campaign, counts per entry point
    .venv/bin/python -m tests.fuzz --total 1500          # the short profile tests/test_fuzz.py runs

The property, for every input: the call returns a result or raises one line of the ValueError family, within
its time budget; no file is opened for writing outside the build cache and the temporary folder; no file
outside the repository, the Python installation and the system's libraries is opened for reading; and no
result or message contains the bytes of a canary file planted outside the repository (inputs try hard to
include it: ``.incbin``, ``.include``, ``#include``, file names, flags).

A batch runs in a child process (``--worker``) with a timeout, so a crash (a signal) or a hang is caught
and reported with the batch's seed, which reproduces it (``--worker ENTRY --seed S --count N``).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# entry point -> (share of the inputs, seconds allowed per input, inputs per child process). The entry points
# that run GNU as or build an emulator per input get fewer inputs than the pure-Python parsers and decoders.
ENTRIES = {
    "assemble": (6, 20.0, 250), "disassemble": (14, 1.0, 2000), "run_source": (4, 20.0, 250),
    "asm_runner": (2, 20.0, 250), "store_into_gate": (2, 20.0, 250), "gate_decode": (14, 1.0, 2000),
    "run_int": (2, 20.0, 250), "place_arguments": (14, 1.0, 2000), "parse_answer": (14, 1.0, 2000),
    "machine": (10, 5.0, 1000), "unwind_assemble": (1, 30.0, 250), "build_inputs": (12, 1.0, 2000),
    "read_elf": (5, 5.0, 1000),
}
MAX_MESSAGE = 300


# ----------------------------------------------------------------------------------------------- strategies
def _strategies(canary: str):
    from hypothesis import strategies as st

    words = ["mov", "add", "%eax", "%rax", "$", ",", "(", ")", "[", "]", "1:", "1b", "1f", "0x", "-", "*", ":",
             "ptr", "dword", "lidt", "ljmp", "int", "ret", "jmp", "push", "\n", ";", "#", "/*", "*/", "rax", "16",
             "lab", "lab:", ".byte", ".space", ".rept", ".endr", ".macro", ".irp", ".fill", ".org", ".", "=",
             ".ds.b", ".nops", ".dcb.b", ".incbin", ".include", f'"{canary}"', "\\", "'", '"', "0x40000000",
             "9" * 60, ".section .data", ".p2align", ".balign", ".set", ".equ", "inc\\()bin", "INCBIN"]
    garbage = st.text(alphabet=string.printable + "\u00e9\x00", max_size=80)
    tokens = st.lists(st.sampled_from(words), max_size=14).map(" ".join)
    lines = st.lists(tokens, max_size=6).map("\n".join)
    valid = ["nop", "mov $1, %eax", "add $2, %eax", "ud2", "hlt", "1: jmp 1b", "int $3", "push %rax", "pop %rbx",
             "mov (%rax), %eax", "mov $0x10, %rsp", "ret", "syscall", "lidt (%rax)", "iretq", "movw $0x8e00, 2(%rax)",
             "mov eax, 1", "xor rax, rax", ".byte 0x0f, 0x0b", "cli", "sti", "div %rcx", "jmp 0x1000", "call 1f\n1:"]
    programs = st.lists(st.sampled_from(valid), min_size=1, max_size=6).map("\n".join)
    source = st.one_of(garbage, tokens, lines, programs, programs)
    mode = st.sampled_from([("x86_64", "att"), ("x86_64", "intel"), ("x86_32", "att"), ("x86_32", "intel")])
    weird = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                      st.binary(max_size=20), st.lists(st.integers(-300, 300), max_size=20), st.booleans(),
                      st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    big = st.one_of(st.integers(), st.integers(-(2**80), 2**80), st.sampled_from([2**64 - 1, 2**70, -1, 0, 4 << 30]))
    return st, source, mode, weird, big


def _calls(canary_path: str):
    """entry -> (strategy, call(input) -> output text)."""
    st, source, mode, weird, big = _strategies(canary_path)
    from helpers import abi, asm, idt, playground, toolchain, unwind
    from helpers.elf import read_elf
    from helpers.emu import Machine
    from helpers.labs.common import KINDS, parse_answer

    def c_assemble(x):
        src, (arch, syntax), backend, address = x
        a = asm.assemble(src, arch, syntax, address, backend=backend)
        return a.code.hex() + str(a)

    def c_disassemble(x):
        code, (arch, syntax), address, text = x
        fn = asm.disassemble_text if text else asm.disassemble
        return asm.format_listing(fn(code, arch, syntax, address))

    def c_run_source(x):
        src, (arch, syntax) = x
        return playground.run_source(src, arch, syntax).report()

    def c_runner(x):
        from helpers.widgets.asmrun import AsmRunner
        src, (arch, syntax) = x
        w = AsmRunner(src, arch, syntax)
        w.run()
        if "✗" in w.status.value and w.status.value.count("\n"):
            raise AssertionError("the widget's error is more than one line")
        return w.status.value + w.result.value

    def c_store(x):
        src, raw = x
        return idt.store_into_gate(src, raw).report()

    def c_decode(x):
        raw, m, strict = x
        return idt.Gate.decode(raw, m, strict=strict).describe()

    def c_run_int(x):
        offset, sel, vector, cpl, sw, rflags = x
        gate = idt.Gate(offset, sel)
        return idt.run_int(gate, vector, cpl=cpl, software=sw, rflags=rflags).report()

    def c_place(x):
        conv, args = x
        return abi.place_arguments(conv, args).table() if hasattr(abi.Placement, "table") else \
            str(abi.place_arguments(conv, args))

    def c_parse(x):
        kind, raw, width = x
        return repr(parse_answer(kind, raw, width=width))

    def c_machine(x):
        arch, stack_size, code, addr, hook = x
        m = Machine(arch, stack_size=stack_size)
        if hook is not None:
            m.hook_address(hook, lambda mm, a: None)
        out = m.run(code, max_insns=10_000, timeout=1.0, trace=bool(len(code) % 2))
        m.read(addr, 16) if isinstance(addr, int) and 0 <= addr < 1 << 32 else None
        return out.message

    def c_unwind(x):
        return str(unwind.assemble(x).stat().st_size)

    def c_build(x):
        which, src, flags = x
        if which == "cc":
            toolchain._sources(src, "main.c")
            toolchain._check_cc_flags(flags)
        else:
            toolchain._sources(src, "main.go")
            toolchain._check_go_inputs(flags, None, None, None, "amd64", None)
        return "accepted"

    def c_read_elf(x):
        with tempfile.TemporaryDirectory(prefix="fuzz-elf-") as d:
            p = Path(d) / "f"
            p.write_bytes(x)
            info = read_elf(p)
            return f"{info.machine} {len(info.sections)} {len(info.symbols)}"

    names = st.one_of(st.sampled_from(["main.c", "a.s", "/tmp/x.c", "../x.c", "-fplugin=x.c", "a/../../b.c",
                                       canary_path, "ok/a.c", "", "."]), st.text(max_size=12))
    flag = st.one_of(st.sampled_from(["-O2", "-fplugin=/x.so", "-B/tmp", "-wrapper", "@" + canary_path, "-toolexec=x",
                                      "-Wl,--plugin,/x.so", "-Wl,-e,entry", "-include", canary_path, "-exec=/bin/sh",
                                      "-fuse-ld=/bin/x", "-specs=x", "-trimpath", "-a", "-overlay=/o"]),
                     st.text(max_size=16))
    return {
        "assemble": (st.tuples(source, mode, st.sampled_from(["auto", "gnu-as", "keystone"]),
                               st.sampled_from([0, 0x1000, 0x1000000, 2**32 - 4, 2**64 - 2])), c_assemble),
        "disassemble": (st.tuples(st.binary(max_size=64), mode, st.integers(0, 2**32 - 65), st.booleans()),
                        c_disassemble),
        "run_source": (st.tuples(source, mode), c_run_source),
        "asm_runner": (st.tuples(source, mode), c_runner),
        "store_into_gate": (st.tuples(source, st.one_of(st.binary(min_size=16, max_size=16), weird)), c_store),
        "gate_decode": (st.tuples(st.one_of(st.binary(max_size=20), st.text(alphabet="0123456789abcdefx ,", max_size=50),
                                            weird, st.builds(lambda o, s_, d: idt.Gate(o, s_, dpl=d).encode(),
                                                             st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF),
                                                             st.integers(0, 3)).map(lambda b: b.hex(" "))),
                                  st.sampled_from(["long", "protected", "bogus", None]),
                                  st.booleans()), c_decode),
        "run_int": (st.tuples(st.integers(0, 2**48), st.integers(0, 0xFFFF), st.one_of(st.integers(0, 300), big),
                              st.one_of(st.integers(-1, 4), big), st.booleans(), st.one_of(st.integers(0, 0x3FFFFF), big)),
                    c_run_int),
        "place_arguments": (st.tuples(st.one_of(st.sampled_from(list(abi.CONVENTIONS)), weird),
                                      st.one_of(st.lists(st.one_of(big, weird), max_size=40), weird)), c_place),
        "parse_answer": (st.tuples(st.one_of(st.sampled_from(KINDS), st.sampled_from(KINDS), weird),
                                   st.one_of(st.text(max_size=40), weird, big, st.sampled_from(
                                       ["42", "0x8e00", "8e 00", "rax", "a, b", "8E00h", "-3", "1_000", "b'\\x8e'"])),
                                   st.one_of(st.none(), st.none(), st.integers(1, 64), big, weird)),
                         c_parse),
        "machine": (st.tuples(st.sampled_from(["x86_64", "x86_32"]), st.one_of(st.integers(1, 1 << 20), big),
                              st.binary(max_size=48), st.one_of(st.integers(0, 2**64), weird),
                              st.one_of(st.none(), big)), c_machine),
        "unwind_assemble": (source, c_unwind),
        "build_inputs": (st.tuples(st.sampled_from(["cc", "go"]),
                                   st.one_of(st.dictionaries(names, st.one_of(st.text(max_size=40), st.just(
                                       f'#include "{canary_path}"'), st.just('asm(".incbin \\"x\\"")')), max_size=3),
                                             weird),
                                   st.one_of(st.lists(flag, max_size=4), weird)), c_build),
        "read_elf": (st.one_of(st.binary(max_size=200), st.binary(max_size=64).map(lambda b: b"\x7fELF" + b)),
                     c_read_elf),
    }


# ----------------------------------------------------------------------------------------------- the worker
def _allowed_roots():
    import site
    import sysconfig
    from helpers import toolchain
    roots = {str(ROOT), sys.prefix, sys.base_prefix, sys.exec_prefix, tempfile.gettempdir(), str(toolchain.CACHE_DIR),
             "/proc", "/sys", "/dev", "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share", "/etc/ld.so.cache",
             "/etc/localtime", os.path.realpath(sys.prefix),
             os.path.expanduser("~/.cache/matplotlib"), os.path.expanduser("~/.config/matplotlib")}  # font cache
    roots |= {p for p in site.getsitepackages() + [sysconfig.get_paths()["stdlib"]]}
    return tuple(sorted(os.path.realpath(r) for r in roots if r))


def worker(entry: str, count: int, seed: int, canary_path: str, canary: str) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from helpers.toolchain import ToolMissing
    calls = _calls(canary_path)
    strategy, call = calls[entry]
    budget = ENTRIES[entry][1]
    roots = _allowed_roots()
    tmp = os.path.realpath(tempfile.gettempdir())
    from helpers import toolchain
    writable = (tmp, os.path.realpath(str(toolchain.CACHE_DIR)), "/dev/null")   # DEVNULL for child stdin
    bad_io: list = []

    def audit(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            if writing and not path.startswith(writable):
                bad_io.append(f"write {path}")
            elif not writing and not path.startswith(roots) and path != os.path.realpath(canary_path) + "-never":
                bad_io.append(f"read {path}")
    sys.addaudithook(audit)

    counts = {"inputs": 0, "results": 0, "errors": 0}
    failures: list = []

    @hseed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(x):
        counts["inputs"] += 1
        del bad_io[:]
        t = time.perf_counter()
        out, why = "", None
        try:
            out = str(call(x))
            counts["results"] += 1
        except (ValueError, ToolMissing) as e:   # ToolMissing: one line naming the tool (a toolless machine)
            counts["errors"] += 1
            msg = str(e)
            out = msg
            if not msg or "\n" in msg or len(msg) > MAX_MESSAGE:
                why = f"not one short line: {msg[:200]!r}"
        except Exception as e:  # noqa: BLE001 - the campaign reports every escape
            why = f"escaped: {type(e).__name__}: {str(e)[:200]}"
        dt = time.perf_counter() - t
        if dt > budget:
            why = why or f"took {dt:.1f} s (budget {budget} s)"
        if canary in out:
            why = why or "the output contains the canary file's bytes"
        if bad_io:
            why = why or f"file access outside the allowed folders: {bad_io[:2]}"
        if why and len(failures) < 5:
            failures.append({"input": repr(x)[:300], "why": why})

    prop()
    return {"entry": entry, "seed": seed, **counts, "failures": failures}


# ----------------------------------------------------------------------------------------------- the driver
def campaign(total: int, entries=None, jobs: int = 1, verbose: bool = True) -> dict:
    entries = list(entries or ENTRIES)
    share = sum(ENTRIES[e][0] for e in entries)
    plan = {e: max(1, round(total * ENTRIES[e][0] / share)) for e in entries}
    rng = random.SystemRandom()
    results = {e: {"inputs": 0, "results": 0, "errors": 0, "failures": []} for e in entries}
    with tempfile.TemporaryDirectory(prefix="fuzz-canary-") as d:
        canary = "CANARY" + "".join(rng.choice("0123456789abcdef") for _ in range(16))
        canary_path = os.path.join(d, "secret.txt")
        Path(canary_path).write_text(canary + "\n")
        batches = [(e, min(ENTRIES[e][2], n - k), rng.randrange(1 << 32))
                   for e, n in plan.items() for k in range(0, n, ENTRIES[e][2])]
        running: list = []
        t0 = time.perf_counter()

        def start(b):
            e, n, s = b
            timeout = 120 + n * min(ENTRIES[e][1], 2.0)
            p = subprocess.Popen([sys.executable, "-m", "tests.fuzz", "--worker", e, "--count", str(n), "--seed", str(s),
                                  "--canary-path", canary_path, "--canary", canary], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                 start_new_session=True)
            return p, b, time.monotonic() + timeout

        def finish(p, b, deadline):
            e, n, s = b
            try:
                out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.communicate()
                results[e]["failures"].append({"input": f"batch seed {s}", "why": "the batch hung (killed)"})
                return
            if p.returncode != 0:
                tail = (err or "").strip().splitlines()[-1:] or [""]
                results[e]["failures"].append({"input": f"batch seed {s}",
                                               "why": f"the process died (exit {p.returncode}): {tail[0][:200]}"})
                return
            r = json.loads(out.strip().splitlines()[-1])
            for k in ("inputs", "results", "errors"):
                results[e][k] += r[k]
            results[e]["failures"] += r["failures"]

        queue = list(batches)
        while queue or running:
            while queue and len(running) < jobs:
                running.append(start(queue.pop(0)))
            p, b, deadline = running.pop(0)
            finish(p, b, deadline)
            if verbose:
                done = sum(r["inputs"] for r in results.values())
                print(f"\r  {done} inputs, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    if verbose:
        print(file=sys.stderr)
    return results


def report(results: dict) -> str:
    lines = [f"{'entry point':18} {'inputs':>8} {'results':>8} {'errors':>8}  failures"]
    for e, r in results.items():
        lines.append(f"{e:18} {r['inputs']:8} {r['results']:8} {r['errors']:8}  {len(r['failures'])}")
        lines += [f"    {f['why']}  <- {f['input']}" for f in r["failures"][:3]]
    total = sum(r["inputs"] for r in results.values())
    bad = sum(len(r["failures"]) for r in results.values())
    lines.append(f"{'total':18} {total:8}  {'no escape, hang, crash or leak' if not bad else f'{bad} FAILURES'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--entries", nargs="*", default=None)
    ap.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--worker", default=None)
    ap.add_argument("--count", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--canary-path", default=None)
    ap.add_argument("--canary", default=None)
    a = ap.parse_args(argv)
    if a.worker:
        if a.canary_path is None:        # reproducing one batch by hand
            d = tempfile.mkdtemp(prefix="fuzz-canary-")
            a.canary, a.canary_path = "CANARYREPRO", os.path.join(d, "secret.txt")
            Path(a.canary_path).write_text(a.canary + "\n")
        print(json.dumps(worker(a.worker, a.count, a.seed, a.canary_path, a.canary)))
        return 0
    results = campaign(a.total, a.entries, a.jobs)
    print(report(results))
    return 0 if not any(r["failures"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
