/* The partition event handler: every #VMEXIT enters svm_exit_handler, which counts it
 * and dispatches through one table indexed by the exit code (AMD APM Vol. 2, appendix C
 * "SVM Intercept Exit Codes"). Each handler is small; an exit without a handler is
 * reported clearly and stops that CPU rather than guessing. Exception intercepts have
 * one slot per vector (SVM_EXIT_EXCP(v)), so the single-step #DB of the guest-SMP stage
 * is one more entry. */
#include "apic.h"
#include "msr.h"
#include "svm-x86svm.h"
#include "xmhf-hypapp.h"


typedef void (*exit_handler_t)(struct vcpu *v);

static void inject_ud(struct vcpu *v)
{
    arch_guest_inject_exception(v, EXC_UD, false, 0);
}

static void inject_gp0(struct vcpu *v)
{
    arch_guest_inject_exception(v, EXC_GP, true, 0);
}

/* CPUID is intercepted (vector 3 bit 18) so that the guest sees the processor without
 * SVM (guest_cpuid in cpuid.c). */
static void exit_cpuid(struct vcpu *v)
{
    guest_cpuid(v, vmcb_of(v)->save.cr4);
    svm_skip_instruction(v, 2);                     /* 0f a2 */
}

/* The hypercall instruction (3 bytes: VMMCALL 0f 01 d9, or VMCALL 0f 01 c1 through
 * #UD): the INT 15h E820 stub's, else a hypercall for common code. */
static void hypercall_insn(struct vcpu *v)
{
    if (hypercall_instruction(v, !(vmcb_of(v)->save.cr0 & CR0_PE)))
        svm_skip_instruction(v, 3);
}

/* #UD (exception intercept, 15.12 "Exception Intercepts"): Intel's VMCALL is an
 * undefined opcode on AMD. Guests written for the Intel convention (and the E820 stub)
 * execute it, so it is taken as the hypercall instruction, as VMMCALL is; every other
 * #UD goes back to the guest unchanged. The bytes are fetched through the guest's page
 * tables: without decode assists the processor does not supply them. */
static void exit_excp_ud(struct vcpu *v)
{
    static const uint8_t vmcall[3] = { 0x0f, 0x01, 0xc1 };
    uint8_t b[3];
    uint64_t lin = svm_guest_cs_linear(v, vmcb_of(v)->save.rip);
    if (svm_guest_read_linear(v, lin, b, sizeof(b)) == 0 && memcmp(b, vmcall, 3) == 0)
        hypercall_insn(v);
    else
        inject_ud(v);
}

/* MSR accesses that exit: those the permission map intercepts (EFER, VM_CR,
 * VM_HSAVE_PA; see svm-x86svm.c) and those outside the map's ranges, which always exit
 * (15.11). EXITINFO1 is 0 for RDMSR, 1 for WRMSR. The guest sees a processor without
 * SVM: EFER.SVME reads as 0 and setting it is a reserved-bit #GP; VM_CR and
 * VM_HSAVE_PA do not exist for it. */
static bool guest_write_efer(struct vcpu *v, uint64_t val)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t cur = vm->save.efer;
    if (val & ~(svm_of(v->cpu)->efer_allowed | EFER_LMA))
        return false;
    /* Changing LME while paging is on is a #GP (APM Vol. 2, 14.6.1 "Activating and
     * Deactivating Long Mode"). LMA is the processor's: a write leaves it as it is. */
    if ((vm->save.cr0 & CR0_PG) && ((val ^ cur) & EFER_LME))
        return false;
    vm->save.efer = (val & ~EFER_LMA) | (cur & EFER_LMA) | MSR_EFER_SVME;
    return true;
}

static void exit_msr(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint32_t msr = (uint32_t)r[R_CX];
    bool write = vmcb_of(v)->ctl.exitinfo1 & 1;
    uint64_t val = (r[R_DX] << 32) | (uint32_t)r[R_AX];
    bool ok;
    if (write && msr == MSR_IA32_APIC_BASE) {
        svm_smpg_apic_base_write(v, val);
        return;
    }
    if (write && msr == X2APIC_MSR(APIC_ICR_LO)) {
        svm_smpg_x2apic_icr_write(v, val);
        return;
    }
    if (msr == MSR_VM_CR || msr == MSR_VM_HSAVE_PA) {
        ok = false;
    } else if (msr == MSR_IA32_EFER) {
        if (write) {
            ok = guest_write_efer(v, val);
        } else {
            val = vmcb_of(v)->save.efer & ~MSR_EFER_SVME;
            ok = true;
        }
    } else if (write) {
        ok = wrmsr_safe(v->cpu, msr, val) == 0;
    } else {
        int fault;
        val = rdmsr_safe(v->cpu, msr, &fault);
        ok = !fault;
    }
    if (!ok) {
        inject_gp0(v);
        return;
    }
    if (!write) {
        r[R_AX] = (uint32_t)val;
        r[R_DX] = val >> 32;
    }
    svm_skip_instruction(v, 2);                     /* 0f 32 / 0f 30 */
}

static void exit_vmmcall(struct vcpu *v)
{
    hypercall_insn(v);
}

static void exit_invd(struct vcpu *v)
{
    /* INVD would drop the hypervisor's dirty lines too; WBINVD is the safe superset. */
    __asm__ volatile("wbinvd" ::: "memory");
    svm_skip_instruction(v, 2);                     /* 0f 08 */
}

/* #NPF (15.25.6): EXITINFO1 is a page-fault error code, EXITINFO2 the guest-physical
 * address. The APIC page begins a step; accesses to the hypervisor's region never
 * complete. */
static void exit_npf(struct vcpu *v)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t err = vm->ctl.exitinfo1, gpa = vm->ctl.exitinfo2;
    if (svm_smpg_apic_trap(v, gpa, err))
        return;
    if (gpa_in_hypervisor(gpa, 1)) {
        uint32_t access = (err & SVM_NPF_WRITE) ? APP_ACCESS_WRITE :
                          (err & SVM_NPF_FETCH) ? APP_ACCESS_EXEC : APP_ACCESS_READ;
        hypervisor_memory_violation(v, gpa, access);
        return;
    }
    if ((err & SVM_NPF_P) || svm_npt_map_lazy(gpa) != 0)
        panic("CPU %u: nested page fault at guest-physical %llx (error code %llx, rip %llx)",
              v->cpu->idx, (unsigned long long)gpa, (unsigned long long)err,
              (unsigned long long)vm->save.rip);
}

/* A shutdown condition (triple fault, 15.13 "Miscellaneous Intercepts"). */
static void exit_shutdown(struct vcpu *v)
{
    guest_reset(v, "triple fault (shutdown)");
}

/* An NMI exited the guest (NMI intercept). Nothing to do here: the NMI is still
 * pending and is taken by the host's handler when svm-entry.S opens GIF, which counts
 * it once; svm_nmi_prepare injects it when the guest can take it. */
static void exit_nmi(struct vcpu *v)
{
    (void)v;
}

static const exit_handler_t exit_table[SVM_EXIT_CODE_COUNT] = {
    [SVM_EXIT_NMI] = exit_nmi,
    [SVM_EXIT_IRET] = svm_smpg_iret,
    [SVM_EXIT_EXCP(EXC_UD)] = exit_excp_ud,
    [SVM_EXIT_CPUID] = exit_cpuid,
    [SVM_EXIT_INVD] = exit_invd,
    [SVM_EXIT_MSR] = exit_msr,
    [SVM_EXIT_SHUTDOWN] = exit_shutdown,
    [SVM_EXIT_VMMCALL] = exit_vmmcall,
    /* The guest sees no SVM: its SVM instructions are undefined opcodes to it. */
    [SVM_EXIT_VMRUN] = inject_ud, [SVM_EXIT_VMLOAD] = inject_ud, [SVM_EXIT_VMSAVE] = inject_ud,
    [SVM_EXIT_STGI] = inject_ud, [SVM_EXIT_CLGI] = inject_ud, [SVM_EXIT_SKINIT] = inject_ud,
    [SVM_EXIT_INVLPGA] = inject_ud,
    [SVM_EXIT_NPF] = exit_npf,
};

static __noreturn void exit_unhandled(struct pcpu *c, struct vmcb *vm)
{
    uint64_t code = vm->ctl.exitcode;
    panic("CPU %u: unhandled #VMEXIT, exit code %#llx%s, exitinfo1 %llx exitinfo2 %llx, "
          "guest rip %llx cr0 %llx efer %llx", c->idx, (unsigned long long)code,
          code == SVM_EXIT_INVALID ? " (VMRUN: illegal guest state in the VMCB)" : "",
          (unsigned long long)vm->ctl.exitinfo1, (unsigned long long)vm->ctl.exitinfo2,
          (unsigned long long)vm->save.rip, (unsigned long long)vm->save.cr0,
          (unsigned long long)vm->save.efer);
}

/* Exit statistics: the slots of struct pcpu are fewer than the exit codes, so they are
 * folded: 0-63 the codes 0x60-0x9f (instruction and event intercepts), 64 exceptions,
 * 65 #NPF, 66 CR/DR accesses, 71 anything else. */
static unsigned stat_slot(uint64_t code)
{
    if (code >= 0x60 && code < 0xa0)
        return (unsigned)(code - 0x60);
    if (code >= 0x40 && code < 0x60)
        return 64;
    if (code == SVM_EXIT_NPF)
        return 65;
    if (code < 0x40)
        return 66;
    return EXIT_STAT_SLOTS - 1;
}
_Static_assert(EXIT_STAT_SLOTS >= 72, "SVM exit statistics use 72 slots");

/* An event whose delivery the exit interrupted (EXITINTINFO, 15.7.2 "Intercepts During
 * IDT Interrupt Delivery") is delivered again on entry unless the handler injected
 * something of its own. Software interrupts and INT3/INTO are not re-injected: the
 * guest's RIP is still at their instruction, which raises them again. */
static void reinject_interrupted_event(struct vmcb *vm, uint64_t info)
{
    uint64_t type = info & SVM_EVT_TYPE_MASK, vec = info & SVM_EVT_VECTOR_MASK;
    if (!(info & SVM_EVT_VALID) || (vm->ctl.eventinj & SVM_EVT_VALID))
        return;
    if (type == SVM_EVT_TYPE_SOFTINT ||
        (type == SVM_EVT_TYPE_EXCEPTION && (vec == EXC_BP || vec == EXC_OF)))
        return;
    vm->ctl.eventinj = info;
}

void svm_exit_handler(struct pcpu *c, struct gregs *g)
{
    struct vcpu v = { c, g };
    struct vmcb *vm = svm_of(c)->vmcb;
    uint64_t code = vm->ctl.exitcode;
    g->r[R_AX] = vm->save.rax;
    /* Whatever the last VMRUN injected was delivered, or it is in EXITINTINFO now. */
    vm->ctl.eventinj = 0;
    vm->ctl.tlb_control = SVM_TLB_FLUSH_NOTHING;
    c->exits_total++;
    c->exits[stat_slot(code)]++;
    if (code >= SVM_EXIT_CODE_COUNT)
        exit_unhandled(c, vm);
    uint64_t info = vm->ctl.exitintinfo;
    /* A step in progress sees every exit first (its #DB, exceptions, NMIs). */
    if (svm_of(c)->step == STEP_NONE || !svm_smpg_step_exit(&v, code)) {
        if (!exit_table[code])
            exit_unhandled(c, vm);
        exit_table[code](&v);
    }
    reinject_interrupted_event(vm, info);
    vm->save.rax = g->r[R_AX];
}
