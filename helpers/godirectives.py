"""godirectives: the ``//go:`` directives the pinned gc compiler recognises, read from its own front end.

Serves claim C22 (article §2.3: "Go exports symbols with ``//go:export``"), whose evidence cell lives in chapter
2c. The compiler's noder (golang/go ``src/cmd/compile/internal/noder``) knows a directive in one of three places,
and the list below is computed from all of them in the pinned Go tree:

* ``lex.go``, ``pragmaFlag``: directives that set a flag on the next declaration (``case "go:nosplit":``);
  and ``pragcgo``: the verbs of the ``//go:cgo_*`` family (``case "cgo_ldflag":``);
* ``noder.go``, ``(*noder).pragma``: directives with arguments, matched by prefix
  (``strings.HasPrefix(text, "go:linkname ")``, ``text == "go:embed"``) -- ``go:linkname``, ``go:linknamestd``,
  ``go:embed``, ``go:wasmimport``, ``go:wasmexport`` and the ``go:cgo_`` family;
* ``noder.go``, ``allowedStdPragmas``: directives the compiler lets through without acting on them
  (``go:generate``, ``go:fix``, the cgo ones).

API::

    compiler_directives(goroot=None) -> {"go:nosplit": "lex.go pragmaFlag", "go:linkname": "noder.go pragma", ...}
    directive_families(directives)   -> {"flag": [...], "with arguments": [...], "cgo": [...], "passed through": [...]}

Pure Python over the source text; raises :class:`DirectiveError` (a ValueError) with one line if the noder's
source no longer has the shapes this reads.
"""
from __future__ import annotations

import re
from pathlib import Path

NODER = "src/cmd/compile/internal/noder"


class DirectiveError(ValueError):
    """The pinned noder source does not have the expected shape. One line."""


def _func_body(text: str, signature: str) -> str:
    start = text.find(signature)
    if start < 0:
        raise DirectiveError(f"noder: {signature!r} not found")
    end = text.find("\n}\n", start)
    return text[start:end if end > 0 else len(text)]


def compiler_directives(goroot=None) -> dict[str, str]:
    """Every ``//go:`` directive the pinned compiler's noder names, with where it is recognised."""
    if goroot is None:
        from helpers import toolchain
        goroot = toolchain.goroot()
    if not isinstance(goroot, (str, Path)):
        raise DirectiveError("goroot must be a path to a Go tree")
    root = Path(goroot) / NODER
    try:
        lex, noder = (root / "lex.go").read_text(), (root / "noder.go").read_text()
    except OSError as e:
        raise DirectiveError(f"cannot read the compiler's noder source: {e.strerror}") from None
    found: dict[str, str] = {}
    for name in re.findall(r'case "(go:\w+)"', _func_body(lex, "func pragmaFlag(")):
        found.setdefault(name, "lex.go pragmaFlag")
    for verbs in re.findall(r"case ((?:\"cgo_\w+\"(?:, )?)+):", _func_body(lex, "func (p *noder) pragcgo(")):
        for verb in re.findall(r'"(cgo_\w+)"', verbs):
            found.setdefault("go:" + verb, "lex.go pragcgo")
    pragma = _func_body(noder, "func (p *noder) pragma(")
    for name in re.findall(r'strings\.HasPrefix\(text, "(go:\w+) "\)|text == "(go:\w+)"', pragma):
        found.setdefault(next(n for n in name if n), "noder.go pragma")
    allowed = re.search(r"allowedStdPragmas = map\[string\]bool\{(.*?)\n\}", noder, re.S)
    if allowed is None:
        raise DirectiveError("noder.go: allowedStdPragmas not found")
    for name in re.findall(r'"(go:\w+)":\s*true', allowed.group(1)):
        found.setdefault(name, "noder.go allowedStdPragmas")
    if not any(v == "lex.go pragmaFlag" for v in found.values()) or "go:linkname" not in found:
        raise DirectiveError("noder: found no flag directives or no go:linkname; the source changed shape")
    return dict(sorted(found.items()))


def directive_families(directives: dict[str, str]) -> dict[str, list[str]]:
    """Group :func:`compiler_directives` by kind, for printing."""
    out = {"flag": [], "with arguments": [], "cgo": [], "passed through": []}
    for name, where in directives.items():
        if name.startswith("go:cgo_"):
            out["cgo"].append(name)
        elif where == "lex.go pragmaFlag":
            out["flag"].append(name)
        elif where == "noder.go pragma":
            out["with arguments"].append(name)
        else:
            out["passed through"].append(name)
    return out
