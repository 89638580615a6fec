"""`make bench`: every benchmark in benchmarks/bench_*.py, in one table, each against a baseline of the same run.

    .venv/bin/python benchmarks/run.py             # all; writes benchmarks/results.json and the README table
    .venv/bin/python benchmarks/run.py asm elf     # only benchmarks whose name contains one of these words
                                                  # (their rows replace those in results.json and the README)
    .venv/bin/python benchmarks/run.py --quick     # smaller runs (a smoke test; not for the README)

Adding a benchmark is one function: ``def bench_<what>(quick: bool = False) -> Row | list[Row]`` in any
``benchmarks/bench_*.py`` file (see benchmarks/harness.py for Row). Each runs in this one process, in file
order; a benchmark that raises shows up as a row saying so (the others still run).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]
from harness import Row, machine  # noqa: E402

RESULTS = HERE / "results.json"
README = HERE / "README.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def discover(words=()) -> list:
    found = []
    for path in sorted(HERE.glob("bench_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name, fn in vars(mod).items():
            if name.startswith("bench_") and callable(fn) and getattr(fn, "__module__", None) == mod.__name__:
                full = f"{path.stem[len('bench_'):]}.{name[len('bench_'):]}"
                if not words or any(w in full for w in words):
                    found.append((full, fn))
    return found


def _fmt(v, unit) -> str:
    if v is None:
        return "—"
    return f"{v:.3g} {unit}" if abs(v) < 1000 else f"{v:,.0f} {unit}"


def table(rows: list[dict]) -> str:
    head = ["benchmark", "measured", "baseline (same run)", "ratio", "goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.1f}×"
        base = f"{r['baseline']}: {_fmt(r['baseline_value'], r['unit'])}" if r["baseline"] else "—"
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        note = f" ({r['note']})" if r["note"] else ""
        lines.append(f"| {r['name']}{note} | {_fmt(r['value'], r['unit'])} | {base} | {ratio} | {r['goal']} | {met} |")
    return "\n".join(lines)


def _header(info: dict) -> str:
    return (f"Latest `make bench` ({info['date']}) on {info['cpu']}, {info['cpus']} CPUs, "
            f"load average {info['load_average'][0]} at the end, Python {info['python']}, {info['system']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("words", nargs="*", help="run only benchmarks whose name contains one of these (their rows "
                    "replace the same benchmarks' rows in results.json; the README says which were re-run)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    rows, t0 = [], time.perf_counter()
    for full, fn in discover(a.words):
        t = time.perf_counter()
        try:
            out = fn(quick=a.quick)
            out = out if isinstance(out, list) else [out]
        except Exception as e:  # noqa: BLE001 - one failing benchmark must not hide the others
            traceback.print_exc()
            out = [Row(full, float("nan"), "", note=f"failed: {type(e).__name__}: {e}"[:120], met=False)]
        for r in out:
            d = r.as_dict()
            d["benchmark"] = full
            rows.append(d)
        print(f"  {full}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    info = machine()
    text = table(rows)
    print(f"\nMachine: {info['cpu']}, {info['cpus']} CPUs, load average {info['load_average']}, "
          f"Python {info['python']}, {info['system']}, {info['date']}"
          f"{' (quick run)' if a.quick else ''}; {time.perf_counter() - t0:.0f} s in all\n")
    print(text)
    if not a.no_write and not a.quick:
        header = _header(info)
        if a.words:              # a partial run replaces its own benchmarks' rows and says so
            old = json.loads(RESULTS.read_text())
            ran = {r["benchmark"] for r in rows}
            fresh, merged = rows, []
            for r in old["rows"]:        # each re-run benchmark's rows where its old ones stood
                if r["benchmark"] not in ran:
                    merged.append(r)
                elif not any(m["benchmark"] == r["benchmark"] for m in merged):
                    merged += [f for f in fresh if f["benchmark"] == r["benchmark"]]
            rows = merged + [f for f in fresh if f not in merged]
            info = {**old["machine"], "rerun": {"benchmarks": sorted(ran), **info}}
            header = old.get("header") or _header(old["machine"])
            header += f"; the rows of {', '.join(sorted(ran))} re-run {info['rerun']['date']}" \
                f" (load average {info['rerun']['load_average'][0]})"
            text = table(rows)
        RESULTS.write_text(json.dumps({"machine": info, "header": header, "rows": rows}, indent=1) + "\n")
        readme = README.read_text()
        block = f"{BEGIN}\n{header}:\n\n{text}\n{END}"
        if BEGIN in readme:
            readme = readme[:readme.index(BEGIN)] + block + readme[readme.index(END) + len(END):]
        else:
            readme = readme.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
        README.write_text(readme)
        print(f"\nwrote {RESULTS.relative_to(ROOT)} and the table in {README.relative_to(ROOT)}")
    return 0 if not any(r["note"].startswith("failed:") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
