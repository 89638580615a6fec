"""viz.ledger: the claims ledger drawn (chapter 5). It draws what helpers.ledger computed; it decides nothing."""
from __future__ import annotations

from helpers.ledger import VERDICTS
from helpers.viz import new_figure

# One colour per verdict, from "the article is right" (green) to "the thing does not exist" (dark red).
VERDICT_COLOURS = {"holds": "#4c9a2a", "partly": "#e0b020", "wrong": "#d9534f", "fabricated": "#7b1e1e",
                   "unverifiable": "#9e9e9e"}


def plot_verdicts(sections: dict[str, dict[str, int]], *, title: str = "Verdicts per article section",
                  figsize=(7, 3.2)):
    """Stacked bars: for each section (``helpers.ledger.by_section``), how many claims got each verdict."""
    if not sections:
        raise ValueError("nothing to plot: the ledger has no entries")
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    names = list(sections)
    bottom = [0] * len(names)
    for verdict in VERDICTS:
        counts = [sections[s].get(verdict, 0) for s in names]
        ax.bar(names, counts, bottom=bottom, color=VERDICT_COLOURS[verdict], label=verdict)
        bottom = [b + c for b, c in zip(bottom, counts)]
    ax.set_xlabel("article section")
    ax.set_ylabel("claims")
    ax.set_title(title)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(ncol=len(VERDICTS), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
    return fig


def plot_kinds(every: dict[str, dict[str, int]], strongest: dict[str, dict[str, int]], *,
               figsize=(8, 3.4)):
    """Two panels of horizontal bars, one bar per evidence kind (``helpers.ledger.KINDS``, strongest on top),
    stacked by verdict: (a) every kind a claim's evidence uses (a claim may count several times); (b) each claim
    once, under its strongest kind, so the bars add up to the ledger."""
    if not any(sum(v.values()) for v in every.values()):
        raise ValueError("nothing to plot: the ledger has no entries")
    fig = new_figure(figsize)
    axes = fig.subplots(1, 2, sharey=True)
    kinds = list(every)[::-1]                      # barh draws bottom-up; keep the strongest kind on top
    total = sum(sum(v.values()) for v in strongest.values())
    run = total - sum(strongest.get("source", {}).values())
    panels = ((axes[0], every, "(a) every kind of evidence used\n(a claim may count more than once)"),
              (axes[1], strongest, f"(b) each claim once, by its strongest kind:\n{run} of {total} rest on a run"))
    for ax, data, title in panels:
        left = [0] * len(kinds)
        for verdict in VERDICTS:
            counts = [data.get(k, {}).get(verdict, 0) for k in kinds]
            ax.barh(kinds, counts, left=left, color=VERDICT_COLOURS[verdict], label=verdict)
            left = [a + c for a, c in zip(left, counts)]
        for y, n in enumerate(left):
            ax.annotate(str(n), (n, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("claims")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlim(0, max(left) * 1.15 + 1)
    axes[0].set_ylabel("evidence kind")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=len(VERDICTS), fontsize=8, loc="outside lower center", frameon=False)
    return fig
