"""helpers.toolchain: real compilers, offline, with timeouts, cached by content."""
import os
import time

import pytest

from helpers import toolchain as tc

HELLO_GO = 'package main\n\nimport "os"\n\nfunc main() { os.Stdout.WriteString("hello from go\\n") }\n'


def test_run_refuses_a_shell_string():
    with pytest.raises(TypeError):
        tc.run("echo hi")


def test_run_times_out_with_one_line():
    with pytest.raises(tc.ToolchainError) as e:
        tc.run(["sleep", "5"], timeout=0.2)
    assert str(e.value) == "sleep timed out after 0.2 s"


def test_missing_tool_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(tc, "tools", lambda: {"zig": None})
    with pytest.raises(tc.ToolMissing) as e:
        tc.require("zig")
    assert "pip install ziglang==0.17.1" in str(e.value)
    assert "\n" not in str(e.value)


def test_pinned_go_is_the_one_found():
    assert tc.require("go").version == "go" + tc.GO_VERSION
    assert (tc.goroot() / "src" / "runtime" / "stack.go").exists()


def test_go_runs_offline_with_local_toolchain():
    env = tc.go_env()
    assert env["GOTOOLCHAIN"] == "local" and env["GOPROXY"] == "off"
    assert env["GOCACHE"].startswith(str(tc.CACHE_DIR))
    p = tc.go("env", "GOTOOLCHAIN", "GOPROXY", "GOVERSION")
    assert p.stdout.split() == ["local", "off", "go" + tc.GO_VERSION]


def test_go_build_runs_and_is_cached():
    first = tc.go_build(HELLO_GO)
    assert tc.run([first.path]).stdout == "hello from go\n"
    t0 = time.perf_counter()
    again = tc.go_build(HELLO_GO)
    assert again.cached and again.path == first.path
    assert time.perf_counter() - t0 < 0.5


def test_go_build_error_is_one_line():
    with pytest.raises(tc.ToolchainError) as e:
        tc.go_build("package main\nfunc main() { undefined_name() }\n")
    assert "undefined: undefined_name" in str(e.value) and "\n" not in str(e.value)


def test_go_build_reports_compiler_decisions():
    src = "package main\n\n//go:noinline\nfunc f() *int { x := 1; return &x }\n\nfunc main() { println(*f()) }\n"
    b = tc.go_build(src, gcflags="-m")
    assert "moved to heap: x" in b.output


def test_zig_cc_builds_i386_and_static_x86_64():
    from elftools.elf.elffile import ELFFile

    obj = tc.cc("int add(int a, int b) { return a + b; }", target="x86-freestanding-none", flags=["-O2"])
    with open(obj.path, "rb") as f:
        assert ELFFile(f).get_machine_arch() == "x86"
    exe = tc.cc('#include <stdio.h>\nint main(void) { puts("hi"); return 3; }', target="x86_64-linux-musl", output="exe")
    p = tc.run([exe.path])
    assert (p.stdout, p.returncode) == ("hi\n", 3)
    assert exe.command[0] == "zig cc"


def test_cc_error_is_one_line():
    with pytest.raises(tc.ToolchainError) as e:
        tc.cc("int f( { }", target="x86_64-linux-musl")
    assert "\n" not in str(e.value) and "error" in str(e.value)


@pytest.mark.skipif(not tc.have("gcc"), reason="system gcc not installed")
def test_gcc_m32_object_needs_no_multilib():
    obj = tc.cc("int add(int a, int b) { return a + b; }", compiler="gcc", flags=["-m32", "-O2"])
    assert obj.path.stat().st_size > 0


def test_report_has_a_line_per_tool():
    lines = tc.report()
    assert lines[0].startswith("python: ")
    assert {l.split(":")[0] for l in lines[1:]} == set(tc.HINTS)


def test_versions_name_the_pinned_tools_or_say_in_one_line_which_is_missing():
    assert tc.versions("go", "zig") == [f"go: go{tc.GO_VERSION}", f"zig: zig {tc.ZIG_VERSION}"]
    code = "from helpers import toolchain\ntry:\n    toolchain.versions('go')\nexcept toolchain.ToolMissing as e:\n    print(e)"
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "BOOK_HIDE_TOOLS": "go,zig"})
    assert out.stdout.strip() == f"go not found: {tc.HINTS['go']}"
