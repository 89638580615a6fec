"""viz: matplotlib drawings of core results. Nothing here computes a fact; it only draws one.

Figures use the non-interactive Agg canvas directly (no pyplot state machine), so drawing from a widget
callback never leaks figures and never depends on the notebook's backend. IPython shows such a figure as a
picture only once a PNG formatter is registered for it (pyplot's inline backend does that as a side effect
of being imported); importing this package registers it, so a cell that ends in a figure shows the figure.
"""
import io

from matplotlib.figure import Figure


def new_figure(figsize=(7, 3), dpi=100) -> Figure:
    """A standalone figure (not registered with pyplot, so it never needs closing)."""
    return Figure(figsize=figsize, dpi=dpi, layout="constrained")


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of a figure, for an ``ipywidgets.Image`` (one image, replaced atomically on redraw)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _show_figures_in_ipython() -> None:
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


_show_figures_in_ipython()
