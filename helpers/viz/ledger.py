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
