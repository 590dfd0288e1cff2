/* task_switches: the 32-bit protected-mode part (pm32.S) runs hardware task switches
 * on the BSP and logs what each step saw; this file builds its GDT, IDT and TSSs and
 * checks the log against the SDM (Vol. 3A chapter 8: 8.3 task switching, 8.4 task
 * linking; 6.12.2 interrupt tasks; 6.15 #DF; 6.7.1 NMI blocking). The same log is
 * expected natively and under the hypervisor (on Intel the hypervisor carries each
 * switch out; on AMD the processor does, inside the guest). */
#include "guest.h"

#define TSS_MAIN 0x20
#define TSS_A    0x28
#define TSS_B    0x30
#define TSS_DF   0x38
#define TSS_NMI  0x40
#define TSS_BAD  0x48
#define TSS_TSH  0x50
#define TSS_NP   0x58
#define GATE_B   0x60
#define NT       0x4000u
#define NTASKS   8

struct tss32 {
    uint32_t link, esp0, ss0, esp1, ss1, esp2, ss2, cr3, eip, eflags;
    uint32_t eax, ecx, edx, ebx, esp, ebp, esi, edi;
    uint32_t es, cs, ss, ds, fs, gs, ldt, iomap;
};
_Static_assert(sizeof(struct tss32) == 0x68, "32-bit TSS");

/* The TSSs and the GDT each fill a page of their own: the accessed/dirty flags of those
 * pages' PTEs then show what the task switch itself touched. pm32.S runs with 32-bit
 * paging (pm32_pd: a page table for the first 4 MiB, 4 MiB pages above), so every
 * switch also loads CR3 from the new TSS. */
union pm32_tss_page { struct tss32 t[NTASKS]; uint8_t page[4096]; };
union pm32_gdt_page { uint64_t d[13]; uint8_t page[4096]; };
extern union pm32_tss_page pm32_tss_page;
extern union pm32_gdt_page pm32_gdt_page;
union pm32_tss_page pm32_tss_page __attribute__((aligned(4096)));
union pm32_gdt_page pm32_gdt_page __attribute__((aligned(4096)));
#define pm32_tss pm32_tss_page.t
#define pm32_gdt pm32_gdt_page.d
extern uint32_t pm32_pd[1024], pm32_pt[1024];
uint32_t pm32_pd[1024] __attribute__((aligned(4096)));
uint32_t pm32_pt[1024] __attribute__((aligned(4096)));
uint64_t pm32_idt[0x41] __attribute__((aligned(8)));
static uint8_t task_stack[NTASKS][512] __attribute__((aligned(16)));

extern uint8_t pm32_gdtr[6], pm32_idtr[6];
extern uint32_t pm32_log[64], pm32_n, nmi_count;
void pm32_run(void);
void pm32_task_a(void), pm32_task_b(void), pm32_task_df(void), pm32_task_nmi(void),
     pm32_task_tsh(void), pm32_np_stub(void), pm32_gp_stub(void);

static uint64_t tss_desc(const struct tss32 *t, bool present)
{
    uint64_t b = (uint64_t)(uintptr_t)t;
    return (sizeof(*t) - 1) | (b & 0xffffff) << 16 | (present ? 0x89ull : 0x09ull) << 40 |
           (b >> 24 & 0xff) << 56;
}

static uint64_t task_gate(uint16_t sel)
{
    return (uint64_t)sel << 16 | 0x85ull << 40;
}

static uint64_t intr_gate(void (*fn)(void))
{
    uint64_t a = (uint64_t)(uintptr_t)fn;
    return (a & 0xffff) | 0x08ull << 16 | 0x8eull << 40 | (a >> 16 & 0xffff) << 48;
}

static void task(unsigned i, void (*entry)(void), uint16_t cs)
{
    struct tss32 *t = &pm32_tss[i];
    memset(t, 0, sizeof(*t));
    t->eip = (uint32_t)(uintptr_t)entry;
    t->eflags = 2;
    t->esp = (uint32_t)(uintptr_t)&task_stack[i][sizeof(task_stack[i])];
    t->cs = cs;
    t->es = t->ss = t->ds = t->fs = t->gs = 0x10;
    t->iomap = sizeof(*t);
}

static void build_paging(void)
{
    for (uint32_t i = 0; i < 1024; i++) {
        pm32_pt[i] = i << 12 | 3u;                              /* P, R/W */
        /* 4 MiB pages (PS); the top 32 MiB (APIC, firmware) uncached (PCD, PWT) */
        pm32_pd[i] = i << 22 | 0x83u | (i >= 0x3f8 ? 0x18u : 0);
    }
    pm32_pd[0] = (uint32_t)(uintptr_t)pm32_pt | 3u;
}

static void build(void)
{
    build_paging();
    pm32_gdt[0] = 0;
    pm32_gdt[1] = 0x00cf9a000000ffffull;
    pm32_gdt[2] = 0x00cf92000000ffffull;
    pm32_gdt[3] = 0x00af9a000000ffffull;
    memset(pm32_tss, 0, sizeof(pm32_tss));
    task(1, pm32_task_a, 0x08);
    task(2, pm32_task_b, 0x08);
    task(3, pm32_task_df, 0x08);
    task(4, pm32_task_nmi, 0x08);
    task(5, pm32_task_a, 0x10);         /* "bad": CS names a data segment */
    task(6, pm32_task_tsh, 0x08);
    task(7, pm32_task_a, 0x08);
    for (unsigned i = 0; i < NTASKS; i++) {
        pm32_gdt[4 + i] = tss_desc(&pm32_tss[i], i != 7);   /* TSS_NP not present */
        pm32_tss[i].cr3 = (uint32_t)(uintptr_t)pm32_pd;
    }
    pm32_gdt[GATE_B / 8] = task_gate(TSS_B);
    memset(pm32_idt, 0, sizeof(pm32_idt));
    pm32_idt[2] = task_gate(TSS_NMI);
    pm32_idt[8] = task_gate(TSS_DF);
    pm32_idt[10] = task_gate(TSS_TSH);
    pm32_idt[11] = intr_gate(pm32_np_stub);
    pm32_idt[13] = intr_gate(pm32_gp_stub);
    pm32_idt[0x40] = task_gate(TSS_B);
    uint16_t gl = sizeof(pm32_gdt) - 1, il = sizeof(pm32_idt) - 1;
    uint32_t gb = (uint32_t)(uintptr_t)pm32_gdt, ib = (uint32_t)(uintptr_t)pm32_idt;
    memcpy(pm32_gdtr, &gl, 2);
    memcpy(pm32_gdtr + 2, &gb, 4);
    memcpy(pm32_idtr, &il, 2);
    memcpy(pm32_idtr + 2, &ib, 4);
    pm32_n = 0;
    nmi_count = 0;
}

#define EBX 0x5a5aa5a5u
/* What each step must log (pm32.S), written out from the SDM. */
static const uint32_t expected[] = {
    /* 1. JMP to task A: it runs with TR = A, NT clear, its link field untouched (0);
     * back in the main task EBX is intact and CR0.TS set. */
    0xa0, TSS_A, 0, 0, EBX, 8,
    /* The PTE flags of the TSS page and the GDT page, both cleared before the JMP: the
     * switch wrote the old task's state (TSS page dirty; task A read its link field, so
     * accessed anyway) and the busy flags (GDT page accessed and dirty), SDM 4.8. */
    0x60, 0x60,
    /* 2-4. CALL to B, CALL through the GDT task gate, INT 0x40 through the IDT task
     * gate: B runs nested (NT, link = main), the main task stays busy (0x8b). */
    0xb0, TSS_B, NT, TSS_MAIN, 0x8b, EBX,
    0xb0, TSS_B, NT, TSS_MAIN, 0x8b, EBX,
    0xb0, TSS_B, NT, TSS_MAIN, 0x8b, EBX, 0,
    /* 5. #NP(not-present TSS), #GP(busy TSS), in the main task. */
    11, TSS_NP, 13, TSS_MAIN,
    /* 6. #TS(0x10) in the new task, through the task gate: handler task TSH, nested
     * from the bad task; the main task resumes. */
    0x7a, 0x10, TSS_TSH, TSS_BAD, EBX,
    /* 7. #DF through a task gate: error code 0, NT, link main, the main task stopped at
     * the faulting MOV (offset 0); resumed past it. */
    0xdf, 0, NT, TSS_MAIN, 0, EBX,
    /* 8. The NMI task: NT set; the second NMI held while it runs (count 1), then taken
     * after its IRET (count 2). */
    0x2a0, NT, 1, 0x2a0, NT, 2,
    /* Busy flags at the end: main busy, A and B available, the bad task still busy
     * (its handler left by JMP), NMI available; TR = main. */
    0x8b, 0x89, 0x89, 0x8b, 0x89, TSS_MAIN,
};

bool t_task_switches(struct test_result *r)
{
    build();
    pm32_run();
    unsigned n = pm32_n;
    for (unsigned i = 0; i < ARRAY_SIZE(expected) && i < n; i++)
        if (pm32_log[i] != expected[i])
            return test_fail(r, "log word %u is 0x%x, expected 0x%x (%u words)", i,
                             pm32_log[i], expected[i], n);
    if (n != ARRAY_SIZE(expected))
        return test_fail(r, "%u log words, expected %zu", n, ARRAY_SIZE(expected));
    return test_pass(r, "JMP, CALL, GDT/IDT task gates, IRET with NT, #NP/#GP/#TS/#DF, "
                     "NMI held in its task, A/D flags under 32-bit paging: %u steps as the "
                     "SDM says", n);
}
