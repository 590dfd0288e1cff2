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

static uint32_t lapic_read(uint32_t off)
{
    if (x2apic_mode())
        return (uint32_t)rdmsr(X2APIC_MSR(off));
    return *xapic_reg(off);
}

static void lapic_write(uint32_t off, uint32_t v)
{
    if (x2apic_mode())
        wrmsr(X2APIC_MSR(off), v);
    else
        *xapic_reg(off) = v;
}

void lapic_eoi(void)
{
    if (rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_EN)
        lapic_write(APIC_EOI, 0);
}

/* The local APIC as INIT leaves it (SDM Vol. 3A 11.4.7.3 "Local APIC State After an
 * INIT Reset"), as far as software reaches: every LVT masked, the timer stopped, TPR 0,
 * ESR clear, SVR = FFh (software-disabled), and, in xAPIC mode, LDR 0 and DFR all ones.
 * IRR and ISR cannot be written: interrupts already accepted are taken in the host
 * (its stubs only EOI them) with every source masked, then whatever is still in
 * service gets an EOI. So no interrupt accepted before the INIT (a timer tick, say)
 * reaches the restarted guest (Linux would call it a stale IRR). The mode and base of
 * IA32_APIC_BASE are kept, as INIT keeps them. */
void lapic_init_reset(struct pcpu *c)
{
    (void)c;
    if (!(rdmsr(MSR_IA32_APIC_BASE) & APIC_BASE_EN))
        return;             /* globally disabled: already as after reset */
    unsigned max_lvt = (lapic_read(APIC_VERSION) >> 16) & 0xff;
    static const uint32_t lvts[] = { APIC_LVT_TIMER, APIC_LVT_THERMAL, APIC_LVT_PERF,
                                     APIC_LVT_LINT0, APIC_LVT_LINT1, APIC_LVT_ERROR };
    static const uint8_t min_lvt[] = { 0, 5, 4, 0, 0, 3 };
    for (unsigned i = 0; i < ARRAY_SIZE(lvts); i++)
        if (max_lvt >= min_lvt[i])
            lapic_write(lvts[i], APIC_LVT_MASKED);
    if (max_lvt >= 6)
        lapic_write(APIC_LVT_CMCI, APIC_LVT_MASKED);
    lapic_write(APIC_TIMER_INIT, 0);
    lapic_write(APIC_TIMER_DCR, 0);
    lapic_write(APIC_TPR, 0);
    /* Drain what was accepted: the stubs EOI each one. A software-disabled APIC (Linux
     * disables it before taking a CPU offline) holds its IRR back, so it is enabled for
     * the drain, with every LVT masked. Anything still in IRR after a few thousand
     * pauses came in after the INIT, as it could on the hardware. */
    lapic_write(APIC_SVR, lapic_read(APIC_SVR) | APIC_SVR_ENABLE);
    arch_host_irq_open();
    for (unsigned i = 0; i < 20000; i++)
        cpu_pause();
    arch_host_irq_close();
    for (unsigned n = 0; n < 256; n++) {
        bool any = false;
        for (uint32_t off = APIC_ISR; off < APIC_ISR + 0x80; off += 0x10)
            any |= lapic_read(off) != 0;
        if (!any)
            break;
        lapic_write(APIC_EOI, 0);
    }
    lapic_write(APIC_ESR, 0);       /* back-to-back writes clear it (11.5.3) */
    lapic_write(APIC_ESR, 0);
    if (!x2apic_mode()) {           /* x2APIC: LDR is read-only, DFR does not exist */
        lapic_write(APIC_LDR, 0);
        lapic_write(APIC_DFR, 0xffffffffu);
    }
    lapic_write(APIC_SVR, 0xff);
    c->apic_ldr = 0;
    c->apic_dfr = 0xffffffffu;
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

static const struct acpi_header *find_table(const char *sig)
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
        const struct acpi_header *t = acpi_table(pa, sig);
        if (t)
            return t;
    }
    return NULL;
}

static const struct acpi_header *find_madt(void)
{
    return find_table("APIC");
}

/* The MADT's entries in turn: the one at *off, its length checked against the table's,
 * with *off moved past it; NULL after the last or at a malformed one. */
static const uint8_t *madt_next(const struct acpi_header *madt, uint32_t *off)
{
    const uint8_t *p = (const uint8_t *)madt;
    if (!madt || *off + 2 > madt->length)
        return NULL;
    uint8_t len = p[*off + 1];
    if (len < 2 || *off + len > madt->length)
        return NULL;
    const uint8_t *e = p + *off;
    *off += len;
    return e;
}

/* A processor's entry (local APIC or x2APIC): its APIC ID and flags. */
static bool madt_cpu(const uint8_t *e, uint32_t *id, uint32_t *flags)
{
    if (e[0] == MADT_LAPIC && e[1] >= 8) {
        *id = e[3];
        memcpy(flags, e + 4, 4);
        return true;
    }
    if (e[0] == MADT_X2APIC && e[1] >= 16) {
        memcpy(id, e + 4, 4);
        memcpy(flags, e + 8, 4);
        return true;
    }
    return false;
}

/* Where interrupt messages can come from without a CPU: the I/O APICs (MADT) and the
 * HPET (its ACPI table), noted at boot - the tables are in guest memory afterwards. */
#define MAX_IOAPICS 8u
static uint64_t ioapic_pa[MAX_IOAPICS];
static unsigned n_ioapics;
static uint64_t hpet_pa;

static void irq_sources_init(const struct acpi_header *madt)
{
    const uint8_t *e;
    for (uint32_t off = MADT_ENTRIES_OFFSET; (e = madt_next(madt, &off));) {
        uint32_t addr = 0;
        if (e[0] == MADT_IOAPIC && e[1] >= 12)
            memcpy(&addr, e + 4, 4);
        if (addr && !(addr & 0xfffu) && n_ioapics < MAX_IOAPICS)
            ioapic_pa[n_ioapics++] = addr;
    }
    const struct acpi_header *h = find_table("HPET");
    if (h && h->length >= ACPI_HPET_ADDR + 8)
        memcpy(&hpet_pa, (const uint8_t *)h + ACPI_HPET_ADDR, 8);
    if (hpet_pa & 0x3ffu || hpet_pa + HPET_SIZE > PHYS_LIMIT)
        hpet_pa = 0;
}

static uint32_t madt_max_apic_id(const struct acpi_header *madt)
{
    const uint8_t *e;
    uint32_t max = 0, id, flags;
    for (uint32_t off = MADT_ENTRIES_OFFSET; (e = madt_next(madt, &off));)
        if (madt_cpu(e, &id, &flags) && id != ~0u && id > max)
            max = id;
    return max;
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
    const uint8_t *e;
    for (uint32_t off = MADT_ENTRIES_OFFSET; (e = madt_next(madt, &off));) {
        uint32_t id = ~0u, flags = 0;
        if (!madt_cpu(e, &id, &flags) || id == ~0u || !(flags & MADT_ENABLED) || id == apic_ids[0])
            continue;
        bool dup = false;
        for (uint32_t i = 1; i < n; i++)
            dup |= apic_ids[i] == id;
        if (dup)
            continue;
        if (n == MAX_CPUS) {
            /* Beyond what the hypervisor runs: INIT leaves it in wait-for-SIPI, and no
             * STARTUP ever reaches the hardware (the guest's are handled virtually), so
             * it can run no guest code. Firmware may have left it halted in its own
             * code, which an NMI would resume: that is not left to the guest. */
            printk("xmhf: APIC ID %u: beyond the %u processors supported: held in "
                   "wait-for-SIPI (INIT), runs nothing\n", id, MAX_CPUS);
            lapic_send_ipi_raw(id, ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
            g_cpus_left_off = true;
            continue;
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
    c->reset_state = !c->is_bsp;    /* an AP's guest starts from INIT and STARTUP */
    g_pcpu[idx] = c;
    return c;
}

struct pcpu *smp_bsp_init(void);
struct pcpu *smp_bsp_init(void)
{
    /* An APIC ID above 254 can only be named in x2APIC mode (SDM 11.12.1): firmware
     * that lists one normally hands over in that mode; if it did not, the hypervisor
     * switches the BSP's APIC (its AP starts need to address them). */
    const struct acpi_header *madt = find_madt();
    if (madt && madt_max_apic_id(madt) > 254 && !x2apic_mode()) {
        wrmsr(MSR_IA32_APIC_BASE, rdmsr(MSR_IA32_APIC_BASE) | APIC_BASE_EXTD);
        printk("xmhf: APIC IDs above 254 in the MADT: the BSP's APIC switched to x2APIC mode\n");
    }
    g_ncpus = enumerate_cpus();
    irq_sources_init(madt);
    printk("xmhf: %u processor%s (ACPI MADT), BSP APIC ID %u, %s mode\n", g_ncpus,
           g_ncpus == 1 ? "" : "s", apic_ids[0], x2apic_mode() ? "x2APIC" : "xAPIC");
    for (uint32_t i = 0; i < g_ncpus; i++)
        pcpu_alloc(i, apic_ids[i]);
    return g_pcpu[0];
}

/* The trampoline (entry.S) into the page at pa, which a STARTUP then names: CPU c comes
 * out of it in long mode on its own stack, at entry(c). */
void smp_tramp_install(uint64_t pa, struct pcpu *c, void (*entry)(struct pcpu *))
{
    uint8_t *tramp = phys_to_virt(pa);
    memcpy(tramp, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
    struct tramp_data *td = (struct tramp_data *)(tramp + (ap_tramp_data - ap_tramp_start));
    td->cr3 = read_cr3();
    td->stack = c->stack_top;
    td->pcpu = (uint64_t)(uintptr_t)c;
    td->entry = (uint64_t)(uintptr_t)entry;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* The first interrupt source that could make a CPU outside VMX operation run guest
 * code: an unmasked I/O APIC pin, or an enabled HPET timer's FSB message, with the NMI
 * delivery mode (a real-mode CPU takes it through the guest's interrupt table) or the
 * reserved STARTUP encoding (which Bochs delivers as a STARTUP). The number of the I/O
 * APIC pin (its index over all I/O APICs), 1000 + the HPET timer, or -1: none. The
 * I/O APIC's index register is the guest's, so it is put back. */
int smp_irq_unsafe_source(void)
{
    int base = 0;
    for (unsigned k = 0; k < n_ioapics; k++) {
        volatile uint32_t *io = phys_to_virt(ioapic_pa[k]);
        uint32_t sel = io[IOAPIC_REGSEL / 4];
        io[IOAPIC_REGSEL / 4] = IOAPIC_VER;
        unsigned max = (io[IOAPIC_WIN / 4] >> 16) & 0xff;
        int bad = -1;
        for (unsigned n = 0; n <= max && bad < 0; n++) {
            io[IOAPIC_REGSEL / 4] = IOAPIC_RTE_LO(n);
            uint32_t lo = io[IOAPIC_WIN / 4];
            if (!(lo & IOAPIC_RTE_MASKED) &&
                DM_RUNS_GUEST_CODE(lo))
                bad = base + (int)n;
        }
        io[IOAPIC_REGSEL / 4] = sel;
        if (bad >= 0)
            return bad;
        base += (int)max + 1;
    }
    if (hpet_pa) {
        const volatile uint32_t *h = phys_to_virt(hpet_pa);  /* 32-bit accesses */
        unsigned timers = HPET_CAP_TIMERS(h[HPET_CAP / 4]);
        for (unsigned t = 0; t < timers; t++) {
            uint32_t cfg = h[HPET_TN_CFG(t) / 4];
            uint32_t data = h[HPET_TN_FSB(t) / 4];
            if ((cfg & HPET_TN_INT_ENB) && (cfg & HPET_TN_FSB_EN) &&
                DM_RUNS_GUEST_CODE(data))
                return 1000 + (int)t;
        }
    }
    return -1;
}

/* One AP at a time through the single trampoline slot; the low page it borrows is
 * given back before the guest can see it. */
void smp_start_aps(void)
{
    static uint8_t saved[4096];
    uint8_t *tramp = phys_to_virt(TRAMP_BASE);
    memcpy(saved, tramp, sizeof(saved));

    for (uint32_t i = 1; i < g_ncpus; i++) {
        struct pcpu *c = g_pcpu[i];
        smp_tramp_install(TRAMP_BASE, c, ap_entry);
        lapic_send_ipi_raw(c->apic_id, ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
        udelay(10000);
        for (int s = 0; s < 2 && c->state == PCPU_OFFLINE; s++) {
            lapic_send_ipi_raw(c->apic_id, ICR_DM_STARTUP | ICR_VECTOR(TRAMP_BASE >> 12));
            udelay(200);
        }
        for (unsigned t = 0; t < 1000000u && c->state == PCPU_OFFLINE; t++)
            io_delay();
        if (c->state == PCPU_OFFLINE) {
            /* Held in wait-for-SIPI: a late start cannot run the page once it is handed
             * back, and no STARTUP reaches the hardware after boot. */
            lapic_send_ipi_raw(c->apic_id, ICR_DM_INIT | ICR_LEVEL_ASSERT | ICR_TRIGGER_LEVEL);
            c->state = PCPU_FAILED;
            printk("xmhf: CPU %u (APIC ID %u) did not start: held in wait-for-SIPI (INIT); "
                   "no guest runs on it\n", i, c->apic_id);
        }
    }
    memcpy(tramp, saved, sizeof(saved));
}

/* A CPU that runs no guest. In VMX root operation INIT is blocked (SDM 24.8 "Restrictions
 * on VMX Operation"); with SVM on, GIF = 0 holds INIT (and NMI) pending for good (APM
 * Vol. 2, 15.17). Where neither could be turned on, an INIT puts the CPU into
 * wait-for-SIPI, and STARTUPs never reach the hardware after boot: either way no guest
 * code runs here. */
__noreturn void smp_hold_cpu(struct pcpu *c, const char *why)
{
    printk("xmhf: CPU %u (APIC ID %u) held in the hypervisor, no guest runs on it: %s\n",
           c->idx, c->apic_id, why);
    arch_hold();
}
