"""ledger: the book's claims ledger (``chapters/claims.yml``) as data, its validator, and the staging merge.

Serves the whole book: every chapter checks claims from the article (IDs C01-C64, numbered in the article's
order) and records a verdict here; chapter 5 draws the result and ``tests/test_claims.py`` keeps it honest.
The ledger carries everything itself, the article's claim included, so the book needs nothing outside its
repository. One entry:

    - id: C32
      section: "3.1"                 # the article's section
      claim: >-
        The article's statement, paraphrased in the book's own English words.
      verdict: partly                # holds | partly | wrong | fabricated | unverifiable
      fact: >-
        One or two sentences in the book's own words.
      evidence:
        cell: chapters/03a_idt_gates.ipynb#claim-C32
        source: torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)
        kind: emulator               # or a list; one or more of KINDS

Evidence kinds (``KINDS``), i.e. how the evidence cell or source settles the claim:

* ``real kernel``: the claim was tested on a running Linux kernel (a guest booted under QEMU);
* ``QEMU``: QEMU's system emulator, a real implementation of the CPU (interrupt delivery, privilege checks);
* ``emulator``: machine code run in the unicorn emulator (user-mode CPU, no operating system);
* ``native run``: real tools run on this machine: a compiler, linker, the built program, ``go vet``;
* ``source``: a primary source read, not run (including a cell that only checks data typed into this
  repository, or that searches the pinned toolchain's source tree);
* ``recorded``: a saved run, made by a script in this repository, shown where the tool is missing.

API::

    load(path_or_text)                 -> [Entry]; raises LedgerError (one line) on malformed YAML/entries
    validate(entries, repo)            -> [problem, ...] (empty when the ledger is sound)
    tagged_cells(notebook, tag)        -> [cell source, ...] of code cells carrying ``tag``
    has_assert(source)                 -> whether a cell's code contains an ``assert`` statement
    by_section(entries)                -> {section: {verdict: count}} (sections normalised: "3.2 (table)" -> "3.2")
    by_kind(entries)                   -> {kind: {verdict: count}}; a claim counts once under each of its kinds
    strongest_kind(entry)              -> the kind in ``entry.kinds`` that comes first in KINDS
    html_table(entries)                -> the ledger as an HTML table whose cells wrap, linking the evidence cells
    merge(staging_dir, ids)            -> the merged ledger as YAML text, every ID once, in ID order
    dump(entries)                      -> YAML text in the format above

Command line::

    python -m helpers.ledger check [chapters/claims.yml]
    python -m helpers.ledger merge STAGING_DIR [--allow-missing] > chapters/claims.yml
"""
from __future__ import annotations

import ast
import html
import json
import re
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
LEDGER = REPO / "chapters" / "claims.yml"
VERDICTS = ("holds", "partly", "wrong", "fabricated", "unverifiable")
# Strongest first: a claim settled on a real kernel beats one settled by reading a source.
KINDS = ("real kernel", "QEMU", "emulator", "native run", "recorded", "source")
RUN_KINDS = tuple(k for k in KINDS if k != "source")  # kinds that only a cell can give
KEYS = {"id", "section", "claim", "verdict", "fact", "evidence"}
EVIDENCE_KEYS = {"cell", "source", "kind"}

ID_RE = re.compile(r"^C\d{2}$")
# "owner/repo path ..." e.g. "torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)"
REPO_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]* +[^\s;]+")
# "<manual> §section" or "<manual>, <section>", e.g. "ISO C11 §5.1.2.2.3", "GCC manual, x86 Function Attributes"
MANUAL_SOURCE_RE = re.compile(r"^\S.*(§ ?\S+|[Mm]anual, +\S.*|[Pp]aper, +\S.*)")
CELL_RE = re.compile(r"^(?P<nb>[^#\s]+\.ipynb)#(?P<tag>claim-C\d{2})$")
# The article is in Chinese; the ledger paraphrases it in English, so CJK text in a claim means copied prose.
CJK_RE = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


class LedgerError(ValueError):
    """The ledger or a staging file cannot be read as a ledger. The message is one line."""


@dataclass(frozen=True)
class Entry:
    """One ledger entry. ``cells``, ``sources`` and ``kinds`` are tuples (the YAML may give a string or a list)."""

    id: str
    section: str
    verdict: str
    fact: str
    cells: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    claim: str = ""   # the article's statement, in the book's own paraphrase
    origin: str = ""  # the file it came from, for messages

    def as_dict(self) -> dict:
        ev = {}
        for key, values in (("cell", self.cells), ("source", self.sources), ("kind", self.kinds)):
            if values:
                ev[key] = values[0] if len(values) == 1 else list(values)
        return {"id": self.id, "section": self.section, "claim": self.claim, "verdict": self.verdict,
                "fact": self.fact, "evidence": ev}


def id_key(cid: str) -> int:
    return int(cid[1:])


def _as_tuple(value, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value)
    raise LedgerError(f"{where}: evidence.{what} must be a string or a list of strings")


def _text(value) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def entry_from_dict(item, where: str = "ledger") -> Entry:
    """Turn one YAML list item into an Entry; shape errors raise LedgerError naming the item."""
    if not isinstance(item, dict):
        raise LedgerError(f"{where}: each ledger item must be a mapping, got {type(item).__name__}")
    cid = item.get("id")
    where = f"{where} {cid}" if cid else where
    if not isinstance(cid, str) or not ID_RE.match(cid):
        raise LedgerError(f"{where}: id must look like C07, got {cid!r}")
    extra = set(item) - KEYS
    if extra:
        raise LedgerError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
    ev = item.get("evidence") or {}
    if not isinstance(ev, dict):
        raise LedgerError(f"{where}: evidence must be a mapping with cell, source and kind")
    extra = set(ev) - EVIDENCE_KEYS
    if extra:
        raise LedgerError(f"{where}: unknown evidence key(s) {', '.join(sorted(map(str, extra)))}")
    section = item.get("section")
    return Entry(
        id=cid,
        section="" if section is None else str(section),
        verdict=str(item.get("verdict", "")),
        fact=_text(item.get("fact")),
        cells=_as_tuple(ev.get("cell"), "cell", where),
        sources=_as_tuple(ev.get("source"), "source", where),
        kinds=_as_tuple(ev.get("kind"), "kind", where),
        claim=_text(item.get("claim")),
        origin=where.split()[0],
    )


def load(path_or_text, origin: str | None = None) -> list[Entry]:
    """Load a ledger (a path, or YAML text) as a list of entries."""
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text
                                          and path_or_text.endswith((".yml", ".yaml"))):
        path = Path(path_or_text)
        if not path.exists():
            raise LedgerError(f"ledger not found: {path}")
        text, origin = path.read_text(encoding="utf-8"), origin or path.name
    else:
        text, origin = path_or_text, origin or "ledger"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise LedgerError(f"{origin}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise LedgerError(f"{origin}: a ledger is a YAML list of entries, got {type(data).__name__}")
    return [entry_from_dict(item, origin) for item in data]


def _code_only(source: str) -> str:
    # IPython magics and shell escapes are not Python; blank them so ast can parse the rest.
    return "\n".join("" if l.lstrip().startswith(("%", "!")) else l for l in source.splitlines())


def has_assert(source: str) -> bool:
    """True when the cell's code contains an ``assert`` statement (comments and strings do not count)."""
    try:
        tree = ast.parse(_code_only(source))
    except SyntaxError:
        return False
    return any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def _read_notebook(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LedgerError(f"cannot read notebook {path.name}: {exc}") from None


def tagged_cells(notebook: Path | str | dict, tag: str) -> list[str]:
    """Sources of the code cells of ``notebook`` whose metadata tags include ``tag``."""
    nb = notebook if isinstance(notebook, dict) else _read_notebook(Path(notebook))
    out = []
    for cell in nb.get("cells", []):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") == "code" and tag in tags:
            src = cell.get("source", "")
            out.append("".join(src) if isinstance(src, list) else src)
    return out


def source_ok(source: str) -> bool:
    """A source names ``owner/repo path`` or a manual/paper and its section."""
    return bool(REPO_SOURCE_RE.match(source) or MANUAL_SOURCE_RE.match(source))


def validate(entries: list[Entry], repo: Path | str = REPO, *, ids: list[str] | None = None,
             check_cells: bool = True) -> list[str]:
    """Every problem with the ledger, one line each; an empty list means it is sound.

    Checks: IDs unique and numbered without gaps from C01 in ID order (or exactly ``ids``, when given);
    sections in the article's order; a claim paraphrase in English; verdicts among VERDICTS; a fact;
    a cell or a source; evidence kinds among KINDS, and a cell wherever a kind says something was run;
    each cell ``<notebook>#claim-<id>`` exists, carries that tag and asserts; each source names a repository
    and path, or a manual and section.
    """
    repo = Path(repo)
    problems = []
    counts = Counter(e.id for e in entries)
    present = sorted(counts, key=id_key)
    expected = list(ids) if ids is not None else [f"C{i:02d}" for i in range(1, id_key(present[-1]) + 1)] \
        if present else []
    problems += [f"{cid}: missing from the ledger" for cid in expected if cid not in counts]
    problems += [f"{cid}: not an expected claim ID" for cid in present if cid not in expected]
    problems += [f"{cid}: appears {n} times" for cid, n in sorted(counts.items()) if n > 1]
    order = [e.id for e in entries]
    if order != sorted(order, key=id_key):
        problems.append("entries are not in ID order")
    previous = None
    for e in sorted(entries, key=lambda e: id_key(e.id)):
        if not e.section.strip():
            problems.append(f"{e.id}: no section of the article")
            continue
        if previous is not None and _section_key(e.section) < _section_key(previous.section):
            problems.append(f"{e.id}: section {e.section} comes before {previous.id}'s {previous.section}; "
                            "IDs follow the article's order")
        previous = e
    notebooks: dict[Path, dict | str] = {}
    for e in entries:
        if not e.claim:
            problems.append(f"{e.id}: no claim (the article's statement, paraphrased)")
        elif CJK_RE.search(e.claim):
            problems.append(f"{e.id}: the claim must be an English paraphrase, not the article's own words")
        if e.verdict not in VERDICTS:
            problems.append(f"{e.id}: verdict {e.verdict!r} is not one of {', '.join(VERDICTS)}")
        if not e.fact.strip():
            problems.append(f"{e.id}: no fact")
        if not e.cells and not e.sources:
            problems.append(f"{e.id}: evidence needs a cell, a source, or both")
        if not e.kinds:
            problems.append(f"{e.id}: evidence needs a kind ({', '.join(KINDS)})")
        for k in e.kinds:
            if k not in KINDS:
                problems.append(f"{e.id}: evidence kind {k!r} is not one of {', '.join(KINDS)}")
            elif k in RUN_KINDS and not e.cells:
                problems.append(f"{e.id}: evidence kind {k!r} needs a cell that runs it")
        if len(set(e.kinds)) != len(e.kinds):
            problems.append(f"{e.id}: evidence kind listed twice")
        for s in e.sources:
            for part in s.split(";"):
                if not source_ok(part.strip()):
                    problems.append(f"{e.id}: source {part.strip()!r} names neither 'owner/repo path' "
                                    "nor a manual/paper and section")
        for c in e.cells:
            m = CELL_RE.match(c)
            if not m:
                problems.append(f"{e.id}: cell {c!r} is not of the form chapters/NN_x.ipynb#claim-{e.id}")
                continue
            if m["tag"] != f"claim-{e.id}":
                problems.append(f"{e.id}: cell anchor {m['tag']} does not match the entry's id")
                continue
            if not check_cells:
                continue
            nb_path = repo / m["nb"]
            if nb_path not in notebooks:
                try:
                    notebooks[nb_path] = (_read_notebook(nb_path) if nb_path.exists()
                                          else f"notebook {m['nb']} does not exist")
                except LedgerError as exc:
                    notebooks[nb_path] = str(exc)
            nb = notebooks[nb_path]
            if isinstance(nb, str):
                problems.append(f"{e.id}: {nb}")
                continue
            sources = tagged_cells(nb, m["tag"])
            if not sources:
                problems.append(f"{e.id}: no code cell tagged {m['tag']} in {m['nb']}")
            elif not any(has_assert(s) for s in sources):
                problems.append(f"{e.id}: the cell tagged {m['tag']} in {m['nb']} has no assert")
    return problems


def section_number(section: str) -> str:
    """The article section without qualifiers: "3.2 (table)" -> "3.2", "1 (table)" -> "1"."""
    m = re.match(r"\d+(\.\d+)*", section.strip())
    return m.group(0) if m else section.strip()


def by_section(entries: list[Entry], normalize: bool = True) -> dict[str, dict[str, int]]:
    """{section: {verdict: count}} with sections in book order ("1", "2.1", ..., "5")."""
    out: dict[str, dict[str, int]] = {}
    for e in sorted(entries, key=lambda e: _section_key(e.section)):
        key = section_number(e.section) if normalize else e.section
        out.setdefault(key, {v: 0 for v in VERDICTS})
        if e.verdict in VERDICTS:
            out[key][e.verdict] += 1
    return out


def _section_key(section: str):
    nums = re.findall(r"\d+", section)
    return tuple(int(n) for n in nums) or (999,)


def chapter_of(section: str) -> str:
    """The article's chapter of a section: "3.2 (table)" -> "3"."""
    m = re.match(r"\d+", section)
    return m.group(0) if m else section


def verdict_counts(entries: list[Entry]) -> dict[str, int]:
    c = Counter(e.verdict for e in entries)
    return {v: c.get(v, 0) for v in VERDICTS}


def strongest_kind(entry: Entry) -> str:
    """The entry's kind that comes first in KINDS (a real kernel before QEMU ... before a source read)."""
    known = [k for k in KINDS if k in entry.kinds]
    if not known:
        raise LedgerError(f"{entry.id}: no known evidence kind in {list(entry.kinds)}")
    return known[0]


def by_kind(entries: list[Entry], strongest: bool = False) -> dict[str, dict[str, int]]:
    """{kind: {verdict: count}} for every kind in KINDS. A claim counts under each of its kinds, or, with
    ``strongest=True``, only under its strongest one (then the counts add up to the number of claims)."""
    out = {k: {v: 0 for v in VERDICTS} for k in KINDS}
    for e in entries:
        for k in ([strongest_kind(e)] if strongest else e.kinds):
            if k in out and e.verdict in VERDICTS:
                out[k][e.verdict] += 1
    return out


# Three columns, in per cent of the notebook's width, each holding running text, so that none is so narrow that
# a short word (an ID, a verdict) has to break: the claim with its ID and section; the verdict with the fact;
# the evidence kind, cells and sources.
HTML_COLUMNS = (("claim (paraphrased)", 30), ("verdict: the fact", 44), ("evidence", 26))
# Only properties and values that JupyterLab's output sanitizer keeps (it drops e.g. overflow-wrap:anywhere).
_CELL_STYLE = "text-align:left; vertical-align:top; white-space:normal; overflow-wrap:break-word"
_CODE_STYLE = "white-space:normal; overflow-wrap:break-word"


def evidence_link(cell: str, from_dir: str = "chapters") -> str:
    """An HTML link from a notebook in ``from_dir`` to the evidence cell ``chapters/x.ipynb#claim-Cnn``."""
    m = CELL_RE.match(cell)
    if not m:
        return html.escape(cell)
    target = Path(m["nb"])
    rel = target.name if str(target.parent) == from_dir else "../" + str(target)
    return f'<a href="{html.escape(rel)}#{m["tag"]}">{html.escape(target.stem)}</a>'


def html_table(entries: list[Entry], from_dir: str = "chapters") -> str:
    """The ledger as an HTML table that fits the page: fixed layout at 100% width, the columns of
    HTML_COLUMNS, and cells that wrap (long source paths included), so no row can widen the page; MathJax
    skips it (``mathjax_ignore``), so a ``$`` in an entry stays a dollar sign."""
    head = "".join(f'<col style="width:{w}%">' for _name, w in HTML_COLUMNS)
    th = "".join(f'<th style="{_CELL_STYLE}">{html.escape(name)}</th>' for name, _w in HTML_COLUMNS)
    rows = []
    for e in entries:
        claim = f"<b>{e.id}</b> (article §{html.escape(e.section)})<br>{html.escape(e.claim)}"
        fact = f"<b>{html.escape(e.verdict)}</b>: {html.escape(e.fact)}"
        ev = [f"<i>{html.escape(', '.join(e.kinds))}</i>"] + [evidence_link(c, from_dir) for c in e.cells]
        ev += [f'<code style="{_CODE_STYLE}">{html.escape(s)}</code>' for s in e.sources]
        rows.append(f'<tr id="ledger-{e.id}">' + "".join(f'<td style="{_CELL_STYLE}">{c}</td>'
                                                          for c in (claim, fact, "<br>".join(ev))) + "</tr>")
    # AT&T operands such as `int $0x80` would read as TeX delimiters: MathJax must leave the table alone
    return (f'<table class="mathjax_ignore tex2jax_ignore" style="table-layout:fixed; width:100%; max-width:100%">'
            f"<colgroup>{head}</colgroup><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


# ---- writing -----------------------------------------------------------------------------------------------
_PLAIN_RE = re.compile(r"^[A-Za-z0-9_./(][^\n\"'{}\[\]&*!|>%@`\\]*$")


def _scalar(value: str) -> str:
    """A YAML scalar for ``value``: plain when safe, else a JSON (double-quoted) string, which YAML reads."""
    if (_PLAIN_RE.match(value) and value == value.strip() and ": " not in value and " #" not in value
            and not value.endswith(":") and "," not in value):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def _folded(key: str, text: str, width: int) -> list[str]:
    text = " ".join(text.split())
    if not text:
        return [f'  {key}: ""']
    return [f"  {key}: >-"] + textwrap.wrap(text, width=width, initial_indent="    ", subsequent_indent="    ",
                                            break_long_words=False, break_on_hyphens=False)


def dump(entries: list[Entry], width: int = 100) -> str:
    """The ledger as YAML text in the format of this module's docstring; ``load(dump(x))`` gives ``x`` back."""
    lines = []
    for e in entries:
        lines.append(f"- id: {e.id}")
        lines.append(f"  section: {json.dumps(e.section, ensure_ascii=False)}")
        lines += _folded("claim", e.claim, width)
        lines.append(f"  verdict: {_scalar(e.verdict)}")
        lines += _folded("fact", e.fact, width)
        lines.append("  evidence:")
        for key, values in (("cell", e.cells), ("source", e.sources), ("kind", e.kinds)):
            if len(values) == 1:
                lines.append(f"    {key}: {_scalar(values[0])}")
            elif values:
                lines.append(f"    {key}:")
                lines += [f"      - {_scalar(v)}" for v in values]
        if not e.cells and not e.sources and not e.kinds:
            lines[-1] = "  evidence: {}"
    return "\n".join(lines) + "\n"


def merge(staging_dir: Path | str, ids: list[str] | None = None, *, allow_missing: bool = False) -> str:
    """Merge every ``*.yml`` under ``staging_dir`` into one ledger, in ID order.

    Each ID of ``ids`` (default: the IDs of the book's ledger, ``chapters/claims.yml``) must appear exactly
    once across all files, and no other ID may appear; otherwise LedgerError names the problem
    (``allow_missing`` tolerates absent IDs only, for a preview while entries are still being written).
    """
    staging = Path(staging_dir)
    if not staging.is_dir():
        raise LedgerError(f"staging folder not found: {staging}")
    known = set(ids) if ids is not None else {e.id for e in load(LEDGER)}
    seen: dict[str, Entry] = {}
    for path in sorted(staging.glob("*.y*ml")):
        for e in load(path):
            if e.id in seen:
                raise LedgerError(f"{e.id} appears in both {seen[e.id].origin} and {path.name}")
            if e.id not in known:
                raise LedgerError(f"{path.name}: {e.id} is not an ID of the ledger")
            seen[e.id] = e
    missing = sorted(known - set(seen), key=id_key)
    if missing and not allow_missing:
        raise LedgerError(f"{len(missing)} claim(s) have no entry yet: {', '.join(missing)}")
    return dump([seen[cid] for cid in sorted(seen, key=id_key)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m helpers.ledger check [LEDGER]\n"
             "       python -m helpers.ledger merge STAGING_DIR [--allow-missing]")
    try:
        if argv[:1] == ["merge"] and len(argv) >= 2:
            sys.stdout.write(merge(argv[1], allow_missing="--allow-missing" in argv[2:]))
            return 0
        if argv[:1] == ["check"] and len(argv) <= 2:
            path = Path(argv[1]) if len(argv) > 1 else LEDGER
            entries = load(path)
            problems = validate(entries, REPO)
            for p in problems:
                print(p)
            print(f"{len(entries)} entries, {len(problems)} problem(s)")
            return 1 if problems else 0
    except LedgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
