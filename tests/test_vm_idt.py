"""The IDT model against QEMU: the book's bare-metal test kernel (helpers.guests.idtk), one boot for the
chapter's hand-picked scenarios and a seeded random sample of 240 gate/event combinations."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from helpers import idt, vm
from helpers.guests import idtk

needs_qemu = pytest.mark.skipif(not vm.available() and not vm.require_vm_env(),
                                reason="qemu-system-x86_64 not installed (BOOK_REQUIRE_VM=1 makes this a failure)")


@pytest.fixture(scope="module")
def batch():
    return idtk.run(idtk.batch())


def test_random_sample_is_seeded_and_varied():
    a, b = idtk.random_scenarios(), idtk.random_scenarios()
    assert len(a) >= 200 and [s.gate_bytes() for s in a] == [s.gate_bytes() for s in b]
    kinds = {(s.event, s.cpl) for s in a}
    assert kinds == {("int", 0), ("int", 3), ("hw", 0), ("hw", 3)}
    faults = {idtk.model(s, 0).fault for s in a}
    assert {None, "#GP", "#NP", "#DF"} <= faults


def test_generated_gates_are_encode_bytes():
    s = idtk.scenarios()[0]
    src = idtk.kernel_source([s])
    lo, hi = (int.from_bytes(s.gate_bytes()[0x80][i:i + 8], "little") for i in (0, 8))
    assert f"movabs ${lo:#x}, %rax\n    mov %rax, idt + {16 * 0x80}" in src
    assert idtk.MARKER not in src


@needs_qemu
def test_one_boot_runs_the_batch_within_15_seconds(batch):
    assert batch.run.stop == "triple fault"  # the last scenario ends the machine, as it should
    assert batch.run.cached or batch.run.elapsed < 15
    assert all(o.outcome in ("delivered", "triple fault") for o in batch.observations)


@needs_qemu
def test_guest_idt_holds_exactly_the_encoded_gates(batch):
    for s, o in batch:
        assert o.gates == s.gate_bytes(), s.name


@needs_qemu
def test_model_following_qemu_72_matches_every_scenario_field_by_field(batch):
    bad = [(s.name, d) for s, o in batch if (d := idtk.compare(s, o, "qemu-7.2"))]
    assert not bad, bad[:3]


@needs_qemu
def test_the_sdm_model_differs_from_qemu_only_in_rf_and_error_codes(batch):
    """Where the SDM and QEMU 7.2 disagree, it is exactly helpers.idt.FOLLOWS's list: RF=1 in a fault's
    RFLAGS image (QEMU: 0), and the IDT error code vector*8+2+EXT (QEMU: vector*16+2, no EXT)."""
    seen = set()
    for s, o in batch:
        for name, got, want in idtk.compare(s, o, "sdm"):
            d = idtk.model(s, o.event_rip)
            if name == "RFLAGS":
                assert want == got | idt.RF and d.faults, s.name
                seen.add("RF")
            elif name == "error code":
                assert d.fault in ("#GP", "#NP"), s.name
                if want & 2:  # the IDT bit: the error code names a gate; QEMU puts its index times 16, no EXT
                    assert got == (want >> 3) * 16 + 2, s.name
                    seen.add("IDT index x16")
                else:  # a selector: the same, but QEMU drops EXT
                    assert want & 1 and got == want & ~1, s.name
                    seen.add("EXT")
            else:
                pytest.fail(f"{s.name}: unexpected difference in {name}: QEMU {got!r}, SDM model {want!r}")
    assert seen == {"RF", "IDT index x16", "EXT"}


@needs_qemu
def test_hand_picked_facts(batch):
    by_name = {s.name: (s, o) for s, o in batch}
    s, o = by_name["int 0x80, CPL 3, gate DPL 0 (#GP)"]
    assert o.vector == 13 and o.words[0] == 0x80 * 16 + 2  # QEMU 7.2's error code (the SDM: 0x402)
    assert o.words[3] & idt.RF == 0  # QEMU pushes RF=0 for the fault (the SDM: 1)
    s, o = by_name["hardware interrupt, CPL 3, gate DPL 0"]
    assert o.vector == 0x40  # the gate's DPL does not apply to a hardware interrupt
    s, o = by_name["RSP0 not 16-byte aligned"]
    assert o.rsp == (idtk.RSP0_TOP - 8 & ~0xF) - 40 and o.words[5:] == [idtk.POISON]
    s, o = by_name["interrupt gate clears IF"]
    assert o.rflags & idt.IF == 0 and o.words[2] & idt.IF
    s, o = by_name["trap gate leaves IF"]
    assert o.rflags & idt.IF
    s, o = by_name["#NP, then #NP delivering it: #DF"]
    assert o.vector == 8 and o.words[0] == 0 and idtk.IST_TOPS[0] - 48 == o.rsp
    assert by_name["#DF cannot be delivered either: triple fault"][1].outcome == "triple fault"


@needs_qemu
def test_recording_still_matches_a_live_run():
    """The recording the notebooks fall back to (helpers/recorded/vm/idt_kernel.json) is what QEMU prints today."""
    live = vm._live(vm.EXPERIMENTS["idt_kernel"])
    saved = json.loads((vm.RECORDINGS / "idt_kernel.json").read_text())
    assert saved["run"]["console"] == live.console, "re-record with: python -m helpers.vm record idt_kernel"
    # A Debian update of QEMU or a new zig may change the versions; what the guest printed must not change.
    assert saved["run"]["qemu"].startswith("QEMU emulator version") and saved["versions"]["compiler"]


@pytest.mark.parametrize("kw, message", [
    (dict(name="x", vector=300), "vector must be 0..255"),
    (dict(name="x", vector=0x80, cpl=1), "CPL 0 and 3 only"),
    (dict(name="x", vector=0x80, event="nmi"), "event must be"),
    (dict(name="x", vector=0x10, event="hw"), "self-IPI needs a vector"),
    (dict(name="x", vector=0x80, rflags=0x10002), "rflags"),
    (dict(name="x", vector=0x80, cpl=3, rflags=0x3202), "rflags"),
    (dict(name="x", vector=0x80, gates={0x80: b"\x00" * 15}), "16 bytes"),
])
def test_bad_scenarios_are_one_line_errors(kw, message):
    with pytest.raises(vm.VMError, match=message):
        idtk.Scenario(**kw)


def test_a_triple_fault_must_come_last():
    tf = idtk.scenarios()[-1]
    with pytest.raises(vm.VMError, match="must be the last scenario"):
        idtk.run([tf, idtk.scenarios()[0]])


words64 = st.integers(0, 2**64 - 1)


@given(st.text(max_size=400), st.integers(1, 5))
@settings(max_examples=200)
def test_parse_never_raises_on_garbage(text, n):
    obs = idtk.parse(text, n)
    assert [o.index for o in obs] == list(range(n))
    assert all(o.outcome in ("missing", "delivered", "no event") for o in obs)


@given(st.integers(0, 3), words64, st.integers(0, 255), words64, words64, st.lists(words64, max_size=12),
       st.binary(min_size=16, max_size=16), st.booleans())
@settings(max_examples=200)
def test_parse_reads_back_what_the_kernel_prints(index, rip, vector, rsp, rflags, words, gate, noise):
    h = lambda v: f"{v:016x}"
    lines = [f"G {h(index)} {h(0x80)} " + " ".join(f"{b:02x}" for b in gate) + " ",
             f"S {h(index)} {h(rip)} ",
             f"E {h(index)} {h(vector)} {h(rsp)} {h(rflags)} {h(len(words))} " + " ".join(map(h, words)) + " "]
    if noise:  # firmware chatter and a duplicate report are ignored
        lines = ["SeaBIOS (version 1.16)", *lines, f"E {h(index)} {h(1)} {h(2)} {h(3)} {h(0)} "]
    o = idtk.parse("\n".join(lines) + "\n", 4)[index]
    assert (o.event_rip, o.vector, o.rsp, o.rflags, o.words, o.gates, o.outcome) == \
        (rip, vector, rsp, rflags, words, {0x80: gate}, "delivered")
    assert idtk.Observation.from_json(o.to_json()) == o


@needs_qemu
def test_delivery_viewer_runs_it_on_qemu_and_greys_a_stale_result():
    from helpers.widgets.idt import DeliveryViewer
    w = DeliveryViewer()
    w.cpl.value, w.dpl.value = 3, 0
    w.run_on_qemu()
    assert "handler for vector" in w.qemu_out.value and "0xd" in w.qemu_out.value  # #GP on the machine
    assert "agrees with QEMU field by field" in w.qemu_out.value
    w.dpl.value = 3
    assert "qemu-stale" in w.qemu_out.value and "press Run it on QEMU again" in w.qemu_out.value
    w.run_on_qemu()
    assert "qemu-stale" not in w.qemu_out.value and "0x80" in w.qemu_out.value


def test_delivery_viewer_without_qemu_says_what_to_install(monkeypatch, tmp_path):
    from helpers.widgets.idt import DeliveryViewer
    w = DeliveryViewer()
    monkeypatch.setenv("PATH", str(tmp_path))
    vm.qemu_version.cache_clear()
    try:
        w.run_on_qemu()
    finally:
        monkeypatch.undo()
        vm.qemu_version.cache_clear()
    assert "apt-get install -y --no-install-recommends qemu-system-x86" in w.qemu_out.value
    assert w.last_qemu is None and "Traceback" not in w.qemu_out.value


def test_crosscheck_categories():
    from helpers.viz.idt import crosscheck_category, draw_crosscheck
    assert [crosscheck_category(d) for d in ([], ["RFLAGS"], ["error code", "RFLAGS"], ["RSP"])] == [
        "agrees field by field", "differs in RF only", "differs in RF and the error code", "differs elsewhere"]
    fig = draw_crosscheck([("a", []), ("random 1", ["RFLAGS"])], "t")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:2] == ["agrees field by field (1)", "differs in RF only (1)"]
