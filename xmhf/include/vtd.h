/* Intel VT-d DMA remapping: Intel Virtualization Technology for Directed I/O
 * Architecture Specification (rev. 4.x), chapter 8 "BIOS Considerations" for the DMAR
 * ACPI table, chapter 9 "Translation Structure Formats" for the root, context and
 * second-level entries, chapter 11 "Register Descriptions" for the remapping unit's
 * registers. Only legacy (non-scalable) mode with second-level tables is used. */
#ifndef XMHF_VTD_H
#define XMHF_VTD_H
#include <stdint.h>

/* ---- 8.1 "DMA Remapping Reporting Structure" (ACPI table "DMAR") ---- */
#define DMAR_HAW_OFFSET     36u     /* host address width - 1 */
#define DMAR_FLAGS_OFFSET   37u     /* bit 0 INTR_REMAP, 1 X2APIC_OPT_OUT, 2 DMA_CTRL_OPT_IN */
#define DMAR_STRUCT_OFFSET  48u     /* remapping structures follow 10 reserved bytes */

/* 8.2 "Remapping Structure Types": each starts with type(2), length(2). */
#define DMAR_TYPE_DRHD  0u      /* 8.3 DMA-remapping hardware unit definition */
#define DMAR_TYPE_RMRR  1u      /* 8.4 reserved memory region reporting */
#define DMAR_TYPE_ATSR  2u
#define DMAR_TYPE_RHSA  3u
#define DMAR_TYPE_ANDD  4u
#define DMAR_TYPE_SATC  5u

struct __attribute__((packed)) dmar_drhd {
    uint16_t type, length;
    uint8_t flags;              /* bit 0 INCLUDE_PCI_ALL */
    uint8_t size;               /* register set size: 2^size 4 KiB pages (rev. 3+; 0 = 1) */
    uint16_t segment;
    uint64_t base;              /* register base address */
    /* device scopes follow */
};
_Static_assert(sizeof(struct dmar_drhd) == 16, "DRHD layout");
#define DRHD_INCLUDE_PCI_ALL 0x1u

struct __attribute__((packed)) dmar_rmrr {
    uint16_t type, length;
    uint16_t reserved, segment;
    uint64_t base;              /* 4 KiB aligned */
    uint64_t limit;             /* last byte (limit + 1 is 4 KiB aligned) */
    /* device scopes follow */
};
_Static_assert(sizeof(struct dmar_rmrr) == 24, "RMRR layout");

/* 8.3.1 "Device Scope Structure" */
struct __attribute__((packed)) dmar_scope {
    uint8_t type, length;       /* type: 1 PCI endpoint, 2 PCI sub-hierarchy, 3 IOAPIC,
                                   4 HPET, 5 ACPI namespace device */
    uint16_t reserved;
    uint8_t enum_id, start_bus;
    /* (device, function) pairs follow */
};
_Static_assert(sizeof(struct dmar_scope) == 6, "device scope layout");

/* ---- 11.4 "Register Descriptions" (offsets from the unit's base) ---- */
#define VTD_VER     0x00u
#define VTD_CAP     0x08u
#define VTD_ECAP    0x10u
#define VTD_GCMD    0x18u       /* 32-bit */
#define VTD_GSTS    0x1cu       /* 32-bit */
#define VTD_RTADDR  0x20u
#define VTD_CCMD    0x28u
#define VTD_FSTS    0x34u       /* 32-bit */
#define VTD_FECTL   0x38u       /* 32-bit */
#define VTD_PMEN    0x64u       /* 32-bit */
#define VTD_IQH     0x80u
#define VTD_IQT     0x88u
#define VTD_IQA     0x90u
#define VTD_ICS     0x9cu       /* 32-bit */
#define VTD_REG_PAGE 0x1000u

/* 11.4.2 "Capability Register" */
#define VTD_CAP_ND(c)       ((unsigned)((c) & 7u))          /* domain-id bits: 4 + 2*ND */
#define VTD_CAP_RWBF        (1ull << 4)
#define VTD_CAP_PLMR        (1ull << 5)
#define VTD_CAP_PHMR        (1ull << 6)
#define VTD_CAP_CM          (1ull << 7)
#define VTD_CAP_SAGAW(c)    ((unsigned)(((c) >> 8) & 0x1fu))   /* bit 1: 3-level, bit 2: 4-level */
#define VTD_CAP_MGAW(c)     ((unsigned)(((c) >> 16) & 0x3fu) + 1u)
#define VTD_CAP_FRO(c)      ((unsigned)(((c) >> 24) & 0x3ffu) * 16u)
#define VTD_CAP_SLLPS(c)    ((unsigned)(((c) >> 34) & 0xfu))  /* bit 0: 2 MiB, bit 1: 1 GiB */
#define VTD_CAP_NFR(c)      ((unsigned)(((c) >> 40) & 0xffu) + 1u)

/* 11.4.3 "Extended Capability Register" */
#define VTD_ECAP_C          (1ull << 0)     /* page walks snoop the processor caches */
#define VTD_ECAP_QI         (1ull << 1)
#define VTD_ECAP_IR         (1ull << 3)
#define VTD_ECAP_IRO(e)     ((unsigned)(((e) >> 8) & 0x3ffu) * 16u)  /* IOTLB registers */
#define VTD_ECAP_SMTS       (1ull << 43)

/* 11.4.4 "Global Command Register" / 11.4.5 "Global Status Register": the same bit
 * positions. One-shot commands (SRTP, SFL, WBF, SIRTP) read back 0 from GSTS's view of
 * the command; software writes GCMD as (GSTS & VTD_GCMD_PERSIST) | command. */
#define VTD_GCMD_TE     (1u << 31)
#define VTD_GCMD_SRTP   (1u << 30)
#define VTD_GCMD_SFL    (1u << 29)
#define VTD_GCMD_EAFL   (1u << 28)
#define VTD_GCMD_WBF    (1u << 27)
#define VTD_GCMD_QIE    (1u << 26)
#define VTD_GCMD_IRE    (1u << 25)
#define VTD_GCMD_SIRTP  (1u << 24)
#define VTD_GCMD_CFI    (1u << 23)
#define VTD_GCMD_PERSIST 0x96ffffffu    /* every bit except SRTP, SFL, WBF, SIRTP */

/* 11.4.7 "Context Command Register" */
#define VTD_CCMD_ICC        (1ull << 63)
#define VTD_CCMD_GLOBAL     (1ull << 61)    /* CIRG = 01b */

/* 11.4.8.1 "IOTLB Invalidate Register" (at ECAP.IRO + 8) */
#define VTD_IOTLB_IVT       (1ull << 63)
#define VTD_IOTLB_GLOBAL    (1ull << 60)    /* IIRG = 01b */
#define VTD_IOTLB_DR        (1ull << 49)
#define VTD_IOTLB_DW        (1ull << 48)

/* 11.4.9 "Fault Status Register" */
#define VTD_FSTS_PFO        (1u << 0)
#define VTD_FSTS_PPF        (1u << 1)
#define VTD_FSTS_FRI(s)     (((s) >> 8) & 0xffu)
#define VTD_FSTS_RW1C       0x7du   /* PFO, AFO, APF, IQE, ICE, ITE (PPF is read-only) */
#define VTD_FECTL_IM        (1u << 31)
/* 11.4.10 "Fault Recording Registers": 128 bits each, at CAP.FRO. */
#define VTD_FRCD_HI_F       (1ull << 63)    /* bit 127: fault recorded (RW1C) */
#define VTD_FRCD_HI_T       (1ull << 62)    /* bit 126: 1 = read, 0 = write */
#define VTD_FRCD_HI_FR(h)   ((unsigned)(((h) >> 32) & 0xffu))
#define VTD_FRCD_HI_SID(h)  ((unsigned)((h) & 0xffffu))
#define VTD_FRCD_LO_FI(l)   ((l) & ~0xfffull)

#define VTD_PMEN_EPM        (1u << 31)
#define VTD_PMEN_PRS        (1u << 0)

/* 6.5.2 "Queued Invalidation Interface": descriptors of 128 bits. */
#define VTD_IQA_QS_4K       0u              /* 256 descriptors */
#define VTD_QI_CC_GLOBAL    (0x1ull | (1ull << 4))          /* context-cache, global */
#define VTD_QI_IOTLB_GLOBAL (0x2ull | (1ull << 4) | (1ull << 7) | (1ull << 6)) /* + DR, DW */
#define VTD_QI_WAIT_SW      (0x5ull | (1ull << 5))          /* status write */

/* ---- 9.1 "Root Entry", 9.3 "Context Entry" (legacy mode, 128 bits each) ---- */
#define VTD_ROOT_P          1ull
#define VTD_CTX_P           1ull
#define VTD_CTX_TT_SL       (0ull << 2)     /* untranslated requests through SL tables */
#define VTD_CTX_AW_39       1ull            /* 3-level table */
#define VTD_CTX_AW_48       2ull            /* 4-level table */
#define VTD_CTX_DID(d)      ((uint64_t)(d) << 8)

/* 9.8 "Second-Level Paging Entries": R, W, page size in PDE/PDPE. */
#define VTD_SL_R            (1ull << 0)
#define VTD_SL_W            (1ull << 1)
#define VTD_SL_PS           (1ull << 7)

/* 7.1.3 "Fault Reasons": 5 = write through an entry without W, 6 = read through an
 * entry without R (a not-present second-level entry has neither). */

#endif
