"""Benchmark: the stack-growth viewer's event slider on an already-computed run (issue 13: a new figure within
100 ms at p95), and the first drawing of a run at the extremes its controls allow (at most 2 s).

Run:  .venv/bin/python benchmarks/bench_stack_viewer.py [--steps 40]

For each run, the p50/p95 time of one event-slider step in the viewer (handler, highlight, PNG, event
table), against a baseline timed in the same process: redrawing the whole timeline for each step, as the
viewer did before (a fresh figure with every band, SP point and marker, then a PNG). Also the time to draw a
run's base figure the first time (the emulation itself is not drawing and is reported apart).
Not a timed test: numbers depend on the machine and its load; the ratio is what carries over.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from helpers import gostack
from helpers.viz import figure_png, new_figure
from helpers.viz import gostack as viz
from helpers.widgets.gostack import MAX_DEPTH, StackGrowthViewer

RUNS = (("medium", 40, "copying", 0), ("medium", MAX_DEPTH["medium"], "segmented", 0),
        ("small", MAX_DEPTH["small"], "segmented", 100), ("large", MAX_DEPTH["large"], "segmented", 100))


def full_redraw(rt, index: int) -> bytes:
    """The baseline: everything drawn again, one artist per band, per event and per goroutine's SP."""
    fig = new_figure((8, 3.6))
    ax = fig.add_subplot()
    for seg in rt.stack_history():
        ax.fill_between([seg["t0"], seg["t1"]], seg["lo"], seg["hi"], alpha=0.15, linewidth=0)
        ax.hlines([seg["lo"], seg["hi"]], seg["t0"], seg["t1"], linewidth=0.8)
        ax.hlines(seg["guard"], seg["t0"], seg["t1"], colors="k", linestyles="dashed", linewidth=0.8)
    if rt.sp_trace:
        ax.plot([t for t, _g, _s in rt.sp_trace], [s for _t, _g, s in rt.sp_trace], ".", markersize=1.2)
    for i, e in enumerate(rt.events):
        if e.kind in viz.MARKERS:
            m, c = viz.MARKERS[e.kind]
            ax.plot([e.insns], [e.sp], m, color=c, markersize=9 if i == index else 6)
    return figure_png(fig)


def pct(ts, q) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, int(q * len(ts)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()
    prog = gostack.GoProgram.example()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'run':38} {'emulate s':>9} {'base draw s':>11} {'step p50 ms':>11} {'step p95 ms':>11} "
          f"{'baseline p50 ms':>15} {'ratio':>6}")
    worst_draw, worst_p95 = 0.0, 0.0
    for which, depth, policy, preempt in RUNS:
        w = StackGrowthViewer(program=prog, delay=0, which=which, depth=depth, policy=policy, preempt=preempt)
        w._cache.clear()
        t = time.perf_counter()
        rt = gostack.run_recursion(which, depth, policy=policy, preempt_every=preempt or None, program=prog,
                                   trace_sp=True, max_insns=5_000_000, timeout=10)
        t_emu = time.perf_counter() - t
        t = time.perf_counter()
        viz.Timeline(rt).highlight(0).png()
        t_draw = time.perf_counter() - t
        n = w.event.max
        idx = [(i * 7919) % (n + 1) for i in range(a.steps)]
        steps = []
        for i in idx:
            t = time.perf_counter()
            w.event.value = i
            steps.append(time.perf_counter() - t)
        base = []
        for i in idx[: max(3, a.steps // 8)]:
            t = time.perf_counter()
            full_redraw(w.runtime(), i)
            base.append(time.perf_counter() - t)
        p50, p95, b50 = pct(steps, 0.5), pct(steps, 0.95), statistics.median(base) * 1000
        worst_draw, worst_p95 = max(worst_draw, t_draw), max(worst_p95, p95)
        name = f"{which} depth {depth} {policy}" + (f" preempt {preempt}" if preempt else "")
        print(f"{name:38} {t_emu:9.2f} {t_draw:11.2f} {p50:11.1f} {p95:11.1f} {b50:15.1f} {b50 / p50:6.1f}x")
    print(f"event step p95 worst {worst_p95:.0f} ms (target 100 ms): {'met' if worst_p95 <= 100 else 'NOT met'}; "
          f"base drawing worst {worst_draw:.2f} s (target 2 s): {'met' if worst_draw <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
