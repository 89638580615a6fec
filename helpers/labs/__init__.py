"""The book's labs: seeded problem generators and checkers, one module per lab (issue 7, ostep-homework style).

Each ``helpers/labs/<lab>.py`` defines ``NAME``, ``TITLE``, ``CHAPTER``, ``generate(seed) -> Problem`` and
``check(problem, answers) -> list[Feedback]`` (shapes in :mod:`helpers.labs.common`). Labs are found by
scanning this package with :mod:`pkgutil`, so adding a lab needs no registry edit.

Command line::

    python -m helpers.labs --list
    python -m helpers.labs idt --seed 1234        # the problem, parameters first
    python -m helpers.labs idt --seed 1234 -c     # ... and the computed answers (the instructor's key)
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from .common import Feedback, Problem, Question, check_each, expect, parse_answer, rng, score  # noqa: F401

_NOT_LABS = {"common"}
_REQUIRED = ("NAME", "TITLE", "generate", "check")


class LabError(LookupError):
    """An unknown lab name, or a module that does not follow the lab interface. The message is one line."""


def lab_names() -> list[str]:
    """Names of the lab modules in this package, sorted (imports nothing)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_") and m.name not in _NOT_LABS and not m.ispkg)


def load(name: str) -> ModuleType:
    """Import the lab module ``name`` and check it has the lab interface."""
    if name not in lab_names():
        known = ", ".join(lab_names()) or "none yet"
        raise LabError(f"no lab named {name!r}; labs: {known}")
    module = importlib.import_module(f"{__name__}.{name}")
    missing = [attr for attr in _REQUIRED if not hasattr(module, attr)]
    if missing:
        raise LabError(f"helpers/labs/{name}.py is not a lab: it lacks {', '.join(missing)}")
    return module


def labs() -> dict[str, ModuleType]:
    """{name: module} for every lab, sorted by name."""
    return {name: load(name) for name in lab_names()}


def generate(name: str, seed: int) -> Problem:
    """The problem of lab ``name`` for ``seed``."""
    return load(name).generate(seed)
