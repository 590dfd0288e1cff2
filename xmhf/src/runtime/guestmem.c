/* Guest-page protection for hypapps (xmhf-hypapp.h: xmhf_guestmem_*), both halves.
 *
 * The permissions live in the shared nested page table itself: the runtime maps every
 * guest page it maps at all with full access, so a present leaf without full access is
 * a page a hypapp protected, and no other table is needed (the arch half edits the leaf
 * and mirrors it into each CPU's private APIC path, ptpath.h).
 *
 * Removing a permission needs every CPU's nested-paging TLB flushed (SDM Vol. 3C 29.4.3
 * "Invalidating Cached Translation Information"; APM Vol. 2 15.16 "TLB Control"), and a
 * CPU flushes only its own. So flushes are asked for by generation: the caller bumps
 * tlb_gen and waits until every CPU running a guest has flushed at that generation or
 * later (pcpu->tlb_gen_done). Each CPU checks at the end of every VM exit
 * (guestmem_tlb_sync); a CPU in its guest is made to exit by an NMI ("kick"). A kick is
 * the hypervisor's, not the guest's: the CPU that receives it takes it off
 * pcpu->flush_kicks instead of counting it as the guest's NMI (nmi_kick_taken). At most
 * one kick is in flight per CPU (a new one is sent only once the last one arrived), so
 * two kicks never merge into one NMI and leave a count behind. CPUs that are not running
 * a guest flush when they start one (both halves flush the whole TLB at launch). */
#include "apic.h"
#include "hypapp-dispatch.h"
#include "icr.h"

static volatile uint64_t tlb_gen;

int xmhf_guestmem_setprot(uint64_t gpa, uint32_t prot)
{
    uint64_t page = gpa & ~0xfffull;
    if ((prot & ~APP_PROT_ALL) || !(prot & APP_PROT_READ))
        return XMHF_EINVAL;
    if (gpa_in_hypervisor(page, 0x1000))
        return XMHF_EPERM;
    return arch_guestmem_setprot(page, prot);
}

uint32_t xmhf_guestmem_getprot(uint64_t gpa)
{
    return arch_guestmem_getprot(gpa & ~0xfffull);
}

/* Before each VM entry (the end of the exit handler): this CPU's TLB is as new as the
 * newest flush request. The generation is read before the flush, so a request that
 * comes during it is served by the next check. */
void guestmem_tlb_sync(struct pcpu *c)
{
    uint64_t g = __atomic_load_n(&tlb_gen, __ATOMIC_SEQ_CST);
    if (c->tlb_gen_done >= g)
        return;
    arch_tlb_flush_local(c);
    __atomic_store_n(&c->tlb_gen_done, g, __ATOMIC_SEQ_CST);
}

bool nmi_kick_taken(struct pcpu *c)
{
    return __atomic_exchange_n(&c->flush_kicks, 0, __ATOMIC_SEQ_CST) != 0;
}

/* Makes CPU t exit its guest (an NMI the hypervisor takes back: at most one in flight,
 * see above), then lets a little time pass while serving this CPU's own flush requests,
 * so that two CPUs waiting for each other both get on. */
void nmi_kick(struct pcpu *self, struct pcpu *t)
{
    uint32_t none = 0;
    if (__atomic_compare_exchange_n(&t->flush_kicks, &none, 1, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST))
        lapic_send_ipi_raw(t->apic_id, ICR_DM_NMI | ICR_LEVEL_ASSERT);
    for (unsigned i = 0; i < 200u; i++) {
        guestmem_tlb_sync(self);
        cpu_pause();
    }
}

/* Waits for CPU t to reach generation g. A CPU not running a guest needs nothing now:
 * its launch flushes (and one that starts meanwhile set guest_state before it read
 * anything of the tables, so either it is seen running here or its launch comes after
 * the change). The caller serves its own requests too while it waits, so two CPUs
 * flushing at once do not wait for each other forever. */
static void wait_for_cpu(struct pcpu *self, struct pcpu *t, uint64_t g)
{
    for (unsigned round = 0; round < 100000u; round++) {
        if (__atomic_load_n(&t->tlb_gen_done, __ATOMIC_SEQ_CST) >= g)
            return;
        uint32_t gs = __atomic_load_n(&t->guest_state, __ATOMIC_SEQ_CST);
        if (t->state != PCPU_VMX_ON || (gs != GUEST_CPU_RUNNING && gs != GUEST_CPU_STARTING))
            return;
        nmi_kick(self, t);
    }
    printk("xmhf: CPU %u: CPU %u did not flush its nested-paging TLB\n", self->idx, t->idx);
}

void xmhf_guestmem_flush(void)
{
    struct pcpu *self = this_pcpu();
    uint64_t g = __atomic_add_fetch(&tlb_gen, 1, __ATOMIC_SEQ_CST);
    guestmem_tlb_sync(self);
    for (uint32_t i = 0; i < g_ncpus; i++) {
        if (g_pcpu[i] != self)
            wait_for_cpu(self, g_pcpu[i], g);
    }
}

/* A nested-paging violation at gpa outside the hypervisor's region and the APIC trap.
 * False: not a protected page (the caller maps MMIO lazily or reports it). */
bool guestmem_violation(struct vcpu *v, struct app_memfault *f)
{
    uint32_t prot = arch_guestmem_getprot(f->gpa & ~0xfffull);
    if (prot == 0)
        return false;
    if ((prot & f->access) == f->access) {
        /* Widened meanwhile by another CPU: the retry walks the tables again, with
         * nothing stale left in this CPU's TLB. */
        arch_tlb_flush_local(v->cpu);
        return true;
    }
    f->prot = prot;
    int (*cb)(struct vcpu *, const struct app_memfault *) = hypapp_cb.guestmem_violation;
    if (cb && cb(v, f) == APP_HANDLED)
        return true;
    printk("xmhf: CPU %u: guest %s of protected page %llx (rip %llx): #GP injected\n",
           v->cpu->idx, (f->access & APP_ACCESS_WRITE) ? "write" :
           (f->access & APP_ACCESS_EXEC) ? "fetch" : "read", (unsigned long long)f->gpa,
           (unsigned long long)arch_guest_rip(v));
    arch_guest_inject_exception(v, EXC_GP, true, 0);
    return true;
}
