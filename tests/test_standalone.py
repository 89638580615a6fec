"""The repository stands alone (issue 12 §1): the committed tree, copied by ``git archive HEAD`` into an empty
folder with no neighbours, validates its ledger and executes chapter 5, which reads the ledger. Nothing it needs
may live outside the repository (no folder beside it, no path from the authors' machines)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from repo_copy import archive_head


@pytest.fixture(scope="module")
def archived(tmp_path_factory) -> Path:
    """The committed tree, alone in a fresh folder: ``<tmp>/alone/why-not-go`` (``alone`` holds nothing else)."""
    root = archive_head(tmp_path_factory.mktemp("alone"))
    assert [p.name for p in root.parent.iterdir()] == ["why-not-go"]
    return root


def _env(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "BOOK_"))}
    env["PYTHONPATH"] = str(root)          # helpers from the copy, not from this checkout
    return env


def _run(argv, root: Path, timeout: float, cwd: Path | None = None):
    return subprocess.run(argv, cwd=cwd or root, env=_env(root), capture_output=True, text=True, timeout=timeout)


def test_the_copy_imports_its_own_helpers(archived):
    out = _run([sys.executable, "-c", "import helpers.ledger as l; print(l.__file__, l.REPO)"], archived, 60)
    assert out.returncode == 0, out.stderr
    path, repo = out.stdout.split()
    assert Path(path).is_relative_to(archived) and Path(repo) == archived


def test_the_ledger_validates_in_the_copy(archived):
    out = _run([sys.executable, "-m", "helpers.ledger", "check"], archived, 120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("entries, 0 problem(s)"), out.stdout


def test_chapter_5_executes_in_the_copy(archived, tmp_path):
    argv = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
            "--ExecutePreprocessor.timeout=300", "--output-dir", str(tmp_path), "--output", "executed.ipynb",
            "05_conclusion.ipynb"]
    out = _run(argv, archived, 600, cwd=archived / "chapters")
    assert out.returncode == 0, out.stderr[-3000:]
    executed = (tmp_path / "executed.ipynb").read_text(encoding="utf-8")
    assert "64 claims in the ledger (chapters/claims.yml), 0 problem(s)" in executed
    assert '"output_type": "error"' not in executed
