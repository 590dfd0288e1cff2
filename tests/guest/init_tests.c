/* INIT and STARTUP as the SDM defines them (Vol. 3A 9.1 "Initialization Overview",
 * table 9-1, 9.4 "Multiple-Processor Initialization", 11.6.1 delivery modes INIT and
 * Start-Up, 11.4.7.3 "Local APIC State After an INIT Reset"), and the guest's debug
 * state across VM exits. Each case passes natively too (the hypervisor-only checks say
 * "native: no exit counts"); see README.md. They run after the other SMP cases and use
 * AP 1 (and the last AP); a CPU that fails a check is parked with INIT and not used again.
 */
#include "guest.h"

#define TIMEOUT_WORK     (1000000000ull * tick_scale)
#define TIMEOUT_WAIT     (100000000ull * tick_scale)
#define DR6_BS           (1ull << 14)
#define DR6_B0           (1ull << 0)
#define CR0_CD           (1u << 30)
#define CR0_NW           (1u << 29)
#define CR4_OSXSAVE      (1ull << 18)
#define VEC_STALE        0x51u          /* init_state: a timer interrupt left in IRR */
#define IOAPIC_BASE      0xfec00000ull
#define ST_PHYS_INIT     0x206ull

static const char native_note[] = "(native: no exit counts)";

static bool wait_flag(volatile uint32_t *p, uint64_t timeout)
{
    uint64_t t0 = rdtsc();
    while (!__atomic_load_n(p, __ATOMIC_ACQUIRE)) {
        if (rdtsc() - t0 > timeout)
            return false;
        cpu_relax();
    }
    return true;
}

static volatile uint16_t *tramp16(const uint8_t *sym) { return tramp_ptr(sym); }
static volatile uint32_t *tramp32(const uint8_t *sym) { return tramp_ptr(sym); }

static uint32_t reports_of(uint32_t apic_id, uint32_t from)
{
    uint32_t n = 0, end = __atomic_load_n(&ap_report_count, __ATOMIC_ACQUIRE);
    for (uint32_t i = from; i < end && i < ARRAY_SIZE(ap_reports); i++)
        n += ap_reports[i] == apic_id;
    return n;
}

/* Parks ap for good (INIT: wait-for-SIPI) after a failed check. */
static bool park(struct cpu *ap, struct test_result *r)
{
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    ap->state = CPU_LOST;
    (void)r;
    return false;
}

/* A mark taken before an AP is sent INIT: its heartbeat, reports and trampoline
 * entries, to see afterwards that it stopped and how it started again. */
struct mark { uint64_t heartbeat; uint32_t reports; uint16_t entries; };

static void mark_take(const struct cpu *ap, struct mark *m)
{
    m->heartbeat = ap->heartbeat;
    m->reports = __atomic_load_n(&ap_report_count, __ATOMIC_ACQUIRE);
    m->entries = *tramp16(ap_tramp_entries);
}

/* A CPU shows it runs by its heartbeat: the idle loop of ap_main bumps it, and so do the
 * jobs below while they wait to be reset. It stopped when the heartbeat stands still for
 * a whole window (100 ms at most on QEMU, whose TSC runs in real time and whose vCPUs
 * share two busy host cores), looked for within TIMEOUT_WAIT. */
#define STILL_WINDOW     (10 * TICKS_10MS)

static void spin_alive(struct cpu *c, uint64_t ticks)
{
    for (uint64_t t0 = rdtsc(); rdtsc() - t0 < ticks;) {
        __atomic_store_n(&c->heartbeat, c->heartbeat + 1, __ATOMIC_RELAXED);
        cpu_relax();
    }
}

static bool heartbeat_still(const struct cpu *ap)
{
    uint64_t t0 = rdtsc(), h = ap->heartbeat, since = t0;
    while (rdtsc() - t0 < TIMEOUT_WAIT) {
        if (ap->heartbeat != h) {
            h = ap->heartbeat;
            since = rdtsc();
        } else if (rdtsc() - since > STILL_WINDOW) {
            return true;
        }
        cpu_relax();
    }
    return false;
}

/* The AP stopped: its heartbeat stands still and it did not start again by itself. */
static bool stopped(const struct cpu *ap, const struct mark *m, const char *what,
                    struct test_result *r)
{
    if (!heartbeat_still(ap))
        return test_fail(r, "%s: APIC ID %u still runs after the INIT (heartbeat %lu)", what,
                         ap->apic_id, ap->heartbeat);
    if (reports_of(ap->apic_id, m->reports) || *tramp16(ap_tramp_entries) != m->entries)
        return test_fail(r, "%s: APIC ID %u started again without a STARTUP", what,
                         ap->apic_id);
    return true;
}

static volatile uint32_t job_slot;

static bool job_id(struct test_result *r)
{
    __atomic_store_n(&job_slot, apic_read(APIC_ID) >> 24, __ATOMIC_RELEASE);
    return test_pass(r, "ran");
}

/* STARTUP x2, then it must start exactly once, report once and run a job. */
static bool start_again(struct cpu *ap, const struct mark *m, const char *what,
                        struct test_result *r)
{
    if (!smp_sipi_wait(ap, r->msg, sizeof r->msg))
        return false;
    delay_ticks(TICKS_10MS);
    uint16_t nent = (uint16_t)(*tramp16(ap_tramp_entries) - m->entries);
    uint32_t nrep = reports_of(ap->apic_id, m->reports);
    if (nent != 1 || nrep != 1) {
        test_fail(r, "%s: after STARTUP x2 the trampoline was entered %u times and APIC "
                  "ID %u reported %u times, expected once each", what, nent, ap->apic_id,
                  nrep);
        return park(ap, r);
    }
    struct test_result sr;
    job_slot = ~0u;
    if (!run_on(ap, job_id, TIMEOUT_WORK, &sr) || job_slot != ap->apic_id) {
        test_fail(r, "%s: a job on the restarted APIC ID %u: %s", what, ap->apic_id,
                  sr.msg);
        return park(ap, r);
    }
    return true;
}

/* ---- init_self --------------------------------------------------------------------- */
static volatile uint32_t self_survived;

/* INIT with the "self" shorthand: table 11-3 lists it as invalid. The CPU goes on. */
static bool self_shorthand_job(struct test_result *r)
{
    if (!apic_send_ipi(0, ICR_INIT | ICR_ASSERT | ICR_LEVEL | ICR_SELF))
        return test_fail(r, "ICR stayed busy");
    delay_ticks(TICKS_10MS / 2);
    return test_pass(r, "still running");
}

/* INIT to its own APIC ID: the CPU is reset like any other target. */
static bool self_id_job(struct test_result *r)
{
    struct cpu *c = this_cpu();
    c->state = CPU_OFFLINE;             /* it goes; ap_main sets it online again */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    apic_send_ipi(c->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    spin_alive(c, 2 * TIMEOUT_WAIT);
    __atomic_store_n(&self_survived, 1, __ATOMIC_RELEASE);
    return test_fail(r, "still running 10 ms after an INIT to its own APIC ID");
}

bool t_init_self(struct test_result *r)
{
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    struct cpu *ap = &cpus[1];
    struct test_result sr;
    struct mark m;
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    if (!run_on(ap, self_shorthand_job, TIMEOUT_WORK, &sr))
        return test_fail(r, "INIT by the self shorthand: %s", sr.msg);
    mark_take(ap, &m);
    self_survived = 0;
    if (!cpu_post(ap, self_id_job))
        return test_fail(r, "AP 1 is not online");
    if (!stopped(ap, &m, "INIT to its own ID", r))
        return park(ap, r);
    if (self_survived)
        return test_fail(r, "AP 1 ran on after an INIT to its own APIC ID"), park(ap, r);
    if (!start_again(ap, &m, "INIT to its own ID", r))
        return false;
    return test_pass(r, "shorthand self: ignored (table 11-3: invalid); own APIC ID %u: "
                     "stopped, one start after STARTUP x2", ap->apic_id);
}

/* ---- init_state -------------------------------------------------------------------- */
static volatile uint32_t state_ready;
static uint64_t cr0_before;
static bool have_xsave;

static inline void xsetbv0(uint64_t v)
{
    __asm__ volatile("xsetbv" :: "c"(0), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* On AP 1, IF = 0: things INIT must reset. CR0.CD (kept by INIT), DR0/DR7 (an execute
 * breakpoint on a page nobody runs), XCR0 = 3, TPR 0x20, and the APIC timer's interrupt
 * left pending in IRR (no EOI, IF = 0). Then it waits for the INIT. */
static bool state_job(struct test_result *r)
{
    struct cpu *c = this_cpu();
    __asm__ volatile("cli");
    __asm__ volatile("mov %0, %%cr0" :: "r"(read_cr0() | CR0_CD) : "memory");
    cr0_before = read_cr0();
    __asm__ volatile("mov %0, %%dr0; mov %1, %%dr7" :: "r"(0x12340ull), "r"(0x401ull));
    if (have_xsave) {
        __asm__ volatile("mov %0, %%cr4" :: "r"(read_cr4() | CR4_OSXSAVE));
        xsetbv0(3);
    }
    apic_write(0x3e0, 0xb);                     /* timer divide by 1 */
    apic_write(0x320, VEC_STALE);               /* one-shot, unmasked */
    apic_write(0x380, 50);
    const uint32_t irr_reg = 0x200 + 0x10 * (VEC_STALE / 32), bit = 1u << (VEC_STALE % 32);
    uint64_t t0 = rdtsc();
    while (!(apic_read(irr_reg) & bit)) {
        if (rdtsc() - t0 > TIMEOUT_WAIT)
            return test_fail(r, "the timer interrupt never reached IRR");
    }
    apic_write(APIC_TPR, 0x20);
    c->state = CPU_OFFLINE;
    __atomic_store_n(&state_ready, 1, __ATOMIC_RELEASE);
    spin_alive(c, TIMEOUT_WORK);
    return test_fail(r, "no INIT came");
}

static uint64_t got_xcr0;

static bool state_after_job(struct test_result *r)
{
    got_xcr0 = 0;
    if (have_xsave) {
        __asm__ volatile("mov %0, %%cr4" :: "r"(read_cr4() | CR4_OSXSAVE));
        got_xcr0 = xgetbv0();
    }
    __asm__ volatile("mov %0, %%cr0" :: "r"(read_cr0() & ~(uint64_t)(CR0_CD | CR0_NW))
                     : "memory");
    return test_pass(r, "ok");
}

bool t_init_state(struct test_result *r)
{
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    struct cpu *ap = &cpus[1];
    struct test_result sr;
    struct mark m;
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    const uint32_t signature = a;
    have_xsave = c & (1u << 26);
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    state_ready = 0;
    *tramp32(ap_tramp_seen_edx) = 0;
    *tramp32(ap_tramp_seen_dr7) = 0;
    if (!cpu_post(ap, state_job) || !wait_flag(&state_ready, TIMEOUT_WAIT)) {
        (void)cpu_wait(ap, TIMEOUT_WORK, &sr);
        return test_fail(r, "AP 1 did not get ready: %s", sr.msg);
    }
    mark_take(ap, &m);
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    if (!stopped(ap, &m, "INIT", r) || !start_again(ap, &m, "INIT", r))
        return ap->state == CPU_LOST ? false : park(ap, r);
    if (!run_on(ap, state_after_job, TIMEOUT_WORK, &sr))
        return test_fail(r, "after the restart: %s", sr.msg);

    const uint32_t edx = *tramp32(ap_tramp_seen_edx), cr0 = *tramp32(ap_tramp_seen_cr0);
    const uint16_t idt_limit = *tramp16(ap_tramp_seen_idtr);
    const uint32_t dr0 = *tramp32(ap_tramp_seen_dr0), dr6 = *tramp32(ap_tramp_seen_dr6);
    const uint32_t dr7 = *tramp32(ap_tramp_seen_dr7);
    const struct apic_snap *s = &ap->apic_at_start;
    /* Bochs itself sets EDX 0 and CR0 60000010h at an INIT and keeps XCR0 (not table
     * 9-1's values): natively those three are not checked. */
    const bool hv = hv_present();
    if (hv && edx != signature)
        return test_fail(r, "EDX 0x%x at the restart, expected the signature 0x%x", edx,
                         signature);
    if ((cr0 & 0x80000001u) ||
        (hv && (cr0 & (CR0_CD | CR0_NW)) != (cr0_before & (CR0_CD | CR0_NW))))
        return test_fail(r, "CR0 0x%x at the restart (0x%lx before the INIT): expected real "
                         "mode, no paging, CD and NW kept", cr0, cr0_before);
    if (idt_limit != 0xffff)
        return test_fail(r, "IDTR limit 0x%x at the restart, expected 0xffff", idt_limit);
    if (dr0 != 0 || dr6 != 0xffff0ff0u || dr7 != 0x400)
        return test_fail(r, "DR0 0x%x DR6 0x%x DR7 0x%x at the restart, expected 0, "
                         "0xffff0ff0, 0x400", dr0, dr6, dr7);
    if (hv && have_xsave && got_xcr0 != 1)
        return test_fail(r, "XCR0 0x%lx after the restart, expected 1", got_xcr0);
    for (unsigned i = 0; i < 8; i++) {
        if (s->irr[i] || s->isr[i])
            return test_fail(r, "APIC after INIT: IRR[%u] 0x%x ISR[%u] 0x%x, expected "
                             "empty (the timer interrupt 0x%x was pending)", i, s->irr[i],
                             i, s->isr[i], VEC_STALE);
    }
    if ((s->svr & 0x1ff) != 0xff || s->tpr != 0 || !(s->lvt_timer & 0x10000) ||
        !(s->lint0 & 0x10000) || s->timer_init != 0 || s->ldr != 0 || s->dfr != 0xffffffffu)
        return test_fail(r, "APIC after INIT: SVR 0x%x TPR 0x%x LVT timer 0x%x LINT0 0x%x "
                         "timer count %u LDR 0x%x DFR 0x%x; expected SVR 0xff, TPR 0, "
                         "masked LVTs, count 0, LDR 0, DFR all ones", s->svr, s->tpr,
                         s->lvt_timer, s->lint0, s->timer_init, s->ldr, s->dfr);
    return test_pass(r, "EDX 0x%x, CR0 0x%x (CD kept), IDTR limit 0xffff, DR6/DR7 reset%s; "
                     "APIC: IRR/ISR empty, LVTs masked, timer stopped, SVR 0xff", edx, cr0,
                     have_xsave ? ", XCR0 1" : "");
}

/* ---- init_starting ----------------------------------------------------------------- */
/* INIT right behind a STARTUP (the CPU may just be starting), then a normal start and
 * one more INIT/STARTUP round: it must come up exactly once each time and stay up (no
 * stale INIT throws it back, no STARTUP is lost). */
bool t_init_starting(struct test_result *r)
{
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    struct cpu *ap = &cpus[1];
    struct mark m;
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    mark_take(ap, &m);
    ap->state = CPU_OFFLINE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    delay_ticks(TICKS_10MS);
    apic_send_ipi(ap->apic_id, ICR_STARTUP | (AP_TRAMPOLINE >> 12));
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    /* apic=zeroexit on Bochs takes an INIT that reaches a CPU before its first guest
     * instruction after a STARTUP as the one sent before that STARTUP (README "APIC
     * modes"): the AP may run on. It is then sent one more INIT, which must stop it. */
    bool ran_on = !heartbeat_still(ap);
    if (ran_on) {
        ap->state = CPU_OFFLINE;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
        if (!heartbeat_still(ap))
            return test_fail(r, "AP 1 runs on after two INITs"), park(ap, r);
    }
    const uint16_t e1 = *tramp16(ap_tramp_entries);
    ap->state = CPU_OFFLINE;            /* it may have come online in between */
    struct mark m2 = { ap->heartbeat, __atomic_load_n(&ap_report_count, __ATOMIC_ACQUIRE), e1 };
    if (!start_again(ap, &m2, "STARTUP after INIT-STARTUP-INIT", r))
        return false;
    /* One more round: a stale request would stop it again right after its start. */
    struct mark m3;
    mark_take(ap, &m3);
    ap->state = CPU_OFFLINE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    if (!stopped(ap, &m3, "second INIT", r))
        return park(ap, r);
    if (!start_again(ap, &m3, "second round", r))
        return false;
    delay_ticks(TICKS_10MS);
    if (!run_on(ap, job_id, TIMEOUT_WORK, r))
        return test_fail(r, "AP 1 stopped after its start: %s", r->msg), park(ap, r);
    return test_pass(r, "INIT behind a STARTUP: %u early start(s)%s; then one start per "
                     "STARTUP x2, twice, and it stays up", (uint16_t)(e1 - m.entries),
                     ran_on ? " (it ran on: INIT taken as before the STARTUP)" : "");
}

/* ---- init_cross -------------------------------------------------------------------- */
/* Two APs send INIT to each other at the same moment. Whichever INIT lands first may
 * keep the other CPU from ever sending its own (as on the hardware), so one of them may
 * run on; at least one stops, none is stuck, and every stopped one starts exactly once
 * again on STARTUP x2. */
static volatile uint32_t cross_go;
static struct cpu *cross_peer[2];

static bool cross_job(struct test_result *r)
{
    struct cpu *c = this_cpu();
    struct cpu *peer = cross_peer[c == cross_peer[0] ? 1 : 0];
    c->state = CPU_OFFLINE;
    __atomic_fetch_add(&cross_go, 1, __ATOMIC_SEQ_CST);
    uint64_t t0 = rdtsc();
    while (__atomic_load_n(&cross_go, __ATOMIC_ACQUIRE) < 2 && rdtsc() - t0 < TIMEOUT_WAIT)
        cpu_relax();
    apic_send_ipi(peer->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    spin_alive(c, 3 * STILL_WINDOW);
    c->state = CPU_ONLINE;          /* its peer was reset before it could send */
    return test_pass(r, "ran on");
}

bool t_init_cross(struct test_result *r)
{
    if (ncpus < 3)
        return test_pass(r, "(skipped: needs 3 CPUs)");
    struct cpu *ab[2] = { &cpus[1], &cpus[ncpus - 1] };
    struct mark mk[2];
    if (ab[0]->state != CPU_ONLINE || ab[1]->state != CPU_ONLINE)
        return test_fail(r, "AP 1 or the last AP is not online");
    cross_peer[0] = ab[0];
    cross_peer[1] = ab[1];
    cross_go = 0;
    mark_take(ab[0], &mk[0]);
    mark_take(ab[1], &mk[1]);
    if (!cpu_post(ab[0], cross_job) || !cpu_post(ab[1], cross_job))
        return test_fail(r, "could not post the jobs");
    /* Each AP either finishes its job (it ran on) or its heartbeat stands still. */
    unsigned nstopped = 0;
    bool ran[2] = { false, false }, still[2] = { false, false };
    uint64_t h[2] = { ab[0]->heartbeat, ab[1]->heartbeat }, since[2], t0 = rdtsc();
    since[0] = since[1] = t0;
    while (rdtsc() - t0 < TIMEOUT_WORK) {
        unsigned settled = 0;
        for (unsigned k = 0; k < 2; k++) {
            ran[k] = __atomic_load_n(&ab[k]->done_seq, __ATOMIC_ACQUIRE) == ab[k]->work_seq;
            if (ab[k]->heartbeat != h[k]) {
                h[k] = ab[k]->heartbeat;
                since[k] = rdtsc();
            }
            still[k] = !ran[k] && rdtsc() - since[k] > STILL_WINDOW;
            settled += ran[k] || still[k];
        }
        if (settled == 2)
            break;
        cpu_relax();
    }
    for (unsigned k = 0; k < 2; k++) {
        if (ran[k])
            continue;
        if (!still[k] || !stopped(ab[k], &mk[k], k ? "last AP" : "AP 1", r)) {
            if (!still[k])
                test_fail(r, "APIC ID %u neither stopped nor finished", ab[k]->apic_id);
            park(ab[0], r);
            return park(ab[1], r);
        }
        nstopped++;
    }
    if (nstopped == 0)
        return test_fail(r, "both APs ran on after INITs to each other");
    for (unsigned k = 0; k < 2; k++) {
        if (ran[k])
            continue;
        mark_take(ab[k], &mk[k]);
        mk[k].heartbeat = ab[k]->heartbeat;
        if (!start_again(ab[k], &mk[k], k ? "last AP" : "AP 1", r))
            return k == 0 ? park(ab[1], r) : false;
    }
    for (unsigned k = 0; k < 2; k++) {
        if (!run_on(ab[k], job_id, TIMEOUT_WORK, r))
            return test_fail(r, "APIC ID %u after the case: %s", ab[k]->apic_id, r->msg);
    }
    return test_pass(r, "APIC IDs %u and %u sent INIT to each other at once: %u stopped "
                     "and started once again, %u ran on (its peer's INIT came first)",
                     ab[0]->apic_id, ab[1]->apic_id, nstopped, 2 - nstopped);
}

/* ---- init_physical ----------------------------------------------------------------- */
/* A physical INIT, not an IPI: the I/O APIC's redirection entry for the PIT (GSI 2,
 * ISA IRQ 0 by the MADT's usual override) in delivery mode INIT, aimed at AP 1, and the
 * PIT's channel 0 counting down once (mode 0). The AP must take it as its own INIT. */
static void ioapic_write(uint32_t reg, uint32_t v)
{
    *(volatile uint32_t *)(uintptr_t)IOAPIC_BASE = reg;
    *(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + 0x10) = v;
}

static uint32_t ioapic_read(uint32_t reg)
{
    *(volatile uint32_t *)(uintptr_t)IOAPIC_BASE = reg;
    return *(volatile uint32_t *)(uintptr_t)(IOAPIC_BASE + 0x10);
}

/* Redirection entry lo_reg: edge, active high, physical, `mode` (an ICR delivery mode)
 * to apic_id, written masked first so no half-set entry fires. */
static void ioapic_aim(uint32_t lo_reg, uint32_t mode, uint32_t apic_id)
{
    ioapic_write(lo_reg, 0x10000 | mode);
    ioapic_write(lo_reg + 1, apic_id << 24);
    ioapic_write(lo_reg, mode);
}

/* The entry as it was, the same way round (masked while its destination changes). */
static void ioapic_put_back(uint32_t lo_reg, uint32_t old_lo, uint32_t old_hi)
{
    ioapic_write(lo_reg, 0x10000 | (old_lo & 0xffff));
    ioapic_write(lo_reg + 1, old_hi);
    ioapic_write(lo_reg, old_lo);
}

static uint64_t phys_init_count;

static bool phys_stat_job(struct test_result *r)
{
    if (hv_stat(ST_PHYS_INIT, &phys_init_count) != HV_STAT_OK)
        phys_init_count = ~0ull;
    return test_pass(r, "ok");
}

bool t_init_physical(struct test_result *r)
{
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    if (smbios_manufacturer_is("QEMU"))
        return test_pass(r, "(skipped: QEMU 7.2 TCG resets a CPU whose INIT is "
                         "intercepted, see README)");
    /* Bochs 2.7 (the only Bochs here without the monitor trap flag: the hypervisor's
     * MTF exit count stays 0) keeps an INIT pending after its INIT VM exit, so every
     * later entry of that CPU exits again at once (DESIGN.md section 6); only
     * apic=zeroexit restarts such a CPU through INIT (README "APIC modes"). */
    uint64_t mtf_exits = 0;
    if (!cpu_is_amd && acpi_oem_is("BOCHS ") && !hv_apic_zeroexit() &&
        hv_stat(ST_EXIT_MTF, &mtf_exits) == HV_STAT_OK && mtf_exits == 0)
        return test_pass(r, "(skipped: Bochs without MTF (2.7) keeps an INIT pending after "
                         "the INIT exit, see README)");
    struct cpu *ap = &cpus[1];
    struct mark m;
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    const uint32_t gsi = 2, lo_reg = 0x10 + 2 * gsi;
    const uint32_t old_lo = ioapic_read(lo_reg), old_hi = ioapic_read(lo_reg + 1);
    mark_take(ap, &m);
    ap->state = CPU_OFFLINE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    ioapic_aim(lo_reg, ICR_INIT, ap->apic_id);
    outb(0x43, 0x30);                                    /* channel 0, lo/hi, mode 0 */
    outb(0x40, 0x00);
    outb(0x40, 0x01);                                    /* 256 PIT ticks, ~0.2 ms */
    bool ok = stopped(ap, &m, "physical INIT (I/O APIC)", r);
    ioapic_put_back(lo_reg, old_lo, old_hi);
    if (!ok)
        return park(ap, r);
    if (!start_again(ap, &m, "physical INIT", r))
        return false;
    struct test_result sr;
    phys_init_count = 0;
    if (!run_on(ap, phys_stat_job, TIMEOUT_WORK, &sr))
        return test_fail(r, "STATS on AP 1: %s", sr.msg);
    if (!hv_present())
        return test_pass(r, "I/O APIC INIT to APIC ID %u: stopped, one start after STARTUP "
                         "x2 %s", ap->apic_id, native_note);
    /* apic=zeroexit: every INIT is an INIT exit, the guest's IPIs as much as this one;
     * STATS 0x206 counts only those the step mode did not see at the ICR. */
    if (hv_apic_zeroexit())
        return test_pass(r, "I/O APIC INIT to APIC ID %u: stopped, one start after STARTUP "
                         "x2 (apic=zeroexit)", ap->apic_id);
    if (phys_init_count == 0 || phys_init_count == ~0ull)
        return test_fail(r, "the hypervisor counted no physical INIT on AP 1 (STATS 0x206 "
                         "= %lu)", phys_init_count);
    return test_pass(r, "I/O APIC INIT to APIC ID %u: stopped, one start after STARTUP x2; "
                     "STATS 0x206 = %lu", ap->apic_id, phys_init_count);
}

/* ---- init_bsp ---------------------------------------------------------------------- */
/* INIT to the BSP restarts it at the reset vector (SDM 9.1.1: the BSP flag makes it run
 * the firmware, not wait for a STARTUP). The firmware's warm-reset path (CMOS shutdown
 * status 0Ah: jump through 0040:0067 without POST) brings it to the AP trampoline, and
 * from there to bsp_resumed(), which returns into this case. Then a STARTUP to the BSP
 * must change nothing. */
static struct jump_buf bsp_jb;
static uint8_t bsp_resume_stack[4096] __attribute__((aligned(16)));
static volatile uint32_t bsp_target;

void bsp_resumed(void)
{
    struct cpu *c = &cpus[0];
    percpu_setup(c);
    trap_init();
    apic_snapshot(&c->apic_at_start);
    apic_sw_enable();
    pic_disable();
    guest_longjmp(&bsp_jb, 1);
}

static bool bsp_init_job(struct test_result *r)
{
    if (!apic_send_ipi(bsp_target, ICR_INIT | ICR_ASSERT | ICR_LEVEL))
        return test_fail(r, "ICR stayed busy");
    return test_pass(r, "INIT sent");
}

static bool bsp_sipi_job(struct test_result *r)
{
    if (!apic_send_ipi(bsp_target, ICR_STARTUP | (AP_TRAMPOLINE >> 12)))
        return test_fail(r, "ICR stayed busy");
    return test_pass(r, "STARTUP sent");
}

bool t_init_bsp(struct test_result *r)
{
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    /* Where the hypervisor had to restart an AP through INIT (its INIT stays pending
     * after the INIT exit: Bochs 2.7 under apic=zeroexit), an INIT to the BSP cannot be
     * honoured: outside VMX the BSP would run the firmware (which 40:67 below sends to
     * guest code) unsupervised; the hypervisor holds it instead (README). */
    uint64_t restarts = 0;
    if (hv_stat(ST_INIT_RESTARTS, &restarts) == HV_STAT_OK && restarts > 0)
        return test_skip(r, "the hypervisor restarted %lu AP(s) through INIT (their INIT "
                         "stays pending after the exit): an INIT to the BSP cannot be "
                         "honoured there, see README", (unsigned long)restarts);
    struct cpu *ap = &cpus[1];
    struct test_result sr;
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    bsp_target = cpus[0].apic_id;
    ap_stack_by_id[cpus[0].apic_id & 0xff] = (uint64_t)(uintptr_t)(bsp_resume_stack +
                                                                   sizeof bsp_resume_stack);
    outb(0x70, 0x0f);
    outb(0x71, 0x0a);                               /* shutdown status: jump via 40:67 */
    *(volatile uint16_t *)(uintptr_t)0x467 = 0;
    *(volatile uint16_t *)(uintptr_t)0x469 = AP_TRAMPOLINE >> 4;
    volatile uint16_t *entries = tramp16(ap_tramp_entries);
    static uint16_t entries0;
    entries0 = *entries;
    *tramp16(ap_tramp_seen_cs) = 0;
    if (guest_setjmp(&bsp_jb) == 0) {
        if (!cpu_post(ap, bsp_init_job))
            return test_fail(r, "AP 1 is not online");
        uint64_t t0 = rdtsc();
        while (rdtsc() - t0 < TIMEOUT_WORK)
            cpu_relax();
        (void)cpu_wait(ap, TIMEOUT_WORK, &sr);
        return test_fail(r, "the BSP ran on after AP 1's INIT to it (%s)", sr.msg);
    }
    /* Back through the reset vector and 40:67. */
    if (!cpu_wait(ap, TIMEOUT_WORK, &sr))
        return test_fail(r, "AP 1's INIT job: %s", sr.msg);
    const uint16_t n1 = (uint16_t)(*entries - entries0), cs = *tramp16(ap_tramp_seen_cs);
    if (n1 != 1 || cs != AP_TRAMPOLINE >> 4)
        return test_fail(r, "after INIT the BSP entered the trampoline %u times (CS 0x%x), "
                         "expected once through 40:67", n1, cs);
    const struct apic_snap *s = &cpus[0].apic_at_start;
    const bool apic_reset = (s->svr & 0x100) == 0 && (s->lvt_timer & 0x10000);
    if (!apic_reset)
        return test_fail(r, "the BSP's APIC after INIT: SVR 0x%x LVT timer 0x%x, expected "
                         "software-disabled, masked", s->svr, s->lvt_timer);
    /* STARTUP to the BSP: ignored. */
    if (!run_on(ap, bsp_sipi_job, TIMEOUT_WORK, &sr))
        return test_fail(r, "AP 1's STARTUP job: %s", sr.msg);
    delay_ticks(TICKS_10MS);
    if ((uint16_t)(*entries - entries0) != 1)
        return test_fail(r, "a STARTUP to the BSP started it (trampoline entries %u)",
                         (uint16_t)(*entries - entries0));
    outb(0x70, 0x0f);
    outb(0x71, 0x00);
    return test_pass(r, "INIT from AP 1: the BSP went through the reset vector (warm-reset "
                     "status 0Ah) with its APIC reset; a STARTUP to it changed nothing");
}

/* ---- init_restart_refused ---------------------------------------------------------- */
/* Hostile: where the hypervisor restarts an AP through INIT (apic=zeroexit on a CPU that
 * keeps INIT pending after its exit, README "APIC modes"), the AP is outside VMX for a
 * moment, and an I/O APIC pin in NMI delivery mode could then make it run the guest's
 * real-mode NMI handler unsupervised. With such a pin unmasked (the highest one, which
 * nothing drives) the restart must be refused: after INIT and STARTUP x2 the AP stays
 * stopped. With the pin masked again, the next STARTUP x2 must start it once. */
bool t_init_restart_refused(struct test_result *r)
{
    uint64_t before = 0, after = 0;
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    if (hv_stat(ST_INIT_RESTARTS, &before) != HV_STAT_OK || before == 0)
        return test_skip(r, "no CPU was restarted through INIT here (only where INIT stays "
                         "pending after its exit: Bochs 2.7 with apic=zeroexit)");
    struct cpu *ap = &cpus[1];
    struct mark m;
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    const uint32_t pin = (ioapic_read(1) >> 16) & 0xff, lo_reg = 0x10 + 2 * pin;
    const uint32_t old_lo = ioapic_read(lo_reg), old_hi = ioapic_read(lo_reg + 1);
    ioapic_aim(lo_reg, ICR_NMI, ap->apic_id);
    mark_take(ap, &m);
    ap->state = CPU_OFFLINE;        /* it goes; ap_main sets it online again */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    bool ok = stopped(ap, &m, "INIT", r);
    if (ok) {
        for (int i = 0; i < 2; i++) {
            apic_send_ipi(ap->apic_id, ICR_STARTUP | (AP_TRAMPOLINE >> 12));
            delay_ticks(TICKS_10MS);
        }
        delay_ticks(10 * TICKS_10MS);
        if (*tramp16(ap_tramp_entries) != m.entries || reports_of(ap->apic_id, m.reports)) {
            test_fail(r, "AP 1 started with I/O APIC pin %u unmasked in NMI mode", pin);
            ok = false;
        }
    }
    ioapic_put_back(lo_reg, old_lo, old_hi);
    if (!ok)
        return park(ap, r);
    if (!start_again(ap, &m, "STARTUP with the pin masked again", r))
        return false;
    if (hv_stat(ST_INIT_RESTARTS, &after) != HV_STAT_OK || after != before + 1)
        return test_fail(r, "restarts through INIT %lu -> %lu, expected one more",
                         (unsigned long)before, (unsigned long)after);
    return test_pass(r, "pin %u in NMI mode: INIT + STARTUP x2 left AP 1 stopped; masked "
                     "again: STARTUP x2 started it once (restarts %lu -> %lu)", pin,
                     (unsigned long)before, (unsigned long)after);
}

/* ---- debug_dr7_exit ---------------------------------------------------------------- */
#define RFLAGS_TF        0x100ull
#define RFLAGS_IF        0x200ull
static volatile uint32_t dbg_var;
static volatile uint32_t dbg_count;
static volatile uint64_t dbg_dr6, dbg_rip, dbg_rflags;

/* Records the first #DB (DR6, return RIP, the pushed RFLAGS) and clears DR6 and TF, so
 * a single-step trap comes once: every further #DB is counted. */
static bool dbg_hook(struct trap_frame *f)
{
    uint64_t dr6;
    __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
    if (dbg_count++ == 0) {
        dbg_dr6 = dr6;
        dbg_rip = f->rip;
        dbg_rflags = f->rflags;
    }
    __asm__ volatile("mov %0, %%dr6" :: "r"(0ull));
    f->rflags &= ~RFLAGS_TF;
    return true;
}

static void dr_set(uint64_t dr0, uint64_t dr7)
{
    __asm__ volatile("mov %0, %%dr6" :: "r"(0ull));
    __asm__ volatile("mov %0, %%dr0; mov %1, %%dr7" :: "r"(dr0), "r"(dr7) : "memory");
}

/* A data breakpoint set before VM exits (CPUID, a hypercall) still fires after them:
 * DR7 is saved and loaded with the guest's state. */
bool t_debug_dr7_exit(struct test_result *r)
{
    uint32_t a, b, c, d;
    uint64_t v;
    trap_set_hook(VEC_DB, dbg_hook);
    dbg_count = 0;
    dr_set((uint64_t)(uintptr_t)&dbg_var, 0x000d0001ull);   /* L0, write, 4 bytes */
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    (void)hv_stat(ST_EXITS_TOTAL, &v);
    uint64_t dr7;
    __asm__ volatile("mov %%dr7, %0" : "=r"(dr7));
    dbg_var = 1;
    dr_set(0, 0x400);
    trap_set_hook(VEC_DB, NULL);
    if ((dr7 & 0xffff000full) != 0x000d0001ull)
        return test_fail(r, "DR7 reads 0x%lx after CPUID and a hypercall, was set to "
                         "0x000d0001", dr7);
    if (dbg_count != 1 || !(dbg_dr6 & DR6_B0))
        return test_fail(r, "the write to the watched variable gave %u #DB (DR6 0x%lx), "
                         "expected one with B0", dbg_count, dbg_dr6);
    return test_pass(r, "DR7 0x%lx kept across the exits; one #DB, DR6 0x%lx", dr7, dbg_dr6);
}

/* ---- debug_apic_breakpoint, debug_apic_tf ------------------------------------------- */
/* void dbg_apic_write(uint64_t addr, uint32_t val, uint64_t flags): the 4-byte write of
 * val to addr with RFLAGS |= flags (TF, IF) over it, the caller's RFLAGS back after it.
 * A trap of the write (single step, data breakpoint) returns to dbg_apic_write_after;
 * the NOPs would each trap again if TF stayed set. */
extern const char dbg_apic_write_after[];
void dbg_apic_write(uint64_t addr, uint32_t val, uint64_t flags);
__asm__(".pushsection .text\n"
        ".globl dbg_apic_write, dbg_apic_write_after\n"
        "dbg_apic_write:\n"
        "  pushfq\n"
        "  pushfq\n"
        "  orq %rdx, (%rsp)\n"
        "  popfq\n"
        "  movl %esi, (%rdi)\n"
        "dbg_apic_write_after:\n"
        "  nop\n"
        "  nop\n"
        "  nop\n"
        "  popfq\n"
        "  ret\n"
        ".popsection\n");

/* One write of the TPR (0, as it is) with `flags` over it, and the one #DB the hardware
 * gives after it: return RIP right after the write, DR6 with exactly `want` of B0 and
 * BS, the pushed RFLAGS with TF only if the guest set it (the hypervisor's own step
 * must not show). dr7: 0, or a breakpoint on the TPR in DR0. */
static bool apic_write_trap(struct test_result *r, const char *what, uint64_t dr7,
                            uint64_t flags, uint64_t want)
{
    const uint64_t addr = apic_base() + APIC_TPR;
    dbg_count = 0;
    dbg_dr6 = dbg_rip = dbg_rflags = 0;
    dr_set(dr7 ? addr : 0, dr7 ? dr7 : 0x400);
    dbg_apic_write(addr, 0, flags);
    dr_set(0, 0x400);
    uint64_t rflags;
    __asm__ volatile("pushfq; popq %0" : "=r"(rflags));
    const uint64_t after = (uint64_t)(uintptr_t)dbg_apic_write_after;
    if (dbg_count != 1 || dbg_rip != after || (dbg_dr6 & (DR6_B0 | DR6_BS)) != want)
        return test_fail(r, "%s: %u #DB (the first at rip 0x%lx, DR6 0x%lx), expected one "
                         "at 0x%lx with DR6%s%s", what, dbg_count, dbg_rip, dbg_dr6, after,
                         (want & DR6_B0) ? " B0" : "", (want & DR6_BS) ? " BS" : "");
    if ((dbg_rflags & RFLAGS_TF) != (flags & RFLAGS_TF))
        return test_fail(r, "%s: the #DB frame's RFLAGS 0x%lx has TF %u, the guest's own TF "
                         "was %u", what, dbg_rflags, (unsigned)!!(dbg_rflags & RFLAGS_TF),
                         (unsigned)!!(flags & RFLAGS_TF));
    if (rflags & RFLAGS_TF)
        return test_fail(r, "%s: TF set afterwards (RFLAGS 0x%lx)", what, rflags);
    return true;
}

/* A data breakpoint on an APIC register that is written: the write is stepped by the
 * hypervisor (against its capture page), yet the guest gets its one #DB after the
 * write, with B0 and without BS (with BS too when the guest's own TF was set); and
 * one on a register that is read (reads run natively). */
static bool apic_bp_read(struct test_result *r)
{
    dbg_count = 0;
    dbg_dr6 = dbg_rip = 0;
    dr_set(apic_base() + APIC_ID, 0x000f0001ull);       /* L0, reads and writes, 4 bytes */
    const uint32_t v = apic_read(APIC_ID) >> 24;
    dr_set(0, 0x400);
    if (v != this_cpu()->apic_id)
        return test_fail(r, "APIC ID read %u, expected %u", v, this_cpu()->apic_id);
    if (dbg_count != 1 || !(dbg_dr6 & DR6_B0) || (dbg_dr6 & DR6_BS))
        return test_fail(r, "an APIC ID read under a data breakpoint gave %u #DB (DR6 0x%lx "
                         "at rip 0x%lx), expected one with B0 and no BS", dbg_count, dbg_dr6,
                         dbg_rip);
    return true;
}

bool t_debug_apic_breakpoint(struct test_result *r)
{
    /* Bochs 3.0's SVM writes nothing to DR6 for an intercepted #DB (svm.cc,
     * SvmInterceptException clears the pending debug bits before exception() would
     * commit them), so the VMCB never shows the step's B0-B3; AMD parts save them
     * there (KVM's #DB intercept reads them from the VMCB). */
    if (hv_present() && cpu_is_amd && !smbios_manufacturer_is("QEMU"))
        return test_skip(r, "Bochs SVM writes no DR6 bits for an intercepted #DB, so the "
                         "hypervisor cannot see the step's data breakpoint");
    trap_set_hook(VEC_DB, dbg_hook);
    bool ok = apic_write_trap(r, "TPR write under a write breakpoint", 0x000d0001ull, 0,
                              DR6_B0) &&
              apic_write_trap(r, "TPR write under a write breakpoint with TF", 0x000d0001ull,
                              RFLAGS_TF, DR6_B0 | DR6_BS) &&
              apic_bp_read(r);
    trap_set_hook(VEC_DB, NULL);
    return ok ? test_pass(r, "TPR write (B0; with TF B0+BS) and ID read (B0): one #DB each, "
                          "after the access, no TF of the hypervisor's in the frame") : false;
}

/* void dbg_pushf_apic(uint64_t addr): RFLAGS = 0xd7 (CF PF AF ZF SF and bit 1; TF, IF,
 * DF clear) over a PUSHFQ whose 8-byte image lands at addr; the caller's RSP and
 * RFLAGS back after it. */
void dbg_pushf_apic(uint64_t addr);
__asm__(".pushsection .text\n"
        ".globl dbg_pushf_apic\n"
        "dbg_pushf_apic:\n"
        "  pushfq\n"
        "  pushq $0xd7\n"
        "  popfq\n"
        "  movq %rsp, %rax\n"
        "  leaq 8(%rdi), %rsp\n"
        "  pushfq\n"
        "  movq %rax, %rsp\n"
        "  popfq\n"
        "  ret\n"
        ".popsection\n");

#define APIC_LVT_LINT1_REG 0x360u

/* A PUSHFQ whose image is an APIC register's write (LVT LINT1: its bits 8-10, the
 * delivery mode, are where TF, IF and DF land): the register gets the FLAGS the
 * processor pushes, without the TF of the hypervisor's step. Natively Bochs stops on
 * an 8-byte APIC write, and so it would with apic=zeroexit (no step): left out there. */
static bool pushf_round(struct test_result *r, bool *ran)
{
    *ran = hv_present() && !hv_apic_zeroexit();
    if (!*ran)
        return true;
    const uint32_t saved = apic_read(APIC_LVT_LINT1_REG);
    dbg_pushf_apic(apic_base() + APIC_LVT_LINT1_REG);
    const uint32_t got = apic_read(APIC_LVT_LINT1_REG);
    apic_write(APIC_LVT_LINT1_REG, saved);
    if ((got & 0x7ff) != 0xd7)
        return test_fail(r, "a PUSHFQ of RFLAGS 0xd7 onto LVT LINT1 left 0x%x there, "
                         "expected 0xd7 in bits 0-10 (TF clear, as pushed)", got);
    return true;
}

/* The guest's own TF over an APIC write, with IF = 0 and IF = 1: one #DB after the
 * write with BS, its return address after the write, TF in the pushed RFLAGS (the
 * guest's own), and nothing more once the handler has cleared TF. And a FLAGS image
 * pushed onto an APIC register without TF shows none. */
bool t_debug_apic_tf(struct test_result *r)
{
    bool pushf = false;
    trap_set_hook(VEC_DB, dbg_hook);
    bool ok = apic_write_trap(r, "TF over a TPR write (IF=0)", 0, RFLAGS_TF, DR6_BS) &&
              apic_write_trap(r, "TF over a TPR write (IF=1)", 0, RFLAGS_TF | RFLAGS_IF,
                              DR6_BS);
    trap_set_hook(VEC_DB, NULL);
    ok = ok && pushf_round(r, &pushf);
    return ok ? test_pass(r, "one #DB after the write (DR6 0x%lx, pushed RFLAGS 0x%lx), "
                          "IF=0 and IF=1; %s", dbg_dr6, dbg_rflags,
                          pushf ? "a PUSHFQ onto LVT LINT1 wrote no TF" :
                          "(PUSHFQ onto the APIC left out: no step)") : false;
}

/* ---- e820_hook_odd ----------------------------------------------------------------- */
/* entry.S asked INT 15h E820h (index 0) with ES:DI on VGA memory, and through an alias
 * of the vector's CS:IP. The alias must answer exactly like the plain call (the first
 * entry of e820_map); the hypervisor must refuse to write its answer into a device
 * (CF = 1), where the BIOS natively writes into the VGA RAM. */
bool t_e820_hook_odd(struct test_result *r)
{
    if (!e820_alias_done)
        return test_fail(r, "the far call through the aliased vector did not come back");
    if (e820_alias_done == 2 && !hv_present())
        return test_pass(r, "(native: no stub to call through an alias; ES:DI on VGA memory "
                         "CF %u)", e820_vga_flags & 1);
    if (e820_alias_done == 2)
        return test_fail(r, "INT 15h does not point at the hypervisor's hypercall stub");
    if ((e820_alias_flags & 1) || e820_alias_eax != 0x534d4150u)
        return test_fail(r, "E820h through the aliased CS:IP: CF %u, EAX 0x%x (expected "
                         "CF 0, 'SMAP')", e820_alias_flags & 1, e820_alias_eax);
    if (e820_count == 0 || memcmp(e820_alias_rec, (const void *)&e820_map[0], 20) != 0)
        return test_fail(r, "E820h through the aliased CS:IP gave another entry 0 than the "
                         "plain call");
    if (!(e820_vga_flags & 1))
        return test_fail(r, "E820h with ES:DI = A000:0000 (VGA memory, not RAM): CF 0, the "
                         "hypervisor wrote into a device");
    return test_pass(r, "alias answered as the plain call; ES:DI on VGA memory refused (CF 1)");
}

/* ---- nmi_while_blocked ------------------------------------------------------------- */
/* SDM 6.7.1: while an NMI handler runs, further NMIs are blocked and at most one stays
 * pending. AP 1's handler holds on to the first NMI while the BSP sends five more; after
 * its IRET exactly one more is taken: two in all, as the processor gives. */
#define NMI_EXTRA 5u
static volatile uint32_t nmib_in_handler, nmib_release, nmib_stop;

static bool nmib_hook(struct trap_frame *f)
{
    struct cpu *c = this_cpu();
    (void)f;
    if (__atomic_add_fetch(&c->nmi_count, 1, __ATOMIC_SEQ_CST) == 1) {
        __atomic_store_n(&nmib_in_handler, 1, __ATOMIC_RELEASE);
        uint64_t t0 = rdtsc();
        while (!__atomic_load_n(&nmib_release, __ATOMIC_ACQUIRE) && rdtsc() - t0 < TIMEOUT_WORK)
            cpu_relax();
    }
    return true;
}

static bool nmib_job(struct test_result *r)
{
    uint64_t t0 = rdtsc();
    while (!__atomic_load_n(&nmib_stop, __ATOMIC_ACQUIRE) && rdtsc() - t0 < TIMEOUT_WORK)
        cpu_relax();
    return test_pass(r, "ok");
}

bool t_nmi_while_blocked(struct test_result *r)
{
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    struct cpu *ap = &cpus[1];
    struct test_result sr;
    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    nmib_in_handler = nmib_release = nmib_stop = 0;
    ap->nmi_count = 0;
    trap_set_hook(VEC_NMI, nmib_hook);
    bool ok = cpu_post(ap, nmib_job);
    if (ok)
        ok = apic_send_ipi(ap->apic_id, ICR_NMI) && wait_flag(&nmib_in_handler, TIMEOUT_WAIT);
    if (ok) {
        for (unsigned i = 0; i < NMI_EXTRA; i++)
            ok &= apic_send_ipi(ap->apic_id, ICR_NMI);
        delay_ticks(5 * TICKS_10MS);        /* every one of them has reached AP 1 */
    }
    const uint32_t during = ap->nmi_count;
    __atomic_store_n(&nmib_release, 1, __ATOMIC_RELEASE);
    delay_ticks(5 * TICKS_10MS);
    const uint32_t after = ap->nmi_count;
    __atomic_store_n(&nmib_stop, 1, __ATOMIC_RELEASE);
    bool done = cpu_wait(ap, TIMEOUT_WORK, &sr);
    trap_set_hook(VEC_NMI, nmi_count_hook);
    if (!ok)
        return test_fail(r, "AP 1's NMI handler was not entered (or an ICR stayed busy)");
    if (!done)
        return test_fail(r, "AP 1's job: %s", sr.msg);
    if (during != 1 || after != 2)
        return test_fail(r, "1 + %u NMIs, the last %u while AP 1's handler ran: %u taken "
                         "during it, %u in all; expected 1 and 2 (one stays pending)",
                         NMI_EXTRA, NMI_EXTRA, during, after);
    return test_pass(r, "1 + %u NMIs, %u while the handler ran: 2 taken (one held pending)",
                     NMI_EXTRA, NMI_EXTRA);
}

/* ---- debug_rf_emulated ------------------------------------------------------------- */
/* RF (SDM 18.3.1.1) around instructions the hypervisor handles:
 *  - CPUID entered with RFLAGS.RF = 1 (through IRETQ), an instruction breakpoint on the
 *    instruction after it: CPUID completes (the hypervisor performs it), which clears
 *    RF, so the breakpoint fires. Left set, RF would suppress it.
 *  - An instruction breakpoint on an APIC write (which the hypervisor steps): one #DB,
 *    a fault before the write; the handler sets RF in its frame, and the write then
 *    runs (trapped, stepped) without a second #DB. An exit that lost RF on the way
 *    would raise it again at every try. */
#define RFLAGS_RF        0x10000ull
extern const char rf_after_cpuid[], rf_apic_write[];
void rf_apic_write_probe(uint64_t addr, uint32_t val);
__asm__(".pushsection .text\n"
        ".globl rf_apic_write_probe, rf_apic_write\n"
        "rf_apic_write_probe:\n"
        "rf_apic_write:\n"
        "  movl %esi, (%rdi)\n"
        "  ret\n"
        ".popsection\n");
static volatile uint32_t rf_hits;
static volatile uint64_t rf_rip, rf_dr6;
static volatile bool rf_resume;     /* set RF in the frame (else: disarm DR7) */

static bool rf_hook(struct trap_frame *f)
{
    uint64_t dr6;
    __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
    if (rf_hits++ == 0) {
        rf_rip = f->rip;
        rf_dr6 = dr6;
    }
    if (rf_resume && rf_hits < 3)
        f->rflags |= RFLAGS_RF;
    else
        __asm__ volatile("mov %0, %%dr7" :: "r"(0x400ull));   /* no (further) hit */
    __asm__ volatile("mov %0, %%dr6" :: "r"(0ull));
    return true;
}

bool t_debug_rf_emulated(struct test_result *r)
{
    /* Bochs with more than one CPU and no debugger built in (3.0 here) never commits the
     * new RIP after delivering an exception (main.cc: the SMP loop's longjmp target does
     * not set prev_rip, as cpu_loop's does), so at the #DB handler's first instruction it
     * matches the breakpoint again at the stale address, with RF clear: #DB after #DB,
     * each pushing its 40-byte frame and none running a handler instruction, until the
     * stack overruns the page tables (a triple fault), natively as under the hypervisor.
     * The guest cannot tell that build from Debian's 2.7 (whose debugger loop commits
     * it), so every Bochs with more than one CPU skips; 1 CPU runs it. */
    const bool bochs = acpi_oem_is("BOCHS ") && !smbios_manufacturer_is("QEMU");
    if (ncpus > 1 && bochs)
        return test_skip(r, "Bochs SMP re-raises an instruction-breakpoint #DB at its "
                         "handler for ever (the RIP after an exception is not committed)");
    /* Bochs clears RF as it fetches an instruction, before it runs (3.0's cpu.cc,
     * prefetch): Bochs 2.7's EPT-violation exit then saves RF = 0 where the SDM says 1
     * (27.3.3; the exit's RFLAGS 0x3 under 2.7, 0x10003 under 3.0's VMX), and so does
     * Bochs 3.0's #NPF exit (ryzen). The trapped write comes back without RF and its
     * breakpoint fires again, so that round is left out there: on AMD under Bochs, and
     * on Intel under Bochs without MTF exits (2.7; a 3.0 build with the TF step forced
     * looks the same and loses the round too). */
    uint64_t mtf = 0;
    const bool rf_lost = bochs && hv_present() &&
                         (cpu_is_amd || (hv_stat(ST_EXIT_MTF, &mtf) == HV_STAT_OK && mtf == 0));
    rf_hits = 0;
    rf_rip = 0;
    rf_resume = false;
    trap_set_hook(VEC_DB, rf_hook);
    dr_set((uint64_t)(uintptr_t)rf_after_cpuid, 0x401ull);   /* L0, execute */
    __asm__ volatile("lea 1f(%%rip), %%rax\n\t"
                     "mov %%rsp, %%rdx\n\t"
                     "mov %%ss, %%ecx\n\t"
                     "pushq %%rcx\n\t"
                     "pushq %%rdx\n\t"
                     "pushfq\n\t"
                     "orq $0x10000, (%%rsp)\n\t"
                     "mov %%cs, %%ecx\n\t"
                     "pushq %%rcx\n\t"
                     "pushq %%rax\n\t"
                     "xor %%eax, %%eax\n\t"
                     "iretq\n"
                     "1: cpuid\n\t"
                     ".globl rf_after_cpuid\n"
                     "rf_after_cpuid: nop\n\t"
                     ::: "rax", "rbx", "rcx", "rdx", "memory");
    dr_set(0, 0x400);
    const uint32_t cpuid_hits = rf_hits;
    const uint64_t cpuid_rip = rf_rip;

    const uint32_t tpr = apic_read(APIC_TPR);
    if (!rf_lost) {
        rf_hits = 0;
        rf_rip = rf_dr6 = 0;
        rf_resume = true;
        dr_set((uint64_t)(uintptr_t)rf_apic_write, 0x401ull);
        rf_apic_write_probe(apic_base() + APIC_TPR, tpr);
        dr_set(0, 0x400);
    }
    trap_set_hook(VEC_DB, NULL);
    if (cpuid_hits != 1 || cpuid_rip != (uint64_t)(uintptr_t)rf_after_cpuid)
        return test_fail(r, "CPUID with RF set, breakpoint on the next instruction: %u #DB "
                         "(rip 0x%lx), expected one at 0x%lx", cpuid_hits, cpuid_rip,
                         (uint64_t)(uintptr_t)rf_after_cpuid);
    if (rf_lost)
        return test_pass(r, "RF cleared by the completed CPUID (the next instruction's "
                         "breakpoint fired once); the APIC write round left out: this "
                         "Bochs loses RF at the write's exit");
    if (rf_hits != 1 || rf_rip != (uint64_t)(uintptr_t)rf_apic_write || !(rf_dr6 & DR6_B0))
        return test_fail(r, "instruction breakpoint on an APIC write, resumed with RF: %u "
                         "#DB (the first at rip 0x%lx, DR6 0x%lx), expected one at 0x%lx "
                         "with B0", rf_hits, rf_rip, rf_dr6,
                         (uint64_t)(uintptr_t)rf_apic_write);
    return test_pass(r, "RF cleared by the completed CPUID (the next instruction's "
                     "breakpoint fired once); an APIC write resumed with RF: one #DB");
}

/* ---- apic_step_interrupts ---------------------------------------------------------- */
/* Interrupts around the step of an APIC write: the APIC timer fires every 40,000
 * ticks while the BSP, with IF = 1, writes the TPR over and over (each write stepped by
 * the hypervisor). An interrupt must be taken before or after a stepped write, never
 * inside the step: there its handler would run against the capture page, and its EOI,
 * the same value in the same slot as the step's own write or none at all, would be
 * lost, leaving the vector in service for ever (no more ticks at its priority, which is
 * what Linux's timer and IPIs then suffer). Afterwards: ticks were taken and the ISR is
 * empty. */
#define VEC_TICK         0x52u
#define STEP_IRQ_WRITES  3000u

static volatile uint32_t tick_count;

static bool tick_hook(struct trap_frame *f)
{
    (void)f;
    tick_count++;
    apic_write(APIC_EOI, 0);
    return true;
}

bool t_apic_step_interrupts(struct test_result *r)
{
    const uint32_t lvt = apic_read(0x320), dcr = apic_read(0x3e0);
    tick_count = 0;
    trap_set_hook(VEC_TICK, tick_hook);
    apic_write(0x3e0, 0xb);                     /* divide by 1 */
    apic_write(0x320, VEC_TICK | (1u << 17));   /* periodic, unmasked */
    apic_write(0x380, 40000);
    /* At least STEP_IRQ_WRITES writes and 20 ticks (natively the writes are quick). */
    uint32_t writes = 0;
    const uint64_t t0 = rdtsc();
    __asm__ volatile("sti" ::: "memory");
    while ((writes < STEP_IRQ_WRITES || tick_count < 20) && rdtsc() - t0 < 20 * TICKS_10MS) {
        apic_write(APIC_TPR, 0);
        writes++;
    }
    __asm__ volatile("cli" ::: "memory");
    const uint32_t during = tick_count;
    apic_write(0x380, 0);
    apic_write(0x320, lvt | 0x10000u);
    __asm__ volatile("sti; nop; nop; nop; cli" ::: "memory");  /* one already pending */
    uint32_t isr[8];
    for (unsigned i = 0; i < 8; i++)
        isr[i] = apic_read(0x100 + 0x10 * i);
    const uint32_t stuck = isr[VEC_TICK / 32] & (1u << (VEC_TICK % 32));
    /* Whatever is still in service: EOI it, so that the cases after this one run. */
    for (unsigned i = 0; i < 8; i++)
        for (uint32_t m = isr[i]; m; m &= m - 1)
            apic_write(APIC_EOI, 0);
    __asm__ volatile("sti; nop; nop; nop; cli" ::: "memory");  /* one held behind them */
    apic_write(0x3e0, dcr);
    apic_write(0x320, lvt);
    trap_set_hook(VEC_TICK, NULL);
    if (stuck)
        return test_fail(r, "%u timer interrupts over %u TPR writes, then vector 0x%x "
                         "still in service (its EOI lost)", during, writes, VEC_TICK);
    for (unsigned i = 0; i < 8; i++)
        if (isr[i])
            return test_fail(r, "ISR word %u is 0x%x after the writes", i, isr[i]);
    if (during == 0)
        return test_fail(r, "no timer interrupt over %u TPR writes with IF = 1", writes);
    return test_pass(r, "%u timer interrupts over %u TPR writes, every one ended by its EOI",
                     during, writes);
}
