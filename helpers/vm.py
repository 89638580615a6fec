"""helpers.vm -- a real machine for the book: QEMU's full-system x86-64 emulator, booted under a timeout.

Chapter 3a runs the book's own bare-metal test kernel on it (``helpers.guests``) to check the interrupt
delivery model against a real CPU implementation; other chapters boot Debian's Linux kernel with real
modules. Core layer: no widgets, no plotting.

Every boot is bounded and isolated:

* ``qemu-system-x86_64`` with no display, no default devices, no network (``-nic none``), no shared host
  folders (options that would add a network or a host file system are refused), ``-no-reboot``;
* the guest's serial port (COM1) is the console, read from a pipe; the guest ends the run by writing a
  byte to the ``isa-debug-exit`` port (0xf4: QEMU exits with status ``value*2+1``) or by powering off;
* a wall-clock timeout kills QEMU's whole process group, so a hung guest never hangs the notebook;
* a triple fault is observed (``-d cpu_reset`` logs "Triple fault" and ``-no-reboot`` turns the reset into an
  exit), and a Linux panic is recognised on the console.

The accelerator is TCG (software emulation) unless KVM was probed and really works: on the machines the book
is built on, ``/dev/kvm`` exists but a KVM guest was seen to hang for minutes. :func:`accelerator` probes KVM
once, with a tiny guest and a short timeout, and caches the answer on disk.

API::

    qemu_version() -> str                  e.g. "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
    accelerator() -> "tcg" | "kvm"
    boot(kernel, *, initrd=None, append="", memory_mb=256, timeout=60.0, extra_args=(), debug_exit=True,
         accel=None, check=True) -> GuestRun
    cached_boot(key: dict, **boot_kwargs) -> GuestRun   (a warm rerun costs no boot)
    multiboot_image(code: bytes) -> bytes   a flat 32-bit multiboot kernel around ``code`` (tiny test guests)
    available() / require()                 is QEMU here; BOOK_REQUIRE_VM=1 makes a missing QEMU an error

Errors: :class:`VMError` (one line: what happened plus the last console lines) and :class:`VMMissing`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from . import toolchain
from .files import existing_file

QEMU = "qemu-system-x86_64"
INSTALL_HINT = "apt-get install -y --no-install-recommends qemu-system-x86"
DEBUG_EXIT_PORT = 0xF4  # isa-debug-exit: a write of v makes QEMU exit with status (v << 1) | 1
CACHE = toolchain.CACHE_DIR / "vm"
TAIL_LINES = 3  # console lines quoted in a VMError
MAX_CONSOLE = 4 << 20  # bytes of console kept; a guest that floods the serial port is cut here
KVM_PROBE_TIMEOUT = 10.0

# Options that would give the guest a network or a host directory, or replace the console/exit plumbing.
FORBIDDEN_OPTIONS = frozenset({"-net", "-netdev", "-nic", "-virtfs", "-fsdev", "-chardev", "-serial", "-monitor",
                               "-qmp", "-daemonize", "-incoming", "-loadvm", "-snapshot", "-drive", "-hda", "-hdb",
                               "-cdrom", "-blockdev", "-sandbox", "-D", "-d", "-no-reboot", "-kernel", "-initrd",
                               "-append", "-accel", "-enable-kvm", "-m", "-plugin"})


class VMError(ValueError):
    """A guest run failed: timeout, triple fault, panic, nonzero exit, or bad arguments. One line."""


class VMMissing(VMError):
    """QEMU (or a Debian package a guest needs) is not installed. The message says what to install."""


@dataclass
class GuestRun:
    """What one boot printed and how it ended."""

    console: str  # everything the guest wrote to its serial port (COM1)
    exit_code: int | None  # the value the guest wrote to isa-debug-exit; None if it stopped another way
    elapsed: float  # wall-clock seconds of the QEMU process
    accel: str  # "tcg" or "kvm"
    argv: list[str]  # the QEMU command line
    stop: str = "debug-exit"  # "debug-exit", "shutdown" (power-off), "triple fault", "panic", "timeout",
    #                           "console flood", "qemu error"
    qemu: str = ""  # qemu_version() of the QEMU that ran it
    cached: bool = field(default=False, compare=False)
    recorded: bool = field(default=False, compare=False)  # loaded from helpers/recorded/vm/, QEMU being missing
    versions: dict = field(default_factory=dict, compare=False)  # tool -> version, for recordings

    def provenance(self) -> str:
        """One line saying where this run came from: a live boot here, the cache, or a recording."""
        how = ("a recording made by `python -m helpers.vm record` (QEMU is not installed here)" if self.recorded
               else "the boot cache (same inputs, booted before)" if self.cached else "booted just now")
        tools = "; ".join(f"{k}: {v}" for k, v in {"qemu": self.qemu, **self.versions}.items() if v)
        return f"[{how}; {self.accel}; {tools}]"

    @property
    def lines(self) -> list[str]:
        return self.console.splitlines()

    def tail(self, n: int = TAIL_LINES) -> str:
        last = [l.strip() for l in self.lines if l.strip()][-n:]
        return " | ".join(last) if last else "(no console output)"


def _which() -> str | None:
    return shutil.which(QEMU)


def available() -> bool:
    """True if qemu-system-x86_64 is installed here."""
    return _which() is not None


def require_vm_env() -> bool:
    """True when the environment demands a real VM (BOOK_REQUIRE_VM=1, set by .ci/run)."""
    return os.environ.get("BOOK_REQUIRE_VM", "") not in ("", "0")


def require() -> str:
    """The QEMU binary, or VMMissing with the one command that installs it."""
    exe = _which()
    if exe is None:
        raise VMMissing(f"{QEMU} not found: install it with `{INSTALL_HINT}`")
    return exe


@lru_cache(maxsize=None)
def qemu_version() -> str:
    """QEMU's version line, e.g. 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)'."""
    exe = require()
    try:
        p = toolchain.run([exe, "--version"], timeout=20)
    except toolchain.ToolchainError as e:
        raise VMError(f"{QEMU} --version failed: {e}") from None
    lines = (p.stdout or p.stderr).strip().splitlines()
    if p.returncode != 0 or not lines:
        raise VMError(f"{QEMU} --version failed (exit {p.returncode})")
    return lines[0]


# --------------------------------------------------------------------------------------------------
# Tiny guests: a flat multiboot (v1) kernel, so tests and the KVM probe need no toolchain.
# --------------------------------------------------------------------------------------------------
MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_ADDR_FLAG = 1 << 16  # the header gives load addresses (the "a.out kludge"): no ELF needed
LOAD_ADDR = 0x100000  # 1 MiB, where multiboot kernels conventionally load
HEADER_SIZE = 32


def multiboot_image(code: bytes, load_addr: int = LOAD_ADDR) -> bytes:
    """A multiboot v1 kernel image: the 32-byte header, then ``code``, entered in 32-bit protected mode at
    ``load_addr + 32`` with EAX=0x2BADB002 and EBX = the multiboot information structure (Multiboot
    Specification 0.6.96 §3.1: header magic, flags, checksum, header_addr, load_addr, load_end_addr,
    bss_end_addr, entry_addr)."""
    if not isinstance(code, (bytes, bytearray)) or not code:
        raise VMError("multiboot_image: code must be non-empty bytes")
    flags = MULTIBOOT_ADDR_FLAG
    checksum = (-(MULTIBOOT_MAGIC + flags)) & 0xFFFF_FFFF
    words = (MULTIBOOT_MAGIC, flags, checksum, load_addr, load_addr, 0, 0, load_addr + HEADER_SIZE)
    return b"".join(w.to_bytes(4, "little") for w in words) + bytes(code)


# 32-bit code for the KVM probe: print "K" on COM1, then write 0 to isa-debug-exit (QEMU exits with 1).
_PROBE_CODE = bytes([
    0x66, 0xBA, 0xF8, 0x03,  # mov dx, 0x3f8
    0xB0, 0x4B,              # mov al, 'K'
    0xEE,                    # out dx, al
    0x66, 0xBA, 0xF4, 0x00,  # mov dx, 0xf4
    0x30, 0xC0,              # xor al, al
    0xEE,                    # out dx, al
    0xF4,                    # hlt
    0xEB, 0xFD,              # jmp back to hlt
])


# The KVM probe also takes an interrupt: on the book's build machines a nested KVM boots a guest but hangs at
# its first interrupt delivery. 32-bit code: one interrupt gate at vector 0x30 (Intel SDM Vol. 3A §6.11),
# lidt, int $0x30; the handler prints "K" and exits through isa-debug-exit.
_INTERRUPT_PROBE = """
    movw %cs, %ax
    movl $handler, %ebx
    movw %bx, 0x200180
    movw %ax, 0x200182
    movw $0x8e00, 0x200184
    shrl $16, %ebx
    movw %bx, 0x200186
    lidt idtr
    int $0x30
1:  hlt
    jmp 1b
handler:
    movw $0x3f8, %dx
    movb $0x4b, %al
    outb %al, %dx
    movw $0xf4, %dx
    xorb %al, %al
    outb %al, %dx
2:  hlt
    jmp 2b
idtr:
    .word 0x7ff
    .long 0x200000
"""


def _probe_image() -> bytes:
    from .asm import assemble
    return multiboot_image(assemble(_INTERRUPT_PROBE, arch="x86_32", address=LOAD_ADDR + HEADER_SIZE).code)


def _cache_path(name: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE / name


@lru_cache(maxsize=None)
def accelerator() -> str:
    """'kvm' if a cached probe showed that a KVM guest really boots and exits here, else 'tcg'.

    The probe boots a tiny guest that takes one interrupt through its own IDT, under TCG and KVM, once per
    machine (per QEMU version and host kernel), with a short timeout; KVM wins only if it runs the probe, and
    faster than TCG. A hang, an error or a missing /dev/kvm gives 'tcg'. BOOK_VM_ACCEL=tcg skips the probe.
    """
    if os.environ.get("BOOK_VM_ACCEL") == "tcg" or not available():
        return "tcg"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    key = _digest({"probe": 2, "qemu": qemu_version(), "host": os.uname().release})
    path = _cache_path(f"kvm-probe-{key}.json")
    if path.exists():
        try:
            return json.loads(path.read_text())["accel"]
        except (ValueError, KeyError):
            pass
    with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
        kernel = Path(tmp) / "probe.bin"
        try:
            kernel.write_bytes(_probe_image())
        except ValueError:  # no assembler could build the probe: do not guess
            return "tcg"
        times = {}
        for accel in ("tcg", "kvm"):
            try:
                run = boot(kernel, memory_mb=32, timeout=KVM_PROBE_TIMEOUT, accel=accel)
                if run.exit_code == 0 and run.console == "K":
                    times[accel] = run.elapsed
            except VMError:
                pass
    # KVM only if it runs the probe, and faster than TCG does (a KVM that takes seconds to start a tiny guest is
    # a nested or throttled one, where guests were seen to hang).
    accel = "kvm" if "kvm" in times and times["kvm"] < times.get("tcg", KVM_PROBE_TIMEOUT) else "tcg"
    path.write_text(json.dumps({"accel": accel, "qemu": qemu_version(), "seconds": times}))
    return accel


# --------------------------------------------------------------------------------------------------
# Booting
# --------------------------------------------------------------------------------------------------
def _file_arg(name: str, value) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise VMError(f"{name}: expected a file path, got {type(value).__name__}")
    path = Path(value)
    if not path.is_file():
        raise VMError(f"{name}: no such file: {path}")
    return path


def _check_args(kernel, initrd, append, memory_mb, timeout, extra_args, accel):
    kernel = _file_arg("kernel", kernel)
    if initrd is not None:
        initrd = _file_arg("initrd", initrd)
    if not isinstance(append, str):
        raise VMError(f"append: expected a string, got {type(append).__name__}")
    if any(c in append for c in "\n\r\0"):
        raise VMError("append: the kernel command line must be one line")
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or not 16 <= memory_mb <= 4096:
        raise VMError(f"memory_mb: expected an integer from 16 to 4096, got {memory_mb!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 1800:
        raise VMError(f"timeout: expected seconds in (0, 1800], got {timeout!r}")
    if isinstance(extra_args, str) or not all(isinstance(a, str) for a in extra_args):
        raise VMError("extra_args: expected a list of strings (one per argument, no shell)")
    for a in extra_args:
        opt = a.split("=", 1)[0]
        if opt in FORBIDDEN_OPTIONS:
            raise VMError(f"extra_args: {opt} is not allowed (no network, no host files, console and exit are fixed)")
    if accel not in (None, "tcg", "kvm"):
        raise VMError(f"accel: expected 'tcg' or 'kvm', got {accel!r}")
    return kernel, initrd


def _argv(exe, kernel, initrd, append, memory_mb, extra_args, debug_exit, accel, log) -> list[str]:
    argv = [exe, "-accel", accel, "-m", str(memory_mb), "-display", "none", "-nodefaults", "-no-user-config",
            "-nic", "none", "-no-reboot", "-serial", "stdio", "-monitor", "none",
            "-d", "cpu_reset", "-D", str(log), "-kernel", str(kernel)]
    if initrd is not None:
        argv += ["-initrd", str(initrd)]
    if append:
        argv += ["-append", append]
    if debug_exit:
        argv += ["-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"]
    return argv + list(extra_args)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def boot(kernel, *, initrd=None, append: str = "", memory_mb: int = 256, timeout: float = 60.0, extra_args=(),
         debug_exit: bool = True, accel: str | None = None, check: bool = True) -> GuestRun:
    """Boot ``kernel`` (a multiboot or Linux bzImage file) in QEMU and return what its console printed.

    The run ends when the guest writes to isa-debug-exit (``exit_code`` = the value written), powers off,
    triple-faults, or ``timeout`` wall-clock seconds pass (QEMU's process group is then killed). With
    ``check`` (the default) anything but a zero debug exit or a clean power-off raises :class:`VMError`
    naming what happened and the last console lines; with ``check=False`` the run is returned and
    ``GuestRun.stop`` says how it ended (a triple fault the reader is meant to see, say).
    """
    exe = require()
    kernel, initrd = _check_args(kernel, initrd, append, memory_mb, timeout, extra_args, accel)
    accel = accel or accelerator()
    with tempfile.TemporaryDirectory(prefix="vm-") as tmp:
        log = Path(tmp) / "qemu.log"  # QEMU runs in tmp, so the command line names it relatively
        argv = _argv(exe, kernel.resolve(), initrd.resolve() if initrd else None, append, memory_mb, extra_args,
                     debug_exit, accel, log.name)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, cwd=tmp)
        except OSError as e:
            raise VMError(f"{QEMU} could not start: {e}") from None
        try:
            out, err, cut = _collect(proc, timeout)
        except BaseException:  # KeyboardInterrupt in a notebook: never leave QEMU running
            _kill_group(proc)
            proc.wait()
            raise
        elapsed = time.monotonic() - start
        with open(log, "rb") if log.exists() else io.BytesIO() as f:
            qlog = f.read(1 << 20).decode(errors="replace")
    console = out.decode("utf-8", errors="replace").replace("\r\n", "\n")
    stderr = err.decode("utf-8", errors="replace").strip()
    rc = proc.returncode
    exit_code, stop = None, "shutdown"
    if cut:
        stop = cut
    elif "Triple fault" in qlog:
        stop = "triple fault"
    elif "Kernel panic - not syncing" in console:
        stop = "panic"
    elif debug_exit and rc is not None and rc % 2 == 1 and not _qemu_complained(stderr):
        exit_code, stop = rc >> 1, "debug-exit"
    elif rc != 0:
        stop = "qemu error"
    run = GuestRun(console, exit_code, round(elapsed, 3), accel, [str(a) for a in argv], stop, qemu_version())
    if check:
        _check_run(run, stderr, timeout, rc)
    return run


def _collect(proc: subprocess.Popen, timeout: float) -> tuple[bytes, bytes, str | None]:
    """Read QEMU's stdout (the console) and stderr until it exits, the deadline passes, or the console passes
    MAX_CONSOLE bytes; in the last two cases kill its process group. Returns (stdout, stderr, None | "timeout" |
    "console flood"). Memory stays bounded whatever the guest prints."""
    deadline = time.monotonic() + timeout
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs, limit = {out_fd: bytearray(), err_fd: bytearray()}, {out_fd: MAX_CONSOLE, err_fd: 64 << 10}
    cut = None
    with selectors.DefaultSelector() as sel:
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        while sel.get_map() and cut is None:
            left = deadline - time.monotonic()
            if left <= 0:
                cut = "timeout"
                break
            for key, _ in sel.select(timeout=min(left, 1.0)):
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                buf += chunk[:max(0, limit[key.fd] - len(buf))]
                if key.fd == out_fd and len(buf) >= MAX_CONSOLE:
                    cut = "console flood"
    if cut:
        _kill_group(proc)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
        pass
    proc.stdout.close()
    proc.stderr.close()
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), cut


def _qemu_complained(stderr: str) -> bool:
    return any(l.startswith(f"{QEMU}:") and "warning" not in l for l in stderr.splitlines())


def _check_run(run: GuestRun, stderr: str, timeout: float, rc) -> None:
    if run.stop == "timeout":
        raise VMError(f"guest timed out after {timeout:g} s ({run.accel}); last console lines: {run.tail()}")
    if run.stop == "console flood":
        raise VMError(f"guest printed more than {MAX_CONSOLE} bytes on its console and was stopped; "
                      f"last console lines: {run.tail()}")
    if run.stop == "triple fault":
        raise VMError(f"guest triple-faulted (the CPU shut down); last console lines: {run.tail()}")
    if run.stop == "panic":
        panic = next((l.strip() for l in run.lines if "Kernel panic" in l), "Kernel panic")
        raise VMError(f"guest kernel panicked: {panic}; last console lines: {run.tail()}")
    if run.stop == "qemu error":
        msg = next((l for l in stderr.splitlines() if l.startswith(f"{QEMU}:")), stderr.splitlines()[-1] if stderr else "")
        raise VMError(f"{QEMU} failed (exit {rc}): {msg.strip() or 'no message'}")
    if run.stop == "debug-exit" and run.exit_code != 0:
        raise VMError(f"guest exited with code {run.exit_code}; last console lines: {run.tail()}")


# --------------------------------------------------------------------------------------------------
# The cache: a warm rerun of a chapter costs no boot
# --------------------------------------------------------------------------------------------------
def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _file_digest(path) -> str:
    h = hashlib.sha256()
    with open(existing_file(path), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(key: dict, **boot_kwargs) -> str:
    """The hash :func:`cached_boot` files a run under: the caller's ``key``, QEMU's version, the accelerator,
    the contents of the kernel and initrd files, and every other boot argument."""
    if not isinstance(key, dict):
        raise VMError(f"key: expected a dict describing the experiment, got {type(key).__name__}")
    kernel = _file_arg("kernel", boot_kwargs.get("kernel"))
    initrd = boot_kwargs.get("initrd")
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in boot_kwargs.items() if k not in ("kernel", "initrd")}
    args["accel"] = args.get("accel") or accelerator()
    return _digest({"key": key, "qemu": qemu_version(), "kernel": _file_digest(kernel),
                    "initrd": _file_digest(_file_arg("initrd", initrd)) if initrd is not None else None,
                    "args": args, "format": 1})


def cached_boot(key: dict, **boot_kwargs) -> GuestRun:
    """:func:`boot`, cached on disk under the hash of everything that went in (:func:`cache_key`).

    Only runs that :func:`boot` returned are cached (with ``check=False`` that includes a timeout or a triple
    fault the caller asked to see); a VMError is raised again on the next call, never remembered."""
    require()
    digest = cache_key(key, **boot_kwargs)
    path = _cache_path(f"boot-{digest}.json")
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return GuestRun(**data, cached=True)
        except (ValueError, TypeError):
            path.unlink(missing_ok=True)
    run = boot(**boot_kwargs)
    data = dataclasses.asdict(run)
    for transient in ("cached", "recorded", "versions"):
        data.pop(transient)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return run


# --------------------------------------------------------------------------------------------------
# Experiments and their recordings: the notebooks still run where QEMU is missing
# --------------------------------------------------------------------------------------------------
RECORDINGS = Path(__file__).with_name("recorded") / "vm"


@dataclass(frozen=True)
class Experiment:
    """A named guest run a notebook shows. ``prepare()`` builds the guest and returns
    ``{"key": dict, "boot": boot kwargs, "versions": {tool: version}}`` (it may raise VMMissing, e.g. when
    Debian's kernel is not installed); ``parse(console)`` gives the JSON-able result the notebook uses and
    that a test compares with the recording (default: the console text itself)."""

    name: str
    prepare: object
    parse: object = None

    def result(self, run: GuestRun):
        return self.parse(run.console) if self.parse else run.console


EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, parse=None):
    """Decorator: register ``prepare`` as the experiment ``name`` (see :class:`Experiment`)."""
    def register(prepare):
        EXPERIMENTS[name] = Experiment(name, prepare, parse)
        return prepare
    return register


# Modules that define experiments; each registers its own on import (with @experiment).
GUEST_MODULES: tuple[str, ...] = ("helpers.guests.idtk",)


def _load_experiments() -> None:
    import importlib
    for module in GUEST_MODULES:
        importlib.import_module(module)


def _live(exp: Experiment) -> GuestRun:
    spec = exp.prepare()
    run = cached_boot(spec["key"], **spec["boot"])
    return dataclasses.replace(run, versions=dict(spec.get("versions", {})))


def run_experiment(name: str) -> GuestRun:
    """The experiment's run: live (or from the boot cache) where QEMU and the guest's packages are installed;
    else the recording in helpers/recorded/vm/<name>.json, marked ``recorded``. With BOOK_REQUIRE_VM=1 a
    missing VM raises VMMissing instead."""
    _load_experiments()
    if name not in EXPERIMENTS:
        raise VMError(f"no VM experiment {name!r} (have: {', '.join(sorted(EXPERIMENTS))})")
    exp = EXPERIMENTS[name]
    try:
        return _live(exp)
    except VMMissing:
        if require_vm_env():
            raise
        path = RECORDINGS / f"{name}.json"
        if not path.exists():
            raise
    data = json.loads(path.read_text())
    return GuestRun(**data["run"], recorded=True, versions=data["versions"])


def record(names=None) -> list[Path]:
    """Run the experiments here (QEMU required) and save them under helpers/recorded/vm/."""
    _load_experiments()
    RECORDINGS.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or sorted(EXPERIMENTS):
        if name not in EXPERIMENTS:
            raise VMError(f"no VM experiment {name!r} (have: {', '.join(sorted(EXPERIMENTS))})")
        exp = EXPERIMENTS[name]
        spec = exp.prepare()
        run = cached_boot(spec["key"], **spec["boot"])
        data = dataclasses.asdict(run)
        for transient in ("cached", "recorded", "versions"):
            data.pop(transient)
        data["argv"] = [Path(a).name if a.startswith("/") else a for a in data["argv"]]  # no host paths
        data["elapsed"] = 0.0  # wall-clock time is the recording machine's, not a fact about the guest
        path = RECORDINGS / f"{name}.json"
        path.write_text(json.dumps({"name": name, "versions": spec.get("versions", {}), "run": data},
                                   indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def _main(argv) -> int:
    if not argv or argv[0] != "record":
        _load_experiments()
        print(f"usage: python -m helpers.vm record [EXPERIMENT ...]  (experiments: {', '.join(sorted(EXPERIMENTS))})")
        return 2
    try:
        for p in record(argv[1:] or None):
            print(f"recorded {p}")
    except VMError as e:
        print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    import sys
    from helpers import vm as _module  # the guests register with helpers.vm, not with this __main__ copy
    raise SystemExit(_module._main(sys.argv[1:]))
