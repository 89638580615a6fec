"""helpers.labs.callconv: deterministic problems, keys that the model and the emulator agree with, specific feedback."""
import pytest
from hypothesis import given, settings, strategies as st

from helpers import abi
from helpers.labs import callconv as L
from helpers.labs.common import Problem


@settings(max_examples=25)
@given(st.integers(0, 10_000))
def test_key_passes_and_problem_is_deterministic(seed):
    p = L.generate(seed)
    assert isinstance(p, Problem) and p.lab == "callconv"
    assert all(f.ok for f in L.check(p, p.key()))
    assert L.generate(seed).text(answers=True) == p.text(answers=True)


@settings(max_examples=15)
@given(st.integers(0, 10_000))
def test_part_b_listing_matches_the_key(seed):
    """Reading the generated caller with the chapter's call-site reader gives back the key."""
    from helpers.asm import disassemble
    p = L.generate(seed)
    a, b = L._context(p)
    from helpers.asm import assemble
    code = assemble(b["source"], arch="x86_32").code
    site = abi.call_site_arguments(disassemble(code, arch="x86_32"), "x86_32")
    placed = abi.place_arguments(p.key()["b_convention"], p.key()["b_args"])
    assert site["registers"] == placed.registers()
    assert site["stack"] == [v for _, v in sorted(placed.stack().items())]
    assert site["cleanup"] == (placed.stack_bytes if placed.convention.cleanup == "caller" else 0)


def _first_wrong(p, qid, value):
    answers = dict(p.key())
    answers[qid] = value
    fb = {f.question: f for f in L.check(p, answers)}
    assert sum(not f.ok for f in fb.values()) == 1
    return fb[qid].message


def test_specific_feedback():
    p = next(L.generate(s) for s in range(200) if L.generate(s).params["part_a_convention"] == "regparm(3)"
             and "a_arg0" in L.generate(s).ids())
    assert "holds argument 2" in _first_wrong(p, "a_arg0", "%edx")
    assert "return address" in _first_wrong(p, "a_arg0", "0(%esp)")
    assert "caller removes" in _first_wrong(p, "a_pops", 8)
    assert "not a location" in _first_wrong(p, "a_arg0", "the stack")
    key = p.key()
    wrong_conv = "stdcall" if key["b_convention"] != "stdcall" else "cdecl"
    assert "after the call" in _first_wrong(p, "b_convention", wrong_conv) or "loads" in _first_wrong(
        p, "b_convention", wrong_conv)
    assert "arguments" in _first_wrong(p, "b_args", key["b_args"][:-1])


@pytest.mark.parametrize("raw, canon", [("EDX", "%edx"), ("%ecx", "%ecx"), ("8(%esp)", "8(%esp)"),
                                        ("[esp+8]", "8(%esp)"), ("esp+0x10", "16(%esp)"), ("(%rsp)", "0(%rsp)"),
                                        ("r10", "%r10")])
def test_canonical_location(raw, canon):
    assert L.canonical_location(raw) == canon


@given(st.text(max_size=12))
def test_canonical_location_never_crashes(raw):
    try:
        out = L.canonical_location(raw)
    except ValueError as e:
        assert "\n" not in str(e)
    else:
        assert out.startswith("%") or out.endswith("sp)")


def test_bad_answers_are_one_line():
    p = L.generate(1)
    for f in L.check(p, {"b_args": "0xzz", "a_pops": "many"}):
        assert not f.ok and "\n" not in f.message
    assert all(not f.ok for f in L.check(p, "not a dict"))
