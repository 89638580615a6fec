"""helpers.elf on real builds: sections, symbols, PT_INTERP/DT_NEEDED, static vs dynamic; bad input fails in one line."""
import pytest
from hypothesis import given, settings, strategies as st

from helpers import toolchain
from helpers.elf import ElfError, load_segments, read_elf

SRC = {"main.c": "static int hidden_helper(int x){return x*3;}\n"
                 "__attribute__((visibility(\"hidden\"))) int hid(int x){return x+1;}\n"
                 "int global_fn(int x){return hidden_helper(x)+hid(x);}\n"
                 "int main(void){return global_fn(2) == 9 ? 0 : 1;}\n"}


@pytest.fixture(scope="module")
def static_exe():
    return toolchain.cc(SRC, compiler="zig", target="x86_64-linux-musl", flags=("-O0", "-static"), output="exe").path


@pytest.fixture(scope="module")
def obj():
    return toolchain.cc(SRC, compiler="zig", target="x86_64-linux-musl", flags=("-O0",), output="obj").path


def test_static_exe_has_no_interp_and_runs(static_exe):
    info = read_elf(static_exe)
    assert info.is_static and info.interp is None and info.needed == []
    assert info.elf_type == "ET_EXEC" and info.machine == "EM_X86_64"
    assert info.text_size > 0 and "X" in info.section(".text").flags and "A" in info.section(".text").flags
    assert toolchain.run([static_exe], timeout=10).returncode == 0


def test_symbols_binding_and_visibility(obj):
    info = read_elf(obj)
    assert info.elf_type == "ET_REL"
    assert info.symbol("global_fn")[3:6] == ("FUNC", "GLOBAL", "DEFAULT")
    assert info.symbol("hidden_helper").bind == "LOCAL"
    assert info.symbol("hid").visibility == "HIDDEN"
    assert info.symbol("global_fn").section == ".text"


@pytest.mark.skipif(not toolchain.have("gcc"), reason="needs gcc")
def test_dynamic_gcc_exe_has_interp_and_needed():
    info = read_elf(toolchain.cc(SRC, compiler="gcc", output="exe").path)
    assert info.interp and info.interp.endswith(".so.2")
    assert "libc.so.6" in info.needed and not info.is_static
    assert any(s.type == "PT_INTERP" for s in info.segments)


def test_load_segments_cover_entry(static_exe):
    info = read_elf(static_exe)
    segs = load_segments(static_exe)
    assert any(v <= info.entry < v + len(d) and "X" in fl for v, d, fl in segs)


def test_missing_and_non_elf(tmp_path):
    with pytest.raises(ElfError, match="no such file"):
        read_elf(tmp_path / "nope")
    (tmp_path / "x").write_bytes(b"hello")
    with pytest.raises(ElfError, match="not an ELF"):
        read_elf(tmp_path / "x")


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_after_magic_raise_one_line(tmp_path_factory, tail):
    p = tmp_path_factory.mktemp("elf") / "f"
    p.write_bytes(b"\x7fELF" + tail)
    try:
        read_elf(p)
    except ElfError as e:
        assert "\n" not in str(e)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_corrupted_real_object_raises_one_line_or_parses(tmp_path_factory, obj, data):
    raw = bytearray(obj.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(4, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(16, len(raw)))
    p = tmp_path_factory.mktemp("elf") / "f.o"
    p.write_bytes(bytes(raw[:cut]))
    try:
        read_elf(p)
    except ElfError as e:
        assert "\n" not in str(e)


# ---------------------------------------------------------------- the parse cache (issue 13)
def test_read_elf_is_cached_per_file_and_content(static_exe, obj, tmp_path, monkeypatch):
    import os
    import shutil

    from helpers import elf, filecache

    monkeypatch.setattr(filecache, "ROOT", tmp_path / "read")      # an empty disk layer: every new content parses
    copy = tmp_path / "prog"
    shutil.copy(static_exe, copy)
    first = read_elf(copy)
    parses = []
    real = elf._parse
    monkeypatch.setattr(elf, "_parse", lambda p: parses.append(p) or real(p))
    again = read_elf(copy)
    assert parses == [] and again == first and again is not first        # a hit, and the caller's own copy
    again.symbols.clear()
    assert read_elf(copy).symbols == first.symbols                         # the cache is not the caller's list
    st = os.stat(copy)
    shutil.copy(obj, copy)                                                 # a changed file ...
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))                    # ... even with the old mtime
    changed = read_elf(copy)
    assert len(parses) == 1 and changed.elf_type == "ET_REL" != first.elf_type
    data = bytearray(copy.read_bytes())                                    # same size, same mtime, one byte
    sym = changed.symbol("global_fn")
    assert sym is not None
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    read_elf(copy)
    assert len(parses) == 2
