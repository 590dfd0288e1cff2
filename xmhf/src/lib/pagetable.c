/* Format-neutral 4-level page-table builder (contract in pagetable.h).
 *
 * Levels are numbered by how many 9-bit index fields lie below them: 3 is the root
 * (512 GiB per entry), 2 the PDPT (1 GiB), 1 the PD (2 MiB), 0 the PT (4 KiB). Only 4 KiB
 * and 2 MiB leaves are created; a 1 GiB leaf found in the tables is understood. */
#include <stddef.h>

#include "pagetable.h"

#define SIZE_4K 0x1000ull
#define SIZE_2M 0x200000ull
#define OUT_LIMIT (PT_ADDR_MASK + SIZE_4K)      /* 2^52 */

static uint64_t level_size(unsigned level)
{
    return SIZE_4K << (9u * level);
}

static unsigned level_index(uint64_t in, unsigned level)
{
    return (unsigned)(in >> (12u + 9u * level)) & (PT_ENTRIES - 1u);
}

static bool is_present(const struct pt_format *f, uint64_t e)
{
    return (e & f->present) != 0;
}

/* The page-size bit makes a leaf only in a PDPTE or a PDE; a PTE is always a leaf. */
static bool is_leaf(const struct pt_format *f, uint64_t e, unsigned level)
{
    return level == 0 || ((level == 1 || level == 2) && (e & f->large) != 0);
}

static uint64_t *table_of(uint64_t e, const struct pt_alloc *a)
{
    return (uint64_t *)a->phys_to_virt(a->ctx, e & PT_ADDR_MASK);
}

/* Makes the table below *e (level >= 1) exist: a fresh one if *e is not present, or one
 * whose 512 entries reproduce the large leaf *e. The table is complete before *e points
 * at it, so a concurrent walk sees the old leaf or the whole table. NULL when out of
 * pages (*e unchanged). */
static uint64_t *next_table(const struct pt_format *f, uint64_t *e, unsigned level,
                            const struct pt_alloc *a)
{
    uint64_t phys = 0, old = *e;
    if (is_present(f, old) && !is_leaf(f, old, level))
        return table_of(old, a);
    uint64_t *t = (uint64_t *)a->alloc(a->ctx, &phys);
    if (t == NULL || (phys & ~PT_ADDR_MASK) != 0)
        return NULL;
    if (is_present(f, old)) {
        uint64_t step = level_size(level - 1);
        uint64_t base = old & PT_ADDR_MASK & ~(level_size(level) - 1);
        /* (a large leaf's PAT bit 12 lies inside PT_ADDR_MASK but below its alignment,
         * so the base above does not carry it) */
        uint64_t attr = old & ~PT_ADDR_MASK;
        bool pat = f->pat_large && (old & f->pat_large);
        if (level == 1)
            attr = (attr & ~f->large) | (pat ? f->pat_small : 0);
        else if (pat)
            attr |= f->pat_large;       /* inside the address field's range: re-added */
        for (unsigned i = 0; i < PT_ENTRIES; i++)
            t[i] = (base + (uint64_t)i * step) | attr;
    }
    *e = phys | f->table;
    return t;
}

/* Past the entry of this size that covers *in: to its end, or to the end of the range. */
static void advance(uint64_t *in, uint64_t *len, uint64_t size)
{
    uint64_t step = size - (*in & (size - 1));
    if (step > *len)
        step = *len;
    *in += step;
    *len -= step;
}

static bool aligned_4k(uint64_t v)
{
    return (v & (SIZE_4K - 1)) == 0;
}

static bool in_range_ok(uint64_t in, uint64_t len)
{
    uint64_t top = 1ull << PT_INPUT_BITS;
    return aligned_4k(in) && aligned_4k(len) && in < top && len <= top - in;
}

int pt_map(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t out,
           uint64_t len, uint64_t attr, const struct pt_alloc *a)
{
    if (f == NULL || root == NULL || a == NULL || !in_range_ok(in, len) || !aligned_4k(out) ||
        out >= OUT_LIMIT || len > OUT_LIMIT - out || (attr & PT_ADDR_MASK) != 0 ||
        !is_present(f, attr))
        return -1;
    while (len != 0) {
        uint64_t step;
        uint64_t *pdpt = next_table(f, &root[level_index(in, 3)], 3, a);
        if (pdpt == NULL)
            return -1;
        uint64_t *pd = next_table(f, &pdpt[level_index(in, 2)], 2, a);
        if (pd == NULL)
            return -1;
        uint64_t *pde = &pd[level_index(in, 1)];
        /* A PDE that already points at a page table keeps it (there is no way to free a
         * table page, so replacing it by a 2 MiB leaf would leak it). */
        if (((in | out) & (SIZE_2M - 1)) == 0 && len >= SIZE_2M &&
            !(is_present(f, *pde) && !is_leaf(f, *pde, 1))) {
            *pde = out | attr | f->large;
            step = SIZE_2M;
        } else {
            uint64_t *pt = next_table(f, pde, 1, a);
            if (pt == NULL)
                return -1;
            pt[level_index(in, 0)] = out | (attr & ~f->large);
            step = SIZE_4K;
        }
        in += step;
        out += step;
        len -= step;
    }
    return 0;
}

int pt_unmap(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t len,
             const struct pt_alloc *a)
{
    if (f == NULL || root == NULL || a == NULL || !in_range_ok(in, len))
        return -1;
    while (len != 0) {
        uint64_t *table = root, *e, size;
        /* Descend to an absent entry, a leaf the range covers whole, or a PTE; a large
         * leaf covered in part is split on the way down. */
        for (unsigned level = 3;; level--) {
            e = &table[level_index(in, level)];
            size = level_size(level);
            if (!is_present(f, *e))
                break;
            if (is_leaf(f, *e, level) && (in & (size - 1)) == 0 && len >= size)
                break;
            table = next_table(f, e, level, a);    /* level >= 1: a PTE is always whole */
            if (table == NULL)
                return -1;
        }
        *e = 0;
        advance(&in, &len, size);
    }
    return 0;
}

uint64_t *pt_lookup(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t *size,
                    const struct pt_alloc *a)
{
    uint64_t *table = root;
    if (f == NULL || root == NULL || a == NULL || in >= (1ull << PT_INPUT_BITS))
        return NULL;
    for (unsigned level = 3;; level--) {
        uint64_t *e = &table[level_index(in, level)];
        if (!is_present(f, *e))
            return NULL;
        if (is_leaf(f, *e, level)) {
            if (size != NULL)
                *size = level_size(level);
            return e;
        }
        table = table_of(*e, a);
    }
}

int pt_retype(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t len,
              const struct pt_retype *r, const struct pt_alloc *a)
{
    if (f == NULL || root == NULL || a == NULL || r == NULL || !in_range_ok(in, len))
        return -1;
    while (len != 0) {
        uint64_t *table = root, *e = NULL, size = SIZE_4K;
        for (unsigned level = 3;; level--) {
            e = &table[level_index(in, level)];
            size = level_size(level);
            if (!is_present(f, *e))
                break;
            if (is_leaf(f, *e, level)) {
                uint64_t base = in & ~(size - 1);
                int t = r->type_of(r->ctx, base, size);
                if (level == 0 || t >= 0) {
                    bool large = level != 0;
                    uint64_t mask = large ? r->mask_large : r->mask_small;
                    *e = (*e & ~mask) | (r->bits_of(t < 0 ? 0 : t, large) & mask);
                    break;
                }
            }
            /* A table, or a large leaf of mixed type: split (next_table keeps every
             * attribute) and decide below. */
            table = next_table(f, e, level, a);
            if (table == NULL)
                return -1;
        }
        advance(&in, &len, size);
    }
    return 0;
}
