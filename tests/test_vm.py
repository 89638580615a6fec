"""helpers.vm: QEMU boots, timeouts, triple faults, the cache, and bad arguments (tiny multiboot guests)."""
import json
import os

import pytest

from helpers import asm, vm

needs_qemu = pytest.mark.skipif(not vm.available() and not vm.require_vm_env(),
                                reason="qemu-system-x86_64 not installed (BOOK_REQUIRE_VM=1 makes this a failure)")


def guest(tmp_path, source: str, name: str = "guest.bin"):
    code = asm.assemble(source, arch="x86_32", address=vm.LOAD_ADDR + vm.HEADER_SIZE).code
    path = tmp_path / name
    path.write_bytes(vm.multiboot_image(code))
    return path


def say_and_exit(text: str, code: int) -> str:
    out = "".join(f"movb ${ord(c)}, %al\noutb %al, %dx\n" for c in text)
    return f"movw $0x3f8, %dx\n{out}movw $0xf4, %dx\nmovb ${code}, %al\noutb %al, %dx\n1: hlt\njmp 1b\n"


HANG = "cli\n1: hlt\njmp 1b\n"
# An IDT of limit 0: int3 cannot be delivered (#GP), nor can #GP (#DF), nor #DF: triple fault.
TRIPLE = "movw $0x3f8, %dx\nmovb $0x54, %al\noutb %al, %dx\nlidt idtr\nint3\nidtr: .word 0\n.long 0\n"


def test_multiboot_header_checksum():
    img = vm.multiboot_image(b"\xf4")
    words = [int.from_bytes(img[i:i + 4], "little") for i in range(0, 32, 4)]
    assert words[0] == 0x1BADB002 and (words[0] + words[1] + words[2]) & 0xFFFFFFFF == 0
    assert words[7] == vm.LOAD_ADDR + 32 and img[32:] == b"\xf4"


@needs_qemu
def test_boot_prints_and_exits(tmp_path):
    run = vm.boot(guest(tmp_path, say_and_exit("hello\n", 0)), accel="tcg", timeout=30)
    assert run.console == "hello\n" and run.exit_code == 0 and run.stop == "debug-exit"
    assert run.accel == "tcg" and "-nic" in run.argv and "none" in run.argv and "-no-reboot" in run.argv
    assert run.qemu == vm.qemu_version() and run.qemu.startswith("QEMU emulator version")


@needs_qemu
def test_nonzero_exit_is_an_error_naming_the_console(tmp_path):
    with pytest.raises(vm.VMError, match=r"exited with code 3; last console lines: bye"):
        vm.boot(guest(tmp_path, say_and_exit("bye\n", 3)), accel="tcg", timeout=30)
    assert vm.boot(guest(tmp_path, say_and_exit("bye\n", 3)), accel="tcg", timeout=30, check=False).exit_code == 3


@needs_qemu
def test_hanging_guest_times_out(tmp_path):
    with pytest.raises(vm.VMError, match=r"timed out after 2 s") as e:
        vm.boot(guest(tmp_path, HANG), accel="tcg", timeout=2)
    assert "\n" not in str(e.value)
    run = vm.boot(guest(tmp_path, HANG), accel="tcg", timeout=1, check=False)
    assert run.stop == "timeout" and run.exit_code is None and 1 <= run.elapsed < 10


@needs_qemu
def test_triple_fault_is_observed(tmp_path):
    with pytest.raises(vm.VMError, match=r"triple-faulted.*last console lines: T"):
        vm.boot(guest(tmp_path, TRIPLE), accel="tcg", timeout=30)
    run = vm.boot(guest(tmp_path, TRIPLE), accel="tcg", timeout=30, check=False)
    assert run.stop == "triple fault" and run.elapsed < 10  # -no-reboot: the reset ends QEMU


@needs_qemu
def test_cached_boot_warm_rerun_costs_no_boot(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "CACHE", tmp_path / "cache")
    kernel = guest(tmp_path, say_and_exit("cached\n", 0))
    cold = vm.cached_boot({"test": "cache"}, kernel=kernel, accel="tcg", timeout=30)
    assert not cold.cached
    monkeypatch.setattr(vm, "boot", lambda **kw: pytest.fail("a warm rerun booted QEMU"))
    warm = vm.cached_boot({"test": "cache"}, kernel=kernel, accel="tcg", timeout=30)
    assert warm.cached and warm == cold
    # Anything that went in changes the key: the caller's key, the arguments, the kernel's bytes.
    k0 = vm.cache_key({"test": "cache"}, kernel=kernel, accel="tcg", timeout=30)
    assert vm.cache_key({"test": "other"}, kernel=kernel, accel="tcg", timeout=30) != k0
    assert vm.cache_key({"test": "cache"}, kernel=kernel, accel="tcg", timeout=30, memory_mb=64) != k0
    kernel.write_bytes(kernel.read_bytes() + b"\0")
    assert vm.cache_key({"test": "cache"}, kernel=kernel, accel="tcg", timeout=30) != k0


@needs_qemu
def test_failures_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "CACHE", tmp_path / "cache")
    kernel = guest(tmp_path, HANG)
    for _ in range(2):
        with pytest.raises(vm.VMError, match="timed out"):
            vm.cached_boot({"t": 1}, kernel=kernel, accel="tcg", timeout=1)
    assert not list((tmp_path / "cache").glob("boot-*"))


@needs_qemu
def test_kvm_probe_runs_once_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "CACHE", tmp_path / "cache")
    vm.accelerator.cache_clear()
    boots = []
    real_boot = vm.boot
    monkeypatch.setattr(vm, "boot", lambda *a, **kw: boots.append(kw["accel"]) or real_boot(*a, **kw))
    try:
        first = vm.accelerator()
        probed = list(boots)
        vm.accelerator.cache_clear()
        assert vm.accelerator() == first and boots == probed  # the second answer came from the disk cache
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            assert probed == ["tcg", "kvm"]  # both timed on the probe guest; KVM must be the faster
            saved = json.loads(next((tmp_path / "cache").glob("kvm-probe-*.json")).read_text())
            assert first == ("kvm" if saved["seconds"].get("kvm", 1e9) < saved["seconds"]["tcg"] else "tcg")
        else:
            assert first == "tcg" and probed == []
        vm.accelerator.cache_clear()
        monkeypatch.setenv("BOOK_VM_ACCEL", "tcg")
        assert vm.accelerator() == "tcg"
    finally:
        vm.accelerator.cache_clear()


@needs_qemu
@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": "/nonexistent/vmlinuz"}, "kernel: no such file"),
    ({"kernel": 42}, "kernel: expected a file path"),
    ({"initrd": "/nonexistent"}, "initrd: no such file"),
    ({"append": "a\nb"}, "append: the kernel command line must be one line"),
    ({"append": ["x"]}, "append: expected a string"),
    ({"memory_mb": 0}, "memory_mb"),
    ({"memory_mb": "256"}, "memory_mb"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": float("nan")}, "timeout"),
    ({"extra_args": "-smp 2"}, "extra_args: expected a list"),
    ({"extra_args": ["-netdev", "user,id=n"]}, "-netdev is not allowed"),
    ({"extra_args": ["-virtfs", "local,path=/"]}, "-virtfs is not allowed"),
    ({"extra_args": ["-device", "isa-debug-exit", 3]}, "extra_args: expected a list"),
    ({"accel": "hvf"}, "accel: expected"),
])
def test_garbage_arguments_give_one_line(tmp_path, kwargs, message):
    args = {"kernel": guest(tmp_path, HANG), **kwargs}
    with pytest.raises(vm.VMError, match=message) as e:
        vm.boot(args.pop("kernel"), timeout=args.pop("timeout", 5), **args)
    assert "\n" not in str(e.value)


@needs_qemu
def test_qemu_error_is_one_line(tmp_path):
    with pytest.raises(vm.VMError, match=r"qemu-system-x86_64 failed \(exit 1\): .*nosuchdevice") as e:
        vm.boot(guest(tmp_path, HANG), accel="tcg", timeout=10, extra_args=["-device", "nosuchdevice"])
    assert "\n" not in str(e.value)


def test_missing_qemu_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    vm.qemu_version.cache_clear()
    try:
        assert not vm.available()
        with pytest.raises(vm.VMMissing, match=r"apt-get install -y --no-install-recommends qemu-system-x86"):
            vm.boot(tmp_path / "k")
        with pytest.raises(vm.VMMissing):
            vm.cached_boot({}, kernel=tmp_path / "k")
    finally:
        monkeypatch.undo()
        vm.qemu_version.cache_clear()


def test_ci_requires_the_vm():
    if os.environ.get("BOOK_REQUIRE_VM") == "1":
        assert vm.available(), "BOOK_REQUIRE_VM=1 but qemu-system-x86_64 is missing"


@needs_qemu
def test_recordings_stand_in_for_a_missing_qemu(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(vm, "RECORDINGS", tmp_path / "recorded")
    kernel = guest(tmp_path, say_and_exit("recorded\n", 0))
    monkeypatch.setitem(vm.EXPERIMENTS, "test_hello", vm.Experiment(
        "test_hello", lambda: {"key": {"t": "rec"}, "boot": {"kernel": kernel, "accel": "tcg", "timeout": 30},
                               "versions": {"assembler": "test"}}))
    live = vm.run_experiment("test_hello")
    assert not live.recorded and live.console == "recorded\n" and "booted just now" in live.provenance()
    [path] = vm.record(["test_hello"])
    assert str(tmp_path) not in path.read_text()  # no host paths in a recording
    monkeypatch.delenv("BOOK_REQUIRE_VM", raising=False)  # CI sets it; this test sets it itself below
    monkeypatch.setenv("PATH", str(tmp_path))  # QEMU is gone
    vm.qemu_version.cache_clear()
    try:
        rec = vm.run_experiment("test_hello")
        assert rec.recorded and rec.console == live.console and rec.versions == {"assembler": "test"}
        assert "recording made by `python -m helpers.vm record`" in rec.provenance() and "QEMU emulator" in rec.provenance()
        monkeypatch.setenv("BOOK_REQUIRE_VM", "1")
        with pytest.raises(vm.VMMissing):
            vm.run_experiment("test_hello")
    finally:
        monkeypatch.undo()
        vm.qemu_version.cache_clear()
    with pytest.raises(vm.VMError, match="no VM experiment 'nope'"):
        vm.run_experiment("nope")


@needs_qemu
def test_a_guest_flooding_its_console_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(vm, "MAX_CONSOLE", 1 << 16)
    flood = "movw $0x3f8, %dx\nmovb $0x41, %al\n1: outb %al, %dx\njmp 1b\n"
    with pytest.raises(vm.VMError, match=r"printed more than 65536 bytes on its console") as e:
        vm.boot(guest(tmp_path, flood), accel="tcg", timeout=60)
    assert "\n" not in str(e.value)
    run = vm.boot(guest(tmp_path, flood), accel="tcg", timeout=60, check=False)
    assert run.stop == "console flood" and len(run.console) == 1 << 16 and run.elapsed < 30
