/* Memory type range registers as a guest sees them: Intel SDM Vol. 3A 12.11 "Memory Type
 * Range Registers (MTRRs)" (12.11.1 MTRRCAP, 12.11.2.1 IA32_MTRR_DEF_TYPE, 12.11.2.2
 * fixed ranges, 12.11.2.3 variable ranges, 12.11.4.1 "MTRR Precedences"); AMD APM
 * Vol. 2, 7.7 "Memory-Type Range Registers" (same MSRs). The guest's MTRRs are kept
 * here, never written to the processor; the nested page tables carry the memory types
 * they compute (mtrr_range_type).
 *
 * Pure logic: the runtime (mtrrvirt.c) and the host tests and fuzz targets use it. */
#ifndef XMHF_MTRR_H
#define XMHF_MTRR_H
#include <stdbool.h>
#include <stdint.h>

#define MSR_MTRRCAP             0x0feu
#define   MTRRCAP_VCNT_MASK     0xffull
#define   MTRRCAP_FIX           (1ull << 8)
#define   MTRRCAP_WC            (1ull << 10)
#define   MTRRCAP_SMRR          (1ull << 11)
#define MSR_MTRR_PHYSBASE0      0x200u      /* PHYSBASEn = 0x200 + 2n, PHYSMASKn = + 1 */
#define   MTRR_MASK_VALID       (1ull << 11)
#define MSR_MTRR_FIX64K_00000   0x250u
#define MSR_MTRR_FIX16K_80000   0x258u
#define MSR_MTRR_FIX16K_A0000   0x259u
#define MSR_MTRR_FIX4K_C0000    0x268u      /* .. 0x26f: FIX4K_C0000 .. FIX4K_F8000 */
#define MSR_MTRR_DEF_TYPE       0x2ffu
#define   MTRR_DEF_FE           (1ull << 10)
#define   MTRR_DEF_E            (1ull << 11)

/* Memory types (SDM table 12-8); 2, 3 and 7 and above are reserved. */
#define MT_UC 0u
#define MT_WC 1u
#define MT_WT 4u
#define MT_WP 5u
#define MT_WB 6u
#define MT_MIXED (-1)                       /* mtrr_range_type: not one type throughout */

/* Variable ranges kept: the MSR numbers leave room for 40 before the fixed ones at
 * 0x250 (VCNT beyond this is reported as this many). */
#define MTRR_MAX_VAR 32u
#define MTRR_FIXED_MSRS 11u

struct mtrr_state {
    uint64_t cap;                   /* MTRRCAP as the guest reads it */
    uint64_t def_type;
    uint64_t fixed[MTRR_FIXED_MSRS]; /* 64K_00000, 16K_80000, 16K_A0000, 4K_C0000..F8000 */
    uint64_t base[MTRR_MAX_VAR], mask[MTRR_MAX_VAR];
    unsigned phys_bits;             /* MAXPHYADDR: address bits above it are reserved */
    bool amd_rdwrmem;               /* fixed-range bytes may carry AMD's RdMem/WrMem bits 4:3 */
};

/* Whether msr is one of the MTRR MSRs (MTRRCAP, DEF_TYPE, the fixed and variable
 * ranges, whatever the processor's counts). */
bool mtrr_is_msr(uint32_t msr);
/* A fresh state: cap from the processor (VCNT capped, SMRR hidden: its MSRs are SMM's),
 * everything else 0 (MTRRs disabled). */
void mtrr_init(struct mtrr_state *s, uint64_t cap, unsigned phys_bits);
/* RDMSR / WRMSR of an MTRR MSR: 0, or -1 where the processor raises #GP (an MSR beyond
 * VCNT or without FIX, MTRRCAP written, reserved bits, reserved memory types, WC
 * without MTRRCAP.WC). A failed write changes nothing. */
int mtrr_read(const struct mtrr_state *s, uint32_t msr, uint64_t *val);
int mtrr_write(struct mtrr_state *s, uint32_t msr, uint64_t val);
/* The memory type the MTRRs give every byte of [base, base + len), or MT_MIXED where
 * they differ (or could: a variable range that covers the block in part). len is a
 * power of two, at least 4 KiB, base aligned to it, base + len <= 2^52. MTRRs disabled:
 * UC. Overlaps as SDM 12.11.4.1: UC wins, WT over WB, any other mix (undefined) UC. */
int mtrr_range_type(const struct mtrr_state *s, uint64_t base, uint64_t len);

#endif
