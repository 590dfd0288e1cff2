/* Per-CPU data, AP start-up with INIT-SIPI-SIPI, and handing work to other CPUs.
 *
 * Every CPU's struct cpu is reached through its GS base (this_cpu()). APs are started
 * one at a time by smp_start_ap() (from the BSP or from another AP), run ap_main() and
 * then poll their mailbox: cpu_post() hands over a function, which the AP runs like a
 * test case (an unexpected exception aborts only that piece of work), and cpu_wait()
 * collects the verdict with a timeout. The APs poll rather than halt, so that a broken
 * interrupt path fails only the cases about interrupts; each idle poll bumps the CPU's
 * heartbeat (ap_restart watches it). Nothing here waits unbounded.
 */
#include "guest.h"

#define MSR_GS_BASE        0xc0000101u
#define AP_STACK_SIZE      8192u
#define TIMEOUT_AP_ONLINE  (50000000ull * tick_scale)  /* ticks from the last SIPI */

struct cpu cpus[MAX_CPUS];
unsigned ncpus = 1;
unsigned madt_total = 1;
bool madt_ok;
bool cpu_is_amd;
char madt_why[96];

volatile uint32_t ap_report_count;
volatile uint32_t ap_reports[64];

/* Stack tops by APIC ID, set by the starter before the SIPI; read by ap_boot.S. */
uint64_t ap_stack_by_id[256];

static uint8_t ap_stacks[MAX_CPUS - 1][AP_STACK_SIZE] __attribute__((aligned(16)));

extern const uint8_t ap_tramp_start[], ap_tramp_end[];

void ap_main(uint32_t apic_id) __attribute__((noreturn));

void percpu_setup(struct cpu *c)
{
    c->self = c;
    wrmsr(MSR_GS_BASE, (uint64_t)(uintptr_t)c);
    c->apic_base = rdmsr(MSR_APIC_BASE) & APIC_BASE_ADDR;
}

void percpu_init_bsp(void)
{
    cpus[0].idx = 0;
    cpus[0].stack_top = GUEST_STACK_TOP;
    percpu_setup(&cpus[0]);
    cpus[0].state = CPU_ONLINE;
}

/* NMIs are counted per CPU at all times (nmi_storm works with the counts); an NMI
 * that arrives late must not end the run. */
bool nmi_count_hook(struct trap_frame *f)
{
    (void)f;
    __atomic_fetch_add(&this_cpu()->nmi_count, 1, __ATOMIC_SEQ_CST);
    return true;
}

void smp_init(void)
{
    uint32_t ids[MAX_CPUS];

    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    cpu_is_amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u; /* AuthenticAMD */

    trap_set_hook(VEC_NMI, nmi_count_hook);
    tick_scale_init();

    cpus[0].apic_id = apic_read(APIC_ID) >> 24;
    memcpy((void *)(uintptr_t)AP_TRAMPOLINE, ap_tramp_start,
           (size_t)(ap_tramp_end - ap_tramp_start));

    int n = madt_cpu_ids(ids, ARRAY_SIZE(ids), madt_why, sizeof madt_why);
    if (n < 0)
        return;                     /* madt_ok stays false; ncpus 1 */
    bool bsp_seen = false;
    unsigned k = 1;
    madt_total = (unsigned)n;
    if (n > (int)ARRAY_SIZE(ids))
        n = (int)ARRAY_SIZE(ids);
    for (int i = 0; i < n; i++) {
        if (ids[i] == cpus[0].apic_id) {
            bsp_seen = true;
            continue;
        }
        if (k == MAX_CPUS)
            break;
        struct cpu *c = &cpus[k];
        c->idx = k;
        c->apic_id = ids[i];
        c->stack_top = (uint64_t)(uintptr_t)ap_stacks[k - 1] + AP_STACK_SIZE;
        c->state = CPU_OFFLINE;
        k++;
    }
    if (!bsp_seen && madt_total > ARRAY_SIZE(ids)) {
        bsp_seen = true;            /* listed beyond the first MAX_CPUS: not checked */
    }
    if (!bsp_seen) {
        snprintf(madt_why, sizeof madt_why, "the BSP's APIC ID %u is not in the MADT",
                 cpus[0].apic_id);
        return;
    }
    ncpus = k;
    madt_ok = true;
}

unsigned cpus_online(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ncpus; i++)
        n += cpus[i].state == CPU_ONLINE;
    return n;
}

/* SDM Vol. 3A, 9.4.4.1 "Typical BSP Initialization Sequence": INIT (level, assert), 10 ms,
 * STARTUP, 200 us, STARTUP. The second STARTUP is ignored by an AP that already runs. */
bool smp_start_ap(struct cpu *t, char *why, size_t why_size)
{
    ap_stack_by_id[t->apic_id & 0xff] = t->stack_top;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!apic_send_ipi(t->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL)) {
        snprintf(why, why_size, "INIT to APIC ID %u: delivery status stayed busy",
                 t->apic_id);
        return false;
    }
    delay_ticks(TICKS_10MS);
    return smp_sipi_wait(t, why, why_size);
}

/* The second half of smp_start_ap(): STARTUP, 200 us, STARTUP, then wait for t. */
bool smp_sipi_wait(struct cpu *t, char *why, size_t why_size)
{
    return smp_sipi_wait_via(t, apic_send_ipi, why, why_size);
}

/* The same with the IPIs (the STARTUPs, and the INIT that parks t on a timeout) sent
 * by `send`: x2apic_send_ipi() from a CPU in x2APIC mode. */
bool smp_sipi_wait_via(struct cpu *t, ipi_send_fn send, char *why, size_t why_size)
{
    const uint32_t sipi = ICR_STARTUP | (AP_TRAMPOLINE >> 12);

    ap_stack_by_id[t->apic_id & 0xff] = t->stack_top;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++) {
        if (!send(t->apic_id, sipi)) {
            snprintf(why, why_size, "STARTUP %d to APIC ID %u: delivery status stayed busy",
                     i + 1, t->apic_id);
            return false;
        }
        if (i == 0)
            delay_ticks(TICKS_200US);
    }
    uint64_t t0 = rdtsc();
    while (__atomic_load_n(&t->state, __ATOMIC_ACQUIRE) != CPU_ONLINE) {
        if (rdtsc() - t0 > TIMEOUT_AP_ONLINE) {
            /* Park it (INIT: wait-for-SIPI) so that an AP running astray stops, and
             * never use it again. */
            send(t->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
            t->state = CPU_LOST;
            snprintf(why, why_size, "APIC ID %u did not come online within %llu ticks "
                     "of the second STARTUP (INIT sent to park it)", t->apic_id,
                     TIMEOUT_AP_ONLINE);
            return false;
        }
        cpu_relax();
    }
    return true;
}

void apic_snapshot(struct apic_snap *s)
{
    s->svr = apic_read(APIC_SVR);
    s->tpr = apic_read(APIC_TPR);
    s->lvt_timer = apic_read(0x320);
    s->timer_init = apic_read(0x380);
    s->lint0 = apic_read(0x350);
    s->ldr = apic_read(0x0d0);
    s->dfr = apic_read(0x0e0);
    for (unsigned i = 0; i < 8; i++) {
        s->irr[i] = apic_read(0x200 + 0x10 * i);
        s->isr[i] = apic_read(0x100 + 0x10 * i);
    }
}

/* Called by ap_boot.S on the AP's own stack. */
void ap_main(uint32_t apic_id)
{
    struct cpu *c = NULL;

    if (apic_id == cpus[0].apic_id && ncpus > 0)
        bsp_resumed();              /* an INIT sent the BSP through the reset vector */
    for (unsigned i = 1; i < ncpus; i++) {
        if (cpus[i].apic_id == apic_id)
            c = &cpus[i];
    }
    if (!c) {
        for (;;)
            __asm__ volatile("cli; hlt");
    }
    percpu_setup(c);
    c->trap_depth = 0;
    c->test_running = false;
    trap_init();
    apic_snapshot(&c->apic_at_start);
    apic_sw_enable();

    /* The report: this CPU's APIC ID as its own APIC ID register gives it. */
    uint32_t id = apic_read(APIC_ID) >> 24;
    uint32_t slot = __atomic_fetch_add(&ap_report_count, 1, __ATOMIC_SEQ_CST);
    if (slot < ARRAY_SIZE(ap_reports))
        ap_reports[slot] = id;
    c->done_seq = c->work_seq;
    /* Online, unless the starter gave up on this CPU meanwhile (CPU_LOST): then stop. */
    uint32_t expected = CPU_OFFLINE;
    if (!__atomic_compare_exchange_n(&c->state, &expected, CPU_ONLINE, false,
                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        for (;;)
            __asm__ volatile("cli; hlt");
    }

    for (;;) {
        uint32_t seq = __atomic_load_n(&c->work_seq, __ATOMIC_ACQUIRE);
        if (seq == c->done_seq) {
            __atomic_store_n(&c->heartbeat, c->heartbeat + 1, __ATOMIC_RELAXED);
            cpu_relax();
            continue;
        }
        const struct guest_test t = { "work", c->work };
        c->work_ok = run_case(&t, &c->work_result);
        __asm__ volatile("cli");    /* whatever the work left */
        __atomic_store_n(&c->done_seq, seq, __ATOMIC_RELEASE);
    }
}

bool cpu_post(struct cpu *c, bool (*fn)(struct test_result *r))
{
    if (c->state != CPU_ONLINE)
        return false;
    c->work = fn;
    __atomic_store_n(&c->work_seq, c->work_seq + 1, __ATOMIC_RELEASE);
    return true;
}

bool cpu_wait(struct cpu *c, uint64_t timeout, struct test_result *r)
{
    uint64_t t0 = rdtsc();

    while (__atomic_load_n(&c->done_seq, __ATOMIC_ACQUIRE) != c->work_seq) {
        if (rdtsc() - t0 > timeout) {
            c->state = CPU_LOST;
            snprintf(r->msg, sizeof r->msg, "no answer within %lu ticks (the CPU is no "
                     "longer used)", timeout);
            return false;
        }
        cpu_relax();
    }
    *r = c->work_result;
    return c->work_ok;
}

bool run_on(struct cpu *c, bool (*fn)(struct test_result *r), uint64_t timeout,
            struct test_result *r)
{
    if (c == &cpus[0]) {
        const struct guest_test t = { "work", fn };
        return run_case(&t, r);
    }
    if (!cpu_post(c, fn))
        return test_fail(r, "not online");
    return cpu_wait(c, timeout, r);
}

bool run_on_all(bool (*fn)(struct test_result *r), uint64_t timeout, struct test_result *r)
{
    bool posted[MAX_CPUS] = { false };
    struct test_result sr;
    bool ok = true;

    for (unsigned i = 1; i < ncpus; i++)
        posted[i] = cpu_post(&cpus[i], fn);
    const struct guest_test t = { "work", fn };
    if (!run_case(&t, &sr)) {
        ok = false;
        snprintf(r->msg, sizeof r->msg, "cpu 0: %s", sr.msg);
    } else {
        memcpy(r->msg, sr.msg, sizeof r->msg);     /* the BSP's detail, if any */
    }
    for (unsigned i = 1; i < ncpus; i++) {
        if (posted[i] && !cpu_wait(&cpus[i], timeout, &sr) && ok) {
            ok = false;
            snprintf(r->msg, sizeof r->msg, "cpu %u (APIC ID %u): %s", i, cpus[i].apic_id,
                     sr.msg);
        }
    }
    unsigned on = cpus_online();
    if (ok && on < ncpus)
        return test_fail(r, "passed on the %u online CPUs, but the MADT lists %u", on,
                         ncpus);
    return ok;
}
