/* MSRs the guest sees differently from the processor, for both halves (the exit
 * handlers ask here before they perform an RDMSR/WRMSR on the guest's behalf):
 *
 *  - No VMX, no SMX (CPUID says so, cpuid.c): the VMX capability MSRs
 *    IA32_VMX_BASIC .. IA32_VMX_EXIT_CTLS2 (480h-493h) and IA32_SMM_MONITOR_CTL (9Bh)
 *    raise #GP as on a processor without them (SDM Vol. 4 table 2-2 lists them only
 *    for CPUID.01H:ECX.VMX or SMX = 1); IA32_FEATURE_CONTROL reads with its VMX and
 *    SENTER bits clear, and a write is #GP as on any processor where it is locked (it
 *    always is: the VMX half locks it at boot). VM_CR, VM_HSAVE_PA and SVM_KEY do not
 *    exist for the guest (#GP), as on a processor without SVM (both halves hide it).
 *  - Memory types stay the hypervisor's: the guest's MTRRs (MTRRCAP .. DEF_TYPE) are
 *    kept here per CPU and never reach the processor; reads give back what was written,
 *    with the #GP cases of the architecture (mtrr.c). The nested page tables carry the
 *    types they give (arch_guest_memory_types): with EPT the EPT memory type replaces
 *    the MTRRs for guest accesses (SDM 29.3.7.2), with NPT the host type combines with
 *    the guest's PAT type (APM 15.25.8). MMIO (anything the firmware map does not call
 *    RAM) stays uncached or write-combining whatever the guest asks. The nested tables
 *    are shared by all CPUs: they follow the MTRRs of the CPU that wrote last, which an
 *    operating system keeps identical on every CPU (SDM 12.11.8).
 *  - AMD's memory-type MSRs (SYSCFG, HWCR's TLB-cache and INVD bits, the IORRs,
 *    TOP_MEM, TOP_MEM2) are kept here too; their own effect on memory types is not
 *    applied to the guest (README). Initial values everywhere: the processor's, as the
 *    firmware left them. */
#include "e820.h"
#include "msr.h"
#include "mtrr.h"
#include "svm.h"
#include "xmhf.h"

#define MSR_IA32_SMM_MONITOR_CTL 0x09bu
#define MSR_IA32_VMX_LAST        0x493u     /* IA32_VMX_EXIT_CTLS2 */
#define FEATCTL_HIDDEN           (FEATCTL_VMX_INSIDE_SMX | FEATCTL_VMX_OUTSIDE_SMX | \
                                  FEATCTL_SENTER_MASK)
/* AMD (APM Vol. 2, 7.9.1 "Memory Type MSRs" / 15.30 "SVM Related MSRs"). */
#define MSR_AMD_SYSCFG           0xc0010010u
#define   SYSCFG_MTRR_FIX_DRAM_MOD (1ull << 19)
#define MSR_AMD_HWCR             0xc0010015u
#define   HWCR_VIRTUAL           ((1ull << 3) | (1ull << 4))  /* TlbCacheDis, INVD->WBINVD */
#define MSR_AMD_IORR_FIRST       0xc0010016u                  /* IORRBase0 .. IORRMask1 */
#define MSR_AMD_TOP_MEM          0xc001001au
#define MSR_AMD_TOP_MEM2         0xc001001du
#define   TOP_MEM_VALID          0x000fffffff800000ull        /* bits 51:23 */
#define MSR_AMD_SVM_KEY          0xc0010118u

struct guest_msrs {
    struct mtrr_state mtrr;
    bool amd;
    uint64_t syscfg, hwcr, iorr[4], top_mem, top_mem2;
};
_Static_assert(sizeof(struct guest_msrs) <= 4096, "one page per CPU");

/* MSRs that must exit: the bitmaps of both halves intercept reads and writes of these
 * (where their maps reach; MSRs outside them always exit). */
const struct msr_range guest_msr_intercepted[] = {
    { MSR_IA32_FEATURE_CONTROL, MSR_IA32_FEATURE_CONTROL },
    { MSR_IA32_SMM_MONITOR_CTL, MSR_IA32_SMM_MONITOR_CTL },
    { MSR_MTRRCAP, MSR_MTRRCAP },
    { MSR_MTRR_PHYSBASE0, MSR_MTRR_FIX64K_00000 - 1 },
    { MSR_MTRR_FIX64K_00000, MSR_MTRR_FIX64K_00000 },
    { MSR_MTRR_FIX16K_80000, MSR_MTRR_FIX16K_A0000 },
    { MSR_MTRR_FIX4K_C0000, MSR_MTRR_FIX4K_C0000 + 7 },
    { MSR_MTRR_DEF_TYPE, MSR_MTRR_DEF_TYPE },
    { MSR_IA32_VMX_BASIC, MSR_IA32_VMX_LAST },
    { MSR_AMD_SYSCFG, MSR_AMD_SYSCFG },
    { MSR_AMD_HWCR, MSR_AMD_TOP_MEM },
    { MSR_AMD_TOP_MEM2, MSR_AMD_TOP_MEM2 },
    { MSR_VM_CR, MSR_VM_CR },
    { MSR_VM_HSAVE_PA, MSR_AMD_SVM_KEY },
};
const unsigned guest_msr_intercepted_count = ARRAY_SIZE(guest_msr_intercepted);

static bool cpu_is_amd(void)
{
    uint32_t r[4];
    cpuid(0, 0, r);
    return (r[1] == 0x68747541u && r[3] == 0x69746e65u && r[2] == 0x444d4163u) ||  /* AuthenticAMD */
           (r[1] == 0x6f677948u && r[3] == 0x6e65476eu && r[2] == 0x656e6975u);    /* HygonGenuine */
}

static uint64_t rdmsr_or0(struct pcpu *c, uint32_t msr)
{
    int fault;
    uint64_t v = rdmsr_safe(c, msr, &fault);
    return fault ? 0 : v;
}

unsigned cpu_phys_bits(void)
{
    uint32_t r[4];
    cpuid(0x80000000u, 0, r);
    if (r[0] < 0x80000008u)
        return 36;
    cpuid(0x80000008u, 0, r);
    return r[0] & 0xff;
}

/* This CPU's guest MSRs, made on first use from the processor's own values. */
static struct guest_msrs *msrs_of(struct pcpu *c)
{
    if (c->gmsr)
        return c->gmsr;
    struct guest_msrs *g = page_alloc(NULL);
    int fault;
    uint64_t cap = rdmsr_safe(c, MSR_MTRRCAP, &fault);
    uint32_t r[4];
    cpuid(1, 0, r);
    if (fault || !(r[3] & (1u << 12)))          /* CPUID.01H:EDX.MTRR */
        cap = 0;
    mtrr_init(&g->mtrr, cap, cpu_phys_bits());
    g->amd = cpu_is_amd();
    if (cap) {
        struct mtrr_state *m = &g->mtrr;
        m->def_type = rdmsr_or0(c, MSR_MTRR_DEF_TYPE) & (0xffull | MTRR_DEF_FE | MTRR_DEF_E);
        for (unsigned i = 0; i < (cap & MTRRCAP_VCNT_MASK) && i < MTRR_MAX_VAR; i++) {
            m->base[i] = rdmsr_or0(c, MSR_MTRR_PHYSBASE0 + 2 * i);
            m->mask[i] = rdmsr_or0(c, MSR_MTRR_PHYSBASE0 + 2 * i + 1);
        }
        if (cap & MTRRCAP_FIX) {
            static const uint32_t fixed[MTRR_FIXED_MSRS] = {
                MSR_MTRR_FIX64K_00000, MSR_MTRR_FIX16K_80000, MSR_MTRR_FIX16K_A0000,
                MSR_MTRR_FIX4K_C0000, MSR_MTRR_FIX4K_C0000 + 1, MSR_MTRR_FIX4K_C0000 + 2,
                MSR_MTRR_FIX4K_C0000 + 3, MSR_MTRR_FIX4K_C0000 + 4, MSR_MTRR_FIX4K_C0000 + 5,
                MSR_MTRR_FIX4K_C0000 + 6, MSR_MTRR_FIX4K_C0000 + 7 };
            for (unsigned i = 0; i < MTRR_FIXED_MSRS; i++)
                m->fixed[i] = rdmsr_or0(c, fixed[i]);
        }
    }
    if (g->amd) {
        g->syscfg = rdmsr_or0(c, MSR_AMD_SYSCFG);
        g->hwcr = rdmsr_or0(c, MSR_AMD_HWCR) & HWCR_VIRTUAL;
        for (unsigned i = 0; i < 4; i++)
            g->iorr[i] = rdmsr_or0(c, MSR_AMD_IORR_FIRST + i);
        g->top_mem = rdmsr_or0(c, MSR_AMD_TOP_MEM);
        g->top_mem2 = rdmsr_or0(c, MSR_AMD_TOP_MEM2);
        g->mtrr.amd_rdwrmem = g->syscfg & SYSCFG_MTRR_FIX_DRAM_MOD;
    }
    c->gmsr = g;
    return g;
}

/* ---- memory types ---- */

static bool ram_type(uint32_t t)
{
    return t == E820_RAM || t == E820_ACPI || t == E820_NVS;
}

/* 1 when every byte of [b, e) is RAM in the firmware map, 0 when none is, -1 else. */
static int ram_kind(uint64_t b, uint64_t e)
{
    const struct e820_map *m = &g_bp->e820;
    bool any = false;
    for (uint32_t i = 0; i < m->count; i++) {
        uint64_t eb = m->e[i].base, ee = eb + m->e[i].length;
        if (ram_type(m->e[i].type) && eb < e && b < ee && ee > eb)
            any = true;
    }
    if (!any)
        return 0;
    for (uint64_t pos = b; pos < e;) {
        uint64_t next = pos;
        for (uint32_t i = 0; i < m->count; i++) {
            uint64_t eb = m->e[i].base, ee = eb + m->e[i].length;
            if (ram_type(m->e[i].type) && eb <= pos && pos < ee && ee > next)
                next = ee;
        }
        if (next == pos)
            return -1;
        pos = next;
    }
    return 1;
}

/* type_of for the nested tables (pt_retype): the guest's MTRR type, where the block is
 * RAM; MMIO keeps UC unless the guest asks for WC. A 4 KiB page that is RAM in part
 * counts as RAM, as the initial map has it (arch_nested_paging_init). */
int guest_memory_type(void *ctx, uint64_t gpa, uint64_t size)
{
    const struct mtrr_state *m = ctx;
    int t = mtrr_range_type(m, gpa, size);
    if (t == MT_MIXED)
        return -1;
    int ram = ram_kind(gpa, gpa + size);
    if (ram < 0) {
        if (size > 0x1000)
            return -1;
        ram = 1;
    }
    if (!ram && t != MT_UC && t != MT_WC)
        return MT_UC;
    return t;
}

/* The BSP's guest MTRRs as the firmware left them decide the first types. */
const struct mtrr_state *guest_mtrr_initial(struct pcpu *c)
{
    return &msrs_of(c)->mtrr;
}

/* ---- RDMSR / WRMSR ---- */

static bool vmx_capability(uint32_t msr)
{
    return (msr >= MSR_IA32_VMX_BASIC && msr <= MSR_IA32_VMX_LAST) ||
           msr == MSR_IA32_SMM_MONITOR_CTL;
}

static bool svm_msr(uint32_t msr)
{
    return msr == MSR_VM_CR || msr == MSR_VM_HSAVE_PA || msr == MSR_AMD_SVM_KEY;
}

/* AMD's memory-type MSRs: a pointer to the kept copy, or NULL. */
static uint64_t *amd_copy(struct guest_msrs *g, uint32_t msr)
{
    if (!g->amd)
        return NULL;
    if (msr == MSR_AMD_SYSCFG)
        return &g->syscfg;
    if (msr >= MSR_AMD_IORR_FIRST && msr < MSR_AMD_IORR_FIRST + 4)
        return &g->iorr[msr - MSR_AMD_IORR_FIRST];
    if (msr == MSR_AMD_TOP_MEM)
        return &g->top_mem;
    if (msr == MSR_AMD_TOP_MEM2)
        return &g->top_mem2;
    return NULL;
}

enum msr_outcome guest_msr_read(struct vcpu *v, uint32_t msr, uint64_t *val)
{
    struct guest_msrs *g = msrs_of(v->cpu);
    int fault;
    if (vmx_capability(msr) || svm_msr(msr))
        return MSR_GP;
    if (msr == MSR_IA32_FEATURE_CONTROL) {
        *val = rdmsr_safe(v->cpu, msr, &fault) & ~FEATCTL_HIDDEN;
        return fault ? MSR_GP : MSR_DONE;
    }
    if (mtrr_is_msr(msr))
        return mtrr_read(&g->mtrr, msr, val) == 0 ? MSR_DONE : MSR_GP;
    uint64_t *copy = amd_copy(g, msr);
    if (copy) {
        *val = *copy;
        return MSR_DONE;
    }
    if (g->amd && msr == MSR_AMD_HWCR) {
        *val = (rdmsr_safe(v->cpu, msr, &fault) & ~HWCR_VIRTUAL) | g->hwcr;
        return fault ? MSR_GP : MSR_DONE;
    }
    return MSR_PASS;
}

/* Whether a write to msr can change the types the MTRRs give: with MTRRs enabled any
 * MTRR write; while disabled (everything UC) only DEF_TYPE's enable bit. */
static bool types_may_change(const struct mtrr_state *m, uint32_t msr, uint64_t old_def)
{
    if (msr == MSR_MTRR_DEF_TYPE)
        return (old_def | m->def_type) & MTRR_DEF_E;
    return m->def_type & MTRR_DEF_E;
}

enum msr_outcome guest_msr_write(struct vcpu *v, uint32_t msr, uint64_t val)
{
    struct guest_msrs *g = msrs_of(v->cpu);
    int fault;
    if (vmx_capability(msr) || svm_msr(msr))
        return MSR_GP;
    if (msr == MSR_IA32_FEATURE_CONTROL) {
        uint64_t cur = rdmsr_safe(v->cpu, msr, &fault);
        return (fault || (cur & FEATCTL_LOCK)) ? MSR_GP : MSR_PASS;
    }
    if (mtrr_is_msr(msr)) {
        uint64_t old_def = g->mtrr.def_type;
        if (mtrr_write(&g->mtrr, msr, val) != 0)
            return MSR_GP;
        if (types_may_change(&g->mtrr, msr, old_def))
            arch_guest_memory_types(&g->mtrr);
        return MSR_DONE;
    }
    uint64_t *copy = amd_copy(g, msr);
    if (copy) {
        if ((msr == MSR_AMD_TOP_MEM || msr == MSR_AMD_TOP_MEM2) && (val & ~TOP_MEM_VALID))
            return MSR_GP;
        *copy = val;
        g->mtrr.amd_rdwrmem = g->syscfg & SYSCFG_MTRR_FIX_DRAM_MOD;
        return MSR_DONE;
    }
    if (g->amd && msr == MSR_AMD_HWCR) {
        uint64_t cur = rdmsr_safe(v->cpu, msr, &fault);
        if (fault || wrmsr_safe(v->cpu, msr, (val & ~HWCR_VIRTUAL) | (cur & HWCR_VIRTUAL)))
            return MSR_GP;
        g->hwcr = val & HWCR_VIRTUAL;
        return MSR_DONE;
    }
    return MSR_PASS;
}
