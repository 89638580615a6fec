"""What every widget in the book shares: coalesced redraws and one-line errors.

A reader dragging a slider sends a burst of change events. Each event handler here only records the new
state and (re)starts a short timer on the kernel's event loop; the view is drawn once, when the burst is
over, for the final value. The picture lives in one ``ipywidgets.Image`` whose value is replaced whole, so a
redraw can never leave a stale or a duplicated figure behind (appending to an ``Output`` can).

Bad input never reaches the reader as a traceback: :meth:`LiveView.redraw` catches the exception and shows
its one-line message in place.
"""
from __future__ import annotations

import asyncio
import html

import ipywidgets as W

DELAY = 0.04  # seconds of quiet that end a burst; well under what a person notices


class Debouncer:
    """Call ``fn()`` once, ``delay`` seconds after the last of a burst of ``trigger()`` calls.

    Outside a running event loop (a plain script or a test calling handlers directly) it calls at once.
    """

    def __init__(self, fn, delay: float = DELAY):
        self.fn, self.delay, self._handle = fn, delay, None
        self.calls = 0  # how many times fn ran; tests use it to check coalescing

    def trigger(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.delay <= 0:
            self._fire()
        else:
            self._handle = loop.call_later(self.delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self.calls += 1
        self.fn()


def error_html(message: str) -> str:
    """The book's one-line error, in place of a traceback."""
    return f'<span style="color:#b00020;font-family:monospace">✗ {html.escape(message.splitlines()[0] if message else "error")}</span>'


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class LiveView:
    """Base for a widget that shows a drawing and a text panel computed from its controls.

    Subclasses build their controls, call ``self.watch(*controls)``, and implement ``render()``, which
    returns ``(png_bytes_or_None, html_text)``. ``self.box`` is what the notebook displays.
    """

    def __init__(self, delay: float = DELAY):
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self.text = W.HTML()
        self.status = W.HTML()
        self._debounce = Debouncer(self.redraw, delay)
        self.renders = 0

    def watch(self, *controls) -> None:
        for c in controls:
            c.observe(lambda _change: self._debounce.trigger(), names="value")

    def render(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def redraw(self) -> None:
        try:
            png, text = self.render()
        except Exception as exc:  # bad input from the reader: one line, no traceback
            self.status.value = error_html(one_line(exc))
            return
        self.status.value = ""
        if png is not None:
            self.image.value = png
        self.text.value = text
        self.renders += 1
