"""tests/sanitize.cfg, the rules nbval applies to both sides before it compares a cell's output.

A rule hides a difference from every test, so each must say why, must still be needed (it changes some committed
output), and must cover what it claims: outputs of two Debian kernel point releases, as two machines printed
them, compare equal after the rules, and outputs that differ in anything else do not.
"""
import json
import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "tests" / "sanitize.cfg"
RULES = get_sanitize_patterns(CFG.read_text())


def sanitize(text: str, upto: int | None = None) -> str:
    for regex, replace in RULES[:upto]:   # in file order, as nbval applies them
        text = re.sub(regex, replace, text)
    return text


def committed_outputs() -> list[str]:
    out = []
    for nb in sorted([*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("labs/*/*.ipynb")]):
        for cell in json.loads(nb.read_text())["cells"]:
            for o in cell.get("outputs", []):
                text = o.get("text", o.get("data", {}).get("text/plain", ""))
                out.append("".join(text) if isinstance(text, list) else text)
    return out


def test_every_rule_says_why():
    sections = re.split(r"(?m)^\[regex\d+\]\s*$", CFG.read_text())[1:]
    assert len(sections) == len(RULES)
    for section, (regex, _) in zip(sections, RULES):
        assert re.search(r"(?m)^# \S", section), f"rule {regex!r} has no comment"


def test_every_rule_is_still_needed():
    outputs = committed_outputs()
    for i, (regex, replace) in enumerate(RULES):
        before = [sanitize(t, upto=i) for t in outputs]
        assert any(re.sub(regex, replace, t) != t for t in before), f"rule {regex!r} changes no committed output"


# The same cells' lines as Debian's 6.1.0-57 (6.1.192) and 6.1.0-50 (6.1.176) packages made them.
RELEASES = [
    ("linux-headers-6.1.0-57-common/arch/x86/include/asm/syscall_wrapper.h:",
     "linux-headers-6.1.0-50-common/arch/x86/include/asm/syscall_wrapper.h:"),
    ("kbuild (gcc-12, kernel 6.1.0-57-amd64) compiles with: -pg -mrecord-mcount -mfentry",
     "kbuild (gcc-12, kernel 6.1.0-50-amd64) compiles with: -pg -mrecord-mcount -mfentry"),
    ("unwind sections (bytes): {'.eh_frame': 0, '.debug_frame': 0, '.orc_unwind': 7752, '.orc_unwind_ip': 5168, "
     "'__mcount_loc': 976}\nfat_get_cluster: 16 ORC rows (1292 in the module); the straight-line start:",
     "unwind sections (bytes): {'.eh_frame': 0, '.debug_frame': 0, '.orc_unwind': 7746, '.orc_unwind_ip': 5164, "
     "'__mcount_loc': 980}\nfat_get_cluster: 16 ORC rows (1291 in the module); the straight-line start:"),
    ("[on ] fentry    Makefile\n           776: CC_FLAGS_FTRACE := -pg\n           950: CC_FLAGS_FTRACE\t+= -mrecord-mcount",
     "[on ] fentry    Makefile\n           782: CC_FLAGS_FTRACE := -pg\n           956: CC_FLAGS_FTRACE\t+= -mrecord-mcount"),
    ("    kernel states it     Makefile:776, 950, 970                       \n"
     "    kbuild module        122/145 call __fentry__                      [meets]\n"
     "    kbuild module        32S:248 PC32:111 PLT32:946                   [meets]\n"
     "    kbuild module        0 indirect, 35 thunk, 136 return thunk       [meets]\n"
     "    kbuild module        %gs:81 %fs:0                                 [meets]",
     "    kernel states it     Makefile:782, 956, 976                       \n"
     "    kbuild module        121/144 call __fentry__                      [meets]\n"
     "    kbuild module        32S:247 PC32:111 PLT32:944                   [meets]\n"
     "    kbuild module        0 indirect, 34 thunk, 135 return thunk       [meets]\n"
     "    kbuild module        %gs:80 %fs:0                                 [meets]"),
    ("module    {'.orc_unwind': 7752, '.orc_unwind_ip': 5168, '__mcount_loc': 976, '.retpoline_sites': 156, "
     "'.return_sites': 544}",
     "module    {'.orc_unwind': 7746, '.orc_unwind_ip': 5164, '__mcount_loc': 972, '.retpoline_sites': 152, "
     "'.return_sites': 540}"),
]


@pytest.mark.parametrize("ours,theirs", RELEASES, ids=range(len(RELEASES)))
def test_two_kernel_point_releases_compare_equal(ours, theirs):
    assert sanitize(ours) == sanitize(theirs)


# What no rule may hide: the book's own builds, a changed flag, a relocation type, a verdict, Go's numbers.
OTHER = [
    ("c_kernel  {'__mcount_loc': 48}", "c_kernel  {'__mcount_loc': 56}"),
    ("kbuild (gcc-12, kernel 6.1.0-57-amd64) compiles with: -pg -mrecord-mcount -mfentry",
     "kbuild (gcc-12, kernel 6.1.0-57-amd64) compiles with: -pg -mrecord-mcount"),
    ("    kbuild module        32S:248 PC32:111 PLT32:946                   [meets]",
     "    kbuild module        32S:248 PC32:111 PLT32:946 64:1              [meets]"),
    ("    kbuild module        0 indirect, 35 thunk, 136 return thunk       [meets]",
     "    kbuild module        2 indirect, 35 thunk, 136 return thunk       [breaks]"),
    ("    Go                   %fs:450 (g in TLS) %gs:0                     [breaks]",
     "    Go                   %fs:449 (g in TLS) %gs:0                     [breaks]"),
    ("kernel 6.1.0-57-amd64", "kernel 6.12.0-57-amd64"),
]


@pytest.mark.parametrize("ours,theirs", OTHER, ids=range(len(OTHER)))
def test_other_differences_still_show(ours, theirs):
    assert sanitize(ours) != sanitize(theirs)
