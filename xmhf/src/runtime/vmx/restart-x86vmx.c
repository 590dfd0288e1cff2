/* apic=zeroexit on a processor that keeps an INIT pending after its INIT VM exit
 * (Bochs 2.7, DESIGN.md section 6): performing the INIT is the only way to clear it.
 *
 * SDM 25.2 says an INIT exit leaves no INIT behind. Bochs 2.7 keeps it: every later
 * entry of that CPU's guest into the active state exits with INIT again before one
 * instruction runs, so after its first CPU offline/online the CPU could never run its
 * guest again. The INIT is blocked in VMX root operation (SDM 24.8) and taken at VMXOFF,
 * which leaves the CPU in wait-for-SIPI outside VMX operation. From there only a STARTUP
 * brings it back, and whatever STARTUP comes first wins: so while the CPU is out, no
 * other CPU runs guest code ("the world stops": each is held in the hypervisor), the
 * STARTUP comes from a held CPU and names the restart page, which the guest can neither
 * write nor reach by DMA (e820hook.c), and no I/O APIC pin, HPET timer or device MSI
 * (smp.c, pci.c) may be able to send the CPU an NMI (taken in real mode through the
 * guest's table) or a STARTUP (reserved there, but Bochs delivers one). Where any of
 * this cannot be had, the CPU is not restarted: it waits in its guest for the next
 * STARTUP, which tries again, and the log says why.
 *
 * Without MTF the hypervisor cannot tell that INIT from the one wait-for-SIPI held
 * (SDM 25.2), which its INIT exit consumed on a processor without the bug: so the CPU
 * also sends itself an INIT before VMXOFF (blocked in VMX root operation, SDM 24.8,
 * hence taken at VMXOFF; Bochs drops it there, having the other).
 *
 * The BSP is never restarted this way: outside VMX operation its INIT runs the
 * firmware's reset code, which the guest can redirect (shutdown code, shadowed ROM). */
#include "apic.h"
#include "icr.h"
#include "vmx-x86vmx.h"

/* The world stop: owner is the CPU being restarted (+1; 0: none). A CPU sees it at its
 * next VM entry (vmx_world_gate) and waits there with held set; helper is the held CPU
 * that sends the STARTUPs. */
static struct spinlock restart_lock = SPINLOCK_INIT("restart");
static volatile uint32_t world_owner;
static volatile int32_t world_helper = -1;
static volatile uint32_t restart_target_apic;
static volatile uint32_t restart_go, restart_back;

static void send_startups(void)
{
    /* Until the CPU reports from the restart page: a STARTUP before its INIT completed is
     * ignored (it is not yet in wait-for-SIPI), so the sender repeats it. */
    for (unsigned i = 0; i < 1000000u && !__atomic_load_n(&restart_back, __ATOMIC_ACQUIRE); i++) {
        lapic_send_ipi_raw(restart_target_apic, ICR_DM_STARTUP | ICR_VECTOR(g_restart_page >> 12));
        for (unsigned d = 0; d < 50u && !__atomic_load_n(&restart_back, __ATOMIC_ACQUIRE); d++)
            cpu_pause();
    }
}

/* Before every VM entry: held while another CPU is out of VMX operation. */
void vmx_world_gate(struct pcpu *c)
{
    uint32_t owner = __atomic_load_n(&world_owner, __ATOMIC_ACQUIRE);
    if (!owner || owner == c->idx + 1)
        return;
    unsigned said = 0;
    __atomic_store_n(&c->held, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&world_owner, __ATOMIC_ACQUIRE)) {
        if (__atomic_load_n(&world_helper, __ATOMIC_ACQUIRE) == (int32_t)c->idx &&
            __atomic_load_n(&restart_go, __ATOMIC_ACQUIRE)) {
            /* Until it is back: while it is out of VMX operation no guest CPU may run
             * (a guest STARTUP would start it unsupervised), so the world stays stopped
             * rather than give it up; said once. */
            send_startups();
            if (__atomic_load_n(&restart_back, __ATOMIC_ACQUIRE))
                __atomic_store_n(&restart_go, 0, __ATOMIC_RELEASE);
            else if (!said++)
                printk("xmhf: CPU %u: CPU APIC ID %u is not back from its restart through "
                       "INIT yet: every guest CPU waits\n", c->idx, restart_target_apic);
        }
        guestmem_tlb_sync(c);
        cpu_pause();
    }
    __atomic_store_n(&c->held, 0, __ATOMIC_SEQ_CST);
}

/* Stops every other CPU that may be running its guest; false (world resumed) if one
 * does not stop or none is left to send the STARTUP. A CPU in wait-for-SIPI in its
 * guest runs nothing; if a STARTUP started it just before, its launch meets the gate. */
static bool world_stop(struct pcpu *self)
{
    __atomic_store_n(&world_helper, -1, __ATOMIC_SEQ_CST);
    __atomic_store_n(&world_owner, self->idx + 1, __ATOMIC_SEQ_CST);
    int32_t helper = -1;
    for (uint32_t i = 0; i < g_ncpus; i++) {
        struct pcpu *t = g_pcpu[i];
        if (t == self || t->state != PCPU_VMX_ON)
            continue;
        unsigned round;
        for (round = 0; round < 100000u && !__atomic_load_n(&t->held, __ATOMIC_SEQ_CST); round++) {
            uint32_t gs = __atomic_load_n(&t->guest_state, __ATOMIC_SEQ_CST);
            if (gs == GUEST_CPU_WAIT_SIPI || gs == GUEST_CPU_RESET)
                break;
            nmi_kick(self, t);
        }
        if (__atomic_load_n(&t->held, __ATOMIC_SEQ_CST)) {
            if (helper < 0 && !t->apic_off)     /* its STARTUP must be able to go */
                helper = (int32_t)i;
        } else if (round == 100000u) {
            printk("xmhf: CPU %u: CPU %u did not stop for its restart\n", self->idx, i);
            __atomic_store_n(&world_owner, 0, __ATOMIC_SEQ_CST);
            return false;
        }
    }
    if (helper < 0) {
        printk("xmhf: CPU %u: no other CPU running to send its restart STARTUP\n", self->idx);
        __atomic_store_n(&world_owner, 0, __ATOMIC_SEQ_CST);
        return false;
    }
    __atomic_store_n(&world_helper, helper, __ATOMIC_SEQ_CST);
    return true;
}

/* Back from the restart page: long mode on this CPU's stack, everything else as INIT
 * left it. The hypervisor's tables, IA32_APIC_BASE as the guest had it (INIT keeps it;
 * Bochs resets it), VMX operation, then the guest at the STARTUP it had received. */
static uint64_t saved_apic_base;

static __noreturn void restart_entry(struct pcpu *c)
{
    cpu_tables_load(c);
    __atomic_store_n(&restart_back, 1, __ATOMIC_RELEASE);
    if (rdmsr(MSR_IA32_APIC_BASE) != saved_apic_base)
        wrmsr(MSR_IA32_APIC_BASE, saved_apic_base);
    if (vmx_root_enter(c) != 0)
        panic("CPU %u: VMXON failed after its restart", c->idx);
    /* VM entry leaves CR0.CD and NW as they are (SDM 26.3.2.1), so the guest's CD/NW,
     * which INIT keeps, live in the processor's CR0: the trampoline cleared them. */
    write_cr0((read_cr0() & ~(uint64_t)(CR0_CD | CR0_NW)) | c->guest_cr0_keep);
    c->stats[STAT_INIT_SIPI]++;
    __atomic_add_fetch(&g_init_restarts, 1, __ATOMIC_SEQ_CST);
    printk("xmhf: CPU %u: restarted through INIT (the INIT stayed pending after its exit)\n",
           c->idx);
    __atomic_store_n(&c->guest_state, GUEST_CPU_RUNNING, __ATOMIC_SEQ_CST);
    arch_launch_ap_guest(c, c->sipi_vector);    /* its gate resumes the world */
}

/* At an INIT exit that came before the guest's first instruction after a STARTUP: the
 * INIT that put the CPU into wait-for-SIPI is still pending. Returns only if the CPU
 * cannot be restarted (the reason said); otherwise it comes back at restart_entry. */
void vmx_restart_through_init(struct pcpu *c)
{
    if (c->is_bsp || !g_restart_page || c->apic_off) {
        printk("xmhf: CPU %u: its INIT stays pending and it cannot be restarted (%s): it "
               "waits for a STARTUP it cannot act on\n", c->idx,
               c->is_bsp ? "the BSP would run the firmware's reset code unsupervised" :
               c->apic_off ? "its local APIC is off, so it cannot send itself the INIT" :
                             "no restart page");
        return;
    }
    __atomic_store_n(&c->guest_state, GUEST_CPU_RESET, __ATOMIC_SEQ_CST);
    spin_lock(&restart_lock);
    if (!world_stop(c)) {
        spin_unlock(&restart_lock);
        return;
    }
    /* Checked with every guest CPU held: nothing can change the pins until it resumes. */
    int pin = smp_irq_unsafe_source(), fn = pin < 0 ? pci_msi_unsafe() : -1;
    if (pin >= 0 || fn >= 0) {
        if (pin >= 1000)
            printk("xmhf: CPU %u: not restarted: HPET timer %d sends an FSB message with "
                   "the NMI or the reserved STARTUP delivery mode, which would reach it "
                   "outside VMX\n", c->idx, pin - 1000);
        else if (pin >= 0)
            printk("xmhf: CPU %u: not restarted: I/O APIC pin %d is unmasked with the NMI "
                   "or the reserved STARTUP delivery mode, which would reach it outside "
                   "VMX\n", c->idx, pin);
        else
            printk("xmhf: CPU %u: not restarted: PCI %02x:%02x.%x has an MSI with the NMI "
                   "or the reserved STARTUP delivery mode, which would reach it outside "
                   "VMX\n", c->idx, (unsigned)fn >> 8, ((unsigned)fn >> 3) & 31, (unsigned)fn & 7);
        __atomic_store_n(&world_owner, 0, __ATOMIC_SEQ_CST);
        spin_unlock(&restart_lock);
        return;
    }
    smp_tramp_install(g_restart_page, c, restart_entry);
    saved_apic_base = rdmsr(MSR_IA32_APIC_BASE);
    restart_target_apic = c->apic_id;
    __atomic_store_n(&restart_back, 0, __ATOMIC_SEQ_CST);
    /* VMCLEAR writes the VMCS back to memory (SDM 24.11.1): the launch after the restart
     * reloads it. The restart lock stays taken until then: a second CPU restarting
     * would overwrite the page and the saved base. */
    if (vmcs_clear(c->arch_page_pa[1]))
        panic("CPU %u: VMCLEAR failed", c->idx);
    lapic_send_ipi_raw(c->apic_id, ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
    __atomic_store_n(&restart_go, 1, __ATOMIC_SEQ_CST);
    __asm__ volatile("vmxoff\n\t"
                     "1: cli\n\thlt\n\tjmp 1b" ::: "memory");
    __builtin_unreachable();
}

/* The restarted CPU's last step before its VM entry (launch): the world resumes. */
void vmx_restart_done(struct pcpu *c)
{
    if (__atomic_load_n(&world_owner, __ATOMIC_ACQUIRE) != c->idx + 1)
        return;
    __atomic_store_n(&world_owner, 0, __ATOMIC_SEQ_CST);
    spin_unlock(&restart_lock);
}
