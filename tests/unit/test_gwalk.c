/* Host tests of the guest page walk (xmhf/src/lib/gwalk.c): page tables built by hand
 * in a small fake guest-physical memory, in each paging mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gwalk.h"

#define MEM_SIZE 0x40000u     /* 256 KiB of guest-physical memory */
static uint8_t mem[MEM_SIZE];

static int mem_read(void *ctx, uint64_t gpa, void *buf, unsigned n)
{
    (void)ctx;
    if (gpa >= MEM_SIZE || n > MEM_SIZE - gpa)
        return -1;
    memcpy(buf, mem + gpa, n);
    return 0;
}

static int set_calls, set_fail;

static int mem_set_bits(void *ctx, uint64_t gpa, unsigned size, uint64_t bits)
{
    (void)ctx;
    if (set_fail || gpa >= MEM_SIZE || size > MEM_SIZE - gpa || (size != 4 && size != 8))
        return -1;
    uint64_t v = 0;
    memcpy(&v, mem + gpa, size);
    v |= bits;
    memcpy(mem + gpa, &v, size);
    set_calls++;
    return 0;
}

static void put32(uint64_t gpa, uint32_t v) { memcpy(mem + gpa, &v, 4); }
static void put64(uint64_t gpa, uint64_t v) { memcpy(mem + gpa, &v, 8); }

#define CR0_PG (1ull << 31)
#define CR0_PE 1ull
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LMA (1ull << 10)
#define P 1u
#define RW 2u
#define PS 0x80u

static int setup(void **state)
{
    (void)state;
    memset(mem, 0, sizeof(mem));
    return 0;
}

static uint64_t tr(const struct gwalk *g, uint64_t la)
{
    uint64_t gpa = 0;
    assert_int_equal(gwalk_translate(g, la, &gpa), 0);
    return gpa;
}

static void test_paging_off(void **state)
{
    (void)state;
    struct gwalk g = { CR0_PE, 0, 0, 0, mem_read, NULL, NULL };
    assert_int_equal(tr(&g, 0x12345), 0x12345);
    assert_int_equal(tr(&g, 0x1ffffffffull), 0xffffffffull);
}

/* 32-bit paging: CR3 0x1000, PDE 0 -> PT 0x2000 mapping 0x3000 to 0x5000, PDE 1 a 4 MiB
 * page at 0x1_0040_0000 (PSE-36 bits). */
static void test_32bit(void **state)
{
    (void)state;
    struct gwalk g = { CR0_PG | CR0_PE, 0x1000, CR4_PSE, 0, mem_read, NULL, NULL };
    put32(0x1000, 0x2000 | P | RW);
    put32(0x2000 + 3 * 4, 0x5000 | P);
    put32(0x1004, 0x00400000u | (1u << 13) | PS | P);
    assert_int_equal(tr(&g, 0x3abc), 0x5abc);
    assert_int_equal(tr(&g, 0x7fffff), 0x1007fffffull);
    uint64_t gpa;
    assert_int_equal(gwalk_translate(&g, 0x4000, &gpa), -1);       /* PTE not present */
    assert_int_equal(gwalk_translate(&g, 0x800000, &gpa), -1);     /* PDE not present */
    g.cr4 = 0;      /* without CR4.PSE, PS is ignored: 0x400000 is a PT beyond memory */
    assert_int_equal(gwalk_translate(&g, 0x400000, &gpa), -1);
}

/* PAE: CR3 0x1020 (a 32-byte aligned PDPT), PDPTE 1 -> PD 0x2000 whose PDE 0 is a 2 MiB
 * page at 0x600000 and PDE 1 points at the PT 0x3000. */
static void test_pae(void **state)
{
    (void)state;
    struct gwalk g = { CR0_PG | CR0_PE, 0x1020, CR4_PAE, 0, mem_read, NULL, NULL };
    put64(0x1020 + 8, 0x2000 | P);
    put64(0x2000, 0x600000 | PS | P | RW);
    put64(0x2008, 0x3000 | P | RW);
    put64(0x3000 + 5 * 8, 0x123456000ull | P);
    assert_int_equal(tr(&g, 0x40012345), 0x612345);
    assert_int_equal(tr(&g, 0x40205678), 0x123456678ull);
    uint64_t gpa;
    assert_int_equal(gwalk_translate(&g, 0x12345, &gpa), -1);       /* PDPTE 0 absent */
}

/* 4-level: PML4 0x1000, PDPT 0x2000 with a 1 GiB page in entry 3, PD 0x3000 with a
 * 2 MiB page, PT 0x4000; a canonical high address uses PML4 entry 511. */
static void test_long_mode(void **state)
{
    (void)state;
    struct gwalk g = { CR0_PG | CR0_PE, 0x1000, CR4_PAE, EFER_LMA | (1u << 8), mem_read, NULL, NULL };
    put64(0x1000, 0x2000 | P | RW);
    put64(0x1000 + 511 * 8, 0x2000 | P | RW);
    put64(0x2000 + 3 * 8, 0x80000000ull | PS | P);
    put64(0x2000, 0x3000 | P);
    put64(0x3000 + 8, 0x40000000ull | PS | P);
    put64(0x3000, 0x4000 | P);
    put64(0x4000 + 7 * 8, (1ull << 63) | 0xabc000ull | P);     /* NX is not address */
    assert_int_equal(tr(&g, 0xc0001234ull), 0x80001234ull);
    assert_int_equal(tr(&g, 0x201234), 0x40001234ull);
    assert_int_equal(tr(&g, 0x7123), 0xabc123);
    assert_int_equal(tr(&g, 0xffffff80c0000010ull), 0x80000010ull);
    uint64_t gpa;
    assert_int_equal(gwalk_translate(&g, 0x8000, &gpa), -1);
    /* 5-level: one more table on top. */
    g.cr4 |= CR4_LA57;
    g.cr3 = 0x5000;
    put64(0x5000, 0x1000 | P);
    assert_int_equal(tr(&g, 0x7123), 0xabc123);
}

static void test_read_across_pages(void **state)
{
    (void)state;
    struct gwalk g = { CR0_PG | CR0_PE, 0x1000, 0, 0, mem_read, NULL, NULL };
    put32(0x1000, 0x2000 | P);
    put32(0x2000 + 0 * 4, 0x9000 | P);          /* la 0x0000 -> 0x9000 */
    put32(0x2000 + 1 * 4, 0x6000 | P);          /* la 0x1000 -> 0x6000 */
    mem[0x9ffe] = 0x0f;
    mem[0x9fff] = 0x01;
    mem[0x6000] = 0xc1;
    uint8_t b[3];
    assert_int_equal(gwalk_read(&g, 0xffe, b, 3), 0);
    assert_int_equal(b[0], 0x0f);
    assert_int_equal(b[1], 0x01);
    assert_int_equal(b[2], 0xc1);
    assert_int_equal(gwalk_read(&g, 0x1ffe, b, 3), -1);        /* la 0x2000 absent */
    assert_int_equal(gwalk_translate(NULL, 0, NULL), -1);
}

static uint32_t get32(uint64_t gpa) { uint32_t v; memcpy(&v, mem + gpa, 4); return v; }
static uint64_t get64(uint64_t gpa) { uint64_t v; memcpy(&v, mem + gpa, 8); return v; }

#define A 0x20u
#define D 0x40u

/* gwalk_access sets A on every entry it used and D on the leaf of a write (SDM 4.8);
 * nothing on a faulting access, nothing without a set_bits callback, and PAE PDPTEs keep
 * their bits as they are. */
static void test_accessed_dirty(void **state)
{
    (void)state;
    uint64_t gpa;
    uint32_t err;
    /* 32-bit: PD 0x1000 -> PT 0x2000 -> 0x9000; a 4 MiB page at 4 MiB. */
    struct gwalk g = { CR0_PG | CR0_PE, 0x1000, CR4_PSE, 0, mem_read, NULL, mem_set_bits };
    put32(0x1000, 0x2000 | P | RW);
    put32(0x2000, 0x9000 | P | RW);
    put32(0x1004, 0x800000 | PS | P);           /* read-only 4 MiB page */
    assert_int_equal(gwalk_access(&g, 0x10, 0, &gpa, &err), 0);
    assert_int_equal(gpa, 0x9010);
    assert_int_equal(get32(0x1000), 0x2000 | P | RW | A);
    assert_int_equal(get32(0x2000), 0x9000 | P | RW | A);
    assert_int_equal(gwalk_access(&g, 0x10, 1, &gpa, &err), 0);
    assert_int_equal(get32(0x1000), 0x2000 | P | RW | A);      /* D only on the leaf */
    assert_int_equal(get32(0x2000), 0x9000 | P | RW | A | D);
    g.cr0 |= 1u << 16;                                          /* WP: the write faults */
    assert_int_equal(gwalk_access(&g, 0x400010, 1, &gpa, &err), -1);
    assert_int_equal(err, 3);
    assert_int_equal(get32(0x1004), 0x800000 | PS | P);         /* untouched */
    assert_int_equal(gwalk_access(&g, 0x400010, 0, &gpa, &err), 0);
    assert_int_equal(get32(0x1004), 0x800000 | PS | P | A);
    /* Without the callback nothing changes. */
    put32(0x2004, 0xa000 | P | RW);
    g.set_bits = NULL;
    assert_int_equal(gwalk_access(&g, 0x1000, 1, &gpa, &err), 0);
    assert_int_equal(get32(0x2004), 0xa000 | P | RW);

    /* PAE: the PDPTE (0x3000) keeps its bits; PD 0x4000 2 MiB page written. */
    memset(mem, 0, sizeof(mem));
    struct gwalk p = { CR0_PG | CR0_PE, 0x3000, CR4_PAE, 0, mem_read, NULL, mem_set_bits };
    put64(0x3000, 0x4000 | P);
    put64(0x4000, 0x200000 | PS | P | RW);
    set_calls = 0;
    assert_int_equal(gwalk_access(&p, 0x1234, 1, &gpa, &err), 0);
    assert_int_equal(gpa, 0x201234);
    assert_int_equal(get64(0x3000), 0x4000 | P);
    assert_int_equal(get64(0x4000), 0x200000 | PS | P | RW | A | D);
    assert_int_equal(set_calls, 1);

    /* 4-level: every level gets A, the 4 KiB leaf D; a missing PT sets nothing. */
    memset(mem, 0, sizeof(mem));
    struct gwalk l = { CR0_PG | CR0_PE, 0x1000, CR4_PAE, EFER_LMA, mem_read, NULL,
                       mem_set_bits };
    put64(0x1000, 0x2000 | P | RW);
    put64(0x2000, 0x3000 | P | RW);
    put64(0x3000, 0x4000 | P | RW);
    put64(0x3008, 0x5000 | P | RW);             /* PT 0x5000 is empty */
    put64(0x4000 + 3 * 8, 0xb000 | P | RW);
    assert_int_equal(gwalk_access(&l, 0x3008, 1, &gpa, &err), 0);
    assert_int_equal(gpa, 0xb008);
    assert_int_equal(get64(0x1000), 0x2000 | P | RW | A);
    assert_int_equal(get64(0x2000), 0x3000 | P | RW | A);
    assert_int_equal(get64(0x3000), 0x4000 | P | RW | A);
    assert_int_equal(get64(0x4000 + 3 * 8), 0xb000 | P | RW | A | D);
    assert_int_equal(gwalk_access(&l, 0x200000, 0, &gpa, &err), -1);
    assert_int_equal(err, 0);
    assert_int_equal(get64(0x3008), 0x5000 | P | RW);
    /* An entry the callback refuses to update: the access fails like a missing one. */
    set_fail = 1;
    assert_int_equal(gwalk_access(&l, 0x3008, 1, &gpa, &err), -1);
    assert_int_equal(err, 2);
    set_fail = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_paging_off, setup),
        cmocka_unit_test_setup(test_32bit, setup),
        cmocka_unit_test_setup(test_pae, setup),
        cmocka_unit_test_setup(test_long_mode, setup),
        cmocka_unit_test_setup(test_read_across_pages, setup),
        cmocka_unit_test_setup(test_accessed_dirty, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
