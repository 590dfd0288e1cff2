/* The hypervisor's own processors: find them in the ACPI MADT and start each AP with
 * INIT-SIPI-SIPI (SDM Vol. 3A 9.4.4.1 "Typical BSP Initialization Sequence"; the
 * delays are the ones the SDM and the MP specification give). The guest's later
 * INIT/SIPI are a separate matter (smpg-*.c). */
#include "acpi.h"
#include "apic.h"
#include "apicstep.h"
#include "msr.h"
#include "xmhf.h"

#define TRAMP_BASE 0x1000u
#define BDA_EBDA_SEG 0x40eu

struct tramp_data {
    uint64_t cr3, stack, pcpu, entry;
};
extern char ap_tramp_start[], ap_tramp_end[], ap_tramp_data[];
void ap_entry(struct pcpu *c);

static uint32_t apic_ids[MAX_CPUS];
bool g_cpus_left_off;

static bool x2apic_mode(void)
{
    return (rdmsr(MSR_IA32_APIC_BASE) & (APIC_BASE_EN | APIC_BASE_EXTD)) ==
           (APIC_BASE_EN | APIC_BASE_EXTD);
}

/* Through the hypervisor's own uncached window (apicstep.c): the guest may have moved
 * the APIC anywhere, above 4 GiB or over RAM. */
static volatile uint32_t *xapic_reg(uint32_t off)
{
    return apic_regs() + off / 4;
}

uint32_t lapic_id(void)
{
    if (x2apic_mode())
        return (uint32_t)rdmsr(X2APIC_MSR(APIC_ID));
    return *xapic_reg(APIC_ID) >> 24;
}

void lapic_send_ipi_raw(uint32_t dest, uint32_t icr_lo)
{
    if (x2apic_mode()) {
        wrmsr(X2APIC_MSR(APIC_ICR_LO), ((uint64_t)dest << 32) | icr_lo);
        return;
    }
    if (!(rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_EN))
        return;     /* the guest disabled it: no IPI can go, and its page may be RAM */
    *xapic_reg(APIC_ICR_HI) = dest << 24;
    *xapic_reg(APIC_ICR_LO) = icr_lo;
    for (unsigned i = 0; i < 100000u && (*xapic_reg(APIC_ICR_LO) & ICR_DELIVERY_PENDING); i++)
        cpu_pause();
}

static void udelay(unsigned us)
{
    while (us--)
        io_delay();
}

static uint8_t checksum(const void *p, uint32_t n)
{
    uint8_t s = 0;
    for (const uint8_t *b = p; n--; b++)
        s = (uint8_t)(s + *b);
    return s;
}

static const struct acpi_rsdp *rsdp_scan(uint64_t start, uint64_t len)
{
    for (uint64_t a = start; a + sizeof(struct acpi_rsdp) <= start + len; a += 16) {
        const struct acpi_rsdp *r = phys_to_virt(a);
        if (!memcmp(r->sig, "RSD PTR ", 8) && checksum(r, 20) == 0)
            return r;
    }
    return NULL;
}

static const struct acpi_header *acpi_table(uint64_t pa, const char *sig)
{
    if (!pa || pa >= PHYS_LIMIT - sizeof(struct acpi_header))
        return NULL;
    const struct acpi_header *h = phys_to_virt(pa);
    if (memcmp(h->sig, sig, 4) || h->length < sizeof(*h) || pa + h->length > PHYS_LIMIT ||
        checksum(h, h->length) != 0)
        return NULL;
    return h;
}

static const struct acpi_header *find_madt(void)
{
    uint64_t ebda = (uint64_t)*(volatile uint16_t *)phys_to_virt(BDA_EBDA_SEG) << 4;
    const struct acpi_rsdp *r = NULL;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        r = rsdp_scan(ebda, 1024);
    if (!r)
        r = rsdp_scan(0xe0000, 0x20000);
    if (!r)
        return NULL;
    const struct acpi_header *root = NULL;
    unsigned width = 4;
    if (r->revision >= 2 && r->xsdt) {
        root = acpi_table(r->xsdt, "XSDT");
        width = 8;
    }
    if (!root) {
        root = acpi_table(r->rsdt, "RSDT");
        width = 4;
    }
    if (!root)
        return NULL;
    const uint8_t *p = (const uint8_t *)(root + 1);
    for (uint32_t off = 0; off + width <= root->length - sizeof(*root); off += width) {
        uint64_t pa = 0;
        memcpy(&pa, p + off, width);
        const struct acpi_header *t = acpi_table(pa, "APIC");
        if (t)
            return t;
    }
    return NULL;
}

/* Fills apic_ids[] with the BSP first, then every enabled processor of the MADT. */
static uint32_t enumerate_cpus(void)
{
    uint32_t n = 1;
    apic_ids[0] = lapic_id();
    const struct acpi_header *madt = find_madt();
    if (!madt) {
        printk("xmhf: no ACPI MADT found: running on the boot processor only\n");
        return 1;
    }
    const uint8_t *p = (const uint8_t *)madt;
    for (uint32_t off = MADT_ENTRIES_OFFSET; off + 2 <= madt->length;) {
        uint8_t type = p[off], len = p[off + 1];
        if (len < 2 || off + len > madt->length)
            break;
        uint32_t id = ~0u, flags = 0;
        if (type == MADT_LAPIC && len >= 8) {
            id = p[off + 3];
            memcpy(&flags, p + off + 4, 4);
        } else if (type == MADT_X2APIC && len >= 16) {
            memcpy(&id, p + off + 4, 4);
            memcpy(&flags, p + off + 8, 4);
        }
        off += len;
        if (id == ~0u || !(flags & MADT_ENABLED) || id == apic_ids[0])
            continue;
        bool dup = false;
        for (uint32_t i = 1; i < n; i++)
            dup |= apic_ids[i] == id;
        if (dup)
            continue;
        if (n == MAX_CPUS) {
            printk("xmhf: more than %u processors: the others stay off\n", MAX_CPUS);
            g_cpus_left_off = true;
            break;
        }
        apic_ids[n++] = id;
    }
    return n;
}

static struct pcpu *pcpu_alloc(uint32_t idx, uint32_t apic_id)
{
    _Static_assert(sizeof(struct pcpu) <= 4096, "struct pcpu fits a page");
    struct pcpu *c = pages_alloc(1, NULL);
    uint8_t *stack = pages_alloc(PCPU_STACK_SIZE / 4096, NULL);
    uint8_t *ist = pages_alloc(EXC_STACK_SIZE / 4096, NULL);
    c->self = c;
    c->idx = idx;
    c->apic_id = apic_id;
    c->is_bsp = idx == 0;
    c->stack_top = (uint64_t)(uintptr_t)(stack + PCPU_STACK_SIZE);
    c->tss.ist[0] = (uint64_t)(uintptr_t)(ist + EXC_STACK_SIZE);
    c->apic_dfr = 0xffffffffu;      /* the DFR's reset value: flat model */
    g_pcpu[idx] = c;
    return c;
}

struct pcpu *smp_bsp_init(void);
struct pcpu *smp_bsp_init(void)
{
    g_ncpus = enumerate_cpus();
    printk("xmhf: %u processor%s (ACPI MADT), BSP APIC ID %u, %s mode\n", g_ncpus,
           g_ncpus == 1 ? "" : "s", apic_ids[0], x2apic_mode() ? "x2APIC" : "xAPIC");
    for (uint32_t i = 0; i < g_ncpus; i++)
        pcpu_alloc(i, apic_ids[i]);
    return g_pcpu[0];
}

/* One AP at a time through the single trampoline slot; the low page it borrows is
 * given back before the guest can see it. */
void smp_start_aps(void)
{
    static uint8_t saved[4096];
    uint8_t *tramp = phys_to_virt(TRAMP_BASE);
    uint32_t size = (uint32_t)(ap_tramp_end - ap_tramp_start);
    memcpy(saved, tramp, sizeof(saved));
    memcpy(tramp, ap_tramp_start, size);
    struct tramp_data *td = (struct tramp_data *)(tramp + (ap_tramp_data - ap_tramp_start));

    for (uint32_t i = 1; i < g_ncpus; i++) {
        struct pcpu *c = g_pcpu[i];
        td->cr3 = read_cr3();
        td->stack = c->stack_top;
        td->pcpu = (uint64_t)(uintptr_t)c;
        td->entry = (uint64_t)(uintptr_t)ap_entry;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        lapic_send_ipi_raw(c->apic_id, ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
        udelay(10000);
        for (int s = 0; s < 2 && c->state == PCPU_OFFLINE; s++) {
            lapic_send_ipi_raw(c->apic_id, ICR_DM_STARTUP | ICR_VECTOR(TRAMP_BASE >> 12));
            udelay(200);
        }
        for (unsigned t = 0; t < 1000000u && c->state == PCPU_OFFLINE; t++)
            io_delay();
        if (c->state == PCPU_OFFLINE) {
            printk("xmhf: CPU %u (APIC ID %u) did not start\n", i, c->apic_id);
            /* Hold it in wait-for-SIPI so a late start cannot run the page once it is
             * handed back. */
            lapic_send_ipi_raw(c->apic_id, ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
            c->state = PCPU_FAILED;
        }
    }
    memcpy(tramp, saved, sizeof(saved));
}
