/* Guest page-table walk (contract in gwalk.h). */
#include <stdbool.h>
#include <stddef.h>

#include "gwalk.h"

#define CR0_PG_BIT   (1ull << 31)
#define CR4_PSE_BIT  (1ull << 4)
#define CR4_PAE_BIT  (1ull << 5)
#define CR4_LA57_BIT (1ull << 12)
#define EFER_LMA_BIT (1ull << 10)
#define PTE_P        1ull
#define PTE_RW       (1ull << 1)
#define PTE_PS       (1ull << 7)
#define CR0_WP_BIT   (1ull << 16)
#define ADDR_52      0x000ffffffffff000ull
#define PTE_A        (1ull << 5)
#define PTE_D        (1ull << 6)

/* The paging entries a walk used, root first, for the accessed/dirty updates. */
struct trail {
    uint64_t gpa[5];
    unsigned size[5];
    unsigned n;
};

static void used(struct trail *t, uint64_t gpa, unsigned size)
{
    t->gpa[t->n] = gpa;
    t->size[t->n++] = size;
}

/* 32-bit paging: 1024 4-byte entries per table; a PDE with PS (and CR4.PSE) maps 4 MiB,
 * its bits 20:13 giving physical address bits 39:32 (PSE-36). */
static int walk32(const struct gwalk *g, uint32_t la, uint64_t *gpa, int *rw,
                  struct trail *t)
{
    uint32_t pde, pte;
    uint64_t pde_gpa = (g->cr3 & 0xfffff000ull) + (la >> 22) * 4u;
    if (g->read(g->ctx, pde_gpa, &pde, 4) != 0 || !(pde & PTE_P))
        return -1;
    used(t, pde_gpa, 4);
    *rw = (pde & PTE_RW) != 0;
    if ((pde & PTE_PS) && (g->cr4 & CR4_PSE_BIT)) {
        *gpa = (pde & 0xffc00000u) | ((uint64_t)((pde >> 13) & 0xffu) << 32) | (la & 0x3fffffu);
        return 0;
    }
    uint64_t pte_gpa = (pde & 0xfffff000u) + ((la >> 12) & 0x3ffu) * 4u;
    if (g->read(g->ctx, pte_gpa, &pte, 4) != 0 || !(pte & PTE_P))
        return -1;
    used(t, pte_gpa, 4);
    *rw &= (pte & PTE_RW) != 0;
    *gpa = (pte & 0xfffff000u) | (la & 0xfffu);
    return 0;
}

/* PAE and long-mode paging: 512 8-byte entries; levels numbered as in pagetable.c
 * (0 = PT). PAE starts at its 4-entry PDPT (level 2, no large pages there); 4-level at
 * level 3, 5-level at level 4. PS makes a leaf at level 1 (2 MiB) and 2 (1 GiB). */
static int walk64(const struct gwalk *g, uint64_t la, uint64_t *gpa, int *rw,
                  struct trail *t)
{
    bool pae_only = !(g->efer & EFER_LMA_BIT);
    unsigned level = pae_only ? 2 : (g->cr4 & CR4_LA57_BIT) ? 4 : 3;
    uint64_t table = pae_only ? (g->cr3 & 0xffffffe0ull) : (g->cr3 & ADDR_52);
    if (pae_only)
        la &= 0xffffffffull;
    for (;; level--) {
        uint64_t e, idx = (la >> (12u + 9u * level)) & 511u;
        if (pae_only && level == 2)
            idx &= 3u;
        if (g->read(g->ctx, table + idx * 8u, &e, 8) != 0 || !(e & PTE_P))
            return -1;
        if (!(pae_only && level == 2)) {       /* PAE PDPTEs have no R/W, A or D bit */
            *rw &= (e & PTE_RW) != 0;
            used(t, table + idx * 8u, 8);
        }
        uint64_t size = 1ull << (12u + 9u * level);
        if (level == 0 || ((level == 1 || (level == 2 && !pae_only)) && (e & PTE_PS))) {
            *gpa = (e & ADDR_52 & ~(size - 1)) | (la & (size - 1));
            return 0;
        }
        table = e & ADDR_52;
    }
}

static int walk(const struct gwalk *g, uint64_t la, uint64_t *gpa, int *rw, struct trail *t)
{
    *rw = 1;
    t->n = 0;
    if (g == NULL || g->read == NULL || gpa == NULL)
        return -1;
    if (!(g->cr0 & CR0_PG_BIT)) {
        *gpa = la & 0xffffffffull;
        return 0;
    }
    if (!(g->cr4 & CR4_PAE_BIT))
        return walk32(g, (uint32_t)la, gpa, rw, t);
    return walk64(g, la, gpa, rw, t);
}

int gwalk_translate(const struct gwalk *g, uint64_t la, uint64_t *gpa)
{
    int rw;
    struct trail t;
    return walk(g, la, gpa, &rw, &t);
}

int gwalk_access(const struct gwalk *g, uint64_t la, int write, uint64_t *gpa,
                 uint32_t *pf_err)
{
    int rw;
    struct trail t;
    if (walk(g, la, gpa, &rw, &t) != 0) {
        *pf_err = write ? 2u : 0u;
        return -1;
    }
    if (write && !rw && (g->cr0 & CR0_WP_BIT)) {
        *pf_err = 3u;
        return -1;
    }
    /* Only a permitted access marks the entries (the processor may mark them on a
     * faulting one too, SDM 4.8, but need not). */
    for (unsigned i = 0; g->set_bits && i < t.n; i++) {
        uint64_t bits = PTE_A | (write && i + 1 == t.n ? PTE_D : 0);
        if (g->set_bits(g->ctx, t.gpa[i], t.size[i], bits) != 0) {
            *pf_err = write ? 2u : 0u;
            return -1;
        }
    }
    return 0;
}

int gwalk_read(const struct gwalk *g, uint64_t la, void *buf, unsigned n)
{
    uint8_t *out = buf;
    while (n != 0) {
        uint64_t gpa;
        unsigned chunk = 0x1000u - (unsigned)(la & 0xfffu);
        if (chunk > n)
            chunk = n;
        if (gwalk_translate(g, la, &gpa) != 0 || g->read(g->ctx, gpa, out, chunk) != 0)
            return -1;
        la += chunk;
        out += chunk;
        n -= chunk;
    }
    return 0;
}
