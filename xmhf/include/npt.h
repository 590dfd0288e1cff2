/* AMD nested page tables: APM Vol. 2, 15.25 "Nested Paging". The nested tables use the
 * ordinary long-mode 4-level format (5.3 "Long-Mode Page Translation", 5.4 "Page-
 * Translation-Table Entry Fields"); their root goes into VMCB.N_CR3. Every guest access
 * through them counts as a user access (15.25.5 "Nested Table Walk"), so every entry
 * carries U/S. Memory type: the nested entry's PAT/PCD/PWT select a type through the
 * host PAT, which is combined with the guest's own type (15.25.8 "Combining Memory
 * Types, MTRRs"); PCD|PWT (PAT entry 3, UC at power-on) is used for MMIO, 0 (PAT entry
 * 0, WB) for RAM.
 *
 * npt_map / npt_unmap / npt_lookup are pure logic over the builder of pagetable.h. */
#ifndef XMHF_NPT_H
#define XMHF_NPT_H
#include <stdint.h>
#include "pagetable.h"

#define NPT_P         (1ull << 0)
#define NPT_RW        (1ull << 1)
#define NPT_US        (1ull << 2)
#define NPT_PWT       (1ull << 3)
#define NPT_PCD       (1ull << 4)
#define NPT_A         (1ull << 5)
#define NPT_D         (1ull << 6)
#define NPT_PS        (1ull << 7)     /* PDE / PDPTE: 2 MiB / 1 GiB leaf */
#define NPT_PAT_4K    (1ull << 7)     /* PTE: PAT index bit */
#define NPT_G         (1ull << 8)
#define NPT_PAT_LARGE (1ull << 12)    /* 2 MiB / 1 GiB leaf: PAT index bit */
#define NPT_NX        (1ull << 63)
#define NPT_ADDR_MASK PT_ADDR_MASK

/* Leaf protections the runtime uses. */
#define NPT_RWX       (NPT_P | NPT_RW | NPT_US)
#define NPT_MT_WB     0ull                    /* PAT entry 0 */
#define NPT_MT_UC     (NPT_PCD | NPT_PWT)     /* PAT entry 3 */

/* Memory types of nested entries (npt_retype) index the host PAT, which the SVM half
 * loads as NPT_HOST_PAT: entries 0-3 as at power-on (WB, WT, UC-, UC), 4 WC, 5 WP,
 * 6 UC-, 7 UC. Types are the MTRR encodings (mtrr.h). */
#define NPT_HOST_PAT  0x0007050100070406ull
#define NPT_TYPE_UC 0
#define NPT_TYPE_WC 1
#define NPT_TYPE_WT 4
#define NPT_TYPE_WP 5
#define NPT_TYPE_WB 6

/* Leaf attributes: NPT_P | NPT_US, optionally NPT_RW, NPT_PWT, NPT_PCD, NPT_A, NPT_D,
 * NPT_NX (only if the host has EFER.NXE). */
typedef uint64_t npt_prot_t;

/* Identity or other mappings of guest-physical [gpa, gpa+len) to [hpa, hpa+len); the
 * contract of pt_map (pagetable.h). Also -1, with nothing changed, for a prot without
 * P or U/S or with bits outside the list above. */
int npt_map(uint64_t *root, uint64_t gpa, uint64_t hpa, uint64_t len, npt_prot_t prot,
            const struct pt_alloc *a);
int npt_unmap(uint64_t *root, uint64_t gpa, uint64_t len, const struct pt_alloc *a);
/* The NPT entry format for the format-neutral code (ptpath.h). */
extern const struct pt_format npt_format;

uint64_t *npt_lookup(uint64_t *root, uint64_t gpa, uint64_t *size, const struct pt_alloc *a);
/* Sets the memory type of every present leaf in [gpa, gpa+len) to what type_of gives
 * its block (pt_retype). */
int npt_retype(uint64_t *root, uint64_t gpa, uint64_t len,
               int (*type_of)(void *ctx, uint64_t gpa, uint64_t size), void *ctx,
               const struct pt_alloc *a);

#endif
