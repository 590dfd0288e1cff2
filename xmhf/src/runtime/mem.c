/* Memory: the page allocator over the heap init reserved, address translation, and
 * the hypervisor's checked access to guest-physical memory. */
#include "dmap.h"
#include "xmhf.h"

extern char __image_start[];
static struct spinlock heap_lock = SPINLOCK_INIT("heap");
static uint64_t heap_next, heap_end;

void heap_init(void);
void heap_init(void)
{
    heap_next = g_bp->heap_base;
    heap_end = g_bp->region_base + g_bp->region_size;
}

uint64_t heap_pages_free(void)
{
    return (heap_end - heap_next) >> 12;
}

void *pages_alloc(unsigned n, uint64_t *pa)
{
    spin_lock(&heap_lock);
    if (heap_next + n * 4096ull > heap_end) {
        spin_unlock(&heap_lock);
        panic("out of hypervisor memory (%u pages wanted, %llu free)", n,
              (unsigned long long)heap_pages_free());
    }
    uint64_t p = heap_next;
    heap_next += n * 4096ull;
    spin_unlock(&heap_lock);
    memset(phys_to_virt(p), 0, n * 4096ull);
    if (pa)
        *pa = p;
    return phys_to_virt(p);
}

void *page_alloc(uint64_t *pa)
{
    return pages_alloc(1, pa);
}

/* What the guest's own actions make the hypervisor allocate (tables for MMIO it
 * touches, page tables split for its memory types) stops short of the last
 * GUEST_RESERVE_PAGES: the guest gets a refusal, never the hypervisor a panic. */
#define GUEST_RESERVE_PAGES 64u
void *page_alloc_guest(uint64_t *pa)
{
    spin_lock(&heap_lock);
    bool room = heap_pages_free() > GUEST_RESERVE_PAGES;
    spin_unlock(&heap_lock);
    return room ? page_alloc(pa) : NULL;
}

uint64_t virt_to_phys(const void *va)
{
    uint64_t v = (uint64_t)(uintptr_t)va;
    if (v >= RUNTIME_VBASE)
        return v - RUNTIME_VBASE + g_bp->region_base;
    return v;   /* identity-mapped: heap pages and low memory */
}

/* The region, the IOMMUs' registers (DMA protection) and the restart page (apic=zeroexit,
 * e820hook.c): a guest access to any has the same outcome. */
bool gpa_in_hypervisor(uint64_t gpa, uint64_t len)
{
    if (gpa < g_bp->region_base + g_bp->region_size && g_bp->region_base < gpa + len)
        return true;
    if (g_restart_page && gpa < g_restart_page + 4096 && g_restart_page < gpa + len)
        return true;
    unsigned n;
    const struct dmap_range *io = dmap_mmio_ranges(&n);
    for (unsigned i = 0; i < n; i++)
        if (gpa < io[i].base + io[i].size && io[i].base < gpa + len)
            return true;
    return false;
}

static int gpa_ok(uint64_t gpa, size_t n)
{
    return n && gpa + n > gpa && gpa + n <= PHYS_LIMIT && !gpa_in_hypervisor(gpa, n);
}

int guest_phys_read(uint64_t gpa, void *buf, size_t n)
{
    if (!gpa_ok(gpa, n))
        return -1;
    memcpy(buf, phys_to_virt(gpa), n);
    return 0;
}

int guest_phys_write(uint64_t gpa, const void *buf, size_t n)
{
    if (!gpa_ok(gpa, n))
        return -1;
    memcpy(phys_to_virt(gpa), buf, n);
    return 0;
}

int guest_phys_or(uint64_t gpa, unsigned size, uint64_t bits)
{
    if ((size != 4 && size != 8) || (gpa & (size - 1)) || !gpa_ok(gpa, size))
        return -1;
    /* Locked, like the processor's own update: another CPU may be editing the entry. */
    if (size == 4)
        __atomic_fetch_or((uint32_t *)phys_to_virt(gpa), (uint32_t)bits, __ATOMIC_SEQ_CST);
    else
        __atomic_fetch_or((uint64_t *)phys_to_virt(gpa), bits, __ATOMIC_SEQ_CST);
    return 0;
}
