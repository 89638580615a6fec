"""The classroom pipeline end to end, with the real nbgrader, in throwaway course folders under tmp_path.

For every lab in labs/<lab>/<lab>.ipynb, plus a tiny fixture lab (tests/fixtures/lab_fixture) so the pipeline is
tested even before the book's labs exist:
  * nbgrader generate_assignment makes a student version that reveals no answer (cells, outputs, metadata);
  * nbgrader autograde of the reference solution earns full marks;
  * the untouched student version earns zero, and autograding it does not crash;
  * a partly wrong submission earns partial marks, and the checker's feedback for the wrong answer is in the
    autograded notebook and in the feedback HTML a student gets back.
One `python -m helpers.classroom rehearse` run grades everything (nbgrader takes seconds just to import).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import classroom
from helpers.classroom import STUB, a_wrong_answer, leaks, notebook_seed, partly_wrong, read_notebook

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "lab_fixture"
FIXTURE_NB = FIXTURE / "fixturelab.ipynb.json"  # not *.ipynb, so `pytest --nbval tests` leaves it alone
sys.path.insert(0, str(FIXTURE))
import fixturelab  # noqa: E402

REAL = classroom.lab_notebooks()
LABS = ["fixturelab"] + list(REAL)
GENERIC = {"incorrect", "wrong", "error", "no", "false", "incorrect.", "wrong."}


def run(argv, timeout, env=None):
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done


@pytest.fixture(scope="module")
def fixture_source(tmp_path_factory) -> Path:
    """The fixture lab's instructor version with the outputs an executed one has (answers among them, as in the
    real labs), written out without running a kernel: the problem text and each test cell's feedback line."""
    folder = tmp_path_factory.mktemp("fixture-src") / "fixturelab"
    folder.mkdir()
    nb = read_notebook(FIXTURE_NB)
    problem = fixturelab.generate(notebook_seed(nb))
    lines = {f.question: f.line() + "\n" for f in fixturelab.check(problem, problem.key())}
    for n, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        source = "".join(cell["source"])
        text = problem.text() if "print(problem)" in source else next(
            (line for qid, line in lines.items() if f'"{qid}")' in source), "")
        cell["execution_count"] = n + 1
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": text}] if text else []
    path = folder / "fixturelab.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    assert "correct: 2752" in path.read_text(), "the instructor version shows its answers"
    return path


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, fixture_source) -> dict:
    """Grade every lab in throwaway courses: two `rehearse` processes side by side, labs dealt round-robin."""
    sources = {"fixturelab": fixture_source, **REAL}
    groups = [list(sources)[i::2] for i in range(2)]
    procs = []
    for i, names in enumerate(g for g in groups if g):
        course = tmp_path_factory.mktemp(f"course{i}")
        args = [sys.executable, "-m", "helpers.classroom", "rehearse", str(course / "course"),
                "--pythonpath", str(FIXTURE), "--report", str(course / "report.json")]
        for name in names:
            args += ["--lab", f"{name}={sources[name]}"]
        procs.append((course / "report.json", subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                                                               stderr=subprocess.PIPE, text=True)))
    report = {}
    for path, proc in procs:
        try:
            out, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for _, other in procs:
                other.kill()
            raise
        assert proc.returncode == 0, (out[-2000:], err[-3000:])
        report.update(json.loads(path.read_text()))
    return report


def module_for(name):
    return fixturelab if name == "fixturelab" else classroom.lab_module(name)


@pytest.mark.parametrize("lab", LABS)
def test_reference_solution_earns_full_marks(rehearsal, lab):
    g = rehearsal[lab]["grades"]["reference"]
    assert g["max_score"] > 0
    assert g["score"] == g["max_score"], {k: v for k, v in g["cells"].items() if v[0] != v[1]}
    assert len(g["cells"]) >= 2, "a lab has a graded test cell per question"


@pytest.mark.parametrize("lab", LABS)
def test_untouched_student_version_earns_zero_without_crashing(rehearsal, lab):
    g = rehearsal[lab]["grades"]["untouched"]
    assert g["max_score"] == rehearsal[lab]["grades"]["reference"]["max_score"]
    assert g["score"] == 0, {k: v for k, v in g["cells"].items() if v[0]}
    graded = read_notebook(g["notebook"])
    errors = [o for c in graded["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert {e["ename"] for e in errors} <= {"NotImplementedError", "WrongAnswer", "AssertionError", "NameError", "KeyError"}, \
        "only the stubs and the failed checks raise, nothing else breaks"
    checks = [e for e in errors if e["ename"] == "WrongAnswer"]
    assert checks and all(len(e["traceback"]) == 1 and e["traceback"][0].startswith("WRONG ") for e in checks), \
        "a failed check shows the checker's one line, not a traceback"


@pytest.mark.parametrize("lab", LABS)
def test_partly_wrong_answer_earns_partial_marks_with_specific_feedback(rehearsal, lab):
    e = rehearsal[lab]
    g = e["grades"]["partial"]
    assert 0 < g["score"] < g["max_score"], g["cells"]
    lost = [k for k, (score, full) in g["cells"].items() if score < full]
    assert lost, g["cells"]
    message = e["partial"]["feedback"]
    assert message.strip().lower() not in GENERIC and len(message) >= 20, message
    assert e["partial"]["feedback_in_autograded"], f"{message!r} not in the autograded notebook's outputs"
    # where the wrong answer is graded, the student sees the checker's line and no traceback into helpers/
    shown = [err for err in e["partial"]["errors"] if e["partial"]["question"] in err["evalue"]]
    assert [err["traceback"] for err in shown] == [[f"WRONG {e['partial']['question']}: {message}"]], shown
    assert e["partial"]["feedback_in_html"], f"{message!r} not in the feedback HTML"


@pytest.mark.parametrize("lab", LABS)
def test_student_version_reveals_no_answers(rehearsal, lab):
    e = rehearsal[lab]
    release = read_notebook(e["release"])
    seed = notebook_seed(release)
    assert seed == e["seed"]
    module = module_for(lab)
    problem = module.generate(seed)
    assert leaks(release, problem, classroom.vocabulary(module, problem)) == []
    assert e["leaks"] == []
    source = read_notebook(e["source"])
    assert leaks(source, problem), "the instructor version does hold the answers, so the search can find them"
    for cell in release["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            assert STUB in "".join(cell["source"]), "the solution region became nbgrader's stub"
    hidden = hidden_lines(source)
    text = json.dumps(release)
    assert not [line for line in hidden if json.dumps(line)[1:-1] in text], "hidden tests were stripped"


def hidden_lines(nb) -> list[str]:
    out, inside = [], False
    for cell in nb["cells"]:
        for line in "".join(cell["source"]).splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 8:
                out.append(line.strip())
    return out


def test_the_fixture_exercises_hidden_tests():
    assert hidden_lines(read_notebook(FIXTURE_NB)), "so test_student_version_reveals_no_answers checks stripping"


def test_seeds_of_submissions_are_listed(rehearsal):
    courses = {Path(e["source"]).parents[2] for e in rehearsal.values()}
    rows = [row for course in sorted(courses) for row in classroom.submitted_seeds(course / "submitted")]
    assert {(s, lab) for s, lab, _ in rows} == {(s, lab) for lab in rehearsal
                                               for s in ("reference", "untouched", "partial")}
    assert all(seed == rehearsal[lab]["seed"] for _, lab, seed in rows)


# ------------------------------------------------------------------ the leak search and the slip, without nbgrader

def test_leak_search_finds_answers_in_sources_outputs_and_metadata():
    nb = read_notebook(FIXTURE_NB)
    problem = fixturelab.generate(7)
    found = leaks(nb, problem)
    assert {x.question for x in found} >= {"index", "memory"}, found  # the reference answers in solution cells
    stripped = json.loads(json.dumps(nb))
    for cell in stripped["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = STUB
        for marker in ("### BEGIN HIDDEN TESTS",):
            if marker in "".join(cell["source"]):
                cell["source"] = "".join(cell["source"]).split(marker)[0]
    assert leaks(stripped, problem) == []
    in_output = json.loads(json.dumps(stripped))
    in_output["cells"][3]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["index 2752\n"]}]
    assert [x.question for x in leaks(in_output, problem) if x.question != "*"] == ["index"]
    in_meta = json.loads(json.dumps(stripped))
    in_meta["metadata"]["answer_key"] = {"memory": "0356"}
    assert [x.question for x in leaks(in_meta, problem)] == ["memory"]
    assert leaks(stripped, fixturelab.generate(8)) == [], "another seed's answers are not this notebook's"


def test_common_answers_may_appear_in_prose_but_not_in_code():
    problem = fixturelab.generate(7)
    nb = {"metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "Selector index 2752 is an example."},
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None}]}
    assert [x.question for x in leaks(nb, problem)] == ["index"], "a seed-specific answer in prose is a leak"
    common = {("index", "2752")}
    assert leaks(nb, problem, common) == [], "unless the same answer comes up for other seeds too"
    nb["cells"][1]["source"] = "answers['index'] = 2752"
    assert [x.where for x in leaks(nb, problem, common)] == ["notebook.cells[1].source"]
    vocab = classroom.vocabulary(fixturelab, problem)
    assert ("table", "GDT") in vocab and ("index", "2752") not in vocab


def test_leak_search_ignores_short_and_public_forms():
    problem = fixturelab.generate(7)
    forms = {q.id: classroom.searchable_forms(q, problem.text()) for q in problem.questions}
    assert forms["rpl"] == [], "RPL 3 is a digit that every notebook contains"
    assert forms["table"] == [], "the choice GDT is printed with the question"
    assert "2752" in forms["index"] and "0356" in forms["memory"]


def test_partly_wrong_makes_exactly_one_answer_wrong():
    problem = fixturelab.generate(7)
    nb, qid, wrong, message = partly_wrong(read_notebook(FIXTURE_NB), problem, fixturelab)
    assert qid == "index" and wrong == a_wrong_answer(problem.question("index")) == 2753
    assert message == "index 2753 is not bits 15..3 of 0x5603 (shift right by 3, drop TI and RPL)"
    sol = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution")]
    assert all("".join(c["source"]).endswith("answers['index'] = 2753  # a slip") for c in sol)


def test_notebook_without_check_call_is_reported():
    nb = {"cells": [{"cell_type": "code", "source": "assert True", "metadata": {"nbgrader": {"grade": True}}}]}
    with pytest.raises(classroom.ClassroomError, match="no autograded test cell calls check"):
        classroom.answers_variable(nb)


# ------------------------------------------------------------------------------------------- make student

def test_make_student_writes_student_versions(tmp_path, fixture_source):
    labs_dir = tmp_path / "labs"
    (labs_dir / "fixturelab").mkdir(parents=True)
    (labs_dir / "fixturelab" / "fixturelab.ipynb").write_text(fixture_source.read_text())
    for name, nb in REAL.items():
        (labs_dir / name).symlink_to(nb.parent)
    out = tmp_path / "student"
    done = run([sys.executable, "-m", "helpers.classroom", "student", "--labs", str(labs_dir), "--out", str(out),
                "--work", str(tmp_path / "work")], timeout=600, env={"PYTHONPATH": str(FIXTURE)})
    assert sorted(line.split()[0] for line in done.stdout.splitlines()) == sorted(LABS)
    for name in LABS:
        student = out / name / f"{name}.ipynb"
        assert student.is_file()
        assert leaks(student, module_for(name).generate(notebook_seed(student))) == []
    assert (tmp_path / "work" / "gradebook.db").is_file()
    students = [str(out / name / f"{name}.ipynb") for name in LABS]
    clean = run([sys.executable, "-m", "helpers.classroom", "leaks", *students], timeout=300,
                env={"PYTHONPATH": str(FIXTURE)})
    assert clean.stdout.count("no answers revealed") == len(LABS)
    leaky = subprocess.run([sys.executable, "-m", "helpers.classroom", "leaks", str(fixture_source)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(FIXTURE)})
    assert leaky.returncode == 1 and "reveals answers: index: answer '2752' appears in" in leaky.stdout
    assert "outputs in cells[" in leaky.stdout


def test_classroom_cli_errors_are_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "helpers.classroom", "student", "--labs", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no labs in") and done.stderr.count("\n") == 1
