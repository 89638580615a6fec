"""Chapter 4b's stack-growth viewer: real Go code growing its stack, runtime modelled from runtime/stack.go.

A thin view over :func:`helpers.gostack.run_recursion` (the book's example program),
:class:`helpers.gostack.FunctionProgram` (a function the reader writes) and :class:`helpers.viz.gostack.Timeline`.
Controls are attributes (``w.which``, ``w.depth``, ``w.preempt``, ``w.policy``, ``w.initial_stack``,
``w.event``, ``w.run_button``, and for the reader's code ``w.source`` and ``w.func``); the box carries the CSS
class ``stack-growth-viewer``. A run and its base figure are cached by their parameters, so stepping through
events never re-runs the emulator and redraws only the highlight.
"""
from __future__ import annotations

import html

import ipywidgets as W

from helpers import gostack
from helpers.viz import gostack as viz

from .base import LiveView

YOURS = "your function"
# depths the viewer accepts, per frame choice: one run stays well under a second, its drawing bounded
MAX_DEPTH = {"small": 5000, "medium": 1000, "large": 100, YOURS: 3000}
TABLE_ROWS = 40  # event rows shown around the chosen one

EXAMPLE_SOURCE = '''// Your function: one integer argument (the depth), an integer result, no allocation.
// mark(n) records where the goroutine's stack is at depth n.

//go:noinline
func f(n int) int {
	mark(n)
	var local [100]int64
	local[n%100] = int64(n)
	if n == 0 {
		return 0
	}
	return f(n-1) + int(local[n%100])
}
'''


def _fields_html(before: dict, after: dict) -> str:
    rows = "".join(f"<tr><td>g.{html.escape(k)}</td><td><code>{before.get(k, 0):#x}</code></td>"
                   f"<td><code>{after.get(k, 0):#x}</code></td></tr>" for k in after)
    return f"<table style='font-size:80%'><tr><th>field</th><th>before</th><th>after</th></tr>{rows}</table>"


def _frames_html(frames) -> str:
    rows = "".join(f"<tr><td>{html.escape(f.func)}</td><td><code>{f.pc:#x}</code></td><td><code>{f.sp:#x}</code></td>"
                   f"<td><code>{f.fp:#x}</code></td></tr>" for f in frames)
    return f"<table style='font-size:80%'><tr><th>function</th><th>pc</th><th>sp</th><th>fp</th></tr>{rows}</table>"


def event_html(rt: gostack.Runtime, index: int, rows: int = TABLE_ROWS) -> str:
    """The event table (``rows`` events around the chosen one, which is in bold) and the chosen event's
    g fields and frames."""
    n = len(rt.events)
    first = max(0, min(index - rows // 2, n - rows))
    out = []
    for i in range(first, min(n, first + rows)):
        r = rt.events[i].row()
        style = " style='font-weight:bold;background:#ffe'" if i == index else ""
        out.append(f"<tr{style}><td>{i}</td><td>{r['kind']}</td><td>{r['goid']}</td><td>{r['insns']}</td>"
                   f"<td>{html.escape(r['func'])}</td><td>{r['size']}</td><td>{r['stackguard0']}</td>"
                   f"<td>{r['used']}</td><td>{r['frames_adjusted']}</td></tr>")
    more = f"<div style='font-size:80%'>events {first}–{first + len(out) - 1} of {n}</div>" if n > rows else ""
    table = ("<div style='max-height:180px;overflow:auto'><table style='font-size:80%'><tr><th>#</th><th>kind</th>"
             "<th>g</th><th>insns</th><th>func</th><th>size</th><th>stackguard0</th><th>used</th>"
             f"<th>frames adj.</th></tr>{''.join(out)}</table></div>{more}")
    e = rt.events[index]
    detail = ""
    if e.g_after:
        detail += _fields_html(e.g_before, e.g_after)
    if e.frames_before:
        detail += (f"<div style='display:flex;gap:1em'><div>frames before{_frames_html(e.frames_before)}</div>"
                   f"<div>frames after{_frames_html(e.frames_after)}</div></div>")
    return table + f"<div><b>event {index}: {html.escape(e.kind)}</b></div>" + detail


class StackGrowthViewer(LiveView):
    """Pick a frame size (or write a function), depth, preemption interval and policy; watch real Go code
    grow its stack."""

    def __init__(self, which: str = "medium", depth: int = 40, preempt: int = 0, policy: str = "copying",
                 initial_stack: int = 2048, program: gostack.GoProgram | None = None, delay: float | None = None,
                 source: str = EXAMPLE_SOURCE, func: str = "f"):
        super().__init__(**({} if delay is None else {"delay": delay}))
        self.program = program
        self.which = W.Dropdown(options=[*gostack.FRAME_FUNCS, YOURS], value=which, description="frame")
        self.depth = W.BoundedIntText(value=min(depth, MAX_DEPTH[which]), min=0, max=MAX_DEPTH[which],
                                      description="depth")
        self.preempt = W.BoundedIntText(value=preempt, min=0, max=10_000_000, step=500,
                                        description="preempt every", style={"description_width": "initial"})
        self.policy = W.ToggleButtons(options=["copying", "segmented"], value=policy)
        self.initial_stack = W.Dropdown(options=[2048, 4096, 8192, 16384], value=initial_stack, description="stack")
        self.source = W.Textarea(value=source, layout=W.Layout(width="100%", height="14em"))
        self.func = W.Text(value=func, description="function")
        self.event = W.IntSlider(value=0, min=0, max=0, description="event")
        self.run_button = W.Button(description="Run", button_style="primary")
        self.run_button.on_click(lambda _b: self._debounce.trigger())
        self._cache: dict[tuple, tuple] = {}   # params -> (runtime, timeline): one run kept
        self._quiet = False  # set while render() re-ranges the event slider, so that is not a new request
        self.which.observe(self._on_which, names="value")
        # the reader's source is compiled on Run only, not on every keystroke
        self.watch(self.depth, self.preempt, self.policy, self.initial_stack)
        self.event.observe(self._on_event, names="value")
        self.yours = W.VBox([self.source, self.func])
        self.yours.layout.display = "" if which == YOURS else "none"
        self.box = W.VBox([W.HBox([self.which, self.depth, self.initial_stack]),
                           W.HBox([self.preempt, self.policy, self.run_button]), self.yours,
                           self.event, self.status, self.image, self.text])
        self.box.add_class("stack-growth-viewer")
        self.redraw()

    def _on_which(self, change) -> None:
        # the depth box allows only what the viewer accepts for this choice
        self.depth.max = MAX_DEPTH[change["new"]]
        self.yours.layout.display = "" if change["new"] == YOURS else "none"
        self._debounce.trigger()

    def _on_event(self, _change) -> None:
        if not self._quiet:
            self._debounce.trigger()

    def params(self) -> tuple:
        p = (self.which.value, self.depth.value, self.preempt.value, self.policy.value, self.initial_stack.value)
        return p + ((self.source.value, self.func.value.strip()) if self.which.value == YOURS else ())

    def _run(self) -> tuple:
        which, depth, preempt, policy, stack = self.params()[:5]
        if depth > MAX_DEPTH[which]:
            raise gostack.GoStackError(f"depth {depth} is too deep for the viewer with {which} frames (max {MAX_DEPTH[which]})")
        if preempt and preempt < 100:
            raise gostack.GoStackError("preempt every: 0 (off) or at least 100 instructions")
        key = self.params()
        if key not in self._cache:
            self._cache.clear()  # keep one run: a long SP trace is the biggest thing we hold
            opts = dict(initial_stack=stack, policy=policy, preempt_every=preempt or None, trace_sp=True,
                        max_insns=5_000_000, timeout=10)
            if which == YOURS:
                prog = gostack.FunctionProgram.build(self.source.value, self.func.value.strip())
                rt = prog.emulate(depth, **opts)
                frame = prog.frame_size(prog.func)
                title = f"{prog.func} ({frame} B frame, {prog.prologue(prog.func).form} prologue)"
            else:
                rt = gostack.run_recursion(which, depth, program=self.program, **opts)
                title = f"{which} frames ({rt.program.frame_size('main.' + which)} B)"
            title += (f", depth {depth}, {policy}, initial stack {stack} B"
                      + (f", preempt every {preempt} insns" if preempt else ""))
            self._cache[key] = (rt, viz.Timeline(rt, title=title))
        return self._cache[key]

    def runtime(self) -> gostack.Runtime:
        return self._run()[0]

    def render(self):
        rt, timeline = self._run()
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
        kinds = [e.kind for e in rt.events]
        summary = (f"<div>result {rt.read_global('main.Result')}, {rt.insns} instructions, "
                   + ", ".join(f"{kinds.count(k)} {k}" for k in ("grow", "preempt", "split", "unsplit") if k in kinds)
                   + "</div>")
        return timeline.highlight(index).png(), summary + event_html(rt, index)
