"""What a reader sees in JupyterLab started as `make lab` starts it (issue 12 §2, §5): no nbgrader menu or
sidebar and no news pop-up; and chapter 5's ledger ("Unreadable ledger table"): the committed output, opened
without running anything (so JupyterLab sanitizes it as an untrusted notebook's output), fits the notebook's
width at 1400 and at 1000 px, its cells wrap, and each evidence link points at its cell."""
from __future__ import annotations

import pytest

from jlab import Lab

MEASURE = """(t) => {
  const area = t.closest('.jp-OutputArea-output');
  const cells = [...t.querySelectorAll('td')];
  return {
    table: t.getBoundingClientRect().width,
    area: area.getBoundingClientRect().width,
    layout: getComputedStyle(t).tableLayout,
    overflowing: cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => [c.scrollWidth, c.clientWidth, c.innerText.slice(0, 60)]),
    rows: t.querySelectorAll('tbody tr').length,
    tallest: Math.max(...cells.map(c => c.getBoundingClientRect().height)),
    links: [...t.querySelectorAll('a')].map(a => a.getAttribute('href')),
    math: t.querySelectorAll('mjx-container').length,
  };
}"""


@pytest.fixture
def lab(browser, lab_server):
    lab = Lab(browser, lab_server)
    yield lab
    lab.close()


@pytest.mark.parametrize("width", [1400, 1000])
def test_ledger_table_fits_and_wraps(lab, width, screenshot):
    lab.page.set_viewport_size({"width": width, "height": 900})
    lab.open("chapters/05_conclusion.ipynb")
    table = lab.page.locator(".jp-OutputArea-output table").filter(has_text="claim (paraphrased)").first
    table.wait_for(state="attached", timeout=60_000)
    table.scroll_into_view_if_needed()
    m = table.evaluate(MEASURE)
    screenshot(lab.page, f"05_ledger_{width}")
    assert m["layout"] == "fixed", m["layout"]          # the sanitizer kept the table's style
    assert m["rows"] == 64
    assert m["math"] == 0, "MathJax typeset part of the ledger (a $ in AT&T syntax read as TeX)"
    assert m["table"] <= m["area"] + 1 < width, m
    assert m["overflowing"] == [], f"cells overflow their column: {m['overflowing']}"
    assert m["tallest"] < 900, m["tallest"]             # wrapped, but no cell is a column of single letters
    assert all(h.split("#")[1].startswith("claim-C") for h in m["links"] if "#" in h) and len(m["links"]) >= 50


def test_reader_sees_the_book_without_nbgrader_or_news(lab, screenshot):
    lab.open("chapters/00_start_here.ipynb")
    page = lab.page
    page.locator(".lm-MenuBar-itemLabel").first.wait_for()
    page.wait_for_timeout(3000)                       # the news question, when enabled, appears after start-up
    menus = page.locator(".lm-MenuBar-itemLabel").all_inner_texts()
    screenshot(page, "make_lab_reader")
    assert "File" in menus and not any("nbgrader" in m.lower() for m in menus), menus
    assert page.get_by_text("Create Assignment").count() == 0
    assert page.get_by_text("Jupyter news").count() == 0
