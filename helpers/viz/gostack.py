"""viz.gostack: pictures of goroutine stacks over time (chapter 4b, the stack-growth viewer).

Draws only; every number comes from :class:`helpers.gostack.Runtime` (its events, its stack history and,
when run with ``trace_sp=True``, the SP sampled at each basic block).
"""
from __future__ import annotations

from matplotlib.ticker import FuncFormatter

from helpers.viz import new_figure

MARKERS = {"grow": ("^", "#d62728"), "shrink": ("v", "#9467bd"), "preempt": ("x", "#ff7f0e"),
           "split": (">", "#8c564b"), "unsplit": ("<", "#8c564b")}
GOROUTINE_COLOURS = ("#1f77b4", "#2ca02c", "#e377c2", "#17becf", "#bcbd22")


def _hex(v, _pos=None) -> str:
    return f"{int(v):#x}"


def draw_timeline(rt, *, ax=None, title=None, highlight: int | None = None, figsize=(8, 3.6)):
    """Address (y) against instructions executed (x): each stack's [lo, hi) as a band, its stackguard0 as a
    dashed line, the SP trace, and a marker per runtime event. ``highlight`` = index into ``rt.events``."""
    fig = None
    if ax is None:
        fig = new_figure(figsize)
        ax = fig.add_subplot()
    for seg in rt.stack_history():
        c = GOROUTINE_COLOURS[(seg["goid"] - 1) % len(GOROUTINE_COLOURS)]
        ax.fill_between([seg["t0"], seg["t1"]], seg["lo"], seg["hi"], color=c, alpha=0.15, linewidth=0)
        ax.hlines([seg["lo"], seg["hi"]], seg["t0"], seg["t1"], colors=c, linewidth=0.8)
        ax.hlines(seg["guard"], seg["t0"], seg["t1"], colors="k", linestyles="dashed", linewidth=0.8)
    if rt.sp_trace:
        by_g: dict[int, list] = {}
        for t, goid, sp in rt.sp_trace:
            by_g.setdefault(goid, []).append((t, sp))
        for goid, pts in by_g.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, ".", markersize=1.2, color=GOROUTINE_COLOURS[(goid - 1) % len(GOROUTINE_COLOURS)],
                    label=f"SP of goroutine {goid}")
    seen = set()
    for i, e in enumerate(rt.events):
        if e.kind not in MARKERS:
            continue
        m, c = MARKERS[e.kind]
        ax.plot([e.insns], [e.sp], m, color=c, markersize=9 if i == highlight else 6,
                markeredgewidth=2 if i == highlight else 1, label=None if e.kind in seen else e.kind)
        seen.add(e.kind)
    ax.plot([], [], "k--", linewidth=0.8, label="stackguard0")
    ax.yaxis.set_major_formatter(FuncFormatter(_hex))
    ax.set_xlabel("instructions executed")
    ax.set_ylabel("address")
    ax.legend(loc="upper left", fontsize=7, ncols=2)
    if title:
        ax.set_title(title, fontsize=9)
    return fig if fig is not None else ax.figure


def draw_policy_comparison(rows, *, axes=None, figsize=(7, 2.6)):
    """Bars of stack switches and instructions for each policy. ``rows``: [(policy, switches, insns)].
    ``axes``: two matplotlib Axes to draw on (default: a new figure)."""
    if axes is None:
        fig = new_figure(figsize)
        a1, a2 = fig.subplots(1, 2)
    else:
        a1, a2 = axes
        fig = a1.figure
    names = [r[0] for r in rows]
    a1.bar(names, [r[1] for r in rows], color=["#8c564b", "#1f77b4"][:len(rows)])
    a1.set_title("stack switches", fontsize=9)
    a2.bar(names, [r[2] for r in rows], color=["#8c564b", "#1f77b4"][:len(rows)])
    a2.set_title("instructions executed (emulated Go code)", fontsize=9)
    return fig
