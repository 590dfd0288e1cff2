/* A private path through shared 4-level tables (EPT or NPT geometry: 512 entries per
 * level, index bits 47:39, 38:30, 29:21, 20:12). A CPU that must see one 4 KiB page
 * differently from the others (its APIC page, DESIGN.md section 4) gets its own copy of
 * the four tables on the way to that page: root, level 2, level 3 and the leaf table.
 * Every other entry reproduces the shared map, so the rest of the map stays shared; the
 * leaf entry of the page is the owner's to edit.
 *
 * The shared map is only read, never split or extended for the path: where it has a
 * large leaf on the way, the private table below reproduces that leaf in smaller pieces
 * (same frames, same attributes); where it has nothing, the private tables are empty
 * but for the path. So moving the path anywhere (the guest may put its APIC at any
 * physical address, thousands of times) costs no memory: the four pages are the path's
 * for good (issue 8, "IA32_APIC_BASE anywhere").
 *
 * Pure logic over struct pt_alloc and struct pt_format (pagetable.h): both halves use
 * it, and the host unit tests can run it on heap pages. The caller serialises build and
 * sync against changes of the shared tables, and flushes what the format needs. */
#ifndef XMHF_PTPATH_H
#define XMHF_PTPATH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pagetable.h"

#define PT_PATH_LEVELS 4
#define PT_PATH_IDX(in, lvl) ((unsigned)((in) >> (39 - 9 * (lvl))) & (PT_ENTRIES - 1))
/* What one entry of a table at path level lvl (0 = root) maps. */
#define PT_PATH_SIZE(lvl) (1ull << (39 - 9 * (lvl)))

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

/* Fills the private tables from the shared map under `root`; `all`: the path's own
 * entries too (the table pointers, and the leaf entry as the shared map has it), else
 * every entry but those. Each level's entries come from the shared table at that level
 * if there is one, else from the large leaf above split into pieces (large bit kept
 * above the leaf level, the memory-type PAT bit moved to where the pieces keep it, as
 * pagetable.c splits), else they are empty. */
static inline void pt_path_fill(struct pt_path *p, const uint64_t *root,
                                const struct pt_format *f, const struct pt_alloc *a, bool all)
{
    const uint64_t *shared = root;
    uint64_t large = 0;     /* a large leaf on the way (no shared table below it) */
    for (int l = 0; l < PT_PATH_LEVELS; l++) {
        unsigned keep = PT_PATH_IDX(p->in, l);
        uint64_t *t = p->t[l], vkeep = 0;
        uint64_t attr = large & ~PT_ADDR_MASK;
        bool pat = f->pat_large && (large & f->pat_large);
        if (l + 1 == PT_PATH_LEVELS)
            attr = (attr & ~f->large) | (pat ? f->pat_small : 0);
        else if (pat)
            attr |= f->pat_large;
        uint64_t base = l ? large & PT_ADDR_MASK & ~(PT_PATH_SIZE(l - 1) - 1) : 0;
        for (unsigned e = 0; e < PT_ENTRIES; e++) {
            uint64_t v = 0;
            if (shared)
                v = shared[e];
            else if (large)
                v = (base + (uint64_t)e * PT_PATH_SIZE(l)) | attr;
            if (e == keep)
                vkeep = v;
            else
                t[e] = v;
        }
        if (l + 1 == PT_PATH_LEVELS) {
            if (all)
                t[keep] = vkeep;
            break;
        }
        if (shared && (vkeep & f->present) && !(l > 0 && (vkeep & f->large))) {
            shared = a->phys_to_virt(a->ctx, vkeep & PT_ADDR_MASK);
        } else {
            /* a large leaf (1 GiB, 2 MiB), a piece of one, or nothing */
            large = (vkeep & f->present) ? vkeep : 0;
            shared = NULL;
        }
        if (all)
            t[keep] = p->pa[l + 1] | f->table;
    }
}

/* Points the path at page `in` (4 KiB aligned below 2^48): the private tables become
 * the shared map's view, and the leaf entry is left as the shared map has it. */
static inline void pt_path_build(struct pt_path *p, const uint64_t *root, uint64_t in,
                                 const struct pt_format *f, const struct pt_alloc *a)
{
    p->in = in & ~0xfffull;
    pt_path_fill(p, root, f, a, true);
}

/* After the shared map changed off the path (entries only ever added, say a lazy MMIO
 * mapping), the private copies take the new state; the path's own entries stay. */
static inline void pt_path_sync(struct pt_path *p, const uint64_t *root,
                                const struct pt_format *f, const struct pt_alloc *a)
{
    pt_path_fill(p, root, f, a, false);
}

#endif
