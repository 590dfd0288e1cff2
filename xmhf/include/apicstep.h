/* The architecture-neutral half of watching the guest's xAPIC (DESIGN.md section 4):
 * which page is watched, what the writes of one stepped instruction were and what they
 * mean, and what a guest write to IA32_APIC_BASE or the x2APIC ICR may be. The VMX and
 * SVM halves keep only the mechanism (nested-page entry, single-step, events). apicstep.c.
 *
 * How a write is captured. The guest's APIC page is mapped read-only in the CPU's own
 * nested-page path, so reads run natively and every write faults at its exact
 * guest-physical address before anything reaches the APIC. The faulting instruction is
 * then run once (single-stepped) against a per-CPU capture page mapped writable in place
 * of the APIC page, pre-filled with the real registers' values so that reads made by the
 * same instruction (a MOVS from the timer count to the ICR, a LOCK'd OR of the EOI
 * register) see what the APIC holds. Afterwards the page tells what was written: the
 * register at the faulting offset, and every other register whose bytes changed. Each is
 * then acted on with the 32-bit value in the capture page: the ICR through the INIT /
 * STARTUP policy (smpguest.c), everything else written to the real APIC. */
#ifndef XMHF_APICSTEP_H
#define XMHF_APICSTEP_H
#include "gwalk.h"
#include "xmhf.h"

#define APIC_SLOTS 256u     /* 16-byte register slots of the 4 KiB page (SDM table 11-1) */

/* One CPU's capture page and what was put into it before the step. */
struct apic_capture {
    uint32_t *page;                 /* the guest's writes land here during a step */
    uint64_t pa;
    uint32_t *ref;                  /* the page as filled, to tell what was written */
    uint64_t readable[APIC_SLOTS / 64];     /* slots filled from the real APIC */
    uint32_t fault_off;             /* offset of the write that began the step */
    uint64_t string_regs[3];        /* RCX, RSI, RDI at the fault */
};

/* This CPU's xAPIC page as IA32_APIC_BASE places it, or 0 when the APIC is off or
 * in x2APIC mode (nothing to watch in memory then). */
uint64_t apic_guest_page(void);

/* The hypervisor's own uncached mapping of the calling CPU's APIC registers (xAPIC
 * mode), wherever IA32_APIC_BASE puts them. */
volatile uint32_t *apic_regs(void);

/* Once per CPU: the capture page, and which registers this APIC has (its version
 * register's max LVT entry says which LVTs exist; a read of a missing register would
 * set an error bit in the real ESR). */
void apic_capture_init(struct apic_capture *cap, struct pcpu *c);

/* Before the step of a write that faulted at offset off: the capture page gets the real
 * registers' values; g: the guest's registers at the fault. */
void apic_capture_fill(struct apic_capture *cap, struct pcpu *c, uint32_t off,
                       const struct gregs *g, bool regs);

/* The instruction bytes b (n of them) are a plain MOV store (88, 89, C6 /0, C7 /0 after
 * segment, size and, in 64-bit code, REX prefixes): it reads no memory, so the capture
 * page need not hold the real registers (regs = false above; a hostile guest that
 * changes the bytes before the step only misleads its own reads). */
bool apic_insn_is_plain_store(const uint8_t *b, unsigned n, bool long64);

/* The instruction bytes b (n of them) are a PUSHF (9C after legacy and, in 64-bit code,
 * REX prefixes): the one instruction that stores RFLAGS, so the step's own TF, in memory.
 * (An event delivery does too, but that step sets no TF; a task switch is the arch
 * half's.) */
bool apic_insn_is_pushf(const uint8_t *b, unsigned n, bool long64);

/* What a completed TF step of an instruction the guest's own TF was clear for needs to
 * find a FLAGS image it pushed: where the instruction was, and the stack before and
 * after it. */
struct apic_step_regs {
    uint64_t cs_base, rip;          /* the stepped instruction */
    uint64_t ss_base, rsp_before, rsp_after;
    bool long64;                    /* 64-bit code: no segment bases, 64-bit RSP */
    bool stack32;                   /* otherwise SS.B: ESP, else SP */
};

/* If the stepped instruction was a PUSHF, its image carries the step's TF (bit 8):
 * cleared in its byte on the capture page before the commit (or in guest RAM when that
 * byte is off the trapped page at apic_gpa), so that neither the APIC register written
 * nor the guest's stack shows it. Only a step that moved the stack pointer down by an
 * image's size (2, 4 or 8) is decoded, through the guest's page tables (g). */
void apic_step_untrace_pushf(struct apic_capture *cap, uint64_t apic_gpa,
                             const struct gwalk *g, const struct apic_step_regs *r);

/* Whether RCX, RSI or RDI moved since the fill: an iteration of a REP string instruction
 * completed even though RIP stayed (for a single-step trap that does not report DR6.BS:
 * Bochs's SVM clears it when it intercepts the #DB). */
bool apic_capture_string_moved(const struct apic_capture *cap, const struct gregs *g);

/* After the stepped instruction completed: what it wrote is acted on (see above and
 * README "Undefined APIC accesses"), the page is made ready for the next fill. Counts
 * STAT_STEPS_DONE, STAT_APIC_UNDEFINED. */
void apic_capture_commit(struct vcpu *v, struct apic_capture *cap);

/* The instruction did not complete (it faulted, an interrupt came first): nothing it
 * wrote happened; the page is made ready for the next fill. */
void apic_capture_discard(struct apic_capture *cap);

/* A guest WRMSR to IA32_APIC_BASE: checked for reserved bits and for the hypervisor's
 * own memory, then performed. 0, or -1 for the #GP the guest gets instead. */
int apic_base_write(struct pcpu *c, uint64_t val);

/* A guest write of the x2APIC ICR (MSR 0x830): -1 (#GP) outside x2APIC mode or with a
 * reserved bit set (AMD: bit 12 ignored), else handled through smpg_icr_write and 0. */
int apic_x2apic_icr_write(struct vcpu *v, uint64_t val);

#endif
