/* The runtime's common definitions: per-CPU state, guest register frame, console,
 * locks, page allocator, and the interface each architecture half (vmx/, svm/)
 * provides to the common code. */
#ifndef XMHF_H
#define XMHF_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "bootparams.h"
#include "version.h"
#include "x86.h"

/* Logical processors the hypervisor runs: today's large servers (256 and more, x2APIC
 * IDs above 254 included). More are held (smp.c), never left to run guest code. */
#define MAX_CPUS 1024u
#define PCPU_STACK_SIZE 0x4000u
#define EXC_STACK_SIZE 0x1000u

#define __noreturn __attribute__((noreturn))
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t)(a) - 1))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Guest general-purpose registers, indexed as the SDM numbers them in exit
 * qualifications (table 27-3): 0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI,
 * 8-15 R8-R15. The exit stub saves them in this order; r[4] is not saved by the stub
 * (RSP lives in the VMCS/VMCB). */
enum { R_AX, R_CX, R_DX, R_BX, R_SP, R_BP, R_SI, R_DI, R_8, R_9, R_10, R_11, R_12, R_13, R_14, R_15 };
struct gregs {
    uint64_t r[16];
};

/* A named lock: a ticket-free test-and-set spinlock; enough for the few short
 * critical sections the runtime has (console, shared nested page table). */
struct spinlock {
    volatile uint32_t held;
    const char *name;
};
#define SPINLOCK_INIT(n) { 0, n }
void spin_lock(struct spinlock *l);
void spin_unlock(struct spinlock *l);

/* Exit accounting, readable by the guest later through a hypercall. */
#define EXIT_STAT_SLOTS 72u

enum pcpu_state { PCPU_OFFLINE = 0, PCPU_STARTED, PCPU_VMX_ON, PCPU_FAILED };

/* A guest CPU's life as the guest sees it (SDM Vol. 3A 9.4 "Multiple-Processor
 * Initialization"): an AP waits for INIT, then for a STARTUP IPI, then runs. STARTING:
 * a STARTUP was accepted, the CPU has not entered its guest yet (an INIT now puts it
 * back into WAIT_SIPI). INIT_PENDING: an INIT was sent to the running CPU, which takes
 * it before its next guest entry (smpguest.c); only the sender that moved it there
 * sets init_request, so no INIT is taken twice or left behind. */
enum guest_cpu_state { GUEST_CPU_RESET = 0, GUEST_CPU_WAIT_SIPI, GUEST_CPU_STARTING,
                       GUEST_CPU_RUNNING, GUEST_CPU_INIT_PENDING };

/* Per-CPU accounting beyond exit reasons, readable through the STATS hypercall
 * (selector 0x200 + index). */
enum {
    STAT_STEPS_DONE,        /* APIC accesses single-stepped to completion */
    STAT_STEPS_FAULTED,     /* steps ended by an exception delivered to the guest */
    STAT_NMIS_DELIVERED,    /* NMIs held (step or host) and delivered afterwards */
    STAT_ICR_CAPTURED,      /* ICR writes captured */
    STAT_INIT_SIPI,         /* INIT/STARTUP IPIs handled virtually */
    STAT_STEPS_CANCELLED,   /* steps undone before the instruction ran (interrupt first) */
    STAT_PHYS_INIT,         /* physical INIT signals taken as this CPU's INIT */
    STAT_APIC_UNDEFINED,    /* instructions whose APIC-page writes SDM 11.4.1 leaves undefined */
    STAT_COUNT
};

struct pcpu {
    struct pcpu *self;          /* first: %gs:0 finds the structure from any host context */
    uint64_t launch_rsp;        /* %gs:8: host RSP across a failing VMLAUNCH (vmx-entry.S) */
    volatile uint64_t nmi_host; /* %gs:16: NMIs taken in host context, not yet the guest's */
    uint32_t idx;               /* 0 .. ncpus-1, the BSP is 0 */
    uint32_t apic_id;
    volatile uint32_t state;
    bool is_bsp;
    uint64_t stack_top;
    /* Host descriptor tables: one GDT and TSS per CPU so each has its own IST stacks. */
    uint64_t gdt[8];
    struct tss64 tss;
    /* A fault expected by the code that armed it (safe MSR access, XSETBV): the
     * exception handler resumes at fixup_rip and records the vector. */
    uint64_t fixup_rip;
    volatile int fixup_vector;
    /* Guest SMP (smpguest.c): the guest's view of this CPU's APIC and start state. */
    uint32_t apic_ldr, apic_dfr;    /* last values the guest wrote (destination decoding) */
    volatile uint32_t guest_state;  /* enum guest_cpu_state */
    volatile uint32_t sipi_vector;
    volatile uint32_t init_request;  /* an INIT for this running guest CPU (INIT_PENDING) */
    bool reset_state;               /* the next launch enters with the state INIT leaves */
    bool apic_reset_owed;           /* apic=zeroexit: lapic_init_reset due at the SIPI exit */
    uint64_t guest_cr0_keep;        /* CR0.CD/NW as the guest had them at its INIT */
    uint64_t nmi_pending;           /* NMIs owed to the guest, delivered one at a time */
    uint64_t stats[STAT_COUNT];     /* step and IPI accounting (STATS hypercall) */
    /* VMX or SVM per-CPU pages, owned by the architecture half. */
    void *arch_page[4];
    uint64_t arch_page_pa[4];
    uint64_t exits[EXIT_STAT_SLOTS];
    uint64_t exits_total;
    /* Nested-paging TLB flushes for hypapps (guestmem.c): the newest request this CPU
     * has flushed for, and an NMI sent to make it exit that is not the guest's. */
    volatile uint64_t tlb_gen_done;
    volatile uint32_t flush_kicks;
    volatile uint32_t held;         /* waiting at its VM entry while another CPU restarts */
    volatile bool apic_off;         /* the guest's IA32_APIC_BASE.EN is 0: no IPI reaches it */
    struct guest_msrs *gmsr;        /* the guest's MTRRs and hidden MSRs (guestmsr.c) */
};

/* Per-CPU state, allocated by the BSP once it knows the processor count. */
_Static_assert(offsetof(struct pcpu, launch_rsp) == 8, "vmx-entry.S uses %gs:8");
_Static_assert(offsetof(struct pcpu, nmi_host) == 16, "vmx-entry.S uses %gs:16");

extern struct pcpu *g_pcpu[MAX_CPUS];
extern uint32_t g_ncpus;
extern struct bootparams *g_bp;
/* Set by the BSP once the guest's memory map is complete, just before its guest starts
 * (apic=zeroexit: the APs enter their guests in wait-for-SIPI then). */
extern volatile bool g_guest_go;
/* The MADT listed processors beyond MAX_CPUS, which the hypervisor did not start. */
extern bool g_cpus_left_off;
/* apic=zeroexit (README "APIC modes"): no APIC access is intercepted; the guest's INIT
 * and STARTUP reach each CPU as INIT and SIPI VM exits. Intel only. */
static inline bool apic_zeroexit(void)
{
    return g_bp->opts.apic_mode == XMHF_APIC_ZEROEXIT;
}

static inline struct pcpu *this_pcpu(void)
{
    struct pcpu *p;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(p));
    return p;
}

/* Console: debug serial, whole lines under the console lock. */
void console_init(uint16_t port, uint32_t baud);
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vsnprintk(char *buf, size_t n, const char *fmt, va_list ap);
/* Prints "xmhf: FATAL: ..." and halts this CPU; the test bench stops on that line. */
void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);

/* Physical <-> virtual: all physical memory below 4 GiB is identity mapped; the
 * runtime's region is also mapped at RUNTIME_VBASE. */
#define PHYS_LIMIT 0x100000000ull
static inline void *phys_to_virt(uint64_t pa) { return (void *)(uintptr_t)pa; }
uint64_t virt_to_phys(const void *va);

/* 4 KiB pages from the heap in the reserved region, zeroed; panics when exhausted
 * (the region is sized by init, so that is a configuration error worth a clear stop). */
void *page_alloc(uint64_t *pa);
void *pages_alloc(unsigned n, uint64_t *pa);  /* n contiguous pages */
/* A page for what the guest's actions grow: NULL, not a panic, near the end of the heap. */
void *page_alloc_guest(uint64_t *pa);
uint64_t heap_pages_free(void);

/* Exceptions in host context. */
void idt_init(void);
void cpu_tables_load(struct pcpu *c);
uint64_t rdmsr_safe(struct pcpu *c, uint32_t msr, int *fault);
int wrmsr_safe(struct pcpu *c, uint32_t msr, uint64_t v);
int xsetbv_safe(struct pcpu *c, uint32_t idx, uint64_t v);

/* Guest memory access by the hypervisor: refuses the hypervisor's own region and
 * anything not identity mapped. Returns 0 or -1. */
int guest_phys_read(uint64_t gpa, void *buf, size_t n);
int guest_phys_write(uint64_t gpa, const void *buf, size_t n);
/* A locked OR of bits into the naturally aligned size-byte (4 or 8) word at gpa, as the
 * processor updates a guest paging entry's A/D flags. */
int guest_phys_or(uint64_t gpa, unsigned size, uint64_t bits);
/* MAXPHYADDR (CPUID 80000008h, 36 without that leaf): guestmsr.c. */
unsigned cpu_phys_bits(void);
bool gpa_in_hypervisor(uint64_t gpa, uint64_t len);

/* ACPI (acpi.c): a table by signature through the XSDT/RSDT, or NULL; hiding one from
 * the guest (removed from both root tables, renamed; returns the pointers removed). */
struct acpi_header;
struct acpi_header *acpi_find_table(const char *sig);
unsigned acpi_hide_table(struct acpi_header *t, const char newsig[4]);

/* SMP bring-up of the hypervisor's own processors (smp.c). */
void smp_start_aps(void);
void smp_tramp_install(uint64_t pa, struct pcpu *c, void (*entry)(struct pcpu *));
int smp_irq_unsafe_source(void);
int pci_msi_unsafe(void);
uint32_t lapic_id(void);

/* INT 15h E820 hook (e820hook.c): installed before the first guest instruction. */
void e820_hook_install(void);
/* apic=zeroexit: the hypervisor's page below 1 MiB for restarting a CPU (0: none). */
extern uint64_t g_restart_page;
/* CPUs restarted through INIT so far (restart-x86vmx.c; STATS 0x2fc). */
extern volatile uint64_t g_init_restarts;
bool e820_hook_is_stub(uint64_t linear_rip);
/* Emulates the BIOS call for the guest whose registers are in v; returns where the guest
 * resumes, as an offset from the stub's start: 3 (its IRET) or 4 (its far jump to the
 * original handler). */
struct vcpu;
uint64_t e820_hook_call(struct vcpu *v);

/* Guest-visible memory map (firmware map, hypervisor region and hook reserved). */
extern struct e820_map g_guest_e820;
/* [gpa, gpa + n) lies in RAM of that map (e820hook.c). */
bool guest_ram_range(uint64_t gpa, uint64_t n);

/* The view of one guest CPU that common code (hypercalls, E820 hook, hypapps) uses;
 * the architecture half fills it at each exit and writes back what changed. */
struct vcpu {
    struct pcpu *cpu;
    struct gregs *regs;
};

/* Benchmark builds (make EXITLOG=N): every N exits, a CPU prints its exit counters
 * (exitlog.c); otherwise nothing. Called by both exit handlers after counting. */
void exit_log_print(struct pcpu *c);
static inline void exit_log(struct pcpu *c)
{
#ifdef XMHF_EXIT_LOG
    if (c->exits_total % XMHF_EXIT_LOG == 0)
        exit_log_print(c);
#else
    (void)c;
#endif
}

/* Implemented by the architecture half (vmx/ or svm/). */
extern const char *const arch_name;          /* "VMX" / "SVM" for the boot log */
extern const uint8_t arch_hypercall_insn[3]; /* VMCALL / VMMCALL: the E820 stub's trap */
bool arch_guest_event_pending(struct vcpu *v);  /* an event is set up for injection */
/* Only writes near the ICR exit on this CPU (EPT sub-page write permissions). */
bool arch_apic_subpage_writes(struct pcpu *c);
/* A #DB in the host that an emulator left over from the guest (svm-x86svm.c); asked
 * before the handler touches per-CPU state. */
bool arch_host_db_is_stale(uint64_t rip);
int arch_cpu_init(struct pcpu *c);           /* capability checks, VMXON/EFER.SVME; 0 ok */
void arch_nested_paging_init(void);          /* BSP: build the guest-physical map */
__noreturn void arch_launch_bsp_guest(struct pcpu *c);
__noreturn void arch_park_ap(struct pcpu *c);
uint64_t arch_guest_rip(struct vcpu *v);
void arch_guest_set_rip(struct vcpu *v, uint64_t rip);
uint64_t arch_guest_seg_base(struct vcpu *v, int seg); /* SEG_ES .. SEG_GS */
uint64_t arch_guest_rsp(struct vcpu *v);
unsigned arch_guest_cpl(struct vcpu *v);
void arch_guest_inject_exception(struct vcpu *v, unsigned vector, bool has_err, uint32_t err);
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS };

/* Guest SMP policy (smpguest.c), shared by the VMX and SVM halves. */
struct icr_cmd;
/* A captured ICR write: INIT/STARTUP handled virtually, everything else forwarded to
 * the physical APIC. raw = x2APIC layout (destination in bits 63:32) when x2apic,
 * else ICR_HI << 32 | ICR_LO. */
void smpg_icr_write(struct vcpu *v, uint64_t raw, bool x2apic);
/* An AP waits here, halted, until the guest starts it; returns the STARTUP vector. */
uint32_t smpg_ap_wait_for_sipi(struct pcpu *c);
/* The arch half calls this before every guest entry when c->init_request is set, after
 * undoing any step: the guest CPU goes back to wait-for-SIPI in the hypervisor, on a
 * fresh stack, and restarts at the next STARTUP (arch_launch_ap_guest); the BSP
 * (IA32_APIC_BASE.BSP) restarts at the reset vector at once (arch_launch_guest_reset). */
__noreturn void smpg_guest_init(struct pcpu *c);
/* An INIT for the calling CPU itself: a physical INIT (VMX INIT exit, SVM INIT intercept
 * or #SX), or an INIT IPI the guest sent to its own APIC ID. Taken before the next entry. */
void smpg_init_self(struct pcpu *c);
/* A physical INIT signal reached this CPU: smpg_init_self, counted (STATS 0x206) once
 * per INIT (SVM reports one both as the intercept and, later, as #SX). */
void smpg_physical_init(struct pcpu *c);
/* Held: a CPU that runs no guest (its VMX/SVM set-up failed) stays here, where neither
 * INIT nor STARTUP can make it run guest code (smp.c); says so in the boot log. */
__noreturn void smp_hold_cpu(struct pcpu *c, const char *why);
/* The local APIC of the calling CPU as an INIT leaves it, as far as software can reset
 * it (smp.c): LVTs masked, timer stopped, pending and in-service interrupts drained. */
void lapic_init_reset(struct pcpu *c);
/* apic=zeroexit: the local APIC reset an AP's INIT left for its SIPI exit (smpguest.c). */
void smpg_apic_reset_owed(struct pcpu *c);
void lapic_eoi(void);
/* Switches to the stack at top and calls fn(arg), which must not return (entry.S). */
__noreturn void call_on_stack(uint64_t top, void (*fn)(void *), void *arg);
void lapic_send_ipi_raw(uint32_t dest, uint32_t icr_lo);

/* Implemented by the architecture half for guest SMP. */
__noreturn void arch_launch_ap_guest(struct pcpu *c, uint32_t sipi_vector);
/* apic=zeroexit: the AP's guest entered in the wait-for-SIPI activity state, as INIT
 * leaves a CPU; its STARTUP comes back as a SIPI VM exit. */
__noreturn void arch_launch_ap_wait_sipi(struct pcpu *c);
/* The BSP after INIT: real mode at the reset vector, CS base FFFF0000h, IP FFF0h. */
__noreturn void arch_launch_guest_reset(struct pcpu *c);
/* The guest's CR0 (its own view) on this CPU, read before an INIT restarts it. */
uint64_t arch_guest_cr0(struct pcpu *c);
/* Host waits: halted until an NMI (SVM: GIF opened for the halt only), and the
 * permanent hold (SVM: GIF = 0, so not even INIT is taken). */
void arch_wait_for_event(void);
__noreturn void arch_hold(void);
/* Host interrupts opened and closed around draining the APIC at an INIT. */
void arch_host_irq_open(void);
void arch_host_irq_close(void);

/* MSRs the guest sees differently from the processor (guestmsr.c): the exit handlers
 * ask here first. MSR_PASS: perform it on the processor; MSR_DONE: answered (a read's
 * value in *val); MSR_GP: the guest gets #GP(0). */
enum msr_outcome { MSR_PASS, MSR_DONE, MSR_GP };
enum msr_outcome guest_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val);
enum msr_outcome guest_msr_write(struct vcpu *v, uint32_t msr, uint64_t val);
struct msr_range { uint32_t first, last; };
extern const struct msr_range guest_msr_intercepted[];  /* reads and writes must exit */
extern const unsigned guest_msr_intercepted_count;
struct mtrr_state;
/* The memory type of a block of guest-physical memory (pt_retype's type_of, ctx = the
 * MTRRs), and the BSP's MTRRs as the firmware left them (the first types). */
int guest_memory_type(void *ctx, uint64_t gpa, uint64_t size);
const struct mtrr_state *guest_mtrr_initial(struct pcpu *c);
/* Implemented by the architecture half: the nested tables take the types of m. */
void arch_guest_memory_types(const struct mtrr_state *m);

/* The guest's CPUID results into v->regs (cpuid.c): VMX/SVM hidden, OSXSAVE per its CR4. */
void guest_cpuid(struct vcpu *v, uint64_t guest_cr4);

/* Hypercalls (hypercall.c): dispatch to the hypapp, then to the runtime's own. */
void hypercall_dispatch(struct vcpu *v);
/* The hypercall instruction trapped (either half): the E820 stub's, or a hypercall.
 * Returns true when the caller must step past the instruction. */
bool hypercall_instruction(struct vcpu *v, bool real_mode);
/* Guest access to the hypervisor's region: the hypapp may resolve it, else #GP(0). */
void hypervisor_memory_violation(struct vcpu *v, uint64_t gpa, uint32_t access);
/* Guest triple fault or reset: hypapp shutdown callback, then a system reset. */
__noreturn void guest_reset(struct vcpu *v, const char *why);

/* Guest-page protection for hypapps (guestmem.c). Each exit handler ends with
 * guestmem_tlb_sync; an NMI handler first asks nmi_kick_taken whether the NMI was the
 * hypervisor's own request to exit (then it is not the guest's). */
void guestmem_tlb_sync(struct pcpu *c);
bool nmi_kick_taken(struct pcpu *c);
void nmi_kick(struct pcpu *self, struct pcpu *t);
/* Implemented by the architecture half: the shared nested page table's entry of one
 * 4 KiB page (APP_PROT_* of xmhf-hypapp.h; 0 = not mapped), the change mirrored into
 * every CPU's private APIC path; and this CPU's nested-paging TLB flush (now, or at
 * its next VM entry). */
int arch_guestmem_setprot(uint64_t page, uint32_t prot);
uint32_t arch_guestmem_getprot(uint64_t page);
void arch_tlb_flush_local(struct pcpu *c);
/* The hypapp's MSRs: an intercept bit in the MSR bitmap / MSRPM (access: 1 read, 2
 * write; -1 when msr is outside its ranges), and whether msr is inside them. */
int arch_msr_intercept(uint32_t msr, uint32_t access);
bool arch_msr_in_bitmap(uint32_t msr);

#endif
