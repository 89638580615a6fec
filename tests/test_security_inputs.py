"""Direct calls, as a notebook author or a student writes them: wrong types and sizes end in one line of the
ValueError family, at once (issue 13, "Direct calls" and "Messages")."""
from __future__ import annotations

import pytest

from helpers import abi, idt
from helpers.emu import Machine
from helpers.labs.common import parse_answer


def _one_line(excinfo):
    msg = str(excinfo.value)
    assert msg and "\n" not in msg and len(msg) < 300, msg
    return msg


@pytest.mark.parametrize("call", [
    lambda: parse_answer("hex", "1", width=2**70),            # 16 ** width never returned
    lambda: parse_answer("bytes", "00", width=2**70),
    lambda: parse_answer("hex", "1", width=-1),
    lambda: parse_answer("hex", "1", width="8"),
    lambda: Machine(stack_size=4 << 30),                      # took 45 s
    lambda: Machine(data_size=4 << 30),
    lambda: idt.Gate.decode(None),                             # TypeError
    lambda: idt.Gate.decode(12345),
    lambda: idt.Gate.decode([300] * 16),
    lambda: idt.layout(None),
    lambda: idt.field_diff(None, b"\0" * 16),
    lambda: idt.store_into_gate("nop", None),
    lambda: idt.store_into_gate("nop", b"\0" * 3),
    lambda: idt.run_int(None),                                 # AttributeError
    lambda: idt.run_int(idt.Gate(0x1000, 0x10), rflags=-1),    # an internal program's line number
    lambda: idt.run_int(idt.Gate(0x1000, 0x10), rflags=2**63),
    lambda: idt.run_int(idt.Gate(0x1000, 0x10), rflags=0x80000202),
    lambda: idt.run_int(idt.Gate(0x1000, 0x10), rflags="0x202"),
    lambda: idt.run_int(idt.Gate(0x1000, 0x10), software="yes"),
    lambda: abi.place_arguments("cdecl", None),                # TypeError
    lambda: abi.place_arguments("cdecl", 5),
    lambda: abi.place_arguments("cdecl", {"a": 1}),
    lambda: abi.place_arguments("cdecl", [2**4000]),
    lambda: Machine("x86_32").hook_address(2**64 - 1, lambda m, a: None),
])
def test_bad_direct_calls_are_one_line_value_errors(call):
    with pytest.raises(ValueError) as e:
        call()
    _one_line(e)


def test_rflags_error_is_about_the_readers_value():
    with pytest.raises(idt.GateError) as e:
        idt.run_int(idt.Gate(0x1000, 0x10), rflags=0x80000202)
    assert _one_line(e).startswith("rflags: ") and "line" not in str(e.value)


def test_valid_calls_still_work():
    assert parse_answer("hex", "0x8e00", width=4) == 0x8e00
    assert idt.Gate.decode(idt.Gate(0x1000, 0x10).encode()).offset == 0x1000
    assert abi.place_arguments("cdecl", (1, 2)).stack_bytes == 8
    assert abi.place_arguments("sysv-x86_64", range(3)).slots[2].register == "rdx"
    m = Machine()
    m.remove_hook(m.hook_address(2**64 - 1, lambda mm, a: None))
    assert idt.run_int(idt.Gate(idt.DEMO_HANDLER, 0x10), rflags=0x202).outcome is not None
