"""Tests for helpers.gostack and helpers.goelf: real Go code growing its stack in the emulator.

Each test says what it proves. The program is built once (cached by helpers.toolchain).
"""
import pytest
import unicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import goelf
from helpers.gostack import (GoProgram, GoStackError, Runtime, emulated_moves, expected_chain, expected_sum, run_chain,
                             hot_split_depth, predict_growth, run_hot_split, run_recursion, stackguard0_writers)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DEPTHS = {"small": 3000, "medium": 60, "large": 6}


@pytest.fixture(scope="module")
def prog():
    return GoProgram.example()


@pytest.fixture(scope="module")
def runs(prog):
    return {w: run_recursion(w, d, program=prog) for w, d in DEPTHS.items()}


# ----------------------------------------------------------------------------- binary tables


def test_stack_guard_from_source_equals_the_compiled_runtime(prog):
    # two independent readings: src/ constants vs the immediate runtime.copystack adds to new.lo
    k = goelf.runtime_constants()
    assert k["stackGuard"] == k["stackNosplit"] + k["stackSystem"] + k["StackSmall"]
    assert prog.guard_from_copystack() == k["stackGuard"] == 928
    assert k["stackPreempt"] == 0xFFFFFFFFFFFFFADE


def test_g_offsets_come_from_dwarf_and_match_the_prologue(prog):
    assert prog.g_offsets["stackguard0"] == 0x10 and prog.g_offsets["stack.hi"] == 8
    # the small-frame prologue compares SP with the same offset from R14
    first = prog.prologue("main.small").listing[0][1]
    assert first == f"cmpq {prog.g_offsets['stackguard0']:#x}(%r14), %rsp"


@pytest.mark.parametrize("func,form", [("main.small", "small"), ("main.medium", "medium"), ("main.large", "huge")])
def test_three_prologue_forms_follow_frame_size(prog, func, form):
    k = goelf.runtime_constants()
    p = prog.prologue(func)
    assert p.form == form
    if form == "small":
        assert p.frame <= k["StackSmall"]
    elif form == "medium":
        assert k["StackSmall"] < p.frame <= k["StackBig"]
        assert p.below == p.frame - k["StackSmall"]
    else:
        assert p.frame > k["StackBig"]
        assert p.below == p.frame - k["StackSmall"]


def test_pclntab_finds_functions_and_pcsp(prog):
    b = prog.binary
    f = b.func("main.small")
    assert b.findfunc(f.entry + 3) == f and b.findfunc(f.end) != f
    assert b.pcsp(f, f.entry) == 0  # nothing pushed at entry
    assert b.max_sp_delta(f) == prog.frame_size("main.small") > 0
    with pytest.raises(goelf.GoBinaryError, match="no function"):
        b.func("main.nope")


def _encode(pairs):
    """Encoder for pc-value tables (the inverse of runtime/symtab.go: step), used to test the decoder."""
    def varint(v):
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return out
    data, prev = bytearray(), -1
    for pcd, val in pairs:
        d = val - prev
        data += varint(((d << 1) ^ (d >> 63)) & 0xFFFFFFFF)  # zig-zag, as cmd/internal/obj/pcln.go writes it
        data += varint(pcd)
        prev = val
    return bytes(data + b"\0")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(-100_000, 100_000).filter(bool)), min_size=1, max_size=20))
def test_pcvalue_decoder_roundtrip(steps):
    # the encoder only writes a step when the value changes, so every value delta after the first is non-zero
    pairs, val = [], -1
    for pcd, d in steps:
        val += d
        pairs.append((pcd, val))
    runs = list(goelf.pcvalue_steps(_encode(pairs), 0, 0x1000))
    pc = 0x1000
    assert len(runs) == len(pairs)
    for (start, end, val), (pcd, want) in zip(runs, pairs):
        assert (start, end, val) == (pc, pc + pcd, want)
        pc += pcd


def test_not_a_go_binary_is_one_line(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"not an elf")
    with pytest.raises(GoStackError) as e:
        GoProgram.load(f)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- growth


@pytest.mark.parametrize("which", list(DEPTHS))
def test_growth_depths_match_a_native_run(prog, runs, which):
    depth = DEPTHS[which]
    native = prog.native(which, depth)
    emulated = emulated_moves(runs[which], depth)
    assert native.result == emulated.result == expected_sum(which, depth)
    assert native.frame_bytes == emulated.frame_bytes == prog.frame_size(f"main.{which}") + 8
    assert native.moved_at() and emulated.moved_at() == native.moved_at()


@pytest.mark.parametrize("which", list(DEPTHS))
def test_results_correct_for_three_frame_forms(prog, which):
    rt = Runtime(prog)
    g = rt.go(f"main.{which}", DEPTHS[which], 0)
    rt.run()
    assert g.status == "done" and g.result == expected_sum(which, DEPTHS[which])
    assert rt.grows(), "the recursion must have outgrown 2 KiB"


@pytest.mark.parametrize("which", list(DEPTHS))
def test_stackguard0_is_new_lo_plus_guard_after_every_growth(runs, which):
    rt = runs[which]
    for e in rt.grows():
        assert e.guard_after == e.new[0] + rt.stack_guard
        assert e.g_after["stackguard0"] == e.guard_after and e.g_after["stack.lo"] == e.new[0]
        assert e.new_size >= 2 * e.old_size and e.new_size & (e.new_size - 1) == 0


def test_frames_are_adjusted_and_old_stack_is_unmapped(runs):
    rt = runs["small"]
    e = rt.grows()[-1]
    assert e.frames_adjusted > 100
    delta = e.new[1] - e.old[1]
    for a, b in zip(e.frames_before, e.frames_after):
        assert (a.func, a.pc) == (b.func, b.pc) and b.sp - a.sp == delta
    with pytest.raises(unicorn.UcError):
        rt.uc.mem_read(e.old[0], 8)


def test_predict_growth_matches_the_emulator(prog, runs):
    for which, rt in runs.items():
        p = predict_growth(prog.frame_size(f"main.{which}"), DEPTHS[which])
        grows = [e for e in rt.grows() if e.func == f"main.{which}"]
        assert p["sizes"] == [e.new_size for e in grows]


def test_stack_maps_mark_the_pointer_argument_live_across_the_call(prog):
    b = prog.binary
    f = b.func("main.chain")
    call = next(pc for pc in range(f.entry, f.end) if b.pcdata_value(f, goelf.PCDATA_STACK_MAP_INDEX, pc) >= 0)
    idx = b.pcdata_value(f, goelf.PCDATA_STACK_MAP_INDEX, call)
    assert b.stackmap(f, goelf.FUNCDATA_ARGS_POINTER_MAPS, idx)[:2] == [False, True]  # (n int, p *int64)
    assert not any(b.stackmap(b.func("main.small"), goelf.FUNCDATA_ARGS_POINTER_MAPS, 0) or [])  # ints only


@pytest.mark.parametrize("policy", ["copying", "segmented"])
def test_pointers_into_the_stack_survive_growth(prog, policy):
    rt = run_chain(1000, program=prog) if policy == "copying" else _chain_segmented(prog, 1000)
    assert rt.read_global("main.Result") == expected_chain(1000)
    if policy == "copying":
        assert rt.grows() and all(e.pointers_adjusted > 0 for e in rt.grows())


def _chain_segmented(prog, depth):
    rt = Runtime(prog, policy="segmented")
    rt.write_global("main.N", depth)
    rt.write_global("main.Which", 4)
    rt.go("main.worker")
    return rt.run()


def test_without_stack_maps_a_stale_pointer_reads_the_freed_stack(prog):
    with pytest.raises(GoStackError, match="unmapped read") as e:
        run_chain(100, stack_maps=False, program=prog)
    assert "main.chain" in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- preemption, scheduling


def test_preemption_requests_are_preempt_events_not_growth(prog, runs):
    rt = run_recursion("small", 3000, preempt_every=5000, program=prog)
    kinds = [e.kind for e in rt.events]
    assert kinds.count("preempt") >= 5
    assert [e.new_size for e in rt.grows()] == [e.new_size for e in runs["small"].grows()]
    for e in rt.events:
        if e.kind == "preempt":
            assert e.guard_before == rt.stack_preempt and e.old == e.new
    assert rt.read_global("main.Result") == expected_sum("small", 3000)


def test_goroutines_interleave_and_all_finish(prog):
    rt = Runtime(prog)
    gs = [rt.go("main.small", 400 + 100 * i, 0) for i in range(3)]
    rt.sysmon(every_insns=2000)
    rt.run()
    assert [g.result for g in gs] == [expected_sum("small", 400 + 100 * i) for i in range(3)]
    order = [e.goid for e in rt.events if e.kind == "preempt"]
    assert len(set(order[:6])) == 3, "round-robin: the first preemptions visit every goroutine"


def test_traceback_of_a_preempted_goroutine(prog):
    rt = Runtime(prog)
    g = rt.go("main.small", 50, 0)
    other = rt.go("main.small", 5, 0)
    rt.sysmon(every_insns=300)
    rt.run(until=lambda e: e.kind == "preempt" and e.goid == g.goid)
    snap = rt.snapshot(g)
    fr = snap["frames"]
    assert snap["status"] == "runnable" and len(fr) > 2
    assert fr[0].func == "main.small" and fr[-1].func == "main.small"
    assert all(a.fp == b.sp for a, b in zip(fr, fr[1:]))
    assert snap["stack.lo"] <= snap["sched.sp"] < snap["stack.hi"]
    rt.sysmon(None)
    rt.run()
    assert g.result == expected_sum("small", 50) and other.result == expected_sum("small", 5)


def test_shrinkstack_halves_a_mostly_empty_stack_and_code_still_runs(prog):
    rt = Runtime(prog)
    g = rt.go("main.small", 100, 0)
    rt.copystack(g, 64 * 1024)  # pretend it grew earlier
    e = rt.gc()
    assert len(e) == 1 and e[0].kind == "shrink" and e[0].new_size == 32 * 1024
    assert e[0].guard_after == e[0].new[0] + rt.stack_guard
    while rt.gc():
        pass
    assert rt.stack_of(g)[1] - rt.stack_of(g)[0] == goelf.runtime_constants()["fixedStack"]
    rt.run()
    assert g.result == expected_sum("small", 100)


# ----------------------------------------------------------------------------- segmented stacks


def test_segmented_stacks_give_the_same_results(prog):
    for which, depth in (("small", 500), ("medium", 30)):
        rt = run_recursion(which, depth, policy="segmented", program=prog)
        kinds = [e.kind for e in rt.events]
        assert kinds.count("split") == kinds.count("unsplit") > 0 and "grow" not in kinds
        assert rt.read_global("main.Result") == expected_sum(which, depth)
        cached = {seg[0] for segs in rt._cache.values() for seg in segs}
        assert rt.stacks.keys() == {rt.stack_of(rt.goroutines[0])[0]} | cached, "every segment was freed or cached"
        assert len(cached) <= 16


def test_hot_split_costs_a_switch_per_iteration_only_when_segmented(prog):
    pad = hot_split_depth(program=prog)
    seg = run_hot_split("segmented", pad, n=200, program=prog)
    cop = run_hot_split("copying", pad, n=200, program=prog)
    assert seg.read_global("main.Result") == cop.read_global("main.Result")
    assert seg.switches == 2 * 200 and cop.switches <= 1
    assert seg.insns > cop.insns


# ----------------------------------------------------------------------------- properties and bad input


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["small", "medium"]), depth=st.integers(0, 400),
       stack=st.sampled_from([2048, 4096, 8192]), policy=st.sampled_from(["copying", "segmented"]),
       preempt=st.sampled_from([None, 700, 5000]))
def test_random_depths_never_corrupt_the_result(prog, which, depth, stack, policy, preempt):
    rt = run_recursion(which, depth, initial_stack=stack, policy=policy, preempt_every=preempt, program=prog)
    assert rt.read_global("main.Result") == expected_sum(which, depth)
    for e in rt.events:
        if e.kind in ("grow", "split"):
            assert e.guard_after == e.new[0] + rt.stack_guard


@pytest.mark.parametrize("call,match", [
    (lambda p: Runtime(p, policy="linked"), "policy"),
    (lambda p: Runtime(p, initial_stack=3000), "power of two"),
    (lambda p: Runtime(p).go("main.nothere"), "no function"),
    (lambda p: Runtime(p).go("main.small", "x"), "integers"),
    (lambda p: run_recursion("tiny", 5, program=p), "which"),
    (lambda p: run_recursion("small", -1, program=p), "depth"),
    (lambda p: Runtime(p).sysmon(every_insns=5), "every_insns"),
    (lambda p: run_recursion("small", 3000, max_insns=1000, program=p), "budget"),
])
def test_bad_input_is_one_line(prog, call, match):
    with pytest.raises((GoStackError, goelf.GoBinaryError)) as e:
        call(prog)
    assert match in str(e.value) and "\n" not in str(e.value)


def test_stack_overflow_is_reported(prog):
    rt = Runtime(prog, max_stack=16 * 1024)
    rt.go("main.small", 1000, 0)
    with pytest.raises(GoStackError, match="exceeds"):
        rt.run()


def test_stackguard0_is_written_only_by_the_go_runtime():
    w = stackguard0_writers()
    funcs = {f for _file, _line, f, _t in w}
    assert {"copystack", "newstack", "execute", "malg"} <= funcs
    assert not {"runtime.morestack", "runtime.morestack_noctxt"} & funcs
    assert all(file.startswith("src/runtime/") for file, *_ in w)


# ----------------------------------------------------------------------------- the viewer widget


def test_viewer_draws_steps_events_and_reports_bad_input_in_one_line(prog):
    from helpers.widgets.gostack import StackGrowthViewer

    w = StackGrowthViewer(program=prog, delay=0)
    assert "stack-growth-viewer" in w.box._dom_classes and w.image.value and w.status.value == ""
    assert w.event.max == len(w.runtime().events) - 1
    n = w.renders
    w.event.value = 2
    assert w.renders == n + 1 and "event 2:" in w.text.value and "frames before" in w.text.value
    w.depth.value = 5000  # too deep for medium frames: the box allows only what the viewer accepts
    assert w.depth.value == w.depth.max == 1000 and w.status.value == ""
    w.which.value = "small"
    assert w.depth.max == 5000
    w.which.value = "medium"
    w.depth.value = 40
    w.preempt.value = 1500
    assert w.status.value == "" and "preempt" in w.text.value
    before = w.renders
    w.run_button.click()
    assert w.renders == before + 1


def test_viewer_runs_a_readers_function_and_reports_its_errors_in_place(prog):
    from helpers.widgets.gostack import StackGrowthViewer

    w = StackGrowthViewer(program=prog, delay=0)
    w.which.value = "your function"
    w.depth.value = 300
    assert w.status.value == "" and " grow" in w.text.value and w.yours.layout.display == ""
    rt = w.runtime()
    assert rt.read_global("main.Result") == 300 * 301 // 2 and rt.grows()[0].func == "main.f"
    for source, match in (("func f(n int) int { return x }", "undefined: x"),
                          ("func f(n int) int { println(n); return n }", "reached runtime.printlock"),
                          ("func f(n int) int {", "syntax error")):
        w.source.value = source
        w.run_button.click()
        assert match in w.status.value and "Traceback" not in w.status.value and "<br" not in w.status.value
    w.source.value = "func g(n int) int { return n }"
    w.run_button.click()
    assert "no top-level func f" in w.status.value and "g" in w.status.value


def test_event_steps_move_only_the_highlight(prog):
    from helpers.viz import gostack as viz

    rt = run_recursion("medium", 40, trace_sp=True, program=prog)
    tl = viz.Timeline(rt)
    artists = len(tl.ax.lines) + len(tl.ax.collections)
    first = tl.highlight(1).png()
    second = tl.highlight(3).png()
    assert first != second and len(tl.ax.lines) + len(tl.ax.collections) == artists
    assert list(tl._hl.get_xdata()) == [rt.events[3].insns]
    # the blitted picture equals a full drawing of the same state
    import io

    import numpy as np
    from matplotlib.image import imread
    fresh = viz.Timeline(rt).highlight(3).png()
    assert np.array_equal(imread(io.BytesIO(second)), imread(io.BytesIO(fresh)))


def test_drawing_is_bounded_whatever_the_run(prog, monkeypatch):
    from helpers.viz import gostack as viz

    rt = run_recursion("small", 2000, policy="segmented", preempt_every=100, trace_sp=True, program=prog)
    monkeypatch.setattr(viz, "MAX_SP_POINTS", 1000)  # this run has 8,000+ samples; the viewer's worst has 130,000
    tl = viz.Timeline(rt)
    drawn = sum(len(l.get_xdata()) for l in tl.ax.lines if l.get_marker() == ".")
    assert len(rt.sp_trace) > drawn and drawn <= viz.MAX_SP_POINTS
    assert len(tl.ax.lines) <= len(viz.MARKERS) + 4 and len(tl.ax.collections) == 3


def test_hex_ticks_fall_on_powers_of_two():
    from helpers.viz.gostack import PowerOfTwoLocator

    ticks = PowerOfTwoLocator().tick_values(0xC000001234, 0xC000023456)
    step = ticks[1] - ticks[0]
    assert 2 <= len(ticks) <= 12 and step & (step - 1) == 0 and all(t % step == 0 for t in ticks)


def test_policy_bars_are_labelled_and_a_single_switch_is_visible():
    from helpers.viz.gostack import draw_policy_comparison

    fig = draw_policy_comparison([("segmented", 2000, 50_000), ("copying", 1, 30_000)])
    a1 = fig.axes[0]
    assert [t.get_text() for t in a1.texts] == ["2,000", "1"] and a1.get_yscale() == "log"
    assert a1.patches[1].get_height() >= 1 > a1.get_ylim()[0]


def test_timeline_marks_every_growth(prog):
    from helpers.viz import gostack as viz

    rt = run_recursion("medium", 40, trace_sp=True, program=prog)
    fig = viz.draw_timeline(rt)
    ax = fig.axes[0]
    grow_markers = [l for l in ax.lines if l.get_marker() == "^"]  # one artist per event kind
    assert len(grow_markers) == 1 and len(grow_markers[0].get_xdata()) == len(rt.grows())
    assert rt.sp_trace and all(seg["lo"] < seg["guard"] < seg["hi"] for seg in rt.stack_history())


def test_viewer_coalesces_a_burst_into_one_redraw(prog):
    import asyncio

    from helpers.widgets.gostack import StackGrowthViewer

    async def burst():
        w = StackGrowthViewer(program=prog)
        start = w.renders
        for v in range(20):
            w.event.value = v % 8
        await asyncio.sleep(0.3)
        after_events = w.renders - start
        for d in range(21, 41):
            w.depth.value = d
        await asyncio.sleep(1.0)
        return after_events, w.renders - start, w

    after_events, after_depths, w = asyncio.run(burst())
    assert (after_events, after_depths) == (1, 2)
    assert list(w._cache) == [w.params()] and w.params()[1] == 40  # the one redraw was for the final depth


def test_a_c_binary_is_refused_in_one_line():
    import shutil

    ls = shutil.which("ls")
    if ls is None:
        pytest.skip("no ls binary")
    with pytest.raises(goelf.GoBinaryError) as e:
        goelf.GoBinary(ls)
    assert ".gopclntab" in str(e.value) and "\n" not in str(e.value)


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.integers(0, 5000).map(str) | st.sampled_from(["goos.IsWindows", "abi.StackSmall"]),
                    lambda inner: st.tuples(inner, st.sampled_from(["+", "*", "-"]), inner).map(
                        lambda t: f"({t[0]} {t[1]} {t[2]})"), max_leaves=8))
def test_go_constant_evaluator_matches_python_arithmetic(expr):
    env = {"goos.IsWindows": 0, "abi.StackSmall": 128}
    want = eval(expr.replace("goos.IsWindows", "0").replace("abi.StackSmall", "128"))  # test oracle on our own string
    assert goelf._eval(expr, env) == want


def test_go_constant_evaluator_refuses_calls():
    with pytest.raises(goelf.GoBinaryError, match="cannot evaluate"):
        goelf._eval("unsafe.Sizeof(x)", {})


@pytest.mark.parametrize("args", [(40, 10, 0), (40, 10, 3000), (-1, 3), (40, True), (40, 10**9), ("40", 3)])
def test_predict_growth_refuses_what_would_loop_or_mislead_in_one_line(args):
    # predict_growth(40, 10, 0) used to double a zero-byte stack forever
    with pytest.raises(ValueError) as e:
        predict_growth(*args)
    assert "\n" not in str(e.value) and "must be" in str(e.value)


def test_shrink_comparison_draws_native_steps_and_model_markers():
    from helpers.viz.gostack import draw_shrink_comparison

    rows = [(65536, 900), (32768, 900), (16384, 900)]
    fig = draw_shrink_comparison([("a", rows, [32768, 16384])])
    ax = fig.axes[0]
    assert list(ax.lines[0].get_ydata()) == [65536, 32768, 16384] and list(ax.lines[1].get_xdata()) == [1, 2]
