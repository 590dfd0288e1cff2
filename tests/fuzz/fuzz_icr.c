/* ICR decoding and IPI destinations (icr.h): any ICR values and APIC views. Invariants:
 * encode(decode(lo)) == lo & ICR_LO_FIELDS, and the same for the x2APIC form with its
 * destination; classify returns one of its five answers; the target set of
 * a command names only CPUs that exist, and "self" / "all excluding self" say what they
 * mean; invalid commands reach nobody and the INIT de-assert everybody. */
#include "fuzz.h"
#include "icr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in in = { data, size };
    uint32_t lo = (uint32_t)take(&in, 4), hi = (uint32_t)take(&in, 4);
    uint64_t x2 = take(&in, 8);
    struct icr_cmd c, d;
    icr_decode_xapic(lo, hi, &c);
    CHECK(icr_encode_lo(&c) == (lo & ICR_LO_FIELDS));
    CHECK(c.dest == hi >> 24);
    icr_decode_x2apic(x2, &d);
    CHECK(icr_encode_x2apic(&d) == (x2 & (0xffffffff00000000ull | ICR_LO_FIELDS)));
    if (icr_x2apic_reserved_ok(x2))
        CHECK(!(x2 & 0xfff32000ull));
    enum icr_action a = icr_classify(&c);
    CHECK(a == ICR_FORWARD || a == ICR_INIT || a == ICR_INIT_DEASSERT || a == ICR_STARTUP ||
          a == ICR_INVALID);
    struct apic_view cpus[ICR_MAX_CPUS];
    unsigned n = 1 + (unsigned)take(&in, 1) % ICR_MAX_CPUS, self = (unsigned)take(&in, 1) % n;
    bool x2apic = take(&in, 1) & 1;
    for (unsigned i = 0; i < n; i++) {
        cpus[i].apic_id = (uint32_t)take(&in, x2apic ? 4 : 1);
        cpus[i].ldr = (uint32_t)take(&in, 4);
        cpus[i].dfr = (uint32_t)take(&in, 4);
    }
    const struct icr_cmd *cmd = x2apic ? &d : &c;
    uint64_t t = icr_targets(cmd, x2apic, cpus, n, self);
    if (n < 64)
        CHECK((t >> n) == 0);
    enum icr_action ca = icr_classify(cmd);
    if (ca == ICR_INVALID)
        CHECK(t == 0);
    else if (ca == ICR_INIT_DEASSERT)
        CHECK(t == (n == 64 ? ~0ull : (1ull << n) - 1));
    else if (cmd->shorthand == ICR_SH_SELF)
        CHECK(t == (1ull << self));
    else if (cmd->shorthand == ICR_SH_ALL)
        CHECK(t == (n == 64 ? ~0ull : (1ull << n) - 1));
    else if (cmd->shorthand == ICR_SH_OTHERS)
        CHECK(t == ((n == 64 ? ~0ull : (1ull << n) - 1) & ~(1ull << self)));
    return 0;
}
