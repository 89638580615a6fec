"""helpers.idt against the Intel SDM and Linux: gate encoding, decoding, and delivery."""
import pytest
from hypothesis import given, settings, strategies as st

from helpers import idt
from helpers.viz.idt import draw_gate
from helpers.idt import Gate, GateError, TSS, deliver

# (description, gate, mode, expected bytes) -- layouts from Intel SDM Vol. 3A Figure 6-8 / Figure 6-2 and
# Linux's struct gate_struct (arch/x86/include/asm/desc_defs.h).
ENCODINGS = [
    ("Linux INTG: interrupt gate DPL 0, __KERNEL_CS", Gate(0xFFFFFFFF81A00A40, 0x10), "long",
     "40 0a 10 00 00 8e a0 81 ff ff ff ff 00 00 00 00"),
    ("Linux SYSG (#BP): interrupt gate DPL 3", Gate(0xFFFFFFFF81A00A40, 0x10, dpl=3), "long",
     "40 0a 10 00 00 ee a0 81 ff ff ff ff 00 00 00 00"),
    ("Linux ISTG (#DF, IST_INDEX_DF=0 -> IST 1)", Gate(0xFFFFFFFF81A00A40, 0x10, ist=1), "long",
     "40 0a 10 00 01 8e a0 81 ff ff ff ff 00 00 00 00"),
    ("trap gate, type 0xF", Gate(0x401000, 0x08, kind="trap"), "long",
     "00 10 08 00 00 8f 40 00 00 00 00 00 00 00 00 00"),
    ("not present", Gate(0x401000, 0x08, present=False), "long",
     "00 10 08 00 00 0e 40 00 00 00 00 00 00 00 00 00"),
    ("32-bit interrupt gate", Gate(0xC0101234, 0x60), "protected", "34 12 60 00 00 8e 10 c0"),
    ("32-bit task gate (Linux TSKG for #DF on i386)", Gate(0, 0xF8, kind="task"), "protected",
     "00 00 f8 00 00 85 00 00"),
]


@pytest.mark.parametrize("what,gate,mode,hexstr", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_encode_matches_sdm_and_linux(what, gate, mode, hexstr):
    raw = gate.encode(mode)
    assert idt.hexbytes(raw) == hexstr
    assert Gate.decode(raw, mode) == gate
    assert Gate.decode(hexstr, mode) == gate  # hex text is accepted too


def test_byte5_is_type_dpl_present():
    # Intel SDM Vol. 3A Figure 6-8: byte 5 = P | DPL | 0 | type. 0x8E = interrupt gate, 0x8F = trap gate.
    assert Gate(0, 0x10, kind="interrupt").encode()[5] == 0x8E
    assert Gate(0, 0x10, kind="trap").encode()[5] == 0x8F


def test_linux_idt_matches_idt_c():
    table = idt.linux_idt()
    assert table[3].kind == "interrupt" and table[3].dpl == 3  # SYSG(X86_TRAP_BP, asm_exc_int3)
    assert table[8].ist == 1  # ISTG(X86_TRAP_DF, ..., IST_INDEX_DF) with IST_INDEX_DF = 0
    assert table[13].dpl == 0 and table[13].ist == 0  # INTG(X86_TRAP_GP, ...)
    assert table[0x80].dpl == 3 and table[0x80].kind == "interrupt"  # SYSG(IA32_SYSCALL_VECTOR, ...) with IA32 emulation
    assert table[29].ist == 5  # ISTG(X86_TRAP_VC, ..., IST_INDEX_VC) with IST_INDEX_VC = 4, under AMD_MEM_ENCRYPT
    assert 0x80 not in idt.linux_idt(ia32_emulation=False) and 29 not in idt.linux_idt(amd_mem_encrypt=False)


def test_gate_drawing_names_every_field_in_full():
    fig = draw_gate(Gate(0xFFFFFFFF81A00A40, idt.KERNEL_CS).encode())
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert {"zero", "type", "dpl", "ist", "s", "p", "reserved"} <= texts and not {"zer", "typ"} & texts


@pytest.mark.parametrize("kwargs,field", [
    (dict(offset=1 << 64, selector=0x10), "offset"),
    (dict(offset=-1, selector=0x10), "offset"),
    (dict(offset=0, selector=0x10000), "selector"),
    (dict(offset=0, selector=0x10, ist=8), "ist"),
    (dict(offset=0, selector=0x10, dpl=4), "dpl"),
    (dict(offset=0, selector=0x10, kind="task"), "kind"),
    (dict(offset=0, selector=0x10, kind="call"), "kind"),
    (dict(offset=0, selector=0x10, present=1), "present"),
    (dict(offset="0", selector=0x10), "offset"),
])
def test_bad_fields_name_the_field(kwargs, field):
    with pytest.raises(GateError, match=rf"^{field}:"):
        Gate(**kwargs).encode("long")


def test_protected_mode_limits():
    with pytest.raises(GateError, match="^offset:"):
        Gate(1 << 32, 0x10).encode("protected")
    with pytest.raises(GateError, match="^ist:"):
        Gate(0, 0x10, ist=1).encode("protected")


@pytest.mark.parametrize("raw,mode,field", [
    (bytes(15), "long", "length"),
    (bytes(8), "long", "length"),
    (bytes(16), "long", "type"),  # all zeros: type 0 is not a gate
    (bytes.fromhex("0000100000850000" + "00" * 8), "long", "type"),  # a task gate in 64-bit mode
    (bytes.fromhex("00001000009a0000" + "00" * 8), "long", "type"),  # a code segment (S=1)
    (bytes.fromhex("00001000088e0000" + "00" * 8), "long", "zero"),  # bits 35-39 set
    (bytes.fromhex("00001000008e0000" + "00" * 4 + "01000000"), "long", "reserved"),
    (bytes.fromhex("0000100000860000"), "protected", "type"),  # 16-bit gate: not modelled
])
def test_bad_bytes_name_the_field(raw, mode, field):
    with pytest.raises(GateError, match=rf"^{field}:"):
        Gate.decode(raw, mode)


@pytest.mark.parametrize("text,msg", [("8e0 00", "odd"), ("zz", "not a hex"), ("", "no hex"), ("8e" * 15, "length")])
def test_bad_hex(text, msg):
    with pytest.raises(GateError, match=msg):
        Gate.decode(text)


def test_layout_covers_every_bit_once():
    for mode, size in idt.GATE_SIZE.items():
        bits = [b for f in idt.layout(bytes(size), mode) for b in range(f.lo, f.hi + 1)]
        assert sorted(bits) == list(range(size * 8))


def test_field_diff_names_the_selector_for_offset_2():
    before = Gate(0xFFFFFFFF81000000, 0x10).encode()
    after = bytearray(before)
    after[2:4] = (0x8E00).to_bytes(2, "little")  # what `movw $0x8e00, 2(%rax)` writes
    assert idt.field_diff(before, bytes(after)) == [("selector", 0x10, 0x8E00)]


# ---- hypothesis: round trips over all valid fields, random bytes decode or raise GateError -------------
long_gates = st.builds(Gate, offset=st.integers(0, (1 << 64) - 1), selector=st.integers(0, 0xFFFF),
                       ist=st.integers(0, 7), kind=st.sampled_from(["interrupt", "trap"]),
                       dpl=st.integers(0, 3), present=st.booleans())
prot_gates = st.one_of(
    st.builds(Gate, offset=st.integers(0, (1 << 32) - 1), selector=st.integers(0, 0xFFFF),
              kind=st.sampled_from(["interrupt", "trap"]), dpl=st.integers(0, 3), present=st.booleans()),
    st.builds(Gate, offset=st.just(0), selector=st.integers(0, 0xFFFF), kind=st.just("task"),
              dpl=st.integers(0, 3), present=st.booleans()))


@given(long_gates)
def test_roundtrip_long(gate):
    raw = gate.encode("long")
    assert len(raw) == 16 and Gate.decode(raw, "long") == gate
    # the layout's fields reassemble the offset by concatenation (desc_defs.h gate_offset())
    f = {x.name: x.value for x in gate.fields("long")}
    assert f["offset_low"] | f["offset_middle"] << 16 | f["offset_high"] << 32 == gate.offset


@given(prot_gates)
def test_roundtrip_protected(gate):
    assert Gate.decode(gate.encode("protected"), "protected") == gate


@given(st.binary(min_size=0, max_size=20), st.sampled_from(["long", "protected"]), st.booleans())
@settings(max_examples=300)
def test_random_bytes_decode_or_gateerror(raw, mode, strict):
    try:
        gate = Gate.decode(raw, mode, strict=strict)
    except GateError as e:
        assert "\n" not in str(e) and ":" in str(e)
        return
    # whatever decodes re-encodes to the same bytes, up to the reserved bits a lenient decode ignored
    again = gate.encode(mode)
    if strict:
        assert again == raw


# ---- delivery ---------------------------------------------------------------------------------------
HANDLER = 0xFFFFFFFF81000000
STATE = dict(rip=0x401000, rsp=0x7FFFFFFFE238, rflags=0x202)


def one(vector, **gate_kw):
    return {vector: Gate(HANDLER + vector * 0x40, idt.KERNEL_CS, **gate_kw), 13: Gate(HANDLER + 13 * 0x40, idt.KERNEL_CS),
            11: Gate(HANDLER + 11 * 0x40, idt.KERNEL_CS), 8: Gate(HANDLER + 8 * 0x40, idt.KERNEL_CS, ist=1)}


def test_int3_from_user_through_linux_bp_gate():
    d = deliver(3, idt.linux_idt(), cpl=3, insn_len=1, **STATE)
    assert d.fault is None and d.delivered == 3 and d.cpl == 0
    assert d.stack_switched and d.stack_source == "RSP0"
    assert [s.name for s in d.frame] == ["SS", "RSP", "RFLAGS", "CS", "RIP"]
    assert d.frame[-1].value == STATE["rip"] + 1  # INT3 is one byte; the frame returns after it
    assert d.frame[0].value == idt.USER_DS and d.frame[3].value == idt.USER_CS
    assert d.rsp == (TSS().rsp[0] & ~0xF) - 5 * 8
    assert d.ss == 0  # CPL change in 64-bit mode loads a null SS (RPL = new CPL)


def test_int_from_cpl3_through_dpl0_gate_is_gp():
    d = deliver(0x80, one(0x80), cpl=3, **STATE)
    assert d.faults == [("#GP", 0x80 * 8 + 2)]  # IDT bit set, EXT clear for INT n
    assert d.delivered == 13 and d.frame[-1].name == "error code" and d.frame[-1].value == 0x402
    assert d.frame[-2].value == STATE["rip"]  # a fault: the saved RIP is the INT instruction itself


def test_dpl_check_only_for_software_interrupts():
    d = deliver(0x30, one(0x30), cpl=3, software=False, **STATE)
    assert d.fault is None and d.delivered == 0x30


def test_not_present_is_np():
    d = deliver(0x40, one(0x40, present=False), cpl=0, **STATE)
    assert d.faults == [("#NP", 0x40 * 8 + 2)] and d.delivered == 11


def test_limit_and_missing_entries_are_gp():
    d = deliver(0x40, one(0x40), cpl=0, limit=0x40 * 16 - 1, **STATE)
    assert d.faults[0] == ("#GP", 0x40 * 8 + 2)
    d = deliver(0x41, one(0x40), cpl=0, **STATE)
    assert d.faults[0] == ("#GP", 0x41 * 8 + 2)


def test_contributory_pair_is_double_fault_then_triple():
    table = one(0x40)
    del table[13]
    d = deliver(13, table, cpl=0, software=False, error_code=0, **STATE)  # #GP whose gate is missing
    assert [f for f, _ in d.faults] == ["#GP", "#DF"] and d.delivered == 8 and d.stack_source == "IST1"
    assert d.frame[-1] == idt.Slot("error code", d.frame[-1].address, 0)
    del table[8]
    d = deliver(13, table, cpl=0, software=False, error_code=0, **STATE)
    assert d.fault == "triple fault" and d.delivered is None


def test_error_code_only_for_exceptions_not_int_n():
    assert [s.name for s in deliver(14, one(14), software=False, error_code=6, **STATE).frame][-1] == "error code"
    assert [s.name for s in deliver(14, one(14), software=True, **STATE).frame][-1] == "RIP"


vectors = st.integers(32, 255)


@given(vectors, st.integers(0, 3), st.integers(0, 3), st.sampled_from(["interrupt", "trap"]), st.booleans(),
       st.integers(0, 7), st.integers(0x1000, 0x7FFF_FFFF_FFF0), st.integers(0, 0x3FFFFF), st.booleans())
@settings(max_examples=300)
def test_delivery_properties(vector, cpl, dpl, kind, present, ist, rsp, rflags, software):
    table = one(vector, dpl=dpl, kind=kind, present=present, ist=ist)
    d = deliver(vector, table, cpl=cpl, software=software, rip=0x401000, rsp=rsp, rflags=rflags)
    if software and dpl < cpl:
        assert d.faults[0] == ("#GP", vector * 8 + 2)
    elif not present:
        assert d.faults[0] == ("#NP", vector * 8 + 2 + (0 if software else 1))
    else:
        assert d.fault is None and d.delivered == vector
        assert bool(d.rflags & idt.IF) == (kind == "trap" and bool(rflags & idt.IF))
        if ist:
            assert d.stack_source == f"IST{ist}"
        elif cpl > 0:
            assert d.stack_source == "RSP0"
        else:
            assert not d.stack_switched
    if d.delivered is not None:
        assert (d.frame[0].address + 8) % 16 == 0  # the frame starts on a 16-byte boundary
        assert d.frame[1].value == rsp  # old RSP saved
        # Old RFLAGS saved, with RF as the SDM defines it (Vol. 3A §16.3.1.1): 1 for a fault, 0 for INT n.
        if d.faults and d.delivered in idt.FAULT_CLASS:
            assert d.frame[2].value == rflags | idt.RF
        elif software and not d.faults:
            assert d.frame[2].value == rflags & ~idt.RF
        else:
            assert d.frame[2].value == rflags
        assert d.rflags & (idt.TF | idt.NT | idt.RF) == 0
        assert d.rsp == d.frame[-1].address and d.cpl == 0


@pytest.mark.parametrize("kw,msg", [(dict(vector=256), "vector"), (dict(cpl=4), "cpl"), (dict(rsp=-1), "rsp")])
def test_bad_delivery_input(kw, msg):
    args = dict(vector=3, cpl=0, rip=0, rsp=0x1000) | kw
    with pytest.raises(GateError, match=msg):
        deliver(args.pop("vector"), {}, **args)


# ---- the emulator: a real lidt, int n, handler and iretq in unicorn, with deliver() in the hook ---------
DEMO = dict(offset=idt.DEMO_HANDLER, selector=idt.KERNEL_CS)

EMU_CASES = [
    # (gate kwargs, cpl, software, handler that runs, fault, IF seen by the handler)
    (dict(dpl=3), 3, True, 0x80, None, 0),
    (dict(dpl=3, kind="trap"), 3, True, 0x80, None, 1),
    (dict(dpl=0), 3, True, 13, "#GP", 0),
    (dict(dpl=3, present=False), 3, True, 11, "#NP", 0),
    (dict(dpl=0), 3, False, 0x80, None, 0),  # hardware interrupt: no DPL check
    (dict(dpl=0, ist=2), 0, True, 0x80, None, 0),
]


@pytest.mark.parametrize("gate_kw,cpl,software,handler,fault,if_seen", EMU_CASES)
def test_emulated_delivery_matches_model(gate_kw, cpl, software, handler, fault, if_seen):
    run = idt.run_int(Gate(**DEMO, **gate_kw), 0x80, cpl=cpl, software=software)
    d = run.delivery
    assert run.idtr == (idt.IDT_BASE, 0xFFF)  # what the program's own lidt loaded
    assert run.handler == handler and d.delivered == handler and (d.faults[0][0] if d.faults else None) == fault
    assert run.handler_rflags >> 9 & 1 == if_seen  # pushfq inside the handler, in unicorn
    assert run.handler_rsp == d.rsp and run.handler_rsp % 16 == (0 if d.frame[-1].name == "error code" else 8)
    assert run.frame_in_memory == [(s.name, s.address, s.value) for s in d.frame]
    assert run.outcome.status == "finished" and run.back["rip_ok"]
    assert run.back["cpl"] == cpl and run.back["rflags"] >> 9 & 1 == 1  # iretq restored CPL and IF
    if fault == "#GP":
        assert run.error_code == 0x80 * 8 + 2
    if gate_kw.get("ist"):
        assert d.stack_source == "IST2"


def test_emulated_handler_runs_at_cpl0():
    # a privileged instruction in the handler would #GP at CPL 3; it must not
    orig = idt._handler_source
    try:
        idt._handler_source = lambda *a, **k: "movq %cr0, %rax\n" + orig(*a, **k)
        run = idt.run_int(Gate(**DEMO, dpl=3), 0x80, cpl=3)
    finally:
        idt._handler_source = orig
    assert run.outcome.status == "finished" and run.handler == 0x80


def test_article_store_hits_the_selector_and_destroys_the_gate():
    r = idt.store_into_gate(idt.ARTICLE_STORE, Gate(**DEMO))
    fields = {name for name, _, _ in r.changed}
    assert "selector" in fields and r.after[2:4] == b"\x00\x8e"
    assert r.gate is None and r.error.startswith("type:")
    d = deliver(0, {0: r.after}, cpl=0, software=False, **STATE)
    assert d.faults[0] == ("#GP", 0 * 8 + 2 + 1)


def test_attribute_word_belongs_at_offset_4():
    blank = bytearray(Gate(**DEMO).encode())
    blank[4:6] = b"\0\0"
    for word, kind in ((0x8E00, "interrupt"), (0x8F00, "trap")):
        r = idt.store_into_gate(f"movq ${idt.IDT_BASE:#x}, %rax\nmovw ${word:#x}, 4(%rax)\n", bytes(blank))
        assert r.gate == Gate(**DEMO, kind=kind)


@pytest.mark.parametrize("kw,msg", [(dict(vector=8), "vector"), (dict(cpl=1), "cpl")])
def test_run_int_bad_input(kw, msg):
    with pytest.raises(GateError, match=msg):
        idt.run_int(Gate(**DEMO), **({"vector": 0x80} | kw))


# ---- widgets: controls change the bytes, bad input is one line ---------------------------------------
def test_gate_workbench():
    from helpers.widgets.idt import GateWorkbench

    w = GateWorkbench()
    assert "8e" in w.text.value and w.image.value[:4] == b"\x89PNG"
    w.dpl.value = 3
    assert "40 0a 10 00 00 ee" in w.text.value
    w.offset.value = "nonsense"
    assert "offset:" in w.status.value and "\n" not in w.status.value
    w.offset.value = "0x401000"
    w.paste.value = "00 10 08 00 00 8f 40 00 00 00 00 00 00 00 00 00"
    w.decode_paste()
    assert (w.kind.value, w.selector.value, w.dpl.value) == ("trap", "0x8", 0) and w.status.value == ""
    w.paste.value = "8e0 00"
    w.decode_paste()
    assert "odd number" in w.status.value


def test_delivery_viewer():
    from helpers.widgets.idt import DeliveryViewer

    w = DeliveryViewer()
    assert "IF 1 -&gt; 0" in w.text.value and w.last.emulated and w.image.value[:4] == b"\x89PNG"
    w.dpl.value = 0
    assert "#GP" in w.text.value and w.last.delivery.delivered == 13
    w.kind.value = "trap"
    w.dpl.value = 3
    assert "IF 1 -&gt; 1" in w.text.value and w.last.handler_rflags >> 9 & 1 == 1
    w.trigger.click()
    assert w.renders >= 4


@given(vectors, st.integers(0, 3), st.integers(0, 3), st.booleans(), st.booleans(), st.integers(0, 0x3FFFFF))
@settings(max_examples=200)
def test_qemu_72_differs_from_the_sdm_in_error_codes_and_rf_only(vector, cpl, dpl, present, software, rflags):
    """follows="qemu-7.2" (what the test kernel measured): IDT error codes are vector * 16 + 2 without EXT, and a
    fault pushes RF as it was. Everything else is the same as the SDM's."""
    table = one(vector, dpl=dpl, present=present)
    kw = dict(cpl=cpl, software=software, rip=0x401000, rsp=0x8000, rflags=rflags & ~idt.RF)
    sdm, qemu = deliver(vector, table, **kw), deliver(vector, table, follows="qemu-7.2", **kw)
    assert [f for f, _ in sdm.faults] == [f for f, _ in qemu.faults] and sdm.delivered == qemu.delivered
    assert (sdm.rsp, sdm.rflags, sdm.cs, sdm.ss, sdm.stack_source) == (qemu.rsp, qemu.rflags, qemu.cs, qemu.ss, qemu.stack_source)
    if qemu.faults and qemu.faults[0][0] in ("#GP", "#NP"):
        assert qemu.faults[0][1] == vector * 16 + 2 and sdm.faults[0][1] == vector * 8 + 2 + (0 if software else 1)
        assert qemu.frame[2].value == rflags & ~idt.RF and sdm.frame[2].value == (rflags & ~idt.RF) | idt.RF
    else:
        assert [(x.name, x.value) for x in sdm.frame] == [(x.name, x.value) for x in qemu.frame]


def test_follows_must_be_known():
    with pytest.raises(idt.GateError, match="follows: 'bochs' is not one of sdm, qemu-7.2"):
        deliver(0x80, one(0x80), rip=0, rsp=0x8000, follows="bochs")


def test_a_zero_ist_pointer_wraps_around_and_says_so():
    d = deliver(0x80, {0x80: Gate(0x1000, 0x10, ist=5, dpl=3)}, cpl=3, rip=0x1000, rsp=0x8000)  # IST5 is 0
    assert d.rsp == 2**64 - 40 and all(0 <= s.address < 2**64 for s in d.frame)
    assert any("wraps around address 0" in n for n in d.notes)
