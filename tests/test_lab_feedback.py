"""What a student sees when an answer is wrong (issue 12 §7), for every lab's checker over many seeds: one line
of feedback that names what is wrong, never the correct value, and never more than ECHO_LIMIT characters of the
student's own answer; in the lab notebooks, each question says which ``answers[...]`` keys it expects, and the
lab's header and labs/README.md give the same time for it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import labs
from helpers.labs.common import ECHO_LIMIT, answer_forms, format_answer

REPO = Path(__file__).resolve().parent.parent
LABS = labs.labs()
SEEDS = range(0, 40, 3)
# A word that a lab's own vocabulary puts in many messages (e.g. "no answer"), so not evidence of a leak alone.
SHORT = 2


def wrong_answers(q) -> list:
    """Plausible slips for question ``q``: near misses of the key, every other choice, reordered lists."""
    k, a = q.kind, q.answer
    if k == "int":
        return [a + 1, a - 1, a + 8, a * 2 + 16, -1 if a != -1 else 0]
    if k == "hex":
        top = 16 ** q.width if q.width else 1 << 64
        return sorted({(a ^ 1) % top, (a + 0x10) % top, (a ^ 0x80) % top, 0, (a >> 4) % top} - {a})
    if k == "bytes":
        out = []
        for i in range(len(a)):
            b = bytearray(a)
            b[i] ^= 0x01
            out.append(bytes(b))
        return out + [a[::-1]] if a[::-1] != a else out
    if k == "choice":
        return [c for c in q.choices if c.lower() != str(a).lower()]
    if k == "list":
        a = list(a)
        outs = [a[::-1], a[1:], a + a[-1:], a[:1] * len(a)]
        return [o for o in outs if o and o != a]
    return [str(a) + "x", "%ebp", "0(%esp)", "12(%esp)", "nowhere"]


def reveals(message: str, q, wrong) -> str | None:
    """The form of ``q``'s key that ``message`` states, if any (after removing the student's own answer)."""
    text = message.lower()
    for shown in sorted({str(wrong), repr(wrong), format_answer(q.kind, wrong, q.width, q.item_kind)
                         if not isinstance(wrong, str) or q.kind in ("str", "choice") else wrong}, key=len, reverse=True):
        text = text.replace(shown.lower(), " ")
    forms = answer_forms(q.kind, q.answer, q.width, q.item_kind)
    if q.kind == "bytes" and isinstance(wrong, bytes) and len(wrong) == len(q.answer):   # part of the key:
        forms += [f"{q.answer[i]:#04x}" for i in range(len(wrong)) if wrong[i] != q.answer[i]]  # a byte it fixes
    for form in forms:
        f = re.escape(form.lower())
        if len(form) > SHORT:       # a token of its own: not a piece of a longer word or number
            pattern = rf"(?<![\w%#(.:+-]){f}(?![\w)%:])"
        else:                       # a short number or word: only where a sentence states it as the value
            pattern = rf"\b(?:is|are|be|here|equals?|=|answer|should be)\s*:?\s*{f}(?![\w.:x])"
        if re.search(pattern, text):
            return form
    return None


def cases():
    for name, module in LABS.items():
        for seed in SEEDS:
            yield pytest.param(name, seed, id=f"{name}-{seed}")


@pytest.mark.parametrize("name, seed", list(cases()))
def test_wrong_answers_get_one_line_feedback_that_keeps_the_key(name, seed):
    module = LABS[name]
    problem = module.generate(seed)
    key = problem.key()
    checked = 0
    for q in problem.questions:
        for wrong in wrong_answers(q):
            fb = {f.question: f for f in module.check(problem, {**key, q.id: wrong})}[q.id]
            if fb.ok:               # a slip that happens to be right too (e.g. a list with a repeated item)
                continue
            checked += 1
            assert fb.message and "\n" not in fb.message and "Traceback" not in fb.message, fb.message
            leak = reveals(fb.message, q, wrong)
            assert leak is None, f"{name} seed {seed} {q.id}={wrong!r}: feedback states the key {leak!r}: {fb.message}"
    assert checked >= len(problem.questions)


@pytest.mark.parametrize("name", LABS)
def test_long_answers_are_not_echoed(name):
    module = LABS[name]
    problem = module.generate(11)
    junk = {"str": "%" + "e" * 3000, "choice": "trap" * 1000, "int": "9" * 3000, "hex": "f" * 3000,
            "bytes": "ab " * 1000, "list": ", ".join(["main"] * 800)}
    for q in problem.questions:
        fb = {f.question: f for f in module.check(problem, {**problem.key(), q.id: junk[q.kind]})}[q.id]
        assert not fb.ok and "\n" not in fb.message and len(fb.message) <= 400, (q.id, fb.message)
        longest = max((len(m) for m in re.findall(r"(?:e{10,}|(?:trap){3,}|9{10,}|f{10,}|(?:ab ){3,}|(?:main, ){3,})",
                                                  fb.message)), default=0)
        assert longest <= ECHO_LIMIT, (q.id, fb.message)


# ---- the lab notebooks ----------------------------------------------------------------------------------------
def _cells(name: str) -> list[dict]:
    return json.loads((REPO / "labs" / name / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]


def _src(cell) -> str:
    return "".join(cell["source"])


def _names_key(markdown: str, qid: str) -> bool:
    if f'answers["{qid}"]' in markdown:
        return True
    m = re.fullmatch(r"([a-z_]+?)(\d+)", qid)      # per-seed families such as a_arg0, a_arg3: answers["a_argK"]
    return bool(m) and re.search(rf'answers\["{m.group(1)}[A-Z]"\]', markdown) is not None


@pytest.mark.parametrize("name", LABS)
def test_each_question_names_the_answers_keys_it_expects(name):
    cells = _cells(name)
    seeds = {int(re.search(r"SEED\s*=\s*(\d+)", _src(c)).group(1)) for c in cells
             if c["cell_type"] == "code" and re.search(r"^SEED\s*=", _src(c), re.M)}
    ids = {qid for s in [*seeds, *SEEDS] for qid in LABS[name].generate(s).ids()}
    for qid in sorted(ids):
        # the test cell that grades qid (directly, or a loop over a family such as a_arg*)
        family = re.sub(r"\d+$", "", qid)
        at = next((i for i, c in enumerate(cells) if c["cell_type"] == "code" and "expect(" in _src(c)
                   and (f'"{qid}"' in _src(c) or f'startswith("{family}")' in _src(c))), None)
        assert at is not None, f"{name}: no check cell grades {qid}"
        before = [_src(c) for c in cells[:at] if c["cell_type"] == "markdown"]
        assert before and _names_key(before[-1], qid), \
            f"{name}: the question before the check cell of {qid} does not name answers[\"{qid}\"]"


def _readme_minutes() -> dict[str, int]:
    rows = re.findall(r"^\| \[`(\w+)`\]\([^)]*\) \|.*\| (\d+) min \|$", (REPO / "labs" / "README.md").read_text(),
                      re.M)
    return {lab: int(minutes) for lab, minutes in rows}


@pytest.mark.parametrize("name", LABS)
def test_lab_header_and_the_guide_agree_on_the_time(name):
    header = _src(_cells(name)[0])
    m = re.search(r"About (\d+) minutes", header)
    assert m, f"{name}: the header gives no time ('About N minutes')"
    guide = _readme_minutes()
    assert name in guide, f"labs/README.md's table has no time for {name}"
    assert int(m.group(1)) == guide[name], f"{name}: header says {m.group(1)} min, labs/README.md {guide[name]} min"
