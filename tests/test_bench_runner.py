"""benchmarks/run.py: a partial run (`run.py WORDS`) replaces only the re-run benchmarks' rows, where they stood,
and the README's table says which rows were re-run."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _runner():
    spec = importlib.util.spec_from_file_location("bench_runner", ROOT / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_partial_run_replaces_its_own_rows_in_place_and_says_so(tmp_path, monkeypatch):
    run = _runner()
    old_machine = {"date": "2026-01-01 00:00 UTC", "cpu": "Old CPU", "cpus": 2, "load_average": [0.5, 0.5, 0.5],
                   "python": "3.11", "system": "Linux"}

    def row(bench, name, value):
        return {**run.Row(name, value, "ms").as_dict(), "benchmark": bench}
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps({"machine": old_machine, "rows": [row("a.x", "first", 1.0), row("b.y", "old b", 2.0),
                                                                    row("b.y", "old b 2", 2.5), row("c.z", "last", 3.0)]}))
    readme.write_text(f"intro\n{run.BEGIN}\nold table\n{run.END}\noutro\n")
    monkeypatch.setattr(run, "RESULTS", results)
    monkeypatch.setattr(run, "README", readme)
    monkeypatch.setattr(run, "ROOT", tmp_path)
    monkeypatch.setattr(run, "discover", lambda words: [("b.y", lambda quick=False: run.Row("new b", 9.0, "ms"))])
    assert run.main(["b"]) == 0
    got = json.loads(results.read_text())
    assert [(r["benchmark"], r["name"]) for r in got["rows"]] == [("a.x", "first"), ("b.y", "new b"), ("c.z", "last")]
    assert got["machine"]["cpu"] == "Old CPU" and got["machine"]["rerun"]["benchmarks"] == ["b.y"]
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "Old CPU" in text and "the rows of b.y re-run" in text and "| new b | 9 ms |" in text
