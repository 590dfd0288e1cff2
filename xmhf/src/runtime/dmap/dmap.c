/* DMA protection, the common half: which IOMMU the ACPI tables name, the shared identity
 * tables, hiding the tables from the guest, fault accounting and its rate-limited log.
 * The drivers (vtd.c, amdvi.c) are built only with --enable-dmap (the default). */
#include "dmap-int.h"

static struct dmap_unit units[DMAP_MAX_UNITS];
static unsigned nunits, nactive;
static struct dmap_range mmio[DMAP_MAX_UNITS];

static uint64_t fault_total;                /* atomic */
static volatile uint32_t poll_busy;
static uint64_t last_poll;

/* Roughly 5-20 ms at today's TSC rates: a fault is in the log soon after it happens,
 * and a guest that exits often pays one TSC read per exit for it. */
#define DMAP_POLL_TICKS (1ull << 24)
#define DMAP_LOG_FIRST 16u

const struct dmap_range *dmap_mmio_ranges(unsigned *n)
{
    *n = nunits;
    return mmio;
}

uint64_t dmap_fault_count(void)
{
    return __atomic_load_n(&fault_total, __ATOMIC_RELAXED);
}

unsigned dmap_units_active(void)
{
    return nactive;
}

unsigned dmap_kinds(void)
{
    unsigned k = 0;
    for (unsigned i = 0; i < nunits; i++)
        if (units[i].active)
            k |= units[i].kind[0] == 'V' ? DMAP_KIND_VTD : DMAP_KIND_AMDVI;
    return k;
}

uint64_t dmap_first_unit_base(void)
{
    return nunits ? units[0].base : 0;
}

struct dmap_unit *dmap_unit_add(const char *kind, uint64_t base, uint64_t size)
{
    if (nunits == DMAP_MAX_UNITS) {
        printk("xmhf: DMAP: more than %u IOMMUs; %s at %llx is not used\n", DMAP_MAX_UNITS,
               kind, (unsigned long long)base);
        return NULL;
    }
    if (base == 0 || (base & 0xfff) || base >= PHYS_LIMIT || size > PHYS_LIMIT - base) {
        printk("xmhf: DMAP: %s registers at %llx (+%llx) are outside the 4 GiB the "
               "hypervisor maps\n", kind, (unsigned long long)base, (unsigned long long)size);
        return NULL;
    }
    for (unsigned i = 0; i < nunits; i++)
        if (units[i].base == base)
            return NULL;    /* the same unit described twice (IVHD 10h and 11h) */
    struct dmap_unit *u = &units[nunits];
    u->kind = kind;
    u->idx = nunits;
    u->base = base;
    u->size = size;
    u->regs = phys_to_virt(base);
    mmio[nunits] = (struct dmap_range){ base, size };
    nunits++;
    return u;
}

static void *table_page(void *ctx, uint64_t *pa)
{
    (*(uint64_t *)ctx)++;
    return page_alloc(pa);
}

static void *table_p2v(void *ctx, uint64_t pa)
{
    (void)ctx;
    return phys_to_virt(pa);
}

static uint64_t table_pages;
static const struct pt_alloc table_heap = { table_page, table_p2v, &table_pages };

static uint64_t map_top(void)
{
    uint64_t top = ALIGN_UP(e820_ram_top(&g_bp->e820), 0x200000ull);
    return top < PHYS_LIMIT ? PHYS_LIMIT : top;
}

uint64_t *dmap_tables(enum iopt_format fmt, uint64_t *root_pa)
{
    static uint64_t *root[2];
    static uint64_t pa[2];
    if (!root[fmt]) {
        struct dmap_range holes[DMAP_MAX_UNITS + 2];
        unsigned nholes = 0;
        holes[nholes++] = (struct dmap_range){ g_bp->region_base, g_bp->region_size };
        for (unsigned i = 0; i < nunits; i++)
            holes[nholes++] = mmio[i];
        if (g_restart_page)
            holes[nholes++] = (struct dmap_range){ g_restart_page, 4096 };
        root[fmt] = table_page(&table_pages, &pa[fmt]);
        if (iopt_identity(fmt, root[fmt], map_top(), holes, nholes, &table_heap) != 0)
            panic("DMAP: out of memory for the I/O page tables");
        /* Check the tables as a device would see them before trusting them. */
        uint64_t probe[] = { 0, g_bp->region_base - 8, g_bp->region_base,
                             g_bp->region_base + g_bp->region_size - 8,
                             g_bp->region_base + g_bp->region_size };
        for (unsigned i = 0; i < ARRAY_SIZE(probe); i++) {
            int64_t t = iopt_translate(fmt, root[fmt], 4, probe[i], &table_heap);
            bool hole = gpa_in_hypervisor(probe[i], 1);
            if (hole ? t != -1 : t != (int64_t)probe[i])
                panic("DMAP: I/O page tables wrong at %llx", (unsigned long long)probe[i]);
        }
    }
    *root_pa = pa[fmt];
    return root[fmt];
}

void dmap_check_reserved(const char *what, uint64_t base, uint64_t end)
{
    if (end <= base)
        return;
    if (gpa_in_hypervisor(base, end - base))
        printk("xmhf: DMAP: warning: %s %llx-%llx overlaps the hypervisor's memory or an "
               "IOMMU: a device's DMA there is blocked\n", what, (unsigned long long)base,
               (unsigned long long)end);
}

void dmap_fault(struct dmap_unit *u, unsigned devid, uint64_t addr, int write,
                const char *why, unsigned code)
{
    uint64_t n = __atomic_add_fetch(&fault_total, 1, __ATOMIC_RELAXED);
    if (n > DMAP_LOG_FIRST && (n & (n - 1)) != 0)
        return;
    printk("xmhf: DMAP: %s %u: device %02x:%02x.%u %s %llx blocked (%s, code %u)%s\n",
           u->kind, u->idx, devid >> 8, (devid >> 3) & 0x1f, devid & 7,
           write < 0 ? "access at" : write ? "write to" : "read of",
           (unsigned long long)addr, why, code,
           n == DMAP_LOG_FIRST ? "; from now on only every 2^k-th fault is logged" :
           n > DMAP_LOG_FIRST ? " (a 2^k-th fault)" : "");
}

bool dmap_wait32(struct dmap_unit *u, uint32_t off, uint32_t mask, uint32_t want)
{
    for (unsigned long i = 0; i < 50000000ul; i++) {
        if ((rd32(u, off) & mask) == want)
            return true;
        cpu_pause();
    }
    return false;
}

bool dmap_wait64(struct dmap_unit *u, uint32_t off, uint64_t mask, uint64_t want)
{
    for (unsigned long i = 0; i < 50000000ul; i++) {
        if ((rd64(u, off) & mask) == want)
            return true;
        cpu_pause();
    }
    return false;
}

void dmap_poll(bool force)
{
    if (nactive == 0)
        return;
    uint64_t now = rdtsc();
    if (!force && now - last_poll < DMAP_POLL_TICKS)
        return;
    /* One CPU polls at a time; the others go on (or, when forced, wait for it, so the
     * count they read afterwards includes every fault recorded before they asked). */
    while (__atomic_exchange_n(&poll_busy, 1, __ATOMIC_ACQUIRE)) {
        if (!force)
            return;
        cpu_pause();
    }
    last_poll = now;
    for (unsigned i = 0; i < nunits; i++)
        if (units[i].active)
            units[i].poll(&units[i]);
    __atomic_store_n(&poll_busy, 0, __ATOMIC_RELEASE);
}

#if XMHF_DMAP
static void hide(struct acpi_header *t, const char *sig, const char newsig[4])
{
    unsigned n = acpi_hide_table(t, newsig);
    printk("xmhf: DMAP: ACPI %s hidden from the guest (%u root-table pointer(s) removed, "
           "signature now \"%c%c%c%c\")\n", sig, n, newsig[0],
           newsig[1], newsig[2], newsig[3]);
}
#endif

void dmap_init(void)
{
#if XMHF_DMAP
    if (!g_bp->opts.dmap) {
        printk("xmhf: DMA protection OFF (dmap=off): a device the guest programs can read "
               "and write the hypervisor's memory\n");
        return;
    }
    uint64_t t0 = rdtsc(), free0 = heap_pages_free();
    struct acpi_header *dmar = acpi_find_table("DMAR");
    struct acpi_header *ivrs = acpi_find_table("IVRS");
    if (!dmar && !ivrs) {
        printk("xmhf: DMA protection unavailable: no IOMMU (no DMAR or IVRS ACPI table); "
               "a device the guest programs can read and write the hypervisor's memory\n");
        return;
    }
    if ((dmar && vtd_parse(dmar) != 0) || (ivrs && amdvi_parse(ivrs) != 0) || nunits == 0)
        panic("DMAP: the IOMMU's ACPI table cannot be used (see above); not starting the "
              "guest without DMA protection (dmap=off to run without it)");
    /* Every unit is registered before the first table is built: each one's registers
     * are a hole in the tables of all. */
    for (unsigned i = 0; i < nunits; i++) {
        units[i].enable(&units[i]);
        units[i].active = true;
        nactive++;
    }
    if (dmar)
        hide(dmar, "DMAR", "XMDR");
    if (ivrs)
        hide(ivrs, "IVRS", "XMIV");
    uint64_t t1 = rdtsc();
    printk("xmhf: DMA protection on: %u IOMMU(s) translate every device through an identity "
           "map of 0-%llx without %llx-%llx and the IOMMU registers; %llu KiB of tables "
           "(%llu KiB of page tables), %llu TSC ticks\n", nactive,
           (unsigned long long)map_top(), (unsigned long long)g_bp->region_base,
           (unsigned long long)(g_bp->region_base + g_bp->region_size),
           (unsigned long long)((free0 - heap_pages_free()) * 4),
           (unsigned long long)(table_pages * 4), (unsigned long long)(t1 - t0));
#else
    printk("xmhf: DMA protection not built in (--disable-dmap): a device the guest programs "
           "can read and write the hypervisor's memory\n");
#endif
}
