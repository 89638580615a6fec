"""The claims ledger as a whole (issue 6): the real chapters/claims.yml is complete and every piece of evidence
it names exists; and the validator itself catches broken ledgers (so the real-ledger test can fail)."""
import json
from pathlib import Path

import pytest

from helpers import ledger
from helpers.ledger import Claim, LedgerError

REPO = Path(__file__).resolve().parent.parent
SHARED = ledger.shared_dir(REPO)


# ---- the real ledger ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def claims():
    if not (SHARED / "claims.md").exists():
        pytest.skip(f"shared/claims.md not found at {SHARED} (shared/ must sit beside the checkout)")
    return ledger.read_claims(SHARED / "claims.md")


def test_claims_md_lists_c01_to_c64(claims):
    assert [c.id for c in claims] == [f"C{i:02d}" for i in range(1, 65)]


def test_real_ledger_is_complete_and_its_evidence_exists(claims):
    path = REPO / "chapters" / "claims.yml"
    assert path.exists(), "chapters/claims.yml is missing: python -m helpers.ledger merge /work/team/claims > chapters/claims.yml"
    entries = ledger.load(path)
    problems = ledger.validate(entries, claims, REPO)
    assert not problems, f"{len(problems)} ledger problem(s):\n" + "\n".join(problems)
    assert [e.id for e in entries] == [c.id for c in claims], "ledger entries are not in ID order"


def test_real_ledger_sections_match_claims_md(claims):
    path = REPO / "chapters" / "claims.yml"
    if not path.exists():
        pytest.skip("chapters/claims.yml not assembled yet")
    sections = {c.id: c.section for c in claims}
    wrong = [f"{e.id}: {e.section!r} vs {sections[e.id]!r}" for e in ledger.load(path)
             if e.id in sections and ledger.chapter_of(e.section) != ledger.chapter_of(sections[e.id])]
    assert not wrong, "sections disagree with shared/claims.md: " + "; ".join(wrong)


# ---- the validator on deliberately broken ledgers ----------------------------------------------------------
CLAIMS = [Claim("C01", "1", "a"), Claim("C02", "1", "b"), Claim("C03", "2.1", "c")]


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


def _entry(cid, verdict="holds", cell=None, source="golang/go src/runtime/stack.go", fact="A fact."):
    ev = {}
    if cell is not None:
        ev["cell"] = cell
    if source is not None:
        ev["source"] = source
    return {"id": cid, "section": "1", "verdict": verdict, "fact": fact, "evidence": ev}


def _good():
    return [_entry("C01", cell="chapters/01_x.ipynb#claim-C01"),
            _entry("C02", verdict="wrong", source="ISO C99 §5.1.2.2.3"),
            _entry("C03", verdict="partly", cell="chapters/01_x.ipynb#claim-C03",
                   source="GCC manual, x86 Function Attributes")]


def _validate(items, repo):
    import yaml
    return ledger.validate(ledger.load(yaml.safe_dump(items)), CLAIMS, repo)


def test_sound_ledger_has_no_problems(repo):
    assert _validate(_good(), repo) == []


def test_missing_id_is_reported(repo):
    problems = _validate(_good()[:2], repo)
    assert problems == ["C03: missing from the ledger"]


def test_duplicate_and_unknown_ids_are_reported(repo):
    items = _good() + [_entry("C01"), _entry("C99")]
    problems = _validate(items, repo)
    assert "C01: appears 2 times" in problems
    assert "C99: not a claim in shared/claims.md" in problems


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
    assert _validate(items, repo) == ["C02: no fact", "C02: evidence needs a cell, a source, or both"]


@pytest.mark.parametrize("text, message", [
    ("- id: C01\n  verdict: [\n", "not valid YAML"),
    ("id: C01\n", "a ledger is a YAML list"),
    ("- id: 7\n", "id must look like C07"),
    ("- id: C01\n  verdikt: holds\n", "unknown key(s) verdikt"),
    ("- id: C01\n  evidence: {cel: x}\n", "unknown evidence key(s) cel"),
])
def test_malformed_ledgers_raise_one_line_errors(text, message):
    with pytest.raises(LedgerError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        ledger.load(text)
    assert "\n" not in str(info.value)
