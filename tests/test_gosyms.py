"""helpers.gosyms: real symbol tables, the loader model, interposition and plugins, the Go runtime switches."""
import re

import pytest
from hypothesis import given, strategies as st

from helpers import gosyms as G, toolchain

NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)


# ------------------------------------------------------------------ Go runtime switches
@pytest.fixture(scope="module")
def hello():
    return G.hello_binary().path


def test_mcall_saves_into_g_sched_and_pushes_one_word(hello):
    f = G.mcall_facts(G.runtime_listing(hello, "runtime.mcall"))
    assert f["saves_to_g_sched"] == ["g.sched.bp", "g.sched.pc", "g.sched.sp"]
    assert f["loads_new_sp_from_memory"]
    assert f["pushes"] == ["pushq %rbp", "pushq %rax"]     # frame pointer, then the old g (fn's argument)
    assert f["indirect_calls"] == ["callq *%r12"]


@pytest.mark.parametrize("name, switch", [("runtime.mcall", "g0.sched.sp"),
                                          ("runtime.morestack.abi0", "g0.sched.sp"),
                                          ("runtime.systemstack.abi0", "g0.sched.sp")])
def test_switches_load_sp_from_g0(hello, name, switch):
    rows = G.runtime_listing(hello, name)
    assert any(t.endswith(", %rsp") and switch in n for _a, _b, t, n in rows)


def test_sources_of_the_pinned_tree():
    assert "MOVQ\t(g_sched+gobuf_sp)(R14), SP" in G.asm_function("mcall")
    body = G.go_function("reentersyscall")
    assert "save" in G.calls_in(body) and "mcall" not in G.calls_in(body)
    assert "mcall" in G.calls_in(G.go_function("exitsyscall"))
    assert G.grep_go_src(r"preemptPark") == []                       # no assembly mentions it
    assert G.grep_go_src(r"^func preemptPark\(", (".go",), "runtime")
    with pytest.raises(ValueError, match="no func"):
        G.go_function("doesNotExist")


# ------------------------------------------------------------------ module-shaped objects
@pytest.mark.parametrize("compiler", [c for c in ("zig", "gcc") if toolchain.have(c)])
def test_module_objects_and_loader(compiler):
    a = G.module_view(G.build_module("alpha", ["alpha_api"], ["helper"], compiler=compiler).path, "alpha")
    b = G.module_view(G.build_module("beta", ["beta_api"], ["helper"], ["alpha_api"], compiler).path, "beta")
    c = G.module_view(G.build_module("gamma", [], [], ["helper"], compiler).path, "gamma")
    d = G.module_view(G.build_module("delta", ["alpha_api"], [], [], compiler).path, "delta")
    assert a.exports == ("alpha_api",) and "helper" in a.globals and "init_module" in a.globals
    assert a.init == "init_module" and b.undefined == ("alpha_api",)
    out = G.load_modules([a, b, c, d])
    assert out[0].startswith("alpha: loaded") and out[1].startswith("beta: loaded")   # both define helper, init_module
    assert out[2] == "gamma: -ENOENT: Unknown symbol helper"                          # GLOBAL but not exported
    assert out[3] == "delta: -ENOEXEC: exports duplicate symbol alpha_api (owned by alpha)"


@given(st.lists(NAME, min_size=1, max_size=4, unique=True), st.lists(NAME, max_size=3, unique=True))
def test_module_source_shape(exports, others):
    others = [o for o in others if o not in exports]
    src = G.module_source("m", exports, others)
    assert src.count('.section \\"___ksymtab+') == len(exports)
    assert src.count(" - .\\n") == 3 * len(exports)              # PREL32: value, name, namespace offsets
    assert 'alias("m_init")' in src and ".gnu.linkonce.this_module" in src


def test_loader_model_resolves_before_it_checks_exports():
    v = G.ModuleView
    a = v("a", ("x",), ("x",), (), "init_module")
    both = v("both", ("x",), ("x",), ("nowhere",), "init_module")      # duplicate export AND unknown symbol
    assert G.load_modules([a, both])[1] == "both: -ENOENT: Unknown symbol nowhere"


@pytest.mark.parametrize("compiler", [c for c in ("zig", "gcc") if toolchain.have(c)])
def test_ksymtab_entry_is_three_pc32_offsets(compiler):
    from helpers import linuxguest
    [entry] = linuxguest.ksymtab_entries(G.build_module("m", ["m_api"], compiler=compiler).path)
    assert entry["size"] == 12 and [r[:2] for r in entry["relocations"]] == [(0, "R_X86_64_PC32"),
                                                                             (4, "R_X86_64_PC32"), (8, "R_X86_64_PC32")]


@given(st.sampled_from([r"TEXT", r"^TEXT", r"RET$", r"(?<!X)MOVQ", r"\bSP\b", r"JMP(?!\s+runtime)", r"\Aa", r"a\s*$"]))
def test_grep_go_src_whole_file_prefilter_loses_nothing(pattern):
    rx = re.compile(pattern)
    want = [(str(p.relative_to(G.go_src())), n, line.strip())
            for p in sorted((G.go_src() / "runtime/cgo").rglob("*")) if p.is_file() and p.name.endswith(".s")
            for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if rx.search(line)]
    assert G.grep_go_src(pattern, (".s",), "runtime/cgo") == want


def test_grep_go_src_bad_regex_is_one_line():
    with pytest.raises(ValueError, match="bad regular expression"):
        G.grep_go_src("(unclosed")


def test_loader_model_is_order_sensitive():
    v = G.ModuleView
    a, b = v("a", ("x",), ("x",), (), "init_module"), v("b", ("y",), ("y",), ("x",), "init_module")
    assert G.load_modules([b, a])[0] == "b: -ENOENT: Unknown symbol x"
    assert all("loaded" in line for line in G.load_modules([a, b]))
    assert G.load_modules([a], kernel_exports=["x"]) == ["a: -ENOEXEC: exports duplicate symbol x (owned by kernel)"]


# ------------------------------------------------------------------ Go artifacts
def test_go_artifacts_symbols():
    arts = G.go_artifacts()
    static = G.symbols_of(arts["static"].path)
    archive = G.symbols_of(arts["c-archive"].path)
    shared = G.symbols_of(arts["c-shared"].path)
    row = dict((r[0], r) for r in G.name_table(static, ["main.Foo", "go:buildinfo", "runtime.morestack.abi0"]))
    assert row["main.Foo"][1:3] == ("FUNC", "GLOBAL")
    assert row["go:buildinfo"][4] == ".go.buildinfo"
    for syms in (archive, shared):
        t = dict((r[0], r) for r in G.name_table(syms, ["Add", "main.main"]))
        assert t["Add"][2] == "GLOBAL" and t["main.main"][2] == "LOCAL"
        assert any(G.classify(s.name) == "cgo export wrapper" for s in syms)
    for syms in (static, archive, shared):
        assert G.hashed_init_symbols(syms) == []
        assert any(s.name.endswith("..inittask") for s in syms)


@pytest.mark.parametrize("name, kind", [("main.Foo", "Go function (pkg.Name)"), ("runtime.mcall.abi0", "ABI0 assembly"),
                                        ("go:buildinfo", "build info"), ("main..inittask", "package init task"),
                                        ("_cgoexp_0123456789ab_Add", "cgo export wrapper"), ("init_module", "C / other")])
def test_classify(name, kind):
    assert G.classify(name) == kind


def test_hashed_init_pattern():
    class S:
        def __init__(self, n): self.name = n
    assert G.hashed_init_symbols([S("go.Init.8a3f2d1b"), S("main.init.0"), S("runtime.init")]) == ["go.Init.8a3f2d1b"]


def test_ar_members_rejects_non_archives(tmp_path):
    p = tmp_path / "x.a"
    p.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="not an ar archive"):
        G.ar_members(p)


@given(st.lists(st.tuples(st.from_regex(r"[a-z]{1,20}\.o", fullmatch=True), st.binary(max_size=40)),
                max_size=4, unique_by=lambda t: t[0]))
def test_ar_members_roundtrip(members):
    import tempfile, pathlib
    names = b"".join(n.encode() + b"/\n" for n, _ in members)
    blob = b"!<arch>\n" + b"//".ljust(16) + b" " * 32 + str(len(names)).ljust(10).encode() + b"`\n" + names
    blob += b"\n" if len(names) & 1 else b""
    off = 0
    for n, body in members:
        blob += f"/{off}".ljust(16).encode() + b" " * 32 + str(len(body)).ljust(10).encode() + b"`\n" + body
        blob += b"\n" if len(body) & 1 else b""
        off += len(n) + 2
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "t.a"
        p.write_bytes(blob)
        assert G.ar_members(p) == members


# ------------------------------------------------------------------ interposition and plugins
def test_semantic_interposition_zig():
    assert [c.via_plt for c in G.calls_from(G.interposition_build(["-fPIC"]).path, "use")] == [True]
    assert [c.target for c in G.calls_from(G.interposition_build(["-fPIC", "-fno-semantic-interposition"]).path,
                                           "use")] == ["calc"]
    assert G.preload_demo(["-fPIC"]) == {"plain": "use(5) = 11", "preloaded": "use(5) = 16"}
    assert G.preload_demo(["-fPIC", "-fno-semantic-interposition"])["preloaded"] == "use(5) = 11"
    d = G.program_demo(["-fPIE"], static=True)
    assert d["is_static"] and d["preloaded"] == "use(5) = 11" and not any(c.via_plt for c in d["calls"])


def test_plugins():
    with pytest.raises(toolchain.ToolchainError, match="requires external \\(cgo\\) linking"):
        G.plugin_build(cgo=False)
    p = G.plugin_build(cgo=True)
    assert G.run_plugin_host(True, p.path) == "hello from the plugin, host"
    assert G.run_plugin_host(False, p.path) == "plugin.Open error: plugin: not implemented"


def test_go_missing_is_one_line(monkeypatch):
    monkeypatch.setattr(toolchain, "tools", lambda: {k: None for k in toolchain.HINTS})
    with pytest.raises(toolchain.ToolMissing, match="go not found") as e:
        toolchain.go_build(G.HELLO_GO + "// uncached variant\n")
    assert "\n" not in str(e.value)


def test_emulated_mcall(hello):
    r = G.emulate_mcall(hello)
    L = G.MCALL_LAYOUT
    assert r["g.sched.pc"] == L["caller_pc"] and r["g.sched.sp"] == L["user_sp"] + 8
    assert r["r14"] == r["tls_g"] == L["g0"] and r["rax"] == L["g"]
    assert r["g0_stack_used"] == 16 and r["words_on_g0"][1] == L["g"]


def test_call_path_rows_come_from_the_builds():
    from helpers.viz import linking
    rows = G.call_path_rows("zig")
    assert [r["interposed"] for r in rows] == [True, False, False]
    assert rows[0]["relocation"] == "R_X86_64_PLT32 calc" and rows[0]["tables"] == (1, 2)
    assert rows[1]["relocation"] == "none" and rows[1]["hops"][-1] == "calc() in the same file"
    assert rows[2]["relocation"] == "R_X86_64_PLT32 calc" and not rows[2]["tables"]   # the linker made it direct
    assert len(linking.call_paths(rows).axes) == 1
