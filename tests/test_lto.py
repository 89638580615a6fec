"""helpers.lto on real builds: -flto inlines across translation units and drops dead code; Go sections."""
import pytest

from helpers import lto, toolchain


@pytest.fixture(scope="module")
def builds():
    return {(b.compiler, b.lto): b for b in lto.experiment()}


@pytest.mark.parametrize("compiler", lto.compilers())
def test_lto_inlines_cross_file_call_and_drops_dead_code(builds, compiler):
    plain, linked = builds[(compiler, False)], builds[(compiler, True)]
    assert "mix" in plain.calls_in_main and "mix" not in linked.calls_in_main
    assert set(plain.functions) == {"main", "mix", "never_called"}
    assert linked.functions == ("main",)
    assert linked.text_size < plain.text_size


def test_all_builds_compute_the_same_result(builds):
    assert lto.check_results(list(builds.values()), n=10_000) == lto.expected_result(10_000)


def test_expected_result_small():
    # by hand: i=0 -> 0; i=1 -> 2654435761
    assert lto.expected_result(2) == 2654435761


def test_kernel_facts_are_consistent():
    lines = lto.KERNEL_SOURCES["lto_makefile"]["lines"]
    assert not any("-ffat-lto-objects" in l or "-fuse-linker-plugin" in l or "-flto=auto" in l for l in lines)
    k = lto.KERNEL_SOURCES["kprobes"]
    assert not lto.returns_value(k["kprobe_ftrace_handler"][1])
    assert lto.returns_value(k["check_ftrace_location"][1])


def test_go_binaries_have_no_kernel_init_sections():
    secs = {g.variant: g for g in lto.go_sections()}
    for g in secs.values():
        assert not set(lto.KERNEL_INIT_SECTIONS) & set(g.names())
        assert ".text" in g.names() and ".gopclntab" in g.names()
    plain, stripped = secs["go build"], secs['go build -ldflags="-s -w"']
    assert ".symtab" in plain.names() and ".symtab" not in stripped.names()
    assert not any(n.startswith(".debug") for n in stripped.names())
    assert secs["go build (cgo)"].interp is not None and plain.is_static


def test_no_internal_linker_package_in_go_source():
    src = toolchain.goroot() / "src"
    assert not (src / "internal" / "linker").exists()
    assert (src / "cmd" / "link" / "internal" / "ld").is_dir()
    assert lto.search_go_source(src / "runtime", "initSection") == []


def test_hot_loop_has_a_call_only_without_lto(builds):
    for (compiler, on), b in builds.items():
        loop = lto.hot_loop(b)
        assert loop and any("call" in l for l in loop) == (not on)


@pytest.mark.skipif(not toolchain.have("gcc"), reason="needs gcc")
def test_gcc_lto_objects_and_flags():
    slim = lto.lto_object("gcc", ("-O2", "-flto=auto"))
    fat = lto.lto_object("gcc", ("-O2", "-flto=auto", "-ffat-lto-objects"))
    assert slim.kind == "ELF" and slim.lto_sections and slim.text_size == 0
    assert fat.lto_sections and fat.text_size > 0
    assert lto.gcc_link_uses_plugin() and not lto.gcc_link_uses_plugin(("-O2", "-flto", "-fno-use-linker-plugin"))


def test_clang_lto_object_is_bitcode_and_linkname_snippet():
    assert lto.lto_object("zig", ("-O2", "-flto")).kind == "LLVM bitcode"
    assert lto.try_go_build(lto.GO_LINKNAME_PROGRAM) == "ok"
    assert lto.try_go_build("package main\nfunc main() { undefined() }\n").startswith("go build failed")


def test_effect_rows_and_figure():
    from helpers.viz import linking
    rows = lto.effect_rows(lto.experiment())
    for r in rows:
        lto_build = r["label"].endswith("-flto")
        assert (r["sizes"]["mix"] is None) == lto_build and (r["sizes"]["never_called"] is None) == lto_build
        assert r["sizes"]["main"] and r["calls_to_mix"] == (0 if lto_build else 1)
    fig = linking.lto_effect(rows)
    assert len(fig.axes) == 2


def test_section_layout_of_go_and_c():
    from helpers.viz import linking
    c = lto.c_sections()
    assert any(s.name == ".text" for s in c) and not any(s.name == ".gopclntab" for s in c)
    assert linking.section_kind("AX", ".text") == "code" and linking.section_kind("WAT", ".tbss") == "thread-local"
    assert linking.section_kind("WA", ".bss") == "zero-filled" and linking.section_kind("A", ".rodata") == "read-only data"
    fig = linking.section_layout([(g.variant, g.sections) for g in lto.go_sections()] + [("C", c)])
    assert len(fig.axes[0].get_yticklabels()) == 4
