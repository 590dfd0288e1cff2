/* The firmware memory map and what boot does with it (e820.h, init's read_memory_map
 * and region placement): a map from the input is sanitized and clipped, then edited by
 * a sequence of e820_set_range / e820_find_top calls. After every call the map must be
 * sanitized (sorted, no overlaps, no empty entries, neighbours of one type merged, no
 * entry past 2^64) and each call must have done what its contract says. */
#include "fuzz.h"
#include "e820.h"

static uint64_t last(const struct e820_entry *e)
{
    return e->base + (e->length - 1);
}

static void check_sanitized(const struct e820_map *m)
{
    CHECK(m->count <= E820_MAX);
    for (uint32_t i = 0; i < m->count; i++) {
        CHECK(m->e[i].length != 0);
        CHECK(m->e[i].length - 1 <= UINT64_MAX - m->e[i].base);
        CHECK(m->e[i].type != 0);
        if (i) {
            CHECK(last(&m->e[i - 1]) < m->e[i].base);
            /* merged, except the two halves of a full-space entry */
            CHECK(!(last(&m->e[i - 1]) + 1 == m->e[i].base && m->e[i - 1].type == m->e[i].type) ||
                  (m->e[i - 1].base == 0 && last(&m->e[i]) == UINT64_MAX));
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    static struct e820_map m;
    m.count = (uint32_t)(take(&in, 1) % (E820_MAX + 1));
    for (uint32_t i = 0; i < m.count; i++) {
        /* bases and lengths near the interesting edges: 0, 4 GiB, 2^48, 2^64 */
        unsigned shape = (unsigned)take(&in, 1);
        m.e[i].base = take(&in, 8) >> (shape & 0x3f);
        m.e[i].length = (shape & 0x40) ? UINT64_MAX - take(&in, 2) : take(&in, 8) >> (shape >> 2 & 0x3f);
        m.e[i].type = (uint32_t)take(&in, 1) % 7;
    }
    if (e820_sanitize(&m) != 0)
        return 0;
    check_sanitized(&m);
    uint64_t top = e820_ram_top(&m);
    /* init's clip to the addressable space */
    uint64_t limit = (take(&in, 1) & 1) ? (1ull << 48) : (1ull << (32 + take(&in, 1) % 20));
    CHECK(e820_clip(&m, limit) >= 0);
    check_sanitized(&m);
    CHECK(m.count == 0 || last(&m.e[m.count - 1]) < limit);
    CHECK(e820_ram_top(&m) <= limit && e820_ram_top(&m) <= (top ? top : UINT64_MAX));
    CHECK(e820_clip(&m, limit) == 0);
    for (int op = 0; op < 16 && in.n; op++) {
        uint64_t base = take(&in, 6) & ~0xfffull, len = take(&in, 5) & ~0xfffull;
        uint32_t type = 1 + (uint32_t)take(&in, 1) % 5;
        if (take(&in, 1) & 1) {
            struct e820_map before = m;
            int r = e820_set_range(&m, base, len, type);
            check_sanitized(&m);
            if (r == 0 && len)
                CHECK(e820_range_is(&m, base, len, type));
            if (r != 0)
                CHECK(memcmp(&before, &m, sizeof(m)) == 0);
        } else {
            uint64_t out, sz = len ? len : 0x1000, align = 1ull << (12 + take(&in, 1) % 10);
            if (e820_find_top(&m, sz, align, limit, &out) == 0) {
                CHECK((out & (align - 1)) == 0);
                CHECK(out + sz <= limit && out + sz > out);
                CHECK(e820_range_is(&m, out, sz, E820_RAM));
            }
        }
    }
    return 0;
}
