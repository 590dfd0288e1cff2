/* Host tests of the E820 editing functions (xmhf/src/lib/e820.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e820.h"

#define KB(x) ((uint64_t)(x) << 10)
#define MB(x) ((uint64_t)(x) << 20)
#define GB(x) ((uint64_t)(x) << 30)
#define TOP   UINT64_MAX

struct ent {
    uint64_t base, length;
    uint32_t type;
};

static void load(struct e820_map *m, const struct ent *e, size_t n)
{
    memset(m, 0, sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        m->e[i].base = e[i].base;
        m->e[i].length = e[i].length;
        m->e[i].type = e[i].type;
    }
    m->count = (uint32_t)n;
}

#define LOAD(m, ...)                                                                      \
    do {                                                                                  \
        const struct ent in_[] = { __VA_ARGS__ };                                         \
        load((m), in_, sizeof(in_) / sizeof(in_[0]));                                     \
    } while (0)

static void expect(const struct e820_map *m, const struct ent *e, size_t n)
{
    bool same = m->count == n;

    for (size_t i = 0; same && i < n; i++)
        same = m->e[i].base == e[i].base && m->e[i].length == e[i].length &&
               m->e[i].type == e[i].type;
    if (same)
        return;
    print_error("map (%u entries):\n", m->count);
    for (uint32_t i = 0; i < m->count && i < E820_MAX; i++)
        print_error("  %#llx +%#llx type %u\n", (unsigned long long)m->e[i].base,
                    (unsigned long long)m->e[i].length, m->e[i].type);
    print_error("expected (%zu entries):\n", n);
    for (size_t i = 0; i < n; i++)
        print_error("  %#llx +%#llx type %u\n", (unsigned long long)e[i].base,
                    (unsigned long long)e[i].length, e[i].type);
    fail();
}

#define EXPECT(m, ...)                                                                    \
    do {                                                                                  \
        const struct ent ex_[] = { __VA_ARGS__ };                                         \
        expect((m), ex_, sizeof(ex_) / sizeof(ex_[0]));                                   \
    } while (0)

/* The sanitized form: sorted, no empty entries, no overlaps, no two touching entries of
 * one type (except the two halves of [0, 2^64)). */
static void assert_sanitized(const struct e820_map *m)
{
    assert_true(m->count <= E820_MAX);
    for (uint32_t i = 0; i < m->count; i++) {
        const struct e820_entry *a = &m->e[i];
        assert_true(a->length != 0);
        assert_true(a->length - 1 <= TOP - a->base);
        assert_true(a->type != 0);
        if (i == 0)
            continue;
        const struct e820_entry *p = &m->e[i - 1];
        uint64_t plast = p->base + (p->length - 1);
        assert_true(plast < a->base);
        if (plast + 1 == a->base && p->type == a->type)
            assert_true(p->base == 0 && a->base + (a->length - 1) == TOP);
    }
}

/* --- a byte-level model over a small address space, for randomised cross-checks ---- */

#define UNITS 64u

/* Bytes per model unit: runs are repeated with 1 (every boundary case down to one-byte
 * pieces) and with 4 KiB. */
static uint64_t UNIT = 1;

static void model_of(const struct e820_map *m, uint32_t model[UNITS])
{
    memset(model, 0, UNITS * sizeof(model[0]));
    for (uint32_t i = 0; i < m->count; i++)
        for (uint64_t a = m->e[i].base; a < m->e[i].base + m->e[i].length; a += UNIT) {
            assert_true(a / UNIT < UNITS);
            assert_int_equal(model[a / UNIT], 0); /* sanitized: nothing covered twice */
            model[a / UNIT] = m->e[i].type;
        }
}

static void random_fw_map(struct e820_map *m, uint32_t n, uint32_t model[UNITS])
{
    memset(m, 0, sizeof(*m));
    memset(model, 0, UNITS * sizeof(model[0]));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)rand() % UNITS;
        uint32_t l = (uint32_t)rand() % 12u;
        uint32_t t = 1u + (uint32_t)rand() % 7u;
        if (b + l > UNITS)
            l = UNITS - b;
        m->e[i].base = (uint64_t)b * UNIT;
        m->e[i].length = (uint64_t)l * UNIT;
        m->e[i].type = t;
        for (uint32_t u = b; u < b + l; u++)
            if (t > model[u])
                model[u] = t;
    }
    m->count = n;
}

/* --- sanitize ------------------------------------------------------------------------ */

static void test_sanitize_sorts_and_merges(void **state)
{
    (void)state;
    struct e820_map m;

    LOAD(&m, { MB(1), GB(1) - MB(1), E820_RAM }, { 0, KB(639), E820_RAM },
         { KB(639), KB(1), E820_RESERVED }, { KB(960), KB(64), E820_RESERVED },
         { GB(1), MB(16), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED },
         { KB(700), 0, E820_RAM });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, KB(639), E820_RAM }, { KB(639), KB(1), E820_RESERVED },
           { KB(960), KB(64), E820_RESERVED }, { MB(1), GB(1) + MB(15), E820_RAM },
           { GB(4) - MB(16), MB(16), E820_RESERVED });
    assert_sanitized(&m);

    /* Already sanitized: a second pass changes nothing. */
    struct e820_map again = m;
    assert_int_equal(e820_sanitize(&again), 0);
    assert_memory_equal(&again, &m, sizeof(m));
}

static void test_sanitize_overlaps(void **state)
{
    (void)state;
    struct e820_map m;

    /* A reserved hole inside RAM splits it. */
    LOAD(&m, { 0, MB(16), E820_RAM }, { MB(4), MB(1), E820_RESERVED });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, MB(4), E820_RAM }, { MB(4), MB(1), E820_RESERVED },
           { MB(5), MB(11), E820_RAM });

    /* RAM inside reserved never becomes usable. */
    LOAD(&m, { MB(4), MB(1), E820_RAM }, { 0, MB(16), E820_RESERVED });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, MB(16), E820_RESERVED });

    /* Partial overlaps of three types, listed out of order. */
    LOAD(&m, { MB(6), MB(4), E820_ACPI }, { 0, MB(8), E820_RAM }, { MB(9), MB(3), E820_NVS });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, MB(6), E820_RAM }, { MB(6), MB(3), E820_ACPI }, { MB(9), MB(3), E820_NVS });

    /* Unknown types above 5 are treated as more reserved than reserved. */
    LOAD(&m, { 0, MB(2), 12 }, { MB(1), MB(2), E820_UNUSABLE }, { 0, MB(4), E820_RAM });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, MB(2), 12 }, { MB(2), MB(1), E820_UNUSABLE }, { MB(3), MB(1), E820_RAM });

    /* Type 0 is undefined: read as reserved. */
    LOAD(&m, { 0, MB(2), E820_RAM }, { MB(1), MB(2), 0 });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, MB(1), E820_RAM }, { MB(1), MB(2), E820_RESERVED });

    /* Duplicates and a chain of touching same-type pieces collapse to one entry. */
    LOAD(&m, { MB(1), MB(1), E820_RAM }, { MB(1), MB(1), E820_RAM }, { MB(2), MB(1), E820_RAM },
         { 0, MB(1), E820_RAM }, { KB(512), MB(2), E820_RAM });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, MB(3), E820_RAM });
}

static void test_sanitize_holes_and_edges(void **state)
{
    (void)state;
    struct e820_map m;

    /* Holes stay holes; only empty entries vanish. */
    LOAD(&m, { 0, 0, E820_RAM }, { GB(8), GB(1), E820_RAM }, { MB(1), MB(1), E820_RAM },
         { GB(2), 0, E820_RESERVED });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { MB(1), MB(1), E820_RAM }, { GB(8), GB(1), E820_RAM });

    LOAD(&m, { 0, 0, E820_RAM });
    assert_int_equal(e820_sanitize(&m), 0);
    assert_int_equal(m.count, 0);

    m.count = 0;
    assert_int_equal(e820_sanitize(&m), 0);
    assert_int_equal(m.count, 0);

    /* A length running past 2^64 is clamped at the top of the space. */
    LOAD(&m, { TOP - 0xfff, 0x2000, E820_RESERVED }, { GB(4), TOP, E820_RAM });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { GB(4), TOP - 0xfff - GB(4), E820_RAM }, { TOP - 0xfff, 0x1000, E820_RESERVED });
    assert_int_equal(e820_ram_top(&m), TOP - 0xfff);

    /* All of [0, 2^64) of one type cannot be one entry: it stays two halves. */
    LOAD(&m, { 1ull << 63, 1ull << 63, E820_RESERVED }, { 0, 1ull << 63, E820_RESERVED });
    assert_int_equal(e820_sanitize(&m), 0);
    EXPECT(&m, { 0, 1ull << 63, E820_RESERVED }, { 1ull << 63, 1ull << 63, E820_RESERVED });
    assert_sanitized(&m);
    assert_true(e820_range_is(&m, 0, TOP, E820_RESERVED));

    /* A count beyond the array is garbage, not a map. */
    m.count = E820_MAX + 1;
    assert_int_equal(e820_sanitize(&m), -1);
}

static void test_sanitize_too_many_leaves_map_unchanged(void **state)
{
    (void)state;
    struct e820_map m, before;

    /* One big RAM range with 64 reserved islands becomes 129 entries: one too many. */
    memset(&m, 0, sizeof(m));
    m.e[0].base = 0;
    m.e[0].length = MB(1);
    m.e[0].type = E820_RAM;
    for (uint32_t i = 0; i < 64; i++) {
        m.e[1 + i].base = KB(8) + (uint64_t)i * KB(8);
        m.e[1 + i].length = KB(4);
        m.e[1 + i].type = E820_RESERVED;
    }
    m.e[65].base = 0; /* plus an empty entry, to see it is not dropped in place */
    m.e[65].length = 0;
    m.e[65].type = E820_RAM;
    m.count = 66;
    before = m;
    assert_int_equal(e820_sanitize(&m), -1);
    assert_memory_equal(&m, &before, sizeof(m));

    /* With 63 islands it fits (127 entries). */
    m.count = 64;
    assert_int_equal(e820_sanitize(&m), 0);
    assert_int_equal(m.count, 127);
    assert_sanitized(&m);
}

static void test_sanitize_random_vs_model(void **state)
{
    (void)state;
    struct e820_map m;
    uint32_t want[UNITS], got[UNITS];

    srand(1);
    for (int iter = 0; iter < 2000; iter++) {
        UNIT = iter % 2 ? 1 : 0x1000;
        random_fw_map(&m, 1u + (uint32_t)rand() % 40u, want);
        assert_int_equal(e820_sanitize(&m), 0);
        assert_sanitized(&m);
        model_of(&m, got);
        assert_memory_equal(got, want, sizeof(want));
    }
}

/* --- set_range ----------------------------------------------------------------------- */

static void std_map(struct e820_map *m)
{
    LOAD(m, { 0, KB(640), E820_RAM }, { KB(960), KB(64), E820_RESERVED },
         { MB(1), MB(255), E820_RAM }, { MB(256), MB(1), E820_ACPI },
         { MB(257), MB(767), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED });
}

static void test_set_range_middle_and_edges(void **state)
{
    (void)state;
    struct e820_map m;

    /* Middle of an entry: split in three. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, MB(16), MB(2), E820_RESERVED), 0);
    EXPECT(&m, { 0, KB(640), E820_RAM }, { KB(960), KB(64), E820_RESERVED },
           { MB(1), MB(15), E820_RAM }, { MB(16), MB(2), E820_RESERVED },
           { MB(18), MB(238), E820_RAM }, { MB(256), MB(1), E820_ACPI },
           { MB(257), MB(767), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED });

    /* Left edge of an entry: the new range touches nothing of its own type below. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, MB(257), MB(1), E820_NVS), 0);
    EXPECT(&m, { 0, KB(640), E820_RAM }, { KB(960), KB(64), E820_RESERVED },
           { MB(1), MB(255), E820_RAM }, { MB(256), MB(1), E820_ACPI },
           { MB(257), MB(1), E820_NVS }, { MB(258), MB(766), E820_RAM },
           { GB(4) - MB(16), MB(16), E820_RESERVED });

    /* Right edge of an entry, merging with the reserved entry just above. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, KB(512), KB(128), E820_RESERVED), 0);
    EXPECT(&m, { 0, KB(512), E820_RAM }, { KB(512), KB(128), E820_RESERVED },
           { KB(960), KB(64), E820_RESERVED }, { MB(1), MB(255), E820_RAM },
           { MB(256), MB(1), E820_ACPI }, { MB(257), MB(767), E820_RAM },
           { GB(4) - MB(16), MB(16), E820_RESERVED });
    std_map(&m);
    assert_int_equal(e820_set_range(&m, MB(1) - KB(4), KB(8), E820_RESERVED), 0);
    EXPECT(&m, { 0, KB(640), E820_RAM }, { KB(960), KB(68), E820_RESERVED },
           { MB(1) + KB(4), MB(255) - KB(4), E820_RAM }, { MB(256), MB(1), E820_ACPI },
           { MB(257), MB(767), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED });

    /* A whole entry changing type merges its neighbours into one. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, MB(256), MB(1), E820_RAM), 0);
    EXPECT(&m, { 0, KB(640), E820_RAM }, { KB(960), KB(64), E820_RESERVED },
           { MB(1), GB(1) - MB(1), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED });
    assert_sanitized(&m);

    /* One-byte remainders on either side. */
    LOAD(&m, { 0x1000, 0x1000, E820_RAM });
    assert_int_equal(e820_set_range(&m, 0x1001, 0xffe, E820_RESERVED), 0);
    EXPECT(&m, { 0x1000, 1, E820_RAM }, { 0x1001, 0xffe, E820_RESERVED }, { 0x1fff, 1, E820_RAM });

    /* Setting a range to the type it already has changes nothing. */
    std_map(&m);
    struct e820_map before = m;
    assert_int_equal(e820_set_range(&m, MB(2), MB(3), E820_RAM), 0);
    assert_memory_equal(&m, &before, sizeof(m));
    assert_int_equal(e820_set_range(&m, MB(2), 0, E820_RESERVED), 0);
    assert_memory_equal(&m, &before, sizeof(m));
}

static void test_set_range_across_entries_and_holes(void **state)
{
    (void)state;
    struct e820_map m;

    /* Reserve from inside the first RAM entry, over a hole, the reserved entry and into
     * the second RAM entry. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, KB(600), MB(2) - KB(600), E820_RESERVED), 0);
    EXPECT(&m, { 0, KB(600), E820_RAM }, { KB(600), MB(2) - KB(600), E820_RESERVED },
           { MB(2), MB(254), E820_RAM }, { MB(256), MB(1), E820_ACPI },
           { MB(257), MB(767), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED });

    /* Across several entries of different types, swallowing them. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, MB(200), MB(100), E820_UNUSABLE), 0);
    EXPECT(&m, { 0, KB(640), E820_RAM }, { KB(960), KB(64), E820_RESERVED },
           { MB(1), MB(199), E820_RAM }, { MB(200), MB(100), E820_UNUSABLE },
           { MB(300), MB(724), E820_RAM }, { GB(4) - MB(16), MB(16), E820_RESERVED });

    /* Entirely inside a hole; then in the hole at the very top of the space. */
    std_map(&m);
    assert_int_equal(e820_set_range(&m, KB(700), KB(4), E820_ACPI), 0);
    EXPECT(&m, { 0, KB(640), E820_RAM }, { KB(700), KB(4), E820_ACPI },
           { KB(960), KB(64), E820_RESERVED }, { MB(1), MB(255), E820_RAM },
           { MB(256), MB(1), E820_ACPI }, { MB(257), MB(767), E820_RAM },
           { GB(4) - MB(16), MB(16), E820_RESERVED });
    assert_int_equal(e820_set_range(&m, TOP - 0xfff, 0x1000, E820_RAM), 0);
    assert_int_equal(m.count, 8);
    assert_int_equal(m.e[7].base, TOP - 0xfff);
    assert_int_equal(e820_ram_top(&m), TOP);

    /* Filling a hole between two RAM entries with RAM merges all three. */
    LOAD(&m, { 0, MB(1), E820_RAM }, { MB(2), MB(1), E820_RAM });
    assert_int_equal(e820_set_range(&m, MB(1), MB(1), E820_RAM), 0);
    EXPECT(&m, { 0, MB(3), E820_RAM });

    /* Into an empty map; then the whole space. */
    m.count = 0;
    assert_int_equal(e820_set_range(&m, MB(1), MB(1), E820_RAM), 0);
    EXPECT(&m, { MB(1), MB(1), E820_RAM });
    std_map(&m);
    assert_int_equal(e820_set_range(&m, 0, TOP, E820_RESERVED), 0);
    assert_int_equal(e820_set_range(&m, TOP, 1, E820_RESERVED), 0);
    EXPECT(&m, { 0, 1ull << 63, E820_RESERVED }, { 1ull << 63, 1ull << 63, E820_RESERVED });
}

static void test_set_range_failures_leave_map_unchanged(void **state)
{
    (void)state;
    struct e820_map m, before;

    /* Overflow past 2^64. */
    std_map(&m);
    before = m;
    assert_int_equal(e820_set_range(&m, TOP - 0xfff, 0x2000, E820_RESERVED), -1);
    assert_int_equal(e820_set_range(&m, 2, TOP, E820_RESERVED), -1);
    assert_memory_equal(&m, &before, sizeof(m));

    /* A full map: alternating RAM / reserved, 128 entries. */
    memset(&m, 0, sizeof(m));
    for (uint32_t i = 0; i < E820_MAX; i++) {
        m.e[i].base = (uint64_t)i * MB(1);
        m.e[i].length = MB(1);
        m.e[i].type = (i & 1) ? E820_RESERVED : E820_RAM;
    }
    m.count = E820_MAX;
    assert_sanitized(&m);
    before = m;

    /* Splitting the middle of an entry needs two more: refused, untouched. */
    assert_int_equal(e820_set_range(&m, KB(256), KB(4), E820_RESERVED), -1);
    assert_memory_equal(&m, &before, sizeof(m));
    /* Splitting at an edge needs one more: refused too. */
    assert_int_equal(e820_set_range(&m, 0, KB(4), E820_ACPI), -1);
    assert_memory_equal(&m, &before, sizeof(m));
    /* A new entry above everything: refused. */
    assert_int_equal(e820_set_range(&m, GB(1), MB(1), E820_RAM), -1);
    assert_memory_equal(&m, &before, sizeof(m));

    /* Edits that do not grow the map still work when it is full. */
    assert_int_equal(e820_set_range(&m, KB(256), KB(4), E820_RAM), 0);
    assert_memory_equal(&m, &before, sizeof(m));
    assert_int_equal(e820_set_range(&m, MB(1) - KB(4), KB(4), E820_RESERVED), 0);
    assert_int_equal(m.count, E820_MAX);
    assert_int_equal(m.e[0].length, MB(1) - KB(4));
    assert_int_equal(m.e[1].base, MB(1) - KB(4));
    /* Reserving one RAM entry whole merges three into one. */
    assert_int_equal(e820_set_range(&m, MB(2), MB(1), E820_RESERVED), 0);
    assert_int_equal(m.count, E820_MAX - 2);
    assert_int_equal(m.e[1].base, MB(1) - KB(4));
    assert_int_equal(m.e[1].length, MB(3) + KB(4));
    assert_sanitized(&m);
}

static void test_set_range_random_vs_model(void **state)
{
    (void)state;
    struct e820_map m;
    uint32_t want[UNITS], got[UNITS];

    srand(2);
    for (int iter = 0; iter < 300; iter++) {
        UNIT = iter % 2 ? 1 : 0x1000;
        random_fw_map(&m, 1u + (uint32_t)rand() % 20u, want);
        assert_int_equal(e820_sanitize(&m), 0);
        for (int k = 0; k < 20; k++) {
            uint32_t b = (uint32_t)rand() % UNITS, l = (uint32_t)rand() % 16u;
            uint32_t t = 1u + (uint32_t)rand() % 5u;
            if (b + l > UNITS)
                l = UNITS - b;
            assert_int_equal(e820_set_range(&m, (uint64_t)b * UNIT, (uint64_t)l * UNIT, t), 0);
            for (uint32_t u = b; u < b + l; u++)
                want[u] = t;
            assert_sanitized(&m);
            model_of(&m, got);
            assert_memory_equal(got, want, sizeof(want));
        }
    }
}

/* --- queries ------------------------------------------------------------------------- */

static void test_range_is_and_touches(void **state)
{
    (void)state;
    struct e820_map m;

    std_map(&m);
    assert_true(e820_range_is(&m, 0, KB(640), E820_RAM));
    assert_false(e820_range_is(&m, 0, KB(644), E820_RAM)); /* runs into the hole */
    assert_true(e820_range_is(&m, MB(1), MB(255), E820_RAM));
    assert_false(e820_range_is(&m, MB(1), MB(256), E820_RAM)); /* into ACPI */
    assert_false(e820_range_is(&m, KB(640), KB(4), E820_RAM)); /* hole */
    assert_false(e820_range_is(&m, KB(640), KB(4), E820_RESERVED));
    assert_true(e820_range_is(&m, MB(256) + 1, 1, E820_ACPI));
    assert_true(e820_range_is(&m, MB(5), 0, E820_NVS)); /* empty range: vacuously */
    assert_false(e820_range_is(&m, TOP - 0xfff, 0x2000, E820_RAM)); /* past 2^64 */

    assert_true(e820_range_touches(&m, KB(600), MB(1), E820_RESERVED));
    assert_true(e820_range_touches(&m, KB(600), MB(1), E820_RAM));
    assert_false(e820_range_touches(&m, KB(640), KB(320), E820_RAM)); /* exactly the hole */
    assert_true(e820_range_touches(&m, KB(640), KB(320) + 1, E820_RESERVED));
    assert_false(e820_range_touches(&m, 0, GB(4), E820_NVS));
    assert_false(e820_range_touches(&m, 0, 0, E820_RAM));
    assert_true(e820_range_touches(&m, GB(4) - 1, TOP, E820_RESERVED)); /* clamped */
    assert_false(e820_range_touches(&m, GB(4), TOP, E820_RESERVED));

    /* range_is does not need a sorted or merged map. */
    LOAD(&m, { MB(2), MB(1), E820_RAM }, { 0, MB(1), E820_RAM }, { MB(1), MB(1), E820_RAM });
    assert_true(e820_range_is(&m, KB(4), MB(3) - KB(4), E820_RAM));
    assert_false(e820_range_is(&m, KB(4), MB(3), E820_RAM));
}

static void test_find_top(void **state)
{
    (void)state;
    struct e820_map m;
    uint64_t out;

    std_map(&m);
    /* Top of the highest RAM entry is GB(1); 2 MiB aligned below it. */
    assert_int_equal(e820_find_top(&m, MB(2), MB(2), GB(4), &out), 0);
    assert_int_equal(out, GB(1) - MB(2));
    /* An odd size: the base is aligned down, the range stays inside. */
    assert_int_equal(e820_find_top(&m, MB(1) + KB(4), MB(2), GB(4), &out), 0);
    assert_int_equal(out, GB(1) - MB(2));
    assert_int_equal(e820_find_top(&m, MB(2) + KB(4), MB(2), GB(4), &out), 0);
    assert_int_equal(out, GB(1) - MB(4));
    assert_int_equal(e820_find_top(&m, KB(4), KB(4), GB(4), &out), 0);
    assert_int_equal(out, GB(1) - KB(4));
    /* A limit inside a RAM entry. */
    assert_int_equal(e820_find_top(&m, MB(2), MB(2), MB(300) + 1, &out), 0);
    assert_int_equal(out, MB(298));
    /* A limit inside the ACPI entry: falls back into the RAM entry below it. */
    assert_int_equal(e820_find_top(&m, MB(2), MB(2), MB(256) + KB(512), &out), 0);
    assert_int_equal(out, MB(254));
    /* Below the limit the upper RAM entry is too short, the candidate placed there runs
     * down into ACPI and the hole; the lower entry holds it. */
    assert_int_equal(e820_find_top(&m, MB(254), MB(1), MB(300), &out), 0);
    assert_int_equal(out, MB(2));
    /* Only the low 640 KiB are below the limit. */
    assert_int_equal(e820_find_top(&m, KB(64), KB(64), MB(1), &out), 0);
    assert_int_equal(out, KB(576));
    /* Size equal to the whole entry. */
    assert_int_equal(e820_find_top(&m, MB(767), KB(4), TOP, &out), 0);
    assert_int_equal(out, MB(257));

    /* Nothing fits: out is left alone. */
    out = 0x1234;
    assert_int_equal(e820_find_top(&m, MB(768), KB(4), TOP, &out), -1);
    assert_int_equal(e820_find_top(&m, MB(2), GB(1), TOP, &out), -1); /* align too coarse */
    assert_int_equal(e820_find_top(&m, KB(4), KB(4), KB(640) - KB(4) + 1, &out), 0);
    assert_int_equal(out, KB(632));
    out = 0x1234;
    assert_int_equal(e820_find_top(&m, KB(8), KB(4), KB(4), &out), -1); /* limit < size */
    assert_int_equal(e820_find_top(&m, KB(4), KB(4), 0, &out), -1);
    assert_int_equal(e820_find_top(&m, 0, KB(4), GB(4), &out), -1);
    assert_int_equal(e820_find_top(&m, KB(4), 3, GB(4), &out), -1); /* not a power of 2 */
    assert_int_equal(e820_find_top(&m, KB(4), 0, GB(4), &out), -1);
    assert_int_equal(out, 0x1234);
    m.count = 0;
    assert_int_equal(e820_find_top(&m, KB(4), KB(4), GB(4), &out), -1);
    assert_int_equal(out, 0x1234);

    /* RAM right up to 2^64 with no limit. */
    LOAD(&m, { TOP - MB(4) + 1, MB(4), E820_RAM });
    assert_int_equal(e820_find_top(&m, MB(2), MB(2), TOP, &out), 0);
    assert_int_equal(out, TOP - MB(4) + 1);

    /* Across two touching RAM entries of an unmerged map. */
    LOAD(&m, { MB(2), MB(1), E820_RAM }, { MB(1), MB(1), E820_RAM });
    assert_int_equal(e820_find_top(&m, MB(2), MB(1), GB(1), &out), 0);
    assert_int_equal(out, MB(1));
}

static void test_ram_top(void **state)
{
    (void)state;
    struct e820_map m;

    m.count = 0;
    assert_int_equal(e820_ram_top(&m), 0);
    std_map(&m);
    assert_int_equal(e820_ram_top(&m), GB(1)); /* the reserved entry above is not RAM */
    LOAD(&m, { GB(4), GB(4), E820_RAM }, { 0, GB(2), E820_RAM }, { GB(16), GB(1), E820_ACPI });
    assert_int_equal(e820_ram_top(&m), GB(8));
    LOAD(&m, { 0, KB(4), E820_RESERVED });
    assert_int_equal(e820_ram_top(&m), 0);
}

/* init's clip to the mappable space: a firmware entry above 2^48, and one ending at
 * 2^64 (stored as its two halves of the full space, or as a long tail), go or end at the
 * limit; below it nothing moves. */
static void test_clip(void **state)
{
    (void)state;
    struct e820_map m;
    const uint64_t L = 1ull << 48;
    LOAD(&m, { 0, KB(639), E820_RAM }, { MB(1), GB(3), E820_RAM },
         { L - GB(1), GB(2), E820_RAM }, { 1ull << 50, TOP - (1ull << 50) + 1, E820_RESERVED });
    assert_int_equal(e820_sanitize(&m), 0);
    assert_int_equal(e820_clip(&m, L), 2);
    EXPECT(&m, { 0, KB(639), E820_RAM }, { MB(1), GB(3), E820_RAM }, { L - GB(1), GB(1), E820_RAM });
    assert_int_equal(e820_ram_top(&m), L);
    assert_int_equal(e820_clip(&m, L), 0);
    LOAD(&m, { 0, TOP, E820_RAM });                     /* [0, 2^64 - 1) */
    assert_int_equal(e820_sanitize(&m), 0);
    assert_int_equal(e820_clip(&m, GB(4)), 1);
    EXPECT(&m, { 0, GB(4), E820_RAM });
    assert_int_equal(e820_clip(&m, 0), -1);
    assert_int_equal(e820_clip(&m, 0x1234), -1);
    EXPECT(&m, { 0, GB(4), E820_RAM });
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_sanitize_sorts_and_merges),
        cmocka_unit_test(test_sanitize_overlaps),
        cmocka_unit_test(test_sanitize_holes_and_edges),
        cmocka_unit_test(test_sanitize_too_many_leaves_map_unchanged),
        cmocka_unit_test(test_sanitize_random_vs_model),
        cmocka_unit_test(test_set_range_middle_and_edges),
        cmocka_unit_test(test_set_range_across_entries_and_holes),
        cmocka_unit_test(test_set_range_failures_leave_map_unchanged),
        cmocka_unit_test(test_set_range_random_vs_model),
        cmocka_unit_test(test_range_is_and_touches),
        cmocka_unit_test(test_find_top),
        cmocka_unit_test(test_ram_top),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
