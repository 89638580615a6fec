"""Calling-convention widget (chapter 2a): pick a convention and arguments; see registers, the stack,
and the real compiled call beside it.

A thin view: :func:`helpers.abi.place_arguments` computes, :func:`helpers.viz.abi.draw_placement` draws,
and the compiled listings come from :func:`helpers.abi.compiled_calls`, built ONCE per convention when the
widget is created (one cached build each), so a change event only looks a listing up.
"""
from __future__ import annotations

import html

import ipywidgets as W

from .. import abi
from ..viz import figure_png
from ..viz.abi import draw_placement
from .base import LiveView, scroll_pre


def _name(k: int) -> str:
    """How the widget names argument ``k`` (0-based): its ordinal and the picture's label, e.g. 'argument 2 (arg1)'."""
    return f"argument {k + 1} (arg{k})"


def parse_args(text: str) -> list[int]:
    """"1, 0x20, -3" -> [1, 32, -3]; a one-line ValueError naming the bad item otherwise."""
    items = [t.strip() for t in str(text).replace(";", ",").split(",")]
    if items == [""]:
        return []
    out = []
    for k, t in enumerate(items):
        try:
            out.append(int(t, 0))
        except ValueError:
            hint = "remove the empty item between two commas" if not t else "write an integer like 7, -3 or 0x1f"
            raise ValueError(f"{_name(k)} is {t!r}, not an integer: {hint}") from None
    return out


def check_args(convention: str, args: list[int]) -> None:
    """The widget's own range check, numbered like its parse errors, saying how to fix the input."""
    c = abi.convention(convention)
    if len(args) > abi.MAX_ARGS:
        raise ValueError(f"{len(args)} arguments: at most {abi.MAX_ARGS} are modelled, remove "
                         f"{len(args) - abi.MAX_ARGS}")
    bits = 8 * c.word
    for k, a in enumerate(args):
        if not -(1 << (bits - 1)) <= a < (1 << bits):
            raise ValueError(f"{_name(k)} = {a} does not fit in a {bits}-bit word ({c.name} passes {bits}-bit "
                             f"words): use a value from {-(1 << (bits - 1))} to {(1 << bits) - 1:#x}")


def placement_html(p: abi.Placement, args: list[int]) -> str:
    """One row per argument: name, value (decimal), the word passed, where it goes (columns never run together)."""
    c = p.convention
    rows = "".join(
        f"<tr><td>arg{s.index}</td><td style='text-align:right;padding:0 .8em'><code>{html.escape(str(a))}</code></td>"
        f"<td style='padding:0 .8em'><code>{s.value:#x}</code></td><td><code>"
        + html.escape(f"%{s.register}" if s.register else f"{s.offset}(%{c.sp})") + "</code>"
        + ("" if s.register else " at entry") + "</td></tr>" for s, a in zip(p.slots, args))
    return (f"<div>{html.escape(c.name)}: {len(p.slots)} argument(s), {p.stack_bytes} stack byte(s), "
            f"{html.escape(c.cleanup)} cleans the stack</div>"
            "<div style='overflow-x:auto'><table style='border-collapse:collapse;white-space:nowrap'>"
            "<tr><th>arg</th><th>value</th><th>word passed</th><th>where</th></tr>" + rows + "</table></div>")


class CallConvView(LiveView):
    """``CallConvView().box`` shows: convention picker, argument text, drawing, placement table, listing."""

    LABEL = "the calling-convention explorer"

    def __init__(self, convention: str = "regparm(3)", args: str = "0x11, 0x22, 0x33, 0x44",
                 compiler: str | None = None, delay: float | None = None):
        super().__init__(**({} if delay is None else {"delay": delay}))
        self.compiler = compiler or (abi.available_compilers() or [None])[0]
        self.calls = {}
        for name in abi.CONVENTIONS:           # precompute: a change event never compiles
            try:
                self.calls[name] = abi.compiled_calls(name, self.compiler or "zig")
            except Exception as exc:           # toolchain missing: the drawing still works
                self.calls[name] = str(exc).splitlines()[0]
        self.convention = W.Dropdown(options=list(abi.CONVENTIONS), value=convention, description="convention")
        self.args = W.Text(value=args, description="arguments",
                           layout=W.Layout(width="auto", flex="1 1 16em", max_width="36em"))
        self.listing = W.HTML(layout=W.Layout(min_width="0"))
        self.watch(self.convention, self.args)
        wrap = W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start")
        self.box = W.VBox([W.Box([self.convention, self.args], layout=wrap), self.status,
                           W.Box([self.image, W.VBox([self.text, self.listing],
                                                     layout=W.Layout(flex="1 1 22em", min_width="0"))],
                                 layout=wrap)])
        self.box.add_class("callconv-widget")
        self.redraw()

    def stale_parts(self) -> tuple:
        return (self.image, self.text, self.listing)

    def render(self):
        args = parse_args(self.args.value)
        check_args(self.convention.value, args)
        p = abi.place_arguments(self.convention.value, args)
        calls = self.calls.get(p.convention.name)
        n = len(args)
        if isinstance(calls, str):
            self.listing.value = f"<i>no compiled call: {html.escape(calls)}</i>"
        elif n > abi.WIDGET_MAX_ARGS:
            self.listing.value = f"<i>compiled calls are prepared for up to {abi.WIDGET_MAX_ARGS} arguments</i>"
        else:
            cc = calls[n]
            self.listing.value = (f"<b>real call with {n} argument(s)</b> (constants "
                                  f"{html.escape(', '.join(map(hex, abi.canonical_args(n)))) or 'none'}), "
                                  f"{html.escape(cc.tool)}:" + scroll_pre(cc.listing, "20em"))
        return figure_png(draw_placement(p)), placement_html(p, args)
