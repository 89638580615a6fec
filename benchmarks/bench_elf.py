"""helpers.elf.read_elf on a real Go binary: cached (per path, size, mtime and content hash) against a parse."""
from __future__ import annotations

from harness import Row, median, times


def bench_read_elf(quick: bool = False) -> Row:
    from helpers import elf, toolchain
    path = toolchain.go_build('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hi") }\n').path
    k = 3 if quick else 8
    parse = median(times(lambda i: elf._parse(path), n=k))
    elf.read_elf(path)
    cached = median(times(lambda i: elf.read_elf(path), n=k * 5))
    size = path.stat().st_size >> 10
    return Row(f"read_elf of a Go binary ({size} KiB), unchanged file", cached * 1e3, "ms", "parse with pyelftools",
               parse * 1e3, note="a changed file is parsed again (content hash)")
