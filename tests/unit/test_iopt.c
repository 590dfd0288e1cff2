/* Host tests of the DMA-protection pure logic (xmhf/src/lib/iopt.c): identity I/O page
 * tables with holes in both formats, ACPI structure walking, hiding a table from the
 * RSDT/XSDT, the IVHD device-entry scan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "amdvi.h"
#include "dmap.h"
#include "vtd.h"
#include "pagepool.h"

#define K4 0x1000ull
#define M2 0x200000ull
#define GB(x) ((uint64_t)(x) << 30)

/* The spec numbers written out independently of the headers. */
_Static_assert(VTD_SL_R == 1 && VTD_SL_W == 2 && VTD_SL_PS == 0x80, "VT-d 9.8: R 0, W 1, PS 7");
_Static_assert(AMDVI_PTE_IR == 1ull << 61 && AMDVI_PTE_IW == 1ull << 62, "AMD-Vi PTE IR 61, IW 62");
_Static_assert(AMDVI_PTE_NEXT(7) == 0xe00, "AMD-Vi PTE next level: bits 11:9");
_Static_assert(VTD_GCMD_PERSIST == ~(VTD_GCMD_SRTP | VTD_GCMD_SFL | VTD_GCMD_WBF | VTD_GCMD_SIRTP),
               "one-shot GCMD bits are SRTP, SFL, WBF, SIRTP");
_Static_assert(offsetof(struct ivhd, base) == 8 && offsetof(struct ivmd, start) == 16,
               "IVHD base at 8, IVMD start at 16");
_Static_assert(offsetof(struct dmar_drhd, base) == 8 && offsetof(struct dmar_rmrr, limit) == 16,
               "DRHD base at 8, RMRR limit at 16");

struct fx {
    struct pool pool;
    struct pt_alloc a;
    uint64_t *root;
};

static struct fx *fx_new(size_t limit)
{
    struct fx *f = calloc(1, sizeof(*f));
    uint64_t phys;
    assert_non_null(f);
    f->pool.limit = limit;
    f->a = (struct pt_alloc){ pool_alloc, pool_p2v, &f->pool };
    f->root = pool_alloc(&f->pool, &phys);
    assert_non_null(f->root);
    return f;
}

static void fx_free(struct fx *f)
{
    pool_free(&f->pool);
    free(f);
}

static const struct dmap_range holes[] = {
    { 0x7e00000, 0x200000 },        /* a 2 MiB-aligned hypervisor region */
    { 0xfed90000, 0x1000 },         /* a VT-d register page */
    { 0xfed80000, 0x4000 },         /* an AMD-Vi register block */
    { 0x123456, 0x10 },             /* unaligned: rounded out to its 4 KiB page */
};

static bool in_hole(uint64_t a)
{
    for (size_t i = 0; i < sizeof(holes) / sizeof(holes[0]); i++) {
        uint64_t b = holes[i].base & ~(K4 - 1);
        uint64_t e = (holes[i].base + holes[i].size + K4 - 1) & ~(K4 - 1);
        if (a >= b && a < e)
            return true;
    }
    return false;
}

static void check_map(enum iopt_format fmt, struct fx *f, unsigned levels, uint64_t top)
{
    const uint64_t *root = f->root;
    if (levels == 3)
        root = pool_p2v(NULL, f->root[0] & PT_ADDR_MASK);
    /* Every edge of every hole and a sweep of 4 KiB steps around it. */
    for (size_t i = 0; i < sizeof(holes) / sizeof(holes[0]); i++) {
        uint64_t lo = (holes[i].base & ~(M2 - 1)) - M2, hi = lo + 3 * M2 + holes[i].size;
        for (uint64_t a = lo; a < hi; a += K4) {
            int64_t t = iopt_translate(fmt, root, levels, a + 0x18, &f->a);
            if (in_hole(a))
                assert_int_equal(t, -1);
            else
                assert_int_equal(t, (int64_t)(a + 0x18));
        }
    }
    /* A coarse sweep of everything, and the first address past the map. */
    for (uint64_t a = 0; a < top; a += 0x3f000)
        assert_int_equal(iopt_translate(fmt, root, levels, a, &f->a),
                         in_hole(a) ? -1 : (int64_t)a);
    assert_int_equal(iopt_translate(fmt, root, levels, top, &f->a), -1);
    assert_int_equal(iopt_translate(fmt, root, levels, top - 1, &f->a), (int64_t)(top - 1));
}

static void test_vtd_identity(void **state)
{
    (void)state;
    struct fx *f = fx_new(SIZE_MAX);
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, GB(4), holes, 4, &f->a), 0);
    check_map(IOPT_VTD, f, 4, GB(4));
    check_map(IOPT_VTD, f, 3, GB(4));       /* the 39-bit form shares the tables */
    /* 2 MiB leaves away from the holes: 1 root + 1 PDPT + 4 PDs + 2 PTs (the region is a
     * whole 2 MiB leaf; the two register blocks share a PT, the unaligned hole has one). */
    assert_int_equal(f->pool.used, 1 + 1 + 4 + 2);
    const uint64_t *pdpt = pool_p2v(NULL, f->root[0] & PT_ADDR_MASK);
    const uint64_t *pd = pool_p2v(NULL, pdpt[1] & PT_ADDR_MASK);
    assert_int_equal(pd[0], GB(1) | VTD_SL_R | VTD_SL_W | VTD_SL_PS);
    fx_free(f);
}

static void test_amdvi_identity(void **state)
{
    (void)state;
    struct fx *f = fx_new(SIZE_MAX);
    assert_int_equal(iopt_identity(IOPT_AMDVI, f->root, GB(6), holes, 4, &f->a), 0);
    check_map(IOPT_AMDVI, f, 4, GB(6));
    /* Table pointers carry their level, leaves next level 0, no builder marks left. */
    assert_int_equal(f->root[0] & ~PT_ADDR_MASK,
                     AMDVI_PTE_PR | AMDVI_PTE_NEXT(3) | AMDVI_PTE_IR | AMDVI_PTE_IW);
    const uint64_t *pdpt = pool_p2v(NULL, f->root[0] & PT_ADDR_MASK);
    assert_int_equal(pdpt[5] & ~PT_ADDR_MASK,
                     AMDVI_PTE_PR | AMDVI_PTE_NEXT(2) | AMDVI_PTE_IR | AMDVI_PTE_IW);
    const uint64_t *pd = pool_p2v(NULL, pdpt[5] & PT_ADDR_MASK);
    assert_int_equal(pd[3], (GB(5) + 3 * M2) | AMDVI_PTE_PR | AMDVI_PTE_IR | AMDVI_PTE_IW);
    const uint64_t *pd0 = pool_p2v(NULL, pdpt[0] & PT_ADDR_MASK);
    uint64_t e = pd0[0];                    /* holds the unaligned hole: a table */
    assert_int_equal(e & AMDVI_PTE_NEXT_MASK, AMDVI_PTE_NEXT(1));
    const uint64_t *pt = pool_p2v(NULL, e & PT_ADDR_MASK);
    assert_int_equal(pt[0x123], AMDVI_PTE_ABSENT);
    assert_int_equal(f->root[1], AMDVI_PTE_ABSENT);     /* beyond the map: absent too */
    assert_int_equal(pt[0x124], 0x124000 | AMDVI_PTE_PR | AMDVI_PTE_IR | AMDVI_PTE_IW);
    fx_free(f);
}

static void test_identity_bad_input(void **state)
{
    (void)state;
    struct fx *f = fx_new(SIZE_MAX);
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, 0, NULL, 0, &f->a), -1);
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, GB(4) + K4, NULL, 0, &f->a), -1);
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, 1ull << 49, NULL, 0, &f->a), -1);
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, GB(4), NULL, 1, &f->a), -1);
    assert_int_equal(iopt_identity((enum iopt_format)7, f->root, GB(4), NULL, 0, &f->a), -1);
    assert_int_equal(iopt_identity(IOPT_VTD, NULL, GB(4), NULL, 0, &f->a), -1);
    fx_free(f);
    /* Out of table pages: -1, never a partial success. */
    f = fx_new(4);
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, GB(4), holes, 4, &f->a), -1);
    fx_free(f);
    /* A hole running past the top (or wrapping) is clipped, not an error. */
    f = fx_new(SIZE_MAX);
    struct dmap_range h[] = { { GB(4) - M2, ~0ull } };
    assert_int_equal(iopt_identity(IOPT_VTD, f->root, GB(4), h, 1, &f->a), 0);
    assert_int_equal(iopt_translate(IOPT_VTD, f->root, 4, GB(4) - M2 - 8, &f->a),
                     (int64_t)(GB(4) - M2 - 8));
    assert_int_equal(iopt_translate(IOPT_VTD, f->root, 4, GB(4) - M2, &f->a), -1);
    assert_int_equal(iopt_translate(IOPT_VTD, f->root, 4, GB(4) - 1, &f->a), -1);
    fx_free(f);
}

/* ---- ACPI ---- */
static uint8_t tbl[512];

static struct acpi_header *mk_table(const char *sig, uint32_t len)
{
    memset(tbl, 0, sizeof(tbl));
    struct acpi_header *h = (struct acpi_header *)tbl;
    memcpy(h->sig, sig, 4);
    h->length = len;
    return h;
}

static uint8_t sum(const void *p, uint32_t n)
{
    uint8_t s = 0;
    for (const uint8_t *b = p; n--; b++)
        s = (uint8_t)(s + *b);
    return s;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static void test_sub_next(void **state)
{
    (void)state;
    struct acpi_header *h = mk_table("DMAR", 48 + 16 + 24);
    put16(tbl + 48, DMAR_TYPE_DRHD); put16(tbl + 50, 16);
    put16(tbl + 64, DMAR_TYPE_RMRR); put16(tbl + 66, 24);
    const uint8_t *s = acpi_sub_next(h, 48, NULL);
    assert_ptr_equal(s, tbl + 48);
    s = acpi_sub_next(h, 48, s);
    assert_ptr_equal(s, tbl + 64);
    assert_null(acpi_sub_next(h, 48, s));
    /* A structure running past the table, or too short to advance, ends the walk. */
    put16(tbl + 66, 25);
    assert_null(acpi_sub_next(h, 48, tbl + 48));
    put16(tbl + 66, 0);
    assert_null(acpi_sub_next(h, 48, tbl + 48));
    put16(tbl + 66, 3);
    assert_null(acpi_sub_next(h, 48, tbl + 48));
    h->length = 50;     /* not even a structure header left */
    assert_null(acpi_sub_next(h, 48, NULL));
    h->length = 40;
    assert_null(acpi_sub_next(h, 48, NULL));
}

static void test_root_remove(void **state)
{
    (void)state;
    /* XSDT with four pointers, the DMAR twice. */
    struct acpi_header *h = mk_table("XSDT", 36 + 4 * 8);
    uint64_t v[4] = { 0x7fe1000, 0x7fe2000, 0x7fe3000, 0x7fe2000 };
    memcpy(tbl + 36, v, sizeof(v));
    acpi_fix_checksum(h);
    assert_int_equal(sum(tbl, h->length), 0);
    assert_int_equal(acpi_root_remove(h, 8, 0x7fe2000), 2);
    assert_int_equal(h->length, 36 + 2 * 8);
    assert_int_equal(sum(tbl, h->length), 0);
    uint64_t w[2];
    memcpy(w, tbl + 36, sizeof(w));
    assert_int_equal(w[0], 0x7fe1000);
    assert_int_equal(w[1], 0x7fe3000);
    for (unsigned i = 36 + 16; i < 36 + 32; i++)
        assert_int_equal(tbl[i], 0);
    assert_int_equal(acpi_root_remove(h, 8, 0x7fe2000), 0);   /* nothing left to remove */
    /* RSDT, 32-bit pointers; a 64-bit value whose low half matches is not a match. */
    h = mk_table("RSDT", 36 + 3 * 4);
    uint32_t r[3] = { 0x7fe1000, 0x7fe2000, 0x7fe3000 };
    memcpy(tbl + 36, r, sizeof(r));
    acpi_fix_checksum(h);
    assert_int_equal(acpi_root_remove(h, 4, 0x1007fe2000ull), 0);
    assert_int_equal(acpi_root_remove(h, 4, 0x7fe3000), 1);
    assert_int_equal(h->length, 36 + 8);
    assert_int_equal(sum(tbl, h->length), 0);
    assert_int_equal(acpi_root_remove(h, 3, 0x7fe1000), 0);
}

static void test_ivhd_devids(void **state)
{
    (void)state;
    uint8_t b[64] = { IVRS_IVHD_10 };
    /* select 00:01.0, range 00:10.0 - 01:1f.7, special IOAPIC 00:14.0 */
    uint8_t e10[] = { IVHD_DEV_SELECT, 0x08, 0x00, 0,  IVHD_DEV_RANGE, 0x80, 0x00, 0,
                      IVHD_DEV_RANGE_END, 0xff, 0x01, 0,
                      IVHD_DEV_SPECIAL, 0, 0, 0, 0x01, 0xa0, 0x00, 1 };
    memcpy(b + 24, e10, sizeof(e10));
    assert_int_equal(ivhd_devid_max(b, 24 + sizeof(e10)), 0x1ff);
    b[24 + 12 + 5] = 0xff; b[24 + 12 + 6] = 0x02;  /* special entry's ID 0x2ff */
    assert_int_equal(ivhd_devid_max(b, 24 + sizeof(e10)), 0x2ff);
    b[24] = IVHD_DEV_ALL;
    assert_int_equal(ivhd_devid_max(b, 24 + sizeof(e10)), 0xffff);
    /* An 8-byte entry cut short, and an unknown variable-length type: malformed. */
    assert_int_equal(ivhd_devid_max(b, 24 + 12 + 4), -1);
    b[24 + 12] = 0x90;
    assert_int_equal(ivhd_devid_max(b, 24 + sizeof(e10)), -1);
    /* Type 11h: entries start at 40. */
    uint8_t c[48] = { IVRS_IVHD_11 };
    c[40] = IVHD_DEV_SELECT; c[41] = 0x10; c[42] = 0x03;
    assert_int_equal(ivhd_devid_max(c, 44), 0x310);
    assert_int_equal(ivhd_devid_max(c, 30), -1);
    assert_int_equal(ivhd_devid_max(c, 40), 0);
    /* ACPI HID entry: 22 bytes + UID. */
    uint8_t d[40 + 26] = { IVRS_IVHD_40 };
    d[40] = IVHD_DEV_HID; d[41] = 0x05; d[42] = 0x00; d[40 + 21] = 4;
    assert_int_equal(ivhd_devid_max(d, sizeof(d)), 5);
    d[40 + 21] = 5;
    assert_int_equal(ivhd_devid_max(d, sizeof(d)), -1);
}

static void test_fnv(void **state)
{
    (void)state;
    assert_int_equal(dmap_fnv1a("", 0), 0xcbf29ce484222325ull);
    assert_int_equal(dmap_fnv1a("a", 1), 0xaf63dc4c8601ec8cull);
    assert_int_equal(dmap_fnv1a("foobar", 6), 0x85944171f73967e8ull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vtd_identity),
        cmocka_unit_test(test_amdvi_identity),
        cmocka_unit_test(test_identity_bad_input),
        cmocka_unit_test(test_sub_next),
        cmocka_unit_test(test_root_remove),
        cmocka_unit_test(test_ivhd_devids),
        cmocka_unit_test(test_fnv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
