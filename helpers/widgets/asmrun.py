"""The start page's widget: type assembly, press Run, see the listing and the registers that changed.

A thin view over :func:`helpers.playground.run_source`. It runs its example once when it is created, so the
reader sees what it does (and a page without a kernel shows that run as a picture). Bad input shows one red
line in place, and when the source looks like the other assembler syntax, that line says to switch. The
listing scrolls inside the widget however long the program is.
"""
from __future__ import annotations

import re

import ipywidgets as W

from ..playground import run_source
from ..viz import figure_png
from ..viz.text import draw_text
from .base import STALE, Standin, error_html, one_line, scroll_pre

EXAMPLE = "mov $40, %eax\nadd $2, %eax\npush %rax\npop %rbx\n"
# AT&T writes %registers and $immediates; Intel writes bare registers, [memory] and "dword ptr".
_ATT = re.compile(r"%[a-z][a-z0-9]*\b|\$-?(?:0x)?[0-9a-f]+\b|\(%", re.I)
_INTEL = re.compile(r"\[[^\]]*\]|\b(?:byte|word|dword|qword)\s+ptr\b|^\s*[a-z]+\s+(?:[re]?[abcd]x|[re]?[sd]i|[re]?[sb]p|"
                    r"r\d+[dwb]?|[abcd][lh])\s*,", re.I | re.M)


def guess_syntax(source: str) -> str | None:
    """'att' or 'intel' when the source clearly looks like one of them, else None."""
    att, intel = len(_ATT.findall(source)), len(_INTEL.findall(source))
    if att and not intel:
        return "att"
    if intel and not att:
        return "intel"
    return None


class AsmRunner(Standin):
    """``AsmRunner()`` (or its ``.box``) shows: the source, mode and syntax pickers, Run, and the result."""

    LABEL = "the assembly runner"

    def __init__(self, source: str = EXAMPLE, arch: str = "x86_64", syntax: str = "att"):
        self.source = W.Textarea(value=source, description="assembly", rows=6,
                                 layout=W.Layout(width="auto", flex="1 1 24em", max_width="48em"))
        self.arch = W.Dropdown(options=["x86_64", "x86_32"], value=arch, description="mode")
        self.syntax = W.Dropdown(options=["att", "intel"], value=syntax, description="syntax")
        self.run_button = W.Button(description="Assemble and run", button_style="primary")
        self.status = W.HTML()
        self.result = W.HTML(layout=W.Layout(min_width="0"))
        self.run_button.on_click(lambda _b: self.run())
        wrap = W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start")
        self.box = W.VBox([W.Box([self.source, W.VBox([self.arch, self.syntax, self.run_button])], layout=wrap),
                           self.status, self.result])
        self.box.add_class("asm-runner")
        self.runs = 0
        self._first = None  # (report, arch, syntax) of the first run that worked: the default state
        self.run()

    def run(self) -> None:
        try:
            run = run_source(self.source.value, self.arch.value, self.syntax.value)
        except Exception as exc:  # the reader's input: one line, never a traceback
            looks = guess_syntax(self.source.value)
            hint = ""
            if looks and looks != self.syntax.value:
                hint = f" — this looks like {'AT&T' if looks == 'att' else 'Intel'} syntax: switch syntax to {looks}"
            self.status.value = error_html(one_line(exc) + hint)
            if self.runs:
                self.status.value += " (the greyed result below is from the last run that worked)"
            self.result.add_class(STALE)
            return
        self.status.value = ""
        self.result.remove_class(STALE)
        report = run.report()
        if self._first is None:
            self._first = (report, self.arch.value, self.syntax.value)
        self.result.value = scroll_pre(report, "24em")
        self.runs += 1

    def picture(self) -> bytes | None:
        if self._first is None:
            return None
        report, arch, syntax = self._first
        return figure_png(draw_text(report, title=f"the assembly runner's first run ({arch}, {syntax} syntax)"))
