"""The short profile of the fuzz campaign (tests/fuzz.py): every entry point, each batch in a process of its own.
The long one is `make fuzz` (100,000 inputs)."""
import fuzz  # tests/ is on sys.path under pytest (rootdir-relative import, like conftest)


def test_short_fuzz_campaign_finds_no_escape_hang_crash_or_leak():
    results = fuzz.campaign(total=1000, jobs=1, verbose=False)
    assert set(results) == set(fuzz.ENTRIES)
    assert all(r["inputs"] > 0 for r in results.values())
    bad = {e: r["failures"] for e, r in results.items() if r["failures"]}
    assert not bad, fuzz.report(results)
