"""The start page's widget: type assembly, press Run, see the listing and the registers that changed.

A thin view over :func:`helpers.playground.run_source`. Bad input shows one red line in place.
"""
from __future__ import annotations

import html

import ipywidgets as W

from ..playground import run_source
from .base import error_html, one_line

EXAMPLE = "mov $40, %eax\nadd $2, %eax\npush %rax\npop %rbx\n"


class AsmRunner:
    def __init__(self, source: str = EXAMPLE, arch: str = "x86_64", syntax: str = "att"):
        self.source = W.Textarea(value=source, description="assembly", rows=6,
                                 layout=W.Layout(width="32em", font_family="monospace"))
        self.arch = W.Dropdown(options=["x86_64", "x86_32"], value=arch, description="mode")
        self.syntax = W.Dropdown(options=["att", "intel"], value=syntax, description="syntax")
        self.run_button = W.Button(description="Assemble and run", button_style="primary")
        self.status = W.HTML()
        self.result = W.HTML()
        self.run_button.on_click(lambda _b: self.run())
        self.box = W.VBox([W.HBox([self.source, W.VBox([self.arch, self.syntax, self.run_button])]),
                           self.status, self.result])
        self.box.add_class("asm-runner")
        self.runs = 0

    def run(self) -> None:
        try:
            run = run_source(self.source.value, self.arch.value, self.syntax.value)
        except Exception as exc:  # the reader's input: one line, never a traceback
            self.status.value = error_html(one_line(exc))
            self.result.value = ""
            return
        self.status.value = ""
        self.result.value = f"<pre>{html.escape(run.report())}</pre>"
        self.runs += 1

    def _ipython_display_(self):
        from IPython.display import display
        display(self.box)
