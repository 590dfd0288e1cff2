/* The IDT and what happens on an exception or interrupt.
 *
 * Three outcomes, tried in this order:
 *  1. a hook registered for the vector handles it (for NMI/IPI tests; fakehv.c);
 *  2. a fault was expected (fault_expect()): count it, record the first one, resume at
 *     the recovery address;
 *  3. otherwise, inside a test case: describe it in the case's FAIL message and abort
 *     the case (the runner goes on with the next one); outside a test case: report it
 *     and shut down.
 * All 256 vectors have a stub. Every CPU shares the IDT and the hooks; the expectation,
 * the abort state and the nesting depth are per CPU (struct cpu, this_cpu()).
 */
#include "guest.h"

/* SDM Vol. 3A, 6.14.1 "64-Bit Mode IDT": 16-byte interrupt-gate descriptors. */
struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t  ist;
    uint8_t  type_attr;     /* P=1, DPL=0, type 0xE (64-bit interrupt gate) */
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
};
_Static_assert(sizeof(struct idt_gate) == 16, "IDT gate size");

#define GATE_INTR64 0x8e

static struct idt_gate idt[256] __attribute__((aligned(16)));
static trap_hook_t volatile hooks[256];

extern void (*const trap_stub_table[256])(void);   /* trap_entry.S */

void idt_set_gate(unsigned vector, void (*stub)(void))
{
    uint64_t a = (uint64_t)(uintptr_t)stub;

    if (vector >= ARRAY_SIZE(idt))
        return;
    idt[vector] = (struct idt_gate){
        .offset_lo = (uint16_t)a,
        .selector = SEL_CODE64,
        .ist = 0,
        .type_attr = GATE_INTR64,
        .offset_mid = (uint16_t)(a >> 16),
        .offset_hi = (uint32_t)(a >> 32),
    };
}

void idt_set_user(unsigned vector, bool user)
{
    if (vector < ARRAY_SIZE(idt))
        idt[vector].type_attr = user ? GATE_INTR64 | 0x60 : GATE_INTR64;   /* DPL 3 / 0 */
}

void trap_set_hook(unsigned vector, trap_hook_t hook)
{
    if (vector < ARRAY_SIZE(hooks))
        hooks[vector] = hook;
}

/* The BSP fills the IDT once; every CPU (APs too, from ap_main) loads it. */
void trap_init(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

    if (idt[0].type_attr == 0) {
        for (unsigned v = 0; v < ARRAY_SIZE(trap_stub_table); v++)
            idt_set_gate(v, trap_stub_table[v]);
    }
    __asm__ volatile("lidt %0" : : "m"(idtr) : "memory");
}

const char *trap_name(uint64_t vector)
{
    static const char *const names[32] = {
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
        "#DF", "vector 9", "#TS", "#NP", "#SS", "#GP", "#PF", "vector 15",
        "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "vector 22", "vector 23",
        "vector 24", "vector 25", "vector 26", "vector 27", "#HV", "#VC", "#SX",
        "vector 31",
    };
    return vector < 32 ? names[vector] : "interrupt";
}

void fault_expect(const void *recover)
{
    struct cpu *c = this_cpu();

    c->expect.count = 0;
    memset(&c->expect.first, 0, sizeof c->expect.first);
    c->expect.recover = (uintptr_t)recover;
    __atomic_store_n(&c->expect.armed, true, __ATOMIC_SEQ_CST);
}

unsigned fault_expect_end(struct fault_info *first)
{
    struct cpu *c = this_cpu();

    __atomic_store_n(&c->expect.armed, false, __ATOMIC_SEQ_CST);
    if (first)
        *first = c->expect.first;
    return c->expect.count;
}

void test_abort_trampoline(void)
{
    guest_longjmp(&this_cpu()->abort_jb, 1);
}

/* Called by trap_common in trap_entry.S with the saved frame. */
void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f)
{
    struct cpu *c = this_cpu();

    /* A hook may handle the event, or change the frame (even the vector and error
     * code) and let the default handling below go on with it. Hooks run before the
     * nesting check: an NMI may legitimately arrive inside another handler. */
    trap_hook_t hook = f->vector < ARRAY_SIZE(hooks) ? hooks[f->vector] : NULL;
    if (hook && hook(f))
        return;

    if (++c->trap_depth > 1) {
        /* a fault inside this handler: do not try anything clever */
        con_printf("guest: FATAL cpu %u: nested %s (vector %lu) err=0x%lx rip=0x%lx\n",
                   c->idx, trap_name(f->vector), f->vector, f->error, f->rip);
        guest_shutdown();
    }

    struct fault_info fi = { f->vector, f->error, f->rip, 0 };
    if (f->vector == VEC_PF)
        fi.cr2 = read_cr2();

    if (c->expect.armed && c->expect.count < 16) {
        if (c->expect.count++ == 0)
            c->expect.first = fi;
        f->rip = c->expect.recover;
        goto out;
    }

    if (fi.vector >= 32 && fi.vector != VEC_SPURIOUS && c->apic_base)
        apic_write(APIC_EOI, 0);    /* an unexpected interrupt: do not leave it in service */

    if (c->test_running) {
        if (c->abort_msg && fi.vector >= 32)
            snprintf(c->abort_msg, c->abort_msg_size,
                     "unexpected interrupt, vector 0x%lx, at rip=0x%lx", fi.vector, fi.rip);
        else if (c->abort_msg)
            snprintf(c->abort_msg, c->abort_msg_size,
                     "unexpected %s err=0x%lx rip=0x%lx cr2=0x%lx",
                     trap_name(fi.vector), fi.error, fi.rip, fi.cr2);
        c->expect.armed = false;
        f->rip = (uint64_t)(uintptr_t)test_abort_trampoline;
        goto out;
    }

    con_printf("guest: FATAL cpu %u: unexpected %s (vector %lu) err=0x%lx rip=0x%lx "
               "cr2=0x%lx\n", c->idx, trap_name(fi.vector), fi.vector, fi.error, fi.rip,
               fi.cr2);
    guest_shutdown();
out:
    c->trap_depth--;
}
