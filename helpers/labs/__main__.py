"""``python -m helpers.labs <lab> --seed N [-c]``: print a seeded lab problem (parameters first) and, with -c, its answers.

``python -m helpers.labs --list`` names the labs. Errors are one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import LabError, lab_names, load
from .common import format_answer


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m helpers.labs",
        description="Seeded lab problems for 'Why isn't the Linux kernel written in Go?'. "
                    "The same seed gives the same problem everywhere.")
    p.add_argument("lab", nargs="?", help="lab name (see --list)")
    p.add_argument("-s", "--seed", type=int, default=0, help="random seed, e.g. a student number (default 0)")
    p.add_argument("-c", "--compute", action="store_true", help="also print the answers (the instructor's key)")
    p.add_argument("--json", action="store_true", help="print the problem (and with -c the key) as JSON")
    p.add_argument("-l", "--list", action="store_true", help="list the labs and exit")
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.list:
            for name in lab_names():
                module = load(name)
                print(f"{name:12} {module.TITLE}  [{getattr(module, 'CHAPTER', '')}]")
            return 0
        if not args.lab:
            raise LabError("name a lab (python -m helpers.labs --list shows them)")
        if args.seed < 0:
            raise ValueError(f"the seed must be 0 or more, not {args.seed}")
        module = load(args.lab)
        problem = module.generate(args.seed)
        if not problem.title:
            problem.title = module.TITLE
        if args.json:
            print(json.dumps(_as_json(problem, args.compute), indent=1, ensure_ascii=False))
        else:
            sys.stdout.write(problem.text(answers=args.compute))
        return 0
    except (LabError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # e.g. helpers.toolchain.ToolMissing from a lab that reads the Go tree: one line, no traceback
        message = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"error: {args.lab}: {type(e).__name__}: {message}", file=sys.stderr)
        return 2


def _as_json(problem, with_answers: bool) -> dict:
    out = {"lab": problem.lab, "seed": problem.seed, "title": problem.title,
           "params": {k: _jsonable(v) for k, v in problem.params.items()},
           "questions": []}
    for q in problem.questions:
        item = {"id": q.id, "kind": q.kind, "prompt": q.prompt}
        if q.choices:
            item["choices"] = list(q.choices)
        if with_answers:
            item["answer"] = format_answer(q.kind, q.answer, q.width, q.item_kind)
        out["questions"].append(item)
    return out


def _jsonable(value):
    if isinstance(value, (bytes, bytearray)):
        return format_answer("bytes", bytes(value))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `python -m helpers.labs idt -c | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
