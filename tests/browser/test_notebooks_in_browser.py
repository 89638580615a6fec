"""Every chapter and lab, opened in real JupyterLab in real Chromium: all cells run, no error output, every
widget renders, and the key widgets respond to a person's input, including a fast burst of it."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from jlab import Lab

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("labs/*/*.ipynb")])


@pytest.fixture
def lab(browser, lab_server):
    lab = Lab(browser, lab_server)
    yield lab
    lab.close()


def run_notebook(lab: Lab, path: str):
    lab.open(path)
    state = lab.run_all()
    assert state["errors"] == [], f"{path}: error outputs {state['errors']}"
    assert lab.widget_errors() == [], f"{path}: {lab.widget_errors()}"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_notebook_runs_clean_in_the_browser(lab, path, screenshot):
    run_notebook(lab, path)
    screenshot(lab.page, Path(path).stem)


def test_assembly_runner_responds_and_survives_garbage(lab, screenshot):
    run_notebook(lab, "chapters/00_start_here.ipynb")
    box = lab.page.locator(".asm-runner")
    box.scroll_into_view_if_needed()
    source = box.locator("textarea")
    source.fill("mov $7, %ecx\nimul $6, %ecx, %edx")
    box.get_by_role("button", name="Assemble and run").click()
    box.locator("pre").filter(has_text="rdx").wait_for()
    assert "0x000000000000002a" in box.locator("pre").inner_text()   # 7 * 6 = 42 in rdx
    screenshot(lab.page, "asm-runner-valid")

    source.fill("mov %rax\nthis is not assembly")
    box.get_by_role("button", name="Assemble and run").click()
    error = box.locator("span", has_text="✗")
    error.wait_for()
    assert "line 1" in error.inner_text() and "\n" not in error.inner_text().strip()
    assert box.locator(".lv-stale pre").count() == 1   # the last good result stays, greyed as stale
    screenshot(lab.page, "asm-runner-garbage")
    assert lab.kernel("print(6 * 7)").strip() == "42"   # the kernel is alive


def image_sha256(lab: Lab, container: str) -> list[str]:
    """SHA-256 of every image shown in ``container``, fetched from the page as the reader's browser has it."""
    return lab.page.evaluate(
        """async (sel) => {
          const out = [];
          for (const img of document.querySelectorAll(sel + ' img')) {
            const buf = await (await fetch(img.src)).arrayBuffer();
            const h = await crypto.subtle.digest('SHA-256', buf);
            out.push(Array.from(new Uint8Array(h)).map(b => b.toString(16).padStart(2, '0')).join(''));
          }
          return out;
        }""", container)


def slider_readout(lab: Lab, container: str, label: str) -> str:
    return lab.page.locator(container).locator(".widget-slider", has_text=label).locator(".widget-readout").first.inner_text().strip()


def burst_slider(lab: Lab, container: str, label: str, presses: int = 20) -> None:
    """A person dragging a slider fast: ``presses`` key presses on its handle with no wait in between."""
    slider = lab.page.locator(container).locator(".widget-slider", has_text=label).locator(".noUi-handle").first
    slider.scroll_into_view_if_needed()
    slider.focus()
    for _ in range(presses):
        lab.page.keyboard.press("ArrowRight", delay=0)


def kernel_widget(cls_path: str) -> str:
    """Kernel code that binds ``w`` to the instance of a widget class the notebook's latest run displayed: the
    newest one in IPython's ``Out`` (a cell ending in ``GateWorkbench()``). An earlier test's run of the same
    notebook in this kernel leaves older instances alive, and ``gc.get_objects()`` has no order to trust."""
    module, name = cls_path.rsplit(".", 1)
    return (f"import hashlib\nfrom {module} import {name}\n"
            f"w = Out[max(k for k, v in Out.items() if type(v) is {name})]\n")


def test_gate_workbench_follows_a_burst_of_dpl_changes(lab, screenshot):
    run_notebook(lab, "chapters/03a_idt_gates.ipynb")
    box = ".gate-workbench"
    before = lab.page.locator(box).inner_text()
    lab.kernel(kernel_widget("helpers.widgets.idt.GateWorkbench") + "w.dpl.value = 0")
    lab.wait_quiet()
    burst_slider(lab, box, "DPL", presses=20)   # 0 -> 3, then 17 presses against the end stop
    lab.wait_quiet(seconds=1.5)
    state = lab.kernel(kernel_widget("helpers.widgets.idt.GateWorkbench")
                       + "print(w.dpl.value, hashlib.sha256(w.render()[0]).hexdigest(), w.status.value == '')")
    dpl, expected, no_error = state.split()
    assert dpl == "3" == slider_readout(lab, box, "DPL") and no_error == "True"
    shown = image_sha256(lab, box)
    assert shown == [expected], "the workbench must show exactly one figure, the one for the final DPL"
    after = lab.page.locator(box).inner_text()
    assert after != before and "ee" in after.lower()   # P=1, DPL=3, type 0xE: the attribute byte is 0xEE
    screenshot(lab.page, "gate-workbench-after-burst")


def test_gate_workbench_bad_hex_is_one_line(lab):
    run_notebook(lab, "chapters/03a_idt_gates.ipynb")
    box = lab.page.locator(".gate-workbench")
    box.locator("input[placeholder^='paste 16 bytes']").fill("zz 01")
    box.get_by_role("button", name="Decode").click()
    error = box.locator("span", has_text="✗")
    error.wait_for()
    assert "\n" not in error.inner_text().strip()
    assert lab.kernel("print(1 + 1)").strip() == "2"


def test_delivery_viewer_shows_frame_and_if(lab, screenshot):
    run_notebook(lab, "chapters/03a_idt_gates.ipynb")
    box = lab.page.locator(".delivery-viewer")
    box.scroll_into_view_if_needed()
    before = image_sha256(lab, ".delivery-viewer")
    box.locator(".delivery-trigger").click()
    lab.wait_quiet(seconds=1.5)
    text = box.inner_text()
    assert "IF 1 -> 0" in text and "entered vector" in text   # an interrupt gate cleared IF on entry
    assert len(image_sha256(lab, ".delivery-viewer")) == 1
    state = lab.kernel(kernel_widget("helpers.widgets.idt.DeliveryViewer")
                       + "print(hashlib.sha256(w.image.value).hexdigest())")
    assert image_sha256(lab, ".delivery-viewer") == [state.strip()]
    assert before  # the viewer showed a frame before the click too
    screenshot(lab.page, "delivery-viewer-triggered")


def test_delivery_viewer_runs_it_on_qemu(lab, screenshot):
    """The viewer's "Run it on QEMU" boots the book's test kernel and shows QEMU beside the model (or, where
    QEMU is missing, one line saying what to install)."""
    run_notebook(lab, "chapters/03a_idt_gates.ipynb")
    box = lab.page.locator(".delivery-viewer")
    box.scroll_into_view_if_needed()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from helpers import vm
    from helpers.guests import idtk
    # the click's answer: QEMU's report, or one red line; the wait outlasts the boot's own timeout, so a boot that
    # times out fails here with its message, not with Playwright's
    done = box.get_by_text("model (SDM)").or_(box.locator(".delivery-qemu ~ * span", has_text="✗"))
    lab.wait_quiet(seconds=1.5)
    box.locator(".delivery-qemu").click()
    try:   # a click the page swallowed (the output re-rendering under it) shows nothing at all: click once more
        done.or_(box.get_by_text("working…")).first.wait_for(timeout=20_000)
    except PlaywrightTimeout:
        box.locator(".delivery-qemu").click()
    try:
        done.first.wait_for(timeout=(idtk.BOOT_TIMEOUT + 90) * 1000)
    except PlaywrightTimeout:
        held = lab.kernel(kernel_widget("helpers.widgets.idt.DeliveryViewer") + "print(w.qemu_out.value)")
        pytest.fail(f"Run it on QEMU gave no answer; the widget holds: {held!r}")
    text = box.inner_text()
    if vm.available() or vm.require_vm_env():
        assert "handler for vector" in text and "agrees with QEMU field by field" in text, text
    else:
        assert "apt-get install -y --no-install-recommends qemu-system-x86" in text
    screenshot(lab.page, "delivery-viewer-on-qemu")


def test_stack_growth_viewer_runs_and_steps_through_events(lab, screenshot):
    run_notebook(lab, "chapters/04b_goroutine_stacks.ipynb")
    box = lab.page.locator(".stack-growth-viewer")
    box.scroll_into_view_if_needed()
    depth = box.locator(".widget-inline-hbox", has_text="depth").locator("input")
    # the notebook's own `viewer`: an earlier test ran 04b in the same kernel, whose first viewer is still alive,
    # so "the last instance gc finds" can be that one (gc lists the youngest generation first)
    widget = "import hashlib\nw = viewer\n"
    depth.fill("120")
    depth.press("Enter")
    box.get_by_role("button", name="Run").click()
    lab.wait_quiet(seconds=1.5)
    state = lab.kernel(widget + "print(w.depth.value, len(w.runtime().events), w.status.value == '')").split()
    assert state[0] == "120" and int(state[1]) >= 2 and state[2] == "True"
    assert "result" in box.inner_text()

    burst_slider(lab, ".stack-growth-viewer", "event", presses=20)   # step through the growth events fast
    lab.wait_quiet(seconds=1.5)
    final = lab.kernel(widget + "print(w.event.value, hashlib.sha256(w.render()[0]).hexdigest())").split()
    assert int(final[0]) > 0 and final[0] == slider_readout(lab, ".stack-growth-viewer", "event")
    assert image_sha256(lab, ".stack-growth-viewer") == [final[1]]   # one figure, the one for the final event
    screenshot(lab.page, "stack-growth-viewer")
