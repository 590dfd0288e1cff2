/* The CPUs of the machine, from the ACPI MADT (ACPI 6.x, 5.2.5 "Root System Description
 * Pointer", 5.2.7/5.2.8 RSDT/XSDT, 5.2.12 "Multiple APIC Description Table"). */
#include "guest.h"

struct __attribute__((packed)) rsdp {
    char     sig[8];            /* "RSD PTR " */
    uint8_t  checksum;          /* first 20 bytes sum to 0 */
    char     oem[6];
    uint8_t  revision;          /* 0: ACPI 1.0 (20 bytes); >= 2: the fields below */
    uint32_t rsdt;
    uint32_t length;
    uint64_t xsdt;
    uint8_t  ext_checksum;      /* all `length` bytes sum to 0 */
    uint8_t  reserved[3];
};
_Static_assert(sizeof(struct rsdp) == 36, "RSDP layout");

struct __attribute__((packed)) sdt_header {
    char     sig[4];
    uint32_t length;
    uint8_t  revision;
    uint8_t  checksum;
    char     oem[6];
    char     oem_table[8];
    uint32_t oem_revision;
    uint32_t creator, creator_revision;
};
_Static_assert(sizeof(struct sdt_header) == 36, "SDT header layout");

#define MADT_ENTRIES_OFFSET 44      /* header, local APIC address, flags */
#define MADT_LAPIC          0       /* Processor Local APIC structure */
#define MADT_LAPIC_ENABLED  0x1u
#define MADT_X2APIC         9       /* Processor Local x2APIC structure (IDs above 254) */

static uint8_t sum8(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint8_t s = 0;
    while (n--)
        s += *b++;
    return s;
}

static const struct rsdp *rsdp_scan(uint64_t from, uint64_t to)
{
    for (uint64_t a = from; a + 20 <= to; a += 16) {
        const struct rsdp *r = (const struct rsdp *)(uintptr_t)a;
        if (memcmp(r->sig, "RSD PTR ", 8) != 0 || sum8(r, 20) != 0)
            continue;
        if (r->revision >= 2 && (r->length < sizeof *r || sum8(r, r->length) != 0))
            continue;
        return r;
    }
    return NULL;
}

/* The first KiB of the EBDA (segment at 0x40e), then the BIOS area 0xe0000-0xfffff. */
static const struct rsdp *rsdp_find(void)
{
    uint64_t ebda = (uint64_t)*(volatile uint16_t *)0x40e << 4;
    const struct rsdp *r = NULL;

    if (ebda >= 0x80000 && ebda < 0xa0000)
        r = rsdp_scan(ebda, ebda + 1024);
    return r ? r : rsdp_scan(0xe0000, 0x100000);
}

static bool sdt_ok(uint64_t addr)
{
    if (addr == 0 || addr >= (4ull << 30))
        return false;               /* outside the guest's identity map */
    const struct sdt_header *h = (const struct sdt_header *)(uintptr_t)addr;
    return h->length >= sizeof *h && h->length < (1u << 20) && sum8(h, h->length) == 0;
}

int madt_cpu_ids(uint32_t *ids, unsigned max, char *why, size_t why_size)
{
    const struct rsdp *rp = rsdp_find();
    if (!rp) {
        snprintf(why, why_size, "no ACPI RSDP in the EBDA or 0xe0000-0xfffff");
        return -1;
    }
    bool x = rp->revision >= 2 && rp->xsdt != 0;
    uint64_t root = x ? rp->xsdt : rp->rsdt;
    if (!sdt_ok(root)) {
        snprintf(why, why_size, "bad %s at 0x%lx", x ? "XSDT" : "RSDT", root);
        return -1;
    }
    const struct sdt_header *rh = (const struct sdt_header *)(uintptr_t)root;
    const uint8_t *ents = (const uint8_t *)(rh + 1);
    unsigned n_ents = (rh->length - sizeof *rh) / (x ? 8 : 4);
    const struct sdt_header *madt = NULL;
    for (unsigned i = 0; i < n_ents && !madt; i++) {
        uint64_t a = 0;
        memcpy(&a, ents + i * (x ? 8 : 4), x ? 8 : 4);
        if (sdt_ok(a) && memcmp(((const struct sdt_header *)(uintptr_t)a)->sig, "APIC", 4) == 0)
            madt = (const struct sdt_header *)(uintptr_t)a;
    }
    if (!madt) {
        snprintf(why, why_size, "no valid MADT (\"APIC\") among %u %s entries", n_ents,
                 x ? "XSDT" : "RSDT");
        return -1;
    }

    const uint8_t *p = (const uint8_t *)madt + MADT_ENTRIES_OFFSET;
    const uint8_t *end = (const uint8_t *)madt + madt->length;
    unsigned n = 0;
    while (p + 2 <= end && p[1] >= 2 && p + p[1] <= end) {
        uint32_t flags = 0, id = 0;
        bool cpu = false;
        if (p[0] == MADT_LAPIC && p[1] >= 8) {
            memcpy(&flags, p + 4, 4);
            id = p[3];
            cpu = true;
        } else if (p[0] == MADT_X2APIC && p[1] >= 16) {
            memcpy(&id, p + 4, 4);
            memcpy(&flags, p + 8, 4);
            cpu = true;
        }
        if (cpu && (flags & MADT_LAPIC_ENABLED)) {
            if (n < max)
                ids[n] = id;
            n++;                    /* counted even beyond max: the caller uses max */
        }
        p += p[1];
    }
    if (n == 0) {
        snprintf(why, why_size, "the MADT lists no enabled local APIC");
        return -1;
    }
    return (int)n;
}

/* True when the RSDP's OEM ID is `oem6` (6 characters, e.g. "BOCHS ": the Bochs BIOS,
 * and SeaBIOS, its descendant). Used only to name a platform limitation (x2apic_mode). */
bool acpi_oem_is(const char *oem6)
{
    const struct rsdp *rp = rsdp_find();
    return rp && memcmp(rp->oem, oem6, 6) == 0;
}

/* SMBIOS (DMTF DSP0134): the manufacturer string of the System Information structure
 * (type 1), from the 32-bit entry point "_SM_" in 0xf0000-0xfffff. Used only to know a
 * platform limitation (QEMU does not move the xAPIC when IA32_APIC_BASE changes). */
bool smbios_manufacturer_is(const char *want)
{
    for (uint64_t a = 0xf0000; a < 0x100000; a += 16) {
        const uint8_t *ep = (const uint8_t *)(uintptr_t)a;
        if (memcmp(ep, "_SM_", 4) != 0 || ep[5] < 0x1f || sum8(ep, ep[5]) != 0)
            continue;
        uint16_t len;
        uint32_t tab;
        memcpy(&len, ep + 0x16, 2);
        memcpy(&tab, ep + 0x18, 4);
        const uint8_t *p = (const uint8_t *)(uintptr_t)tab, *end = p + len;
        while (p + 4 <= end && p[1] >= 4) {
            const uint8_t *str = p + p[1];     /* the strings follow the formatted part */
            if (p[0] == 1 && p[1] > 4 && p[4] != 0) {
                for (unsigned i = 1; i < p[4] && str < end; i++)
                    str += strlen((const char *)str) + 1;
                return str < end && memcmp(str, want, strlen(want) + 1) == 0;
            }
            while (str + 1 < end && (str[0] || str[1]))
                str++;
            p = str + 2;                        /* past the double NUL */
        }
        return false;
    }
    return false;
}

/* Counts the tables with signature `sig` that the guest's ACPI view names: through the
 * RSDT and the XSDT (a guest may use either). -1 when there is no RSDP. The DMA test
 * uses it to check that DMAR / IVRS are hidden. */
int acpi_count_tables(const char *sig)
{
    const struct rsdp *rp = rsdp_find();
    if (!rp)
        return -1;
    int n = 0;
    for (int x = 0; x < 2; x++) {
        uint64_t root = x ? (rp->revision >= 2 ? rp->xsdt : 0) : rp->rsdt;
        if (!sdt_ok(root))
            continue;
        const struct sdt_header *rh = (const struct sdt_header *)(uintptr_t)root;
        const uint8_t *ents = (const uint8_t *)(rh + 1);
        unsigned w = x ? 8 : 4, n_ents = (rh->length - sizeof *rh) / w;
        for (unsigned i = 0; i < n_ents; i++) {
            uint64_t a = 0;
            memcpy(&a, ents + i * w, w);
            if (sdt_ok(a) && memcmp(((const struct sdt_header *)(uintptr_t)a)->sig, sig, 4) == 0)
                n++;
        }
    }
    return n;
}
