"""The static reading edition builds, and its checker really finds broken editions."""
import shutil
from pathlib import Path

import nbformat
import pytest

from helpers import book

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    book.build(out)
    return out


def test_every_chapter_has_a_page_and_links_resolve(edition):
    assert book.pages(), "no notebooks found"
    assert book.check(edition) == []
    for nb in book.pages():
        assert (edition / nb.relative_to(ROOT).with_suffix(".html")).exists()


def test_live_widgets_become_a_note(edition):
    page = (edition / "chapters" / "00_start_here.html").read_text()
    assert "Live widget: it needs a running kernel" in page
    assert "application/vnd.jupyter.widget-view+json" not in page


def _tiny_book(root: Path, link: str, figure: bool) -> None:
    (root / "chapters").mkdir(parents=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# One\n\n[next]({link})")]
    cell = nbformat.v4.new_code_cell("x = 1\nassert x", metadata={"tags": ["claim-C01"]})
    if figure:
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=" * 20})]
    nb.cells.append(cell)
    nbformat.write(nb, root / "chapters" / "01_one.ipynb")


def test_check_finds_a_broken_link_and_a_missing_anchor(tmp_path):
    _tiny_book(tmp_path / "src", "02_missing.ipynb", figure=False)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert book.check(tmp_path / "out", root=tmp_path / "src") == ["01_one.html: broken link 02_missing.html"]

    shutil.rmtree(tmp_path / "src"), shutil.rmtree(tmp_path / "out")
    _tiny_book(tmp_path / "src", "01_one.ipynb#claim-C99", figure=False)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert book.check(tmp_path / "out", root=tmp_path / "src") == ["01_one.html: no anchor #claim-C99 in 01_one.html"]


def test_claim_anchor_resolves_and_missing_figure_is_found(tmp_path):
    _tiny_book(tmp_path / "src", "01_one.ipynb#claim-C01", figure=True)
    book.build(tmp_path / "out", root=tmp_path / "src")
    assert book.check(tmp_path / "out", root=tmp_path / "src") == []
    page = tmp_path / "out" / "chapters" / "01_one.html"
    page.write_text(page.read_text().replace("data:image/png;base64,", "missing:"))
    assert book.check(tmp_path / "out", root=tmp_path / "src") == ["01_one.html: 0 of 1 figures present"]
