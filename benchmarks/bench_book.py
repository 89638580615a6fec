"""The whole book, as a reader (or CI) runs it: every chapter and lab executed in order by one driver.

Warm: the build cache (``~/.cache/why-not-go``: Go's and zig's caches, the book's builds, the VM boots) is
already filled, as on every run after the first. The baseline, timed in the same run, is the floor that no
notebook can go under: a fresh kernel per notebook running one empty cell.

Cold: the same notebooks with an empty build cache (``WHYNOTGO_CACHE`` pointed at an empty folder), as on a
reader's first day or a new hub user. It shows what dominates: each notebook's time and its slowest cells.
The cold run takes minutes (``benchmarks/run.py book.warm`` runs the warm row alone).
"""
from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import Row

ROOT = Path(__file__).resolve().parents[1]
WARM_GOAL_S = 30.0


def notebooks() -> list[Path]:
    return sorted(ROOT.glob("chapters/*.ipynb")) + sorted(ROOT.glob("labs/*/*.ipynb"))


def _execute(nb, cwd: Path) -> None:
    from nbclient import NotebookClient
    NotebookClient(nb, timeout=3600, kernel_name="python3", shutdown_kernel="immediate",
                   resources={"metadata": {"path": str(cwd)}}).execute()


def _cell_seconds(nb) -> list[tuple[float, int, str]]:
    """(seconds, index, first line) of each executed code cell, from nbclient's timing metadata."""
    out = []
    for i, cell in enumerate(nb.cells):
        ex = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            a, b = (datetime.datetime.fromisoformat(ex[k].replace("Z", "+00:00"))
                    for k in ("iopub.execute_input", "shell.execute_reply"))
            out.append(((b - a).total_seconds(), i, (cell.source.splitlines() or [""])[0][:60]))
    return out


def run_book(paths, env: dict | None = None) -> list[dict]:
    """Execute each notebook (a copy in memory; nothing is written) and time it."""
    import nbformat
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        results = []
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            t = time.perf_counter()
            _execute(nb, path.parent)
            results.append({"notebook": str(path.relative_to(ROOT)), "seconds": time.perf_counter() - t,
                            "slowest": sorted(_cell_seconds(nb), reverse=True)[:3]})
            print(f"  {results[-1]['notebook']}: {results[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
        return results
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _floor(n: int) -> float:
    import nbformat
    t = time.perf_counter()
    for _ in range(n):
        _execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), ROOT)
    return time.perf_counter() - t


def _top(results, k=3) -> str:
    top = sorted(results, key=lambda r: -r["seconds"])[:k]
    return ", ".join(f"{Path(r['notebook']).stem} {r['seconds']:.1f} s" for r in top)


def bench_warm(quick: bool = False) -> Row:
    paths = notebooks()[:3] if quick else notebooks()
    run_book(paths)                          # fills the cache if this machine has never run the book
    results = run_book(paths)
    total = sum(r["seconds"] for r in results)
    return Row(f"the whole book, warm ({len(paths)} notebooks, one driver)", total, "s",
               f"{len(paths)} kernels, one empty cell each", _floor(len(paths)), goal=f"< {WARM_GOAL_S:g} s",
               met=total < WARM_GOAL_S if not quick else None, note=f"slowest: {_top(results)}")


def bench_cold(quick: bool = False) -> list[Row]:
    paths = notebooks()[:2] if quick else notebooks()
    warm = run_book(paths)
    with tempfile.TemporaryDirectory(prefix="cold-cache-") as cache:
        cold = run_book(paths, {"WHYNOTGO_CACHE": cache})
    rows = []
    for w, c in sorted(zip(warm, cold), key=lambda wc: -wc[1]["seconds"]):
        cells = "; ".join(f"cell {i} {s:.0f} s: {line}" for s, i, line in c["slowest"] if s >= 1)
        rows.append(Row(f"cold: {c['notebook']}", c["seconds"], "s", "the same notebook, warm", w["seconds"],
                        note=f"slowest cells: {cells}" if cells else ""))
    total_w, total_c = (sum(r["seconds"] for r in rs) for rs in (warm, cold))
    rows.insert(0, Row(f"the whole book, cold ({len(paths)} notebooks, empty build cache)", total_c, "s",
                       "the same notebooks, warm", total_w))
    return rows
