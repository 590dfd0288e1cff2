/* Interrupt Command Register policy: decoding guest ICR writes and working out which
 * processors they reach. Intel SDM Vol. 3A chapter 11:
 *   11.6.1   "Interrupt Command Register (ICR)" (figure 11-12, table 11-3 "Valid
 *            Combinations for the Pentium 4 and Intel Xeon Processors' Local xAPIC
 *            Interrupt Command Register"),
 *   11.6.2   "Determining IPI Destination" (physical, logical flat/cluster, DFR, LDR),
 *   11.6.2.4 "Lowest Priority Delivery Mode",
 *   11.12.9  "ICR Operation in x2APIC Mode",
 *   11.12.10 "Determining IPI Destination in x2APIC Mode".
 * Both the VMX and the SVM halves call this when the guest writes the ICR (xAPIC MMIO
 * 0xfee00300/0310, x2APIC MSR 0x830): INIT and STARTUP are handled virtually, the rest
 * is forwarded to the real APIC. Pure logic, compiled freestanding and on the host.
 *
 * Names here are ICR_LO_* / ICR_MODE_* / ICR_SH_* so that they never collide with the
 * register-level ICR_* values of apic.h; a file may include both. */
#ifndef XMHF_ICR_H
#define XMHF_ICR_H
#include <stdbool.h>
#include <stdint.h>

/* --- Register layout, 11.6.1 figure 11-12 (xAPIC) and 11.12.9 (x2APIC) -------------- */

#define ICR_X2APIC_MSR        0x830u        /* 11.12.1.2: one 64-bit MSR, no ICR_HI */

#define ICR_LO_VECTOR_MASK    0x000000ffu   /* bits 7:0 */
#define ICR_LO_MODE_SHIFT     8u            /* bits 10:8 delivery mode */
#define ICR_LO_MODE_MASK      0x00000700u
#define ICR_LO_LOGICAL        (1u << 11)    /* destination mode: 0 physical, 1 logical */
#define ICR_LO_STATUS         (1u << 12)    /* delivery status, read-only; gone in x2APIC */
#define ICR_LO_LEVEL_ASSERT   (1u << 14)    /* level: 0 de-assert, 1 assert */
#define ICR_LO_TRIGGER_LEVEL  (1u << 15)    /* trigger mode: 0 edge, 1 level */
#define ICR_LO_SH_SHIFT       18u           /* bits 19:18 destination shorthand */
#define ICR_LO_SH_MASK        0x000c0000u
/* Every bit of the low dword that means something to a sender (the delivery status is
 * read-only, so a write of it means nothing). */
#define ICR_LO_FIELDS         (ICR_LO_VECTOR_MASK | ICR_LO_MODE_MASK | ICR_LO_LOGICAL | \
                               ICR_LO_LEVEL_ASSERT | ICR_LO_TRIGGER_LEVEL | ICR_LO_SH_MASK)

#define ICR_HI_XAPIC_DEST_SHIFT 24u         /* xAPIC: destination in ICR_HI bits 31:24 */
#define ICR_X2APIC_DEST_SHIFT   32u         /* x2APIC: destination in bits 63:32 */

/* 11.12.1.3 "Reserved Bit Checking": in x2APIC mode a WRMSR that sets one of these ICR
 * bits raises #GP (bits 13, 17:16, 31:20). Bit 12 is not among them: WRMSR ignores it. */
#define ICR_X2APIC_RESERVED   0x00000000fff32000ull

/* Delivery modes, ICR bits 10:8 (11.6.1). 3 and 7 are reserved; in x2APIC mode 1
 * (lowest priority) is shown as reserved too (11.12.9 figure), which the real APIC
 * reports itself when the write is forwarded. */
enum icr_mode {
    ICR_MODE_FIXED   = 0,
    ICR_MODE_LOWEST  = 1,
    ICR_MODE_SMI     = 2,
    ICR_MODE_NMI     = 4,
    ICR_MODE_INIT    = 5, /* also "INIT level de-assert" when level=0, trigger=level */
    ICR_MODE_STARTUP = 6,
};

/* Destination shorthands, ICR bits 19:18 (11.6.1). With a shorthand the destination
 * field and destination mode are ignored. */
enum icr_shorthand {
    ICR_SH_NONE   = 0, /* use the destination field */
    ICR_SH_SELF   = 1,
    ICR_SH_ALL    = 2, /* all including self */
    ICR_SH_OTHERS = 3, /* all excluding self */
};

/* Broadcast destinations: 11.6.2.1 (xAPIC physical 0xff; also "all 1s" in both logical
 * models, 11.6.2.2) and 11.12.9 (x2APIC, physical and logical). */
#define ICR_XAPIC_BROADCAST   0xffu
#define ICR_X2APIC_BROADCAST  0xffffffffu

/* xAPIC logical destination registers, 11.6.2.2 figures 11-13/11-14.
 * LDR bits 31:24 hold the 8-bit logical APIC ID; DFR bits 31:28 the model. */
#define APIC_LDR_ID_SHIFT     24u
#define APIC_DFR_MODEL_SHIFT  28u
#define APIC_DFR_MODEL_FLAT   0xfu /* 1111b */
#define APIC_DFR_MODEL_CLUSTER 0x0u /* 0000b */

/* --- Decoded command ---------------------------------------------------------------- */

/* One ICR write, mode-independent. */
struct icr_cmd {
    uint8_t vector;        /* bits 7:0; STARTUP: page number of the start-up code */
    uint8_t delivery_mode; /* bits 10:8, enum icr_mode (3 and 7 reserved) */
    bool logical;          /* bit 11: destination is a logical MDA, not an APIC ID */
    bool level_assert;     /* bit 14: level; false only for INIT level de-assert */
    bool trigger_level;    /* bit 15: trigger mode; true = level */
    uint8_t shorthand;     /* bits 19:18, enum icr_shorthand */
    uint32_t dest;         /* xAPIC: ICR_HI[31:24] (0..0xff); x2APIC: ICR[63:32] */
};

/* Decodes an xAPIC ICR: icr_lo is the value written to offset 0x300 (the write that
 * sends), icr_hi the current value at 0x310. Reserved and read-only bits are dropped. */
void icr_decode_xapic(uint32_t icr_lo, uint32_t icr_hi, struct icr_cmd *out);

/* Decodes the 64-bit value written to MSR 0x830 in x2APIC mode. Reserved bits are
 * dropped: check them first with icr_x2apic_reserved_ok. */
void icr_decode_x2apic(uint64_t icr, struct icr_cmd *out);

/* The inverse of the decoders, for forwarding a command to the real APIC. encode_lo
 * gives the low dword (bits outside ICR_LO_FIELDS are 0, field values out of range are
 * truncated to their width); encode_hi_xapic the ICR_HI value (dest in bits 31:24, only
 * its low 8 bits are used); encode_x2apic the MSR 0x830 value. For every icr_lo:
 * icr_encode_lo(decode(icr_lo)) == (icr_lo & ICR_LO_FIELDS). */
uint32_t icr_encode_lo(const struct icr_cmd *c);
uint32_t icr_encode_hi_xapic(const struct icr_cmd *c);
uint64_t icr_encode_x2apic(const struct icr_cmd *c);

/* False when an x2APIC ICR write sets a reserved bit: the hypervisor injects #GP
 * instead of acting on it (11.12.1.3). */
bool icr_x2apic_reserved_ok(uint64_t icr);

/* What the hypervisor must do with a command. */
enum icr_action {
    ICR_FORWARD,       /* fixed, lowest priority, SMI, NMI: send it on the real APIC */
    ICR_INIT,          /* INIT (assert): put the targets into wait-for-SIPI */
    ICR_INIT_DEASSERT, /* INIT level de-assert: arbitration-ID sync, resets nobody */
    ICR_STARTUP,       /* STARTUP: start targets in wait-for-SIPI at vector << 12 */
    ICR_INVALID,       /* reserved mode or invalid combination: drop it */
};

/* Classifies a command, in this order:
 *  1. delivery mode 3 or 7 (reserved), or a shorthand above 3
 *     (only a hand-built struct can have one)                          -> ICR_INVALID
 *  2. INIT with level=0 and trigger=level, any destination (11.6.1:
 *     "INIT level de-assert" goes to all processors whatever the destination
 *     field and shorthand say)                                         -> ICR_INIT_DEASSERT
 *  3. shorthand self or all-including-self with any mode but fixed
 *     (table 11-3)                                                     -> ICR_INVALID
 *  4. INIT -> ICR_INIT, STARTUP -> ICR_STARTUP, anything else          -> ICR_FORWARD
 * Level-triggered IPIs other than the de-assert are not invalid: table 11-3 note 2 says
 * the xAPIC sends them as edge-triggered (Linux sends INIT assert with trigger=level).
 * An INIT with level=0 but edge trigger is an INIT: since the Pentium 4 the level bit
 * "will always be issued as a 1" (11.6.1). Vectors are not checked: an illegal vector
 * on a forwarded IPI is the real APIC's to report (11.5.3 "Error Handling"). */
enum icr_action icr_classify(const struct icr_cmd *c);

/* One processor's destination-relevant APIC state. */
struct apic_view {
    uint32_t apic_id; /* xAPIC: the 8-bit ID (APIC ID register >> 24); x2APIC: the
                         32-bit x2APIC ID (MSR 0x802) */
    uint32_t ldr;     /* xAPIC: raw LDR (0xfee000d0), logical ID in bits 31:24.
                         Ignored in x2APIC mode: derived from apic_id (icr_x2apic_ldr) */
    uint32_t dfr;     /* xAPIC: raw DFR (0xfee000e0), model in bits 31:28. Ignored in
                         x2APIC mode, which only has the cluster model */
};

#define ICR_MAX_CPUS 64u

/* The logical x2APIC ID the hardware derives from an x2APIC ID (11.12.10.2 "Deriving
 * Logical x2APIC ID from the Local x2APIC ID"): cluster = ID[19:4] in bits 31:16,
 * 1 << ID[3:0] in bits 15:0. */
uint32_t icr_x2apic_ldr(uint32_t x2apic_id);

/* The processors a command reaches: bit i set when cpus[i] is a destination.
 * cpus[0..n) are all the processors, self is the index of the sender (a self >= n
 * means the sender is not in the table: "self" then reaches nobody and
 * "all excluding self" everybody). x2apic selects the x2APIC rules (11.12.10) over the
 * xAPIC ones (11.6.2). Returns 0 when n is 0 or above ICR_MAX_CPUS.
 *  - ICR_INVALID commands reach nobody (0), so a caller can never act on one;
 *  - INIT level de-assert reaches every processor including the sender (11.6.1);
 *  - shorthands: self / all including self / all excluding self;
 *  - physical: the CPU whose apic_id equals dest (xAPIC: the low 8 bits of dest),
 *    or every CPU for the broadcast ID (0xff, x2APIC 0xffffffff);
 *  - xAPIC logical (11.6.2.2), MDA = low 8 bits of dest; 0xff reaches every CPU in
 *    either model (the SDM's "broadcast to all", regardless of LDR); otherwise by the
 *    receiving CPU's DFR model: flat (1111b): MDA & LDR[31:24] != 0; cluster (0000b):
 *    MDA[7:4] equals LDR[31:28] or is 0xf (the SDM's "match on all clusters"), and
 *    MDA[3:0] & LDR[27:24] != 0; any other DFR model matches nothing;
 *  - x2APIC logical (11.12.10.1): 0xffffffff reaches every CPU; otherwise
 *    dest[31:16] equals the CPU's cluster and dest[15:0] & its logical bit != 0.
 * Lowest priority: the set of candidates, not the one CPU the bus would pick (the
 * hypervisor forwards lowest-priority IPIs and only acts itself on INIT/STARTUP). */
uint64_t icr_targets(const struct icr_cmd *c, bool x2apic, const struct apic_view *cpus,
                     unsigned n, unsigned self);

/* The same rules for one processor, whatever the processor count: does the command
 * reach cpu (is_self: cpu is the sender)? icr_targets is this over a table of at most
 * ICR_MAX_CPUS; the hypervisor, which has more CPUs, asks per CPU. */
bool icr_reaches(const struct icr_cmd *c, bool x2apic, const struct apic_view *cpu,
                 bool is_self);

#endif
