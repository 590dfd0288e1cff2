/* DMA protection, pure logic (contract in dmap.h): identity I/O page tables with holes,
 * ACPI structure walking and table hiding. Compiled freestanding and on the host. */
#include "dmap.h"
#include "amdvi.h"
#include "vtd.h"

#define SIZE_4K 0x1000ull
#define SIZE_2M 0x200000ull
#define LARGE_MARK (1ull << 7)

/* Both formats are built with the format-neutral builder. VT-d second-level entries are
 * its native kind (R|W present, PS for large leaves). AMD-Vi entries need the level
 * number in every table pointer, which the builder cannot express, so they are built
 * with bit 7 marking large leaves and rewritten afterwards (amdvi_finish). */
static const struct pt_format vtd_fmt = {
    .present = VTD_SL_R | VTD_SL_W,
    .table = VTD_SL_R | VTD_SL_W,
    .large = VTD_SL_PS,
};
static const struct pt_format amdvi_build_fmt = {
    .present = AMDVI_PTE_PR,
    .table = AMDVI_PTE_PR | AMDVI_PTE_IR | AMDVI_PTE_IW,
    .large = LARGE_MARK,
};

/* level: 3 = root (entries name level-3 tables in AMD-Vi numbering), 0 = 4 KiB PTEs. */
static void amdvi_finish(uint64_t *t, unsigned level, const struct pt_alloc *a)
{
    for (unsigned i = 0; i < PT_ENTRIES; i++) {
        uint64_t e = t[i];
        if (!(e & AMDVI_PTE_PR)) {
            t[i] = AMDVI_PTE_ABSENT;
            continue;
        }
        bool leaf = level == 0 || (e & LARGE_MARK);
        if (leaf) {
            t[i] = (e & ~(LARGE_MARK | AMDVI_PTE_NEXT_MASK)) | AMDVI_PTE_NEXT(0);
        } else {
            amdvi_finish(a->phys_to_virt(a->ctx, e & PT_ADDR_MASK), level - 1, a);
            t[i] = (e & ~AMDVI_PTE_NEXT_MASK) | AMDVI_PTE_NEXT(level);
        }
    }
}

int iopt_identity(enum iopt_format fmt, uint64_t *root, uint64_t top,
                  const struct dmap_range *holes, unsigned nholes, const struct pt_alloc *a)
{
    const struct pt_format *f = fmt == IOPT_VTD ? &vtd_fmt : &amdvi_build_fmt;
    uint64_t attr = fmt == IOPT_VTD ? (VTD_SL_R | VTD_SL_W)
                                    : (AMDVI_PTE_PR | AMDVI_PTE_IR | AMDVI_PTE_IW);
    if (root == NULL || a == NULL || (fmt != IOPT_VTD && fmt != IOPT_AMDVI) ||
        top == 0 || (top & (SIZE_2M - 1)) || top > (1ull << PT_INPUT_BITS) ||
        (nholes && holes == NULL))
        return -1;
    if (pt_map(f, root, 0, 0, top, attr, a) != 0)
        return -1;
    for (unsigned i = 0; i < nholes; i++) {
        uint64_t b = holes[i].base & ~(SIZE_4K - 1);
        uint64_t e = holes[i].base + holes[i].size;
        if (e < holes[i].base || e > top - (SIZE_4K - 1))
            e = top;
        e = (e + SIZE_4K - 1) & ~(SIZE_4K - 1);
        if (b >= top || e <= b)
            continue;
        if (pt_unmap(f, root, b, e - b, a) != 0)
            return -1;
    }
    if (fmt == IOPT_AMDVI)
        amdvi_finish(root, 3, a);
    return 0;
}

int64_t iopt_translate(enum iopt_format fmt, const uint64_t *root, unsigned levels,
                       uint64_t in, const struct pt_alloc *a)
{
    if (root == NULL || a == NULL || (levels != 3 && levels != 4) ||
        in >= (1ull << (12 + 9 * levels)))
        return -1;
    const uint64_t *t = root;
    for (unsigned level = levels - 1;; level--) {
        uint64_t e = t[(in >> (12 + 9 * level)) & (PT_ENTRIES - 1)];
        uint64_t size = SIZE_4K << (9 * level);
        bool leaf;
        if (fmt == IOPT_VTD) {
            /* A DMA needs both R and W here: the tables grant both or nothing. */
            if ((e & (VTD_SL_R | VTD_SL_W)) != (VTD_SL_R | VTD_SL_W))
                return -1;
            leaf = level == 0 || (e & VTD_SL_PS);
        } else {
            if (!(e & AMDVI_PTE_PR) || (e & (AMDVI_PTE_IR | AMDVI_PTE_IW)) !=
                                           (AMDVI_PTE_IR | AMDVI_PTE_IW))
                return -1;
            unsigned next = (unsigned)((e & AMDVI_PTE_NEXT_MASK) >> 9);
            if (next != 0 && next != level)
                return -1;      /* skipped levels are never built */
            leaf = next == 0;
            if (level == 0 && !leaf)
                return -1;
        }
        if (leaf)
            return (int64_t)((e & PT_ADDR_MASK & ~(size - 1)) | (in & (size - 1)));
        if (level == 0)
            return -1;
        t = a->phys_to_virt(a->ctx, e & PT_ADDR_MASK);
    }
}

const uint8_t *acpi_sub_next(const struct acpi_header *t, uint32_t first, const uint8_t *prev)
{
    const uint8_t *base = (const uint8_t *)t;
    uint32_t off;
    if (t == NULL)
        return NULL;
    if (prev == NULL) {
        off = first;
    } else {
        uint16_t plen = (uint16_t)(prev[2] | (prev[3] << 8));
        off = (uint32_t)(prev - base) + plen;
    }
    if (off < first || off > t->length || t->length - off < 4)
        return NULL;
    uint16_t len = (uint16_t)(base[off + 2] | (base[off + 3] << 8));
    if (len < 4 || len > t->length - off)
        return NULL;
    return base + off;
}

static unsigned ivhd_entry_size(const uint8_t *e, uint32_t left)
{
    uint8_t type = e[0];
    if (type < 0x40)
        return 4;
    if (type < 0x80)
        return 8;
    if (type == IVHD_DEV_HID) {
        /* 8 bytes, HID(8), CID(8), UID format(1), UID length(1), UID. */
        if (left < 22)
            return 0;
        return 22u + e[21];
    }
    return 0;   /* unknown variable-length type: its size cannot be known */
}

int ivhd_devid_max(const uint8_t *ivhd, uint32_t len)
{
    if (ivhd == NULL || len < IVHD10_ENTRIES)
        return -1;
    uint32_t off = ivhd[0] == IVRS_IVHD_10 ? IVHD10_ENTRIES : IVHD11_ENTRIES;
    if (off > len)
        return -1;
    int max = 0;
    while (off < len) {
        const uint8_t *e = ivhd + off;
        unsigned sz = ivhd_entry_size(e, len - off);
        if (sz == 0 || sz > len - off)
            return -1;
        int id = e[1] | (e[2] << 8);
        switch (e[0]) {
        case IVHD_DEV_ALL:
            max = 0xffff;
            break;
        case IVHD_DEV_SELECT: case IVHD_DEV_RANGE: case IVHD_DEV_RANGE_END:
        case IVHD_DEV_ALIAS_SEL: case IVHD_DEV_ALIAS_RNG:
        case IVHD_DEV_EXT_SEL: case IVHD_DEV_EXT_RNG: case IVHD_DEV_HID:
            if (id > max)
                max = id;
            if ((e[0] == IVHD_DEV_ALIAS_SEL || e[0] == IVHD_DEV_ALIAS_RNG)) {
                int alias = e[5] | (e[6] << 8);     /* the ID the IOMMU sees */
                if (alias > max)
                    max = alias;
            }
            break;
        case IVHD_DEV_SPECIAL: {
            int sid = e[5] | (e[6] << 8);           /* IOAPIC / HPET requester ID */
            if (sid > max)
                max = sid;
            break;
        }
        default:
            break;
        }
        off += sz;
    }
    return max;
}

void acpi_fix_checksum(struct acpi_header *h)
{
    uint8_t sum = 0;
    const uint8_t *p = (const uint8_t *)h;
    h->checksum = 0;
    for (uint32_t i = 0; i < h->length; i++)
        sum = (uint8_t)(sum + p[i]);
    h->checksum = (uint8_t)(0x100 - sum);
}

unsigned acpi_root_remove(struct acpi_header *root, unsigned width, uint64_t pa)
{
    if (root == NULL || (width != 4 && width != 8) || root->length < sizeof(*root))
        return 0;
    uint8_t *p = (uint8_t *)(root + 1);
    uint32_t n = (root->length - (uint32_t)sizeof(*root)) / width, kept = 0, removed = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t v = 0;
        for (unsigned b = 0; b < width; b++)
            v |= (uint64_t)p[i * width + b] << (8 * b);
        if (v == pa) {
            removed++;
            continue;
        }
        for (unsigned b = 0; b < width; b++)
            p[kept * width + b] = p[i * width + b];
        kept++;
    }
    if (removed == 0)
        return 0;
    /* The freed tail is zeroed so no stale pointer is left in the table's memory. */
    for (uint32_t i = kept * width; i < n * width; i++)
        p[i] = 0;
    root->length -= removed * width;
    acpi_fix_checksum(root);
    return removed;
}

uint64_t dmap_fnv1a(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    while (n--) {
        h ^= *b++;
        h *= 0x100000001b3ull;
    }
    return h;
}
