/* What the guest must see of the processor's own machinery: no VMX, SMX or SVM unless
 * CPUID says so (the MSRs, CR4 bits and instructions agree with CPUID), and MTRRs that
 * behave as registers (reads give back writes, #GP where the SDM puts one) without
 * reaching the processor under the hypervisor. Every check is written against CPUID, so
 * the same case passes natively (Bochs offers VMX there) and under the hypervisor. */
#include "guest.h"

uint64_t probe_rdmsr(uint32_t msr);
void probe_rdmsr_recover(void);
void probe_wrmsr(uint32_t msr, uint64_t val);
void probe_wrmsr_recover(void);
void probe_write_cr0(uint64_t val);
void probe_write_cr0_recover(void);
void probe_write_cr4(uint64_t val);
void probe_write_cr4_recover(void);
void probe_vmxoff(void), probe_stgi(void), probe_getsec(void), probe_virt_recover(void);

static void cpuid2(uint32_t leaf, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(0));
}

/* RDMSR / WRMSR / MOV to CR4: the vector of the fault, or -1 when none. */
static int rdmsr_vec(uint32_t msr, uint64_t *val)
{
    struct fault_info f;
    fault_expect((const void *)probe_rdmsr_recover);
    uint64_t v = probe_rdmsr(msr);
    unsigned n = fault_expect_end(&f);
    if (val)
        *val = v;
    return n ? (int)f.vector : -1;
}

static int wrmsr_vec(uint32_t msr, uint64_t val)
{
    struct fault_info f;
    fault_expect((const void *)probe_wrmsr_recover);
    probe_wrmsr(msr, val);
    return fault_expect_end(&f) ? (int)f.vector : -1;
}

/* A MOV to a control register through its probe: the vector of its fault, or -1. */
static int cr_write_vec(void (*probe)(uint64_t), void (*recover)(void), uint64_t val)
{
    struct fault_info f;
    fault_expect((const void *)recover);
    probe(val);
    return fault_expect_end(&f) ? (int)f.vector : -1;
}

static int cr4_vec(uint64_t val)
{
    return cr_write_vec(probe_write_cr4, probe_write_cr4_recover, val);
}

static int insn_vec(void (*probe)(void))
{
    struct fault_info f;
    fault_expect((const void *)probe_virt_recover);
    probe();
    return fault_expect_end(&f) ? (int)f.vector : -1;
}

#define CR4_VMXE (1ull << 13)
#define CR4_SMXE (1ull << 14)
#define EFER 0xc0000080u
#define EFER_SVME (1ull << 12)

bool t_virt_hidden(struct test_result *r)
{
    uint32_t c1[4], c8[4] = { 0, 0, 0, 0 }, max[4];
    cpuid2(1, c1);
    cpuid2(0x80000000u, max);
    if (max[0] >= 0x80000001u)
        cpuid2(0x80000001u, c8);
    bool vmx = c1[2] & (1u << 5), smx = c1[2] & (1u << 6), svm = c8[2] & (1u << 2);
    bool hv = hv_present();
    if (hv && (vmx || smx || svm))
        return test_fail(r, "CPUID shows VMX %d SMX %d SVM %d under the hypervisor", vmx, smx, svm);
    uint64_t v;
    int e;
    /* The VMX capability MSRs (IA32_VMX_BASIC .. IA32_VMX_EXIT_CTLS2): #GP without VMX. */
    for (uint32_t m = 0x480; m <= 0x493 && !vmx; m++)
        if ((e = rdmsr_vec(m, &v)) != VEC_GP)
            return test_fail(r, "RDMSR %x without VMX: vector %d, expected #GP", m, e);
    if (vmx && (e = rdmsr_vec(0x480, &v)) != -1)
        return test_fail(r, "RDMSR IA32_VMX_BASIC with VMX: vector %d", e);
    if ((e = wrmsr_vec(0x480, 0)) != VEC_GP)
        return test_fail(r, "WRMSR IA32_VMX_BASIC: vector %d, expected #GP", e);
    if (!vmx && !smx && (e = rdmsr_vec(0x9b, &v)) != VEC_GP)
        return test_fail(r, "RDMSR IA32_SMM_MONITOR_CTL: vector %d, expected #GP", e);
    /* IA32_FEATURE_CONTROL, where it exists: no VMX or SENTER enable bits without the
     * features; locked, so a write is #GP. */
    uint64_t fc;
    if (rdmsr_vec(0x3a, &fc) == -1) {
        if (!vmx && (fc & 6))
            return test_fail(r, "IA32_FEATURE_CONTROL %llx: VMX enable bits without VMX",
                             (unsigned long long)fc);
        if (!smx && (fc & 0xff00))
            return test_fail(r, "IA32_FEATURE_CONTROL %llx: SENTER bits without SMX",
                             (unsigned long long)fc);
        if ((fc & 1) && (e = wrmsr_vec(0x3a, fc)) != VEC_GP)
            return test_fail(r, "WRMSR IA32_FEATURE_CONTROL (locked): vector %d", e);
    }
    /* CR4.VMXE / SMXE: reserved (#GP) without the feature. */
    uint64_t cr4 = read_cr4();
    e = cr4_vec(cr4 | CR4_VMXE);
    if (e != (vmx ? -1 : VEC_GP))
        return test_fail(r, "MOV CR4.VMXE=1 (VMX %d): vector %d", vmx, e);
    if (e == -1)
        probe_write_cr4(cr4);
    e = cr4_vec(cr4 | CR4_SMXE);
    if (e != (smx ? -1 : VEC_GP))
        return test_fail(r, "MOV CR4.SMXE=1 (SMX %d): vector %d", smx, e);
    if (e == -1)
        probe_write_cr4(cr4);
    /* The instructions: #UD outside VMX operation / with EFER.SVME = 0 / CR4.SMXE = 0. */
    if ((e = insn_vec(probe_vmxoff)) != VEC_UD)
        return test_fail(r, "VMXOFF: vector %d, expected #UD", e);
    if ((e = insn_vec(probe_getsec)) != VEC_UD)
        return test_fail(r, "GETSEC: vector %d, expected #UD", e);
    if ((e = insn_vec(probe_stgi)) != VEC_UD)
        return test_fail(r, "STGI: vector %d, expected #UD", e);
    /* SVM: VM_CR and VM_HSAVE_PA #GP without it; EFER.SVME reads 0 and is reserved. */
    if (!svm && ((e = rdmsr_vec(0xc0010114u, &v)) != VEC_GP ||
                 (e = rdmsr_vec(0xc0010117u, &v)) != VEC_GP))
        return test_fail(r, "VM_CR / VM_HSAVE_PA without SVM: vector %d, expected #GP", e);
    uint64_t efer = rdmsr(EFER);
    if (efer & EFER_SVME)
        return test_fail(r, "EFER %llx has SVME", (unsigned long long)efer);
    e = wrmsr_vec(EFER, efer | EFER_SVME);
    if (e != (svm ? -1 : VEC_GP))
        return test_fail(r, "WRMSR EFER.SVME=1 (SVM %d): vector %d", svm, e);
    if (e == -1)
        wrmsr(EFER, efer);
    return test_pass(r, "CPUID VMX %d SMX %d SVM %d; MSRs, CR4 and instructions agree",
                     vmx, smx, svm);
}

#define MTRRCAP 0xfeu
#define MTRR_DEF 0x2ffu
#define PHYSBASE(n) (0x200u + 2 * (n))
#define PHYSMASK(n) (0x201u + 2 * (n))
#define FIX64K 0x250u

/* The WRMSR exits of this CPU (STATS selector of the exit reason / SVM exit code). */
static uint64_t wrmsr_exits(void)
{
    uint64_t v = 0;
    hv_stat(cpu_is_amd ? 0x7c - 0x60 : 32, &v);
    return v;
}

bool t_mtrr_writes(struct test_result *r)
{
    uint32_t c1[4], c8[4];
    cpuid2(1, c1);
    if (!(c1[3] & (1u << 12)))
        return test_pass(r, "skipped: no MTRRs (CPUID.1:EDX.MTRR = 0)");
    cpuid2(0x80000008u, c8);
    unsigned bits = c8[0] & 0xff;
    uint64_t cap = rdmsr(MTRRCAP), def = rdmsr(MTRR_DEF);
    unsigned vcnt = cap & 0xff;
    if (!vcnt)
        return test_pass(r, "skipped: MTRRCAP.VCNT = 0");
    bool hv = hv_present();
    if (hv && (cap & (1u << 11)))
        return test_fail(r, "MTRRCAP %llx offers SMRR to the guest", (unsigned long long)cap);
    /* The last variable pair: written, read back, then put back as it was. */
    unsigned n = vcnt - 1;
    uint64_t base0 = rdmsr(PHYSBASE(n)), mask0 = rdmsr(PHYSMASK(n));
    uint64_t amask = ((1ull << bits) - 1) & ~0xfffull;
    uint64_t type = (cap & (1u << 10)) ? 1 : 0;                     /* WC, else UC */
    uint64_t base = 0xfeb00000ull | type, mask = (amask & ~0xfffffull) | (1ull << 11);
    uint64_t before = wrmsr_exits(), writes = 0, v;
    int e;
    const char *what = NULL;
    if (wrmsr_vec(PHYSBASE(n), base) != -1 || wrmsr_vec(PHYSMASK(n), mask) != -1)
        what = "write of a valid range faulted";
    else if (rdmsr(PHYSBASE(n)) != base || rdmsr(PHYSMASK(n)) != mask)
        what = "valid range not read back";
    writes += 2;
    /* #GP: a reserved type (2), reserved bits 11:8 of PHYSBASE, an address bit above
     * MAXPHYADDR, MTRRCAP itself, a DEF_TYPE reserved bit; nothing changes. */
    if (!what && (e = wrmsr_vec(PHYSBASE(n), 0xfeb00000ull | 2)) != VEC_GP)
        what = "type 2 in PHYSBASE did not #GP";
    if (!what && wrmsr_vec(PHYSBASE(n), 0xfeb00000ull | 0x100 | type) != VEC_GP)
        what = "PHYSBASE bit 8 did not #GP";
    if (!what && bits < 52 && wrmsr_vec(PHYSMASK(n), mask | (1ull << bits)) != VEC_GP)
        what = "PHYSMASK bit above MAXPHYADDR did not #GP";
    if (!what && wrmsr_vec(MTRRCAP, cap) != VEC_GP)
        what = "WRMSR MTRRCAP did not #GP";
    if (!what && wrmsr_vec(MTRR_DEF, def | (1ull << 9)) != VEC_GP)
        what = "DEF_TYPE bit 9 did not #GP";
    writes += 5;
    if (!what && (rdmsr(PHYSBASE(n)) != base || rdmsr(PHYSMASK(n)) != mask))
        what = "a refused write changed the range";
    if (!what && 0x200 + 2 * vcnt < FIX64K && rdmsr_vec(PHYSBASE(vcnt), &v) != VEC_GP)
        what = "RDMSR of PHYSBASE[VCNT] did not #GP";
    /* Fixed ranges: written back as read, and a reserved type refused. */
    if (!what && (cap & (1u << 8))) {
        uint64_t f = rdmsr(FIX64K);
        if (wrmsr_vec(FIX64K, f) != -1 || rdmsr(FIX64K) != f)
            what = "FIX64K_00000 not written back";
        else if (wrmsr_vec(FIX64K, (f & ~0xffull) | 7) != VEC_GP)
            what = "type 7 in FIX64K_00000 did not #GP";
        writes += 2;
    }
    wrmsr(PHYSMASK(n), mask0);
    wrmsr(PHYSBASE(n), base0);
    writes += 2;
    if (!what && (rdmsr(PHYSBASE(n)) != base0 || rdmsr(PHYSMASK(n)) != mask0))
        what = "original range not restored";
    if (what)
        return test_fail(r, "%s (MTRRCAP %llx, pair %u)", what, (unsigned long long)cap, n);
    if (!hv)
        return test_pass(r, "VCNT %u (native: no exit counts)", vcnt);
    /* Under the hypervisor every one of them exited: none went to the processor. */
    uint64_t after = wrmsr_exits();
    if (after - before < writes)
        return test_fail(r, "%llu WRMSR exits for %llu MTRR writes",
                         (unsigned long long)(after - before), (unsigned long long)writes);
    return test_pass(r, "VCNT %u, %llu writes, each exited", vcnt, (unsigned long long)writes);
}

static int cr0_vec(uint64_t val)
{
    return cr_write_vec(probe_write_cr0, probe_write_cr0_recover, val);
}

#define CR0_NE (1ull << 5)
#define CR0_NW (1ull << 29)
#define CR0_CD (1ull << 30)
#define CR0_PG (1ull << 31)

/* MOV to CR0 in 64-bit mode, each invalid value #GP(0) with CR0 unchanged (SDM Vol. 2B
 * MOV to CR): paging off in 64-bit mode, NW without CD, a bit above 31. Each also clears
 * NE, a bit VMX keeps set, so under the Intel half the write exits and the hypervisor
 * must find the fault (before, it left IA-32e mode under a 64-bit CS: VM entry failed
 * and the guest was reset). Clearing NE alone is valid and reads back. */
bool t_cr0_writes(struct test_result *r)
{
    uint64_t cr0 = read_cr0();
    static const struct { const char *what; uint64_t set, clear; } bad[] = {
        { "PG clear", 0, CR0_PG | CR0_NE },
        { "PG clear, NE kept", 0, CR0_PG },
        { "NW without CD", CR0_NW, CR0_CD | CR0_NE },
        { "bit 32", 1ull << 32, CR0_NE },
    };
    /* QEMU 7.2's TCG makes none of these checks, natively as under the hypervisor (its
     * CR0 update leaves IA-32e mode on PG clear, and the guest triple-faults; it takes NW
     * without CD): nothing to compare with there. */
    if (smbios_manufacturer_is("QEMU"))
        return test_skip(r, "QEMU's TCG does not raise the MOV CR0 #GPs");
    for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
        int e = cr0_vec((cr0 | bad[i].set) & ~bad[i].clear);
        if (e != 13) {
            probe_write_cr0(cr0);
            return test_fail(r, "MOV CR0 (%s): vector %d, expected 13", bad[i].what, e);
        }
        if (read_cr0() != cr0)
            return test_fail(r, "MOV CR0 (%s) faulted but CR0 is 0x%llx (was 0x%llx)",
                             bad[i].what, (unsigned long long)read_cr0(),
                             (unsigned long long)cr0);
    }
    int e = cr0_vec(cr0 & ~CR0_NE);
    uint64_t now = read_cr0();
    probe_write_cr0(cr0);
    if (e != -1 || now != (cr0 & ~CR0_NE))
        return test_fail(r, "MOV CR0 with NE clear: vector %d, reads 0x%llx", e,
                         (unsigned long long)now);
    if (read_cr0() != cr0)
        return test_fail(r, "CR0 not restored: 0x%llx", (unsigned long long)read_cr0());
    return test_pass(r, "4 invalid CR0 values #GP(0), CR0 kept; NE cleared and set again");
}
