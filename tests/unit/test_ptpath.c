/* Host tests of the per-CPU private path through shared tables (xmhf/include/ptpath.h),
 * on NPT-format tables built by npt_map. What must hold: a walk through the private
 * root reaches exactly what the shared root maps, except the path's own page, whose
 * leaf entry is the owner's; and it keeps holding after the shared map grows (lazy
 * MMIO) anywhere, the path's own leaf table included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "npt.h"
#include "pagepool.h"
#include "ptpath.h"

#define PROT  (NPT_RWX | NPT_MT_UC)

struct fixture {
    struct pool pool;
    struct pt_alloc a;
    uint64_t *root;
    struct pt_path path;
};

static int setup(void **state)
{
    static struct fixture f;
    uint64_t phys;
    f = (struct fixture){ 0 };
    f.pool.limit = SIZE_MAX;
    f.a = (struct pt_alloc){ pool_alloc, pool_p2v, &f.pool };
    f.root = pool_alloc(&f.pool, &phys);
    *state = &f;
    return f.root == NULL;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    pool_free(&f->pool);
    return 0;
}

static uint64_t *leaf(struct fixture *f, uint64_t *root, uint64_t gpa)
{
    return npt_lookup(root, gpa, NULL, &f->a);
}

/* The APIC moved to a page in a region nothing mapped before (above the initial map):
 * the shared map gets only that 4 KiB page, the path is built to it and its entry
 * cleared. Then the guest touches the neighbouring page and the lazy 2 MiB mapping
 * goes into the shared leaf table: the private leaf table must have it too, or the
 * vCPU exits on that page for ever. */
static void test_sync_refreshes_leaf_table(void **state)
{
    struct fixture *f = *state;
    const uint64_t apic = 0x7f00000000ull + 0x5000;
    assert_int_equal(npt_map(f->root, apic, apic, 0x1000, PROT, &f->a), 0);
    assert_int_equal(pt_path_alloc(&f->path, &f->a), 0);
    pt_path_build(&f->path, f->root, apic, &npt_format, &f->a);
    *pt_path_leaf(&f->path) = 0;
    uint64_t *priv = f->path.t[0];
    assert_null(leaf(f, priv, apic));
    assert_null(leaf(f, priv, apic + 0x1000));

    uint64_t base = apic & ~0x1fffffull;
    assert_int_equal(npt_map(f->root, base, base, 0x200000, PROT, &f->a), 0);
    pt_path_sync(&f->path, f->root, &npt_format, &f->a);
    for (uint64_t gpa = base; gpa < base + 0x200000; gpa += 0x1000) {
        uint64_t *s = leaf(f, f->root, gpa), *p = leaf(f, priv, gpa);
        assert_non_null(s);
        if (gpa == apic) {
            assert_null(p);             /* the owner's entry stays as the owner left it */
        } else {
            assert_non_null(p);
            assert_int_equal(*p, *s);
        }
    }
    /* A region on another top-level entry, too. */
    assert_int_equal(npt_map(f->root, 0x10000000000ull, 0x10000000000ull, 0x200000, PROT, &f->a), 0);
    pt_path_sync(&f->path, f->root, &npt_format, &f->a);
    assert_non_null(leaf(f, priv, 0x10000000000ull + 0x3000));
}

/* The path into a 2 MiB leaf of the shared map: the private leaf table reproduces the
 * leaf in 4 KiB pieces (same frames, same attributes), the shared map is not split,
 * and the private walk equals the shared one everywhere but the owner's entry. */
static void test_path_into_large_leaf(void **state)
{
    struct fixture *f = *state;
    const uint64_t base = 0x40000000ull, apic = base + 0x7000;
    assert_int_equal(npt_map(f->root, base, base, 0x200000, PROT, &f->a), 0);
    uint64_t size = 0;
    assert_non_null(npt_lookup(f->root, apic, &size, &f->a));
    assert_int_equal(size, 0x200000);
    assert_int_equal(pt_path_alloc(&f->path, &f->a), 0);
    size_t used = f->pool.used;
    pt_path_build(&f->path, f->root, apic, &npt_format, &f->a);
    *pt_path_leaf(&f->path) = 0;
    assert_int_equal(f->pool.used, used);                 /* nothing allocated */
    assert_non_null(npt_lookup(f->root, apic, &size, &f->a));
    assert_int_equal(size, 0x200000);                     /* the shared leaf stays whole */
    for (uint64_t gpa = base; gpa < base + 0x200000; gpa += 0x1000) {
        uint64_t *p = leaf(f, f->path.t[0], gpa);
        if (gpa == apic) {
            assert_null(p);
        } else {
            assert_non_null(p);
            assert_int_equal(*p & NPT_ADDR_MASK, gpa);
            assert_int_equal(*p & ~NPT_ADDR_MASK, PROT);
        }
    }
    /* Elsewhere the private root is the shared map. */
    assert_null(leaf(f, f->path.t[0], 0x80000000ull));
}

/* The APIC moved 10,000 times, to pages in regions mapped and not mapped: the path
 * never costs a table page, and each time leads exactly to its page. */
static void test_relocations_cost_nothing(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(npt_map(f->root, 0, 0, 0x40000000ull, PROT, &f->a), 0);
    assert_int_equal(pt_path_alloc(&f->path, &f->a), 0);
    size_t used = f->pool.used;
    for (uint64_t i = 0; i < 10000; i++) {
        uint64_t page = (i & 1) ? 0x100000000ull + (i % 512) * 0x200000 + (i / 512) * 0x1000
                                : (i % 256) * 0x200000 + 0x3000;
        pt_path_build(&f->path, f->root, page, &npt_format, &f->a);
        *pt_path_leaf(&f->path) = 0x5000 | NPT_P | NPT_US;
        uint64_t *p = leaf(f, f->path.t[0], page);
        assert_non_null(p);
        assert_int_equal(*p & NPT_ADDR_MASK, 0x5000);
    }
    assert_int_equal(f->pool.used, used);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_refreshes_leaf_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_into_large_leaf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relocations_cost_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
