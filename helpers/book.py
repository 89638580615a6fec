"""The reading edition: the committed, executed notebooks as a Jupyter Book (Sphinx, sphinx-book-theme, myst-nb).

``python -m helpers.book [OUTDIR]`` (``make book``) runs no notebook code. It

1. stages the notebooks present (``chapters/*.ipynb``, then ``labs/*/*.ipynb``) in ``OUTDIR-src``, where each
   live widget view (which needs a kernel) becomes the static picture of its default state that the widget put
   in its own output, followed by a note on how to run it live;
2. writes the table of contents from the files present (the start page, the chapters, the labs, by title);
3. builds with Jupyter Book's Sphinx stack and ``book/_config.yml``, execution off, into ``OUTDIR``.

This module is also a small Sphinx extension (loaded by ``book/_config.yml``): it gives each cell tagged
``claim-Cnn`` the HTML id ``claim-Cnn``, so the ledger's links (``04b_goroutine_stacks.ipynb#claim-C51``) land on
the evidence cell.

:func:`check` verifies a built edition: every page exists and has its title, every link and anchor resolves
(those in the built HTML and those written in the notebooks), every claim cell has its anchor, every figure of
every notebook is on its page and is a local file, and no page loads anything from another host.
"""
from __future__ import annotations

import copy
import html
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "book" / "_config.yml"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
START = "chapters/00_start_here.ipynb"
GUIDES = ("labs/README.md",)  # Markdown pages of the edition (the instructor's guide opens the labs part)
CLAIM_TAG = re.compile(r"^claim-C\d+$")
# Links written in notebooks: markdown [text](target) and HTML href="target", to a local notebook.
MD_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?\s*\)")
HREF = re.compile(r'href="([^"]+)"')
HAND_ANCHOR = re.compile(r'<a\s+(?:id|name)="(claim-C\d+)"\s*>\s*</a>')
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)


def live_note(has_picture: bool) -> str:
    """The note that stands for a live widget in the static edition."""
    picture = " The picture above is its default state, drawn when the notebook was executed." if has_picture else ""
    return ("<div class='live-widget-note admonition note'><p class='admonition-title'>Live widget</p><p>"
            "This control needs a running Python kernel: open the notebook in JupyterLab (<code>make lab</code>, "
            "or the launch button at the top of the page) and run its cells to use it." + picture + "</p></div>")


def pages(root: Path = ROOT) -> list[Path]:
    """The notebooks of the edition, in reading order: chapters, then labs."""
    return sorted(root.glob("chapters/*.ipynb")) + sorted(root.glob("labs/*/*.ipynb"))


def _page_name(nb: Path, root: Path) -> str:
    return nb.relative_to(root).with_suffix(".html").as_posix()


def title(nb) -> str:
    """The first level-1 heading of a notebook (its page title)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if m:
                return m.group(1).strip()
    return ""


# --- staging -------------------------------------------------------------------------------------------------
def _html_links_to_pages(text: str) -> str:
    """Raw HTML outputs are not touched by Sphinx: point their notebook links at the built pages."""
    return HREF.sub(lambda m: 'href="' + re.sub(r"\.ipynb(?=$|#)", ".html", m.group(1))
                    + '"' if not EXTERNAL.match(m.group(1)) else m.group(0), text)


def static_outputs(outputs: list) -> list:
    """A code cell's outputs for the static edition: a widget view becomes its picture (if any) and a note;
    an emptied display (a finished progress line) goes."""
    result = []
    for out in outputs:
        data = out.get("data", {})
        if out.get("output_type") == "display_data" and not data:
            continue  # a progress line that was cleared when its build finished (helpers.progress)
        if WIDGET_MIME in data:
            png = data.get("image/png")
            if png:
                result.append(nbformat.v4.new_output("display_data", data={"image/png": png}))
            result.append(nbformat.v4.new_output("display_data", data={"text/html": live_note(bool(png))}))
            continue
        if "text/html" in data:
            out = copy.deepcopy(out)
            src = data["text/html"]
            out["data"]["text/html"] = _html_links_to_pages("".join(src) if isinstance(src, list) else src)
        result.append(out)
    return result


def stage(stagedir: Path, root: Path = ROOT) -> list[Path]:
    """Copy the notebooks into ``stagedir`` ready for Sphinx; write its ``_toc.yml``. Returns the staged notebooks."""
    if stagedir.exists():
        shutil.rmtree(stagedir)
    notebooks = pages(root)
    staged = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("widgets", None)
        tagged = {t for c in nb.cells if c.cell_type == "code" for t in c.get("metadata", {}).get("tags", [])
                  if CLAIM_TAG.match(t)}
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = static_outputs(cell.get("outputs", []))
            else:  # the evidence cell itself carries the id here; a hand-made anchor beside it would be a duplicate
                cell.source = HAND_ANCHOR.sub(lambda m: "" if m.group(1) in tagged else m.group(0), cell.source)
        target = stagedir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        staged.append(target)
    guides = []
    for rel in GUIDES:
        if (root / rel).is_file():
            (stagedir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, stagedir / rel)
            guides.append(Path(rel).with_suffix("").as_posix())
    docs = [p.relative_to(stagedir).with_suffix("").as_posix() for p in staged]
    docs = [d for d in docs if not d.startswith("labs/")] + guides + [d for d in docs if d.startswith("labs/")]
    start = Path(START).with_suffix("").as_posix()
    first = start if start in docs else docs[0]
    parts = [{"caption": caption, "chapters": [{"file": d} for d in docs if d != first and d.startswith(prefix)]}
             for caption, prefix in (("Chapters", "chapters/"), ("Labs", "labs/"))]
    toc = {"format": "jb-book", "root": first}
    if any(p["chapters"] for p in parts):
        toc["parts"] = [p for p in parts if p["chapters"]]
    (stagedir / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return staged


def _repository_url(root: Path) -> str | None:
    """The clone's GitHub address, for the launch and repository buttons (None when it has none)."""
    try:
        url = subprocess.run(["git", "-C", str(root), "remote", "get-url", "origin"], capture_output=True,
                             text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"^(?:https://|git@|ssh://git@)github\.com[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?$", url)
    return f"https://github.com/{m.group(1)}" if m else None


def build(outdir: Path, root: Path = ROOT, config: Path = CONFIG) -> list[Path]:
    """Build the edition into ``outdir``; returns the pages written. Raises RuntimeError if Sphinx fails."""
    from jupyter_book.config import get_final_config
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    outdir = Path(outdir).resolve()
    stagedir = outdir.with_name(outdir.name + "-src")
    staged = stage(stagedir, root)
    if outdir.exists():
        shutil.rmtree(outdir)
    overrides = {"external_toc_path": str(stagedir / "_toc.yml"), "latex_individualpages": False,
                 "html_theme_options": {"show_toc_level": 2},
                 "html_static_path": [str(Path(config).parent / "_static")], "html_css_files": ["edition.css"]}
    url = _repository_url(root)
    if url:
        overrides["html_theme_options"]["repository_url"] = url
    sphinx_config, _ = get_final_config(user_yaml=Path(config), cli_config=overrides, sourcedir=stagedir)
    # Without thebe (live code through a CDN-hosted bundle): the edition loads nothing from another host.
    sphinx_config["extensions"] = [e for e in sphinx_config["extensions"] if e != "sphinx_thebe"]
    with patch_docutils(str(stagedir)), docutils_namespace():
        app = Sphinx(srcdir=str(stagedir), confdir=None, outdir=str(outdir), doctreedir=str(stagedir / ".doctrees"),
                     buildername="html", confoverrides=sphinx_config, status=None, warning=sys.stderr,
                     freshenv=True)
        app.build(force_all=True)
    if app.statuscode != 0:
        raise RuntimeError(f"the Sphinx build of the edition failed (status {app.statuscode})")
    return [outdir / "index.html", *(outdir / _page_name(p, stagedir) for p in staged)]


# --- the Sphinx extension ------------------------------------------------------------------------------------
def _claim_ids(app, doctree) -> None:
    """Give each code cell tagged ``claim-Cnn`` that id, and tell MyST the id exists (no 'local id' warnings)."""
    from docutils import nodes

    seen = set()
    slugs = app.env.metadata[app.env.docname].setdefault("myst_slugs", {})
    std = app.env.domains["std"]
    for node in doctree.findall(nodes.container):
        if node.get("nb_element") != "cell_code":
            continue
        for tag in node.get("cell_metadata", {}).get("tags", []):
            if CLAIM_TAG.match(tag) and tag not in seen:
                seen.add(tag)
                node["ids"].append(tag)
                slugs[tag] = (0, tag, f"evidence for {tag[len('claim-'):]}")
                std.anonlabels[tag.lower()] = (app.env.docname, tag)


def setup(app):
    app.connect("doctree-read", _claim_ids)
    return {"parallel_read_safe": False, "parallel_write_safe": True}


# --- the checks ----------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids, self.images, self.external, self.title = [], set(), [], [], ""
        self.duplicates = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            if a["id"] in self.ids:
                self.duplicates.append(a["id"])
            self.ids.add(a["id"])
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"])
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "title":
            self._in_title = True
        src = a.get("src") if tag in ("script", "img", "iframe") else a.get("href") if tag == "link" else None
        if src and EXTERNAL.match(src) and not src.startswith("data:"):
            self.external.append(f"<{tag}> {src}")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _written_links(nb) -> list[str]:
    """Local notebook links written in a notebook's markdown cells and in its markdown or HTML outputs."""
    texts = [c.source for c in nb.cells if c.cell_type == "markdown"]
    for c in nb.cells:
        for out in c.get("outputs", []):
            for mime in ("text/markdown", "text/html"):
                if mime in out.get("data", {}):
                    texts.append(out["data"][mime])
    found = []
    for text in texts:
        for target in MD_LINK.findall(text) + HREF.findall(text):
            if not EXTERNAL.match(target) and (".ipynb" in target or target.startswith("#")):
                found.append(target)
    return found


def check(outdir: Path, root: Path = ROOT) -> list[str]:
    """Problems with a built edition (an empty list when it is whole)."""
    outdir = Path(outdir)
    problems = []
    notebooks = pages(root)
    parsed: dict[Path, _Page] = {}
    guides = [outdir / Path(g).with_suffix(".html") for g in GUIDES if (root / g).is_file()]
    for path in [outdir / "index.html", *(outdir / _page_name(nb, root) for nb in notebooks), *guides]:
        if not path.exists():
            problems.append(f"missing page {path.relative_to(outdir)}")
        else:
            parsed[path.resolve()] = _parse(path)
    # Links and anchors in the HTML as built.
    for page, info in parsed.items():
        for href in info.hrefs:
            if EXTERNAL.match(href):
                continue
            target, _, anchor = href.partition("#")
            dest = (page.parent / target).resolve() if target else page
            if not dest.exists():
                problems.append(f"{page.name}: broken link {href}")
            elif anchor and dest in parsed and anchor not in parsed[dest].ids:
                problems.append(f"{page.name}: no anchor #{anchor} in {dest.name}")
        problems += [f"{page.name}: loads {src} from another host" for src in info.external]
        problems += [f"{page.name}: two elements have the id #{i}" for i in info.duplicates]
    for css in outdir.rglob("*.css"):
        for url in re.findall(r"@import\s+(?:url\()?['\"]?(https?://[^'\")\s]+)", css.read_text(errors="replace")):
            problems.append(f"{css.relative_to(outdir)}: imports {url} from another host")
    # Per notebook: title, the links written in it, its claim anchors, its figures.
    for nb_path in notebooks:
        page = (outdir / _page_name(nb_path, root)).resolve()
        if page not in parsed:
            continue
        info, nb = parsed[page], nbformat.read(nb_path, as_version=4)
        want_title = title(nb)
        if not want_title or not info.title.strip().startswith(want_title.replace("`", "")[:20]):
            problems.append(f"{page.name}: page title {info.title.strip()!r} is not the notebook's heading")
        for link in _written_links(nb):
            target, _, anchor = link.partition("#")
            dest = (nb_path.parent / target).resolve() if target else nb_path.resolve()
            try:
                dest_page = (outdir / _page_name(dest, root.resolve())).resolve()
            except ValueError:
                dest_page = None
            shown = re.sub(r"\.ipynb$", ".html", target) or page.name
            if dest_page is None or dest_page not in parsed:
                problems.append(f"{page.name}: broken link {shown}")
            elif anchor and anchor not in parsed[dest_page].ids:
                problems.append(f"{page.name}: no anchor #{anchor} in {dest_page.name}")
        for cell in nb.cells:
            for tag in cell.get("metadata", {}).get("tags", []):
                if CLAIM_TAG.match(tag) and tag not in info.ids:
                    problems.append(f"{page.name}: no anchor #{tag} for its claim cell")
        want = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        have = 0
        for src in info.images:
            if EXTERNAL.match(src):
                continue
            img = (page.parent / src.split("#")[0]).resolve()
            if img.suffix == ".png" and img.is_file() and img.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n":
                have += 1
        if have < want:
            problems.append(f"{page.name}: {have} of {want} figures present")
    return sorted(set(problems), key=problems.index)


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/book")
    built = build(out)
    issues = check(out)
    print(f"built {len(built)} pages in {out} (open {out / 'index.html'})")
    for p in issues:
        print("problem:", p)
    sys.exit(1 if issues else 0)
