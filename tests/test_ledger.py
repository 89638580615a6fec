"""helpers.ledger: finding tagged cells, dump/load round trips, summaries, tables and the staging merge."""
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, strategies as st

from helpers import ledger
from helpers.ledger import Entry, LedgerError

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
    kinds=st.lists(st.sampled_from(ledger.KINDS), max_size=3, unique=True).map(tuple),
    claim=st.one_of(st.just(""), _text.map(lambda s: " ".join(s.split()))),
), max_size=5)


def _fields(e):
    return (e.id, e.section, e.claim, e.verdict, e.fact, e.cells, e.sources, e.kinds)


@given(_entries)
def test_dump_load_round_trip(entries):
    back = ledger.load(ledger.dump(entries))
    assert [_fields(e) for e in back] == [_fields(e) for e in entries]


def test_dump_uses_the_ledger_format():
    e = Entry("C32", "3.1", "partly", "The fact.", ("chapters/03a_idt_gates.ipynb#claim-C32",),
              ("torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)",), ("emulator", "source"),
              claim="The article says so.")
    assert ledger.dump([e]) == (
        '- id: C32\n  section: "3.1"\n  claim: >-\n    The article says so.\n  verdict: partly\n'
        '  fact: >-\n    The fact.\n  evidence:\n'
        '    cell: chapters/03a_idt_gates.ipynb#claim-C32\n'
        '    source: torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)\n'
        '    kind:\n      - emulator\n      - source\n')


def _stage(tmp_path, files):
    d = tmp_path / "claims"
    d.mkdir()
    for name, items in files.items():
        (d / name).write_text(yaml.safe_dump(items))
    return d


def _item(cid):
    return {"id": cid, "section": "1", "verdict": "holds", "fact": f"fact {cid}",
            "evidence": {"source": "golang/go src/runtime/stack.go"}}


IDS = ["C01", "C02", "C10"]


def test_merge_orders_by_id_and_keeps_each_once(tmp_path):
    d = _stage(tmp_path, {"b.yml": [_item("C10"), _item("C01")], "a.yml": [_item("C02")]})
    merged = ledger.load(ledger.merge(d, IDS))
    assert [e.id for e in merged] == ["C01", "C02", "C10"]
    assert merged[2].fact == "fact C10"


def test_merge_rejects_duplicates_unknown_and_missing(tmp_path):
    d = _stage(tmp_path, {"a.yml": [_item("C01")], "b.yml": [_item("C01"), _item("C02"), _item("C10")]})
    with pytest.raises(LedgerError, match="C01 appears in both a.yml and b.yml"):
        ledger.merge(d, IDS)
    d2 = _stage(tmp_path / "x", {"a.yml": [_item("C01"), _item("C77")]}) if (tmp_path / "x").mkdir() is None else None
    with pytest.raises(LedgerError, match="C77 is not an ID of the ledger"):
        ledger.merge(d2, IDS)
    d3 = _stage(tmp_path / "y", {"a.yml": [_item("C02")]}) if (tmp_path / "y").mkdir() is None else None
    with pytest.raises(LedgerError, match="2 claim\\(s\\) have no entry yet: C01, C10"):
        ledger.merge(d3, IDS)
    assert [e.id for e in ledger.load(ledger.merge(d3, IDS, allow_missing=True))] == ["C02"]


def test_merge_defaults_to_the_ledgers_own_ids(tmp_path):
    ids = [e.id for e in ledger.load(ledger.LEDGER)]
    d = _stage(tmp_path, {"a.yml": [_item(cid) for cid in ids]})
    assert [e.id for e in ledger.load(ledger.merge(d))] == ids


def test_merge_and_check_cli(tmp_path, capsys):
    d = _stage(tmp_path, {"a.yml": [_item("C01"), _item("C02"), _item("C10")]})
    assert ledger.main(["merge", str(tmp_path / "none")]) == 1
    assert "staging folder not found" in capsys.readouterr().err
    assert ledger.main(["merge", str(d)]) == 1            # C01, C02, C10 are not all of the book's IDs
    assert "claim(s) have no entry yet" in capsys.readouterr().err
    assert ledger.main(["check"]) == 0
    assert capsys.readouterr().out.endswith("entries, 0 problem(s)\n")
    (tmp_path / "bad.yml").write_text(yaml.safe_dump([_item("C01"), _item("C03")]))
    assert ledger.main(["check", str(tmp_path / "bad.yml")]) == 1
    out = capsys.readouterr().out
    assert "C02: missing from the ledger" in out and "C01: no claim" in out and "C01: evidence needs a kind" in out
    assert ledger.main([]) == 2 and ledger.main(["check", "a", "b"]) == 2


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


def test_evidence_links_are_relative_to_the_chapter():
    assert ledger.evidence_link("chapters/01_go_vs_c.ipynb#claim-C01") == \
        '<a href="01_go_vs_c.ipynb#claim-C01">01_go_vs_c</a>'
    assert ledger.evidence_link("labs/idt/idt.ipynb#claim-C33") == '<a href="../labs/idt/idt.ipynb#claim-C33">idt</a>'
    assert ledger.evidence_link("<not a cell>") == "&lt;not a cell&gt;"


def test_html_table_wraps_and_escapes():
    es = [Entry("C01", "1", "wrong", "a < b & c", ("chapters/01_go_vs_c.ipynb#claim-C01",),
                ("golang/go src/" + "x" * 300 + ".go",), ("native run", "source"), claim="<script>x</script>")]
    t = ledger.html_table(es)
    assert t.startswith('<table class="mathjax_ignore tex2jax_ignore" style="table-layout:fixed; width:100%')
    assert t.count("<col ") == len(ledger.HTML_COLUMNS) and sum(w for _n, w in ledger.HTML_COLUMNS) == 100
    assert "<script>" not in t and "&lt;script&gt;" in t and "a &lt; b &amp; c" in t
    assert '<a href="01_go_vs_c.ipynb#claim-C01">01_go_vs_c</a>' in t and "<i>native run, source</i>" in t
    assert "<b>C01</b> (article §1)<br>&lt;script&gt;" in t and "<b>wrong</b>: a &lt; b" in t
    assert t.count("overflow-wrap:break-word") == 2 * len(ledger.HTML_COLUMNS) + 1   # th, td, the long source


# What JupyterLab 4's HTML sanitizer keeps (@jupyterlab/apputils sanitizer.ts, allowedStyles): anything else is
# silently dropped from an untrusted notebook's output, and the table would lose its wrapping there.
SANITIZER_VALUES = {"text-align": {"left", "right", "center", "justify"}, "vertical-align": {"top", "middle"},
                    "white-space": {"normal", "pre", "nowrap", "pre-wrap", "pre-line"},
                    "overflow-wrap": {"normal", "break-word"}, "table-layout": {"auto", "fixed"}}


def test_html_table_styles_survive_jupyterlabs_sanitizer():
    import re
    es = [Entry("C01", "1", "wrong", "f", ("chapters/01_go_vs_c.ipynb#claim-C01",), ("ISO C99 §5",), ("source",),
                claim="c")]
    for style in re.findall(r'style="([^"]*)"', ledger.html_table(es)):
        for decl in filter(None, (d.strip() for d in style.split(";"))):
            prop, value = (x.strip() for x in decl.split(":", 1))
            if prop in ("width", "max-width"):
                assert re.fullmatch(r"\d+%", value), decl
            else:
                assert value in SANITIZER_VALUES[prop], decl


def test_kinds_strongest_and_by_kind():
    es = [Entry("C01", "1", "wrong", "f", ("c",), (), ("source", "native run")),
          Entry("C02", "1", "holds", "f", (), ("s",), ("source",)),
          Entry("C03", "3.1", "partly", "f", ("c",), (), ("emulator", "QEMU"))]
    assert [ledger.strongest_kind(e) for e in es] == ["native run", "source", "QEMU"]
    every = ledger.by_kind(es)
    assert list(every) == list(ledger.KINDS)
    assert every["source"] == {"holds": 1, "partly": 0, "wrong": 1, "fabricated": 0, "unverifiable": 0}
    strongest = ledger.by_kind(es, strongest=True)
    assert sum(sum(v.values()) for v in strongest.values()) == len(es) and sum(strongest["source"].values()) == 1
    with pytest.raises(LedgerError, match="C09: no known evidence kind"):
        ledger.strongest_kind(Entry("C09", "1", "holds", "f", kinds=("guess",)))


def test_plot_verdicts_draws_one_bar_per_section_and_verdict():
    from helpers.viz.ledger import plot_verdicts
    fig = plot_verdicts({"1": {"holds": 1, "wrong": 2}, "5": {"fabricated": 1}})
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * len(ledger.VERDICTS)
    assert sorted(p.get_height() for p in ax.patches if p.get_height()) == [1, 1, 2]
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_verdicts({})


def test_plot_kinds_draws_every_kind_in_both_panels():
    from helpers.viz.ledger import plot_kinds
    es = [Entry("C01", "1", "wrong", "f", ("c",), (), ("native run", "source")),
          Entry("C02", "1", "holds", "f", (), ("s",), ("source",))]
    fig = plot_kinds(ledger.by_kind(es), ledger.by_kind(es, strongest=True))
    a, b = fig.axes
    assert [t.get_text() for t in a.get_yticklabels()] == list(ledger.KINDS)[::-1]
    widths = lambda ax: sorted(p.get_width() for p in ax.patches if p.get_width())
    assert widths(a) == [1, 1, 1] and widths(b) == [1, 1]
    assert "1 of 2 rest on a run" in b.get_title()
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_kinds({k: {} for k in ledger.KINDS}, {})
