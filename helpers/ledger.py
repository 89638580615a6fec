"""ledger: the book's claims ledger (``chapters/claims.yml``) as data, its validator, and the staging merge.

Serves the whole book: every chapter checks claims from the article (IDs C01-C64, listed with the project's
own English paraphrases in ``../shared/claims.md``) and records a verdict here; chapter 5 draws the result and
``tests/test_claims.py`` keeps it honest. The format is the one ``shared/claims.md`` ("Ledger format") defines:

    - id: C32
      section: "3.1"
      verdict: partly            # holds | partly | wrong | fabricated | unverifiable
      fact: >-
        One or two sentences in the book's own words.
      evidence:
        cell: chapters/03_interrupts.ipynb#claim-C32
        source: torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)

API::

    shared_dir(repo)                   -> Path of ``shared/`` beside the checkout (``<repo>/../shared``)
    read_claims(claims_md)             -> [Claim(id, section, text)] from the table in ``claims.md``
    load(path_or_text)                 -> [Entry]; raises LedgerError (one line) on malformed YAML/entries
    validate(entries, claims, repo)    -> [problem, ...] (empty when the ledger is sound)
    tagged_cells(notebook, tag)        -> [cell source, ...] of code cells carrying ``tag``
    has_assert(source)                 -> whether a cell's code contains an ``assert`` statement
    by_section(entries)                -> {section: {verdict: count}} (sections normalised: "3.2 (table)" -> "3.2")
    markdown_table(entries, claims)    -> the ledger as a Markdown table with links to the evidence cells
    merge(staging_dir, claims)         -> the merged ledger as YAML text, every ID once, in ID order
    dump(entries)                      -> YAML text in the format above

Command line (for the lead)::

    python -m helpers.ledger merge /work/team/claims > chapters/claims.yml
    python -m helpers.ledger check [chapters/claims.yml]
"""
from __future__ import annotations

import ast
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
KEYS = {"id", "section", "verdict", "fact", "evidence"}
EVIDENCE_KEYS = {"cell", "source"}

ID_RE = re.compile(r"^C\d{2}$")
# "owner/repo path ..." e.g. "torvalds/linux arch/x86/include/asm/desc_defs.h (struct gate_struct)"
REPO_SOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]* +[^\s;]+")
# "<manual> §section" or "<manual>, <section>", e.g. "ISO C11 §5.1.2.2.3", "GCC manual, x86 Function Attributes"
MANUAL_SOURCE_RE = re.compile(r"^\S.*(§ ?\S+|[Mm]anual, +\S.*|[Pp]aper, +\S.*)")
CELL_RE = re.compile(r"^(?P<nb>[^#\s]+\.ipynb)#(?P<tag>claim-C\d{2})$")


class LedgerError(ValueError):
    """The ledger or a staging file cannot be read as a ledger. The message is one line."""


@dataclass(frozen=True)
class Claim:
    """One row of ``shared/claims.md``: the article's claim in the project's own paraphrase."""

    id: str
    section: str
    text: str


@dataclass(frozen=True)
class Entry:
    """One ledger entry. ``cells`` and ``sources`` are tuples (the YAML may give one string or a list)."""

    id: str
    section: str
    verdict: str
    fact: str
    cells: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    origin: str = ""  # the file it came from, for messages

    def as_dict(self) -> dict:
        ev = {}
        if self.cells:
            ev["cell"] = self.cells[0] if len(self.cells) == 1 else list(self.cells)
        if self.sources:
            ev["source"] = self.sources[0] if len(self.sources) == 1 else list(self.sources)
        return {"id": self.id, "section": self.section, "verdict": self.verdict, "fact": self.fact, "evidence": ev}


def shared_dir(repo: Path | str = REPO) -> Path:
    """``shared/`` sits beside the checkout (``<X>/main`` and ``<X>/shared``), in CI as on the team's machine."""
    return (Path(repo) / ".." / "shared").resolve()


def id_key(cid: str) -> int:
    return int(cid[1:])


def read_claims(claims_md: Path | str | None = None) -> list[Claim]:
    """Parse the ``| ID | § | claim |`` table of ``shared/claims.md``."""
    path = Path(claims_md) if claims_md is not None else shared_dir() / "claims.md"
    if not path.exists():
        raise LedgerError(f"claims list not found: {path} (shared/ must sit beside the repository)")
    claims = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = [c.strip() for c in line.strip().strip("|").split("|", 2)]
        if len(cols) == 3 and ID_RE.match(cols[0]):
            claims.append(Claim(cols[0], cols[1], cols[2]))
    if not claims:
        raise LedgerError(f"no claim rows (| Cnn | § | claim |) found in {path}")
    return claims


def _as_tuple(value, what: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value.strip(),)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value)
    raise LedgerError(f"{where}: evidence.{what} must be a string or a list of strings")


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
        raise LedgerError(f"{where}: evidence must be a mapping with cell and/or source")
    extra = set(ev) - EVIDENCE_KEYS
    if extra:
        raise LedgerError(f"{where}: unknown evidence key(s) {', '.join(sorted(map(str, extra)))}")
    section = item.get("section")
    fact = item.get("fact")
    return Entry(
        id=cid,
        section="" if section is None else str(section),
        verdict=str(item.get("verdict", "")),
        fact=" ".join(str(fact).split()) if fact is not None else "",
        cells=_as_tuple(ev.get("cell"), "cell", where),
        sources=_as_tuple(ev.get("source"), "source", where),
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


def validate(entries: list[Entry], claims: list[Claim] | None, repo: Path | str = REPO, *,
             check_cells: bool = True) -> list[str]:
    """Every problem with the ledger, one line each; an empty list means it is sound.

    Checks: every ID of ``claims`` present exactly once and no unknown IDs; verdicts among VERDICTS; a fact;
    a cell or a source; each cell ``<notebook>#claim-<id>`` exists, carries that tag and asserts; each source
    names a repository and path, or a manual and section.
    """
    repo = Path(repo)
    problems = []
    counts = Counter(e.id for e in entries)
    if claims is not None:
        known = [c.id for c in claims]
        problems += [f"{cid}: missing from the ledger" for cid in known if cid not in counts]
        problems += [f"{cid}: not a claim in shared/claims.md" for cid in sorted(counts, key=id_key)
                     if cid not in known]
    problems += [f"{cid}: appears {n} times" for cid, n in sorted(counts.items()) if n > 1]
    notebooks: dict[Path, dict | str] = {}
    for e in entries:
        if e.verdict not in VERDICTS:
            problems.append(f"{e.id}: verdict {e.verdict!r} is not one of {', '.join(VERDICTS)}")
        if not e.fact.strip():
            problems.append(f"{e.id}: no fact")
        if not e.cells and not e.sources:
            problems.append(f"{e.id}: evidence needs a cell, a source, or both")
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


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def evidence_link(cell: str, from_dir: str = "chapters") -> str:
    """A relative Markdown link from a notebook in ``from_dir`` to ``chapters/x.ipynb#claim-Cnn``."""
    m = CELL_RE.match(cell)
    if not m:
        return _md(cell)
    target = Path(m["nb"])
    rel = target.name if str(target.parent) == from_dir else "../" + str(target)
    return f"[{target.stem}]({rel}#{m['tag']})"


def markdown_table(entries: list[Entry], claims: list[Claim], from_dir: str = "chapters") -> str:
    """The ledger as a Markdown table: ID, section, the claim (claims.md's paraphrase), verdict, fact, evidence.

    Claims without an entry are listed as pending, so the table always shows every ID.
    """
    by_id = {e.id: e for e in entries}
    lines = ["| ID | § | claim (paraphrased) | verdict | fact | evidence |", "|---|---|---|---|---|---|"]
    for c in claims:
        e = by_id.get(c.id)
        if e is None:
            lines.append(f"| {c.id} | {_md(c.section)} | {_md(c.text)} | *pending* | | |")
            continue
        ev = [evidence_link(x, from_dir) for x in e.cells] + [f"`{_md(s)}`" for s in e.sources]
        lines.append(f"| {c.id} | {_md(e.section)} | {_md(c.text)} | **{e.verdict}** | {_md(e.fact)} | "
                     f"{'<br>'.join(ev)} |")
    return "\n".join(lines)


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


def dump(entries: list[Entry], width: int = 100) -> str:
    """The ledger as YAML text in the format of ``shared/claims.md``; ``load(dump(x))`` gives ``x`` back."""
    lines = []
    for e in entries:
        lines.append(f"- id: {e.id}")
        lines.append(f"  section: {json.dumps(e.section, ensure_ascii=False)}")
        lines.append(f"  verdict: {_scalar(e.verdict)}")
        fact = " ".join(e.fact.split())
        if fact:
            lines.append("  fact: >-")
            lines += textwrap.wrap(fact, width=width, initial_indent="    ", subsequent_indent="    ",
                                   break_long_words=False, break_on_hyphens=False)
        else:
            lines.append('  fact: ""')
        lines.append("  evidence:")
        for key, values in (("cell", e.cells), ("source", e.sources)):
            if len(values) == 1:
                lines.append(f"    {key}: {_scalar(values[0])}")
            elif values:
                lines.append(f"    {key}:")
                lines += [f"      - {_scalar(v)}" for v in values]
        if not e.cells and not e.sources:
            lines[-1] = "  evidence: {}"
    return "\n".join(lines) + "\n"


def merge(staging_dir: Path | str, claims: list[Claim] | None = None, *, allow_missing: bool = False) -> str:
    """Merge every ``*.yml`` under ``staging_dir`` into one ledger, in ID order.

    Each ID of ``claims`` (default: ``shared/claims.md``) must appear exactly once across all files, and no
    other ID may appear; otherwise LedgerError names the problem (``allow_missing`` tolerates absent IDs only,
    for a preview while teammates are still writing).
    """
    staging = Path(staging_dir)
    if not staging.is_dir():
        raise LedgerError(f"staging folder not found: {staging}")
    claims = read_claims() if claims is None else claims
    known = {c.id for c in claims}
    seen: dict[str, Entry] = {}
    for path in sorted(staging.glob("*.y*ml")):
        for e in load(path):
            if e.id in seen:
                raise LedgerError(f"{e.id} appears in both {seen[e.id].origin} and {path.name}")
            if e.id not in known:
                raise LedgerError(f"{path.name}: {e.id} is not a claim in shared/claims.md")
            seen[e.id] = e
    missing = sorted(known - set(seen), key=id_key)
    if missing and not allow_missing:
        raise LedgerError(f"{len(missing)} claim(s) have no entry yet: {', '.join(missing)}")
    return dump([seen[cid] for cid in sorted(seen, key=id_key)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = ("usage: python -m helpers.ledger merge STAGING_DIR [--allow-missing]\n"
             "       python -m helpers.ledger check [LEDGER]")
    try:
        if argv[:1] == ["merge"] and len(argv) >= 2:
            sys.stdout.write(merge(argv[1], allow_missing="--allow-missing" in argv[2:]))
            return 0
        if argv[:1] == ["check"]:
            entries = load(Path(argv[1]) if len(argv) > 1 else LEDGER)
            problems = validate(entries, read_claims())
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
