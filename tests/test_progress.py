"""Cold builds say what they build and that the first run takes minutes; warm ones say nothing, and the
notebook's compared outputs are the same either way."""
import contextlib

import pytest

from helpers import progress, toolchain


def test_first_build_says_so_once_outside_a_kernel(tmp_path, capsys):
    with progress.first_build(tmp_path, "zig-x86_64-linux-musl-exe", "zig is building musl for x86_64-linux-musl"):
        pass
    err = capsys.readouterr().err
    assert "First run: zig is building musl for x86_64-linux-musl" in err and "minutes" in err
    with progress.first_build(tmp_path, "zig-x86_64-linux-musl-exe", "zig is building musl"):
        pass
    assert capsys.readouterr().err == ""


def test_a_failed_build_does_not_count_as_warm(tmp_path, capsys):
    with pytest.raises(RuntimeError):
        with progress.first_build(tmp_path, "go-amd64", "Go is compiling its standard library"):
            raise RuntimeError("build failed")
    capsys.readouterr()
    with progress.first_build(tmp_path, "go-amd64", "Go is compiling its standard library"):
        pass
    assert "First run" in capsys.readouterr().err


def test_in_a_notebook_the_line_is_a_widget_view_only_and_is_removed(tmp_path, monkeypatch):
    shown, updates = [], []

    class Handle:
        def update(self, obj, raw=False):
            updates.append(obj)

    def display(obj, raw=False, display_id=None):
        shown.append(obj)
        return Handle()

    import IPython.display
    monkeypatch.setattr(progress, "_in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    with progress.first_build(tmp_path, "go-amd64-True-plugin", "Go is compiling its standard library"):
        assert len(shown) == 1 and not updates
    # only the widget view: strict nbval skips that mime type, so cold and warm runs compare equal
    assert list(shown[0]) == [progress.WIDGET_MIME] and updates == [{}]


def test_toolchain_marks_only_the_slow_builds():
    assert isinstance(toolchain.first_build_notice("zig", target="x86_64-linux-musl", output="obj"),
                      contextlib.nullcontext)
    assert isinstance(toolchain.first_build_notice("zig", target="x86-freestanding-none", output="exe"),
                      contextlib.nullcontext)
    assert isinstance(toolchain.first_build_notice("gcc", output="exe"), contextlib.nullcontext)
    for kw in ({"compiler": "zig", "target": "x86_64-linux-musl", "output": "exe"},
               {"compiler": "go", "cgo": True, "buildmode": "plugin"}):
        assert not isinstance(toolchain.first_build_notice(**kw), contextlib.nullcontext)
