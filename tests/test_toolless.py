"""The reduced-tool harness (helpers.toolless) really removes the tools, so a toolless run cannot pass vacuously."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import toolless

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, shutil
from helpers import toolchain
names = ["gcc", "cc", "as", "ld", "objdump", "readelf", "objcopy", "ar", "x86_64-linux-gnu-gcc", "gcc-12",
         "ld.gold", "go", "zig", "python3"]
print(json.dumps({"which": {n: shutil.which(n) for n in names},
                  "have": {n: toolchain.have(n) for n in ("go", "zig", "gcc", "as", "objdump", "readelf")},
                  "require_vm": __import__("os").environ.get("BOOK_REQUIRE_VM")}))
"""


def probe(mode, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOK_REQUIRE_VM", "1")
    env = toolless.environment(mode, tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    p = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("mode", toolless.MODES)
def test_the_c_toolchain_is_gone_and_the_rest_stays(mode, tmp_path, monkeypatch):
    seen = probe(mode, tmp_path, monkeypatch)
    gone = [n for n in ("gcc", "cc", "as", "ld", "objdump", "readelf", "objcopy", "ar", "x86_64-linux-gnu-gcc",
                        "gcc-12", "ld.gold")]
    assert {n: seen["which"][n] for n in gone} == {n: None for n in gone}
    assert not any(seen["have"][n] for n in ("gcc", "as", "objdump", "readelf"))
    assert seen["which"]["python3"] is not None  # everything else is still found
    assert seen["require_vm"] is None  # the VM chapters may fall back to recordings


def test_mode_1_keeps_the_pinned_toolchains_and_mode_2_hides_them(tmp_path, monkeypatch):
    seen = probe(1, tmp_path / "1", monkeypatch)
    assert (seen["have"]["go"], seen["have"]["zig"]) == (True, True)
    seen = probe(2, tmp_path / "2", monkeypatch)
    assert (seen["have"]["go"], seen["have"]["zig"], seen["which"]["go"], seen["which"]["zig"]) == \
        (False, False, None, None)


@pytest.mark.skipif(not os.path.exists("/usr/bin/gcc"), reason="the machine has no gcc to hide")
def test_the_probe_would_see_the_tools_outside_the_harness():
    # Outside the harness the same probe finds them: the checks above are not true of every PATH.
    p = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    seen = json.loads(p.stdout)
    assert seen["which"]["gcc"] and seen["which"]["as"] and seen["have"]["go"]


@pytest.mark.parametrize("name,mode,hidden", [
    ("gcc", 1, True), ("x86_64-linux-gnu-ld.bfd", 1, True), ("gcc-12", 1, True), ("ar", 1, True),
    ("go", 1, False), ("go", 2, True), ("zig", 2, True), ("ld.so", 1, False), ("gas-tool", 1, False),
    ("python3", 2, False), ("qemu-system-x86_64", 2, False), ("dpkg-query", 2, False)])
def test_which_names_are_hidden(name, mode, hidden):
    assert toolless.removed(name, mode) is hidden


def test_bad_mode_is_one_line():
    with pytest.raises(ValueError, match="mode must be one of"):
        toolless.removed("gcc", 3)
    assert toolless.main(["3"]) == 2


def test_a_c_archive_builds_without_binutils_ar(tmp_path, monkeypatch):
    # Go's linker packs -buildmode=c-archive with `ar`; without binutils toolchain hands it `zig ar` (chapter 2c).
    env = toolless.environment(1, tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    code = ("from helpers import gosyms, toolchain\n"
            "b = toolchain.go_build(gosyms.CGO_EXPORT_GO, buildmode='c-archive', cgo=True)\n"
            "names = [n for n, _ in gosyms.ar_members(b.path)]\n"
            "print(len(names), any(n.endswith('.o') for n in names), any('-extar=' in a for a in b.command))\n")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    count, has_objects, via_shim = p.stdout.split()
    assert int(count) > 1 and has_objects == "True" and via_shim == "True"
