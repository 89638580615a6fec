"""viz.abi: drawings for chapter 2 -- where a call's arguments sit, and g/m/g0 around an ``mcall``.

Draws results computed by :mod:`helpers.abi` (a :class:`~helpers.abi.Placement`) and by
:mod:`helpers.gosyms` (the facts read from the real ``runtime.mcall``); computes nothing itself.
"""
from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, Rectangle

from helpers.viz import new_figure

ARG = "#cfe8ff"      # holds an argument
FREE = "#f2f2f2"     # argument register left unused
RET = "#ffe3b3"      # return address
SPECIAL = "#e6d9ff"  # fixed meaning (Go: R14 = g)


def _box(ax, x, y, w, h, text, color, fontsize=8):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, edgecolor="#444", linewidth=0.8))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, family="monospace")


def draw_placement(placement, figsize=(7.5, 3.2)):
    """Registers (left) and the stack at the callee's first instruction (right) for one placement."""
    c = placement.convention
    fig = new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xlim(0, 10)
    regs = placement.registers()
    rows = list(c.arg_regs) + [r for r in c.special if r.startswith("r") and r not in c.arg_regs][:2]
    n_stack = len(placement.stack()) + 1
    height = max(len(rows), n_stack, 3) + 1
    ax.set_ylim(0, height)
    ax.text(0.2, height - 0.5, "argument registers", fontsize=9, weight="bold")
    for k, r in enumerate(rows):
        y = height - 1.5 - k
        if r in regs:
            idx = next(s.index for s in placement.slots if s.register == r)
            _box(ax, 0.2, y, 4.2, 0.8, f"%{r} = arg{idx} = {regs[r]:#x}", ARG)
        elif r in c.special:
            _box(ax, 0.2, y, 4.2, 0.8, f"%{r}: {c.special[r]}", SPECIAL)
        else:
            _box(ax, 0.2, y, 4.2, 0.8, f"%{r}: unused", FREE)
    if not rows:
        ax.text(0.2, height - 1.5, "(none: every argument is on the stack)", fontsize=8)
    ax.text(5.0, height - 0.5, f"stack at callee entry (%{c.sp})", fontsize=9, weight="bold")
    slots = [(0, "return address", RET)] + [
        (off, f"arg{next(s.index for s in placement.slots if s.offset == off)} = {v:#x}", ARG)
        for off, v in sorted(placement.stack().items())]
    for k, (off, label, color) in enumerate(slots):
        y = 0.3 + k   # higher addresses drawn higher
        _box(ax, 6.2, y, 3.0, 0.8, label, color)
        ax.text(6.1, y + 0.4, f"{off}(%{c.sp})", ha="right", va="center", fontsize=7, family="monospace")
    ax.annotate("", xy=(9.25, 0.7), xytext=(9.9, 0.7), arrowprops=dict(arrowstyle="->"))
    ax.text(9.95, 0.6, f"%{c.sp}", fontsize=8, family="monospace")
    pops = (f"callee pops {placement.stack_bytes} byte(s) (ret ${placement.stack_bytes})"
            if placement.callee_pops else f"caller pops {placement.stack_bytes} byte(s) after the call")
    ax.set_title(f"{c.name}: {len(placement.slots)} argument(s); {pops}", fontsize=9)
    ax.axis("off")
    return fig


def draw_mcall(facts: dict, figsize=(9, 3.6)):
    """g, m, g0 and their stacks before and after ``runtime.mcall(fn)``, labelled with what the real
    machine code does (``facts`` from :func:`helpers.gosyms.mcall_facts`)."""
    fig = new_figure(figsize)
    for col, (title, on_g0) in enumerate((("before mcall(fn)", False), ("inside fn(g), after the switch", True))):
        ax = fig.add_subplot(1, 2, col + 1)
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 8)
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        _box(ax, 0.3, 6.2, 2.6, 1.0, "m\n.g0  .curg", "#ffffff")
        _box(ax, 3.6, 6.2, 2.6, 1.0, "g (user)\n.sched", "#d7f5d7" if on_g0 else "#ffffff", 7)
        _box(ax, 6.9, 6.2, 2.6, 1.0, "g0\n.sched.sp", "#ffffff")
        # the two stacks
        _box(ax, 3.6, 0.5, 2.6, 4.6, "", "#fafafa")
        ax.text(4.9, 4.8, "g's stack", ha="center", fontsize=8)
        _box(ax, 6.9, 0.5, 2.6, 4.6, "", "#fafafa")
        ax.text(8.2, 4.8, "g0's stack", ha="center", fontsize=8)
        _box(ax, 3.8, 3.3, 2.2, 0.7, "caller frames", "#eeeeee", 7)
        if on_g0:
            saved = ", ".join(f.split(".")[-1] for f in facts.get("saves_to_g_sched", []))
            ax.text(4.9, 5.55, f"saved: {saved}", ha="center", fontsize=7, color="#1b5e20")
            _box(ax, 7.1, 3.3, 2.2, 0.7, "old g (8 bytes)", ARG, 7)
            _box(ax, 7.1, 2.5, 2.2, 0.7, "fn's frame", "#eeeeee", 7)
            sp_y, sp_x = 2.85, 9.6
            r14 = "R14 = g0"
        else:
            sp_y, sp_x = 3.65, 6.3
            r14 = "R14 = g"
        ax.add_patch(FancyArrowPatch((sp_x + 0.3, sp_y), (sp_x, sp_y), arrowstyle="->", mutation_scale=8))
        ax.text(sp_x + 0.05, sp_y - 0.45, "SP", fontsize=8, family="monospace")
        ax.text(0.3, 5.4, r14, fontsize=8, family="monospace")
        ax.text(0.3, 4.9, "TLS g = " + ("g0" if on_g0 else "g"), fontsize=8, family="monospace")
    return fig


STACK = "#ffd8a8"    # an argument in a stack slot


def draw_argument_map(locations: dict, title: str | None = None, figsize=(7.2, 3.0)):
    """One row per convention, one column per argument (numbered from 1): the register or stack slot where the
    argument was found at the callee's first instruction (``locations``: {convention: ["%eax", "4(%esp)", ...]},
    from :func:`helpers.abi.observed_arguments`). Registers blue, stack slots orange."""
    if not locations or not all(isinstance(v, (list, tuple)) for v in locations.values()):
        raise ValueError("locations must map each convention to its list of argument locations")
    n = max(len(v) for v in locations.values())
    fig = new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    rows = list(locations)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    for y, conv in enumerate(rows):
        for x, where in enumerate(locations[conv]):
            colour = ARG if where.startswith("%") else STACK if "(%" in where else FREE
            ax.add_patch(Rectangle((x - 0.47, y - 0.42), 0.94, 0.84, facecolor=colour, edgecolor="#444", linewidth=0.6))
            ax.text(x, y, where, ha="center", va="center", fontsize=7, family="monospace")
    ax.set_xticks(range(n), [f"arg {k + 1}" for k in range(n)], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8, family="monospace")
    ax.tick_params(length=0)
    ax.xaxis.set_ticks_position("top")
    for side in ax.spines.values():
        side.set_visible(False)
    handles = [Rectangle((0, 0), 1, 1, facecolor=ARG, edgecolor="#444"),
               Rectangle((0, 0), 1, 1, facecolor=STACK, edgecolor="#444")]
    fig.legend(handles, ["register", "stack slot (offset from the callee's entry stack pointer)"],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig
