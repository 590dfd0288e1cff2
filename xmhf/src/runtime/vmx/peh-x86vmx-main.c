/* The partition event handler: every VM exit enters vmx_exit_handler, which counts it
 * and dispatches through one table indexed by the basic exit reason (SDM Vol. 3D
 * appendix C). Every reason has a defined outcome: a handler (here or in
 * emul-x86vmx.c), an exception the processor would give, or, for an exit no control of
 * this hypervisor asks for, one log line and a reset of the guest. Nothing a guest does
 * stops the hypervisor. */
#include "dmap.h"
#include "apic.h"
#include "msr.h"
#include "vmx-x86vmx.h"
#include "hypapp-dispatch.h"

typedef void (*exit_handler_t)(struct vcpu *v);

static void inject_ud(struct vcpu *v)
{
    arch_guest_inject_exception(v, EXC_UD, false, 0);
}

#define event_pending vmx_event_pending

/* 27.1 / C: CPUID always exits in VMX non-root operation; the guest sees the processor
 * without VMX (guest_cpuid in cpuid.c). */
static void exit_cpuid(struct vcpu *v)
{
    bool skip = true;
    if (!hypapp_cpuid(v, &skip))
        guest_cpuid(v, vmreadN(VMCS_GUEST_CR4));
    if (skip)
        vmx_skip_instruction(v);
}

static void exit_vmcall(struct vcpu *v)
{
    if (hypercall_instruction(v, !(vmreadN(VMCS_GUEST_CR0) & CR0_PE)))
        vmx_skip_instruction(v);
}

/* MSRs the bitmap intercepts (guestmsr.c answers them) and those outside its ranges
 * exit (24.6.9): performed on the guest's behalf unless guestmsr.c answers, a fault
 * becomes the guest's #GP as on hardware. */
static void exit_rdmsr(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    int fault = 0;
    bool skip;
    if (hypapp_msr(v, false, &skip)) {     /* a hypapp's MSR (hypapp.c) */
        if (skip)
            vmx_skip_instruction(v);
        return;
    }
    uint64_t val = 0;
    enum msr_outcome o = guest_msr_read(v, (uint32_t)r[R_CX], &val);
    if (o == MSR_PASS)
        val = rdmsr_safe(v->cpu, (uint32_t)r[R_CX], &fault);
    if (fault || o == MSR_GP) {
        arch_guest_inject_exception(v, EXC_GP, true, 0);
        return;
    }
    r[R_AX] = (uint32_t)val;
    r[R_DX] = val >> 32;
    vmx_skip_instruction(v);
}

static void exit_wrmsr(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint64_t val = (r[R_DX] << 32) | (uint32_t)r[R_AX];
    uint32_t msr = (uint32_t)r[R_CX];
    bool skip;
    if (hypapp_msr(v, true, &skip)) {      /* a hypapp's MSR (hypapp.c) */
        if (skip)
            vmx_skip_instruction(v);
        return;
    }
    if (msr == MSR_IA32_APIC_BASE) {
        vmx_smpg_apic_base_write(v, val);
        return;
    }
    if (msr == X2APIC_MSR(APIC_ICR_LO)) {
        vmx_smpg_x2apic_icr_write(v, val);
        return;
    }
    enum msr_outcome o = guest_msr_write(v, msr, val);
    if (o == MSR_GP || (o == MSR_PASS && wrmsr_safe(v->cpu, msr, val) != 0))
        arch_guest_inject_exception(v, EXC_GP, true, 0);
    else
        vmx_skip_instruction(v);
}

/* XSETBV always exits; XCR0 is not switched by VMX, so the guest's value is the value. */
static void exit_xsetbv(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    uint64_t val = (r[R_DX] << 32) | (uint32_t)r[R_AX];
    if (arch_guest_cpl(v) != 0 || xsetbv_safe(v->cpu, (uint32_t)r[R_CX], val) != 0)
        arch_guest_inject_exception(v, EXC_GP, true, 0);
    else
        vmx_skip_instruction(v);
}

static void exit_invd(struct vcpu *v)
{
    /* INVD would drop the hypervisor's dirty lines too; WBINVD is the safe superset. */
    __asm__ volatile("wbinvd" ::: "memory");
    vmx_skip_instruction(v);
}

/* A page a hypapp protected (guestmem.c). 27.2.1 table 27-7: bit 7 says the linear
 * address is valid, bit 8 (with it) that the access was the instruction's own rather
 * than the processor's walk of the guest's page tables. As for the hypervisor's region,
 * an IRET that faulted here runs again, so its NMI unblocking is undone (27.2.3). */
static bool guest_page_violation(struct vcpu *v, uint64_t gpa, uint64_t q)
{
    struct app_memfault f = {
        .gpa = gpa,
        .access = (q & EPTV_WRITE) ? APP_ACCESS_WRITE : (q & EPTV_FETCH) ? APP_ACCESS_EXEC
                                                                      : APP_ACCESS_READ,
        .gla_valid = (q >> 7) & 1,
        .paging_walk = ((q >> 7) & 1) && !((q >> 8) & 1),
    };
    if (f.gla_valid)
        f.gla = vmreadN(VMCS_GUEST_LINEAR_ADDR);
    if (!guestmem_violation(v, &f))
        return false;
    if ((q & (1ull << 12)) && !(vmread32(VMCS_IDT_VECTORING_INFO) & INTR_INFO_VALID))
        vmwrite32(VMCS_GUEST_INTERRUPTIBILITY,
                  vmread32(VMCS_GUEST_INTERRUPTIBILITY) | INTERRUPTIBILITY_NMI);
    return true;
}

/* 27.2.1 table 27-7. Accesses to the hypervisor's region never complete; nor do those
 * above what the EPT can map (at or above MAXPHYADDR or 2^48): the guest gets #GP(0)
 * and the log a line, as for the region (hypervisor_memory_violation). */
static void exit_ept_violation(struct vcpu *v)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    uint64_t gpa = vmread64(VMCS_GUEST_PHYS_ADDR);
    if (vmx_smpg_apic_trap(v, gpa, q))
        return;
    bool ours = gpa_in_hypervisor(gpa, 1);
    if (!ours && guest_page_violation(v, gpa, q))
        return;
    if (!ours && vmx_ept_map_lazy(gpa) == 0)
        return;
    /* "NMI unblocking due to IRET" (bit 12): the faulting IRET will run again, so NMI
     * blocking is restored as it was before it (27.2.3). */
    if ((q & (1ull << 12)) && !(vmread32(VMCS_IDT_VECTORING_INFO) & INTR_INFO_VALID))
        vmwrite32(VMCS_GUEST_INTERRUPTIBILITY,
                  vmread32(VMCS_GUEST_INTERRUPTIBILITY) | INTERRUPTIBILITY_NMI);
    if (!ours) {
        printk("xmhf: CPU %u: guest access to guest-physical %llx, beyond what the EPT "
               "maps (rip %llx): #GP injected\n", v->cpu->idx, (unsigned long long)gpa,
               (unsigned long long)vmreadN(VMCS_GUEST_RIP));
        arch_guest_inject_exception(v, EXC_GP, true, 0);
        return;
    }
    uint32_t access = ((q & EPTV_READ) ? APP_ACCESS_READ : 0) |
                      ((q & EPTV_WRITE) ? APP_ACCESS_WRITE : 0) |
                      ((q & EPTV_FETCH) ? APP_ACCESS_EXEC : 0);
    hypervisor_memory_violation(v, gpa, access);
}

/* An EPT entry the processor finds invalid: the hypervisor built it, so its state is
 * no longer trustworthy for this guest. */
static void exit_ept_misconfig(struct vcpu *v)
{
    printk("xmhf: CPU %u: EPT misconfiguration at guest-physical %llx\n", v->cpu->idx,
           (unsigned long long)vmread64(VMCS_GUEST_PHYS_ADDR));
    guest_reset(v, "EPT misconfiguration");
}

static void exit_triple_fault(struct vcpu *v)
{
    guest_reset(v, "triple fault");
}

/* A physical INIT while the guest runs (INIT exit, SDM 25.2): whoever sent it (the
 * guest through its I/O APIC, an MSI or its LINT pins; another agent), it is this CPU's
 * INIT, as on the hardware: the guest CPU goes to wait-for-SIPI (the BSP to the reset
 * vector) before its next entry (smpguest.c). */
static void exit_init(struct vcpu *v)
{
    if (apic_zeroexit()) {
        /* apic=zeroexit: the guest's INIT IPIs reach the hardware, so this is this
         * CPU's INIT (CPU offline/online, kexec, any other sender): back into
         * wait-for-SIPI in a fresh VMCS (smpguest.c).
         * An INIT that reaches a guest in wait-for-SIPI is blocked there (SDM 25.2,
         * 26.6.2) and held until the guest is next entered active: the INIT of the
         * guest's INIT-STARTUP-STARTUP (Linux's first start of each AP, which was
         * parked in wait-for-SIPI) then exits at the first entry after the STARTUP
         * started the CPU, which would throw the started CPU back (and the second
         * STARTUP may find it still in the hypervisor, where STARTUPs are ignored). An
         * INIT exit before the started CPU's first instruction (sipi_guard: MTF armed
         * by the start) is therefore taken as the INIT that came before the STARTUP,
         * and the start stands; a genuine INIT in the few hundred instructions between
         * the SIPI exit and the CPU's first instruction counts as if it had come just
         * before the STARTUP. */
        struct vmx_cpu *x = vmx_of(v->cpu);
        if (x->sipi_guard)
            return;
        /* Without MTF the same INIT shows as an INIT exit before any other since the
         * start, at the start's CS:IP - and so does Bochs 2.7's INIT that stays pending
         * after its exit (DESIGN.md section 6), which exits again at every entry. Only
         * performing the INIT clears that one (restart-x86vmx.c); a held INIT of the
         * first kind is consumed by the same restart, so both end with the start
         * standing. */
        if (x->sipi_fresh && vmreadN(VMCS_GUEST_RIP) == 0 &&
            vmreadN(VMCS_GUEST_CS_BASE) == (uint64_t)v->cpu->sipi_vector << 12) {
            x->sipi_fresh = false;
            vmx_restart_through_init(v->cpu);   /* returns only if it cannot */
        }
        /* The BSP restarts at the reset vector, and its INIT that stays pending exits
         * again before the first instruction there, for ever; the BSP cannot be
         * restarted through INIT (restart-x86vmx.c). A guest may send it a few INITs in
         * a row; 64 with no instruction between are the INIT that stays. */
        if (v->cpu->is_bsp && vmreadN(VMCS_GUEST_RIP) == 0xfff0 &&
            vmreadN(VMCS_GUEST_CS_BASE) == 0xffff0000ull && ++x->reset_inits == 64) {
            __atomic_store_n(&v->cpu->guest_state, GUEST_CPU_RESET, __ATOMIC_SEQ_CST);
            smp_hold_cpu(v->cpu, "its INIT stays pending after the INIT exit (Bochs 2.7), "
                         "and outside VMX operation it would run the firmware's reset code "
                         "unsupervised: the guest's BSP cannot run again");
        }
        v->cpu->stats[STAT_INIT_SIPI]++;
        smpg_guest_init(v->cpu);
    }
    smpg_physical_init(v->cpu);
}

/* An NMI exit (pin-based NMI exiting): the NMI is the guest's, owed to it. The exit
 * leaves physical NMIs blocked until the host executes IRET; an IRET to the next
 * instruction reopens them at once, so a second NMI is not held up until the next
 * exit. An exception exit outside a step goes back to the guest unchanged. */
static void exit_exception_nmi(struct vcpu *v)
{
    uint32_t info = vmread32(VMCS_EXIT_INTR_INFO);
    if ((info & INTR_TYPE_MASK) != INTR_TYPE_NMI) {
        vmx_reflect_exception(v, info);
        return;
    }
    if (!nmi_kick_taken(v->cpu))    /* else another CPU's flush request (guestmem.c) */
        v->cpu->nmi_pending++;
    __asm__ volatile("mov %%rsp, %%rax\n\t"
                     "pushq $0x10\n\tpushq %%rax\n\tpushfq\n\tpushq $0x08\n\t"
                     "lea 1f(%%rip), %%rax\n\tpushq %%rax\n\tiretq\n1:" ::: "rax", "memory");
}

/* Exits that need nothing done: the guest resumes where it was.
 *   NMI window       vmx_nmi_prepare injects the owed NMI before the entry;
 *   external intr.   only in a TF step (smpg-x86vmx.c); outside one the interrupt is
 *                    still pending ("acknowledge on exit" is off) and the guest takes it;
 *   SIPI             only in the wait-for-SIPI activity state, which only apic=zeroexit
 *                    gives a guest CPU (exit_sipi);
 *   I/O SMI, SMI     only under the dual-monitor SMM treatment, never activated;
 *   TPR below threshold, virtualized EOI, APIC write, bus lock: trap-like, after the
 *                    instruction completed, for controls never set;
 *   preemption timer only while the guest's APIC is globally disabled (the kick
 *                    timer, vmx_kick_timer): the end of the handler serves the kick. */
static void exit_resume(struct vcpu *v)
{
    (void)v;
}

/* A STARTUP to a CPU whose guest waits for one (apic=zeroexit): vmx-x86vmx.c starts it. */
static void exit_sipi(struct vcpu *v)
{
    if (apic_zeroexit())
        vmx_zeroexit_sipi(v);
}

/* Window or MTF exits whose control is on without a reason (no NMI owed, no step):
 * the control goes off again, so the exit does not repeat. */
static void exit_intr_window(struct vcpu *v)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    x->proc &= ~PROC_INTR_WINDOW;
    vmx_write_proc(x);
}

static void exit_mtf(struct vcpu *v)
{
    vmx_write_proc(vmx_of(v->cpu));     /* MTF only while x->stepping */
}

/* Instructions whose exit means "performed": the guest continues after them.
 *   INVLPG    without VPIDs every VM entry flushes the guest's translations anyway;
 *   PAUSE, MONITOR, MWAIT   a hint, an address to watch, and a wait that may end at
 *             any time (SDM Vol. 2B MWAIT) - nothing the guest can rely on is lost. */
static void exit_skip(struct vcpu *v)
{
    vmx_skip_instruction(v);
}

static void exit_wbinvd(struct vcpu *v)
{
    __asm__ volatile("wbinvd" ::: "memory");
    vmx_skip_instruction(v);
}

/* Instruction-timeout (notify window) exit: bit 12 of the qualification says the VM
 * context is no longer valid, and the guest cannot continue; otherwise it can. */
static void exit_notify(struct vcpu *v)
{
    if (vmreadN(VMCS_EXIT_QUALIFICATION) & (1ull << 12))
        guest_reset(v, "instruction timeout with an invalid VM context");
}

/* VM-entry failures (26.7, 26.8, 26.9): the guest state the hypervisor left cannot be
 * entered, so the guest cannot go on; the line names the reason. */
static void exit_entry_failed(struct vcpu *v)
{
    printk("xmhf: CPU %u: VM entry failed, exit reason %x, qualification %llx\n",
           v->cpu->idx, vmread32(VMCS_EXIT_REASON),
           (unsigned long long)vmreadN(VMCS_EXIT_QUALIFICATION));
    guest_reset(v, "VM-entry failure");
}

struct exit_entry {
    exit_handler_t fn;
    const char *name;
};

/* Every basic exit reason of SDM Vol. 3D appendix C. A reason whose entry has no
 * handler can only come from a control this hypervisor never sets (PML, SPP, APIC
 * virtualisation, descriptor-table exiting, XSS bitmap bits, RDPMC exiting, ...) or
 * from an unassigned number: exit_unexpected resets the guest with one line naming it.
 * Instructions the guest has no right to (VMX, SMX, SGX, PCONFIG, user wait, TDX) get
 * #UD, which is what the processor gives where the feature is absent or not enabled. */
static const struct exit_entry exit_table[EXIT_REASON_COUNT] = {
    [EXIT_EXCEPTION_NMI] = { exit_exception_nmi, "exception or NMI" },
    [EXIT_EXTINT] = { exit_resume, "external interrupt" },
    [EXIT_TRIPLE_FAULT] = { exit_triple_fault, "triple fault" },
    [EXIT_INIT] = { exit_init, "INIT signal" },
    [EXIT_SIPI] = { exit_sipi, "SIPI" },
    [EXIT_IO_SMI] = { exit_resume, "I/O SMI" },
    [EXIT_OTHER_SMI] = { exit_resume, "other SMI" },
    [EXIT_INTR_WINDOW] = { exit_intr_window, "interrupt window" },
    [EXIT_NMI_WINDOW] = { exit_resume, "NMI window" },
    [EXIT_TASK_SWITCH] = { vmx_exit_task_switch, "task switch" },
    [EXIT_CPUID] = { exit_cpuid, "CPUID" },
    [EXIT_GETSEC] = { inject_ud, "GETSEC" },
    [EXIT_HLT] = { vmx_exit_hlt, "HLT" },
    [EXIT_INVD] = { exit_invd, "INVD" },
    [EXIT_INVLPG] = { exit_skip, "INVLPG" },
    [EXIT_RDPMC] = { NULL, "RDPMC" },
    [EXIT_RDTSC] = { vmx_exit_rdtsc, "RDTSC" },
    [EXIT_RSM] = { inject_ud, "RSM" },      /* outside SMM: #UD */
    [EXIT_VMCALL] = { exit_vmcall, "VMCALL" },
    [EXIT_VMCLEAR] = { inject_ud, "VMCLEAR" },
    [EXIT_VMLAUNCH] = { inject_ud, "VMLAUNCH" },
    [EXIT_VMPTRLD] = { inject_ud, "VMPTRLD" },
    [EXIT_VMPTRST] = { inject_ud, "VMPTRST" },
    [EXIT_VMREAD] = { inject_ud, "VMREAD" },
    [EXIT_VMRESUME] = { inject_ud, "VMRESUME" },
    [EXIT_VMWRITE] = { inject_ud, "VMWRITE" },
    [EXIT_VMXOFF] = { inject_ud, "VMXOFF" },
    [EXIT_VMXON] = { inject_ud, "VMXON" },
    [EXIT_CR_ACCESS] = { vmx_exit_cr_access, "control-register access" },
    [EXIT_DR_ACCESS] = { vmx_exit_dr_access, "MOV DR" },
    [EXIT_IO] = { vmx_exit_io, "I/O instruction" },
    [EXIT_RDMSR] = { exit_rdmsr, "RDMSR" },
    [EXIT_WRMSR] = { exit_wrmsr, "WRMSR" },
    [EXIT_ENTRY_BAD_GUEST] = { exit_entry_failed, "VM-entry failure (invalid guest state)" },
    [EXIT_ENTRY_BAD_MSR] = { exit_entry_failed, "VM-entry failure (MSR loading)" },
    [EXIT_MWAIT] = { exit_skip, "MWAIT" },
    [EXIT_MTF] = { exit_mtf, "monitor trap flag" },
    [EXIT_MONITOR] = { exit_skip, "MONITOR" },
    [EXIT_PAUSE] = { exit_skip, "PAUSE" },
    [EXIT_ENTRY_MCE] = { exit_entry_failed, "VM-entry failure (machine-check event)" },
    [EXIT_TPR] = { exit_resume, "TPR below threshold" },
    [EXIT_APIC_ACCESS] = { NULL, "APIC access" },
    [EXIT_EOI] = { exit_resume, "virtualized EOI" },
    [EXIT_GDTR_IDTR] = { NULL, "GDTR/IDTR access" },
    [EXIT_LDTR_TR] = { NULL, "LDTR/TR access" },
    [EXIT_EPT_VIOLATION] = { exit_ept_violation, "EPT violation" },
    [EXIT_EPT_MISCONFIG] = { exit_ept_misconfig, "EPT misconfiguration" },
    [EXIT_INVEPT] = { inject_ud, "INVEPT" },
    [EXIT_RDTSCP] = { vmx_exit_rdtscp, "RDTSCP" },
    [EXIT_PREEMPT_TIMER] = { exit_resume, "VMX-preemption timer" },
    [EXIT_INVVPID] = { inject_ud, "INVVPID" },
    [EXIT_WBINVD] = { exit_wbinvd, "WBINVD" },
    [EXIT_XSETBV] = { exit_xsetbv, "XSETBV" },
    [EXIT_APIC_WRITE] = { exit_resume, "APIC write" },
    [EXIT_RDRAND] = { vmx_exit_rdrand, "RDRAND" },
    [EXIT_INVPCID] = { vmx_exit_invpcid, "INVPCID" },
    [EXIT_VMFUNC] = { inject_ud, "VMFUNC" },
    [EXIT_ENCLS] = { inject_ud, "ENCLS" },
    [EXIT_RDSEED] = { vmx_exit_rdrand, "RDSEED" },
    [EXIT_PML_FULL] = { NULL, "page-modification log full" },
    [EXIT_XSAVES] = { NULL, "XSAVES" },
    [EXIT_XRSTORS] = { NULL, "XRSTORS" },
    [EXIT_PCONFIG] = { inject_ud, "PCONFIG" },
    [EXIT_SPP] = { NULL, "SPP-related event" },
    [EXIT_UMWAIT] = { inject_ud, "UMWAIT" },
    [EXIT_TPAUSE] = { inject_ud, "TPAUSE" },
    [EXIT_LOADIWKEY] = { NULL, "LOADIWKEY" },
    [EXIT_ENCLV] = { inject_ud, "ENCLV" },
    [EXIT_ENQCMD_PASID] = { NULL, "ENQCMD PASID translation failure" },
    [EXIT_ENQCMDS_PASID] = { NULL, "ENQCMDS PASID translation failure" },
    [EXIT_BUS_LOCK] = { exit_resume, "bus lock" },
    [EXIT_NOTIFY] = { exit_notify, "instruction timeout" },
    [EXIT_SEAMCALL] = { inject_ud, "SEAMCALL" },
    [EXIT_TDCALL] = { inject_ud, "TDCALL" },
    [EXIT_RDMSRLIST] = { NULL, "RDMSRLIST" },
    [EXIT_WRMSRLIST] = { NULL, "WRMSRLIST" },
};

/* The default: an exit no control here asks for. Its guest cannot be continued
 * correctly, and the hypervisor must not stop: one line, then the guest's reset. */
static void exit_unexpected(struct vcpu *v, uint32_t reason)
{
    uint32_t basic = reason & 0xffff;
    const char *name = basic < EXIT_REASON_COUNT && exit_table[basic].name ?
                       exit_table[basic].name : "unassigned";
    printk("xmhf: CPU %u: unexpected VM exit %u (%s), qualification %llx, guest rip %llx "
           "cr0 %llx\n", v->cpu->idx, basic, name,
           (unsigned long long)vmreadN(VMCS_EXIT_QUALIFICATION),
           (unsigned long long)vmreadN(VMCS_GUEST_RIP), (unsigned long long)vmreadN(VMCS_GUEST_CR0));
    guest_reset(v, "caused an unexpected VM exit");
}

void vmx_exit_handler(struct pcpu *c, struct gregs *g)
{
    struct vcpu v = { c, g };
    uint32_t reason = vmread32(VMCS_EXIT_REASON);
    uint32_t basic = reason & 0xffff;
    c->exits_total++;
    dmap_poll(false);       /* IOMMU faults into the log, at most every few ms */
    c->exits[basic < EXIT_STAT_SLOTS ? basic : EXIT_STAT_SLOTS - 1]++;
    /* Not at an INIT exit: with apic=zeroexit the guest's STARTUP follows within
     * microseconds and must find the CPU back in wait-for-SIPI (the next line has it). */
    if (basic != EXIT_INIT)
        exit_log(c);
    if (reason & EXIT_REASON_ENTRY_FAIL)
        exit_entry_failed(&v);
    /* An exit in the middle of delivering an event (27.2.4): unless the handler injects
     * something of its own, the event is delivered again on entry. */
    uint32_t vec = vmread32(VMCS_IDT_VECTORING_INFO);
    if (basic != EXIT_INIT) {
        vmx_of(c)->sipi_fresh = false;
        vmx_of(c)->reset_inits = 0;
    }
    if (vmx_of(c)->sipi_guard && basic != EXIT_INIT) {
        /* The started CPU got past its entry (apic=zeroexit, exit_init). */
        vmx_of(c)->sipi_guard = false;
        vmx_write_proc(vmx_of(c));
    }
    vmx_of(c)->vectoring_done = false;
    if (vmx_of(c)->stepping && vmx_smpg_step_exit(&v, basic))
        ;   /* the step's own exits: MTF, #DB, exceptions, interrupts */
    else if (basic < EXIT_REASON_COUNT && exit_table[basic].fn)
        exit_table[basic].fn(&v);
    else
        exit_unexpected(&v, reason);
    if ((vec & INTR_INFO_VALID) && !event_pending() && !vmx_of(c)->vectoring_done) {
        vmwrite32(VMCS_ENTRY_INTR_INFO, vec & ~(1u << 12));
        if (vec & INTR_INFO_ERRCODE)
            vmwrite32(VMCS_ENTRY_EXC_ERRCODE, vmread32(VMCS_IDT_VECTORING_ERRCODE));
        vmwrite32(VMCS_ENTRY_INSTR_LEN, vmread32(VMCS_EXIT_INSTR_LEN));
    }
    vmx_world_gate(c);
    vmx_kick_timer(c);
    guestmem_tlb_sync(c);
    vmx_ept_types_flush(vmx_of(c));
    vmx_nmi_prepare(c);
}
