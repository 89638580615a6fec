"""Chapter 3's widgets: the gate workbench and the delivery viewer. Thin views over helpers.idt + viz.idt.

Both subclass :class:`helpers.widgets.base.LiveView`: a burst of control changes draws once, for the final
value, and bad input shows one red line in ``.status`` that says how to fix it (the view below is greyed as the
last valid state). Controls are attributes (``w.dpl``, ``w.kind``, ...)
and the boxes carry stable CSS classes (``gate-workbench``, ``delivery-viewer``) for the browser tests.
"""
from __future__ import annotations

import html
import re

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


def gate_problem(gate: idt.Gate, mode: str) -> str | None:
    """What is wrong with the controls' gate in ``mode``, and how to fix it (None when it encodes)."""
    if gate.kind == "task" and mode == "long":
        return ("kind: task gates do not exist in 64-bit mode (Intel SDM Vol. 3A §6.14.1): switch mode to "
                "protected, or choose kind interrupt or trap")
    if gate.kind == "task" and gate.offset:
        return "offset: a task gate has no handler offset (the selector names the TSS): set offset to 0"
    if mode == "protected" and gate.offset > idt.U32:
        return f"offset: {gate.offset:#x} does not fit in a protected-mode gate's 32 bits: use 0..0xffffffff"
    if not 0 <= gate.offset <= idt.U64:
        return "offset: use 0..0xffffffffffffffff"
    if not 0 <= gate.selector <= idt.U16:
        return f"selector: {gate.selector:#x} is not a 16-bit selector: use 0..0xffff (Linux's kernel CS is 0x10)"
    return None


def paste_hint(message: str, mode: str) -> str:
    """A decode error, with the fix when the pasted bytes are for the other mode."""
    other = "protected" if mode == "long" else "long"
    m = re.match(r"length: .* got (\d+)$", message)
    if m and int(m.group(1)) == idt.GATE_SIZE[other]:
        return f"{message}: that is a {other}-mode gate; switch mode to {other}, or paste {idt.GATE_SIZE[mode]} bytes"
    if m:
        return f"{message}: paste {idt.GATE_SIZE[mode]} bytes"
    return message


def gate_table_html(gate: idt.Gate, raw: bytes, mode: str) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(f.name)}</td><td>{f.lo}-{f.hi}</td><td><code>{f.value:#x}</code></td>"
        f"<td>{html.escape(f.note)}</td></tr>" for f in idt.layout(raw, mode))
    return (f"<div><code>{idt.hexbytes(raw)}</code></div><div>{html.escape(gate.describe(mode))}</div>"
            f"<table style='font-size:85%'><tr><th>field</th><th>bits</th><th>value</th><th>meaning</th></tr>"
            f"{rows}</table>")


class GateWorkbench(LiveView):
    """Build a gate field by field and watch its 16 (or 8) bytes and bit fields change; or paste bytes.

    In protected mode the IST slider is hidden (32-bit gates have no IST field) and the paste box asks for
    8 bytes.
    """

    LABEL = "the gate workbench"
    PLACEHOLDER = "paste {n} bytes of hex, e.g. {example}"

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
        self.paste = W.Text(value="", description="bytes", layout=W.Layout(width="auto", flex="1 1 20em",
                                                                            max_width="40em"))
        self.decode_button = W.Button(description="Decode")
        self.decode_button.on_click(lambda _b: self.decode_paste())
        self.mode.observe(lambda _c: self._follow_mode(), names="value")
        self._follow_mode()
        self.watch(self.mode, self.offset, self.selector, self.ist, self.kind, self.dpl, self.present)
        controls = W.VBox([self.mode, self.offset, self.selector, self.kind, self.dpl, self.ist, self.present])
        wrap = W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start")
        self.text.layout.flex = "1 1 24em"
        self.box = W.VBox([W.Box([controls, self.text], layout=wrap),
                           W.Box([self.paste, self.decode_button], layout=wrap), self.status, self.image])
        self.box.add_class("gate-workbench")
        self.redraw()

    def _follow_mode(self) -> None:
        """Show only the controls the mode has: no IST in protected mode; the paste box asks for its size."""
        long = self.mode.value == "long"
        self.ist.layout.display = None if long else "none"
        example = "40 0a 10 00 00 8e a0 81 ff ff ff ff 00 00 00 00" if long else "40 0a 10 00 00 8e a0 81"
        self.paste.placeholder = self.PLACEHOLDER.format(n=idt.GATE_SIZE[self.mode.value], example=example)

    def gate(self) -> idt.Gate:
        ist = self.ist.value if self.mode.value == "long" else 0  # 32-bit gates have no IST field
        return idt.Gate(parse_number("offset", self.offset.value), parse_number("selector", self.selector.value),
                        ist, self.kind.value, self.dpl.value, self.present.value)

    def render(self):
        mode = self.mode.value
        gate = self.gate()
        problem = gate_problem(gate, mode)
        if problem:
            raise idt.GateError(problem)
        raw = gate.encode(mode)
        return figure_png(viz.draw_gate(raw, mode)), gate_table_html(gate, raw, mode)

    def decode_paste(self) -> None:
        """Set every control from the pasted bytes; a bad paste leaves the controls alone and says why."""
        try:
            gate = idt.Gate.decode(self.paste.value, self.mode.value)
        except Exception as exc:
            self.status.value = error_html(paste_hint(one_line(exc), self.mode.value))
            return
        with self.box.hold_sync():
            self.offset.value, self.selector.value = f"{gate.offset:#x}", f"{gate.selector:#x}"
            self.kind.value, self.dpl.value, self.present.value = gate.kind, gate.dpl, gate.present
            if self.mode.value == "long":
                self.ist.value = gate.ist
        self._debounce.trigger()


class DeliveryViewer(LiveView):
    """Pick a gate and an event, trigger it, and see what the CPU pushes and whether IF survives.

    With ``emulate=True`` (the default) the event runs in the emulator through :func:`helpers.idt.run_int`:
    a real ``lidt``, the gate in emulated memory, ``int $n``, the handler, ``iretq``. Otherwise only the
    model (:func:`helpers.idt.deliver`) runs. The event is either a software ``INT n`` (the gate's DPL is
    checked) or a hardware interrupt on that vector (it is not); the button and the report say which.
    """

    LABEL = "the delivery viewer"
    VECTORS = (32, 255)  # 0-31 are the CPU's exceptions, which the viewer does not raise by number

    def __init__(self, vector: int = 0x80, emulate: bool = True, delay=None):
        super().__init__() if delay is None else super().__init__(delay)
        self.emulate = emulate
        self.vector = W.IntText(value=vector, description="vector")
        self.kind = W.Dropdown(options=["interrupt", "trap"], value="interrupt", description="kind")
        self.dpl = W.IntSlider(value=3, min=0, max=3, description="gate DPL")
        self.ist = W.IntSlider(value=0, min=0, max=3, description="IST")
        self.present = W.Checkbox(value=True, description="present (P)")
        self.cpl = W.Dropdown(options=[0, 3], value=3, description="CPL")
        self.software = W.Checkbox(value=True, description="software INT n (off: a hardware interrupt)",
                                   style={"description_width": "initial"})
        self.trigger = W.Button(button_style="primary", layout=W.Layout(width="auto"))
        self.trigger.add_class("delivery-trigger")
        self.trigger.on_click(lambda _b: self._debounce.trigger())  # clicks coalesce like slider drags
        self.software.observe(lambda _c: self._label_trigger(), names="value")
        self.vector.observe(lambda _c: self._label_trigger(), names="value")
        self._label_trigger()
        self.watch(self.vector, self.kind, self.dpl, self.ist, self.present, self.cpl, self.software)
        controls = W.VBox([self.vector, self.kind, self.dpl, self.ist, self.present, self.cpl, self.software,
                           self.trigger])
        # "Run it on QEMU": the same gate and event on the book's bare-metal test kernel (helpers.guests.idtk).
        self.qemu_button = W.Button(description="Run it on QEMU")
        self.qemu_button.add_class("delivery-qemu")
        self.qemu_button.on_click(lambda _b: self.run_on_qemu())
        self.qemu_out = W.HTML(layout=W.Layout(min_width="0"))
        for control in (self.vector, self.kind, self.dpl, self.ist, self.present, self.cpl, self.software):
            control.observe(lambda _c: self._qemu_stale(), names="value")
        wrap = W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start")
        self.box = W.VBox([W.Box([controls, self.image], layout=wrap), self.status, self.text, self.qemu_button,
                           self.qemu_out])
        self.box.add_class("delivery-viewer")
        self.last = None
        self.last_qemu = None
        self.redraw()

    def _qemu_stale(self) -> None:
        """A QEMU result for other settings must not look current: grey it and say so."""
        if self.last_qemu is not None and "qemu-stale" not in self.qemu_out.value:
            self.qemu_out.value = (f"<div class='qemu-stale' style='opacity:0.45'><i>QEMU's result for the previous "
                                   f"settings: press Run it on QEMU again</i>{self.qemu_out.value}</div>")

    def run_on_qemu(self) -> None:
        """Boot the test kernel with this gate (at the kernel's own handler stub) and show QEMU beside the model.
        A boot takes about a second (a cached one nothing); a missing QEMU is one red line."""
        from helpers import vm
        from helpers.guests import idtk
        self.qemu_out.value = "<i>working… (building the test kernel and booting QEMU)</i>"
        vector = self.vector_used()
        try:
            gate = idt.Gate(idtk.stub(vector), idt.KERNEL_CS, self.ist.value, self.kind.value,
                            self.dpl.value, self.present.value)
            self.last_qemu = idtk.check_gate(gate, vector, cpl=self.cpl.value,
                                             event="int" if self.software.value else "hw")
        except Exception as exc:  # a missing QEMU, a refused gate, a failed build or boot: one line, in place
            self.last_qemu = None
            kind = "" if isinstance(exc, (vm.VMError, idt.GateError)) else f"{type(exc).__name__}: "
            self.qemu_out.value = error_html(kind + one_line(exc))
            return
        self.qemu_out.value = f"<pre>{html.escape(self.last_qemu.report())}</pre>"

    def vector_used(self) -> int:
        """The vector the viewer runs: the typed one, clamped to 32..255 (the report says when it clamps)."""
        lo, hi = self.VECTORS
        return min(max(self.vector.value, lo), hi)

    def event_name(self, vector: int) -> str:
        return f"INT {vector:#x}" if self.software.value else f"hardware interrupt {vector:#x}"

    def _label_trigger(self) -> None:
        self.trigger.description = "Run " + self.event_name(self.vector_used())

    def gate(self) -> idt.Gate:
        return idt.Gate(idt.DEMO_HANDLER, idt.KERNEL_CS, self.ist.value, self.kind.value, self.dpl.value,
                        self.present.value)

    def render(self):
        lo, hi = self.VECTORS
        asked, vector = self.vector.value, self.vector_used()
        run = idt.run_int(self.gate(), vector, cpl=self.cpl.value, software=self.software.value,
                          emulate=self.emulate)
        self.last = run
        event = (f"event: software INT {vector:#x} (the int instruction at CPL {self.cpl.value}; the gate's DPL is "
                 f"checked)" if self.software.value else
                 f"event: hardware interrupt on vector {vector:#x} (from a device, at CPL {self.cpl.value}; the "
                 f"gate's DPL is not checked)")
        note = ""
        if vector != asked:
            note = (f"<div style='color:#8a5300'>⚠ vector {asked} is outside {lo}..{hi} (0-31 are the CPU's "
                    f"exceptions): the viewer used {vector}</div>")
        return figure_png(viz.draw_frame(run.delivery)), note + f"<pre>{html.escape(event)}\n{html.escape(run.report())}</pre>"
