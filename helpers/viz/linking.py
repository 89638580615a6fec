"""viz.linking: drawings for chapters 2c and 4c -- how a call reaches its target, what LTO did to a build, and
the sections of a Go binary beside a C one.

Draws results computed from real builds by :mod:`helpers.gosyms` and :mod:`helpers.lto`; computes nothing.
"""
from __future__ import annotations

from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from helpers.viz import new_figure

HOP = "#cfe8ff"        # code in the program or library
TABLE = "#ffe3b3"      # PLT stub or GOT slot: filled at run time by the dynamic loader
PRELOADED = "#ffc9c9"  # the definition LD_PRELOAD put first: the call was interposed
KEPT = "#d4f0d4"       # the library's own definition: the call was not interposed


def call_paths(rows, figsize=(8.0, 3.6)):
    """One lane per build: the hops from ``use()`` to the ``calc`` that runs, the relocation the compiler
    left in the object, and what ``LD_PRELOAD`` of a library with another ``calc`` did.

    ``rows``: dicts with ``title``, ``relocation`` (e.g. "R_X86_64_PLT32 calc" or "none"), ``hops`` (box
    labels, first = caller, last = the definition that runs), ``tables`` (indexes of hops that are PLT/GOT)
    and ``preload`` (the program's line with LD_PRELOAD), ``interposed`` (bool).
    """
    fig = new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    n = len(rows)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 1.6 * n)
    for k, row in enumerate(rows):
        y = 1.6 * (n - 1 - k) + 0.35
        ax.text(0.0, y + 0.95, row["title"], fontsize=8.5, weight="bold")
        ax.text(10.0, y + 0.95, f"object relocation: {row['relocation']}", fontsize=7.5, ha="right",
                family="monospace")
        hops = row["hops"]
        width = 7.6 / len(hops)
        for i, label in enumerate(hops):
            x = 0.1 + i * width
            last = i == len(hops) - 1
            color = TABLE if i in row.get("tables", ()) else (
                (PRELOADED if row["interposed"] else KEPT) if last else HOP)
            ax.add_patch(FancyBboxPatch((x, y), width - 0.55, 0.6, boxstyle="round,pad=0.02", facecolor=color,
                                        edgecolor="#444", linewidth=0.8))
            ax.text(x + (width - 0.55) / 2, y + 0.3, label, ha="center", va="center", fontsize=7.5,
                    family="monospace")
            if not last:
                ax.add_patch(FancyArrowPatch((x + width - 0.53, y + 0.3), (x + width + 0.02, y + 0.3),
                                             arrowstyle="->", mutation_scale=10, linewidth=1.0))
        ax.text(7.85, y + 0.3, f"with LD_PRELOAD:\n{row['preload']}", fontsize=7.5, va="center",
                color="#b00000" if row["interposed"] else "#006000")
    ax.set_title("How use() reaches calc(): red = the preloaded calc ran (interposed), green = its own calc ran",
                 fontsize=9)
    ax.axis("off")
    return fig


def lto_effect(rows, figsize=(8.0, 3.2)):
    """Left: the size of each of our functions in every build (absent = inlined or dropped). Right: direct
    calls to ``mix`` left in ``main``.

    ``rows``: dicts with ``label`` (build), ``sizes`` ({function: bytes or None}) and ``calls_to_mix``.
    """
    fig = new_figure(figsize)
    ax, bx = fig.subplots(1, 2, width_ratios=[3, 1])
    funcs = list(rows[0]["sizes"])
    h = 0.8 / len(funcs)
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for k, row in enumerate(rows):
        for j, f in enumerate(funcs):
            size = row["sizes"][f]
            y = k + j * h - 0.4 + h / 2
            if size:
                ax.barh(y, size, height=h * 0.9, color=colors[j % len(colors)], label=f if k == 0 else None)
                ax.text(size, y, f" {size}", va="center", fontsize=7)
            else:
                ax.text(1, y, f" {f}: gone", va="center", fontsize=7, color="#777")
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    biggest = max((v for r in rows for v in r["sizes"].values() if v), default=1)
    ax.set_xlim(0, biggest * 1.15)
    ax.set_xlabel("function size in the linked program (bytes)", fontsize=8)
    fig.legend(fontsize=7, loc="outside lower center", ncol=len(funcs), frameon=False)
    ax.set_title("Our three functions after linking", fontsize=9)
    bx.barh(range(len(rows)), [r["calls_to_mix"] for r in rows], color="#8172b3")
    bx.set_yticks(range(len(rows)), [""] * len(rows))
    bx.set_ylim(len(rows) - 0.5, -0.5)
    bx.set_xticks([0, 1])
    bx.set_xlabel("calls to mix() in main", fontsize=8)
    bx.set_title("Inlined?", fontsize=9)
    return fig


KIND_COLORS = {"code": "#4c72b0", "read-only data": "#dd8452", "writable data": "#55a868",
               "thread-local": "#c44e52", "zero-filled": "#bbbbbb"}


def section_kind(flags: str, name: str) -> str:
    """Code, read-only data, writable data, thread-local or zero-filled (.bss), from the section's flags."""
    if "T" in flags:
        return "thread-local"
    if "X" in flags:
        return "code"
    if name.startswith((".bss", ".noptrbss", ".tbss")):
        return "zero-filled"
    return "writable data" if "W" in flags else "read-only data"


def section_layout(binaries, figsize=(8.0, 2.8)):
    """One bar per binary: its allocated sections in file order, each as a share of the whole, coloured by
    kind, the large ones named. ``binaries``: [(label, [(name, size, flags), ...])]."""
    fig = new_figure(figsize)
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, sections) in enumerate(binaries):
        alloc = [s for s in sections if "A" in s[2] and s[1] > 0]
        total = sum(s[1] for s in alloc)
        left = 0.0
        for name, size, flags in alloc:
            share = size / total
            kind = section_kind(flags, name)
            ax.barh(k, share, left=left, color=KIND_COLORS[kind], edgecolor="white", linewidth=0.5)
            if share > 0.07:
                ax.text(left + share / 2, k, name, ha="center", va="center", fontsize=7, color="white")
            left += share
        ax.text(1.01, k, f"{total / 1024:,.0f} KiB", va="center", fontsize=8)
    ax.set_yticks(range(len(binaries)), [b[0] for b in binaries], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"], fontsize=7)
    for kind, color in KIND_COLORS.items():
        ax.barh(0, 0, color=color, label=kind)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
    ax.set_title("Allocated sections in file order (share of the loaded image)", fontsize=9)
    return fig
