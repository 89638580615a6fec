"""File names that a caller passes in, checked before anything opens them.

Every helper that reads a file a notebook, a student or a widget names (an ELF object, a Go binary, a kernel
module, a notebook) takes that name through :func:`existing_file`, so bad input is one line of the ValueError
family, never a TypeError or an OSError from deep inside. An int is refused on purpose: Python's ``open(3)``
wraps file descriptor 3, whatever this process has open there (a font matplotlib is reading, a kernel's
socket), and closes it afterwards.
"""
from __future__ import annotations

import os
from pathlib import Path


class FileArgError(ValueError):
    """A file argument that is not the name of an existing file."""


def existing_file(path, what: str = "path", error: type[ValueError] = FileArgError) -> Path:
    """``path`` (str or os.PathLike) as a Path to an existing file, else ``error`` with one line."""
    if not isinstance(path, (str, os.PathLike)):
        raise error(f"{what} must be a file name (str or os.PathLike), not {type(path).__name__}")
    p = Path(path)
    if not p.is_file():
        raise error(f"no such file: {p}")
    return p
