/* Host descriptor tables and exceptions. An exception in the hypervisor prints the CPU,
 * vector, RIP, error code and CR2 and halts that CPU; it never escalates to a triple
 * fault (#DF, NMI and #MC run on their own IST stack). Code that expects a fault
 * (MSR and XCR access on the guest's behalf) arms a per-CPU fixup instead. */
#include "msr.h"
#include "xmhf.h"

struct exc_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error, rip, cs, rflags, rsp, ss;
};

extern char exc_stubs[];
/* The last instructions before VM entry (vmx-entry.S / svm-entry.S): they check
 * nmi_host with every guest register already loaded. An NMI landing there restarts
 * the check so it is never left behind in the host (the race BitVisor closes this way). */
extern char entry_nmi_window_start[], entry_nmi_window_end[];
/* All 256 vectors: 0-31 exceptions; 32-255 only while the host drains the APIC at an
 * INIT (lapic_init_reset), when each interrupt just gets its EOI. */
static struct idt_gate64 idt[256] __attribute__((aligned(16)));

#define SEL_CODE 0x08
#define SEL_DATA 0x10
#define SEL_TSS  0x18
#define IST_CRITICAL 1

void idt_init(void)
{
    for (unsigned v = 0; v < ARRAY_SIZE(idt); v++) {
        uint64_t a = (uint64_t)(uintptr_t)(exc_stubs + 16 * v);
        idt[v].off_lo = (uint16_t)a;
        idt[v].sel = SEL_CODE;
        idt[v].ist = (v == EXC_DF || v == EXC_NMI || v == EXC_MC) ? IST_CRITICAL : 0;
        idt[v].type_attr = 0x8e;            /* present, DPL 0, 64-bit interrupt gate */
        idt[v].off_mid = (uint16_t)(a >> 16);
        idt[v].off_hi = (uint32_t)(a >> 32);
        idt[v].rsvd = 0;
    }
}

void cpu_tables_load(struct pcpu *c)
{
    uint64_t tss = (uint64_t)(uintptr_t)&c->tss;
    c->gdt[0] = 0;
    c->gdt[1] = 0x00af9a000000ffffull;      /* 64-bit code */
    c->gdt[2] = 0x00cf92000000ffffull;      /* data */
    /* 16-byte TSS descriptor (SDM 8.2.3, figure 8-4): type 9 = available 64-bit TSS. */
    c->gdt[3] = (sizeof(struct tss64) - 1) | ((tss & 0xffffff) << 16) | (0x89ull << 40) |
                ((tss >> 24 & 0xff) << 56);
    c->gdt[4] = tss >> 32;
    c->tss.iomap_base = sizeof(struct tss64);
    struct dtr64 g = { sizeof(c->gdt) - 1, (uint64_t)(uintptr_t)c->gdt };
    struct dtr64 i = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
    __asm__ volatile(
        "lgdt %0\n\t"
        "lidt %1\n\t"
        "mov %2, %%ds\n\tmov %2, %%es\n\tmov %2, %%ss\n\t"
        "xor %%eax, %%eax\n\tmov %%eax, %%fs\n\tmov %%eax, %%gs\n\t"
        "pushq %3\n\tlea 1f(%%rip), %%rax\n\tpushq %%rax\n\tlretq\n1:\n\t"
        "ltr %w4"
        :: "m"(g), "m"(i), "r"((uint64_t)SEL_DATA), "i"(SEL_CODE), "r"(SEL_TSS)
        : "rax", "memory");
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)c);
}

void exception_dispatch(struct exc_frame *f);
void exception_dispatch(struct exc_frame *f)
{
    if (f->vector == EXC_DB && arch_host_db_is_stale(f->rip))
        return;
    struct pcpu *c = this_pcpu();
    if (f->vector == EXC_NMI) {
        /* Owed to the guest (the exit path turns it into an injected NMI), unless it is
         * another CPU's request to flush (guestmem.c). */
        if (c && !nmi_kick_taken(c))
            __atomic_add_fetch(&c->nmi_host, 1, __ATOMIC_SEQ_CST);
        if (f->rip >= (uint64_t)(uintptr_t)entry_nmi_window_start &&
            f->rip < (uint64_t)(uintptr_t)entry_nmi_window_end)
            f->rip = (uint64_t)(uintptr_t)entry_nmi_window_start;
        return;
    }
    if (f->vector >= 32) {
        lapic_eoi();
        return;
    }
    if (f->vector == EXC_SX && f->error == 1 && c) {
        /* VM_CR.R_INIT (svm-x86svm.c): an INIT reached this CPU while GIF was open in
         * the host (the guest's intercepted INIT stays pending until then). It is this
         * CPU's INIT, taken before the next guest entry. */
        smpg_physical_init(c);
        return;
    }
    if (c && c->fixup_rip) {
        c->fixup_vector = (int)f->vector;
        f->rip = c->fixup_rip;
        c->fixup_rip = 0;
        return;
    }
    printk("xmhf: FATAL: CPU %u: exception %llu in the hypervisor: rip=%016llx err=%llx "
           "cr2=%016lx rsp=%016llx rflags=%llx\n", c ? c->idx : 0u,
           (unsigned long long)f->vector, (unsigned long long)f->rip,
           (unsigned long long)f->error, read_cr2(), (unsigned long long)f->rsp,
           (unsigned long long)f->rflags);
    printk("xmhf: rax=%llx rbx=%llx rcx=%llx rdx=%llx rsi=%llx rdi=%llx\n",
           (unsigned long long)f->rax, (unsigned long long)f->rbx, (unsigned long long)f->rcx,
           (unsigned long long)f->rdx, (unsigned long long)f->rsi, (unsigned long long)f->rdi);
    halt_forever();
}

/* The fixup resumes at the label after the instruction; the compiler barrier keeps the
 * armed RIP and the instruction in order. */
uint64_t rdmsr_safe(struct pcpu *c, uint32_t msr, int *fault)
{
    uint32_t lo = 0, hi = 0;
    c->fixup_vector = -1;
    __asm__ volatile("lea 1f(%%rip), %%rax\n\tmov %%rax, %2\n\t"
                     "rdmsr\n1:" : "+a"(lo), "+d"(hi), "=m"(c->fixup_rip) : "c"(msr) : "memory");
    c->fixup_rip = 0;
    *fault = c->fixup_vector >= 0;
    return ((uint64_t)hi << 32) | lo;
}

/* WRMSR and XSETBV take the same operands (ECX index, EDX:EAX value): one body. */
#define SAFE_WRITE(c, insn, idx, v) ({ \
    (c)->fixup_vector = -1; \
    __asm__ volatile("lea 1f(%%rip), %%r8\n\tmov %%r8, %0\n\t" insn "\n1:" \
                     : "=m"((c)->fixup_rip) \
                     : "c"(idx), "a"((uint32_t)(v)), "d"((uint32_t)((v) >> 32)) : "r8", "memory"); \
    (c)->fixup_rip = 0; \
    (c)->fixup_vector >= 0 ? -1 : 0; })

int wrmsr_safe(struct pcpu *c, uint32_t msr, uint64_t v)
{
    return SAFE_WRITE(c, "wrmsr", msr, v);
}

int xsetbv_safe(struct pcpu *c, uint32_t idx, uint64_t v)
{
    return SAFE_WRITE(c, "xsetbv", idx, v);
}
