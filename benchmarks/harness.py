"""What every benchmark shares: a result row, timing helpers, and the machine description.

A benchmark is one function named ``bench_<something>`` in a ``benchmarks/bench_*.py`` file. It takes
``quick`` (True: a smaller run, for a smoke test) and returns a :class:`Row` or a list of them; run.py finds
it, runs it, and puts its rows in the table and in results.json. Each row compares a measured figure with a
baseline timed in the same run (these machines are shared and noisy: only ratios travel), and may state a goal.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass


@dataclass
class Row:
    name: str                      # what was measured, e.g. "assemble: a new program"
    value: float                   # the measured figure, in ``unit``
    unit: str = "ms"               # "ms", "µs", "M/s", "MiB"...
    baseline: str = ""             # what it is compared with (measured in the same run)
    baseline_value: float | None = None
    higher_is_better: bool = False  # rates: True; times and sizes: False
    goal: str = ""                 # the target, in words: "≥ 50× faster", "< 16 ms p95"
    met: bool | None = None        # whether the goal is met (None: no goal)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """How many times better than the baseline (> 1: better)."""
        if not self.baseline_value or not self.value:
            return None
        return self.value / self.baseline_value if self.higher_is_better else self.baseline_value / self.value

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def times(fn, n: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``n`` calls of ``fn(i)`` (after ``warmup`` calls)."""
    for i in range(warmup):
        fn(-1 - i)
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def median(xs) -> float:
    return statistics.median(xs)


def p95(xs) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def machine() -> dict:
    """The machine a table was made on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {"cpu": cpu, "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in load],
            "python": platform.python_version(), "system": f"{platform.system()} {platform.release()}",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
