/* Instructions the hypervisor performs on the guest's behalf after a VM exit, each as
 * the processor would have (SDM Vol. 2 for the instruction, Vol. 3C 27.2.1 for the
 * exit qualification that describes it). Only control-register writes that touch a bit
 * VMX owns exit with this hypervisor's controls; the others here are the outcome of
 * exits whose controls are never set (HLT, MOV DR, I/O, RDTSC, RDTSCP, INVPCID) or
 * that always exit where the processor has the instruction (RDRAND/RDSEED exiting is
 * never set either): performing them keeps the guest running should a processor force
 * one of them on. */
#include "hypapp-dispatch.h"
#include "vmx-x86vmx.h"

/* The guest's PDPTEs for PAE paging without IA-32e mode: loaded by the processor on its
 * own MOV to CR, but not when the hypervisor performs the write (SDM 26.3.1.6). A present
 * PDPTE with a reserved bit (2:1, 8:5, MAXPHYADDR and up: SDM 4.4.1) is the #GP(0) of the
 * MOV (false here, nothing loaded), where VM entry would otherwise fail. */
static bool pdptes_valid(const uint64_t pdpte[4])
{
    unsigned bits = cpu_phys_bits();
    uint64_t reserved = 0x1e6ull | (bits < 64 ? ~0ull << bits : 0);
    for (unsigned i = 0; i < 4; i++)
        if ((pdpte[i] & 1) && (pdpte[i] & reserved))
            return false;
    return true;
}

static bool load_pdptes(uint64_t cr3)
{
    uint64_t pdpte[4] = { 0, 0, 0, 0 };
    guest_phys_read(cr3 & 0xffffffe0ull, pdpte, sizeof(pdpte));
    if (!pdptes_valid(pdpte))
        return false;
    vmwrite64(VMCS_GUEST_PDPTE0, pdpte[0]);
    vmwrite64(VMCS_GUEST_PDPTE1, pdpte[1]);
    vmwrite64(VMCS_GUEST_PDPTE2, pdpte[2]);
    vmwrite64(VMCS_GUEST_PDPTE3, pdpte[3]);
    return true;
}

/* Whether CR0/CR4 (with CR3 as it is) select PAE paging outside IA-32e mode, and if so
 * whether its PDPTEs may be loaded. */
static bool pae_pdptes_ok(uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if (!(cr0 & CR0_PG) || !(cr4 & CR4_PAE) || (efer & EFER_LMA))
        return true;
    uint64_t pdpte[4] = { 0, 0, 0, 0 };
    guest_phys_read(vmreadN(VMCS_GUEST_CR3) & 0xffffffe0ull, pdpte, sizeof(pdpte));
    return pdptes_valid(pdpte);
}

void vmx_after_paging_change(struct vmx_cpu *x, uint64_t cr0, uint64_t cr4, uint64_t efer)
{
    if ((cr0 & CR0_PG) && (cr4 & CR4_PAE) && !(efer & EFER_LMA))
        (void)load_pdptes(vmreadN(VMCS_GUEST_CR3));
    x->entry = (efer & EFER_LMA) ? x->entry | ENTRY_IA32E_GUEST : x->entry & ~ENTRY_IA32E_GUEST;
    vmwrite32(VMCS_ENTRY_CTLS, x->entry);
}

/* CR0 as the guest sees it: the bits VMX owns come from the read shadow. */
static uint64_t guest_view_cr0(void)
{
    uint64_t mask = vmreadN(VMCS_CR0_MASK);
    return (vmreadN(VMCS_GUEST_CR0) & ~mask) | (vmreadN(VMCS_CR0_SHADOW) & mask);
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
    /* Paging cannot be turned off in 64-bit mode or with PCIDE set, nor WP cleared with
     * CET on (SDM Vol. 2B MOV to CR #GP conditions); VM entry would fail instead. */
    if (!(val & CR0_PG) && (old & CR0_PG) && (vmx_guest_64bit() || (cr4 & CR4_PCIDE)))
        return false;
    if (!(val & CR0_WP) && (cr4 & CR4_CET))
        return false;
    if ((val & CR0_PG) && !(old & CR0_PG) && (efer & EFER_LME)) {
        /* IA-32e mode is activated only with PAE and from a CS without L. */
        if (!(cr4 & CR4_PAE) || (vmread32(VMCS_GUEST_CS_AR) & AR_L))
            return false;
        efer |= EFER_LMA;
    } else if (!(val & CR0_PG) && (old & CR0_PG) && (efer & EFER_LMA)) {
        efer &= ~EFER_LMA;
    }
    if (!pae_pdptes_ok(val, cr4, efer))
        return false;
    uint64_t real = (val | x->cr0_guest_fixed0) & x->cr0_fixed1;
    vmwriteN(VMCS_CR0_SHADOW, val);
    vmwriteN(VMCS_GUEST_CR0, real);
    vmwrite64(VMCS_GUEST_EFER, efer);
    vmx_after_paging_change(x, real, cr4, efer);
    return true;
}

/* MOV to CR4 that touches VMXE/SMXE or a reserved bit: the guest sees neither VMX nor
 * SMX (CPUID), so setting VMXE or SMXE is a reserved-bit #GP as on a processor without
 * them. */
static bool guest_write_cr4(struct vcpu *v, uint64_t val)
{
    struct vmx_cpu *x = vmx_of(v->cpu);
    uint64_t efer = vmread64(VMCS_GUEST_EFER);
    if ((val & (CR4_VMXE | CR4_SMXE)) || (val & ~(x->cr4_fixed1 | x->cr4_fixed0)) ||
        ((efer & EFER_LMA) && !(val & CR4_PAE)))
        return false;
    if (!pae_pdptes_ok(vmreadN(VMCS_GUEST_CR0), (val | x->cr4_fixed0) & x->cr4_fixed1, efer))
        return false;
    uint64_t real = (val | x->cr4_fixed0) & x->cr4_fixed1;
    vmwriteN(VMCS_CR4_SHADOW, val);
    vmwriteN(VMCS_GUEST_CR4, real);
    vmx_after_paging_change(x, vmreadN(VMCS_GUEST_CR0), real, efer);
    return true;
}

/* CR3 accesses exit only where the processor cannot turn CR3-load/store exiting off (no
 * TRUE capability MSRs): performed as the instruction would. MOV to CR3 loads the PAE
 * PDPTEs itself on hardware, so here too. */
static void guest_cr3_access(struct vcpu *v, unsigned type, unsigned reg, uint64_t val)
{
    if (type == CRQ_MOV_FROM) {
        vmx_set_gpr(v, reg, vmreadN(VMCS_GUEST_CR3));
    } else {
        uint64_t old = vmreadN(VMCS_GUEST_CR3);
        vmwriteN(VMCS_GUEST_CR3, val);
        uint64_t cr0 = vmreadN(VMCS_GUEST_CR0), cr4 = vmreadN(VMCS_GUEST_CR4);
        uint64_t efer = vmread64(VMCS_GUEST_EFER);
        if (!pae_pdptes_ok(cr0, cr4, efer)) {
            vmwriteN(VMCS_GUEST_CR3, old);
            arch_guest_inject_exception(v, EXC_GP, true, 0);
            return;
        }
        vmx_after_paging_change(vmx_of(v->cpu), cr0, cr4, efer);
    }
    vmx_skip_instruction(v);
}

/* CR8 (64-bit mode only) is the physical APIC's TPR, which is the guest's own: the
 * access exits only with CR8-load/store exiting, never set here. Bits 63:4 of a write
 * are reserved (#GP). */
static bool guest_cr8_access(struct vcpu *v, unsigned type, unsigned reg, uint64_t val)
{
    if (type == CRQ_MOV_FROM) {
        uint64_t cr8;
        __asm__ volatile("mov %%cr8, %0" : "=r"(cr8));
        vmx_set_gpr(v, reg, cr8);
        return true;
    }
    if (val >> 4)
        return false;
    __asm__ volatile("mov %0, %%cr8" :: "r"(val) : "memory");
    return true;
}

/* 27.2.1 table 27-3. MOV to CR0/CR4 exits for the bits in the guest/host masks; CLTS
 * and LMSW exit only where they would change such a bit (TS, or PE/MP/EM/TS), which
 * the masks here never hold, but they are performed the same way if they do. LMSW
 * cannot clear PE (SDM Vol. 2A LMSW). */
void vmx_exit_cr_access(struct vcpu *v)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    unsigned cr = q & 15, type = (q >> 4) & 3, reg = (q >> 8) & 15;
    uint64_t val = vmx_gpr(v, reg);
    if (!vmx_guest_64bit())
        val &= 0xffffffffull;   /* outside 64-bit mode only the low half is written */
    bool ok;
    if (type == CRQ_CLTS) {
        ok = guest_write_cr0(v, guest_view_cr0() & ~(uint64_t)CR0_TS);
    } else if (type == CRQ_LMSW) {
        uint64_t cr0 = guest_view_cr0(), src = (q >> 16) & 0xf;
        ok = guest_write_cr0(v, (cr0 & ~0xeull) | src | (cr0 & CR0_PE));
    } else if (cr == 3) {
        guest_cr3_access(v, type, reg, val);
        return;
    } else if (cr == 8) {
        ok = guest_cr8_access(v, type, reg, val);
    } else if (type == CRQ_MOV_TO && (cr == 0 || cr == 4)) {
        ok = cr == 0 ? guest_write_cr0(v, val) : guest_write_cr4(v, val);
    } else {
        /* MOV from CR0/CR4 never exits (the shadows answer): a processor that says so
         * gets the guest's view. */
        vmx_set_gpr(v, reg, cr == 0 ? guest_view_cr0() : vmreadN(VMCS_CR4_SHADOW));
        ok = true;
    }
    if (ok)
        vmx_skip_instruction(v);
    else
        arch_guest_inject_exception(v, EXC_GP, true, 0);
}

/* 27.2.1 table 27-4, MOV DR (exits only with MOV-DR exiting, never set). DR7 lives in
 * the VMCS (the "load/save debug controls" entry/exit controls are always 1), DR0-DR3
 * and DR6 are not switched by VMX: the processor's own are the guest's. The privilege,
 * CR4.DE and DR7.GD checks precede the exit; the processor already mapped DR4/DR5 to
 * DR6/DR7. A 64-bit write with bits 63:32 set to DR6 or DR7 is #GP(0). */
void vmx_exit_dr_access(struct vcpu *v)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    unsigned dr = q & 7, reg = (q >> 8) & 15;
    bool from = q & (1u << 4);
    if (dr == 4 || dr == 5)
        dr += 2;
    if (from) {
        uint64_t val = 0;
        switch (dr) {
        case 0: __asm__ volatile("mov %%dr0, %0" : "=r"(val)); break;
        case 1: __asm__ volatile("mov %%dr1, %0" : "=r"(val)); break;
        case 2: __asm__ volatile("mov %%dr2, %0" : "=r"(val)); break;
        case 3: __asm__ volatile("mov %%dr3, %0" : "=r"(val)); break;
        case 6: __asm__ volatile("mov %%dr6, %0" : "=r"(val)); break;
        default: val = vmreadN(VMCS_GUEST_DR7); break;
        }
        vmx_set_gpr(v, reg, vmx_guest_64bit() ? val : (uint32_t)val);
        vmx_skip_instruction(v);
        return;
    }
    uint64_t val = vmx_gpr(v, reg);
    if (!vmx_guest_64bit())
        val &= 0xffffffffull;
    if ((dr == 6 || dr == 7) && (val >> 32)) {
        arch_guest_inject_exception(v, EXC_GP, true, 0);
        return;
    }
    switch (dr) {
    case 0: __asm__ volatile("mov %0, %%dr0" :: "r"(val)); break;
    case 1: __asm__ volatile("mov %0, %%dr1" :: "r"(val)); break;
    case 2: __asm__ volatile("mov %0, %%dr2" :: "r"(val)); break;
    case 3: __asm__ volatile("mov %0, %%dr3" :: "r"(val)); break;
    case 6: __asm__ volatile("mov %0, %%dr6" :: "r"(val)); break;
    default: vmwriteN(VMCS_GUEST_DR7, (val & ~0xd000ull) | 0x400); break;
    }
    vmx_skip_instruction(v);
}

/* 27.2.1 table 27-5, I/O instructions. They exit only for the ports a hypapp asked for
 * (the I/O bitmaps; hypapp_io decides) and, with the bitmaps on, for an access that
 * wraps from port 0xffff to 0. Otherwise a plain IN or OUT is performed on the physical
 * port, which is the guest's anyway. String and REP forms would need the guest's
 * segments and paging: the guest is reset with a line naming the port instead (no
 * control here makes one of them exit on a port nobody asked for but the wrap). */
void vmx_exit_io(struct vcpu *v)
{
    uint64_t q = vmreadN(VMCS_EXIT_QUALIFICATION);
    unsigned size = (q & 7) + 1;
    uint16_t port = (uint16_t)(q >> 16);
    /* A port a hypapp asked for (hypapp.c, I/O bitmaps). */
    struct app_io io = {
        .port = port, .size = (uint8_t)size, .in = (q & IOQ_IN) != 0,
        .string = (q & IOQ_STRING) != 0, .rep = (q & IOQ_REP) != 0,
        .value = (uint32_t)v->regs->r[R_AX] & (size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1),
    };
    bool skip;
    if ((size == 1 || size == 2 || size == 4) && hypapp_io(v, &io, &skip)) {
        if (skip)
            vmx_skip_instruction(v);
        return;
    }
    if (q & (IOQ_STRING | IOQ_REP) || (size != 1 && size != 2 && size != 4)) {
        printk("xmhf: CPU %u: string I/O exit on port %x (qualification %llx)\n", v->cpu->idx,
               port, (unsigned long long)q);
        guest_reset(v, "string I/O instruction exited");
    }
    /* Plain IN/OUT on the physical port, which is the guest's anyway. */
    io_passthrough(v, &io);
    vmx_skip_instruction(v);
}

/* RDTSC/RDTSCP exiting is never set; the guest's TSC is the processor's plus the TSC
 * offset (0 here). CR4.TSD is checked before the exit. */
void vmx_exit_rdtsc(struct vcpu *v)
{
    uint64_t t = rdtsc() + vmread64(VMCS_TSC_OFFSET);
    v->regs->r[R_AX] = (uint32_t)t;
    v->regs->r[R_DX] = t >> 32;
    vmx_skip_instruction(v);
}

void vmx_exit_rdtscp(struct vcpu *v)
{
    v->regs->r[R_CX] = (uint32_t)rdmsr(MSR_IA32_TSC_AUX);
    vmx_exit_rdtsc(v);
}

/* RDRAND / RDSEED (exiting never set): instruction information bits 6:3 name the
 * destination, 12:11 the operand size (0: 16, 1: 32, 2: 64 bits). CF says whether the
 * value is valid; OF, SF, ZF, AF and PF are cleared (SDM Vol. 2B RDRAND). */
void vmx_exit_rdrand(struct vcpu *v)
{
    uint32_t info = vmread32(VMCS_EXIT_INSTR_INFO);
    unsigned reg = (info >> 3) & 15, size = (info >> 11) & 3;
    bool seed = (vmread32(VMCS_EXIT_REASON) & 0xffff) == EXIT_RDSEED;
    uint64_t val;
    uint8_t ok;
    if (seed)
        __asm__ volatile("rdseed %0; setc %1" : "=r"(val), "=qm"(ok) :: "cc");
    else
        __asm__ volatile("rdrand %0; setc %1" : "=r"(val), "=qm"(ok) :: "cc");
    uint64_t old = vmx_gpr(v, reg);
    if (size == 0)
        val = (old & ~0xffffull) | (val & 0xffff);
    else if (size == 1)
        val = (uint32_t)val;
    vmx_set_gpr(v, reg, val);
    uint64_t fl = vmreadN(VMCS_GUEST_RFLAGS) & ~0x8d5ull;   /* CF PF AF ZF SF OF */
    vmwriteN(VMCS_GUEST_RFLAGS, fl | (ok ? RFLAGS_CF : 0));
    vmx_skip_instruction(v);
}

/* HLT (exiting never set): the guest CPU waits in the HLT activity state where the
 * processor offers it (A.6), which VM entry resumes like the instruction would. */
void vmx_exit_hlt(struct vcpu *v)
{
    vmx_skip_instruction(v);
    if ((rdmsr(MSR_IA32_VMX_MISC) & VMX_MISC_ACT_HLT) && !vmx_event_pending())
        vmwrite32(VMCS_GUEST_ACTIVITY, ACTIVITY_HLT);
}

/* INVPCID exits only with INVLPG exiting (never set). Without VPIDs every VM entry
 * and exit already flushes the guest's linear translations (SDM 28.3.3.1), so what is
 * left is the type check: an INVPCID type above 3 is #GP(0). */
void vmx_exit_invpcid(struct vcpu *v)
{
    uint32_t info = vmread32(VMCS_EXIT_INSTR_INFO);
    uint64_t type = vmx_gpr(v, (info >> 28) & 15);
    if (!vmx_guest_64bit())
        type = (uint32_t)type;
    if (type > 3)
        arch_guest_inject_exception(v, EXC_GP, true, 0);
    else
        vmx_skip_instruction(v);
}

/* An exception that exited outside a step (the bitmap is 0 then, so only a processor's
 * left-over can do it) goes back to the guest as delivered: #PF with CR2 from the
 * qualification, #DB with its DR6 bits, INT3/INTO/INT1 with their instruction length.
 * "NMI unblocking due to IRET" puts NMI blocking back, as the IRET runs again (27.2.3). */
void vmx_reflect_exception(struct vcpu *v, uint32_t info)
{
    (void)v;
    unsigned vec = info & 0xff, type = info & INTR_TYPE_MASK;
    if (vec == EXC_PF)
        write_cr2(vmreadN(VMCS_EXIT_QUALIFICATION));
    if (vec == EXC_DB && type == INTR_TYPE_HWEXC) {
        uint64_t dr6;
        __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
        dr6 = (dr6 & ~0x600full) | (vmreadN(VMCS_EXIT_QUALIFICATION) & 0x600f);
        __asm__ volatile("mov %0, %%dr6" :: "r"(dr6));
    }
    if ((info & INTR_INFO_NMI_UNBLOCK) && !(vmread32(VMCS_IDT_VECTORING_INFO) & INTR_INFO_VALID))
        vmwrite32(VMCS_GUEST_INTERRUPTIBILITY,
                  vmread32(VMCS_GUEST_INTERRUPTIBILITY) | INTERRUPTIBILITY_NMI);
    if (info & INTR_INFO_ERRCODE)
        vmwrite32(VMCS_ENTRY_EXC_ERRCODE, vmread32(VMCS_EXIT_INTR_ERRCODE));
    if (type == INTR_TYPE_SWEXC || type == INTR_TYPE_PRIV_SWEXC)
        vmwrite32(VMCS_ENTRY_INSTR_LEN, vmread32(VMCS_EXIT_INSTR_LEN));
    vmwrite32(VMCS_ENTRY_INTR_INFO, info & ~INTR_INFO_NMI_UNBLOCK);
}
