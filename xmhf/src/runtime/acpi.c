/* ACPI tables by signature, through the RSDP and the XSDT (or RSDT): ACPI 6.5 sections
 * 5.2.5.1 "Finding the RSDP on IA-PC Systems", 5.2.7 "RSDT", 5.2.8 "XSDT". Used by the
 * DMA protection to find (and hide) the DMAR / IVRS tables. */
#include "acpi.h"
#include "dmap.h"
#include "xmhf.h"

#define BDA_EBDA_SEG 0x40eu

static uint8_t sum8(const void *p, uint32_t n)
{
    uint8_t s = 0;
    for (const uint8_t *b = p; n--; b++)
        s = (uint8_t)(s + *b);
    return s;
}

static struct acpi_rsdp *rsdp_scan(uint64_t start, uint64_t len)
{
    for (uint64_t a = start; a + sizeof(struct acpi_rsdp) <= start + len; a += 16) {
        struct acpi_rsdp *r = phys_to_virt(a);
        if (!memcmp(r->sig, "RSD PTR ", 8) && sum8(r, 20) == 0)
            return r;
    }
    return NULL;
}

/* The table at pa when it has the signature (NULL: any), a sane length and checksum,
 * and lies in the identity-mapped 4 GiB. */
static struct acpi_header *table_at(uint64_t pa, const char *sig)
{
    if (!pa || pa >= PHYS_LIMIT - sizeof(struct acpi_header))
        return NULL;
    struct acpi_header *h = phys_to_virt(pa);
    if ((sig && memcmp(h->sig, sig, 4)) || h->length < sizeof(*h) ||
        h->length > PHYS_LIMIT - pa || sum8(h, h->length) != 0)
        return NULL;
    return h;
}

/* The root tables: XSDT (8-byte pointers) and RSDT (4-byte); either may be NULL. */
static void roots(struct acpi_header **xsdt, struct acpi_header **rsdt)
{
    *xsdt = *rsdt = NULL;
    uint64_t ebda = (uint64_t)*(volatile uint16_t *)phys_to_virt(BDA_EBDA_SEG) << 4;
    struct acpi_rsdp *r = NULL;
    if (ebda >= 0x80000 && ebda < 0xa0000)
        r = rsdp_scan(ebda, 1024);
    if (!r)
        r = rsdp_scan(0xe0000, 0x20000);
    if (!r)
        return;
    if (r->revision >= 2 && r->xsdt)
        *xsdt = table_at(r->xsdt, "XSDT");
    *rsdt = table_at(r->rsdt, "RSDT");
}

static uint64_t root_entry(const struct acpi_header *root, unsigned width, uint32_t i)
{
    uint64_t pa = 0;
    memcpy(&pa, (const uint8_t *)(root + 1) + i * width, width);
    return pa;
}

struct acpi_header *acpi_find_table(const char *sig)
{
    struct acpi_header *xsdt, *rsdt;
    roots(&xsdt, &rsdt);
    struct acpi_header *root = xsdt ? xsdt : rsdt;
    unsigned width = xsdt ? 8 : 4;
    if (!root)
        return NULL;
    uint32_t n = (root->length - (uint32_t)sizeof(*root)) / width;
    for (uint32_t i = 0; i < n; i++) {
        struct acpi_header *t = table_at(root_entry(root, width, i), sig);
        if (t)
            return t;
    }
    return NULL;
}

/* Drops the table from both root tables (a guest may read either) and renames it, so
 * neither a walk of the roots nor a scan of memory for the signature finds it. */
unsigned acpi_hide_table(struct acpi_header *t, const char newsig[4])
{
    struct acpi_header *xsdt, *rsdt;
    roots(&xsdt, &rsdt);
    uint64_t pa = virt_to_phys(t);
    unsigned n = 0;
    if (xsdt)
        n += acpi_root_remove(xsdt, 8, pa);
    if (rsdt)
        n += acpi_root_remove(rsdt, 4, pa);
    memcpy(t->sig, newsig, 4);
    acpi_fix_checksum(t);
    return n;
}
