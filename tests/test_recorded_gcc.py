"""gcc's recorded builds (helpers.recorded.gcc_build): the files chapters 4c and 4d analyse where gcc is missing.

Two properties: the recording is what gcc makes here from the same inputs (where gcc is installed), and the
chapters' analyses give the same results without gcc (in a real toolless run, helpers.toolless mode 1) as with it.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from helpers import recorded, toolchain, toolless

ROOT = Path(__file__).resolve().parents[1]
HAVE_GCC = toolchain.have("gcc")


def elf_summary(path) -> list:
    """Every section: its name, size and contents. GCC names an -flto object's GIMPLE sections with a random
    number in hex (``.gnu.lto_.decls.2013f6729bcab071``; 15 digits or fewer when it starts with zeros) that
    also lands in their compressed streams, whose sizes then differ by a few bytes from build to build. So for
    those sections (and the section-name table) only the name without the number is compared."""
    out = []
    with open(path, "rb") as fh:
        for s in ELFFile(fh).iter_sections():
            name = re.sub(r"\.[0-9a-f]{1,16}$", "", s.name) if s.name.startswith(".gnu.lto_") else s.name
            varies = s.name.startswith(".gnu.lto_") or s.name == ".shstrtab"
            out.append((name, None, None) if varies else (name, s["sh_size"], s.data()))
    return out


@pytest.mark.skipif(not HAVE_GCC, reason="the recording can only be checked against gcc")
def test_gcc_recordings_match_a_live_gcc_build():
    manifest = json.loads(recorded.GCC_MANIFEST.read_text())
    assert manifest["tool"] == toolchain.require("gcc").version, "re-record: python -m helpers.recorded gcc"
    recipes = recorded.gcc_recipes()
    assert {recorded.gcc_key(*r) for r in recipes} == set(manifest["builds"]), \
        "the chapters build other things with gcc than were recorded: python -m helpers.recorded gcc"
    for source, flags, output in recipes:
        entry = manifest["builds"][recorded.gcc_key(source, flags, output)]
        live = toolchain.cc(source, compiler="gcc", flags=flags, output=output)
        saved = recorded.GCC_DIR / entry["file"]
        assert elf_summary(saved) == elf_summary(live.path), f"stale recording of gcc {' '.join(flags)} ({output})"
        assert entry["flags"] == list(flags) and entry["command"] == list(live.command)
        assert os.access(saved, os.X_OK) == (output == "exe")


def test_without_gcc_a_build_is_the_recorded_file(monkeypatch):
    monkeypatch.setattr(recorded.toolchain, "have", lambda name: False)
    source, flags, output = recorded.gcc_recipes()[0]
    b = recorded.gcc_build(source, flags=flags, output=output)
    assert b.recorded and b.path.parent == recorded.GCC_DIR and b.path.is_file()
    assert recorded.gcc_provenance().startswith("[gcc's builds: recorded by `python -m helpers.recorded gcc` with gcc")
    with pytest.raises(toolchain.ToolMissing, match="no recording of this gcc build") as e:
        recorded.gcc_build(source, flags=("-O3", "-funroll-loops"), output=output)
    assert "\n" not in str(e.value)
    assert not recorded.gcc_available(source, ("-O3",), output)


def test_a_damaged_recording_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(recorded.toolchain, "have", lambda name: False)
    source, flags, output = recorded.gcc_recipes()[0]
    entry = json.loads(recorded.GCC_MANIFEST.read_text())["builds"][recorded.gcc_key(source, flags, output)]
    data = bytearray((recorded.GCC_DIR / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / entry["file"]).write_bytes(bytes(data))
    monkeypatch.setattr(recorded, "GCC_DIR", tmp_path)
    with pytest.raises(toolchain.ToolchainError, match="missing or damaged"):
        recorded.gcc_build(source, flags=flags, output=output)


# What chapters 4c and 4d print and assert, computed from gcc's builds; run in this process and in a toolless one.
ANALYSIS = r"""
import json
from dataclasses import asdict
from helpers import kcodegen, lto, recorded

builds = lto.experiment()
ran = lto.runnable(builds)
ev = kcodegen.evidence()
# cgo's C part is compiled by the C compiler cgo finds (gcc, or zig cc without it), a live build either way:
# chapter 4d reads only Go's %fs and %gs use from it, which that compiler does not change.
cgo = {k: ev.measures["go_cgo"][k] for k in ("fs", "fs_nfuncs", "fs_funcs", "gs")}
user_c, kern_c = kcodegen.build_c(kcodegen.USER_CFLAGS), kcodegen.build_c(kcodegen.cflags_for(ev.facts["cflags"], ev.compiler))
print(json.dumps({
    "compilers": lto.compilers(),
    "builds": [[b.label, b.text_size, b.functions, b.calls_in_main, b.listing, lto.hot_loop(b), lto.function_sizes(b)]
               for b in builds],
    "recorded": [b.label for b in builds if b.recorded],
    "ran": [b.label for b in ran], "result": lto.check_results(ran),
    "objects": [asdict(o) for o in lto.objects()],
    "go_sections": [asdict(g) for g in lto.go_sections()],
    "c_compiler": ev.compiler, "kernel_flags": ev.kernel_flags, "table": kcodegen.table_text(kcodegen.matrix(ev)),
    "measures": {k: v and {f: x for f, x in v.items() if f != "path"} for k, v in ev.measures.items() if k != "go_cgo"},
    "cgo": cgo,
    "listings": [kcodegen.listing(p, f) for p in (user_c.path, kern_c.path) for f in ("clear_big", "scratch", "apply", "hit")],
    "provenance": recorded.gcc_provenance(),
}))
"""


def analysis(env=None) -> dict:
    p = subprocess.run([sys.executable, "-c", ANALYSIS], env=env, capture_output=True, text=True, timeout=1200,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


@pytest.mark.skipif(not HAVE_GCC, reason="the analyses with gcc can only be made where gcc is installed")
def test_without_gcc_the_chapters_analyses_give_the_same_results(tmp_path):
    with_gcc = analysis({**os.environ, "PYTHONPATH": str(ROOT)})
    env = toolless.environment(1, tmp_path)
    env["PYTHONPATH"] = str(ROOT)
    without = analysis(env)
    assert with_gcc["recorded"] == [] and with_gcc["provenance"].startswith("[gcc's builds: run here with gcc")
    assert without["recorded"] == ["gcc no LTO", "gcc -flto"] and "recorded" in without["provenance"]
    assert without["ran"] == with_gcc["ran"] == [b[0] for b in with_gcc["builds"]]  # the recorded programs run here
    assert with_gcc["compilers"] == ["gcc", "zig"] and with_gcc["c_compiler"] == "gcc"
    for key in with_gcc:
        if key not in ("recorded", "provenance"):
            assert without[key] == with_gcc[key], key
