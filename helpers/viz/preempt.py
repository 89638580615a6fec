"""viz.preempt: drawings for chapter 3b -- how late a sleeping goroutine woke while another one spun.

Draws the runs :func:`helpers.preempt.run_preempt` measured; computes nothing itself.
"""
from __future__ import annotations

from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from helpers.viz import new_figure


def draw_lateness(runs, bins=None, figsize=(7, 3)):
    """Histogram of sleep lateness (ms) for each finished run that woke at least once. Counts are whole wake-ups,
    so the count axis has integer ticks only. A run whose sleeper never woke gets a legend entry saying so."""
    fig = new_figure(figsize=figsize)
    ax = fig.add_subplot()
    shown = [r for r in runs if r.finished and r.lateness_ms]
    hi = max((max(r.lateness_ms) for r in shown), default=1.0)
    bins = bins or [i * max(1.0, hi / 30) for i in range(32)]
    handles = []
    for r in shown:
        *_, patches = ax.hist(r.lateness_ms, bins=bins, alpha=0.6,
                              label=f"{r.kind}, GODEBUG={r.godebug or 'default'} (n={r.wakes})")
        handles.append(patches[0])
    for r in runs:
        if r.finished and not r.lateness_ms:
            handles.append(Patch(facecolor="none", edgecolor="#b00020",
                                 label=f"{r.kind}, GODEBUG={r.godebug}: never woke in {r.spin_ms:.0f} ms"))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("how late time.Sleep(1 ms) woke (ms)")
    ax.set_ylabel("wake-ups")
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    return fig
