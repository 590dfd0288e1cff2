/* Guest SMP policy, shared by the VMX and SVM halves: what a captured ICR write means.
 * INIT and STARTUP IPIs never reach the hardware: the hypervisor owns the real APs, so
 * it plays their part (SDM Vol. 3A 9.4.4 "MP Initialization Example": INIT puts an AP
 * into wait-for-SIPI, a STARTUP starts it in real mode at vector << 12, a STARTUP to a
 * CPU not waiting for one is ignored). Every other ICR write is forwarded unchanged. */
#include "apic.h"
#include "icr.h"
#include "msr.h"
#include "xmhf.h"

/* Asks CPU t for something by NMI, until its guest_state leaves `from`. NMI is the one
 * interrupt that ends HLT with interrupts off (a parked AP) and that always exits a
 * running guest (NMI exiting / the NMI intercept) or is checked before the next entry
 * (host NMIs). The target may be between its check and its HLT when one lands, so the
 * NMI is repeated; 1000 rounds is generous even for an emulator. */
static void kick_until(struct pcpu *t, uint32_t from)
{
    for (unsigned tries = 0; tries < 1000 && t->guest_state == from; tries++) {
        lapic_send_ipi_raw(t->apic_id, ICR_DM_NMI | ICR_LEVEL_ASSERT);
        for (unsigned i = 0; i < 2000 && t->guest_state == from; i++)
            cpu_pause();
    }
}

/* INIT to a guest CPU that runs: only that CPU can take its guest down (it owns its
 * VMCS/VMCB), so it is asked (init_request, then smpg_guest_init on its side). The
 * sender waits until the target is in wait-for-SIPI, so a STARTUP that follows finds it
 * there. */
static void init_running(struct pcpu *from, struct pcpu *t)
{
    __atomic_store_n(&t->init_request, 1, __ATOMIC_SEQ_CST);
    kick_until(t, GUEST_CPU_RUNNING);
    if (t->guest_state == GUEST_CPU_RUNNING)
        printk("xmhf: CPU %u: CPU %u did not take its INIT\n", from->idx, t->idx);
}

static void deliver_init(struct pcpu *from, struct pcpu *t)
{
    if (t->state != PCPU_VMX_ON) {
        printk("xmhf: INIT for CPU %u, which the hypervisor could not take over: dropped\n", t->idx);
        return;
    }
    if (t->guest_state == GUEST_CPU_RUNNING)
        init_running(from, t);
    else if (t->guest_state == GUEST_CPU_RESET)
        t->guest_state = GUEST_CPU_WAIT_SIPI;
}

static void deliver_sipi(struct pcpu *t, uint32_t vector)
{
    uint32_t expect = GUEST_CPU_WAIT_SIPI;
    if (!__atomic_compare_exchange_n(&t->guest_state, &expect, GUEST_CPU_STARTING, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
        return;     /* not waiting for a STARTUP: ignored, as by the hardware */
    t->sipi_vector = vector;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    kick_until(t, GUEST_CPU_STARTING);     /* a parked AP: woken, it says RUNNING */
    if (t->guest_state == GUEST_CPU_STARTING)
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
    struct apic_view view[MAX_CPUS];
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
    for (uint32_t i = 0; i < g_ncpus; i++) {
        view[i].apic_id = g_pcpu[i]->apic_id;
        view[i].ldr = g_pcpu[i]->apic_ldr;
        view[i].dfr = g_pcpu[i]->apic_dfr;
    }
    uint64_t targets = icr_targets(&cmd, x2apic, view, g_ncpus, c->idx);
    c->stats[STAT_INIT_SIPI]++;
    for (uint32_t i = 0; i < g_ncpus; i++) {
        if (!(targets >> i & 1) || i == c->idx)
            continue;
        if (act == ICR_INIT)
            deliver_init(c, g_pcpu[i]);
        else
            deliver_sipi(g_pcpu[i], cmd.vector);
    }
}

static __noreturn void restart_after_init(void *arg)
{
    struct pcpu *c = arg;
    if (apic_zeroexit())
        arch_launch_ap_wait_sipi(c);    /* its STARTUP comes as a SIPI exit */
    arch_launch_ap_guest(c, smpg_ap_wait_for_sipi(c));
}

__noreturn void smpg_guest_init(struct pcpu *c)
{
    /* INIT discards what the CPU had pending, NMIs included (and the NMIs that asked
     * for this INIT were the hypervisor's). */
    c->nmi_pending = 0;
    __atomic_store_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&c->init_request, 0, __ATOMIC_SEQ_CST);
    c->guest_state = GUEST_CPU_WAIT_SIPI;
    if (!apic_zeroexit())   /* there the STARTUP may follow within microseconds */
        printk("xmhf: CPU %u: INIT: waiting for STARTUP\n", c->idx);
    call_on_stack(c->stack_top, restart_after_init, c);
}

uint32_t smpg_ap_wait_for_sipi(struct pcpu *c)
{
    while (c->guest_state != GUEST_CPU_STARTING)
        __asm__ volatile("cli; hlt" ::: "memory");
    c->guest_state = GUEST_CPU_RUNNING;
    /* The wake-up NMIs were the hypervisor's, not the guest's: let any still in flight
     * (the waker stops sending once it sees RUNNING) land before forgetting them. */
    for (unsigned i = 0; i < 20000; i++)
        cpu_pause();
    __atomic_store_n(&c->nmi_host, 0, __ATOMIC_SEQ_CST);
    c->nmi_pending = 0;
    return c->sipi_vector;
}
