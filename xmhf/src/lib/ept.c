/* EPT builder (contract in ept.h), Intel SDM Vol. 3C 29.3.2 "EPT Translation Mechanism".
 *
 * Four levels, numbered here by how many 9-bit index fields lie below them:
 *   level 3 PML4 (512 GiB per entry), 2 PDPT (1 GiB), 1 PD (2 MiB), 0 PT (4 KiB).
 * Only 4 KiB and 2 MiB leaves are created. A 1 GiB leaf found in the tables (bit 7 of a
 * PDPTE) is still understood, so lookups and splits stay correct if someone else made it.
 *
 * The builder does not flush anything: after changing live tables the caller must
 * INVEPT (SDM 29.4.3.1 "Operations that Invalidate Cached Mappings"). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ept.h"

#define EPT_ENTRIES   512u
#define EPT_GPA_BITS  48u /* a 4-level walk translates bits 47:0 */
#define EPT_HPA_LIMIT (EPT_ADDR_MASK + PAGE_SIZE_4K) /* 2^52: the widest address field */

/* Leaf attributes a caller may pass: R/W/X, memory type, ignore-PAT. Everything above
 * (accessed/dirty, suppress-#VE, ...) is left to code that knows it wants it. */
#define EPT_PROT_MASK (EPT_RWX | (7ull << EPT_MT_SHIFT) | EPT_IGNORE_PAT)

/* Entry format, SDM 29.3.2 tables 29-1..29-6: read bit 0, write bit 1, execute bit 2,
 * memory type bits 5:3, ignore PAT bit 6, page size bit 7, address from bit 12. */
_Static_assert(EPT_R == 0x1 && EPT_W == 0x2 && EPT_X == 0x4, "EPT R/W/X bits 0..2");
_Static_assert((EPT_MT_WB << EPT_MT_SHIFT) == 0x30 && (7ull << EPT_MT_SHIFT) == 0x38,
               "EPT memory type bits 5:3");
_Static_assert(EPT_IGNORE_PAT == 0x40, "EPT ignore-PAT bit 6");
_Static_assert(EPT_LARGE == 0x80, "EPT page-size bit 7");
_Static_assert(EPT_ADDR_MASK == (((1ull << 52) - 1) & ~0xfffull), "EPT address bits 51:12");
_Static_assert(EPTP_WB == 6 && EPTP_WALK4 == 0x18, "EPTP memory type / walk length");
_Static_assert(PAGE_SIZE_4K * EPT_ENTRIES == PAGE_SIZE_2M &&
               PAGE_SIZE_2M * EPT_ENTRIES == PAGE_SIZE_1G, "512 entries per table");

static uint64_t level_size(unsigned level)
{
    return PAGE_SIZE_4K << (9u * level);
}

static unsigned level_index(uint64_t gpa, unsigned level)
{
    return (unsigned)(gpa >> (12u + 9u * level)) & (EPT_ENTRIES - 1u);
}

/* SDM 29.3.2: an entry with bits 2:0 all clear is not present (we never enable
 * mode-based execute control, which would add bit 10). */
static bool is_present(uint64_t e)
{
    return (e & EPT_RWX) != 0;
}

/* Bit 7 means "leaf" only in a PDPTE or a PDE; in a PML4E it is reserved and in a PTE
 * ignored. */
static bool is_leaf(uint64_t e, unsigned level)
{
    return level == 0 || ((level == 1 || level == 2) && (e & EPT_LARGE) != 0);
}

static uint64_t *table_of(uint64_t e, const struct ept_alloc *a)
{
    return (uint64_t *)a->phys_to_virt(a->ctx, e & EPT_ADDR_MASK);
}

/* The table below *e (an entry at `level` >= 1), made to exist: allocated when *e is not
 * present, or built from the leaf *e so that each of its 512 entries maps the matching
 * slice with the leaf's attributes. NULL when out of pages; *e is then unchanged.
 *
 * The new table is complete before *e points at it, so a walk by another CPU sees either
 * the old leaf or the full table (after which the caller's INVEPT drops stale entries). */
static uint64_t *next_table(uint64_t *e, unsigned level, const struct ept_alloc *a)
{
    uint64_t phys = 0, old = *e;
    uint64_t *t;

    if (is_present(old) && !is_leaf(old, level))
        return table_of(old, a);

    t = (uint64_t *)a->alloc(a->ctx, &phys);
    /* A table that is not a 4 KiB aligned page below 2^52 cannot be put in an entry; the
     * page is lost, but there is no free callback to give it back through. */
    if (t == NULL || (phys & ~EPT_ADDR_MASK) != 0)
        return NULL;

    if (is_present(old)) {
        uint64_t step = level_size(level - 1);
        uint64_t base = old & EPT_ADDR_MASK & ~(level_size(level) - 1);
        /* Keep every attribute bit (permissions, memory type, ignore-PAT, accessed,
         * dirty, suppress-#VE, ...); only the address changes, and bit 7 goes when the
         * children are 4 KiB PTEs, where it has no "large" meaning. */
        uint64_t attr = old & ~EPT_ADDR_MASK;

        if (level - 1 == 0)
            attr &= ~EPT_LARGE;
        for (unsigned i = 0; i < EPT_ENTRIES; i++)
            t[i] = (base + (uint64_t)i * step) | attr;
    }
    *e = phys | EPT_RWX; /* non-leaf: the leaves below decide the real permissions */
    return t;
}

static bool aligned_4k(uint64_t v)
{
    return (v & (PAGE_SIZE_4K - 1)) == 0;
}

static bool prot_valid(ept_prot_t prot)
{
    uint64_t mt = (prot >> EPT_MT_SHIFT) & 7u;

    if ((prot & ~EPT_PROT_MASK) != 0 || (prot & EPT_RWX) == 0)
        return false;
    /* SDM 29.3.3.1 "EPT Misconfigurations": write without read, or a reserved memory
     * type (2, 3, 7) in a leaf. */
    if ((prot & (EPT_R | EPT_W)) == EPT_W)
        return false;
    return mt != 2 && mt != 3 && mt != 7;
}

/* gpa and len 4 KiB aligned, [gpa, gpa+len) within the 48-bit guest-physical space. */
static bool gpa_range_ok(uint64_t gpa, uint64_t len)
{
    uint64_t top = 1ull << EPT_GPA_BITS;

    return aligned_4k(gpa) && aligned_4k(len) && gpa < top && len <= top - gpa;
}

int ept_map(uint64_t *root, uint64_t gpa, uint64_t hpa, uint64_t len, ept_prot_t prot,
            const struct ept_alloc *a)
{
    if (root == NULL || a == NULL || !gpa_range_ok(gpa, len) || !aligned_4k(hpa) ||
        hpa >= EPT_HPA_LIMIT || len > EPT_HPA_LIMIT - hpa || !prot_valid(prot))
        return -1;

    while (len != 0) {
        uint64_t *pdpt, *pd, *pde, *pt, step;

        /* Walking from the root for every leaf costs a few loads per page and keeps the
         * loop free of cached-pointer state. */
        pdpt = next_table(&root[level_index(gpa, 3)], 3, a);
        if (pdpt == NULL)
            return -1;
        pd = next_table(&pdpt[level_index(gpa, 2)], 2, a);
        if (pd == NULL)
            return -1;
        pde = &pd[level_index(gpa, 1)];

        /* A PDE that already points at a page table (a region split earlier) keeps it and
         * gets its 512 PTEs rewritten: replacing it by a 2 MiB leaf would leak the table
         * page, since struct ept_alloc has no way to free it. */
        if (((gpa | hpa) & (PAGE_SIZE_2M - 1)) == 0 && len >= PAGE_SIZE_2M &&
            !(is_present(*pde) && !is_leaf(*pde, 1))) {
            *pde = hpa | prot | EPT_LARGE;
            step = PAGE_SIZE_2M;
        } else {
            pt = next_table(pde, 1, a);
            if (pt == NULL)
                return -1;
            pt[level_index(gpa, 0)] = hpa | prot;
            step = PAGE_SIZE_4K;
        }
        gpa += step;
        hpa += step;
        len -= step;
    }
    return 0;
}

int ept_unmap(uint64_t *root, uint64_t gpa, uint64_t len, const struct ept_alloc *a)
{
    if (root == NULL || a == NULL || !gpa_range_ok(gpa, len))
        return -1;

    while (len != 0) {
        uint64_t *table = root, *e = NULL, size = 0, step;
        unsigned level;

        /* Descend until the entry covering gpa is absent, is a leaf that the range covers
         * whole, or is a 4 KiB PTE; a leaf covered only in part is split on the way. */
        for (level = 3;; level--) {
            e = &table[level_index(gpa, level)];
            size = level_size(level);
            if (!is_present(*e))
                break;
            if (is_leaf(*e, level)) {
                if ((gpa & (size - 1)) == 0 && len >= size)
                    break;
                /* level >= 1 here: a PTE is always covered whole */
            }
            table = next_table(e, level, a);
            if (table == NULL)
                return -1;
        }
        if (is_present(*e))
            *e = 0;

        /* Absent or cleared: the rest of this entry's span needs nothing more. Tables that
         * become empty stay; there is no free callback. */
        step = size - (gpa & (size - 1));
        if (step > len)
            step = len;
        gpa += step;
        len -= step;
    }
    return 0;
}

uint64_t *ept_lookup(uint64_t *root, uint64_t gpa, uint64_t *level_size_out,
                     const struct ept_alloc *a)
{
    uint64_t *table = root;

    if (root == NULL || a == NULL || gpa >= (1ull << EPT_GPA_BITS))
        return NULL;

    for (unsigned level = 3;; level--) {
        uint64_t *e = &table[level_index(gpa, level)];

        if (!is_present(*e))
            return NULL;
        if (is_leaf(*e, level)) {
            if (level_size_out != NULL)
                *level_size_out = level_size(level);
            return e;
        }
        table = table_of(*e, a);
    }
}
