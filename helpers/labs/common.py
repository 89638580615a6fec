"""The shape every lab shares: a seeded :class:`Problem`, its :class:`Question` s, and the checker's :class:`Feedback`.

Serves the book's labs (``labs/<lab>/<lab>.ipynb``) and the classroom pipeline (issue 7). The design follows
ostep-homework's simulators: a seed makes a problem, ``-c`` computes the answer, and the parameters are printed
first so the output explains itself.

A lab module ``helpers/labs/<lab>.py`` defines::

    NAME = "idt"; TITLE = "..."; CHAPTER = "chapters/03_interrupts.ipynb"
    def generate(seed: int) -> Problem      # random.Random(seed) only (see rng())
    def check(problem, answers: dict) -> list[Feedback]

Determinism: a problem must be the same on every Python version and platform. Use :func:`rng` (a
``random.Random(seed)``) and only its integer methods (``randrange``, ``randint``, ``choice``, ``shuffle``,
``sample`` of a list, ``getrandbits``); never ``hash()``, set iteration order, or printed floats.

Answers are what a student types in a notebook, so they may arrive as Python values (``0x8e00``,
``b"\\x8e"``, ``["main", "f"]``) or as text (``"8e00"``, ``"8e 00"``, ``"main, f"``). :func:`parse_answer`
turns either into the canonical value, or raises ``ValueError`` with a one-line message meant for a student.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

KINDS = ("int", "hex", "bytes", "str", "choice", "list")


class NoAnswer(ValueError):
    """The student has not answered yet (the cell still says ``raise NotImplementedError()``, or the value is None)."""


# --------------------------------------------------------------------------------------------------- data


@dataclass
class Question:
    """One thing the student must work out.

    ``answer`` is the key, already in canonical form for ``kind`` (int for "int"/"hex", bytes for "bytes",
    str for "str"/"choice", list for "list"). Optional: ``choices`` for "choice"; ``width`` = the number of
    hex digits ("hex") or bytes ("bytes") the answer has; ``item_kind`` = the kind of each element of a "list".
    """

    id: str
    prompt: str
    answer: object
    kind: str = "str"
    choices: tuple | None = None
    width: int | None = None
    item_kind: str = "str"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"question {self.id!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"question {self.id!r}: a 'choice' question needs choices")
            self.choices = tuple(str(c) for c in self.choices)

    def parse(self, raw) -> object:
        """The student's ``raw`` answer in canonical form, or ValueError with a one-line message."""
        return parse_answer(self.kind, raw, width=self.width, choices=self.choices, item_kind=self.item_kind)

    def matches(self, value) -> bool:
        """True when an already-parsed value equals the key."""
        return _norm(self.kind, value, self.item_kind) == _norm(self.kind, self.answer, self.item_kind)

    def answer_text(self) -> str:
        """The key as one line of text, the way the CLI prints it."""
        return format_answer(self.kind, self.answer, width=self.width, item_kind=self.item_kind)


@dataclass
class Problem:
    """A generated problem: which lab, which seed, the parameters it was made from, and its questions."""

    lab: str
    seed: int
    params: dict
    questions: list = field(default_factory=list)
    title: str = ""

    def question(self, qid: str) -> Question:
        for q in self.questions:
            if q.id == qid:
                return q
        raise KeyError(f"{self.lab} has no question {qid!r}; its questions are {', '.join(self.ids())}")

    def ids(self) -> list[str]:
        return [q.id for q in self.questions]

    def key(self) -> dict:
        """The answer key: {question id: answer}. Pass it to ``check`` and every question is right."""
        return {q.id: q.answer for q in self.questions}

    def text(self, answers: bool = False) -> str:
        """Plain text, parameters first (ostep-homework style); with ``answers=True`` each question's key follows it."""
        head = f"{self.lab}: {self.title}" if self.title else self.lab
        lines = [head, "", "Parameters:", f"  seed = {self.seed}"]
        for name, value in self.params.items():
            shown = format_param(value)
            if "\n" in shown:
                lines.append(f"  {name} =")
                lines.extend("    " + row for row in shown.splitlines())
            else:
                lines.append(f"  {name} = {shown}")
        lines += ["", "Questions:"]
        for q in self.questions:
            prompt = q.prompt.strip().splitlines() or [""]
            lines.append(f"  {q.id}. {prompt[0]}")
            lines.extend("      " + row for row in prompt[1:])
            if q.kind == "choice":
                lines.append(f"      (one of: {', '.join(q.choices)})")
            if answers:
                lines.append(f"      answer: {q.answer_text()}")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.text()


@dataclass
class Feedback:
    """The checker's verdict on one question. ``message`` is written for the student: it names what is wrong and why."""

    question: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok   ' if self.ok else 'WRONG'} {self.question}: {self.message}"

    def __str__(self) -> str:
        return self.line()


# ----------------------------------------------------------------------------------------------- seeding


def rng(seed) -> random.Random:
    """``random.Random(seed)`` for a non-negative int seed (Random treats -5 like 5, so negatives are refused)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"the seed must be a whole number such as 7 or 20231234, not {seed!r}")
    if seed < 0:
        raise ValueError(f"the seed must be 0 or more, not {seed}")
    return random.Random(seed)


# ------------------------------------------------------------------------------------------ formatting


def format_param(value) -> str:
    """A parameter value as deterministic text (lists joined by ', ', dicts in insertion order)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return format_answer("bytes", bytes(value))
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_param(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_param(v) for v in value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip repr: the same on every platform
    return str(value)


def format_answer(kind: str, value, width: int | None = None, item_kind: str = "str") -> str:
    """Canonical one-line text for an answer of ``kind`` (the form the CLI prints and parse_answer accepts)."""
    if kind == "int":
        return str(value)
    if kind == "hex":
        digits = f"{value:x}"
        if width:
            digits = digits.rjust(width, "0")
        return "0x" + digits
    if kind == "bytes":
        return " ".join(f"{b:02x}" for b in bytes(value))
    if kind == "list":
        return ", ".join(format_answer(item_kind, v) for v in value)
    return str(value)


def answer_forms(kind: str, value, width: int | None = None, item_kind: str = "str") -> list[str]:
    """Every common way to write this answer down. The classroom tests search student notebooks for them."""
    forms: list[str] = []
    if kind == "int":
        forms = [str(value), hex(value)]
    elif kind == "hex":
        forms = [format_answer("hex", value, width), hex(value), f"{value:x}", f"{value:X}"]
    elif kind == "bytes":
        b = bytes(value)
        forms = [format_answer("bytes", b), b.hex(), repr(b), "".join(f"\\x{x:02x}" for x in b),
                 ", ".join(f"0x{x:02x}" for x in b)]
    elif kind == "list":
        items = [format_answer(item_kind, v) for v in value]
        forms = [", ".join(items), ",".join(items), " -> ".join(items), repr(list(value)),
                 "[" + ", ".join(f'"{i}"' for i in items) + "]"]
    else:
        forms = [str(value)]
    out: list[str] = []
    for f in forms:
        if f not in out:
            out.append(f)
    return out


# ---------------------------------------------------------------------------------------------- parsing

_NUM = re.compile(r"[+-]?(0x[0-9a-f_]+|0b[01_]+|0o[0-7_]+|[0-9][0-9_]*)")
_HEXDIGITS = set("0123456789abcdef")


def _show(raw) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _no_answer(raw) -> bool:
    return raw is None or raw is Ellipsis or (isinstance(raw, str) and not raw.strip())


MAX_WIDTH = 4096  # hex digits or bytes: far beyond any field a lab asks about, and 16 ** width stays cheap


def parse_answer(kind: str, raw, *, width: int | None = None, choices: Iterable | None = None,
                 item_kind: str = "str"):
    """Parse a student's answer of ``kind``; raise ValueError with a one-line, student-friendly message.

    int    -> int   from 42, "42", "-3", "0x2a", "1_000"
    hex    -> int   from 0x8e00, "0x8e00", "8e00", "8E00h"; ``width`` = at most that many hex digits
    bytes  -> bytes from b"\\x8e\\x00", [0x8e, 0], "8e 00", "8e00", "0x8e, 0x00", "\\x8e\\x00"; ``width`` = exact byte count
    str    -> str   stripped
    choice -> str   one of ``choices`` (case-insensitive), returned as spelled in ``choices``
    list   -> list  from a list/tuple or "a, b, c" / "a -> b -> c"; each item parsed as ``item_kind``
    """
    if kind not in KINDS:
        raise ValueError(f"unknown answer kind {kind!r} (one of {', '.join(KINDS)})")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or not 0 < width <= MAX_WIDTH):
        raise ValueError(f"width must be a whole number from 1 to {MAX_WIDTH}, not {repr(width)[:40]}")
    if _no_answer(raw):
        raise NoAnswer("no answer yet: replace the placeholder with your answer")
    if kind == "int":
        return _parse_int(raw)
    if kind == "hex":
        return _parse_hex(raw, width)
    if kind == "bytes":
        return _parse_bytes(raw, width)
    if kind == "str":
        if not isinstance(raw, str):
            raise ValueError(f"expected text (in quotes, like \"rax\"), got {_show(raw)}")
        return raw.strip()
    if kind == "choice":
        options = [str(c) for c in (choices or ())]
        if not isinstance(raw, str):
            raise ValueError(f"expected one of {', '.join(options)} (as text, in quotes), got {_show(raw)}")
        for option in options:
            if raw.strip().lower() == option.lower():
                return option
        raise ValueError(f"{raw.strip()!r} is not one of the choices: {', '.join(options)}")
    return _parse_list(raw, item_kind)


def _parse_int(raw) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected a whole number such as 42, got {raw}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if raw.is_integer():
            return int(raw)
        if raw != raw or raw in (float("inf"), float("-inf")):
            raise ValueError(f"expected a whole number, got {raw!r}")
        raise ValueError(f"expected a whole number, got {raw!r} (it has a fractional part)")
    if not isinstance(raw, str):
        raise ValueError(f"expected a whole number such as 42 or 0x2a, got {_show(raw)}")
    text = raw.strip().lower().replace(" ", "")
    if not _NUM.fullmatch(text):
        raise ValueError(f"expected a whole number such as 42 or 0x2a, got {_show(raw)}")
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    base = {"0x": 16, "0b": 2, "0o": 8}.get(text[:2], 10)
    digits = text[2:] if base != 10 else text
    try:
        return sign * int(digits, base)
    except ValueError:  # e.g. "0x" or "1__0"
        raise ValueError(f"expected a whole number such as 42 or 0x2a, got {_show(raw)}") from None


def _parse_hex(raw, width) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected a hex number such as 0x8e00, got {raw}")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip().lower().replace("_", "").replace(" ", "")
        if text.startswith("0x"):
            text = text[2:]
        elif text.endswith("h"):  # Intel manuals write 8E00H
            text = text[:-1]
        if not text:
            raise ValueError(f"expected hex digits after 0x, got {_show(raw)}")
        bad = sorted(set(text) - _HEXDIGITS)
        if bad:
            raise ValueError(f"{bad[0]!r} is not a hex digit (0-9, a-f) in {_show(raw)}")
        value = int(text, 16)
    else:
        raise ValueError(f"expected a hex number such as 0x8e00, got {_show(raw)}")
    if value < 0:
        raise ValueError(f"expected a non-negative hex number, got {value}")
    if width is not None and value >= 16 ** width:
        raise ValueError(f"0x{value:x} has {len(f'{value:x}')} hex digits; this field has only {width} "
                         f"({width * 4} bits)")
    return value


def _parse_bytes(raw, width) -> bytes:
    if isinstance(raw, (bytes, bytearray)):
        value = bytes(raw)
    elif isinstance(raw, (list, tuple)):
        out = []
        for i, item in enumerate(raw):
            if isinstance(item, bool) or not isinstance(item, int):
                raise ValueError(f"byte {i} is {_show(item)}; each byte must be a number 0..255 such as 0x8e")
            if not 0 <= item <= 255:
                raise ValueError(f"byte {i} is {item}; a byte must be 0..255 (0x00..0xff)")
            out.append(item)
        value = bytes(out)
    elif isinstance(raw, str):
        text = raw.strip().lower()
        for sep in ("0x", "\\x", ",", ":", " ", "\n", "\t", "[", "]"):
            text = text.replace(sep, "")
        bad = sorted(set(text) - _HEXDIGITS)
        if bad:
            raise ValueError(f"{bad[0]!r} is not a hex digit (0-9, a-f) in {_show(raw)}")
        if len(text) % 2:
            raise ValueError(f"{_show(raw)} has an odd number of hex digits ({len(text)}): "
                             f"each byte needs two, e.g. 0e not e")
        value = bytes.fromhex(text)
    else:
        raise ValueError(f"expected bytes such as \"8e 00 10 00\" or b\"\\x8e\\x00\", got {_show(raw)}")
    if width is not None and len(value) != width:
        raise ValueError(f"expected {width} bytes, got {len(value)}")
    return value


def _parse_list(raw, item_kind) -> list:
    if isinstance(raw, str):
        text = raw.strip().strip("[]")
        parts = re.split(r"\s*(?:->|,|;|\n)\s*", text) if text else []
        items = [p.strip().strip("'\"") for p in parts]
        items = [p for p in items if p]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise ValueError(f"expected a list such as [\"main\", \"f\"] or \"main, f\", got {_show(raw)}")
    if not items:
        raise NoAnswer("no answer yet: the list is empty")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse_answer(item_kind, item))
        except ValueError as e:
            raise ValueError(f"item {i + 1} of the list: {e}") from None
    return out


def _norm(kind, value, item_kind="str"):
    if kind in ("str", "choice"):
        return str(value).strip().lower()
    if kind == "list":
        return [_norm(item_kind, v) for v in value]
    if kind == "bytes":
        return bytes(value)
    return value


# ------------------------------------------------------------------------------------------- checking


ECHO_LIMIT = 60  # the most of a student's own answer that feedback repeats back
MESSAGE_LIMIT = 400  # a feedback line is a sentence, never a page


def echo(text, limit: int = ECHO_LIMIT) -> str:
    """A student's answer as feedback may quote it: one line, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _one_line(message: str, quoted: Iterable[str]) -> str:
    """``message`` on one line, with every long quotation of the student's answer cut down to ECHO_LIMIT."""
    message = " ".join(str(message).split())
    for text in sorted({" ".join(str(t).split()) for t in quoted}, key=len, reverse=True):
        if len(text) > ECHO_LIMIT and text in message:
            message = message.replace(text, echo(text))
    return message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT - 3] + "..."


def check_each(problem: Problem, answers: dict,
               explain: Callable[[Question, object], str] | None = None) -> list[Feedback]:
    """Feedback for every question of ``problem``, in order.

    Handles what every lab shares: a missing answer, an answer that does not parse (the parser's one-line
    message), and a right answer. For a well-formed wrong answer it calls ``explain(question, value)``, which
    must return a specific message (which field is wrong and why) that never states the key; without
    ``explain`` the message compares the value with what the question asked for, without giving the key away.
    Every message is one line and quotes at most ECHO_LIMIT characters of the student's answer.
    """
    if not isinstance(answers, dict):
        return [Feedback(q.id, False, f"answers must be a dict such as {{\"{q.id}\": ...}}, "
                                      f"not {type(answers).__name__}") for q in problem.questions]
    out = []
    for q in problem.questions:
        if q.id not in answers:
            out.append(Feedback(q.id, False, "no answer yet: set answers[" + repr(q.id) + "]"))
            continue
        raw = answers[q.id]
        try:
            value = q.parse(raw)
        except ValueError as e:
            out.append(Feedback(q.id, False, _one_line(str(e), [raw, repr(raw)])))
            continue
        shown = format_answer(q.kind, value, q.width, q.item_kind)
        if q.matches(value):
            out.append(Feedback(q.id, True, f"correct: {echo(shown, MESSAGE_LIMIT)}"))
            continue
        message = explain(q, value) if explain else ""
        if not message:
            message = f"{echo(shown)} is not right for: {q.prompt.strip().splitlines()[0]}"
        out.append(Feedback(q.id, False, _one_line(message, [raw, repr(raw), shown, repr(value), str(value)])))
    return out


class WrongAnswer(AssertionError):
    """A graded cell's failure. IPython shows only the checker's line (``_render_traceback_``), not a traceback
    into this module; nbgrader records it as the cell's error, so the cell earns no points."""

    def _render_traceback_(self) -> list[str]:
        return [f"WRONG {self}"]


def expect(feedback: list[Feedback], question: str) -> None:
    """For an autograded test cell: print the checker's line for a right answer; for a wrong one raise
    WrongAnswer, which shows as that one line (``WRONG <question>: <message>``) and fails the cell."""
    for fb in feedback:
        if fb.question == question:
            if not fb.ok:
                raise WrongAnswer(f"{question}: {fb.message}")
            print(fb.line())
            return
    raise WrongAnswer(f"{question}: the checker gave no feedback for this question")


def score(feedback: list[Feedback]) -> tuple[int, int]:
    """(questions right, questions asked)."""
    return sum(1 for fb in feedback if fb.ok), len(feedback)
