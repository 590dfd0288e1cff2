/* SVM bring-up, the VMCB, and the guest's first entry (AMD APM Vol. 2, 15.4 "Enabling
 * SVM", 15.5 "VMRUN Instruction", 15.30 "SVM Related MSRs"; the real-mode state a boot
 * sector expects is entered directly: with nested paging the guest may run with
 * CR0.PE = 0, 15.25 "Nested Paging"). */
#include "apic.h"
#include "gwalk.h"
#include "hypapp-dispatch.h"
#include "msr.h"
#include "npt.h"
#include "svm-x86svm.h"

const char *const arch_name = "SVM";
const uint8_t arch_hypercall_insn[3] = { 0x0f, 0x01, 0xd9 };   /* VMMCALL */

bool arch_guest_event_pending(struct vcpu *v)
{
    return svm_event_pending(v);
}


/* The MSR permission map, shared by every CPU (read-only once built). Intercepted (15.11
 * "MSR Intercepts"): guestmsr.c's list (the guest's MTRRs, AMD's memory-type MSRs, the
 * SVM and VMX MSRs it must not see), and the MSRs that would expose or break SVM:
 *   EFER         the guest must neither see nor clear SVME (15.4 "Enabling SVM": clearing
 *                it while in guest mode would make the next VMRUN fail);
 *   VM_CR        SVM's own control (SVMDIS, LOCK);
 *   VM_HSAVE_PA  where VMRUN saves host state: a guest write would redirect it;
 *   APIC_BASE    writes only: the trap follows the APIC page (relocation, disable,
 *                x2APIC; smpg-x86svm.c);
 *   x2APIC ICR   writes of MSR 0x830 only: INIT/SIPI in x2APIC mode. Every other x2APIC
 *                register, EOI included, costs no exit. */
static uint8_t *msrpm;
static uint64_t msrpm_pa;
static struct spinlock msrpm_lock = SPINLOCK_INIT("msrpm");

static void msrpm_build(void)
{
    spin_lock(&msrpm_lock);
    if (!msrpm) {
        uint8_t *m = pages_alloc(SVM_MSRPM_SIZE / 4096, &msrpm_pa);
        for (unsigned i = 0; i < guest_msr_intercepted_count; i++)
            for (uint32_t n = guest_msr_intercepted[i].first; n <= guest_msr_intercepted[i].last; n++)
                svm_msrpm_intercept(m, n, SVM_MSRPM_READ | SVM_MSRPM_WRITE);  /* -1: exits anyway */
        if (svm_msrpm_intercept(m, MSR_IA32_EFER, SVM_MSRPM_READ | SVM_MSRPM_WRITE) ||
            svm_msrpm_intercept(m, MSR_VM_CR, SVM_MSRPM_READ | SVM_MSRPM_WRITE) ||
            svm_msrpm_intercept(m, MSR_VM_HSAVE_PA, SVM_MSRPM_READ | SVM_MSRPM_WRITE) ||
            svm_msrpm_intercept(m, MSR_IA32_APIC_BASE, SVM_MSRPM_WRITE) ||
            svm_msrpm_intercept(m, X2APIC_MSR(APIC_ICR_LO), SVM_MSRPM_WRITE))
            panic("MSR permission map: MSR outside the map");
        __atomic_store_n(&msrpm, m, __ATOMIC_RELEASE);
    }
    spin_unlock(&msrpm_lock);
}

/* A hypapp's MSR (hypapp.c, from xmhf_app_main only: no guest runs yet). */
int arch_msr_intercept(uint32_t msr, uint32_t access)
{
    return svm_msrpm_intercept(msrpm, msr, ((access & 1u) ? SVM_MSRPM_READ : 0) |
                                           ((access & 2u) ? SVM_MSRPM_WRITE : 0));
}

bool arch_msr_in_bitmap(uint32_t msr)
{
    unsigned shift;
    return svm_msrpm_locate(msr, &shift) >= 0;
}

/* SVM has nothing like EPT sub-page write permissions: every APIC write exits. */
bool arch_apic_subpage_writes(struct pcpu *c)
{
    (void)c;
    return false;
}

/* Bochs 3.0 quirk: its #VMEXIT does not discard the single-step trap it scheduled when
 * the guest's RFLAGS.TF was 1 at the start of an instruction (only an exception
 * intercept does), so any other #VMEXIT of such an instruction (#NPF, an instruction
 * intercept) delivers that #DB to the host on the instruction after VMRUN. On the
 * processor that cannot happen: an intercept or #NPF is taken before the instruction
 * completes (APM Vol. 2, 15.7 "#VMEXIT"), and #VMEXIT loads the host's RFLAGS (TF = 0)
 * and DR7. The common handler drops such a #DB, recognised by its RIP and DR6.BS,
 * before it touches %gs (still the guest's there). The guest loses nothing: its trap
 * comes when the instruction runs again; VMRUN loads the guest's DR6 from the VMCB. */
extern char svm_vmexit_rip[];

bool arch_host_db_is_stale(uint64_t rip)
{
    uint64_t dr6;
    if (rip != (uint64_t)(uintptr_t)svm_vmexit_rip)
        return false;
    __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
    return dr6 & (1u << 14);
}

static const char *yesno(uint32_t edx, uint32_t bit)
{
    return (edx & bit) ? "yes" : "no";
}

/* 15.4 "Enabling SVM": CPUID Fn8000_0001_ECX[SVM], then VM_CR.SVMDIS (firmware may have
 * disabled and locked SVM), then Fn8000_000A for the features this hypervisor needs. */
static int check_caps(struct pcpu *c, struct svm_features *f)
{
    uint32_t r[4];
    cpuid(0x80000000u, 0, r);
    uint32_t max_ext = r[0];
    if (max_ext >= 0x80000001u)
        cpuid(0x80000001u, 0, r);
    if (max_ext < CPUID_SVM_FEATURES || !(r[2] & CPUID_8000_0001_ECX_SVM)) {
        printk("xmhf: CPU %u: no SVM (CPUID 8000_0001:ECX.SVM = 0); this build needs AMD-V "
               "(configure --with-target-arch=x86-vmx for Intel VT-x)\n", c->idx);
        return -1;
    }
    uint64_t vmcr = rdmsr(MSR_VM_CR);
    if (vmcr & VM_CR_SVMDIS) {
        printk("xmhf: CPU %u: SVM is disabled by the firmware (VM_CR.SVMDIS = 1%s); enable "
               "SVM / AMD-V in the BIOS setup\n", c->idx,
               (vmcr & VM_CR_LOCK) ? ", locked" : "");
        return -1;
    }
    cpuid(CPUID_SVM_FEATURES, 0, r);
    f->revision = r[0] & 0xff;
    f->nasid = r[1];
    f->edx = r[3];
    if (!(f->edx & SVM_FEAT_NP)) {
        printk("xmhf: CPU %u: SVM without nested paging (CPUID 8000_000A:EDX.NP = 0); this "
               "hypervisor protects its memory with NPT and cannot run without it\n", c->idx);
        return -1;
    }
    if (f->nasid < 2) {
        printk("xmhf: CPU %u: SVM offers %u ASIDs; the guest needs ASID 1\n", c->idx, f->nasid);
        return -1;
    }
    return 0;
}

int arch_cpu_init(struct pcpu *c)
{
    struct svm_cpu *s = page_alloc(&c->arch_page_pa[2]);
    c->arch_page[2] = s;
    if (apic_zeroexit()) {
        /* Refused rather than replaced by the ICR trap: the user asked for no APIC exit. */
        printk("xmhf: CPU %u: apic=zeroexit is Intel-only: SVM has no wait-for-SIPI state "
               "and no SIPI intercept, so the ICR must be trapped; boot without it\n", c->idx);
        return -1;
    }
    if (check_caps(c, &s->feat) != 0)
        return -1;
    /* EFER bits a guest may set: those this processor implements, SVME aside. XSETBV is
     * not intercepted (XCR0 is not switched, so the guest's value is the value). */
    uint32_t r[4];
    cpuid(0x80000001u, 0, r);
    s->efer_allowed = EFER_SCE | EFER_LME | ((r[3] & (1u << 20)) ? EFER_NXE : 0) |
                      ((r[3] & (1u << 25)) ? MSR_EFER_FFXSR : 0);

    /* NXE in the host too: the nested walk takes it from the host's EFER, and a hypapp
     * may refuse execution of a guest page (NX in a nested entry, npt-x86svm.c). The
     * host's own page tables set no NX bit, so nothing changes for it. */
    uint64_t nxe = (r[3] & (1u << 20)) ? EFER_NXE : 0;
    if (wrmsr_safe(c, MSR_IA32_EFER, rdmsr(MSR_IA32_EFER) | MSR_EFER_SVME | nxe) != 0) {
        printk("xmhf: CPU %u: setting EFER.SVME faulted\n", c->idx);
        return -1;
    }
    /* From here on GIF is 0 in the host but where an NMI must get in (svm-entry.S, the
     * parked wait): INIT stays pending while GIF = 0 (APM Vol. 2, 15.17). Where GIF is
     * open, VM_CR.R_INIT turns an INIT into #SX instead of a reset (15.30.1): the INIT
     * the guest's intercept left pending, or one that arrived in the host, becomes this
     * CPU's guest INIT (exceptions.c), and never takes the CPU out of SVM. */
    __asm__ volatile("clgi" ::: "memory");
    int fault;
    uint64_t vmcr = rdmsr_safe(c, MSR_VM_CR, &fault);
    bool r_init = !fault && wrmsr_safe(c, MSR_VM_CR, vmcr | VM_CR_R_INIT) == 0 &&
                  (rdmsr_safe(c, MSR_VM_CR, &fault) & VM_CR_R_INIT) && !fault;
    if (!r_init)
        printk("xmhf: CPU %u: VM_CR.R_INIT did not stick: an INIT that reaches this CPU "
               "while GIF is open (NMI windows) would reset it\n", c->idx);
    /* XCR0 is shared with the guest (not switched): the host resets it at a guest INIT
     * (smpguest.c), which XSETBV allows only with CR4.OSXSAVE. */
    cpuid(1, 0, r);
    if (r[2] & (1u << 26))
        write_cr4(read_cr4() | CR4_OSXSAVE);
    c->arch_page[0] = page_alloc(&c->arch_page_pa[0]);     /* host save area */
    s->vmcb = page_alloc(&c->arch_page_pa[1]);
    c->arch_page[1] = s->vmcb;
    s->vmcb_pa = c->arch_page_pa[1];
    c->arch_page[3] = page_alloc(&c->arch_page_pa[3]);     /* host VMSAVE image */
    s->host_state_pa = c->arch_page_pa[3];
    wrmsr(MSR_VM_HSAVE_PA, c->arch_page_pa[0]);
    /* The host PAT the nested entries' memory types index (npt.h): entries 0-3 as at
     * power-on, so the hypervisor's own mappings (PAT bit clear) keep their types. */
    wrmsr(MSR_IA32_PAT, NPT_HOST_PAT);
    msrpm_build();
    uint32_t e = s->feat.edx;
    printk("xmhf: CPU %u (APIC ID %u): SVM on, revision %u, %u ASIDs; NPT %s, NRIP save %s, "
           "decode assists %s, VMCB clean bits %s, flush by ASID %s\n", c->idx, c->apic_id,
           s->feat.revision, s->feat.nasid, yesno(e, SVM_FEAT_NP), yesno(e, SVM_FEAT_NRIPS),
           yesno(e, SVM_FEAT_DECODE_ASSISTS), yesno(e, SVM_FEAT_VMCB_CLEAN),
           yesno(e, SVM_FEAT_FLUSH_BY_ASID));
    return 0;
}

/* An AP waits, halted, until the guest starts it (smpguest.c wakes it with NMIs, so GIF
 * opens for the halt: arch_wait_for_event). */
__noreturn void arch_park_ap(struct pcpu *c)
{
    arch_launch_ap_guest(c, smpg_ap_wait_for_sipi(c));
}

/* GIF opens for the halt only: an NMI (the waker's) ends it and is taken by the host's
 * handler; an INIT is #SX (R_INIT); interrupts stay off (IF = 0). */
void arch_wait_for_event(void)
{
    __asm__ volatile("stgi; hlt; clgi" ::: "memory");
}

/* GIF = 0 for good where SVM is on: INIT, NMI, SMI and interrupts stay pending forever.
 * Where SVM could not be turned on (CLGI is #UD without EFER.SVME) a reset by INIT
 * leads only to wait-for-SIPI (smp_hold_cpu). */
__noreturn void arch_hold(void)
{
    if (rdmsr(MSR_IA32_EFER) & MSR_EFER_SVME)
        __asm__ volatile("clgi" ::: "memory");
    halt_forever();
}

void arch_host_irq_open(void)
{
    __asm__ volatile("stgi; sti" ::: "memory");
}

void arch_host_irq_close(void)
{
    __asm__ volatile("cli; clgi" ::: "memory");
}

uint64_t arch_guest_cr0(struct pcpu *c)
{
    return svm_of(c)->vmcb->save.cr0;
}

/* The intercepts (15.9-15.14). Everything the guest does runs natively except:
 *   CPUID          to hide SVM;
 *   MSR_PROT       the permission map above;
 *   VMRUN          required by the architecture; with the other SVM instructions
 *                  (VMMCALL aside) and INVLPGA it gives the guest #UD: the guest sees a
 *                  processor without SVM;
 *   VMMCALL        the hypercall (and the INT 15h E820 stub);
 *   #UD            to recognise Intel's VMCALL, which hypercall users and the E820 stub
 *                  may execute; it is #UD on AMD (every other #UD is reflected);
 *   INVD           would discard the hypervisor's dirty cache lines: done as WBINVD;
 *   SHUTDOWN       a guest triple fault resets the system through the hypapp;
 *   NMI            every NMI is held and injected by the hypervisor (smpg-x86svm.c), so
 *                  that none is lost or doubled around an APIC step.
 *   INIT           a physical INIT is the guest CPU's own INIT (smpguest.c), never a
 *                  reset out of SVM (the INIT stays pending after the exit and becomes
 *                  #SX where GIF next opens: VM_CR.R_INIT, arch_cpu_init).
 * Physical interrupts are not intercepted (V_INTR_MASKING = 0 outside a step): they reach
 * the guest directly under its own RFLAGS.IF. The nested-page root is this CPU's own
 * (npt-x86svm.c). */
static void vmcb_controls(struct svm_cpu *s)
{
    struct svm_control *ctl = &s->vmcb->ctl;
    ctl->intercept_cr = 0;
    ctl->intercept_dr = 0;
    ctl->intercept_exc = 1u << EXC_UD;
    ctl->intercept1 = SVM_INTERCEPT_NMI | SVM_INTERCEPT_INIT | SVM_INTERCEPT_CPUID | SVM_INTERCEPT_INVD |
                      SVM_INTERCEPT_INVLPGA | SVM_INTERCEPT_MSR_PROT | SVM_INTERCEPT_SHUTDOWN;
    ctl->intercept2 = SVM_INTERCEPT_VMRUN | SVM_INTERCEPT_VMMCALL | SVM_INTERCEPT_VMLOAD |
                      SVM_INTERCEPT_VMSAVE | SVM_INTERCEPT_STGI | SVM_INTERCEPT_CLGI |
                      SVM_INTERCEPT_SKINIT;
    /* I/O ports exit only where a hypapp asked for them (hypapp.c builds the IOPM). */
    ctl->iopm_base_pa = hypapp_io_bitmap ? hypapp_io_bitmap_pa : 0;
    if (hypapp_io_bitmap)
        ctl->intercept1 |= SVM_INTERCEPT_IOIO_PROT;
    ctl->msrpm_base_pa = msrpm_pa;
    ctl->tsc_offset = 0;
    ctl->guest_asid = 1;            /* ASIDs are per CPU: every CPU's guest uses 1 */
    ctl->tlb_control = SVM_TLB_FLUSH_ALL;
    ctl->vintr = 0;
    ctl->int_state = 0;
    ctl->eventinj = 0;
    ctl->np_control = SVM_NP_ENABLE;
    ctl->n_cr3 = s->npt.pa[0];
    ctl->clean_bits = 0;            /* nothing cached: the hypervisor edits the VMCB freely */
}

/* The state a BIOS leaves for a boot sector: real mode, CS:IP = 0000:7c00, 64 KiB
 * segments, interrupts off; or with c->reset_state the state INIT leaves (APM Vol. 2,
 * 14.1.3 "Processor Initialization State"; SDM Vol. 3A table 9-1: IDTR limit FFFFh,
 * SP 0, CR0 = ET plus the guest's CD/NW; EDX is set by the caller). EFER.SVME must be
 * set in the guest's EFER too (VMRUN consistency checks, 15.5.1); the guest never sees
 * it (MSR intercept). */
static void vmcb_guest_realmode(struct pcpu *c, struct svm_cpu *s, uint16_t cs_sel,
                                uint64_t cs_base, uint64_t rip)
{
    struct svm_state *st = &s->vmcb->save;
#define SEG(S, selector, attr) do { st->S.sel = (selector); \
        st->S.base = (uint64_t)(selector) << 4; st->S.limit = 0xffff; st->S.attrib = (attr); } while (0)
    SEG(cs, cs_sel, 0x9b);      /* present, code, readable, accessed */
    SEG(ss, 0, 0x93);           /* present, data, writable, accessed */
    SEG(ds, 0, 0x93);
    SEG(es, 0, 0x93);
    SEG(fs, 0, 0x93);
    SEG(gs, 0, 0x93);
#undef SEG
    st->cs.base = cs_base;          /* FFFF0000h at the reset vector */
    st->tr = (struct svm_seg){ .sel = 0, .attrib = 0x8b, .limit = 0xffff, .base = 0 };
    st->ldtr = (struct svm_seg){ .sel = 0, .attrib = 0x82, .limit = 0xffff, .base = 0 };
    st->gdtr = (struct svm_seg){ .limit = 0xffff };
    st->idtr = (struct svm_seg){ .limit = c->reset_state ? 0xffff : 0x3ff };
    st->cpl = 0;
    st->efer = MSR_EFER_SVME;
    st->cr0 = CR0_ET | (c->reset_state ? c->guest_cr0_keep : 0);
    st->cr3 = 0;
    st->cr4 = 0;
    st->cr2 = 0;
    write_cr2(0);               /* Bochs 3.0: see svm_guest_set_cr2 */
    st->dr6 = 0xffff0ff0;
    st->dr7 = 0x400;
    st->rflags = RFLAGS_FIXED;
    st->rip = rip;
    st->rsp = c->reset_state ? 0 : 0x7c00;
    st->rax = 0;
    st->g_pat = PAT_POWERON;
    st->dbgctl = 0;
    st->star = st->lstar = st->cstar = st->sfmask = st->kernel_gs_base = 0;
    st->sysenter_cs = st->sysenter_esp = st->sysenter_eip = 0;
}

static __noreturn void launch(struct pcpu *c, uint16_t cs_sel, uint64_t cs_base, uint64_t rip)
{
    struct svm_cpu *s = svm_of(c);
    svm_smpg_cpu_setup(c);
    vmcb_controls(s);
    vmcb_guest_realmode(c, s, cs_sel, cs_base, rip);
    memset(&s->launch_regs, 0, sizeof(s->launch_regs));
    if (c->reset_state) {
        uint32_t r[4];
        cpuid(1, 0, r);
        s->launch_regs.r[R_DX] = r[0];      /* EDX after INIT: the processor signature */
    } else {
        s->launch_regs.r[R_DX] = g_bp->opts.boot_drive;
    }
    hypapp_cpu_start(c, &s->launch_regs);
    s->vmcb->save.rax = s->launch_regs.r[R_AX];    /* VMRUN loads RAX from the VMCB */
    svm_run(s->vmcb_pa, s->host_state_pa, &s->launch_regs);
}

/* A guest CPU's first entry, in real mode at cs_sel:rip: the BSP at 0000:7c00 with DL =
 * boot drive, an AP at its STARTUP vector. */
__noreturn void svm_launch_guest(struct pcpu *c, uint16_t cs_sel, uint64_t rip)
{
    launch(c, cs_sel, (uint64_t)cs_sel << 4, rip);
}

__noreturn void arch_launch_bsp_guest(struct pcpu *c)
{
    svm_launch_guest(c, 0, 0x7c00);
}

/* The BSP after INIT: CS selector F000h with base FFFF0000h, IP FFF0h. */
__noreturn void arch_launch_guest_reset(struct pcpu *c)
{
    launch(c, 0xf000, 0xffff0000ull, 0xfff0);
}

/* ---- the guest view for common code ---- */

uint64_t arch_guest_rip(struct vcpu *v) { return vmcb_of(v)->save.rip; }
void arch_guest_set_rip(struct vcpu *v, uint64_t rip) { vmcb_of(v)->save.rip = rip; }
uint64_t arch_guest_rsp(struct vcpu *v) { return vmcb_of(v)->save.rsp; }

/* FS and GS are current: the exit stub's VMSAVE stored them into the VMCB. */
uint64_t arch_guest_seg_base(struct vcpu *v, int seg)
{
    struct svm_state *st = &vmcb_of(v)->save;
    switch (seg) {
    case SEG_ES: return st->es.base;
    case SEG_CS: return st->cs.base;
    case SEG_SS: return st->ss.base;
    case SEG_DS: return st->ds.base;
    case SEG_FS: return st->fs.base;
    case SEG_GS: return st->gs.base;
    default: return 0;
    }
}

/* The VMCB keeps the CPL itself (table B-2); it is 0 in real mode and 3 in virtual-8086
 * mode as the processor defines it. */
unsigned arch_guest_cpl(struct vcpu *v)
{
    return vmcb_of(v)->save.cpl & 3;
}

/* 15.20 "Event Injection". Real mode pushes no error code, so none is injected there. */
void arch_guest_inject_exception(struct vcpu *v, unsigned vector, bool has_err, uint32_t err)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t ev = SVM_EVT_VALID | SVM_EVT_TYPE_EXCEPTION | (vector & SVM_EVT_VECTOR_MASK);
    if (has_err && (vm->save.cr0 & CR0_PE))
        ev |= SVM_EVT_ERR_VALID | ((uint64_t)err << SVM_EVT_ERR_SHIFT);
    vm->ctl.eventinj = ev;
}

/* The guest's CR2 as the hypervisor sets it (a #PF it delivers itself). Bochs 3.0 quirk:
 * its VMRUN reads CR2 from the VMCB but never loads it, so the guest runs with whatever
 * the processor's CR2 holds (the guest's own value from the last #VMEXIT, as Bochs
 * saved it then): both are written. On the processor VMRUN loads the VMCB's value (APM
 * Vol. 2, 15.5.1 "Basic Operation") and the host's CR2 means nothing to this hypervisor
 * (#VMEXIT does not restore it), so the second write only costs a MOV to CR2. */
void svm_guest_set_cr2(struct vcpu *v, uint64_t cr2)
{
    vmcb_of(v)->save.cr2 = cr2;
    write_cr2(cr2);
}

bool svm_event_pending(struct vcpu *v)
{
    return vmcb_of(v)->ctl.eventinj & SVM_EVT_VALID;
}

/* ---- instruction fetch without decode assists ---- */

int svm_gpa_read(void *ctx, uint64_t gpa, void *buf, unsigned n)
{
    (void)ctx;
    return guest_phys_read(gpa, buf, n);
}

int svm_guest_read_linear(struct vcpu *v, uint64_t la, void *buf, unsigned n)
{
    struct svm_state *st = &vmcb_of(v)->save;
    struct gwalk g = { st->cr0, st->cr3, st->cr4, st->efer, svm_gpa_read, NULL, NULL };
    return gwalk_read(&g, la, buf, n);
}

/* CS base + rip, with 64-bit code's base of 0 and other code's 32-bit wrap. */
uint64_t svm_guest_cs_linear(struct vcpu *v, uint64_t rip)
{
    struct svm_state *st = &vmcb_of(v)->save;
    if ((st->efer & EFER_LMA) && (st->cs.attrib & (1u << 9)))     /* CS.L */
        return rip;
    return (st->cs.base + rip) & 0xffffffffull;
}

/* Length of the intercepted instruction at the guest's RIP whose opcode (after any
 * prefixes) is opcode_len bytes long. With NRIP save (15.7.1 "State Saved on Exit")
 * the processor says where the next instruction starts; without it (QEMU TCG) the
 * legacy and REX prefixes in front of the opcode are counted from the guest's memory. */
unsigned svm_insn_len(struct vcpu *v, unsigned opcode_len)
{
    struct svm_cpu *s = svm_of(v->cpu);
    struct vmcb *vm = s->vmcb;
    if ((s->feat.edx & SVM_FEAT_NRIPS) && vm->ctl.nrip > vm->save.rip &&
        vm->ctl.nrip - vm->save.rip <= 15)
        return (unsigned)(vm->ctl.nrip - vm->save.rip);
    uint8_t b[15];
    if (svm_guest_read_linear(v, svm_guest_cs_linear(v, vm->save.rip), b, sizeof(b)) != 0)
        return opcode_len;
    bool long64 = (vm->save.efer & EFER_LMA) && (vm->save.cs.attrib & (1u << 9));
    unsigned n = 0;
    while (n + opcode_len < sizeof(b)) {
        uint8_t p = b[n];
        bool legacy = p == 0x66 || p == 0x67 || p == 0x2e || p == 0x36 || p == 0x3e ||
                      p == 0x26 || p == 0x64 || p == 0x65 || p == 0xf0 || p == 0xf2 || p == 0xf3;
        if (!legacy && !(long64 && (p & 0xf0) == 0x40))
            break;
        n++;
    }
    return n + opcode_len;
}

/* Past an instruction the hypervisor emulated: as the processor would, end the
 * interrupt shadow (STI / MOV SS), clear RF and raise the single-step trap the guest's TF asks
 * for (DR6.BS, then #DB), unless the handler injected an event already. */
void svm_skip_instruction(struct vcpu *v, unsigned opcode_len)
{
    struct vmcb *vm = vmcb_of(v);
    uint64_t rip = vm->save.rip + svm_insn_len(v, opcode_len);
    if (!((vm->save.efer & EFER_LMA) && (vm->save.cs.attrib & (1u << 9))))
        rip &= 0xffffffffull;
    vm->save.rip = rip;
    vm->ctl.int_state &= ~SVM_INT_SHADOW;
    vm->save.rflags &= ~RFLAGS_RF;      /* a completed instruction clears RF */
    if ((vm->save.rflags & RFLAGS_TF) && !svm_event_pending(v)) {
        vm->save.dr6 |= 1u << 14;
        arch_guest_inject_exception(v, EXC_DB, false, 0);
    }
}
