"""Chapters link to each other (issue 12 §2): each notebook in chapters/ ends with a real Markdown link (rendered
as a link, not code text) to the next chapter, in file-name order; the last chapter links back to the start and
to the labs. Every relative link in those closing cells points at a file that exists."""
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import mistune
import pytest

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((REPO / "chapters").glob("*.ipynb"))
HREF_RE = re.compile(r'<a href="([^"]+)"')


def closing_cell(nb_path: Path) -> dict:
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"][-1]


def rendered_links(markdown: str) -> list[str]:
    """The href of every link Markdown renders (a file name in backticks is code, not a link)."""
    return HREF_RE.findall(mistune.html(markdown))


def local_target(href: str, base: Path) -> Path | None:
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return None
    return (base / unquote(parts.path)).resolve()


def test_the_book_has_its_chapters_in_order():
    names = [p.name for p in CHAPTERS]
    assert names[0] == "00_start_here.ipynb" and names[-1] == "05_conclusion.ipynb", names
    assert len(names) >= 11


@pytest.mark.parametrize("nb_path", CHAPTERS[:-1], ids=lambda p: p.stem)
def test_each_chapter_ends_with_a_link_to_the_next(nb_path):
    cell = closing_cell(nb_path)
    assert cell["cell_type"] == "markdown", f"{nb_path.name}: the last cell is {cell['cell_type']}, not markdown"
    source = "".join(cell["source"])
    links = rendered_links(source)
    expected = CHAPTERS[CHAPTERS.index(nb_path) + 1]
    assert links, f"{nb_path.name}: the last cell has no Markdown link"
    assert local_target(links[-1], nb_path.parent) == expected.resolve(), (
        f"{nb_path.name}: the last link goes to {links[-1]!r}, expected the next chapter {expected.name}")
    last_line = source.strip().splitlines()[-1]
    assert rendered_links(last_line), f"{nb_path.name}: the link to {expected.name} is not on the last line"


def test_the_last_chapter_links_back_to_the_start_and_to_the_labs():
    nb_path = CHAPTERS[-1]
    cell = closing_cell(nb_path)
    assert cell["cell_type"] == "markdown"
    source = "".join(cell["source"])
    targets = [local_target(h, nb_path.parent) for h in rendered_links(source.strip().splitlines()[-1])]
    assert CHAPTERS[0].resolve() in targets, "the last chapter's closing line does not link to the start page"
    labs = sorted((REPO / "labs").glob("*/*.ipynb"))
    assert labs and all(lab.resolve() in targets for lab in labs), "the closing line does not link every lab"


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=lambda p: p.stem)
def test_closing_links_point_at_files_that_exist(nb_path):
    for href in rendered_links("".join(closing_cell(nb_path)["source"])):
        target = local_target(href, nb_path.parent)
        assert target is None or target.exists(), f"{nb_path.name}: link {href!r} points at nothing"
        if target is not None:
            assert REPO in target.parents, f"{nb_path.name}: link {href!r} leaves the repository"
