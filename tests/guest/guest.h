/* The test guest: declarations shared by its C files.
 *
 * The guest is a tiny bare-metal program. The hypervisor copies guest.bin to physical
 * 0x7c00 and starts it in real mode at 0000:7c00 with DL = boot drive, like a BIOS boots
 * a boot sector. entry.S records the boot state, reads the BIOS E820 map, and switches
 * to 64-bit long mode; guest_main() in main.c then runs the test table.
 *
 * Memory map (physical = virtual; identity-mapped 0..4 GiB with 2 MiB pages):
 *   0x00000-0x004ff  real-mode IVT and BIOS data area (left alone)
 *   0x00500-0x07bff  real-mode stack (SS:SP = 0000:7c00, grows down)
 *   0x07c00-...      guest.bin: entry code, real-mode data (must stay below 0x10000 so
 *                    real mode reaches it with DS = 0), C code, data, then .bss.
 *                    The linker script refuses an image past 0x7c00 + 60 KiB and a .bss
 *                    past GUEST_PT_BASE.
 *   0x70000-0x75fff  long-mode page tables: PML4, PDPT, four page directories
 *   0x76000-0x77fff  reserved for later use (AP start-up trampoline)
 *   0x78000-0x7ffff  64-bit stack of the boot CPU (top 0x80000)
 *   0x80000-0x9efff  free (per-AP stacks in later tests); the EBDA follows
 */
#ifndef GUEST_H
#define GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- fixed addresses (also used by entry.S; keep in step) ------------------------- */
#define GUEST_PT_BASE     0x70000u   /* PML4; PDPT at +0x1000; PDs at +0x2000..+0x5fff */
#define GUEST_STACK_TOP   0x80000u

/* ---- segment selectors of the guest's GDT (entry.S) ------------------------------- */
#define SEL_CODE32 0x08
#define SEL_DATA   0x10
#define SEL_CODE64 0x18

/* ---- small helpers ---------------------------------------------------------------- */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

static inline uint64_t read_cr2(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}

/* ---- lib.c ------------------------------------------------------------------------ */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* ---- console.c: COM1 output and a small printf ------------------------------------ */
/* Supported: %d %i %u %x %X %p %s %c %%, flags '0' and '-', a field width, and the
 * length modifiers l, ll, z. */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void serial_init(void);
/* Waits (bounded) until the UART has sent everything, e.g. before a shutdown. */
void serial_flush(void);
/* Prints one formatted chunk; callers print whole lines ending in "\n". */
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- data recorded by the real-mode entry (entry.S) ------------------------------- */
#define E820_RAM       1u
#define E820_SMAP      0x534d4150u  /* 'SMAP' */
#define E820_MAX_SEEN  64u

/* One slot of the buffer handed to INT 15h/E820. The call is asked for 24 bytes (the
 * ACPI 3.0 size); only the first 20 (base, length, type) are used, as Linux does. */
struct e820_slot {
    uint64_t base;
    uint64_t length;
    uint32_t type;
    uint32_t ext_attr;
};
_Static_assert(sizeof(struct e820_slot) == 24, "E820 slot layout");

/* e820_flags bits */
#define E820F_CF_FIRST   0x1u   /* the very first call returned CF set: no E820 support */
#define E820F_BAD_SIG    0x2u   /* some call returned EAX != 'SMAP' */
#define E820F_TRUNCATED  0x4u   /* more than E820_MAX_SEEN entries; the rest was not read */

extern uint16_t boot_entry_cs;      /* CS at the first instruction */
extern uint16_t boot_entry_ip;      /* IP of the first instruction */
extern uint8_t  boot_entry_dl;      /* DL at entry (boot drive) */
extern uint8_t  boot_a20_ok;        /* 1 when A20 was found (or made) enabled */
extern uint32_t boot_entry_eflags;  /* EFLAGS at entry */
extern uint32_t e820_count;         /* entries stored in e820_map */
extern uint32_t e820_flags;         /* E820F_* */
extern uint32_t e820_first_eax;     /* EAX returned by the first call */
extern uint8_t  e820_len[E820_MAX_SEEN];          /* ECX returned for each entry */
extern struct e820_slot e820_map[E820_MAX_SEEN];

/* ---- traps.c: IDT, exception recording, expected faults --------------------------- */
/* What the CPU and the stubs in trap_entry.S leave on the stack; the C handler may change
 * rip (and anything else) before the stub returns with IRETQ. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss;
};
_Static_assert(sizeof(struct trap_frame) == 22 * 8, "trap frame layout (trap_entry.S)");

struct fault_info {
    uint64_t vector;
    uint64_t error;     /* 0 for vectors without an error code */
    uint64_t rip;
    uint64_t cr2;
};

#define VEC_UD 6
#define VEC_GP 13
#define VEC_PF 14

void trap_init(void);
const char *trap_name(uint64_t vector);
/* Installs an interrupt gate for `vector` that enters `stub` (for later IRQ/IPI tests). */
void idt_set_gate(unsigned vector, void (*stub)(void));
/* A vector-specific hook, tried before the default handling (e.g. NMI tests). Returns
 * true when it handled the event (the stub resumes with the frame as the hook left it);
 * false to go on with the default handling of the frame, which the hook may have
 * changed (fakehv.c turns a #PF into a #GP(0) that way). */
typedef bool (*trap_hook_t)(struct trap_frame *f);
void trap_set_hook(unsigned vector, trap_hook_t hook);

/* The "expect fault" helper: between fault_expect() and fault_expect_end(), every
 * exception is counted, the first one recorded, and execution resumes at `recover`
 * (code written for that: the asm probes in probes.S). fault_expect_end() disarms and
 * returns the number of exceptions taken; *first (if not NULL) gets the first one. */
void fault_expect(const void *recover);
unsigned fault_expect_end(struct fault_info *first);

/* Unexpected exceptions during a test case abort that case (runner in main.c). */
extern bool test_running;
extern char *test_abort_msg;         /* where the trap handler writes its reason */
extern size_t test_abort_msg_size;
void test_abort_trampoline(void);    /* trap_entry.S: longjmp back to the runner */

struct jump_buf { uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip; };
int guest_setjmp(struct jump_buf *jb) __attribute__((returns_twice));
void guest_longjmp(struct jump_buf *jb, int val) __attribute__((noreturn));
extern struct jump_buf test_abort_jb;

/* ---- probes.S + hypercall.c: VMCALL and memory probes ---------------------------- */
#define HC_HELLO         0x1ull
#define HC_RUNTIME_INFO  0x80000001ull
#define HC_STATUS_UNKNOWN 0xffffffffffffffffull
#define HC_HELLO_MAGIC   0x46484d58ull          /* "XMHF" */

/* Every general-purpose register except RSP, loaded before VMCALL and stored after. */
struct hc_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
};
_Static_assert(sizeof(struct hc_regs) == 15 * 8, "hc_regs layout (probes.S)");

/* Raw pieces from probes.S; use the wrappers below. */
int hc_vmcall(struct hc_regs *r);
void hc_vmcall_insn(void), hc_vmcall_recover(void);
void probe_write64(uint64_t addr, uint64_t val);
void probe_write64_insn(void), probe_write64_recover(void);
uint64_t probe_read64(uint64_t addr);
void probe_read64_insn(void), probe_read64_recover(void);
void probe_ud2(void), probe_ud2_insn(void);

/* Fills every register of *r not set by the caller with a known pattern (so that the
 * preservation of the other registers can be checked), then runs VMCALL. Returns true
 * when VMCALL completed; false when it faulted (*f describes the fault). */
void hc_fill_patterns(struct hc_regs *r);
bool hypercall(struct hc_regs *r, struct fault_info *f);
/* Names the first register other than RAX..RDX whose value differs from the pattern
 * hc_fill_patterns() put there, or NULL if all are preserved. */
const char *hc_clobbered(const struct hc_regs *r);
/* Fault counts of a 64-bit write/read at addr (0 = the access completed). */
unsigned mem_write64_faults(uint64_t addr, uint64_t val, struct fault_info *f);
unsigned mem_read64_faults(uint64_t addr, uint64_t *val, struct fault_info *f);

/* RUNTIME_INFO, when the hypervisor answers it. */
struct runtime_info { uint64_t base, size, cpus; };
bool get_runtime_info(struct runtime_info *ri, char *why, size_t why_size);

/* ---- test cases ------------------------------------------------------------------- */
struct test_result {
    char msg[192];      /* FAIL reason, or optional detail of a PASS */
};

/* Formats the FAIL reason into r->msg and returns false, for `return test_fail(...)`. */
bool test_fail(struct test_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Formats an optional detail shown after a PASS and returns true. */
bool test_pass(struct test_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct guest_test {
    const char *name;
    bool (*run)(struct test_result *r);
};

bool t_boot_state(struct test_result *r);
bool t_e820_call(struct test_result *r);
bool t_e820_hides_hypervisor(struct test_result *r);
bool t_hello_hypercall(struct test_result *r);
bool t_unknown_hypercall(struct test_result *r);
bool t_hypervisor_write_blocked(struct test_result *r);
bool t_runtime_info(struct test_result *r);
bool t_fault_recovery(struct test_result *r);

/* ---- fakehv.c: a stand-in hypervisor for the Bochs self-test (make bochs-fakehv) -- */
void fakehv_install(void);

/* ---- main.c ----------------------------------------------------------------------- */
/* Runs one case with abort-on-unexpected-fault; may be nested (a case running a
 * sub-case). Returns the case's verdict; r->msg holds its reason or detail. */
bool run_case(const struct guest_test *t, struct test_result *r);
void guest_main(void) __attribute__((noreturn));
void guest_shutdown(void) __attribute__((noreturn));

#endif
