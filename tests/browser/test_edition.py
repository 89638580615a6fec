"""The reading edition (``make book``) in Chromium, served from 127.0.0.1 as a reader or a hub would serve it.

The edition is built once per session from the committed notebooks. A reader must find every chapter and lab in
the sidebar, find chapter 3a's words with the search box, land on the evidence cell from a claim in the ledger,
and see every figure; and no page may fetch anything from another host (the edition must work offline).
"""
from __future__ import annotations

import re
import subprocess
import sys
from urllib.parse import urlparse

import nbformat
import pytest

from helpers import book

from conftest import ROOT, _free_port, serving


@pytest.fixture(scope="session")
def edition_url(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "html"
    book.build(out)
    port = _free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)]
    url = f"http://127.0.0.1:{port}"
    with serving(argv, f"{url}/index.html", "the edition's HTTP server", timeout=30,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        yield url


@pytest.fixture
def page(browser, edition_url):
    """A fresh tab that records every request it makes to another host."""
    tab = browser.new_page()
    tab.foreign = []
    tab.on("request", lambda r: tab.foreign.append(r.url)
           if urlparse(r.url).hostname not in ("127.0.0.1", None) and not r.url.startswith("data:") else None)
    yield tab
    foreign = tab.foreign
    tab.close()
    assert foreign == [], f"the edition fetched from other hosts: {foreign[:5]}"


def _pages():
    return [(nb, nb.relative_to(ROOT).with_suffix(".html").as_posix()) for nb in book.pages()]


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("`", "").replace("\u2019", "'")).strip()


def test_sidebar_lists_every_chapter_and_lab(page, edition_url, screenshot):
    page.goto(f"{edition_url}/index.html")
    page.wait_for_url(re.compile(r"00_start_here\.html"))
    sidebar = _norm(page.locator("nav.bd-docs-nav").inner_text())
    screenshot(page, "edition-start")
    for nb, _ in _pages():
        title = _norm(book.title(nbformat.read(nb, as_version=4)))
        assert title in sidebar, f"{title!r} is not in the sidebar"


def test_search_finds_a_term_from_chapter_3a(page, edition_url):
    page.goto(f"{edition_url}/search.html?q=lidt")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=15_000)
    hrefs = results.evaluate_all("els => els.map(e => e.getAttribute('href'))")
    assert any("03a_idt_gates.html" in h for h in hrefs), hrefs


def test_a_claim_link_lands_on_its_evidence_cell(page, edition_url, screenshot):
    page.goto(f"{edition_url}/chapters/05_conclusion.html")
    link = page.locator('a[href="03a_idt_gates.html#claim-C32"]').first
    link.scroll_into_view_if_needed()
    link.click()
    page.wait_for_url(re.compile(r"03a_idt_gates\.html#claim-C32$"))
    page.wait_for_timeout(300)
    where = page.evaluate("""() => { const e = document.getElementById('claim-C32');
        if (!e) return null; const r = e.getBoundingClientRect();
        return {cls: e.className, top: r.top, bottom: r.bottom, height: innerHeight}; }""")
    screenshot(page, "edition-claim-C32")
    assert where, "no element #claim-C32"
    assert "cell" in where["cls"] and "tag_claim-C32" in where["cls"], where
    assert where["top"] < where["height"] and where["bottom"] > 0, f"the evidence cell is not on screen: {where}"


def test_every_page_shows_its_figures(page, edition_url):
    for nb, rel in _pages():
        want = sum(1 for c in nbformat.read(nb, as_version=4).cells for o in c.get("outputs", [])
                   if "image/png" in o.get("data", {}))
        page.goto(f"{edition_url}/{rel}")
        page.wait_for_load_state("load")
        imgs = page.evaluate("""() => Array.from(document.querySelectorAll('article img')).map(i =>
            ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}))""")
        broken = [i["src"] for i in imgs if not i["ok"]]
        assert not broken, f"{rel}: figures that do not load: {broken}"
        assert len(imgs) >= want, f"{rel}: {len(imgs)} of {want} figures"


def test_widget_pages_say_how_to_run_the_widget(page, edition_url):
    page.goto(f"{edition_url}/chapters/03a_idt_gates.html")
    note = page.locator(".live-widget-note").first
    note.scroll_into_view_if_needed()
    assert note.is_visible()
    assert "make lab" in note.inner_text()
