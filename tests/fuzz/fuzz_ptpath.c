/* The per-CPU private paths (ptpath.h) over NPT-format shared tables: the shared map is
 * built and grown by npt_map at places the input picks, a path is built to one page (the
 * "APIC page", its entry cleared as the owner does), the shared map keeps growing (lazy
 * MMIO mappings, splits, memory types rewritten) and the path is synced after each
 * change, as npt-x86svm.c and ept-x86vmx.c do. Invariant: through the private root every probed address translates
 * exactly as through the shared root, except the path's own page, which stays absent. */
#include "fuzz.h"
#include "npt.h"
#include "ptpath.h"

#define POOL 192u
struct pool { unsigned used; };
static uint8_t pages[POOL][4096] __attribute__((aligned(4096)));

static void *alloc(void *ctx, uint64_t *pa)
{
    struct pool *p = ctx;
    if (p->used >= POOL)
        return NULL;
    void *pg = pages[p->used++];
    memset(pg, 0, 4096);
    *pa = (uint64_t)(uintptr_t)pg;
    return pg;
}

static void *p2v(void *ctx, uint64_t pa)
{
    (void)ctx;
    return (void *)(uintptr_t)pa;
}

/* Addresses the input chooses near each other and far apart, all below 2^48. */
static uint64_t addr(struct in *in, uint64_t near)
{
    uint64_t v = take(in, 6) & 0xfffffffff000ull;
    switch (take(in, 1) & 3) {
    case 0: return (near & ~0x1fffffull) | (v & 0x1ff000);     /* same 2 MiB */
    case 1: return (near & ~0x3fffffffull) | (v & 0x3ffff000); /* same 1 GiB */
    default: return v;
    }
}

/* Memory types for npt_retype: by 4 KiB page, with whole 2 MiB blocks WC now and then
 * (the large-page PAT bit), so syncs after a change of types are exercised too. */
static uint8_t seed;
static int type_of(void *ctx, uint64_t gpa, uint64_t sz)
{
    (void)ctx;
    static const int types[4] = { 0, 1, 4, 6 };
    if (sz > 0x1000)
        return (seed & 1) ? 1 : -1;
    return types[((gpa >> 12) + seed) & 3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    struct pool pool = { 0 };
    struct pt_alloc a = { alloc, p2v, &pool };
    uint64_t pa, *root = alloc(&pool, &pa);
    uint64_t page = take(&in, 6) & 0xfffffffff000ull;
    const uint64_t prot = NPT_RWX | NPT_MT_UC;
    /* the shared map has the page as a 4 KiB leaf before the path is built to it */
    if (npt_map(root, page, page, 0x1000, prot, &a) != 0)
        return 0;
    struct pt_path p;
    if (pt_path_alloc(&p, &a) != 0)
        return 0;
    pt_path_build(&p, root, page, &npt_format, &a);
    *pt_path_leaf(&p) = 0;
    uint64_t probes[16];
    unsigned np = 0;
    for (int op = 0; op < 12 && in.n; op++) {
        uint64_t g = addr(&in, page), len = (take(&in, 1) & 1) ? 0x200000 : 0x1000;
        g &= ~(len - 1);
        if (g <= page && page < g + len)
            continue;                       /* the owner's page is never remapped */
        bool mapped = false;
        if (take(&in, 1) % 4 == 0) {
            seed = (uint8_t)take(&in, 1);
            if (npt_retype(root, g & ~0x1fffffull, 0x200000, type_of, NULL, &a) != 0)
                break;
        } else if (npt_map(root, g, g, len, prot, &a) != 0) {
            break;
        } else {
            mapped = true;
        }
        pt_path_sync(&p, root, &npt_format, &a);
        if (mapped && np < 16)
            probes[np++] = g + (take(&in, 3) & (len - 1) & ~0xfffull);
        for (unsigned i = 0; i < np; i++) {
            uint64_t s1, s2;
            uint64_t *es = npt_lookup(root, probes[i], &s1, &a);
            uint64_t *ep = npt_lookup(p.t[0], probes[i], &s2, &a);
            CHECK(es != NULL);
            CHECK(ep != NULL);
            CHECK(*ep == *es && s1 == s2);
        }
        CHECK(npt_lookup(p.t[0], page, NULL, &a) == NULL);
    }
    return 0;
}
