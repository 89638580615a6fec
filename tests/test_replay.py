"""helpers.replay: a cell that needs a missing tool shows its committed outputs, labelled as a recording.

The end-to-end tests execute a small notebook in a real kernel twice: with the pinned Go (its outputs become
the committed ones), then with Go hidden (BOOK_HIDE_TOOLS=go,zig, as helpers.toolless mode 2 does).
"""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbclient import NotebookClient

from helpers import toolchain
from helpers.nbval_replay import after_last_note
from helpers.replay import NOTE, bound_names, recorded_outputs

ROOT = Path(__file__).resolve().parents[1]
GO_MAIN = "package main\\n\\nfunc main() {}\\n"
CELLS = [
    "from helpers import toolchain\nprint('before the build')\nb = toolchain.go_build('" + GO_MAIN + "')\nprint('built with', b.tool)",
    "print('uses b:', b.tool)",                                  # needs a name the replayed cell would define
    "runs = {}\nfor k in ('a', 'b'):\n    runs[k] = toolchain.require('go').version",   # fails midway
    "print(sorted(runs))",                                       # partial state must not leak into this cell
    "print('live:', 6 * 7)",                                     # needs nothing missing: runs live
    "undefined_here",                                            # a real NameError, recorded as an error too
]


def _execute(nb, cwd, env=None):
    """Run every cell as "Run all" does: an error stops the run (unless the cell is tagged raises-exception)."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                       resources={"metadata": {"path": str(cwd)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """The notebook as the book commits it: executed with the pinned toolchains."""
    toolchain.require("go")
    d = tmp_path_factory.mktemp("replay")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.cells[-1].metadata["tags"] = ["raises-exception"]
    _execute(nb, d, {"PYTHONPATH": str(ROOT)})
    nbformat.write(nb, d / "t.ipynb")
    return d / "t.ipynb"


@pytest.fixture(scope="module")
def without_go(committed):
    nb = nbformat.read(committed, as_version=4)
    for c in nb.cells:
        c.outputs = []
    return _execute(nb, committed.parent, {"BOOK_HIDE_TOOLS": "go,zig", "PYTHONPATH": str(ROOT)})


def _shown(outputs):
    """What a reader sees in the cell, as (kind, text) pairs, the note first."""
    out = []
    for o in outputs:
        if o["output_type"] == "stream":      # consecutive writes to one stream read as one text
            if out and out[-1][0] == o["name"]:
                out[-1] = (o["name"], out[-1][1] + o["text"])
            else:
                out.append((o["name"], o["text"]))
        elif o["output_type"] in ("display_data", "execute_result"):
            out.append(("note" if o.get("metadata", {}).get(NOTE) else "data", o["data"].get("text/plain", "")))
        elif o["output_type"] == "error":
            out.append(("error", o["ename"]))
    return out


def test_a_cell_that_needs_go_shows_its_recording_under_a_note(committed, without_go):
    ref = nbformat.read(committed, as_version=4)
    assert _shown(ref.cells[0].outputs) == [("stdout", f"before the build\nbuilt with go{toolchain.GO_VERSION}\n")]
    shown = _shown(after_last_note(without_go.cells[0].outputs))
    assert shown == _shown(ref.cells[0].outputs)           # the recording, exactly
    note = [t for k, t in _shown(without_go.cells[0].outputs) if k == "note"]
    assert len(note) == 1 and "Recorded output" in note[0] and "go not found" in note[0] and "\n" not in note[0]


def test_what_the_cell_printed_before_it_failed_is_cleared(without_go):
    outs = without_go.cells[0].outputs
    note_at = next(i for i, o in enumerate(outs) if o.get("metadata", {}).get(NOTE))
    # nbclient applies clear_output as a front end does: the live "before the build" line is gone
    assert all("before the build" not in o.get("text", "") for o in outs[:note_at])


def test_a_cell_needing_what_a_recorded_cell_defined_is_a_recording_too(committed, without_go):
    ref = nbformat.read(committed, as_version=4)
    shown = _shown(without_go.cells[1].outputs)
    assert shown[0][0] == "note" and "'b'" in shown[0][1]
    assert shown[1:] == _shown(ref.cells[1].outputs)


def test_partial_state_of_a_failed_cell_is_not_left_behind(committed, without_go):
    ref = nbformat.read(committed, as_version=4)
    # cell 2 failed after `runs = {}`: runs is dropped, so cell 3 is a recording, not a live `[]`
    assert _shown(after_last_note(without_go.cells[3].outputs)) == _shown(ref.cells[3].outputs) == [
        ("stdout", "['a', 'b']\n")]
    assert any(o.get("metadata", {}).get(NOTE) for o in without_go.cells[3].outputs)


def test_other_cells_run_live_and_real_errors_stay_errors(without_go):
    assert _shown(without_go.cells[4].outputs) == [("stdout", "live: 42\n")]
    assert _shown(without_go.cells[5].outputs) == [("error", "NameError")]


def test_nbval_passes_with_the_plugin_and_sees_the_note_without_it(committed):
    env = {**os.environ, "BOOK_HIDE_TOOLS": "go,zig", "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval", str(committed)]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=committed.parent)
    assert ok.returncode == 0, ok.stdout[-2000:]
    bare = subprocess.run(argv + ["-p", "no:why_not_go_replay"], capture_output=True, text=True, timeout=300, env=env,
                          cwd=committed.parent)
    assert bare.returncode != 0 and "Unexpected output fields" in bare.stdout


def test_recorded_outputs_finds_a_cell_by_id_then_by_source(tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x = 1")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="first\n")]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="second\n")]
    nbformat.write(nb, tmp_path / "a.ipynb")
    def text(outs):
        return "".join(outs[0]["text"])      # nbformat stores a stream as a list of lines
    assert text(recorded_outputs("x = 1", tmp_path)) == "first\n"
    assert text(recorded_outputs("x = 1", tmp_path, cell_id=nb.cells[1].id)) == "second\n"
    assert recorded_outputs("y = 2", tmp_path) is None
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert text(recorded_outputs("x = 1\n", tmp_path)) == "first\n"     # a broken notebook is skipped
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "a.ipynb"))
    assert text(recorded_outputs("x = 1", "/nonexistent")) == "first\n"


def test_an_autograded_test_cell_is_never_replayed(tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    test = nbformat.v4.new_code_cell("expect(feedback, 'form')")
    test.metadata["nbgrader"] = {"grade": True, "grade_id": "test_form", "locked": True, "points": 1}
    test.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ correct\n")]
    solution = nbformat.v4.new_code_cell("answers['form'] = 'small'")
    solution.metadata["nbgrader"] = {"grade": False, "solution": True, "grade_id": "answer_form"}
    nbformat.write(nbformat.v4.new_notebook(cells=[test, solution]), tmp_path / "lab.ipynb")
    # a grade must come from the student's own run: a missing tool there is a failure, not full marks
    assert recorded_outputs("expect(feedback, 'form')", tmp_path) is None
    assert recorded_outputs("expect(feedback, 'form')", tmp_path, cell_id=test.id) is None
    assert recorded_outputs("answers['form'] = 'small'", tmp_path) == []


def test_bound_names_are_what_the_cell_binds_in_its_own_scope():
    src = ("import os\nfrom a import b as c\nruns = {}\nfor i, (j, *k) in z:\n    r = runs[i] = 1\n"
           "with open(f) as fh:\n    pass\ndef f():\n    inner = 1\nclass C: pass\nn += 1\nobj.attr = 5\n"
           "d[key] = 1\nif q:\n    yes = 1\nelse:\n    no = 2\ntry:\n    t = 1\nexcept E as err:\n    h = 2\n"
           "[w for w in z]\n")
    assert bound_names(src) == {"runs", "i", "j", "k", "r", "fh", "f", "C", "n", "yes", "no", "t", "err", "h"}
    assert bound_names("def (") == set()


_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in {"if", "in", "is", "or", "as", "and", "for", "def", "del", "not", "try", "else", "elif",
                        "from", "with", "pass", "None", "True", "while", "class", "break", "raise", "yield",
                        "async", "await", "global", "import", "lambda", "return", "except", "assert", "finally",
                        "continue", "nonlocal", "false", "true", "match", "case"})


@given(st.lists(st.tuples(_NAMES, st.sampled_from(["{} = 1", "{} += 1", "for {} in z: pass", "import {}",
                                                  "{}.x = 1", "{}[0] = 1", "def {}(): pass"])), max_size=8))
@settings(max_examples=200, deadline=None)
def test_bound_names_property(stmts):
    src = "\n".join(form.format(name) for name, form in stmts)
    binding = {name for name, form in stmts if not form.startswith(("import", "{}.", "{}["))}
    assert bound_names(src) == binding


def test_the_book_registers_the_nbval_plugin():
    meta = (ROOT / "pyproject.toml").read_text()
    assert 'why_not_go_replay = "helpers.nbval_replay"' in meta
    out = subprocess.run([sys.executable, "-m", "pytest", "--trace-config", "--co", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "test_replay.py::test_the_book_registers_the_nbval_plugin")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "<module 'helpers.nbval_replay'" in out.stdout       # loaded by its entry point, no -p needed


def test_install_outside_a_kernel_changes_nothing():
    code = "import sys, helpers; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.stdout.strip() == "False"          # importing helpers does not pull IPython in
