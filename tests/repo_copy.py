"""The committed tree of this repository, copied alone into a fresh folder: what a reader gets from a clone."""
import io
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def archive_head(parent: Path, name: str = "why-not-go") -> Path:
    """Extract ``git archive HEAD`` into ``parent/name`` (``parent`` must be empty) and return that folder."""
    assert (REPO / ".git").exists(), "this test needs a git checkout of the book (git archive HEAD)"
    assert not any(parent.iterdir()), f"{parent} is not empty"
    tar = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], capture_output=True,
                         timeout=120, check=True).stdout
    root = parent / name
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(root, filter="data")
    return root
