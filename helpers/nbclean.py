"""Prepare an executed notebook for commit: drop saved widget state and volatile metadata.

Usage: ``python -m helpers.nbclean chapters/*.ipynb labs/*.ipynb``

nbval compares outputs, not widget state; a saved ``metadata.widgets`` blob only bloats the diff and can
show stale widgets to a reader. Widget outputs keep their plain-text fallback, which nbval checks.
"""
import json
import sys

from helpers.files import existing_file


def clean(path: str) -> bool:
    with open(existing_file(path, "notebook"), encoding="utf-8") as f:
        nb = json.load(f)
    before = json.dumps(nb, sort_keys=True)
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb.get("cells", []):
        cell.get("metadata", {}).pop("execution", None)  # timestamps from nbclient
    after = json.dumps(nb, sort_keys=True)
    if after != before:
        with open(path, "w") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
    return after != before


if __name__ == "__main__":
    for p in sys.argv[1:]:
        if clean(p):
            print(f"cleaned {p}")
