"""Tests for helpers.kcodegen: kbuild conditionals and flags, ELF measurement, the rules x compilers matrix.

Each test says what it proves. Builds are cached by helpers.toolchain; zig is always present, gcc and the
Debian kernel tree are used where installed (CI installs them) and the recording stands in otherwise.
"""
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import kcodegen as k
from helpers import toolchain

NAMES = st.from_regex(r"CONFIG_[A-Z][A-Z0-9_]{0,12}", fullmatch=True)


# ----------------------------------------------------------------------------- .config and conditionals
@given(st.dictionaries(NAMES, st.sampled_from(["y", "m", "64", '"x86"']), max_size=8),
       st.lists(NAMES, max_size=4))
def test_read_config_round_trip(values, unset):
    """Every CONFIG_X=v line is read back; '# CONFIG_X is not set' lines leave X out."""
    unset = [u for u in unset if u not in values]
    text = "\n".join([f"{n}={v}" for n, v in values.items()] + [f"# {u} is not set" for u in unset])
    got = k.read_config(text)
    assert got == {n: v.strip('"') for n, v in values.items()}


@settings(max_examples=60)
@given(st.lists(st.tuples(NAMES, st.booleans()), min_size=1, max_size=5), st.data())
def test_nested_ifdefs_decide_a_line(conds, data):
    """A line inside nested ifdef/ifndef blocks is active exactly when every enclosing test holds."""
    config = {}
    opens, closes = [], []
    for name, want_set in conds:
        is_set = data.draw(st.booleans())
        if is_set:
            config[name] = "y"
        opens.append(f"{'ifdef' if want_set else 'ifndef'} {name}")
        closes.append("endif")
    text = "\n".join(opens + ["KBUILD_CFLAGS += -mfoo"] + closes)
    (line,) = [ln for ln in k.conditional_lines(text) if "-mfoo" in ln.text]
    expected = all((n in config) == want for n, want in conds)
    assert k.line_active(line, config) is expected
    assert line.lineno == len(conds) + 1


def test_else_and_else_ifdef_chains():
    """'else' flips the test; 'else ifdef' opens a chained test that the same endif closes."""
    text = ("ifdef CONFIG_A\nX := a\nelse ifdef CONFIG_B\nX := b\nelse\nX := c\nendif\nY := after\n")
    lines = {ln.text: ln for ln in k.conditional_lines(text)}
    for config, active in (({"CONFIG_A": "y"}, "X := a"), ({"CONFIG_B": "y"}, "X := b"), ({}, "X := c")):
        on = [t for t, ln in lines.items() if t.startswith("X") and k.line_active(ln, config)]
        assert on == [active]
    assert lines["Y := after"].conds == ()


def test_ifeq_forms_and_compiler_dependent_tests():
    """ifeq ($(CONFIG_X),y) is evaluated; a test on $(call cc-option...) depends on the compiler: None."""
    ifeq = k.Cond("ifeq", "($(CONFIG_X86_32),y)", False)
    assert k.eval_condition(ifeq, {"CONFIG_X86_32": "y"}) is True
    assert k.eval_condition(ifeq, {}) is False
    assert k.eval_condition(ifeq._replace(negated=True), {}) is True
    assert k.eval_condition(k.Cond("ifneq", '"$(CONFIG_A)" "y"', False), {"CONFIG_A": "y"}) is False
    assert k.eval_condition(k.Cond("ifeq", "($(call cc-option-yn, -mfentry),y)", False), {}) is None
    assert k.eval_condition(k.Cond("ifdef", "BUILD_C_RECORDMCOUNT", False), {}) is None


def test_unbalanced_endif_is_one_clear_error():
    with pytest.raises(k.KcodegenError, match="endif without an open conditional"):
        k.conditional_lines("endif\n")
    with pytest.raises(k.KcodegenError):
        k.conditional_lines(None)


def test_continuation_lines_are_joined():
    lines = k.conditional_lines("KBUILD_CFLAGS := -Wall \\\n\t-fno-PIE \\\n\t-std=gnu11\nZ := 1\n")
    assert lines[0].lineno == 1 and "-fno-PIE" in lines[0].text and lines[1].lineno == 4


@given(st.lists(st.from_regex(r"-[mf][a-z][a-z0-9=-]{0,10}", fullmatch=True), min_size=1, max_size=4))
def test_flags_of_expands_cc_option(flags):
    """$(call cc-option,A,B) contributes A (what a compiler that accepts it gets), never B."""
    line = f"KBUILD_CFLAGS += $(call cc-option,{' '.join(flags)},-mFALLBACK)"
    assert k.flags_of(line) == flags
    assert k.flags_of("KBUILD_CFLAGS += $(RETPOLINE_CFLAGS)") == []


# ----------------------------------------------------------------------------- rules from a build tree
def _tree(tmp_path, ibt: bool):
    x86 = tmp_path / "src" / "arch" / "x86"
    (x86 / "include" / "asm").mkdir(parents=True)
    (x86 / "Makefile").write_text(
        "ifdef CONFIG_CC_IS_GCC\nRETPOLINE_CFLAGS := $(call cc-option,-mindirect-branch=thunk-extern)\nendif\n"
        "ifdef CONFIG_RETHUNK\nRETHUNK_CFLAGS := -mfunction-return=thunk-extern\nendif\n"
        "KBUILD_CFLAGS += -mno-sse -mno-avx\n"
        "ifeq ($(CONFIG_X86_KERNEL_IBT),y)\nKBUILD_CFLAGS += $(call cc-option,-fcf-protection=branch -fno-jump-tables)\n"
        "else\nKBUILD_CFLAGS += $(call cc-option,-fcf-protection=none)\nendif\n"
        "ifeq ($(CONFIG_X86_32),y)\nKBUILD_CFLAGS += -m32\nelse\n        KBUILD_CFLAGS += -mno-red-zone\n"
        "        KBUILD_CFLAGS += -mcmodel=kernel\n        KBUILD_RUSTFLAGS += -Cno-redzone=y\nendif\n"
        "KBUILD_CFLAGS += -fno-asynchronous-unwind-tables\n"
        "ifdef CONFIG_RETPOLINE\n  KBUILD_CFLAGS += $(RETPOLINE_CFLAGS)\nendif\n")
    (tmp_path / "src" / "Makefile").write_text(
        "ifdef CONFIG_FUNCTION_TRACER\n  CC_FLAGS_FTRACE := -pg\nendif\n"
        "ifdef CONFIG_FUNCTION_TRACER\n  CC_FLAGS_FTRACE += -mrecord-mcount\n  CC_FLAGS_FTRACE += -mfentry\nendif\n"
        "KBUILD_RUSTFLAGS := -Cpanic=abort -Cforce-unwind-tables=n\n")
    (x86 / "include" / "asm" / "percpu.h").write_text("#ifdef CONFIG_X86_64\n#define __percpu_seg\t\tgs\n#else\n"
                                                        "#define __percpu_seg\t\tfs\n#endif\n")
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_CC_IS_GCC=y\nCONFIG_RETPOLINE=y\nCONFIG_RETHUNK=y\nCONFIG_FUNCTION_TRACER=y\nCONFIG_X86_64=y\n"
                   + ("CONFIG_X86_KERNEL_IBT=y\n" if ibt else "# CONFIG_X86_KERNEL_IBT is not set\n"))
    return k.KernelTree(tmp_path / "src", cfg, "test", None)


@pytest.mark.parametrize("ibt", [False, True])
def test_rules_follow_the_configuration(tmp_path, ibt):
    """The IBT rule is on only when CONFIG_X86_KERNEL_IBT=y; the others are found on their lines."""
    tree = _tree(tmp_path, ibt)
    rules = {f.key: f for f in k.kernel_rules(tree)}
    assert rules["ibt"].active is ibt
    assert not ibt or rules["ibt"].flags == ("-fcf-protection=branch", "-fno-jump-tables")
    assert ibt or rules["ibt"].note == "off: CONFIG_X86_KERNEL_IBT is not set"
    assert rules["redzone"].active and rules["redzone"].lines[0][0] == 16
    flags = k.kernel_cflags(tree)
    assert ("-fcf-protection=branch" in flags) is ibt and "-m32" not in flags
    assert {"-mno-sse", "-mno-red-zone", "-mcmodel=kernel", "-pg", "-mfentry", "-mindirect-branch=thunk-extern",
            "-mfunction-return=thunk-extern", "-fno-asynchronous-unwind-tables"} <= set(flags)
    rust = k.rust_flags(tree)
    assert rust["redzone"] == "-Cno-redzone=y" and rust["unwind"] == "-Cforce-unwind-tables=n" and rust["sse"] is None


def test_a_missing_rule_line_is_reported(tmp_path):
    tree = _tree(tmp_path, False)
    (tree.root / "arch/x86/Makefile").write_text("KBUILD_CFLAGS += -O2\n")
    with pytest.raises(k.KcodegenError, match="rule sse: no line matching"):
        k.kernel_rules(tree)


def test_pt_regs_and_stack_sizes_from_headers():
    hdr = ("#ifdef __i386__\nstruct pt_regs {\n unsigned long bx;\n unsigned short ds;\n};\n#else /* __i386__ */\n"
           "struct pt_regs {\n/* saved */\n\tunsigned long r15;\n\tunsigned long ip;\n\tunsigned long ss;\n};\n#endif\n")
    assert k.pt_regs_size(hdr) == 24
    with pytest.raises(k.KcodegenError, match="other than unsigned long"):
        k.pt_regs_size(hdr.replace("unsigned long ip", "unsigned int ip"))
    with pytest.raises(k.KcodegenError, match="no x86-64 branch"):
        k.pt_regs_size("struct pt_regs { unsigned long a; };")
    pg = "#define IRQ_STACK_ORDER (2 + KASAN_STACK_ORDER)\n"
    assert k._page_order_size(pg, "IRQ_STACK", False) == 16384 and k._page_order_size(pg, "IRQ_STACK", True) == 32768


# ----------------------------------------------------------------------------- measuring real code
@pytest.fixture(scope="module")
def c_builds():
    flags = ("-O2", "-mno-sse", "-mno-mmx", "-mno-sse2", "-mno-red-zone",
             "-mcmodel=kernel", "-pg", "-mfentry", "-mretpoline-external-thunk", "-mfunction-return=thunk-extern",
             "-fcf-protection=branch")
    return k.measure(k.build_c(k.USER_CFLAGS, "zig").path), k.measure(k.build_c(flags, "zig").path)


def test_counters_find_each_rules_footprint(c_builds):
    """The user-space build has SIMD, an indirect call and plain returns; the kernel-flag build has none of
    them and has __fentry__ calls, retpoline and return thunks and endbr64 at every entry."""
    user, kern = c_builds
    assert user.simd > 0 and user.indirect == 1 and user.rets > 0 and user.fentry_calls == 0
    assert kern.simd == 0 and kern.indirect == 0 and kern.rets == 0 and kern.below_sp == 0
    assert kern.fentry_calls == kern.funcs == 6 and kern.endbr64 == 6 and kern.thunk_calls == 1 and kern.return_thunks >= 6
    assert "R_X86_64_32S" in kern.relocs and kern.gs >= 1


def test_go_output_and_the_spectre_flag():
    """Go names X15 and reaches g through %fs; -spectre=ret removes every indirect call/jump."""
    hello = k.measure(k.build_go(k.HELLO_GO).path)
    spectre = k.measure(k.build_go(k.HELLO_GO, spectre=True).path)
    assert hello.x15 > 0 and hello.fs > 0 and hello.gs == 0 and hello.indirect > 0 and hello.fentry_calls == 0
    assert spectre.indirect == 0 and spectre.thunk_calls > 0
    assert ".gopclntab" in hello.sections and ".eh_frame" not in hello.sections
    assert k.measure(k.build_go(k.HELLO_GO, kernel_text=True).path).text_low >= 0xFFFFFFFF80000000


def test_measure_only_filters_functions():
    sample = k.build_go().path
    main_only = k.measure(sample, only="main.")
    assert 0 < main_only.funcs < k.measure(sample).funcs and main_only.x15 > 0


def test_bad_inputs_are_one_line(tmp_path):
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an elf")
    with pytest.raises(k.KcodegenError, match="not an ELF file"):
        k.measure(junk)
    with pytest.raises(k.KcodegenError, match="no such file"):
        k.measure(tmp_path / "missing")
    with pytest.raises(k.KcodegenError, match="prefix"):
        k.measure(junk, only=3)
    with pytest.raises(k.KcodegenError):
        k.read_config(None)


def test_listing_names_relocation_targets():
    kern = k.build_c(("-O2", "-pg", "-mfentry"), "zig").path
    rows = k.listing(kern, "apply")
    assert rows[0].endswith("<__fentry__>")


# ----------------------------------------------------------------------------- the table and the recording
def test_recording_matches_the_live_tree():
    """The recording the chapter falls back on says what this machine's kernel tree says (where it has one)."""
    saved = json.loads(k.RECORDING.read_text())
    assert {"capstone", "pyelftools"} <= set(saved["tools"])
    tree = k.kernel_tree()
    if tree is None:
        assert os.environ.get("BOOK_REQUIRE_VM") != "1", "CI installs Debian's kernel headers (.ci/run)"
        pytest.skip("no kernel tree here: the recording is what the chapter uses")
    live = json.loads(json.dumps(k.kernel_facts(tree)))
    assert live["cflags"] == saved["facts"]["cflags"] and live["stacks"] == saved["facts"]["stacks"]
    if tree.release == saved["facts"]["release"]:
        assert live["rules"] == saved["facts"]["rules"]
    else:   # another point release: the same rules, flags and lines, at other line numbers of its Makefiles
        def unnumbered(rules):
            return [{**r, "lines": [text for _, text in r["lines"]]} for r in rules]
        assert unnumbered(live["rules"]) == unnumbered(saved["facts"]["rules"])


def test_matrix_cells_are_computed_from_the_measurements():
    """Changing a measurement changes its cell: the table restates nothing typed in."""
    ev = k.evidence()
    rows = {r["key"]: r for r in k.matrix(ev)}
    assert set(rows) == set(k.RULE_KEYS)
    assert rows["sse"]["C, kernel flags"].status == k.MEETS and rows["sse"]["Go"].status == k.BREAKS
    forged = dict(ev.measures, go_hello=dict(ev.measures["go_hello"], simd=0, x15=0))
    ev2 = k.Evidence(ev.facts, ev.recorded, ev.compiler, forged)
    assert {r["key"]: r for r in k.matrix(ev2)}["sse"]["Go"].status == k.MEETS
    text = k.table_text(k.matrix(ev))
    assert all(r.title in text for r in k.RULES)


# ----------------------------------------------------------------------------- real kbuild, Rust, functions
def test_makefile_reading_agrees_with_the_real_kbuild_command():
    """Every flag read from the Makefiles is on the command line kbuild really ran (helpers.linuxguest)."""
    tree = k.kernel_tree()
    kb = k.real_kbuild()
    if tree is None or "flags" not in kb:
        pytest.skip(f"no kernel tree or kbuild run here: {kb.get('error', 'no tree')}")
    parsed = k.kernel_cflags(tree, k._overrides("gcc", False))
    assert [f for f in parsed if f not in kb["flags"]] == []
    assert set(parsed) <= set(k.codegen_flags(kb["flags"]))


@given(st.lists(st.sampled_from(["-Wall", "-I/x", "-DMODULE", "-include", "-c", "-o", "-g", "-nostdinc",
                                 "-fmacro-prefix-map=/a/=", "-mno-sse", "-fno-PIE", "-O2", "-pg", "-std=gnu11"]), max_size=12))
def test_codegen_flags_keeps_only_code_generation(flags):
    kept = k.codegen_flags(flags)
    assert all(f in ("-mno-sse", "-fno-PIE", "-O2", "-pg", "-std=gnu11") for f in kept)
    assert kept == [f for f in flags if f in ("-mno-sse", "-fno-PIE", "-O2", "-pg", "-std=gnu11")]


def test_rust_flags_from_the_makefiles(tmp_path):
    tree = _tree(tmp_path, False)
    (tree.root / "Makefile").write_text(
        "KBUILD_RUSTFLAGS := $(rust_common_flags) \\\n\t-Cpanic=abort -Clto=n \\\n\t-Crelocation-model=static\n"
        "KBUILD_RUSTFLAGS += -Cdebug-assertions=$(if $(CONFIG_RUST_DEBUG_ASSERTIONS),y,n)\n"
        "ifdef CONFIG_FRAME_POINTER\nKBUILD_RUSTFLAGS += -Cforce-frame-pointers=y\nendif\n"
        "KBUILD_RUSTFLAGS_KERNEL += -Zfunction-sections=y\n")
    assert k.rust_kernel_flags(tree) == ["-Cpanic=abort", "-Clto=n", "-Crelocation-model=static", "-Cno-redzone=y"]


def test_rust_recording_matches_rustc_where_installed():
    """The Rust column's recording is what rustc gives here with the same flags (CI has no rustc)."""
    saved = __import__("json").loads(k.RUST_RECORDING.read_text())
    assert saved["kernel"]["simd"] == 0 and saved["user"]["simd"] > 0 and "R_X86_64_32S" in saved["kernel"]["relocs"]
    if k.rustc() is None:
        pytest.skip("no rustc here: the recording is what the chapter shows")
    live = k.rust_measure(saved["flags"], live=True)
    for col in ("user", "kernel"):
        assert {x: v for x, v in live[col].items() if x != "path"} == {x: v for x, v in saved[col].items() if x != "path"}
    with pytest.raises(k.KcodegenError):
        k.build_rust(["--emit=link"])


def test_function_rows_find_go_runtime_simd():
    rows = {r["function"]: r for r in k.function_rows(k.build_go(k.HELLO_GO).path, ["runtime.memmove", "runtime.sigtramp"])}
    assert rows["runtime.memmove"]["simd"] > 0 and rows["runtime.sigtramp.abi0"]["fs"] == 1
    with pytest.raises(k.KcodegenError, match="no function"):
        k.function_rows(k.build_go(k.HELLO_GO).path, ["runtime.nosuch"])


def test_figures_draw_what_they_are_given():
    """plot_matrix draws one coloured cell per (rule, column); plot_stack_budget marks overflowing frames."""
    from helpers import gointr
    from helpers.viz.kcodegen import STATUS_COLOURS, plot_matrix, plot_stack_budget
    rows = k.matrix(k.evidence())
    ax = plot_matrix(rows).axes[0]
    cells = [p for p in ax.patches if p.get_width() > 0.9]
    assert len(cells) == len(rows) * (len(k.COLUMNS) - 1)
    with pytest.raises(ValueError):
        plot_matrix([])
    sb = gointr.stack_budget(json.loads(k.RECORDING.read_text())["facts"]["stacks"])
    ax = plot_stack_budget(sb).axes[0]
    assert any("overflows" in t.get_text() for t in ax.texts) and str(sb.fits_best) in ax.get_title()
    assert set(STATUS_COLOURS) == {k.MEETS, k.BREAKS, k.NA}
