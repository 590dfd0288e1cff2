/* A format-neutral builder of x86-style 4-level page tables (512 entries of 8 bytes per
 * 4 KiB table, 4 KiB / 2 MiB / 1 GiB leaves). The entry format (which bits mean
 * "present", what a table pointer carries, the page-size bit) comes from a struct
 * pt_format, so the same walk serves AMD nested page tables (npt.h) and can serve any
 * other format with that geometry (Intel EPT: ept.c).
 *
 * Pure logic: memory is reached only through struct pt_alloc, so host unit tests run it
 * on heap pages. Nothing is flushed; after changing live tables the caller flushes the
 * TLBs the format requires. */
#ifndef XMHF_PAGETABLE_H
#define XMHF_PAGETABLE_H
#include <stdbool.h>
#include <stdint.h>

#define PT_ENTRIES     512u
#define PT_INPUT_BITS  48u                      /* a 4-level walk translates bits 47:0 */
#define PT_ADDR_MASK   0x000ffffffffff000ull    /* address bits 51:12 */

/* Zeroed 4 KiB table pages, and the way back from the physical address in an entry to
 * a table the builder can write. alloc returns NULL when out of pages. */
struct pt_alloc {
    void *(*alloc)(void *ctx, uint64_t *phys);
    void *(*phys_to_virt)(void *ctx, uint64_t phys);
    void *ctx;
};

struct pt_format {
    uint64_t present;   /* an entry is present when any of these bits is set */
    uint64_t table;     /* the attribute bits of an entry that points at a table */
    uint64_t large;     /* page-size bit of a PDPTE / PDE leaf (in a PTE it is cleared
                           when a large leaf is split, whatever it means there) */
    uint64_t pat_large, pat_small;  /* a type bit that moves when a large leaf is split
                           (long-mode PAT: bit 12 in a large leaf, bit 7 in a PTE); 0: none */
};

/* Maps [in, in+len) to [out, out+len) with leaf attribute bits `attr` (already valid for
 * the format: the caller checks). in, out, len 4 KiB aligned, in+len <= 2^48,
 * out+len <= 2^52, attr within bits 11:0 and 63:52 and holding a present bit. 2 MiB leaves
 * where alignment and length allow, else 4 KiB; a large leaf partly overwritten is split
 * first, keeping its attributes. 0, or -1 when out of table pages (mappings so far stay)
 * or, with nothing changed, on invalid input. */
int pt_map(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t out,
           uint64_t len, uint64_t attr, const struct pt_alloc *a);

/* Makes [in, in+len) not present, splitting large leaves as needed. 0 or -1. */
int pt_unmap(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t len,
             const struct pt_alloc *a);

/* Memory types of present leaves (pt_retype): type_of says the type of every byte of
 * the aligned block [in, in+size), or -1 where it is not one type; bits_of gives the
 * leaf bits for a type in a large leaf (2 MiB / 1 GiB) or a 4 KiB one, which replace
 * the bits mask_large / mask_small of the entry. */
struct pt_retype {
    int (*type_of)(void *ctx, uint64_t in, uint64_t size);
    uint64_t (*bits_of)(int type, bool large);
    uint64_t mask_small, mask_large;
    void *ctx;
};
/* Rewrites the memory-type bits of every present leaf in [in, in+len) (4 KiB aligned),
 * splitting a large leaf whose block is not one type into 4 KiB leaves; a 4 KiB block
 * type_of cannot decide gets type 0. Absent entries stay absent. 0, or -1 when out of
 * table pages (the leaves done so far keep their new bits) or on invalid input. */
int pt_retype(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t len,
              const struct pt_retype *r, const struct pt_alloc *a);
/* The present leaf entry that maps `in`, or NULL; *size (if not NULL) gets the size it
 * maps (4 KiB, 2 MiB or 1 GiB). */
uint64_t *pt_lookup(const struct pt_format *f, uint64_t *root, uint64_t in, uint64_t *size,
                    const struct pt_alloc *a);

#endif
