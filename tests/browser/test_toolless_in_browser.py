"""The book as a reader without the pinned Go and zig sees it in JupyterLab: "Run all" goes through every cell,
cells that need Go show their recorded outputs under a note (helpers.replay), and no cell ends in an error.

The server's kernels get BOOK_HIDE_TOOLS=go,zig, as helpers.toolless mode 2 gives them. In JupyterLab the
kernel finds its notebook from JPY_SESSION_NAME and each cell by the id the front end sends, which nbval (the
toolless CI run) does not exercise.
"""
from __future__ import annotations

import pytest

from conftest import book_lab
from jlab import Lab

NOTES = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const notes = [], texts = [], recorded = [];
  for (let i = 0; i < cells.length; i++) {
    if (cells.get(i).type !== 'code') continue;
    const outs = cells.get(i).outputs.toJSON();
    outs.forEach((o, k) => {
      if (o.metadata && o.metadata['why-not-go:recorded']) {
        notes.push(i);
        const t = o.data['text/plain'];
        texts.push(Array.isArray(t) ? t.join('') : t);
        const after = outs.slice(k + 1).map(x => x.text || (x.data && x.data['text/plain']) || '').join('');
        recorded.push(Array.isArray(after) ? after.join('') : after);
      }
    });
  }
  return {notes, texts, recorded};
}"""


@pytest.fixture(scope="module")
def toolless_server(tmp_path_factory):
    with book_lab(tmp_path_factory.mktemp("book-without-go"), {"BOOK_HIDE_TOOLS": "go,zig"}) as server:
        yield server


@pytest.fixture
def lab(browser, toolless_server):
    lab = Lab(browser, toolless_server)
    yield lab
    lab.close()


def test_without_go_run_all_shows_recordings_and_no_errors(lab, screenshot):
    lab.open("chapters/01_go_vs_c.ipynb")
    state = lab.run_all()
    assert state["errors"] == [] and state["pending"] == 0, state
    seen = lab.page.evaluate(NOTES)
    assert len(seen["notes"]) >= 10                      # chapter 1's cells build and run Go almost everywhere
    assert seen["notes"][0] == 1 and "go: go1.27.3" in seen["recorded"][0]   # the first code cell's versions
    assert all(t.startswith("⟲ Recorded output") and "\n" not in t for t in seen["texts"])
    assert "go not found" in seen["texts"][0]            # the note names the missing tool and its install line
    assert lab.kernel("print(1 + 1)").strip() == "2"   # the kernel is alive and live cells still run
    lab.page.evaluate("async () => { const nb = window.jupyterapp.shell.currentWidget.content;"
                      " nb.activeCellIndex = 1; await nb.scrollToItem(1, 'start'); }")
    lab.page.get_by_text("Recorded output").first.wait_for()          # the note, rendered where a reader looks
    screenshot(lab.page, "01-without-go")
