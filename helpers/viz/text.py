"""A monospaced text panel as a picture: the static stand-in for a widget whose view is text (the assembly
runner's listing and registers), so a page without a kernel still shows what the widget shows."""
from __future__ import annotations

from . import new_figure

MAX_LINES = 40


def draw_text(text: str, title: str = "", width_chars: int = 72):
    """A figure holding ``text`` (at most :data:`MAX_LINES` lines, each cut at ``width_chars``)."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) > MAX_LINES:
        lines = lines[:MAX_LINES - 1] + [f"... ({len(lines) - MAX_LINES + 1} more lines)"]
    lines = [ln if len(ln) <= width_chars else ln[:width_chars - 1] + "…" for ln in lines]
    height = 0.4 + 0.17 * (len(lines) + (1 if title else 0))
    fig = new_figure(figsize=(0.075 * width_chars + 0.3, height), dpi=100)
    fig.set_layout_engine(None)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    if title:
        ax.text(0.01, 1 - 0.12 / height, title, fontsize=9, fontweight="bold", va="top", transform=ax.transAxes)
    top = 1 - (0.12 + (0.2 if title else 0)) / height
    ax.text(0.01, top, "\n".join(lines), family="monospace", fontsize=8.5, va="top", linespacing=1.45,
            transform=ax.transAxes)
    return fig


def captioned(png: bytes, caption: str, strip_px: int = 30) -> bytes:
    """``png`` with a one-line caption strip above it, pixel for pixel (the picture is not rescaled)."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(png), format="png")
    h, w = pixels.shape[:2]
    dpi = 100
    fig = Figure(figsize=(w / dpi, (h + strip_px) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h / (h + strip_px)))
    ax.imshow(pixels, aspect="auto", interpolation="nearest")
    ax.axis("off")
    fig.text(0.005, 1 - (strip_px / 2) / (h + strip_px), caption, va="center", ha="left", fontsize=10,
             style="italic", color="#333333")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
