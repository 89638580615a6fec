"""helpers.govsc: the chapter-1/5 experiments on the real toolchains, and the pure parsers behind them."""
import pytest
from hypothesis import given, strategies as st

from helpers import govsc, toolchain


# ---- pure parts ----------------------------------------------------------------------------------------------
def test_const_evaluator_on_a_synthetic_go_file(tmp_path):
    (tmp_path / "src" / "runtime").mkdir(parents=True)
    (tmp_path / "src" / "internal" / "abi").mkdir(parents=True)
    (tmp_path / "src" / "internal" / "runtime" / "sys").mkdir(parents=True)
    (tmp_path / "src" / "runtime" / "stack.go").write_text(
        "package runtime\n\nconst (\n\t// comment\n\tstackSystem = goos.IsWindows*4096\n\tstackMin = 4096 // c\n"
        "\tfixedStack0 = stackMin + stackSystem\n\tfixedStack = fixedStack0 | (fixedStack0 >> 1)\n"
        "\tstackGuard = abi.StackSmall * sys.StackGuardMultiplier\n)\n\nvar notAConst = 3\n")
    (tmp_path / "src" / "internal" / "abi" / "stack.go").write_text("const (\n\tStackSmall = 128\n)\n")
    (tmp_path / "src" / "internal" / "runtime" / "sys" / "consts.go").write_text(
        "const StackGuardMultiplier = 1 + goos.IsAix + isRace\n")
    c = govsc.go_stack_constants(tmp_path)
    assert c["stackMin"] == 4096 and c["fixedStack"] == 4096 | 2048 and c["stackGuard"] == 128
    assert "notAConst" not in c
    windows = dict(govsc.LINUX_AMD64, **{"goos.IsWindows": 1})
    assert govsc.go_stack_constants(tmp_path, windows)["fixedStack0"] == 8192


@given(st.integers(0, 2**20), st.integers(0, 20), st.integers(1, 2**20))
def test_eval_matches_python(a, s, b):
    assert govsc._eval(f"(a | b) >> {s}", {"a": a, "b": b}) == (a | b) >> s
    assert govsc._eval("a*2 + b - 1", {"a": a, "b": b}) == a * 2 + b - 1


@given(st.integers(1, 2**40))
def test_round2_is_the_next_power_of_two(x):
    r = govsc._round2(x)
    assert r >= x and r & (r - 1) == 0 and r // 2 < x


def test_pinned_go_stack_constants():
    c = govsc.go_stack_constants()
    assert c["fixedStack"] == govsc._round2(c["stackMin"] + c["stackSystem"])
    assert c["stackGuard"] == c["abi.StackNosplitBase"] * c["sys.StackGuardMultiplier"] + c["abi.StackSmall"]
    assert govsc.max_stack_size() >= 1 << 29


def test_linux_thread_size_from_header():
    assert govsc.linux_thread_size() == 4 * 4096
    assert govsc.linux_thread_size(kasan=True) == 8 * 4096
    with pytest.raises(ValueError):
        govsc.linux_thread_size(header="#define X 1\n")


@pytest.mark.parametrize("name, cat", [("runtime.mallocgc", "runtime"), ("internal/runtime/atomic.Load", "runtime"),
                                       ("main.main", "main"), ("fmt.Println", "other packages"),
                                       ("runtimex.f", "other packages")])
def test_symbol_category(name, cat):
    assert govsc.symbol_category(name) == cat


def test_case_study_verdicts_follow_from_readings():
    assert govsc.case_study_verdict("C63") == "fabricated"
    assert govsc.case_study_verdict("C64") == "wrong"
    found = [govsc.Reading("C99", "x", "a/b c", "", True, "")]
    assert govsc.case_study_verdict("C99", found) == "holds"
    with pytest.raises(ValueError):
        govsc.case_study_verdict("C00")


def test_syscall_names_from_go_source():
    names = govsc.syscall_names()
    assert names[9] == "mmap" and names[56] == "clone" and names[202] == "futex"


# ---- real toolchains -----------------------------------------------------------------------------------------
def test_go_hello_is_static_and_mostly_runtime():
    b = toolchain.go_build(govsc.GO_HELLO)
    code = govsc.code_by_package(b.path)
    assert code["runtime"]["bytes"] > code["other packages"]["bytes"] > code["main"]["bytes"] > 0


def test_cgo_net_is_dynamic_only_with_cgo():
    m = {(r["program"], r["CGO_ENABLED"]): r for r in govsc.linkage_matrix()}
    assert m[("net.LookupHost", 0)]["static"] and not m[("net.LookupHost", 1)]["static"]
    assert "libc.so.6" in m[("net.LookupHost", 1)]["DT_NEEDED"]


def test_c99_main_returns_zero():
    rows = govsc.exit_status_matrix(stds=("c99",), opts=("-O0",))
    assert rows and all(r["exit status"] == 0 for r in rows)


def test_vet_is_silent_on_ignored_errors():
    v = govsc.vet()
    assert v.vet_status == 0 and v.vet_output == ""


def test_fresh_goroutines_start_on_fixed_stack_and_adaptive_start_can_grow():
    fixed = govsc.go_stack_constants()["fixedStack"]
    assert set(govsc.probe_starting_stacks(0, 4)) == {fixed}
    assert max(govsc.probe_starting_stacks(16, 150)) > fixed
    assert set(govsc.probe_starting_stacks(16, 150, godebug="adaptivestackstart=0")) == {fixed}


def test_runtime_needs_kernel_services():
    sc = govsc.runtime_syscalls(toolchain.go_build(govsc.GO_HELLO).path)
    for name in ("mmap", "clone", "futex", "rt_sigaction", "sigaltstack"):
        assert name in sc, name
    assert "runtime.clone.abi0" in sc["clone"]


def test_write_barrier_in_pointer_store():
    listing, calls = govsc.write_barrier_listing()
    assert any(c.startswith("runtime.gcWriteBarrier") for c in calls) and "runtime.writeBarrier" in listing


def test_proc_status_sees_threads_and_sigurg():
    st_ = govsc.proc_status()
    assert st_["threads"] > 1 and 23 in st_["caught"]  # SIGURG: runtime/signal_unix.go sigPreempt


@pytest.mark.parametrize("call", [lambda: govsc.parked_goroutine_cost(0), lambda: govsc.creation_cost(n=10, rounds=0),
                                  lambda: govsc.probe_starting_stacks(-1, 2), lambda: govsc.probe_starting_stacks(0, "8")])
def test_bad_sizes_raise_one_line_value_errors(call):
    with pytest.raises(ValueError) as info:
        call()
    assert "\n" not in str(info.value)


def test_runtime_syscalls_rejects_non_elf(tmp_path):
    from helpers.elf import ElfError
    (tmp_path / "x").write_bytes(b"not an elf")
    with pytest.raises(ElfError):
        govsc.runtime_syscalls(tmp_path / "x")


# ---- chapter 1: what the compiler insists on, and who sets a thread's stack --------------------------------------
def test_unused_err_and_half_assignment_do_not_compile():
    assert govsc.compile_errors(govsc.GO_UNUSED_ERR) == ["./main.go:6:5: declared and not used: err"]
    assert "assignment mismatch" in govsc.compile_errors(govsc.GO_HALF_ASSIGNED)[0]
    assert govsc.compile_errors(govsc.GO_IGNORED_ERROR) == []
    with pytest.raises(ValueError):
        govsc.compile_errors(None)


def _fake_zig(tmp_path, header: str, init: str):
    (tmp_path / "lib/libc/musl/src/internal").mkdir(parents=True)
    (tmp_path / "lib/libc/musl/src/env").mkdir(parents=True)
    (tmp_path / govsc.MUSL_PTHREAD_IMPL).write_text(header)
    (tmp_path / govsc.MUSL_INIT_TLS).write_text(init)
    return tmp_path


RULE = ("\t\tif (phdr->p_type == PT_GNU_STACK &&\n\t\t    phdr->p_memsz > __default_stacksize)\n"
        "\t\t\t__default_stacksize =\n\t\t\t\tphdr->p_memsz < DEFAULT_STACK_MAX ?\n"
        "\t\t\t\tphdr->p_memsz : DEFAULT_STACK_MAX;\n")


def test_musl_stack_rule_from_a_synthetic_tree(tmp_path):
    root = _fake_zig(tmp_path, "#define DEFAULT_STACK_SIZE 131072\n#define DEFAULT_STACK_MAX (8<<20)\n", RULE)
    r = govsc.musl_stack_rule(root)
    assert (r["DEFAULT_STACK_SIZE"], r["DEFAULT_STACK_MAX"]) == (128 << 10, 8 << 20) and "PT_GNU_STACK" in r["rule"]


def test_musl_stack_rule_refuses_a_source_that_changed(tmp_path):
    root = _fake_zig(tmp_path, "#define DEFAULT_STACK_SIZE 131072\n#define DEFAULT_STACK_MAX (8<<20)\n", "/* gone */\n")
    with pytest.raises(ValueError):
        govsc.musl_stack_rule(root)


@given(st.one_of(st.none(), st.integers(0, 1 << 34)))
def test_musl_default_stack_is_clamped(memsz):
    rule = {"DEFAULT_STACK_SIZE": 128 << 10, "DEFAULT_STACK_MAX": 8 << 20}
    size = govsc.musl_default_stack(memsz, rule)
    assert 128 << 10 <= size <= 8 << 20
    assert size == (min(max(memsz, 128 << 10), 8 << 20) if memsz is not None else 128 << 10)


def test_pinned_musl_rule_predicts_every_link():
    rule = govsc.musl_stack_rule()
    rows = govsc.musl_thread_stacks((None, 512 << 10, 16 << 10))
    assert [r["runtime"] for r in rows] == [govsc.musl_default_stack(r["gnu_stack"], rule) for r in rows]
    assert rows[0]["gnu_stack"] == 16 << 20 and rows[1]["runtime"] == 512 << 10 and rows[2]["runtime"] == 128 << 10
    for r in rows:
        if r["readelf"] is not None:
            assert int(r["readelf"].split()[5], 16) == r["gnu_stack"]


@pytest.mark.parametrize("bad", [0, -4096, 2.5, True, 1 << 40])
def test_musl_thread_stacks_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        govsc.musl_thread_stacks((bad,))


def test_code_share_legend_sits_below_the_axes_and_names_every_category():
    from helpers.viz.govsc import draw_code_share
    code = {"runtime": {"functions": 9, "bytes": 465_000}, "other packages": {"functions": 3, "bytes": 132_000},
            "main": {"functions": 1, "bytes": 82}}
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = draw_code_share(code)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax, legend = fig.axes[0], fig.legends[0]
    renderer = canvas.get_renderer()
    box, axbox, title = (legend.get_window_extent(renderer), ax.get_window_extent(renderer),
                         ax.title.get_window_extent(renderer))
    assert box.y1 <= axbox.y0 and not box.overlaps(title)          # below the axis: covers neither title nor bars
    assert any(t.get_text().startswith("main: 82 bytes") for t in legend.get_texts())
    assert any(a.get_text() == "main" for a in ax.texts)            # the sliver too thin to see is pointed at
    with pytest.raises(ValueError):
        draw_code_share({})
