"""The reading edition (Jupyter Book's Sphinx stack) builds, is whole, and its checker really finds broken editions."""
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from helpers import book

ROOT = Path(__file__).resolve().parents[1]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("book") / "html"
    book.build(out)
    return out


def test_every_chapter_has_a_page_and_the_edition_is_whole(edition):
    assert book.pages(), "no notebooks found"
    assert book.check(edition) == []
    for nb in book.pages():
        assert (edition / nb.relative_to(ROOT).with_suffix(".html")).exists()


def test_sidebar_lists_every_page_by_title(edition):
    start = (edition / "chapters" / "00_start_here.html").read_text()
    nav = start[start.index('<nav class="bd-links bd-docs-nav"'):]
    nav = nav[:nav.index("</nav>")]
    for nb in book.pages():
        title = book.title(nbformat.read(nb, as_version=4))
        assert title, f"{nb} has no heading"
        assert re.sub(r"`", "", title).split()[0] in nav, f"{title!r} not in the sidebar"
        assert nb.name == "00_start_here.ipynb" or nb.relative_to(ROOT).with_suffix(".html").name in nav
    assert "Labs: instructor" in nav and 'href="../labs/README.html"' in nav  # the labs part opens with the guide


def test_book_features(edition):
    page = (edition / "chapters" / "03a_idt_gates.html").read_text()
    assert (edition / "search.html").exists() and (edition / "searchindex.js").stat().st_size > 10_000
    toc = page[page.index('<nav id="pst-page-toc-nav"'):]
    toc = toc[:toc.index("</nav>")]
    assert toc.count("<li") >= 5 and "The gate workbench" in toc, "no in-page table of contents"
    assert re.search(r'href="https://mybinder\.org/v2/gh/[^"]+urlpath=lab/tree/chapters/03a_idt_gates\.ipynb"', page), \
        "no Binder launch button"
    assert not re.search(r"In\s*\[\d*\]:", page), "execution prompts are shown"
    index = (edition / "searchindex.js").read_text()
    assert "gate" in index


def test_claim_links_land_on_their_evidence_cells(edition):
    ledger = (edition / "chapters" / "05_conclusion.html").read_text()
    links = set(re.findall(r'href="([\w./-]+\.html)#(claim-C\d+)"', ledger))
    assert len(links) >= 40, "the ledger table lost its evidence links"
    for target, anchor in links:
        page = (edition / "chapters" / target).read_text()
        m = re.search(rf'<div[^>]*\bid="{anchor}"[^>]*>', page) or re.search(rf'<span id="{anchor}"></span>', page)
        assert m, f"{target} has no element #{anchor}"
        if m.group(0).startswith("<div"):
            assert "cell" in m.group(0) and f"tag_{anchor}" in m.group(0), m.group(0)


def test_nothing_is_loaded_from_another_host(edition):
    for page in edition.rglob("*.html"):
        text = page.read_text()
        assert not re.findall(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="(?:https?:)?//', text), page
        assert not re.search(r"unpkg\.com|cdn\.jsdelivr|cdnjs|mathjax@|require\.min\.js", text), page


def test_live_widgets_become_their_picture_and_a_note(edition):
    for name in ("00_start_here", "02a_calling_conventions", "03a_idt_gates", "04b_goroutine_stacks"):
        page = (edition / "chapters" / f"{name}.html").read_text()
        assert "Live widget" in page, name
        assert book.WIDGET_MIME not in page and "VBox(children" not in page, name
        assert "figure above" not in page, name


def test_static_outputs_mention_a_picture_only_when_there_is_one():
    view = {book.WIDGET_MIME: {"model_id": "x"}, "text/plain": "run the cells above"}
    bare = book.static_outputs([nbformat.v4.new_output("display_data", data=view)])
    assert len(bare) == 1 and "picture" not in bare[0]["data"]["text/html"]
    with_png = book.static_outputs([nbformat.v4.new_output("display_data", data={**view, "image/png": PNG})])
    assert [list(o["data"]) for o in with_png] == [["image/png"], ["text/html"]]
    assert "picture above" in with_png[1]["data"]["text/html"]
    assert book.static_outputs([nbformat.v4.new_output("display_data", data={})]) == []


def _tiny_book(root: Path, link: str, figure: bool) -> None:
    (root / "chapters").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# One\n\n[next]({link})")]
    cell = nbformat.v4.new_code_cell("x = 1\nassert x", metadata={"tags": ["claim-C01"]})
    if figure:
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG})]
    nb.cells.append(cell)
    nbformat.write(nb, root / "chapters" / "01_one.ipynb")


def test_check_finds_a_broken_link_and_a_missing_anchor(tmp_path):
    _tiny_book(tmp_path / "src", "02_missing.ipynb", figure=False)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert "01_one.html: broken link 02_missing.html" in book.check(tmp_path / "out", root=tmp_path / "src")

    shutil.rmtree(tmp_path / "src")
    _tiny_book(tmp_path / "src", "01_one.ipynb#claim-C99", figure=False)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert book.check(tmp_path / "out", root=tmp_path / "src") == ["01_one.html: no anchor #claim-C99 in 01_one.html"]


def test_claim_anchor_resolves_and_missing_figure_is_found(tmp_path):
    _tiny_book(tmp_path / "src", "01_one.ipynb#claim-C01", figure=True)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert book.check(tmp_path / "out", root=tmp_path / "src") == []
    for png in (tmp_path / "out" / "_images").glob("*.png"):
        png.unlink()
    assert book.check(tmp_path / "out", root=tmp_path / "src") == ["01_one.html: 0 of 1 figures present"]


def test_check_finds_an_asset_from_another_host(tmp_path):
    _tiny_book(tmp_path / "src", "01_one.ipynb", figure=False)
    book.build(tmp_path / "out", root=tmp_path / "src")
    page = tmp_path / "out" / "chapters" / "01_one.html"
    page.write_text(page.read_text().replace("</head>", '<script src="https://cdn.example/x.js"></script></head>'))
    assert book.check(tmp_path / "out", root=tmp_path / "src") == [
        "01_one.html: loads <script> https://cdn.example/x.js from another host"]


def test_contents_come_from_the_files_present(tmp_path):
    """A chapter added later (say 04d) is in the sidebar without editing any list."""
    _tiny_book(tmp_path / "src", "01_one.ipynb", figure=False)
    (tmp_path / "src" / "labs" / "x").mkdir(parents=True)
    for rel, heading in (("chapters/04d_new.ipynb", "Four d"), ("labs/x/x.ipynb", "Lab x")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {heading}\n\ntext")]
        nbformat.write(nb, tmp_path / "src" / rel)
    book.stage(tmp_path / "stage", root=tmp_path / "src")
    toc = yaml.safe_load((tmp_path / "stage" / "_toc.yml").read_text())
    assert toc["root"] == "chapters/01_one"
    assert toc["parts"] == [{"caption": "Chapters", "chapters": [{"file": "chapters/04d_new"}]},
                            {"caption": "Labs", "chapters": [{"file": "labs/x/x"}]}]


def test_check_finds_a_duplicate_claim_anchor(tmp_path):
    _tiny_book(tmp_path / "src", "01_one.ipynb#claim-C01", figure=False)
    nb_path = tmp_path / "src" / "chapters" / "01_one.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[0].source += '\n\n<div id="claim-C01"></div>'
    nbformat.write(nb, nb_path)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert book.check(tmp_path / "out", root=tmp_path / "src") == ["01_one.html: two elements have the id #claim-C01"]
