/* Hardware task switch (contract in taskswitch.h). Steps numbered as SDM Vol. 3A 8.3;
 * the checks on the new task's segments in the order of table 8-1. Where the SDM leaves
 * a detail open (the 16-bit TSS's FS/GS and register upper halves, CR3 without paging)
 * this does what the processors' reference models Bochs and QEMU do. */
#include <stddef.h>

#include "taskswitch.h"

#define TSS16_AVAIL 1u
#define TSS16_BUSY  3u
#define LDT_TYPE    2u
#define TSS32_AVAIL 9u
#define TYPE_BUSY   2u
#define AR_TYPE(ar) ((ar) & 0xfu)
#define AR_S        (1u << 4)
#define AR_DPL(ar)  (((ar) >> 5) & 3u)
#define AR_P        (1u << 7)
#define AR_DB       (1u << 14)
#define CODE        8u          /* type bit 3: code segment */
#define CONFORMING  4u          /* code: conforming */
#define RW          2u          /* code: readable; data: writable */
#define ACCESSED    1u
#define RF_FIXED    2ull
#define RF_NT       (1ull << 14)
#define RF_VM       (1ull << 17)
#define CR0_PG      (1ull << 31)
#define CR0_TS      (1ull << 3)
#define EFER_LMA    (1ull << 10)
#define DR7_LOCAL   0x155ull    /* L0-L3 and LE: cleared by a task switch (SDM 18.2.4) */

#define EXC_DB 1
#define EXC_TS 10
#define EXC_NP 11
#define EXC_SS 12
#define EXC_GP 13

/* Offsets in a 32-bit TSS (figure 8-2) and a 16-bit one (figure 8-11). */
#define T32_CR3   0x1c
#define T32_EIP   0x20
#define T32_SEGS  0x48
#define T32_LDT   0x60
#define T32_T     0x64
#define T32_SIZE  0x68
#define T16_IP    0x0e
#define T16_SEGS  0x22
#define T16_LDT   0x2a
#define T16_SIZE  0x2c

static int fail(struct ts_fault *f, int vector, uint32_t err)
{
    f->vector = vector;
    f->has_err = true;
    f->err = err;
    f->cr2 = 0;
    return -1;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) { return get16(p) | (uint32_t)get16(p + 2) << 16; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }

static int mem(const struct ts_mem *m, const struct ts_cpu *c, uint64_t la, void *buf,
               unsigned n, bool write, struct ts_fault *f)
{
    f->vector = -1;
    return m->access(m->ctx, c, la & 0xffffffffull, buf, n, write, f) ? -1 : 0;
}

/* A descriptor's segment state in the VMX access-rights format. */
static struct ts_segment seg_of(uint16_t sel, uint64_t d)
{
    struct ts_segment s;
    s.sel = sel;
    s.base = ((d >> 16) & 0xffffffull) | ((d >> 32) & 0xff000000ull);
    s.limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    if (d & (1ull << 55))
        s.limit = (s.limit << 12) | 0xfff;
    s.ar = (uint32_t)((d >> 40) & 0xff) | (uint32_t)((d >> 52) & 0xf) << 12;
    return s;
}

/* The descriptor of sel in the GDT or the current LDT: 1 when sel is beyond the table
 * (or the LDT is unusable), -1 on a memory fault (in *f), 0 with *d and its address. */
static int read_desc(const struct ts_cpu *c, const struct ts_mem *m, uint16_t sel,
                     uint64_t *d, uint64_t *la, struct ts_fault *f)
{
    uint64_t base = c->gdtr_base;
    uint32_t limit = c->gdtr_limit;
    if (sel & 4) {
        if (c->seg[TS_LDTR].ar & TS_AR_UNUSABLE)
            return 1;
        base = c->seg[TS_LDTR].base;
        limit = c->seg[TS_LDTR].limit;
    }
    if ((uint32_t)(sel | 7u) > limit)
        return 1;
    *la = base + (sel & ~7u);
    return mem(m, c, *la, d, 8, false, f);
}

/* The processor sets a code or data descriptor's accessed bit when it loads it. */
static int mark_accessed(const struct ts_cpu *c, const struct ts_mem *m, uint64_t la,
                         uint32_t ar, struct ts_fault *f)
{
    if (ar & ACCESSED)
        return 0;
    uint8_t b = (uint8_t)((ar & 0xff) | ACCESSED);
    return mem(m, c, la + 5, &b, 1, true, f);
}

/* The new task's LDT (table 8-1 rows "LDT selector valid", "LDT present"). */
static int load_ldtr(struct ts_cpu *c, const struct ts_mem *m, uint16_t sel,
                     struct ts_fault *f)
{
    struct ts_segment *s = &c->seg[TS_LDTR];
    if (!(sel & 0xfffc)) {
        *s = (struct ts_segment){ sel, 0, 0, TS_AR_UNUSABLE };
        return 0;
    }
    uint64_t d, la;
    if (sel & 4)
        return fail(f, EXC_TS, sel & 0xfffc);
    int r = read_desc(c, m, sel, &d, &la, f);
    if (r < 0)
        return -1;
    struct ts_segment n = seg_of(sel, d);
    if (r > 0 || (n.ar & AR_S) || AR_TYPE(n.ar) != LDT_TYPE || !(n.ar & AR_P))
        return fail(f, EXC_TS, sel & 0xfffc);
    *s = n;
    return 0;
}

/* Reads and type-checks the descriptor of a code or data segment: 0, or a fault. */
static int fetch(const struct ts_cpu *c, const struct ts_mem *m, uint16_t sel,
                 struct ts_segment *s, uint64_t *la, struct ts_fault *f)
{
    uint64_t d;
    int r = read_desc(c, m, sel, &d, la, f);
    if (r < 0)
        return -1;
    if (r > 0)
        return fail(f, EXC_TS, sel & 0xfffc);
    *s = seg_of(sel, d);
    if (!(s->ar & AR_S))
        return fail(f, EXC_TS, sel & 0xfffc);
    return 0;
}

/* Segment registers of a virtual-8086 task: base = selector x 16, 64 KiB, DPL 3. */
static void load_v86(struct ts_cpu *c)
{
    for (int i = TS_ES; i <= TS_GS; i++) {
        struct ts_segment *s = &c->seg[i];
        s->base = (uint64_t)s->sel << 4;
        s->limit = 0xffff;
        s->ar = 0xf3;
    }
}

/* The code, stack and data segments of a protected-mode task (table 8-1, rows 6-16). */
static int load_segments(struct ts_cpu *c, const struct ts_mem *m, struct ts_fault *f)
{
    struct ts_segment cs, ss, ds[4];
    uint64_t cs_la, ss_la, ds_la[4];
    static const int data[4] = { TS_DS, TS_ES, TS_FS, TS_GS };
    uint16_t cs_sel = c->seg[TS_CS].sel, ss_sel = c->seg[TS_SS].sel;
    unsigned cpl = cs_sel & 3;
    if (!(cs_sel & 0xfffc) || fetch(c, m, cs_sel, &cs, &cs_la, f) || !(AR_TYPE(cs.ar) & CODE))
        return f->vector >= 0 && f->vector != EXC_TS ? -1 : fail(f, EXC_TS, cs_sel & 0xfffc);
    if (!(ss_sel & 0xfffc) || (ss_sel & 3) != cpl)
        return fail(f, EXC_TS, ss_sel & 0xfffc);
    if (fetch(c, m, ss_sel, &ss, &ss_la, f))
        return -1;
    if ((AR_TYPE(ss.ar) & CODE) || !(AR_TYPE(ss.ar) & RW))
        return fail(f, EXC_TS, ss_sel & 0xfffc);
    if (!(ss.ar & AR_P))
        return fail(f, EXC_SS, ss_sel & 0xfffc);
    if (AR_DPL(ss.ar) != cpl)
        return fail(f, EXC_TS, ss_sel & 0xfffc);
    bool conforming = AR_TYPE(cs.ar) & CONFORMING;
    if (conforming ? AR_DPL(cs.ar) > cpl : AR_DPL(cs.ar) != cpl)
        return fail(f, EXC_TS, cs_sel & 0xfffc);
    for (int i = 0; i < 4; i++) {
        uint16_t sel = c->seg[data[i]].sel;
        if (!(sel & 0xfffc))
            continue;
        if (fetch(c, m, sel, &ds[i], &ds_la[i], f))
            return -1;
        uint32_t t = AR_TYPE(ds[i].ar);
        if ((t & CODE) && !(t & RW))
            return fail(f, EXC_TS, sel & 0xfffc);     /* execute-only code */
        bool check_dpl = !(t & CODE) || !(t & CONFORMING);
        unsigned rpl = sel & 3, need = rpl > cpl ? rpl : cpl;
        if (check_dpl && AR_DPL(ds[i].ar) < need)
            return fail(f, EXC_TS, sel & 0xfffc);
    }
    if (!(cs.ar & AR_P))
        return fail(f, EXC_NP, cs_sel & 0xfffc);
    for (int i = 0; i < 4; i++) {
        uint16_t sel = c->seg[data[i]].sel;
        if ((sel & 0xfffc) && !(ds[i].ar & AR_P))
            return fail(f, EXC_NP, sel & 0xfffc);
    }
    /* All good: loaded, with the accessed bits set as the processor does. */
    if (mark_accessed(c, m, cs_la, cs.ar, f) || mark_accessed(c, m, ss_la, ss.ar, f))
        return -1;
    c->seg[TS_CS] = cs;
    c->seg[TS_CS].ar |= ACCESSED;
    c->seg[TS_SS] = ss;
    c->seg[TS_SS].ar |= ACCESSED;
    for (int i = 0; i < 4; i++) {
        struct ts_segment *s = &c->seg[data[i]];
        if (!(s->sel & 0xfffc)) {
            *s = (struct ts_segment){ s->sel, 0, 0, TS_AR_UNUSABLE };
            continue;
        }
        if (mark_accessed(c, m, ds_la[i], ds[i].ar, f))
            return -1;
        *s = ds[i];
        s->ar |= ACCESSED;
    }
    return 0;
}

/* An exception's error code on the new task's stack (6.12.2), 4 bytes from a 32-bit TSS,
 * 2 from a 16-bit one; the stack's B flag says ESP or SP. */
static int push_error_code(struct ts_cpu *c, const struct ts_mem *m, bool tss32,
                           uint32_t err, struct ts_fault *f)
{
    unsigned size = tss32 ? 4 : 2;
    const struct ts_segment *ss = &c->seg[TS_SS];
    bool big = ss->ar & AR_DB;
    uint64_t sp = c->gpr[4];
    uint32_t nsp = big ? (uint32_t)sp - size : (uint16_t)((uint16_t)sp - size);
    if (!(c->rflags & RF_VM) && (uint64_t)nsp + size - 1 > ss->limit)
        return fail(f, EXC_SS, 0);
    uint8_t b[4];
    put32(b, err);
    if (mem(m, c, ss->base + nsp, b, size, true, f))
        return -1;
    c->gpr[4] = big ? nsp : (sp & ~0xffffull) | nsp;
    return 0;
}

enum ts_result task_switch(struct ts_cpu *c, const struct ts_request *rq,
                           const struct ts_mem *m, struct ts_fault *f, bool *debug_trap)
{
    uint16_t sel = rq->sel;
    bool iret = rq->source == TS_IRET, nest = rq->source == TS_CALL || rq->source == TS_GATE;
    f->vector = -1;
    *debug_trap = false;
    if (c->efer & EFER_LMA) {                   /* no task switches in IA-32e mode */
        fail(f, EXC_GP, 0);
        return TS_FAULT_OLD;
    }
    /* The new TSS descriptor: in the GDT, a TSS of the right busy state, present, big
     * enough (the first checks of table 8-1). */
    uint64_t d, dla;
    int bad = iret ? EXC_TS : EXC_GP;
    int r = (sel & 4) ? 1 : read_desc(c, m, sel, &d, &dla, f);
    if (r < 0)
        return TS_FAULT_OLD;
    if (r > 0) {
        fail(f, bad, sel & 0xfffc);
        return TS_FAULT_OLD;
    }
    struct ts_segment ntr = seg_of(sel, d);
    uint32_t type = AR_TYPE(ntr.ar) & ~TYPE_BUSY;
    bool busy = ntr.ar & TYPE_BUSY;
    if ((ntr.ar & AR_S) || (type != TSS16_AVAIL && type != TSS32_AVAIL) || busy != iret) {
        fail(f, bad, sel & 0xfffc);
        return TS_FAULT_OLD;
    }
    if (!(ntr.ar & AR_P)) {
        fail(f, EXC_NP, sel & 0xfffc);
        return TS_FAULT_OLD;
    }
    bool tss32 = type == TSS32_AVAIL;
    unsigned size = tss32 ? T32_SIZE : T16_SIZE;
    if (ntr.limit < size - 1) {
        fail(f, EXC_TS, sel & 0xfffc);
        return TS_FAULT_OLD;
    }
    uint8_t nt[T32_SIZE];
    if (mem(m, c, ntr.base, nt, size, false, f))
        return TS_FAULT_OLD;

    /* Steps 5-7: the old task's busy flag (JMP, IRET), NT in the EFLAGS image it keeps
     * (IRET), its dynamic state into its TSS. */
    struct ts_segment *otr = &c->seg[TS_TR];
    bool old32 = AR_TYPE(otr->ar) & 8;
    uint64_t old_la;
    if (!nest && !(otr->sel & 4) && read_desc(c, m, otr->sel, &d, &old_la, f) == 0) {
        uint8_t b = (uint8_t)((d >> 40) & ~(uint64_t)TYPE_BUSY);
        if (mem(m, c, old_la + 5, &b, 1, true, f))
            return TS_FAULT_OLD;
    } else if (f->vector >= 0) {
        return TS_FAULT_OLD;
    }
    uint64_t saved_flags = iret ? c->rflags & ~RF_NT : c->rflags;
    uint8_t ot[T32_SIZE];
    unsigned dyn = old32 ? T32_EIP : T16_IP, dyn_end = old32 ? T32_LDT : T16_LDT;
    if (mem(m, c, otr->base + dyn, ot + dyn, dyn_end - dyn, false, f))
        return TS_FAULT_OLD;
    if (old32) {
        put32(ot + T32_EIP, (uint32_t)rq->next_rip);
        put32(ot + T32_EIP + 4, (uint32_t)saved_flags);
        for (int i = 0; i < 8; i++)
            put32(ot + 0x28 + 4 * i, (uint32_t)c->gpr[i]);
        for (int i = 0; i < 6; i++)
            put16(ot + T32_SEGS + 4 * i, c->seg[i].sel);
    } else {
        put16(ot + T16_IP, (uint16_t)rq->next_rip);
        put16(ot + T16_IP + 2, (uint16_t)saved_flags);
        for (int i = 0; i < 8; i++)
            put16(ot + 0x12 + 2 * i, (uint16_t)c->gpr[i]);
        for (int i = 0; i < 4; i++)
            put16(ot + T16_SEGS + 2 * i, c->seg[i].sel);
    }
    if (mem(m, c, otr->base + dyn, ot + dyn, dyn_end - dyn, true, f))
        return TS_FAULT_OLD;
    /* Nesting (CALL, interrupt, exception): the new TSS links back to the old one. */
    if (nest) {
        uint8_t link[2];
        put16(link, otr->sel);
        if (mem(m, c, ntr.base, link, 2, true, f))
            return TS_FAULT_OLD;
    }
    /* Step 9: the new task's busy flag (IRET found it set already). */
    if (!iret) {
        uint8_t b = (uint8_t)((ntr.ar & 0xff) | TYPE_BUSY);
        if (mem(m, c, dla + 5, &b, 1, true, f))
            return TS_FAULT_OLD;
    }

    /* Steps 10-11: the switch is done; from here a fault belongs to the new task. */
    ntr.ar |= TYPE_BUSY;
    *otr = ntr;
    c->cr0 |= CR0_TS;
    c->dr7 &= ~DR7_LOCAL;
    uint16_t ldt;
    if (tss32) {
        if (c->cr0 & CR0_PG)
            c->cr3 = get32(nt + T32_CR3);
        c->rip = get32(nt + T32_EIP);
        c->rflags = get32(nt + T32_EIP + 4);
        for (int i = 0; i < 8; i++)
            c->gpr[i] = get32(nt + 0x28 + 4 * i);
        for (int i = 0; i < 6; i++)
            c->seg[i].sel = get16(nt + T32_SEGS + 4 * i);
        ldt = get16(nt + T32_LDT);
        *debug_trap = nt[T32_T] & 1;
    } else {
        c->rip = get16(nt + T16_IP);
        c->rflags = get16(nt + T16_IP + 2);
        for (int i = 0; i < 8; i++)
            c->gpr[i] = 0xffff0000u | get16(nt + 0x12 + 2 * i);
        for (int i = 0; i < 4; i++)
            c->seg[i].sel = get16(nt + T16_SEGS + 2 * i);
        c->seg[TS_FS].sel = c->seg[TS_GS].sel = 0;
        ldt = get16(nt + T16_LDT);
    }
    c->rflags = (c->rflags & 0x3f7fd7ull) | RF_FIXED;   /* defined flags only */
    if (nest)
        c->rflags |= RF_NT;
    if (load_ldtr(c, m, ldt, f))
        return TS_FAULT_NEW;
    if (c->rflags & RF_VM)
        load_v86(c);
    else if (load_segments(c, m, f))
        return TS_FAULT_NEW;
    if (rq->push_err && push_error_code(c, m, tss32, rq->err, f))
        return TS_FAULT_NEW;
    return TS_DONE;
}
