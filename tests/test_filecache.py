"""helpers.filecache: what a reader got out of a file, kept by the file's content; never trusted unchecked."""
import json

import pytest

from helpers import filecache, kcodegen


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(filecache, "ROOT", tmp_path / "read")
    return tmp_path / "read"


def _count(calls):
    def compute():
        calls.append(1)
        return {"n": len(calls)}
    return compute


def _check(data):
    if not isinstance(data, dict) or not isinstance(data.get("n"), int):
        raise ValueError("not a count")
    return data["n"]


def test_computed_once_per_content_question_and_reader(cache, tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    calls = []
    assert filecache.cached("k", f, "q", _count(calls), _check, "r1") == 1
    assert filecache.cached("k", f, "q", _count(calls), _check, "r1") == 1 and len(calls) == 1
    assert filecache.cached("k", f, "other question", _count(calls), _check, "r1") == 2
    assert filecache.cached("k", f, "q", _count(calls), _check, "edited reader") == 3
    f.write_bytes(b"two")                                   # same path and size, other bytes
    assert filecache.cached("k", f, "q", _count(calls), _check, "r1") == 4
    assert len(list((cache / "k").glob("*.json"))) == 4 and not list((cache / "k").glob("*.tmp"))


@pytest.mark.parametrize("damage", ["", "{", "[]", '{"n": "x"}', "null"])
def test_a_damaged_entry_is_computed_again_and_replaced(cache, tmp_path, damage):
    f = tmp_path / "a.bin"
    f.write_bytes(b"x")
    calls = []
    filecache.cached("k", f, "q", _count(calls), _check, "r")
    [entry] = (cache / "k").glob("*.json")
    entry.write_text(damage)
    assert filecache.cached("k", f, "q", _count(calls), _check, "r") == 2
    assert json.loads(entry.read_text()) == {"n": 2}


def test_an_unwritable_cache_still_answers(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setattr(filecache, "ROOT", blocker)
    f = tmp_path / "a.bin"
    f.write_bytes(b"x")
    assert filecache.cached("k", f, "q", _count([]), _check, "r") == 1


def test_a_bad_file_argument_is_one_line(cache):
    with pytest.raises(ValueError, match="must be a file name"):
        filecache.cached("k", 3, "q", _count([]), _check, "r")


def test_kcodegen_counts_from_the_cache_equal_a_fresh_count(cache):
    path = str(kcodegen.build_go(kcodegen.HELLO_GO).path)
    fresh = kcodegen._measure_file(path, "main.")
    kcodegen._measure_cached.cache_clear()
    assert kcodegen.measure(path, only="main.") == fresh
    kcodegen._measure_cached.cache_clear()
    assert kcodegen.measure(path, only="main.") == fresh          # now read back from the entry
    [entry] = (cache / "kcodegen-measure").glob("*.json")
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "insns": -1}))
    kcodegen._measure_cached.cache_clear()
    assert kcodegen.measure(path, only="main.") == fresh          # a negative count is not used


def test_read_elf_from_the_cache_equals_a_fresh_parse(cache):
    from helpers import elf, toolchain
    path = toolchain.go_build('package main\n\nfunc main() { println("cached") }\n').path
    fresh = elf._parse(path)
    elf._CACHE.clear()
    assert elf.read_elf(path) == fresh
    elf._CACHE.clear()
    assert elf.read_elf(path) == fresh                               # now from the entry on disk
    [entry] = (cache / "elf").glob("*.json")
    d = json.loads(entry.read_text())
    for bad in ({**d, "symbols": d["symbols"][:1] + [["x", "not an address", 0, "FUNC", "GLOBAL", "DEFAULT", ".text"]]},
                {**d, "bits": 16}, {**d, "needed": [3]}, {k: v for k, v in d.items() if k != "segments"}):
        entry.write_text(json.dumps(bad))
        elf._CACHE.clear()
        assert elf.read_elf(path) == fresh                           # a bad entry is parsed again, not used


def test_go_source_searches_from_the_cache_equal_a_fresh_search(cache):
    from helpers import gosyms
    pattern, suffixes = r"^TEXT runtime·(mcall|systemstack)\(SB\)", (".s",)
    fresh = gosyms._grep_tree(pattern, suffixes, "runtime")
    assert fresh and all(rel.startswith("runtime/") for rel, _n, _l in fresh)
    for _ in range(2):                                               # a search, then the same from the entry
        gosyms._grep.cache_clear()
        assert gosyms.grep_go_src(pattern, suffixes, "runtime") == fresh
    [entry] = (cache / "go-grep").glob("*.json")
    entry.write_text(json.dumps([["runtime/asm_amd64.s", 0, "TEXT runtime·fake(SB)"]]))   # line 0: not a line
    gosyms._grep.cache_clear()
    assert gosyms.grep_go_src(pattern, suffixes, "runtime") == fresh
