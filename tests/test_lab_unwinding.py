"""The unwinding lab: deterministic problems, a key that passes, specific feedback for typical mistakes."""
import pytest

from helpers.labs import unwinding as lab
from helpers.labs.common import parse_answer


def test_deterministic_and_key_passes():
    for seed in range(40):
        a, b = lab.generate(seed), lab.generate(seed)
        assert a.text(answers=True) == b.text(answers=True)
        assert all(f.ok for f in lab.check(a, a.key()))


def test_both_fp_outcomes_occur():
    assert {lab.generate(s).key()["fp_walk"] for s in range(40)} == {"same", "different"}


def test_chain_ends_in_main_and_matches_depth():
    for seed in range(20):
        p = lab.generate(seed)
        chain = p.key()["chain"]
        assert chain[-1] == "main" and 3 <= len(chain) <= 5 and len(set(chain)) == len(chain)


def test_typical_mistakes_get_specific_feedback():
    p = lab.generate(7)
    k = p.key()
    rip = int(p.params["registers"]["rip"], 16)
    wrong = {"cfa0": k["cfa0"] - 8, "ra0": rip, "rbp1": k["rbp1"] ^ 1,
             "chain": list(reversed(k["chain"])), "fp_walk": "same" if k["fp_walk"] == "different" else "different"}
    fb = {f.question: f for f in lab.check(p, wrong)}
    assert not any(f.ok for f in fb.values())
    assert "CFA-8" in fb["cfa0"].message
    assert "rip" in fb["ra0"].message
    assert "innermost first" in fb["chain"].message


def test_bad_answers_are_one_line():
    p = lab.generate(3)
    fb = lab.check(p, {"cfa0": "0xZZ", "ra0": None, "chain": [], "fp_walk": "maybe"})
    assert all(not f.ok and "\n" not in f.message for f in fb)
    with pytest.raises(ValueError):
        parse_answer("hex", "zz")


def test_negative_seed_refused():
    with pytest.raises(ValueError):
        lab.generate(-1)


def _manual_unwind(ws):
    """Unwind by the rules the lab notebook states, independently of helpers.unwind."""
    regs, mem, funcs = dict(ws["regs"]), ws["mem"], ws["functions"]
    chain, first, out = [], True, {}
    while True:
        pc = regs["rip"] if first else regs["rip"] - 1
        name, _, _, row = next(f for f in funcs if f[1] <= pc < f[2])
        cfa = regs[row.cfa_reg] + row.cfa_offset
        caller = {r: mem[cfa + o] for r, o in row.saved.items()}
        if first:
            out.update(cfa0=cfa, ra0=caller["rip"], rbp1=caller.get("rbp", regs["rbp"]))
        chain.append(name)
        regs.update(caller)
        regs["rsp"], first = cfa, False
        if regs["rip"] == 0:
            return {**out, "chain": chain}


def test_key_agrees_with_independent_manual_unwind():
    for seed in range(60):
        p = lab.generate(seed)
        manual = _manual_unwind(lab.workspace(p))
        assert {k: p.key()[k] for k in manual} == manual


def test_lab_notebook_has_graded_cells():
    import json
    from pathlib import Path
    nb = json.loads((Path(__file__).resolve().parents[1] / "labs/unwinding/unwinding.ipynb").read_text())
    meta = [c["metadata"].get("nbgrader") for c in nb["cells"] if c["cell_type"] == "code"]
    graded = [m for m in meta if m and m.get("grade")]
    assert {m["grade_id"] for m in graded} == {"test_cfa0", "test_ra0", "test_rbp1", "test_chain", "test_fp_walk"}
    assert any(m and m.get("solution") for m in meta)
    assert "widgets" not in nb["metadata"]
