"""What the book reads out of a file, kept on disk by the file's content, so a new kernel need not read it again.

Parsing a Go binary's DWARF (``helpers.goelf``) or counting every instruction of one (``helpers.kcodegen``) takes
a second or so, and every notebook's kernel would do it again for the same unchanged builds. The result is kept
as JSON in the build cache under a key made of the file's content, the question asked, and the source code of
the reader (so that editing the reader reads every file again). An entry is used only after ``check`` has
turned it back into a value; one that does not parse or check is computed again and replaced. Nothing is
kept about what an experiment *ran*: only what a file's bytes say.

API::

    cached(kind, path, question, compute, check, readers)  -> the value, from the cache or from compute()
    source_digest(*functions)                              -> digest of their source code (part of the key)
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile

from . import toolchain
from .files import existing_file

ROOT = toolchain.CACHE_DIR / "read"


def source_digest(*functions) -> str:
    return hashlib.sha256("".join(inspect.getsource(f) for f in functions).encode()).hexdigest()


def cached(kind: str, path, question, compute, check, readers: str):
    """``check(json_data)`` of the entry for (the content of ``path``, ``question``, ``readers``), or else
    ``compute()``, which must return JSON-serialisable data, stored and then passed through ``check`` too."""
    h = hashlib.sha256(existing_file(path).read_bytes())
    h.update(repr((question, readers)).encode())
    entry = ROOT / kind / f"{h.hexdigest()[:32]}.json"
    try:
        return check(json.loads(entry.read_text()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    data = json.loads(json.dumps(compute()))      # the form it will have when read back
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, entry)                    # readers see the whole entry or none
    except OSError:
        pass                                      # a read-only cache: the value was computed all the same
    return check(data)
