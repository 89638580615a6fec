"""viz.frames: draw a stopped x86-64 stack with its unwound frames colour-coded (chapter 4a, the unwinding lab).

Draws only; the frames come from :mod:`helpers.unwind`. Higher addresses are at the top, as in the
System V psABI's stack-frame figure (psABI §3.2.2, Figure 3.3): the outermost caller's frame is at the top,
the stopped function's frame (rsp) at the bottom.
"""
from __future__ import annotations

from helpers.viz import new_figure

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#B279A2", "#E45756", "#72B7B2", "#EECA3B", "#9D755D")


def word_roles(unwind) -> dict:
    """address -> label, for every stack word an unwind explains (return addresses and saved registers)."""
    roles = {}
    for f in unwind.frames:
        roles[f.cfa - 8] = f"return address of {f.function}"
        for reg, (addr, _value) in f.saved.items():
            roles.setdefault(addr, f"saved {reg} ({f.function})")
    return roles


def draw_stack(words, unwind, *, fp=None, ax=None, title=None, symbolize=None, trim=True):
    """Draw ``words`` [(address, value)] (from rsp upward) with each frame of ``unwind`` in its own colour.

    Frame i spans [CFA of frame i-1 (or rsp), CFA of frame i). With ``fp`` (a frame-pointer Unwind) the
    rbp chain is drawn as arrows on the right. With ``trim``, words at or above the outermost CFA (the
    caller's unused stack) are left out. Returns the matplotlib Figure.
    """
    if trim and unwind.frames:
        words = [w for w in words if w[0] < unwind.frames[-1].cfa]
    if ax is None:
        fig = new_figure(figsize=(7.5, max(3.0, 0.26 * len(words) + 1)))
        ax = fig.add_subplot()
    fig = ax.figure
    if not words:
        ax.text(0.5, 0.5, "empty stack", ha="center")
        return fig
    lo = words[0][0]
    row = {addr: i for i, (addr, _) in enumerate(words)}
    roles = word_roles(unwind)
    bottom = lo
    for f in unwind.frames:
        top = f.cfa
        colour = PALETTE[f.index % len(PALETTE)]
        rows = [row[a] for a in range(bottom, top, 8) if a in row]
        if rows:
            ax.add_patch(_rect(min(rows) - 0.5, max(rows) + 0.5, colour))
            sep = "\n" if max(rows) > min(rows) else "  "  # one-word frames get a one-line label
            ax.text(-0.02, (min(rows) + max(rows)) / 2, f"#{f.index} {f.function}{sep}CFA {f.cfa:#x}",
                    ha="right", va="center", fontsize=8, color=colour, transform=ax.get_yaxis_transform())
        bottom = top
    for addr, value in words:
        i = row[addr]
        name = symbolize(value) if (symbolize and value) else None
        text = f"{addr:#x}  {value:#018x}"
        ax.text(0.02, i, text, va="center", fontsize=7.5, family="monospace")
        label = roles.get(addr, "")
        if name and "return" in label:
            label += f" -> {name}"
        ax.text(0.55, i, label, va="center", fontsize=7.5)
    if fp is not None:
        for f in fp.frames:
            saved_at, caller_fp = f.saved["rbp"]
            if saved_at in row and caller_fp in row:
                ax.annotate("", xy=(1.02, row[caller_fp]), xytext=(1.02, row[saved_at]),
                            xycoords=("axes fraction", "data"),
                            arrowprops=dict(arrowstyle="->", color="black", connectionstyle="arc3,rad=-0.5"))
        ax.text(1.04, len(words) - 0.5, "rbp chain", fontsize=8, transform=ax.get_yaxis_transform(), va="top")
    ax.set_ylim(-0.7, len(words) - 0.3)
    ax.set_xlim(0, 1)
    ax.axis("off")
    ax.set_title(title or f"stack at the breakpoint, unwound with {unwind.method.upper()}", fontsize=10)
    return fig


def _rect(y0, y1, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((0, y0), 1, y1 - y0, facecolor=colour, alpha=0.25, edgecolor=colour)
