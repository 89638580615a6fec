"""One boot of Debian's kernel running every module experiment of chapters 2c, 3a and 4c, against a bare boot.

    .venv/bin/python benchmarks/bench_linuxguest.py [--repeat N]

Both boots go through helpers.vm.boot (TCG unless KVM was probed and works) with the same kernel and command
line. The baseline's initramfs holds only busybox and an /init that powers off at once, so the difference is
what the book's experiments cost: loading a dozen modules, kprobes, tracefs, and the kernel messages read
back. Printed: the best time of each, their ratio, the experiments' share per step, and the host's load
average (the machine is shared, so wall-clock times vary).
"""
import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from helpers import linuxguest as L
from helpers import vm


def boot(initrd: bytes) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as d:
        rd = Path(d) / "initrd.cpio"
        rd.write_bytes(initrd)
        t0 = time.perf_counter()
        run = vm.boot(f"/boot/vmlinuz-{L.kernel_release()}", initrd=rd, append=L.APPEND, memory_mb=256,
                      timeout=L.BOOT_TIMEOUT, debug_exit=False)
        return time.perf_counter() - t0, run.console


def step_times(console: str) -> list[tuple[str, float]]:
    """(step, guest seconds) from the ``@@T <step> <uptime>`` marks of a timing script."""
    marks = [(m.group(1), float(m.group(2))) for m in re.finditer(r"^@@T (\w+) ([\d.]+)", console, re.M)]
    return [(a, t2 - t1) for (a, t1), (_b, t2) in zip(marks, marks[1:])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if L.missing():
        raise SystemExit("cannot run: missing " + ", ".join(L.missing()))
    builds = L._builds()
    full = L.initramfs(L._guest_files(builds), L.guest_script(timing=True))
    bare = L.initramfs({"/bin/busybox": L.BUSYBOX.read_bytes()},
                       "#!/bin/busybox sh\n/bin/busybox echo @@DONE\n/bin/busybox poweroff -f\n")
    base = min(boot(bare)[0] for _ in range(args.repeat))
    runs = [boot(full) for _ in range(args.repeat)]
    book, console = min(runs)
    print(f"accelerator: {vm.accelerator()} | {vm.qemu_version()} | Linux {L.kernel_release()}")
    print(f"bare boot (busybox, power off):        {base:6.2f} s")
    print(f"boot + {len(L.STEPS)} experiment steps:            {book:6.2f} s   ratio x{book / base:.2f}")
    print(f"experiments: {book - base:.2f} s in all, {(book - base) / len(L.STEPS) * 1000:.0f} ms per step")
    steps = step_times(console)
    print("slowest steps (guest seconds):", ", ".join(f"{n} {t:.2f}" for n, t in sorted(steps, key=lambda x: -x[1])[:6]))
    print(f"all steps inside the guest: {sum(t for _n, t in steps):.2f} s")
    print(f"initramfs: {len(full) / 2**20:.1f} MiB (bare: {len(bare) / 2**20:.1f} MiB)")
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
