/* The hardware task switch (taskswitch.h) on a processor state and a guest memory built
 * from the input: descriptor tables and TSSs in a 64 KiB linear space (identity, no
 * paging; accesses outside it fault like unmapped memory). Invariants: the switch never touches
 * memory outside what the callback gives; a fault in the old task leaves the state as it
 * was; a completed switch leaves TR a busy TSS with the selector asked for, CR0.TS set,
 * the local DR7 enables clear, RFLAGS bit 1 set, a usable code segment in CS (unless
 * the new task is virtual-8086) whose RPL is the CPL of SS; and a fault's vector is one
 * table 8-1 lists (#TS, #NP, #SS, #GP, #PF). */
#include "fuzz.h"
#include "taskswitch.h"

#define MEM 0x10000u
static uint8_t mem[MEM];

static int access(void *ctx, const struct ts_cpu *c, uint64_t la, void *buf, unsigned n,
                  bool write, struct ts_fault *f)
{
    (void)ctx;
    (void)c;
    if (la >= MEM || n > MEM - la) {
        *f = (struct ts_fault){ 14, true, write ? 2u : 0u, la };
        return -1;
    }
    if (write)
        memcpy(mem + la, buf, n);
    else
        memcpy(buf, mem + la, n);
    return 0;
}

/* A plausible machine: GDT at 1000h (null, flat code 08h, flat data 10h, the running
 * task's busy TSS 18h at 3000h, an available TSS 20h at 4000h, an LDT 28h at 5000h, a
 * task gate 30h, a 16-bit TSS 38h at 4800h), the new TSS image filled in; the input then
 * mutates bytes of memory and fields of the state, so most runs get deep into the
 * switch instead of stopping at the first check. */
static void put64(uint32_t at, uint64_t v) { memcpy(mem + at, &v, 8); }
static void put32(uint32_t at, uint32_t v) { memcpy(mem + at, &v, 4); }

static uint64_t desc(uint32_t base, uint32_t limit, uint32_t access, uint32_t flags)
{
    return (limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 | (uint64_t)access << 40 |
           (uint64_t)((limit >> 16) & 0xf) << 48 | (uint64_t)flags << 52 |
           (uint64_t)(base >> 24) << 56;
}

static void machine(struct ts_cpu *c)
{
    memset(mem, 0, MEM);
    put64(0x1008, desc(0, 0xfffff, 0x9a, 0xc));
    put64(0x1010, desc(0, 0xfffff, 0x92, 0xc));
    put64(0x1018, desc(0x3000, 0x67, 0x8b, 0));
    put64(0x1020, desc(0x4000, 0x67, 0x89, 0));
    put64(0x1028, desc(0x5000, 0xff, 0x82, 0));
    put64(0x1030, (uint64_t)0x20 << 16 | 0x85ull << 40);
    put64(0x1038, desc(0x4800, 0x2b, 0x81, 0));
    put64(0x5008, desc(0, 0xfffff, 0x9a, 0xc));            /* an LDT code segment, 0Ch */
    put32(0x4000 + 0x20, 0x1234);                           /* EIP */
    put32(0x4000 + 0x24, 0x202);                            /* EFLAGS */
    put32(0x4000 + 0x38, 0x8000);                           /* ESP */
    static const uint16_t segs[6] = { 0x10, 0x08, 0x10, 0x10, 0x10, 0x10 };
    for (int i = 0; i < 6; i++)
        put32(0x4000 + 0x48 + 4 * i, segs[i]);
    put32(0x4000 + 0x60, 0x28);                             /* LDT */
    memset(c, 0, sizeof(*c));
    c->gdtr_base = 0x1000;
    c->gdtr_limit = 0x3f;
    for (int i = 0; i < 6; i++)
        c->seg[i] = (struct ts_segment){ segs[i], 0, 0xffffffff, i == TS_CS ? 0xc09bu : 0xc093u };
    c->seg[TS_LDTR] = (struct ts_segment){ 0, 0, 0, TS_AR_UNUSABLE };
    c->seg[TS_TR] = (struct ts_segment){ 0x18, 0x3000, 0x67, 0x8b };
    c->cr0 = 0x11;
    c->rflags = 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    struct ts_cpu c;
    machine(&c);
    struct ts_request rq;
    static const uint16_t sels[8] = { 0x20, 0x30, 0x38, 0x18, 0x28, 0x08, 0x44, 0xfff8 };
    rq.sel = sels[take(&in, 1) & 7];
    rq.source = (enum ts_source)(take(&in, 1) & 3);
    rq.next_rip = take(&in, 4);
    rq.push_err = take(&in, 1) & 1;
    rq.err = (uint32_t)take(&in, 4);
    if (rq.source == TS_IRET) {                 /* IRET returns to a busy TSS */
        mem[0x1020 + 5] |= 2;
        mem[0x1038 + 5] |= 2;
    }
    /* Mutations: (offset, xor) pairs over the first 24 KiB, and a few state fields. */
    unsigned nmut = (unsigned)take(&in, 1) % 32;
    for (unsigned i = 0; i < nmut && in.n; i++) {
        uint32_t off = (uint32_t)take(&in, 2) % 0x6000;
        mem[off] ^= (uint8_t)take(&in, 1);
    }
    if (take(&in, 1) & 1) {
        c.seg[take(&in, 1) % TS_NSEG].ar ^= (uint32_t)take(&in, 3);
        c.gdtr_limit ^= (uint32_t)take(&in, 1);
        c.rflags ^= take(&in, 3);
        c.dr7 = take(&in, 2);
        c.efer = (take(&in, 1) == 0x5a) ? (1ull << 10) : 0;
    }
    const struct ts_mem m = { access, NULL };
    struct ts_cpu before = c;
    struct ts_fault f;
    bool dbg;
    enum ts_result r = task_switch(&c, &rq, &m, &f, &dbg);
    if (r == TS_FAULT_OLD)
        CHECK(memcmp(&before, &c, sizeof(c)) == 0);
    if (r != TS_DONE)
        CHECK(f.vector == 10 || f.vector == 11 || f.vector == 12 || f.vector == 13 ||
              f.vector == 14);
    if (r != TS_FAULT_OLD) {
        CHECK(c.seg[TS_TR].sel == rq.sel);
        CHECK((c.seg[TS_TR].ar & 0x1f) == 0x0b || (c.seg[TS_TR].ar & 0x1f) == 0x03);
        CHECK(c.cr0 & 8);
        CHECK(!(c.dr7 & 0x155));
        CHECK(c.rflags & 2);
        CHECK(!(c.rflags >> 22));
    }
    if (r == TS_DONE && !(c.rflags & (1u << 17))) {
        CHECK(!(c.seg[TS_CS].ar & TS_AR_UNUSABLE) && (c.seg[TS_CS].ar & 0x18) == 0x18);
        CHECK((c.seg[TS_CS].ar & 0x80) && (c.seg[TS_SS].ar & 0x80));
        CHECK((c.seg[TS_SS].sel & 3) == (c.seg[TS_CS].sel & 3));
        CHECK(((c.seg[TS_SS].ar >> 5) & 3) == (c.seg[TS_CS].sel & 3u));
    }
    return 0;
}
