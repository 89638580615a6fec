"""The claims ledger as a whole (issue 6): the real chapters/claims.yml is complete and every piece of evidence
it names exists; and the validator itself catches broken ledgers (so the real-ledger test can fail)."""
import json
from pathlib import Path

import pytest

from helpers import ledger
from helpers.ledger import LedgerError

REPO = Path(__file__).resolve().parent.parent
LEDGER = REPO / "chapters" / "claims.yml"


# ---- the real ledger ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def entries():
    return ledger.load(LEDGER)


def test_ledger_lists_c01_to_c64_in_order(entries):
    assert [e.id for e in entries] == [f"C{i:02d}" for i in range(1, 65)]


def test_real_ledger_is_complete_and_its_evidence_exists(entries):
    problems = ledger.validate(entries, REPO)
    assert not problems, f"{len(problems)} ledger problem(s):\n" + "\n".join(problems)


def test_every_claim_is_paraphrased_with_its_article_section(entries):
    for e in entries:
        assert ledger.section_number(e.section)[0] in "12345", (e.id, e.section)
        assert len(e.claim.split()) >= 4 and e.claim.endswith("."), (e.id, e.claim)
        assert not ledger.CJK_RE.search(e.claim + e.fact), e.id
    # each of the article's chapters 1-5 has claims, in the article's order
    assert [ledger.chapter_of(e.section) for e in entries] == sorted(ledger.chapter_of(e.section) for e in entries)
    assert {ledger.chapter_of(e.section) for e in entries} == {"1", "2", "3", "4", "5"}


def test_every_evidence_has_a_kind_and_runs_have_cells(entries):
    for e in entries:
        assert e.kinds and set(e.kinds) <= set(ledger.KINDS), (e.id, e.kinds)
        if set(e.kinds) & set(ledger.RUN_KINDS):
            assert e.cells, e.id
    # a claim settled without any cell was read, not run
    assert all(e.kinds == ("source",) for e in entries if not e.cells)


def test_recorded_evidence_comes_from_a_recording(entries):
    """A `recorded` kind is claimed only where the evidence cell shows a recording made by a script here."""
    for e in entries:
        if "recorded" in e.kinds:
            cells = [s for c in e.cells for s in ledger.tagged_cells(REPO / c.split("#")[0], c.split("#")[1])]
            assert any("recorded" in s for s in cells), e.id


# The authors' folders, spelled in pieces so that this file, which looks for them, does not name them itself.
_SIBLING = "sha" + "red"
OUTSIDE_NAMES = ("/wo" + "rk/", "../" + _SIBLING, _SIBLING + "/claims", _SIBLING + "_dir")


def test_the_project_reads_nothing_outside_the_repository():
    """No notebook, helper or test names the authors' own folders (a reader's clone has no neighbours)."""
    hits = []
    for path in [*REPO.glob("chapters/*.ipynb"), *REPO.glob("labs/*/*.ipynb"), *REPO.glob("helpers/**/*.py"),
                 *REPO.glob("tests/**/*.py"), *REPO.glob("benchmarks/*.py"), REPO / "Makefile", REPO / "README.md", REPO / "labs" / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for needle in OUTSIDE_NAMES:
            if needle in text:
                hits.append(f"{path.relative_to(REPO)}: {needle}")
    assert not hits, hits


# ---- the validator on deliberately broken ledgers ----------------------------------------------------------


def _nb(cells):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {"tags": tags}, "source": src, "outputs": [], "execution_count": None}
        for src, tags in cells]}


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "01_x.ipynb").write_text(json.dumps(_nb([
        ("x = 1\nassert x == 1\n", ["claim-C01"]),
        ("print('no check here')  # assert nothing\n", ["claim-C02"]),
        ("%matplotlib inline\nassert True\n", ["claim-C03", "nbval-ignore-output"]),
    ])))
    return tmp_path


def _entry(cid, verdict="holds", cell=None, source="golang/go src/runtime/stack.go", fact="A fact.",
           kind="source", section="1"):
    ev = {}
    if cell is not None:
        ev["cell"] = cell
    if source is not None:
        ev["source"] = source
    if kind is not None:
        ev["kind"] = kind
    return {"id": cid, "section": section, "claim": f"The article's claim {cid}, paraphrased.",
            "verdict": verdict, "fact": fact, "evidence": ev}


def _good():
    return [_entry("C01", cell="chapters/01_x.ipynb#claim-C01", kind="native run"),
            _entry("C02", verdict="wrong", source="ISO C99 §5.1.2.2.3"),
            _entry("C03", verdict="partly", cell="chapters/01_x.ipynb#claim-C03",
                   source="GCC manual, x86 Function Attributes", kind=["emulator", "source"], section="2.1")]


def _validate(items, repo, ids=None):
    import yaml
    return ledger.validate(ledger.load(yaml.safe_dump(items, allow_unicode=True)), repo, ids=ids)


def test_sound_ledger_has_no_problems(repo):
    assert _validate(_good(), repo) == []


def test_missing_id_is_reported(repo):
    assert _validate(_good()[:2], repo, ids=["C01", "C02", "C03"]) == ["C03: missing from the ledger"]
    assert _validate([_good()[0], _good()[2]], repo) == ["C02: missing from the ledger"]   # a gap in the numbering


def test_duplicate_unknown_and_unordered_ids_are_reported(repo):
    items = _good() + [_entry("C01", section="5"), _entry("C99", section="5")]
    problems = _validate(items, repo, ids=["C01", "C02", "C03"])
    assert "C01: appears 2 times" in problems
    assert "C99: not an expected claim ID" in problems
    assert "entries are not in ID order" in problems
    assert "entries are not in ID order" in _validate(_good()[::-1], repo)


def test_claim_paraphrase_is_required_and_english(repo):
    items = _good()
    items[0]["claim"] = ""
    items[1]["claim"] = "\u4e0d\u5199 return 0 \u662f\u672a\u5b9a\u4e49\u884c\u4e3a"
    assert _validate(items, repo) == [
        "C01: no claim (the article's statement, paraphrased)",
        "C02: the claim must be an English paraphrase, not the article's own words"]


def test_sections_must_follow_the_article_order(repo):
    items = _good()
    items[1]["section"] = "3.1"
    assert _validate(items, repo) == ["C03: section 2.1 comes before C02's 3.1; IDs follow the article's order"]
    items[1]["section"] = ""
    assert _validate(items, repo) == ["C02: no section of the article"]


def test_evidence_kinds_are_checked(repo):
    items = _good()
    items[0]["evidence"]["kind"] = "ran it"
    items[1]["evidence"]["kind"] = "native run"          # a run needs a cell; C02 has only a source
    del items[2]["evidence"]["kind"]
    assert _validate(items, repo) == [
        "C01: evidence kind 'ran it' is not one of real kernel, QEMU, emulator, native run, recorded, source",
        "C02: evidence kind 'native run' needs a cell that runs it",
        "C03: evidence needs a kind (real kernel, QEMU, emulator, native run, recorded, source)"]
    items = _good()
    items[2]["evidence"]["kind"] = ["source", "source"]
    assert _validate(items, repo) == ["C03: evidence kind listed twice"]


def test_bad_verdict_is_reported(repo):
    items = _good()
    items[1]["verdict"] = "mostly"
    assert any(p.startswith("C02: verdict 'mostly'") for p in _validate(items, repo))


def test_cell_without_assert_is_reported(repo):
    items = _good()
    items[1]["evidence"]["cell"] = "chapters/01_x.ipynb#claim-C02"
    assert _validate(items, repo) == ["C02: the cell tagged claim-C02 in chapters/01_x.ipynb has no assert"]


def test_nonexistent_notebook_and_missing_tag_are_reported(repo):
    items = _good()
    items[0]["evidence"]["cell"] = "chapters/07_nowhere.ipynb#claim-C01"
    problems = _validate(items, repo)
    assert problems == ["C01: notebook chapters/07_nowhere.ipynb does not exist"]
    items = _good()
    (repo / "chapters" / "02_y.ipynb").write_text(json.dumps(_nb([("assert 1\n", ["claim-C09"])])))
    items[0]["evidence"]["cell"] = "chapters/02_y.ipynb#claim-C01"
    assert _validate(items, repo) == ["C01: no code cell tagged claim-C01 in chapters/02_y.ipynb"]


def test_cell_anchor_must_match_id_and_form(repo):
    items = _good()
    items[0]["evidence"]["cell"] = "chapters/01_x.ipynb#claim-C03"
    assert _validate(items, repo) == ["C01: cell anchor claim-C03 does not match the entry's id"]
    items[0]["evidence"]["cell"] = "chapters/01_x.ipynb"
    assert "is not of the form" in _validate(items, repo)[0]


def test_sources_must_name_repo_and_path_or_manual_and_section(repo):
    for bad in ("the Go source", "golang/go", "https://go.dev", "Intel manual"):
        items = _good()
        items[1]["evidence"]["source"] = bad
        assert any("names neither" in p for p in _validate(items, repo)), bad
    items = _good()
    items[1]["evidence"]["source"] = "golang/go src/runtime/stack.go; Intel SDM Vol. 3A §6.14.1"
    assert _validate(items, repo) == []


def test_entry_without_evidence_or_fact_is_reported(repo):
    items = _good()
    items[1]["evidence"] = {}
    items[1]["fact"] = ""
    assert _validate(items, repo) == ["C02: no fact", "C02: evidence needs a cell, a source, or both",
                                      "C02: evidence needs a kind (real kernel, QEMU, emulator, native run, recorded, "
                                      "source)"]


@pytest.mark.parametrize("text, message", [
    ("- id: C01\n  verdict: [\n", "not valid YAML"),
    ("id: C01\n", "a ledger is a YAML list"),
    ("- id: 7\n", "id must look like C07"),
    ("- id: C01\n  verdikt: holds\n", "unknown key(s) verdikt"),
    ("- id: C01\n  evidence: {cel: x}\n", "unknown evidence key(s) cel"),
    ("- id: C01\n  evidence: {kind: {a: 1}}\n", "evidence.kind must be a string or a list of strings"),
])
def test_malformed_ledgers_raise_one_line_errors(text, message):
    with pytest.raises(LedgerError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        ledger.load(text)
    assert "\n" not in str(info.value)


def test_chapter_5_shows_the_current_ledger(entries):
    """Chapter 5 is committed executed: its ledger table must be the ledger as it is now (after any entry
    changes, re-execute the chapter; strict nbval would fail on the same difference, less readably)."""
    nb = json.loads((REPO / "chapters" / "05_conclusion.ipynb").read_text(encoding="utf-8"))
    shown = ["".join(o["data"]["text/html"]) for c in nb["cells"] if c["cell_type"] == "code"
             and "html_table" in "".join(c["source"]) for o in c["outputs"] if "text/html" in o.get("data", {})]
    assert shown, "chapter 5 has no executed ledger table"
    assert shown[0] == ledger.html_table(entries), (
        "chapters/05_conclusion.ipynb shows an older ledger than chapters/claims.yml: re-execute it "
        "(jupyter nbconvert --to notebook --execute --inplace chapters/05_conclusion.ipynb, then python -m "
        "helpers.nbclean chapters/05_conclusion.ipynb)")
