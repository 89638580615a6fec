"""Chapter 3's widgets: the gate workbench and the delivery viewer. Thin views over helpers.idt + viz.idt.

Both subclass :class:`helpers.widgets.base.LiveView`: a burst of control changes draws once, for the final
value, and bad input shows one red line in ``.status``. Controls are attributes (``w.dpl``, ``w.kind``, ...)
and the boxes carry stable CSS classes (``gate-workbench``, ``delivery-viewer``) for the browser tests.
"""
from __future__ import annotations

import html

import ipywidgets as W

from helpers import idt
from helpers.viz import figure_png
from helpers.viz import idt as viz

from .base import LiveView, error_html, one_line


def parse_number(name: str, text: str) -> int:
    """'0xffffffff81000000', '4096', '0x10' -> int; GateError naming the control otherwise."""
    t = str(text).strip().replace("_", "")
    try:
        return int(t, 0)
    except ValueError:
        raise idt.GateError(f"{name}: {text!r} is not a number (write hex as 0x...)") from None


def gate_table_html(gate: idt.Gate, raw: bytes, mode: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f.name)}</td><td>{f.lo}-{f.hi}</td><td><code>{f.value:#x}</code></td>"
        f"<td>{html.escape(f.note)}</td></tr>" for f in idt.layout(raw, mode))
    return (f"<div><code>{idt.hexbytes(raw)}</code></div><div>{html.escape(gate.describe(mode))}</div>"
            f"<table style='font-size:85%'><tr><th>field</th><th>bits</th><th>value</th><th>meaning</th></tr>"
            f"{rows}</table>")


class GateWorkbench(LiveView):
    """Build a gate field by field and watch its 16 (or 8) bytes and bit fields change; or paste bytes."""

    def __init__(self, gate: idt.Gate | None = None, mode: str = "long", delay=None):
        super().__init__() if delay is None else super().__init__(delay)
        g = gate or idt.Gate(0xFFFFFFFF81A00A40, idt.KERNEL_CS)
        self.mode = W.Dropdown(options=list(idt.MODES), value=mode, description="mode")
        self.offset = W.Text(value=f"{g.offset:#x}", description="offset", continuous_update=False)
        self.selector = W.Text(value=f"{g.selector:#x}", description="selector", continuous_update=False)
        self.ist = W.IntSlider(value=g.ist, min=0, max=7, description="IST")
        self.kind = W.Dropdown(options=["interrupt", "trap", "task"], value=g.kind, description="kind")
        self.dpl = W.IntSlider(value=g.dpl, min=0, max=3, description="DPL")
        self.present = W.Checkbox(value=g.present, description="present (P)")
        self.paste = W.Text(value="", placeholder="paste 16 bytes of hex, e.g. 40 0a 10 00 00 8e ...",
                            description="bytes", layout=W.Layout(width="36em"))
        self.decode_button = W.Button(description="Decode")
        self.decode_button.on_click(lambda _b: self.decode_paste())
        self.watch(self.mode, self.offset, self.selector, self.ist, self.kind, self.dpl, self.present)
        controls = W.VBox([self.mode, self.offset, self.selector, self.kind, self.dpl, self.ist, self.present])
        self.box = W.VBox([W.HBox([controls, self.text]), W.HBox([self.paste, self.decode_button]),
                           self.status, self.image])
        self.box.add_class("gate-workbench")
        self.redraw()

    def gate(self) -> idt.Gate:
        return idt.Gate(parse_number("offset", self.offset.value), parse_number("selector", self.selector.value),
                        self.ist.value, self.kind.value, self.dpl.value, self.present.value)

    def render(self):
        mode = self.mode.value
        gate = self.gate()
        raw = gate.encode(mode)
        return figure_png(viz.draw_gate(raw, mode)), gate_table_html(gate, raw, mode)

    def decode_paste(self) -> None:
        """Set every control from the pasted bytes; a bad paste leaves the controls alone and says why."""
        try:
            gate = idt.Gate.decode(self.paste.value, self.mode.value)
        except Exception as exc:
            self.status.value = error_html(one_line(exc))
            return
        with self.box.hold_sync():
            self.offset.value, self.selector.value = f"{gate.offset:#x}", f"{gate.selector:#x}"
            self.kind.value, self.dpl.value, self.ist.value, self.present.value = gate.kind, gate.dpl, gate.ist, gate.present
        self._debounce.trigger()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)


class DeliveryViewer(LiveView):
    """Pick a gate and an event, trigger it, and see what the CPU pushes and whether IF survives.

    With ``emulate=True`` (the default) the event runs in the emulator through :func:`helpers.idt.run_int`:
    a real ``lidt``, the gate in emulated memory, ``int $n``, the handler, ``iretq``. Otherwise only the
    model (:func:`helpers.idt.deliver`) runs.
    """

    def __init__(self, vector: int = 0x80, emulate: bool = True, delay=None):
        super().__init__() if delay is None else super().__init__(delay)
        self.emulate = emulate
        self.vector = W.BoundedIntText(value=vector, min=32, max=255, description="vector")
        self.kind = W.Dropdown(options=["interrupt", "trap"], value="interrupt", description="kind")
        self.dpl = W.IntSlider(value=3, min=0, max=3, description="gate DPL")
        self.ist = W.IntSlider(value=0, min=0, max=3, description="IST")
        self.present = W.Checkbox(value=True, description="present (P)")
        self.cpl = W.Dropdown(options=[0, 3], value=3, description="CPL")
        self.software = W.Checkbox(value=True, description="software INT n")
        self.trigger = W.Button(description="Trigger int n", button_style="primary")
        self.trigger.add_class("delivery-trigger")
        self.trigger.on_click(lambda _b: self._debounce.trigger())  # clicks coalesce like slider drags
        self.watch(self.vector, self.kind, self.dpl, self.ist, self.present, self.cpl, self.software)
        controls = W.VBox([self.vector, self.kind, self.dpl, self.ist, self.present, self.cpl, self.software,
                           self.trigger])
        # "Run it on QEMU": the same gate and event on the book's bare-metal test kernel (helpers.guests.idtk).
        self.qemu_button = W.Button(description="Run it on QEMU")
        self.qemu_button.add_class("delivery-qemu")
        self.qemu_button.on_click(lambda _b: self.run_on_qemu())
        self.qemu_out = W.HTML()
        self.box = W.VBox([W.HBox([controls, self.image]), self.status, self.text, self.qemu_button, self.qemu_out])
        self.box.add_class("delivery-viewer")
        self.last = None
        self.last_qemu = None
        self.redraw()

    def run_on_qemu(self) -> None:
        """Boot the test kernel with this gate (at the kernel's own handler stub) and show QEMU beside the model.
        A boot takes about a second (a cached one nothing); a missing QEMU is one red line."""
        from helpers import vm
        from helpers.guests import idtk
        self.qemu_out.value = "<i>working… (building the test kernel and booting QEMU)</i>"
        try:
            gate = idt.Gate(idtk.stub(self.vector.value), idt.KERNEL_CS, self.ist.value, self.kind.value,
                            self.dpl.value, self.present.value)
            self.last_qemu = idtk.check_gate(gate, self.vector.value, cpl=self.cpl.value,
                                             event="int" if self.software.value else "hw")
        except (vm.VMError, idt.GateError) as exc:
            self.last_qemu = None
            self.qemu_out.value = error_html(one_line(exc))
            return
        self.qemu_out.value = f"<pre>{html.escape(self.last_qemu.report())}</pre>"

    def gate(self) -> idt.Gate:
        return idt.Gate(idt.DEMO_HANDLER, idt.KERNEL_CS, self.ist.value, self.kind.value, self.dpl.value,
                        self.present.value)

    def render(self):
        run = idt.run_int(self.gate(), self.vector.value, cpl=self.cpl.value, software=self.software.value,
                          emulate=self.emulate)
        self.last = run
        return figure_png(viz.draw_frame(run.delivery)), f"<pre>{html.escape(run.report())}</pre>"

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)
