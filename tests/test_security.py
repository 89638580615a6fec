"""Security: nothing a reader types reads a file outside the repository, runs another program, or writes
gigabytes; every path that runs GNU as shares one guard; builds are confined and their cache is checked.

Each test here reproduces a defect of issue 13 (it failed before the fix)."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import asm, toolchain
from helpers.asm import AsmError, assemble

HAVE_AS = asm.gnu_as() is not None
needs_as = pytest.mark.skipif(not HAVE_AS, reason="GNU as (binutils, x86) not installed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def canary(tmp_path):
    """A file outside the repository with bytes no program could produce by chance."""
    path = tmp_path / "canary.txt"
    secret = "CANARY" + secrets.token_hex(8)
    path.write_text(secret + "\n")
    return path, secret


def _bypasses(path: str) -> list[str]:
    return [
        f'/**/.incbin "{path}"',                                    # a C comment hid the directive
        f'nop\n/* x */ .incbin "{path}"',
        f'.macro d n\n.\\n "{path}"\n.endm\nd incbin',                # a directive built by a macro
        f'.macro d n\n.\\n "{path}"\n.endm\nd inc\\()bin',
        f'/**/.include "{path}"',                                   # read as source
        f'.ascii "\\"" ; .incbin "{path}"',                          # an escaped quote
        f"mov $'\", %eax ; .incbin \"{path}\" #\"",                # a character constant '"
        f'.irp f,"{path}"\n.incbin \\f\n.endr',
        f'.irpc c,x\n.INCBIN "{path}"\n.endr',
        f'lab: .INCLUDE "{path}"',
        f'nop; .incbin "{path}", 0, 8',
    ]


@needs_as
@pytest.mark.parametrize("backend", ["gnu-as", "auto"])
def test_assemble_never_reads_a_file(canary, backend):
    path, secret = canary
    for src in _bypasses(str(path)):
        with pytest.raises(AsmError) as e:
            assemble(src, backend=backend)
        assert secret not in str(e.value) and "\n" not in str(e.value)


@needs_as
def test_every_gnu_as_path_shares_the_guard(canary):
    from helpers import unwind
    from helpers.idt import Gate, store_into_gate
    from helpers.playground import run_source
    from helpers.widgets.asmrun import AsmRunner

    path, secret = canary
    for src in _bypasses(str(path)):
        with pytest.raises(ValueError):
            run_source(src)
        with pytest.raises(ValueError):
            store_into_gate(src, Gate(0x1000, 0x10))
        with pytest.raises(ValueError) as e:
            unwind.assemble(src)
        assert secret not in str(e.value)
        w = AsmRunner(src)
        w.run()
        assert "✗" in w.status.value and secret not in w.status.value + w.result.value


@needs_as
@pytest.mark.parametrize("src", [
    ".ds.b 0x40000000", ".ds 0x40000000", ".ds.l 0x10000000", ".dcb.b 0x40000000, 0", ".nops 0x40000000",
    ". = 0x40000000", ".org 0x40000000", ".set ., 0x40000000", ".skip 0x40000000", ".zero 0x40000000",
    ".fill 0x40000000, 1, 0", ".fill 0x100000, 8, 0", ".p2align 40", ".balign 0x40000000", ".balignl 0x40000000",
    ".space 1<<40", ".space N\nN = 0x40000000", ".rept 1000\n.space 0x10000\n.endr",
    "\n".join([".space 0xff000"] * 40),                    # each one small, together 40 MiB
    ".rept 100000\n.rept 100000\nnop\n.endr\n.endr",
    ".section .bss\n.space 0x40000000",
])
def test_size_directives_by_any_name_are_bounded(src, monkeypatch):
    def never(argv):                     # refused before GNU as runs: it would write the bytes first
        raise AssertionError(f"GNU as ran on {src!r}")
    monkeypatch.setattr(asm, "_run", never)
    with pytest.raises(AsmError, match=r"^line \d+: "):
        assemble(src, backend="gnu-as")


@needs_as
def test_harmless_programs_still_assemble():
    src = textwrap.dedent("""\
        .text
        .globl f
        .type f, @function
        f:  push %rbp          /* C comments are fine */
            mov $'a, %eax      # a character constant
        1:  dec %eax; jnz 1b
            .byte 1, 2; .word 3; .long 4; .quad 5
            .ascii "a;#\\"b"
            .rept 3
            nop
            .endr
            .p2align 3
            .space 4, 0x90
            .fill 2, 1, 0xcc
            x = 5
            .L1 = 6
            ret
            .size f, .-f
        """)
    a = assemble(src, backend="gnu-as")
    assert a.code.startswith(bytes.fromhex("55b861000000ffc875fc"))
    assert b'a;#"b' in a.code


def test_huge_number_is_one_line_about_the_line():
    for backend in ["keystone"] + (["gnu-as"] if HAVE_AS else []):
        with pytest.raises(AsmError, match=r"^line 2: number '9{20}\.\.\.' is too long"):
            assemble("nop\nmov $" + "9" * 5000 + ", %eax", backend=backend)


# ------------------------------------------------------------------ helpers.unwind.assemble
@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(toolchain, "CACHE_DIR", tmp_path / "cache")
    return tmp_path / "cache"


@needs_as
def test_unwind_assemble_is_guarded_and_leaves_nothing(private_cache, canary):
    from helpers import unwind

    for src in [".space 0x1000000000", ".ds.b 0x40000000", f'.incbin "{canary[0]}"', "    bogus %rax\n"]:
        with pytest.raises(unwind.UnwindError, match=r"^as: ") as e:
            unwind.assemble(src)
        assert "\n" not in str(e.value)
    builds = private_cache / "builds"
    assert not builds.exists() or os.listdir(builds) == []     # no partial object, no stray folder
    obj = unwind.assemble(unwind.CFI_DEMO_S)
    assert obj.read_bytes()[:4] == b"\x7fELF" and obj.is_relative_to(private_cache)


_CONCURRENT = """
import sys
from pathlib import Path
from helpers import toolchain, unwind
toolchain.CACHE_DIR = Path(sys.argv[1])
ok = 0
for i in range(int(sys.argv[2])):
    src = unwind.CFI_DEMO_S + f"\\n# build {i}\\n"
    data = unwind.assemble(src).read_bytes()
    assert data[:4] == b"\\x7fELF", "a bad file was served"
    from elftools.elf.elffile import ELFFile
    import io
    ELFFile(io.BytesIO(data)).get_section_by_name(".eh_frame").data()
    ok += 1
print(ok)
"""


@needs_as
def test_concurrent_builds_of_the_same_new_sources_never_fail(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(tmp_path / "cache"), "25"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
             for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-500:] for o in outs]
    assert [o[0].strip() for o in outs] == ["25"] * 4
    left = [n for n in os.listdir(tmp_path / "cache" / "builds") if n.startswith(".")]
    assert left == []


# ------------------------------------------------------------------ compile helpers
GO_MAIN = "package main\n\nfunc main() {}\n"


@pytest.mark.parametrize("kwargs", [
    dict(source={"ABS/x.go": GO_MAIN}), dict(source={"../x.go": GO_MAIN}), dict(source={"a/../../x.go": GO_MAIN}),
    dict(source={"": GO_MAIN}), dict(source={"-x.go": GO_MAIN}),
    dict(source=GO_MAIN, flags=["-toolexec=/bin/true"]), dict(source=GO_MAIN, flags=["-toolexec", "/bin/true"]),
    dict(source=GO_MAIN, flags=["-exec=/bin/true"]), dict(source=GO_MAIN, flags=["-overlay=/tmp/o.json"]),
    dict(source=GO_MAIN, flags=["-o", "/tmp/out"]), dict(source=GO_MAIN, flags=["-modfile=/tmp/go.mod"]),
    dict(source=GO_MAIN, flags="-a"), dict(source=GO_MAIN, flags=None),
    dict(source=GO_MAIN, ldflags="-extld=/bin/sh"), dict(source=GO_MAIN, ldflags="-linkmode=external -extldflags=-B/x"),
    dict(source=GO_MAIN, gcflags="-cpuprofile=/tmp/x"), dict(source=GO_MAIN, gcflags="-json=0,file:///tmp/x"),
    dict(source=GO_MAIN, env={"CC": "/bin/evil"}), dict(source=GO_MAIN, env={"GOFLAGS": "-toolexec=/x"}),
    dict(source=GO_MAIN, env={"CGO_LDFLAGS": "-fplugin=/x"}), dict(source=GO_MAIN, goarch="amd64 -x"),
    dict(source={"main.go": GO_MAIN, "go.mod": "module x\n\nreplace a => /etc\n"}),
    dict(source=None), dict(source={"main.go": None}),
])
def test_go_build_refuses_inputs_that_escape_the_build(kwargs, tmp_path):
    if isinstance(kwargs["source"], dict) and "ABS/x.go" in kwargs["source"]:
        kwargs = {"source": {str(tmp_path / "x.go"): GO_MAIN}}       # an absolute name: written outside
    with pytest.raises(ValueError) as e:
        toolchain.go_build(**kwargs)
    assert "\n" not in str(e.value) and not (tmp_path / "x.go").exists()


@pytest.mark.parametrize("kwargs", [
    dict(flags=["-fplugin=/x.so"]), dict(flags=["-B/tmp"]), dict(flags=["-B", "/tmp"]), dict(flags=["-wrapper", "/bin/sh"]),
    dict(flags=["@/etc/passwd"]), dict(flags=["-specs=/x"]), dict(flags=["-fuse-ld=/bin/x"]),
    dict(flags=["-Wl,--plugin,/x.so"]), dict(flags=["-Wl,-plugin=/x.so"]), dict(flags=["-Wl,-T,/etc/passwd"]),
    dict(flags=["-Wl,-rpath,/etc"]), dict(flags=["-Wa,-I/etc"]), dict(flags=["-Xlinker", "--plugin"]),
    dict(flags=["-include", "/etc/passwd"]), dict(flags=["-I/etc"]), dict(flags=["-MF/tmp/x"]),
    dict(flags=["/etc/passwd"]), dict(flags=["-fdump-tree-all=/tmp/x"]), dict(flags="-O2"),
    dict(source={"/tmp/x.c": "int x;"}), dict(source={"../x.c": "int x;"}), dict(source={"-fplugin=a.c": "int x;"}),
    dict(source='#include "/etc/passwd"\n'), dict(source='#include "../../etc/passwd"\n'),
    dict(source='asm(".incbin \\"/etc/passwd\\"");'), dict(source={"a.s": '.include "/etc/passwd"'}),
    dict(target="x86_64-linux-musl -fplugin=x"), dict(compiler="sh"), dict(output="../x"),
])
def test_cc_refuses_inputs_that_escape_the_build(kwargs):
    kwargs.setdefault("source", "int x;")
    with pytest.raises(ValueError) as e:
        toolchain.cc(kwargs.pop("source"), **kwargs)
    assert "\n" not in str(e.value) and "root:" not in str(e.value)


def test_the_books_own_flags_pass_the_allowlist(tmp_path):
    lib = toolchain.CACHE_DIR / "builds"
    toolchain._check_cc_flags(["-O2", "-fPIC", "-fno-pic", "-m32", "-static", "-Wl,-e,entry", "-Wl,--build-id=none",
                               "-fpatchable-function-entry=5", "-std=c11", "-Wall", "-fuse-linker-plugin", "-v",
                               "-Wl,--no-as-needed", "-rdynamic", "-fno-omit-frame-pointer", "-pthread", "-s"])
    if lib.exists():
        toolchain._check_cc_flags([f"-Wl,-rpath,{lib}"])
    toolchain._check_go_inputs([], "-m", "-s -w", None, "amd64", "c-archive")


# ------------------------------------------------------------------ the build cache
def _fake_build(counter):
    def build(workdir):
        counter.append(1)
        (workdir / "out").write_bytes(b"\x7fELF" + b"x" * 100)
        return "out", "compiler said hi", ["fake"], "fake 1"
    return build


def test_cache_entry_is_validated_before_use(private_cache):
    calls = []
    b = toolchain._cached_build("fake", "k1", _fake_build(calls))
    assert not b.cached and len(calls) == 1
    assert toolchain._cached_build("fake", "k1", _fake_build(calls)).cached and len(calls) == 1
    b.path.unlink()                                              # a deleted output
    again = toolchain._cached_build("fake", "k1", _fake_build(calls))
    assert not again.cached and again.path.read_bytes()[:4] == b"\x7fELF" and len(calls) == 2
    meta = b.path.parent / "build.json"
    meta.write_text(meta.read_text()[:10])                     # a truncated build.json
    assert not toolchain._cached_build("fake", "k1", _fake_build(calls)).cached and len(calls) == 3
    assert toolchain._cached_build("fake", "k1", _fake_build(calls)).cached
    b.path.write_bytes(b"\x7fEL")                                # a truncated output
    assert not toolchain._cached_build("fake", "k1", _fake_build(calls)).cached and len(calls) == 4
    assert json.loads(meta.read_text())["output"] == "compiler said hi"


def test_stray_folder_of_a_killed_build_is_removed(private_cache):
    builds = private_cache / "builds"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stray = builds / f".tmp-go-{dead.pid}-abc123"
    stray.mkdir(parents=True)
    (stray / "half.o").write_bytes(b"x" * 10)
    mine = builds / f".tmp-go-{os.getpid()}-live"                # a build still running: kept
    mine.mkdir()
    toolchain._cached_build("fake", "k2", _fake_build([]))
    assert not stray.exists() and mine.exists()


def test_failed_build_leaves_no_folder(private_cache):
    def boom(workdir):
        (workdir / "partial").write_bytes(b"x")
        raise toolchain.ToolchainError("compiler failed")
    with pytest.raises(toolchain.ToolchainError):
        toolchain._cached_build("fake", "k3", boom)
    assert os.listdir(private_cache / "builds") == []


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    prog = ("import subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
            "time.sleep(60)\n")
    with pytest.raises(toolchain.ToolchainError, match="timed out"):
        toolchain.run([sys.executable, "-c", prog], timeout=3)
    pid = int(pidfile.read_text())
    for _ in range(50):                 # SIGKILL is delivered at once; reaping by init may take a moment
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the timed-out command's child {pid} is still running")
