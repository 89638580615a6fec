"""linuxguest: Debian's Linux kernel in QEMU, loading modules built with kbuild, for chapters 2c, 3a and 4c.

Everything this module reports came out of a real build or a real kernel:

* **Modules** (:data:`MODULE_DIRS`, sources in :mod:`helpers.kmodsrc`) are built with kbuild against the
  installed kernel's own headers (``make -C /lib/modules/<release>/build M=<dir> modules V=1``). The build
  keeps modpost's verdicts (e.g. ``"pthread_create" [gomod.ko] undefined!``) and the real compiler command
  line from the ``.<obj>.o.cmd`` files (:func:`kbuild_flags`).
* **The guest** is Debian's ``vmlinuz`` booted by QEMU's full-system emulator with an initramfs written here
  (:func:`initramfs`: busybox-static, the modules, a static test program, and a generated ``/init``). The
  ``/init`` runs every experiment of :data:`STEPS` in ONE boot, prints each step's output, exit status and
  new ``dmesg`` lines between ``@@BEGIN``/``@@END`` markers, and powers the guest off.
* **Host-side reads** of the built ``.ko`` files with pyelftools: the symbol table (the ``init_module``
  alias), the ``___ksymtab+<sym>`` entries, the Go archive's undefined symbols, relocation types and
  ``.init_array``.

The result of a run is one JSON-able dict (:class:`GuestResults`), cached by a hash of everything that went
in (QEMU, kernel and compiler versions, module sources, the script). Without QEMU, the kernel packages or
gcc, :func:`results` returns the recording in ``helpers/recorded/linux_guest.json`` that
``python -m helpers.linuxguest`` made, and says so; with ``BOOK_REQUIRE_VM=1`` (set in CI) a missing VM is
an error instead. A module that fails to compile, a guest that crashes or hangs: one-line :class:`GuestError`.

API::

    results()               -> GuestResults (live, cached; or the recording): .step(name) -> Step(out, rc,
                               kernel), .host (facts read from the built .ko files), .provenance()
    verdict(r, module)      -> "thief: -ENOENT: Unknown symbol helper" (the kernel's, in the loader model's words)
    unknown_symbols(lines), rejected_relocations(lines), once(lines), flag(r, step, name), addresses(r)
    kbuild_flags()          -> KbuildFlags(compiler, flags, objtool, release, recorded): the compiler command
                               kbuild ran for an x86-64 module; .has(flag), .matching(prefix), .rules()
    int80()                 -> dict: INT $0x80, INT3 and INT $0x81 from a 64-bit program (chapter 3a)
    build_modules(files, modpost_warn=False) -> KbuildResult   (one kbuild run, cached)
    initramfs(files, init)  -> bytes (cpio "newc")
    parse_console(text)     -> {step: Step};  parse_cmd_file(text) -> (compiler, flags, objtool args)
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from helpers import kmodsrc, toolchain, vm
from helpers.files import existing_file

RECORDING = Path(__file__).with_name("recorded") / "linux_guest.json"
BUSYBOX = Path("/bin/busybox")
BUILD_TIMEOUT = 300      # seconds for one kbuild run (about 2 s warm on 2 cores)
BOOT_TIMEOUT = 180       # seconds for the whole guest run under TCG (about 10-20 s)
# console=ttyS0: the serial port is the console; loglevel=1: kernel messages stay off the console (the script
# reads them with dmesg); printk.time=0: no timestamps; nokaslr and norandmaps: the same kernel and user
# address layout every boot (the kernel's trap messages name user stack addresses); panic=-1 with
# -no-reboot: a panic ends QEMU at once instead of hanging.
FORMAT = 4               # the layout of a result dict (steps and host facts); part of the cache key
APPEND = "console=ttyS0 loglevel=1 printk.time=0 nokaslr norandmaps panic=-1 rdinit=/init"


class GuestError(vm.VMError):
    """A build failed, the guest crashed or hung, or an input was bad. The message is one line."""


class GuestMissing(GuestError, vm.VMMissing):
    """QEMU, the kernel packages or gcc are missing, and a live run was required (BOOK_REQUIRE_VM=1)."""


# ------------------------------------------------------------------------------------------ the machine
def kernel_release() -> str:
    """The newest installed kernel that has both /boot/vmlinuz-<r> and kbuild headers (/lib/modules/<r>/build)."""
    found = sorted(p.name[len("vmlinuz-"):] for p in Path("/boot").glob("vmlinuz-*")
                   if (Path("/lib/modules") / p.name[len("vmlinuz-"):] / "build" / "Makefile").exists())
    if not found:
        raise GuestMissing("no kernel with headers: apt-get install linux-image-amd64 linux-headers-amd64")
    return found[-1]


def missing() -> list[str]:
    """What a live run lacks here (empty when everything is installed)."""
    out = []
    if not vm.available():
        out.append("qemu-system-x86 (apt-get install qemu-system-x86)")
    try:
        kernel_release()
    except GuestMissing:
        out.append("linux-image-amd64 and linux-headers-amd64")
    if not BUSYBOX.is_file():
        out.append("busybox-static")
    for tool in ("gcc", "make"):
        if shutil.which(tool) is None:
            out.append(f"{tool} (apt-get install {tool})")
    return out


def _first_line(argv) -> str:
    try:
        p = toolchain.run(argv, timeout=20)
    except toolchain.ToolchainError:
        return "unknown"
    lines = (p.stdout or p.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _package_version(pkg: str) -> str:
    p = toolchain.run(["dpkg-query", "-W", "-f", "${Version}", pkg], timeout=20) if shutil.which("dpkg-query") \
        else None
    return p.stdout.strip() if p is not None and p.returncode == 0 else "unknown"


@lru_cache(maxsize=1)
def versions() -> dict:
    """The versions of everything a live run uses (the cache key and the provenance line)."""
    rel = kernel_release()
    return {"qemu": vm.qemu_version(), "accel": vm.accelerator(), "kernel": rel,
            "kernel_package": _package_version(f"linux-image-{rel}"),
            "headers_package": _package_version(f"linux-headers-{rel}"),
            "gcc": _first_line(["gcc", "--version"]), "busybox": _first_line([str(BUSYBOX)]).split(" multi-call")[0],
            "go": toolchain.require("go").version}


def kernel_config(*names) -> dict:
    """Options of the installed kernel's own /boot/config-<release> ("n" when not set)."""
    text = (Path("/boot") / f"config-{kernel_release()}").read_text()
    out = {}
    for n in names:
        m = re.search(rf"^{re.escape(n)}=(.*)$", text, re.M)
        out[n] = m.group(1) if m else "n"
    return out


# ------------------------------------------------------------------------------------------ kbuild
@dataclass(frozen=True)
class KbuildResult:
    dir: Path                   # the M= directory, with every .ko, .o and .cmd file kbuild left
    modules: dict               # name -> Path of name.ko
    modpost: tuple              # modpost's ERROR/WARNING lines, with the build directory replaced by M
    log: str


def _modpost_lines(text: str) -> tuple:
    return tuple(l.strip() for l in text.splitlines() if re.match(r"\s*(ERROR|WARNING): modpost:", l))


def build_modules(files: dict, *, modpost_warn: bool = False, timeout: float = BUILD_TIMEOUT) -> KbuildResult:
    """Run kbuild once on ``files`` ({name: text or bytes}, with a ``Kbuild`` file naming the modules).

    ``modpost_warn`` sets KBUILD_MODPOST_WARN=1: modpost's undefined-symbol errors become warnings and the
    ``.ko`` is linked anyway, so that the kernel's own loader can be asked too. A compile error or a modpost
    error raises :class:`GuestError` with kbuild's first error line.
    """
    if not isinstance(files, dict) or "Kbuild" not in files:
        raise GuestError("build_modules needs a dict of files including a 'Kbuild' file")
    if missing():
        raise GuestMissing("cannot build modules here: missing " + ", ".join(missing()))
    rel = kernel_release()
    text_files = {k: (v if isinstance(v, str) else v.hex()) for k, v in sorted(files.items())}
    key = toolchain._digest("kmod", versions(), text_files, modpost_warn)

    def build(workdir: Path):
        for name, body in files.items():
            if "/" in name or name.startswith("..") or not name:
                raise GuestError(f"bad file name {name!r}: plain names only")
            (workdir / name).write_bytes(body.encode() if isinstance(body, str) else body)
        argv = ["make", "-C", f"/lib/modules/{rel}/build", f"M={workdir}", "modules", "V=1"]
        if modpost_warn:
            argv.append("KBUILD_MODPOST_WARN=1")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "LC_ALL": "C"}
        try:
            p = toolchain.run(argv, timeout=timeout, env=env)
        except toolchain.ToolchainError as e:
            raise GuestError(f"kbuild: {e}") from None
        log = (p.stdout + p.stderr).replace(str(workdir), "M")
        if p.returncode != 0:
            errs = [l.strip() for l in log.splitlines() if re.search(r"error:|ERROR:|\*\*\*", l)]
            raise GuestError(f"kbuild failed: {errs[0] if errs else log.strip().splitlines()[-1]}")
        (workdir / "kbuild.log").write_text(log)
        return "kbuild.log", log, argv[:4] + argv[5:], versions()["gcc"]

    try:
        b = toolchain._cached_build("kmod", key, build)
    except toolchain.ToolchainError as e:
        raise GuestError(str(e)) from None
    d = b.path.parent
    names = [Path(l).stem for l in (d / "modules.order").read_text().split()]
    return KbuildResult(d, {n: d / f"{n}.ko" for n in names}, _modpost_lines(b.output), b.output)


def _kbuild(*pairs) -> str:
    """A Kbuild file: ``_kbuild("hello", ("gomod", "stub.o gopart.o"))``."""
    lines = []
    for p in pairs:
        name, objs = (p, None) if isinstance(p, str) else p
        lines.append(f"obj-m += {name}.o")
        if objs:
            lines.append(f"{name}-y := {objs}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class KbuildFlags:
    """The compiler command kbuild ran for one module object (from its ``.<obj>.o.cmd`` file)."""
    compiler: str               # e.g. "gcc-12"
    flags: tuple                # every argument between the compiler and the source file, in order
    objtool: tuple              # objtool's arguments, run by kbuild on the same object
    release: str                # kernel release the headers belong to
    recorded: bool              # True: from the recording (no kernel headers here)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def matching(self, prefix: str) -> list:
        return [f for f in self.flags if f.startswith(prefix)]

    def rules(self) -> dict:
        """{rule: the flags of this build that implement it}, for the rules of :data:`FLAG_RULES`."""
        return {rule: [f for f in self.flags if f.startswith(prefixes)] for rule, prefixes in FLAG_RULES.items()}


# What kernel code generation forbids or requires, and the flag prefixes that say it (torvalds/linux
# arch/x86/Makefile and the top-level Makefile); KbuildFlags.rules() picks the real flags out of a build.
FLAG_RULES = {
    "no SSE/AVX/x87 (no FPU state in the kernel)": ("-mno-sse", "-mno-mmx", "-mno-3dnow", "-mno-avx", "-mno-80387",
                                                    "-mno-fp-ret-in-387"),
    "no red zone (interrupts push on the same stack)": ("-mno-red-zone",),
    "kernel code model (top 2 GiB)": ("-mcmodel=",),
    "ftrace entry call (__fentry__)": ("-pg", "-mfentry", "-mrecord-mcount"),
    "retpolines and return thunks": ("-mindirect-branch", "-mfunction-return"),
    "IBT / CET (endbr64)": ("-fcf-protection",),
    "no asynchronous unwind tables (ORC instead)": ("-fno-asynchronous-unwind-tables", "-funwind-tables"),
    "straight-line speculation": ("-mharden-sls",),
    "stack protector": ("-fstack-protector",),
    "not position independent": ("-fno-PIE", "-fno-pic"),
}


def parse_cmd_file(text: str) -> tuple[str, tuple, tuple]:
    """(compiler, flags, objtool args) from a kbuild ``.cmd`` file's ``cmd_<obj> := ...`` line."""
    if not isinstance(text, str):
        raise GuestError(f"parse_cmd_file needs the file's text, not {type(text).__name__}")
    m = re.search(r"^(?:saved)?cmd_\S+ := (.*)$", text, re.M)
    if not m:
        raise GuestError("not a kbuild .cmd file (no 'cmd_<target> :=' line)")
    parts = m.group(1).split(" ; ")
    try:
        argv = shlex.split(parts[0])
    except ValueError as e:
        raise GuestError(f"cannot split the compiler command: {e}") from None
    if not argv:
        raise GuestError("empty compiler command in .cmd file")
    src = next((i for i, a in enumerate(argv) if a.endswith((".c", ".S")) and i == len(argv) - 1), len(argv))
    flags = tuple(a for a in argv[1:src])
    objtool = ()
    for part in parts[1:]:
        words = shlex.split(part)
        if words and words[0].endswith("objtool"):
            objtool = tuple(w for w in words[1:] if not w.startswith("/"))
    return argv[0], flags, objtool


def _flags_from_build(kb: KbuildResult) -> dict:
    compiler, flags, objtool = parse_cmd_file((kb.dir / ".hello.o.cmd").read_text())
    # The build directory was a temporary folder: call it M, as kbuild's M= does.
    flags = tuple(re.sub(r"/[^\s,]*kmod-[^/\s,]+", "M", f) for f in flags)
    return {"compiler": compiler, "flags": list(flags), "objtool": list(objtool)}


def kbuild_flags() -> KbuildFlags:
    """The flags kbuild really passes to the compiler for an x86-64 module object (``hello.o`` of chapter 2c),
    read from ``.hello.o.cmd`` of a real build; from the recording where the kernel headers are missing."""
    if missing():
        _require_or_recording()
        data = json.loads(RECORDING.read_text())["data"]
        k, rel, rec = data["host"]["kbuild"], data["versions"]["kernel"], True
    else:
        k, rel, rec = _flags_from_build(_main_build()), kernel_release(), False
    return KbuildFlags(k["compiler"], tuple(k["flags"]), tuple(k["objtool"]), rel, rec)


# ------------------------------------------------------------------------------------------ the modules
MAIN_MODULES = {"hello": kmodsrc.HELLO, "world": kmodsrc.WORLD, "thief": kmodsrc.THIEF, "kls": kmodsrc.KALLSYMS,
                "tls": kmodsrc.TLS, "initmod": kmodsrc.INITMOD, "kp": kmodsrc.KPROBE, "kpat": kmodsrc.KPROBE_AT}
ALONE_MODULES = {"dup": kmodsrc.DUP, "both": kmodsrc.BOTH}   # each exports hello_api: a build of its own


def go_archive():
    """The pinned Go's ``-buildmode=c-archive`` of gosyms.CGO_EXPORT_GO (cgo's //export Add)."""
    from helpers import gosyms
    return toolchain.go_build(gosyms.CGO_EXPORT_GO, buildmode="c-archive", cgo=True)


def _relocatable(archive: Path) -> bytes:
    """Every member of the Go archive linked into one relocatable object (``ld -r --whole-archive``)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "gopart.o"
        toolchain.run(["ld", "-r", "--whole-archive", str(archive), "-o", str(out)], timeout=120, check=True)
        return out.read_bytes()


def _go_files(extra_c: str | None = None) -> dict:
    blob = _relocatable(go_archive().path)
    objs = "stub.o gopart.o" + (" libc.o" if extra_c else "")
    files = {"stub.c": kmodsrc.GO_STUB, "gopart.o_shipped": blob,
             # kbuild's modpost reads a .cmd file for every object; this one says how the object was made
             ".gopart.o.cmd": "cmd_gopart.o := ld -r --whole-archive out.a -o gopart.o\n"}
    name = "gostub" if extra_c else "gomod"
    if extra_c:
        files["libc.c"] = extra_c
    files["Kbuild"] = _kbuild((name, objs))
    return files


def kernel_exports() -> set:
    """Every symbol the installed kernel exports to modules (its Module.symvers)."""
    text = (Path("/lib/modules") / kernel_release() / "build" / "Module.symvers").read_text()
    return {l.split("\t")[1] for l in text.splitlines() if l.count("\t") >= 2}


@lru_cache(maxsize=1)
def _main_build() -> KbuildResult:
    return build_modules({"Kbuild": _kbuild(*MAIN_MODULES), **{f"{n}.c": s for n, s in MAIN_MODULES.items()}},
                         modpost_warn=True)


@lru_cache(maxsize=1)
def _builds() -> dict:
    main = _main_build()
    alone = {n: build_modules({"Kbuild": _kbuild(n), f"{n}.c": s}, modpost_warn=True)
             for n, s in ALONE_MODULES.items()}
    gomod = build_modules(_go_files(), modpost_warn=True)
    undefined = sorted(set(undefined_symbols(gomod.dir / "gomod.ko")) - kernel_exports())
    gostub = build_modules(_go_files(kmodsrc.libc_stubs(undefined)), modpost_warn=True)
    return {"main": main, **alone, "gomod": gomod, "gostub": gostub}


def int80_program() -> Path:
    """The static, libc-free test program of :data:`kmodsrc.INT80`, built by gcc."""
    b = toolchain.cc(kmodsrc.INT80, compiler="gcc", output="exe",
                     flags=("-O2", "-static", "-nostdlib", "-fno-pic", "-no-pie", "-fno-stack-protector"))
    return b.path


# ------------------------------------------------------------------------------------------ ELF reads
def _elf(path):
    from elftools.elf.elffile import ELFFile
    return ELFFile(open(existing_file(path), "rb"))


def module_symbols(ko) -> list[tuple]:
    """(name, value, type, bind, section) of a .ko's defined FUNC/OBJECT symbols (an alias has its target's
    value and section)."""
    from helpers.elf import read_elf
    return [(s.name, s.value, s.type, s.bind, s.section) for s in read_elf(ko).symbols
            if s.section not in ("UND", "ABS") and s.type in ("FUNC", "OBJECT")]


def undefined_symbols(ko) -> list[str]:
    from helpers.elf import read_elf
    return sorted({s.name for s in read_elf(ko).symbols if s.section == "UND"})


def ksymtab_entries(ko) -> list[dict]:
    """Each ``__ksymtab`` section of a .ko (``___ksymtab+<sym>`` in an object before modpost's link): its size
    and its relocations (offset, type, target symbol).

    With CONFIG_HAVE_ARCH_PREL32_RELOCATIONS (include/linux/export.h, ``__KSYMTAB_ENTRY``) an entry is three
    32-bit offsets relative to the entry itself (R_X86_64_PC32): value, name, namespace.
    """
    from elftools.elf.descriptions import describe_reloc_type
    from elftools.elf.relocation import RelocationSection
    out = []
    elf = _elf(ko)
    try:
        symtab = elf.get_section_by_name(".symtab")
        secs = list(elf.iter_sections())
        for i, sec in enumerate(secs):
            if not (sec.name.startswith("___ksymtab") or sec.name in ("__ksymtab", "__ksymtab_gpl")):
                continue
            relocs = []
            for rs in secs:
                if isinstance(rs, RelocationSection) and rs["sh_info"] == i:
                    for r in sorted(rs.iter_relocations(), key=lambda r: r["r_offset"]):
                        sym = symtab.get_symbol(r["r_info_sym"])
                        name = sym.name or secs[sym["st_shndx"]].name
                        relocs.append((r["r_offset"], describe_reloc_type(r["r_info_type"], elf), name))
            out.append({"section": sec.name, "size": sec["sh_size"], "relocations": relocs})
    finally:
        elf.stream.close()
    return out


def relocation_types(ko) -> dict:
    """{relocation type: count} over every relocation section of a .ko."""
    from elftools.elf.descriptions import describe_reloc_type
    from elftools.elf.relocation import RelocationSection
    elf = _elf(ko)
    counts: dict = {}
    try:
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection):
                for r in sec.iter_relocations():
                    t = describe_reloc_type(r["r_info_type"], elf)
                    counts[t] = counts.get(t, 0) + 1
    finally:
        elf.stream.close()
    return dict(sorted(counts.items()))


def init_array_targets(ko) -> list[str]:
    """The functions a .ko's ``.init_array`` points at (the constructors a C runtime would run)."""
    from elftools.elf.relocation import RelocationSection
    elf = _elf(ko)
    try:
        idx = next((i for i, s in enumerate(elf.iter_sections()) if s.name == ".init_array"), None)
        if idx is None:
            return []
        symtab = elf.get_section_by_name(".symtab")
        out = []
        for sec in elf.iter_sections():
            if isinstance(sec, RelocationSection) and sec["sh_info"] == idx:
                for r in sec.iter_relocations():
                    sym = symtab.get_symbol(r["r_info_sym"])
                    if sym.name:
                        out.append(sym.name)
                    else:   # a section symbol plus addend: name the function at that offset
                        sec_name = elf.get_section(sym["st_shndx"]).name
                        fn = next((s.name for s in symtab.iter_symbols() if s["st_shndx"] == sym["st_shndx"]
                                   and s["st_value"] == r["r_addend"] and s["st_info"]["type"] == "STT_FUNC"), None)
                        out.append(fn or f"{sec_name}+{r['r_addend']:#x}")
        return out
    finally:
        elf.stream.close()


# ------------------------------------------------------------------------------------------ initramfs
def _newc(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple = (0, 0)) -> bytes:
    """One cpio "newc" record (the format the kernel's initramfs unpacker reads, init/initramfs.c)."""
    nb = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + nb
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def initramfs(files: dict, init: str) -> bytes:
    """An uncompressed initramfs: directories, ``/dev/console``, ``/init`` (the script) and ``files``
    ({guest path: bytes}; paths under /bin are executable)."""
    if not isinstance(files, dict) or not isinstance(init, str):
        raise GuestError("initramfs needs {guest path: bytes} and the /init script as a string")
    recs, ino = [], 1
    dirs = {"dev", "proc", "sys", "bin", "sbin", "mods", "tmp"}
    for path, data in files.items():
        if not isinstance(path, str) or not isinstance(data, (bytes, bytearray)):
            raise GuestError(f"bad initramfs entry {path!r}: a path string and bytes, please")
        if not path.startswith("/") or ".." in path.split("/"):
            raise GuestError(f"bad guest path {path!r}: absolute paths without '..' only")
        parts = path.strip("/").split("/")
        dirs.update("/".join(parts[:k]) for k in range(1, len(parts)))
    for d in sorted(dirs):
        recs.append(_newc(d, 0o040755, ino=ino))
        ino += 1
    recs.append(_newc("dev/console", 0o020600, ino=ino, rdev=(5, 1)))
    ino += 1
    recs.append(_newc("init", 0o100755, init.encode(), ino=ino))
    for path, data in sorted(files.items()):
        ino += 1
        mode = 0o100755 if path.startswith(("/bin/", "/sbin/")) else 0o100644
        recs.append(_newc(path.strip("/"), mode, data, ino=ino))
    recs.append(_newc("TRAILER!!!", 0))
    blob = b"".join(recs)
    return blob + b"\0" * (-len(blob) % 512)


# ------------------------------------------------------------------------------------------ the script
# (step name, shell command). Run in this order in ONE boot; each step's output, exit status and new kernel
# messages are printed between markers.
FREED = "$(cat /sys/module/initmod/parameters/setup_addr)"


def _probe(target: str) -> str:
    return (f"echo -n {target} > /sys/module/kpat/parameters/probe; "
            "echo probe_ret=$(cat /sys/module/kpat/parameters/probe_ret)")


STEPS = (
    # chapter 2c: symbols, exports and the loader's order of checks
    ("insmod_hello", "insmod /mods/hello.ko"),
    ("insmod_world", "insmod /mods/world.ko"),
    ("insmod_thief", "insmod /mods/thief.ko"),
    ("insmod_kls", "insmod /mods/kls.ko"),
    ("insmod_dup", "insmod /mods/dup.ko"),
    ("insmod_both", "insmod /mods/both.ko"),
    ("modules", "cut -d' ' -f1 /proc/modules | sort"),
    ("insmod_tls", "insmod /mods/tls.ko"),
    ("insmod_gomod", "insmod /mods/gomod.ko"),
    ("insmod_gostub", "insmod /mods/gostub.ko"),
    # chapter 3a: the IA-32 system call gate from a 64-bit program
    ("int80", "/bin/int80"),
    # chapter 4c: a kprobe on a live function (then removed: with no tracer active, freed init code leaves
    # kallsyms; kernel/trace/ftrace.c keeps the names of freed init functions while a tracer is running)
    ("insmod_kp", "insmod /mods/kp.ko"),
    ("kp_fire", "for i in 1 2 3 4 5; do /bin/busybox true; done; "
                "echo fired_5=$([ $(cat /sys/module/kp/parameters/hits) -ge 5 ] && echo yes || echo no)"),
    ("kprobes_list", "cut -d' ' -f2- /sys/kernel/debug/kprobes/list"),
    ("rmmod_kp", "rmmod kp"),
    # .init.text after loading, and kprobes on a module's live and freed functions
    ("insmod_kpat", "insmod /mods/kpat.ko"),
    ("insmod_initmod", "insmod /mods/initmod.ko"),
    # /proc/kallsyms is read once (about 2 s under TCG): the module symbols, tagged "\t[module]", into a file
    ("module_kallsyms", "grep -F \"$(printf '\\t[')\" /proc/kallsyms > /tmp/modsyms; echo saved"),
    ("kallsyms_exports", "grep -E ' (__ksymtab_)?(hello_api|helper)\\s' /tmp/modsyms | cut -d' ' -f2- | sort"),
    ("initmod_kallsyms", "grep -F '[initmod]' /tmp/modsyms | cut -d' ' -f2- | sort"),
    ("initmod_sections", "ls -a /sys/module/initmod/sections | sort"),
    ("initmod_addresses", f"echo setup_at_init_text=$([ $(cat /sys/module/initmod/sections/.init.text) = "
                          f"$(printf 0x%x {FREED}) ] && echo yes || echo no) "
                          f"kallsyms_at_setup=$(grep -c \"^$(printf %016x {FREED}) \" /tmp/modsyms)"),
    ("probe_module_text", _probe("initmod_work")),
    ("probe_freed_by_address", _probe(f"$(printf 0x%x {FREED})")),
    ("probe_freed_by_name", _probe("initmod_setup")),
    ("tracefs_live", "cd /sys/kernel/tracing && echo 'p:book_clone kernel_clone' > kprobe_events && "
                     "echo 1 > events/kprobes/book_clone/enable && /bin/busybox true && /bin/busybox true && "
                     "echo 0 > events/kprobes/book_clone/enable && "
                     "echo traced_2=$([ $(grep -c book_clone: trace) -ge 2 ] && echo yes || echo no)"),
    ("tracefs_freed", "cd /sys/kernel/tracing && echo 'p:book_init initmod:initmod_setup' >> kprobe_events; "
                      "r=$?; sed 's/^\\[[ 0-9.]*\\] //' error_log | tail -n 3; exit $r"),
)


def guest_script(steps=STEPS, *, timing: bool = False) -> str:
    """The guest's /init: mount the pseudo file systems, run each step with markers, power off. With
    ``timing`` (benchmarks only: the numbers vary) each step is preceded by ``@@T <seconds since boot>``."""
    lines = ["#!/bin/busybox sh", "/bin/busybox --install -s /bin", "export PATH=/bin",
             "mount -t proc proc /proc", "mount -t sysfs sysfs /sys", "mount -t devtmpfs devtmpfs /dev",
             "mount -t tracefs tracefs /sys/kernel/tracing", "mount -t debugfs debugfs /sys/kernel/debug",
             "dmesg -c > /dev/null", "echo @@BOOTED"]
    for name, cmd in steps:
        if not re.fullmatch(r"\w+", name):
            raise GuestError(f"bad step name {name!r}")
        if timing:
            lines.append(f"echo \"@@T {name} $(cut -d' ' -f1 /proc/uptime)\"")
        lines += [f"echo '@@BEGIN {name}'", f"( {cmd} ) 2>&1", "echo \"@@RC $?\"", "echo @@KERNEL",
                  "dmesg -c", f"echo '@@END {name}'"]
    if timing:
        lines.append("echo \"@@T end $(cut -d' ' -f1 /proc/uptime)\"")
    lines += ["echo @@DONE", "poweroff -f"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Step:
    out: tuple          # what the command printed
    rc: int             # its exit status
    kernel: tuple       # the kernel messages it caused (dmesg), in order


def parse_console(text: str) -> dict:
    """{step name: Step} from the guest's serial console; GuestError when the script did not finish."""
    if not isinstance(text, str):
        raise GuestError(f"parse_console needs the console text, not {type(text).__name__}")
    lines = [l.rstrip("\r") for l in text.replace("\r\n", "\n").split("\n")]
    steps, cur, part, buf = {}, None, None, {}
    for line in lines:
        m = re.fullmatch(r"@@BEGIN (\w+)", line)
        if m:
            cur, part, buf = m.group(1), "out", {"out": [], "kernel": [], "rc": None}
            continue
        if cur is None:
            continue
        if line.startswith("@@RC "):
            buf["rc"], part = int(line[5:]), None
        elif line == "@@KERNEL":
            part = "kernel"
        elif line == f"@@END {cur}":
            steps[cur] = Step(tuple(buf["out"]), buf["rc"], tuple(buf["kernel"]))
            cur = None
        elif part:
            buf[part].append(line)
    if "@@DONE" not in lines:
        tail = " | ".join(l for l in lines if l.strip())[-300:]
        raise GuestError(f"the guest did not finish its script (last console lines: {tail or 'none'})")
    return steps


# ------------------------------------------------------------------------------------------ booting
def _boot(initrd: bytes, timeout: float) -> tuple[str, float]:
    """Boot the kernel with ``initrd`` (helpers.vm: no network, a timeout, TCG unless KVM really works);
    return (console text, seconds). The guest ends by powering off."""
    with tempfile.TemporaryDirectory() as d:
        rd = Path(d) / "initrd.cpio"
        rd.write_bytes(initrd)
        run = vm.boot(f"/boot/vmlinuz-{kernel_release()}", initrd=rd, append=APPEND, memory_mb=256,
                      timeout=timeout, debug_exit=False)
    return run.console, run.elapsed


def _guest_files(builds) -> dict:
    files = {"/bin/busybox": BUSYBOX.read_bytes(), "/bin/int80": int80_program().read_bytes()}
    for kb in builds.values():
        for name, ko in kb.modules.items():
            files[f"/mods/{name}.ko"] = ko.read_bytes()
    return files


def _host_facts(builds) -> dict:
    main, gomod = builds["main"], builds["gomod"]
    hello = main.modules["hello"]
    go_ko = gomod.dir / "gomod.ko"
    exports = kernel_exports()
    return {
        "hello_symbols": module_symbols(hello),
        "hello_ksymtab": ksymtab_entries(hello),
        "modpost": {n: list(b.modpost) for n, b in builds.items()},
        "go_undefined": sorted(set(undefined_symbols(go_ko)) - exports),
        "go_undefined_exported": sorted(set(undefined_symbols(go_ko)) & exports),
        "go_relocations": relocation_types(builds["gostub"].dir / "gostub.ko"),
        "go_init_array": init_array_targets(go_ko),
        "go_sections": sorted({s for s in _section_names(go_ko) if s.startswith((".init_array", ".tbss", ".tdata"))}),
        "config": kernel_config("CONFIG_CONSTRUCTORS", "CONFIG_HAVE_ARCH_PREL32_RELOCATIONS", "CONFIG_KPROBES",
                                "CONFIG_KPROBES_ON_FTRACE", "CONFIG_KPROBE_EVENTS", "CONFIG_IA32_EMULATION",
                                "CONFIG_MODVERSIONS", "CONFIG_MODULE_SIG_FORCE", "CONFIG_UNWINDER_ORC",
                                "CONFIG_X86_KERNEL_IBT", "CONFIG_RETPOLINE", "CONFIG_CC_IS_GCC", "CONFIG_CC_IS_CLANG",
                                "CONFIG_LTO_NONE", "CONFIG_LTO_CLANG", "CONFIG_LTO_CLANG_THIN"),
        "kbuild": _flags_from_build(main),
    }


def _section_names(path) -> list[str]:
    from helpers.elf import read_elf
    return [s.name for s in read_elf(path).sections]


def _cache_key(builds) -> str:
    """Versions, every build directory (named by a hash of its sources), the script and the kernel command line."""
    return toolchain._digest("linux-guest", FORMAT, versions(), sorted(kb.dir.name for kb in builds.values()),
                             int80_program().parent.name, guest_script(), APPEND)


# Kernel lines a step caused: the book's own (@@), the loader's and tracing's, and traps of the test program.
# Everything else in dmesg comes from the kernel's own timing (clocksource calibration, say) and would land in
# whichever step was running.
_OURS = re.compile(r"^(@@|module: |traps: |trace_kprobe: |(" + "|".join(
    [*MAIN_MODULES, *ALONE_MODULES, "gomod", "gostub"]) + r"): )")


def _ours(line: str) -> bool:
    return bool(_OURS.match(line))


def _stable(line: str) -> str:
    """Process ids vary between boots (kernel threads start asynchronously): ``int80[115]`` -> ``int80[PID]``."""
    return re.sub(r"(\w)\[\d+\]", r"\1[PID]", line)


def run_live(*, timeout: float = BOOT_TIMEOUT) -> dict:
    """Build everything, boot once, run every step; the result dict (cached by a hash of the inputs)."""
    if missing():
        raise GuestMissing("cannot run the Linux guest here: missing " + ", ".join(missing()))
    from helpers import progress
    with progress.first_build(toolchain.CACHE_DIR, "linux-guest-modules",
                              "kbuild builds the chapter's kernel modules (and Go builds a C archive for one)",
                              "about a minute"):
        builds = _builds()
    key = _cache_key(builds)
    cache = toolchain.CACHE_DIR / "guest" / f"linux-{key}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    with progress.first_build(toolchain.CACHE_DIR, f"linux-guest-{key}",
                              "QEMU boots Debian's kernel and runs every module experiment", "10-30 seconds"):
        console, elapsed = _boot(initramfs(_guest_files(builds), guest_script()), timeout)
    steps = parse_console(console)
    data = {"versions": versions(), "append": APPEND,
            "steps": {n: {"cmd": c, "out": list(steps[n].out), "rc": steps[n].rc,
                          "kernel": [_stable(l) for l in steps[n].kernel if _ours(l)]}
                      for n, c in STEPS if n in steps},
            "host": json.loads(json.dumps(_host_facts(builds))), "elapsed": round(elapsed, 1)}
    absent = [n for n, _c in STEPS if n not in steps]
    if absent:
        raise GuestError(f"the guest skipped steps {absent}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(cache)
    return data


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class GuestResults:
    data: dict
    recorded: bool

    def step(self, name: str) -> Step:
        s = self.data["steps"].get(name)
        if s is None:
            raise GuestError(f"no step {name!r} (have: {', '.join(self.data['steps'])})")
        return Step(tuple(s["out"]), s["rc"], tuple(s["kernel"]))

    @property
    def host(self) -> dict:
        return self.data["host"]

    def provenance(self) -> str:
        v = self.data["versions"]
        how = "recorded by `python -m helpers.linuxguest` (QEMU or the kernel packages are missing here)" \
            if self.recorded else "run here"
        return (f"[{how}: Linux {v['kernel']} (Debian {v['kernel_package']}) on {v['qemu']}, {v.get('accel', 'tcg')}; "
                f"modules by kbuild with {v['gcc']}; {v['busybox']}; Go {v['go']}]")


def _require_or_recording():
    if vm.require_vm_env():
        raise GuestMissing("BOOK_REQUIRE_VM=1 but the Linux guest cannot run here: missing " + ", ".join(missing()))
    if not RECORDING.exists():
        raise GuestMissing(f"the Linux guest cannot run here (missing {', '.join(missing())}) and there is no "
                           "recording")


def results() -> GuestResults:
    """The experiments' results: live (one boot, cached) when QEMU and the kernel packages are installed,
    else the recording (and BOOK_REQUIRE_VM=1 turns that case into :class:`GuestMissing`)."""
    if missing():
        _require_or_recording()
        return GuestResults(json.loads(RECORDING.read_text())["data"], recorded=True)
    return GuestResults(run_live(), recorded=False)


def comparable(data: dict) -> dict:
    """What must not change between two runs: everything but the timing and the versions, so that a Debian point
    release of the same kernel compares equal unless the kernel really behaves differently. What a point release
    of the headers changes is written out: the release (it names the header paths in kbuild's flags) as
    ``<release>``; the number ``__UNIQUE_ID`` appends (``__COUNTER__``, include/linux/compiler-gcc.h: it counts
    every use in the headers before it) as ``<n>``; and the count of each relocation type in the Go module, which
    includes kbuild's generated ``.mod.c`` (the types are kept)."""
    rest = {k: v for k, v in data.items() if k not in ("elapsed", "versions")}
    if "go_relocations" in rest.get("host", {}):
        rest["host"] = {**rest["host"], "go_relocations": sorted(rest["host"]["go_relocations"])}
    text = re.sub(r"\b\d+\.\d+\.\d+-\d+-(amd64|common)\b", "<release>", json.dumps(rest))
    return json.loads(re.sub(r"\b(__UNIQUE_ID_\w*?)\d+\b", r"\1<n>", text))


def record() -> Path:
    """Run live and save the result as the recording (wall-clock time zeroed: it describes the machine)."""
    data = {**run_live(), "elapsed": 0.0}
    RECORDING.parent.mkdir(exist_ok=True)
    RECORDING.write_text(json.dumps({"key": "linux_guest", "data": data}, indent=1) + "\n")
    return RECORDING


# ------------------------------------------------------------------------------------------ readers
def loads(r: GuestResults, modules) -> list[tuple]:
    """(module, insmod exit status, insmod's message or "loaded", the kernel's lines) for each insmod step."""
    out = []
    for m in modules:
        s = r.step(f"insmod_{m}")
        msg = " ".join(s.out).strip() or "loaded"
        out.append((m, s.rc, msg, tuple(l for l in s.kernel if not l.startswith("@@"))))
    return out


def unknown_symbols(kernel_lines) -> list[str]:
    """The names in the loader's ``<mod>: Unknown symbol <name> (err -2)`` lines (kernel/module/main.c)."""
    return [m.group(1) for l in kernel_lines for m in [re.search(r"Unknown symbol (\S+) \(err", l)] if m]


SIGNALS = {0: "none (exited normally)", 5: "SIGTRAP", 11: "SIGSEGV"}


def int80() -> dict:
    """Chapter 3a: software interrupts from a static 64-bit user program on this kernel.

    Returns {"works": bool, "wrote": bytes written by the i386 write through INT $0x80, "same_pid": whether the
    i386 getpid (20) through INT $0x80 and the x86-64 getpid (39) through SYSCALL gave the same pid, "ring3": {"int $0x80": signal, "int3": signal, "int $0x81": signal} (how a child that ran
    each instruction ended: "none (exited normally)", "SIGTRAP", "SIGSEGV"), "ia32_emulation": the kernel's
    CONFIG_IA32_EMULATION, "line": the program's message, "provenance": str}. ``works`` is True when the
    INT $0x80 write printed its line and ``same_pid`` holds.
    A gate with DPL 3 lets ring 3 in (0x80: the system call, 3: #BP, delivered as SIGTRAP); INT $0x81 meets a
    DPL-0 gate and raises #GP, which Linux delivers as SIGSEGV.
    """
    r = results()
    s = r.step("int80")
    text = " ".join(s.out)
    got = {k: int(v) for k, v in re.findall(r"(\w+)=(-?\d+)", text)}
    line = next((l for l in s.out if "through int" in l), "")
    works = bool(line) and got.get("same_pid") == 1
    ring3 = {name: SIGNALS.get(got[key], f"signal {got[key]}") for name, key in
             (("int $0x80", "int80_signal"), ("int3", "int3_signal"), ("int $0x81", "int81_signal")) if key in got}
    return {"works": works, "wrote": got.get("wrote"), "same_pid": got.get("same_pid") == 1, "ring3": ring3, "line": line.removeprefix("@@ ").strip(),
            "ia32_emulation": r.host["config"]["CONFIG_IA32_EMULATION"], "provenance": r.provenance()}


if __name__ == "__main__":
    path = record()
    print(f"recorded {path}")
    sys.exit(0)


# busybox's insmod (modutils/modutils.c, bb_init_module) tries finit_module() and, when that fails, tries
# again with init_module(): the kernel then reports each refusal twice. moderror() words the errno:
BUSYBOX_ERRNO = {"unknown symbol in module, or unknown parameter": "-ENOENT", "invalid module format": "-ENOEXEC"}


def once(lines) -> list[str]:
    """Kernel lines without the repeats that busybox's second load attempt causes (first occurrence kept)."""
    return list(dict.fromkeys(lines))


def verdict(r: GuestResults, module: str) -> str:
    """The real kernel's verdict on loading ``module``, in the words of :func:`helpers.gosyms.load_modules`:
    ``"<m>: loaded"`` or ``"<m>: -ENOENT: Unknown symbol helper"`` (errno from insmod's message, reason from the
    kernel's first line about the module)."""
    s = r.step(f"insmod_{module}")
    if s.rc == 0:
        return f"{module}: loaded"
    reason = next((l.split(": ", 1)[1] for l in s.kernel if l.startswith((f"{module}: ", f"module: {module}: "))), "?")
    if reason.startswith(f"{module}: "):
        reason = reason[len(module) + 2:]
    reason = re.sub(r" \(err -?\d+\)$", "", reason)
    msg = " ".join(s.out)
    errno = next((e for text, e in BUSYBOX_ERRNO.items() if text in msg), f"exit {s.rc}")
    return f"{module}: {errno}: {reason}"


def relocation_name(number: int) -> str:
    """The x86-64 relocation type ``number`` by its ELF name (pyelftools' table of the psABI's types)."""
    from elftools.elf.enums import ENUM_RELOC_TYPE_x64
    return next((k for k, v in ENUM_RELOC_TYPE_x64.items() if v == number and k != "_default_"), f"type {number}")


def rejected_relocations(kernel_lines) -> list[str]:
    """Names of the types in the x86-64 loader's "Unknown rela relocation: <n>" lines."""
    return [relocation_name(int(m.group(1))) for l in once(kernel_lines)
            for m in [re.search(r"Unknown rela relocation: (\d+)", l)] if m]


def addresses(r: GuestResults) -> dict:
    """From the initmod_addresses step: {"setup_at_init_text": whether initmod_setup was the first byte of the
    module's .init.text (sysfs keeps the load address), "kallsyms_at_setup": how many /proc/kallsyms entries
    sit at that address after the module loaded}."""
    got = dict(re.findall(r"(\w+)=(\w+)", " ".join(r.step("initmod_addresses").out)))
    return {"setup_at_init_text": got.get("setup_at_init_text") == "yes",
            "kallsyms_at_setup": int(got.get("kallsyms_at_setup", -1))}


def flag(r: GuestResults, step: str, name: str) -> bool:
    """A ``name=yes|no`` answer a step printed (the guest compares counts that vary between boots)."""
    got = dict(re.findall(r"(\w+)=(\w+)", " ".join(r.step(step).out)))
    if name not in got:
        raise GuestError(f"step {step!r} printed no {name}=")
    return got[name] == "yes"
