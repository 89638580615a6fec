"""The stack-growth model on programs the book did not write, checked against the real runtime.

* binary reading finds runtime.g wherever the linker put it (issue: a program importing fmt, runtime and
  sync/atomic had runtime.g in its sixth `runtime` compile unit);
* a reader's function runs in the harness, natively and emulated, with the same moves;
* code the model cannot run, bad source and compile errors each give one line;
* a seeded sample of generated programs (helpers.gostackgen): moves, sizes and results equal the native run's.
  The long campaign is `make fuzz-gostack`.
"""
import re

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import goelf, gostack, gostackgen, toolchain
from helpers.gostack import FunctionProgram, GoCannotRun, GoProgram, GoStackError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ISSUE_PROGRAM = '''package main

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

var Result int
var done atomic.Int32

//go:noinline
func rec(n int) int {
	var local [30]int64
	local[n%30] = int64(n)
	if n == 0 {
		return 0
	}
	return rec(n-1) + int(local[n%30])
}

func worker() {
	Result = rec(500)
	done.Store(1)
}

func main() {
	go worker()
	for done.Load() == 0 {
		runtime.Gosched()
	}
	fmt.Println(Result)
}
'''

LINEAR = '''
//go:noinline
func f(n int) int {
	mark(n)
	var local [30]int64
	local[n%30] = int64(n)
	if n == 0 {
		return 0
	}
	return f(n-1) + int(local[n%30])
}
'''


def _cu_holding(path, name):
    with open(path, "rb") as fh:
        for i, cu in enumerate(ELFFile(fh).get_dwarf_info().iter_CUs()):
            for die in cu.get_top_DIE().iter_children():
                a = die.attributes.get("DW_AT_name")
                if die.tag == "DW_TAG_structure_type" and a and a.value == name.encode():
                    return i, cu.get_top_DIE().attributes["DW_AT_name"].value
    return None


def test_runtime_g_is_found_in_whichever_compile_unit_holds_it():
    b = toolchain.go_build(ISSUE_PROGRAM)
    with open(b.path, "rb") as fh:
        cus = [cu.get_top_DIE().attributes["DW_AT_name"].value for cu in ELFFile(fh).get_dwarf_info().iter_CUs()]
    where, unit = _cu_holding(b.path, "runtime.g")
    # the case the old reader missed: several units named runtime, and runtime.g is not in the first
    assert unit == b"runtime" and cus.count(b"runtime") > 1 and where != cus.index(b"runtime")
    prog = GoProgram(b.path)
    assert prog.g_offsets["stackguard0"] == 0x10 and prog.g_size > 0x100
    rt = gostack.Runtime(prog)
    rt.go("main.worker")
    rt.run()
    assert rt.read_global("main.Result") == 500 * 501 // 2 and len(rt.grows()) >= 5


def test_a_struct_in_no_unit_is_one_clear_line():
    b = toolchain.go_build(ISSUE_PROGRAM)
    gb = goelf.GoBinary(b.path)
    with pytest.raises(goelf.GoBinaryError, match=r"no DWARF type runtime.nosuch"):
        gb.struct("runtime.nosuch")


@pytest.mark.parametrize("shape", gostack.MAIN_SHAPES)
def test_a_readers_function_moves_like_the_native_run(shape):
    prog = FunctionProgram.build(LINEAR, "f", shape)
    native = prog.native(400)
    emu = prog.marks(prog.emulate(400), 400)
    assert native.result == emu.result == 400 * 401 // 2
    assert len(native.moves()) >= 5 and native.moves() == emu.moves()
    assert native.final_size == emu.final_size == native.moves()[-1][1]


def test_the_harness_reads_g_through_tls_in_abi0_code():
    # bounds_amd64.s is ABI0: it cannot rely on R14, so the assembler loads g from %fs:-8
    prog = FunctionProgram.build(LINEAR, "f")
    listing = [t for _a, t in prog.head("main.stackBounds")]
    assert listing[0] == "movq %fs:0xfffffffffffffff8, %rax"


@pytest.mark.parametrize("body,match", [
    ("var sink []int\n\nfunc f(n int) int {\n\tsink = make([]int, n+1)\n\treturn n\n}\n",
     r"^main\.f reached runtime\.mallocgc \(through runtime\.makeslice\), which allocates memory"),
    ("func f(n int) int {\n\tprintln(n)\n\treturn n\n}\n", r"^main\.f reached runtime\.printlock"),
    ('import "os"\n\nfunc f(n int) int {\n\tos.Getpid()\n\treturn n\n}\n', r"^main\.f reached .*SYSCALL"),
    ("var ch chan int\n\nfunc f(n int) int {\n\tch <- n\n\treturn n\n}\n", r"^main\.f reached runtime\.gopark"),
    ('import "runtime"\n\nfunc f(n int) int {\n\truntime.Gosched()\n\treturn n\n}\n', r"^main\.f reached runtime\.mcall"),
    ("func g() {}\n\nfunc f(n int) int {\n\tgo g()\n\treturn n\n}\n", r"^main\.f reached runtime\.systemstack"),
    ("var a [3]int\n\nfunc f(n int) int {\n\treturn a[n]\n}\n", r"^main\.f reached runtime\.panicBounds"),
])
def test_code_the_model_cannot_run_names_the_function_it_reached(body, match):
    prog = FunctionProgram.build(body, "f")
    with pytest.raises(GoCannotRun, match=match) as e:
        prog.emulate(5, max_insns=2_000_000, timeout=10)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("source,func,match", [
    ("func f(n int) int {\n\treturn x\n}\n", "f", r"^go build failed: user\.go:\d+:\d+: undefined: x"),
    ("func f(n int) int {\n\treturn n +\n", "f", r"^go build failed: user\.go:\d+:\d+: syntax error"),
    ("func f(n string) int {\n\treturn 0\n}\n", "f", r"must take one integer"),
    ("func f(n int) int { return n }\n", "g", r"no top-level func g"),
    ("func main() {}\nfunc f(n int) int { return n }\n", "f", r"func main is the book's harness"),
    ("package other\nfunc f(n int) int { return n }\n", "f", r"package main"),
    ('import "C"\nfunc f(n int) int { return n }\n', "f", r"cgo"),
    ("func f(n int) int { return n }\n", "f(", r"Go identifier"),
    (None, "f", r"must be a string"),
    ("x" * 30_000, "f", r"at most"),
])
def test_bad_source_is_one_line(source, func, match):
    with pytest.raises(GoStackError, match=match) as e:
        FunctionProgram.build(source, func)
    assert "\n" not in str(e.value)


def test_an_endless_loop_stops_at_the_budget():
    prog = FunctionProgram.build("func f(n int) int {\n\tfor {\n\t\tn++\n\t}\n}\n", "f")
    with pytest.raises(GoStackError, match="instruction budget"):
        prog.emulate(1, max_insns=100_000)


@pytest.mark.parametrize("depth", [-1, gostack.MARK_DEPTH + 1, 2.5, True, "3"])
def test_bad_depth_is_one_line(depth):
    prog = FunctionProgram.build(LINEAR, "f")
    with pytest.raises(GoStackError, match="depth must be"):
        prog.emulate(depth)


def test_functions_in_lists_what_the_harness_can_call():
    src = "func a(n int) int { return n }\nfunc b(x, y int) int { return x }\nfunc c(n int64) uint { return 0 }\n"
    assert gostack.functions_in(src) == ["a", "c"]


# ----------------------------------------------------------------------------- property: generated programs

SAMPLE_SEEDS = (0, 1, 2, 11)   # together: all four recursion shapes, all three frame forms, all main shapes


def test_the_sample_covers_every_shape_form_and_main():
    gps = [gostackgen.random_program(s) for s in SAMPLE_SEEDS]
    assert {e.shape for g in gps for e in g.entries} == set(gostackgen.SHAPES)
    assert {f for g in gps for e in g.entries for f in e.forms} == set(gostackgen.FORMS)
    assert {g.main_shape for g in gps} == set(gostack.MAIN_SHAPES)


@pytest.mark.parametrize("seed", SAMPLE_SEEDS)
def test_generated_programs_move_like_the_native_runtime(seed):
    gp = gostackgen.random_program(seed)
    prog = gostackgen.build(gp)
    for e, name in zip(gp.entries, (gostackgen.ENTRY_NAME[e.shape].format(i=i) for i, e in enumerate(gp.entries))):
        if e.shape != "pointer":  # the compiled prologue has the form the generator aimed at
            assert prog.prologue("main." + name).form == e.forms[0]
    assert gostackgen.check_program(gp, prog) == []


def test_the_property_fails_when_the_model_is_wrong():
    # closures keep pointers into the stack in stack objects; a model that skips them reads a freed stack
    gp = gostackgen.random_program(0)
    built = gostackgen.build(gp)
    prog = FunctionProgram(built.path, gp.source, "run", gp.main_shape)  # a fresh copy, not the cached one
    assert gp.entries[0].shape == "closure"
    prog.binary.stack_objects = lambda f: []
    with pytest.raises(GoStackError, match="unmapped"):
        gostackgen.check_program(gp, prog)


# ----------------------------------------------------------------------------- shrinking, uretprobes, outside pointers


def test_gc_shrinks_a_parked_stack_natively_as_the_model_decides():
    for park, stops_early in ((5, False), (200, True)):
        rows = gostack.shrink_native(300, park)
        decisions = gostack.shrink_decisions(rows)
        assert rows[0][0] == 256 * 1024 and len(decisions) == 6
        assert all((model or size) == after for size, model, after in decisions)
        assert any(model is None for _s, model, _a in decisions) == stops_early


def test_shrink_rule_follows_stack_go():
    k = goelf.runtime_constants()
    assert gostack.shrink_target(8192, 100) == 4096                          # 100 + 800 < 2048
    assert gostack.shrink_target(8192, 2048 - k["stackNosplit"]) is None     # used + stackNosplit reaches 1/4
    assert gostack.shrink_target(k["fixedStack"], 0) is None                 # never below fixedStack


@pytest.mark.parametrize("depth,at,survives", [(300, 20, True), (300, 100, False), (60, 40, False)])
def test_a_uretprobe_trampoline_breaks_the_next_stack_copy_natively_and_emulated(depth, at, survives):
    native, emu = gostack.uretprobe_native(depth, at), gostack.uretprobe_emulated(depth, at)
    assert native.ok == emu.ok == survives and (emu.moves_after == 0) == survives
    if survives:
        assert native.result == emu.result == depth * (depth + 1) // 2
    else:
        assert "unexpected return pc for main.probed" in native.message and "unknown caller pc" in native.message
        assert emu.message == ("runtime: unexpected return pc for main.probed called from 0x7fffffffe000; "
                               "fatal error: unknown caller pc")


def test_uretprobe_arguments_are_validated():
    for bad in ((10, 10), (-1, 0), (5, "x"), (10**6, 3)):
        with pytest.raises(GoStackError):
            gostack.uretprobe_emulated(*bad)


def test_an_address_held_outside_the_goroutine_is_left_in_the_freed_stack():
    r = gostack.pointer_held_outside(200)
    assert r.moves >= 3 and r.held != r.now and r.held_in_old_stack and not r.old_stack_mapped
    assert "not mapped" in r.read_through_held and r.value_now == 0x77 and r.result == 0x77 + 200 * 201 // 2
    assert r.new_stack[0] <= r.now < r.new_stack[1] and not r.new_stack[0] <= r.held < r.new_stack[1]
    still = gostack.pointer_held_outside(0)  # no move: the held address is still the entry
    assert still.moves == 0 and still.held == still.now and still.read_through_held == "0x77"
    held, now = gostack.pointer_held_outside_native(200)  # the real runtime moves it too
    held0, now0 = gostack.pointer_held_outside_native(0)
    assert held != now and held0 == now0
    assert gostack.escape_of_published_pointer().endswith("moved to heap: e")


def test_go_code_reaches_g_through_r14_and_assembly_through_tls():
    loads = gostack.g_loads(GoProgram.example())
    assert loads["r14"] and not any(asm for _n, asm, _h in loads["r14"])
    assert loads["tls"] and all(asm and h[0] == "movq %fs:0xfffffffffffffff8, %r14" for _n, asm, h in loads["tls"])
    assert "runtime.call16" in {n for n, _a, _h in loads["tls"]}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.text(max_size=12))
def test_reader_source_checks_answer_any_text_with_a_result_or_one_line(source, func):
    try:
        out = gostack._reader_source(source, func)
    except GoStackError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert out.lstrip().startswith("package main") or "package main" in out
    assert all(isinstance(n, str) for n in gostack.functions_in(source))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["func ", "f", "(", "n ", "int", ")", " int", "{", "}", "\n", ",", "x "]), max_size=30))
def test_functions_in_accepts_only_one_integer_in_one_integer_out(parts):
    src = "".join(parts)
    for name in gostack.functions_in(src):
        assert re.search(rf"^func\s+{name}\s*\(", src, re.M)


def test_dwarf_layouts_come_from_the_cache_only_when_it_holds_this_file(tmp_path, monkeypatch):
    """goelf keeps each binary's struct layouts on disk by content: a hit equals a fresh DWARF read, a damaged
    entry is read again (not used), and another binary is never served an entry of this one."""
    from helpers import filecache
    monkeypatch.setattr(filecache, "ROOT", tmp_path)
    path = str(toolchain.go_build(ISSUE_PROGRAM).path)
    fresh = goelf._read_dwarf_structs(path, goelf.WANTED_STRUCTS)
    goelf._dwarf_structs_of.cache_clear()
    assert goelf._dwarf_structs(path) == fresh
    [entry] = (tmp_path / "dwarf-structs").glob("*.json")
    reads = []
    real = goelf._read_dwarf_structs
    monkeypatch.setattr(goelf, "_read_dwarf_structs", lambda p, w: reads.append(p) or real(p, w))
    goelf._dwarf_structs_of.cache_clear()
    assert goelf._dwarf_structs(path) == fresh and reads == []           # served from the entry
    for damage in ('{"runtime.g": [456, [["stack.lo", 9999]]]}', '{"runtime.gobuf": [1, []]}', "not json", "[]"):
        entry.write_text(damage)
        goelf._dwarf_structs_of.cache_clear()
        assert goelf._dwarf_structs(path) == fresh and reads[-1] == path   # read again from DWARF
    other = str(toolchain.go_build(ISSUE_PROGRAM.replace("500", "501")).path)
    goelf._dwarf_structs_of.cache_clear()
    goelf._dwarf_structs(other)
    assert reads[-1] == other and len(list((tmp_path / "dwarf-structs").glob("*.json"))) == 2
