/* Host tests of the EPT builder (xmhf/src/lib/ept.c). Table pages come from the heap;
 * "physical" addresses are the pages' virtual addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ept.h"
#include "pagepool.h"

#define MB(x) ((uint64_t)(x) << 20)
#define GB(x) ((uint64_t)(x) << 30)

#define WB   (EPT_MT_WB << EPT_MT_SHIFT)
#define UC   (EPT_MT_UC << EPT_MT_SHIFT)
#define PROT_RWX_WB (EPT_RWX | WB)

/* The SDM numbers, written out independently of ept.h (Vol. 3C 29.3.2, tables 29-1..6). */
_Static_assert(EPT_R == 1u << 0 && EPT_W == 1u << 1 && EPT_X == 1u << 2, "R/W/X bits 0..2");
_Static_assert(EPT_MT_SHIFT == 3 && (EPT_MT_WB << EPT_MT_SHIFT) == 0x30 &&
               (EPT_MT_WT << EPT_MT_SHIFT) == 0x20 && (EPT_MT_WC << EPT_MT_SHIFT) == 0x08,
               "memory type bits 5:3");
_Static_assert(EPT_IGNORE_PAT == 0x40 && EPT_LARGE == 0x80, "bits 6 and 7");
_Static_assert(EPT_ADDR_MASK == 0x000ffffffffff000ull, "address bits 51:12");
_Static_assert((EPTP_WB | EPTP_WALK4) == 0x1e, "EPTP: WB, 4-level walk");

/* --- host table allocator ------------------------------------------------------------ */

struct fixture {
    struct pool pool;
    struct ept_alloc a;
    uint64_t *root;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    uint64_t phys;

    if (f == NULL)
        return -1;
    f->pool.limit = SIZE_MAX;
    f->a.alloc = pool_alloc;
    f->a.phys_to_virt = pool_p2v;
    f->a.ctx = &f->pool;
    f->root = pool_alloc(&f->pool, &phys);
    if (f->root == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    pool_free(&f->pool);
    free(f);
    return 0;
}

/* Table pages allocated besides the root. */
static size_t tables(const struct fixture *f)
{
    return f->pool.used - 1;
}

/* --- helpers ------------------------------------------------------------------------- */

/* Where gpa goes: 0 with *hpa and *prot set, or -1 when not present. */
static int translate(struct fixture *f, uint64_t gpa, uint64_t *hpa, uint64_t *prot,
                     uint64_t *size)
{
    uint64_t sz = 0;
    uint64_t *e = ept_lookup(f->root, gpa, &sz, &f->a);

    if (e == NULL)
        return -1;
    assert_true(sz == PAGE_SIZE_4K || sz == PAGE_SIZE_2M || sz == PAGE_SIZE_1G);
    /* bit 7 is set exactly in the large leaves */
    assert_int_equal((*e & EPT_LARGE) != 0, sz != PAGE_SIZE_4K);
    *hpa = (*e & EPT_ADDR_MASK & ~(sz - 1)) + (gpa & (sz - 1));
    *prot = *e & 0x7f;
    if (size != NULL)
        *size = sz;
    return 0;
}

static void assert_maps(struct fixture *f, uint64_t gpa, uint64_t hpa, uint64_t prot,
                        uint64_t size)
{
    uint64_t h, p, s;

    if (translate(f, gpa, &h, &p, &s) != 0)
        fail_msg("gpa %#llx not mapped", (unsigned long long)gpa);
    assert_int_equal(h, hpa);
    assert_int_equal(p, prot);
    assert_int_equal(s, size);
}

static void assert_unmapped(struct fixture *f, uint64_t gpa)
{
    assert_null(ept_lookup(f->root, gpa, NULL, &f->a));
}

/* An allocator whose pages are not page-aligned in "physical" space. */
static void *misaligned_alloc(void *ctx, uint64_t *phys)
{
    void *pg = pool_alloc(ctx, phys);

    *phys |= 0x800;
    return pg;
}

/* --- tests --------------------------------------------------------------------------- */

static void test_entry_bits(void **state)
{
    struct fixture *f = *state;
    uint64_t prot = EPT_R | EPT_X | WB | EPT_IGNORE_PAT;

    assert_int_equal(ept_map(f->root, 0x12345000, 0xabcde000, PAGE_SIZE_4K, prot, &f->a), 0);

    /* Walk by hand with the SDM's index fields: 47:39, 38:30, 29:21, 20:12. */
    uint64_t gpa = 0x12345000;
    uint64_t pml4e = f->root[(gpa >> 39) & 511];
    assert_int_equal(pml4e & 0xfff, 0x7); /* non-leaf: R/W/X, nothing else */
    uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4e & EPT_ADDR_MASK);
    uint64_t pdpte = pdpt[(gpa >> 30) & 511];
    assert_int_equal(pdpte & 0xfff, 0x7);
    uint64_t *pd = (uint64_t *)(uintptr_t)(pdpte & EPT_ADDR_MASK);
    uint64_t pde = pd[(gpa >> 21) & 511];
    assert_int_equal(pde & 0xfff, 0x7);
    uint64_t *pt = (uint64_t *)(uintptr_t)(pde & EPT_ADDR_MASK);
    uint64_t pte = pt[(gpa >> 12) & 511];
    assert_int_equal(pte, 0xabcde000ull | 0x1 | 0x4 | (6u << 3) | (1u << 6));
    assert_ptr_equal(ept_lookup(f->root, gpa, NULL, &f->a), &pt[(gpa >> 12) & 511]);
    assert_int_equal(tables(f), 3);

    /* A 2 MiB leaf: bit 7 set in the PDE, address bits 51:21. */
    gpa = GB(3) + MB(6);
    assert_int_equal(ept_map(f->root, gpa, 0xfffffffe00000ull, PAGE_SIZE_2M, EPT_RWX | UC,
                             &f->a), 0);
    pdpte = pdpt[(gpa >> 30) & 511];
    pd = (uint64_t *)(uintptr_t)(pdpte & EPT_ADDR_MASK);
    assert_int_equal(pd[(gpa >> 21) & 511], 0xfffffffe00000ull | 0x80 | 0x7);
}

static void test_identity_4g_with_2m_leaves(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ept_map(f->root, 0, 0, GB(4), PROT_RWX_WB, &f->a), 0);
    /* PDPT + 4 PDs, no page tables: every leaf is 2 MiB. */
    assert_int_equal(tables(f), 5);
    for (uint64_t gpa = 0; gpa < GB(4); gpa += PAGE_SIZE_2M) {
        assert_maps(f, gpa, gpa, PROT_RWX_WB, PAGE_SIZE_2M);
        assert_maps(f, gpa + 0x1ff000, gpa + 0x1ff000, PROT_RWX_WB, PAGE_SIZE_2M);
    }
    assert_maps(f, 0xfee00123, 0xfee00123, PROT_RWX_WB, PAGE_SIZE_2M);
    assert_unmapped(f, GB(4));
    assert_unmapped(f, GB(512));
    assert_null(ept_lookup(f->root, 1ull << 48, NULL, &f->a));
}

static void test_hole_punch_splits_2m_leaf(void **state)
{
    struct fixture *f = *state;
    uint64_t hole = MB(3) + 0x5000;

    assert_int_equal(ept_map(f->root, 0, 0, GB(4), PROT_RWX_WB, &f->a), 0);
    size_t before = tables(f);
    assert_int_equal(ept_unmap(f->root, hole, PAGE_SIZE_4K, &f->a), 0);
    assert_int_equal(tables(f), before + 1); /* one page table for the split */

    assert_unmapped(f, hole);
    assert_unmapped(f, hole + 0xfff);
    /* The other 511 slices of the old leaf keep its address and attributes. */
    for (uint64_t gpa = MB(2); gpa < MB(4); gpa += PAGE_SIZE_4K)
        if (gpa != hole)
            assert_maps(f, gpa, gpa, PROT_RWX_WB, PAGE_SIZE_4K);
    /* Neighbouring 2 MiB leaves are untouched. */
    assert_maps(f, MB(2) - PAGE_SIZE_4K, MB(2) - PAGE_SIZE_4K, PROT_RWX_WB, PAGE_SIZE_2M);
    assert_maps(f, MB(4), MB(4), PROT_RWX_WB, PAGE_SIZE_2M);

    /* Punching a second hole in the same region reuses the page table. */
    assert_int_equal(ept_unmap(f->root, MB(2), PAGE_SIZE_4K, &f->a), 0);
    assert_int_equal(tables(f), before + 1);
    assert_unmapped(f, MB(2));
    assert_maps(f, MB(2) + PAGE_SIZE_4K, MB(2) + PAGE_SIZE_4K, PROT_RWX_WB, PAGE_SIZE_4K);
}

/* Splitting keeps every attribute bit of the old leaf except bit 7: here the accessed
 * and dirty bits (8, 9) and ignore-PAT, which the builder itself never sets. */
static void test_split_preserves_attribute_bits(void **state)
{
    struct fixture *f = *state;
    uint64_t prot = EPT_R | EPT_X | (EPT_MT_WT << EPT_MT_SHIFT) | EPT_IGNORE_PAT;
    uint64_t hpa = GB(5);

    assert_int_equal(ept_map(f->root, MB(8), hpa, PAGE_SIZE_2M, prot, &f->a), 0);
    uint64_t *pde = ept_lookup(f->root, MB(8), NULL, &f->a);
    assert_non_null(pde);
    *pde |= (1ull << 8) | (1ull << 9);

    /* Remap one page of it elsewhere, uncached and writable. */
    assert_int_equal(ept_map(f->root, MB(9), 0x7000, PAGE_SIZE_4K, EPT_RWX | UC, &f->a), 0);
    assert_maps(f, MB(9), 0x7000, EPT_RWX | UC, PAGE_SIZE_4K);
    for (uint64_t off = 0; off < PAGE_SIZE_2M; off += PAGE_SIZE_4K) {
        uint64_t *pte = ept_lookup(f->root, MB(8) + off, NULL, &f->a);
        assert_non_null(pte);
        if (off == MB(1))
            continue;
        assert_int_equal(*pte, (hpa + off) | prot | (1ull << 8) | (1ull << 9));
    }
}

static void test_unmap_2m_aligned(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ept_map(f->root, 0, 0, GB(4), PROT_RWX_WB, &f->a), 0);
    size_t before = tables(f);

    assert_int_equal(ept_unmap(f->root, MB(2), MB(4), &f->a), 0);
    assert_int_equal(tables(f), before); /* whole leaves go without splitting */
    for (uint64_t gpa = MB(2); gpa < MB(6); gpa += PAGE_SIZE_4K)
        assert_unmapped(f, gpa);
    assert_maps(f, MB(2) - 1, MB(2) - 1, PROT_RWX_WB, PAGE_SIZE_2M);
    assert_maps(f, MB(6), MB(6), PROT_RWX_WB, PAGE_SIZE_2M);

    /* Unaligned inside a leaf, spanning into the next one: split both ends' leaves. */
    assert_int_equal(ept_unmap(f->root, MB(7), MB(2), &f->a), 0);
    assert_int_equal(tables(f), before + 2);
    assert_maps(f, MB(7) - PAGE_SIZE_4K, MB(7) - PAGE_SIZE_4K, PROT_RWX_WB, PAGE_SIZE_4K);
    assert_unmapped(f, MB(7));
    assert_unmapped(f, MB(9) - PAGE_SIZE_4K);
    assert_maps(f, MB(9), MB(9), PROT_RWX_WB, PAGE_SIZE_4K);

    /* A range over a split region clears its PTEs. */
    assert_int_equal(ept_unmap(f->root, MB(6), MB(4), &f->a), 0);
    for (uint64_t gpa = MB(6); gpa < MB(10); gpa += PAGE_SIZE_4K)
        assert_unmapped(f, gpa);
    assert_maps(f, MB(10), MB(10), PROT_RWX_WB, PAGE_SIZE_2M);

    /* Unmapping what was never mapped needs no tables and succeeds. */
    before = tables(f);
    assert_int_equal(ept_unmap(f->root, GB(8), GB(2) + PAGE_SIZE_4K, &f->a), 0);
    assert_int_equal(ept_unmap(f->root, GB(600), GB(1), &f->a), 0);
    assert_int_equal(ept_unmap(f->root, 0, 0, &f->a), 0);
    assert_int_equal(tables(f), before);

    /* Starting in the middle of an absent entry's span and running into a present one:
     * only the rest of the absent span is skipped. */
    assert_int_equal(ept_map(f->root, GB(16) + MB(2), GB(16) + MB(2), MB(2), EPT_R, &f->a), 0);
    assert_int_equal(ept_map(f->root, GB(21), GB(21), MB(2), EPT_R, &f->a), 0);
    assert_int_equal(ept_unmap(f->root, GB(16) + MB(1), MB(3), &f->a), 0);
    assert_unmapped(f, GB(16) + MB(2));
    assert_unmapped(f, GB(16) + MB(4) - PAGE_SIZE_4K);
    assert_int_equal(ept_unmap(f->root, GB(20) + MB(512), GB(1), &f->a), 0);
    assert_unmapped(f, GB(21));
    assert_unmapped(f, GB(21) + MB(2) - PAGE_SIZE_4K);

    /* Everything below 4 GiB, across present and absent entries. */
    assert_int_equal(ept_unmap(f->root, 0, GB(5), &f->a), 0);
    for (uint64_t gpa = 0; gpa < GB(5); gpa += PAGE_SIZE_2M)
        assert_unmapped(f, gpa);
}

static void test_unaligned_and_invalid_rejected(void **state)
{
    struct fixture *f = *state;
    const uint64_t top = 1ull << 48;

    assert_int_equal(ept_map(f->root, 0x1001, 0x1000, PAGE_SIZE_4K, PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0x1000, 0x1800, PAGE_SIZE_4K, PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0x1000, 0x1000, 0x1001, PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, 0x800, PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_unmap(f->root, 0x10, PAGE_SIZE_4K, &f->a), -1);
    assert_int_equal(ept_unmap(f->root, 0, 0x10, &f->a), -1);

    /* Beyond the 48-bit guest-physical space, or a host address beyond 52 bits. */
    assert_int_equal(ept_map(f->root, top, 0, PAGE_SIZE_4K, PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, top - PAGE_SIZE_4K, 0, 2 * PAGE_SIZE_4K, PROT_RWX_WB,
                             &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 1ull << 52, PAGE_SIZE_4K, PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, (1ull << 52) - PAGE_SIZE_4K, 2 * PAGE_SIZE_4K,
                             PROT_RWX_WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, PAGE_SIZE_4K, 0, UINT64_MAX - 0xfff, PROT_RWX_WB,
                             &f->a), -1);
    assert_int_equal(ept_unmap(f->root, top - PAGE_SIZE_4K, 2 * PAGE_SIZE_4K, &f->a), -1);

    /* Leaf values the CPU would take as EPT misconfigurations (SDM 29.3.3.1), or bits
     * that are not permissions or memory type. */
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_W, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_W | EPT_X, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_RWX | (2u << 3), &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_RWX | (3u << 3), &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_RWX | (7u << 3), &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_RWX | EPT_LARGE, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, WB, &f->a), -1);
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_RWX | (1ull << 63), &f->a), -1);

    /* Nothing was allocated or written by any of them. */
    assert_int_equal(tables(f), 0);
    for (unsigned i = 0; i < 512; i++)
        assert_int_equal(f->root[i], 0);

    /* The highest valid page still works; an empty range is a no-op. */
    assert_int_equal(ept_map(f->root, top - PAGE_SIZE_4K, (1ull << 52) - PAGE_SIZE_4K,
                             PAGE_SIZE_4K, EPT_R | EPT_X, &f->a), 0);
    assert_maps(f, top - 1, (1ull << 52) - 1, EPT_R | EPT_X, PAGE_SIZE_4K);
    assert_int_equal(ept_map(f->root, 0, 0, 0, PROT_RWX_WB, &f->a), 0);
    assert_int_equal(tables(f), 3);
}

static void test_out_of_pages(void **state)
{
    struct fixture *f = *state;

    /* Identity 0..4G needs a PDPT and four PDs; allow the PDPT and two PDs. */
    f->pool.limit = f->pool.used + 3;
    assert_int_equal(ept_map(f->root, 0, 0, GB(4), PROT_RWX_WB, &f->a), -1);
    /* What was mapped before running out stays mapped; nothing beyond. */
    assert_maps(f, 0, 0, PROT_RWX_WB, PAGE_SIZE_2M);
    assert_maps(f, GB(2) - PAGE_SIZE_4K, GB(2) - PAGE_SIZE_4K, PROT_RWX_WB, PAGE_SIZE_2M);
    assert_unmapped(f, GB(2));
    assert_unmapped(f, GB(3));

    /* Splitting needs a page table: refused, and the leaf stays whole. */
    assert_int_equal(ept_unmap(f->root, MB(2), PAGE_SIZE_4K, &f->a), -1);
    assert_maps(f, MB(2), MB(2), PROT_RWX_WB, PAGE_SIZE_2M);
    assert_int_equal(ept_map(f->root, MB(4), GB(9), PAGE_SIZE_4K, EPT_R, &f->a), -1);
    assert_maps(f, MB(4), MB(4), PROT_RWX_WB, PAGE_SIZE_2M);

    /* Operations that need no new table still work. */
    assert_int_equal(ept_unmap(f->root, MB(2), PAGE_SIZE_2M, &f->a), 0);
    assert_unmapped(f, MB(2));
    assert_int_equal(ept_map(f->root, MB(2), GB(7), PAGE_SIZE_2M, EPT_R, &f->a), 0);
    assert_maps(f, MB(2) + 5, GB(7) + 5, EPT_R, PAGE_SIZE_2M);

    /* With no pages at all, the first level already fails. */
    f->pool.limit = f->pool.used;
    assert_int_equal(ept_map(f->root, GB(600), 0, PAGE_SIZE_4K, EPT_R, &f->a), -1);
    assert_unmapped(f, GB(600));
    assert_int_equal(f->root[0] & 0xfff, 0x7);
    assert_int_equal(f->root[1], 0);
}

/* A table page the allocator reports at an address an entry cannot hold is refused,
 * not silently truncated into a wrong pointer. */
static void test_misaligned_table_page_refused(void **state)
{
    struct fixture *f = *state;

    f->a.alloc = misaligned_alloc;
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_R, &f->a), -1);
    assert_int_equal(f->root[0], 0);
    f->a.alloc = pool_alloc;
    assert_int_equal(ept_map(f->root, 0, 0, PAGE_SIZE_4K, EPT_R, &f->a), 0);
    assert_maps(f, 0, 0, EPT_R, PAGE_SIZE_4K);
}

static void test_lookup_level_sizes(void **state)
{
    struct fixture *f = *state;
    uint64_t size = 0;

    /* gpa 1M..5M with hpa congruent mod 2M: 4 KiB, one 2 MiB leaf, 4 KiB again. */
    assert_int_equal(ept_map(f->root, MB(1), GB(2) + MB(1), MB(4), PROT_RWX_WB, &f->a), 0);
    assert_maps(f, MB(1), GB(2) + MB(1), PROT_RWX_WB, PAGE_SIZE_4K);
    assert_maps(f, MB(2) - PAGE_SIZE_4K, GB(2) + MB(2) - PAGE_SIZE_4K, PROT_RWX_WB,
                PAGE_SIZE_4K);
    assert_maps(f, MB(2), GB(2) + MB(2), PROT_RWX_WB, PAGE_SIZE_2M);
    assert_maps(f, MB(4) - 1, GB(2) + MB(4) - 1, PROT_RWX_WB, PAGE_SIZE_2M);
    assert_maps(f, MB(4), GB(2) + MB(4), PROT_RWX_WB, PAGE_SIZE_4K);
    assert_maps(f, MB(5) - 1, GB(2) + MB(5) - 1, PROT_RWX_WB, PAGE_SIZE_4K);
    assert_unmapped(f, MB(5));
    assert_unmapped(f, MB(1) - 1);

    /* hpa not 2 MiB aligned: 4 KiB leaves only, even for an aligned gpa. */
    assert_int_equal(ept_map(f->root, MB(16), 0x1000, MB(2), PROT_RWX_WB, &f->a), 0);
    for (uint64_t off = 0; off < MB(2); off += PAGE_SIZE_4K)
        assert_maps(f, MB(16) + off, 0x1000 + off, PROT_RWX_WB, PAGE_SIZE_4K);

    /* A length short of 2 MiB: 4 KiB leaves. */
    assert_int_equal(ept_map(f->root, MB(32), MB(32), MB(2) - PAGE_SIZE_4K, EPT_R, &f->a), 0);
    assert_maps(f, MB(32), MB(32), EPT_R, PAGE_SIZE_4K);
    assert_unmapped(f, MB(34) - PAGE_SIZE_4K);

    assert_non_null(ept_lookup(f->root, MB(2), &size, &f->a));
    assert_int_equal(size, PAGE_SIZE_2M);
    assert_non_null(ept_lookup(f->root, MB(1), &size, &f->a));
    assert_int_equal(size, PAGE_SIZE_4K);
    size = 0x55;
    assert_null(ept_lookup(f->root, GB(1), &size, &f->a));
    assert_int_equal(size, 0x55);
}

/* The builder never makes 1 GiB leaves, but one placed by someone else is understood:
 * looked up as 1 GiB, and split into 2 MiB leaves with its attributes when edited. */
static void test_foreign_1g_leaf(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ept_map(f->root, GB(1), GB(1), PAGE_SIZE_4K, EPT_R, &f->a), 0);
    uint64_t *pml4e = &f->root[0];
    uint64_t *pdpt = (uint64_t *)(uintptr_t)(*pml4e & EPT_ADDR_MASK);
    pdpt[2] = GB(6) | EPT_LARGE | PROT_RWX_WB; /* gpa 2G..3G -> hpa 6G..7G */

    assert_maps(f, GB(2) + 0x123456, GB(6) + 0x123456, PROT_RWX_WB, PAGE_SIZE_1G);

    size_t before = tables(f);
    assert_int_equal(ept_unmap(f->root, GB(2) + MB(10), PAGE_SIZE_4K, &f->a), 0);
    assert_int_equal(tables(f), before + 2); /* a PD, then a PT */
    assert_unmapped(f, GB(2) + MB(10));
    assert_maps(f, GB(2) + MB(10) + PAGE_SIZE_4K, GB(6) + MB(10) + PAGE_SIZE_4K, PROT_RWX_WB,
                PAGE_SIZE_4K);
    assert_maps(f, GB(2), GB(6), PROT_RWX_WB, PAGE_SIZE_2M);
    assert_maps(f, GB(3) - 1, GB(7) - 1, PROT_RWX_WB, PAGE_SIZE_2M);

    /* Unmapping a whole foreign 1 GiB leaf clears it without splitting. */
    pdpt[3] = GB(8) | EPT_LARGE | EPT_R;
    before = tables(f);
    assert_int_equal(ept_unmap(f->root, GB(3), GB(1), &f->a), 0);
    assert_int_equal(tables(f), before);
    assert_unmapped(f, GB(3));
}

/* Mapping 2 MiB over a region split earlier keeps its page table (no leak) and rewrites
 * all of its entries. */
static void test_2m_over_split_region(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(ept_map(f->root, 0, 0, MB(4), PROT_RWX_WB, &f->a), 0);
    assert_int_equal(ept_unmap(f->root, MB(3), PAGE_SIZE_4K, &f->a), 0);
    size_t before = tables(f);

    assert_int_equal(ept_map(f->root, MB(2), GB(1), MB(2), EPT_R | UC, &f->a), 0);
    assert_int_equal(tables(f), before);
    for (uint64_t off = 0; off < MB(2); off += PAGE_SIZE_4K)
        assert_maps(f, MB(2) + off, GB(1) + off, EPT_R | UC, PAGE_SIZE_4K);
    assert_maps(f, 0, 0, PROT_RWX_WB, PAGE_SIZE_2M);

    /* Remapping a 2 MiB leaf whole just replaces it. */
    assert_int_equal(ept_map(f->root, 0, GB(2), MB(2), EPT_R | EPT_X | WB, &f->a), 0);
    assert_int_equal(tables(f), before);
    assert_maps(f, 0x1234, GB(2) + 0x1234, EPT_R | EPT_X | WB, PAGE_SIZE_2M);
}

/* Random maps and unmaps over 0..16 MiB against a per-page model. */
#define MODEL_PAGES 4096u

struct model_page {
    bool present;
    uint64_t hpa, prot;
};

static void test_random_vs_model(void **state)
{
    struct fixture *f = *state;
    static struct model_page model[MODEL_PAGES];
    const uint64_t prots[] = { PROT_RWX_WB, EPT_R | UC, EPT_R | EPT_X | WB, EPT_X,
                               EPT_RWX | EPT_IGNORE_PAT | (EPT_MT_WP << EPT_MT_SHIFT) };

    memset(model, 0, sizeof(model));
    srand(3);
    for (int iter = 0; iter < 300; iter++) {
        /* Mostly 2 MiB-friendly starts and lengths, so both leaf sizes are exercised. */
        uint64_t first = (uint64_t)rand() % MODEL_PAGES;
        uint64_t count = 1 + (uint64_t)rand() % 1200;
        if (rand() % 2)
            first &= ~511ull;
        if (first + count > MODEL_PAGES)
            count = MODEL_PAGES - first;
        uint64_t gpa = first * PAGE_SIZE_4K, len = count * PAGE_SIZE_4K;

        if (rand() % 4 == 0) {
            assert_int_equal(ept_unmap(f->root, gpa, len, &f->a), 0);
            for (uint64_t i = first; i < first + count; i++)
                model[i].present = false;
        } else {
            /* Half the time congruent with gpa mod 2 MiB, so 2 MiB leaves are possible. */
            uint64_t hpa = (uint64_t)(rand() % 64) * PAGE_SIZE_2M;
            if (rand() % 2)
                hpa += gpa & (PAGE_SIZE_2M - 1);
            else
                hpa += (uint64_t)(rand() % 512) * PAGE_SIZE_4K;
            uint64_t prot = prots[rand() % 5];
            assert_int_equal(ept_map(f->root, gpa, hpa, len, prot, &f->a), 0);
            for (uint64_t i = first; i < first + count; i++) {
                model[i].present = true;
                model[i].hpa = hpa + (i - first) * PAGE_SIZE_4K;
                model[i].prot = prot;
            }
        }
        for (uint64_t i = 0; i < MODEL_PAGES; i++) {
            uint64_t h, p;
            int rc = translate(f, i * PAGE_SIZE_4K + 0x80, &h, &p, NULL);
            if (!model[i].present) {
                assert_int_equal(rc, -1);
                continue;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(h, model[i].hpa + 0x80);
            assert_int_equal(p, model[i].prot);
        }
    }
    /* 16 MiB spans 8 PDEs: one PDPT, one PD, at most 8 page tables. */
    assert_true(tables(f) <= 10);
}

/* Memory types (ept_retype): a type per 4 KiB page where type_of says a 2 MiB block is
 * mixed (the leaf is split, its mapping kept), one type for a uniform block, absent
 * entries left absent, a reserved type never written. */
static int retype_of(void *ctx, uint64_t gpa, uint64_t size)
{
    (void)ctx;
    if (gpa >= 0x200000 && gpa < 0x400000)
        return size > 0x1000 ? -1 : ((gpa >> 12) & 1) ? 1 /* WC */ : 0 /* UC */;
    return gpa < 0x200000 ? 6 : 3;          /* WB; above 4 MiB a reserved type */
}

static void test_retype(void **state)
{
    struct fixture *f = *state;
    uint64_t prot = EPT_R | EPT_W | EPT_X | (EPT_MT_UC << EPT_MT_SHIFT);
    uint64_t size, *e;
    assert_int_equal(ept_map(f->root, 0, 0, 0x600000, prot, &f->a), 0);
    assert_int_equal(ept_unmap(f->root, 0x500000, 0x100000, &f->a), 0);
    assert_int_equal(ept_retype(f->root, 0, 0x800000, retype_of, NULL, &f->a), 0);
    e = ept_lookup(f->root, 0x1000, &size, &f->a);
    assert_non_null(e);
    assert_int_equal(size, 0x200000);
    assert_int_equal((*e >> EPT_MT_SHIFT) & 7, 6);
    for (uint64_t g = 0x200000; g < 0x400000; g += 0x1000) {
        e = ept_lookup(f->root, g, &size, &f->a);
        assert_non_null(e);
        assert_int_equal(size, 0x1000);
        assert_int_equal(*e & EPT_ADDR_MASK, g);
        assert_int_equal((*e >> EPT_MT_SHIFT) & 7, (g >> 12) & 1);
        assert_int_equal(*e & 7, EPT_R | EPT_W | EPT_X);
    }
    e = ept_lookup(f->root, 0x400000, &size, &f->a);
    assert_non_null(e);
    assert_int_equal((*e >> EPT_MT_SHIFT) & 7, EPT_MT_UC);      /* reserved 3 -> UC */
    assert_null(ept_lookup(f->root, 0x500000, NULL, &f->a));
    assert_null(ept_lookup(f->root, 0x600000, NULL, &f->a));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retype, setup, teardown),
        T(test_entry_bits),
        T(test_identity_4g_with_2m_leaves),
        T(test_hole_punch_splits_2m_leaf),
        T(test_split_preserves_attribute_bits),
        T(test_unmap_2m_aligned),
        T(test_unaligned_and_invalid_rejected),
        T(test_out_of_pages),
        T(test_misaligned_table_page_refused),
        T(test_lookup_level_sizes),
        T(test_foreign_1g_leaf),
        T(test_2m_over_split_region),
        T(test_random_vs_model),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
