/* Host-side table pages for the page-table tests (test_ept.c, test_npt.c): zeroed
 * aligned pages whose "physical" address is their host address, with a limit so a test
 * can make the builder run out. */
#ifndef TEST_PAGEPOOL_H
#define TEST_PAGEPOOL_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct pool {
    void **pages;
    size_t used, cap;
    size_t limit; /* allocations allowed before alloc returns NULL */
};

static inline void *pool_alloc(void *ctx, uint64_t *phys)
{
    struct pool *p = ctx;
    void *pg;

    if (p->used >= p->limit)
        return NULL;
    if (p->used == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        void **n = realloc(p->pages, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        p->pages = n;
        p->cap = cap;
    }
    pg = aligned_alloc(4096, 4096);
    if (pg == NULL)
        return NULL;
    memset(pg, 0, 4096);
    p->pages[p->used++] = pg;
    *phys = (uint64_t)(uintptr_t)pg;
    return pg;
}

static inline void *pool_p2v(void *ctx, uint64_t phys)
{
    (void)ctx;
    return (void *)(uintptr_t)phys;
}

static inline void pool_free(struct pool *p)
{
    for (size_t i = 0; i < p->used; i++)
        free(p->pages[i]);
    free(p->pages);
}

#endif
