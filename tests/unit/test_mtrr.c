/* Host tests of the guest MTRR register file and the MTRR -> memory-type computation
 * (xmhf/src/lib/mtrr.c). Expected values worked out by hand from SDM Vol. 3A 12.11
 * (tables 12-8 and 12-9, 12.11.4.1 precedences). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mtrr.h"

#define CAP (8ull | MTRRCAP_FIX | MTRRCAP_WC | MTRRCAP_SMRR)   /* 8 variable ranges */
#define K4 0x1000ull
#define M1 0x100000ull
#define M2 0x200000ull
#define G1 0x40000000ull

static struct mtrr_state s;

static int setup(void **state)
{
    (void)state;
    mtrr_init(&s, CAP, 39);
    return 0;
}

static void wr(uint32_t msr, uint64_t v)
{
    assert_int_equal(mtrr_write(&s, msr, v), 0);
}

static void test_register_file(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(mtrr_read(&s, MSR_MTRRCAP, &v), 0);
    assert_int_equal(v, 8ull | MTRRCAP_FIX | MTRRCAP_WC);      /* SMRR hidden */
    assert_int_equal(mtrr_write(&s, MSR_MTRRCAP, 0), -1);       /* read-only */
    wr(MSR_MTRR_PHYSBASE0 + 2 * 7, 0xfe000000ull | MT_WC);
    assert_int_equal(mtrr_read(&s, MSR_MTRR_PHYSBASE0 + 2 * 7, &v), 0);
    assert_int_equal(v, 0xfe000000ull | MT_WC);
    /* Beyond VCNT: #GP both ways; 0x210 is PHYSBASE8. */
    assert_int_equal(mtrr_read(&s, 0x210, &v), -1);
    assert_int_equal(mtrr_write(&s, 0x210, 0), -1);
    assert_true(mtrr_is_msr(0x210));
    assert_false(mtrr_is_msr(0x277));                            /* PAT is no MTRR */
    /* Reserved types 2, 3, 7; reserved bits; bits above MAXPHYADDR (39). */
    assert_int_equal(mtrr_write(&s, MSR_MTRR_DEF_TYPE, 2), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_DEF_TYPE, MTRR_DEF_E | 0x100 | MT_WB), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_PHYSBASE0, 0x800 | MT_WB), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_PHYSBASE0, (1ull << 39) | MT_WB), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_PHYSBASE0 + 1, 0x7ff), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_FIX64K_00000, 0x0606060606060603ull), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_FIX4K_C0000 + 7, 0x0606060606061606ull), -1);
    s.amd_rdwrmem = true;                                        /* AMD: RdMem/WrMem bits */
    wr(MSR_MTRR_FIX4K_C0000 + 7, 0x0606060606061e06ull);
    /* A failed write leaves the old value. */
    assert_int_equal(mtrr_read(&s, MSR_MTRR_PHYSBASE0, &v), 0);
    assert_int_equal(v, 0);
    /* No WC without MTRRCAP.WC; no fixed MSRs without MTRRCAP.FIX. */
    mtrr_init(&s, 2, 36);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_DEF_TYPE, MT_WC), -1);
    assert_int_equal(mtrr_read(&s, MSR_MTRR_FIX16K_80000, &v), -1);
    assert_int_equal(mtrr_write(&s, MSR_MTRR_FIX16K_80000, 0), -1);
    /* VCNT above what the MSR space holds is capped. */
    mtrr_init(&s, 0xff, 36);
    assert_int_equal(mtrr_read(&s, MSR_MTRRCAP, &v), 0);
    assert_int_equal(v, MTRR_MAX_VAR);
}

/* A typical firmware set-up: WB default, the PCI hole 3-4 GiB UC, a WC framebuffer
 * inside it, fixed ranges UC for the VGA window and WP for the BIOS ROM. */
static void firmware_map(void)
{
    wr(MSR_MTRR_PHYSBASE0 + 0, 0xc0000000ull | MT_UC);
    wr(MSR_MTRR_PHYSBASE0 + 1, (0x7fc0000000ull) | MTRR_MASK_VALID);       /* 1 GiB */
    wr(MSR_MTRR_PHYSBASE0 + 2, 0xd0000000ull | MT_WC);
    wr(MSR_MTRR_PHYSBASE0 + 3, (0x7fff000000ull) | MTRR_MASK_VALID);       /* 16 MiB */
    wr(MSR_MTRR_FIX64K_00000, 0x0606060606060606ull);
    wr(MSR_MTRR_FIX16K_80000, 0x0606060606060606ull);
    wr(MSR_MTRR_FIX16K_A0000, 0);                                          /* A0000-BFFFF UC */
    for (unsigned i = 0; i < 8; i++)
        wr(MSR_MTRR_FIX4K_C0000 + i, 0x0505050505050505ull);               /* C0000-FFFFF WP */
    wr(MSR_MTRR_DEF_TYPE, MTRR_DEF_E | MTRR_DEF_FE | MT_WB);
}

static void test_types(void **state)
{
    (void)state;
    assert_int_equal(mtrr_range_type(&s, 0, M2), MT_UC);        /* disabled: all UC */
    firmware_map();
    assert_int_equal(mtrr_range_type(&s, 0, K4), MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0x9f000, K4), MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0xa0000, K4), MT_UC);
    assert_int_equal(mtrr_range_type(&s, 0xbf000, K4), MT_UC);
    assert_int_equal(mtrr_range_type(&s, 0xc0000, K4), MT_WP);
    assert_int_equal(mtrr_range_type(&s, 0x80000, 0x20000), MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0xc0000, 0x40000), MT_WP);
    assert_int_equal(mtrr_range_type(&s, 0, M2), MT_MIXED);     /* fixed ranges differ */
    assert_int_equal(mtrr_range_type(&s, M2, M2), MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0x80000000ull, G1), MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0xc0000000ull, G1), MT_MIXED);   /* UC + WC inside */
    assert_int_equal(mtrr_range_type(&s, 0xc0000000ull, M2), MT_UC);
    /* UC and WC overlap at d000_0000: UC wins (12.11.4.1). */
    assert_int_equal(mtrr_range_type(&s, 0xd0000000ull, M2), MT_UC);
    assert_int_equal(mtrr_range_type(&s, 0x100000000ull, M2), MT_WB);
    /* Fixed ranges off: the first MiB follows the variable ranges and the default. */
    wr(MSR_MTRR_DEF_TYPE, MTRR_DEF_E | MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0, M2), MT_WB);
    assert_int_equal(mtrr_range_type(&s, 0xa0000, K4), MT_WB);
    /* Bad arguments. */
    assert_int_equal(mtrr_range_type(&s, 0x1000, M2), MT_MIXED);
    assert_int_equal(mtrr_range_type(&s, 0, 0x3000), MT_MIXED);
}

static void test_overlaps(void **state)
{
    (void)state;
    wr(MSR_MTRR_DEF_TYPE, MTRR_DEF_E | MT_UC);
    wr(MSR_MTRR_PHYSBASE0 + 0, 0 | MT_WB);
    wr(MSR_MTRR_PHYSBASE0 + 1, 0x7f80000000ull | MTRR_MASK_VALID);        /* 0-2 GiB WB */
    wr(MSR_MTRR_PHYSBASE0 + 2, 0x40000000ull | MT_WT);
    wr(MSR_MTRR_PHYSBASE0 + 3, 0x7fc0000000ull | MTRR_MASK_VALID);        /* 1-2 GiB WT */
    assert_int_equal(mtrr_range_type(&s, 0, G1), MT_WB);
    assert_int_equal(mtrr_range_type(&s, G1, G1), MT_WT);                 /* WT over WB */
    assert_int_equal(mtrr_range_type(&s, 2 * G1, M2), MT_UC);             /* default */
    wr(MSR_MTRR_PHYSBASE0 + 4, 0x40000000ull | MT_WP);
    wr(MSR_MTRR_PHYSBASE0 + 5, 0x7fc0000000ull | MTRR_MASK_VALID);        /* + WP: undefined */
    assert_int_equal(mtrr_range_type(&s, G1, M2), MT_UC);
    assert_int_equal(mtrr_range_type(&s, 0, M2), MT_WB);
    /* A range covering part of a block makes it mixed; at 4 KiB it is decided. */
    wr(MSR_MTRR_PHYSBASE0 + 6, 0x1000ull | MT_WC);
    wr(MSR_MTRR_PHYSBASE0 + 7, 0x7ffffff000ull | MTRR_MASK_VALID);        /* one page */
    assert_int_equal(mtrr_range_type(&s, 0, M2), MT_MIXED);
    /* WB and WC overlapping is undefined (12.11.4.1): taken as UC. */
    assert_int_equal(mtrr_range_type(&s, 0x1000, K4), MT_UC);
    assert_int_equal(mtrr_range_type(&s, 0x2000, K4), MT_WB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_register_file, setup),
        cmocka_unit_test_setup(test_types, setup),
        cmocka_unit_test_setup(test_overlaps, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
