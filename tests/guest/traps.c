/* The IDT and what happens on an exception.
 *
 * Three outcomes, tried in this order:
 *  1. a hook registered for the vector handles it (for NMI/IPI tests; fakehv.c);
 *  2. a fault was expected (fault_expect()): count it, record the first one, resume at
 *     the recovery address;
 *  3. otherwise, inside a test case: describe it in the case's FAIL message and abort
 *     the case (the runner goes on with the next one); outside a test case: report it
 *     and shut down.
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
static trap_hook_t hooks[256];

extern void (*const trap_stub_table[32])(void);   /* trap_entry.S */

static struct {
    bool armed;
    uintptr_t recover;
    unsigned count;
    struct fault_info first;
} expect;

static unsigned trap_depth;

bool test_running;
char *test_abort_msg;
size_t test_abort_msg_size;
struct jump_buf test_abort_jb;

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

void trap_set_hook(unsigned vector, trap_hook_t hook)
{
    if (vector < ARRAY_SIZE(hooks))
        hooks[vector] = hook;
}

void trap_init(void)
{
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } idtr = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

    for (unsigned v = 0; v < ARRAY_SIZE(trap_stub_table); v++)
        idt_set_gate(v, trap_stub_table[v]);
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
    expect.count = 0;
    memset(&expect.first, 0, sizeof expect.first);
    expect.recover = (uintptr_t)recover;
    __atomic_store_n(&expect.armed, true, __ATOMIC_SEQ_CST);
}

unsigned fault_expect_end(struct fault_info *first)
{
    __atomic_store_n(&expect.armed, false, __ATOMIC_SEQ_CST);
    if (first)
        *first = expect.first;
    return expect.count;
}

/* Called by trap_common in trap_entry.S with the saved frame. */
void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f)
{
    if (++trap_depth > 1) {
        /* a fault inside this handler: do not try anything clever */
        con_printf("guest: FATAL nested %s err=0x%lx rip=0x%lx\n",
                   trap_name(f->vector), f->error, f->rip);
        guest_shutdown();
    }

    /* A hook may handle the event, or change the frame (even the vector and error
     * code) and let the default handling below go on with it. */
    if (f->vector < ARRAY_SIZE(hooks) && hooks[f->vector] && hooks[f->vector](f))
        goto out;

    struct fault_info fi = { f->vector, f->error, f->rip, 0 };
    if (f->vector == VEC_PF)
        fi.cr2 = read_cr2();

    if (expect.armed && expect.count < 16) {
        if (expect.count++ == 0)
            expect.first = fi;
        f->rip = expect.recover;
        goto out;
    }

    if (test_running) {
        if (test_abort_msg)
            snprintf(test_abort_msg, test_abort_msg_size,
                     "unexpected %s err=0x%lx rip=0x%lx cr2=0x%lx",
                     trap_name(fi.vector), fi.error, fi.rip, fi.cr2);
        expect.armed = false;
        f->rip = (uint64_t)(uintptr_t)test_abort_trampoline;
        goto out;
    }

    con_printf("guest: FATAL unexpected %s err=0x%lx rip=0x%lx cr2=0x%lx\n",
               trap_name(fi.vector), fi.error, fi.rip, fi.cr2);
    guest_shutdown();
out:
    trap_depth--;
}
