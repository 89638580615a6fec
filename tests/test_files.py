"""File arguments: every helper that reads a file the caller names refuses anything but an existing file name.

Found in CI: ``kunwind.unwind_sections(12)`` (a wrong-type test) ran ``open(12, "rb")``, which wrapped file
descriptor 12 -- matplotlib's open font file -- and closed it; the next figure in that process failed with
"failed to load glyph". The class is every public function whose first parameter names a file.
"""
import importlib
import inspect
import os
import pkgutil
import tempfile

import pytest

import helpers
from helpers.files import FileArgError, existing_file

FILE_PARAMS = {"path", "exe", "obj", "ko", "kernel", "binary", "elf", "file", "initrd"}
CORE = [m.name for m in pkgutil.iter_modules(helpers.__path__) if m.name not in ("widgets", "viz", "labs", "guests")]


def _file_taking_functions():
    found = []
    for name in CORE:
        mod = importlib.import_module(f"helpers.{name}")
        for fname, fn in vars(mod).items():
            if fname.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != mod.__name__:
                continue
            params = list(inspect.signature(fn).parameters.values())
            if params and params[0].name in FILE_PARAMS:
                rest = ["f" for p in params[1:] if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD]
                found.append(pytest.param(fn, rest, id=f"{name}.{fname}"))
    return found


FUNCTIONS = _file_taking_functions()


def test_the_search_finds_the_readers():
    ids = {p.id for p in FUNCTIONS}
    assert {"elf.read_elf", "kunwind.unwind_sections", "gosyms.symbols_of", "kcodegen.measure", "vm.boot",
            "unwind.cfi_entries", "nbclean.clean"} <= ids and len(ids) >= 30


@pytest.mark.parametrize("fn,rest", FUNCTIONS)
@pytest.mark.parametrize("bad", ["an open file descriptor", None, 3.5, b"/bin/sh", "/nonexistent/x.o"])
def test_a_bad_file_argument_is_one_line_and_touches_no_descriptor(fn, rest, bad):
    with tempfile.TemporaryFile() as f:
        f.write(b"\x7fELF" + bytes(60))
        f.flush()
        arg = f.fileno() if bad == "an open file descriptor" else bad
        with pytest.raises(ValueError) as e:
            fn(arg, *rest)
        assert "\n" not in str(e.value) and str(e.value)
        os.fstat(f.fileno())          # still this test's file: nothing wrapped and closed the descriptor
        f.seek(0)
        assert f.read(4) == b"\x7fELF"


def test_existing_file_names_what_it_wanted(tmp_path):
    (tmp_path / "a.o").write_bytes(b"x")
    assert existing_file(tmp_path / "a.o") == tmp_path / "a.o"
    assert existing_file(str(tmp_path / "a.o")).name == "a.o"
    with pytest.raises(FileArgError, match="^kernel must be a file name .*not int$"):
        existing_file(7, "kernel")
    with pytest.raises(FileArgError, match="no such file"):
        existing_file(tmp_path)          # a directory is not a file
