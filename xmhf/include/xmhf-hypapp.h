/* The hypapp API: the callbacks a hypapp (hypapps/<name>/) implements, and the few
 * runtime services it may call. The runtime calls a hypapp only on the paths listed
 * here, never on hot paths that do not need it.
 *
 * Return values of the intercept callbacks:
 *   APP_CHAIN   - the hypapp did nothing; the runtime applies its default behaviour.
 *   APP_HANDLED - the hypapp handled the event completely (for a hypercall: it set the
 *                 guest's result registers; the runtime advances past VMCALL).
 *
 * Hypercall convention (guest side; see README "Hypercalls"): VMCALL (Intel) / VMMCALL
 * (AMD) with RAX = function, RBX, RCX, RDX = arguments. Results in RAX (0 = success),
 * RBX, RCX, RDX; every other register is preserved. A function nobody handles returns
 * RAX = XMHF_HC_UNKNOWN and leaves RBX/RCX/RDX unchanged. A hypercall from CPL > 0 gets
 * #UD, as on a processor without the instruction. Functions 0x80000000 and above
 * belong to the runtime; hypapps use 0x00000001..0x7fffffff. */
#ifndef XMHF_HYPAPP_H
#define XMHF_HYPAPP_H
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

/* What the hypapp learns at init (BSP, before the guest's first instruction). */
struct app_bootparams {
    uint64_t region_base, region_size;  /* the hypervisor's protected memory */
    uint32_t ncpus;
    uint8_t boot_drive;
    const char *cmdline;                /* the whole boot command line */
};

/* Guest access kinds passed to xmhf_app_hypmem_violation. */
#define APP_ACCESS_READ  1u
#define APP_ACCESS_WRITE 2u
#define APP_ACCESS_EXEC  4u

/* Called once on the BSP before the guest starts. Non-zero stops the boot with a
 * clear message (a hypapp that cannot work must not run the guest unprotected). */
int xmhf_app_main(const struct app_bootparams *bp);

/* A hypercall: function in v->regs->r[R_AX]. APP_HANDLED after setting results. */
int xmhf_app_hypercall(struct vcpu *v, uint64_t function);

/* The guest touched the hypervisor's region at gpa. APP_CHAIN: the runtime injects
 * #GP(0) at the faulting instruction (nothing is read or written). */
int xmhf_app_hypmem_violation(struct vcpu *v, uint64_t gpa, uint32_t access);

/* The guest is being reset (triple fault); last words before the system reset. */
void xmhf_app_shutdown(struct vcpu *v);

/* Services for hypapps. */
void xmhf_guest_inject_exception(struct vcpu *v, unsigned vector, int has_err, uint32_t err);

#endif
