/* The guest-physical map: an identity EPT over all RAM and MMIO, write-back where the
 * firmware map says RAM, uncached elsewhere, and the hypervisor's region left out.
 * MMIO above the initial map (64-bit PCI BARs) is mapped on first touch. */
#include "apic.h"
#include "dmap.h"
#include "ept.h"
#include "mtrr.h"
#include "ptpath.h"
#include "vmx-x86vmx.h"
#include "xmhf-hypapp.h"

static uint64_t *ept_root;     /* shared by all CPUs below their private APIC path */
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

/* Tables the guest's actions grow (lazy MMIO, split pages for its memory types) come
 * from the guarded allocator: refused, not a panic, near the end of the heap. */
static void *ept_page_guest(void *ctx, uint64_t *pa)
{
    (void)ctx;
    return page_alloc_guest(pa);
}

static const struct ept_alloc ept_heap = { ept_page, ept_p2v, NULL };
static const struct ept_alloc ept_guest_heap = { ept_page_guest, ept_p2v, NULL };
static const struct pt_alloc ept_pt_heap = { ept_page, ept_p2v, NULL };
static void sync_private_paths(void);
/* The MTRRs the memory types come from, and a generation every CPU compares before it
 * enters its guest: a change of types is flushed (INVEPT) on each CPU. */
static const struct mtrr_state *types_from;
static volatile uint64_t types_gen;

#define PROT_UC (EPT_RWX | (EPT_MT_UC << EPT_MT_SHIFT))
#define PROT_WB (EPT_RWX | (EPT_MT_WB << EPT_MT_SHIFT))

void arch_nested_paging_init(void)
{
    uint64_t root_pa, before = heap_pages_free();
    /* MAXPHYADDR, but no more than the 48 bits four-level tables translate: an address
     * above either is refused (the caller says so), never handed to the table code. */
    unsigned bits = cpu_phys_bits();
    phys_bits_limit = 1ull << (bits > 48 ? 48 : bits);
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
    /* ...and the restart page (apic=zeroexit): code the hypervisor runs outside VMX,
     * read-only to the guest (Linux reads low memory while it boots; a write gets #GP as
     * in the region). */
    if (g_restart_page && ept_map(ept_root, g_restart_page, g_restart_page, 4096,
                                  EPT_R | (EPT_MT_WB << EPT_MT_SHIFT), &ept_heap) != 0)
        panic("EPT: out of table pages");
    /* ...and so are the IOMMUs' registers (dmap.h): the guest could undo DMAP there. */
    unsigned nio;
    const struct dmap_range *io = dmap_mmio_ranges(&nio);
    for (unsigned i = 0; i < nio; i++)
        if (ept_unmap(ept_root, io[i].base, io[i].size, &ept_heap) != 0)
            panic("EPT: out of table pages");
    /* Memory types: the guest's MTRRs, which start as the firmware left them. */
    types_from = guest_mtrr_initial(g_pcpu[0]);
    if (ept_retype(ept_root, 0, top, guest_memory_type, (void *)types_from, &ept_heap) != 0)
        panic("EPT: out of table pages");
    printk("xmhf: EPT: identity map of 0-%llx (%llu table pages), %llx-%llx not mapped\n",
           (unsigned long long)top, (unsigned long long)(before - heap_pages_free()),
           (unsigned long long)g_bp->region_base,
           (unsigned long long)(g_bp->region_base + g_bp->region_size));
}

/* MMIO beyond the initial map: map its 2 MiB uncached (or as the guest's MTRRs say, if
 * write-combining). Returns 0 when mapped (or already mapped by another CPU), -1 when
 * gpa is outside the physical address space or the guest's share of table pages is
 * used up. */
int vmx_ept_map_lazy(uint64_t gpa)
{
    if (gpa >= phys_bits_limit || gpa_in_hypervisor(gpa, 1))
        return -1;
    /* A 2 MiB block at a time, unless an IOMMU register block (or the region) shares
     * it: then only the 4 KiB page touched, or a neighbouring access would map the
     * registers that hold DMA protection. */
    uint64_t size = gpa_in_hypervisor(gpa & ~(PAGE_SIZE_2M - 1), PAGE_SIZE_2M) ? PAGE_SIZE_4K
                                                                               : PAGE_SIZE_2M;
    uint64_t base = gpa & ~(size - 1);
    spin_lock(&ept_lock);
    if (!ept_lookup(ept_root, gpa, NULL, &ept_heap) &&
        (ept_map(ept_root, base, base, size, PROT_UC, &ept_guest_heap) != 0 ||
         ept_retype(ept_root, base, size, guest_memory_type, (void *)types_from,
                    &ept_guest_heap) != 0)) {
        spin_unlock(&ept_lock);
        return -1;      /* out of the pages the guest may use: refused like the region */
    }
    sync_private_paths();
    spin_unlock(&ept_lock);
    /* Not-present entries are not cached by the TLBs (SDM 29.4.3.1), so no INVEPT is
     * needed before the guest retries the access. */
    return 0;
}

/* ---- per-CPU roots ----
 * Each CPU's EPTP points at its own PML4, PDPT, PD and PT along the path to its APIC
 * page (ptpath.h); everything else is shared. So a step that maps the APIC page on one
 * CPU opens no window on another (DESIGN.md section 4). */

/* After the shared map grew (lazy MMIO), every private copy takes the new entries.
 * Entries only ever turn present there, so no INVEPT is needed. Caller holds ept_lock. */
static void sync_private_paths(void)
{
    for (uint32_t i = 0; i < g_ncpus; i++) {
        struct vmx_cpu *x = g_pcpu[i]->arch_page[2];
        if (x && x->eptp)
            pt_path_sync(&x->path, ept_root, &ept_format, &ept_pt_heap);
    }
}

void vmx_ept_private_init(struct vmx_cpu *x)
{
    if (pt_path_alloc(&x->path, &ept_pt_heap) != 0)
        panic("EPT: out of table pages");
    for (int l = 0; x->spp && l < 4; l++)
        x->sppt[l] = page_alloc(&x->sppt_pa[l]);
}

/* With SPP the APIC page's writes exit only in sub-pages 5 and 6 (0x280-0x37f): 6 holds
 * ICR_LO and ICR_HI (and the LVT timer); 5 (ESR, LVT CMCI) is kept too, so that no store
 * that begins in a writable sub-page can run on into the ICR (whether a processor checks
 * each sub-page a store touches or only the first is not something to rely on; Bochs
 * checks the first). EOI, TPR, the timer count and the rest are written natively. */
#define APIC_SPP_VECTOR (0x5555555555555555ull & ~SPP_WRITE(5) & ~SPP_WRITE(6))

/* This CPU's SPP table leads to page (4 pages, one path, like the EPT path: nothing is
 * allocated per move). The old path's entries are cleared first. Caller flushes. */
static void sppt_build(struct vmx_cpu *x, uint64_t old, uint64_t page)
{
    for (int l = 0; l < 4; l++)
        x->sppt[l][PT_PATH_IDX(old, l)] = 0;
    for (int l = 0; l < 3; l++)
        x->sppt[l][PT_PATH_IDX(page, l)] = x->sppt_pa[l + 1] | SPP_PRESENT;
    x->sppt[3][PT_PATH_IDX(page, 3)] = APIC_SPP_VECTOR;
}

/* Makes apic_gpa this CPU's watched page (0: none; the path then sits at the default
 * base and maps it as the shared map does). The shared map is not touched (ptpath.h),
 * so no relocation costs memory. Returns -1 if the page cannot be watched (the
 * hypervisor's own, or beyond the physical address width). */
int vmx_ept_private_build(struct vmx_cpu *x, uint64_t apic_gpa)
{
    uint64_t page = apic_gpa ? apic_gpa : APIC_DEFAULT_BASE;
    if (gpa_in_hypervisor(page, PAGE_SIZE_4K) || page >= phys_bits_limit)
        return -1;
    spin_lock(&ept_lock);
    if (x->spp)
        sppt_build(x, x->path.in, page);
    pt_path_build(&x->path, ept_root, page, &ept_format, &ept_pt_heap);
    x->apic_gpa = apic_gpa;
    if (apic_gpa)
        vmx_ept_apic_entry(x, APIC_MAP_GUARD);
    x->eptp = x->path.pa[0] | EPTP_WB | EPTP_WALK4;
    spin_unlock(&ept_lock);
    return 0;
}

/* Outside a step the page is the real APIC, readable (and executable: a fetch only
 * reads) but not writable, uncached; during a write step it is the capture page,
 * writable, write-back (it is RAM). Only the owning CPU calls this. */
void vmx_ept_apic_entry(struct vmx_cpu *x, enum apic_map how)
{
    uint64_t *leaf = pt_path_leaf(&x->path);
    if (how == APIC_MAP_CAPTURE)
        *leaf = x->cap.pa | EPT_RWX | (EPT_MT_WB << EPT_MT_SHIFT);
    else
        *leaf = x->apic_gpa | EPT_R | EPT_X | (EPT_MT_UC << EPT_MT_SHIFT) |
                (x->spp ? EPT_SPP : 0);
}

/* ---- guest-page protection for hypapps (guestmem.c) ----
 * The leaf's R/W/X bits in the shared table; the runtime's own mappings are always RWX,
 * so anything less is a hypapp's protection. The memory type stays. */

static uint32_t ept_app_prot(uint64_t e)
{
    return ((e & EPT_R) ? APP_PROT_READ : 0) | ((e & EPT_W) ? APP_PROT_WRITE : 0) |
           ((e & EPT_X) ? APP_PROT_EXEC : 0);
}

uint32_t arch_guestmem_getprot(uint64_t page)
{
    if (page >= phys_bits_limit)
        return 0;
    spin_lock(&ept_lock);
    uint64_t *leaf = ept_lookup(ept_root, page, NULL, &ept_heap);
    uint32_t prot = leaf ? ept_app_prot(*leaf) : 0;
    spin_unlock(&ept_lock);
    return prot;
}

/* A private leaf table that covers `page` takes the shared entry, except where its CPU
 * traps its APIC (that entry belongs to the step). Caller holds ept_lock. */
static void mirror_leaf(uint64_t page, uint64_t entry)
{
    for (uint32_t i = 0; i < g_ncpus; i++) {
        struct vmx_cpu *x = g_pcpu[i]->arch_page[2];
        if (!x || !x->eptp || (x->path.in >> 21) != (page >> 21) ||
            (x->apic_gpa && x->apic_gpa == page))
            continue;
        x->path.t[PT_PATH_LEVELS - 1][PT_PATH_IDX(page, PT_PATH_LEVELS - 1)] = entry;
    }
}

int arch_guestmem_setprot(uint64_t page, uint32_t prot)
{
    if (page >= phys_bits_limit)
        return XMHF_EINVAL;
    uint64_t rwx = ((prot & APP_PROT_READ) ? EPT_R : 0) | ((prot & APP_PROT_WRITE) ? EPT_W : 0) |
                   ((prot & APP_PROT_EXEC) ? EPT_X : 0);
    spin_lock(&ept_lock);
    uint64_t size;
    uint64_t *leaf = ept_lookup(ept_root, page, &size, &ept_heap);
    if (!leaf && ept_map(ept_root, page & ~(PAGE_SIZE_2M - 1), page & ~(PAGE_SIZE_2M - 1),
                         PAGE_SIZE_2M, PROT_UC, &ept_heap) != 0)
        panic("EPT: out of table pages");   /* MMIO not touched yet: mapped as a touch would */
    leaf = ept_lookup(ept_root, page, &size, &ept_heap);
    if (size != PAGE_SIZE_4K) {
        /* A 4 KiB leaf of its own, with the attributes of the large one it was in. */
        if (ept_map(ept_root, page, page, PAGE_SIZE_4K, *leaf & 0x7f & ~EPT_LARGE, &ept_heap) != 0)
            panic("EPT: out of table pages");
        leaf = ept_lookup(ept_root, page, NULL, &ept_heap);
    }
    *leaf = (*leaf & ~EPT_RWX) | rwx;
    sync_private_paths();   /* a split changed a directory entry the copies hold */
    mirror_leaf(page, *leaf);
    spin_unlock(&ept_lock);
    return 0;
}

/* Every guest-physical and combined mapping of this CPU (SDM Vol. 3C 29.4.3.1):
 * simpler than per-EPTP and as cheap here, where each CPU has one EPTP. */
void arch_tlb_flush_local(struct pcpu *c)
{
    (void)c;
    invept_all();
}
/* The guest changed its MTRRs: every present leaf takes the type they give (a large
 * page of mixed type is split), the private paths copy the result, and every CPU
 * flushes its cached translations before it runs guest code again (this one now, the
 * others at their next exit: types_gen). Out of the guest's table pages, the blocks not
 * done keep their types, which are the hypervisor's rules applied to older MTRRs. */
void arch_guest_memory_types(const struct mtrr_state *m)
{
    spin_lock(&ept_lock);
    types_from = m;
    if (ept_retype(ept_root, 0, phys_bits_limit, guest_memory_type, (void *)m,
                   &ept_guest_heap) != 0)
        printk("xmhf: EPT: out of table pages for the guest's memory types; some keep "
               "their previous type\n");
    sync_private_paths();
    __atomic_add_fetch(&types_gen, 1, __ATOMIC_SEQ_CST);
    spin_unlock(&ept_lock);
    vmx_ept_types_flush(vmx_of(this_pcpu()));
}

/* Before this CPU enters its guest: a change of memory types since its last flush? */
void vmx_ept_types_flush(struct vmx_cpu *x)
{
    uint64_t gen = __atomic_load_n(&types_gen, __ATOMIC_ACQUIRE);
    if (x->types_gen != gen) {
        x->types_gen = gen;
        invept_all();
    }
}
