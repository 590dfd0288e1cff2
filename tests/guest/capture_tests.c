/* Cases that attack the hypervisor's capture of xAPIC writes (issue 8, DESIGN.md section
 * 4): instructions that touch the APIC page more than once, in an order the hypervisor
 * cannot choose. Each case counts the ICR writes it makes itself and requires the
 * hypervisor's STATS 0x203 (ICR writes captured) to have grown by exactly that much: an
 * ICR write that reached the APIC without being counted is one that could have sent an
 * INIT or STARTUP behind the hypervisor's back. All run on the BSP, with IF = 0 except
 * where a self-IPI is collected.
 *
 * Some of the writes here are ones SDM 11.4.1 leaves undefined (not an aligned 32-bit
 * store): Bochs stops with a panic on those when it meets them without a hypervisor, so
 * natively those cases only say so; under the hypervisor they never reach Bochs's APIC. */
#include "guest.h"

#define VEC_CAP      0x38u          /* the self-IPIs of these cases */
#define VEC_CAP_INT  0x39u          /* INT n with the stack on the APIC page */
#define ST_UNDEFINED 0x207ull       /* instructions with undefined APIC writes */
#define ST_SUBPAGE   0x2fdull       /* 1: only writes to 0x280-0x37f exit (SPP) */
#define CAP_PT_SLOT  0x10u          /* NP_REGION + 0x10000: the APIC, then not present */
#define CAP_WINDOW   (NP_REGION + CAP_PT_SLOT * 0x1000u)

static volatile uint32_t cap_irqs;

static bool cap_irq_hook(struct trap_frame *f)
{
    (void)f;
    cap_irqs++;
    apic_write(APIC_EOI, 0);
    return true;
}

/* A STATS counter, or 0 natively / when it does not answer. */
static uint64_t stat(uint64_t sel)
{
    uint64_t v = 0;
    if (hv_stat(sel, &v) != HV_STAT_OK)
        v = 0;
    return v;
}

/* Lets a pending self-IPI in (the TPR back to what it was first) and counts it. */
static uint32_t collect_irqs(uint32_t tpr)
{
    apic_write(APIC_TPR, tpr);
    __asm__ volatile("sti; nop; nop; nop; cli" ::: "memory");
    delay_ticks(TICKS_200US);
    return cap_irqs;
}

static void movsl(uint64_t src, uint64_t dst)
{
    __asm__ volatile("cld; movsl" : "+S"(src), "+D"(dst) : : "memory");
}

/* ---- apic_movs_registers: reads and writes in one instruction --------------------- */
/* MOVSL from the TPR to ICR_LO (the read comes first, the ICR write second: a hypervisor
 * that decides by the first access steps it against the real APIC) and back, from
 * ICR_LO to the TPR (a TPR write that one which decides by the ICR read would drop). */
bool t_apic_movs_registers(struct test_result *r)
{
    if (hv_apic_zeroexit())
        return test_skip(r, "apic=zeroexit: no APIC access is intercepted; this case checks STATS 0x203 (ICR writes captured)");
    const uint64_t a = apic_base();
    const uint32_t tpr0 = apic_read(APIC_TPR);
    const bool hv = hv_present();

    trap_set_hook(VEC_CAP, cap_irq_hook);
    cap_irqs = 0;
    apic_write(APIC_ICR_HI, this_cpu()->apic_id << 24);
    apic_write(APIC_TPR, VEC_CAP);      /* class 3: the IPI waits until the TPR drops */
    const uint64_t icr0 = stat(ST_ICR_WRITES), x0 = stat(ST_EXITS_TOTAL);
    const uint64_t x1 = stat(ST_EXITS_TOTAL);
    uint32_t sum = 0;
    for (unsigned i = 0; i < 100; i++)      /* reads only: they must cost nothing */
        sum += apic_read(APIC_ID) + apic_read(0x390) + apic_read(APIC_ICR_LO);
    const uint64_t x2 = stat(ST_EXITS_TOTAL);
    for (unsigned i = 0; i < 100; i++)      /* nothing in service: no effect */
        apic_write(APIC_EOI, 0);
    const uint64_t x3 = stat(ST_EXITS_TOTAL);
    movsl(a + APIC_TPR, a + APIC_ICR_LO);   /* ICR_LO = 0x38: fixed, to self */
    const uint64_t icr1 = stat(ST_ICR_WRITES);
    const uint32_t got = collect_irqs(tpr0);
    trap_set_hook(VEC_CAP, NULL);
    (void)sum;

    const uint32_t icr_lo = apic_read(APIC_ICR_LO);
    movsl(a + APIC_ICR_LO, a + APIC_TPR);
    const uint32_t tpr_moved = apic_read(APIC_TPR);
    apic_write(APIC_TPR, tpr0);

    if (got != 1)
        return test_fail(r, "MOVSL TPR -> ICR_LO: %u self-IPIs (vector 0x%x), expected 1",
                         got, VEC_CAP);
    if (tpr_moved != (icr_lo & 0xff))
        return test_fail(r, "MOVSL ICR_LO (0x%x) -> TPR: the TPR reads 0x%x", icr_lo,
                         tpr_moved);
    if (!hv)
        return test_pass(r, "one IPI; TPR 0x%x (native: no exit counts)", tpr_moved);
    if (icr1 - icr0 != 1)
        return test_fail(r, "one ICR write by MOVSL, STATS 0x203 grew by %lu", icr1 - icr0);
    if (x2 - x1 != x1 - x0)
        return test_fail(r, "300 APIC reads cost %lu exits (%lu around nothing)", x2 - x1,
                         x1 - x0);
    /* An EOI write: two exits (the fault, the end of the step), none with sub-page
     * write permissions. */
    const uint64_t per = stat(ST_SUBPAGE) ? 0 : 2;
    if (x3 - x2 != x1 - x0 + 100 * per)
        return test_fail(r, "100 EOI writes cost %lu exits, expected %lu (+%lu around "
                         "nothing)", x3 - x2 - (x1 - x0), 100 * per, x1 - x0);
    return test_pass(r, "one IPI, ICR +1; TPR 0x%x; 300 reads: no exit; EOI: %lu exits",
                     tpr_moved, per);
}

/* ---- apic_rep_iteration: an ICR write made by an iteration that is not the last --- */
/* REP MOVSL backwards, two dwords: the first iteration writes ICR_LO, the second the
 * reserved last dword of slot 0x2f0 (an undefined write). */
bool t_apic_rep_iteration(struct test_result *r)
{
    if (hv_apic_zeroexit())
        return test_skip(r, "apic=zeroexit: no APIC access is intercepted; this case checks the REP iterations' steps (STATS 0x200/0x203/0x207)");
    if (!hv_present())
        return test_skip(r, "native: Bochs stops on the undefined write");
    static volatile uint32_t buf[2];
    const uint32_t tpr0 = apic_read(APIC_TPR);
    buf[0] = 0;
    buf[1] = VEC_CAP;
    trap_set_hook(VEC_CAP, cap_irq_hook);
    cap_irqs = 0;
    apic_write(APIC_ICR_HI, this_cpu()->apic_id << 24);
    apic_write(APIC_TPR, VEC_CAP);
    const uint64_t icr0 = stat(ST_ICR_WRITES), u0 = stat(ST_UNDEFINED);
    const uint64_t s0 = stat(ST_APIC_STEPS);
    uint64_t src = (uint64_t)(uintptr_t)&buf[1], dst = apic_base() + APIC_ICR_LO, n = 2;
    __asm__ volatile("std; rep movsl; cld" : "+S"(src), "+D"(dst), "+c"(n) : : "memory");
    const uint64_t s1 = stat(ST_APIC_STEPS);
    const uint64_t icr1 = stat(ST_ICR_WRITES), u1 = stat(ST_UNDEFINED);
    const uint32_t got = collect_irqs(tpr0);
    trap_set_hook(VEC_CAP, NULL);
    if (got != 1)
        return test_fail(r, "%u self-IPIs, expected 1", got);
    if (icr1 - icr0 != 1)
        return test_fail(r, "one ICR write (iteration 1 of 2), STATS 0x203 grew by %lu",
                         icr1 - icr0);
    if (s1 - s0 != 2 || u1 - u0 != 1)
        return test_fail(r, "STATS 0x200 +%lu (expected 2 steps), 0x207 +%lu (expected 1)",
                         s1 - s0, u1 - u0);
    return test_pass(r, "one IPI, ICR +1, 2 steps, 1 undefined write");
}

/* ---- apic_event_push: an interrupt frame pushed onto the APIC page ---------------- */
/* INT 0x39 with RSP = APIC + 0x320: the processor pushes SS at 0x318, RSP at 0x310
 * (ICR_HI), RFLAGS at 0x308, CS at 0x300 (ICR_LO = 0x18: a fixed IPI, vector 0x18, to
 * APIC ID 0xfe, which nobody has) and RIP at 0x2f8. The handler (its own gate, so that
 * nothing else is pushed there) goes straight back to the saved stack. */
extern void (*const trap_stub_table[256])(void);   /* trap_entry.S */
void cap_int_probe(uint64_t rsp);
void cap_int_handler(void);
__asm__(".pushsection .text\n"
        ".globl cap_int_probe, cap_int_handler\n"
        "cap_int_probe:\n"
        "  movq %rsp, cap_saved_rsp(%rip)\n"
        "  movq %rdi, %rsp\n"
        "  int $0x39\n"
        "  ud2\n"
        "cap_int_handler:\n"
        "  movq cap_saved_rsp(%rip), %rsp\n"
        "  ret\n"
        ".popsection\n");
uint64_t cap_saved_rsp;

bool t_apic_event_push(struct test_result *r)
{
    if (hv_apic_zeroexit())
        return test_skip(r, "apic=zeroexit: no APIC access is intercepted; this case checks the capture of an event frame on the APIC page (STATS 0x203/0x207)");
    if (!hv_present())
        return test_skip(r, "native: Bochs stops on the 8-byte APIC writes");
    /* Bochs's SVM reports a stale EXITINTINFO for a fault in the delivery of INT n (the
     * last injected event, not the INT), which the hypervisor re-injects. */
    if (cpu_is_amd && !smbios_manufacturer_is("QEMU"))
        return test_skip(r, "Bochs SVM's EXITINTINFO for INT n is stale");
    const uint32_t hi0 = apic_read(APIC_ICR_HI);
    idt_set_gate(VEC_CAP_INT, cap_int_handler);
    const uint64_t icr0 = stat(ST_ICR_WRITES), u0 = stat(ST_UNDEFINED);
    cap_int_probe(apic_base() + 0x320);
    const uint64_t icr1 = stat(ST_ICR_WRITES), u1 = stat(ST_UNDEFINED);
    const uint32_t hi = apic_read(APIC_ICR_HI);
    apic_write(APIC_ICR_HI, hi0);
    idt_set_gate(VEC_CAP_INT, trap_stub_table[VEC_CAP_INT]);    /* the shared stub */
    if (icr1 - icr0 != 1)
        return test_fail(r, "the frame wrote ICR_LO once, STATS 0x203 grew by %lu",
                         icr1 - icr0);
    if ((hi >> 24) != 0xfe)
        return test_fail(r, "ICR_HI 0x%x after the push, expected the pushed RSP's top "
                         "byte 0xfe", hi);
    if (u1 - u0 != 1)
        return test_fail(r, "STATS 0x207 (undefined writes) +%lu, expected 1", u1 - u0);
    return test_pass(r, "ICR +1, ICR_HI from the pushed RSP, 1 undefined write");
}

/* ---- apic_write_straddle: a write that runs off the APIC page into a missing page -- */
/* A 64-bit store to APIC + 0xffc through a 4 KiB window whose next page is not present:
 * one #PF (CR2 at the next page, error 0x2) and nothing else; under the hypervisor the
 * write faulted on the APIC page first, so its step ends with the #PF (STATS 0x201). */
bool t_apic_write_straddle(struct test_result *r)
{
    if (hv_apic_zeroexit())
        return test_skip(r, "apic=zeroexit: no APIC access is intercepted; a store straddling into the APIC page would reach the real APIC (Bochs stops on it)");
    uint64_t *pt = (uint64_t *)(uintptr_t)NP_PT_PAGE;
    uint64_t *pd = (uint64_t *)(uintptr_t)(GUEST_PT_BASE + 0x2000);
    struct fault_info f;

    for (unsigned i = 0; i < 512; i++)
        pt[i] = (NP_REGION + i * 0x1000ull) | 0x3;
    pt[(NP_PAGE - NP_REGION) >> 12] = 0;
    pt[CAP_PT_SLOT] = apic_base() | 0x1b;       /* P, RW, PWT, PCD: uncached */
    pt[CAP_PT_SLOT + 1] = 0;
    pd[NP_REGION >> 21] = NP_PT_PAGE | 0x3;
    __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
    const uint64_t e0 = stat(ST_STEP_EXC), icr0 = stat(ST_ICR_WRITES);
    const unsigned n = mem_write64_faults(CAP_WINDOW + 0xffc, 0x38, &f);
    const uint64_t e1 = stat(ST_STEP_EXC), icr1 = stat(ST_ICR_WRITES);
    const uint32_t id = mmio_read32(CAP_WINDOW + APIC_ID);
    if (n != 1 || f.vector != VEC_PF || f.cr2 != CAP_WINDOW + 0x1000 || f.error != 0x2)
        return test_fail(r, "%u faults, first %s err=0x%lx cr2=0x%lx; expected one #PF "
                         "err=0x2 cr2=0x%x", n, n ? trap_name(f.vector) : "none", f.error,
                         f.cr2, CAP_WINDOW + 0x1000);
    if (id != apic_read(APIC_ID))
        return test_fail(r, "the window reads APIC ID 0x%x, expected 0x%x", id,
                         apic_read(APIC_ID));
    if (!hv_present())
        return test_pass(r, "one #PF at the next page (native: no exit counts)");
    /* With sub-page write permissions 0xffc is writable: the store never exits. */
    const uint64_t steps = stat(ST_SUBPAGE) ? 0 : 1;
    if (e1 - e0 != steps || icr1 != icr0)
        return test_fail(r, "STATS 0x201 +%lu (expected %lu), 0x203 +%lu (expected 0)",
                         e1 - e0, steps, icr1 - icr0);
    return test_pass(r, "one #PF at the next page; %s, nothing written",
                     steps ? "the step ended by it" : "no exit (sub-page writable)");
}

/* ---- WRMSR that may fault ----------------------------------------------------------- */
void cap_wrmsr_insn(void), cap_wrmsr_recover(void);

__attribute__((noinline, noclone)) unsigned wrmsr_faults(uint32_t msr, uint64_t val,
                                                      struct fault_info *f)
{
    fault_expect((const void *)cap_wrmsr_recover);
    __asm__ volatile(".globl cap_wrmsr_insn, cap_wrmsr_recover\n"
                     "cap_wrmsr_insn: wrmsr\n"
                     "cap_wrmsr_recover:"
                     : : "c"(msr), "a"((uint32_t)val), "d"((uint32_t)(val >> 32)) : "memory");
    return fault_expect_end(f);
}

/* ---- apic_base_anywhere: IA32_APIC_BASE over RAM, above 4 GiB, 10,000 times -------- */
/* SDM 11.4.4: the base may be any page within the physical address width. The BSP's
 * APIC goes over a RAM page (the RAM must be intact after it leaves), then above 4 GiB
 * (the guest maps 4-5 GiB uncached through one more page directory), then moves there
 * 10,000 times: the hypervisor's free heap (STATS 0x2ff) must be the same after as after
 * the first move. At each place the ID reads right and an ICR_HI write is a step. A base on
 * the hypervisor's own region gets #GP. Then home. Not on QEMU, which keeps its xAPIC
 * at 0xfee00000 whatever IA32_APIC_BASE says. */
#define HIGH_PD_PAGE 0x92000u               /* free low memory (guest.h's map) */
#define HIGH_BASE    0x100000000ull
#define RAM_APIC     0x00680000ull
#define RELOCS       10000u
#define ST_HEAP_FREE 0x2ffull

static uint64_t reloc_page(unsigned i)
{
    return HIGH_BASE + (uint64_t)(i % 512) * 0x200000 + (uint64_t)(i / 512) * 0x1000;
}

static void set_base(uint64_t flags, uint64_t page)
{
    wrmsr(MSR_APIC_BASE, flags | page);
    this_cpu()->apic_base = page;
}

bool t_apic_base_anywhere(struct test_result *r)
{
    if (smbios_manufacturer_is("QEMU"))
        return test_skip(r, "QEMU does not relocate the xAPIC");
    const bool hv = hv_present();
    const uint64_t msr0 = rdmsr(MSR_APIC_BASE), home = msr0 & APIC_BASE_ADDR;
    const uint64_t flags = msr0 & ~APIC_BASE_ADDR;
    const uint32_t id = apic_read(APIC_ID);
    uint64_t *pdpt = (uint64_t *)(uintptr_t)(GUEST_PT_BASE + 0x1000);
    uint64_t *pd = (uint64_t *)(uintptr_t)HIGH_PD_PAGE;
    struct runtime_info ri = { 0, 0, 0 };
    char why[64];
    struct fault_info f = { 0, 0, 0, 0 };
    unsigned gp = 0;

    if (msr0 & APIC_BASE_EXTD)
        return test_fail(r, "the APIC is in x2APIC mode (IA32_APIC_BASE 0x%lx)", msr0);
    for (unsigned i = 0; i < 512; i++)
        pd[i] = (HIGH_BASE + i * 0x200000ull) | 0x9b;   /* P, RW, PWT, PCD, 2 MiB */
    pdpt[4] = HIGH_PD_PAGE | 0x3;
    __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");
    volatile uint32_t *ram = (volatile uint32_t *)(uintptr_t)(RAM_APIC + APIC_ID);
    *ram = 0x5a5a1234u;

    const uint64_t s0 = stat(ST_APIC_STEPS);
    set_base(flags, RAM_APIC);
    const uint32_t id_ram = mmio_read32(RAM_APIC + APIC_ID);
    mmio_write32(RAM_APIC + APIC_ICR_HI, mmio_read32(RAM_APIC + APIC_ICR_HI));
    const uint64_t s1 = stat(ST_APIC_STEPS);
    set_base(flags, reloc_page(0));
    const uint64_t heap0 = stat(ST_HEAP_FREE);
    for (unsigned i = 1; i <= RELOCS; i++)
        set_base(flags, reloc_page(i));
    const uint64_t heap1 = stat(ST_HEAP_FREE);
    const uint64_t hi = reloc_page(RELOCS);
    const uint32_t id_hi = mmio_read32(hi + APIC_ID);
    mmio_write32(hi + APIC_ICR_HI, mmio_read32(hi + APIC_ICR_HI));
    const uint64_t s2 = stat(ST_APIC_STEPS);
    if (hv && get_runtime_info(&ri, why, sizeof why))
        gp = wrmsr_faults(MSR_APIC_BASE, flags | ri.base, &f);
    const uint64_t msr_gp = rdmsr(MSR_APIC_BASE);
    set_base(flags, home);
    const uint32_t id_home = apic_read(APIC_ID), ram_after = *ram;
    pdpt[4] = 0;
    __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" ::: "rax", "memory");

    if (id_ram != id || id_hi != id || id_home != id)
        return test_fail(r, "APIC ID 0x%x over RAM at 0x%llx, 0x%x at 0x%lx, 0x%x at home; "
                         "expected 0x%x", id_ram, RAM_APIC, id_hi, hi, id_home, id);
    if (ram_after != 0x5a5a1234u)
        return test_fail(r, "the RAM under the APIC reads 0x%x after it left, expected "
                         "0x5a5a1234", ram_after);
    if (!hv)
        return test_pass(r, "over RAM, above 4 GiB, %u moves (native: no exit counts)",
                         RELOCS);
    /* apic=zeroexit: the relocated page is not trapped either (no step at all). */
    const uint64_t want = hv_apic_zeroexit() ? 0 : 1;
    if (s1 - s0 != want || s2 - s1 != want)
        return test_fail(r, "ICR_HI writes over RAM / above 4 GiB: steps +%lu / +%lu, "
                         "expected %lu each", s1 - s0, s2 - s1, want);
    if (heap0 != heap1)
        return test_fail(r, "%u moves of the APIC cost %ld heap pages (%lu -> %lu free)",
                         RELOCS, (long)(heap0 - heap1), heap0, heap1);
    if (gp != 1 || f.vector != VEC_GP || msr_gp != (flags | hi))
        return test_fail(r, "IA32_APIC_BASE on the hypervisor (0x%lx): %u faults (%s), "
                         "then 0x%lx", ri.base, gp, gp ? trap_name(f.vector) : "none",
                         msr_gp);
    return test_pass(r, "over RAM, above 4 GiB, %u moves: heap %lu pages free before and "
                     "after; on the hypervisor: #GP", RELOCS, heap1);
}
