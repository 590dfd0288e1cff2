/* EPT builder (contract in ept.h), Intel SDM Vol. 3C 29.3.2 "EPT Translation Mechanism":
 * the EPT entry format handed to the format-neutral 4-level builder (pagetable.c), which
 * AMD's nested page tables use too (npt.c). Only 4 KiB and 2 MiB leaves are created; a
 * 1 GiB leaf found in the tables is still understood.
 *
 * The builder does not flush anything: after changing live tables the caller must
 * INVEPT (SDM 29.4.3.1 "Operations that Invalidate Cached Mappings"). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ept.h"
#include "pagetable.h"

#define EPT_ENTRIES   512u

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

/* A table pointer carries R/W/X (the leaves decide the real permissions); an entry is
 * present when any of R/W/X is set (29.3.2). */
const struct pt_format ept_format = {
    .present = EPT_RWX,
    .table = EPT_RWX,
    .large = EPT_LARGE,
};
_Static_assert(EPT_ADDR_MASK == PT_ADDR_MASK && EPT_ENTRIES == PT_ENTRIES, "EPT geometry");

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

static struct pt_alloc pt_alloc_of(const struct ept_alloc *a)
{
    struct pt_alloc p = { a->alloc, a->phys_to_virt, a->ctx };
    return p;
}

int ept_map(uint64_t *root, uint64_t gpa, uint64_t hpa, uint64_t len, ept_prot_t prot,
            const struct ept_alloc *a)
{
    if (!prot_valid(prot))
        return -1;
    struct pt_alloc p = pt_alloc_of(a);
    return pt_map(&ept_format, root, gpa, hpa, len, prot, &p);
}

int ept_unmap(uint64_t *root, uint64_t gpa, uint64_t len, const struct ept_alloc *a)
{
    struct pt_alloc p = pt_alloc_of(a);
    return pt_unmap(&ept_format, root, gpa, len, &p);
}

uint64_t *ept_lookup(uint64_t *root, uint64_t gpa, uint64_t *level_size,
                     const struct ept_alloc *a)
{
    struct pt_alloc p = pt_alloc_of(a);
    return pt_lookup(&ept_format, root, gpa, level_size, &p);
}

static uint64_t ept_type_bits(int type, bool large)
{
    (void)large;
    uint64_t t = (uint64_t)type;
    if (t == 2 || t == 3 || t > 6)
        t = EPT_MT_UC;                  /* never a reserved type (a misconfiguration) */
    return t << EPT_MT_SHIFT;
}

int ept_retype(uint64_t *root, uint64_t gpa, uint64_t len,
               int (*type_of)(void *ctx, uint64_t gpa, uint64_t size), void *ctx,
               const struct ept_alloc *a)
{
    struct pt_alloc p = pt_alloc_of(a);
    uint64_t mask = 7ull << EPT_MT_SHIFT;
    struct pt_retype r = { type_of, ept_type_bits, mask, mask, ctx };
    return pt_retype(&ept_format, root, gpa, len, &r, &p);
}
