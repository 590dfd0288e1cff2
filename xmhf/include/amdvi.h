/* AMD I/O virtualization (AMD-Vi): AMD I/O Virtualization Technology (IOMMU)
 * Specification (pub. 48882), section 5.2 "IVRS" for the ACPI table, 2.2.2 "Device
 * Table Entry Format", 2.2.3 "I/O Page Tables for Host Translations", 2.4 "Commands",
 * 2.5 "Event Logging", 3.4 "IOMMU MMIO Registers". Host (v1) page tables only. */
#ifndef XMHF_AMDVI_H
#define XMHF_AMDVI_H
#include <stdint.h>

/* ---- 5.2.2 "I/O Virtualization Reporting Structure (IVRS)" ---- */
#define IVRS_IVINFO_OFFSET  36u
#define IVRS_BLOCK_OFFSET   48u     /* IVinfo(4) + reserved(8) after the header */

/* 5.2.2.1-5.2.2.3 block types: IVHD (hardware definition) and IVMD (memory definition).
 * Each block starts with type(1), flags(1), length(2). */
#define IVRS_IVHD_10    0x10u
#define IVRS_IVHD_11    0x11u
#define IVRS_IVHD_40    0x40u
#define IVRS_IVMD_ALL   0x20u
#define IVRS_IVMD_DEV   0x21u
#define IVRS_IVMD_RANGE 0x22u

struct __attribute__((packed)) ivhd {
    uint8_t type, flags;
    uint16_t length;
    uint16_t devid;             /* the IOMMU's own PCI requester ID */
    uint16_t cap_offset;
    uint64_t base;              /* MMIO register base, 16 KiB aligned */
    uint16_t segment;
    uint16_t info;
    uint32_t features;          /* type 10h: feature reporting; 11h/40h: attributes */
};
_Static_assert(sizeof(struct ivhd) == 24, "IVHD header layout");
#define IVHD10_ENTRIES  24u     /* device entries start after the header */
#define IVHD11_ENTRIES  40u     /* ... after EFR image(8) and reserved(8) */

/* 5.2.2.2 "IVHD Device Entries": the type's top two bits give the size: 00/01 4 bytes,
 * 10 8 bytes, 11 variable (ACPI HID entry 0xf0: length in byte 21). */
#define IVHD_DEV_ALL        0x01u
#define IVHD_DEV_SELECT     0x02u
#define IVHD_DEV_RANGE      0x03u
#define IVHD_DEV_RANGE_END  0x04u
#define IVHD_DEV_ALIAS_SEL  0x42u
#define IVHD_DEV_ALIAS_RNG  0x43u
#define IVHD_DEV_EXT_SEL    0x46u
#define IVHD_DEV_EXT_RNG    0x47u
#define IVHD_DEV_SPECIAL    0x48u
#define IVHD_DEV_HID        0xf0u

struct __attribute__((packed)) ivmd {
    uint8_t type, flags;        /* flags: 0 unity, 1 IR, 2 IW, 3 exclusion range */
    uint16_t length;            /* 32 */
    uint16_t devid, aux;
    uint64_t reserved;
    uint64_t start, size;
};
_Static_assert(sizeof(struct ivmd) == 32, "IVMD layout");
#define IVMD_UNITY      0x1u
#define IVMD_EXCLUSION  0x8u

/* ---- 3.4 "IOMMU MMIO Registers" ---- */
#define AMDVI_DEVTAB_BASE   0x0000u     /* base | Size (4 KiB pages - 1, bits 8:0) */
#define AMDVI_CMDBUF_BASE   0x0008u     /* base | ComLen (log2 entries, bits 59:56) */
#define AMDVI_EVTLOG_BASE   0x0010u     /* base | EventLen (bits 59:56) */
#define AMDVI_CONTROL       0x0018u
#define AMDVI_EXCL_BASE     0x0020u
#define AMDVI_EXCL_LIMIT    0x0028u
#define AMDVI_EFR           0x0030u
#define AMDVI_CMD_HEAD      0x2000u
#define AMDVI_CMD_TAIL      0x2008u
#define AMDVI_EVT_HEAD      0x2010u
#define AMDVI_EVT_TAIL      0x2018u
#define AMDVI_STATUS        0x2020u
#define AMDVI_MMIO_SIZE     0x4000u     /* 16 KiB; 512 KiB with performance counters */
#define AMDVI_MMIO_SIZE_PC  0x80000u

#define AMDVI_LEN_SHIFT     56u
#define AMDVI_RING_LOG2     8u          /* 256 entries of 16 bytes: one 4 KiB page */

/* 3.4.3 "IOMMU Control Register" */
#define AMDVI_CTL_EN            (1ull << 0)
#define AMDVI_CTL_EVTLOG_EN     (1ull << 2)
#define AMDVI_CTL_EVTINT_EN     (1ull << 3)
#define AMDVI_CTL_COMWAITINT_EN (1ull << 4)
#define AMDVI_CTL_INVTIMEOUT_1S (5ull << 5)
#define AMDVI_CTL_COHERENT      (1ull << 10)
#define AMDVI_CTL_CMDBUF_EN     (1ull << 12)
#define AMDVI_CTL_PPRLOG_EN     (1ull << 13)
#define AMDVI_CTL_GT_EN         (1ull << 16)

/* 3.4.5 "Extended Feature Register" */
#define AMDVI_EFR_IASUP     (1ull << 6)     /* INVALIDATE_IOMMU_ALL */
#define AMDVI_EFR_PCSUP     (1ull << 9)     /* performance counters (512 KiB MMIO) */

/* 3.4.11 "IOMMU Status Register" (RW1C bits 0-2) */
#define AMDVI_STS_EVT_OVERFLOW  (1ull << 0)
#define AMDVI_STS_EVT_INT       (1ull << 1)
#define AMDVI_STS_COMWAIT_INT   (1ull << 2)
#define AMDVI_STS_EVTLOG_RUN    (1ull << 3)
#define AMDVI_STS_CMDBUF_RUN    (1ull << 4)

/* ---- 2.2.2 "Device Table Entry Format": 256 bits ---- */
#define AMDVI_DTE_SIZE      32u
#define AMDVI_DTE_V         (1ull << 0)
#define AMDVI_DTE_TV        (1ull << 1)
#define AMDVI_DTE_MODE(m)   ((uint64_t)(m) << 9)
#define AMDVI_DTE_IR        (1ull << 61)
#define AMDVI_DTE_IW        (1ull << 62)
/* second quadword: DomainID in bits 15:0. Third: IV (bit 0) clear = interrupts are not
 * remapped, they pass unchanged. */

/* ---- 2.2.3 "I/O Page Tables for Host Translations" ---- */
#define AMDVI_PTE_PR        (1ull << 0)
#define AMDVI_PTE_NEXT(l)   ((uint64_t)(l) << 9)    /* 0: a page; 1-6: table level */
#define AMDVI_PTE_NEXT_MASK (7ull << 9)
/* A not-present entry: the IOMMU ignores every bit but PR. The tables write next level
 * 1 there rather than 0 because QEMU 7.2's walk stops silently at an all-zero entry and
 * logs IO_PAGE_FAULT only for a non-zero one (the access is blocked either way). */
#define AMDVI_PTE_ABSENT    AMDVI_PTE_NEXT(1)
#define AMDVI_PTE_IR        (1ull << 61)
#define AMDVI_PTE_IW        (1ull << 62)

/* ---- 2.4 "Commands": 128 bits, opcode in bits 63:60 ---- */
#define AMDVI_CMD_OP(op)            ((uint64_t)(op) << 60)
#define AMDVI_CMD_COMPLETION_WAIT   1u      /* lo: store address | S (bit 0); hi: data */
#define AMDVI_CMD_INV_DEVTAB_ENTRY  2u      /* lo: DeviceID in bits 15:0 */
#define AMDVI_CMD_INV_IOMMU_PAGES   3u      /* lo: DomainID in bits 47:32; hi: S, PDE, address */
#define AMDVI_CMD_INV_IOMMU_ALL     8u
#define AMDVI_CW_STORE              (1ull << 0)
#define AMDVI_INV_ALL_PAGES_HI      (0x7ffffffffffff000ull | 0x3ull) /* S=1, PDE=1 */

/* ---- 2.5 "Event Logging": 128 bits, event code in bits 63:60 ---- */
#define AMDVI_EVT_SIZE              16u
#define AMDVI_EVT_CODE(lo)          ((unsigned)((lo) >> 60))
#define AMDVI_EVT_DEVID(lo)         ((unsigned)((lo) & 0xffffu))
#define AMDVI_EVT_ILLEGAL_DTE       1u
#define AMDVI_EVT_IO_PAGE_FAULT     2u
#define AMDVI_EVT_DEVTAB_HW_ERROR   3u
#define AMDVI_EVT_PAGETAB_HW_ERROR  4u
#define AMDVI_EVT_ILLEGAL_COMMAND   5u
#define AMDVI_EVT_COMMAND_HW_ERROR  6u
#define AMDVI_EVT_IOPF_RW           (1ull << 53)   /* IO_PAGE_FAULT: 1 = write */

#endif
