/* ACPI tables the hypervisor reads to find the processors: ACPI 6.5 sections 5.2.5
 * "Root System Description Pointer", 5.2.7/5.2.8 "RSDT"/"XSDT", 5.2.12 "Multiple APIC
 * Description Table (MADT)". */
#ifndef XMHF_ACPI_H
#define XMHF_ACPI_H
#include <stddef.h>
#include <stdint.h>

struct __attribute__((packed)) acpi_rsdp {
    char sig[8];          /* "RSD PTR " */
    uint8_t checksum;     /* first 20 bytes sum to 0 */
    char oem[6];
    uint8_t revision;     /* 2+: the XSDT fields are valid */
    uint32_t rsdt;
    uint32_t length;
    uint64_t xsdt;
    uint8_t xchecksum;
    uint8_t rsvd[3];
};
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP layout");

struct __attribute__((packed)) acpi_header {
    char sig[4];
    uint32_t length;
    uint8_t revision, checksum;
    char oem[6], oem_table[8];
    uint32_t oem_rev, creator, creator_rev;
};
_Static_assert(sizeof(struct acpi_header) == 36, "SDT header layout");

#define MADT_LAPIC    0u  /* 5.2.12.2: uid(1), apic id(1), flags(4) */
#define MADT_IOAPIC   1u  /* 5.2.12.3: id(1), rsvd(1), address(4), GSI base(4) */
#define MADT_X2APIC   9u  /* 5.2.12.12: rsvd(2), x2apic id(4), flags(4), uid(4) */
#define MADT_ENABLED  (1u << 0)
#define MADT_ONLINE_CAPABLE (1u << 1)
#define MADT_ENTRIES_OFFSET 44u /* header + local APIC address + flags */
/* IA-PC HPET Specification 1.0a, 3.2.4 "The ACPI 2.0 HPET Description Table": the
 * base address's Generic Address Structure at offset 40, its 64-bit address at 44. */
#define ACPI_HPET_ADDR 44u

#endif
