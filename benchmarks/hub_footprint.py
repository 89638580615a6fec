"""What one student costs a hub: run every notebook from a cold build cache, as a student working through
the book would, and report peak memory and the disk the caches grow to.

Usage: .venv/bin/python benchmarks/hub_footprint.py

Each notebook runs in its own ``jupyter nbconvert --execute`` process (writing to a scratch copy, never to
the committed notebook). Peak memory is the largest resident set of any process it started -- the kernel,
or a compiler the kernel ran -- from ``getrusage(RUSAGE_CHILDREN)``, which covers all waited-for
descendants. Disk is the size of the private build cache (Go's and zig's caches and the book's build
products) after all notebooks ran.
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    notebooks = sorted(ROOT.glob("chapters/*.ipynb")) + sorted(ROOT.glob("labs/*/*.ipynb"))
    scratch = Path(tempfile.mkdtemp(prefix="footprint-"))
    env = {**os.environ, "WHYNOTGO_CACHE": str(scratch / "cache")}
    jupyter = Path(sys.executable).with_name("jupyter")
    print(f"{'notebook':44} {'seconds':>8} {'peak RSS MB':>12}")
    peak_all = 0
    for nb in notebooks:
        t0 = time.perf_counter()
        argv = [str(jupyter), "nbconvert", "--to", "notebook", "--execute", str(nb), "--output-dir", str(scratch / "out"),
                "--ExecutePreprocessor.timeout=900"]
        proc = subprocess.run(argv, cwd=nb.parent, env=env, capture_output=True, text=True, timeout=1800)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024  # KiB -> MiB; a running maximum
        peak_all = max(peak_all, peak)
        status = "" if proc.returncode == 0 else "  (failed)"
        print(f"{str(nb.relative_to(ROOT)):44} {time.perf_counter() - t0:8.1f} {peak:12d}{status}")
    cache = du(scratch / "cache") // 2**20 if (scratch / "cache").exists() else 0
    venv = du(Path(sys.prefix)) // 2**20
    print(f"\npeak resident memory of any process: {peak_all} MiB")
    print(f"build caches after the whole book: {cache} MiB")
    print(f"the virtual environment (toolchains and packages, shareable): {venv} MiB")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
