/* AMD nested page tables (npt.h): the long-mode entry format handed to the generic
 * 4-level builder (pagetable.c). */
#include "npt.h"

/* APM Vol. 2, 5.4 "Page-Translation-Table Entry Fields": P bit 0, R/W bit 1, U/S bit 2,
 * PWT 3, PCD 4, A 5, D 6, PS 7 (PAT in a PTE), G 8, PAT of a large page 12, NX 63. */
_Static_assert(NPT_P == 0x1 && NPT_RW == 0x2 && NPT_US == 0x4, "P, R/W, U/S bits 0..2");
_Static_assert(NPT_PWT == 0x8 && NPT_PCD == 0x10, "PWT bit 3, PCD bit 4");
_Static_assert(NPT_A == 0x20 && NPT_D == 0x40 && NPT_PS == 0x80 && NPT_G == 0x100,
               "A 5, D 6, PS 7, G 8");
_Static_assert(NPT_PAT_LARGE == 0x1000 && NPT_NX == 0x8000000000000000ull, "PAT 12, NX 63");
_Static_assert(NPT_ADDR_MASK == 0x000ffffffffff000ull, "address bits 51:12");

/* A table pointer: present, writable, user; the leaves decide the real permissions. */
const struct pt_format npt_format = {
    .present = NPT_P,
    .table = NPT_P | NPT_RW | NPT_US,
    .large = NPT_PS,
    .pat_large = NPT_PAT_LARGE,
    .pat_small = NPT_PAT_4K,
};

#define NPT_PROT_ALLOWED (NPT_P | NPT_RW | NPT_US | NPT_PWT | NPT_PCD | NPT_A | NPT_D | NPT_NX)

int npt_map(uint64_t *root, uint64_t gpa, uint64_t hpa, uint64_t len, npt_prot_t prot,
            const struct pt_alloc *a)
{
    if ((prot & ~NPT_PROT_ALLOWED) != 0 || (prot & (NPT_P | NPT_US)) != (NPT_P | NPT_US))
        return -1;
    return pt_map(&npt_format, root, gpa, hpa, len, prot, a);
}

int npt_unmap(uint64_t *root, uint64_t gpa, uint64_t len, const struct pt_alloc *a)
{
    return pt_unmap(&npt_format, root, gpa, len, a);
}

uint64_t *npt_lookup(uint64_t *root, uint64_t gpa, uint64_t *size, const struct pt_alloc *a)
{
    return pt_lookup(&npt_format, root, gpa, size, a);
}

/* Memory types through the host PAT (npt.h: NPT_HOST_PAT): the index is PAT:PCD:PWT. */
static uint64_t npt_type_bits(int type, bool large)
{
    unsigned idx;
    switch (type) {
    case NPT_TYPE_WB: idx = 0; break;
    case NPT_TYPE_WT: idx = 1; break;
    case NPT_TYPE_WC: idx = 4; break;
    case NPT_TYPE_WP: idx = 5; break;
    default: idx = 3; break;            /* UC, and anything undecided */
    }
    return ((idx & 1) ? NPT_PWT : 0) | ((idx & 2) ? NPT_PCD : 0) |
           ((idx & 4) ? (large ? NPT_PAT_LARGE : NPT_PAT_4K) : 0);
}

int npt_retype(uint64_t *root, uint64_t gpa, uint64_t len,
               int (*type_of)(void *ctx, uint64_t gpa, uint64_t size), void *ctx,
               const struct pt_alloc *a)
{
    struct pt_retype r = { type_of, npt_type_bits, NPT_PWT | NPT_PCD | NPT_PAT_4K,
                           NPT_PWT | NPT_PCD | NPT_PAT_LARGE, ctx };
    return pt_retype(&npt_format, root, gpa, len, &r, a);
}
