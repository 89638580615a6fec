"""Tests for helpers.gointr: real Go machine code meeting interrupt context in the emulator.

Each test says what it proves; the Go program is built once (cached by helpers.toolchain).
"""
import pytest

from helpers import gointr as gi
from helpers import kcodegen


def test_barrier_offsets_agree_with_dwarf():
    """The g.m offset read from gcWriteBarrier's code is the one DWARF gives (two independent readings)."""
    off = gi.barrier_offsets()
    assert off["g_m"] == gi.program().g_offsets["m"]
    assert off["wbBuf_end"] == off["wbBuf_next"] + 8


def test_write_barrier_needs_a_p():
    no_p, with_p = gi.write_barrier_run(False), gi.write_barrier_run(True)
    assert no_p.status == "fault" and not no_p.stored
    assert no_p.detail.startswith(f"unmapped read at {gi.barrier_offsets()['m_p']:#x}")
    assert with_p.status == "returned" and with_p.stored and gi.slot_names(with_p.buffer) == ["&slots[2]"]


def test_without_the_barrier_flag_no_barrier_runs():
    """The control: with runtime.writeBarrier clear, step() stores without entering gcWriteBarrier2."""
    bench = gi.Bench(with_p=False, barrier=False)
    bench.watch("runtime.gcWriteBarrier2")
    bench.start("main.step", 1)
    out = bench.run()
    assert out.status == "stopped" and "goexit" in out.reason and bench.events == []


def test_stub_interrupt_is_transparent():
    r = gi.interrupt_run("stub", "prologue")
    assert r.status == "returned" and r.result == 1 and r.woken and r.interrupted_stored
    assert r.handler_stored and r.events[-1] == "woken goroutine ran main.onIRQ(3): returned"
    assert "IST1" in r.delivery


def test_stub_during_the_barrier_loses_nothing():
    """The same interrupt inside gcWriteBarrier, taken by the stub: the deferred handler's pointer is kept."""
    r = gi.interrupt_run("stub", "barrier")
    assert gi.slot_names(r.buffer) == gi.slot_names(gi.sequential_barrier_run()) == ["&slots[2]", "&slots[4]"]


@pytest.mark.parametrize("below", [False, True])
def test_go_handler_depends_on_where_the_interrupt_stack_is(below):
    r = gi.interrupt_run("go", "prologue", ist_below=below)
    if below:
        assert r.status == "stopped" and any("outside the goroutine's stack" in e for e in r.events)
    else:
        assert r.status == "returned" and r.handler_stored


def test_go_handler_trusts_r14():
    r = gi.interrupt_run("go", "user")
    assert r.status == "fault" and "0x1244" in r.detail and "main.onIRQ" in r.detail
    assert gi.interrupt_run("stub", "user").status == "returned"


def test_reentrant_barrier_loses_the_handlers_pointer():
    seq = gi.slot_names(gi.sequential_barrier_run())
    hit = gi.interrupt_run("go", "barrier")
    assert seq == ["&slots[2]", "&slots[4]"]
    assert hit.handler_stored and hit.interrupted_stored and gi.slot_names(hit.buffer) == ["&slots[2]"]


def test_stack_budget_from_sources():
    tree = kcodegen.kernel_tree()
    facts = kcodegen.kernel_stack_facts(tree) if tree else None
    if facts is None:
        import json
        facts = json.loads(kcodegen.RECORDING.read_text())["facts"]["stacks"]
    sb = gi.stack_budget(facts)
    assert sb.stack_guard == sb.stack_small + sb.stack_nosplit and sb.hw_frame == 40
    assert sb.fits_worst == 0 and sb.fits_best == sb.stack_guard // sb.pt_regs and sb.gsignal == 32768
    with pytest.raises(gi.GoIntrError):
        gi.stack_budget({})


def test_pragma_is_refused_outside_runtime():
    ok, err = gi.compile_pragma("nowritebarrierrec")
    assert not ok and "only allowed in runtime" in err
    assert gi.compile_pragma("nosplit") == (True, "")
    assert "sighandler" in gi.pragma_in_runtime()


def test_out_of_memory_is_fatal():
    oom = gi.oom_run(1024)
    assert oom.exit_code == 2 and oom.fatal == "fatal error: out of memory" and not oom.recovered


@pytest.mark.parametrize("call", [
    lambda: gi.interrupt_run("c", "prologue"), lambda: gi.interrupt_run("go", "nowhere"),
    lambda: gi.compile_pragma("no such"),
    lambda: gi.oom_run(10), lambda: gi.oom_run(True)])
def test_bad_input_is_one_clear_error(call):
    with pytest.raises(gi.GoIntrError) as e:
        call()
    assert "\n" not in str(e.value)


def test_newstack_throws_below_the_stack():
    lines = gi.newstack_check()
    assert "sp < gp.stack.lo" in lines[0] and "split stack overflow" in lines[1]
    below = gi.interrupt_run("go", "prologue", ist_below=True)
    assert below.morestack_sp is not None and below.morestack_sp < below.g_stack[0]
