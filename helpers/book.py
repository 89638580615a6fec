"""The static reading edition: every chapter as an HTML page, with its executed outputs and figures.

``python -m helpers.book [OUTDIR]`` (``make book``) converts the committed, executed notebooks with
nbconvert; it runs no code. On the way it:

* gives every cell tagged ``claim-Cnn`` an HTML anchor ``#claim-Cnn``, so the ledger's evidence links resolve;
* rewrites links between notebooks (``03a_idt_gates.ipynb#claim-C32``) to the matching pages;
* replaces each live widget, which cannot work without a kernel, with a note on how to run it live (each
  chapter shows a static figure of the widget's default state just before it);
* adds a table of contents page and previous/next links.

:func:`check` verifies a built edition: every page exists, every internal link and anchor resolves, and every
figure of every notebook is on its page.
"""
from __future__ import annotations

import html
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import Preprocessor

ROOT = Path(__file__).resolve().parents[1]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
LIVE_NOTE = ("<div class='live-widget-note' style='border-left:4px solid #888;padding:4px 10px;color:#444'>"
             "Live widget: it needs a running kernel. Open this notebook in JupyterLab (<code>make lab</code>) "
             "and run the cells above it to use it; the figure above shows its default state.</div>")
LINK = re.compile(r'href="(?!https?:|mailto:|#)([^"#]+?)\.ipynb(#[^"]*)?"')


class WidgetNote(Preprocessor):
    """Replace live widget views with a note; keep everything else."""

    def preprocess_cell(self, cell, resources, index):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                out["data"] = {"text/html": LIVE_NOTE}
        return cell, resources


class ClaimAnchor(Preprocessor):
    """Mark cells tagged ``claim-Cnn`` so that their anchor can be added to the page."""

    def preprocess_cell(self, cell, resources, index):
        claims = [t for t in cell.get("metadata", {}).get("tags", []) if t.startswith("claim-")]
        if claims:
            anchors = "".join(f'<a id="{html.escape(t)}"></a>' for t in claims)
            marker = nbformat.v4.new_output("display_data", data={"text/html": anchors})
            cell.setdefault("outputs", []).insert(0, marker)
        return cell, resources


def pages(root: Path = ROOT) -> list[Path]:
    """The notebooks of the edition, in reading order: chapters, then labs."""
    return sorted(root.glob("chapters/*.ipynb")) + sorted(root.glob("labs/*/*.ipynb"))


def _page_name(nb: Path, root: Path) -> str:
    return str(nb.relative_to(root).with_suffix(".html"))


def _title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return "untitled"


def build(outdir: Path, root: Path = ROOT) -> list[Path]:
    exporter = HTMLExporter(template_name="lab")
    exporter.register_preprocessor(WidgetNote, enabled=True)
    exporter.register_preprocessor(ClaimAnchor, enabled=True)
    notebooks = pages(root)
    outdir.mkdir(parents=True, exist_ok=True)
    toc, written = [], []
    for i, path in enumerate(notebooks):
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("widgets", None)
        body, _ = exporter.from_notebook_node(nb)
        body = LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
        name = _page_name(path, root)
        depth = name.count("/")
        up = "../" * depth
        nav = [f'<a href="{up}index.html">Contents</a>']
        if i > 0:
            nav.append(f'<a href="{up}{_page_name(notebooks[i - 1], root)}">Previous</a>')
        if i + 1 < len(notebooks):
            nav.append(f'<a href="{up}{_page_name(notebooks[i + 1], root)}">Next</a>')
        bar = f"<nav class='book-nav' style='padding:8px 16px;font-family:sans-serif'>{' · '.join(nav)}</nav>"
        body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + bar, body, count=1)
        body = body.replace("</body>", bar + "</body>", 1)
        target = outdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
        written.append(target)
        toc.append(f'<li><a href="{name}">{html.escape(_title(nb))}</a> <small>({path.relative_to(root)})</small></li>')
    index = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>Why isn't the Linux kernel written in Go?</title>"
             "</head><body style='font-family:sans-serif;max-width:50em;margin:2em auto'>"
             "<h1>Why isn't the Linux kernel written in Go?</h1><p>An executable textbook: the static reading "
             "edition. To run the experiments and use the widgets, open the notebooks in JupyterLab "
             "(<code>make lab</code>).</p><ol>" + "".join(toc) + "</ol></body></html>")
    (outdir / "index.html").write_text(index)
    return [outdir / "index.html", *written]


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids, self.images = [], set(), []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))


def _parse(path: Path) -> _Links:
    p = _Links()
    p.feed(path.read_text())
    return p


def check(outdir: Path, root: Path = ROOT) -> list[str]:
    """Problems with a built edition (an empty list when it is whole)."""
    problems = []
    notebooks = pages(root)
    parsed = {}
    for path in [outdir / "index.html", *(outdir / _page_name(nb, root) for nb in notebooks)]:
        if not path.exists():
            problems.append(f"missing page {path.relative_to(outdir)}")
            continue
        parsed[path.resolve()] = _parse(path)
    for page, links in parsed.items():
        for href in links.hrefs:
            if re.match(r"^(https?:|mailto:)", href):
                continue
            target, _, anchor = href.partition("#")
            dest = (page.parent / target).resolve() if target else page
            if dest not in parsed and not dest.exists():
                problems.append(f"{page.name}: broken link {href}")
            elif anchor and dest in parsed and anchor not in parsed[dest].ids:
                problems.append(f"{page.name}: no anchor #{anchor} in {dest.name}")
    for nb_path in notebooks:
        nb = json.loads(nb_path.read_text())
        want = sum(1 for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        page = (outdir / _page_name(nb_path, root)).resolve()
        if page in parsed:
            have = sum(1 for src in parsed[page].images if src.startswith("data:image/png;base64,") and len(src) > 100)
            if have < want:
                problems.append(f"{page.name}: {have} of {want} figures present")
    return problems


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/book")
    built = build(out)
    issues = check(out)
    print(f"built {len(built)} pages in {out}")
    for p in issues:
        print("problem:", p)
    sys.exit(1 if issues else 0)
