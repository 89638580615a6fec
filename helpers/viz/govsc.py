"""viz.govsc: drawings for chapter 1 -- who owns the machine code of a Go binary.

Draws the byte counts :func:`helpers.govsc.code_by_package` computed; computes nothing itself.
"""
from __future__ import annotations

from helpers.viz import new_figure

# Okabe-Ito (colour-blind safe), one per category, in the order code_by_package returns them.
COLOURS = ("#0072B2", "#E69F00", "#D55E00", "#009E73", "#CC79A7")


def draw_code_share(code: dict, title: str = "Go hello world: who owns the machine code", figsize=(7, 2.4)):
    """One stacked bar of KiB per category; the legend sits below the axis (never over the title or the bar)
    and names each category with its bytes and share, so a sliver too thin to see (``main``) is still read."""
    if not code or any(not isinstance(d, dict) or d.get("bytes", -1) < 0 for d in code.values()):
        raise ValueError("code must map a category to {'bytes': n >= 0, ...}, as govsc.code_by_package returns")
    total = sum(d["bytes"] for d in code.values()) or 1
    fig = new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    left = 0.0
    for k, (cat, d) in enumerate(code.items()):
        kib = d["bytes"] / 1024
        label = f"{cat}: {d['bytes']:,} bytes ({100 * d['bytes'] / total:.2f} %)"
        # a minimum drawn width of 0 would make the patch vanish from the picture, but the legend still lists it
        ax.barh(0, kib, left=left, color=COLOURS[k % len(COLOURS)], edgecolor="white", linewidth=0.5, label=label)
        left += kib
    for k, (cat, d) in enumerate(code.items()):
        if d["bytes"] / total < 0.02:     # too thin to see: point at it
            x = sum(e["bytes"] for e in list(code.values())[:k]) / 1024
            ax.annotate(cat, xy=(x, 0.4), xytext=(x - left * 0.06, 0.75), fontsize=8, ha="right",
                        arrowprops=dict(arrowstyle="->", linewidth=0.8))
    ax.set_xlim(0, left * 1.01)
    ax.set_ylim(-0.5, 1.0)
    ax.set_yticks([])
    ax.set_xlabel("KiB of machine code (sizes of FUNC symbols)")
    ax.set_title(title, fontsize=10)
    fig.legend(loc="outside lower center", ncol=min(3, len(code)), fontsize=8, frameon=False)
    return fig
