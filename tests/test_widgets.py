"""What a reader can trust in every widget: progress on slow redraws, greyed stale views after errors, a readable
stand-in where no kernel runs, and the input handling of the 02a, 03a and 00 widgets."""
import base64
import io
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.formatters import DisplayFormatter
from matplotlib.image import imread

from helpers import book, idt
from helpers.widgets import base
from helpers.widgets.abi import CallConvView, parse_args
from helpers.widgets.asmrun import AsmRunner, guess_syntax
from helpers.widgets.idt import DeliveryViewer, GateWorkbench

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Slow(base.LiveView):
    LABEL = "the slow view"

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.fail = seconds, False
        self.seen = []
        self.status.observe(lambda c: self.seen.append(c["new"]), names="value")
        self.redraw()

    def render(self):
        time.sleep(self.seconds)
        if self.fail:
            raise ValueError("depth: 9999 is too deep: use at most 100")
        return PNG_MAGIC + b"x", "<pre>ok</pre>"


def test_a_slow_redraw_says_working_at_once_and_greys_the_old_view():
    v = Slow(0.35)
    assert base.WORKING in v.seen and v.busy_shown == 1
    assert v.status.value == "" and base.STALE not in v.image._dom_classes


def test_a_fast_redraw_never_flickers_working():
    v = Slow(0.0)
    for _ in range(5):
        v.redraw()
    assert base.WORKING not in v.seen and v.busy_shown == 0


def test_after_an_error_the_view_is_the_last_valid_state():
    v = Slow(0.0)
    v.fail = True
    v.redraw()
    assert "too deep: use at most 100" in v.status.value and "last valid state" in v.status.value
    assert base.STALE in v.image._dom_classes and base.STALE in v.text._dom_classes
    v.fail = False
    v.redraw()
    assert v.status.value == "" and base.STALE not in v.image._dom_classes


def test_a_widget_without_a_label_is_named_after_its_class():
    class StackGrowthViewer(base.Standin):
        pass
    assert StackGrowthViewer().standin_line().startswith("Run the cells above to use the stack growth viewer (")


@pytest.mark.parametrize("make,label", [(GateWorkbench, "the gate workbench"),
                                        (lambda: DeliveryViewer(emulate=False), "the delivery viewer"),
                                        (CallConvView, "the calling-convention explorer"),
                                        (AsmRunner, "the assembly runner")])
def test_before_its_cell_runs_a_widget_reads_as_one_line_and_a_picture(make, label):
    w = make()
    for obj in (w, w.box):  # `GateWorkbench()` and `view.box` at the end of a cell display the same
        data, _ = DisplayFormatter().format(obj)
        assert data["text/plain"] == f"Run the cells above to use {label} (a live widget: it needs a running Python kernel)."
        assert "VBox(" not in data["text/plain"] and "\n" not in data["text/plain"]
        assert book.WIDGET_MIME in data
        png = base64.b64decode(data["image/png"])
        assert png[:8] == PNG_MAGIC
        # the picture carries the same advice as a caption strip, above the widget's own picture, unscaled
        shown, plain = imread(io.BytesIO(png)), imread(io.BytesIO(w.picture()))
        assert shown.shape[1] == plain.shape[1] and shown.shape[0] == plain.shape[0] + 30
    staged = book.static_outputs([{"output_type": "display_data", "metadata": {}, "data": data}])
    assert [list(o["data"]) for o in staged] == [["image/png"], ["text/html"]]
    assert "picture above" in staged[1]["data"]["text/html"] and "make lab" in staged[1]["data"]["text/html"]


# ---- 02a: argument numbering, ranges, negative values ------------------------------------------------------
def test_callconv_numbers_arguments_the_same_way_in_every_error():
    w = CallConvView(convention="regparm(3)", args="1, 2, 3")
    w.args.value = "1, nope"
    parse_error = w.status.value
    w.args.value = "1, 0x100000000"
    range_error = w.status.value
    assert "argument 2 (arg1)" in parse_error and "argument 2 (arg1)" in range_error
    assert "use a value from -2147483648 to 0xffffffff" in range_error
    assert base.STALE in w.image._dom_classes and base.STALE in w.listing._dom_classes
    w.args.value = "1,,3"
    assert "remove the empty item" in w.status.value


def test_callconv_negative_arguments_stay_in_their_column():
    w = CallConvView(convention="sysv-x86_64", args="-1, -9223372036854775807, 3, 4, 5, 6, -7")
    rows = re.findall(r"<tr>(.*?)</tr>", w.text.value)[1:]
    assert len(rows) == 7
    for row in rows:
        assert row.count("<td") == 4
    assert "<code>-7</code>" in rows[6] and "0xfffffffffffffff9" in rows[6] and "8(%rsp)" in rows[6]


def test_callconv_listing_scrolls_and_the_picture_keeps_its_shape():
    w = CallConvView()
    assert "overflow:auto" in w.listing.value and w.image.layout.height == "auto"
    assert w.image.layout.object_fit == "contain"


@given(st.lists(st.integers(-(1 << 31), (1 << 32) - 1), max_size=16))
def test_parse_args_round_trips(values):
    assert parse_args(", ".join(map(str, values))) == values


# ---- 03a: bytes, protected mode, task gates, the delivery viewer -------------------------------------------
def test_parse_hex_reads_short_items_as_whole_bytes():
    text = "0x40,0x0a,0x10,0x00,0x00,0x8e,0xa0,0x81,0xff,0xff,0xff,0xff,0,0,0,0"
    assert idt.parse_hex(text) == bytes.fromhex("400a1000008ea081ffffffff00000000")
    assert idt.Gate.decode(text) == idt.Gate(0xFFFFFFFF81A00A40, idt.KERNEL_CS)


@settings(max_examples=200)
@given(st.binary(min_size=1, max_size=32))
def test_parse_hex_reads_every_usual_spelling(raw):
    for text in (", ".join(map(hex, raw)), " ".join(f"{b:02x}" for b in raw), raw.hex(),
                 "".join(f"\\x{b:02x}" for b in raw)):
        assert idt.parse_hex(text) == raw, text
    assert idt.parse_hex(",".join(str(b % 10) for b in raw)) == bytes(b % 10 for b in raw)


def test_protected_mode_hides_ist_and_asks_for_8_bytes():
    w = GateWorkbench()
    assert w.ist.layout.display is None and w.paste.placeholder.startswith("paste 16 bytes")
    w.ist.value = 3
    w.mode.value = "protected"
    assert w.ist.layout.display == "none" and w.paste.placeholder.startswith("paste 8 bytes")
    assert "does not fit in a protected-mode gate's 32 bits: use 0..0xffffffff" in w.status.value.replace("&#x27;", "'")
    w.offset.value = "0x81a00a40"
    assert w.status.value == "" and w.gate().ist == 0  # the hidden IST cannot make the gate invalid
    assert w.status.value == "" and len(idt.parse_hex(re.search(r"<code>([0-9a-f ]+)</code>", w.text.value)[1])) == 8
    w.paste.value = "40 0a 10 00 00 8e a0 81 ff ff ff ff 00 00 00 00"
    w.decode_paste()
    assert "that is a long-mode gate; switch mode to long, or paste 8 bytes" in w.status.value
    w.mode.value = "long"
    assert w.ist.layout.display is None


def test_task_gate_errors_say_how_to_fix_them():
    w = GateWorkbench()
    w.kind.value = "task"
    assert "switch mode to protected" in w.status.value and "last valid state" in w.status.value
    assert base.STALE in w.image._dom_classes
    w.mode.value = "protected"
    assert "set offset to 0" in w.status.value
    w.offset.value = "0"
    assert w.status.value == "" and "task gate" in w.text.value and base.STALE not in w.image._dom_classes


def test_delivery_viewer_says_when_it_clamps_the_vector():
    w = DeliveryViewer(emulate=False)
    w.vector.value = 300
    assert "vector 300 is outside 32..255" in w.text.value and "used 255" in w.text.value
    assert w.last.delivery.vector == 255 and w.trigger.description == "Run INT 0xff"
    w.vector.value = 3
    assert "used 32" in w.text.value and w.last.delivery.vector == 32
    w.vector.value = 0x80
    assert "outside" not in w.text.value


def test_delivery_viewer_names_the_event_it_ran():
    w = DeliveryViewer()
    assert "software INT 0x80" in w.text.value and "hardware" not in w.text.value
    assert w.trigger.description == "Run INT 0x80"
    w.software.value = False
    assert "event: hardware interrupt on vector 0x80" in w.text.value and "is interrupted by a hardware" in w.text.value
    assert "software INT" not in w.text.value and w.trigger.description == "Run hardware interrupt 0x80"


# ---- 00: the assembly runner -----------------------------------------------------------------------------
def test_asm_runner_suggests_the_other_syntax():
    r = AsmRunner(syntax="intel")
    assert "switch syntax to att" in r.status.value
    r = AsmRunner(source="mov eax, 40\nadd eax, dword ptr [rsp]\n", syntax="att")
    assert "switch syntax to intel" in r.status.value
    assert guess_syntax("mov $1, %eax") == "att" and guess_syntax("mov eax, 1") == "intel"
    assert guess_syntax("nop") is None


def test_asm_runner_listing_scrolls_instead_of_growing():
    r = AsmRunner(source="nop\n" * 3000)
    assert r.status.value == "" and "max-height:24em;overflow:auto" in r.result.value
    assert "finished after 3000 instructions" in r.result.value and r.result.value.count("\n") > 100


def test_asm_runner_error_greys_the_last_result():
    r = AsmRunner()
    r.source.value = "mov $1, %nosuchreg"
    r.run()
    assert "✗" in r.status.value and "last run that worked" in r.status.value
    assert base.STALE in r.result._dom_classes
    r.source.value = "nop"
    r.run()
    assert r.status.value == "" and base.STALE not in r.result._dom_classes


@given(st.text(max_size=200))
def test_guess_syntax_answers_any_text(source):
    assert guess_syntax(source) in ("att", "intel", None)
