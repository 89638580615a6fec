"""helpers.unwind: CFI decoding, CFI vs frame-pointer unwinding on real compiler output, and bad input.

The central check (issue 4): on -fno-omit-frame-pointer builds, the CFI unwinder and the rbp-chain walk
agree frame by frame; on -fomit-frame-pointer builds, CFI still recovers the chain and the rbp walk does not.
"""
import pytest
from hypothesis import given, settings, strategies as st

from helpers import toolchain
from helpers.unwind import (CHAIN, CfiRow, CfiTable, Fde, UnwindError, assemble, build_chain, cfi_entries,
                            unwind_both, unwind_cfi, unwind_fp)

COMPILERS = ["zig"] + (["gcc"] if toolchain.have("gcc") else [])

DEMO_S = """
    .text
    .globl demo
    .type demo, @function
demo:
    .cfi_startproc
    .cfi_def_cfa %rsp, 8
    .cfi_offset %rip, -8
    pushq %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp
    movl $42, %eax
    popq %rbp
    .cfi_def_cfa %rsp, 8
    ret
    .cfi_endproc
    .size demo, .-demo
"""


def emu_available():
    try:
        from helpers.emu import Machine  # noqa: F401
        return True
    except ImportError:
        return False


needs_emu = pytest.mark.skipif(not emu_available(), reason="helpers.emu.Machine not available yet")


@needs_emu
@pytest.mark.parametrize("compiler", COMPILERS)
def test_cfi_matches_frame_pointer_chain(compiler):
    cfi, fp, stop = unwind_both(build_chain(compiler, frame_pointer=True).path)
    assert cfi.chain() == list(CHAIN)
    assert [f.key() for f in cfi.frames] == [f.key() for f in fp.frames]
    assert cfi.stopped.startswith("return address 0") and fp.stopped.startswith("return address 0")


@needs_emu
@pytest.mark.parametrize("compiler", COMPILERS)
def test_cfi_survives_omitted_frame_pointer_but_rbp_walk_does_not(compiler):
    cfi, fp, stop = unwind_both(build_chain(compiler, frame_pointer=False).path)
    assert cfi.chain() == list(CHAIN)
    assert fp.chain() != list(CHAIN)
    # every CFA is the caller's rsp before the call: the return address sits just below it
    for f in cfi.frames:
        assert int.from_bytes(stop.read(f.cfa - 8, 8), "little") == f.return_address


def test_assembled_directives_encode_entry_rule():
    entries = cfi_entries(assemble(DEMO_S))
    cie = next(e for e in entries if e.kind == "CIE")
    assert "DW_CFA_def_cfa: rsp+8" in cie.instructions and "DW_CFA_offset: rip at CFA-8" in cie.instructions
    table = CfiTable.from_elf(assemble(DEMO_S))
    rows = table.function("demo").rows
    assert [r.text() for r in rows] == ["CFA=rsp+8  rip=[CFA-8]", "CFA=rsp+16  rip=[CFA-8]  rbp=[CFA-16]",
                                        "CFA=rbp+16  rip=[CFA-8]  rbp=[CFA-16]", "CFA=rsp+8  rip=[CFA-8]  rbp=[CFA-16]"]
    assert [r.pc for r in rows] == [0, 1, 4, 10]  # after push (1 byte), after mov (3 bytes), before ret


def test_bad_assembly_is_one_line():
    with pytest.raises(UnwindError) as e:
        assemble("    .cfi_startproc\n    bogus %rax\n")
    assert "\n" not in str(e.value)


def _table():
    # f: [0x1000, 0x1100), no frame pointer, saved rbx; g (its caller): frame pointer
    f = Fde(0x1000, 0x1100, (CfiRow(0x1000, "rsp", 8, {"rip": -8}),
                             CfiRow(0x1004, "rsp", 32, {"rip": -8, "rbx": -16})), "f")
    g = Fde(0x2000, 0x2100, (CfiRow(0x2000, "rsp", 8, {"rip": -8}),
                             CfiRow(0x2004, "rbp", 16, {"rip": -8, "rbp": -16})), "g")
    return CfiTable([f, g], ".eh_frame")


def test_synthetic_two_frames():
    top = 0x9000
    mem = {top - 8: 0, top - 16: 0,                      # g: return address 0, saved rbp 0
           top - 24: 0x2050, top - 32: 77}               # f: return into g, saved rbx 77
    regs = {"rip": 0x1010, "rsp": top - 16 - 32, "rbp": top - 16, "rbx": 5}
    read = lambda a, n: mem.get(a, 0xAA).to_bytes(8, "little")
    u = unwind_cfi(_table(), regs, read)
    assert u.chain() == ["f", "g"]
    assert u.frames[0].cfa == top - 16 and u.frames[0].saved["rbx"] == (top - 32, 77)
    assert u.frames[1].cfa == top and u.stopped.startswith("return address 0")


def test_bad_registers_are_one_line():
    with pytest.raises(UnwindError, match="must include rip"):
        unwind_cfi(_table(), {"rsp": 0}, lambda a, n: b"")
    with pytest.raises(UnwindError, match="64-bit"):
        unwind_fp({"rip": 0, "rsp": -1, "rbp": 0}, lambda a, n: b"")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=256), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
       st.sampled_from([0x1000, 0x1010, 0x2008, 0x3000]))
def test_random_stacks_never_crash_or_loop(data, rsp, rbp, rip):
    base = rsp & ~7

    def read(addr, n):
        off = addr - base
        if off < 0 or off + n > len(data):
            raise KeyError(addr)
        return data[off:off + n]

    regs = {"rip": rip, "rsp": rsp, "rbp": rbp}
    for u in (unwind_cfi(_table(), regs, read, max_frames=16), unwind_fp(regs, read, max_frames=16)):
        assert len(u.frames) <= 16 and "\n" not in u.stopped


def _eh_frame_span(path):
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".eh_frame")
        return sec["sh_offset"], sec["sh_size"]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_corrupted_eh_frame_is_one_line_error_or_parses(tmp_path_factory, data):
    path = build_chain("zig", frame_pointer=False).path
    raw = bytearray(path.read_bytes())
    off, size = _eh_frame_span(path)
    for _ in range(data.draw(st.integers(1, 12))):
        raw[off + data.draw(st.integers(0, size - 1))] = data.draw(st.integers(0, 255))
    p = tmp_path_factory.mktemp("cfi") / "bad"
    p.write_bytes(bytes(raw))
    try:
        t = CfiTable.from_elf(p)
    except UnwindError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(t.fdes, list)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["   LOC           CFA      rbx   ra    ", "0000000000401000 rsp+8    u     c-8   ",
                                 "00000000004010zz rsp+8 u c-8", "", "garbage", "0 a b c", "LOC CFA"]), max_size=20),
       st.text(max_size=200))
def test_frames_interp_parser_never_crashes(lines, noise):
    from helpers.unwind import parse_frames_interp
    rows = parse_frames_interp("\n".join(lines) + "\n" + noise)
    assert all(isinstance(pc, int) and isinstance(v, tuple) for pc, v in rows.items())


def test_frames_interp_parser_reads_a_table():
    from helpers.unwind import parse_frames_interp
    text = "   LOC           CFA      rbp   ra\n0000000000401000 rsp+8    u     c-8\n0000000000401001 rsp+16   c-16  c-8\n"
    assert parse_frames_interp(text) == {0x401000: ("rsp+8", {"ra": "c-8"}),
                                         0x401001: ("rsp+16", {"rbp": "c-16", "ra": "c-8"})}


@needs_emu
def test_draw_stack_labels_every_word_and_frame():
    import matplotlib
    matplotlib.use("Agg")
    from helpers.elf import read_elf
    from helpers.unwind import symbolizer
    from helpers.viz.frames import draw_stack, word_roles
    path = build_chain("zig", frame_pointer=True).path
    cfi, fp, stop = unwind_both(path)
    words = stop.stack_words()
    fig = draw_stack(words, cfi, fp=fp, symbolize=symbolizer(read_elf(path)))
    texts = [t.get_text() for t in fig.axes[0].texts]
    shown = [a for a, _ in words if a < cfi.frames[-1].cfa]          # trim=True drops the unused top
    assert shown and all(any(f"{a:#x}" in t for t in texts) for a in shown)
    assert not any(f"{a:#x}  " in t for a, _ in words if a >= cfi.frames[-1].cfa for t in texts)
    assert all(any(f"#{f.index} {f.function}" in t for t in texts) for f in cfi.frames)
    roles = word_roles(cfi)
    assert all(roles[f.cfa - 8].startswith("return address") for f in cfi.frames)


@needs_emu
def test_cfa_is_rsp_before_the_call():
    from helpers.unwind import observe_entry
    o = observe_entry()
    assert o.cfa_at_entry == o.rsp_before_call == o.rsp_at_entry + 8 == o.cfa_in_body
    assert o.word_at_entry_rsp == o.return_address          # return address at CFA-8
    assert o.saved_rbp_slot == o.caller_rbp                 # caller's rbp at CFA-16


@pytest.mark.skipif(not toolchain.have("objdump"), reason="needs objdump")
@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("fp", [True, False])
def test_our_rows_equal_objdump_frames_interp(compiler, fp):
    from helpers.unwind import objdump_rows, rows_agree_with_objdump
    path = build_chain(compiler, frame_pointer=fp).path
    assert rows_agree_with_objdump(CfiTable.from_elf(path), objdump_rows(path)) == []


@pytest.mark.skipif(not toolchain.have("gcc"), reason="needs gcc")
def test_gcc_frame_pointer_defaults_and_backtrace_without_rbp():
    from helpers.unwind import BACKTRACE_FUNCS, gcc_default_frame_pointer, gcc_optimizer_setting, glibc_backtrace
    assert gcc_default_frame_pointer("-O0") and not gcc_default_frame_pointer("-O2")
    assert gcc_optimizer_setting("-O0") == "[disabled]" and gcc_optimizer_setting("-O2") == "[enabled]"
    names, prologues = glibc_backtrace(frame_pointer=False)
    assert names[:4] == list(BACKTRACE_FUNCS) and not any(prologues.values())
    names_fp, prologues_fp = glibc_backtrace(frame_pointer=True)
    assert names_fp[:4] == list(BACKTRACE_FUNCS) and all(prologues_fp.values())


def test_sets_up_frame_pointer_patterns():
    from helpers.unwind import sets_up_frame_pointer
    assert sets_up_frame_pointer(bytes.fromhex("55 4889e5 c3".replace(" ", "")))
    assert sets_up_frame_pointer(bytes.fromhex("f30f1efa 55 be10000000 4889e5".replace(" ", "")))
    assert not sets_up_frame_pointer(bytes.fromhex("53 4889fb c3".replace(" ", "")))
    assert not sets_up_frame_pointer(b"")


def test_draw_cfi_rows_one_band_per_function_and_bad_names():
    from helpers.viz.frames import draw_cfi_rows
    table = CfiTable.from_elf(build_chain("zig", frame_pointer=False).path)
    fig = draw_cfi_rows(table, CHAIN)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CHAIN)
    rows = sum(len(table.function(n).rows) for n in CHAIN)
    assert len([p for p in ax.patches if p.get_width() > 0]) == rows
    with pytest.raises(ValueError):
        draw_cfi_rows(table, ["no_such_function"])
