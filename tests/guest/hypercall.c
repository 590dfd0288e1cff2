/* Wrappers around the asm probes: hypercalls and memory accesses that may fault. */
#include "guest.h"

/* Registers other than RAX..RDX, in struct hc_regs order, and their names. */
static const char *const other_names[] = {
    "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};

static uint64_t *other_regs(struct hc_regs *r)
{
    return &r->rsi;     /* rsi .. r15 are consecutive */
}

static uint64_t pattern(unsigned i)
{
    return 0x5a17c0de00000000ull | ((uint64_t)(i + 1) << 8) | (i + 1);
}

void hc_fill_patterns(struct hc_regs *r)
{
    uint64_t *o = other_regs(r);
    for (unsigned i = 0; i < ARRAY_SIZE(other_names); i++)
        o[i] = pattern(i);
}

const char *hc_clobbered(const struct hc_regs *r)
{
    const uint64_t *o = &r->rsi;
    for (unsigned i = 0; i < ARRAY_SIZE(other_names); i++) {
        if (o[i] != pattern(i))
            return other_names[i];
    }
    return NULL;
}

bool hypercall(struct hc_regs *r, struct fault_info *f)
{
    struct fault_info dummy;

    fault_expect((const void *)hc_vmcall_recover);
    int faulted = hc_vmcall(r);
    unsigned n = fault_expect_end(f ? f : &dummy);
    return !faulted && n == 0;
}

unsigned mem_write64_faults(uint64_t addr, uint64_t val, struct fault_info *f)
{
    fault_expect((const void *)probe_write64_recover);
    probe_write64(addr, val);
    return fault_expect_end(f);
}

unsigned mem_read64_faults(uint64_t addr, uint64_t *val, struct fault_info *f)
{
    fault_expect((const void *)probe_read64_recover);
    uint64_t v = probe_read64(addr);
    unsigned n = fault_expect_end(f);
    if (val)
        *val = v;
    return n;
}

bool get_runtime_info(struct runtime_info *ri, char *why, size_t why_size)
{
    struct hc_regs r = { .rax = HC_RUNTIME_INFO };
    struct fault_info f;

    hc_fill_patterns(&r);
    if (!hypercall(&r, &f)) {
        snprintf(why, why_size, "RUNTIME_INFO VMCALL raised %s at rip=0x%lx (no hypervisor?)",
                 trap_name(f.vector), f.rip);
        return false;
    }
    if (r.rax != 0) {
        snprintf(why, why_size, "RUNTIME_INFO returned rax=0x%lx", r.rax);
        return false;
    }
    ri->base = r.rbx;
    ri->size = r.rcx;
    ri->cpus = r.rdx;
    return true;
}

enum hv_stat_result hv_stat(uint64_t selector, uint64_t *val)
{
    struct hc_regs r = { .rax = HC_STATS, .rbx = selector, .rcx = 0 };
    struct fault_info f;

    hc_fill_patterns(&r);
    if (!hypercall(&r, &f))
        return f.vector == VEC_UD ? HV_STAT_NATIVE : HV_STAT_ERROR;
    if (r.rax != 0)
        return HV_STAT_ERROR;
    *val = r.rbx;
    return HV_STAT_OK;
}

bool hv_apic_zeroexit(void)
{
    uint64_t v;
    return hv_stat(ST_APIC_MODE, &v) == HV_STAT_OK && v == 1;
}

bool hv_present(void)
{
    uint64_t v;
    return hv_stat(ST_EXITS_TOTAL, &v) != HV_STAT_NATIVE;
}
