/* Host tests of ICR decoding and IPI destination resolution (xmhf/src/lib/icr.c).
 * Expected values are written out by hand from Intel SDM Vol. 3A 11.6.1, 11.6.2,
 * 11.12.9 and 11.12.10, not computed by a second copy of the rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "apic.h" /* included together on purpose: the names must not collide */
#include "icr.h"

/* The two headers describe the same register and must agree. */
_Static_assert(ICR_DM_INIT == (ICR_MODE_INIT << ICR_LO_MODE_SHIFT), "INIT mode");
_Static_assert(ICR_DM_STARTUP == (ICR_MODE_STARTUP << ICR_LO_MODE_SHIFT), "STARTUP mode");
_Static_assert(ICR_DM_NMI == (ICR_MODE_NMI << ICR_LO_MODE_SHIFT), "NMI mode");
_Static_assert(ICR_LEVEL_ASSERT == ICR_LO_LEVEL_ASSERT, "level bit");
_Static_assert(ICR_TRIGGER_LEVEL == ICR_LO_TRIGGER_LEVEL, "trigger bit");
_Static_assert(ICR_DELIVERY_PENDING == ICR_LO_STATUS, "delivery status bit");
_Static_assert(X2APIC_MSR(APIC_ICR_LO) == ICR_X2APIC_MSR, "x2APIC ICR MSR");

#define BIT(i) (1ull << (i))

#define FLAT_DFR    0xffffffffu /* model 1111b, reserved bits all 1s (reset value) */
#define CLUSTER_DFR 0x0fffffffu /* model 0000b */
#define LDR(id)     ((uint32_t)(id) << 24)

static struct icr_cmd xd(uint32_t lo, uint32_t hi)
{
    struct icr_cmd c;

    memset(&c, 0xa5, sizeof(c)); /* every field must be written by the decoder */
    icr_decode_xapic(lo, hi, &c);
    return c;
}

static struct icr_cmd x2d(uint64_t icr)
{
    struct icr_cmd c;

    memset(&c, 0x5a, sizeof(c));
    icr_decode_x2apic(icr, &c);
    return c;
}

static void assert_cmd(const struct icr_cmd *c, unsigned vector, unsigned mode, bool logical,
                       bool level, bool trigger, unsigned sh, uint32_t dest)
{
    assert_int_equal(c->vector, vector);
    assert_int_equal(c->delivery_mode, mode);
    assert_int_equal(c->logical, logical);
    assert_int_equal(c->level_assert, level);
    assert_int_equal(c->trigger_level, trigger);
    assert_int_equal(c->shorthand, sh);
    assert_int_equal(c->dest, dest);
}

/* --- decoding ------------------------------------------------------------------------ */

static void test_decode_xapic_known_values(void **state)
{
    (void)state;
    struct icr_cmd c;

    /* The classic BIOS broadcast: INIT, assert, edge, all excluding self. */
    c = xd(0x000c4500, 0);
    assert_cmd(&c, 0, ICR_MODE_INIT, false, true, false, ICR_SH_OTHERS, 0);
    /* ...and its STARTUP at 0x9a000. */
    c = xd(0x000c4600 | 0x9a, 0);
    assert_cmd(&c, 0x9a, ICR_MODE_STARTUP, false, true, false, ICR_SH_OTHERS, 0);
    /* Linux: INIT assert, level-triggered, to APIC ID 3; then the de-assert. */
    c = xd(0x0000c500, 0x03000000);
    assert_cmd(&c, 0, ICR_MODE_INIT, false, true, true, ICR_SH_NONE, 3);
    c = xd(0x00008500, 0x03000000);
    assert_cmd(&c, 0, ICR_MODE_INIT, false, false, true, ICR_SH_NONE, 3);
    /* Fixed vector 0xf1, logical, MDA 0x0f. */
    c = xd(0x000008f1, 0x0f000000);
    assert_cmd(&c, 0xf1, ICR_MODE_FIXED, true, false, false, ICR_SH_NONE, 0x0f);
    /* NMI to self; lowest priority; SMI to all including self. */
    c = xd(0x00044400, 0);
    assert_cmd(&c, 0, ICR_MODE_NMI, false, true, false, ICR_SH_SELF, 0);
    c = xd(0x00000130, 0xfe000000);
    assert_cmd(&c, 0x30, ICR_MODE_LOWEST, false, false, false, ICR_SH_NONE, 0xfe);
    c = xd(0x00080200, 0xff000000);
    assert_cmd(&c, 0, ICR_MODE_SMI, false, false, false, ICR_SH_ALL, 0xff);
}

static void test_decode_ignores_reserved_and_status(void **state)
{
    (void)state;
    struct icr_cmd c;

    /* Delivery status (12), reserved 13, 17:16, 31:20 and ICR_HI[23:0] all set. */
    c = xd(0xfff33000 | 0x00000631, 0x06ffffff);
    assert_cmd(&c, 0x31, ICR_MODE_STARTUP, false, false, false, ICR_SH_NONE, 6);
    c = xd(0xfff33000, 0x00ffffff);
    assert_cmd(&c, 0, ICR_MODE_FIXED, false, false, false, ICR_SH_NONE, 0);
    /* Reserved delivery modes decode as themselves, for classify to reject. */
    assert_int_equal(xd(0x00000300, 0).delivery_mode, 3);
    assert_int_equal(xd(0x00000700, 0).delivery_mode, 7);
}

static void test_decode_x2apic_known_values(void **state)
{
    (void)state;
    struct icr_cmd c;

    c = x2d(0x00012345000c4500ull);
    assert_cmd(&c, 0, ICR_MODE_INIT, false, true, false, ICR_SH_OTHERS, 0x12345);
    c = x2d(0xffffffff00004608ull);
    assert_cmd(&c, 0x08, ICR_MODE_STARTUP, false, true, false, ICR_SH_NONE, 0xffffffffu);
    /* Logical, cluster 1, members 0 and 15: the whole 32-bit destination is kept. */
    c = x2d(0x00018001000008ecull);
    assert_cmd(&c, 0xec, ICR_MODE_FIXED, true, false, false, ICR_SH_NONE, 0x00018001u);
    /* Bit 12 (ignored by WRMSR) does not leak into anything. */
    c = x2d(0x0000000700001400ull);
    assert_cmd(&c, 0, ICR_MODE_NMI, false, false, false, ICR_SH_NONE, 7);
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    struct icr_cmd c, d;

    /* Every combination of the 20 low bits, with the reserved high bits set too. */
    for (uint32_t lo = 0; lo < (1u << 20); lo++) {
        icr_decode_xapic(lo | 0xfff00000u, 0, &c);
        uint32_t e = icr_encode_lo(&c);
        if (e != (lo & ICR_LO_FIELDS)) {
            print_error("lo %#x encoded back as %#x\n", lo, e);
            fail();
        }
    }
    assert_int_equal(ICR_LO_FIELDS, 0x000ccfffu);

    /* ICR_HI keeps only the destination. */
    icr_decode_xapic(0x000c4500, 0xabcdef12u, &c);
    assert_int_equal(icr_encode_hi_xapic(&c), 0xab000000u);

    /* x2APIC: everything but the reserved bits and bit 12 comes back. */
    static const uint64_t v[] = {
        0x00012345000c4500ull, 0xffffffff00004608ull, 0x00018001000008ecull,
        0x8000000100000000ull, 0xfffffffffffffffful, 0x0000000000000000ull,
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        icr_decode_x2apic(v[i], &c);
        assert_int_equal(icr_encode_x2apic(&c), v[i] & ~(ICR_X2APIC_RESERVED | ICR_LO_STATUS));
        icr_decode_x2apic(icr_encode_x2apic(&c), &d);
        assert_memory_equal(&c, &d, sizeof(c));
    }

    /* A hand-built command: out-of-range fields are truncated to their width. */
    memset(&c, 0, sizeof(c));
    c.vector = 0x20;
    c.delivery_mode = 0xff;
    c.shorthand = 0xff;
    c.dest = 0x1234;
    assert_int_equal(icr_encode_lo(&c), 0x000c0720u);
    assert_int_equal(icr_encode_hi_xapic(&c), 0x34000000u);
}

static void test_x2apic_reserved_bits(void **state)
{
    (void)state;

    assert_true(icr_x2apic_reserved_ok(0x000c4600ull));
    assert_true(icr_x2apic_reserved_ok(0xffffffff000ccfffull)); /* every field set */
    assert_true(icr_x2apic_reserved_ok(0x0000000000001000ull)); /* bit 12: ignored */
    static const unsigned rsvd[] = { 13, 16, 17, 20, 24, 31 };
    for (size_t i = 0; i < sizeof(rsvd) / sizeof(rsvd[0]); i++)
        assert_false(icr_x2apic_reserved_ok(0x4600ull | BIT(rsvd[i])));
    assert_int_equal(ICR_X2APIC_RESERVED, 0x00000000fff32000ull);
}

/* --- classification ------------------------------------------------------------------- */

static enum icr_action cls(uint32_t lo)
{
    struct icr_cmd c;

    icr_decode_xapic(lo, 0x02000000, &c);
    return icr_classify(&c);
}

#define SH(s) ((uint32_t)(s) << 18)
#define DM(m) ((uint32_t)(m) << 8)
#define LVL   ICR_LO_LEVEL_ASSERT
#define TRIG  ICR_LO_TRIGGER_LEVEL

static void test_classify_delivery_modes(void **state)
{
    (void)state;
    /* No shorthand and "all excluding self": every defined mode is valid (table 11-3),
     * in physical and logical destination mode alike. */
    static const uint32_t shs[] = { SH(ICR_SH_NONE), SH(ICR_SH_OTHERS) };
    for (size_t i = 0; i < 2; i++) {
        for (uint32_t lg = 0; lg <= ICR_LO_LOGICAL; lg += ICR_LO_LOGICAL) {
            uint32_t b = shs[i] | lg | LVL;
            assert_int_equal(cls(b | DM(0) | 0x40), ICR_FORWARD);
            assert_int_equal(cls(b | DM(1) | 0x40), ICR_FORWARD);
            assert_int_equal(cls(b | DM(2)), ICR_FORWARD);
            assert_int_equal(cls(b | DM(3)), ICR_INVALID);
            assert_int_equal(cls(b | DM(4)), ICR_FORWARD);
            assert_int_equal(cls(b | DM(5)), ICR_INIT);
            assert_int_equal(cls(b | DM(6) | 0x9a), ICR_STARTUP);
            assert_int_equal(cls(b | DM(7)), ICR_INVALID);
        }
    }
    assert_int_equal(cls(0x000c4500), ICR_INIT);
    assert_int_equal(cls(0x000c4600 | 0x9a), ICR_STARTUP);
    /* STARTUP vector 0 is still a STARTUP (to page 0); vectors are not judged. */
    assert_int_equal(cls(0x00004600), ICR_STARTUP);
    assert_int_equal(cls(0x00004000 | 0x05), ICR_FORWARD); /* illegal vector: HW reports */
}

static void test_classify_invalid_shorthands(void **state)
{
    (void)state;
    /* Table 11-3: self and all-including-self only with fixed. */
    static const uint32_t shs[] = { SH(ICR_SH_SELF), SH(ICR_SH_ALL) };
    for (size_t i = 0; i < 2; i++) {
        uint32_t b = shs[i] | LVL;
        assert_int_equal(cls(b | DM(0) | 0xfd), ICR_FORWARD);
        assert_int_equal(cls(b | DM(0) | 0xfd | TRIG), ICR_FORWARD); /* sent as edge */
        assert_int_equal(cls(b | DM(1) | 0x40), ICR_INVALID);
        assert_int_equal(cls(b | DM(2)), ICR_INVALID);
        assert_int_equal(cls(b | DM(3)), ICR_INVALID);
        assert_int_equal(cls(b | DM(4)), ICR_INVALID);
        assert_int_equal(cls(b | DM(5)), ICR_INVALID);
        assert_int_equal(cls(b | DM(6) | 0x10), ICR_INVALID);
        assert_int_equal(cls(b | DM(7)), ICR_INVALID);
    }
    assert_int_equal(cls(0x00044500), ICR_INVALID); /* INIT to self */
    assert_int_equal(cls(0x00084600), ICR_INVALID); /* STARTUP to all including self */

    /* A hand-built shorthand out of range. */
    struct icr_cmd c;
    icr_decode_xapic(0x000c4500, 0, &c);
    c.shorthand = 4;
    assert_int_equal(icr_classify(&c), ICR_INVALID);
}

static void test_classify_init_level_and_trigger(void **state)
{
    (void)state;
    /* INIT level de-assert: level 0, trigger level, whatever the destination. */
    assert_int_equal(cls(0x00008500), ICR_INIT_DEASSERT);
    assert_int_equal(cls(0x00088500), ICR_INIT_DEASSERT); /* the advised all-incl-self */
    assert_int_equal(cls(0x00048500), ICR_INIT_DEASSERT); /* even "self" */
    assert_int_equal(cls(0x000c8500), ICR_INIT_DEASSERT);
    assert_int_equal(cls(0x00008d00), ICR_INIT_DEASSERT); /* logical */
    /* INIT assert with trigger level (Linux) is an INIT. */
    assert_int_equal(cls(0x0000c500), ICR_INIT);
    /* INIT with level 0 but edge: the level bit is issued as 1, so an INIT. */
    assert_int_equal(cls(0x00000500), ICR_INIT);
    assert_int_equal(cls(0x000c0500), ICR_INIT);
    /* Level 0 does not make other modes special. */
    assert_int_equal(cls(0x00008600 | 0x10), ICR_STARTUP);
    assert_int_equal(cls(0x00000600 | 0x10), ICR_STARTUP);
    assert_int_equal(cls(0x00008031), ICR_FORWARD);
    assert_int_equal(cls(0x00008400), ICR_FORWARD);
    /* Reserved modes stay invalid with the de-assert bits. */
    assert_int_equal(cls(0x00008700), ICR_INVALID);
    assert_int_equal(cls(0x00008300), ICR_INVALID);
}

/* --- destinations, xAPIC -------------------------------------------------------------- */

/* Six CPUs, APIC IDs 0, 2, 4, 6, 0x11, 0xfe. */
#define NX 6u
#define ALLX 0x3full

static void xapic_table(struct apic_view *v, bool cluster)
{
    static const uint32_t ids[NX] = { 0, 2, 4, 6, 0x11, 0xfe };
    /* Flat: one bit each, CPU 5 never programmed its LDR (reset value 0). */
    static const uint32_t flat[NX] = { 0x01, 0x02, 0x04, 0x08, 0x80, 0x00 };
    /* Cluster: c0 m0, c0 m1, c1 m0, c1 m1, c2 m2, c14 m3. */
    static const uint32_t clus[NX] = { 0x01, 0x02, 0x11, 0x12, 0x24, 0xe8 };

    for (unsigned i = 0; i < NX; i++) {
        v[i].apic_id = ids[i];
        v[i].ldr = LDR(cluster ? clus[i] : flat[i]);
        v[i].dfr = cluster ? CLUSTER_DFR : FLAT_DFR;
    }
}

/* Targets of an xAPIC ICR write (lo, hi) sent by CPU `self`. */
static uint64_t xt(const struct apic_view *v, uint32_t lo, uint32_t hi, unsigned self)
{
    struct icr_cmd c;

    icr_decode_xapic(lo, hi, &c);
    return icr_targets(&c, false, v, NX, self);
}

#define PHYS_INIT   0x00004500u
#define LOGICAL_INIT 0x00004d00u
#define DEST(d)     ((uint32_t)(d) << 24)

static void test_targets_xapic_physical(void **state)
{
    (void)state;
    struct apic_view v[NX];

    xapic_table(v, false);
    assert_int_equal(xt(v, PHYS_INIT, DEST(0), 1), BIT(0));
    assert_int_equal(xt(v, PHYS_INIT, DEST(2), 0), BIT(1));
    assert_int_equal(xt(v, PHYS_INIT, DEST(6), 0), BIT(3));
    assert_int_equal(xt(v, PHYS_INIT, DEST(0x11), 0), BIT(4));
    assert_int_equal(xt(v, PHYS_INIT, DEST(0xfe), 0), BIT(5));
    /* IDs nobody has: the index is not the ID. */
    assert_int_equal(xt(v, PHYS_INIT, DEST(1), 0), 0);
    assert_int_equal(xt(v, PHYS_INIT, DEST(5), 0), 0);
    /* A physical IPI may name the sender itself. */
    assert_int_equal(xt(v, PHYS_INIT, DEST(4), 2), BIT(2));
    /* 0xff broadcasts, sender included. */
    assert_int_equal(xt(v, PHYS_INIT, DEST(0xff), 3), ALLX);
    assert_int_equal(xt(v, 0x00004600 | 0x9a, DEST(0xff), 3), ALLX);
    /* Physical mode ignores LDR and DFR: the cluster table gives the same answers. */
    xapic_table(v, true);
    assert_int_equal(xt(v, PHYS_INIT, DEST(0x11), 0), BIT(4));
    assert_int_equal(xt(v, PHYS_INIT, DEST(1), 0), 0);
    /* A hand-built xAPIC destination wider than 8 bits: only the field's 8 bits count. */
    struct icr_cmd c;
    icr_decode_xapic(PHYS_INIT, 0, &c);
    c.dest = 0x102;
    assert_int_equal(icr_targets(&c, false, v, NX, 0), BIT(1));
}

static void test_targets_xapic_logical_flat(void **state)
{
    (void)state;
    struct apic_view v[NX];

    xapic_table(v, false);
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x01), 5), BIT(0));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x0f), 5), BIT(0) | BIT(1) | BIT(2) | BIT(3));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x80), 0), BIT(4));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x84), 0), BIT(2) | BIT(4));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x30), 0), 0); /* bits nobody holds */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x00), 0), 0);
    /* The logical ID is not the APIC ID: MDA 0x02 is CPU 1 (ID 2), MDA 0x04 CPU 2. */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x04), 0), BIT(2));
    /* Broadcast reaches everybody, CPU 5 with LDR 0 too. */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xff), 0), ALLX);
    /* The same MDAs read as cluster addresses give other answers (next test): the
     * model comes from each CPU's DFR, e.g. 0x11 is bits 0 and 4 in flat. */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x11), 0), BIT(0));
    /* Only DFR[31:28] selects the model: the reserved low bits do not matter. */
    v[0].dfr = 0xf0000000u;
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x01), 0), BIT(0));
}

static void test_targets_xapic_logical_cluster(void **state)
{
    (void)state;
    struct apic_view v[NX];

    xapic_table(v, true);
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x01), 5), BIT(0));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x03), 5), BIT(0) | BIT(1));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x11), 5), BIT(2));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x13), 5), BIT(2) | BIT(3));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x24), 5), BIT(4));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xe8), 0), BIT(5));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x21), 0), 0); /* cluster 2 has no member 0 */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x10), 0), 0); /* no member bits */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x31), 0), 0); /* empty cluster */
    /* In flat this would hit CPUs 0..3; in cluster 0 only its members 0 and 1. */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x0f), 0), BIT(0) | BIT(1));
    /* Cluster 0xf matches every cluster: member bit 0 everywhere, then bits 2-3. */
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xf1), 0), BIT(0) | BIT(2));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xfc), 0), BIT(4) | BIT(5));
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xf0), 0), 0);
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xff), 0), ALLX);
}

static void test_targets_xapic_mixed_and_bad_dfr(void **state)
{
    (void)state;
    struct apic_view v[NX];

    /* Each CPU is judged by its own DFR: CPU 2 in cluster mode with LDR 0x11,
     * the others flat. MDA 0x11: flat CPU 0 (bit 0) and cluster CPU 2 (c1 m0). */
    xapic_table(v, false);
    v[2].dfr = CLUSTER_DFR;
    v[2].ldr = LDR(0x11);
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x11), 0), BIT(0) | BIT(2));
    /* A DFR model that is neither 1111b nor 0000b matches only a broadcast. */
    v[1].dfr = 0x5fffffffu;
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0x02), 0), 0);
    assert_int_equal(xt(v, LOGICAL_INIT, DEST(0xff), 0), ALLX);
}

static void test_targets_shorthands(void **state)
{
    (void)state;
    struct apic_view v[NX];

    xapic_table(v, false);
    /* Fixed to self / all: the destination field and mode are ignored. */
    assert_int_equal(xt(v, 0x00044030, DEST(2), 0), BIT(0));
    assert_int_equal(xt(v, 0x00044830, DEST(0xff), 5), BIT(5));
    assert_int_equal(xt(v, 0x00084030, DEST(2), 3), ALLX);
    /* All excluding self, for each sender. */
    for (unsigned s = 0; s < NX; s++) {
        assert_int_equal(xt(v, 0x000c4500, DEST(0), s), ALLX & ~BIT(s));
        assert_int_equal(xt(v, 0x000c4600 | 0x9a, DEST(0x11), s), ALLX & ~BIT(s));
    }
    /* A sender outside the table: self reaches nobody, all-but-self everybody. */
    assert_int_equal(xt(v, 0x00044030, 0, NX), 0);
    assert_int_equal(xt(v, 0x00044030, 0, 1000), 0);
    assert_int_equal(xt(v, 0x000c4500, 0, NX), ALLX);
    assert_int_equal(xt(v, 0x000c4500, 0, 0xffffffffu), ALLX);
    assert_int_equal(xt(v, 0x00084030, 0, NX), ALLX);
}

static void test_targets_init_deassert_and_invalid(void **state)
{
    (void)state;
    struct apic_view v[NX];

    xapic_table(v, false);
    /* De-assert reaches all processors whatever the destination says... */
    assert_int_equal(xt(v, 0x00008500, DEST(2), 0), ALLX);
    assert_int_equal(xt(v, 0x00088500, 0, 4), ALLX);
    assert_int_equal(xt(v, 0x00048500, 0, 4), ALLX);
    assert_int_equal(xt(v, 0x000c8500, 0, 4), ALLX);
    assert_int_equal(xt(v, 0x00008d00, DEST(0x30), 4), ALLX);
    /* ...while the INIT assert before it reaches only its destination. */
    assert_int_equal(xt(v, 0x0000c500, DEST(2), 0), BIT(1));
    /* Invalid commands reach nobody, however they are addressed. */
    assert_int_equal(xt(v, 0x00044500, 0, 2), 0);           /* INIT self */
    assert_int_equal(xt(v, 0x00084600 | 0x10, 0, 2), 0);    /* STARTUP all-incl-self */
    assert_int_equal(xt(v, 0x00004300, DEST(0xff), 2), 0);  /* reserved mode 3 */
    assert_int_equal(xt(v, 0x00004700, DEST(2), 2), 0);     /* reserved mode 7 */
}

static void test_targets_lowest_priority_candidates(void **state)
{
    (void)state;
    struct apic_view v[NX];

    xapic_table(v, false);
    /* The whole candidate set, not one CPU picked by priority. */
    assert_int_equal(xt(v, 0x00004931, DEST(0x0f), 0), BIT(0) | BIT(1) | BIT(2) | BIT(3));
    assert_int_equal(xt(v, 0x000c4131, 0, 0), ALLX & ~BIT(0));
    assert_int_equal(xt(v, 0x00004131, DEST(0x11), 0), BIT(4));
}

/* --- destinations, x2APIC ------------------------------------------------------------- */

#define N2 7u
#define ALL2 0x7full

/* x2APIC IDs 0, 1, 0x10, 0x1f, 0x20, 0xff, 0x12345. The LDR and DFR fields hold
 * garbage: x2APIC mode must derive the logical ID and use cluster mode regardless. */
static void x2apic_table(struct apic_view *v)
{
    static const uint32_t ids[N2] = { 0, 1, 0x10, 0x1f, 0x20, 0xff, 0x12345 };

    for (unsigned i = 0; i < N2; i++) {
        v[i].apic_id = ids[i];
        v[i].ldr = 0xdeadbeefu;
        v[i].dfr = FLAT_DFR;
    }
}

static uint64_t x2t(const struct apic_view *v, uint64_t icr, unsigned self)
{
    struct icr_cmd c;

    icr_decode_x2apic(icr, &c);
    return icr_targets(&c, true, v, N2, self);
}

#define X2DEST(d) ((uint64_t)(d) << 32)

static void test_x2apic_ldr_derivation(void **state)
{
    (void)state;

    assert_int_equal(icr_x2apic_ldr(0), 0x00000001u);
    assert_int_equal(icr_x2apic_ldr(1), 0x00000002u);
    assert_int_equal(icr_x2apic_ldr(0xf), 0x00008000u);
    assert_int_equal(icr_x2apic_ldr(0x10), 0x00010001u);
    assert_int_equal(icr_x2apic_ldr(0x1f), 0x00018000u);
    assert_int_equal(icr_x2apic_ldr(0xff), 0x000f8000u);
    assert_int_equal(icr_x2apic_ldr(0x12345), 0x12340020u);
    assert_int_equal(icr_x2apic_ldr(0xffffe), 0xffff4000u);
    /* Only ID[19:0] takes part. */
    assert_int_equal(icr_x2apic_ldr(0x00100003u), 0x00000008u);
    assert_int_equal(icr_x2apic_ldr(0xffffffffu), 0xffff8000u);
}

static void test_targets_x2apic_physical(void **state)
{
    (void)state;
    struct apic_view v[N2];

    x2apic_table(v);
    assert_int_equal(x2t(v, X2DEST(0) | PHYS_INIT, 1), BIT(0));
    assert_int_equal(x2t(v, X2DEST(0x1f) | PHYS_INIT, 1), BIT(3));
    assert_int_equal(x2t(v, X2DEST(0x12345) | PHYS_INIT, 1), BIT(6));
    assert_int_equal(x2t(v, X2DEST(0x2) | PHYS_INIT, 1), 0);
    /* 0xff is an ordinary ID in x2APIC mode, not a broadcast. */
    assert_int_equal(x2t(v, X2DEST(0xff) | PHYS_INIT, 1), BIT(5));
    /* An x2APIC ID must match in all 32 bits, not just the xAPIC 8. */
    assert_int_equal(x2t(v, X2DEST(0x45) | PHYS_INIT, 1), 0);
    assert_int_equal(x2t(v, X2DEST(0x100) | PHYS_INIT, 1), 0);
    assert_int_equal(x2t(v, X2DEST(0xffffffffu) | PHYS_INIT, 1), ALL2);
    assert_int_equal(x2t(v, X2DEST(0xffffffffu) | 0x00004600 | 0x9a, 6), ALL2);
    assert_int_equal(x2t(v, X2DEST(0xfffffffeu) | PHYS_INIT, 1), 0);
}

static void test_targets_x2apic_logical(void **state)
{
    (void)state;
    struct apic_view v[N2];

    x2apic_table(v);
    assert_int_equal(x2t(v, X2DEST(0x00000003u) | LOGICAL_INIT, 0), BIT(0) | BIT(1));
    assert_int_equal(x2t(v, X2DEST(0x00000002u) | LOGICAL_INIT, 0), BIT(1));
    assert_int_equal(x2t(v, X2DEST(0x00010001u) | LOGICAL_INIT, 0), BIT(2));
    assert_int_equal(x2t(v, X2DEST(0x00018001u) | LOGICAL_INIT, 0), BIT(2) | BIT(3));
    assert_int_equal(x2t(v, X2DEST(0x0001ffffu) | LOGICAL_INIT, 0), BIT(2) | BIT(3));
    assert_int_equal(x2t(v, X2DEST(0x00020001u) | LOGICAL_INIT, 0), BIT(4));
    assert_int_equal(x2t(v, X2DEST(0x000f8000u) | LOGICAL_INIT, 0), BIT(5));
    assert_int_equal(x2t(v, X2DEST(0x12340020u) | LOGICAL_INIT, 0), BIT(6));
    assert_int_equal(x2t(v, X2DEST(0x1234001fu) | LOGICAL_INIT, 0), 0);
    assert_int_equal(x2t(v, X2DEST(0x00030001u) | LOGICAL_INIT, 0), 0);
    assert_int_equal(x2t(v, X2DEST(0x00010000u) | LOGICAL_INIT, 0), 0);
    /* The same destination read as a physical ID: 0x00010001 is nobody's x2APIC ID. */
    assert_int_equal(x2t(v, X2DEST(0x00010001u) | PHYS_INIT, 0), 0);
    /* Logical 1 is CPU 0 (ID 0, bit 0), physical 1 is CPU 1 (ID 1). */
    assert_int_equal(x2t(v, X2DEST(1) | LOGICAL_INIT, 0), BIT(0));
    assert_int_equal(x2t(v, X2DEST(1) | PHYS_INIT, 0), BIT(1));
    /* No cluster-wide wildcard in x2APIC: cluster 0xffff is just cluster 0xffff... */
    assert_int_equal(x2t(v, X2DEST(0xffff0001u) | LOGICAL_INIT, 0), 0);
    assert_int_equal(x2t(v, X2DEST(0xffffffffu & ~1u) | LOGICAL_INIT, 0), 0);
    /* ...and only all 1s broadcasts. */
    assert_int_equal(x2t(v, X2DEST(0xffffffffu) | LOGICAL_INIT, 3), ALL2);
    /* Shorthands and de-assert work as in xAPIC mode. */
    assert_int_equal(x2t(v, 0x000c4500, 6), ALL2 & ~BIT(6));
    assert_int_equal(x2t(v, 0x00044030, 6), BIT(6));
    assert_int_equal(x2t(v, X2DEST(0x12345) | 0x00008500, 6), ALL2);
    assert_int_equal(x2t(v, 0x00044500, 6), 0);
}

/* --- table size edges ----------------------------------------------------------------- */

static void test_targets_64_cpus_and_bad_n(void **state)
{
    (void)state;
    struct apic_view v[ICR_MAX_CPUS + 1];
    struct icr_cmd c;

    for (unsigned i = 0; i <= ICR_MAX_CPUS; i++) {
        v[i].apic_id = 2 * i; /* IDs 0, 2, ..., 126 (128 for the 65th) */
        v[i].ldr = 0;
        v[i].dfr = FLAT_DFR;
    }
    icr_decode_x2apic(0x000c4500, &c); /* all excluding self */
    assert_int_equal(icr_targets(&c, true, v, 64, 0), UINT64_MAX & ~1ull);
    assert_int_equal(icr_targets(&c, true, v, 64, 63), UINT64_MAX >> 1);
    assert_int_equal(icr_targets(&c, true, v, 64, 64), UINT64_MAX);
    assert_int_equal(icr_targets(&c, true, v, 63, 63), UINT64_MAX >> 1);
    assert_int_equal(icr_targets(&c, true, v, 1, 0), 0);
    assert_int_equal(icr_targets(&c, true, v, 1, 1), 1);
    icr_decode_x2apic(0x00084030, &c); /* all including self */
    assert_int_equal(icr_targets(&c, true, v, 64, 17), UINT64_MAX);
    assert_int_equal(icr_targets(&c, true, v, 63, 17), UINT64_MAX >> 1);
    icr_decode_x2apic(0x00044030, &c); /* self */
    assert_int_equal(icr_targets(&c, true, v, 64, 63), BIT(63));
    assert_int_equal(icr_targets(&c, true, v, 64, 0), BIT(0));
    icr_decode_x2apic(X2DEST(126) | PHYS_INIT, &c);
    assert_int_equal(icr_targets(&c, true, v, 64, 0), BIT(63));
    assert_int_equal(icr_targets(&c, true, v, 63, 0), 0); /* CPU 63 not in the table */
    icr_decode_x2apic(X2DEST(0xffffffffu) | PHYS_INIT, &c);
    assert_int_equal(icr_targets(&c, true, v, 64, 0), UINT64_MAX);
    /* The same in xAPIC mode: physical broadcast 0xff over 64 CPUs. */
    icr_decode_xapic(PHYS_INIT, DEST(0xff), &c);
    assert_int_equal(icr_targets(&c, false, v, 64, 5), UINT64_MAX);
    icr_decode_x2apic(0x00008500, &c); /* de-assert */
    assert_int_equal(icr_targets(&c, true, v, 64, 5), UINT64_MAX);
    /* n out of range: nobody, and the table is not read past its end. */
    icr_decode_x2apic(X2DEST(0xffffffffu) | PHYS_INIT, &c);
    assert_int_equal(icr_targets(&c, true, v, 65, 0), 0);
    assert_int_equal(icr_targets(&c, true, v, 0, 0), 0);
    assert_int_equal(icr_targets(&c, true, NULL, 0, 0), 0);
    icr_decode_x2apic(0x000c4500, &c);
    assert_int_equal(icr_targets(&c, true, v, 65, 0), 0);
}

/* --- icr_reaches: one CPU at a time, beyond 64 CPUs and x2APIC IDs above 254 -------- */

static void test_reaches_large_ids(void **state)
{
    (void)state;
    struct icr_cmd c;
    struct apic_view me = { 300, 0, FLAT_DFR }, other = { 299, 0, FLAT_DFR };

    /* INIT to its own x2APIC ID 300: the sender is the target. */
    icr_decode_x2apic(X2DEST(300) | PHYS_INIT, &c);
    assert_true(icr_reaches(&c, true, &me, true));
    assert_false(icr_reaches(&c, true, &other, false));
    /* xAPIC mode cannot name 300: the destination is 8 bits (300 & 0xff = 44). */
    icr_decode_xapic(PHYS_INIT, DEST(300 & 0xff), &c);
    assert_false(icr_reaches(&c, false, &me, true));
    /* The x2APIC broadcast reaches every CPU, the sender too. */
    icr_decode_x2apic(X2DEST(0xffffffffu) | PHYS_INIT, &c);
    assert_true(icr_reaches(&c, true, &me, true));
    assert_true(icr_reaches(&c, true, &other, false));
    /* Shorthands: all excluding self; self with INIT is invalid (table 11-3). */
    icr_decode_x2apic(0x000c4500, &c);
    assert_false(icr_reaches(&c, true, &me, true));
    assert_true(icr_reaches(&c, true, &other, false));
    icr_decode_x2apic(0x00044500, &c);
    assert_false(icr_reaches(&c, true, &me, true));
    /* Logical x2APIC: cluster 300 >> 4 = 18, bit 300 & 15 = 12. */
    icr_decode_x2apic(X2DEST((18u << 16) | (1u << 12)) | 0x00004d00 /* logical INIT */, &c);
    assert_true(icr_reaches(&c, true, &me, true));
    assert_false(icr_reaches(&c, true, &other, false));
}

/* icr_targets is icr_reaches over a table. */
static void test_reaches_matches_targets(void **state)
{
    (void)state;
    struct apic_view v[8];
    struct icr_cmd c;
    static const uint32_t los[] = { PHYS_INIT, 0x000c4500, 0x00084030, 0x00044030,
                                    0x00008500, 0x00000e20 /* logical INIT */ };

    for (unsigned i = 0; i < 8; i++) {
        v[i].apic_id = i;
        v[i].ldr = (1u << i) << 24;
        v[i].dfr = FLAT_DFR;
    }
    for (unsigned k = 0; k < sizeof los / sizeof los[0]; k++) {
        for (uint32_t d = 0; d < 8; d++) {
            icr_decode_xapic(los[k], DEST(1u << d), &c);
            uint64_t t = icr_targets(&c, false, v, 8, 3);
            for (unsigned i = 0; i < 8; i++)
                assert_int_equal((t >> i) & 1, icr_reaches(&c, false, &v[i], i == 3));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_xapic_known_values),
        cmocka_unit_test(test_decode_ignores_reserved_and_status),
        cmocka_unit_test(test_decode_x2apic_known_values),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_x2apic_reserved_bits),
        cmocka_unit_test(test_classify_delivery_modes),
        cmocka_unit_test(test_classify_invalid_shorthands),
        cmocka_unit_test(test_classify_init_level_and_trigger),
        cmocka_unit_test(test_targets_xapic_physical),
        cmocka_unit_test(test_targets_xapic_logical_flat),
        cmocka_unit_test(test_targets_xapic_logical_cluster),
        cmocka_unit_test(test_targets_xapic_mixed_and_bad_dfr),
        cmocka_unit_test(test_targets_shorthands),
        cmocka_unit_test(test_targets_init_deassert_and_invalid),
        cmocka_unit_test(test_targets_lowest_priority_candidates),
        cmocka_unit_test(test_x2apic_ldr_derivation),
        cmocka_unit_test(test_targets_x2apic_physical),
        cmocka_unit_test(test_targets_x2apic_logical),
        cmocka_unit_test(test_targets_64_cpus_and_bad_n),
        cmocka_unit_test(test_reaches_large_ids),
        cmocka_unit_test(test_reaches_matches_targets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
