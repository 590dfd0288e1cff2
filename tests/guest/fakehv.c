/* A stand-in for the hypervisor, for checking the test cases' own logic on an emulator
 * without it (make bochs-fakehv). NEVER part of the real guest.bin.
 *
 * It answers VMCALL from the #UD it raises outside VMX non-root operation (HELLO,
 * RUNTIME_INFO, unknown functions as the contract says; STATS stays a #UD, so the cases
 * take it for native), and plays a protected region
 * FAKE_BASE..+FAKE_SIZE by unmapping that 2 MiB page and turning the #PF of an access
 * into #GP(0) at the same RIP. It also edits the E820 map the real-mode entry read, as
 * the hypervisor would answer INT 15h: the region becomes two reserved entries (two, so
 * that e820_hides_hypervisor has to walk across entries); and the answers to the older
 * size calls (E801h, 88h) with it: RAM from 1 MiB now runs up to FAKE_BASE. */
#include "guest.h"

#define FAKE_BASE 0x07c00000ull     /* inside Bochs' 128 MiB, 2 MiB aligned */
#define FAKE_SIZE 0x00200000ull

static uint64_t hello_calls;

static bool fake_vmcall(struct trap_frame *f)
{
    const uint8_t *insn = (const uint8_t *)(uintptr_t)f->rip;

    if (insn[0] != 0x0f || insn[1] != 0x01 || insn[2] != 0xc1)
        return false;                   /* a real #UD */
    switch (f->rax) {
    case HC_HELLO:
        f->rax = 0;
        f->rbx = HC_HELLO_MAGIC;
        f->rcx += 1;
        f->rdx = ++hello_calls;
        break;
    case HC_RUNTIME_INFO:
        f->rax = 0;
        f->rbx = FAKE_BASE;
        f->rcx = FAKE_SIZE;
        f->rdx = ncpus;                 /* the MADT's count, as the hypervisor's own */
        break;
    case HC_STATS:
        return false;                   /* no exit counts to fake: behave as native */
    default:
        f->rax = HC_STATUS_UNKNOWN;
        break;
    }
    f->rip += 3;
    return true;
}

static bool fake_protect(struct trap_frame *f)
{
    uint64_t cr2 = read_cr2();

    if (cr2 >= FAKE_BASE && cr2 < FAKE_BASE + FAKE_SIZE) {
        f->vector = VEC_GP;
        f->error = 0;
    }
    return false;                       /* default handling of the (new) vector */
}

/* Cuts [FAKE_BASE, FAKE_BASE + FAKE_SIZE) out of the usable entry that holds it. */
static void fake_edit_e820(void)
{
    const uint64_t mid = FAKE_BASE + FAKE_SIZE / 2, end = FAKE_BASE + FAKE_SIZE;

    if (e820_count + 3 > E820_MAX_SEEN)
        return;
    for (uint32_t i = 0; i < e820_count; i++) {
        struct e820_slot *e = &e820_map[i];
        if (e->type != E820_RAM || e->base > FAKE_BASE || e->base + e->length < end)
            continue;
        uint64_t e_end = e->base + e->length;
        uint32_t n = e820_count;
        e->length = FAKE_BASE - e->base;                     /* may become 0: ignored */
        e820_map[n] = (struct e820_slot){ FAKE_BASE, mid - FAKE_BASE, 2, 1 };
        e820_map[n + 1] = (struct e820_slot){ mid, end - mid, 4, 1 };
        e820_map[n + 2] = (struct e820_slot){ end, e_end - end, E820_RAM, 1 };
        for (uint32_t k = n; k < n + 3; k++)
            e820_len[k] = 20;
        e820_count = n + 3;
        if (e->base <= 0x100000) {      /* the run from 1 MiB now ends at FAKE_BASE */
            memsize_e801[0] = memsize_e801[2] = (0x1000000 - 0x100000) >> 10;
            memsize_e801[1] = memsize_e801[3] = (FAKE_BASE - 0x1000000) >> 16;
            memsize_88_ax = 0xffff;     /* FAKE_BASE - 1 MiB > 0xffff KiB */
        }
        return;
    }
}

void fakehv_install(void)
{
    uint64_t *pd = (uint64_t *)(uintptr_t)(GUEST_PT_BASE + 0x2000);

    pd[FAKE_BASE >> 21] = 0;
    __asm__ volatile("invlpg (%0)" : : "r"((uintptr_t)FAKE_BASE) : "memory");
    trap_set_hook(VEC_UD, fake_vmcall);
    trap_set_hook(VEC_PF, fake_protect);
    fake_edit_e820();
}
