/* The guest-physical map: an identity NPT over all RAM and MMIO, write-back where the
 * firmware map says RAM, uncached elsewhere, and the hypervisor's region left out
 * (APM Vol. 2, 15.25 "Nested Paging"). MMIO above the initial map (64-bit PCI BARs) is
 * mapped on first touch. Each CPU's VMCB.N_CR3 is its own root: a private path of four
 * tables down to its APIC page (ptpath.h), the shared tables everywhere else. */
#include "apic.h"
#include "dmap.h"
#include "mtrr.h"
#include "npt.h"
#include "svm-x86svm.h"
#include "msr.h"
#include "xmhf-hypapp.h"

static uint64_t *npt_root;
static uint64_t npt_root_pa;
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

/* Tables the guest's actions grow (lazy MMIO, split pages for its memory types) come
 * from the guarded allocator: refused, not a panic, near the end of the heap. */
static void *npt_page_guest(void *ctx, uint64_t *pa)
{
    (void)ctx;
    return page_alloc_guest(pa);
}

static const struct pt_alloc npt_heap = { npt_page, npt_p2v, NULL };
static const struct pt_alloc npt_guest_heap = { npt_page_guest, npt_p2v, NULL };
static void sync_private_paths(void);
/* The MTRRs the memory types come from, and a generation every CPU compares before it
 * enters its guest: a change of types is flushed on each CPU. */
static const struct mtrr_state *types_from;
static volatile uint64_t types_gen;

#define PROT_UC (NPT_RWX | NPT_MT_UC)
#define PROT_WB (NPT_RWX | NPT_MT_WB)

void arch_nested_paging_init(void)
{
    uint64_t before = heap_pages_free();
    /* MAXPHYADDR, but no more than the 48 bits four-level tables translate: an address
     * above either is refused (the caller says so), never handed to the table code. */
    unsigned bits = cpu_phys_bits();
    phys_bits_limit = 1ull << (bits > 48 ? 48 : bits);
    npt_root = page_alloc(&npt_root_pa);
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
    /* ...and so are the IOMMUs' registers (dmap.h): the guest could undo DMAP there. */
    unsigned nio;
    const struct dmap_range *io = dmap_mmio_ranges(&nio);
    for (unsigned i = 0; i < nio; i++)
        if (npt_unmap(npt_root, io[i].base, io[i].size, &npt_heap) != 0)
            panic("NPT: out of table pages");
    /* Memory types: the guest's MTRRs, which start as the firmware left them. */
    types_from = guest_mtrr_initial(g_pcpu[0]);
    if (npt_retype(npt_root, 0, top, guest_memory_type, (void *)types_from, &npt_heap) != 0)
        panic("NPT: out of table pages");
    printk("xmhf: NPT: identity map of 0-%llx (%llu table pages), %llx-%llx not mapped\n",
           (unsigned long long)top, (unsigned long long)(before - heap_pages_free()),
           (unsigned long long)g_bp->region_base,
           (unsigned long long)(g_bp->region_base + g_bp->region_size));
}

/* MMIO beyond the initial map: map its 2 MiB uncached (or write-combining, as the
 * guest's MTRRs may say). 0 when mapped (or already mapped by another CPU), -1 when gpa
 * is outside the physical address space or the hypervisor's, or the guest's share of
 * table pages is used up. */
int svm_npt_map_lazy(uint64_t gpa)
{
    if (gpa >= phys_bits_limit || gpa_in_hypervisor(gpa, 1))
        return -1;
    /* A 2 MiB block at a time, unless an IOMMU register block (or the region) shares
     * it: then only the 4 KiB page touched, or a neighbouring access would map the
     * registers that hold DMA protection. */
    uint64_t size = gpa_in_hypervisor(gpa & ~0x1fffffull, 0x200000ull) ? 0x1000ull : 0x200000ull;
    uint64_t base = gpa & ~(size - 1);
    spin_lock(&npt_lock);
    if (!npt_lookup(npt_root, gpa, NULL, &npt_heap) &&
        (npt_map(npt_root, base, base, size, PROT_UC, &npt_guest_heap) != 0 ||
         npt_retype(npt_root, base, size, guest_memory_type, (void *)types_from,
                    &npt_guest_heap) != 0)) {
        spin_unlock(&npt_lock);
        return -1;      /* out of the pages the guest may use: refused like the region */
    }
    sync_private_paths();
    spin_unlock(&npt_lock);
    /* The processor does not cache not-present translations, so the guest's retry walks
     * the tables again: no TLB flush is needed. */
    return 0;
}

/* ---- per-CPU roots ----
 * A step maps the APIC page in the stepping CPU's private leaf table only, so no other
 * CPU's access goes unobserved meanwhile (DESIGN.md section 4). */

/* Entries are only ever added to the shared map, so the copies need no flush. Caller
 * holds npt_lock. */
static void sync_private_paths(void)
{
    for (uint32_t i = 0; i < g_ncpus; i++) {
        struct svm_cpu *s = g_pcpu[i]->arch_page[2];
        if (s && s->npt.t[0] && s->npt.in)
            pt_path_sync(&s->npt, npt_root, &npt_format, &npt_heap);
    }
}

/* This CPU's root, with apic_gpa watched (0: nothing). */
void svm_npt_private_init(struct pcpu *c, uint64_t apic_gpa)
{
    if (!svm_of(c)->npt.t[0] && pt_path_alloc(&svm_of(c)->npt, &npt_heap) != 0)
        panic("NPT: out of table pages");   /* once per CPU; a restart after INIT reuses it */
    if (svm_npt_private_build(svm_of(c), apic_gpa) != 0)
        panic("CPU %u: cannot watch the APIC page %llx", c->idx, (unsigned long long)apic_gpa);
}

/* Makes apic_gpa this CPU's watched page (0: none; the path then leads to the default
 * base and maps it as the shared map does). The shared map is not touched (ptpath.h),
 * so no relocation costs memory. -1 when the page cannot be watched (hypervisor memory,
 * beyond the physical address width). The caller loads the root and flushes. */
int svm_npt_private_build(struct svm_cpu *s, uint64_t apic_gpa)
{
    uint64_t page = apic_gpa ? apic_gpa : APIC_DEFAULT_BASE;
    if (gpa_in_hypervisor(page, 0x1000) || page >= phys_bits_limit)
        return -1;
    spin_lock(&npt_lock);
    pt_path_build(&s->npt, npt_root, page, &npt_format, &npt_heap);
    s->apic_gpa = apic_gpa;
    if (apic_gpa)
        svm_npt_apic_entry(s, APIC_MAP_GUARD);
    spin_unlock(&npt_lock);
    return 0;
}

/* The guest moved its APIC (IA32_APIC_BASE): the watch follows it, or, where the new
 * page cannot be watched, says so and watches nothing. */
void svm_npt_retarget(struct pcpu *c, uint64_t apic_gpa)
{
    if (svm_npt_private_build(svm_of(c), apic_gpa) == 0)
        return;
    printk("xmhf: CPU %u: APIC page %llx cannot be watched\n", c->idx,
           (unsigned long long)apic_gpa);
    svm_npt_private_build(svm_of(c), 0);
}

/* Outside a step the page is the real APIC, present and readable but not writable,
 * uncached; during a write step it is the capture page, writable, write-back. Only the
 * owning CPU calls this; it flushes after each change. */
void svm_npt_apic_entry(struct svm_cpu *s, enum apic_map how)
{
    uint64_t *leaf = pt_path_leaf(&s->npt);
    if (how == APIC_MAP_CAPTURE)
        *leaf = s->cap.pa | NPT_RWX | NPT_MT_WB;
    else
        *leaf = s->apic_gpa | NPT_P | NPT_US | NPT_MT_UC;
}

/* ---- guest-page protection for hypapps (guestmem.c) ----
 * A present leaf is readable; R/W and NX decide the rest. The runtime's own mappings
 * are writable and executable, so anything less is a hypapp's protection. NX needs the
 * host's EFER.NXE (svm-x86svm.c sets it where the processor has it). */

static uint32_t npt_app_prot(uint64_t e)
{
    if (!(e & NPT_P))
        return 0;
    return APP_PROT_READ | ((e & NPT_RW) ? APP_PROT_WRITE : 0) |
           ((e & NPT_NX) ? 0 : APP_PROT_EXEC);
}

uint32_t arch_guestmem_getprot(uint64_t page)
{
    if (page >= phys_bits_limit)
        return 0;
    spin_lock(&npt_lock);
    uint64_t *leaf = npt_lookup(npt_root, page, NULL, &npt_heap);
    uint32_t prot = leaf ? npt_app_prot(*leaf) : 0;
    spin_unlock(&npt_lock);
    return prot;
}

/* A private leaf table that covers `page` takes the shared entry, except where its CPU
 * traps its APIC (that entry belongs to the step). Caller holds npt_lock. */
static void mirror_leaf(uint64_t page, uint64_t entry)
{
    for (uint32_t i = 0; i < g_ncpus; i++) {
        struct svm_cpu *s = g_pcpu[i]->arch_page[2];
        if (!s || !s->npt.t[0] || !s->npt.in || (s->npt.in >> 21) != (page >> 21) ||
            (s->apic_gpa && s->apic_gpa == page))
            continue;
        s->npt.t[PT_PATH_LEVELS - 1][PT_PATH_IDX(page, PT_PATH_LEVELS - 1)] = entry;
    }
}

int arch_guestmem_setprot(uint64_t page, uint32_t prot)
{
    if (page >= phys_bits_limit)
        return XMHF_EINVAL;
    if (!(prot & APP_PROT_EXEC) && !(rdmsr(MSR_IA32_EFER) & EFER_NXE))
        return XMHF_EINVAL;     /* no NX on this processor: execution cannot be refused */
    spin_lock(&npt_lock);
    uint64_t size;
    uint64_t *leaf = npt_lookup(npt_root, page, &size, &npt_heap);
    if (!leaf && npt_map(npt_root, page & ~0x1fffffull, page & ~0x1fffffull, 0x200000ull,
                         PROT_UC, &npt_heap) != 0)
        panic("NPT: out of table pages");   /* MMIO not touched yet: mapped as a touch would */
    leaf = npt_lookup(npt_root, page, &size, &npt_heap);
    if (size != 0x1000) {
        /* A 4 KiB leaf of its own, with the attributes of the large one it was in. */
        npt_prot_t old = *leaf & (NPT_RWX | NPT_PWT | NPT_PCD | NPT_NX);
        if (npt_map(npt_root, page, page, 0x1000, old, &npt_heap) != 0)
            panic("NPT: out of table pages");
        leaf = npt_lookup(npt_root, page, NULL, &npt_heap);
    }
    *leaf = (*leaf & ~(NPT_RW | NPT_NX)) | ((prot & APP_PROT_WRITE) ? NPT_RW : 0) |
            ((prot & APP_PROT_EXEC) ? 0 : NPT_NX);
    sync_private_paths();   /* a split changed a directory entry the copies hold */
    mirror_leaf(page, *leaf);
    spin_unlock(&npt_lock);
    return 0;
}

/* This CPU's guest TLB entries at its next VMRUN (15.16.1 "TLB Flush"): by ASID where
 * the processor can, else all. */
void arch_tlb_flush_local(struct pcpu *c)
{
    struct svm_cpu *s = svm_of(c);
    if (s->vmcb)
        s->vmcb->ctl.tlb_control = (s->feat.edx & SVM_FEAT_FLUSH_BY_ASID) ? SVM_TLB_FLUSH_ASID
                                                                          : SVM_TLB_FLUSH_ALL;
}
/* The guest changed its MTRRs: every present leaf takes the type they give (a large
 * page of mixed type is split), the private paths copy the result, and every CPU
 * flushes its TLB before it runs guest code again (types_gen, checked at each exit).
 * Out of the guest's table pages, the blocks not done keep their previous types. */
void arch_guest_memory_types(const struct mtrr_state *m)
{
    spin_lock(&npt_lock);
    types_from = m;
    if (npt_retype(npt_root, 0, phys_bits_limit, guest_memory_type, (void *)m,
                   &npt_guest_heap) != 0)
        printk("xmhf: NPT: out of table pages for the guest's memory types; some keep "
               "their previous type\n");
    sync_private_paths();
    __atomic_add_fetch(&types_gen, 1, __ATOMIC_SEQ_CST);
    spin_unlock(&npt_lock);
}

/* Before this CPU enters its guest: a change of memory types since its last flush? */
void svm_npt_types_flush(struct svm_cpu *s)
{
    uint64_t gen = __atomic_load_n(&types_gen, __ATOMIC_ACQUIRE);
    if (s->types_gen != gen) {
        s->types_gen = gen;
        s->vmcb->ctl.tlb_control = SVM_TLB_FLUSH_ALL;
    }
}
