/* The guest-physical map: an identity NPT over all RAM and MMIO, write-back where the
 * firmware map says RAM, uncached elsewhere, and the hypervisor's region left out
 * (APM Vol. 2, 15.25 "Nested Paging"). MMIO above the initial map (64-bit PCI BARs) is
 * mapped on first touch. One table for every CPU for now: a per-CPU root (for the
 * guest-SMP stage's APIC-page unmapping) only needs svm_cpu's VMCB.N_CR3 to differ. */
#include "npt.h"
#include "svm-x86svm.h"

uint64_t g_ncr3;
static uint64_t *npt_root;
static uint64_t phys_bits_limit;
static struct spinlock npt_lock = SPINLOCK_INIT("npt");

static void *npt_page(void *ctx, uint64_t *pa)
{
    (void)ctx;
    return page_alloc(pa);
}

static void *npt_p2v(void *ctx, uint64_t pa)
{
    (void)ctx;
    return phys_to_virt(pa);
}

static const struct pt_alloc npt_heap = { npt_page, npt_p2v, NULL };

#define PROT_UC (NPT_RWX | NPT_MT_UC)
#define PROT_WB (NPT_RWX | NPT_MT_WB)

void arch_nested_paging_init(void)
{
    uint64_t before = heap_pages_free();
    uint32_t r[4];
    cpuid(0x80000008u, 0, r);
    phys_bits_limit = 1ull << (r[0] & 0xff);
    npt_root = page_alloc(&g_ncr3);
    const struct e820_map *m = &g_bp->e820;
    uint64_t top = ALIGN_UP(e820_ram_top(m), 0x200000ull);
    if (top < PHYS_LIMIT)
        top = PHYS_LIMIT;
    if (npt_map(npt_root, 0, 0, top, PROT_UC, &npt_heap) != 0)
        panic("NPT: out of table pages");
    for (uint32_t i = 0; i < m->count; i++) {
        const struct e820_entry *e = &m->e[i];
        if (e->type != E820_RAM && e->type != E820_ACPI && e->type != E820_NVS)
            continue;
        uint64_t b = e->base & ~0xfffull, end = ALIGN_UP(e->base + e->length, 0x1000ull);
        if (npt_map(npt_root, b, b, end - b, PROT_WB, &npt_heap) != 0)
            panic("NPT: out of table pages");
    }
    /* The hypervisor's region: not present, so every guest access exits with #NPF. */
    if (npt_unmap(npt_root, g_bp->region_base, g_bp->region_size, &npt_heap) != 0)
        panic("NPT: out of table pages");
    printk("xmhf: NPT: identity map of 0-%llx (%llu table pages), %llx-%llx not mapped\n",
           (unsigned long long)top, (unsigned long long)(before - heap_pages_free()),
           (unsigned long long)g_bp->region_base,
           (unsigned long long)(g_bp->region_base + g_bp->region_size));
}

/* MMIO beyond the initial map: map its 2 MiB uncached. 0 when mapped (or already mapped
 * by another CPU), -1 when gpa is outside the physical address space or the hypervisor's. */
int svm_npt_map_lazy(uint64_t gpa)
{
    if (gpa >= phys_bits_limit || gpa_in_hypervisor(gpa, 1))
        return -1;
    uint64_t base = gpa & ~0x1fffffull;
    spin_lock(&npt_lock);
    if (!npt_lookup(npt_root, gpa, NULL, &npt_heap) &&
        npt_map(npt_root, base, base, 0x200000ull, PROT_UC, &npt_heap) != 0) {
        spin_unlock(&npt_lock);
        panic("NPT: out of table pages");
    }
    spin_unlock(&npt_lock);
    /* The processor does not cache not-present translations, so the guest's retry walks
     * the tables again: no TLB flush is needed. */
    return 0;
}
