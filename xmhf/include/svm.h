/* AMD SVM: AMD64 Architecture Programmer's Manual Vol. 2, chapter 15 "Secure Virtual
 * Machine", appendix B "Layout of VMCB" and appendix C "SVM Intercept Exit Codes".
 * Section titles are cited next to each block; the structure layout is checked against
 * the appendix B offsets below, field by field, so a misplaced member cannot compile. */
#ifndef XMHF_SVM_H
#define XMHF_SVM_H
#include <stddef.h>
#include <stdint.h>

/* ---- 15.4 "Enabling SVM" and 15.30 "SVM Related MSRs" ------------------------------ */

#define CPUID_8000_0001_ECX_SVM   (1u << 2)     /* SVM supported */
/* CPUID Fn8000_000A "SVM Revision and Feature Identification": EAX revision, EBX number
 * of ASIDs, EDX features. */
#define CPUID_SVM_FEATURES        0x8000000au
#define SVM_FEAT_NP               (1u << 0)     /* nested paging */
#define SVM_FEAT_LBRV             (1u << 1)
#define SVM_FEAT_SVML             (1u << 2)     /* SVM lock (VM_CR.LOCK / SVM_KEY) */
#define SVM_FEAT_NRIPS            (1u << 3)     /* next-RIP save on instruction intercepts */
#define SVM_FEAT_TSC_RATE         (1u << 4)
#define SVM_FEAT_VMCB_CLEAN       (1u << 5)
#define SVM_FEAT_FLUSH_BY_ASID    (1u << 6)
#define SVM_FEAT_DECODE_ASSISTS   (1u << 7)
#define SVM_FEAT_PAUSE_FILTER     (1u << 10)
#define SVM_FEAT_AVIC             (1u << 13)
#define SVM_FEAT_VMSAVE_VIRT      (1u << 15)
#define SVM_FEAT_VGIF             (1u << 16)

#define MSR_EFER_SVME             (1ull << 12)  /* EFER.SVME: SVM instructions enabled */
#define MSR_EFER_FFXSR            (1ull << 14)
/* VM_CR (15.30.1): SVMDIS set by firmware makes EFER.SVME writes #GP; with LOCK set
 * it cannot be cleared again without the SVM key. */
#define MSR_VM_CR                 0xc0010114u
#define   VM_CR_DPD               (1ull << 0)
#define   VM_CR_R_INIT            (1ull << 1)
#define   VM_CR_DIS_A20M          (1ull << 2)
#define   VM_CR_LOCK              (1ull << 3)
#define   VM_CR_SVMDIS            (1ull << 4)
/* VM_HSAVE_PA (15.30.4): physical page where VMRUN saves host state. */
#define MSR_VM_HSAVE_PA           0xc0010117u

/* ---- Appendix B, table B-1 "VMCB Layout, Control Area" ------------------------------ */

/* Word at 0x0c ("vector 3"), 15.9-15.14 instruction and event intercepts. */
#define SVM_INTERCEPT_INTR        (1u << 0)
#define SVM_INTERCEPT_NMI         (1u << 1)
#define SVM_INTERCEPT_SMI         (1u << 2)
#define SVM_INTERCEPT_INIT        (1u << 3)
#define SVM_INTERCEPT_VINTR       (1u << 4)
#define SVM_INTERCEPT_CR0_SEL     (1u << 5)
#define SVM_INTERCEPT_RDTSC       (1u << 14)
#define SVM_INTERCEPT_RDPMC       (1u << 15)
#define SVM_INTERCEPT_PUSHF       (1u << 16)
#define SVM_INTERCEPT_POPF        (1u << 17)
#define SVM_INTERCEPT_CPUID       (1u << 18)
#define SVM_INTERCEPT_RSM         (1u << 19)
#define SVM_INTERCEPT_IRET        (1u << 20)
#define SVM_INTERCEPT_INTN        (1u << 21)
#define SVM_INTERCEPT_INVD        (1u << 22)
#define SVM_INTERCEPT_PAUSE       (1u << 23)
#define SVM_INTERCEPT_HLT         (1u << 24)
#define SVM_INTERCEPT_INVLPG      (1u << 25)
#define SVM_INTERCEPT_INVLPGA     (1u << 26)
#define SVM_INTERCEPT_IOIO_PROT   (1u << 27)
#define SVM_INTERCEPT_MSR_PROT    (1u << 28)
#define SVM_INTERCEPT_TASK_SWITCH (1u << 29)
#define SVM_INTERCEPT_FERR_FREEZE (1u << 30)
#define SVM_INTERCEPT_SHUTDOWN    (1u << 31)
/* Word at 0x10 ("vector 4"). VMRUN must be intercepted: a VMCB without it is an illegal
 * state (15.5.1 "Basic Operation", the VMRUN consistency checks). */
#define SVM_INTERCEPT_VMRUN       (1u << 0)
#define SVM_INTERCEPT_VMMCALL     (1u << 1)
#define SVM_INTERCEPT_VMLOAD      (1u << 2)
#define SVM_INTERCEPT_VMSAVE      (1u << 3)
#define SVM_INTERCEPT_STGI        (1u << 4)
#define SVM_INTERCEPT_CLGI        (1u << 5)
#define SVM_INTERCEPT_SKINIT      (1u << 6)
#define SVM_INTERCEPT_RDTSCP      (1u << 7)
#define SVM_INTERCEPT_ICEBP       (1u << 8)
#define SVM_INTERCEPT_WBINVD      (1u << 9)
#define SVM_INTERCEPT_MONITOR     (1u << 10)
#define SVM_INTERCEPT_MWAIT       (1u << 11)
#define SVM_INTERCEPT_MWAIT_ARMED (1u << 12)
#define SVM_INTERCEPT_XSETBV      (1u << 13)

/* 15.16 "TLB Control": the TLB_CONTROL byte. */
#define SVM_TLB_FLUSH_NOTHING     0u
#define SVM_TLB_FLUSH_ALL         1u
#define SVM_TLB_FLUSH_ASID        3u

/* 15.21.1 "Virtual Interrupt..." word at 0x60; only V_INTR_MASKING is named here. */
#define SVM_VINTR_MASKING         (1ull << 24)
/* Word at 0x68: 15.21.5 "Interrupt Shadows". */
#define SVM_INT_SHADOW            (1ull << 0)
/* Word at 0x90: 15.25.3 "Enabling Nested Paging". */
#define SVM_NP_ENABLE             (1ull << 0)

/* 15.20 "Event Injection": EVENTINJ (0xa8) and, in the same format, EXITINTINFO (0x88). */
#define SVM_EVT_VECTOR_MASK       0xffull
#define SVM_EVT_TYPE_INTR         (0ull << 8)
#define SVM_EVT_TYPE_NMI          (2ull << 8)
#define SVM_EVT_TYPE_EXCEPTION    (3ull << 8)
#define SVM_EVT_TYPE_SOFTINT      (4ull << 8)
#define SVM_EVT_TYPE_MASK         (7ull << 8)
#define SVM_EVT_ERR_VALID         (1ull << 11)
#define SVM_EVT_VALID             (1ull << 31)
#define SVM_EVT_ERR_SHIFT         32

/* #NPF: EXITINFO1 is a page-fault error code (15.25.6 "Nested versus Guest Page
 * Faults, Fault Ordering"), EXITINFO2 the guest-physical address. */
#define SVM_NPF_P                 (1ull << 0)
#define SVM_NPF_WRITE             (1ull << 1)
#define SVM_NPF_USER              (1ull << 2)
#define SVM_NPF_RSV               (1ull << 3)
#define SVM_NPF_FETCH             (1ull << 4)
#define SVM_NPF_FINAL_GPA         (1ull << 32)  /* fault on the final guest-physical access */
#define SVM_NPF_GUEST_PT          (1ull << 33)  /* fault on a guest page-table access */

/* The 16-byte segment register image of the state save area (table B-2). attrib packs
 * descriptor bits 47:40 (type, S, DPL, P) into bits 7:0 and bits 55:52 (AVL, L, D/B, G)
 * into bits 11:8 (15.5.1 "Basic Operation", "Segment state in the VMCB"). */
struct svm_seg {
    uint16_t sel;
    uint16_t attrib;
    uint32_t limit;
    uint64_t base;
};
_Static_assert(sizeof(struct svm_seg) == 16, "VMCB segment image is 16 bytes");

struct svm_control {
    uint32_t intercept_cr;          /* 0x000: 15:0 reads of CR0-15, 31:16 writes */
    uint32_t intercept_dr;          /* 0x004: 15:0 reads of DR0-15, 31:16 writes */
    uint32_t intercept_exc;         /* 0x008: one bit per exception vector */
    uint32_t intercept1;            /* 0x00c: SVM_INTERCEPT_INTR .. SHUTDOWN */
    uint32_t intercept2;            /* 0x010: SVM_INTERCEPT_VMRUN .. XSETBV */
    uint32_t intercept3;            /* 0x014: INVLPGB, INVPCID, ... */
    uint8_t rsvd_018[0x03c - 0x018];
    uint16_t pause_filter_thresh;   /* 0x03c */
    uint16_t pause_filter_count;    /* 0x03e */
    uint64_t iopm_base_pa;          /* 0x040 */
    uint64_t msrpm_base_pa;         /* 0x048 */
    uint64_t tsc_offset;            /* 0x050 */
    uint32_t guest_asid;            /* 0x058 */
    uint8_t tlb_control;            /* 0x05c */
    uint8_t rsvd_05d[3];
    uint64_t vintr;                 /* 0x060: V_TPR, V_IRQ, V_INTR_MASKING, ... */
    uint64_t int_state;             /* 0x068: interrupt shadow, guest interrupt mask */
    uint64_t exitcode;              /* 0x070 */
    uint64_t exitinfo1;             /* 0x078 */
    uint64_t exitinfo2;             /* 0x080 */
    uint64_t exitintinfo;           /* 0x088 */
    uint64_t np_control;            /* 0x090: NP_ENABLE, SEV, ... */
    uint64_t avic_apic_bar;         /* 0x098 */
    uint64_t ghcb_pa;               /* 0x0a0 */
    uint64_t eventinj;              /* 0x0a8 */
    uint64_t n_cr3;                 /* 0x0b0: nested page table root */
    uint64_t virt_ext;              /* 0x0b8: LBR virtualisation, VMSAVE/VMLOAD virt. */
    uint32_t clean_bits;            /* 0x0c0: 15.15 "VMCB State Caching" */
    uint32_t rsvd_0c4;
    uint64_t nrip;                  /* 0x0c8: next sequential RIP (NRIP save) */
    uint8_t insn_len;               /* 0x0d0: bytes fetched (decode assists) */
    uint8_t insn_bytes[15];         /* 0x0d1 */
    uint64_t avic_backing_page;     /* 0x0e0 */
    uint64_t rsvd_0e8;
    uint64_t avic_logical_table;    /* 0x0f0 */
    uint64_t avic_physical_table;   /* 0x0f8 */
    uint64_t rsvd_100;
    uint64_t vmsa_pa;               /* 0x108 */
    uint8_t rsvd_110[0x400 - 0x110];
};

/* Table B-2 "VMCB Layout, State Save Area" (at VMCB offset 0x400). */
struct svm_state {
    struct svm_seg es, cs, ss, ds, fs, gs;  /* 0x000 .. 0x05f */
    struct svm_seg gdtr, ldtr, idtr, tr;    /* 0x060 .. 0x09f */
    uint8_t rsvd_0a0[0x0cb - 0x0a0];
    uint8_t cpl;                    /* 0x0cb */
    uint32_t rsvd_0cc;
    uint64_t efer;                  /* 0x0d0 */
    uint8_t rsvd_0d8[0x148 - 0x0d8];
    uint64_t cr4;                   /* 0x148 */
    uint64_t cr3;                   /* 0x150 */
    uint64_t cr0;                   /* 0x158 */
    uint64_t dr7;                   /* 0x160 */
    uint64_t dr6;                   /* 0x168 */
    uint64_t rflags;                /* 0x170 */
    uint64_t rip;                   /* 0x178 */
    uint8_t rsvd_180[0x1d8 - 0x180];
    uint64_t rsp;                   /* 0x1d8 */
    uint64_t s_cet, ssp, isst_addr; /* 0x1e0 .. 0x1f7 */
    uint64_t rax;                   /* 0x1f8 */
    uint64_t star;                  /* 0x200 */
    uint64_t lstar;                 /* 0x208 */
    uint64_t cstar;                 /* 0x210 */
    uint64_t sfmask;                /* 0x218 */
    uint64_t kernel_gs_base;        /* 0x220 */
    uint64_t sysenter_cs;           /* 0x228 */
    uint64_t sysenter_esp;          /* 0x230 */
    uint64_t sysenter_eip;          /* 0x238 */
    uint64_t cr2;                   /* 0x240 */
    uint8_t rsvd_248[0x268 - 0x248];
    uint64_t g_pat;                 /* 0x268: guest PAT under nested paging */
    uint64_t dbgctl;                /* 0x270 */
    uint64_t br_from, br_to;        /* 0x278, 0x280 */
    uint64_t lastexcp_from, lastexcp_to; /* 0x288, 0x290 */
    uint8_t rsvd_298[0xc00 - 0x298];
};

/* The VMCB: one 4 KiB aligned page (15.5.1). */
struct vmcb {
    struct svm_control ctl;
    struct svm_state save;
};

#define VMCB_CTL(f, off) _Static_assert(offsetof(struct vmcb, ctl.f) == (off), "VMCB " #f)
#define VMCB_SAVE(f, off) \
    _Static_assert(offsetof(struct vmcb, save.f) == 0x400 + (off), "VMCB save " #f)
_Static_assert(sizeof(struct svm_control) == 0x400, "VMCB control area is 1 KiB");
_Static_assert(sizeof(struct vmcb) == 4096, "VMCB is one page");
VMCB_CTL(intercept_cr, 0x000); VMCB_CTL(intercept_dr, 0x004); VMCB_CTL(intercept_exc, 0x008);
VMCB_CTL(intercept1, 0x00c); VMCB_CTL(intercept2, 0x010); VMCB_CTL(intercept3, 0x014);
VMCB_CTL(pause_filter_thresh, 0x03c); VMCB_CTL(pause_filter_count, 0x03e);
VMCB_CTL(iopm_base_pa, 0x040); VMCB_CTL(msrpm_base_pa, 0x048); VMCB_CTL(tsc_offset, 0x050);
VMCB_CTL(guest_asid, 0x058); VMCB_CTL(tlb_control, 0x05c); VMCB_CTL(vintr, 0x060);
VMCB_CTL(int_state, 0x068); VMCB_CTL(exitcode, 0x070); VMCB_CTL(exitinfo1, 0x078);
VMCB_CTL(exitinfo2, 0x080); VMCB_CTL(exitintinfo, 0x088); VMCB_CTL(np_control, 0x090);
VMCB_CTL(avic_apic_bar, 0x098); VMCB_CTL(ghcb_pa, 0x0a0); VMCB_CTL(eventinj, 0x0a8);
VMCB_CTL(n_cr3, 0x0b0); VMCB_CTL(virt_ext, 0x0b8); VMCB_CTL(clean_bits, 0x0c0);
VMCB_CTL(nrip, 0x0c8); VMCB_CTL(insn_len, 0x0d0); VMCB_CTL(insn_bytes, 0x0d1);
VMCB_CTL(avic_backing_page, 0x0e0); VMCB_CTL(avic_logical_table, 0x0f0);
VMCB_CTL(avic_physical_table, 0x0f8); VMCB_CTL(vmsa_pa, 0x108);
VMCB_SAVE(es, 0x000); VMCB_SAVE(cs, 0x010); VMCB_SAVE(ss, 0x020); VMCB_SAVE(ds, 0x030);
VMCB_SAVE(fs, 0x040); VMCB_SAVE(gs, 0x050); VMCB_SAVE(gdtr, 0x060); VMCB_SAVE(ldtr, 0x070);
VMCB_SAVE(idtr, 0x080); VMCB_SAVE(tr, 0x090); VMCB_SAVE(cpl, 0x0cb); VMCB_SAVE(efer, 0x0d0);
VMCB_SAVE(cr4, 0x148); VMCB_SAVE(cr3, 0x150); VMCB_SAVE(cr0, 0x158); VMCB_SAVE(dr7, 0x160);
VMCB_SAVE(dr6, 0x168); VMCB_SAVE(rflags, 0x170); VMCB_SAVE(rip, 0x178); VMCB_SAVE(rsp, 0x1d8);
VMCB_SAVE(rax, 0x1f8); VMCB_SAVE(star, 0x200); VMCB_SAVE(lstar, 0x208); VMCB_SAVE(cstar, 0x210);
VMCB_SAVE(sfmask, 0x218); VMCB_SAVE(kernel_gs_base, 0x220); VMCB_SAVE(sysenter_cs, 0x228);
VMCB_SAVE(sysenter_esp, 0x230); VMCB_SAVE(sysenter_eip, 0x238); VMCB_SAVE(cr2, 0x240);
VMCB_SAVE(g_pat, 0x268); VMCB_SAVE(dbgctl, 0x270); VMCB_SAVE(lastexcp_to, 0x290);
#undef VMCB_CTL
#undef VMCB_SAVE

/* ---- Appendix C, table C-1 "SVM Intercept Codes" ----------------------------------- */
#define SVM_EXIT_CR_READ(n)       (0x000u + (n))
#define SVM_EXIT_CR_WRITE(n)      (0x010u + (n))
#define SVM_EXIT_DR_READ(n)       (0x020u + (n))
#define SVM_EXIT_DR_WRITE(n)      (0x030u + (n))
#define SVM_EXIT_EXCP(v)          (0x040u + (v))
#define SVM_EXIT_INTR             0x060u
#define SVM_EXIT_NMI              0x061u
#define SVM_EXIT_SMI              0x062u
#define SVM_EXIT_INIT             0x063u
#define SVM_EXIT_VINTR            0x064u
#define SVM_EXIT_CR0_SEL_WRITE    0x065u
#define SVM_EXIT_IDTR_READ        0x066u
#define SVM_EXIT_GDTR_READ        0x067u
#define SVM_EXIT_LDTR_READ        0x068u
#define SVM_EXIT_TR_READ          0x069u
#define SVM_EXIT_IDTR_WRITE       0x06au
#define SVM_EXIT_GDTR_WRITE       0x06bu
#define SVM_EXIT_LDTR_WRITE       0x06cu
#define SVM_EXIT_TR_WRITE         0x06du
#define SVM_EXIT_RDTSC            0x06eu
#define SVM_EXIT_RDPMC            0x06fu
#define SVM_EXIT_PUSHF            0x070u
#define SVM_EXIT_POPF             0x071u
#define SVM_EXIT_CPUID            0x072u
#define SVM_EXIT_RSM              0x073u
#define SVM_EXIT_IRET             0x074u
#define SVM_EXIT_SWINT            0x075u
#define SVM_EXIT_INVD             0x076u
#define SVM_EXIT_PAUSE            0x077u
#define SVM_EXIT_HLT              0x078u
#define SVM_EXIT_INVLPG           0x079u
#define SVM_EXIT_INVLPGA          0x07au
#define SVM_EXIT_IOIO             0x07bu
#define SVM_EXIT_MSR              0x07cu    /* EXITINFO1: 0 RDMSR, 1 WRMSR */
#define SVM_EXIT_TASK_SWITCH      0x07du
#define SVM_EXIT_FERR_FREEZE      0x07eu
#define SVM_EXIT_SHUTDOWN         0x07fu
#define SVM_EXIT_VMRUN            0x080u
#define SVM_EXIT_VMMCALL          0x081u
#define SVM_EXIT_VMLOAD           0x082u
#define SVM_EXIT_VMSAVE           0x083u
#define SVM_EXIT_STGI             0x084u
#define SVM_EXIT_CLGI             0x085u
#define SVM_EXIT_SKINIT           0x086u
#define SVM_EXIT_RDTSCP           0x087u
#define SVM_EXIT_ICEBP            0x088u
#define SVM_EXIT_WBINVD           0x089u
#define SVM_EXIT_MONITOR          0x08au
#define SVM_EXIT_MWAIT            0x08bu
#define SVM_EXIT_MWAIT_COND       0x08cu
#define SVM_EXIT_XSETBV           0x08du
#define SVM_EXIT_RDPRU            0x08eu
#define SVM_EXIT_EFER_WRITE_TRAP  0x08fu
#define SVM_EXIT_CR_WRITE_TRAP(n) (0x090u + (n))
#define SVM_EXIT_INVLPGB          0x0a0u
#define SVM_EXIT_INVLPGB_ILLEGAL  0x0a1u
#define SVM_EXIT_INVPCID          0x0a2u
#define SVM_EXIT_MCOMMIT          0x0a3u
#define SVM_EXIT_TLBSYNC          0x0a4u
#define SVM_EXIT_BUSLOCK          0x0a5u
#define SVM_EXIT_IDLE_HLT         0x0a6u
#define SVM_EXIT_NPF              0x400u
#define SVM_EXIT_AVIC_INCOMPLETE_IPI 0x401u
#define SVM_EXIT_AVIC_NOACCEL     0x402u
#define SVM_EXIT_VMGEXIT          0x403u
#define SVM_EXIT_CODE_COUNT       0x404u    /* table size: every code the handler knows */
#define SVM_EXIT_INVALID          ((uint64_t)-1) /* VMRUN found an illegal guest state */
#define SVM_EXIT_BUSY             ((uint64_t)-2) /* SEV-SNP: VMSA in use */
#define SVM_EXIT_IDLE_REQUIRED    ((uint64_t)-3)
#define SVM_EXIT_INVALID_PMC      ((uint64_t)-4)

/* ---- 15.11 "MSR Intercepts": the MSR permission map -------------------------------- */
/* 8 KiB; two bits per MSR (even bit: RDMSR, odd bit: WRMSR) in three 2 KiB vectors for
 * MSRs 0000_0000-0000_1fff, c000_0000-c000_1fff and c001_0000-c001_1fff. */
#define SVM_MSRPM_SIZE            0x2000u
#define SVM_MSRPM_READ            1u
#define SVM_MSRPM_WRITE           2u

/* Byte offset of msr's two bits in the map and their shift within that byte, or -1 for
 * an MSR the map does not cover (such MSRs always exit when MSR_PROT is on). */
static inline int svm_msrpm_locate(uint32_t msr, unsigned *shift)
{
    static const uint32_t base[3] = { 0x00000000u, 0xc0000000u, 0xc0010000u };
    for (unsigned i = 0; i < 3; i++) {
        if (msr - base[i] < 0x2000u) {
            uint32_t bit = (msr - base[i]) * 2u;
            *shift = bit & 7u;
            return (int)(i * 0x800u + bit / 8u);
        }
    }
    return -1;
}

/* Sets the intercept bits `how` (SVM_MSRPM_READ/WRITE) for msr. 0, or -1 if uncovered. */
static inline int svm_msrpm_intercept(uint8_t *map, uint32_t msr, unsigned how)
{
    unsigned shift;
    int off = svm_msrpm_locate(msr, &shift);
    if (off < 0)
        return -1;
    map[off] = (uint8_t)(map[off] | ((how & 3u) << shift));
    return 0;
}

#endif
