"""What only a browser can see about the widgets: the stand-in before a cell has run, layouts at 1000 px
(pictures keep their shape, nothing overflows sideways, long listings scroll), and "working…" showing while a
slow redraw is still computing."""
from __future__ import annotations

import itertools
import time

import pytest

from jlab import Lab

WIDTH = 1000
_workspaces = itertools.count()


class FreshLab(Lab):
    """JupyterLab in a workspace of its own, reset to the default layout (file browser open, one notebook),
    whatever earlier tests left open, in a 1000 px wide window."""

    def __init__(self, context, server):
        self.server = server
        self.page = context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.set_viewport_size({"width": WIDTH, "height": 900})
        self.page.goto(f"{server['url']}/lab/workspaces/widgets-{next(_workspaces)}?reset&token={server['token']}")
        self.page.wait_for_function("() => window.jupyterapp && window.jupyterapp.started !== undefined", timeout=90_000)
        self.page.evaluate("async () => { await window.jupyterapp.started; await window.jupyterapp.restored; }")
        self.page.evaluate("() => window.jupyterapp.shell.activateById('filebrowser')")


@pytest.fixture
def lab(browser, lab_server):
    lab = FreshLab(browser, lab_server)
    yield lab
    lab.close()


def run(lab: Lab, path: str) -> None:
    lab.open(path)
    state = lab.run_all()
    assert state["errors"] == [], state["errors"]


LAYOUT = """(sel) => Array.from(document.querySelectorAll(sel)).map(box => ({
    overflow: box.scrollWidth - box.clientWidth,
    width: box.getBoundingClientRect().width, height: box.getBoundingClientRect().height,
    images: Array.from(box.querySelectorAll('img')).map(i => ({
        shown: i.clientHeight / Math.max(i.clientWidth, 1), natural: i.naturalHeight / Math.max(i.naturalWidth, 1),
        width: i.clientWidth, naturalWidth: i.naturalWidth})),
}))"""


def test_before_its_cell_runs_the_widget_is_a_readable_line(lab, screenshot):
    lab.open("chapters/00_start_here.ipynb")
    lab.page.wait_for_timeout(3000)
    out = lab.page.locator(".jp-Cell", has_text="runner = AsmRunner()").locator(".jp-OutputArea")
    out.scroll_into_view_if_needed()
    text = out.inner_text()
    screenshot(lab.page, "asm-runner-before-run")
    assert "VBox(children" not in text
    assert "Run the cells above to use the assembly runner" in text or out.locator("img").count() == 1


def check_layout(lab: Lab, sel: str, screenshot) -> dict:
    lab.page.locator(sel).first.scroll_into_view_if_needed()
    boxes = lab.page.evaluate(LAYOUT, sel)
    screenshot(lab.page, f"at-{WIDTH}px-{sel.strip('.')}")
    assert boxes, f"no {sel} on the page"
    for box in boxes:
        assert box["overflow"] <= 1, f"{sel} overflows sideways by {box['overflow']} px"
        for img in box["images"]:
            assert abs(img["shown"] - img["natural"]) < 0.02, f"{sel}: a stretched picture {img}"
            assert img["width"] <= img["naturalWidth"] + 1, f"{sel}: a picture blown up past its size {img}"
    return boxes[0]


@pytest.mark.parametrize("path,selectors", [("chapters/02a_calling_conventions.ipynb", [".callconv-widget"]),
                                            ("chapters/03a_idt_gates.ipynb", [".gate-workbench", ".delivery-viewer"])])
def test_widgets_are_usable_at_1000_px(lab, path, selectors, screenshot):
    run(lab, path)
    for sel in selectors:
        check_layout(lab, sel, screenshot)


def test_the_assembly_runner_at_1000_px_scrolls_a_long_listing(lab, screenshot):
    run(lab, "chapters/00_start_here.ipynb")
    check_layout(lab, ".asm-runner", screenshot)
    # every live runner in the kernel (an earlier test's run of the notebook may have left one)
    said = lab.kernel("import gc\nfrom helpers.widgets.asmrun import AsmRunner\n"
                      "for w in [o for o in gc.get_objects() if type(o) is AsmRunner]:\n"
                      "    w.source.value = 'nop\\n' * 3000\n    w.run()\n    print(w.status.value or 'ran')")
    assert said.split() and set(said.split()) == {"ran"}, said
    lab.page.wait_for_function("""() => { const p = document.querySelector('.asm-runner pre');
        return p && p.textContent.includes('finished after 3000 instructions'); }""", timeout=30_000)
    box = check_layout(lab, ".asm-runner", screenshot)
    assert box["height"] < 900, f"the runner grew to {box['height']} px"
    scrolls = lab.page.evaluate("() => { const p = document.querySelector('.asm-runner pre');"
                                " return p.scrollHeight > p.clientHeight; }")
    assert scrolls


def test_a_slow_redraw_says_working_while_it_computes(lab, screenshot):
    run(lab, "chapters/04b_goroutine_stacks.ipynb")
    box = lab.page.locator(".stack-growth-viewer")
    box.scroll_into_view_if_needed()
    start = time.monotonic()
    lab.page.evaluate("""(code) => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel
                         .requestExecute({code, store_history: false})""",
                      "w = viewer\n"   # the notebook's own viewer (an earlier run of 04b left an older one alive)
                      + "w.which.value = 'small'\nw.policy.value = 'segmented'\nw.depth.value = 2500")
    busy = box.locator(".lv-busy")
    busy.wait_for(timeout=5000)
    seen_after = time.monotonic() - start
    assert box.locator("img.lv-stale").count() == 1, "the old picture is not marked as old"
    screenshot(lab.page, "stack-growth-working")
    busy.wait_for(state="detached", timeout=120_000)
    lab.wait_quiet()
    assert box.locator("img.lv-stale").count() == 0
    assert seen_after < 3, f"'working…' appeared only after {seen_after:.1f} s"
