/* The guest's MTRRs (contract in mtrr.h). */
#include "mtrr.h"

#define SIZE_4K 0x1000ull
#define FIXED_END 0x100000ull

static bool type_valid(const struct mtrr_state *s, uint64_t t)
{
    return t == MT_UC || t == MT_WT || t == MT_WP || t == MT_WB ||
           (t == MT_WC && (s->cap & MTRRCAP_WC));
}

static unsigned vcnt(const struct mtrr_state *s)
{
    return (unsigned)(s->cap & MTRRCAP_VCNT_MASK);
}

/* Index into s->fixed of a fixed-range MSR, or -1. */
static int fixed_index(uint32_t msr)
{
    if (msr == MSR_MTRR_FIX64K_00000)
        return 0;
    if (msr == MSR_MTRR_FIX16K_80000)
        return 1;
    if (msr == MSR_MTRR_FIX16K_A0000)
        return 2;
    if (msr >= MSR_MTRR_FIX4K_C0000 && msr < MSR_MTRR_FIX4K_C0000 + 8)
        return 3 + (int)(msr - MSR_MTRR_FIX4K_C0000);
    return -1;
}

bool mtrr_is_msr(uint32_t msr)
{
    return msr == MSR_MTRRCAP || msr == MSR_MTRR_DEF_TYPE || fixed_index(msr) >= 0 ||
           (msr >= MSR_MTRR_PHYSBASE0 && msr < MSR_MTRR_FIX64K_00000);
}

void mtrr_init(struct mtrr_state *s, uint64_t cap, unsigned phys_bits)
{
    *s = (struct mtrr_state){ 0 };
    if ((cap & MTRRCAP_VCNT_MASK) > MTRR_MAX_VAR)
        cap = (cap & ~MTRRCAP_VCNT_MASK) | MTRR_MAX_VAR;
    s->cap = cap & (MTRRCAP_VCNT_MASK | MTRRCAP_FIX | MTRRCAP_WC);
    s->phys_bits = phys_bits < 36 ? 36 : phys_bits > 52 ? 52 : phys_bits;
}

/* Address bits 51:12 that exist: PHYSBASE/PHYSMASK bits above MAXPHYADDR are reserved. */
static uint64_t addr_bits(const struct mtrr_state *s)
{
    return ((1ull << s->phys_bits) - 1) & ~(SIZE_4K - 1);
}

int mtrr_read(const struct mtrr_state *s, uint32_t msr, uint64_t *val)
{
    int fi = fixed_index(msr);
    if (msr == MSR_MTRRCAP) {
        *val = s->cap;
    } else if (msr == MSR_MTRR_DEF_TYPE) {
        *val = s->def_type;
    } else if (fi >= 0) {
        if (!(s->cap & MTRRCAP_FIX))
            return -1;
        *val = s->fixed[fi];
    } else if (msr >= MSR_MTRR_PHYSBASE0 && msr < MSR_MTRR_PHYSBASE0 + 2 * vcnt(s)) {
        unsigned n = (msr - MSR_MTRR_PHYSBASE0) / 2;
        *val = (msr & 1) ? s->mask[n] : s->base[n];
    } else {
        return -1;
    }
    return 0;
}

static bool fixed_valid(const struct mtrr_state *s, uint64_t val)
{
    for (unsigned i = 0; i < 8; i++) {
        uint64_t b = (val >> (8 * i)) & 0xff;
        uint64_t ext = s->amd_rdwrmem ? 0x18 : 0;
        if ((b & ~(7ull | ext)) || !type_valid(s, b & 7))
            return false;
    }
    return true;
}

int mtrr_write(struct mtrr_state *s, uint32_t msr, uint64_t val)
{
    int fi = fixed_index(msr);
    if (msr == MSR_MTRR_DEF_TYPE) {
        if ((val & ~(0xffull | MTRR_DEF_FE | MTRR_DEF_E)) || !type_valid(s, val & 0xff))
            return -1;
        s->def_type = val;
    } else if (fi >= 0) {
        if (!(s->cap & MTRRCAP_FIX) || !fixed_valid(s, val))
            return -1;
        s->fixed[fi] = val;
    } else if (msr >= MSR_MTRR_PHYSBASE0 && msr < MSR_MTRR_PHYSBASE0 + 2 * vcnt(s)) {
        unsigned n = (msr - MSR_MTRR_PHYSBASE0) / 2;
        if (msr & 1) {
            if (val & ~(addr_bits(s) | MTRR_MASK_VALID))
                return -1;
            s->mask[n] = val;
        } else {
            if ((val & ~(addr_bits(s) | 0xffull)) || !type_valid(s, val & 0xff))
                return -1;
            s->base[n] = val;
        }
    } else {
        return -1;      /* MTRRCAP is read-only; anything else is no MTRR here */
    }
    return 0;
}

/* Type of the 4 KiB page at pa < 1 MiB from the fixed ranges: 64 KiB units below
 * 0x80000, 16 KiB units to 0xc0000, 4 KiB units above (SDM table 12-9). */
static int fixed_type(const struct mtrr_state *s, uint64_t pa)
{
    unsigned reg, byte;
    if (pa < 0x80000) {
        reg = 0;
        byte = (unsigned)(pa >> 16);
    } else if (pa < 0xc0000) {
        reg = 1 + (unsigned)((pa - 0x80000) >> 17);
        byte = (unsigned)((pa >> 14) & 7);
    } else {
        reg = 3 + (unsigned)((pa - 0xc0000) >> 15);
        byte = (unsigned)((pa >> 12) & 7);
    }
    return (int)((s->fixed[reg] >> (8 * byte)) & 7);
}

/* The variable ranges over an aligned block: each valid range covers the block whole,
 * not at all, or in part (then MT_MIXED). Several covering ranges combine by 12.11.4.1. */
static int variable_type(const struct mtrr_state *s, uint64_t base, uint64_t len)
{
    uint64_t bits = addr_bits(s);
    bool any = false, uc = false, wt = false, other = false;
    unsigned first = 0;
    for (unsigned i = 0; i < vcnt(s); i++) {
        if (!(s->mask[i] & MTRR_MASK_VALID))
            continue;
        uint64_t m = s->mask[i] & bits;
        uint64_t hi = m & ~(len - 1);
        if ((base & hi) != (s->base[i] & hi))
            continue;                       /* no address of the block matches */
        if (m & (len - 1))
            return MT_MIXED;                /* some addresses match, some do not */
        unsigned t = (unsigned)(s->base[i] & 7);
        if (!any)
            first = t;
        else if (t != first)
            other = true;
        any = true;
        uc |= t == MT_UC;
        wt |= t == MT_WT;
    }
    if (!any)
        return (int)(s->def_type & 7);
    if (uc)
        return MT_UC;
    if (!other)
        return (int)first;
    /* Only WT and WB left in the mix: WT. Anything else is undefined: UC. */
    for (unsigned i = 0; i < vcnt(s); i++) {
        if (!(s->mask[i] & MTRR_MASK_VALID))
            continue;
        uint64_t hi = s->mask[i] & bits & ~(len - 1);
        unsigned t = (unsigned)(s->base[i] & 7);
        if ((base & hi) == (s->base[i] & hi) && t != MT_WT && t != MT_WB)
            return MT_UC;
    }
    return wt ? MT_WT : MT_UC;
}

int mtrr_range_type(const struct mtrr_state *s, uint64_t base, uint64_t len)
{
    if (len < SIZE_4K || (len & (len - 1)) || (base & (len - 1)))
        return MT_MIXED;
    if (!(s->def_type & MTRR_DEF_E))
        return MT_UC;
    bool fixed = (s->def_type & MTRR_DEF_FE) && (s->cap & MTRRCAP_FIX);
    if (fixed && base < FIXED_END) {
        if (len == SIZE_4K)
            return fixed_type(s, base);
        /* Halves until every piece is one type (at most 4 KiB granularity). */
        int lo = mtrr_range_type(s, base, len / 2);
        if (lo == MT_MIXED)
            return MT_MIXED;
        int hi = mtrr_range_type(s, base + len / 2, len / 2);
        return lo == hi ? lo : MT_MIXED;
    }
    return variable_type(s, base, len);
}
