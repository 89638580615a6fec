"""Generate tests/data/asm_refs.json: GNU as reference encodings for helpers.asm.

Run:  .venv/bin/python tests/gen_asm_refs.py

The references are made WITHOUT helpers.asm (so they can judge it): each case is
assembled by GNU as (``as --64``/``--32``, ``.intel_syntax noprefix`` for Intel)
and linked flat at its address by GNU ld (``-Ttext``, ``--oformat=binary``), so
ld, not our code, applies relocations (absolute label addresses, absolute
branch targets).  The first line of ``as --version``/``ld --version`` is
recorded in the JSON.  Subprocesses go through helpers.toolchain.run (timeout,
no shell).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from helpers.toolchain import run  # noqa: E402

OUT = ROOT / "tests" / "data" / "asm_refs.json"

# One instruction per line.  Address 0 unless the group says otherwise.
INSNS = {
    ("x86_64", "att"): r"""
mov %rsp, %rbp
mov %rdi, %rax
movq $16, %rax
mov $10, %rax
mov $-1, %rax
mov $0x7fffffff, %rax
mov $0x80000000, %rax
movabs $0x123456789abcdef0, %rax
mov $42, %eax
mov $0x10, %r8d
movl $255, %ecx
movb $1, %al
movw $0x1234, %ax
mov 8(%rsp), %rax
mov -8(%rbp), %rdi
mov %rax, 16(%rsp)
mov 0x10(%rax,%rbx,4), %ecx
mov (%rax,%rcx,8), %rdx
mov -0x80(%rbp,%rsi,2), %r9
mov 1024(,%rdi,8), %rax
mov (%r12), %r13
mov (%r13), %r12
mov 0(%rbp), %rax
movq %gs:0x10, %rax
mov %fs:0x28, %rax
movq %rax, %gs:0x10
addq $0x10, %gs:0x10
lea 8(%rsp), %rax
lea -16(%rbp), %rdi
lea 0x100(%rip), %rsi
lea (%rax,%rax,2), %rax
push %rbp
push %r15
pushq $1
pushq $0x1000
push 8(%rsp)
pop %rbp
pop %r12
pushfq
popfq
subq $16, %rsp
sub $8, %rsp
add $256, %rsp
add %rsi, %rdi
addl $1, (%rax)
and $-16, %rsp
or $0x1, %eax
xor %eax, %eax
xor %r10d, %r10d
cmp $0, %rdi
cmp %rsi, %rdi
cmpq $100, 8(%rsp)
test %rax, %rax
test $1, %al
inc %rax
decl (%rbx)
neg %rdx
not %ecx
imul $12, %rax, %rdx
imul %rbx, %rax
mul %rcx
idivq %rbx
cqto
cltq
shl $3, %rax
shl $1, %rax
shr %cl, %rdx
sar $63, %rax
rol $8, %ax
movzbl %al, %eax
movzwl (%rsi), %eax
movsbq %dl, %rax
movslq %edi, %rax
cmovne %rsi, %rax
sete %al
xchg %rax, %rbx
bswap %eax
ret
ret $8
call *%rax
call *8(%rax)
jmp *%rax
jmp *(%rax,%rcx,8)
syscall
sysretq
int $128
int $0x80
int $3
int3
iretq
hlt
nop
pause
cli
sti
lidt (%rax)
lgdt (%rdi)
sidt 8(%rsp)
mov %cr3, %rax
mov %rax, %cr3
mov %cr0, %rax
wrmsr
rdmsr
rdtsc
cpuid
swapgs
invlpg (%rdi)
lock incq (%rdi)
lock cmpxchg %rcx, (%rdx)
xadd %eax, (%rbx)
rep movsb
rep stosq
movsq
lodsb
repne scasb
cld
std
movaps %xmm0, %xmm1
movups (%rax), %xmm2
movdqa %xmm3, 16(%rsp)
movq %xmm0, %rax
movd %eax, %xmm1
addsd %xmm1, %xmm0
mulss (%rdi), %xmm3
pxor %xmm0, %xmm0
cvtsi2sd %rax, %xmm0
xorps %xmm8, %xmm9
mfence
ud2
leave
enter $16, $0
in $0x60, %al
out %al, $0x80
outb %al, %dx
mov %fs, %rax
mov %rax, %fs
movw %fs, (%rax)
mov %ds, %ax
mov %ss, %eax
push %fs
pop %gs
nopw 0x0(%rax,%rax,1)
nopl 0x0(%rax)
fld %st(1)
faddp %st, %st(1)
fldz
mov 0x1000, %eax
mov %eax, 0x1000
jmp *0x1000
lidt 0x1000
sysretq
ltr %ax
mov %cr4, %rcx
shld $4, %rax, %rdx
popcnt %rax, %rbx
""",
    ("x86_64", "intel"): r"""
mov rbp, rsp
mov rax, 16
mov rax, -1
mov eax, 42
mov al, 1
mov rax, qword ptr [rsp+8]
mov rdi, qword ptr [rbp-8]
mov qword ptr [rsp+16], rax
mov ecx, dword ptr [rax+rbx*4+0x10]
mov rdx, qword ptr [rax+rcx*8]
mov rax, qword ptr gs:[0x10]
mov rax, qword ptr fs:[0x28]
add qword ptr gs:[0x10], 16
lea rax, [rsp+8]
lea rsi, [rip+0x100]
lea rax, [rax+rax*2]
push rbp
push 1
pop r12
sub rsp, 16
add rsp, 0x100
and rsp, -16
xor eax, eax
cmp rdi, 0
cmp qword ptr [rsp+8], 100
test rax, rax
inc rax
dec dword ptr [rbx]
imul rdx, rax, 12
shl rax, 3
shr rdx, cl
movzx eax, al
movsx rax, dl
movsxd rax, edi
cmovne rax, rsi
sete al
ret
call rax
call qword ptr [rax+8]
jmp rax
syscall
int 128
int 0x80
int3
iretq
cli
sti
hlt
lidt [rax]
lgdt [rdi]
mov rax, cr3
mov cr3, rax
swapgs
lock inc qword ptr [rdi]
rep movsb
rep stosq
movaps xmm1, xmm0
movups xmm2, xmmword ptr [rax]
addsd xmm0, xmm1
pxor xmm0, xmm0
""",
    ("x86_32", "att"): r"""
mov %esp, %ebp
mov $10, %eax
mov $-1, %ecx
movl $0x1000, %esi
mov 8(%esp), %eax
mov -4(%ebp), %edx
mov 0x10(%eax,%ebx,4), %ecx
mov %eax, %fs:0x10
movl %gs:0x14, %eax
mov %ds:0x1000, %eax
lea 4(%esp), %eax
push %ebp
push $1
push $0x1000
pop %ebx
pushal
popal
pushfl
popfl
sub $16, %esp
add $4, %esp
and $-16, %esp
xor %eax, %eax
cmp $10, %eax
cmpl $0, 4(%esp)
test %eax, %eax
inc %eax
dec %ecx
imul $12, %eax, %edx
shl $2, %eax
movzbl %al, %eax
cltd
ret
ret $4
call *%eax
call *8(%eax)
jmp *%eax
int $128
int $0x80
int3
iret
cli
sti
hlt
lidt (%eax)
lgdt (%eax)
sidt (%ebx)
lidt 4(%esp)
ljmp $0x8, $0x1000
ljmp $8, $0x100000
lcall $0x10, $0x2000
ljmp *(%eax)
mov %cr0, %eax
mov %eax, %cr0
mov $0x10, %ax
mov %ax, %ds
mov %ax, %ss
lock incl (%eax)
rep movsb
rep stosl
movsl
cld
movaps %xmm0, %xmm1
addsd %xmm1, %xmm0
sysenter
in $0x60, %al
out %al, $0x80
""",
    ("x86_32", "intel"): r"""
mov ebp, esp
mov eax, 10
mov eax, dword ptr [esp+8]
mov ecx, dword ptr [eax+ebx*4+0x10]
mov dword ptr fs:[0x10], eax
mov eax, dword ptr gs:[0x14]
lea eax, [esp+4]
push ebp
push 1
pop ebx
pushad
sub esp, 16
and esp, -16
xor eax, eax
cmp eax, 10
test eax, eax
inc eax
imul edx, eax, 12
shl eax, 2
movzx eax, al
cdq
ret
call eax
int 128
int 0x80
int3
iretd
cli
sti
lidt [eax]
lgdt [eax]
sidt [ebx]
lidt [esp+4]
jmp 0x8:0x1000
call 0x10:0x2000
jmp fword ptr [eax]
mov eax, cr0
mov cr0, eax
mov ax, 0x10
mov ds, ax
lock inc dword ptr [eax]
rep movsb
movaps xmm1, xmm0
push ds
pop es
push fs
mov word ptr [eax], ds
mov ax, ss
lds ebx, [eax]
""",
}

# Instructions assembled at a non-zero address (absolute targets need relocation).
AT_ADDRESS = [
    ("x86_64", "att", 0x1000, "jmp 0x1000"),
    ("x86_64", "att", 0x1000, "call 0x1100"),
    ("x86_64", "att", 0x401000, "jne 0x400ff0"),
    ("x86_64", "intel", 0x1000, "jmp 0x1010"),
    ("x86_64", "intel", 0x1000, "call 0x2000"),
    ("x86_32", "att", 0x7c00, "jmp 0x7c00"),
    ("x86_32", "att", 0x100000, "call 0x100100"),
    ("x86_32", "att", 0x1000, "jbe 0x1000"),
    ("x86_32", "intel", 0x1000, "jmp 0x1000"),
    ("x86_32", "intel", 0x1000, "je 0x1020"),
]

# Multi-line programs: labels (numeric and named), forward/back jumps, both syntaxes and modes.
PROGRAMS = [
    ("x86_64", "att", 0x1000, "count down with a numeric label", """\
    mov $10, %ecx
1:  dec %ecx
    jnz 1b
    ret
"""),
    ("x86_64", "att", 0, "forward and backward numeric labels, reused", """\
    xor %eax, %eax
1:  cmp $100, %eax
    jbe 1f
    jmp 2f
1:  add $16, %eax
    jmp 1b
2:  ret
"""),
    ("x86_64", "intel", 0x401000, "intel: numeric labels and a named function", """\
start:
    mov ecx, 10
1:  dec ecx
    jnz 1b
    call helper
    jmp 1f
    nop
1:  ret
helper:
    xor eax, eax
    ret
"""),
    ("x86_64", "att", 0x2000, "a prologue/epilogue and a far forward jump", """\
func:
    push %rbp
    mov %rsp, %rbp
    subq $16, %rsp
    movq $0, -8(%rbp)
    cmpq $0, %rdi
    je done
    .rept 40
    addq $1, -8(%rbp)
    .endr
done:
    mov -8(%rbp), %rax
    leave
    ret
"""),
    ("x86_64", "att", 0x1000, "an IDT-style handler stub with lidt and iretq", """\
    lidt idt_ptr(%rip)
    sti
    int $32
    cli
    hlt
handler:
    push %rax
    mov $1, %eax
    pop %rax
    iretq
idt_ptr:
    nop
"""),
    ("x86_32", "att", 0x7c00, "32-bit: far jump to a label and a loop", """\
    cli
    lgdt gdt_ptr
    ljmp $0x08, $pm
pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov $5, %ecx
1:  loop 1b
    jmp .
gdt_ptr:
    hlt
"""),
    ("x86_32", "intel", 0x100000, "32-bit intel: string copy with labels", """\
copy:
    mov esi, [esp+4]
    mov edi, [esp+8]
1:  lodsb
    stosb
    test al, al
    jnz 1b
    ret
"""),
    ("x86_32", "att", 0, "32-bit: absolute address of a label", """\
    mov $data, %eax
    mov data, %ebx
    jmp 1f
data:
    nop
1:  ret
"""),
    ("x86_64", "att", 0x400000, "64-bit: absolute and rip-relative label addresses", """\
    lea msg(%rip), %rsi
    movabs $msg, %rax
    mov $msg, %edx
    syscall
    ret
msg:
    nop
"""),
    ("x86_64", "att", 0x10000, "64-bit: label immediates, label+offset memory, indirect jump", """\
    mov $table, %rax
    mov $table, %ecx
    lea table+8, %rdx
    mov table+4(%rip), %esi
    jmp *table(,%rdi,8)
table:
    nop
"""),
    ("x86_32", "intel", 0x8000, "32-bit intel: label arithmetic and segment loads", """\
    lea eax, [table+4]
    mov ebx, dword ptr [table]
    mov ax, 0x10
    mov ds, ax
    jmp 0x8:next
next:
    jmp [table+ebx*4]
table:
    nop
"""),
    ("x86_64", "intel", 0, "intel: forward/back jumps over a short and a long distance", """\
top:
    cmp rax, 0
    je 1f
    jmp top
1:  inc rax
    cmp rax, 1000
    jb top
    ret
"""),
]


def _first_line(argv):
    p = run(argv, timeout=30)
    return (p.stdout or p.stderr).strip().splitlines()[0]


def reference(asm: str, ld: str, arch: str, syntax: str, address: int, source: str) -> bytes:
    """Assemble with GNU as and link flat at `address` with GNU ld; return .text bytes."""
    with tempfile.TemporaryDirectory(prefix="asm-ref-") as d:
        s, o, b = (os.path.join(d, n) for n in ("in.s", "in.o", "out.bin"))
        with open(s, "w") as f:
            f.write(".intel_syntax noprefix\n" if syntax == "intel" else "")
            f.write(source + "\n")
        p = run([asm, "--64" if arch == "x86_64" else "--32", "-o", o, s], timeout=30)
        if p.returncode != 0 or "Warning" in p.stderr:
            raise SystemExit(f"GNU as rejected reference case {source!r}: {p.stderr.strip()}")
        emul = "elf_x86_64" if arch == "x86_64" else "elf_i386"
        p = run([ld, "-m", emul, f"-Ttext={address:#x}", "-e", f"{address:#x}", "--oformat=binary",
                 "-o", b, o], timeout=30)
        if p.returncode != 0:
            raise SystemExit(f"GNU ld rejected reference case {source!r}: {p.stderr.strip()}")
        return Path(b).read_bytes()


def cases():
    out = []
    for (arch, syntax), block in INSNS.items():
        for line in block.strip().splitlines():
            line = line.strip()
            out.append({"kind": "insn", "arch": arch, "syntax": syntax, "address": 0, "source": line})
    for arch, syntax, address, line in AT_ADDRESS:
        out.append({"kind": "insn", "arch": arch, "syntax": syntax, "address": address, "source": line})
    for arch, syntax, address, title, src in PROGRAMS:
        out.append({"kind": "program", "arch": arch, "syntax": syntax, "address": address,
                    "title": title, "source": src})
    return out


def main() -> int:
    asm, ld = shutil.which("as"), shutil.which("ld")
    if not asm or not ld:
        print("GNU as and ld (binutils) are needed to generate references", file=sys.stderr)
        return 1
    data = {"generator": "tests/gen_asm_refs.py", "as_version": _first_line([asm, "--version"]),
            "ld_version": _first_line([ld, "--version"]), "cases": []}
    for c in cases():
        c["hex"] = reference(asm, ld, c["arch"], c["syntax"], c["address"], c["source"]).hex()
        data["cases"].append(c)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    n_insn = sum(c["kind"] == "insn" for c in data["cases"])
    print(f"wrote {OUT.relative_to(ROOT)}: {n_insn} instructions, "
          f"{len(data['cases']) - n_insn} programs ({data['as_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
