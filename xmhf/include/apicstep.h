/* The architecture-neutral half of trapping the guest's xAPIC (DESIGN.md section 4):
 * which page is trapped, what a completed step means (a captured ICR write, a new
 * LDR/DFR) and what a guest write to IA32_APIC_BASE may be. The VMX and SVM halves keep
 * only the mechanism (nested-page entry, single-step, event injection). apicstep.c. */
#ifndef XMHF_APICSTEP_H
#define XMHF_APICSTEP_H
#include "xmhf.h"

/* One trapped access: the page, the offset within it, the direction, and whether it
 * ran against the per-CPU capture page (any access to the ICR, 0x300-0x31f). */
struct apic_access {
    uint64_t page;
    uint32_t off;
    bool write;
    bool capture;
};

/* This CPU's xAPIC page as IA32_APIC_BASE places it, or 0 when the APIC is off or
 * in x2APIC mode (nothing to trap in memory then). */
uint64_t apic_guest_page(void);

/* Fills *a for an access at guest-physical gpa within page. */
void apic_access_record(struct apic_access *a, uint64_t page, uint64_t gpa, bool write);

/* After the stepped instruction completed: a write to the capture page's ICR is acted
 * on (smpg_icr_write; its delivery-status bit is cleared first, so the guest's poll
 * reads idle), a write of LDR or DFR is recorded in the pcpu for destination decoding.
 * Counts STAT_STEPS_DONE. */
void apic_access_done(struct vcpu *v, const struct apic_access *a, volatile uint32_t *capture);

/* A guest WRMSR to IA32_APIC_BASE: checked for reserved bits and for the hypervisor's
 * own memory, then performed. 0, or -1 for the #GP the guest gets instead. */
int apic_base_write(struct pcpu *c, uint64_t val);

/* A guest write of the x2APIC ICR (MSR 0x830): -1 (#GP) outside x2APIC mode, else
 * handled through smpg_icr_write and 0. */
int apic_x2apic_icr_write(struct vcpu *v, uint64_t val);

#endif
