/* The guest's MTRRs (mtrr.h): WRMSR/RDMSR sequences from the input. Invariants: a write
 * that succeeds reads back; one that fails changes nothing; MTRRCAP never changes; and
 * the memory type of a block, where mtrr_range_type gives one, is the type of each of
 * its halves (down to 4 KiB, where it always gives one). */
#include "fuzz.h"
#include "mtrr.h"

static const uint32_t msrs[] = { 0xfe, 0x2ff, 0x250, 0x258, 0x259, 0x268, 0x26f,
                                 0x200, 0x201, 0x202, 0x203, 0x20e, 0x20f, 0x210, 0x24f };

/* Down one path of halves chosen by the input, from a block of 2^bits bytes. */
static void halves(const struct mtrr_state *s, struct in *in, uint64_t base, unsigned bits)
{
    uint64_t len = 1ull << bits;
    int t = mtrr_range_type(s, base, len);
    if (bits == 12) {
        CHECK(t != MT_MIXED);
        CHECK(t == MT_UC || t == MT_WC || t == MT_WT || t == MT_WP || t == MT_WB);
        return;
    }
    int lo = mtrr_range_type(s, base, len / 2), hi = mtrr_range_type(s, base + len / 2, len / 2);
    if (t != MT_MIXED)
        CHECK(lo == t && hi == t);
    halves(s, in, (take(in, 1) & 1) ? base + len / 2 : base, bits - 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    struct mtrr_state s;
    mtrr_init(&s, take(&in, 2), 32 + (unsigned)take(&in, 1) % 24);
    s.amd_rdwrmem = take(&in, 1) & 1;
    uint64_t cap0 = s.cap;
    for (int op = 0; op < 32 && in.n; op++) {
        uint32_t msr = (take(&in, 1) & 1) ? msrs[take(&in, 1) % (sizeof(msrs) / sizeof(msrs[0]))]
                                          : 0x200 + (uint32_t)take(&in, 1);
        uint64_t val = take(&in, 8), got;
        switch (take(&in, 1) & 3) {     /* plausible values now and then */
        case 0: val &= 0xfffff000ull | 0xff; break;
        case 1: val = (val & 0xffffff000ull) | 0x800 | (val & 7); break;
        default: break;
        }
        struct mtrr_state before = s;
        if (mtrr_write(&s, msr, val) == 0) {
            CHECK(mtrr_is_msr(msr));
            CHECK(mtrr_read(&s, msr, &got) == 0 && got == val);
        } else {
            CHECK(memcmp(&before, &s, sizeof(s)) == 0);
        }
        CHECK(s.cap == cap0);
    }
    uint64_t base = (take(&in, 5) & 0xffffffffffull) << 12;
    unsigned bits = 12 + (unsigned)take(&in, 1) % 20;
    base &= ~((1ull << bits) - 1);
    halves(&s, &in, base, bits);
    return 0;
}
