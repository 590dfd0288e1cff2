/* VMX bring-up, the VMCS, and the guest's first entry (SDM Vol. 3C chapter 24 "Virtual
 * Machine Control Structures", 31.5 "VMM Setup & Tear Down", 26.3 "Checking and
 * Loading Guest State" for the real-mode state an unrestricted guest may enter with). */
#include "apic.h"
#include "hypapp-dispatch.h"
#include "iobitmap.h"
#include "msr.h"
#include "vmx-x86vmx.h"

#ifndef XMHF_SINGLESTEP
#define XMHF_SINGLESTEP 0
#endif

const char *const arch_name = "VMX";
const uint8_t arch_hypercall_insn[3] = { 0x0f, 0x01, 0xc1 };   /* VMCALL */

bool arch_guest_event_pending(struct vcpu *v)
{
    (void)v;
    return vmx_event_pending();
}

bool arch_apic_subpage_writes(struct pcpu *c)
{
    return vmx_of(c)->spp;
}

/* VM exits load the host's RFLAGS and DR7, and no emulator used here leaks a guest trap
 * into the host on VMX (compare svm-x86svm.c). */
bool arch_host_db_is_stale(uint64_t rip)
{
    (void)rip;
    return false;
}

/* MSRs 0-1fff and c0000000-c0001fff pass through except the guest's MTRRs and the
 * VMX capability MSRs (guestmsr.c) and the APIC writes below. */
static uint8_t *msr_bitmap;
static uint64_t msr_bitmap_pa;
static struct spinlock msr_bitmap_lock = SPINLOCK_INIT("msr-bitmap");

/* 24.6.9: read bitmaps for MSRs 0-1fff at 0, c0000000-c0001fff at 0x400, the write
 * bitmaps 0x800 further; MSRs outside both ranges always exit. */
static void msr_bitmap_intercept(uint8_t *map, uint32_t msr)
{
    uint32_t off = msr < 0x2000u ? 0 : (msr - 0xc0000000u < 0x2000u) ? 0x400u : 0xffffffffu;
    if (off == 0xffffffffu)
        return;
    uint32_t bit = msr & 0x1fffu;
    map[off + bit / 8] |= (uint8_t)(1u << (bit % 8));
    map[0x800 + off + bit / 8] |= (uint8_t)(1u << (bit % 8));
}

/* Appendix A.3-A.5: bits 31:0 of a capability MSR are the allowed 0-settings (1 = must
 * be 1), bits 63:32 the allowed 1-settings. */
static int adjust(struct pcpu *c, uint32_t msr, uint32_t want, uint32_t must, uint32_t *out,
                  const char *what)
{
    uint64_t cap = rdmsr(msr);
    uint32_t v = (want | (uint32_t)cap) & (uint32_t)(cap >> 32);
    if ((v & must) != must) {
        printk("xmhf: CPU %u: VMX lacks required %s controls %08x (offers %08x)\n", c->idx,
               what, must & ~v, (uint32_t)(cap >> 32));
        return -1;
    }
    *out = v;
    return 0;
}

static int check_caps(struct pcpu *c, struct vmx_cpu *x)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    if (!(r[2] & (1u << 5))) {
        printk("xmhf: CPU %u: no VMX (CPUID.1:ECX.VMX = 0); this hypervisor needs Intel VT-x\n", c->idx);
        return -1;
    }
    uint64_t fc = rdmsr(MSR_IA32_FEATURE_CONTROL);
    if (!(fc & FEATCTL_LOCK))
        wrmsr(MSR_IA32_FEATURE_CONTROL, fc | FEATCTL_LOCK | FEATCTL_VMX_OUTSIDE_SMX);
    else if (!(fc & FEATCTL_VMX_OUTSIDE_SMX)) {
        printk("xmhf: CPU %u: VMX is disabled by the firmware (IA32_FEATURE_CONTROL locked); "
               "enable VT-x in the BIOS setup\n", c->idx);
        return -1;
    }
    bool true_ctls = rdmsr(MSR_IA32_VMX_BASIC) & VMX_BASIC_TRUE_CTLS;
    uint32_t proc_msr = true_ctls ? MSR_IA32_VMX_TRUE_PROCBASED : MSR_IA32_VMX_PROCBASED;
    /* NMI exiting with virtual NMIs: every NMI passes through the hypervisor, which
     * holds it during a step and injects it when the guest can take it. */
    if (adjust(c, true_ctls ? MSR_IA32_VMX_TRUE_PINBASED : MSR_IA32_VMX_PINBASED,
               PIN_NMI_EXIT | PIN_VIRTUAL_NMI, PIN_NMI_EXIT | PIN_VIRTUAL_NMI,
               &x->pin, "pin-based (NMI exiting, virtual NMIs)") ||
        adjust(c, proc_msr, PROC_SECONDARY | PROC_MSR_BITMAP | PROC_NMI_WINDOW,
               PROC_SECONDARY | PROC_MSR_BITMAP | PROC_NMI_WINDOW, &x->proc,
               "processor-based (secondary controls, MSR bitmaps, NMI-window exiting)") ||
        adjust(c, MSR_IA32_VMX_PROCBASED2,
               PROC2_EPT | PROC2_UNRESTRICTED | PROC2_RDTSCP | PROC2_INVPCID | PROC2_XSAVES |
               PROC2_SPP,
               PROC2_EPT | PROC2_UNRESTRICTED, &x->proc2,
               "secondary (EPT, unrestricted guest)") ||
        /* Save/load debug controls: without them a VM exit sets DR7 to 400h and clears
         * IA32_DEBUGCTL (27.5.1) and the next entry does not bring the guest's back, so
         * its breakpoints would vanish at the first exit. */
        adjust(c, true_ctls ? MSR_IA32_VMX_TRUE_EXIT : MSR_IA32_VMX_EXIT,
               EXIT_HOST_64 | EXIT_SAVE_DEBUG | EXIT_SAVE_EFER | EXIT_LOAD_EFER |
               EXIT_SAVE_PAT | EXIT_LOAD_PAT,
               EXIT_HOST_64 | EXIT_SAVE_DEBUG | EXIT_SAVE_EFER | EXIT_LOAD_EFER, &x->exit,
               "VM-exit (save debug controls, EFER)") ||
        adjust(c, true_ctls ? MSR_IA32_VMX_TRUE_ENTRY : MSR_IA32_VMX_ENTRY,
               ENTRY_LOAD_DEBUG | ENTRY_LOAD_EFER | ENTRY_LOAD_PAT,
               ENTRY_LOAD_DEBUG | ENTRY_LOAD_EFER, &x->entry,
               "VM-entry (load debug controls, EFER)"))
        return -1;
    /* The guest starts in real mode with paging off; these are set at launch. */
    x->entry &= ~ENTRY_IA32E_GUEST;
    /* Off unless the processor insists (its allowed-0 settings: without the TRUE
     * capability MSRs, CR3-load/store exiting are fixed to 1; peh handles those exits). */
    x->proc &= ~(PROC_CR3_LOAD | PROC_CR3_STORE | PROC_HLT_EXIT | PROC_UNCOND_IO | PROC_NMI_WINDOW);
    x->proc |= (uint32_t)rdmsr(proc_msr) & ~PROC_NMI_WINDOW;
    x->pin &= ~(PIN_EXTINT_EXIT | PIN_PREEMPT_TIMER);
    /* The kick timer (vmx_kick_timer): about 2^20 TSC ticks, where offered. */
    uint32_t pin_msr = true_ctls ? MSR_IA32_VMX_TRUE_PINBASED : MSR_IA32_VMX_PINBASED;
    if ((rdmsr(pin_msr) >> 32) & PIN_PREEMPT_TIMER)
        x->preempt_value = (1u << 20) >> VMX_MISC_PREEMPT_RATE(rdmsr(MSR_IA32_VMX_MISC));
    /* The step mechanism: the monitor trap flag where the allowed-1 settings offer it
     * (XMHF64 met nested-KVM hosts without it), else RFLAGS.TF + #DB. */
    bool have_mtf = (rdmsr(proc_msr) >> 32) & PROC_MTF;
    x->mtf = XMHF_SINGLESTEP == 1 || (XMHF_SINGLESTEP == 0 && have_mtf);
    if (x->mtf && !have_mtf) {
        printk("xmhf: CPU %u: built with --with-singlestep=mtf but this CPU has no monitor "
               "trap flag\n", c->idx);
        return -1;
    }
    /* apic=zeroexit parks every AP's guest in the wait-for-SIPI activity state (A.6:
     * IA32_VMX_MISC bit 8 says VM entry may leave a guest there). Refused, not
     * quietly replaced by the step mode, where it is missing. */
    if (apic_zeroexit() && !(rdmsr(MSR_IA32_VMX_MISC) & VMX_MISC_ACT_WAIT_SIPI)) {
        printk("xmhf: CPU %u: apic=zeroexit needs the wait-for-SIPI activity state "
               "(IA32_VMX_MISC bit 8), which this CPU does not offer; boot without it\n", c->idx);
        return -1;
    }
    /* Sub-page write permissions where offered: only writes near the ICR exit. */
    if (apic_zeroexit())
        x->proc2 &= ~PROC2_SPP;     /* nothing of the APIC page is watched there */
    x->spp = x->proc2 & PROC2_SPP;
    if (!(rdmsr(MSR_IA32_VMX_EPT_VPID_CAP) & EPTCAP_INVEPT_ALL)) {
        printk("xmhf: CPU %u: INVEPT (all contexts) is missing\n", c->idx);
        return -1;
    }
    uint64_t ept = rdmsr(MSR_IA32_VMX_EPT_VPID_CAP);
    if ((ept & (EPTCAP_WALK4 | EPTCAP_WB | EPTCAP_2M)) != (EPTCAP_WALK4 | EPTCAP_WB | EPTCAP_2M)) {
        printk("xmhf: CPU %u: EPT lacks 4-level walks, write-back tables or 2 MiB pages (cap %llx)\n",
               c->idx, (unsigned long long)ept);
        return -1;
    }
    x->cr0_fixed0 = rdmsr(MSR_IA32_VMX_CR0_FIXED0);
    x->cr0_fixed1 = rdmsr(MSR_IA32_VMX_CR0_FIXED1);
    x->cr4_fixed0 = rdmsr(MSR_IA32_VMX_CR4_FIXED0);
    x->cr4_fixed1 = rdmsr(MSR_IA32_VMX_CR4_FIXED1);
    x->cr0_guest_fixed0 = x->cr0_fixed0 & ~(uint64_t)(CR0_PE | CR0_PG);
    return 0;
}

/* CR0/CR4 as VMX operation wants them (SDM A.7, A.8), then VMXON: at start-up and after
 * a restart through INIT (restart-x86vmx.c), which left both registers at their reset
 * values. */
int vmx_root_enter(struct pcpu *c)
{
    struct vmx_cpu *x = vmx_of(c);
    uint32_t r[4];
    cpuid(1, 0, r);
    /* XSETBV on the guest's behalf needs CR4.OSXSAVE in the host. */
    uint64_t cr4 = read_cr4() | x->cr4_fixed0 | ((r[2] & (1u << 26)) ? CR4_OSXSAVE : 0);
    write_cr4(cr4 & x->cr4_fixed1);
    write_cr0((read_cr0() | x->cr0_fixed0) & x->cr0_fixed1);
    return vmx_on(c->arch_page_pa[0]);
}

int arch_cpu_init(struct pcpu *c)
{
    struct vmx_cpu *x = page_alloc(&c->arch_page_pa[2]);
    c->arch_page[2] = x;
    if (check_caps(c, x) != 0)
        return -1;
    uint32_t rev = (uint32_t)rdmsr(MSR_IA32_VMX_BASIC) & 0x7fffffffu;
    uint32_t *vmxon = page_alloc(&c->arch_page_pa[0]);
    uint32_t *vmcs = page_alloc(&c->arch_page_pa[1]);
    c->arch_page[0] = vmxon;
    c->arch_page[1] = vmcs;
    vmxon[0] = rev;
    vmcs[0] = rev;
    if (vmx_root_enter(c)) {
        printk("xmhf: CPU %u: VMXON failed\n", c->idx);
        return -1;
    }
    if (vmcs_clear(c->arch_page_pa[1]) || vmcs_load(c->arch_page_pa[1])) {
        printk("xmhf: CPU %u: VMCLEAR/VMPTRLD failed\n", c->idx);
        return -1;
    }
    spin_lock(&msr_bitmap_lock);
    if (!msr_bitmap) {
        /* 24.6.9: write bitmap for MSRs 0-1fff at offset 0x800. Intercepted: writes to
         * IA32_APIC_BASE (the trap follows the APIC; in apic=zeroexit, it still keeps
         * the APIC off the hypervisor's region) and, unless apic=zeroexit, the x2APIC ICR. */
        msr_bitmap = page_alloc(&msr_bitmap_pa);
        msr_bitmap[0x800 + MSR_IA32_APIC_BASE / 8] |= 1u << (MSR_IA32_APIC_BASE % 8);
        if (!apic_zeroexit())
            msr_bitmap[0x800 + X2APIC_MSR(APIC_ICR_LO) / 8] |= 1u << (X2APIC_MSR(APIC_ICR_LO) % 8);
        for (unsigned i = 0; i < guest_msr_intercepted_count; i++)
            for (uint32_t m = guest_msr_intercepted[i].first; m <= guest_msr_intercepted[i].last; m++)
                msr_bitmap_intercept(msr_bitmap, m);
    }
    spin_unlock(&msr_bitmap_lock);
    if (apic_zeroexit()) {
        printk("xmhf: CPU %u (APIC ID %u): VMX on, apic=zeroexit: no APIC access intercepted, "
               "INIT/STARTUP through INIT and SIPI VM exits\n", c->idx, c->apic_id);
        return 0;
    }
    printk("xmhf: CPU %u (APIC ID %u): VMX on, xAPIC page read-only, writes%s single-stepped "
           "by %s\n", c->idx, c->apic_id,
           x->spp ? " to 0x280-0x37f (EPT sub-page write permissions)" : "",
           x->mtf ? "the monitor trap flag" : XMHF_SINGLESTEP == 2 ?
           "RFLAGS.TF + #DB (forced by --with-singlestep=tf)" : "RFLAGS.TF + #DB (no monitor trap flag)");
    return 0;
}

/* A guest CPU whose local APIC is globally disabled (IA32_APIC_BASE.EN = 0, SDM
 * 11.4.3) takes no IPI, so the hypervisor's NMI kicks (a hypapp's TLB flush, guestmem.c;
 * the world stop of a restart through INIT) would never make it exit. Meanwhile the
 * VMX-preemption timer (SDM 25.5.1) makes it exit every 2^20 TSC ticks or so, and each
 * exit serves what the kick asks (the end of vmx_exit_handler). Without the timer the
 * CPU is not kicked (the waits time out and say so). During a step the step's own
 * write of the pin controls (smpg-x86vmx.c) brings the change in. */
void vmx_kick_timer(struct pcpu *c)
{
    struct vmx_cpu *x = vmx_of(c);
    bool want = c->apic_off && x->preempt_value;
    if (want == !!(x->pin & PIN_PREEMPT_TIMER))
        return;
    x->pin = want ? x->pin | PIN_PREEMPT_TIMER : x->pin & ~PIN_PREEMPT_TIMER;
    if (want)   /* loaded at every entry: no "save timer value" exit control */
        vmwrite32(VMCS_GUEST_PREEMPT_TIMER, x->preempt_value);
    if (!x->stepping)
        vmwrite32(VMCS_PIN_CTLS, x->pin);
}

/* A hypapp's MSR (hypapp.c, from xmhf_app_main only: no guest runs yet). */
bool arch_msr_in_bitmap(uint32_t msr)
{
    return vmx_msr_bitmap_covers(msr);
}

int arch_msr_intercept(uint32_t msr, uint32_t access)
{
    return vmx_msr_bitmap_set(msr_bitmap, msr, access);
}

/* Halted with interrupts off until the guest starts this CPU (smpguest.c). INIT
 * is blocked in VMX root operation (SDM 24.8), so a parked CPU cannot be reset under it. With
 * apic=zeroexit the AP enters its guest in wait-for-SIPI as soon as the BSP has the
 * guest's memory map ready (g_guest_go), so no STARTUP ever needs the hypervisor to see
 * the ICR. */
__noreturn void arch_park_ap(struct pcpu *c)
{
    if (apic_zeroexit() && c->state == PCPU_VMX_ON) {
        while (!__atomic_load_n(&g_guest_go, __ATOMIC_ACQUIRE))
            cpu_pause();
        arch_launch_ap_wait_sipi(c);
    }
    arch_launch_ap_guest(c, smpg_ap_wait_for_sipi(c));
}

void arch_wait_for_event(void)
{
    __asm__ volatile("cli; hlt" ::: "memory");
}

__noreturn void arch_hold(void)
{
    halt_forever();
}

void arch_host_irq_open(void)
{
    __asm__ volatile("sti" ::: "memory");
}

void arch_host_irq_close(void)
{
    __asm__ volatile("cli" ::: "memory");
}

uint64_t arch_guest_cr0(struct pcpu *c)
{
    (void)c;
    return vmreadN(VMCS_GUEST_CR0);
}

static void vmcs_host_state(struct pcpu *c)
{
    struct dtr64 gdt, idt;
    __asm__ volatile("sgdt %0; sidt %1" : "=m"(gdt), "=m"(idt));
    vmwriteN(VMCS_HOST_CR0, read_cr0());
    vmwriteN(VMCS_HOST_CR3, read_cr3());
    vmwriteN(VMCS_HOST_CR4, read_cr4());
    vmwrite16(VMCS_HOST_CS_SEL, 0x08);
    vmwrite16(VMCS_HOST_SS_SEL, 0x10);
    vmwrite16(VMCS_HOST_DS_SEL, 0x10);
    vmwrite16(VMCS_HOST_ES_SEL, 0x10);
    vmwrite16(VMCS_HOST_FS_SEL, 0);
    vmwrite16(VMCS_HOST_GS_SEL, 0);
    vmwrite16(VMCS_HOST_TR_SEL, 0x18);
    vmwriteN(VMCS_HOST_FS_BASE, 0);
    vmwriteN(VMCS_HOST_GS_BASE, (uint64_t)(uintptr_t)c);
    vmwriteN(VMCS_HOST_TR_BASE, (uint64_t)(uintptr_t)&c->tss);
    vmwriteN(VMCS_HOST_GDTR_BASE, gdt.base);
    vmwriteN(VMCS_HOST_IDTR_BASE, idt.base);
    vmwrite32(VMCS_HOST_SYSENTER_CS, 0);
    vmwriteN(VMCS_HOST_SYSENTER_ESP, 0);
    vmwriteN(VMCS_HOST_SYSENTER_EIP, 0);
    vmwrite64(VMCS_HOST_EFER, rdmsr(MSR_IA32_EFER));
    vmwrite64(VMCS_HOST_PAT, rdmsr(MSR_IA32_PAT));
    vmwriteN(VMCS_HOST_RSP, c->stack_top);
    vmwriteN(VMCS_HOST_RIP, (uint64_t)(uintptr_t)vmx_exit_entry);
}

static void vmcs_controls(struct vmx_cpu *x)
{
    vmwrite32(VMCS_PIN_CTLS, x->pin);
    vmwrite32(VMCS_PROC_CTLS, x->proc);
    vmwrite32(VMCS_PROC_CTLS2, x->proc2);
    vmwrite32(VMCS_EXIT_CTLS, x->exit);
    vmwrite32(VMCS_ENTRY_CTLS, x->entry);
    vmwrite32(VMCS_EXCEPTION_BITMAP, 0);
    vmwrite32(VMCS_PF_EC_MASK, 0);
    vmwrite32(VMCS_PF_EC_MATCH, 0);
    vmwrite32(VMCS_CR3_TARGET_COUNT, 0);
    vmwrite32(VMCS_EXIT_MSR_STORE_COUNT, 0);
    vmwrite32(VMCS_EXIT_MSR_LOAD_COUNT, 0);
    vmwrite32(VMCS_ENTRY_MSR_LOAD_COUNT, 0);
    vmwrite32(VMCS_ENTRY_INTR_INFO, 0);
    vmwrite64(VMCS_MSR_BITMAP, msr_bitmap_pa);
    if (x->proc & PROC_USE_IO_BITMAPS) {
        vmwrite64(VMCS_IO_BITMAP_A, hypapp_io_bitmap_pa);           /* ports 0-7fff */
        vmwrite64(VMCS_IO_BITMAP_B, hypapp_io_bitmap_pa + 0x1000);  /* 8000-ffff */
    }
    vmwrite64(VMCS_EPT_POINTER, x->eptp);
    vmwrite64(VMCS_TSC_OFFSET, 0);
    if (x->proc2 & PROC2_XSAVES)
        vmwrite64(VMCS_XSS_EXIT_BITMAP, 0);
    if (x->spp)
        vmwrite64(VMCS_SPPTP, x->sppt_pa[0]);
    /* CR0/CR4 bits VMX forces (NE, VMXE, ...) belong to the hypervisor: the guest reads
     * its own values from the shadows, and writes that touch them exit. */
    vmwriteN(VMCS_CR0_MASK, (x->cr0_guest_fixed0 | ~x->cr0_fixed1) & 0xffffffffull);
    vmwriteN(VMCS_CR4_MASK, (x->cr4_fixed0 | ~x->cr4_fixed1) & 0xffffffffull);
}

/* Real mode, as an unrestricted guest may enter it (SDM 26.3.1.2): the state a BIOS
 * leaves for a boot sector (CS:IP = 0000:7c00, SP 7c00h, the IVT's IDTR), or with
 * c->reset_state the state INIT leaves (SDM Vol. 3A table 9-1: IDTR limit FFFFh, SP 0,
 * CR0 = ET plus the CD/NW the guest had; EDX, the processor signature, is set by the
 * caller), for an AP's STARTUP or the BSP's INIT. */
static void vmcs_guest_realmode(struct pcpu *c, struct vmx_cpu *x, uint16_t cs_sel,
                                uint64_t cs_base, uint64_t rip)
{
#define SEG(S, sel, ar) do { \
        vmwrite16(VMCS_GUEST_##S##_SEL, (sel)); vmwriteN(VMCS_GUEST_##S##_BASE, (uint64_t)(sel) << 4); \
        vmwrite32(VMCS_GUEST_##S##_LIMIT, 0xffff); vmwrite32(VMCS_GUEST_##S##_AR, (ar)); } while (0)
    SEG(CS, cs_sel, 0x9b);      /* present, code, readable, accessed */
    SEG(SS, 0, 0x93);           /* present, data, writable, accessed */
    SEG(DS, 0, 0x93);
    SEG(ES, 0, 0x93);
    SEG(FS, 0, 0x93);
    SEG(GS, 0, 0x93);
#undef SEG
    vmwriteN(VMCS_GUEST_CS_BASE, cs_base);     /* FFFF0000h at the reset vector */
    vmwrite16(VMCS_GUEST_TR_SEL, 0);
    vmwriteN(VMCS_GUEST_TR_BASE, 0);
    vmwrite32(VMCS_GUEST_TR_LIMIT, 0xffff);
    vmwrite32(VMCS_GUEST_TR_AR, 0x8b);          /* busy TSS: required even in real mode */
    vmwrite16(VMCS_GUEST_LDTR_SEL, 0);
    vmwriteN(VMCS_GUEST_LDTR_BASE, 0);
    vmwrite32(VMCS_GUEST_LDTR_LIMIT, 0xffff);
    vmwrite32(VMCS_GUEST_LDTR_AR, AR_UNUSABLE | 0x82);
    vmwriteN(VMCS_GUEST_GDTR_BASE, 0);
    vmwrite32(VMCS_GUEST_GDTR_LIMIT, 0xffff);
    vmwriteN(VMCS_GUEST_IDTR_BASE, 0);
    vmwrite32(VMCS_GUEST_IDTR_LIMIT, c->reset_state ? 0xffff : 0x3ff);
    uint64_t cr0 = CR0_ET | (c->reset_state ? c->guest_cr0_keep : 0);
    vmwriteN(VMCS_CR0_SHADOW, cr0);
    vmwriteN(VMCS_GUEST_CR0, (cr0 | x->cr0_guest_fixed0) & x->cr0_fixed1);
    vmwriteN(VMCS_CR4_SHADOW, 0);
    vmwriteN(VMCS_GUEST_CR4, x->cr4_fixed0 & x->cr4_fixed1);
    vmwriteN(VMCS_GUEST_CR3, 0);
    vmwriteN(VMCS_GUEST_DR7, 0x400);
    vmwriteN(VMCS_GUEST_RSP, c->reset_state ? 0 : 0x7c00);
    vmwriteN(VMCS_GUEST_RIP, rip);
    vmwriteN(VMCS_GUEST_RFLAGS, RFLAGS_FIXED);
    vmwriteN(VMCS_GUEST_PENDING_DBG, 0);
    vmwrite32(VMCS_GUEST_INTERRUPTIBILITY, 0);
    vmwrite32(VMCS_GUEST_ACTIVITY, ACTIVITY_ACTIVE);
    vmwrite64(VMCS_VMCS_LINK_PTR, ~0ull);
    vmwrite64(VMCS_GUEST_DEBUGCTL, 0);
    vmwrite64(VMCS_GUEST_PAT, PAT_POWERON);
    vmwrite64(VMCS_GUEST_EFER, 0);
    vmwrite32(VMCS_GUEST_SYSENTER_CS, 0);
    vmwriteN(VMCS_GUEST_SYSENTER_ESP, 0);
    vmwriteN(VMCS_GUEST_SYSENTER_EIP, 0);
}

static __noreturn void launch(struct pcpu *c, uint16_t cs, uint64_t cs_base, uint64_t rip,
                             uint64_t rdx, bool wait_sipi)
{
    struct vmx_cpu *x = vmx_of(c);
    /* A restart after INIT finds the VMCS launched: VMLAUNCH wants it clear (SDM 24.1). */
    if (vmcs_clear(c->arch_page_pa[1]) || vmcs_load(c->arch_page_pa[1]))
        panic("CPU %u: VMCLEAR/VMPTRLD failed", c->idx);
    vmx_smpg_cpu_setup(c);
    /* Real mode: a restart after INIT must not inherit the IA-32e entry control a
     * 64-bit guest left behind (after_paging_change), or the entry is invalid. */
    x->entry &= ~ENTRY_IA32E_GUEST;
    x->stepping = false;
    x->nmi_window = x->nmi_intr_window = false;
    /* I/O instructions exit only where a hypapp asked for ports (hypapp.c). */
    if (hypapp_io_bitmap)
        x->proc |= PROC_USE_IO_BITMAPS;
    vmcs_host_state(c);
    vmcs_controls(x);
    if (x->pin & PIN_PREEMPT_TIMER)     /* a fresh VMCS: the value too */
        vmwrite32(VMCS_GUEST_PREEMPT_TIMER, x->preempt_value);
    vmx_kick_timer(c);
    vmx_write_proc(x);      /* MTF for a SIPI start's guard (vmx_zeroexit_sipi) */
    vmcs_guest_realmode(c, x, cs, cs_base, rip);
    memset(&x->launch_regs, 0, sizeof(x->launch_regs));
    x->launch_regs.r[R_DX] = rdx;
    /* Wait-for-SIPI (26.3.1.5): nothing may be injected, no blocking; the entry leaves
     * the CPU inactive until a SIPI (SIPI exit) or an INIT (INIT exit). The hypapp
     * hears of the CPU at its STARTUP, as in the step mode. */
    x->wait_sipi = wait_sipi;
    if (wait_sipi) {
        vmwrite32(VMCS_GUEST_ACTIVITY, ACTIVITY_WAIT_SIPI);
        __atomic_store_n(&c->guest_state, GUEST_CPU_WAIT_SIPI, __ATOMIC_SEQ_CST);
    } else {
        hypapp_cpu_start(c, &x->launch_regs);
    }
    /* A CPU restarted through INIT lets the others go (restart-x86vmx.c) only now: a
     * STARTUP they send it meanwhile would find it in VMX root operation, where STARTUPs
     * are lost. Any other CPU waits here while one is restarting. */
    vmx_restart_done(c);
    vmx_world_gate(c);
    /* EPT entries may have been cached while the tables were being built. */
    invept_all();
    vmx_launch(&x->launch_regs);
    panic("CPU %u: VMLAUNCH failed, VM-instruction error %u", c->idx, vmread32(VMCS_VM_INSTR_ERROR));
}

__noreturn void arch_launch_bsp_guest(struct pcpu *c)
{
    launch(c, 0, 0, 0x7c00, g_bp->opts.boot_drive, false);
}

/* EDX after INIT: the processor signature, CPUID.1:EAX (SDM table 9-1). */
static uint64_t cpu_signature(void)
{
    uint32_t r[4];
    cpuid(1, 0, r);
    return r[0];
}

/* The AP's guest as after INIT and STARTUP: real mode at vector:0000 (SDM 9.4.4.1). */
__noreturn void arch_launch_ap_guest(struct pcpu *c, uint32_t sipi_vector)
{
    printk("xmhf: CPU %u: guest started at %04x:0000\n", c->idx, sipi_vector << 8);
    launch(c, (uint16_t)(sipi_vector << 8), (uint64_t)sipi_vector << 12, 0, cpu_signature(),
           false);
}

/* The BSP after INIT: CS selector F000h with base FFFF0000h, IP FFF0h (SDM 9.1.4). */
__noreturn void arch_launch_guest_reset(struct pcpu *c)
{
    launch(c, 0xf000, 0xffff0000ull, 0xfff0, cpu_signature(), false);
}

/* Said once per CPU (at hypervisor start): after an INIT the STARTUP that follows may
 * come within microseconds, and the CPU must be back in wait-for-SIPI by then. */
__noreturn void arch_launch_ap_wait_sipi(struct pcpu *c)
{
    if (c->guest_state == GUEST_CPU_RESET)
        printk("xmhf: CPU %u: guest in wait-for-SIPI\n", c->idx);
    vmx_of(c)->sipi_guard = false;
    launch(c, 0, 0, 0, 0, true);
}

/* apic=zeroexit: the guest's STARTUP reached this CPU in wait-for-SIPI as a SIPI VM
 * exit (SDM 25.2; the vector is in bits 7:0 of the exit qualification, 28.2.1). The
 * CPU starts in real mode at vector << 12, in a fresh VMCS as in the step mode. */
static __noreturn void sipi_start(void *arg)
{
    struct pcpu *c = arg;
    vmx_of(c)->sipi_guard = vmx_of(c)->mtf;
    vmx_of(c)->sipi_fresh = true;
    arch_launch_ap_guest(c, c->sipi_vector);
}

void vmx_zeroexit_sipi(struct vcpu *v)
{
    struct pcpu *c = v->cpu;
    struct vmx_cpu *x = vmx_of(c);
    if (!x->wait_sipi)
        return;     /* not entered in wait-for-SIPI: no SIPI exit can be genuine */
    /* Bochs (2.7 and 3.0) leaves NMIs (and INIT) masked after a SIPI exit until the host
     * executes an IRET (DESIGN.md section 6): an IRET to the next instruction reopens
     * them. On hardware it changes nothing (no NMI is being handled here). */
    __asm__ volatile("mov %%rsp, %%rax\n\t"
                     "pushq $0x10\n\tpushq %%rax\n\tpushfq\n\tpushq $0x08\n\t"
                     "lea 1f(%%rip), %%rax\n\tpushq %%rax\n\tiretq\n1:" ::: "rax", "memory");
    /* The local APIC reset left by the INIT that put the CPU here (smpguest.c). */
    smpg_apic_reset_owed(c);
    /* NMIs that reached the CPU while it waited were blocked there (the hardware
     * does not deliver them in wait-for-SIPI), and the start discards them, as the
     * step mode's start does. */
    __atomic_store_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    c->nmi_pending = 0;
    c->sipi_vector = (uint32_t)vmreadN(VMCS_EXIT_QUALIFICATION) & 0xffu;
    c->stats[STAT_INIT_SIPI]++;
    __atomic_store_n(&c->guest_state, GUEST_CPU_RUNNING, __ATOMIC_SEQ_CST);
    call_on_stack(c->stack_top, sipi_start, c);
}

__noreturn void vmx_resume_failed(struct pcpu *c)
{
    panic("CPU %u: VMRESUME failed, VM-instruction error %u (guest rip %llx)", c->idx,
          vmread32(VMCS_VM_INSTR_ERROR), (unsigned long long)vmreadN(VMCS_GUEST_RIP));
}

/* ---- the guest view for common code ---- */

uint64_t arch_guest_rip(struct vcpu *v) { (void)v; return vmreadN(VMCS_GUEST_RIP); }
void arch_guest_set_rip(struct vcpu *v, uint64_t rip) { (void)v; vmwriteN(VMCS_GUEST_RIP, rip); }
uint64_t arch_guest_rsp(struct vcpu *v) { (void)v; return vmreadN(VMCS_GUEST_RSP); }

uint64_t arch_guest_seg_base(struct vcpu *v, int seg)
{
    static const vmcsN_t base[] = { VMCS_GUEST_ES_BASE, VMCS_GUEST_CS_BASE, VMCS_GUEST_SS_BASE,
                                    VMCS_GUEST_DS_BASE, VMCS_GUEST_FS_BASE, VMCS_GUEST_GS_BASE };
    (void)v;
    return vmreadN(base[seg]);
}

unsigned arch_guest_cpl(struct vcpu *v)
{
    (void)v;
    if (!(vmreadN(VMCS_GUEST_CR0) & CR0_PE))
        return 0;
    if (vmreadN(VMCS_GUEST_RFLAGS) & RFLAGS_VM)
        return 3;
    return (vmread32(VMCS_GUEST_SS_AR) >> 5) & 3;
}

void arch_guest_inject_exception(struct vcpu *v, unsigned vector, bool has_err, uint32_t err)
{
    (void)v;
    uint32_t info = INTR_INFO_VALID | INTR_TYPE_HWEXC | vector;
    /* Real mode delivers no error code; VM entry rejects one there (SDM 26.2.1.3). */
    if (has_err && (vmreadN(VMCS_GUEST_CR0) & CR0_PE)) {
        info |= INTR_INFO_ERRCODE;
        vmwrite32(VMCS_ENTRY_EXC_ERRCODE, err);
    }
    vmwrite32(VMCS_ENTRY_INTR_INFO, info);
}

/* Past an instruction the hypervisor emulated: as the processor would, end STI/MOV SS
 * blocking, clear RF and raise the single-step trap the guest's TF asks for (SDM 26.6.3). */
void vmx_skip_instruction(struct vcpu *v)
{
    (void)v;
    vmwriteN(VMCS_GUEST_RIP, vmreadN(VMCS_GUEST_RIP) + vmread32(VMCS_EXIT_INSTR_LEN));
    uint32_t intr = vmread32(VMCS_GUEST_INTERRUPTIBILITY);
    if (intr & (INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOVSS))
        vmwrite32(VMCS_GUEST_INTERRUPTIBILITY, intr & ~(INTERRUPTIBILITY_STI | INTERRUPTIBILITY_MOVSS));
    uint64_t rflags = vmreadN(VMCS_GUEST_RFLAGS);
    /* A completed instruction clears RF (SDM 18.3.1.1): left set, it would suppress an
     * instruction breakpoint on the next one. */
    if (rflags & RFLAGS_RF)
        vmwriteN(VMCS_GUEST_RFLAGS, rflags & ~RFLAGS_RF);
    if (rflags & RFLAGS_TF)
        vmwriteN(VMCS_GUEST_PENDING_DBG, vmreadN(VMCS_GUEST_PENDING_DBG) | (1u << 14));
}
