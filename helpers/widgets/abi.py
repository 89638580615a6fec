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
from .base import LiveView


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
            raise ValueError(f"argument {k + 1} ({t!r}) is not an integer like 7, -3 or 0x1f") from None
    return out


class CallConvView(LiveView):
    """``CallConvView().box`` shows: convention picker, argument text, drawing, placement table, listing."""

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
        self.args = W.Text(value=args, description="arguments", layout=W.Layout(width="28em"))
        self.listing = W.HTML()
        self.watch(self.convention, self.args)
        self.box = W.VBox([W.HBox([self.convention, self.args]), self.status,
                           W.HBox([self.image, W.VBox([self.text, self.listing])])])
        self.box.add_class("callconv-widget")
        self.redraw()

    def render(self):
        args = parse_args(self.args.value)
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
                                  f"{html.escape(cc.tool)}:<pre>{html.escape(cc.listing)}</pre>")
        return figure_png(draw_placement(p)), f"<pre>{html.escape(p.table())}</pre>"

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)
