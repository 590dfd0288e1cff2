/* Guest SMP on AMD: the guest's xAPIC page is mapped read-only in this CPU's nested page
 * table, so reads run natively and each write exits with #NPF at its exact guest-physical
 * address before the APIC sees it; that one instruction is then single-stepped against a
 * per-CPU capture page holding the real registers' values, and what it wrote is acted on
 * afterwards (apicstep.h says why capture, and what a write means). The read-only
 * mapping comes back when the step ends. DESIGN.md section 4; the policy (what an ICR
 * write means) is smpguest.c.
 *
 * SVM has no monitor trap flag, so a step is RFLAGS.TF plus the #DB intercept (APM
 * Vol. 2, 15.12 "Exception Intercepts"; the single-step trap is taken after exactly one
 * instruction, before any NMI or interrupt, APM Vol. 2, 8.5 "Exception and Interrupt
 * Priorities"). For the length of a step:
 *  - TF is set; whether the guest had it set itself is kept, and the single-step #DB the
 *    guest asked for is handed back to it exactly once, with DR6.BS. DR6 is put back as
 *    it was, so the hypervisor's own trap leaves no trace in it.
 *  - Every exception is intercepted. If the instruction faults (say a #PF on the other
 *    operand of a MOVS), the step is undone first, then the exception is delivered with
 *    its error code (EXITINFO1) and, for #PF, CR2 = EXITINFO2 (an intercepted #PF does
 *    not write CR2). An exception the hypervisor always intercepts (#UD: VMCALL) goes to
 *    its usual handler; #BP/#OF are left to run again natively.
 *  - Physical interrupts are held off by V_INTR_MASKING (15.21.1 "Physical Interrupt
 *    Masking"): with it set, the guest's RFLAGS.IF masks only virtual interrupts and
 *    physical ones are masked by the host's IF, which is 0 in this hypervisor. So the
 *    guest's RFLAGS.IF is never touched, and an interrupt that arrives during the step
 *    stays pending in the APIC and is taken by the guest afterwards under its own IF:
 *    all the guest could observe is one instruction of extra latency. (The VMCB
 *    interrupt shadow would do the same, but it is not specified whether real parts
 *    treat it like a MOV SS shadow, which also delays the single-step trap.) The INTR
 *    intercept backs it up: Bochs 3.0 masks physical interrupts under V_INTR_MASKING
 *    only while the guest's IF is clear, and one taken before the stepped instruction
 *    ran its handler against the capture page, whose EOI was then lost (the vector
 *    stayed in service for good). With the intercept it exits instead and the step is
 *    undone, as the TF step on Intel does.
 *  - NMIs are intercepted at all times (below).
 *
 * NMIs. The NMI intercept only makes an NMI exit the guest: the NMI itself stays pending
 * (GIF is 0 after #VMEXIT) until the host sets GIF, and then the host's NMI handler
 * (exceptions.c) counts it in pcpu->nmi_host. svm-entry.S opens GIF for that once per
 * entry (STGI; CLGI), so an NMI that arrived in the guest, during a step or in the host is
 * counted exactly once; one that arrives after the CLGI exits the guest straight away
 * and is counted on the next round. svm_nmi_prepare then owes it to the guest and
 * injects one when the guest can take it: not during a step, not while the guest's NMI
 * handler runs (from the injection to its IRET, found with the IRET intercept and the
 * IRET itself single-stepped, because NMIs are unblocked only once it has completed),
 * not over another injected event, and not in an interrupt shadow (then one instruction
 * is stepped first). The IRET is stepped only when an NMI is owed before it has run;
 * otherwise it runs natively (one exit per NMI, not three).
 *
 * TLB: a step removes the page again and asks for a TLB flush at the next VMRUN. Only
 * this CPU's tables ever mapped it, so only its TLB can hold the translation. Flush by
 * ASID where CPUID says so, else flush-all (QEMU TCG implements only that encoding). */
#include "apic.h"
#include "gwalk.h"
#include "msr.h"
#include "svm-x86svm.h"

#define DR6_BS       (1ull << 14)   /* single-step */
#define DR6_BN       0xfull         /* B0-B3: breakpoint conditions met */
#define EXC_ALL      0xffffffffu

static const char *const g_step_method = "RFLAGS.TF + #DB";   /* SVM has no monitor trap flag */

static uint8_t tlb_flush_code(const struct svm_cpu *s)
{
    return (s->feat.edx & SVM_FEAT_FLUSH_BY_ASID) ? SVM_TLB_FLUSH_ASID : SVM_TLB_FLUSH_ALL;
}

/* Called by each CPU before its guest's first entry: the capture page and the CPU's own
 * nested-page root with its APIC page left out. */
void svm_smpg_cpu_setup(struct pcpu *c)
{
    struct svm_cpu *s = svm_of(c);
    apic_capture_init(&s->cap, c);
    svm_npt_private_init(c, apic_guest_page());
    if (c->is_bsp)
        printk("xmhf: xAPIC page read-only in per-CPU NPT roots, writes stepped with %s "
               "against a capture page\n", g_step_method);
}

/* ---- the step ---- */

static void step_begin(struct svm_cpu *s, enum svm_step kind)
{
    struct vmcb *vm = s->vmcb;
    s->step = kind;
    s->step_rip = vm->save.rip;
    s->step_rsp = vm->save.rsp;
    s->step_guest_tf = vm->save.rflags & RFLAGS_TF;
    s->step_dr6 = vm->save.dr6;
    vm->save.dr6 &= ~(DR6_BS | DR6_BN);    /* so that what the step sets is new */
    s->saved_exc = vm->ctl.intercept_exc;
    s->saved_int1 = vm->ctl.intercept1;
    s->saved_vintr = vm->ctl.vintr;
    vm->ctl.intercept_exc = EXC_ALL;
    s->saved_int2 = vm->ctl.intercept2;
    if (kind == STEP_WINDOW) {
        /* Instructions that would show the guest our TF, and HLT/MWAIT: the window
         * steps one instruction out of an interrupt shadow and holds no interrupts
         * (V_INTR_MASKING would leave a HLT there deaf to everything but NMIs, and
         * turn a MOV to CR8 into a write of V_TPR that is then lost). */
        vm->ctl.intercept1 |= SVM_INTERCEPT_PUSHF | SVM_INTERCEPT_POPF |
                              SVM_INTERCEPT_IRET | SVM_INTERCEPT_INTN | SVM_INTERCEPT_HLT;
        vm->ctl.intercept2 |= SVM_INTERCEPT_MWAIT | SVM_INTERCEPT_MWAIT_ARMED;
    } else {
        /* The INTR intercept as well: where a processor lets a physical interrupt in
         * despite V_INTR_MASKING (Bochs 3.0 masks them only while the guest's IF is
         * clear), it exits before the instruction instead, and the step is undone so
         * that the guest takes the interrupt first. Where the masking holds, it never
         * fires. (STEP_APIC_EVENT: no trap ends that step, a physical interrupt will.) */
        vm->ctl.vintr |= SVM_VINTR_MASKING;
        vm->ctl.intercept1 |= SVM_INTERCEPT_INTR;
    }
    if (kind != STEP_APIC_EVENT)
        vm->save.rflags |= RFLAGS_TF;
    s->step_tr = vm->save.tr;
    s->step_cr3 = vm->save.cr3;
}

/* The stepped instruction switched tasks (an IRET with NT, a JMP or CALL to a TSS in an
 * interrupt shadow): the processor saved the old task's EFLAGS, with the step's TF, in
 * the old TSS, where the next switch back would load it. The guest's own TF aside, it
 * is cleared there (32-bit TSS: EFLAGS at 24h; 16-bit: FLAGS at 10h; SDM Vol. 3A 8.2.1),
 * through the old task's page tables. */
static void step_untrace_old_task(struct svm_cpu *s)
{
    struct vmcb *vm = s->vmcb;
    unsigned type = s->step_tr.attrib & 0xf;
    uint64_t la = s->step_tr.base + ((type & 8) ? 0x24 : 0x10), gpa;
    struct gwalk g = { vm->save.cr0, s->step_cr3, vm->save.cr4, vm->save.efer,
                       svm_gpa_read, NULL, NULL };
    uint8_t fl;
    if (gwalk_translate(&g, (la + 1) & 0xffffffffull, &gpa) == 0 &&
        guest_phys_read(gpa, &fl, 1) == 0) {
        fl &= (uint8_t)~(RFLAGS_TF >> 8);
        guest_phys_write(gpa, &fl, 1);
    }
}

/* A PUSHF stepped with the hypervisor's TF pushed that TF: out of the image again
 * (apicstep.h), before the commit. VMCB attributes: L is bit 9, D/B bit 10. */
static void step_untrace_pushf(struct svm_cpu *s)
{
    struct vmcb *vm = s->vmcb;
    struct gwalk g = { .cr0 = vm->save.cr0, .cr3 = vm->save.cr3, .cr4 = vm->save.cr4,
                       .efer = vm->save.efer, .read = svm_gpa_read };
    struct apic_step_regs r = {
        .cs_base = vm->save.cs.base, .rip = s->step_rip,
        .ss_base = vm->save.ss.base, .rsp_before = s->step_rsp, .rsp_after = vm->save.rsp,
        .long64 = (vm->save.efer & EFER_LMA) && (vm->save.cs.attrib & (1u << 9)),
        .stack32 = vm->save.ss.attrib & (1u << 10),
    };
    apic_step_untrace_pushf(&s->cap, s->apic_gpa, &g, &r);
}

/* Undoes what step_begin changed. `executed`: the instruction completed. An IRET that
 * completed loaded RFLAGS from the guest's stack, TF included: that TF is the guest's. */
static void step_end(struct svm_cpu *s, bool executed)
{
    struct vmcb *vm = s->vmcb;
    if (s->step == STEP_APIC || s->step == STEP_APIC_EVENT) {
        svm_npt_apic_entry(s, APIC_MAP_GUARD);
        vm->ctl.tlb_control = tlb_flush_code(s);
        if (!executed)
            apic_capture_discard(&s->cap);
    }
    vm->ctl.intercept_exc = s->saved_exc;
    vm->ctl.intercept1 = s->saved_int1;
    vm->ctl.intercept2 = s->saved_int2;
    vm->ctl.vintr = s->saved_vintr;
    if (!s->step_guest_tf && !(s->step == STEP_IRET && executed) && s->step != STEP_APIC_EVENT)
        vm->save.rflags &= ~RFLAGS_TF;
    if (executed && !s->step_guest_tf && vm->save.tr.sel != s->step_tr.sel)
        step_untrace_old_task(s);
    vm->save.dr6 = s->step_dr6;
    if (s->step == STEP_IRET && !executed) {
        s->nmi_blocked = true;                      /* the handler has not returned */
        vm->ctl.intercept1 |= SVM_INTERCEPT_IRET;
    }
    s->step = STEP_NONE;
}

/* The #NPF on this CPU's APIC page (a write: the page is readable): begin the step.
 * false when gpa is not that page. The read-only translation may be cached, so the TLB
 * is flushed on the way in too (the APM does not say that a #NPF drops it). */
bool svm_smpg_apic_trap(struct vcpu *v, uint64_t gpa, uint64_t err)
{
    struct svm_cpu *s = svm_of(v->cpu);
    (void)err;
    if (!s->apic_gpa || (gpa & ~0xfffull) != s->apic_gpa)
        return false;
    /* The real registers are read into the capture page only for an instruction that
     * may read them: each read is an emulated MMIO access under QEMU TCG, and a plain
     * MOV store (Linux's EOI) reads nothing. */
    struct vmcb *vm = s->vmcb;
    uint8_t b[4];
    bool long64 = (vm->save.efer & EFER_LMA) && (vm->save.cs.attrib & (1u << 9));
    bool plain = svm_guest_read_linear(v, svm_guest_cs_linear(v, vm->save.rip), b,
                                       sizeof(b)) == 0 &&
                 apic_insn_is_plain_store(b, sizeof(b), long64);
    apic_capture_fill(&s->cap, v->cpu, (uint32_t)gpa, v->regs, !plain);
    svm_npt_apic_entry(s, APIC_MAP_CAPTURE);
    s->vmcb->ctl.tlb_control = tlb_flush_code(s);
    /* A write made by delivering an event (its stack or IDT entry on the page), which
     * the exit handler injects again: TF would be pushed into the guest's frame and
     * cleared by the delivery, so the step lasts until the next exit instead. */
    step_begin(s, (s->vmcb->ctl.exitintinfo & SVM_EVT_VALID) ? STEP_APIC_EVENT : STEP_APIC);
    return true;
}

/* The guest's IRET while its NMI handler runs (the IRET intercept is checked before the
 * instruction executes): NMIs become deliverable once it has completed. With no NMI
 * owed it simply runs; only its address is kept, so that an NMI arriving before it has
 * run is injected after it (the IRET is stepped then, svm_nmi_prepare). With one owed,
 * it is stepped now. */
void svm_smpg_iret(struct vcpu *v)
{
    struct svm_cpu *s = svm_of(v->cpu);
    s->vmcb->ctl.intercept1 &= ~SVM_INTERCEPT_IRET;
    s->nmi_blocked = false;
    s->nmi_iret_armed = true;
    s->nmi_iret_rip = s->vmcb->save.rip;
    if (v->cpu->nmi_pending || __atomic_load_n(&v->cpu->nmi_host, __ATOMIC_SEQ_CST))
        step_begin(s, STEP_IRET);
}

/* The #DB that ends a step, or a debug condition of the guest's own in the stepped
 * instruction (data breakpoint). What belongs to the guest goes back to it as one #DB
 * with those DR6 bits. */
static void step_debug(struct vcpu *v, struct svm_cpu *s)
{
    struct vmcb *vm = s->vmcb;
    uint64_t dr6 = vm->save.dr6;
    /* A REP string iteration leaves RIP where it was; Bochs does not set DR6.BS for an
     * intercepted #DB, so the string registers tell. */
    bool executed = (dr6 & DR6_BS) || vm->save.rip != s->step_rip ||
                    (s->step == STEP_APIC && apic_capture_string_moved(&s->cap, v->regs));
    uint64_t guest = dr6 & DR6_BN;
    if (executed && s->step_guest_tf)
        guest |= DR6_BS;
    enum svm_step kind = s->step;
    uint64_t dr6_before = s->step_dr6;
    step_end(s, executed);
    if (guest) {
        vm->save.dr6 = dr6_before | guest;
        arch_guest_inject_exception(v, EXC_DB, false, 0);
    }
    if (!executed) {
        v->cpu->stats[STAT_STEPS_CANCELLED]++;
        return;
    }
    if (kind == STEP_APIC) {
        if (!s->step_guest_tf)
            step_untrace_pushf(s);
        apic_capture_commit(v, &s->cap);
    } else if (kind == STEP_IRET) {
        s->nmi_iret_armed = false;
    }
}

/* An exception raised by the stepped instruction (the step is undone before anything
 * else), 15.12: EXITINFO1 holds the error code, EXITINFO2 the #PF address, which
 * becomes the guest's CR2 (through svm_guest_set_cr2: Bochs 3.0's VMRUN does not load
 * CR2 from the VMCB). */
static bool step_exception(struct vcpu *v, struct svm_cpu *s, unsigned vec)
{
    struct vmcb *vm = s->vmcb;
    bool hv_own = s->saved_exc & (1u << vec);
    enum svm_step kind = s->step;
    step_end(s, false);
    if (hv_own || vec == EXC_BP || vec == EXC_OF) {
        /* The hypervisor's own intercept (VMCALL's #UD) takes it as usual; INT3/INTO
         * raise theirs again when the guest re-executes them without the step. */
        v->cpu->stats[STAT_STEPS_CANCELLED]++;
        if (kind == STEP_WINDOW)
            s->nmi_force = true;
        return !hv_own;
    }
    v->cpu->stats[STAT_STEPS_FAULTED]++;
    if (vec == EXC_PF)
        svm_guest_set_cr2(v, vm->ctl.exitinfo2);
    arch_guest_inject_exception(v, vec, exc_has_errcode(vec), (uint32_t)vm->ctl.exitinfo1);
    return true;
}

/* Every exit while a step is armed comes here first. true: fully handled; false: the
 * step is over (undone) and the exit goes through the normal dispatch. */
/* The exit that ends a STEP_APIC_EVENT: the event was delivered unless this exit
 * interrupted its delivery again. An exception the handler raised goes to the guest
 * (or to the hypervisor's own intercept), an interrupt stays pending for the guest. */
static bool event_step_exit(struct vcpu *v, struct svm_cpu *s, uint64_t code)
{
    struct vmcb *vm = s->vmcb;
    bool delivered = !(vm->ctl.exitintinfo & SVM_EVT_VALID);
    uint32_t saved_exc = s->saved_exc;
    step_end(s, delivered);
    if (delivered)
        apic_capture_commit(v, &s->cap);
    if (code == SVM_EXIT_INTR || code == SVM_EXIT_NMI)
        return true;
    if (code >= SVM_EXIT_EXCP(0) && code < SVM_EXIT_EXCP(32)) {
        unsigned vec = (unsigned)(code - SVM_EXIT_EXCP(0));
        if (saved_exc & (1u << vec))
            return false;
        if (vec == EXC_PF)
            svm_guest_set_cr2(v, vm->ctl.exitinfo2);
        arch_guest_inject_exception(v, vec, exc_has_errcode(vec), (uint32_t)vm->ctl.exitinfo1);
        return true;
    }
    return false;
}

bool svm_smpg_step_exit(struct vcpu *v, uint64_t code)
{
    struct svm_cpu *s = svm_of(v->cpu);
    if (s->step == STEP_APIC_EVENT)
        return event_step_exit(v, s, code);
    if (code == SVM_EXIT_NMI)
        return true;    /* the instruction has not run; the NMI is counted by the host */
    if (code == SVM_EXIT_INTR) {
        /* Before the instruction (see step_begin): undone; the guest takes the
         * interrupt, and the instruction is stepped again when it runs. */
        step_end(s, false);
        v->cpu->stats[STAT_STEPS_CANCELLED]++;
        return true;
    }
    if (code == SVM_EXIT_EXCP(EXC_DB)) {
        step_debug(v, s);
        return true;
    }
    if (code >= SVM_EXIT_EXCP(0) && code < SVM_EXIT_EXCP(32))
        return step_exception(v, s, (unsigned)(code - SVM_EXIT_EXCP(0)));
    enum svm_step kind = s->step;
    step_end(s, false);
    v->cpu->stats[STAT_STEPS_CANCELLED]++;
    if (kind == STEP_WINDOW && (code == SVM_EXIT_PUSHF || code == SVM_EXIT_POPF ||
                                code == SVM_EXIT_IRET || code == SVM_EXIT_SWINT)) {
        s->nmi_force = true;    /* the NMI goes first; the instruction runs natively after */
        return true;
    }
    if (kind == STEP_WINDOW && (code == SVM_EXIT_HLT || code == SVM_EXIT_MWAIT ||
                                code == SVM_EXIT_MWAIT_COND)) {
        /* The shadowed instruction halts (STI; HLT in an idle loop): the owed NMI is
         * what wakes it, so it completes and the NMI is delivered after it, as on the
         * hardware. */
        svm_skip_instruction(v, code == SVM_EXIT_HLT ? 1 : 3);
        s->nmi_force = true;
        return true;
    }
    /* Anything else (an #NPF on the other operand, an intercepted instruction): the
     * instruction did not complete and is handled as without a step. */
    return false;
}

/* ---- IA32_APIC_BASE and the x2APIC ICR (MSR permission map: writes only) ---- */

void svm_smpg_apic_base_write(struct vcpu *v, uint64_t val)
{
    struct svm_cpu *s = svm_of(v->cpu);
    if (apic_base_write(v->cpu, val) != 0) {
        arch_guest_inject_exception(v, EXC_GP, true, 0);
        return;
    }
    uint64_t page = apic_guest_page();
    if (page != s->apic_gpa) {
        svm_npt_retarget(v->cpu, page);
        s->vmcb->ctl.tlb_control = tlb_flush_code(s);
    }
    svm_skip_instruction(v, 2);                     /* 0f 30 */
}

void svm_smpg_x2apic_icr_write(struct vcpu *v, uint64_t val)
{
    if (apic_x2apic_icr_write(v, val) != 0)
        arch_guest_inject_exception(v, EXC_GP, true, 0);
    else
        svm_skip_instruction(v, 2);
}

/* ---- NMI delivery, before every VMRUN (svm-entry.S, GIF = 0) ---- */

void svm_nmi_prepare(struct pcpu *c)
{
    struct svm_cpu *s = svm_of(c);
    struct vmcb *vm = s->vmcb;
    if (c->init_request) {
        /* INIT from another CPU (smpguest.c): a step in progress is abandoned with its
         * mapping, the NMI bookkeeping goes, and the VMCB is written afresh at the
         * restart. GIF opens first: the parked CPU is woken by NMIs. */
        if (s->step != STEP_NONE)
            step_end(s, false);
        s->nmi_blocked = s->nmi_force = s->nmi_iret_armed = false;
        __asm__ volatile("stgi" ::: "memory");
        smpg_guest_init(c);
    }
    c->nmi_pending += __atomic_exchange_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    /* While the guest's NMIs are blocked (or one is being injected) at most one more
     * stays pending; otherwise one is delivered and one can wait (SDM 6.7.1, APM 8.5). */
    bool nmi_going = (vm->ctl.eventinj & (SVM_EVT_VALID | SVM_EVT_TYPE_MASK)) ==
                     (SVM_EVT_VALID | SVM_EVT_TYPE_NMI);
    uint64_t cap = s->nmi_blocked || nmi_going ? 1 : 2;
    if (c->nmi_pending > cap)
        c->nmi_pending = cap;
    if (!c->nmi_pending || s->step != STEP_NONE || s->nmi_blocked ||
        (vm->ctl.eventinj & SVM_EVT_VALID))
        return;     /* later: after the step, at the IRET, or at the next exit */
    if (s->nmi_iret_armed && s->nmi_iret_rip == vm->save.rip) {
        step_begin(s, STEP_IRET);   /* still at the handler's IRET: after it, not before */
        return;
    }
    if ((vm->ctl.int_state & SVM_INT_SHADOW) && !s->nmi_force) {
        step_begin(s, STEP_WINDOW);
        return;
    }
    vm->ctl.eventinj = SVM_EVT_VALID | SVM_EVT_TYPE_NMI | EXC_NMI;
    c->nmi_pending--;
    c->stats[STAT_NMIS_DELIVERED]++;
    s->nmi_blocked = true;
    s->nmi_force = false;
    s->nmi_iret_armed = false;
    vm->ctl.intercept1 |= SVM_INTERCEPT_IRET;
}

/* ---- APs ---- */

__noreturn void arch_launch_ap_guest(struct pcpu *c, uint32_t sipi_vector)
{
    printk("xmhf: CPU %u: guest started at %04x:0000\n", c->idx, sipi_vector << 8);
    svm_launch_guest(c, (uint16_t)(sipi_vector << 8), 0);
}

/* apic=zeroexit is refused on AMD (svm-x86svm.c: SVM has no wait-for-SIPI activity
 * state and no SIPI intercept), so no CPU reaches this. */
__noreturn void arch_launch_ap_wait_sipi(struct pcpu *c)
{
    panic("CPU %u: apic=zeroexit on SVM (refused at bring-up)", c->idx);
}
