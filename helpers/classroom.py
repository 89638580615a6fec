"""The classroom pipeline for the book's labs (issue 7): student versions, autograding, and answer-leak checks, with nbgrader.

The labs are written in nbgrader's source format: ``labs/<lab>/<lab>.ipynb`` is the instructor version (executed,
reference answers between ``### BEGIN SOLUTION`` / ``### END SOLUTION``, autograded test cells that call the lab's
checker). The repository itself is an nbgrader course whose source folder is ``labs/`` (see ``nbgrader_config.py``);
everything nbgrader writes goes under ``build/``.

Commands::

    python -m helpers.classroom student             # `make student`: build/student/<lab>/<lab>.ipynb for every lab
    python -m helpers.classroom rehearse DIR        # a throwaway course in DIR: grade a reference, an untouched and
                                                    # a partly wrong submission of every lab, print the scores
    python -m helpers.classroom leaks NB...         # check student notebooks reveal no answer (exit 1 if one does)
    python -m helpers.classroom seeds DIR           # the SEED in each submitted notebook under DIR, per student

Primary source modelled: nbgrader 0.9's documented course layout and apps (``nbgrader.apps.NbGraderAPI``:
generate_assignment, autograde, generate_feedback). nbgrader is imported only inside the functions that run it.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from helpers.labs import lab_names
from helpers.labs.common import Problem, Question, answer_forms

ROOT = Path(__file__).resolve().parents[1]
LABS_DIR = ROOT / "labs"
BUILD = ROOT / "build"

# The repository as an nbgrader course (nbgrader_config.py applies this): sources are the committed labs,
# everything generated lands under build/ (git-ignored).
REPO_LAYOUT = {
    "source": "labs",
    "release": "build/student",
    "submitted": "build/submitted",
    "autograded": "build/autograded",
    "feedback": "build/feedback",
    "db": "build/gradebook.db",
}
# A throwaway course (rehearse, tests): nbgrader's default folder names.
COURSE_LAYOUT = {"source": "source", "release": "release", "submitted": "submitted", "autograded": "autograded",
                 "feedback": "feedback", "db": "gradebook.db"}

CELL_TIMEOUT = 120  # seconds per cell while autograding; a cold Go build in a lab takes seconds, not minutes
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"  # nbgrader's default ClearSolutions.code_stub for python
SEED_LINE = re.compile(r"^\s*SEED\s*=\s*(\d+)\b", re.M)
CHECK_CALL = re.compile(r"check\((?:[^()]|\([^()]*\))*?,\s*([A-Za-z_]\w*)\s*\)")


class ClassroomError(RuntimeError):
    """A step of the pipeline failed. The message is one line and says which lab and what to look at."""


# ------------------------------------------------------------------------------------------------ labs


def lab_notebooks(labs_dir: Path = LABS_DIR) -> dict[str, Path]:
    """{lab: labs/<lab>/<lab>.ipynb} for every lab folder in nbgrader's source layout, sorted by name."""
    labs_dir = Path(labs_dir)
    found = {}
    for folder in sorted(p for p in labs_dir.iterdir() if p.is_dir()) if labs_dir.is_dir() else []:
        notebook = folder / f"{folder.name}.ipynb"
        if notebook.is_file():
            found[folder.name] = notebook
    return found


def lab_module(name: str):
    """The generator/checker module of lab ``name``: helpers.labs.<name>, else an importable module ``name``."""
    if name in lab_names():
        return importlib.import_module(f"helpers.labs.{name}")
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ClassroomError(f"lab {name!r} has no generator: expected helpers/labs/{name}.py") from None


def read_notebook(path_or_nb) -> dict:
    if isinstance(path_or_nb, dict):
        return path_or_nb
    return json.loads(Path(path_or_nb).read_text(encoding="utf-8"))


def notebook_seed(nb) -> int | None:
    """The seed a lab notebook uses: the ``SEED = N`` line of its first code cell that has one."""
    for cell in read_notebook(nb)["cells"]:
        if cell["cell_type"] == "code":
            m = SEED_LINE.search(_source(cell))
            if m:
                return int(m.group(1))
    return None


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


# ---------------------------------------------------------------------------------------------- leaks


@dataclass
class Leak:
    question: str
    form: str
    where: str

    def __str__(self) -> str:
        if self.question == "*":  # structural: outputs, execution counts, solution markers
            return f"{self.form} in {self.where}"
        return f"{self.question}: answer {self.form!r} appears in {self.where}"


def _strings(node, where: str):
    """Every string (and number) in a notebook JSON tree, with a readable location."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(node, list):
        if node and all(isinstance(x, str) for x in node):
            yield where, "".join(node)
        else:
            for i, v in enumerate(node):
                yield from _strings(v, f"{where}[{i}]")
    elif isinstance(node, bool) or node is None:
        return
    elif isinstance(node, (str, int, float)):
        yield where, str(node)


def searchable_forms(q: Question, public: str) -> list[str]:
    """The written forms of q's answer worth searching for: not guessable noise, not already public.

    Short numbers (under three characters, or hex of a value under 0x100) occur in any notebook and are
    guessable anyway; forms that the problem statement itself shows (choices, parameters) are public.
    """
    forms = []
    for form in answer_forms(q.kind, q.answer, q.width, q.item_kind):
        if len(form.strip()) < 3:
            continue
        if q.kind in ("int", "hex") and isinstance(q.answer, int) and abs(q.answer) < 0x100 and not form.lstrip("-").isdigit():
            continue
        if q.kind == "int" and isinstance(q.answer, int) and abs(q.answer) < 100:
            continue
        if _find(form, public):
            continue
        forms.append(form)
    return forms


def _find(form: str, text: str) -> bool:
    pattern = re.escape(form)
    if form[:1].isalnum() or form[:1] == "_":
        pattern = r"(?<![0-9A-Za-z_])" + pattern
    if form[-1:].isalnum() or form[-1:] == "_":
        pattern += r"(?![0-9A-Za-z_])"
    return re.search(pattern, text, re.I) is not None


def vocabulary(module, problem: Problem, seeds=range(20)) -> set[tuple[str, str]]:
    """(question id, form) pairs that are the answer for several other seeds too: words such as a register
    name or "interrupt" that a lab's prose may use freely, because they say nothing about one student's problem."""
    counts: dict[tuple[str, str], int] = {}
    for seed in seeds:
        if seed == problem.seed:
            continue
        for q in module.generate(seed).questions:
            for form in answer_forms(q.kind, q.answer, q.width, q.item_kind):
                counts[q.id, form] = counts.get((q.id, form), 0) + 1
    return {key for key, n in counts.items() if n >= 2}


def leaks(nb, problem: Problem, common: set[tuple[str, str]] = frozenset()) -> list[Leak]:
    """Answers of ``problem`` that a student notebook reveals: in any cell source, output or metadata.

    Besides searching for each answer's written forms, a student notebook must have no outputs, no execution
    counts, and no solution or hidden-test markers (exact checks, reported with question "*"). Forms in
    ``common`` (see :func:`vocabulary`) are allowed in markdown prose, and only there.
    """
    nb = read_notebook(nb)
    found: list[Leak] = []
    for i, cell in enumerate(nb["cells"]):
        if cell.get("outputs"):
            found.append(Leak("*", "outputs", f"cells[{i}]"))
        if cell.get("execution_count") is not None:
            found.append(Leak("*", "execution_count", f"cells[{i}]"))
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
            if marker in _source(cell):
                found.append(Leak("*", marker, f"cells[{i}].source"))
    public = problem.text(answers=False)
    strings = list(_strings(nb, "notebook"))
    prose = {f"notebook.cells[{i}].source" for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"}
    for q in problem.questions:
        for form in searchable_forms(q, public):
            for where, text in strings:
                if (q.id, form) in common and where in prose:
                    continue
                if _find(form, text):
                    found.append(Leak(q.id, form, where))
                    break
    return found


# --------------------------------------------------------------------------------------------- nbgrader


def course_config(root: Path, layout: dict = COURSE_LAYOUT, timeout: int = CELL_TIMEOUT):
    """The traitlets Config of an nbgrader course at ``root`` with the folders of ``layout``."""
    from traitlets.config import Config

    root = Path(root).resolve()
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = layout["source"]
    c.CourseDirectory.release_directory = layout["release"]
    c.CourseDirectory.submitted_directory = layout["submitted"]
    c.CourseDirectory.autograded_directory = layout["autograded"]
    c.CourseDirectory.feedback_directory = layout["feedback"]
    c.CourseDirectory.db_url = f"sqlite:///{root / layout['db']}"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*"]
    c.Execute.timeout = timeout
    c.ClearSolutions.code_stub = {"python": STUB}
    return c


@contextlib.contextmanager
def _nbgrader_env(pythonpath=()):
    """nbgrader runs the `alembic` command by name, so this interpreter's bin/ must be on PATH; kernels it
    starts inherit os.environ, so extra import paths (the tests' fixture lab) go on PYTHONPATH."""
    saved = {k: os.environ.get(k) for k in ("PATH", "PYTHONPATH")}
    bindir = str(Path(sys.executable).parent)
    os.environ["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", "")])
    extra = [str(Path(p).resolve()) for p in pythonpath]
    if extra:
        os.environ["PYTHONPATH"] = os.pathsep.join(extra + [p for p in [saved["PYTHONPATH"]] if p])
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Course:
    """An nbgrader course directory driven through nbgrader's own Python API (NbGraderAPI)."""

    def __init__(self, root: Path, layout: dict = COURSE_LAYOUT, timeout: int = CELL_TIMEOUT, pythonpath=()):
        from nbgrader.apps import NbGraderAPI  # slow import (about 5 s), so only here

        self.root = Path(root).resolve()
        self.layout = layout
        self.pythonpath = tuple(pythonpath)
        self.root.mkdir(parents=True, exist_ok=True)
        self.api = NbGraderAPI(config=course_config(self.root, layout, timeout))

    def path(self, kind: str, *parts) -> Path:
        return self.root.joinpath(self.layout[kind], *parts)

    def _run(self, what: str, call) -> dict:
        import warnings

        with _nbgrader_env(self.pythonpath), warnings.catch_warnings():
            # nbgrader 0.9.6's gradebook triggers SQLAlchemy "not in session" autoflush warnings; they are harmless
            warnings.filterwarnings("ignore", message=".*not in session.*")
            result = call()
        if not result.get("success"):
            detail = (result.get("error") or result.get("log") or "").strip().splitlines()
            raise ClassroomError(f"nbgrader {what} failed: {detail[-1] if detail else 'no message'}")
        return result

    def add_lab(self, name: str, notebook: Path) -> Path:
        """Copy a lab's source folder (its notebook and any files beside it) into the course's source folder."""
        notebook = Path(notebook)
        dest = self.path("source", name)
        if dest.resolve() == notebook.parent.resolve():
            return dest / f"{name}.ipynb"
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        if notebook.parent.name == name:  # a real lab folder: take everything in it
            shutil.copytree(notebook.parent, dest, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"))
        shutil.copyfile(notebook, dest / f"{name}.ipynb")
        return dest / f"{name}.ipynb"

    def generate(self, name: str) -> Path:
        """``nbgrader generate_assignment``: the student version of lab ``name``."""
        self._run(f"generate_assignment {name}", lambda: self.api.generate_assignment(name, force=True, create=True))
        return self.path("release", name, f"{name}.ipynb")

    def submit(self, student: str, name: str, notebook) -> Path:
        """Place a notebook where ``nbgrader collect`` would: submitted/<student>/<lab>/<lab>.ipynb."""
        dest = self.path("submitted", student, name, f"{name}.ipynb")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(notebook, dict):
            dest.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        else:
            shutil.copyfile(notebook, dest)
        return dest

    def autograde(self, name: str, student: str) -> "Grade":
        """``nbgrader autograde``, then the scores nbgrader recorded in its gradebook."""
        self._run(f"autograde {name} for {student}", lambda: self.api.autograde(name, student, force=True, create=True))
        return self.grade(name, student)

    def feedback(self, name: str, student: str) -> Path:
        """``nbgrader generate_feedback``: the HTML a student gets back."""
        self._run(f"generate_feedback {name} for {student}", lambda: self.api.generate_feedback(name, student, force=True))
        return self.path("feedback", student, name, f"{name}.html")

    def grade(self, name: str, student: str) -> "Grade":
        from nbgrader.api import Gradebook

        with Gradebook(self.api.coursedir.db_url) as gb:
            sub = gb.find_submission_notebook(name, name, student)
            cells = {g.name: (g.score, g.max_score) for g in sub.grades}
            return Grade(name, student, sub.score, sub.max_score, cells,
                         self.path("autograded", student, name, f"{name}.ipynb"))


@dataclass
class Grade:
    lab: str
    student: str
    score: float
    max_score: float
    cells: dict = field(default_factory=dict)  # grade_id -> (score, max_score)
    notebook: Path | None = None

    def as_dict(self) -> dict:
        return {"lab": self.lab, "student": self.student, "score": self.score, "max_score": self.max_score,
                "cells": {k: list(v) for k, v in self.cells.items()}, "notebook": str(self.notebook)}


# ------------------------------------------------------------------------------------------ submissions


def a_wrong_answer(q: Question):
    """A well-formed answer that differs from the key, as a student who slipped up might type it."""
    a = q.answer
    if q.kind in ("int", "hex"):
        return a + 1 if a != 0 else 1
    if q.kind == "bytes":
        return bytes([a[0] ^ 0x01]) + bytes(a[1:]) if a else b"\x00"
    if q.kind == "choice":
        return next(c for c in q.choices if c.lower() != str(a).lower())
    if q.kind == "list":
        flipped = list(reversed(a))
        return flipped if flipped != list(a) else list(a) + list(a[:1])
    return str(a) + "_x"


def answers_variable(nb) -> str:
    """The name of the dict the lab's test cells pass to check(..., answers)."""
    for cell in read_notebook(nb)["cells"]:
        if _nbgrader(cell).get("grade") and cell["cell_type"] == "code":
            m = CHECK_CALL.search(_source(cell))
            if m:
                return m.group(1)
    raise ClassroomError("no autograded test cell calls check(problem, answers): see labs/README.md, 'Writing a lab'")


def partly_wrong(reference, problem: Problem, module, question: str | None = None) -> tuple[dict, str, object, str]:
    """The reference notebook with one answer made wrong, the way a student would: a line added at the end of
    every solution cell. Returns (notebook, question id, wrong value, the checker's feedback for it)."""
    nb = json.loads(json.dumps(read_notebook(reference)))
    var = answers_variable(nb)
    key = problem.key()
    for q in problem.questions if question is None else [problem.question(question)]:
        wrong = a_wrong_answer(q)
        verdict = {f.question: f for f in module.check(problem, {**key, q.id: wrong})}
        if not verdict[q.id].ok and all(f.ok for qid, f in verdict.items() if qid != q.id):
            break
    else:
        raise ClassroomError(f"{problem.lab}: no question could be made wrong on its own")
    line = f"\n{var}[{q.id!r}] = {wrong!r}  # a slip"
    changed = 0
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and _nbgrader(cell).get("solution"):
            cell["source"] = _source(cell).rstrip("\n") + line
            changed += 1
    if not changed:
        raise ClassroomError(f"{problem.lab}: the notebook has no solution cells")
    for cell in nb["cells"]:  # a submission as a student saves it: outputs of the run before are stale anyway
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return nb, q.id, wrong, verdict[q.id].message


def _errors(nb) -> list[dict]:
    """The error outputs of a notebook: what a student sees where a cell failed (name, value, traceback)."""
    return [{"ename": out.get("ename", ""), "evalue": out.get("evalue", ""), "traceback": out.get("traceback", [])}
            for cell in read_notebook(nb)["cells"] for out in cell.get("outputs", [])
            if out.get("output_type") == "error"]


def _outputs_text(nb) -> str:
    parts = []
    for cell in read_notebook(nb)["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(_source({"source": out["text"]}))
            parts.extend(out.get("traceback", []))
            if "evalue" in out:
                parts.append(out["evalue"])
            for value in out.get("data", {}).values():
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------- pipelines


def build_student_versions(out: Path | None = None, labs_dir: Path = LABS_DIR, work: Path | None = None) -> dict[str, Path]:
    """`make student`: nbgrader generate_assignment for every lab, with the repository as the course.

    Student versions land in build/student/<lab>/<lab>.ipynb (REPO_LAYOUT), then each is checked for leaks.
    ``out``, ``labs_dir`` and ``work`` (where nbgrader keeps its gradebook) move the folders elsewhere.
    """
    notebooks = lab_notebooks(labs_dir)
    if not notebooks:
        raise ClassroomError(f"no labs in {labs_dir} (expected labs/<lab>/<lab>.ipynb)")
    layout = dict(REPO_LAYOUT)
    layout["source"] = os.path.relpath(Path(labs_dir).resolve(), ROOT)
    if out is not None:
        layout["release"] = os.path.relpath(Path(out).resolve(), ROOT)
    work = Path(work).resolve() if work is not None else BUILD
    work.mkdir(parents=True, exist_ok=True)
    layout["db"] = os.path.relpath(work / "gradebook.db", ROOT)
    course = Course(ROOT, layout)
    released = {}
    for name, source in notebooks.items():
        course.add_lab(name, source)
        released[name] = course.generate(name)
        check_release(released[name], name)
    return released


def check_release(student_nb: Path, name: str) -> None:
    """Raise ClassroomError if a student notebook reveals an answer for the seed it uses."""
    seed = notebook_seed(student_nb)
    if seed is None:
        raise ClassroomError(f"{student_nb}: no `SEED = N` line, so the problem it poses is unknown")
    module = lab_module(name)
    problem = module.generate(seed)
    found = leaks(student_nb, problem, vocabulary(module, problem))
    if found:
        found.sort(key=lambda leak: leak.question == "*")  # answers first, then outputs and markers
        more = f"; and {len(found) - 6} more" if len(found) > 6 else ""
        raise ClassroomError(f"{student_nb} reveals answers: " + "; ".join(map(str, found[:6])) + more)


def rehearse(root: Path, notebooks: dict[str, Path] | None = None, pythonpath=(), feedback: bool = True) -> dict:
    """Run a whole term on a throwaway course at ``root``: for each lab, release it, then autograde three
    submissions (the reference solution, the untouched student version, and a partly wrong one) and
    record the scores and where the checker's feedback for the wrong answer shows up."""
    notebooks = lab_notebooks() if notebooks is None else notebooks
    if not notebooks:
        raise ClassroomError(f"no labs to rehearse (expected {LABS_DIR}/<lab>/<lab>.ipynb)")
    course = Course(root, COURSE_LAYOUT, pythonpath=pythonpath)
    report = {}
    with _nbgrader_env(pythonpath):  # importing a fixture lab module needs the same path as its kernels
        for p in pythonpath:
            if str(Path(p).resolve()) not in sys.path:
                sys.path.insert(0, str(Path(p).resolve()))
        for name, source in notebooks.items():
            module = lab_module(name)
            source_nb = course.add_lab(name, source)
            release = course.generate(name)
            seed = notebook_seed(source_nb)
            problem = module.generate(seed)
            wrong_nb, qid, wrong, message = partly_wrong(source_nb, problem, module)
            subs = {"reference": source_nb, "untouched": release, "partial": wrong_nb}
            entry = {"seed": seed, "source": str(source_nb), "release": str(release),
                     "leaks": [str(x) for x in leaks(release, problem, vocabulary(module, problem))],
                     "partial": {"question": qid, "wrong": repr(wrong), "feedback": message}, "grades": {}}
            for student, nb in subs.items():
                course.submit(student, name, nb)
                grade = course.autograde(name, student)
                entry["grades"][student] = grade.as_dict()
            graded_partial = Path(entry["grades"]["partial"]["notebook"])
            entry["partial"]["feedback_in_autograded"] = message in _outputs_text(graded_partial)
            entry["partial"]["errors"] = _errors(graded_partial)
            if feedback:
                html = course.feedback(name, "partial")
                entry["partial"]["feedback_html"] = str(html)
                entry["partial"]["feedback_in_html"] = _html_contains(html, message)
            report[name] = entry
    return report


def _html_contains(path: Path, message: str) -> bool:
    import html

    text = Path(path).read_text(encoding="utf-8")
    return message in text or html.escape(message, quote=False) in text or html.escape(message) in text


def submitted_seeds(submitted: Path) -> list[tuple[str, str, int | None]]:
    """(student, lab, SEED) for every notebook under submitted/<student>/<lab>/<lab>.ipynb."""
    rows = []
    for nb in sorted(Path(submitted).glob("*/*/*.ipynb")):
        student, lab = nb.parts[-3], nb.parts[-2]
        if nb.stem == lab:
            rows.append((student, lab, notebook_seed(nb)))
    return rows


# ------------------------------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m helpers.classroom", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("student", help="student versions of every lab into build/student/ (make student)")
    s.add_argument("--labs", type=Path, default=LABS_DIR)
    s.add_argument("--out", type=Path, default=None, help="release folder (default build/student)")
    s.add_argument("--work", type=Path, default=None, help="where nbgrader keeps its gradebook (default build/)")
    r = sub.add_parser("rehearse", help="grade reference, untouched and partly wrong submissions in a scratch course")
    r.add_argument("root", type=Path, help="an empty folder for the scratch course")
    r.add_argument("--lab", action="append", default=[], metavar="NAME=NOTEBOOK",
                   help="only these labs (default: every labs/<lab>/<lab>.ipynb)")
    r.add_argument("--pythonpath", action="append", default=[], help="extra import path for lab modules")
    r.add_argument("--no-feedback", action="store_true", help="skip nbgrader generate_feedback")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("--report", type=Path, help="also write the JSON report to this file")
    k = sub.add_parser("leaks", help="check student notebooks reveal no answers")
    k.add_argument("notebooks", nargs="+", type=Path, help="<lab>.ipynb student versions")
    d = sub.add_parser("seeds", help="the SEED each student used, from a submitted/ folder")
    d.add_argument("submitted", type=Path)
    args = p.parse_args(argv)
    try:
        if args.cmd == "student":
            for name, path in build_student_versions(args.out, args.labs, args.work).items():
                shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
                print(f"{name:12} {shown}  (checked: reveals no answer)")
        elif args.cmd == "rehearse":
            chosen = None
            if args.lab:
                chosen = {}
                for item in args.lab:
                    name, _, nb = item.partition("=")
                    if not nb and name not in lab_notebooks():
                        raise ClassroomError(f"no lab notebook labs/{name}/{name}.ipynb; labs: "
                                             f"{', '.join(lab_notebooks()) or 'none yet'}")
                    chosen[name] = Path(nb) if nb else lab_notebooks()[name]
            report = rehearse(args.root, chosen, args.pythonpath, feedback=not args.no_feedback)
            if args.report:
                args.report.write_text(json.dumps(report, indent=1) + "\n")
            if args.json:
                print(json.dumps(report, indent=1))
            else:
                for name, e in report.items():
                    g = e["grades"]
                    print(f"{name:12} seed {e['seed']}: reference {g['reference']['score']:g}/{g['reference']['max_score']:g}, "
                          f"untouched {g['untouched']['score']:g}, partial {g['partial']['score']:g} "
                          f"({e['partial']['question']} wrong: {e['partial']['feedback']}); leaks: {len(e['leaks'])}")
        elif args.cmd == "leaks":
            bad = 0
            for nb in args.notebooks:
                try:
                    check_release(nb, nb.stem)
                    print(f"{nb}: no answers revealed")
                except ClassroomError as e:
                    bad += 1
                    print(f"{e}")
            return 1 if bad else 0
        elif args.cmd == "seeds":
            for student, lab, seed in submitted_seeds(args.submitted):
                print(f"{student}\t{lab}\t{'no SEED line' if seed is None else seed}")
        return 0
    except (ClassroomError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
