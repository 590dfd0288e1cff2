/* Guest linear -> guest-physical translation through the guest's own page tables, for
 * the hypervisor's instruction fetches and decodes when the processor gives no help
 * (AMD without decode assists). Formats: AMD APM Vol. 2, 5.2 "Legacy-Mode Page
 * Translation" (32-bit, PSE/PSE-36), 5.3 "Long-Mode Page Translation" (PAE and 4/5-level)
 * and Intel SDM Vol. 3A 4.3-4.5, which agree.
 *
 * Pure logic: table memory is read through a callback. Translation checks presence only
 * (the instruction was just fetched by the processor, so permissions held) and sets no
 * accessed/dirty flags; gwalk_access is a data access as the processor makes it. */
#ifndef XMHF_GWALK_H
#define XMHF_GWALK_H
#include <stdint.h>

struct gwalk {
    uint64_t cr0, cr3, cr4, efer;
    /* Reads n bytes of guest-physical memory at gpa; 0 on success. */
    int (*read)(void *ctx, uint64_t gpa, void *buf, unsigned n);
    void *ctx;
    /* Optional (NULL: no flags set): ORs bits into the size-byte (4 or 8) paging entry
     * at gpa as one locked operation, as the processor updates A/D (SDM 4.8); 0 on
     * success. */
    int (*set_bits)(void *ctx, uint64_t gpa, unsigned size, uint64_t bits);
};

/* The guest-physical address of linear address la: 0 and *gpa, or -1 when an entry on
 * the way is not present or cannot be read. With CR0.PG clear, la's low 32 bits. */
int gwalk_translate(const struct gwalk *g, uint64_t la, uint64_t *gpa);

/* A supervisor data access of la as the processor checks it (SDM 4.6): not present, or
 * a write to a page some level maps read-only while CR0.WP is set, is a page fault: -1
 * and *pf_err its error code (P bit 0, W/R bit 1; reserved bits are not checked). An
 * access that translates sets, through set_bits, the accessed flag of every paging entry
 * it used and, for a write, the dirty flag of the entry that maps the page (SDM 4.8;
 * PAE's PDPTEs have neither); a failed update is -1 with *pf_err as for not present.
 * 0 and *gpa otherwise. */
int gwalk_access(const struct gwalk *g, uint64_t la, int write, uint64_t *gpa,
                 uint32_t *pf_err);

/* Reads n bytes at guest linear address la (crossing pages as needed); 0 or -1. */
int gwalk_read(const struct gwalk *g, uint64_t la, void *buf, unsigned n);

#endif
