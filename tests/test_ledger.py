"""helpers.ledger: parsing claims.md, finding tagged cells, dump/load round trips, summaries and the staging merge."""
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, strategies as st

from helpers import ledger
from helpers.ledger import Claim, Entry, LedgerError

CLAIMS_MD = """# Claims
| ID | § | claim (paraphrased) |
|---|---|---|
| C01 | 1 | In C, leaving out `return 0` is bad. |
| C02 | 1 (table) | A claim with a | pipe. |
| C10 | 2.1 | Another. |
"""


def test_read_claims_parses_the_table(tmp_path):
    (tmp_path / "claims.md").write_text(CLAIMS_MD)
    claims = ledger.read_claims(tmp_path / "claims.md")
    assert claims == [Claim("C01", "1", "In C, leaving out `return 0` is bad."),
                      Claim("C02", "1 (table)", "A claim with a | pipe."), Claim("C10", "2.1", "Another.")]


def test_read_claims_errors(tmp_path):
    with pytest.raises(LedgerError, match="not found"):
        ledger.read_claims(tmp_path / "nope.md")
    (tmp_path / "x.md").write_text("no table\n")
    with pytest.raises(LedgerError, match="no claim rows"):
        ledger.read_claims(tmp_path / "x.md")


def test_shared_dir_is_beside_the_checkout(tmp_path):
    assert ledger.shared_dir(tmp_path / "main") == (tmp_path / "shared").resolve()


@pytest.mark.parametrize("src, expected", [
    ("assert x == 1", True),
    ("if y:\n    assert y > 0, 'msg'", True),
    ("%time x = 1\nassert x", True),
    ("# assert x\nprint('assert')", False),
    ("x = 'assert'", False),
    ("def f(:\n  assert 1", False),
])
def test_has_assert(src, expected):
    assert ledger.has_assert(src) is expected


def test_tagged_cells_reads_list_and_string_sources(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["claim-C01"]}, "source": ["a = 1\n", "assert a"]},
                    {"cell_type": "markdown", "metadata": {"tags": ["claim-C01"]}, "source": "assert no"},
                    {"cell_type": "code", "metadata": {}, "source": "assert 0"}]}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb))
    assert ledger.tagged_cells(tmp_path / "n.ipynb", "claim-C01") == ["a = 1\nassert a"]


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=80).filter(
    lambda s: s.strip())
_entries = st.lists(st.builds(
    Entry,
    id=st.integers(1, 99).map(lambda i: f"C{i:02d}"),
    section=st.sampled_from(["1", "2.1", "3.2 (table)", "5", "4.3"]),
    verdict=st.sampled_from(ledger.VERDICTS),
    fact=_text.map(lambda s: " ".join(s.split())),
    cells=st.lists(_text.map(str.strip), max_size=2).map(tuple),
    sources=st.lists(_text.map(str.strip), max_size=2).map(tuple),
), max_size=5)


@given(_entries)
def test_dump_load_round_trip(entries):
    back = ledger.load(ledger.dump(entries))
    assert [(e.id, e.section, e.verdict, e.fact, e.cells, e.sources) for e in back] == \
           [(e.id, e.section, e.verdict, e.fact, e.cells, e.sources) for e in entries]


def test_dump_uses_the_claims_md_format():
    e = Entry("C32", "3.1", "partly", "The fact.", ("chapters/03_interrupts.ipynb#claim-C32",),
              ("torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)",))
    assert ledger.dump([e]) == (
        '- id: C32\n  section: "3.1"\n  verdict: partly\n  fact: >-\n    The fact.\n  evidence:\n'
        '    cell: chapters/03_interrupts.ipynb#claim-C32\n'
        '    source: torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)\n')


def _stage(tmp_path, files):
    d = tmp_path / "claims"
    d.mkdir()
    for name, items in files.items():
        (d / name).write_text(yaml.safe_dump(items))
    return d


def _item(cid):
    return {"id": cid, "section": "1", "verdict": "holds", "fact": f"fact {cid}",
            "evidence": {"source": "golang/go src/runtime/stack.go"}}


CLAIMS = [Claim("C01", "1", "a"), Claim("C02", "1", "b"), Claim("C10", "2.1", "c")]


def test_merge_orders_by_id_and_keeps_each_once(tmp_path):
    d = _stage(tmp_path, {"b.yml": [_item("C10"), _item("C01")], "a.yml": [_item("C02")]})
    merged = ledger.load(ledger.merge(d, CLAIMS))
    assert [e.id for e in merged] == ["C01", "C02", "C10"]
    assert merged[2].fact == "fact C10"


def test_merge_rejects_duplicates_unknown_and_missing(tmp_path):
    d = _stage(tmp_path, {"a.yml": [_item("C01")], "b.yml": [_item("C01"), _item("C02"), _item("C10")]})
    with pytest.raises(LedgerError, match="C01 appears in both a.yml and b.yml"):
        ledger.merge(d, CLAIMS)
    d2 = _stage(tmp_path / "x", {"a.yml": [_item("C01"), _item("C77")]}) if (tmp_path / "x").mkdir() is None else None
    with pytest.raises(LedgerError, match="C77 is not a claim"):
        ledger.merge(d2, CLAIMS)
    d3 = _stage(tmp_path / "y", {"a.yml": [_item("C02")]}) if (tmp_path / "y").mkdir() is None else None
    with pytest.raises(LedgerError, match="2 claim\\(s\\) have no entry yet: C01, C10"):
        ledger.merge(d3, CLAIMS)
    assert [e.id for e in ledger.load(ledger.merge(d3, CLAIMS, allow_missing=True))] == ["C02"]


def test_merge_cli(tmp_path, capsys):
    d = _stage(tmp_path, {"a.yml": [_item("C01"), _item("C02"), _item("C10")]})
    (tmp_path / "claims.md").write_text(CLAIMS_MD)
    # the CLI reads shared/claims.md; here we exercise the error path with a missing folder and the usage text
    assert ledger.main(["merge", str(tmp_path / "none")]) == 1
    assert "staging folder not found" in capsys.readouterr().err
    assert ledger.main([]) == 2


def test_by_section_and_counts():
    es = [Entry("C01", "1", "wrong", "f"), Entry("C03", "1 (table)", "holds", "f"), Entry("C05", "2.1", "holds", "f"),
          Entry("C40", "3.2 (table)", "fabricated", "f")]
    s = ledger.by_section(es, normalize=False)
    assert list(s) == ["1", "1 (table)", "2.1", "3.2 (table)"]
    assert s["1"]["wrong"] == 1 and s["2.1"]["holds"] == 1
    assert ledger.verdict_counts(es) == {"holds": 2, "partly": 0, "wrong": 1, "fabricated": 1, "unverifiable": 0}
    assert [ledger.chapter_of(e.section) for e in es] == ["1", "1", "2", "3"]


def test_section_number_and_by_section_normalises():
    assert [ledger.section_number(s) for s in ("3.2 (table)", "1", "2.2 (diagram)", "x")] == ["3.2", "1", "2.2", "x"]
    es = [Entry("C01", "1", "wrong", "f"), Entry("C03", "1 (table)", "holds", "f")]
    assert ledger.by_section(es) == {"1": {"holds": 1, "partly": 0, "wrong": 1, "fabricated": 0, "unverifiable": 0}}


def test_markdown_table_links_cells_and_lists_pending_claims():
    claims = [Claim("C01", "1", "a | b"), Claim("C02", "1", "c")]
    es = [Entry("C01", "1", "wrong", "x|y", ("chapters/01_go_vs_c.ipynb#claim-C01",), ("ISO C99 §5.1.2.2.3",))]
    table = ledger.markdown_table(es, claims).splitlines()
    assert table[2] == ("| C01 | 1 | a \\| b | **wrong** | x\\|y | [01_go_vs_c](01_go_vs_c.ipynb#claim-C01)"
                        "<br>`ISO C99 §5.1.2.2.3` |")
    assert table[3] == "| C02 | 1 | c | *pending* | | |"
    assert ledger.evidence_link("labs/idt/idt.ipynb#claim-C33") == "[idt](../labs/idt/idt.ipynb#claim-C33)"


def test_plot_verdicts_draws_one_bar_per_section_and_verdict():
    from helpers.viz.ledger import plot_verdicts
    fig = plot_verdicts({"1": {"holds": 1, "wrong": 2}, "5": {"fabricated": 1}})
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(ledger.VERDICTS)
    assert sorted(p.get_height() for p in ax.patches if p.get_height()) == [1, 1, 2]
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_verdicts({})
