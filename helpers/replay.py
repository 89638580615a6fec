"""Recorded outputs for the cells that cannot run on this machine.

A cell that needs a tool this machine lacks (the pinned Go or zig, gcc, binutils: the
:class:`helpers.toolchain.ToolMissing` error, or an error it caused) shows, instead of a traceback, what the
same cell printed when the book was executed with every tool present: the outputs committed in the notebook,
which ``make execute`` made with the pinned toolchains. One line above them says that they are a recording,
which tool is missing here, and how to install it. The names such a cell was binding (not its imports) are
dropped, so a later cell that needs one fails with a ``NameError``, which is shown the same way; every other
cell still runs live. A replayed cell ends without an error, so running all cells goes on after it.

The kernel finds the notebook it runs from ``JPY_SESSION_NAME`` (which Jupyter's server sets), or else among
the notebooks in its working folder, and the cell in it by the cell's id (which Jupyter sends with each
execution) or else by its source (IPython keeps both in the running cell's ExecutionInfo). The note carries
``metadata[NOTE]``, so the book's nbval runs (:mod:`helpers.nbval_replay`) can leave it out of the comparison:
the rest of the replay must equal the committed outputs, as a live run would. Whatever the cell printed before
it failed is cleared first (``clear_output``). A cell whose recording is an error too gets its traceback.

API::

    install(shell)                  -> the Replay handler, installed in an IPython shell (``helpers`` does
                                       this on import inside a kernel)
    recorded_outputs(source, cwd, cell_id=None)
                                    -> the committed outputs of that code cell, or None
"""
from __future__ import annotations

import ast
import json
import os
import sys
from pathlib import Path

NOTE = "why-not-go:recorded"
MAX_NOTEBOOK_BYTES = 64 << 20     # a notebook larger than this is not read (no book notebook comes near)


def _missing_tool(exc: BaseException):
    """The ToolMissing error in ``exc``'s chain (the error itself, or what it was raised while handling)."""
    from .toolchain import ToolMissing
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ToolMissing):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _candidates(cwd: Path) -> list[Path]:
    session = os.environ.get("JPY_SESSION_NAME", "")
    if session.endswith(".ipynb") and Path(session).is_file():
        return [Path(session)]
    return sorted(cwd.glob("*.ipynb"))


def recorded_outputs(source: str, cwd=".", cell_id: str | None = None) -> list | None:
    """The outputs committed for the code cell with id ``cell_id``, or else the first whose source is
    ``source``; None if there is none, or if that cell is an nbgrader test (a grade is never replayed)."""
    want = source.rstrip("\n")
    by_source, found = None, False
    for path in _candidates(Path(cwd)):
        try:
            if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                continue
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        except (OSError, ValueError):
            continue
        for cell in cells:
            if cell.get("cell_type") != "code":
                continue
            outputs = None if _graded(cell) else cell.get("outputs", [])
            if cell_id and cell.get("id") == cell_id:
                return outputs
            if not found and _text(cell.get("source", "")).rstrip("\n") == want:
                by_source, found = outputs, True
    return by_source


def _graded(cell: dict) -> bool:
    """An nbgrader test cell: its pass or fail is a grade, never a recording."""
    return bool(((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade"))


def bound_names(source: str) -> set[str]:
    """Names a cell binds in its own scope other than by import (assignments, loops, ``with``, ``def``,
    ``class``, at any depth of ``if``/``for``/``try``): after the cell failed midway they hold partial state
    (a ``runs = {}`` never filled)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)         # its body is another scope
            continue
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor)):
            targets = [node.target]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in node.items if i.optional_vars]
        else:
            targets = []
        for t in targets:
            names |= _target_names(t)
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo.extend(getattr(node, field, []) or [])
        if isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def _target_names(t) -> set[str]:
    """``a`` and ``a, (b, *c)`` bind names; ``obj.x = ...`` and ``d[k] = ...`` change an object, bind none."""
    if isinstance(t, ast.Name):
        return {t.id}
    if isinstance(t, (ast.Tuple, ast.List)):
        return set().union(*(_target_names(e) for e in t.elts))
    if isinstance(t, ast.Starred):
        return _target_names(t.value)
    return set()


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


class Replay:
    """IPython custom-exception handler: a recording in place of a cell that cannot run here."""

    def __init__(self):
        self.missing: list[str] = []     # the first line of each ToolMissing met in this kernel

    @staticmethod
    def _running_cell(shell) -> tuple[str, str | None]:
        """(source, id) of the cell running now: IPython's run_cell keeps its ExecutionResult on the
        display hook until the cell is over (history may be off, as under nbval)."""
        info = getattr(getattr(shell.displayhook, "exec_result", None), "info", None)
        return (getattr(info, "raw_cell", "") or "", getattr(info, "cell_id", None))

    def __call__(self, shell, etype, value, tb, tb_offset=None):
        missing = _missing_tool(value)
        cascade = missing is None and isinstance(value, NameError) and self.missing
        outputs = None
        if missing is not None or cascade:
            source, cell_id = self._running_cell(shell)
            outputs = recorded_outputs(source, os.getcwd(), cell_id)
            if outputs and any(o.get("output_type") == "error" for o in outputs):
                outputs = None           # the recording failed too: this error is the cell's own
        if outputs is None:
            if missing is not None:      # no recording for this cell: the tool's one line, no traceback
                print(f"{type(missing).__name__}: {str(missing).splitlines()[0]}", file=sys.stderr)
                self.missing.append(str(missing))
                return None
            return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        why = str(missing).splitlines()[0] if missing is not None else (
            f"it needs {value.name!r}, which a cell shown as a recording above would have defined")
        if missing is not None:
            self.missing.append(why)
        for name in bound_names(source):   # partial state: later cells that need it are recordings too
            shell.user_ns.pop(name, None)
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:             # a figure the cell began is not shown beside the recorded one
            pyplot.close("all")
        self._show(outputs, why)
        result = getattr(shell.displayhook, "exec_result", None)
        if result is not None:             # the cell ends as shown, not as an error: "Run all" goes on
            result.error_in_exec = None
        return None

    @staticmethod
    def _show(outputs: list, why: str) -> None:
        from IPython.display import clear_output, publish_display_data

        from .toolchain import GO_VERSION, ZIG_VERSION
        note = (f"⟲ Recorded output: this cell cannot run here ({why}). What follows is what it printed when "
                f"the book was executed with go{GO_VERSION} and zig {ZIG_VERSION} (make execute).")
        clear_output()                   # what the cell printed before it failed: the recording replaces it
        publish_display_data({"text/plain": note}, metadata={NOTE: True})
        for out in outputs:
            kind = out.get("output_type")
            if kind == "stream":
                stream = sys.stderr if out.get("name") == "stderr" else sys.stdout
                stream.write(_text(out.get("text", "")))
                stream.flush()
            elif kind in ("display_data", "execute_result"):
                data = {k: _text(v) if k.startswith("text/") else v for k, v in out.get("data", {}).items()}
                publish_display_data(data, metadata=out.get("metadata", {}))


def install(shell) -> Replay:
    """Handle every exception of a cell in ``shell`` with :class:`Replay` (others still get a traceback)."""
    handler = Replay()
    shell.set_custom_exc((Exception,), handler)
    return handler
