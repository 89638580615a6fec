/*
 * idt_kernel.S -- the book's bare-metal x86-64 test kernel for interrupt delivery (chapter 3a, labs/idt).
 *
 * QEMU loads it with -kernel as a multiboot (v1) ELF32 image and enters _start in 32-bit protected mode
 * (Multiboot Specification 0.6.96 §3.2). It switches to long mode (Intel SDM Vol. 3A §10.8.5 "Initializing
 * IA-32e Mode": PAE, CR3, EFER.LME, CR0.PG, a far jump to a 64-bit code segment), loads a GDT with ring-0
 * and ring-3 segments, a TSS and the IDT, masks the 8259 PICs, enables the local APIC, and runs the
 * scenarios that helpers/guests/idtk.py generates into this file at @SCENARIOS@. The IDT's 256 gates come
 * byte for byte from helpers.idt.Gate.encode() (idt_pristine, generated); each scenario patches a few
 * entries with encode()'s bytes, sets the TSS stack pointers, and raises one event: INT n at CPL 0 or 3, or
 * a local APIC self-IPI (a hardware interrupt).
 *
 * Every vector's handler stub sits at stubs + 16 * vector, first in .text (so its address does not depend
 * on the scenarios, and Python knows the handler offsets before it generates them). A stub reads RFLAGS
 * with pushfq and jumps to `common`, which prints one line on COM1:
 *
 *     E <scenario> <vector> <RSP at entry> <RFLAGS in handler> <n> <word 0> ... <word n-1>
 *
 * word 0 is at RSP (the last thing the CPU pushed), word n-1 just below the top of the stack the frame
 * landed on, so the line holds every frame word as pushed plus any padding from the 16-byte alignment.
 * Stacks are filled with 0x5a bytes before each event, so padding the CPU skipped reads 5a5a5a5a5a5a5a5a.
 * Each scenario also prints "S <scenario> <RIP of the event instruction>" and "G <scenario> <vector>
 * <16 bytes>" for every gate it installed, read back from the live IDT. The handler then abandons the
 * frame (a fresh runner stack, ring 0; SYSCALL takes a handler that a gate ran at CPL 3 there) and jumps
 * to the next scenario. An event that transfers no control runs on into "N <scenario>" (CPL 0) or a ud2
 * (CPL 3, reported as #UD). After the last scenario the kernel prints "DONE" and writes 0 to the
 * isa-debug-exit port; a triple fault instead ends the machine (QEMU's -no-reboot).
 *
 * Selectors follow Linux (torvalds/linux, asm/segment.h under arch/x86): 0x10 kernel code, 0x18 kernel data,
 * 0x2b user data, 0x33 user code; the TSS descriptor is at 0x40.
 */
#define COM1        0x3f8
#define DEBUG_EXIT  0xf4
#define LAPIC       0xfee00000
#define POISON      0x5a5a5a5a5a5a5a5a

    .text
    .align 4
    .long 0x1BADB002, 0, -0x1BADB002          /* multiboot magic, flags (none: load the ELF), checksum */

/* ---- one 16-byte handler stub per vector, at stubs + 16 * vector (idtk.STUB_BASE) ----------------- */
    .code64
    .balign 16
    .globl stubs
stubs:
    .set vec, 0
    .rept 256
    .balign 16
    pushfq
    pushq $vec
    jmp common
    .set vec, vec + 1
    .endr


    .code32
    .globl _start
_start:
    cli
    /* Page tables: PML4[0] -> PDPT, PDPT[0..3] -> four page directories of 2 MiB pages, identity-mapping
       0-4 GiB (the local APIC lives at 0xfee00000). U/S=1 everywhere, so CPL 3 code can run anywhere. */
    mov $pml4, %edi
    xor %eax, %eax
    mov $(6 * 4096 / 4), %ecx
    rep stosl
    movl $(pdpt + 0x7), pml4
    mov $pd, %eax
    or $0x7, %eax
    mov $pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    loop 1b
    mov $pd, %edi
    xor %eax, %eax                             /* physical address of the page */
    xor %edx, %edx                             /* its bits 63:32 */
    mov $2048, %ecx
2:  mov %eax, %ebx
    or $0x87, %ebx                             /* P, R/W, U/S, PS (2 MiB) */
    mov %ebx, (%edi)
    mov %edx, 4(%edi)
    add $0x200000, %eax
    adc $0, %edx
    add $8, %edi
    loop 2b
    lgdt gdt_ptr
    mov %cr4, %eax
    or $0x20, %eax                             /* CR4.PAE */
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx                      /* IA32_EFER */
    rdmsr
    or $0x100, %eax                            /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax                       /* PG | PE */
    mov %eax, %cr0
    ljmp $0x10, $long_mode

    .code64
long_mode:
    mov $0x18, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $RUNNER_TOP, %rsp
    /* The TSS descriptor (16 bytes at GDT offset 0x40): base = tss, type 0x9 (available 64-bit TSS). */
    mov $tss, %eax
    mov %eax, %ebx
    shl $16, %ebx
    or $(104 + 128 + 1 - 1), %ebx                /* limit: the TSS, the bitmap, its 0xff end byte */
    mov %ebx, gdt + 0x40                       /* limit 15:0, base 15:0 */
    mov %eax, %ebx
    shr $16, %ebx
    and $0xff, %ebx
    or $0x8900, %ebx                           /* base 23:16, type 9, P */
    mov %eax, %ecx
    and $0xff000000, %ecx
    or %ecx, %ebx                              /* base 31:24 */
    mov %ebx, gdt + 0x44
    movl $0, gdt + 0x48                        /* base 63:32 */
    movl $0, gdt + 0x4c
    /* I/O permission bitmap at TSS offset 104: ports 0-0x3ff, all denied except COM1's data port, so a
       handler that the scenario's gate runs at CPL 3 can still print its line (Intel SDM Vol. 1 §19.5.2). */
    movw $104, tss + 102
    mov $(tss + 104), %edi
    mov $0xff, %al
    mov $129, %ecx
    rep stosb
    movb $0xfe, tss + 104 + (COM1 / 8)
    mov $0x40, %ax
    ltr %ax
    lidt idt_ptr
    /* SYSCALL, so a handler running at CPL 3 can get back to ring 0 (Intel SDM Vol. 2B SYSCALL):
       EFER.SCE, STAR[47:32] = kernel CS (SS = CS + 8), LSTAR = back_to_kernel, FMASK clears IF TF DF AC. */
    mov $0xC0000080, %ecx
    rdmsr
    or $1, %eax
    wrmsr
    mov $0xC0000081, %ecx
    xor %eax, %eax
    mov $0x10, %edx
    wrmsr
    mov $0xC0000082, %ecx
    mov $back_to_kernel, %eax
    xor %edx, %edx
    wrmsr
    mov $0xC0000084, %ecx
    mov $0x40700, %eax
    xor %edx, %edx
    wrmsr
    /* Mask both 8259 PICs: the firmware left the PIT running on IRQ 0. */
    mov $0xff, %al
    out %al, $0x21
    out %al, $0xa1
    /* Local APIC: software-enable it (spurious-interrupt vector register, bit 8; spurious vector 0xff). */
    mov $LAPIC, %edi
    movl $0x1ff, 0xf0(%rdi)
    movl $0, 0x80(%rdi)                        /* task priority 0: accept every vector */
    jmp scenario_0

/* ---- output on COM1 ---------------------------------------------------------------------------- */
putc:                                          /* %al */
    push %rdx
    mov $COM1, %dx
    out %al, %dx
    pop %rdx
    ret

puthex:                                        /* %rax as 16 hex digits, then a space */
    push %rcx
    push %rbx
    mov %rax, %rbx
    mov $16, %ecx
    jmp puthex_digits

puthex8:                                       /* %al as 2 hex digits, then a space */
    push %rcx
    push %rbx
    mov %al, %bl
    shl $56, %rbx
    mov $2, %ecx
puthex_digits:                                 /* the top %ecx nibbles of %rbx; puthex's and puthex8's tail */
1:  rol $4, %rbx
    mov %ebx, %eax
    and $0xf, %eax
    cmp $10, %eax
    jb 2f
    add $('a' - '0' - 10), %eax
2:  add $'0', %eax
    call putc
    loop 1b
    mov $' ', %al
    call putc
    pop %rbx
    pop %rcx
    ret

newline:
    mov $10, %al
    jmp putc

/* Start of a scenario: print "S <scenario> <event rip>" and "G ..." lines, poison the stacks.
   In: %rax = RIP of the event instruction. */
begin_scenario:
    push %rax
    mov $'S', %al
    call putc
    mov $' ', %al
    call putc
    mov cur_scen(%rip), %eax
    call puthex
    pop %rax
    call puthex
    call newline
    /* Fill the top 256 bytes below every candidate stack top with POISON. */
    lea stack_tops(%rip), %rsi
    mov $5, %edx
3:  mov (%rsi), %rdi
    sub $256, %rdi
    movabs $POISON, %rax
    mov $32, %ecx
    rep stosq
    add $8, %rsi
    dec %edx
    jnz 3b
    ret

/* Print "G <scenario> <vector> <16 bytes of the IDT entry>". In: %ebx = vector. */
show_gate:
    mov $'G', %al
    call putc
    mov $' ', %al
    call putc
    mov cur_scen(%rip), %eax
    call puthex
    mov %ebx, %eax
    call puthex
    mov %ebx, %esi
    shl $4, %esi
    add $idt, %esi
    mov $16, %ecx
4:  movzbl (%rsi), %eax
    push %rcx
    call puthex8
    pop %rcx
    inc %rsi
    loop 4b
    jmp newline

/* Copy the pristine IDT (every gate from Gate.encode()) over the live one. */
restore_idt:
    lea idt_pristine(%rip), %rsi
    mov $idt, %edi
    mov $512, %ecx
    rep movsq
    ret

/* ---- the common handler -------------------------------------------------------------------------- */
common:
    pop %r12                                   /* vector (pushed by the stub) */
    pop %r13                                   /* RFLAGS as the handler sees them (pushfq in the stub) */
    mov %rsp, %r14                             /* RSP at handler entry: the last word the CPU pushed */
    mov $LAPIC, %eax
    movl $0, 0xb0(%rax)                        /* EOI, in case this was the self-IPI */
    /* Which stack did the frame land on? The candidate top just above RSP (within 128 bytes). */
    xor %r15, %r15                             /* number of words to print */
    lea stack_tops(%rip), %rsi
    mov $5, %edx
5:  mov (%rsi), %rax
    sub %r14, %rax
    jbe 6f
    cmp $128, %rax
    ja 6f
    shr $3, %rax
    mov %rax, %r15
    jmp 7f
6:  add $8, %rsi
    dec %edx
    jnz 5b
7:  mov $'E', %al
    call putc
    mov $' ', %al
    call putc
    mov cur_scen(%rip), %eax
    call puthex
    mov %r12, %rax
    call puthex
    mov %r14, %rax
    call puthex
    mov %r13, %rax
    call puthex
    mov %r15, %rax
    call puthex
    mov %r14, %rsi
8:  test %r15, %r15
    jz 9f
    mov (%rsi), %rax
    call puthex
    add $8, %rsi
    dec %r15
    jmp 8b
9:  call newline
    /* Abandon the frame and go on with the next scenario, in ring 0 on a fresh runner stack. A handler
       that the gate ran at CPL 3 gets there with SYSCALL. */
    mov %cs, %ax
    test $3, %al
    jz back_to_kernel
    syscall
back_to_kernel:
    cli                                        /* a trap gate left IF set: no interrupt before the next event */
    mov $0x18, %ax
    mov %ax, %ss
    mov %ax, %ds
    mov %ax, %es
    mov $RUNNER_TOP, %rsp
    jmp *next_scenario(%rip)

/* An event that transferred no control at CPL 0 lands here. */
no_event:
    cli
    mov $0x18, %ax
    mov %ax, %ss
    mov $RUNNER_TOP, %rsp
    mov $'N', %al
    call putc
    mov $' ', %al
    call putc
    mov cur_scen(%rip), %eax
    call puthex
    call newline
    jmp *next_scenario(%rip)

finish:
    lea done_msg(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    jmp 1b
2:  xor %eax, %eax
    out %al, $DEBUG_EXIT
3:  hlt
    jmp 3b

/* @SCENARIOS@ (helpers/guests/idtk.py puts the generated scenario blocks and the pristine IDT here) */

    .data
    .align 16
gdt:
    .quad 0                                    /* 0x00 null */
    .quad 0                                    /* 0x08 unused */
    .quad 0x00af9a000000ffff                   /* 0x10 kernel code: 64-bit (L=1), DPL 0 */
    .quad 0x00cf92000000ffff                   /* 0x18 kernel data, DPL 0 */
    .quad 0                                    /* 0x20 unused */
    .quad 0x00cff2000000ffff                   /* 0x28 user data, DPL 3 (selector 0x2b) */
    .quad 0x00affa000000ffff                   /* 0x30 user code: 64-bit, DPL 3 (selector 0x33) */
    .quad 0                                    /* 0x38 unused */
    .quad 0, 0                                 /* 0x40 TSS (filled in at run time) */
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt, 0
idt_ptr:
    .word 256 * 16 - 1
    .long idt, 0
next_scenario:
    .long 0, 0
cur_scen:
    .long 0
stack_tops:                                    /* this scenario's candidate stack tops */
    .quad 0, 0, 0, 0, 0
done_msg:
    .asciz "DONE\n"

    .bss
    .align 4096
pml4: .skip 4096
pdpt: .skip 4096
pd:   .skip 16384
idt:  .skip 4096
    .align 16
tss:  .skip 233                   /* the TSS, the I/O bitmap, its end byte */
