/* Extended page tables: Intel SDM Vol. 3C, 29.3.2 "EPT Translation Mechanism" and
 * 29.3.7 "EPT and Memory Typing"; EPTP format in 25.6.11 "Extended-Page-Table Pointer".
 * The builder (ept_map / ept_unmap / ept_lookup) is pure logic: it reaches memory only
 * through struct ept_alloc, so the host unit tests run it on ordinary heap pages. */
#ifndef XMHF_EPT_H
#define XMHF_EPT_H
#include <stdint.h>
#include "pagetable.h"

#define EPT_R          (1ull << 0)
#define EPT_W          (1ull << 1)
#define EPT_X          (1ull << 2)
#define EPT_RWX        (EPT_R | EPT_W | EPT_X)
#define EPT_MT_SHIFT   3            /* bits 5:3 of a leaf: memory type */
#define EPT_MT_UC      0ull
#define EPT_MT_WC      1ull
#define EPT_MT_WT      4ull
#define EPT_MT_WP      5ull
#define EPT_MT_WB      6ull
#define EPT_IGNORE_PAT (1ull << 6)
#define EPT_LARGE      (1ull << 7)  /* bit 7 of a PDE/PDPTE: maps a 2 MiB / 1 GiB page */
#define EPT_ADDR_MASK  0x000ffffffffff000ull
/* 29.3.4 "Sub-Page Write Permissions": bit 61 of a 4 KiB leaf without write permission
 * sends writes to the SPP table, whose leaf for the page is a vector with bit 2i set
 * when sub-page i (128 bytes) may be written (odd bits reserved); its other levels are
 * indexed like EPT, bit 0 present, bits 11:1 and 63:52 reserved. */
#define EPT_SPP        (1ull << 61)
#define SPP_PRESENT    (1ull << 0)
#define SPP_WRITE(i)   (1ull << (2 * (i)))

/* EPTP (25.6.11): bits 2:0 memory type of the paging structures, 5:3 walk length - 1. */
#define EPTP_WB        6ull
#define EPTP_WALK4     (3ull << 3)

#define PAGE_SIZE_4K   0x1000ull
#define PAGE_SIZE_2M   0x200000ull
#define PAGE_SIZE_1G   0x40000000ull

/* Where the builder gets zeroed 4 KiB table pages and how it reaches a table from the
 * physical address an entry holds. alloc returns NULL when out of pages. */
struct ept_alloc {
    void *(*alloc)(void *ctx, uint64_t *phys);
    void *(*phys_to_virt)(void *ctx, uint64_t phys);
    void *ctx;
};

/* Leaf permissions and memory type: EPT_R/W/X | (EPT_MT_xx << EPT_MT_SHIFT). */
typedef uint64_t ept_prot_t;

/* Maps guest-physical [gpa, gpa+len) to [hpa, hpa+len) with `prot`, replacing whatever
 * was there. gpa, hpa, len 4 KiB aligned; gpa < 2^48. Uses 2 MiB leaves where gpa, hpa
 * and the remaining length allow, 4 KiB leaves elsewhere; a 2 MiB leaf that is partly
 * overwritten is first split into 512 4 KiB leaves with its old attributes.
 * root is the PML4 (virtual), its physical address goes into the EPTP.
 * Returns 0, or -1 when out of table pages (mappings made so far stay) or, with nothing
 * changed, for unaligned input, gpa+len > 2^48, hpa+len > 2^52, or a prot the CPU would
 * take as a misconfiguration (no R/W/X, W without R, memory type 2/3/7, bits above 6). */
int ept_map(uint64_t *root, uint64_t gpa, uint64_t hpa, uint64_t len, ept_prot_t prot,
            const struct ept_alloc *a);

/* Makes [gpa, gpa+len) not present (splitting 2 MiB leaves as needed). 0 or -1. */
int ept_unmap(uint64_t *root, uint64_t gpa, uint64_t len, const struct ept_alloc *a);

/* The leaf entry mapping gpa (NULL if not present); *level_size (if not NULL) is the size
 * the leaf maps (4 KiB or 2 MiB). */
uint64_t *ept_lookup(uint64_t *root, uint64_t gpa, uint64_t *level_size,
                     const struct ept_alloc *a);
/* Sets the memory type (bits 5:3; types as mtrr.h, reserved ones become UC) of every
 * present leaf in [gpa, gpa+len) to what type_of gives its block (pt_retype). */
int ept_retype(uint64_t *root, uint64_t gpa, uint64_t len,
               int (*type_of)(void *ctx, uint64_t gpa, uint64_t size), void *ctx,
               const struct ept_alloc *a);

/* The EPT entry format for the format-neutral code (ptpath.h). */
extern const struct pt_format ept_format;

#endif
