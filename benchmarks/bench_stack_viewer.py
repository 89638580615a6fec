"""Benchmark: the stack-growth viewer's event slider on an already-computed run (issue 13: a new figure within
100 ms at p95), and the first drawing of a run at the extremes its controls allow (at most 2 s).

Run:  .venv/bin/python benchmarks/bench_stack_viewer.py [--steps 40]     (or as part of make bench)

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

from harness import Row

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


def measure(steps: int = 40, runs=RUNS) -> list[dict]:
    """Per run: emulation seconds, first base drawing seconds, event-step p50/p95 ms, full-redraw p50 ms."""
    prog = gostack.GoProgram.example()
    out = []
    for which, depth, policy, preempt in runs:
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
        idx = [(i * 7919) % (n + 1) for i in range(steps)]
        times = []
        for i in idx:
            t = time.perf_counter()
            w.event.value = i
            times.append(time.perf_counter() - t)
        base = []
        for i in idx[: max(3, steps // 8)]:
            t = time.perf_counter()
            full_redraw(w.runtime(), i)
            base.append(time.perf_counter() - t)
        name = f"{which} depth {depth} {policy}" + (f" preempt {preempt}" if preempt else "")
        out.append({"name": name, "emulate_s": t_emu, "draw_s": t_draw, "p50_ms": pct(times, 0.5),
                    "p95_ms": pct(times, 0.95), "baseline_p50_ms": statistics.median(base) * 1000})
    return out


def bench_event_steps(quick: bool = False) -> list[Row]:
    """make bench: one row per run (a step of the event slider, p95, against redrawing everything), and the
    slowest first drawing of a run at the controls' extremes."""
    res = measure(steps=12 if quick else 40, runs=RUNS[:2] if quick else RUNS)
    rows = [Row(f"stack-growth viewer: event step p95, {r['name']}", r["p95_ms"], "ms",
                "whole timeline redrawn per step (p50)", r["baseline_p50_ms"], goal="< 100 ms p95",
                met=r["p95_ms"] < 100) for r in res]
    worst = max(res, key=lambda r: r["draw_s"])
    rows.append(Row(f"stack-growth viewer: first drawing, slowest run ({worst['name']})", worst["draw_s"] * 1000,
                    "ms", goal="< 2000 ms", met=worst["draw_s"] < 2, note="emulation not included"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'run':38} {'emulate s':>9} {'base draw s':>11} {'step p50 ms':>11} {'step p95 ms':>11} "
          f"{'baseline p50 ms':>15} {'ratio':>6}")
    res = measure(a.steps)
    for r in res:
        print(f"{r['name']:38} {r['emulate_s']:9.2f} {r['draw_s']:11.2f} {r['p50_ms']:11.1f} {r['p95_ms']:11.1f} "
              f"{r['baseline_p50_ms']:15.1f} {r['baseline_p50_ms'] / r['p50_ms']:6.1f}x")
    worst_p95, worst_draw = max(r["p95_ms"] for r in res), max(r["draw_s"] for r in res)
    print(f"event step p95 worst {worst_p95:.0f} ms (target 100 ms): {'met' if worst_p95 <= 100 else 'NOT met'}; "
          f"base drawing worst {worst_draw:.2f} s (target 2 s): {'met' if worst_draw <= 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
