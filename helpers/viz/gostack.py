"""viz.gostack: pictures of goroutine stacks over time (chapter 4b, the stack-growth viewer).

Draws only; every number comes from :class:`helpers.gostack.Runtime` (its events, its stack history and,
when run with ``trace_sp=True``, the SP sampled at each basic block).

A :class:`Timeline` is drawn once per run, with a fixed number of artists whatever the run's size: one
collection for the stack bands, one for their edges, one for the stackguard0 lines, one line of points per
goroutine's SP (at most :data:`MAX_SP_POINTS` in all) and one call per event kind. Stepping through events
then moves a single highlight marker (:meth:`Timeline.highlight`), so a new picture costs one PNG encode.
"""
from __future__ import annotations

import io

from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.ticker import FuncFormatter, Locator, MaxNLocator

from helpers.viz import new_figure

MARKERS = {"grow": ("^", "#d62728"), "shrink": ("v", "#9467bd"), "preempt": ("x", "#ff7f0e"),
           "split": (">", "#8c564b"), "unsplit": ("<", "#8c564b")}
GOROUTINE_COLOURS = ("#1f77b4", "#2ca02c", "#e377c2", "#17becf", "#bcbd22")
MAX_SP_POINTS = 20_000   # SP samples drawn per figure (evenly thinned beyond that)
MAX_BANDS = 5_000        # stack bands drawn per figure (a segmented run can make many more)


def _hex(v, _pos=None) -> str:
    return f"{int(v):#x}"


class PowerOfTwoLocator(Locator):
    """Ticks at multiples of a power of two (addresses read as round hex numbers: 0xc000004000, not 0xc000003a7f)."""

    def __init__(self, nbins: int = 5):
        self.nbins = nbins

    def __call__(self):
        lo, hi = self.axis.get_view_interval()
        return self.tick_values(lo, hi)

    def tick_values(self, vmin, vmax):
        lo, hi = int(min(vmin, vmax)), int(max(vmin, vmax))
        span = max(1, hi - lo)
        step = 1 << max(0, (span // self.nbins).bit_length())
        while span // step < 2 and step > 1:
            step //= 2
        first = -(-lo // step) * step
        return list(range(first, hi + 1, step))


def _colour(goid: int) -> str:
    return GOROUTINE_COLOURS[(goid - 1) % len(GOROUTINE_COLOURS)]


class Timeline:
    """Address (y) against instructions executed (x) for one run: each stack's [lo, hi) as a band, its
    stackguard0 as a dashed line, the SP trace, a marker per runtime event, and one movable highlight."""

    def __init__(self, rt, *, ax=None, title: str | None = None, figsize=(8, 3.6)):
        if ax is None:
            self.fig = new_figure(figsize)
            ax = self.fig.add_subplot()
        else:
            self.fig = ax.figure
        self.ax, self.events = ax, rt.events
        segs = rt.stack_history()[:MAX_BANDS]
        ax.add_collection(PolyCollection(
            [[(s["t0"], s["lo"]), (s["t1"], s["lo"]), (s["t1"], s["hi"]), (s["t0"], s["hi"])] for s in segs],
            facecolors=[_colour(s["goid"]) for s in segs], alpha=0.15, linewidths=0))
        ax.add_collection(LineCollection(
            [[(s["t0"], y), (s["t1"], y)] for s in segs for y in (s["lo"], s["hi"])],
            colors=[_colour(s["goid"]) for s in segs for _ in (0, 1)], linewidths=0.8))
        ax.add_collection(LineCollection([[(s["t0"], s["guard"]), (s["t1"], s["guard"])] for s in segs],
                                         colors="k", linestyles="dashed", linewidths=0.8))
        trace = rt.sp_trace or []
        step = max(1, -(-len(trace) // MAX_SP_POINTS))
        by_g: dict[int, tuple[list, list]] = {}
        for t, goid, sp in trace[::step]:
            xs, ys = by_g.setdefault(goid, ([], []))
            xs.append(t)
            ys.append(sp)
        for goid, (xs, ys) in sorted(by_g.items()):
            ax.plot(xs, ys, ".", markersize=1.2, color=_colour(goid), label=f"SP of goroutine {goid}")
        for kind, (m, c) in MARKERS.items():
            pts = [(e.insns, e.sp) for e in rt.events if e.kind == kind]
            if pts:
                ax.plot(*zip(*pts), m, color=c, markersize=6, linestyle="none", label=kind)
        ax.plot([], [], "k--", linewidth=0.8, label="stackguard0")
        self._hl, = ax.plot([], [], "o", markersize=13, markerfacecolor="none", markeredgecolor="k",
                            markeredgewidth=1.8, zorder=5)
        ys = [y for s in segs for y in (s["lo"], s["hi"])] or [0, 1]
        xs = [s["t1"] for s in segs] + [rt.insns, 1]
        ax.set_xlim(0, max(xs) * 1.02)
        pad = (max(ys) - min(ys)) * 0.04 or 1
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
        ax.yaxis.set_major_locator(PowerOfTwoLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(_hex))
        ax.xaxis.set_major_locator(MaxNLocator(6, integer=True))
        ax.tick_params(labelsize=7)
        ax.set_xlabel("instructions executed", fontsize=8)
        ax.set_ylabel("address", fontsize=8)
        ax.legend(loc="upper left", fontsize=7, ncols=2)
        if title:
            ax.set_title(title, fontsize=9)

    def highlight(self, index: int | None) -> "Timeline":
        """Ring event ``index`` (None or an event without a marker: no ring). Only this artist changes."""
        e = self.events[index] if index is not None and 0 <= index < len(self.events) else None
        if e is not None and e.kind in MARKERS:
            self._hl.set_data([e.insns], [e.sp])
        else:
            self._hl.set_data([], [])
        return self

    def png(self) -> bytes:
        """PNG of the figure with the current highlight. The rest is rendered once and kept as pixels
        (matplotlib's blitting: copy_from_bbox / restore_region / draw_artist), so each later call draws
        one artist and encodes one image."""
        import numpy as np
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.image import imsave

        canvas = self.fig.canvas if isinstance(self.fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(self.fig)
        if getattr(self, "_background", None) is None:
            self._hl.set_visible(False)
            canvas.draw()
            self._background = canvas.copy_from_bbox(self.fig.bbox)
            self._hl.set_visible(True)
        canvas.restore_region(self._background)
        self.ax.draw_artist(self._hl)
        buf = io.BytesIO()
        imsave(buf, np.asarray(canvas.buffer_rgba()), format="png", dpi=self.fig.dpi,
               pil_kwargs={"compress_level": 1})  # fast zlib level: the image is sent once and shown at once
        return buf.getvalue()


def draw_timeline(rt, *, ax=None, title=None, highlight: int | None = None, figsize=(8, 3.6)):
    """The :class:`Timeline` of a run as a figure. ``highlight`` = index into ``rt.events``."""
    return Timeline(rt, ax=ax, title=title, figsize=figsize).highlight(highlight).fig


def draw_policy_comparison(rows, *, axes=None, figsize=(7, 2.6)):
    """Bars of stack switches and instructions for each policy, each labelled with its value. ``rows``:
    [(policy, switches, insns)]. Logarithmic axes: one copying switch next to thousands of segment switches
    must still be seen. ``axes``: two matplotlib Axes to draw on (default: a new figure)."""
    if axes is None:
        fig = new_figure(figsize)
        a1, a2 = fig.subplots(1, 2)
    else:
        a1, a2 = axes
        fig = a1.figure
    names = [r[0] for r in rows]
    colours = ["#8c564b", "#1f77b4"][:len(rows)]
    for ax, values, title in ((a1, [r[1] for r in rows], "stack switches"),
                              (a2, [r[2] for r in rows], "instructions executed (emulated Go code)")):
        bars = ax.bar(names, [max(v, 0.5) for v in values], color=colours)
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=8, padding=2)
        ax.set_yscale("log")
        ax.set_ylim(0.5, max(values + [1]) * 8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    return fig


def draw_shrink_comparison(runs, *, ax=None, figsize=(7, 2.8)):
    """Stack size after each GC, as the real runtime left it (steps) and as the model's shrink rule predicts
    it (markers). ``runs``: [(label, native rows [(size, used)], model predictions [size after each GC])]."""
    fig = None
    if ax is None:
        fig = new_figure(figsize)
        ax = fig.add_subplot()
    for (label, rows, predicted), c, ls in zip(runs, GOROUTINE_COLOURS, ("-", "--", ":", "-.")):
        sizes = [s for s, _u in rows]
        ax.step(range(len(sizes)), sizes, where="post", color=c, linestyle=ls, linewidth=1.6, label=f"{label}: native")
        ax.plot(range(1, len(predicted) + 1), predicted, "o", markerfacecolor="none", markeredgecolor=c,
                markersize=8, label=f"{label}: model's prediction")
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v) // 1024} KiB"))
    ax.set_xlabel("GC cycles run", fontsize=8)
    ax.set_ylabel("stack size", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return fig if fig is not None else ax.figure
