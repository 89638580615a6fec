"""kmodsrc: the C sources of the kernel modules and guest programs that :mod:`helpers.linuxguest` builds.

Each module is ordinary kbuild C against the kernel's own headers (torvalds/linux include/linux/module.h,
include/linux/export.h, include/linux/kprobes.h). Every line a module prints for the book starts with ``@@``
so that :mod:`helpers.linuxguest` can find it in ``dmesg``.
"""
from __future__ import annotations

# --------------------------------------------------------------------------------------------- chapter 2c
HELLO = r'''#include <linux/module.h>
#include <linux/init.h>
MODULE_LICENSE("GPL");

int helper(int x);                 /* GLOBAL in the object, never exported */
int helper(int x) { return x + 1; }
int hello_api(int x) { return helper(x) + 1; }
EXPORT_SYMBOL(hello_api);          /* a ___ksymtab+hello_api entry */

static int __init hello_init(void) { pr_info("@@ hello: init ran\n"); return 0; }
static void __exit hello_exit(void) { }
module_init(hello_init);
module_exit(hello_exit);
'''

WORLD = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
int hello_api(int x);              /* exported by module hello */
static int __init world_init(void) { pr_info("@@ world: hello_api(1) = %d\n", hello_api(1)); return 0; }
module_init(world_init);
'''

THIEF = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
int helper(int x);                 /* GLOBAL in hello.ko, but not exported */
static int __init thief_init(void) { pr_info("@@ thief: helper(1) = %d\n", helper(1)); return 0; }
module_init(thief_init);
'''

KALLSYMS = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
unsigned long kallsyms_lookup_name(const char *name);   /* in the kernel, no longer exported (5.7) */
static int __init kls_init(void) { pr_info("@@ kls: %lx\n", kallsyms_lookup_name("jiffies")); return 0; }
module_init(kls_init);
'''

DUP = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
int hello_api(int x) { return x; }
EXPORT_SYMBOL(hello_api);          /* module hello already exports this name */
static int __init dup_init(void) { pr_info("@@ dup: init ran\n"); return 0; }
module_init(dup_init);
'''

BOTH = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
int helper(int x);                 /* unresolvable, like thief */
int hello_api(int x) { return helper(x); }
EXPORT_SYMBOL(hello_api);          /* and a duplicate export, like dup */
static int __init both_init(void) { return 0; }
module_init(both_init);
'''

TLS = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
static __thread int counter;       /* ELF thread-local storage: %fs-relative, not the kernel's %gs per-CPU */
static int __init tls_init(void) { counter++; pr_info("@@ tls: %d\n", counter); return 0; }
module_init(tls_init);
'''

GO_STUB = r'''#include <linux/module.h>
MODULE_LICENSE("GPL");
extern int Add(int, int);          /* cgo's //export Add, in the Go c-archive linked into this module */
static int __init gomod_init(void) { pr_info("@@ gomod: Add(2, 3) = %d\n", Add(2, 3)); return 0; }
module_init(gomod_init);
'''


def libc_stubs(names) -> str:
    """C that defines each name as a do-nothing function, so that no symbol stays undefined (no includes: the
    names are libc's, unknown to kernel headers). ``_GLOBAL_OFFSET_TABLE_`` is skipped: the linker's own
    symbol, which the x86 module loader ignores (kernel/module/main.c, ``ignore_undef_symbol``)."""
    return "".join(f"long {n}(void);\nlong {n}(void) {{ return -1; }}\n" for n in sorted(names)
                   if n != "_GLOBAL_OFFSET_TABLE_")


# --------------------------------------------------------------------------------------------- chapter 4c
INITMOD = r'''#include <linux/module.h>
#include <linux/init.h>
MODULE_LICENSE("GPL");

static unsigned long setup_addr;
module_param(setup_addr, ulong, 0444);   /* where initmod_setup was, for the kprobe experiment */

static noinline int __init initmod_setup(int x) { return 3 * x; }   /* __init: goes to .init.text */
noinline int initmod_work(int x) { return x + 7; }                  /* ordinary .text */
EXPORT_SYMBOL(initmod_work);

static int __init initmod_init(void)
{
	setup_addr = (unsigned long)initmod_setup;
	pr_info("@@ initmod: during init, %pS returns %d\n", initmod_setup, initmod_setup(2));
	return 0;
}
module_init(initmod_init);
'''

KPROBE = r'''#include <linux/module.h>
#include <linux/kprobes.h>
MODULE_LICENSE("GPL");

static unsigned long hits;
module_param(hits, ulong, 0444);

static int count(struct kprobe *p, struct pt_regs *regs) { hits++; return 0; }
static struct kprobe live = { .symbol_name = "kernel_clone", .pre_handler = count };

static int __init kp_init(void)
{
	int ret = register_kprobe(&live);

	pr_info("@@ kp live ret=%d ftrace=%d\n", ret, ret ? -1 : !!(live.flags & KPROBE_FLAG_FTRACE));
	return ret;
}

static void __exit kp_exit(void)
{
	unregister_kprobe(&live);
	pr_info("@@ kp exit fired=%d\n", hits > 0);
}
module_init(kp_init);
module_exit(kp_exit);
'''

# Writing an address (0x...) or a symbol name to /sys/module/kpat/parameters/probe tries a kprobe there at that
# moment (after other modules have loaded); probe_ret then holds register_kprobe()'s result.
KPROBE_AT = r'''#include <linux/module.h>
#include <linux/kprobes.h>
#include <linux/string.h>
MODULE_LICENSE("GPL");

static int probe_ret = 1;
module_param(probe_ret, int, 0444);
static char sym[KSYM_NAME_LEN];

static int try_probe(const char *val, const struct kernel_param *kp)
{
	struct kprobe p = { };
	unsigned long addr;
	int by_addr = kstrtoul(val, 0, &addr) == 0;

	if (by_addr) {
		p.addr = (kprobe_opcode_t *)addr;
	} else {
		strscpy(sym, val, sizeof(sym));
		p.symbol_name = strim(sym);
	}
	probe_ret = register_kprobe(&p);
	pr_info("@@ kpat probe by %s ret=%d\n", by_addr ? "address" : "name", probe_ret);
	if (probe_ret == 0)
		unregister_kprobe(&p);
	return 0;
}
static const struct kernel_param_ops probe_ops = { .set = try_probe };
module_param_cb(probe, &probe_ops, NULL, 0200);
'''

# --------------------------------------------------------------------------------------------- chapter 3a
# A static x86-64 program with no libc. It makes the same system call two ways: through the 32-bit entry,
# INT $0x80 with the i386 call numbers (arch/x86/entry/syscalls/syscall_32.tbl: 20 getpid, 4 write), and
# through SYSCALL with the x86-64 numbers (syscall_64.tbl: 39 getpid, 1 write), and prints whether both
# gave the same positive pid (the pid itself differs between boots: kernel threads start asynchronously).
# Then three children try software interrupts from ring 3 and the parent prints how each ended (wait4's
# status: 0 = exited normally, else the signal): INT $0x80 again, INT3 (vector 3) and INT $0x81.
INT80 = r"""
static long sys64(long n, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;
	__asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return ret;
}

static long int80(long n, long a, long b, long c)
{
	long ret;
	__asm__ volatile ("int $0x80" : "=a"(ret) : "a"(n), "b"(a), "c"(b), "d"(c) : "memory");
	return ret;
}

static char buf[160];

static int put_num(char *p, long v)
{
	char tmp[24];
	int n = 0, k = 0;
	if (v < 0) { p[k++] = '-'; v = -v; }
	do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
	while (n) p[k++] = tmp[--n];
	return k;
}

static int put_str(char *p, const char *s)
{
	int k = 0;
	while (s[k]) { p[k] = s[k]; k++; }
	return k;
}

/* fork; the child runs one software interrupt and exits 0 if it survives; the parent returns the child's
   wait4 status: 0 for a normal exit 0, else the number of the signal that killed it (status & 0x7f). */
static long child_status(int which)
{
	int status = -1;
	long pid = sys64(57, 0, 0, 0, 0);                              /* fork */
	if (pid == 0) {
		if (which == 3)
			__asm__ volatile ("int3");
		else if (which == 0x81)
			__asm__ volatile ("int $0x81");
		else
			int80(20, 0, 0, 0);
		sys64(60, 0, 0, 0, 0);
	}
	sys64(61, pid, (long)&status, 0, 0);                           /* wait4(pid, &status, 0, NULL) */
	return status & 0x7f;
}

void _start(void)
{
	static const char hello[] = "@@ int80 write through int $0x80\n";
	long wrote = int80(4, 1, (long)hello, sizeof hello - 1);      /* i386 write(1, hello, len) */
	long pid32 = int80(20, 0, 0, 0);                                /* i386 getpid */
	long pid64 = sys64(39, 0, 0, 0, 0);                             /* x86-64 getpid */
	int k = put_str(buf, "@@ int80 wrote=");
	k += put_num(buf + k, wrote);
	k += put_str(buf + k, " same_pid=");
	k += put_num(buf + k, pid32 == pid64 && pid64 > 0);
	k += put_str(buf + k, "\n@@ ring3 int80_signal=");
	k += put_num(buf + k, child_status(0x80));
	k += put_str(buf + k, " int3_signal=");
	k += put_num(buf + k, child_status(3));
	k += put_str(buf + k, " int81_signal=");
	k += put_num(buf + k, child_status(0x81));
	buf[k++] = '\n';
	sys64(1, 1, (long)buf, k, 0);
	sys64(60, 0, 0, 0, 0);                                          /* exit(0) */
	for (;;) { }
}
"""
