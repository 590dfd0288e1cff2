/* The architecture-neutral half of xAPIC trapping (apicstep.h): SDM Vol. 3A 11.4.4
 * "Local APIC Status and Location" for IA32_APIC_BASE, 11.6.1 for the ICR. */
#include "apic.h"
#include "apicstep.h"
#include "msr.h"

#define ICR_RANGE(off) (((off) & ~0x1fu) == APIC_ICR_LO)   /* 0x300-0x31f */

uint64_t apic_guest_page(void)
{
    uint64_t base = rdmsr(MSR_IA32_APIC_BASE);
    if (!(base & APIC_BASE_EN) || (base & APIC_BASE_EXTD))
        return 0;
    return base & APIC_BASE_ADDR;
}

void apic_access_record(struct apic_access *a, uint64_t page, uint64_t gpa, bool write)
{
    a->page = page;
    a->off = (uint32_t)(gpa & 0xfff);
    a->write = write;
    a->capture = ICR_RANGE(a->off);
}

void apic_access_done(struct vcpu *v, const struct apic_access *a, volatile uint32_t *capture)
{
    struct pcpu *c = v->cpu;
    c->stats[STAT_STEPS_DONE]++;
    if (!a->write)
        return;
    if (a->capture && (a->off & ~0xfu) == APIC_ICR_LO) {
        uint32_t lo = capture[APIC_ICR_LO / 4], hi = capture[APIC_ICR_HI / 4];
        capture[APIC_ICR_LO / 4] = lo & ~ICR_DELIVERY_PENDING;
        smpg_icr_write(v, (uint64_t)hi << 32 | lo, false);
    } else if (a->off == APIC_LDR || a->off == APIC_DFR) {
        volatile uint32_t *apic = phys_to_virt(a->page);
        c->apic_ldr = apic[APIC_LDR / 4];
        c->apic_dfr = apic[APIC_DFR / 4];
    }
}

int apic_base_write(struct pcpu *c, uint64_t val)
{
    uint32_t r[4];
    cpuid(0x80000008u, 0, r);
    uint64_t addr_bits = APIC_BASE_ADDR & ((1ull << (r[0] & 0xff)) - 1);
    uint64_t reserved = ~(addr_bits | APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_EN);
    if (val & reserved)
        return -1;
    if (gpa_in_hypervisor(val & APIC_BASE_ADDR, 0x1000))
        return -1;
    return wrmsr_safe(c, MSR_IA32_APIC_BASE, val);
}

int apic_x2apic_icr_write(struct vcpu *v, uint64_t val)
{
    if (!(rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_EXTD))
        return -1;      /* x2APIC MSRs do not exist in xAPIC mode */
    smpg_icr_write(v, val, true);
    return 0;
}
