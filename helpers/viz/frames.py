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


RULE_COLOURS = ("#DDEBF7", "#9DC3E6", "#F8CBAD", "#C5E0B4", "#FFE699", "#D9D2E9", "#F4B183", "#A9D18E",
                "#BDD7EE", "#E2F0D9")


def draw_cfi_rows(table, names, title=None, figsize=(7.2, 2.4)):
    """The CFI rows of each function in ``names`` (from ``table``, a :class:`helpers.unwind.CfiTable`) as one
    band per function: x is the byte offset from the function's start, each segment the code range one row
    covers, coloured by its CFA rule; the registers the row has saved are written inside when there is room."""
    fdes = [(n, table.function(n)) for n in names]
    missing = [n for n, f in fdes if f is None]
    if missing:
        raise ValueError(f"no CFI for {', '.join(missing)}")
    rules = []
    for _n, f in fdes:
        for r in f.rows:
            rule = f"CFA={r.cfa_reg}{r.cfa_offset:+d}"
            if rule not in rules:
                rules.append(rule)
    colour = {rule: RULE_COLOURS[k % len(RULE_COLOURS)] for k, rule in enumerate(rules)}
    fig = new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    width = max(f.end - f.start for _n, f in fdes)
    for y, (name, f) in enumerate(fdes):
        for k, r in enumerate(f.rows):
            lo = r.pc - f.start
            hi = (f.rows[k + 1].pc if k + 1 < len(f.rows) else f.end) - f.start
            rule = f"CFA={r.cfa_reg}{r.cfa_offset:+d}"
            ax.barh(y, hi - lo, left=lo, height=0.7, color=colour[rule], edgecolor="#444", linewidth=0.6)
            saved = ",".join(sorted(s for s in r.saved if s != "rip"))
            char = width * 4.6 / (figsize[0] * 72 * 0.8)          # one 7-pt monospace character, in bytes
            if saved and hi - lo >= (len(saved) + 1) * char:
                ax.text((lo + hi) / 2, y, saved, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_yticks(range(len(fdes)), [n for n, _f in fdes], fontsize=8, family="monospace")
    ax.invert_yaxis()
    ax.set_xlim(0, width)
    ax.set_xlabel("bytes from the function's first instruction (text inside: registers saved so far)", fontsize=8)
    handles = [ax.barh(0, 0, color=colour[r], edgecolor="#444", label=r) for r in rules]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(rules), 4), fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
