/* Task switches in VMX non-root operation: every one exits (SDM Vol. 3C 26.4.2) after
 * the processor checked the task gate and the new TSS descriptor; the rest of the
 * switch is carried out here on the guest's state (xmhf/src/lib/taskswitch.c) and the
 * guest resumes in the new task, or gets the fault the processor would have raised, in
 * the old or the new task (SDM Vol. 3A 8.3, table 8-1).
 *
 * The exit qualification (table 28-2) gives the new TSS's selector and the source:
 * CALL, IRET, JMP, or a task gate in the IDT, whose event (interrupt, NMI, exception
 * with its error code, software interrupt) is in the IDT-vectoring information. That
 * event is delivered by the switch itself, so it is not delivered again on entry.
 * NMIs: an NMI delivered through a task gate blocks NMIs until the next IRET, and the
 * IRET that ends the NMI task (a task-switch IRET) unblocks them (SDM 6.7.1; with
 * virtual NMIs the guest's "blocking by NMI" bit, 24.4.2). */
#include "gwalk.h"
#include "taskswitch.h"
#include "vmx-x86vmx.h"

static const vmcs16_t seg_sel[TS_NSEG] = {
    VMCS_GUEST_ES_SEL, VMCS_GUEST_CS_SEL, VMCS_GUEST_SS_SEL, VMCS_GUEST_DS_SEL,
    VMCS_GUEST_FS_SEL, VMCS_GUEST_GS_SEL, VMCS_GUEST_LDTR_SEL, VMCS_GUEST_TR_SEL };
static const vmcsN_t seg_base[TS_NSEG] = {
    VMCS_GUEST_ES_BASE, VMCS_GUEST_CS_BASE, VMCS_GUEST_SS_BASE, VMCS_GUEST_DS_BASE,
    VMCS_GUEST_FS_BASE, VMCS_GUEST_GS_BASE, VMCS_GUEST_LDTR_BASE, VMCS_GUEST_TR_BASE };
static const vmcs32_t seg_limit[TS_NSEG] = {
    VMCS_GUEST_ES_LIMIT, VMCS_GUEST_CS_LIMIT, VMCS_GUEST_SS_LIMIT, VMCS_GUEST_DS_LIMIT,
    VMCS_GUEST_FS_LIMIT, VMCS_GUEST_GS_LIMIT, VMCS_GUEST_LDTR_LIMIT, VMCS_GUEST_TR_LIMIT };
static const vmcs32_t seg_ar[TS_NSEG] = {
    VMCS_GUEST_ES_AR, VMCS_GUEST_CS_AR, VMCS_GUEST_SS_AR, VMCS_GUEST_DS_AR,
    VMCS_GUEST_FS_AR, VMCS_GUEST_GS_AR, VMCS_GUEST_LDTR_AR, VMCS_GUEST_TR_AR };

static void state_from_vmcs(struct vcpu *v, struct ts_cpu *c)
{
    for (int i = 0; i < TS_NSEG; i++) {
        c->seg[i].sel = vmread16(seg_sel[i]);
        c->seg[i].base = vmreadN(seg_base[i]);
        c->seg[i].limit = vmread32(seg_limit[i]);
        c->seg[i].ar = vmread32(seg_ar[i]);
    }
    c->gdtr_base = vmreadN(VMCS_GUEST_GDTR_BASE);
    c->gdtr_limit = vmread32(VMCS_GUEST_GDTR_LIMIT);
    c->cr0 = vmreadN(VMCS_GUEST_CR0);
    c->cr3 = vmreadN(VMCS_GUEST_CR3);
    c->cr4 = vmreadN(VMCS_GUEST_CR4);
    c->efer = vmread64(VMCS_GUEST_EFER);
    c->dr7 = vmreadN(VMCS_GUEST_DR7);
    c->rflags = vmreadN(VMCS_GUEST_RFLAGS);
    c->rip = vmreadN(VMCS_GUEST_RIP);
    for (unsigned i = 0; i < 8; i++)
        c->gpr[i] = vmx_gpr(v, i);
}

static void state_to_vmcs(struct vcpu *v, const struct ts_cpu *c)
{
    for (int i = 0; i < TS_NSEG; i++) {
        vmwrite16(seg_sel[i], c->seg[i].sel);
        vmwriteN(seg_base[i], c->seg[i].base);
        vmwrite32(seg_limit[i], c->seg[i].limit);
        vmwrite32(seg_ar[i], c->seg[i].ar);
    }
    vmwriteN(VMCS_GUEST_CR0, c->cr0);
    vmwriteN(VMCS_GUEST_CR3, c->cr3);
    vmwriteN(VMCS_GUEST_DR7, c->dr7);
    vmwriteN(VMCS_GUEST_RFLAGS, c->rflags);
    vmwriteN(VMCS_GUEST_RIP, c->rip);
    for (unsigned i = 0; i < 8; i++)
        vmx_set_gpr(v, i, c->gpr[i]);
    vmx_after_paging_change(vmx_of(v->cpu), c->cr0, c->cr4, c->efer);
}

static int gpa_read(void *ctx, uint64_t gpa, void *buf, unsigned n)
{
    (void)ctx;
    return guest_phys_read(gpa, buf, n);
}

static int gpa_set_bits(void *ctx, uint64_t gpa, unsigned size, uint64_t bits)
{
    (void)ctx;
    return guest_phys_or(gpa, size, bits);
}

/* Linear memory for the switch: the guest's paging, page by page, with the accessed and
 * dirty flags the processor's own accesses would set; memory the hypervisor refuses (its
 * own region) is a #GP(0) to the guest, as elsewhere. */
static int ts_access(void *ctx, const struct ts_cpu *c, uint64_t la, void *buf, unsigned n,
                     bool write, struct ts_fault *f)
{
    (void)ctx;
    struct gwalk g = { c->cr0, c->cr3, c->cr4, c->efer, gpa_read, NULL, gpa_set_bits };
    uint8_t *p = buf;
    while (n) {
        unsigned chunk = 0x1000u - (unsigned)(la & 0xfff);
        if (chunk > n)
            chunk = n;
        uint64_t gpa;
        uint32_t err;
        if (gwalk_access(&g, la, write, &gpa, &err) != 0) {
            *f = (struct ts_fault){ EXC_PF, true, err, la };
            return -1;
        }
        if ((write ? guest_phys_write(gpa, p, chunk) : guest_phys_read(gpa, p, chunk)) != 0) {
            *f = (struct ts_fault){ EXC_GP, true, 0, 0 };
            return -1;
        }
        la = (la + chunk) & 0xffffffffull;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

/* SDM 6.15 table 6-5: a contributory exception or #PF while delivering a contributory
 * exception or #PF is a #DF; anything of those while delivering #DF shuts down. */
static bool contributory(unsigned v)
{
    return v == 0 || (v >= 10 && v <= 13);
}

static void deliver(struct vcpu *v, const struct ts_fault *f, uint32_t event)
{
    unsigned first = event & 0xff;
    bool first_exc = (event & INTR_INFO_VALID) && (event & INTR_TYPE_MASK) == INTR_TYPE_HWEXC;
    unsigned vec = (unsigned)f->vector;
    bool second_bad = contributory(vec) || vec == EXC_PF;
    if (first_exc && first == EXC_DF && second_bad)
        guest_reset(v, "triple fault (a fault while delivering #DF through a task gate)");
    if (first_exc && second_bad && (contributory(first) || first == EXC_PF)) {
        arch_guest_inject_exception(v, EXC_DF, true, 0);
        return;
    }
    if (vec == EXC_PF)
        write_cr2(f->cr2);
    arch_guest_inject_exception(v, vec, f->has_err, f->err);
}

void vmx_exit_task_switch(struct vcpu *v)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    uint32_t event = vmread32(VMCS_IDT_VECTORING_INFO);
    struct ts_request rq = { (uint16_t)q, (enum ts_source)((q >> 30) & 3), 0, false, 0 };
    uint64_t rip = vmreadN(VMCS_GUEST_RIP);
    uint32_t type = event & INTR_TYPE_MASK;
    bool gate_event = rq.source == TS_GATE && (event & INTR_INFO_VALID);
    /* The EIP the old task keeps: after the instruction (CALL, JMP, IRET, INT n, INT3,
     * INTO, INT1), or where an interrupt or exception left it. */
    if (rq.source != TS_GATE || (gate_event && (type == INTR_TYPE_SWINT ||
                                                type == INTR_TYPE_SWEXC ||
                                                type == INTR_TYPE_PRIV_SWEXC)))
        rip += vmread32(VMCS_EXIT_INSTR_LEN);
    if (!vmx_guest_64bit())
        rip &= 0xffffffffull;
    rq.next_rip = rip;
    if (gate_event && (event & INTR_INFO_ERRCODE)) {
        rq.push_err = true;
        rq.err = vmread32(VMCS_IDT_VECTORING_ERRCODE);
    }
    /* The event of a task gate is delivered by the switch (or replaced by its fault). */
    x->vectoring_done = gate_event;

    struct ts_cpu c;
    struct ts_fault f;
    bool debug_trap;
    const struct ts_mem m = { ts_access, NULL };
    state_from_vmcs(v, &c);
    enum ts_result r = task_switch(&c, &rq, &m, &f, &debug_trap);
    if (r == TS_FAULT_OLD) {
        deliver(v, &f, gate_event ? event : 0);
        return;
    }
    state_to_vmcs(v, &c);
    uint32_t intr = vmread32(VMCS_GUEST_INTERRUPTIBILITY);
    intr &= ~(INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOVSS);
    if (gate_event && type == INTR_TYPE_NMI)
        intr |= INTERRUPTIBILITY_NMI;
    else if (rq.source == TS_IRET)
        intr &= ~INTERRUPTIBILITY_NMI;
    vmwrite32(VMCS_GUEST_INTERRUPTIBILITY, intr);
    if (r == TS_FAULT_NEW) {
        deliver(v, &f, 0);
        return;
    }
    /* The new TSS's T flag: a debug trap in the new task, DR6.BT (SDM 18.2.3). */
    if (debug_trap) {
        uint64_t dr6;
        __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
        __asm__ volatile("mov %0, %%dr6" :: "r"(dr6 | (1ull << 15)));
        arch_guest_inject_exception(v, EXC_DB, false, 0);
    }
}
