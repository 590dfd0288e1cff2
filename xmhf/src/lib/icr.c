/* ICR decoding and IPI destination resolution (contract in icr.h), Intel SDM Vol. 3A
 * 11.6.1 "Interrupt Command Register (ICR)", 11.6.2 "Determining IPI Destination",
 * 11.12.9 "ICR Operation in x2APIC Mode", 11.12.10 "Determining IPI Destination in
 * x2APIC Mode".
 *
 * The low dword has the same layout in both modes (11.12.9: "identical to the lower half
 * of the ICR in xAPIC mode, except the Delivery Status bit is removed"), so one decoder
 * and one encoder of it serve both; only where the destination lives differs. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "icr.h"

/* Figure 11-12 bit positions, spelled out so a typo in icr.h cannot go unnoticed. */
_Static_assert(ICR_LO_MODE_MASK == (7u << ICR_LO_MODE_SHIFT), "delivery mode bits 10:8");
_Static_assert(ICR_LO_SH_MASK == (3u << ICR_LO_SH_SHIFT), "shorthand bits 19:18");
_Static_assert(ICR_LO_LOGICAL == 0x800u && ICR_LO_LEVEL_ASSERT == 0x4000u &&
               ICR_LO_TRIGGER_LEVEL == 0x8000u, "destination mode 11, level 14, trigger 15");
_Static_assert(ICR_LO_FIELDS == 0x000ccfffu, "meaningful low-dword bits");
_Static_assert((ICR_X2APIC_RESERVED & (ICR_LO_FIELDS | ICR_LO_STATUS)) == 0,
               "x2APIC reserved bits overlap no field");
_Static_assert(ICR_MAX_CPUS == 64u, "icr_targets returns one bit per CPU in a uint64_t");

static void decode_lo(uint32_t lo, struct icr_cmd *out)
{
    out->vector = (uint8_t)(lo & ICR_LO_VECTOR_MASK);
    out->delivery_mode = (uint8_t)((lo & ICR_LO_MODE_MASK) >> ICR_LO_MODE_SHIFT);
    out->logical = (lo & ICR_LO_LOGICAL) != 0;
    out->level_assert = (lo & ICR_LO_LEVEL_ASSERT) != 0;
    out->trigger_level = (lo & ICR_LO_TRIGGER_LEVEL) != 0;
    out->shorthand = (uint8_t)((lo & ICR_LO_SH_MASK) >> ICR_LO_SH_SHIFT);
}

void icr_decode_xapic(uint32_t icr_lo, uint32_t icr_hi, struct icr_cmd *out)
{
    decode_lo(icr_lo, out);
    /* 11.6.1: ICR_HI bits 23:0 are reserved; only the 8-bit destination counts. */
    out->dest = icr_hi >> ICR_HI_XAPIC_DEST_SHIFT;
}

void icr_decode_x2apic(uint64_t icr, struct icr_cmd *out)
{
    decode_lo((uint32_t)icr, out);
    out->dest = (uint32_t)(icr >> ICR_X2APIC_DEST_SHIFT);
}

uint32_t icr_encode_lo(const struct icr_cmd *c)
{
    uint32_t lo = c->vector;

    lo |= ((uint32_t)c->delivery_mode << ICR_LO_MODE_SHIFT) & ICR_LO_MODE_MASK;
    lo |= c->logical ? ICR_LO_LOGICAL : 0;
    lo |= c->level_assert ? ICR_LO_LEVEL_ASSERT : 0;
    lo |= c->trigger_level ? ICR_LO_TRIGGER_LEVEL : 0;
    lo |= ((uint32_t)c->shorthand << ICR_LO_SH_SHIFT) & ICR_LO_SH_MASK;
    return lo;
}

uint32_t icr_encode_hi_xapic(const struct icr_cmd *c)
{
    return (c->dest & 0xffu) << ICR_HI_XAPIC_DEST_SHIFT;
}

uint64_t icr_encode_x2apic(const struct icr_cmd *c)
{
    return ((uint64_t)c->dest << ICR_X2APIC_DEST_SHIFT) | icr_encode_lo(c);
}

bool icr_x2apic_reserved_ok(uint64_t icr)
{
    return (icr & ICR_X2APIC_RESERVED) == 0;
}

enum icr_action icr_classify(const struct icr_cmd *c)
{
    switch (c->delivery_mode) {
    case ICR_MODE_FIXED:
    case ICR_MODE_LOWEST:
    case ICR_MODE_SMI:
    case ICR_MODE_NMI:
    case ICR_MODE_INIT:
    case ICR_MODE_STARTUP:
        break;
    default:
        return ICR_INVALID; /* 011b and 111b are reserved (11.6.1) */
    }
    if (c->shorthand > ICR_SH_OTHERS)
        return ICR_INVALID; /* no decoder makes one: a caller's struct is malformed */

    /* 11.6.1, "INIT Level De-assert": level 0 with trigger level. The message goes to
     * all processors whatever the destination field and shorthand say (software
     * "should specify" all-including-self), so the shorthand rule below must not turn
     * it into an invalid command. It only resets arbitration IDs: nobody is INITed. */
    if (c->delivery_mode == ICR_MODE_INIT && !c->level_assert && c->trigger_level)
        return ICR_INIT_DEASSERT;

    /* Table 11-3: with the "self" and "all including self" shorthands only the fixed
     * mode is valid; lowest priority, NMI, INIT, SMI and STARTUP are not. A self-INIT
     * in particular must never reach the hypervisor's own processor. "All excluding
     * self" is valid with every mode. */
    if ((c->shorthand == ICR_SH_SELF || c->shorthand == ICR_SH_ALL) &&
        c->delivery_mode != ICR_MODE_FIXED)
        return ICR_INVALID;

    switch (c->delivery_mode) {
    case ICR_MODE_INIT:
        return ICR_INIT;
    case ICR_MODE_STARTUP:
        return ICR_STARTUP;
    default:
        return ICR_FORWARD;
    }
}

uint32_t icr_x2apic_ldr(uint32_t x2apic_id)
{
    /* 11.12.10.2: cluster = x2APIC ID[19:4] into LDR[31:16]; logical ID = 1 << ID[3:0].
     * The 32-bit shift drops ID[31:20] exactly as the derivation does. */
    return ((x2apic_id >> 4) << 16) | (1u << (x2apic_id & 0xfu));
}

/* 11.6.2.2 "Logical Destination Mode" (xAPIC). */
static bool xapic_logical_match(uint32_t mda, const struct apic_view *cpu)
{
    uint32_t lid = cpu->ldr >> APIC_LDR_ID_SHIFT;

    /* "A broadcast to all APICs is achieved by setting the MDA to 1s" (flat) and
     * "setting all destination bits to one ... selects all APICs in each cluster"
     * (cluster): all of them, including one whose LDR is still 0 after reset. */
    if (mda == ICR_XAPIC_BROADCAST)
        return true;

    switch (cpu->dfr >> APIC_DFR_MODEL_SHIFT) {
    case APIC_DFR_MODEL_FLAT:
        /* Flat model: each APIC ANDs the MDA with its 8-bit logical ID. */
        return (mda & lid) != 0;
    case APIC_DFR_MODEL_CLUSTER:
        /* Cluster model: MDA[7:4] picks the cluster (0..14; 15 matches every cluster),
         * MDA[3:0] the members, one bit each, compared with LDR[27:24]. */
        return ((mda >> 4) == 0xfu || (mda >> 4) == (lid >> 4)) && (mda & lid & 0xfu) != 0;
    default:
        /* The DFR model is defined only as 1111b or 0000b: no defined match. */
        return false;
    }
}

/* 11.12.10.1 "Logical Destination Mode in x2APIC Mode": cluster model only. */
static bool x2apic_logical_match(uint32_t dest, const struct apic_view *cpu)
{
    uint32_t ldr = icr_x2apic_ldr(cpu->apic_id);

    if (dest == ICR_X2APIC_BROADCAST)
        return true;
    return (dest >> 16) == (ldr >> 16) && (dest & ldr & 0xffffu) != 0;
}

/* Does cpu accept a command sent with no shorthand? */
static bool dest_match(const struct icr_cmd *c, bool x2apic, const struct apic_view *cpu)
{
    if (x2apic) {
        if (c->logical)
            return x2apic_logical_match(c->dest, cpu);
        /* 11.12.9: 0xffffffff is the physical broadcast. */
        return c->dest == ICR_X2APIC_BROADCAST || cpu->apic_id == c->dest;
    }

    /* xAPIC: the destination field is 8 bits wide (ICR_HI[31:24]). */
    uint32_t d = c->dest & 0xffu;

    if (c->logical)
        return xapic_logical_match(d, cpu);
    /* 11.6.2.1 "Physical Destination Mode": IDs 00h..FEh, FFh broadcasts. */
    return d == ICR_XAPIC_BROADCAST || cpu->apic_id == d;
}

bool icr_reaches(const struct icr_cmd *c, bool x2apic, const struct apic_view *cpu,
                 bool is_self)
{
    switch (icr_classify(c)) {
    case ICR_INVALID:
        return false;
    case ICR_INIT_DEASSERT:
        return true;
    default:
        break;
    }
    switch (c->shorthand) {
    case ICR_SH_SELF:
        return is_self;
    case ICR_SH_ALL:
        return true;
    case ICR_SH_OTHERS:
        return !is_self;
    default:
        return dest_match(c, x2apic, cpu);
    }
}

uint64_t icr_targets(const struct icr_cmd *c, bool x2apic, const struct apic_view *cpus,
                     unsigned n, unsigned self)
{
    if (n == 0 || n > ICR_MAX_CPUS)
        return 0;

    uint64_t t = 0;

    for (unsigned i = 0; i < n; i++)
        if (icr_reaches(c, x2apic, &cpus[i], i == self))
            t |= 1ull << i;
    return t;
}
