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
import tempfile
import time
from pathlib import Path

from helpers import linuxguest as L
from helpers import vm


def boot_seconds(initrd: bytes) -> float:
    with tempfile.TemporaryDirectory() as d:
        rd = Path(d) / "initrd.cpio"
        rd.write_bytes(initrd)
        t0 = time.perf_counter()
        vm.boot(f"/boot/vmlinuz-{L.kernel_release()}", initrd=rd, append=L.APPEND, memory_mb=256,
                timeout=L.BOOT_TIMEOUT, debug_exit=False)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if L.missing():
        raise SystemExit("cannot run: missing " + ", ".join(L.missing()))
    builds = L._builds()
    full = L.initramfs(L._guest_files(builds), L.guest_script())
    bare = L.initramfs({"/bin/busybox": L.BUSYBOX.read_bytes()},
                       "#!/bin/busybox sh\n/bin/busybox echo @@DONE\n/bin/busybox poweroff -f\n")
    base = min(boot_seconds(bare) for _ in range(args.repeat))
    book = min(boot_seconds(full) for _ in range(args.repeat))
    print(f"accelerator: {vm.accelerator()} | {vm.qemu_version()} | Linux {L.kernel_release()}")
    print(f"bare boot (busybox, power off):        {base:6.2f} s")
    print(f"boot + {len(L.STEPS)} experiment steps:            {book:6.2f} s   ratio x{book / base:.2f}")
    print(f"experiments: {book - base:.2f} s in all, {(book - base) / len(L.STEPS) * 1000:.0f} ms per step")
    print(f"initramfs: {len(full) / 2**20:.1f} MiB (bare: {len(bare) / 2**20:.1f} MiB)")
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
