"""helpers.abi: the convention tables agree with real compilers, checked by running compiled code.

Each C convention's callees ``f0..f10`` are compiled once per available compiler (zig cc always, gcc when
the host has it); Go's come from one ``go build``. hypothesis then draws argument lists, the book's
:func:`place_arguments` decides where they go, the emulator runs the real callee, and the callee's result
(a weighted sum that notices any misplaced argument) and the stack it leaves must match.
"""
import os

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings, strategies as st

from helpers import abi, toolchain
from helpers.asm import disassemble

COMPILERS = abi.available_compilers()


@pytest.fixture(scope="module")
def c_callees():
    return {(name, comp): abi.load_object(toolchain.cc(abi.callee_source(name), **abi.compile_flags(name, comp)).path)
            for name in abi.C_CONVENTIONS for comp in COMPILERS}


@pytest.fixture(scope="module")
def go_callees():
    b = toolchain.go_build(abi.callee_source("go-abiinternal"))
    return abi.load_functions(b.path, [f"main.F{n}" for n in range(abi.CALLEE_ARGS)])


def _args(word_bits):
    return st.lists(st.integers(0, (1 << word_bits) - 1), max_size=abi.CALLEE_ARGS - 1)


@settings(max_examples=12)
@given(data=st.data())
def test_c_callees_find_arguments_where_place_arguments_puts_them(c_callees, data):
    for (name, comp), text in c_callees.items():
        conv = abi.convention(name)
        args = data.draw(_args(8 * conv.word), label=f"{name}/{comp}")
        p = abi.place_arguments(conv, args)
        r = abi.run_call(text, f"f{len(args)}", conv, args)
        assert r.value == abi.expected(args, conv), (name, comp, args)
        # C08 and GCC's fastcall/stdcall: only callee-pops conventions remove their stack arguments
        assert r.sp_after == p.callee_pops, (name, comp, args)
        assert r.entry_regs == {reg: p.registers().get(reg, 0) for reg in conv.arg_regs}


@settings(max_examples=12)
@given(args=_args(64))
def test_go_abiinternal_matches_the_go_compiler(go_callees, args):
    r = abi.run_call(go_callees, f"main.F{len(args)}", "go-abiinternal", args)
    assert r.value == abi.expected(args, "go-abiinternal")
    assert r.sp_after == 0


@pytest.mark.parametrize("comp", COMPILERS)
@pytest.mark.parametrize("name", abi.C_CONVENTIONS)
def test_compiled_call_sites_match_place_arguments(name, comp):
    conv = abi.convention(name)
    args = [0x11, 0x22, 0, 0x44, 0x55, 0x66, 0x77, 0x88]
    b = toolchain.cc(abi.caller_source(name, args), **abi.compile_flags(name, comp))
    with open(b.path, "rb") as f:
        code = ELFFile(f).get_section_by_name(".text").data()
    got = abi.call_site_arguments(disassemble(code, arch=conv.arch), conv.arch)
    p = abi.place_arguments(name, args)
    assert got["registers"] == p.registers()
    assert got["stack"] == [v for _, v in sorted(p.stack().items())]
    assert got["cleanup"] == (p.stack_bytes if conv.cleanup == "caller" else 0)


def test_regparm3_table():
    p = abi.place_arguments("regparm(3)", [1, 2, 3, 4])
    assert p.registers() == {"eax": 1, "edx": 2, "ecx": 3}
    assert p.stack() == {4: 4} and p.stack_bytes == 4 and p.callee_pops == 0
    assert abi.place_arguments("fastcall", [1, 2, 3]).callee_pops == 4
    assert abi.place_arguments("sysv-x86_64", list(range(8))).stack() == {8: 6, 16: 7}
    assert abi.return_registers("cdecl", 2) == ("eax", "edx")
    assert abi.convention("go-abiinternal").callee_saved == ()


@given(st.lists(st.integers(-(1 << 31), (1 << 32) - 1), max_size=abi.MAX_ARGS),
       st.sampled_from(sorted(abi.CONVENTIONS)))
def test_place_arguments_properties(args, name):
    conv = abi.convention(name)
    p = abi.place_arguments(conv, args)
    assert [s.index for s in p.slots] == list(range(len(args)))
    in_regs = [s.register for s in p.slots if s.register]
    assert in_regs == list(conv.arg_regs[:len(in_regs)])          # registers fill in order
    offs = [s.offset for s in p.slots if s.register is None]
    assert offs == [conv.word * (k + 1) for k in range(len(offs))]  # then the stack, upward from sp+word
    assert p.stack_bytes == conv.word * len(offs)
    assert all(s.value == a & ((1 << 8 * conv.word) - 1) for s, a in zip(p.slots, args))


@pytest.mark.parametrize("bad, msg", [
    (("nope", [1]), "unknown convention"),
    (("cdecl", [1.5]), "only word-sized integers"),
    (("cdecl", [1 << 40]), "does not fit"),
    (("cdecl", "123"), "list of integers"),
    (("cdecl", [0] * 17), "at most"),
])
def test_bad_input_is_one_line(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        abi.place_arguments(*bad)
    assert "\n" not in str(e.value)


def test_compiler_missing_is_one_line(monkeypatch):
    monkeypatch.setattr(toolchain, "tools", lambda: {**{k: None for k in toolchain.HINTS}})
    assert abi.available_compilers() == []
    with pytest.raises(toolchain.ToolMissing, match="gcc not found") as e:
        toolchain.cc(abi.callee_source("cdecl", 2), **abi.compile_flags("cdecl", "gcc"))
    assert "\n" not in str(e.value)


def test_load_object_refuses_external_symbols():
    b = toolchain.cc(abi.caller_source("cdecl", [1]), **abi.compile_flags("cdecl", "zig"))
    with pytest.raises(ValueError, match="outside .text"):
        abi.load_object(b.path)


# ------------------------------------------------------------------ compiled calls, viz and widget
def test_compiled_calls_agree_with_place_arguments():
    for name in abi.CONVENTIONS:
        conv = abi.convention(name)
        calls = abi.compiled_calls(name)
        assert sorted(calls) == list(range(abi.WIDGET_MAX_ARGS + 1))
        listing = calls[4].listing
        for reg, value in abi.place_arguments(name, abi.canonical_args(4)).registers().items():
            assert f"${value:#x}, %" in listing, (name, reg)
        assert "call" in listing


@given(st.lists(st.integers(-(1 << 31), (1 << 31) - 1), max_size=10))
def test_widget_parse_args_roundtrip(values):
    from helpers.widgets.abi import parse_args
    assert parse_args(", ".join(hex(v) if i % 2 else str(v) for i, v in enumerate(values))) == values


def test_widget_bad_input_and_coalescing():
    import asyncio
    from helpers.widgets.abi import CallConvView
    w = CallConvView(delay=0)
    w.args.value = "1, nope"
    assert "argument 2" in w.status.value and "\n" not in w.status.value
    w.args.value = "1, 2, 3"
    assert w.status.value == "" and "%eax" in w.text.value and "callconv-widget" in w.box._dom_classes

    async def burst():
        v = CallConvView(delay=0.01)
        before = v.renders
        for i in range(20):
            v.args.value = ", ".join(["7"] * (i % 6))
        await asyncio.sleep(0.2)
        return v, before
    v, before = asyncio.run(burst())
    assert v.renders == before + 1 and v.text.value.count("0x7") == 19 % 6


def test_draw_placement_and_mcall():
    from helpers.viz.abi import draw_mcall, draw_placement
    fig = draw_placement(abi.place_arguments("fastcall", [1, 2, 3]))
    assert "callee pops 4 byte(s)" in fig.axes[0].get_title()
    fig = draw_mcall({"saves_to_g_sched": ["g.sched.pc"]})
    assert len(fig.axes) == 2


def test_widget_without_compilers_still_draws(monkeypatch):
    from helpers.widgets import abi as wabi

    def missing(*_a, **_k):
        raise toolchain.ToolMissing("zig not found: pip install ziglang==0.17.1 (or run `make lab`)")
    monkeypatch.setattr(wabi.abi, "compiled_calls", missing)
    w = wabi.CallConvView(delay=0)
    assert "no compiled call: zig not found" in w.listing.value and "%eax" in w.text.value


def test_agreement_helper():
    assert abi.agreement("regparm(2)", "zig", trials=1) == abi.CALLEE_ARGS


def test_patchable_entry_is_nops_only_with_the_flag():
    from helpers.asm import disassemble
    entry = abi.patchable_entry("sysv-x86_64", "zig", "f3", nops=5)
    assert len(entry) == 5 and all(i.mnemonic.startswith("nop") for i in disassemble(entry))
    plain = abi.load_object(toolchain.cc(abi.callee_source("sysv-x86_64", 4), **abi.compile_flags("sysv-x86_64", "zig")).path)
    assert not disassemble(plain.function("f3")[1])[0].mnemonic.startswith("nop")


# ---- one emulator machine per convention (issue 13) ---------------------------------------------------------
def test_machines_are_reused_one_per_convention(monkeypatch):
    from helpers import emu
    made = []
    real = emu.Machine.__init__

    def counting(self, *a, **k):
        made.append(a[0] if a else k.get("arch"))
        real(self, *a, **k)
    monkeypatch.setattr(emu.Machine, "__init__", counting)
    monkeypatch.setattr(abi, "_POOL", {})
    monkeypatch.setattr(abi, "_POOL_LOADED", {})
    for name in abi.C_CONVENTIONS:
        assert abi.agreement(name, "zig", trials=2) == abi.CALLEE_ARGS * 2
    assert len(made) == len(abi.C_CONVENTIONS)


def test_a_reused_machine_keeps_nothing_from_the_previous_call(c_callees):
    text = c_callees[("regparm(3)", "zig")]
    first = abi.trace_call(abi.load_object(toolchain.cc(
        "__attribute__((regparm(3), noinline)) int g(int a, int b, int c) { return a - b + c; }\n"
        "int h(void) { return g(7, 2, 1); }\n", **abi.compile_flags("regparm(3)", "zig")).path),
        "h", "g", "regparm(3)")
    assert first["regs"] == {"eax": 7, "edx": 2, "ecx": 1}
    # the hook trace_call installed is gone, the old code is zeroed, registers and stack start clean
    r = abi.run_call(text, "f2", "regparm(3)", [5, 9])
    assert r.value == abi.expected([5, 9], abi.convention("regparm(3)")) and r.entry_regs["ecx"] == 0
    assert abi.run_call(text, "f0", "regparm(3)", []).value == abi.expected([], abi.convention("regparm(3)"))


# ---- where the real callers put the arguments -----------------------------------------------------------------
@pytest.mark.parametrize("name", list(abi.CONVENTIONS))
def test_observed_arguments_match_the_table_for_every_count(name):
    for n in range(abi.WIDGET_MAX_ARGS + 1):
        assert abi.observed_arguments(name, n) == abi.predicted_locations(name, n), (name, n)


@pytest.mark.parametrize("bad", [-1, 9, 2.0, None, True])
def test_observed_arguments_rejects_bad_counts(bad):
    with pytest.raises(ValueError):
        abi.observed_arguments("cdecl", bad)
    with pytest.raises(ValueError):
        abi.observed_arguments("cdecl", 2, "tcc")


def test_load_object_stubs_resolve_external_calls():
    b = toolchain.cc("int ext(int);\nint f(int x) { return ext(x) + 1; }\n", **abi.compile_flags("cdecl", "zig"))
    with pytest.raises(ValueError, match="ext"):
        abi.load_object(b.path)
    text = abi.load_object(b.path, stubs=("ext",))
    addr, size = text.functions["ext"]
    assert size == 1 and text.code[addr - text.base] == 0xC3


# ---- ftrace: -pg -mfentry under every convention --------------------------------------------------------------
@pytest.mark.parametrize("name", ["cdecl", "regparm(3)", "fastcall", "sysv-x86_64"])
@pytest.mark.parametrize("comp", COMPILERS)
def test_every_function_begins_with_call_fentry(name, comp):
    sites = abi.fentry_sites(name, comp)
    assert set(sites) == {f"f{n}" for n in range(5)}
    assert all(s.raw[:1] == b"\xe8" and s.target == "__fentry__" for s in sites.values())
    assert all(s.recorded for s in sites.values()) == (comp == "gcc")


@given(st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3))
@settings(max_examples=10, deadline=None)
def test_the_tracer_sees_the_arguments_and_the_nop_changes_nothing(args):
    for name in ("cdecl", "regparm(3)"):
        c = abi.convention(name)
        traced = abi.ftrace_call(name, "zig", "f3", args)
        quiet = abi.ftrace_call(name, "zig", "f3", args, nop=abi.SDM_NOP5)
        assert traced["value"] == quiet["value"] == abi.expected(args, c) and quiet["tracer"] is None
        t = traced["tracer"]
        assert ([t["regs"][r] for r in c.arg_regs] if c.arg_regs else t["stack"][2:5]) == args


def test_ftrace_rejects_bad_input():
    with pytest.raises(ValueError):
        abi.ftrace_build("go-abiinternal", "zig")
    with pytest.raises(ValueError):
        abi.ftrace_build("cdecl", "tcc")
    with pytest.raises(ValueError):
        abi.ftrace_call("cdecl", "zig", "f3", [1, 2, 3], nop=b"\x90")


NOPS_H = """#ifndef CONFIG_64BIT
#define BYTES_NOP1	0x90
#define BYTES_NOP4	0x8d,0x74,0x26,0x00
#define BYTES_NOP5	0x3e,BYTES_NOP4
#else
#define BYTES_NOP4	0x0f,0x1f,0x40,0x00
#define BYTES_NOP5	0x0f,0x1f,0x44,0x00,0x00 /* nopl 0(%rax,%rax,1) */
#endif /* CONFIG_64BIT */
"""


def test_kernel_nop5_from_a_header_text():
    assert abi.kernel_nop5("x86_32", NOPS_H) == bytes.fromhex("3e8d742600")
    assert abi.kernel_nop5("x86_64", NOPS_H) == abi.SDM_NOP5
    for arch in ("x86_32", "x86_64"):
        assert all(i.mnemonic.startswith(("nop", "lea")) for i in disassemble(abi.kernel_nop5(arch, NOPS_H), arch=arch))
    with pytest.raises(ValueError):
        abi.kernel_nop5("x86_64", "#define BYTES_NOP5 0x90\n")
    with pytest.raises(ValueError):
        abi.kernel_nop5("arm64", NOPS_H)


def test_kernel_header_readers_on_synthetic_text():
    wrapper = ("#define __SYS_STUBx(abi, name, ...)\t\\\n\tlong __##abi##_##name(const struct pt_regs *regs);\t\\\n"
               "\t{ return 0; }\n#define __X64_SYS_STUBx(x, name, ...)\t\\\n\t__SYS_STUBx(x64, sys##name, x)\n"
               "#define __IA32_SYS_STUBx(x, name, ...)\t\\\n\t__SYS_STUBx(ia32, sys##name, x)\n")
    assert abi.syscall_stub_prototypes(wrapper) == {"ia32": "long __ia32_sys<name>(const struct pt_regs *regs)",
                                                    "x64": "long __x64_sys<name>(const struct pt_regs *regs)"}
    with pytest.raises(ValueError):
        abi.syscall_stub_prototypes("#define X 1\n")
    new = "#define ftrace_regs_set_instruction_pointer(fregs, _ip)\t\\\n\tdo { arch_ftrace_regs(fregs)->regs.ip = (_ip); } while (0)\n"
    assert abi.ip_setter(new).endswith("regs.ip = (_ip)")
    with pytest.raises(ValueError):
        abi.ip_setter("#define klp_arch_set_pc(regs, ip) regs->ip = ip\n")


@pytest.mark.skipif(abi.kernel_header(abi.NOPS_H) is None and os.environ.get("BOOK_REQUIRE_VM") != "1",
                    reason="needs Debian's linux-headers (.ci/run installs them and sets BOOK_REQUIRE_VM=1)")
def test_installed_kernel_headers():
    assert abi.kernel_nop5("x86_64") == abi.SDM_NOP5
    stubs = abi.syscall_stub_prototypes(abi.kernel_header("arch/x86/include/asm/syscall_wrapper.h").read_text())
    assert set(stubs) >= {"x64", "ia32"}
    assert abi.ip_setter(abi.kernel_header("arch/x86/include/asm/ftrace.h").read_text()).endswith("regs.ip = (_ip)")


@given(st.binary(min_size=5, max_size=5), st.binary(min_size=5, max_size=5), st.integers(1, 4))
def test_kernel_nop5_parses_any_definition(b32, b64, split):
    def defs(b):
        head, tail = b[:split], b[split:]
        return (f"#define BYTES_NOP{len(tail)}\t" + ",".join(f"0x{x:02x}" for x in tail) + "\n"
                f"#define BYTES_NOP5\t" + ",".join(f"0x{x:02x}" for x in head) + f",BYTES_NOP{len(tail)}\n")
    text = "#ifndef CONFIG_64BIT\n" + defs(b32) + "#else\n" + defs(b64) + "#endif /* CONFIG_64BIT */\n"
    assert abi.kernel_nop5("x86_32", text) == b32 and abi.kernel_nop5("x86_64", text) == b64


def test_argument_map_draws_one_box_per_argument():
    from helpers.viz.abi import draw_argument_map
    locs = {"cdecl": ["4(%esp)", "8(%esp)"], "regparm(3)": ["%eax", "%edx"], "sysv-x86_64": ["%rdi", "%rsi"]}
    fig = draw_argument_map(locs)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.texts) == sorted(w for v in locs.values() for w in v)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(locs)
    with pytest.raises(ValueError):
        draw_argument_map({"cdecl": None})


@pytest.mark.parametrize("call", [lambda: abi.kernel_nop5("x86_64", 5), lambda: abi.syscall_stub_prototypes(None),
                                  lambda: abi.ip_setter(b"#define"), lambda: abi.fentry_sites("nope", "zig"),
                                  lambda: abi.ftrace_call("cdecl", "zig", "f3", "1,2,3")])
def test_kernel_readers_and_ftrace_refuse_wrong_types(call):
    with pytest.raises(ValueError):
        call()
