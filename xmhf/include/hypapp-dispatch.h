/* The runtime's side of the hypapp API (xmhf-hypapp.h): the hypapp's callbacks as one
 * table, each NULL when the hypapp does not define it (they are weak symbols), and the
 * dispatch helpers the exit handlers of both halves call. Not for hypapps. */
#ifndef XMHF_HYPAPP_DISPATCH_H
#define XMHF_HYPAPP_DISPATCH_H
#include "xmhf-hypapp.h"

struct hypapp_callbacks {
    int (*main)(const struct app_bootparams *bp);
    void (*cpu_start)(struct vcpu *v);
    int (*hypercall)(struct vcpu *v, uint64_t function, unsigned cpl);
    int (*hypmem_violation)(struct vcpu *v, uint64_t gpa, uint32_t access);
    int (*guestmem_violation)(struct vcpu *v, const struct app_memfault *f);
    int (*portaccess)(struct vcpu *v, struct app_io *io);
    int (*cpuid)(struct vcpu *v, uint32_t leaf, uint32_t subleaf);
    int (*rdmsr)(struct vcpu *v, uint32_t msr, uint64_t *value);
    int (*wrmsr)(struct vcpu *v, uint32_t msr, uint64_t value);
    void (*shutdown)(struct vcpu *v);
};
extern const struct hypapp_callbacks hypapp_cb;

/* xmhf_app_main, then no more I/O-port or MSR requests (hypapp.c). 0 or its error. */
int hypapp_boot(const struct app_bootparams *bp);
/* Before a CPU's guest starts (both halves' launch paths). */
void hypapp_cpu_start(struct pcpu *c, struct gregs *initial);

/* The I/O ports a hypapp intercepts, in iobitmap.h's layout (Intel's bitmaps A and B
 * are its first two pages, AMD's IOPM all three); NULL when the hypapp asked for none
 * (then no I/O instruction exits). */
extern uint8_t *hypapp_io_bitmap;
extern uint64_t hypapp_io_bitmap_pa;
/* An I/O instruction exited (decoded by the arch half). False: not the hypapp's (the
 * arch half performs it itself: a wrap-around access VMX exits for anyway). True: the
 * instruction is done (*skip: step past it; else an exception was injected). */
bool hypapp_io(struct vcpu *v, struct app_io *io, bool *skip);
/* Performs a non-string port access on the hardware; IN results merged into RAX. */
void io_passthrough(struct vcpu *v, struct app_io *io);
/* The IN result into RAX as the processor writes it: AL / AX keep the rest of RAX,
 * EAX zero-extends (a 32-bit destination in 64-bit mode; the upper half is not visible
 * outside it). */
void io_set_result(struct vcpu *v, const struct app_io *io);

/* RDMSR / WRMSR (ECX, EDX:EAX in v->regs) and CPUID exits: true when the hypapp took
 * the instruction (an RDMSR result is in EDX:EAX already); the caller then steps past it
 * exactly when *skip (else the hypapp injected an exception). False: the runtime's own
 * handling. */
bool hypapp_msr(struct vcpu *v, bool write, bool *skip);
bool hypapp_cpuid(struct vcpu *v, bool *skip);

/* A nested-paging violation outside the hypervisor's region and the APIC trap
 * (guestmem.c; f->gpa, gla, gla_valid, access, paging_walk filled in). True: it was a
 * page a hypapp protected and it is dealt with (retry, the hypapp's callback, or #GP(0)
 * to the guest). False: not such a page. */
bool guestmem_violation(struct vcpu *v, struct app_memfault *f);

#endif
