/* Local APIC: Intel SDM Vol. 3A chapter 11 "Advanced Programmable Interrupt Controller
 * (APIC)": 11.4.1 register map (table 11-1), 11.6.1 "Interrupt Command Register",
 * 11.12 "Extended XAPIC (x2APIC)" (MSR = 0x800 + offset / 16). */
#ifndef XMHF_APIC_H
#define XMHF_APIC_H

#define APIC_DEFAULT_BASE 0xfee00000ull
#define APIC_ID        0x020u
#define APIC_VERSION   0x030u
#define APIC_TPR       0x080u
#define APIC_EOI       0x0b0u
#define APIC_LDR       0x0d0u
#define APIC_DFR       0x0e0u
#define APIC_SVR       0x0f0u
#define APIC_SVR_ENABLE (1u << 8)
#define APIC_ISR       0x100u     /* 8 registers, 0x100-0x170 */
#define APIC_IRR       0x200u     /* 8 registers, 0x200-0x270 */
#define APIC_ESR       0x280u
#define APIC_LVT_CMCI  0x2f0u
#define APIC_ICR_LO    0x300u
#define APIC_ICR_HI    0x310u
#define APIC_LVT_TIMER 0x320u
#define APIC_LVT_THERMAL 0x330u
#define APIC_LVT_PERF  0x340u
#define APIC_LVT_LINT0 0x350u
#define APIC_LVT_LINT1 0x360u
#define APIC_LVT_ERROR 0x370u
#define APIC_TIMER_INIT 0x380u
#define APIC_TIMER_DCR 0x3e0u
#define APIC_LVT_MASKED (1u << 16)
#define X2APIC_MSR(off) (0x800u + ((off) >> 4))

#define ICR_VECTOR(v)      ((v) & 0xffu)
#define ICR_DM_FIXED       (0u << 8)
#define ICR_DM_NMI         (4u << 8)
#define ICR_DM_INIT        (5u << 8)
#define ICR_DM_STARTUP     (6u << 8)
#define ICR_DELIVERY_PENDING (1u << 12)
#define ICR_LEVEL_ASSERT   (1u << 14)
#define ICR_TRIGGER_LEVEL  (1u << 15)
/* 11.12.9: the x2APIC ICR (MSR 0x830); bits 12-13, 16-17, 20-31 reserved (#GP, 11.12.1.3) */
#define X2APIC_ICR_RESERVED 0x00000000fff33000ull

/* The I/O APIC (Intel 82093AA datasheet, 3.2 "Register Description"): an index register
 * and a data window; register 1 holds the highest redirection entry in bits 23:16;
 * entry n's low dword is register 10h + 2n, with the delivery mode in bits 10:8 (the
 * ICR's encoding; 110b is reserved there) and the mask in bit 16. */
#define IOAPIC_REGSEL   0x00u
#define IOAPIC_WIN      0x10u
#define IOAPIC_VER      0x01u
#define IOAPIC_RTE_LO(n) (0x10u + 2u * (n))
#define IOAPIC_RTE_DM(lo) ((lo) & (7u << 8))
/* A delivery mode (bits 10:8, the same in an I/O APIC entry, an MSI's data and an HPET
 * FSB message) that would make a CPU outside VMX operation run guest code: NMI (through
 * the real-mode interrupt table) or the reserved STARTUP encoding (Bochs delivers it). */
#define DM_RUNS_GUEST_CODE(d) \
    (IOAPIC_RTE_DM(d) == ICR_DM_NMI || IOAPIC_RTE_DM(d) == ICR_DM_STARTUP)
#define IOAPIC_RTE_MASKED (1u << 16)

/* The HPET (IA-PC HPET Specification 1.0a, 2.3 "Register Set"): capabilities at 0 with
 * the last timer's number in bits 12:8; timer n's configuration at 100h + 20h n (bit 2
 * interrupt enable, bit 14 FSB delivery enable) and its FSB route at 110h + 20h n
 * (message data in bits 31:0, with the delivery mode in bits 10:8 as in an MSI). */
#define HPET_SIZE       0x400u
#define HPET_CAP        0x000u
#define HPET_CAP_TIMERS(c) ((unsigned)(((c) >> 8) & 0x1f) + 1u)
#define HPET_TN_CFG(n)  (0x100u + 0x20u * (n))
#define HPET_TN_FSB(n)  (0x110u + 0x20u * (n))
#define HPET_TN_INT_ENB (1u << 2)
#define HPET_TN_FSB_EN  (1u << 14)

#endif
