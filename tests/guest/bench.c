/* The benchmark build (make bench: build/bench/guest.bin, -DGUEST_BENCH).
 *
 * On the BSP only (no AP is started), for BENCH_N iterations each, it measures with
 * RDTSC the ticks per access of:
 *   empty_loop  the loop alone, for reference;
 *   xapic_read  a read of the APIC ID register;
 *   eoi_write   a write of 0 to EOI (nothing in service: no effect);
 *   icr_write   a write of ICR low: a fixed IPI to self (destination shorthand "self",
 *               vector 0xf1) with interrupts disabled, so the first one sets the IRR
 *               bit and the rest find it set; the one interrupt is taken and EOId
 *               after the loop. No ICR high write and no delivery-status poll in the
 *               timed loop: one access per iteration.
 * and the VM exits per access from the STATS hypercall (total exits on this CPU before
 * and after, less the second VMCALL's own exit, over BENCH_N; 0 natively).
 * On Bochs with `clock: sync=none` a TSC tick is one instruction, so the figures are
 * deterministic path lengths. Output: one "bench: NAME ticks/access=T exits/access=E.EE"
 * line per access, then "bench: done".
 */
#include "guest.h"

#define BENCH_N   1000u
#define VEC_BENCH 0xf1u

enum bench_op { OP_EMPTY, OP_READ, OP_EOI, OP_ICR };

static bool bench_irq_hook(struct trap_frame *f)
{
    (void)f;
    apic_write(APIC_EOI, 0);
    return true;
}

static uint64_t total_exits(bool hv)
{
    uint64_t v = 0;
    if (hv && hv_stat(ST_EXITS_TOTAL, &v) != HV_STAT_OK)
        v = 0;
    return v;
}

/* Kept out of line so that each loop is the same code natively and under the
 * hypervisor; `p` is the register's address. */
static __attribute__((noinline)) uint64_t timed_loop(enum bench_op op, volatile uint32_t *p,
                                                     uint32_t val)
{
    uint64_t t0 = rdtsc();
    switch (op) {
    case OP_EMPTY:
        for (unsigned i = 0; i < BENCH_N; i++)
            __asm__ volatile("" ::: "memory");
        break;
    case OP_READ:
        for (unsigned i = 0; i < BENCH_N; i++)
            (void)*p;
        break;
    default:
        for (unsigned i = 0; i < BENCH_N; i++)
            *p = val;
        break;
    }
    return rdtsc() - t0;
}

static void bench_one(const char *name, enum bench_op op, uint32_t reg, uint32_t val,
                      bool hv)
{
    volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)(apic_base() + reg);

    uint64_t x0 = total_exits(hv);
    uint64_t ticks = timed_loop(op, p, val);
    uint64_t x1 = total_exits(hv);
    uint64_t exits = x1 > x0 ? x1 - x0 - 1 : 0;     /* less the second VMCALL */
    uint64_t per100 = exits * 100 / BENCH_N;
    con_printf("bench: %s ticks/access=%lu exits/access=%lu.%02lu\n", name,
               ticks / BENCH_N, per100 / 100, per100 % 100);
}

void bench_main(void)
{
    bool hv = hv_present();

    con_printf("bench: BSP only, %u accesses each, APIC at 0x%lx, %s\n", BENCH_N,
               apic_base(), hv ? "hypervisor present" : "native (no hypervisor)");
    trap_set_hook(VEC_BENCH, bench_irq_hook);
    bench_one("empty_loop", OP_EMPTY, APIC_ID, 0, hv);
    bench_one("xapic_read", OP_READ, APIC_ID, 0, hv);
    bench_one("eoi_write", OP_EOI, APIC_EOI, 0, hv);
    bench_one("icr_write", OP_ICR, APIC_ICR_LO, ICR_SELF | ICR_FIXED | VEC_BENCH, hv);
    __asm__ volatile("sti; nop; nop; cli" ::: "memory");   /* the pending self-IPI */
    con_printf("bench: done\n");
    guest_shutdown();
}
