/* The hypapp API: the callbacks a hypapp (hypapps/<name>/) may implement, and the
 * runtime services it may call. README "Writing a hypapp" has the same contracts with
 * the mapping from XMHF64's callbacks.
 *
 * Every callback is optional. They are weak symbols: a hypapp that does not define one
 * is never called on that path, and the runtime takes its default. A callback is called
 * only on the path it names, never on hot paths that do not need it: the I/O bitmap /
 * IOPM has bits only for the ports a hypapp asked for, the MSR bitmap / MSRPM only for
 * its MSRs, and the guest-page violation callback only for pages it protected.
 *
 * Which CPU: every callback but xmhf_app_main runs on the CPU that caused the event, in
 * the hypervisor, with that CPU's struct vcpu; v->regs->r[] holds the guest's
 * general-purpose registers (R_AX .. R_R15; R_SP is not there: the guest's RSP is
 * arch_guest_rsp(v)). Other CPUs keep running their guests meanwhile, so state shared
 * between callbacks needs atomics or a struct spinlock. A callback must not block for
 * long (the CPU's guest is stopped) and must never wait for another CPU's callback.
 *
 * What a callback may touch: its own state, v->regs, the services at the end of this
 * file, printk, and guest memory through guest_phys_read/guest_phys_write (which refuse
 * the hypervisor's region). Nothing of the runtime's own structures.
 *
 * Return values of the intercept callbacks:
 *   APP_CHAIN   - the hypapp did not handle the event; the runtime does what it does
 *                 without a hypapp (each callback says what that is).
 *   APP_HANDLED - the hypapp handled the event (each callback says what is then left
 *                 to the runtime). If the callback injected an exception
 *                 (xmhf_guest_inject_exception), the instruction is not skipped: the
 *                 exception is delivered at it, as the processor would.
 *
 * Hypercall convention (guest side; README "Hypercalls"): VMCALL (Intel) / VMMCALL
 * (AMD; VMCALL works there too) with RAX = function, RBX, RCX, RDX = arguments. Results
 * in RAX (0 = success), RBX, RCX, RDX; every other register is preserved. Functions
 * 0x80000000 and above belong to the runtime and answer only CPL 0 (else #UD);
 * hypapps own 0x00000001..0x7fffffff at every privilege level and decide themselves
 * whom to answer. A function nobody handles returns RAX = XMHF_HC_UNKNOWN at CPL 0 and
 * raises #UD at CPL > 0 (as on a processor without the instruction). */
#ifndef XMHF_HYPAPP_H
#define XMHF_HYPAPP_H
#include <stdbool.h>
#include <stdint.h>
#include "xmhf.h"

#define APP_CHAIN   0
#define APP_HANDLED 1

#define XMHF_HC_UNKNOWN       0xffffffffffffffffull
#define XMHF_HC_RUNTIME_BASE  0x80000000ull
#define XMHF_HC_RUNTIME_INFO  0x80000001ull /* RBX region base, RCX size, RDX CPUs */
/* Per-CPU accounting of the calling CPU: RBX = selector in, value out.
 *   0 .. 0xff   VM exits with that basic exit reason (Intel SDM Vol. 3D appendix C)
 *   0x100       all VM exits
 *   0x200 + n   STAT_* counter n of xmhf.h (steps done / faulted, NMIs delivered,
 *               ICR writes captured, INIT/SIPI handled, steps cancelled, stray
 *               physical INITs) */
#define XMHF_HC_STATS         0x80000002ull
/*   0x300       DMA translation faults recorded by the IOMMUs (whole machine)
 *   0x301       IOMMUs translating (whole machine) */
#define XMHF_STAT_DMA_FAULTS  0x300ull
#define XMHF_STAT_DMA_UNITS   0x301ull
/* DMA protection: RBX bits 31:0 = IOMMUs translating, bit 32 = a VT-d one, bit 33 = an
 * AMD-Vi one; RCX = the first IOMMU's register base (0: none); RDX = translation faults
 * recorded so far (collected first). */
#define XMHF_HC_DMAP_INFO     0x80000010ull
/* RBX = FNV-1a 64 of the runtime image's header, code and read-only data: what a DMA
 * into the hypervisor would change (the DMA test compares it before and after). */
#define XMHF_HC_IMAGE_CHECKSUM 0x80000011ull

/* What the hypapp learns at init (BSP, before the guest's first instruction). */
struct app_bootparams {
    uint64_t region_base, region_size;  /* the hypervisor's protected memory */
    uint32_t ncpus;
    uint8_t boot_drive;
    const char *cmdline;                /* the whole boot command line */
};

/* Guest access kinds (violation callbacks) and page permissions (xmhf_guestmem_*). */
#define APP_ACCESS_READ  1u
#define APP_ACCESS_WRITE 2u
#define APP_ACCESS_EXEC  4u
#define APP_PROT_READ    APP_ACCESS_READ
#define APP_PROT_WRITE   APP_ACCESS_WRITE
#define APP_PROT_EXEC    APP_ACCESS_EXEC
#define APP_PROT_ALL     (APP_PROT_READ | APP_PROT_WRITE | APP_PROT_EXEC)

/* ---- callbacks ------------------------------------------------------------------ */

/* Once, on the BSP, after every CPU is in VMX/SVM operation and before any guest
 * instruction runs. The place to ask for I/O ports and MSRs (xmhf_io_intercept,
 * xmhf_msr_intercept) and to protect guest pages. Non-zero stops the boot with a clear
 * message (a hypapp that cannot work must not run the guest unprotected).
 * Not defined: nothing happens. */
int xmhf_app_main(const struct app_bootparams *bp);

/* On every CPU, on that CPU, just before its guest's first instruction: the BSP after
 * xmhf_app_main, an AP when the guest's STARTUP IPI starts it (again after each INIT /
 * STARTUP restart, so it also says "this CPU's guest was reset"). v->regs is the
 * guest's initial register state (a change there is what the guest starts with). An AP
 * the guest never starts never gets it. */
void xmhf_app_cpu_start(struct vcpu *v);

/* A hypercall with function < 0x80000000 (in v->regs->r[R_AX]) at privilege level cpl
 * (0-3; real mode is 0, virtual-8086 mode 3). APP_HANDLED after setting the results:
 * the runtime steps past the instruction. APP_CHAIN: RAX = XMHF_HC_UNKNOWN at CPL 0,
 * #UD at CPL > 0. */
int xmhf_app_hypercall(struct vcpu *v, uint64_t function, unsigned cpl);

/* The guest touched the hypervisor's region at gpa (access: APP_ACCESS_*).
 * APP_CHAIN or APP_HANDLED without an injected event: the runtime injects #GP(0) at the
 * faulting instruction. Nothing is ever read or written there either way. */
int xmhf_app_hypmem_violation(struct vcpu *v, uint64_t gpa, uint32_t access);

/* An access to a guest page the hypapp protected (xmhf_guestmem_setprot) that its
 * permissions do not allow. */
struct app_memfault {
    uint64_t gpa;           /* the guest-physical address accessed */
    uint64_t gla;           /* the guest-linear address, when gla_valid */
    uint32_t access;        /* APP_ACCESS_* attempted (one kind) */
    uint32_t prot;          /* the page's APP_PROT_* when it faulted */
    bool gla_valid;         /* Intel: the processor reported it; AMD: never */
    bool paging_walk;       /* the processor's own access to a guest page table (A/D
                               bits, the walk), not the instruction's data access */
};
/* APP_HANDLED: the hypapp resolved it (typically it widened the permissions with
 * xmhf_guestmem_setprot, or injected an exception): the guest retries the instruction,
 * or takes the exception. APP_CHAIN: the runtime injects #GP(0) at the instruction
 * (nothing is read or written). A violation on a page whose permissions allow the
 * access by now (another CPU changed them) is retried without a callback. */
int xmhf_app_guestmem_violation(struct vcpu *v, const struct app_memfault *f);

/* An I/O instruction on a port the hypapp asked for (xmhf_io_intercept). */
struct app_io {
    uint16_t port;          /* the first port accessed */
    uint8_t size;           /* 1, 2 or 4 bytes */
    bool in;                /* IN / INS; else OUT / OUTS */
    bool string;            /* INS / OUTS */
    bool rep;               /* with a REP prefix (string forms only) */
    uint32_t value;         /* OUT: the value written (low `size` bytes). IN: what the
                               hypapp returns with APP_HANDLED; the runtime puts it in
                               AL / AX / EAX as the processor would */
};
/* Non-string forms: APP_HANDLED - the hypapp performed the access (for IN, io->value
 * is the result); the runtime updates AL/AX/EAX and steps past the instruction.
 * APP_CHAIN - the runtime performs the access on the real port (the guest gets what
 * the device answered) and steps past.
 * String forms (INS/OUTS, with or without REP): the runtime never moves guest memory
 * for a port; APP_HANDLED means the hypapp did the whole instruction (memory, RSI/RDI,
 * RCX) and the runtime only steps past it; APP_CHAIN gives the guest #GP(0) at the
 * instruction (as a port denied by the TSS I/O bitmap would). */
int xmhf_app_portaccess(struct vcpu *v, struct app_io *io);

/* CPUID (always intercepted): leaf = EAX, subleaf = ECX at the instruction.
 * APP_HANDLED: the hypapp set RAX/RBX/RCX/RDX itself; the runtime steps past.
 * APP_CHAIN: the runtime's answer (the processor's, with VMX/SVM hidden). */
int xmhf_app_cpuid(struct vcpu *v, uint32_t leaf, uint32_t subleaf);

/* RDMSR / WRMSR of an MSR the hypapp asked for (xmhf_msr_intercept), or of any MSR
 * outside the processor's bitmap ranges (those always exit: 0-0x1fff and
 * 0xc0000000-0xc0001fff are covered on Intel; AMD adds 0xc0010000-0xc0011fff).
 * APP_HANDLED: done (rdmsr: *value is the result, put in EDX:EAX); the runtime steps
 * past. APP_CHAIN: the runtime's own handling (its intercepted MSRs keep their meaning;
 * any other is performed on the processor, a fault becoming the guest's #GP(0)). */
int xmhf_app_rdmsr(struct vcpu *v, uint32_t msr, uint64_t *value);
int xmhf_app_wrmsr(struct vcpu *v, uint32_t msr, uint64_t value);

/* The guest is being reset (triple fault); last words before the system reset. */
void xmhf_app_shutdown(struct vcpu *v);

/* ---- services ------------------------------------------------------------------- */

/* An exception for the guest at the current instruction (delivered at the next entry). */
void xmhf_guest_inject_exception(struct vcpu *v, unsigned vector, int has_err, uint32_t err);

/* Errors of the services below. */
#define XMHF_EINVAL  (-1)   /* bad argument or permission combination (see each) */
#define XMHF_EPERM   (-2)   /* never allowed: the hypervisor's region, the APIC page */
#define XMHF_ENOSPC  (-3)   /* the runtime's table of protected pages is full */
#define XMHF_ELATE   (-4)   /* only from xmhf_app_main */

/* Guest-page protection through the nested page tables (EPT / NPT), any CPU, any time.
 * gpa: any address in the 4 KiB page; prot: APP_PROT_* and always with APP_PROT_READ
 * (read-only, read-write, read-execute, all; EPT calls write-without-read a
 * misconfiguration, and NPT cannot refuse reads of a present page). APP_PROT_ALL
 * returns the page to the runtime's normal mapping. The page keeps its memory type.
 * Refused: the hypervisor's region (never mapped for the guest) and pages outside the
 * physical address space (XMHF_EPERM / XMHF_EINVAL). A guest's xAPIC page stays
 * trapped by the runtime on the CPUs whose APIC is there, whatever its protection.
 * The change holds for new translations at once; removing a permission takes effect on
 * every CPU once xmhf_guestmem_flush() has returned. 0 or XMHF_E*. */
int xmhf_guestmem_setprot(uint64_t gpa, uint32_t prot);
/* The page's APP_PROT_* (APP_PROT_ALL for a page never protected). */
uint32_t xmhf_guestmem_getprot(uint64_t gpa);
/* Flushes the nested-paging TLBs of every CPU (INVEPT / ASID flush) and returns when
 * every CPU running a guest has done it; a CPU that is not running one does it before
 * its guest starts. Call it from any callback, after one or many setprot calls. */
void xmhf_guestmem_flush(void);

/* Intercepts ports [port, port + count) for xmhf_app_portaccess on every CPU. Only from
 * xmhf_app_main (the bitmaps are not changed while guests run); 0 or XMHF_E*. */
int xmhf_io_intercept(uint32_t port, uint32_t count);
/* Intercepts reads (APP_ACCESS_READ) and/or writes (APP_ACCESS_WRITE) of an MSR in the
 * bitmap ranges for xmhf_app_rdmsr / xmhf_app_wrmsr. Only from xmhf_app_main. */
int xmhf_msr_intercept(uint32_t msr, uint32_t access);

#endif
