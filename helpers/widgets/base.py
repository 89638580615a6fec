"""What every widget in the book shares: coalesced redraws, visible progress, honest stale views, one-line errors,
and a readable stand-in where no widget can run.

A reader dragging a slider sends a burst of change events. Each event handler here only records the new
state and (re)starts a short timer on the kernel's event loop; the view is drawn once, when the burst is
over, for the final value. The picture lives in one ``ipywidgets.Image`` whose value is replaced whole, so a
redraw can never leave a stale or a duplicated figure behind (appending to an ``Output`` can).

A redraw that takes longer than a moment (:data:`BUSY_AFTER`) says "working…" at once, from a timer thread,
while the kernel is still computing, and greys the old picture and text until the new ones arrive.

Bad input never reaches the reader as a traceback: :meth:`LiveView.redraw` catches the exception, shows its
one-line message in place, and greys the picture and text below, labelled as the last valid state.

Before a widget's cell has run (a fresh clone, GitHub, the static edition) there is no kernel to draw it. The
notebook output then carries, beside the live view, one readable line (``text/plain``) and, when the widget
has a picture, a PNG of its default state (``image/png``), which the reading edition shows with a note.
"""
from __future__ import annotations

import asyncio
import base64
import html
import re
import threading

import ipywidgets as W

DELAY = 0.04  # seconds of quiet that end a burst; well under what a person notices
BUSY_AFTER = 0.1  # a redraw still running after this long says "working…" (the book's 100 ms figure budget)
STALE = "lv-stale"  # CSS class of a picture or text that no longer matches the controls
STYLE = (f"<style>.{STALE}{{opacity:.35;filter:grayscale(100%);transition:opacity .15s}}"
         ".lv-busy{color:#555;font-style:italic}.asm-runner textarea{font-family:monospace}</style>")
WORKING = "<span class='lv-busy'>⏳ working… the picture and text below are the previous state until the new ones arrive</span>"
LAST_VALID = " (the greyed picture and text below are the last valid state)"


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


def error_html(message: str, suffix: str = "") -> str:
    """The book's one-line error, in place of a traceback."""
    line = message.splitlines()[0] if message else "error"
    return f'<span style="color:#b00020;font-family:monospace">✗ {html.escape(line)}</span>{html.escape(suffix)}'


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def scroll_pre(text: str, max_height: str = "24em") -> str:
    """A listing that scrolls (both ways) instead of growing the page or breaking its lines."""
    return (f"<pre style='max-height:{max_height};overflow:auto;white-space:pre;margin:0'>"
            f"{html.escape(text)}</pre>")


class Busy:
    """Context manager around slow work: after ``after`` seconds, ``on()`` is called from a timer thread (the
    kernel's main thread is busy computing, but widget messages still go out); ``off()`` runs at the end if
    ``on()`` did. ``on``/``off`` never run concurrently with each other."""

    def __init__(self, on, off, after: float = BUSY_AFTER):
        self.on, self.off, self.after = on, off, after
        self.shown = False
        self._lock = threading.Lock()
        self._done = False

    def _show(self):
        with self._lock:
            if not self._done:
                self.shown = True
                self.on()

    def __enter__(self):
        self._timer = threading.Timer(self.after, self._show)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self.shown:
                self.off()
        return False


class Standin:
    """Gives a live widget a readable stand-in for the places where no kernel runs it.

    ``LABEL`` names the widget ("the gate workbench"); :meth:`bundle` is the widget's own mimebundle plus one
    ``text/plain`` line and, if :meth:`picture` returns PNG bytes, an ``image/png`` of its current (at display
    time: default) state, captioned with the same advice (an untrusted notebook shows the picture, not the
    text). Both the object (``GateWorkbench()`` at the end of a cell) and its ``.box`` (``view.box``) display
    this bundle.
    """

    LABEL = ""  # e.g. "the gate workbench"; by default made from the class name (StackGrowthViewer -> ...)

    @property
    def label(self) -> str:
        return self.LABEL or "the " + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", type(self).__name__).lower()

    def picture(self) -> bytes | None:
        return None

    def standin_line(self) -> str:
        return f"Run the cells above to use {self.label} (a live widget: it needs a running Python kernel)."

    def standin_caption(self) -> str:
        """The line written on the stand-in picture, for the places that show the picture and not the text."""
        return f"A picture of {self.label} in its default state: run the cells above to use the live widget."

    def bundle(self, box, include=None, exclude=None) -> dict:
        data = dict(W.DOMWidget._repr_mimebundle_(box, include=include, exclude=exclude) or {})
        data["text/plain"] = self.standin_line()
        png = self.picture()
        if png:
            from ..viz.text import captioned

            data["image/png"] = base64.b64encode(captioned(png, self.standin_caption())).decode("ascii")
        return data

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.bundle(self.box, include, exclude)

    def _adopt(self, box) -> None:
        """Make ``box`` display as :meth:`bundle` and carry the shared style sheet (once)."""
        box._repr_mimebundle_ = lambda include=None, exclude=None: self.bundle(box, include, exclude)
        if not any(getattr(c, "value", None) == STYLE for c in box.children):
            box.children = (*box.children, W.HTML(STYLE, layout=W.Layout(width="0", height="0", margin="0")))

    @property
    def box(self):
        return self._box

    @box.setter
    def box(self, value):
        self._adopt(value)
        self._box = value


class LiveView(Standin):
    """Base for a widget that shows a drawing and a text panel computed from its controls.

    Subclasses build their controls, call ``self.watch(*controls)``, and implement ``render()``, which
    returns ``(png_bytes_or_None, html_text)``. ``self.box`` is what the notebook displays.
    """

    def __init__(self, delay: float = DELAY):
        # The picture keeps its aspect ratio and never grows past its natural size or its column.
        self.image = W.Image(format="png", layout=W.Layout(max_width="100%", height="auto", object_fit="contain",
                                                           align_self="flex-start", flex="0 1 auto", margin="0"))
        self.text = W.HTML(layout=W.Layout(min_width="0", overflow="auto", flex="1 1 auto"))
        self.status = W.HTML()
        self._debounce = Debouncer(self.redraw, delay)
        self.renders = 0
        self.busy_shown = 0  # how many redraws said "working…"; tests use it

    def watch(self, *controls) -> None:
        for c in controls:
            c.observe(lambda _change: self._debounce.trigger(), names="value")

    def render(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def picture(self) -> bytes | None:
        return self.image.value or None

    def stale_parts(self) -> tuple:
        """The parts of the view that are drawn from the controls (greyed while they do not match them)."""
        return (self.image, self.text)

    def stale(self, on: bool) -> None:
        """Grey out (or restore) the picture and text: they no longer match the controls."""
        for w in self.stale_parts():
            (w.add_class if on else w.remove_class)(STALE)

    def _busy_on(self) -> None:
        self.busy_shown += 1
        self.status.value = WORKING
        self.stale(True)

    def _busy_off(self) -> None:
        if self.status.value == WORKING:
            self.status.value = ""

    def redraw(self) -> None:
        with Busy(self._busy_on, self._busy_off):
            try:
                png, text = self.render()
            except Exception as exc:  # bad input from the reader: one line, no traceback
                failure = one_line(exc)
            else:
                failure = None
        if failure is not None:
            self.status.value = error_html(failure, LAST_VALID if self.renders else "")
            self.stale(True)
            return
        self.status.value = ""
        if png is not None:
            self.image.value = png
        self.text.value = text
        self.stale(False)
        self.renders += 1
