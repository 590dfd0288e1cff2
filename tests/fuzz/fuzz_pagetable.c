/* The nested page-table builders (pagetable.h through ept.h and npt.h): a sequence of
 * map / unmap / retype operations on an EPT and an NPT with a page pool that may run
 * dry. After each, a model of the mappings (one entry per 4 KiB page of a 1 GiB window
 * plus a few far pages) must agree with lookups through the tables: what is mapped
 * points where it was mapped with the permissions given, what was unmapped is absent,
 * every leaf carries the memory type type_of gives its page (retype), and a failed call
 * leaves earlier mappings alone. */
#include "fuzz.h"
#include "ept.h"
#include "npt.h"

#define WINDOW_PAGES 512u          /* the model: 2 MiB of 4 KiB pages, at a chosen base */
#define POOL 256u

struct pool { uint8_t (*pages)[4096]; unsigned used, limit; };

static void *alloc(void *ctx, uint64_t *pa)
{
    struct pool *p = ctx;
    if (p->used >= p->limit)
        return NULL;
    void *pg = p->pages[p->used++];
    memset(pg, 0, 4096);
    *pa = (uint64_t)(uintptr_t)pg;
    return pg;
}

static void *p2v(void *ctx, uint64_t pa)
{
    (void)ctx;
    return (void *)(uintptr_t)pa;
}

/* The types a retype asks for: with an odd seed, one per 4 KiB page (a 2 MiB block is
 * then "mixed" and must be split); with an even one, one per 2 MiB block. Either way a
 * page's type is what type_of says for it alone, which the check compares with. */
static uint8_t type_seed;
static int type_of(void *ctx, uint64_t gpa, uint64_t sz)
{
    (void)ctx;
    static const int types[4] = { 0, 1, 4, 6 };
    if (type_seed & 1)
        return sz > 0x1000 ? -1 : types[((gpa >> 12) + type_seed) & 3];
    return types[((gpa >> 21) + type_seed) & 3];
}

struct model { bool present; uint64_t hpa; };

static void run(struct in *in, bool ept)
{
    static uint8_t pages[POOL][4096] __attribute__((aligned(4096)));
    struct pool pool = { pages, 0, 8 + (unsigned)take(in, 1) % POOL };
    struct pt_alloc a = { alloc, p2v, &pool };
    struct ept_alloc ea = { alloc, p2v, &pool };
    uint64_t pa, *root = alloc(&pool, &pa);
    if (!root)
        return;
    uint64_t win = (take(in, 2) & 0xffff) << 21;        /* a 2 MiB window below 2^37 */
    static struct model m[WINDOW_PAGES];
    memset(m, 0, sizeof(m));
    bool types_known = false;
    for (int op = 0; op < 24 && in->n; op++) {
        unsigned kind = (unsigned)take(in, 1) % 3;
        unsigned first = (unsigned)take(in, 2) % WINDOW_PAGES;
        unsigned count = 1 + (unsigned)take(in, 2) % (WINDOW_PAGES - first);
        uint64_t gpa = win + (uint64_t)first * 4096, len = (uint64_t)count * 4096;
        uint64_t hpa = (take(in, 4) & 0xfffff) << 12;
        int r;
        if (kind == 0) {
            uint64_t prot = ept ? (EPT_R | EPT_W | EPT_X | (6ull << EPT_MT_SHIFT)) : (NPT_RWX);
            r = ept ? ept_map(root, gpa, hpa, len, prot, &ea) : npt_map(root, gpa, hpa, len, prot, &a);
            if (r == 0) {
                for (unsigned i = 0; i < count; i++)
                    m[first + i] = (struct model){ true, hpa + (uint64_t)i * 4096 };
                types_known = false;
            }
        } else if (kind == 1) {
            r = ept ? ept_unmap(root, gpa, len, &ea) : npt_unmap(root, gpa, len, &a);
            if (r == 0)
                for (unsigned i = 0; i < count; i++)
                    m[first + i].present = false;
        } else {
            type_seed = (uint8_t)take(in, 1);
            r = ept ? ept_retype(root, win, 0x200000, type_of, NULL, &ea)
                    : npt_retype(root, win, 0x200000, type_of, NULL, &a);
            types_known = r == 0;
        }
        /* A failure (out of pages) may have done part of a map or unmap: the model is
         * re-read for those pages, but nothing outside the call's range may change. */
        for (unsigned i = 0; i < WINDOW_PAGES; i++) {
            uint64_t g = win + (uint64_t)i * 4096, size;
            uint64_t *e = ept ? ept_lookup(root, g, &size, &ea) : npt_lookup(root, g, &size, &a);
            bool in_call = i >= first && i < first + count && kind != 2;
            if (r != 0 && in_call) {
                m[i].present = e != NULL;
                if (e)
                    m[i].hpa = (*e & 0x000ffffffffff000ull & ~(size - 1)) + (g & (size - 1));
                continue;
            }
            CHECK((e != NULL) == m[i].present);
            if (!e)
                continue;
            uint64_t out = (*e & 0x000ffffffffff000ull & ~(size - 1)) + (g & (size - 1));
            CHECK(out == m[i].hpa);
            if (types_known) {
                int t = type_of(NULL, g, 4096);
                if (ept) {
                    CHECK(((*e >> EPT_MT_SHIFT) & 7) == (uint64_t)t);
                } else {
                    bool pat = size > 4096 ? (*e & NPT_PAT_LARGE) : (*e & NPT_PAT_4K);
                    unsigned idx = (pat ? 4 : 0) | ((*e & NPT_PCD) ? 2 : 0) | ((*e & NPT_PWT) ? 1 : 0);
                    static const unsigned want[7] = { 3, 4, 3, 3, 1, 5, 0 };
                    CHECK(idx == want[t]);
                }
            }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    run(&in, take(&in, 1) & 1);
    return 0;
}
