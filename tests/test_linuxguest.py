"""helpers.linuxguest: the initramfs writer, the console parser, kbuild's .cmd parser, bad input, and the real
guest against its recording (one boot, cached; skipped only where the VM cannot run and BOOK_REQUIRE_VM is unset)."""
import json
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from helpers import linuxguest as L
from helpers import vm

LIVE = not L.missing()
need_live = pytest.mark.skipif(not LIVE and not vm.require_vm_env(), reason="no QEMU/kernel packages here")

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
@settings(max_examples=25, deadline=None)
@given(st.dictionaries(names, st.binary(max_size=300), min_size=1, max_size=5))
def test_initramfs_is_read_back_by_cpio(tmp_path_factory, files):
    blob = L.initramfs({f"/mods/{n}": b for n, b in files.items()}, "#!/bin/sh\n")
    d = tmp_path_factory.mktemp("cpio")
    p = subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=blob, cwd=d,
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    for n, b in files.items():
        assert (d / "mods" / n).read_bytes() == b
    assert (d / "init").read_text() == "#!/bin/sh\n" and len(blob) % 512 == 0


@pytest.mark.parametrize("bad", ["relative/path", "/a/../etc", "/mods/../../x"])
def test_initramfs_refuses_bad_paths(bad):
    with pytest.raises(L.GuestError, match="bad guest path"):
        L.initramfs({bad: b""}, "")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(names, st.lists(st.text(alphabet="abc xyz=-1", max_size=20), max_size=4),
                          st.integers(0, 255), st.lists(st.text(alphabet="kern: msg", max_size=20), max_size=3)),
                min_size=1, max_size=5, unique_by=lambda t: t[0]))
def test_parse_console_round_trip(steps):
    text = "noise\r\n@@BOOTED\r\n"
    for name, out, rc, kern in steps:
        text += "\r\n".join([f"@@BEGIN {name}", *out, f"@@RC {rc}", "@@KERNEL", *kern, f"@@END {name}"]) + "\r\n"
    parsed = L.parse_console(text + "@@DONE\r\n")
    assert {n: (list(s.out), s.rc, list(s.kernel)) for n, s in parsed.items()} == \
        {n: (out, rc, kern) for n, out, rc, kern in steps}


@pytest.mark.parametrize("console", ["", "Kernel panic - not syncing: VFS\n", "@@BEGIN a\nhalf"])
def test_unfinished_guest_is_one_line_error(console):
    with pytest.raises(L.GuestError) as e:
        L.parse_console(console)
    assert "\n" not in str(e.value) and "did not finish" in str(e.value)


def test_parse_cmd_file():
    text = ("cmd_/m/x.o :=  gcc-12 -Wp,-MMD,/m/.x.o.d -nostdinc -mno-red-zone -DKBUILD_MODNAME='\"x\"' "
            "-c -o /m/x.o /m/x.c   ; ./tools/objtool/objtool --orc --retpoline --module /m/x.o\n")
    cc, flags, objtool = L.parse_cmd_file(text)
    assert cc == "gcc-12" and flags[-3:] == ("-c", "-o", "/m/x.o") and "-mno-red-zone" in flags
    assert '-DKBUILD_MODNAME="x"' in flags and objtool == ("--orc", "--retpoline", "--module")
    for bad in ("", "garbage", "cmd_x := 'unbalanced"):
        with pytest.raises(L.GuestError):
            L.parse_cmd_file(bad)


def test_build_modules_refuses_bad_input():
    for bad in (None, {}, {"x.c": "int x;"}, {"Kbuild": "obj-m := a.o\n", "../a.c": ""}):
        with pytest.raises(L.GuestError):
            L.build_modules(bad)


@need_live
def test_compile_error_is_one_line():
    with pytest.raises(L.GuestError) as e:
        L.build_modules({"Kbuild": "obj-m := broken.o\n", "broken.c": "int broken(void) { return }\n"})
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("kbuild failed:") and "error" in msg


@need_live
def test_live_guest_matches_recording_and_is_fast():
    live = L.run_live()
    recorded = json.loads(L.RECORDING.read_text())["data"]
    assert L.comparable(live) == L.comparable(recorded)
    r = L.results()
    assert not r.recorded and r.step("insmod_hello").rc == 0
    i = L.int80()
    assert i["works"] is True and i["ia32_emulation"] == "y"
    assert i["ring3"] == {"int $0x80": "none (exited normally)", "int3": "SIGTRAP", "int $0x81": "SIGSEGV"}


def test_recording_stands_alone():
    data = json.loads(L.RECORDING.read_text())["data"]
    assert data["elapsed"] == 0.0 and data["versions"]["kernel"] and set(data["steps"]) == {n for n, _ in L.STEPS}
    assert "/root" not in json.dumps(data) and "/home" not in json.dumps(data)


def test_kbuild_flags_are_the_kernel_rules():
    f = L.kbuild_flags()
    for flag in ("-mno-sse", "-mno-red-zone", "-mcmodel=kernel", "-mfentry", "-fno-asynchronous-unwind-tables",
                 "-mindirect-branch=thunk-extern", "-mfunction-return=thunk-extern"):
        assert f.has(flag), flag
    assert f.compiler.startswith("gcc") and "--orc" in f.objtool and f.matching("-fcf-protection")


def test_missing_vm_gives_the_recording_or_an_error(monkeypatch):
    monkeypatch.setattr(L, "missing", lambda: ["qemu-system-x86 (apt-get install qemu-system-x86)"])
    monkeypatch.delenv("BOOK_REQUIRE_VM", raising=False)
    r = L.results()
    assert r.recorded and r.provenance().startswith("[recorded by `python -m helpers.linuxguest`")
    assert L.kbuild_flags().recorded and L.int80()["works"]
    monkeypatch.setenv("BOOK_REQUIRE_VM", "1")
    with pytest.raises(L.GuestMissing) as e:
        L.results()
    assert "\n" not in str(e.value) and "qemu-system-x86" in str(e.value)


@need_live
def test_crashing_guest_is_one_line_error():
    # /init exits at once: the kernel panics ("Attempted to kill init!"), and panic=-1 ends QEMU
    rd = L.initramfs({"/bin/busybox": L.BUSYBOX.read_bytes()}, "#!/bin/busybox sh\nexit 3\n")
    with pytest.raises(vm.VMError) as e:
        L._boot(rd, timeout=120)
    assert "\n" not in str(e.value) and "panic" in str(e.value)


def test_kbuild_rules_pick_the_real_flags():
    rules = L.kbuild_flags().rules()
    assert set(rules) == set(L.FLAG_RULES) and all(rules.values()), rules
    assert rules["no red zone (interrupts push on the same stack)"] == ["-mno-red-zone"]
    assert rules["kernel code model (top 2 GiB)"] == ["-mcmodel=kernel"]
    assert rules["IBT / CET (endbr64)"] == ["-fcf-protection=none"]      # Debian 6.1: CONFIG_X86_KERNEL_IBT off


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="-abcdefxyz=,./_0123456789\"' ", min_size=1, max_size=15), max_size=12))
def test_parse_cmd_file_round_trip(flags):
    import shlex
    line = (f"cmd_/m/x.o := gcc-12 {shlex.join(flags)} -c -o /m/x.o /m/x.c ; "
            "./tools/objtool/objtool --orc --module /m/x.o\n")
    cc, parsed, objtool = L.parse_cmd_file("source_x := y\n" + line)
    assert cc == "gcc-12" and parsed == (*flags, "-c", "-o", "/m/x.o") and objtool == ("--orc", "--module")


@need_live
def test_modpost_refusal_is_one_line():
    src = '#include <linux/module.h>\nMODULE_LICENSE("GPL");\nint nowhere(void);\n' \
          'static int __init m_init(void) { return nowhere(); }\nmodule_init(m_init);\n'
    with pytest.raises(L.GuestError) as e:
        L.build_modules({"Kbuild": "obj-m := undef.o\n", "undef.c": src})
    assert str(e.value) == 'kbuild failed: ERROR: modpost: "nowhere" [M/undef.ko] undefined!'


@pytest.mark.parametrize("call", [lambda: L.initramfs({"/mods/a": "text, not bytes"}, ""),
                                  lambda: L.initramfs({1: b""}, ""), lambda: L.initramfs([], ""),
                                  lambda: L.initramfs({}, None), lambda: L.parse_console(None),
                                  lambda: L.parse_console(b"bytes"), lambda: L.parse_cmd_file(None),
                                  lambda: L.results().step("no_such_step"),
                                  lambda: L.flag(L.results(), "int80", "no_such_answer"),
                                  lambda: L.verdict(L.results(), "no_such_module")])
def test_bad_input_is_one_line_guest_error(call):
    with pytest.raises(L.GuestError) as e:
        call()
    assert "\n" not in str(e.value)


@settings(max_examples=50, deadline=None)
@given(st.lists(names, max_size=6), st.lists(st.integers(0, 60), max_size=4))
def test_loader_line_readers(symbols, relocs):
    lines = [f"m: Unknown symbol {s} (err -2)" for s in symbols] + ["tsc: Refined TSC clocksource calibration"]
    assert L.unknown_symbols(lines) == symbols
    rl = [f"module: m: Unknown rela relocation: {n}" for n in relocs]
    assert L.rejected_relocations(rl + rl) == [L.relocation_name(n) for n in dict.fromkeys(relocs)]
    assert L.relocation_name(22) == "R_X86_64_GOTTPOFF" and L.relocation_name(23) == "R_X86_64_TPOFF32"


def test_comparable_writes_out_only_what_a_headers_point_release_changes():
    """Two runs on two Debian point releases: the release, __UNIQUE_ID's counter and the Go module's relocation
    counts differ and compare equal; another symbol, relocation type or kernel message does not."""
    def run(release, counter, n32, name="__UNIQUE_ID_license", rtype="R_X86_64_32", line="hello: loaded"):
        return {"elapsed": counter / 10, "versions": {"kernel": release},
                "host": {"hello_symbols": [[f"{name}{counter}", 12, "OBJECT", "LOCAL", ".modinfo"]],
                         "go_relocations": {rtype: n32, "R_X86_64_PLT32": 7},
                         "flags": [f"-I/usr/src/linux-headers-{release.replace('amd64', 'common')}/include"]},
                "steps": {"insmod_hello": [line]}}
    base = L.comparable(run("6.1.0-57-amd64", 194, 51191))
    assert L.comparable(run("6.1.0-50-amd64", 191, 51190)) == base
    for other in (run("6.1.0-57-amd64", 194, 51191, name="__UNIQUE_ID_author"),
                  run("6.1.0-57-amd64", 194, 51191, rtype="R_X86_64_64"),
                  run("6.1.0-57-amd64", 194, 51191, line="hello: Unknown symbol")):
        assert L.comparable(other) != base
