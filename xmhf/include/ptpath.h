/* A private path through shared 4-level tables (EPT or NPT geometry: 512 entries per
 * level, index bits 47:39, 38:30, 29:21, 20:12). A CPU that must see one 4 KiB page
 * differently from the others (its trapped APIC page, DESIGN.md section 4) gets its own
 * copy of the four tables on the way to that page: root, level 2, level 3 and the leaf
 * table. Every other entry is a copy of the shared one, so the rest of the map stays
 * shared; the leaf entry of the page is the owner's to edit.
 *
 * Pure logic over struct pt_alloc (pagetable.h): both halves use it, and the host unit
 * tests can run it on heap pages. The caller serialises build and sync against changes
 * of the shared tables, and flushes what the format needs afterwards. */
#ifndef XMHF_PTPATH_H
#define XMHF_PTPATH_H
#include <stdint.h>
#include "pagetable.h"

#define PT_PATH_LEVELS 4
#define PT_PATH_IDX(in, lvl) ((unsigned)((in) >> (39 - 9 * (lvl))) & (PT_ENTRIES - 1))

struct pt_path {
    uint64_t *t[PT_PATH_LEVELS];    /* private root .. leaf table (virtual) */
    uint64_t pa[PT_PATH_LEVELS];    /* their physical addresses: pa[0] is the root */
    uint64_t in;                    /* the 4 KiB page the path leads to */
};

/* The private leaf entry of the page the path leads to. */
static inline uint64_t *pt_path_leaf(struct pt_path *p)
{
    return &p->t[PT_PATH_LEVELS - 1][PT_PATH_IDX(p->in, PT_PATH_LEVELS - 1)];
}

/* Takes the path's tables from a (zeroed pages, 0 on success, -1 when out of pages). */
static inline int pt_path_alloc(struct pt_path *p, const struct pt_alloc *a)
{
    for (int l = 0; l < PT_PATH_LEVELS; l++) {
        p->t[l] = a->alloc(a->ctx, &p->pa[l]);
        if (!p->t[l])
            return -1;
    }
    return 0;
}

/* Points the path at page `in` of the shared tables under `root`, which must map it
 * with 4 KiB leaves (so that every level down to a leaf table exists). Each private
 * table becomes a copy of its shared twin, with the entry on the path pointing at the
 * next private table (`table` = the format's table-pointer attributes); the leaf entry
 * is left as the shared map has it. */
static inline void pt_path_build(struct pt_path *p, const uint64_t *root, uint64_t in,
                                 uint64_t table, const struct pt_alloc *a)
{
    const uint64_t *shared = root;
    p->in = in & ~0xfffull;
    for (int l = 0; l < PT_PATH_LEVELS; l++) {
        unsigned keep = PT_PATH_IDX(p->in, l);
        for (unsigned e = 0; e < PT_ENTRIES; e++)
            p->t[l][e] = shared[e];
        if (l + 1 < PT_PATH_LEVELS) {
            shared = a->phys_to_virt(a->ctx, shared[keep] & PT_ADDR_MASK);
            p->t[l][keep] = p->pa[l + 1] | table;
        }
    }
}

/* After the shared map changed off the path (entries added, say a lazy MMIO mapping,
 * or memory types rewritten), the private copies take the new entries at every level,
 * the leaf table included (the page's neighbours live there); the path's own entries
 * stay. */
static inline void pt_path_sync(struct pt_path *p, const uint64_t *root,
                                const struct pt_alloc *a)
{
    const uint64_t *shared = root;
    for (int l = 0; l < PT_PATH_LEVELS; l++) {
        unsigned keep = PT_PATH_IDX(p->in, l);
        for (unsigned e = 0; e < PT_ENTRIES; e++) {
            if (e != keep)
                p->t[l][e] = shared[e];
        }
        if (l + 1 < PT_PATH_LEVELS)
            shared = a->phys_to_virt(a->ctx, shared[keep] & PT_ADDR_MASK);
    }
}

#endif
