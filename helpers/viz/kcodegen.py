"""viz.kcodegen: the rules x compilers matrix of chapter 4d drawn as a grid. It draws what
helpers.kcodegen.matrix computed; it decides nothing."""
from __future__ import annotations

import textwrap

from helpers.kcodegen import BREAKS, COLUMNS, MEETS, NA
from helpers.viz import new_figure

STATUS_COLOURS = {MEETS: "#8cc56b", BREAKS: "#e57373", NA: "#d9d9d9"}


def plot_matrix(rows: list[dict], *, columns=COLUMNS[1:], title="Kernel code-generation rules, measured",
                figsize=(11, 5.2)):
    """One row per rule, one column per compiler output; colour = meets / breaks / not applicable, text =
    the measured count. ``rows`` is :func:`helpers.kcodegen.matrix`'s result."""
    if not rows:
        raise ValueError("nothing to plot: no rows")
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    n, m = len(rows), len(columns)
    for i, row in enumerate(rows):
        for j, col in enumerate(columns):
            cell = row[col]
            ax.add_patch(_rect(j, n - 1 - i, STATUS_COLOURS[cell.status]))
            ax.text(j + 0.5, n - 1 - i + 0.5, "\n".join(textwrap.wrap(cell.text, 22)[:3]), ha="center",
                    va="center", fontsize=6.5)
    ax.set_xlim(0, m)
    ax.set_ylim(0, n)
    ax.set_xticks([j + 0.5 for j in range(m)], [textwrap.fill(c, 14) for c in columns], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks([n - 1 - i + 0.5 for i in range(n)], [textwrap.fill(r["rule"], 28) for r in rows], fontsize=7.5)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    handles = [_rect(0, 0, c) for c in STATUS_COLOURS.values()]
    ax.legend(handles, ["meets the kernel's rule", "breaks it", "not applicable / no flag"], ncol=3, fontsize=8,
              loc="upper center", bbox_to_anchor=(0.5, -0.02), frameon=False)
    ax.set_title(title, fontsize=10, pad=28)
    return fig


def _rect(x, y, colour):
    from matplotlib.patches import Rectangle
    return Rectangle((x + 0.03, y + 0.05), 0.94, 0.9, facecolor=colour, edgecolor="white")
