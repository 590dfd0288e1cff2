/* Host tests of the NPT builder (xmhf/src/lib/npt.c over pagetable.c) and of the SVM
 * MSR permission map helpers of svm.h. Table pages come from the heap; "physical"
 * addresses are the pages' virtual addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "npt.h"
#include "svm.h"
#include "pagepool.h"

#define MB(x) ((uint64_t)(x) << 20)
#define GB(x) ((uint64_t)(x) << 30)
#define K4 0x1000ull
#define M2 0x200000ull

#define PROT_WB (NPT_P | NPT_RW | NPT_US)
#define PROT_UC (NPT_P | NPT_RW | NPT_US | NPT_PCD | NPT_PWT)

/* The APM numbers written out independently of npt.h (Vol. 2, 5.4). */
_Static_assert(NPT_P == 1 && NPT_RW == 2 && NPT_US == 4 && NPT_PWT == 8 && NPT_PCD == 16,
               "P, R/W, U/S, PWT, PCD: bits 0-4");
_Static_assert(NPT_PS == 0x80 && NPT_PAT_LARGE == 0x1000 && NPT_NX == 1ull << 63,
               "PS 7, large-page PAT 12, NX 63");

struct fixture {
    struct pool pool;
    struct pt_alloc a;
    uint64_t *root;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uint64_t phys;
    if (f == NULL)
        return -1;
    f->pool.limit = SIZE_MAX;
    f->a = (struct pt_alloc){ pool_alloc, pool_p2v, &f->pool };
    f->root = pool_alloc(&f->pool, &phys);
    *state = f;
    return f->root ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pool_free(&f->pool);
    free(f);
    return 0;
}

/* Where gpa goes: 0 with *hpa, *attr (bits 11:0 and 63 of the leaf, PS removed) and
 * *size, or -1 when not present. */
static int translate(struct fixture *f, uint64_t gpa, uint64_t *hpa, uint64_t *attr,
                     uint64_t *size)
{
    uint64_t sz = 0, *e = npt_lookup(f->root, gpa, &sz, &f->a);
    if (e == NULL)
        return -1;
    assert_int_equal((*e & NPT_PS) != 0, sz != K4);
    *hpa = (*e & NPT_ADDR_MASK & ~(sz - 1)) + (gpa & (sz - 1));
    *attr = *e & ~NPT_ADDR_MASK & ~NPT_PS;
    *size = sz;
    return 0;
}

static void assert_maps(struct fixture *f, uint64_t gpa, uint64_t hpa, uint64_t attr,
                        uint64_t size)
{
    uint64_t h, a, s;
    if (translate(f, gpa, &h, &a, &s) != 0)
        fail_msg("gpa %#llx not mapped", (unsigned long long)gpa);
    assert_int_equal(h, hpa);
    assert_int_equal(a, attr);
    assert_int_equal(s, size);
}

static void test_entry_bits_by_hand(void **state)
{
    struct fixture *f = *state;
    uint64_t gpa = 0x12345000;
    assert_int_equal(npt_map(f->root, gpa, 0xabcde000, K4, PROT_UC, &f->a), 0);
    /* Long-mode index fields 47:39, 38:30, 29:21, 20:12; table entries P|RW|US. */
    uint64_t e4 = f->root[(gpa >> 39) & 511];
    assert_int_equal(e4 & 0xfff, 0x7);
    uint64_t e3 = ((uint64_t *)(uintptr_t)(e4 & NPT_ADDR_MASK))[(gpa >> 30) & 511];
    assert_int_equal(e3 & 0xfff, 0x7);
    uint64_t e2 = ((uint64_t *)(uintptr_t)(e3 & NPT_ADDR_MASK))[(gpa >> 21) & 511];
    assert_int_equal(e2 & 0xfff, 0x7);
    uint64_t e1 = ((uint64_t *)(uintptr_t)(e2 & NPT_ADDR_MASK))[(gpa >> 12) & 511];
    assert_int_equal(e1, 0xabcde000ull | 0x1f);
    assert_int_equal(f->pool.used, 4);
}

/* The map the runtime builds: 0-4 GiB uncached, RAM write-back at 4 KiB granularity,
 * the hypervisor's 6 MiB region not present. */
static void test_runtime_map(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(npt_map(f->root, 0, 0, GB(4), PROT_UC, &f->a), 0);
    assert_int_equal(f->pool.used, 1 + 1 + 4);     /* PDPT, 4 PDs, 2 MiB leaves only */
    assert_int_equal(npt_map(f->root, 0, 0, 0x9f000, PROT_WB, &f->a), 0);
    assert_int_equal(npt_map(f->root, MB(1), MB(1), 0x7fe0000 - MB(1), PROT_WB, &f->a), 0);
    assert_int_equal(npt_unmap(f->root, 0x7800000, MB(6), &f->a), 0);

    assert_maps(f, 0x7c00, 0x7c00, PROT_WB, K4);
    assert_maps(f, 0x9f000, 0x9f000, PROT_UC, K4);     /* split leaf keeps its attributes */
    assert_maps(f, 0xb8000, 0xb8000, PROT_UC, K4);
    assert_maps(f, MB(2), MB(2), PROT_WB, M2);
    assert_maps(f, 0x77ff000, 0x77ff000, PROT_WB, M2);
    uint64_t h, a, s;
    for (uint64_t g = 0x7800000; g < 0x7e00000; g += K4)
        assert_int_equal(translate(f, g, &h, &a, &s), -1);
    assert_maps(f, 0x7e00000, 0x7e00000, PROT_WB, K4);
    assert_maps(f, 0x7fe0000, 0x7fe0000, PROT_UC, K4);
    assert_maps(f, 0xfee00000, 0xfee00000, PROT_UC, M2);
    assert_int_equal(translate(f, GB(4), &h, &a, &s), -1);
}

static void test_split_keeps_nx_and_clears_ps(void **state)
{
    struct fixture *f = *state;
    uint64_t prot = PROT_WB | NPT_NX | NPT_A | NPT_D;
    assert_int_equal(npt_map(f->root, GB(1), MB(512), M2, prot, &f->a), 0);
    assert_int_equal(npt_unmap(f->root, GB(1) + K4, K4, &f->a), 0);
    assert_maps(f, GB(1), MB(512), prot, K4);
    assert_maps(f, GB(1) + M2 - K4, MB(512) + M2 - K4, prot, K4);
    uint64_t h, a, s;
    assert_int_equal(translate(f, GB(1) + K4, &h, &a, &s), -1);
}

static void test_rejects(void **state)
{
    struct fixture *f = *state;
    uint64_t *r = f->root;
    assert_int_equal(npt_map(r, 0, 0, K4, NPT_P | NPT_RW, &f->a), -1);        /* no U/S */
    assert_int_equal(npt_map(r, 0, 0, K4, NPT_US | NPT_RW, &f->a), -1);       /* no P */
    assert_int_equal(npt_map(r, 0, 0, K4, PROT_WB | NPT_PS, &f->a), -1);
    assert_int_equal(npt_map(r, 0, 0, K4, PROT_WB | NPT_G, &f->a), -1);
    assert_int_equal(npt_map(r, 0, 0, K4, PROT_WB | NPT_PAT_LARGE, &f->a), -1);
    assert_int_equal(npt_map(r, 0x800, 0, K4, PROT_WB, &f->a), -1);
    assert_int_equal(npt_map(r, 0, 0x800, K4, PROT_WB, &f->a), -1);
    assert_int_equal(npt_map(r, 0, 0, 0x800, PROT_WB, &f->a), -1);
    assert_int_equal(npt_map(r, 1ull << 48, 0, K4, PROT_WB, &f->a), -1);
    assert_int_equal(npt_map(r, (1ull << 48) - K4, 0, 2 * K4, PROT_WB, &f->a), -1);
    assert_int_equal(npt_map(r, 0, 1ull << 52, K4, PROT_WB, &f->a), -1);
    assert_int_equal(npt_unmap(r, 0x800, K4, &f->a), -1);
    assert_null(npt_lookup(r, 1ull << 48, NULL, &f->a));
    assert_int_equal(f->pool.used, 1);              /* nothing allocated by a rejection */
}

static void test_out_of_pages(void **state)
{
    struct fixture *f = *state;
    f->pool.limit = 3;                              /* root + PDPT + PD: no page table */
    assert_int_equal(npt_map(f->root, 0, 0, M2, PROT_WB, &f->a), 0);
    assert_int_equal(npt_map(f->root, M2, M2, K4, PROT_WB, &f->a), -1);
    assert_int_equal(npt_unmap(f->root, K4, K4, &f->a), -1);
    assert_maps(f, 0, 0, PROT_WB, M2);              /* the failed split changed nothing */
}

/* A 1 GiB leaf made by someone else is understood and split. */
static void test_1g_leaf(void **state)
{
    struct fixture *f = *state;
    uint64_t phys;
    uint64_t *pdpt = pool_alloc(&f->pool, &phys);
    f->root[0] = phys | 0x7;
    pdpt[2] = GB(5) | NPT_PS | PROT_UC;
    assert_maps(f, GB(2) + 0x1234000, GB(5) + 0x1234000, PROT_UC, GB(1));
    assert_int_equal(npt_unmap(f->root, GB(2) + M2, K4, &f->a), 0);
    assert_maps(f, GB(2), GB(5), PROT_UC, M2);
    assert_maps(f, GB(2) + M2 + K4, GB(5) + M2 + K4, PROT_UC, K4);
}

/* APM Vol. 2, 15.11: two bits per MSR, vectors at 0x0, 0x800, 0x1000. */
static void test_msrpm(void **state)
{
    (void)state;
    unsigned shift = 99;
    assert_int_equal(svm_msrpm_locate(0x0, &shift), 0);
    assert_int_equal(shift, 0);
    assert_int_equal(svm_msrpm_locate(0x1fff, &shift), 0x7ff);
    assert_int_equal(shift, 6);
    assert_int_equal(svm_msrpm_locate(0xc0000080u, &shift), 0x820);
    assert_int_equal(shift, 0);
    assert_int_equal(svm_msrpm_locate(0xc0010114u, &shift), 0x1045);
    assert_int_equal(shift, 0);
    assert_int_equal(svm_msrpm_locate(0xc0010117u, &shift), 0x1045);
    assert_int_equal(shift, 6);
    assert_int_equal(svm_msrpm_locate(0x2000, &shift), -1);
    assert_int_equal(svm_msrpm_locate(0xc0002000u, &shift), -1);
    assert_int_equal(svm_msrpm_locate(0xc0012000u, &shift), -1);
    assert_int_equal(svm_msrpm_locate(0xffffffffu, &shift), -1);
    uint8_t map[SVM_MSRPM_SIZE] = { 0 };
    assert_int_equal(svm_msrpm_intercept(map, 0xc0000080u, SVM_MSRPM_WRITE), 0);
    assert_int_equal(svm_msrpm_intercept(map, 0xc0010117u, SVM_MSRPM_READ | SVM_MSRPM_WRITE), 0);
    assert_int_equal(svm_msrpm_intercept(map, 0x40000000u, SVM_MSRPM_READ), -1);
    for (unsigned i = 0; i < sizeof(map); i++)
        assert_int_equal(map[i], i == 0x820 ? 0x02 : i == 0x1045 ? 0xc0 : 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_entry_bits_by_hand, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_keeps_nx_and_clears_ps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_1g_leaf, setup, teardown),
        cmocka_unit_test(test_msrpm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
