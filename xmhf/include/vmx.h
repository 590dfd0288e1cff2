/* VMX: Intel SDM Vol. 3C chapters 24-27 ("Virtual Machine Control Structures",
 * "VMX Non-Root Operation", "VM Entries", "VM Exits") and Vol. 3D appendix B
 * ("Field Encoding in VMCS"), appendix C ("VMX Basic Exit Reasons"). */
#ifndef XMHF_VMX_H
#define XMHF_VMX_H
#include <stdint.h>

/* VMCS fields, defined once: X(width, name, encoding). Appendix B. The width is part of
 * the encoding (bits 14:13) and is checked below; each width has its own type so that a
 * field can only be read or written with the accessor of its width, and an encoding can
 * never be passed where a value belongs. */
#define VMCS_FIELDS(X) \
    X(16, VPID, 0x0000) \
    X(16, GUEST_ES_SEL, 0x0800) X(16, GUEST_CS_SEL, 0x0802) X(16, GUEST_SS_SEL, 0x0804) \
    X(16, GUEST_DS_SEL, 0x0806) X(16, GUEST_FS_SEL, 0x0808) X(16, GUEST_GS_SEL, 0x080a) \
    X(16, GUEST_LDTR_SEL, 0x080c) X(16, GUEST_TR_SEL, 0x080e) \
    X(16, HOST_ES_SEL, 0x0c00) X(16, HOST_CS_SEL, 0x0c02) X(16, HOST_SS_SEL, 0x0c04) \
    X(16, HOST_DS_SEL, 0x0c06) X(16, HOST_FS_SEL, 0x0c08) X(16, HOST_GS_SEL, 0x0c0a) \
    X(16, HOST_TR_SEL, 0x0c0c) \
    X(64, IO_BITMAP_A, 0x2000) X(64, IO_BITMAP_B, 0x2002) X(64, MSR_BITMAP, 0x2004) \
    X(64, EXIT_MSR_STORE_ADDR, 0x2006) X(64, EXIT_MSR_LOAD_ADDR, 0x2008) \
    X(64, ENTRY_MSR_LOAD_ADDR, 0x200a) X(64, TSC_OFFSET, 0x2010) X(64, EPT_POINTER, 0x201a) \
    X(64, XSS_EXIT_BITMAP, 0x202c) X(64, SPPTP, 0x2030) \
    X(64, GUEST_PHYS_ADDR, 0x2400) \
    X(64, VMCS_LINK_PTR, 0x2800) X(64, GUEST_DEBUGCTL, 0x2802) X(64, GUEST_PAT, 0x2804) \
    X(64, GUEST_EFER, 0x2806) X(64, GUEST_PDPTE0, 0x280a) X(64, GUEST_PDPTE1, 0x280c) \
    X(64, GUEST_PDPTE2, 0x280e) X(64, GUEST_PDPTE3, 0x2810) \
    X(64, HOST_PAT, 0x2c00) X(64, HOST_EFER, 0x2c02) \
    X(32, PIN_CTLS, 0x4000) X(32, PROC_CTLS, 0x4002) X(32, EXCEPTION_BITMAP, 0x4004) \
    X(32, PF_EC_MASK, 0x4006) X(32, PF_EC_MATCH, 0x4008) X(32, CR3_TARGET_COUNT, 0x400a) \
    X(32, EXIT_CTLS, 0x400c) X(32, EXIT_MSR_STORE_COUNT, 0x400e) \
    X(32, EXIT_MSR_LOAD_COUNT, 0x4010) X(32, ENTRY_CTLS, 0x4012) \
    X(32, ENTRY_MSR_LOAD_COUNT, 0x4014) X(32, ENTRY_INTR_INFO, 0x4016) \
    X(32, ENTRY_EXC_ERRCODE, 0x4018) X(32, ENTRY_INSTR_LEN, 0x401a) \
    X(32, TPR_THRESHOLD, 0x401c) X(32, PROC_CTLS2, 0x401e) \
    X(32, VM_INSTR_ERROR, 0x4400) X(32, EXIT_REASON, 0x4402) X(32, EXIT_INTR_INFO, 0x4404) \
    X(32, EXIT_INTR_ERRCODE, 0x4406) X(32, IDT_VECTORING_INFO, 0x4408) \
    X(32, IDT_VECTORING_ERRCODE, 0x440a) X(32, EXIT_INSTR_LEN, 0x440c) \
    X(32, EXIT_INSTR_INFO, 0x440e) \
    X(32, GUEST_ES_LIMIT, 0x4800) X(32, GUEST_CS_LIMIT, 0x4802) X(32, GUEST_SS_LIMIT, 0x4804) \
    X(32, GUEST_DS_LIMIT, 0x4806) X(32, GUEST_FS_LIMIT, 0x4808) X(32, GUEST_GS_LIMIT, 0x480a) \
    X(32, GUEST_LDTR_LIMIT, 0x480c) X(32, GUEST_TR_LIMIT, 0x480e) \
    X(32, GUEST_GDTR_LIMIT, 0x4810) X(32, GUEST_IDTR_LIMIT, 0x4812) \
    X(32, GUEST_ES_AR, 0x4814) X(32, GUEST_CS_AR, 0x4816) X(32, GUEST_SS_AR, 0x4818) \
    X(32, GUEST_DS_AR, 0x481a) X(32, GUEST_FS_AR, 0x481c) X(32, GUEST_GS_AR, 0x481e) \
    X(32, GUEST_LDTR_AR, 0x4820) X(32, GUEST_TR_AR, 0x4822) \
    X(32, GUEST_INTERRUPTIBILITY, 0x4824) X(32, GUEST_ACTIVITY, 0x4826) \
    X(32, GUEST_SYSENTER_CS, 0x482a) X(32, GUEST_PREEMPT_TIMER, 0x482e) \
    X(32, HOST_SYSENTER_CS, 0x4c00) \
    X(N, CR0_MASK, 0x6000) X(N, CR4_MASK, 0x6002) X(N, CR0_SHADOW, 0x6004) \
    X(N, CR4_SHADOW, 0x6006) X(N, EXIT_QUALIFICATION, 0x6400) X(N, GUEST_LINEAR_ADDR, 0x640a) \
    X(N, GUEST_CR0, 0x6800) X(N, GUEST_CR3, 0x6802) X(N, GUEST_CR4, 0x6804) \
    X(N, GUEST_ES_BASE, 0x6806) X(N, GUEST_CS_BASE, 0x6808) X(N, GUEST_SS_BASE, 0x680a) \
    X(N, GUEST_DS_BASE, 0x680c) X(N, GUEST_FS_BASE, 0x680e) X(N, GUEST_GS_BASE, 0x6810) \
    X(N, GUEST_LDTR_BASE, 0x6812) X(N, GUEST_TR_BASE, 0x6814) X(N, GUEST_GDTR_BASE, 0x6816) \
    X(N, GUEST_IDTR_BASE, 0x6818) X(N, GUEST_DR7, 0x681a) X(N, GUEST_RSP, 0x681c) \
    X(N, GUEST_RIP, 0x681e) X(N, GUEST_RFLAGS, 0x6820) X(N, GUEST_PENDING_DBG, 0x6822) \
    X(N, GUEST_SYSENTER_ESP, 0x6824) X(N, GUEST_SYSENTER_EIP, 0x6826) \
    X(N, HOST_CR0, 0x6c00) X(N, HOST_CR3, 0x6c02) X(N, HOST_CR4, 0x6c04) \
    X(N, HOST_FS_BASE, 0x6c06) X(N, HOST_GS_BASE, 0x6c08) X(N, HOST_TR_BASE, 0x6c0a) \
    X(N, HOST_GDTR_BASE, 0x6c0c) X(N, HOST_IDTR_BASE, 0x6c0e) \
    X(N, HOST_SYSENTER_ESP, 0x6c10) X(N, HOST_SYSENTER_EIP, 0x6c12) \
    X(N, HOST_RSP, 0x6c14) X(N, HOST_RIP, 0x6c16)

typedef struct { uint32_t enc; } vmcs16_t;
typedef struct { uint32_t enc; } vmcs32_t;
typedef struct { uint32_t enc; } vmcs64_t;
typedef struct { uint32_t enc; } vmcsN_t;

#define VMCS_WIDTH_16 0u
#define VMCS_WIDTH_64 1u
#define VMCS_WIDTH_32 2u
#define VMCS_WIDTH_N  3u
#define X(w, name, enc) \
    static const vmcs##w##_t VMCS_##name = { enc }; \
    _Static_assert(((enc) >> 13 & 3u) == VMCS_WIDTH_##w, "VMCS width of " #name);
VMCS_FIELDS(X)
#undef X

/* 24.6.1 Pin-Based VM-Execution Controls */
#define PIN_EXTINT_EXIT   (1u << 0)
#define PIN_NMI_EXIT      (1u << 3)
#define PIN_VIRTUAL_NMI   (1u << 5)
#define PIN_PREEMPT_TIMER (1u << 6)     /* 25.5.1: counts down at TSC >> VMX_MISC[4:0] */
/* 24.6.2 Processor-Based VM-Execution Controls (primary, table 24-6) */
#define PROC_INTR_WINDOW  (1u << 2)
#define PROC_HLT_EXIT     (1u << 7)
#define PROC_CR3_LOAD     (1u << 15)
#define PROC_CR3_STORE    (1u << 16)
#define PROC_NMI_WINDOW   (1u << 22)
#define PROC_UNCOND_IO    (1u << 24)
#define PROC_USE_IO_BITMAPS (1u << 25)
#define PROC_MTF          (1u << 27)
#define PROC_MSR_BITMAP   (1u << 28)
#define PROC_SECONDARY    (1u << 31)
/* (secondary, table 24-7) */
#define PROC2_EPT         (1u << 1)
#define PROC2_RDTSCP      (1u << 3)
#define PROC2_UNRESTRICTED (1u << 7)
#define PROC2_INVPCID     (1u << 12)
#define PROC2_XSAVES      (1u << 20)
#define PROC2_SPP         (1u << 23)    /* sub-page write permissions for EPT (29.3.4) */
/* 24.7.1 VM-Exit Controls */
#define EXIT_SAVE_DEBUG   (1u << 2)
#define EXIT_HOST_64      (1u << 9)
#define EXIT_SAVE_PAT     (1u << 18)
#define EXIT_LOAD_PAT     (1u << 19)
#define EXIT_SAVE_EFER    (1u << 20)
#define EXIT_LOAD_EFER    (1u << 21)
/* 24.8.1 VM-Entry Controls */
#define ENTRY_LOAD_DEBUG  (1u << 2)
#define ENTRY_IA32E_GUEST (1u << 9)
#define ENTRY_LOAD_PAT    (1u << 14)
#define ENTRY_LOAD_EFER   (1u << 15)

/* 24.8.3 VM-Entry Controls for Event Injection, table 24-14 */
#define INTR_INFO_VALID   (1u << 31)
#define INTR_INFO_ERRCODE (1u << 11)
#define INTR_TYPE_EXTINT  (0u << 8)
#define INTR_TYPE_NMI     (2u << 8)
#define INTR_TYPE_HWEXC   (3u << 8)
#define INTR_TYPE_SWINT   (4u << 8)

/* 24.4.2 Guest Non-Register State: interruptibility and activity */
#define INTERRUPTIBILITY_STI   (1u << 0)
#define INTERRUPTIBILITY_MOVSS (1u << 1)
#define INTERRUPTIBILITY_NMI   (1u << 3)
#define ACTIVITY_ACTIVE   0u
#define ACTIVITY_HLT      1u
#define ACTIVITY_WAIT_SIPI 3u

/* 24.4.1 segment access rights: bit 16 marks a segment unusable. */
#define AR_UNUSABLE       (1u << 16)
#define AR_L              (1u << 13)    /* CS: 64-bit code segment */

/* A.1 Basic VMX Information */
#define VMX_BASIC_TRUE_CTLS (1ull << 55)
/* A.10 VPID and EPT Capabilities */
#define EPTCAP_WALK4      (1ull << 6)
#define EPTCAP_WB         (1ull << 14)
#define EPTCAP_2M         (1ull << 16)
#define EPTCAP_INVEPT     (1ull << 20)
#define EPTCAP_INVEPT_ALL (1ull << 26)

/* Appendix C: basic exit reasons */
enum vmx_exit_reason {
    EXIT_EXCEPTION_NMI = 0, EXIT_EXTINT = 1, EXIT_TRIPLE_FAULT = 2, EXIT_INIT = 3,
    EXIT_SIPI = 4, EXIT_IO_SMI = 5, EXIT_OTHER_SMI = 6, EXIT_INTR_WINDOW = 7,
    EXIT_NMI_WINDOW = 8, EXIT_TASK_SWITCH = 9, EXIT_CPUID = 10, EXIT_GETSEC = 11,
    EXIT_HLT = 12, EXIT_INVD = 13, EXIT_INVLPG = 14, EXIT_RDPMC = 15, EXIT_RDTSC = 16,
    EXIT_RSM = 17, EXIT_VMCALL = 18, EXIT_VMCLEAR = 19, EXIT_VMLAUNCH = 20,
    EXIT_VMPTRLD = 21, EXIT_VMPTRST = 22, EXIT_VMREAD = 23, EXIT_VMRESUME = 24,
    EXIT_VMWRITE = 25, EXIT_VMXOFF = 26, EXIT_VMXON = 27, EXIT_CR_ACCESS = 28,
    EXIT_DR_ACCESS = 29, EXIT_IO = 30, EXIT_RDMSR = 31, EXIT_WRMSR = 32,
    EXIT_ENTRY_BAD_GUEST = 33, EXIT_ENTRY_BAD_MSR = 34, EXIT_MWAIT = 36, EXIT_MTF = 37,
    EXIT_MONITOR = 39, EXIT_PAUSE = 40, EXIT_ENTRY_MCE = 41, EXIT_TPR = 43,
    EXIT_APIC_ACCESS = 44, EXIT_EOI = 45, EXIT_GDTR_IDTR = 46, EXIT_LDTR_TR = 47,
    EXIT_EPT_VIOLATION = 48, EXIT_EPT_MISCONFIG = 49, EXIT_INVEPT = 50, EXIT_RDTSCP = 51,
    EXIT_PREEMPT_TIMER = 52, EXIT_INVVPID = 53, EXIT_WBINVD = 54, EXIT_XSETBV = 55,
    EXIT_APIC_WRITE = 56, EXIT_RDRAND = 57, EXIT_INVPCID = 58, EXIT_VMFUNC = 59,
    EXIT_ENCLS = 60, EXIT_RDSEED = 61, EXIT_PML_FULL = 62, EXIT_XSAVES = 63,
    EXIT_XRSTORS = 64, EXIT_PCONFIG = 65, EXIT_SPP = 66, EXIT_UMWAIT = 67, EXIT_TPAUSE = 68,
    EXIT_LOADIWKEY = 69, EXIT_ENCLV = 70, EXIT_ENQCMD_PASID = 72, EXIT_ENQCMDS_PASID = 73,
    EXIT_BUS_LOCK = 74, EXIT_NOTIFY = 75, EXIT_SEAMCALL = 76, EXIT_TDCALL = 77,
    EXIT_RDMSRLIST = 78, EXIT_WRMSRLIST = 79,
    EXIT_REASON_COUNT = 80      /* table size; 35, 38, 42 and 71 are not assigned */
};
#define EXIT_REASON_ENTRY_FAIL (1u << 31)

/* 27.2.1, table 27-3: control-register accesses (CR number 3:0, access type 5:4,
 * register 11:8, LMSW source data 31:16); table 27-4: MOV DR (DR number 2:0, direction
 * bit 4: 1 = MOV from DR, register 11:8); table 27-5: I/O (size - 1 in 2:0, bit 3 IN,
 * bit 4 string, bit 5 REP, port 31:16). */
#define CRQ_MOV_TO   0u
#define CRQ_MOV_FROM 1u
#define CRQ_CLTS     2u
#define CRQ_LMSW     3u
#define IOQ_IN       (1ull << 3)
#define IOQ_STRING   (1ull << 4)
#define IOQ_REP      (1ull << 5)
/* 27.2.1 table 27-2: task switch (TSS selector 15:0, source 31:30). */
#define TSQ_SRC_CALL  0u
#define TSQ_SRC_IRET  1u
#define TSQ_SRC_JMP   2u
#define TSQ_SRC_GATE  3u
/* 27.2.2 exit interruption information: bit 12 "NMI unblocking due to IRET". */
#define INTR_INFO_NMI_UNBLOCK (1u << 12)
#define INTR_TYPE_PRIV_SWEXC (5u << 8)
#define INTR_TYPE_SWEXC   (6u << 8)
#define INTR_TYPE_MASK    (7u << 8)
/* A.6 Miscellaneous Data: activity states supported. */
#define VMX_MISC_ACT_HLT  (1ull << 6)
#define VMX_MISC_ACT_WAIT_SIPI (1ull << 8)
#define VMX_MISC_PREEMPT_RATE(m) ((unsigned)((m) & 0x1f))
/* 27.2.1, table 27-7: exit qualification of EPT violations */
#define EPTV_READ   (1ull << 0)
#define EPTV_WRITE  (1ull << 1)
#define EPTV_FETCH  (1ull << 2)
#define EPTV_LINEAR_VALID (1ull << 7)

#ifndef XMHF_HOST_TEST
/* VMX instructions report failure in RFLAGS: CF = VMfailInvalid, ZF = VMfailValid
 * (SDM 30.2 "Conventions"). These return 0 on success. */
static inline int vmx_on(uint64_t pa)
{
    uint8_t bad;
    __asm__ volatile("vmxon %1; setna %0" : "=q"(bad) : "m"(pa) : "cc", "memory");
    return bad;
}
static inline int vmcs_clear(uint64_t pa)
{
    uint8_t bad;
    __asm__ volatile("vmclear %1; setna %0" : "=q"(bad) : "m"(pa) : "cc", "memory");
    return bad;
}
static inline int vmcs_load(uint64_t pa)
{
    uint8_t bad;
    __asm__ volatile("vmptrld %1; setna %0" : "=q"(bad) : "m"(pa) : "cc", "memory");
    return bad;
}
static inline uint64_t vmread_raw(uint32_t enc)
{
    uint64_t v;
    __asm__ volatile("vmread %1, %0" : "=rm"(v) : "r"((uint64_t)enc) : "cc");
    return v;
}
static inline void vmwrite_raw(uint32_t enc, uint64_t v)
{
    __asm__ volatile("vmwrite %1, %0" :: "r"((uint64_t)enc), "rm"(v) : "cc");
}
static inline uint16_t vmread16(vmcs16_t f) { return (uint16_t)vmread_raw(f.enc); }
static inline uint32_t vmread32(vmcs32_t f) { return (uint32_t)vmread_raw(f.enc); }
static inline uint64_t vmread64(vmcs64_t f) { return vmread_raw(f.enc); }
static inline uint64_t vmreadN(vmcsN_t f) { return vmread_raw(f.enc); }
static inline void vmwrite16(vmcs16_t f, uint16_t v) { vmwrite_raw(f.enc, v); }
static inline void vmwrite32(vmcs32_t f, uint32_t v) { vmwrite_raw(f.enc, v); }
static inline void vmwrite64(vmcs64_t f, uint64_t v) { vmwrite_raw(f.enc, v); }
static inline void vmwriteN(vmcsN_t f, uint64_t v) { vmwrite_raw(f.enc, v); }

/* INVEPT type 2, all contexts (SDM 30.3 "INVEPT"). */
static inline void invept_all(void)
{
    struct { uint64_t eptp, rsvd; } desc = { 0, 0 };
    __asm__ volatile("invept %0, %1" :: "m"(desc), "r"(2ull) : "cc", "memory");
}
#endif

#endif
