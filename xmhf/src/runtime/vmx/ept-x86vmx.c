/* The guest-physical map: an identity EPT over all RAM and MMIO, write-back where the
 * firmware map says RAM, uncached elsewhere, and the hypervisor's region left out.
 * MMIO above the initial map (64-bit PCI BARs) is mapped on first touch. */
#include "ept.h"
#include "vmx-x86vmx.h"

uint64_t g_eptp;
static uint64_t *ept_root;
static uint64_t phys_bits_limit;
static struct spinlock ept_lock = SPINLOCK_INIT("ept");

static void *ept_page(void *ctx, uint64_t *pa)
{
    (void)ctx;
    return page_alloc(pa);
}

static void *ept_p2v(void *ctx, uint64_t pa)
{
    (void)ctx;
    return phys_to_virt(pa);
}

static const struct ept_alloc ept_heap = { ept_page, ept_p2v, NULL };

#define PROT_UC (EPT_RWX | (EPT_MT_UC << EPT_MT_SHIFT))
#define PROT_WB (EPT_RWX | (EPT_MT_WB << EPT_MT_SHIFT))

void arch_nested_paging_init(void)
{
    uint64_t root_pa, before = heap_pages_free();
    uint32_t r[4];
    cpuid(0x80000008, 0, r);
    phys_bits_limit = 1ull << (r[0] & 0xff);
    ept_root = page_alloc(&root_pa);
    const struct e820_map *m = &g_bp->e820;
    uint64_t top = ALIGN_UP(e820_ram_top(m), PAGE_SIZE_2M);
    if (top < PHYS_LIMIT)
        top = PHYS_LIMIT;
    if (ept_map(ept_root, 0, 0, top, PROT_UC, &ept_heap) != 0)
        panic("EPT: out of table pages");
    for (uint32_t i = 0; i < m->count; i++) {
        const struct e820_entry *e = &m->e[i];
        if (e->type != E820_RAM && e->type != E820_ACPI && e->type != E820_NVS)
            continue;
        uint64_t b = e->base & ~0xfffull, end = ALIGN_UP(e->base + e->length, PAGE_SIZE_4K);
        if (ept_map(ept_root, b, b, end - b, PROT_WB, &ept_heap) != 0)
            panic("EPT: out of table pages");
    }
    /* The hypervisor's region: not present, so every guest access exits. */
    if (ept_unmap(ept_root, g_bp->region_base, g_bp->region_size, &ept_heap) != 0)
        panic("EPT: out of table pages");
    g_eptp = root_pa | EPTP_WB | EPTP_WALK4;
    printk("xmhf: EPT: identity map of 0-%llx (%llu table pages), %llx-%llx not mapped\n",
           (unsigned long long)top, (unsigned long long)(before - heap_pages_free()),
           (unsigned long long)g_bp->region_base,
           (unsigned long long)(g_bp->region_base + g_bp->region_size));
}

/* MMIO beyond the initial map: map its 2 MiB uncached. Returns 0 when mapped (or
 * already mapped by another CPU), -1 when gpa is outside the physical address space. */
int vmx_ept_map_lazy(uint64_t gpa)
{
    if (gpa >= phys_bits_limit || gpa_in_hypervisor(gpa, 1))
        return -1;
    uint64_t base = gpa & ~(PAGE_SIZE_2M - 1);
    spin_lock(&ept_lock);
    if (!ept_lookup(ept_root, gpa, NULL, &ept_heap) &&
        ept_map(ept_root, base, base, PAGE_SIZE_2M, PROT_UC, &ept_heap) != 0) {
        spin_unlock(&ept_lock);
        panic("EPT: out of table pages");
    }
    spin_unlock(&ept_lock);
    /* Not-present entries are not cached by the TLBs (SDM 29.4.3.1), so no INVEPT is
     * needed before the guest retries the access. */
    return 0;
}
