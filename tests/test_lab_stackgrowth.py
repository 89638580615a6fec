"""Tests for the stack-growth lab: deterministic problems, a key that the real compiled code confirms,
and feedback that names the mistake."""
import pytest

from helpers.gostack import GoProgram, stacks_source
from helpers.labs import stackgrowth as lab

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_same_seed_same_problem_and_seeds_differ():
    assert lab.generate(7).text(answers=True) == lab.generate(7).text(answers=True)
    assert len({lab.generate(s).text() for s in range(20)}) > 10


def test_the_key_passes_the_checker():
    for seed in range(30):
        p = lab.generate(seed)
        fb = lab.check(p, p.key())
        assert all(f.ok for f in fb), [f.line() for f in fb if not f.ok]
        assert 2 <= p.key()["growths"] <= 8


@pytest.mark.parametrize("elements", lab.ELEMENTS)
def test_frame_sizes_and_first_used_match_the_compiled_program(elements):
    prog = GoProgram.build(stacks_source(medium=elements))
    assert prog.frame_size("main.medium") == lab.frame_of(elements)
    # newproc1's 4 words + goexit's return address, worker's frame, worker's return address
    assert 40 + prog.frame_size("main.worker") + 8 == lab.FIRST_USED
    assert prog.prologue("main.medium").form == lab.form_of(lab.frame_of(elements))


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 5, 7, 11, 13])
def test_the_key_is_what_the_emulated_go_code_does(seed):
    p = lab.generate(seed)
    seen = lab.observe(p)
    assert {k: seen[k] for k in p.key()} == p.key()
    assert seen["result"] == p.params["depth"] * (p.params["depth"] + 1) // 2


def test_feedback_names_the_mistake():
    p = lab.generate(7)
    key = p.key()
    fb = {f.question: f for f in lab.check(p, {**key, "guard_below_hi": 928, "final_size": 12345, "form": "huge"})}
    assert "ABOVE stack.lo" in fb["guard_below_hi"].message
    assert "powers of two" in fb["final_size"].message
    assert "1232 bytes" in fb["form"].message
    assert fb["growths"].ok and fb["first"].ok
    fb = {f.question: f for f in lab.check(p, {**key, "guard_below_hi": 0})}
    assert "not the upper bound" in fb["guard_below_hi"].message


def test_refit_slip_is_recognised():
    # find a seed where one growth more than doubles; answering with plain doublings gets the specific hint
    for seed in range(200):
        p = lab.generate(seed)
        pr = p.params
        naive = lab._naive(pr["frame"], pr["depth"], pr["initial_stack"], pr["first_used"], refit=False)
        if naive["growths"] != p.key()["growths"]:
            fb = {f.question: f for f in lab.check(p, {**p.key(), "growths": naive["growths"]})}
            assert "more than double" in fb["growths"].message
            return
    pytest.fail("no seed exercises the refit rule")


def test_bad_answers_get_one_line_messages():
    p = lab.generate(3)
    fb = {f.question: f for f in lab.check(p, {"growths": "three", "form": "tiny"})}
    assert not fb["growths"].ok and "\n" not in fb["growths"].message
    assert not fb["form"].ok and "no answer" in fb["first"].message
    assert all(not f.ok for f in lab.check(p, "nope"))


# ----------------------------------------------------------------------------- the student's own function


@pytest.mark.parametrize("elements", lab.OWN_ELEMENTS)
def test_own_template_frame_and_first_used_match_the_harness(elements):
    from helpers.gostack import FunctionProgram

    prog = FunctionProgram.build(lab.OWN_TEMPLATE.replace("K", str(elements)), "f")
    assert prog.frame_size("main.f") == lab.frame_of(elements)
    assert 40 + prog.frame_size("main.worker") + 8 == lab.FIRST_USED


@pytest.mark.parametrize("seed", [0, 1, 7, 13])
def test_own_key_is_what_the_native_run_does(seed):
    p = lab.generate(seed)
    seen = lab.observe_own(p, p.params["own_template"])
    assert seen["native"] == seen["emulated"] == p.key()["own_moves"] and seen["agree"]


def test_an_edited_function_is_checked_against_its_own_native_run():
    p = lab.generate(7)
    k = 90
    edited = p.params["own_template"].replace("[3]int64", f"[{k}]int64").replace("n%3", f"n%{k}")
    seen = lab.observe_own(p, edited)
    assert seen["frame"] == lab.frame_of(k) and seen["native"] != p.key()["own_moves"]
    ok = {f.question: f for f in lab.check(p, {**p.key(), "own_source": edited, "own_moves": seen["native"]})}
    assert ok["own_moves"].ok and "emulator agrees" in ok["own_moves"].message
    wrong = {f.question: f for f in lab.check(p, {**p.key(), "own_source": edited})}["own_moves"]
    assert not wrong.ok and "752-byte frame" in wrong.message
    assert ", ".join(map(str, seen["native"])) not in wrong.message  # the feedback does not give the moves away


@pytest.mark.parametrize("source,fragment", [
    ("func f(n int) int { return x }", "undefined: x"),
    ("func f(n int) int { println(n); mark(n); return n }", "reached runtime.printlock"),
    ("func f(n int) int { return n }", "never calls mark"),
    (42, "must be the Go source"),
])
def test_bad_own_source_is_one_line(source, fragment):
    p = lab.generate(7)
    fb = {f.question: f for f in lab.check(p, {**p.key(), "own_source": source})}["own_moves"]
    assert not fb.ok and fragment in fb.message and "\n" not in fb.message
    assert all(f.ok for f in lab.check(p, {**p.key(), "own_source": source}) if f.question != "own_moves")
