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
 *                    The linker script refuses an image past 0x7c00 + 96 KiB and a .bss
 *                    past GUEST_PT_BASE.
 *   0x70000-0x75fff  long-mode page tables: PML4, PDPT, four page directories
 *   0x76000-0x76fff  AP start-up trampoline (SIPI vector 0x76, copied from ap_boot.S)
 *   0x77000-0x77fff  a 4 KiB page table for apic_fault_movs (splits the 2 MiB page at
 *                    NP_REGION; one of its pages is not present)
 *   0x78000-0x7ffff  64-bit stack of the boot CPU (top 0x80000)
 *   0x80000-0x8ffff  free
 *   0x90000-0x91fff  DMA source and destination pages of dma_protection (dma_tests.c)
 *   0x92000-0x92fff  page directory for 4-5 GiB (apic_base_anywhere, uncached)
 *   0x93000-0x9dfff  free; what follows up to the EBDA may be reserved in the E820 map
 *                    (the hypervisor's INT 15h hook, its restart page under apic=zeroexit)
 *   0x600000-0x601fff  pages the wprot_pages case has the hypapp protect
 *   0x680000         a RAM page apic_base_anywhere puts the APIC over
 * The APs' 64-bit stacks are in .bss (smp.c).
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
#define AP_TRAMPOLINE     0x76000u   /* SIPI vector AP_TRAMPOLINE >> 12 */
#define NP_PT_PAGE        0x77000u   /* 4 KiB page table of apic_fault_movs */
#define NP_REGION         0x00400000u /* the 2 MiB page it splits (4-6 MiB) */
#define NP_PAGE           (NP_REGION + 0x1000u)   /* its not-present 4 KiB page */

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

static inline uint64_t rdtsc(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
                     : "memory");
}

static inline uint64_t read_cr0(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr0, %0" : "=r"(v));
    return v;
}

static inline uint64_t read_cr4(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr4, %0" : "=r"(v));
    return v;
}

static inline void cpu_relax(void)
{
    __asm__ volatile("pause" ::: "memory");
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
extern uint16_t memsize_e801[4];    /* AX, BX, CX, DX after INT 15h AX=E801h */
extern uint16_t memsize_e801_flags; /* FLAGS after it (CF = bit 0) */
extern uint16_t memsize_88_ax;      /* AX after INT 15h AH=88h */
extern uint16_t memsize_88_flags;   /* FLAGS after it */
extern uint16_t e820_vga_flags;     /* FLAGS after E820h with ES:DI = A000:0000 */
extern uint16_t e820_alias_flags, e820_alias_done;  /* E820h through an aliased CS:IP */
extern uint32_t e820_alias_eax;
extern uint8_t e820_alias_rec[24];

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

#define VEC_DB  1
#define VEC_NMI 2
#define VEC_UD  6
#define VEC_GP  13
#define VEC_PF  14

void trap_init(void);
const char *trap_name(uint64_t vector);
/* Installs an interrupt gate for `vector` that enters `stub` (for later IRQ/IPI tests). */
void idt_set_gate(unsigned vector, void (*stub)(void));
/* A vector-specific hook, tried before the default handling (e.g. NMI tests). Returns
 * true when it handled the event (the stub resumes with the frame as the hook left it);
 * false to go on with the default handling of the frame, which the hook may have
 * changed (fakehv.c turns a #PF into a #GP(0) that way). */
typedef bool (*trap_hook_t)(struct trap_frame *f);
/* Lets CPL 3 reach `vector` by INT (gate DPL 3), or not any more. */
void idt_set_user(unsigned vector, bool user);
void trap_set_hook(unsigned vector, trap_hook_t hook);

/* The "expect fault" helper: between fault_expect() and fault_expect_end(), every
 * exception is counted, the first one recorded, and execution resumes at `recover`
 * (code written for that: the asm probes in probes.S). fault_expect_end() disarms and
 * returns the number of exceptions taken; *first (if not NULL) gets the first one. */
void fault_expect(const void *recover);
unsigned fault_expect_end(struct fault_info *first);

/* Unexpected exceptions during a test case abort that case (runner in main.c): the
 * handler writes its reason to this_cpu()->abort_msg and resumes here, which longjmps
 * to this_cpu()->abort_jb. */
void test_abort_trampoline(void) __attribute__((noreturn));

struct jump_buf { uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip; };
int guest_setjmp(struct jump_buf *jb) __attribute__((returns_twice));
void guest_longjmp(struct jump_buf *jb, int val) __attribute__((noreturn));

/* ---- probes.S + hypercall.c: VMCALL and memory probes ---------------------------- */
#define HC_HELLO         0x1ull
#define HC_RUNTIME_INFO  0x80000001ull
#define HC_STATS         0x80000002ull
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
/* Calls the code at addr (returning a value in RAX); all ones from probe_call_recover
 * when the call faulted (fault_expect). */
uint64_t probe_call(uint64_t addr);
void probe_call_recover(void);
/* OUTSB of the byte at src / REP INSB of count bytes to dst, at port: RSI / RCX after it
 * (from the recovery labels: at the fault). */
uint64_t probe_outsb(uint64_t port, uint64_t src);
void probe_outsb_insn(void), probe_outsb_recover(void);
uint64_t probe_rep_insb(uint64_t port, uint64_t dst, uint64_t count);
void probe_rep_insb_insn(void), probe_rep_insb_recover(void);
/* CPL 3 (user_hypercall): IRETQ to rip at CPL 3 with RDI = arg, never returning; the
 * user code that makes one hypercall with the struct hc_regs at RDI, then INT 0x81. */
void enter_user(uint64_t rip, uint64_t rsp, uint64_t arg) __attribute__((noreturn));
void user_vmcall(void), user_vmcall_insn(void);
void user_inb(void), user_inb_insn(void);   /* CPL 3: IN from 0xe0e0, then INT 0x81 */
/* MOVSL from src to dst; out[0], out[1] get RSI and RDI as they were after it (or, when
 * it faulted and fault_expect(probe_movs_recover) was armed, as the fault left them). */
void probe_movs(uint64_t src, uint64_t dst, uint64_t out[2]);
void probe_movs_insn(void), probe_movs_recover(void);
/* Sets RFLAGS.TF, reads the 32-bit value at addr (probe_tf_read_insn), then runs a few
 * more instructions from probe_tf_read_after on; returns the value read. The caller's
 * #DB handler must clear TF. */
uint32_t probe_tf_read(uint64_t addr);
void probe_tf_read_insn(void), probe_tf_read_after(void);
/* The same with RFLAGS.IF set over the read; the caller's RFLAGS come back after. */
uint32_t probe_tf_if_read(uint64_t addr);
void probe_tf_if_read_insn(void), probe_tf_if_read_after(void);

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

/* STATS (the hypervisor's per-CPU counters, for the CPU executing the VMCALL).
 * Selectors 0..64: VM exits with that basic exit reason; the others below. */
#define ST_EXIT_EXC_NMI   0ull
#define ST_EXIT_VMCALL    18ull
#define ST_EXIT_MTF       37ull
#define ST_EXIT_EPTV      48ull
#define ST_EXITS_TOTAL    0x100ull
#define ST_APIC_STEPS     0x200ull    /* APIC accesses single-stepped to completion */
#define ST_STEP_EXC       0x201ull    /* steps ended by an exception given to the guest */
#define ST_NMI_DEFERRED   0x202ull    /* NMIs held during a step and delivered after */
#define ST_ICR_WRITES     0x203ull
#define ST_INIT_SIPI      0x204ull
#define ST_APIC_MODE      0x2feull    /* 0: step (APIC writes trapped), 1: apic=zeroexit */
#define ST_INIT_RESTARTS  0x2fcull    /* CPUs restarted through INIT (INIT stays pending) */
enum hv_stat_result { HV_STAT_OK, HV_STAT_NATIVE, HV_STAT_ERROR };
/* HV_STAT_OK: *val is the counter. HV_STAT_NATIVE: VMCALL raised #UD (no hypervisor).
 * HV_STAT_ERROR: the hypervisor answered with RAX != 0 or VMCALL raised something else. */
enum hv_stat_result hv_stat(uint64_t selector, uint64_t *val);
/* True when the STATS hypercall answers on this CPU (probed once per call). */
bool hv_present(void);
/* True when the hypervisor runs with apic=zeroexit (STATS 0x2fe = 1): no APIC access is
 * intercepted, so the cases that check the trap are skipped (test_skip). */
bool hv_apic_zeroexit(void);

/* ---- test cases ------------------------------------------------------------------- */
struct test_result {
    char msg[192];      /* FAIL reason, optional detail of a PASS, or why it was skipped */
};

/* Formats the FAIL reason into r->msg and returns false, for `return test_fail(...)`. */
bool test_fail(struct test_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Formats an optional detail shown after a PASS and returns true. */
bool test_pass(struct test_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The case cannot run on this machine (too few CPUs, a missing feature): formats why,
 * marks it skipped (this_cpu()->case_skipped, read after run_case) and returns true. It
 * is reported "SKIP" and counted apart from the passes, so a run never claims a check it
 * did not make. test_pass and test_fail clear the mark (a sub-case's skip does not make
 * its enclosing case a skip). */
bool test_skip(struct test_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct guest_test {
    const char *name;
    bool (*run)(struct test_result *r);
};

bool t_boot_state(struct test_result *r);
bool t_e820_call(struct test_result *r);
bool t_e820_hides_hypervisor(struct test_result *r);
bool t_memsize_calls(struct test_result *r);
bool t_e820_hook_odd(struct test_result *r);
bool t_hello_hypercall(struct test_result *r);
bool t_unknown_hypercall(struct test_result *r);
bool t_hypervisor_write_blocked(struct test_result *r);
bool t_runtime_info(struct test_result *r);
bool t_dma_protection(struct test_result *r);
bool t_fault_recovery(struct test_result *r);
/* smp_tests.c: guest SMP and the xAPIC (see README.md) */
bool t_ap_startup(struct test_result *r);
bool t_ap_starts_ap(struct test_result *r);
bool t_ipi_all_pairs(struct test_result *r);
bool t_apic_access_loop(struct test_result *r);
bool t_nmi_storm(struct test_result *r);
bool t_apic_fault_movs(struct test_result *r);
bool t_apic_guest_tf(struct test_result *r);
bool t_apic_relocate(struct test_result *r);
bool t_ap_restart(struct test_result *r);
bool t_x2apic_mode(struct test_result *r);
/* hypapp_tests.c: the hypapps other than helloworld (see README.md) */
bool t_wprot_pages(struct test_result *r);
bool t_wprot_apic_off(struct test_result *r);
bool t_iomon_ports(struct test_result *r);
bool t_user_hypercall(struct test_result *r);
/* capture_tests.c: attacks on the capture of xAPIC writes */
bool t_apic_movs_registers(struct test_result *r);
bool t_apic_rep_iteration(struct test_result *r);
bool t_apic_event_push(struct test_result *r);
bool t_apic_write_straddle(struct test_result *r);
bool t_apic_base_anywhere(struct test_result *r);
/* WRMSR that may fault: the number of exceptions it raised, the first in *f. */
unsigned wrmsr_faults(uint32_t msr, uint64_t val, struct fault_info *f);
/* init_tests.c: INIT/SIPI as the hardware defines them, debug state across exits */
bool t_init_self(struct test_result *r);
bool t_init_state(struct test_result *r);
bool t_init_starting(struct test_result *r);
bool t_init_cross(struct test_result *r);
bool t_init_physical(struct test_result *r);
bool t_init_bsp(struct test_result *r);
bool t_init_restart_refused(struct test_result *r);
bool t_debug_dr7_exit(struct test_result *r);
bool t_nmi_while_blocked(struct test_result *r);
bool t_debug_rf_emulated(struct test_result *r);
bool t_debug_apic_breakpoint(struct test_result *r);
bool t_debug_apic_tf(struct test_result *r);
bool t_apic_step_interrupts(struct test_result *r);
/* msr_tests.c */
bool t_virt_hidden(struct test_result *r);
bool t_mtrr_writes(struct test_result *r);
bool t_cr0_writes(struct test_result *r);
/* task_tests.c + pm32.S */
bool t_task_switches(struct test_result *r);
void print_hv_stats(void);

/* ---- apic.c: the local APIC in xAPIC mode (SDM Vol. 3A, chapter 11) --------------- */
#define MSR_APIC_BASE      0x1bu
#define APIC_BASE_BSP      (1ull << 8)
#define APIC_BASE_EXTD     (1ull << 10)     /* x2APIC mode */
#define APIC_BASE_ENABLE   (1ull << 11)
#define APIC_BASE_ADDR     0x000ffffffffff000ull
#define APIC_DEFAULT_BASE  0xfee00000ull

#define APIC_ID      0x020
#define APIC_VERSION 0x030
#define APIC_TPR     0x080
#define APIC_EOI     0x0b0
#define APIC_SVR     0x0f0
#define APIC_ICR_LO  0x300
#define APIC_ICR_HI  0x310

/* ICR low (SDM 11.6.1 "Interrupt Command Register") */
#define ICR_FIXED        (0u << 8)
#define ICR_NMI          (4u << 8)
#define ICR_INIT         (5u << 8)
#define ICR_STARTUP      (6u << 8)
#define ICR_BUSY         (1u << 12)      /* delivery status: send pending */
#define ICR_ASSERT       (1u << 14)
#define ICR_LEVEL        (1u << 15)
#define ICR_SELF         (1u << 18)      /* destination shorthand 01: self */

#define VEC_SPURIOUS     0xff

/* x2APIC mode (SDM 11.12): the registers are MSRs 0x800 + (xAPIC offset >> 4). */
#define CPUID1_ECX_X2APIC (1u << 21)
#define X2APIC_ID        0x802u
#define X2APIC_VERSION   0x803u
#define X2APIC_TPR       0x808u
#define X2APIC_EOI       0x80bu
#define X2APIC_SVR       0x80fu
#define X2APIC_ICR       0x830u     /* 64 bits: destination in 63:32 */

/* The APIC base of the calling CPU: this_cpu()->apic_base, read from IA32_APIC_BASE
 * when the CPU comes up and kept in step by whoever writes the MSR (apic_relocate), so
 * that an APIC access costs no RDMSR. */
static inline uint64_t apic_base(void);
static inline uint32_t apic_read(uint32_t reg)
{
    return *(volatile uint32_t *)(uintptr_t)(apic_base() + reg);
}
static inline void apic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)(apic_base() + reg) = v;
}
static inline uint32_t mmio_read32(uint64_t addr)
{
    return *(volatile uint32_t *)(uintptr_t)addr;
}
static inline void mmio_write32(uint64_t addr, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)addr = v;
}
/* Software-enables the calling CPU's APIC (SVR) with TPR 0. */
void apic_sw_enable(void);
/* Writes ICR (high, then low) and waits, bounded, until delivery status is idle.
 * Returns false when it stayed busy. */
bool apic_send_ipi(uint32_t dest_apic_id, uint32_t icr_lo);
/* The same from a CPU in x2APIC mode: one WRMSR of the ICR (MSR 0x830); always true. */
bool x2apic_send_ipi(uint32_t dest_x2apic_id, uint32_t icr_lo);
typedef bool (*ipi_send_fn)(uint32_t dest, uint32_t icr_lo);
/* Masks both 8259 PICs (after moving their vectors to 0x20-0x2f). */
void pic_disable(void);
/* Busy-waits `ticks` TSC ticks. */
void delay_ticks(uint64_t ticks);

/* Time in TSC ticks. Bochs (clock: sync=none) advances the TSC by one per instruction,
 * so the delays are generous instruction counts, and every wait has a timeout in the
 * same unit. Under a hypervisor the TSC runs on during VM exits. Where the TSC runs in
 * real time instead (QEMU, hardware: GHz), those counts would be milliseconds, so each
 * is multiplied by tick_scale: 1 unless the TSC runs faster than 25 ticks per PIT
 * microsecond, else TSC ticks per 10 ms / 250000 (tick_scale_init(), once, BSP). */
extern uint64_t tick_scale;
void tick_scale_init(void);
#define TICKS_10MS       (1000000ull * tick_scale)  /* >= 10 ms at up to 100 MHz */
#define TICKS_200US      (20000ull * tick_scale)
#define TIMEOUT_ICR      (2000000ull * tick_scale)  /* delivery status busy: give up */

/* ---- acpi.c: the CPUs from the ACPI MADT ------------------------------------------ */
#define MAX_CPUS 16
/* Finds the RSDP, the RSDT/XSDT and the MADT ("APIC"), and stores the APIC IDs of its
 * enabled Processor Local APIC and x2APIC entries (types 0 and 9), at most max of them.
 * Returns the count of all of them (which may exceed max), or -1 with a reason in why. */
int madt_cpu_ids(uint32_t *ids, unsigned max, char *why, size_t why_size);
/* True when SMBIOS's System Information names this manufacturer (e.g. "QEMU"). */
bool smbios_manufacturer_is(const char *want);
/* True when the ACPI RSDP's OEM ID is these 6 characters (e.g. "BOCHS "). */
bool acpi_oem_is(const char *oem6);
int acpi_count_tables(const char *sig);

/* ---- smp.c: per-CPU data, AP start-up, work on other CPUs ------------------------- */
/* The local APIC as an AP found it on entering ap_main, before it enabled it
 * (init_state): SVR, TPR, LVT timer, timer initial count, LVT LINT0, IRR and ISR. */
struct apic_snap {
    uint32_t svr, tpr, lvt_timer, timer_init, lint0, ldr, dfr;
    uint32_t irr[8], isr[8];
};
enum cpu_state { CPU_OFFLINE, CPU_ONLINE, CPU_LOST };

struct cpu {
    struct cpu *self;               /* must stay first: this_cpu() reads %gs:0 */
    unsigned idx;                   /* 0 = BSP, then MADT order */
    uint32_t apic_id;               /* from the MADT (the BSP: its APIC ID register) */
    volatile uint32_t state;        /* enum cpu_state */
    uint64_t stack_top;
    uint64_t apic_base;             /* IA32_APIC_BASE & APIC_BASE_ADDR, see apic_base() */

    /* traps.c */
    unsigned trap_depth;
    struct {
        volatile bool armed;
        uintptr_t recover;
        unsigned count;
        struct fault_info first;
    } expect;
    bool test_running;
    bool case_skipped;              /* the case that just ended called test_skip */
    char *abort_msg;
    size_t abort_msg_size;
    struct jump_buf abort_jb;

    /* smp.c: one piece of work at a time, from the BSP (or another CPU) */
    bool (*volatile work)(struct test_result *r);
    volatile uint32_t work_seq, done_seq;
    volatile bool work_ok;
    struct test_result work_result;
    volatile uint64_t heartbeat;    /* +1 per idle poll of an AP (ap_main) */

    /* scratch for the cases (smp_tests.c), reset by each case */
    volatile uint32_t irq_count[MAX_CPUS];  /* fixed IPIs received per sender index */
    volatile uint32_t irq_other;            /* other vectors of the IPI range */
    volatile uint32_t nmi_count;
    volatile uint32_t db_count;
    volatile uint64_t db_rip, db_dr6;
    uint64_t stats[4];                      /* print_hv_stats */
    bool stats_ok;
    struct apic_snap apic_at_start;         /* init_state */
};

extern struct cpu cpus[MAX_CPUS];
extern unsigned ncpus;              /* CPUs in the MADT (1 when it could not be read),
                                       at most MAX_CPUS: the guest uses the first ones */
extern unsigned madt_total;         /* all enabled CPUs the MADT lists */
extern bool madt_ok;
extern bool cpu_is_amd;             /* CPUID vendor AuthenticAMD (smp_init) */
extern char madt_why[96];

static inline struct cpu *this_cpu(void)
{
    struct cpu *c;
    __asm__ volatile("movq %%gs:0, %0" : "=r"(c));
    return c;
}

static inline uint64_t apic_base(void)
{
    return this_cpu()->apic_base;
}

/* The BSP's part of the per-CPU set-up (GS base -> cpus[0]); before anything else. */
void percpu_init_bsp(void);
/* Reads the MADT into cpus[] (the BSP first) and copies the AP trampoline. */
void smp_init(void);
/* Sends INIT-SIPI-SIPI to t from the calling CPU (any CPU) and waits, bounded, for t to
 * come online. False with a reason in why on failure. */
bool smp_start_ap(struct cpu *t, char *why, size_t why_size);
/* Its second half: STARTUP, 200 us, STARTUP to t (in wait-for-SIPI after an INIT the
 * caller sent), then the bounded wait; t must be CPU_OFFLINE. On a timeout t is parked
 * with INIT and becomes CPU_LOST. */
bool smp_sipi_wait(struct cpu *t, char *why, size_t why_size);
/* The same with the IPIs sent by `send` (apic_send_ipi or x2apic_send_ipi). */
bool smp_sipi_wait_via(struct cpu *t, ipi_send_fn send, char *why, size_t why_size);
/* ap_boot.S: words in the trampoline that each AP entering it writes (in the copy at
 * AP_TRAMPOLINE: read at AP_TRAMPOLINE + (symbol - ap_tramp_start)). */
extern const uint8_t ap_tramp_start[], ap_tramp_seen_cs[], ap_tramp_seen_msw[],
                     ap_tramp_entries[], ap_tramp_seen_edx[], ap_tramp_seen_cr0[],
                     ap_tramp_seen_idtr[], ap_tramp_seen_dr0[], ap_tramp_seen_dr6[],
                     ap_tramp_seen_dr7[];
/* The trampoline's copy of one of those symbols (AP_TRAMPOLINE + offset). */
static inline volatile void *tramp_ptr(const uint8_t *sym)
{
    return (volatile void *)(uintptr_t)(AP_TRAMPOLINE + (uintptr_t)(sym - ap_tramp_start));
}
/* init_tests.c: the BSP comes back here after an INIT restarted it at the reset vector
 * (ap_main on the BSP's APIC ID; see t_init_bsp). */
void bsp_resumed(void) __attribute__((noreturn));
void apic_snapshot(struct apic_snap *s);
/* smp.c's permanent NMI hook: counts this_cpu()->nmi_count. */
bool nmi_count_hook(struct trap_frame *f);
/* GS base -> c, c->apic_base from IA32_APIC_BASE (smp.c). */
void percpu_setup(struct cpu *c);
/* Stack tops by APIC ID for the trampoline (smp.c). */
extern uint64_t ap_stack_by_id[256];
/* APs that reported in: their APIC IDs as read from their own APIC ID register. */
extern volatile uint32_t ap_report_count;
extern volatile uint32_t ap_reports[64];
/* Work: cpu_post() hands fn to an online AP; cpu_wait() waits for its verdict (a CPU that
 * does not answer in time becomes CPU_LOST and is not used again). */
bool cpu_post(struct cpu *c, bool (*fn)(struct test_result *r));
bool cpu_wait(struct cpu *c, uint64_t timeout, struct test_result *r);
/* Runs fn on every online CPU at once (the BSP included) and combines the verdicts:
 * the first failure as "cpu N: why". A PASS also needs every MADT CPU online. */
bool run_on_all(bool (*fn)(struct test_result *r), uint64_t timeout, struct test_result *r);
/* Runs fn on one CPU (the BSP: directly) and waits for its verdict. */
bool run_on(struct cpu *c, bool (*fn)(struct test_result *r), uint64_t timeout,
            struct test_result *r);
unsigned cpus_online(void);

/* ---- bench.c: the benchmark build (make bench, -DGUEST_BENCH) -------------------- */
void bench_main(void) __attribute__((noreturn));

/* ---- fakehv.c: a stand-in hypervisor for the Bochs self-test (make bochs-fakehv) -- */
void fakehv_install(void);

/* ---- main.c ----------------------------------------------------------------------- */
/* Runs one case with abort-on-unexpected-fault; may be nested (a case running a
 * sub-case). Returns the case's verdict; r->msg holds its reason or detail. */
bool run_case(const struct guest_test *t, struct test_result *r);
void guest_main(void) __attribute__((noreturn));
void guest_shutdown(void) __attribute__((noreturn));

#endif
