"""Chapter 4b's stack-growth viewer: real Go code growing its stack, runtime modelled from runtime/stack.go.

A thin view over :func:`helpers.gostack.run_recursion` and :func:`helpers.viz.gostack.draw_timeline`.
Controls are attributes (``w.which``, ``w.depth``, ``w.preempt``, ``w.policy``, ``w.initial_stack``,
``w.event``, ``w.run_button``); the box carries the CSS class ``stack-growth-viewer``. Runs are cached by
their parameters, so stepping through events never re-runs the emulator.
"""
from __future__ import annotations

import html

import ipywidgets as W

from helpers import gostack
from helpers.viz import figure_png
from helpers.viz import gostack as viz

from .base import LiveView

MAX_DEPTH = {"small": 5000, "medium": 1000, "large": 100}  # keeps one run well under a second


def _fields_html(before: dict, after: dict) -> str:
    rows = "".join(f"<tr><td>g.{html.escape(k)}</td><td><code>{before.get(k, 0):#x}</code></td>"
                   f"<td><code>{after.get(k, 0):#x}</code></td></tr>" for k in after)
    return f"<table style='font-size:80%'><tr><th>field</th><th>before</th><th>after</th></tr>{rows}</table>"


def _frames_html(frames) -> str:
    rows = "".join(f"<tr><td>{html.escape(f.func)}</td><td><code>{f.pc:#x}</code></td><td><code>{f.sp:#x}</code></td>"
                   f"<td><code>{f.fp:#x}</code></td></tr>" for f in frames)
    return f"<table style='font-size:80%'><tr><th>function</th><th>pc</th><th>sp</th><th>fp</th></tr>{rows}</table>"


def event_html(rt: gostack.Runtime, index: int) -> str:
    """The event table (all events, the chosen one in bold) and the chosen event's g fields and frames."""
    rows = []
    for i, e in enumerate(rt.events):
        r = e.row()
        style = " style='font-weight:bold;background:#ffe'" if i == index else ""
        rows.append(f"<tr{style}><td>{i}</td><td>{r['kind']}</td><td>{r['goid']}</td><td>{r['insns']}</td>"
                    f"<td>{html.escape(r['func'])}</td><td>{r['size']}</td><td>{r['stackguard0']}</td>"
                    f"<td>{r['used']}</td><td>{r['frames_adjusted']}</td></tr>")
    table = ("<div style='max-height:180px;overflow:auto'><table style='font-size:80%'><tr><th>#</th><th>kind</th>"
             "<th>g</th><th>insns</th><th>func</th><th>size</th><th>stackguard0</th><th>used</th>"
             f"<th>frames adj.</th></tr>{''.join(rows)}</table></div>")
    e = rt.events[index]
    detail = ""
    if e.g_after:
        detail += _fields_html(e.g_before, e.g_after)
    if e.frames_before:
        detail += (f"<div style='display:flex;gap:1em'><div>frames before{_frames_html(e.frames_before)}</div>"
                   f"<div>frames after{_frames_html(e.frames_after)}</div></div>")
    return table + f"<div><b>event {index}: {html.escape(e.kind)}</b></div>" + detail


class StackGrowthViewer(LiveView):
    """Pick a frame size, depth, preemption interval and policy; watch real Go code grow its stack."""

    def __init__(self, which: str = "medium", depth: int = 40, preempt: int = 0, policy: str = "copying",
                 initial_stack: int = 2048, program: gostack.GoProgram | None = None, delay: float | None = None):
        super().__init__(**({} if delay is None else {"delay": delay}))
        self.program = program
        self.which = W.Dropdown(options=list(gostack.FRAME_FUNCS), value=which, description="frame")
        self.depth = W.BoundedIntText(value=depth, min=0, max=gostack.MAX_DEPTH, description="depth")
        self.preempt = W.BoundedIntText(value=preempt, min=0, max=10_000_000, step=500,
                                        description="preempt every", style={"description_width": "initial"})
        self.policy = W.ToggleButtons(options=["copying", "segmented"], value=policy)
        self.initial_stack = W.Dropdown(options=[2048, 4096, 8192, 16384], value=initial_stack, description="stack")
        self.event = W.IntSlider(value=0, min=0, max=0, description="event")
        self.run_button = W.Button(description="Run", button_style="primary")
        self.run_button.on_click(lambda _b: self._debounce.trigger())
        self._cache: dict[tuple, gostack.Runtime] = {}
        self._quiet = False  # set while render() re-ranges the event slider, so that is not a new request
        self.watch(self.which, self.depth, self.preempt, self.policy, self.initial_stack)
        self.event.observe(self._on_event, names="value")
        self.box = W.VBox([W.HBox([self.which, self.depth, self.initial_stack]),
                           W.HBox([self.preempt, self.policy, self.run_button]),
                           self.event, self.status, self.image, self.text])
        self.box.add_class("stack-growth-viewer")
        self.redraw()

    def _on_event(self, _change) -> None:
        if not self._quiet:
            self._debounce.trigger()

    def params(self) -> tuple:
        return (self.which.value, self.depth.value, self.preempt.value, self.policy.value, self.initial_stack.value)

    def runtime(self) -> gostack.Runtime:
        which, depth, preempt, policy, stack = self.params()
        if depth > MAX_DEPTH[which]:
            raise gostack.GoStackError(f"depth {depth} is too deep for the viewer with {which} frames (max {MAX_DEPTH[which]})")
        if preempt and preempt < 100:
            raise gostack.GoStackError("preempt every: 0 (off) or at least 100 instructions")
        key = self.params()
        if key not in self._cache:
            self._cache.clear()  # keep one run: a long SP trace is the biggest thing we hold
            self._cache[key] = gostack.run_recursion(which, depth, initial_stack=stack, policy=policy,
                                                     preempt_every=preempt or None, program=self.program,
                                                     trace_sp=True, max_insns=5_000_000, timeout=10)
        return self._cache[key]

    def render(self):
        rt = self.runtime()
        n = len(rt.events)
        if self.event.max != n - 1:
            # a new run: re-range the slider without letting that change schedule another redraw
            self._quiet = True
            try:
                self.event.max = n - 1
                self.event.value = min(self.event.value, n - 1)
            finally:
                self._quiet = False
        index = self.event.value
        which, depth, preempt, policy, stack = self.params()
        title = (f"{which} frames ({rt.program.frame_size('main.' + which)} B), depth {depth}, {policy}, "
                 f"initial stack {stack} B" + (f", preempt every {preempt} insns" if preempt else ""))
        fig = viz.draw_timeline(rt, title=title, highlight=index)
        kinds = [e.kind for e in rt.events]
        summary = (f"<div>result {rt.read_global('main.Result')}, {rt.insns} instructions, "
                   + ", ".join(f"{kinds.count(k)} {k}" for k in ("grow", "preempt", "split", "unsplit") if k in kinds)
                   + "</div>")
        return figure_png(fig), summary + event_html(rt, index)
