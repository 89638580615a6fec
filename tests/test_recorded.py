"""helpers.recorded: live evidence where the tools exist, the saved recording where they do not."""
import json

import pytest

from helpers import recorded, toolchain

HAVE_ALL = all(toolchain.have(t) for t in ("gcc", "readelf", "objdump"))


@pytest.mark.skipif(not HAVE_ALL, reason="recordings can only be checked against gcc and binutils")
@pytest.mark.parametrize("key", list(recorded.EXPERIMENTS))
def test_recordings_match_a_live_run(key):
    saved = json.loads((recorded.RECORDINGS / f"{key}.json").read_text())
    live = recorded.evidence(key)
    assert not live.recorded
    assert saved["data"] == live.data, f"stale recording: re-run `python -m helpers.recorded {key}`"


@pytest.mark.parametrize("key", list(recorded.EXPERIMENTS))
def test_without_the_tools_the_recording_is_shown_and_says_so(key, monkeypatch):
    monkeypatch.setattr(recorded.toolchain, "have", lambda name: False)
    ev = recorded.evidence(key)
    saved = json.loads((recorded.RECORDINGS / f"{key}.json").read_text())
    assert ev.recorded and ev.data == saved["data"]
    assert ev.provenance().startswith("[recorded by `python -m helpers.recorded` with ")
    assert all(v in ev.provenance() for v in saved["tools"].values())


def test_no_tool_and_no_recording_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(recorded.toolchain, "have", lambda name: False)
    monkeypatch.setattr(recorded, "RECORDINGS", tmp_path)
    with pytest.raises(toolchain.ToolMissing) as e:
        recorded.evidence("c49_glibc_backtrace")
    assert "no recording of c49_glibc_backtrace" in str(e.value) and "\n" not in str(e.value)


def test_unknown_key():
    with pytest.raises(KeyError):
        recorded.evidence("c99_nothing")
