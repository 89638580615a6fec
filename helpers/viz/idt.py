"""viz.idt: drawings for chapter 3a -- a gate's 128 bits by field, and the frame a delivery pushes. Nothing here
computes a fact: the numbers come from :mod:`helpers.idt`.
"""
from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, Rectangle

from helpers import idt
from helpers.viz import new_figure

# One colour per field (colour-blind-safe Okabe-Ito palette, then greys for the must-be-zero fields).
COLOURS = {
    "offset_low": "#56B4E9", "offset_middle": "#56B4E9", "offset_high": "#56B4E9",
    "selector": "#E69F00", "ist": "#009E73", "type": "#D55E00", "dpl": "#CC79A7", "p": "#F0E442",
    "s": "#BBBBBB", "zero": "#DDDDDD", "reserved": "#EEEEEE",
}
ROW_BITS = 64


def draw_gate(raw, mode: str = "long", title: str | None = None, figsize=(9, 2.6)):
    """The descriptor's bits, lowest address at the left of each 64-bit row, one coloured box per field
    (bit numbers above, field name and value inside, byte values below)."""
    raw = bytes(raw)
    fields = idt.layout(raw, mode)
    nbits = len(raw) * 8
    rows = nbits // ROW_BITS
    fig = new_figure(figsize=(figsize[0], 1.0 + 1.0 * rows))
    fig.set_layout_engine("none")  # fixed axes box: constrained layout costs half the redraw time here
    ax = fig.add_axes((0.01, 0.0, 0.98, 0.88))
    ax.set_xlim(-0.5, ROW_BITS + 0.5)
    ax.set_ylim(-rows * 1.6 - 0.2, 0.9)
    ax.axis("off")
    for f in fields:
        start = f.lo
        while start <= f.hi:  # a field may cross a row boundary; draw one box per row piece
            row = start // ROW_BITS
            end = min(f.hi, (row + 1) * ROW_BITS - 1)
            # bit 0 at the right, like the SDM's figures: x grows leftward within a row
            x0 = ROW_BITS - 1 - (end % ROW_BITS)
            width = end - start + 1
            y = -row * 1.6
            ax.add_patch(Rectangle((x0, y - 0.8), width, 0.8, facecolor=COLOURS.get(f.name, "#FFFFFF"),
                                   edgecolor="black", linewidth=0.8))
            label = f.name  # never cut: "zero" (5 bits) and "type" (4 bits) fit at the small size below
            value = f"{f.value:#x}" if (width >= 8 or f.name == "type") else str(f.value)
            fs = 7 if width >= 10 else 6 if width >= 4 else 5.5
            ax.text(x0 + width / 2, y - 0.28, label, ha="center", va="center", fontsize=fs)
            ax.text(x0 + width / 2, y - 0.6, value, ha="center", va="center", fontsize=fs, family="monospace")
            ax.text(x0 + width - 0.5, y + 0.12, str(start), ha="center", fontsize=5.5, color="#444444")
            start = end + 1
    for i, b in enumerate(raw):  # byte values under their bits
        row = (i * 8) // ROW_BITS
        x0 = ROW_BITS - 8 - (i * 8) % ROW_BITS
        ax.text(x0 + 4, -row * 1.6 - 1.05, f"byte {i}: {b:02x}", ha="center", fontsize=6, family="monospace")
    ax.set_title(title or f"{mode}-mode gate: {idt.hexbytes(raw)}", fontsize=9, family="monospace")
    return fig


def draw_frame(delivery, figsize=(6.5, 3.6)):
    """The stack after delivery: the pushed slots (highest address on top), where RSP points, and the
    RFLAGS.IF before and after."""
    fig = new_figure(figsize=figsize)
    fig.set_layout_engine("none")
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.axis("off")
    if delivery.delivered is None:
        ax.text(0.5, 0.5, "triple fault: no handler runs, the CPU shuts down", ha="center", va="center",
                fontsize=10, color="#b00020", transform=ax.transAxes)
        return fig
    slots = delivery.frame
    n = len(slots)
    ax.set_xlim(0, 10)
    ax.set_ylim(-1.6, n + 1.4)
    top = slots[0].address + 8
    ax.text(1.0, n + 0.45, f"{top:#x}  (stack top, aligned down to 16 bytes)", fontsize=7, family="monospace")
    for i, s in enumerate(slots):
        y = n - 1 - i
        colour = "#F0E442" if s.name == "RFLAGS" else "#56B4E9" if s.name in ("RIP", "CS") else \
            "#E69F00" if s.name in ("SS", "RSP") else "#D55E00"
        ax.add_patch(Rectangle((3.2, y), 3.4, 0.9, facecolor=colour, edgecolor="black", linewidth=0.8))
        ax.text(4.9, y + 0.45, f"{s.name} = {s.value:#x}", ha="center", va="center", fontsize=8, family="monospace")
        ax.text(3.05, y + 0.45, f"{s.address:#x}", ha="right", va="center", fontsize=7, family="monospace")
    ax.add_patch(FancyArrowPatch((8.2, 0.45), (6.7, 0.45), arrowstyle="->", mutation_scale=12))
    ax.text(8.3, 0.45, "RSP", va="center", fontsize=9, family="monospace")
    flags_before, flags_after = delivery.rflags_before, delivery.rflags
    ax.text(0.2, -0.7, f"RFLAGS {flags_before:#x} -> {flags_after:#x}    IF {int(delivery.if_before)} -> "
                       f"{int(delivery.if_after)}", fontsize=8, family="monospace")
    where = f"new stack ({delivery.stack_source})" if delivery.stack_switched else "same stack"
    faults = ", ".join(f"{f} ({c:#x})" for f, c in delivery.faults) or "none"
    ax.text(0.2, -1.35, f"vector {delivery.delivered}, {delivery.gate.kind} gate, {where}; faults: {faults}",
            fontsize=8, family="monospace")
    return fig


# Categories of the model-against-QEMU cross-check, in legend order, with their colours.
CROSSCHECK = {
    "agrees field by field": "#009E73",
    "differs in RF only": "#F0E442",
    "differs in RF and the error code": "#E69F00",
    "differs elsewhere": "#D55E00",
}


def crosscheck_category(differences) -> str:
    """The CROSSCHECK category of one scenario's list of differing field names."""
    names = set(differences)
    if not names:
        return "agrees field by field"
    if names == {"RFLAGS"}:
        return "differs in RF only"
    if names == {"RFLAGS", "error code"}:
        return "differs in RF and the error code"
    return "differs elsewhere"


def draw_crosscheck(rows, title: str, columns: int = 16, figsize=(7.5, 3.6)):
    """One square per scenario, in boot order, coloured by how the model compared with QEMU.

    ``rows`` is [(label, differing field names)]; hand-picked scenarios (labels not starting with "random")
    get a black outline. The legend counts each category."""
    fig = new_figure(figsize=figsize)
    ax = fig.add_subplot()
    counts = dict.fromkeys(CROSSCHECK, 0)
    n = len(rows)
    lines = (n + columns - 1) // columns
    for i, (label, diffs) in enumerate(rows):
        cat = crosscheck_category(diffs)
        counts[cat] += 1
        x, y = i % columns, lines - 1 - i // columns
        picked = not label.startswith("random")
        ax.add_patch(Rectangle((x + 0.06, y + 0.06), 0.88, 0.88, facecolor=CROSSCHECK[cat],
                               edgecolor="black" if picked else "white", linewidth=1.2 if picked else 0.4))
    ax.set_xlim(0, columns)
    ax.set_ylim(0, lines)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    handles = [Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="black", linewidth=0.4) for c in CROSSCHECK.values()]
    ax.legend(handles, [f"{k} ({counts[k]})" for k in CROSSCHECK], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              fontsize=8, frameon=False, title="scenario (outlined: hand-picked)", title_fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig
