/* iobitmap.c: the port bitmap (Intel A/B and AMD IOPM in one layout), the IN result in
 * RAX, and Intel's MSR bitmap offsets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "iobitmap.h"

static uint8_t bm[IOBITMAP_SIZE];

static int reset(void **state)
{
    (void)state;
    memset(bm, 0, sizeof bm);
    return 0;
}

static void one_port(void **state)
{
    (void)state;
    iobitmap_set(bm, 0x3ff, 1);
    assert_int_equal(bm[0x3ff / 8], 0x80);
    assert_true(iobitmap_hits(bm, 0x3ff, 1));
    assert_true(iobitmap_hits(bm, 0x3fe, 2));       /* a word access covering it */
    assert_true(iobitmap_hits(bm, 0x3fc, 4));
    assert_false(iobitmap_hits(bm, 0x3fb, 4));
    assert_false(iobitmap_hits(bm, 0x400, 1));
    assert_false(iobitmap_hits(bm, 0x3fe, 1));
}

/* Intel's bitmap A ends at port 0x7fff (byte 0xfff), B starts at 0x8000 (byte 0x1000). */
static void a_b_boundary(void **state)
{
    (void)state;
    iobitmap_set(bm, 0x7ffe, 4);
    assert_int_equal(bm[0xfff], 0xc0);
    assert_int_equal(bm[0x1000], 0x03);
    assert_true(iobitmap_hits(bm, 0x8001, 1));
    assert_false(iobitmap_hits(bm, 0x8002, 2));
}

/* Ports 0-2 are also at bits 0x10000-0x10002, where AMD looks for an access that wraps;
 * the check here wraps too. */
static void wrap(void **state)
{
    (void)state;
    iobitmap_set(bm, 0, 1);
    assert_int_equal(bm[0x2000], 0x01);
    assert_true(iobitmap_hits(bm, 0xffff, 2));
    assert_true(iobitmap_hits(bm, 0xfffd, 4));
    assert_false(iobitmap_hits(bm, 0xfffc, 4));
    reset(NULL);
    iobitmap_set(bm, 0xffff, 1);
    assert_int_equal(bm[0x1fff], 0x80);
    assert_int_equal(bm[0x2000], 0);
    iobitmap_set(bm, 2, 2);
    assert_int_equal(bm[0x2000], 0x04);             /* 2 mirrored, 3 not */
    assert_int_equal(bm[0], 0x0c);
}

static void whole_space(void **state)
{
    (void)state;
    iobitmap_set(bm, 0, 0x10000);
    for (unsigned i = 0; i < 0x2000; i++)
        assert_int_equal(bm[i], 0xff);
    assert_int_equal(bm[0x2000], 0x07);
    for (unsigned i = 0x2001; i < IOBITMAP_SIZE; i++)
        assert_int_equal(bm[i], 0);
}

static void in_merge(void **state)
{
    (void)state;
    uint64_t rax = 0x1111111111111111ull;
    assert_true(io_in_merge(rax, 1, 0xabcdef12u) == 0x1111111111111112ull);
    assert_true(io_in_merge(rax, 2, 0xabcdef12u) == 0x111111111111ef12ull);
    assert_true(io_in_merge(rax, 4, 0xabcdef12u) == 0xabcdef12ull);
}

static void msr_bitmap(void **state)
{
    (void)state;
    uint8_t m[4096] = { 0 };
    assert_int_equal(vmx_msr_bitmap_set(m, 0x1b, 1), 0);            /* read only */
    assert_int_equal(m[3], 0x08);
    assert_int_equal(m[0x800 + 3], 0);
    assert_int_equal(vmx_msr_bitmap_set(m, 0xc0000103u, 3), 0);     /* both */
    assert_int_equal(m[0x400 + 0x20], 0x08);
    assert_int_equal(m[0xc00 + 0x20], 0x08);
    assert_int_equal(vmx_msr_bitmap_set(m, 0x1fff, 2), 0);          /* last low MSR */
    assert_int_equal(m[0x800 + 0x3ff], 0x80);
    assert_int_equal(vmx_msr_bitmap_set(m, 0x2000, 1), -1);
    assert_int_equal(vmx_msr_bitmap_set(m, 0x40000100u, 1), -1);
    assert_int_equal(vmx_msr_bitmap_set(m, 0xc0002000u, 1), -1);
    assert_int_equal(vmx_msr_bitmap_set(m, 0xc0010000u, 1), -1);    /* AMD's third range */
    unsigned set = 0;
    for (unsigned i = 0; i < sizeof m; i++)
        set += (unsigned)__builtin_popcount(m[i]);
    assert_int_equal(set, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(one_port, reset),
        cmocka_unit_test_setup(a_b_boundary, reset),
        cmocka_unit_test_setup(wrap, reset),
        cmocka_unit_test_setup(whole_space, reset),
        cmocka_unit_test(in_merge),
        cmocka_unit_test(msr_bitmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
