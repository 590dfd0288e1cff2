/* The partition event handler: every VM exit enters vmx_exit_handler, which counts it
 * and dispatches through one table indexed by the basic exit reason (SDM Vol. 3D
 * appendix C). Each handler is small; an exit without a handler is reported clearly and
 * stops that CPU rather than guessing. */
#include "apic.h"
#include "msr.h"
#include "vmx-x86vmx.h"
#include "xmhf-hypapp.h"

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
    guest_cpuid(v, vmreadN(VMCS_GUEST_CR4));
    vmx_skip_instruction(v);
}

static void exit_vmcall(struct vcpu *v)
{
    if (hypercall_instruction(v, !(vmreadN(VMCS_GUEST_CR0) & CR0_PE)))
        vmx_skip_instruction(v);
}

/* The guest's PDPTEs for PAE paging without IA-32e mode: loaded by the processor on its
 * own MOV to CR, but not when the hypervisor performs the write (SDM 26.3.1.6). */
static void load_pdptes(uint64_t cr3)
{
    uint64_t pdpte[4] = { 0, 0, 0, 0 };
    guest_phys_read(cr3 & 0xffffffe0ull, pdpte, sizeof(pdpte));
    vmwrite64(VMCS_GUEST_PDPTE0, pdpte[0]);
    vmwrite64(VMCS_GUEST_PDPTE1, pdpte[1]);
    vmwrite64(VMCS_GUEST_PDPTE2, pdpte[2]);
    vmwrite64(VMCS_GUEST_PDPTE3, pdpte[3]);
}

static void after_paging_change(struct vmx_cpu *x, uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if ((cr0 & CR0_PG) && (cr4 & CR4_PAE) && !(efer & EFER_LMA))
        load_pdptes(vmreadN(VMCS_GUEST_CR3));
    x->entry = (efer & EFER_LMA) ? x->entry | ENTRY_IA32E_GUEST : x->entry & ~ENTRY_IA32E_GUEST;
    vmwrite32(VMCS_ENTRY_CTLS, x->entry);
}

/* MOV to CR0 that touches a bit VMX forces (NE): emulated with the checks the processor
 * makes (SDM Vol. 3A 2.5, Vol. 2B MOV to CR0 #GP conditions), including entering and
 * leaving IA-32e mode as the processor does on the guest's own write. */
static bool guest_write_cr0(struct vcpu *v, uint64_t val)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    uint64_t old = vmreadN(VMCS_GUEST_CR0), cr4 = vmreadN(VMCS_GUEST_CR4);
    uint64_t efer = vmread64(VMCS_GUEST_EFER);
    if ((val >> 32) || ((val & CR0_PG) && !(val & CR0_PE)) || ((val & CR0_NW) && !(val & CR0_CD)))
        return false;
    if ((val & CR0_PG) && !(old & CR0_PG) && (efer & EFER_LME)) {
        if (!(cr4 & CR4_PAE))
            return false;
        efer |= EFER_LMA;
    } else if (!(val & CR0_PG) && (old & CR0_PG) && (efer & EFER_LMA)) {
        efer &= ~EFER_LMA;
    }
    uint64_t real = (val | x->cr0_guest_fixed0) & x->cr0_fixed1;
    vmwriteN(VMCS_CR0_SHADOW, val);
    vmwriteN(VMCS_GUEST_CR0, real);
    vmwrite64(VMCS_GUEST_EFER, efer);
    after_paging_change(x, real, cr4, efer);
    return true;
}

/* MOV to CR4 that touches VMXE or a reserved bit: the guest sees no VMX (CPUID), so
 * setting VMXE is a reserved-bit #GP as on a processor without it. */
static bool guest_write_cr4(struct vcpu *v, uint64_t val)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    uint64_t efer = vmread64(VMCS_GUEST_EFER);
    if ((val & CR4_VMXE) || (val & ~(x->cr4_fixed1 | x->cr4_fixed0)) ||
        ((efer & EFER_LMA) && !(val & CR4_PAE)))
        return false;
    uint64_t real = (val | x->cr4_fixed0) & x->cr4_fixed1;
    vmwriteN(VMCS_CR4_SHADOW, val);
    vmwriteN(VMCS_GUEST_CR4, real);
    after_paging_change(x, vmreadN(VMCS_GUEST_CR0), real, efer);
    return true;
}

/* 27.2.1 table 27-3: exit qualification of control-register accesses. */
/* CR3 accesses exit only where the processor cannot turn CR3-load/store exiting off (no
 * TRUE capability MSRs): performed as the instruction would. MOV to CR3 loads the PAE
 * PDPTEs itself on hardware, so here too. */
static void guest_cr3_access(struct vcpu *v, unsigned type, unsigned reg, uint64_t val)
{
    if (type == 1) {
        uint64_t cr3 = vmreadN(VMCS_GUEST_CR3);
        if (reg == R_SP)
            vmwriteN(VMCS_GUEST_RSP, cr3);
        else
            v->regs->r[reg] = cr3;
    } else {
        vmwriteN(VMCS_GUEST_CR3, val);
        after_paging_change(vmx_of(v->cpu), vmreadN(VMCS_GUEST_CR0), vmreadN(VMCS_GUEST_CR4),
                            vmread64(VMCS_GUEST_EFER));
    }
    vmx_skip_instruction(v);
}

static void exit_cr_access(struct vcpu *v)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    unsigned cr = q & 15, type = (q >> 4) & 3, reg = (q >> 8) & 15;
    uint64_t val = reg == R_SP ? vmreadN(VMCS_GUEST_RSP) : v->regs->r[reg];
    bool mode64 = (vmread64(VMCS_GUEST_EFER) & EFER_LMA) && (vmread32(VMCS_GUEST_CS_AR) & AR_L);
    if (!mode64)
        val &= 0xffffffffull;   /* outside 64-bit mode only the low half is written */
    if (cr == 3 && type <= 1) {
        guest_cr3_access(v, type, reg, val);
        return;
    }
    if (type != 0 || (cr != 0 && cr != 4))
        panic("CPU %u: unexpected control-register exit, qualification %llx", v->cpu->idx,
              (unsigned long long)q);
    if (cr == 0 ? guest_write_cr0(v, val) : guest_write_cr4(v, val))
        vmx_skip_instruction(v);
    else
        arch_guest_inject_exception(v, EXC_GP, true, 0);
}

/* Only MSRs outside the bitmap's ranges exit (24.6.9): performed on the guest's behalf,
 * a fault becomes the guest's #GP as on hardware. */
static void exit_rdmsr(struct vcpu *v)
{
    uint64_t *r = v->regs->r;
    int fault;
    uint64_t val = rdmsr_safe(v->cpu, (uint32_t)r[R_CX], &fault);
    if (fault) {
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
    if (msr == MSR_IA32_APIC_BASE) {
        vmx_smpg_apic_base_write(v, val);
        return;
    }
    if (msr == X2APIC_MSR(APIC_ICR_LO)) {
        vmx_smpg_x2apic_icr_write(v, val);
        return;
    }
    if (wrmsr_safe(v->cpu, msr, val) != 0)
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

/* 27.2.1 table 27-7. Accesses to the hypervisor's region never complete. */
static void exit_ept_violation(struct vcpu *v)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    uint64_t gpa = vmread64(VMCS_GUEST_PHYS_ADDR);
    if (vmx_smpg_apic_trap(v, gpa, q))
        return;
    if (gpa_in_hypervisor(gpa, 1)) {
        /* "NMI unblocking due to IRET" (bit 12): the faulting IRET will run again, so NMI
         * blocking is restored as it was before it (27.2.3). */
        if ((q & (1ull << 12)) && !(vmread32(VMCS_IDT_VECTORING_INFO) & INTR_INFO_VALID))
            vmwrite32(VMCS_GUEST_INTERRUPTIBILITY,
                      vmread32(VMCS_GUEST_INTERRUPTIBILITY) | INTERRUPTIBILITY_NMI);
        uint32_t access = ((q & EPTV_READ) ? APP_ACCESS_READ : 0) |
                          ((q & EPTV_WRITE) ? APP_ACCESS_WRITE : 0) |
                          ((q & EPTV_FETCH) ? APP_ACCESS_EXEC : 0);
        hypervisor_memory_violation(v, gpa, access);
        return;
    }
    if (vmx_ept_map_lazy(gpa) != 0)
        panic("CPU %u: EPT violation at guest-physical %llx (qualification %llx, rip %llx)",
              v->cpu->idx, (unsigned long long)gpa, (unsigned long long)q,
              (unsigned long long)vmreadN(VMCS_GUEST_RIP));
}

static void exit_ept_misconfig(struct vcpu *v)
{
    panic("CPU %u: EPT misconfiguration at guest-physical %llx", v->cpu->idx,
          (unsigned long long)vmread64(VMCS_GUEST_PHYS_ADDR));
}

static void exit_triple_fault(struct vcpu *v)
{
    guest_reset(v, "triple fault");
}

/* A physical INIT while the guest runs. The guest's own INITs never reach the hardware
 * (smpguest.c handles them), and the hypervisor sends none after boot, so this is a
 * stray one (another agent on the bus); the guest keeps running. Said once per CPU:
 * Bochs 2.7 leaves the INIT pending after the exit (DESIGN.md section 6), which would
 * otherwise repeat the line forever. */
static void exit_init(struct vcpu *v)
{
    if (!v->cpu->stats[STAT_STRAY_INIT]++)
        printk("xmhf: CPU %u: INIT signal while the guest runs: ignored\n", v->cpu->idx);
}

/* An NMI exit (pin-based NMI exiting): the NMI is the guest's, owed to it. The exit
 * leaves physical NMIs blocked until the host executes IRET; an IRET to the next
 * instruction reopens them at once, so a second NMI is not held up until the next
 * exit. Any other exception exit outside a step is not expected. */
static void exit_exception_nmi(struct vcpu *v)
{
    uint32_t info = vmread32(VMCS_EXIT_INTR_INFO);
    if ((info & (7u << 8)) != INTR_TYPE_NMI)
        panic("CPU %u: unexpected exception exit, vector %u, guest rip %llx", v->cpu->idx,
              info & 0xff, (unsigned long long)vmreadN(VMCS_GUEST_RIP));
    v->cpu->nmi_pending++;
    __asm__ volatile("mov %%rsp, %%rax\n\t"
                     "pushq $0x10\n\tpushq %%rax\n\tpushfq\n\tpushq $0x08\n\t"
                     "lea 1f(%%rip), %%rax\n\tpushq %%rax\n\tiretq\n1:" ::: "rax", "memory");
}

/* NMI-window exit: the guest can take an NMI now; vmx_nmi_prepare injects it. */
static void exit_nmi_window(struct vcpu *v)
{
    (void)v;
}

static const exit_handler_t exit_table[EXIT_REASON_COUNT] = {
    [EXIT_EXCEPTION_NMI] = exit_exception_nmi,
    [EXIT_NMI_WINDOW] = exit_nmi_window,
    [EXIT_TRIPLE_FAULT] = exit_triple_fault,
    [EXIT_INIT] = exit_init,
    [EXIT_CPUID] = exit_cpuid,
    [EXIT_GETSEC] = inject_ud,
    [EXIT_INVD] = exit_invd,
    [EXIT_VMCALL] = exit_vmcall,
    /* The guest sees no VMX: its VMX instructions are undefined opcodes to it. */
    [EXIT_VMCLEAR] = inject_ud, [EXIT_VMLAUNCH] = inject_ud, [EXIT_VMPTRLD] = inject_ud,
    [EXIT_VMPTRST] = inject_ud, [EXIT_VMREAD] = inject_ud, [EXIT_VMRESUME] = inject_ud,
    [EXIT_VMWRITE] = inject_ud, [EXIT_VMXOFF] = inject_ud, [EXIT_VMXON] = inject_ud,
    [EXIT_INVEPT] = inject_ud, [EXIT_INVVPID] = inject_ud, [EXIT_VMFUNC] = inject_ud,
    [EXIT_CR_ACCESS] = exit_cr_access,
    [EXIT_RDMSR] = exit_rdmsr,
    [EXIT_WRMSR] = exit_wrmsr,
    [EXIT_EPT_VIOLATION] = exit_ept_violation,
    [EXIT_EPT_MISCONFIG] = exit_ept_misconfig,
    [EXIT_XSETBV] = exit_xsetbv,
};

static __noreturn void exit_unhandled(struct pcpu *c, uint32_t reason)
{
    panic("CPU %u: unhandled VM exit, reason %u%s, qualification %llx, guest rip %llx cr0 %llx",
          c->idx, reason & 0xffff, (reason & EXIT_REASON_ENTRY_FAIL) ? " (VM entry failed)" : "",
          (unsigned long long)vmreadN(VMCS_EXIT_QUALIFICATION),
          (unsigned long long)vmreadN(VMCS_GUEST_RIP), (unsigned long long)vmreadN(VMCS_GUEST_CR0));
}

void vmx_exit_handler(struct pcpu *c, struct gregs *g)
{
    struct vcpu v = { c, g };
    uint32_t reason = vmread32(VMCS_EXIT_REASON);
    uint32_t basic = reason & 0xffff;
    c->exits_total++;
    c->exits[basic < EXIT_STAT_SLOTS ? basic : EXIT_STAT_SLOTS - 1]++;
    if (reason & EXIT_REASON_ENTRY_FAIL)
        exit_unhandled(c, reason);
    /* An exit in the middle of delivering an event (27.2.4): unless the handler injects
     * something of its own, the event is delivered again on entry. */
    uint32_t vec = vmread32(VMCS_IDT_VECTORING_INFO);
    if (vmx_of(c)->stepping && vmx_smpg_step_exit(&v, basic))
        ;   /* the step's own exits: MTF, #DB, exceptions, interrupts */
    else if (basic < EXIT_REASON_COUNT && exit_table[basic])
        exit_table[basic](&v);
    else
        exit_unhandled(c, reason);
    if ((vec & INTR_INFO_VALID) && !event_pending()) {
        vmwrite32(VMCS_ENTRY_INTR_INFO, vec & ~(1u << 12));
        if (vec & INTR_INFO_ERRCODE)
            vmwrite32(VMCS_ENTRY_EXC_ERRCODE, vmread32(VMCS_IDT_VECTORING_ERRCODE));
        vmwrite32(VMCS_ENTRY_INSTR_LEN, vmread32(VMCS_EXIT_INSTR_LEN));
    }
    vmx_nmi_prepare(c);
}
