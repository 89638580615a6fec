"""helpers.kunwind: the kernel's ORC unwind tables, decoded from a real Debian module and from a synthetic one."""
import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from helpers import kunwind as K
from helpers import toolchain

HAVE_MODULE = K._live(K.MODULE)[0] is not None
REQUIRED = os.environ.get("BOOK_REQUIRE_VM") == "1"      # CI installs Debian's kernel packages and sets this

# A function and two hand-written ORC rows (struct orc_entry: s16 sp_offset, s16 bp_offset, then sp_reg:4
# bp_reg:4 type:2 end:1 -- little endian): at +0 prev_sp = sp+8; after `push %rbp`, prev_sp = sp+16, rbp at -16.
ORC_S = """
    .text
    .type foo, @function
foo:
    pushq %rbp
    movq %rsp, %rbp
    popq %rbp
    ret
    .size foo, .-foo
    .section .orc_unwind_ip, "a"
    .long foo - .
    .long foo + 1 - .
    .section .orc_unwind, "a"
    .short 8, 0, 0x0005
    .short 16, -16, 0x0015
"""


@pytest.fixture(scope="module")
def synthetic():
    return toolchain.cc({"orc.s": ORC_S}, compiler="zig", target="x86_64-freestanding-none", output="obj").path


def test_synthetic_orc_rows(synthetic):
    rows = K.read_orc(synthetic, K.CITED_REGISTERS)
    assert [(r.function, r.offset, r.sp_reg, r.sp_offset, r.bp_reg, r.bp_offset, r.type) for r in rows] == [
        ("foo", 0, "sp", 8, "undefined", 0, "call"), ("foo", 1, "sp", 16, "prev_sp", -16, "call")]
    assert rows[1].text() == "prev_sp = sp+16; return address at prev_sp-8; rbp at prev_sp-16"
    assert K.unwind_sections(synthetic)[".orc_unwind"] == 12
    sp = K.straight_line_sp(K.function_code(synthetic, "foo"))
    assert all(sp[r.offset] == r.sp_offset for r in rows)


def test_straight_line_sp():
    code = bytes.fromhex("55" "53" "4883ec20" "e800000000" "4883c420" "5b" "5d" "c3")
    assert K.straight_line_sp(code) == {0: 8, 1: 16, 2: 24, 6: 56, 11: 56, 15: 24, 16: 16, 17: 8}
    assert K.straight_line_sp(bytes.fromhex("55" "eb00" "53")) == {0: 8, 1: 16}   # stops at the first branch


def test_bad_input(tmp_path):
    (tmp_path / "x.ko").write_bytes(b"not an elf")
    with pytest.raises(K.KunwindError):
        K.read_orc(tmp_path / "x.ko")
    with pytest.raises(K.KunwindError):
        K.unwind_sections(tmp_path / "missing.ko")
    for bad in ("/etc/passwd", "../../etc/x.ko", "kernel/fs/fat/fat.o", None):
        with pytest.raises(K.KunwindError):
            K.evidence(bad)


def test_orc_registers_from_header_text():
    text = "#define ORC_REG_UNDEFINED\t\t0\n#define ORC_REG_SP\t\t\t5\n#define ORC_REG_MAX\t\t\t15\n"
    assert K.orc_registers(text) == {0: "undefined", 5: "sp"}
    with pytest.raises(K.KunwindError):
        K.orc_registers("/* nothing */")


@pytest.mark.skipif(K.kernel_tree_file(K.ORC_TYPES_H) is None and not REQUIRED, reason="needs Debian's linux-headers")
def test_cited_registers_match_the_installed_header():
    assert K.orc_registers() == K.CITED_REGISTERS


@pytest.mark.skipif(not HAVE_MODULE and not REQUIRED, reason="needs Debian's linux-image (installed by .ci/run)")
def test_real_module_rows_match_its_code_and_the_recording(monkeypatch):
    ev = K.evidence()
    assert not ev.recorded and ev.sections[".eh_frame"] == 0 and ev.rows_total == ev.sections[".orc_unwind"] // 6
    sp = K.straight_line_sp(ev.code)
    prologue = [r for r in ev.rows if r.offset <= max(sp)]
    assert len(prologue) >= 5 and all(r.sp_offset == sp[r.offset] for r in prologue)
    monkeypatch.setattr(K, "_live", lambda module: (None, None))
    rec = K.evidence()
    assert rec.recorded and rec.function == ev.function
    # the chapter's function is the same code with the same ORC rows in every point release so far; the module's
    # section sizes are compared only within one release (each release compiles the rest of fat.ko again)
    assert (rec.rows, rec.code) == (ev.rows, ev.code), f"re-record for {ev.release}: python -m helpers.kunwind"
    if rec.release == ev.release:
        assert (rec.sections, rec.rows_total) == (ev.sections, ev.rows_total)
    else:
        assert set(rec.sections) == set(ev.sections) and rec.sections[".eh_frame"] == 0


def test_the_recording_shows_the_same_agreement(monkeypatch):
    monkeypatch.setattr(K, "_live", lambda module: (None, None))     # as on a machine without the kernel package
    rec = K.evidence()
    assert rec.recorded and "recorded" in rec.provenance() and rec.sections[".eh_frame"] == 0
    sp = K.straight_line_sp(rec.code)
    assert all(r.sp_offset == sp[r.offset] for r in rec.rows if r.offset <= max(sp))
    with pytest.raises(K.KunwindError):
        K.evidence("kernel/fs/nls/nls_ascii.ko")                  # not what was recorded


_ROW = st.tuples(st.integers(-2**15, 2**15 - 1), st.integers(-2**15, 2**15 - 1), st.sampled_from(sorted(K.CITED_REGISTERS)),
                 st.sampled_from(sorted(K.CITED_REGISTERS)), st.sampled_from(sorted(K.ORC_TYPES)), st.booleans())


@given(st.lists(_ROW, min_size=1, max_size=6))
@settings(max_examples=12, deadline=None)
def test_read_orc_decodes_what_was_encoded(rows):
    # one function of len(rows) one-byte instructions, one ORC row at each byte, assembled by zig cc
    src = ["    .text", "    .type foo, @function", "foo:", *["    nop"] * len(rows), "    .size foo, .-foo",
           '    .section .orc_unwind_ip, "a"', *[f"    .long foo + {k} - ." for k in range(len(rows))],
           '    .section .orc_unwind, "a"']
    for sp, bp, spr, bpr, typ, end in rows:
        src.append(f"    .short {sp}, {bp}, {spr | bpr << 4 | typ << 8 | int(end) << 10}")
    path = toolchain.cc({"orc.s": "\n".join(src) + "\n"}, compiler="zig", target="x86_64-freestanding-none",
                        output="obj").path
    got = K.read_orc(path, K.CITED_REGISTERS)
    assert [(r.offset, r.sp_offset, r.bp_offset, r.sp_reg, r.bp_reg, r.type, r.end) for r in got] == [
        (k, sp, bp, K.CITED_REGISTERS[spr], K.CITED_REGISTERS[bpr], K.ORC_TYPES[typ], end)
        for k, (sp, bp, spr, bpr, typ, end) in enumerate(rows)]


@pytest.mark.parametrize("call", [lambda: K.read_orc(None), lambda: K.unwind_sections(12), lambda: K.orc_registers(5),
                                  lambda: K.straight_line_sp("55"), lambda: K.function_code(None, "f")])
def test_wrong_types_are_one_line_errors(call):
    with pytest.raises(K.KunwindError):
        call()
