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


def plot_stack_budget(sb, *, figsize=(7.5, 3.4)):
    """The bottom of a goroutine stack (stack.lo up to a little past stackguard0), with the room an interrupt
    would need drawn beside it: ``sb`` is :func:`helpers.gointr.stack_budget`'s result."""
    from matplotlib.patches import Rectangle
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    top = sb.stack_guard + sb.pt_regs
    # left column: the goroutine stack, bytes above stack.lo
    ax.add_patch(Rectangle((0, 0), 1, sb.stack_nosplit, facecolor="#f4c7c3", edgecolor="white"))
    ax.text(0.5, sb.stack_nosplit / 2, f"no-split chain may use\n{sb.stack_nosplit} bytes", ha="center", va="center", fontsize=8)
    ax.add_patch(Rectangle((0, sb.stack_nosplit), 1, sb.stack_small, facecolor="#fbe3b8", edgecolor="white"))
    ax.text(0.5, sb.stack_nosplit + sb.stack_small / 2, f"small frame: {sb.stack_small}", ha="center", va="center", fontsize=8)
    ax.add_patch(Rectangle((0, sb.stack_guard), 1, top - sb.stack_guard, facecolor="#dfeedd", edgecolor="white"))
    ax.text(0.5, (sb.stack_guard + top) / 2, "the goroutine's frames", ha="center", va="center", fontsize=8)
    ax.hlines([sb.stack_guard, 0], 0, 3.3, colors="black", linestyles="dotted", lw=1)
    ax.text(-0.05, sb.stack_guard, f"stackguard0 = stack.lo + {sb.stack_guard}", ha="right", va="center", fontsize=8)
    ax.text(-0.05, 0, "stack.lo\n(below it: another stack\nor an unmapped page)", ha="right", va="center", fontsize=8)
    # right column: interrupt entries, pt_regs each, stacked from stackguard0 downwards
    n = max(sb.fits_best, 1) + 1
    for i in range(n):
        lo = sb.stack_guard - (i + 1) * sb.pt_regs
        fits = lo >= 0
        ax.add_patch(Rectangle((2.3, lo), 1, sb.pt_regs, facecolor="#9ecae1" if fits else "#e57373", edgecolor="white"))
        ax.text(2.8, lo + sb.pt_regs / 2, f"pt_regs #{i + 1}" + ("" if fits else "\n(overflows)"), ha="center",
                va="center", fontsize=7.5)
    ax.set_xlim(-1.6, 3.5)
    ax.set_ylim(-sb.pt_regs - 20, top + 20)
    ax.set_xticks([0.5, 2.8], ["goroutine stack", f"interrupt entries\n({sb.pt_regs} bytes each)"], fontsize=8)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"An interrupt arriving at stackguard0: {sb.fits_best} entries fit; after a full no-split chain, {sb.fits_worst}",
                 fontsize=9)
    return fig
