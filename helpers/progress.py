"""A progress line for the slow first builds (zig building a libc, Go rebuilding its standard library).

On an empty build cache a single cell can take minutes while a compiler builds its runtime libraries once.
:func:`first_build` wraps such a build: the first time a kind of build runs against this cache it shows one
line saying what is being built and that the first run takes minutes, and removes it when the build is done.

In a notebook the line is an ``ipywidgets.HTML`` whose output carries only the widget view: strict nbval does
not compare widget views, so a cold run and a warm run of a notebook still compare equal, and the line is
replaced by nothing when the build ends. Outside a kernel (a script, CI) the line goes to stderr.
"""
from __future__ import annotations

import html
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _show(text: str):
    """Show ``text`` until the returned function is called; return that function."""
    if not _in_kernel():
        print(f"[why-not-go] {text}", file=sys.stderr, flush=True)
        return lambda: None
    import ipywidgets as W
    from IPython.display import display

    line = W.HTML(f"<span style='color:#555'>⏳ {html.escape(text)}</span>")
    handle = display({WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": line.model_id}},
                     raw=True, display_id=True)

    def done():
        handle.update({}, raw=True)
        line.close()
    return done


def notice(what: str, minutes: str) -> str:
    return (f"First run: {what}. This happens once per build cache and takes {minutes} on a small machine; "
            f"later runs reuse it and take seconds.")


@contextmanager
def first_build(marker_dir: Path, kind: str, what: str, minutes: str = "a few minutes"):
    """Around a build that is slow the first time ``kind`` is built in the cache at ``marker_dir``."""
    marker = Path(marker_dir) / "first-builds" / re.sub(r"[^A-Za-z0-9_.-]+", "_", kind)
    done = None if marker.exists() else _show(notice(what, minutes))
    start = time.monotonic()
    try:
        yield
    finally:
        if done is not None:
            done()
    if done is not None:  # only a build that succeeded warms the cache
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.monotonic() - start:.0f} s\n")
