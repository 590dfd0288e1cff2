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
