/* Guest SMP on Intel: the guest's xAPIC page is mapped read-only in this CPU's EPT, so
 * reads run natively and each write exits (EPT violation) at its exact guest-physical
 * address before the APIC sees it; the one instruction is then single-stepped against a
 * per-CPU capture page holding the real registers' values, and what it wrote is acted on
 * afterwards (apicstep.h: the ICR through the INIT/STARTUP policy, the rest written to
 * the real APIC). DESIGN.md section 4.
 *
 * Why capture instead of stepping against the real page: the instruction that faulted may
 * write more than the register it faulted on (a string move, a PUSHA or an event pushed
 * onto a stack placed on the page, an FXSAVE over it), in any order, so whatever ran
 * against the real APIC during the step could reach the ICR unseen. Against the capture
 * page nothing the instruction does reaches the APIC; the hypervisor replays it.
 *
 * The step, and why each part is there:
 *  - Monitor trap flag where IA32_VMX_PROCBASED_CTLS allows it (SDM 26.5.2 "Monitor
 *    Trap Flag"): the MTF exit comes after exactly one instruction, after each iteration
 *    of a REP string instruction (the next iteration faults again and is a step of its
 *    own, so an ICR write made by an iteration that is not the last is acted on), and
 *    after the delivery of an event injected at the entry; the guest's RFLAGS are
 *    untouched. Otherwise RFLAGS.TF + the #DB intercept, with the guest's own TF kept
 *    aside and its own #DB handed back; DR6.BS tells a completed iteration (RIP unmoved)
 *    from a step that did not run.
 *  - Interrupts are held off for the step without touching RFLAGS.IF: with MTF by
 *    STI blocking for one instruction (interruptibility state, SDM 24.4.2) where that is
 *    legal; otherwise by external-interrupt exiting, an interrupt first undoing the step
 *    (the guest takes the interrupt, the instruction faults again later). An interrupt
 *    delivered inside the step would run the guest's handler against the capture page.
 *  - NMIs exit (pin-based NMI exiting) and are only counted during the step; they are
 *    injected afterwards, one per NMI window (virtual NMIs), so none is lost or doubled.
 *  - Every exception is intercepted during the step (exception bitmap all ones): if
 *    the instruction faults, nothing it wrote counts, the mapping goes back first, then
 *    the exception (vector, error code, CR2) is delivered as the hardware would have.
 *  - Only the stepping CPU's private page table maps the capture page, and INVEPT follows
 *    each return to the read-only mapping, so no other CPU and no later instruction
 *    writes it. The way in needs no INVEPT: an EPT violation invalidates the cached
 *    translations of the faulting guest-physical address (SDM 29.4.3.1). */
#include "apic.h"
#include "ept.h"
#include "msr.h"
#include "vmx-x86vmx.h"

#define DBG_BS         (1ull << 14) /* DR6 / exit-qualification single-step bit */
#define DBG_BN         0xfull       /* B0-B3: breakpoint conditions met */
#define DBG_ENABLED_BP (1ull << 12) /* pending debug exceptions: an enabled one among them */

bool vmx_event_pending(void)
{
    return vmread32(VMCS_ENTRY_INTR_INFO) & INTR_INFO_VALID;
}

void vmx_write_proc(struct vmx_cpu *x)
{
    uint32_t p = x->proc;
    if (x->nmi_window)
        p |= PROC_NMI_WINDOW;
    if (x->nmi_intr_window)
        p |= PROC_INTR_WINDOW;
    if ((x->stepping || x->sipi_guard) && x->mtf)
        p |= PROC_MTF;
    vmwrite32(VMCS_PROC_CTLS, p);
}

/* Called by each CPU before its guest's first entry. */
void vmx_smpg_cpu_setup(struct pcpu *c)
{
    struct vmx_cpu *x = vmx_of(c);
    if (!x->path.t[0])          /* once per CPU; a restart after INIT reuses it */
        vmx_ept_private_init(x);
    apic_capture_init(&x->cap, c);
    /* apic=zeroexit: the path maps the APIC page as the shared map does (no trap). */
    if (vmx_ept_private_build(x, apic_zeroexit() ? 0 : apic_guest_page()) != 0)
        panic("CPU %u: cannot watch the APIC page", c->idx);
}

/* The EPT violation on the APIC page (a write: the page is readable): begin the step.
 * Returns false when gpa is not this CPU's APIC page. */
bool vmx_smpg_apic_trap(struct vcpu *v, uint64_t gpa, uint64_t qual)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    (void)qual;
    if (!x->apic_gpa || (gpa & ~0xfffull) != x->apic_gpa)
        return false;
    apic_capture_fill(&x->cap, v->cpu, (uint32_t)gpa, v->regs, true);
    x->step_rip = vmreadN(VMCS_GUEST_RIP);
    x->step_rsp = vmreadN(VMCS_GUEST_RSP);
    vmx_ept_apic_entry(x, APIC_MAP_CAPTURE);
    x->saved_exc_bitmap = vmread32(VMCS_EXCEPTION_BITMAP);
    vmwrite32(VMCS_EXCEPTION_BITMAP, 0xffffffffu);

    uint64_t rflags = vmreadN(VMCS_GUEST_RFLAGS);
    uint32_t intr = vmread32(VMCS_GUEST_INTERRUPTIBILITY);
    bool tf = rflags & RFLAGS_TF;
    bool blocked = intr & (INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOVSS);
    /* A single-step trap cannot be pending before an instruction that faulted (it would
     * have been delivered first), yet Bochs 2.7 saves BS here when the guest's POPF has
     * just set TF. Left in place it would fire before the stepped instruction; the
     * guest's TF yields its #DB after the instruction anyway. (Under STI/MOV SS blocking
     * with TF the entry checks want BS kept, 26.3.1.5: that case keeps it in MTF mode.) */
    if (tf && (!x->mtf || !blocked))
        vmwriteN(VMCS_GUEST_PENDING_DBG, vmreadN(VMCS_GUEST_PENDING_DBG) & ~DBG_BS);
    bool vectoring = vmread32(VMCS_IDT_VECTORING_INFO) & INTR_INFO_VALID;
    x->step_sti = x->step_extint = x->step_event = false;
    if (vectoring && !x->mtf) {
        /* The write came from delivering an event (its stack or its IDT entry is on the
         * page), which the exit handler injects again. TF would be pushed into the
         * guest's frame and cleared by the delivery, so there is no trap to end the
         * step: it lasts until the next exit of any kind, which external-interrupt
         * exiting bounds by the next physical interrupt whatever the guest's IF. */
        x->step_event = true;
        vmwrite32(VMCS_PIN_CTLS, x->pin | PIN_EXTINT_EXIT);
        x->step_extint = true;
    } else if (x->mtf) {
        /* Interrupts held for the one instruction by STI blocking where that is legal
         * (IF = 1, no other blocking, no event being injected, and TF = 0, since STI
         * blocking with TF would need a pending #DB: 26.3.1.5); else, with IF = 1 and
         * nothing blocking them, by external-interrupt exiting as in TF mode. */
        if ((rflags & RFLAGS_IF) && !blocked && !vectoring && !tf) {
            intr |= INTERRUPTIBILITY_STI;
            x->step_sti = true;
        } else if ((rflags & RFLAGS_IF) && !blocked) {
            vmwrite32(VMCS_PIN_CTLS, x->pin | PIN_EXTINT_EXIT);
            x->step_extint = true;
        }
    } else {
        x->step_guest_tf = tf;
        vmwriteN(VMCS_GUEST_RFLAGS, rflags | RFLAGS_TF);
        /* With TF set, STI/MOV SS blocking would demand a pending #DB at entry (26.3.1.5);
         * the step holds interrupts off by itself. */
        intr &= ~(INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOVSS);
        if (rflags & RFLAGS_IF) {
            vmwrite32(VMCS_PIN_CTLS, x->pin | PIN_EXTINT_EXIT);
            x->step_extint = true;
        }
    }
    vmwrite32(VMCS_GUEST_INTERRUPTIBILITY, intr);
    x->stepping = true;
    vmx_write_proc(x);
    return true;
}

static int vmx_gpa_read(void *ctx, uint64_t gpa, void *buf, unsigned n)
{
    (void)ctx;
    return guest_phys_read(gpa, buf, n);
}

/* A PUSHF stepped with the hypervisor's TF pushed that TF: out of the image again
 * (apicstep.h). SDM Vol. 3A 25.4.1 for the access-rights bits (CS.L 13, SS.B 14). */
static void step_untrace_pushf(struct vmx_cpu *x)
{
    struct gwalk g = { .cr0 = vmreadN(VMCS_GUEST_CR0), .cr3 = vmreadN(VMCS_GUEST_CR3),
                       .cr4 = vmreadN(VMCS_GUEST_CR4), .efer = vmread64(VMCS_GUEST_EFER),
                       .read = vmx_gpa_read };
    struct apic_step_regs r = {
        .cs_base = vmreadN(VMCS_GUEST_CS_BASE), .rip = x->step_rip,
        .ss_base = vmreadN(VMCS_GUEST_SS_BASE), .rsp_before = x->step_rsp,
        .rsp_after = vmreadN(VMCS_GUEST_RSP),
        .long64 = (g.efer & EFER_LMA) && (vmread32(VMCS_GUEST_CS_AR) & (1u << 13)),
        .stack32 = vmread32(VMCS_GUEST_SS_AR) & (1u << 14),
    };
    apic_step_untrace_pushf(&x->cap, x->apic_gpa, &g, &r);
}

/* Ends the step: the real page comes back read-only (then INVEPT, so no cached writable
 * translation of the capture page outlives the step), the controls go back, and what a
 * completed instruction wrote is acted on. */
static void step_finish(struct vcpu *v, bool executed)
{
    struct pcpu *c = v->cpu;
    struct vmx_cpu *x = vmx_of(c);
    vmx_ept_apic_entry(x, APIC_MAP_GUARD);
    invept_all();
    x->stepping = false;
    vmwrite32(VMCS_EXCEPTION_BITMAP, x->saved_exc_bitmap);
    vmx_write_proc(x);
    if (x->step_extint)
        vmwrite32(VMCS_PIN_CTLS, x->pin);
    if (!x->mtf && !x->step_guest_tf)
        vmwriteN(VMCS_GUEST_RFLAGS, vmreadN(VMCS_GUEST_RFLAGS) & ~RFLAGS_TF);
    if (executed && !x->mtf && !x->step_guest_tf && !x->step_event)
        step_untrace_pushf(x);
    if (executed)
        apic_capture_commit(v, &x->cap);
    else
        apic_capture_discard(&x->cap);
}

/* An exception the stepped instruction raised, after the step is undone: delivered to
 * the guest as the processor would have (SDM 27.2.2 for the exit information; CR2 is
 * not written by a #PF VM exit, the qualification holds the address). */
static void redeliver_exception(uint32_t info)
{
    unsigned vector = info & 0xff;
    if (vector == EXC_PF)
        write_cr2(vmreadN(VMCS_EXIT_QUALIFICATION));
    if (info & (1u << 12))  /* NMI unblocking due to IRET: the IRET did not complete */
        vmwrite32(VMCS_GUEST_INTERRUPTIBILITY,
                  vmread32(VMCS_GUEST_INTERRUPTIBILITY) | INTERRUPTIBILITY_NMI);
    uint32_t entry = INTR_INFO_VALID | (info & (0x7u << 8)) | vector;
    if (info & INTR_INFO_ERRCODE) {
        entry |= INTR_INFO_ERRCODE;
        vmwrite32(VMCS_ENTRY_EXC_ERRCODE, vmread32(VMCS_EXIT_INTR_ERRCODE));
    }
    if (((info >> 8) & 7) >= 4)     /* software exception: INT3/INTO need the length */
        vmwrite32(VMCS_ENTRY_INSTR_LEN, vmread32(VMCS_EXIT_INSTR_LEN));
    vmwrite32(VMCS_ENTRY_INTR_INFO, entry);
}

/* The enabled bits of DR7 as a B0-B3 mask: breakpoint n is enabled by L<n> or G<n>. */
static uint64_t dr7_enabled(uint64_t dr7)
{
    uint64_t m = 0;
    for (unsigned n = 0; n < 4; n++)
        if (dr7 & (3ull << (2 * n)))
            m |= 1ull << n;
    return m;
}

/* A debug exception during the step: the single-step trap that ends a TF step, or the
 * guest's own (its TF, data breakpoints). Whatever belongs to the guest goes back to it
 * through the pending-debug-exceptions field, which makes the processor deliver a #DB
 * with DR6 set right at the next entry (SDM 26.6.3). The exit qualification has B0-B3
 * but not the field's bit 12 ("enabled breakpoint", 24.4.2), without which an entry
 * delivers BS alone and drops the breakpoints: it is set when a condition met is one
 * DR7 enables (the B bits may also name disabled ones, 27.2.1). */
static void step_debug(struct vcpu *v, struct vmx_cpu *x)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION) & (DBG_BS | DBG_BN);
    /* BS: the step's own trap, after the instruction or one iteration of a REP string
     * instruction (which leaves RIP where it was). */
    bool executed = (q & DBG_BS) || vmreadN(VMCS_GUEST_RIP) != x->step_rip ||
                    apic_capture_string_moved(&x->cap, v->regs);
    bool guest_tf = x->mtf ? (vmreadN(VMCS_GUEST_RFLAGS) & RFLAGS_TF) : x->step_guest_tf;
    step_finish(v, executed);
    if (!guest_tf)
        q &= ~DBG_BS;
    if (q & dr7_enabled(vmreadN(VMCS_GUEST_DR7)))
        q |= DBG_ENABLED_BP;
    if (q)
        vmwriteN(VMCS_GUEST_PENDING_DBG, vmreadN(VMCS_GUEST_PENDING_DBG) | q);
}

/* Exits while a step is in progress. Returns true when the exit is fully handled;
 * false: the step is over and the exit goes through the normal dispatch. */
bool vmx_smpg_step_exit(struct vcpu *v, uint32_t basic)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    if (x->step_event) {
        /* Whatever exit comes first ends it: the event was delivered unless this exit
         * interrupted its delivery again. An exception the handler raised goes to the
         * guest as usual; an interrupt stays pending for the guest. */
        bool delivered = !(vmread32(VMCS_IDT_VECTORING_INFO) & INTR_INFO_VALID);
        uint32_t info = vmread32(VMCS_EXIT_INTR_INFO);
        step_finish(v, delivered);
        if (basic == EXIT_EXTINT)
            return true;
        if (basic == EXIT_EXCEPTION_NMI && (info & (7u << 8)) != INTR_TYPE_NMI) {
            redeliver_exception(info);
            return true;
        }
        return false;
    }
    if (basic == EXIT_MTF) {
        /* After the instruction, one iteration of a REP string instruction (RIP unmoved),
         * or the delivery of an event re-injected at the entry: in each case it ran. */
        step_finish(v, true);
        return true;
    }
    if (basic == EXIT_EXCEPTION_NMI) {
        uint32_t info = vmread32(VMCS_EXIT_INTR_INFO);
        if ((info & (7u << 8)) == INTR_TYPE_NMI)
            return false;                   /* held: counted by the normal handler */
        if ((info & 0xff) == EXC_DB) {
            step_debug(v, x);
            return true;
        }
        step_finish(v, false);
        v->cpu->stats[STAT_STEPS_FAULTED]++;
        redeliver_exception(info);
        return true;
    }
    if (basic == EXIT_EXTINT) {
        /* TF mode: the interrupt came before the instruction ran. Undo the step; the
         * guest takes the interrupt, and the access traps again when it runs. */
        step_finish(v, false);
        v->cpu->stats[STAT_STEPS_CANCELLED]++;
        return true;
    }
    /* Anything else (say an EPT violation on the other operand): the instruction did
     * not complete; undo the step and handle the exit as usual. */
    step_finish(v, false);
    v->cpu->stats[STAT_STEPS_CANCELLED]++;
    return false;
}

/* WRMSR to IA32_APIC_BASE (SDM 11.4.4): relocation, disable, x2APIC. The write is
 * the guest's to make; the trap follows the page. */
void vmx_smpg_apic_base_write(struct vcpu *v, uint64_t val)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    if (apic_base_write(v->cpu, val) != 0) {
        arch_guest_inject_exception(v, EXC_GP, true, 0);
        return;
    }
    uint64_t page = apic_zeroexit() ? 0 : apic_guest_page();
    if (page != x->apic_gpa) {
        if (vmx_ept_private_build(x, page) != 0) {
            printk("xmhf: CPU %u: APIC page %llx cannot be trapped\n", v->cpu->idx,
                   (unsigned long long)page);
            vmx_ept_private_build(x, 0);
        }
        vmwrite64(VMCS_EPT_POINTER, x->eptp);
        invept_all();
    }
    vmx_skip_instruction(v);
}

/* x2APIC: the ICR is MSR 0x830 (SDM 11.12.9); only its writes are intercepted. */
void vmx_smpg_x2apic_icr_write(struct vcpu *v, uint64_t val)
{
    if (apic_x2apic_icr_write(v, val) != 0)
        arch_guest_inject_exception(v, EXC_GP, true, 0);   /* x2APIC MSRs fault in xAPIC mode */
    else
        vmx_skip_instruction(v);
}

/* Before every entry: NMIs taken in the host become the guest's; one is injected when
 * the guest can take it, else NMI-window exiting asks for the moment it can (SDM
 * 26.3.1.5 forbids injecting an NMI under virtual-NMI or MOV SS blocking). Never while
 * a step is in progress: the step's instruction must run first. */
void vmx_nmi_prepare(struct pcpu *c)
{
    struct vmx_cpu *x = vmx_of(c);
    if (c->init_request) {
        /* INIT from another CPU (smpguest.c): a step in progress is abandoned with its
         * mapping; the whole VMCS is written afresh at the restart. */
        if (x->stepping) {
            vmx_ept_apic_entry(x, APIC_MAP_GUARD);
            invept_all();
            apic_capture_discard(&x->cap);
            x->stepping = false;
        }
        x->nmi_window = x->nmi_intr_window = false;
        smpg_guest_init(c);
    }
    c->nmi_pending += __atomic_exchange_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    bool want = false, want_intr = false;
    /* Nothing is injected into wait-for-SIPI (26.3.1.5): the CPU is inactive there. */
    if (c->nmi_pending && !x->stepping && !x->wait_sipi) {
        uint32_t intr = vmread32(VMCS_GUEST_INTERRUPTIBILITY);
        uint32_t ev = vmread32(VMCS_ENTRY_INTR_INFO);
        bool nmi_going = (ev & INTR_INFO_VALID) && (ev & (7u << 8)) == INTR_TYPE_NMI;
        /* While the guest's NMIs are blocked (or one is on its way in) at most one more
         * stays pending; otherwise one is delivered and one can wait (SDM 6.7.1): the
         * guest never sees more NMIs than the processor would have given it. */
        uint64_t cap = (intr & INTERRUPTIBILITY_NMI) || nmi_going ? 1 : 2;
        if (c->nmi_pending > cap)
            c->nmi_pending = cap;
        if (!vmx_event_pending() && !(intr & (INTERRUPTIBILITY_NMI | INTERRUPTIBILITY_MOVSS |
                                              INTERRUPTIBILITY_STI))) {
            vmwrite32(VMCS_ENTRY_INTR_INFO, INTR_INFO_VALID | INTR_TYPE_NMI | EXC_NMI);
            c->nmi_pending--;
            c->stats[STAT_NMIS_DELIVERED]++;
            intr = INTERRUPTIBILITY_NMI;
        }
        if (c->nmi_pending) {
            /* Held by STI blocking alone: a processor may take an NMI-window exit right
             * there (SDM 25.2: STI blocking need not block NMIs), which finds the same
             * blocking again, for ever. The interrupt window opens once the STI shadow
             * is over (IF is 1 after STI), and the NMI is injected then. */
            if ((intr & INTERRUPTIBILITY_STI) &&
                !(intr & (INTERRUPTIBILITY_NMI | INTERRUPTIBILITY_MOVSS)) &&
                (vmreadN(VMCS_GUEST_RFLAGS) & RFLAGS_IF))
                want_intr = true;
            else
                want = true;
        }
    }
    if (want_intr != x->nmi_intr_window) {
        x->nmi_intr_window = want_intr;
        vmx_write_proc(x);
    }
    if (want != x->nmi_window) {
        x->nmi_window = want;
        vmx_write_proc(x);
    }
}
