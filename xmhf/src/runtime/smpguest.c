/* Guest SMP policy, shared by the VMX and SVM halves: what a captured ICR write means.
 * INIT and STARTUP IPIs never reach the hardware: the hypervisor owns the real APs, so
 * it plays their part (SDM Vol. 3A 9.4.4 "MP Initialization Example": INIT puts an AP
 * into wait-for-SIPI, a STARTUP starts it in real mode at vector << 12, a STARTUP to a
 * CPU not waiting for one is ignored). Every other ICR write is forwarded unchanged. */
#include "apic.h"
#include "icr.h"
#include "msr.h"
#include "xmhf.h"

/* CPUs restarted through INIT (apic=zeroexit on Bochs 2.7, vmx/restart-x86vmx.c). */
volatile uint64_t g_init_restarts;

/* Asks CPU t for something by NMI, until its guest_state leaves `from`. NMI is the one
 * interrupt that ends HLT with interrupts off (a parked AP) and that always exits a
 * running guest (NMI exiting / the NMI intercept) or is checked before the next entry
 * (host NMIs). The target may be between its check and its HLT when one lands, so the
 * NMI is repeated; 1000 rounds is generous even for an emulator. The sender stops
 * waiting when an INIT is pending for itself: two CPUs that INIT each other at the same
 * moment would otherwise each wait for the other (both INITs stand; each CPU takes its
 * own at its next entry, which the NMI already sent brings about). */
static void kick_until(struct pcpu *self, struct pcpu *t, uint32_t from)
{
    for (unsigned tries = 0; tries < 1000 && t->guest_state == from; tries++) {
        /* At least one NMI goes out before the sender gives up: a running target exits
         * on it and takes its INIT at once, instead of at some later exit. */
        lapic_send_ipi_raw(t->apic_id, ICR_DM_NMI | ICR_LEVEL_ASSERT);
        if (self != t && self->init_request)
            return;
        for (unsigned i = 0; i < 2000 && t->guest_state == from; i++) {
            /* t may itself be waiting for this CPU's nested-TLB flush (guestmem.c)
             * before it can take the request. */
            guestmem_tlb_sync(self);
            cpu_pause();
        }
    }
}

/* The NMIs that asked this CPU to take its INIT or to start were the hypervisor's, not
 * the guest's: let any still in flight (the sender stops once it sees the new state)
 * land, then forget them, so the restarted guest (the BSP's firmware at the reset
 * vector, an AP's trampoline) gets none of them. */
static void forget_kick_nmis(struct pcpu *c)
{
    for (unsigned i = 0; i < 20000; i++)
        cpu_pause();
    __atomic_store_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    c->nmi_pending = 0;
}

static bool cas_state(struct pcpu *t, uint32_t from, uint32_t to)
{
    return __atomic_compare_exchange_n(&t->guest_state, &from, to, false, __ATOMIC_SEQ_CST,
                                       __ATOMIC_SEQ_CST);
}

/* An INIT for t, from whatever state t is in (SDM Vol. 3A 9.4, 11.6.1 "INIT"):
 *  - waiting (RESET, WAIT_SIPI): it waits for a STARTUP (again);
 *  - STARTING (a STARTUP accepted, its guest not entered yet): back to WAIT_SIPI, as a
 *    processor that receives INIT after STARTUP is reset again;
 *  - RUNNING: INIT_PENDING; the CPU that wins that transition raises init_request, and
 *    t takes its guest down before its next entry (only t can: it owns its VMCS/VMCB);
 *  - INIT_PENDING: already on its way; a second INIT adds nothing.
 * Returns true when t was running and must be asked (kicked) to take it. */
static bool post_init(struct pcpu *t)
{
    for (;;) {
        uint32_t s = t->guest_state;
        switch (s) {
        case GUEST_CPU_RESET:
        case GUEST_CPU_STARTING:
            if (cas_state(t, s, GUEST_CPU_WAIT_SIPI))
                return false;
            break;
        case GUEST_CPU_RUNNING:
            if (cas_state(t, s, GUEST_CPU_INIT_PENDING)) {
                __atomic_store_n(&t->init_request, 1, __ATOMIC_SEQ_CST);
                return true;
            }
            break;
        default:            /* WAIT_SIPI, INIT_PENDING */
            return false;
        }
    }
}

void smpg_init_self(struct pcpu *c)
{
    (void)post_init(c);
}

void smpg_physical_init(struct pcpu *c)
{
    if (c->guest_state == GUEST_CPU_RUNNING && !c->stats[STAT_PHYS_INIT]++)
        printk("xmhf: CPU %u: INIT signal: taken as this CPU's INIT\n", c->idx);
    smpg_init_self(c);
}

/* The sender waits until the target has taken its INIT (it is in wait-for-SIPI then),
 * so a STARTUP that follows finds it there. */
static void deliver_init(struct pcpu *from, struct pcpu *t)
{
    if (t->state != PCPU_VMX_ON)
        return;     /* held by the hypervisor (smp_hold_cpu): nothing can start it */
    if (t == from) {
        smpg_init_self(t);
        return;
    }
    if (post_init(t) || t->guest_state == GUEST_CPU_INIT_PENDING) {
        kick_until(from, t, GUEST_CPU_INIT_PENDING);
        if (t->guest_state == GUEST_CPU_INIT_PENDING && !from->init_request)
            printk("xmhf: CPU %u: CPU %u did not take its INIT\n", from->idx, t->idx);
    }
}

static void deliver_sipi(struct pcpu *from, struct pcpu *t, uint32_t vector)
{
    if (t->state != PCPU_VMX_ON || t->guest_state != GUEST_CPU_WAIT_SIPI)
        return;     /* not waiting for a STARTUP (a BSP never is): ignored, as by the hardware */
    t->sipi_vector = vector;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!cas_state(t, GUEST_CPU_WAIT_SIPI, GUEST_CPU_STARTING))
        return;
    kick_until(from, t, GUEST_CPU_STARTING);     /* a parked AP: woken, it says RUNNING */
    if (t->guest_state == GUEST_CPU_STARTING && !from->init_request)
        printk("xmhf: CPU %u did not answer its start request\n", t->idx);
}

static void forward(uint64_t raw, bool x2apic)
{
    if (x2apic) {
        /* raw passed the reserved-bit check (apicstep.c); still, no guest-chosen value
         * goes to an MSR by a WRMSR that could fault in the hypervisor. */
        (void)wrmsr_safe(this_pcpu(), X2APIC_MSR(APIC_ICR_LO), raw);
        return;
    }
    lapic_send_ipi_raw((uint32_t)(raw >> 56), (uint32_t)raw);
}

void smpg_icr_write(struct vcpu *v, uint64_t raw, bool x2apic)
{
    struct pcpu *c = v->cpu;
    struct icr_cmd cmd;
    if (x2apic)
        icr_decode_x2apic(raw, &cmd);
    else
        icr_decode_xapic((uint32_t)raw, (uint32_t)(raw >> 32), &cmd);
    c->stats[STAT_ICR_CAPTURED]++;
    enum icr_action act = icr_classify(&cmd);
    if (act == ICR_FORWARD) {
        forward(raw, x2apic);
        return;
    }
    if (act != ICR_INIT && act != ICR_STARTUP)
        return;     /* INIT de-assert resets nobody; invalid combinations do nothing */
    c->stats[STAT_INIT_SIPI]++;
    /* The sender is among the targets when its own ID (or a broadcast) names it: an
     * INIT then resets the sender too, after the others (SDM 11.6.1); a STARTUP to a
     * running CPU is ignored. */
    for (uint32_t i = 0; i < g_ncpus; i++) {
        const struct pcpu *p = g_pcpu[i];
        struct apic_view view = { p->apic_id, p->apic_ldr, p->apic_dfr };
        if (!icr_reaches(&cmd, x2apic, &view, i == c->idx))
            continue;
        if (act == ICR_INIT)
            deliver_init(c, g_pcpu[i]);
        else
            deliver_sipi(c, g_pcpu[i], cmd.vector);
    }
}

static __noreturn void restart_after_init(void *arg)
{
    struct pcpu *c = arg;
    if (apic_zeroexit())
        arch_launch_ap_wait_sipi(c);    /* its STARTUP comes as a SIPI exit */
    arch_launch_ap_guest(c, smpg_ap_wait_for_sipi(c));
}

/* apic=zeroexit: an AP's INIT leaves its local APIC reset to the SIPI exit that starts
 * it again (smpg_guest_init says why); done there before its guest runs, so the
 * started guest finds the APIC as INIT leaves it. */
void smpg_apic_reset_owed(struct pcpu *c)
{
    if (c->apic_reset_owed) {
        c->apic_reset_owed = false;
        lapic_init_reset(c);
    }
}

static __noreturn void restart_bsp(void *arg)
{
    arch_launch_guest_reset(arg);
}

/* What INIT resets beyond the registers the launch writes (SDM Vol. 3A table 9-1):
 * DR0-DR3 = 0, DR6 = FFFF0FF0h (DR7 and IA32_DEBUGCTL are guest state in the VMCS /
 * VMCB), XCR0 = 1 (x87 only; XCR0 is not switched between guest and host). CR0.CD and
 * NW keep their values. */
static void init_cpu_state(struct pcpu *c)
{
    uint32_t r[4];
    c->guest_cr0_keep = arch_guest_cr0(c) & (CR0_CD | CR0_NW);
    c->reset_state = true;
    __asm__ volatile("mov %0, %%dr0; mov %0, %%dr1; mov %0, %%dr2; mov %0, %%dr3"
                     :: "r"(0ul));
    __asm__ volatile("mov %0, %%dr6" :: "r"(0xffff0ff0ul));
    cpuid(1, 0, r);
    if ((r[2] & (1u << 26)) && (read_cr4() & CR4_OSXSAVE))
        (void)xsetbv_safe(c, 0, 1);
}

__noreturn void smpg_guest_init(struct pcpu *c)
{
    init_cpu_state(c);
    /* apic=zeroexit: the guest's own STARTUP reaches this AP in hardware, a few
     * microseconds after the INIT (Linux on a family-6 CPU sends it right after the
     * INIT, and a second one some 20 us later), and a STARTUP that finds the CPU still
     * in the hypervisor (VMX root) is ignored. The reset with its drain of accepted
     * interrupts is the long part of this path, so an AP goes back into wait-for-SIPI
     * first and its APIC is reset at the SIPI exit (smpg_apic_reset_owed), before its
     * guest runs again. In between nobody sees that APIC (the CPU runs nothing), and
     * what it accepts meanwhile is drained then. The BSP restarts here at once. */
    if (apic_zeroexit() && !(rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_BSP))
        c->apic_reset_owed = true;
    else
        lapic_init_reset(c);
    /* INIT discards what the CPU had pending, NMIs included (and the NMIs that asked
     * for this INIT were the hypervisor's). */
    c->nmi_pending = 0;
    __atomic_store_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->init_request, 0, __ATOMIC_SEQ_CST);
    if (rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_BSP) {
        /* The BSP does not wait for a STARTUP: it restarts at the reset vector (SDM
         * 9.1.1), where the firmware decides (warm-reset vector, or a new POST). */
        c->guest_state = GUEST_CPU_RUNNING;
        forget_kick_nmis(c);
        printk("xmhf: CPU %u: INIT: the BSP restarts at the reset vector\n", c->idx);
        call_on_stack(c->stack_top, restart_bsp, c);
    }
    c->guest_state = GUEST_CPU_WAIT_SIPI;
    if (!apic_zeroexit())   /* there the STARTUP may follow within microseconds */
        printk("xmhf: CPU %u: INIT: waiting for STARTUP\n", c->idx);
    call_on_stack(c->stack_top, restart_after_init, c);
}

/* A STARTUP moves the CPU from WAIT_SIPI to STARTING; it starts once it has moved itself
 * on to RUNNING, which an INIT that came in between prevents (STARTING -> WAIT_SIPI). */
uint32_t smpg_ap_wait_for_sipi(struct pcpu *c)
{
    while (!(c->guest_state == GUEST_CPU_STARTING &&
             cas_state(c, GUEST_CPU_STARTING, GUEST_CPU_RUNNING)))
        arch_wait_for_event();
    forget_kick_nmis(c);
    return c->sipi_vector;
}
