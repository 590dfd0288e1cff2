/* The guest-SMP and xAPIC cases: AP start-up (from the BSP and from an AP), IPIs between
 * every pair of CPUs, many APIC accesses on every CPU, a paced NMI storm, an APIC access
 * that faults, an APIC access under the guest's own single-step, a relocated APIC, and
 * an AP restarted by INIT-SIPI-SIPI while it runs.
 * Natively each of them must pass too; a check that needs the hypervisor's STATS
 * hypercall is skipped there ("native: no exit counts"). See README.md. */
#include "guest.h"

#define TIMEOUT_WORK     (1000000000ull * tick_scale)  /* a CPU's share of a case */
#define TIMEOUT_WAIT     (100000000ull * tick_scale)   /* an IPI, a barrier, a flag */
#define VEC_IPI_BASE     0x40u          /* ipi_all_pairs: 0x40 + sender's index */
#define ACCESS_LOOPS     10000u
#define NMI_COUNT        1000u
#define TIMEOUT_NMI      (20000000ull * tick_scale)
#define APIC_ALT_BASE    0xfeb00000ull  /* apic_relocate: no RAM, no device on Bochs */
#define RFLAGS_TF        0x100ull
#define DR6_BS           (1ull << 14)

static const char native_note[] = "(native: no exit counts)";

/* The STATS counter that shows an APIC access was intercepted: the EPT-violation exits
 * on Intel (the contract's selectors 0..64 are VMX basic exit reasons); on AMD, which
 * has no such exit reason, the APIC accesses stepped to completion (0x200). */
static uint64_t intercept_sel(void)
{
    return cpu_is_amd ? ST_APIC_STEPS : ST_EXIT_EPTV;
}

static const char *intercept_name(void)
{
    return cpu_is_amd ? "APIC step (STATS 0x200)" : "EPT violation";
}

/* ---- small helpers ---------------------------------------------------------------- */
static bool wait_until(volatile uint32_t *p, uint32_t at_least, uint64_t timeout)
{
    uint64_t t0 = rdtsc();
    while (__atomic_load_n(p, __ATOMIC_ACQUIRE) < at_least) {
        if (rdtsc() - t0 > timeout)
            return false;
        cpu_relax();
    }
    return true;
}

/* A barrier of n CPUs; slot k is used once per case (reset by the BSP before). */
static volatile uint32_t barrier_count[4];

static bool barrier(unsigned k, unsigned n, struct test_result *r)
{
    __atomic_fetch_add(&barrier_count[k], 1, __ATOMIC_SEQ_CST);
    if (!wait_until(&barrier_count[k], n, TIMEOUT_WAIT))
        return test_fail(r, "barrier %u: only %u of %u CPUs arrived", k,
                         barrier_count[k], n);
    return true;
}

static void barriers_reset(void)
{
    for (unsigned k = 0; k < ARRAY_SIZE(barrier_count); k++)
        barrier_count[k] = 0;
}

/* A STATS counter, or note why there is none: *hv false natively. */
static bool stat_get(struct test_result *r, uint64_t sel, uint64_t *v, bool *hv)
{
    switch (hv_stat(sel, v)) {
    case HV_STAT_OK:
        *hv = true;
        return true;
    case HV_STAT_NATIVE:
        *hv = false;
        *v = 0;
        return true;
    default:
        return test_fail(r, "STATS selector 0x%lx: the hypervisor did not answer it", sel);
    }
}

static bool check_reports(struct test_result *r, unsigned first, unsigned end)
{
    uint32_t n = ap_report_count;

    if (n > ARRAY_SIZE(ap_reports))
        return test_fail(r, "%u AP reports, more than the table holds", n);
    for (uint32_t i = 0; i < n; i++) {
        bool known = false;
        for (unsigned k = first; k < end; k++)
            known |= cpus[k].apic_id == ap_reports[i];
        if (!known)
            return test_fail(r, "an AP reported APIC ID %u, which was not started",
                             ap_reports[i]);
    }
    for (unsigned k = first; k < end; k++) {
        unsigned seen = 0;
        for (uint32_t i = 0; i < n; i++)
            seen += ap_reports[i] == cpus[k].apic_id;
        if (seen != 1)
            return test_fail(r, "APIC ID %u reported %u times, expected once",
                             cpus[k].apic_id, seen);
    }
    return true;
}

/* ---- ap_startup -------------------------------------------------------------------- */
/* The BSP starts every AP but the last one when there are 3 or more CPUs: that one is
 * started by AP 1 in ap_starts_ap. */
static unsigned bsp_started_end(void)
{
    return ncpus >= 3 ? ncpus - 1 : ncpus;
}

bool t_ap_startup(struct test_result *r)
{
    struct runtime_info ri;
    char why[160];
    bool hv = get_runtime_info(&ri, why, sizeof why);

    if (!madt_ok)
        return test_fail(r, "MADT: %s", madt_why);
    if (hv && ri.cpus != ncpus)
        return test_fail(r, "RUNTIME_INFO reports %lu CPUs, the MADT %u", ri.cpus, ncpus);

    unsigned end = bsp_started_end();
    bool ok = true;
    for (unsigned i = 1; i < end; i++) {     /* all of them, whatever the first did */
        if (cpus[i].state == CPU_OFFLINE && !smp_start_ap(&cpus[i], why, sizeof why) && ok)
            ok = test_fail(r, "cpu %u: %s", i, why);
    }
    if (!ok)
        return false;
    if (!check_reports(r, 1, end))
        return false;
    return test_pass(r, "%u CPUs in the MADT%s, %u AP%s started from the BSP", ncpus,
                     hv ? " (as RUNTIME_INFO)" : "", end - 1, end == 2 ? "" : "s");
}

/* ---- ap_starts_ap ------------------------------------------------------------------ */
static struct cpu *start_target;

static bool start_target_work(struct test_result *r)
{
    return smp_start_ap(start_target, r->msg, sizeof r->msg);
}

bool t_ap_starts_ap(struct test_result *r)
{
    char why[160];

    if (!madt_ok)
        return test_fail(r, "MADT: %s", madt_why);
    if (ncpus < 3)
        return test_pass(r, "(skipped: needs 3 CPUs)");
    struct cpu *ap1 = &cpus[1], *ap2 = &cpus[ncpus - 1];
    if (ap1->state == CPU_OFFLINE && !smp_start_ap(ap1, why, sizeof why))
        return test_fail(r, "starting AP 1 from the BSP: %s", why);
    if (ap1->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not usable");
    if (ap2->state != CPU_OFFLINE)
        return test_fail(r, "cpu %u is not offline before the test", ap2->idx);

    struct test_result sr;
    start_target = ap2;
    if (!run_on(ap1, start_target_work, TIMEOUT_WORK, &sr))
        return test_fail(r, "on AP 1 (APIC ID %u): %s", ap1->apic_id, sr.msg);
    if (!check_reports(r, 1, ncpus))
        return false;
    return test_pass(r, "APIC ID %u started APIC ID %u", ap1->apic_id, ap2->apic_id);
}

/* ---- ipi_all_pairs ----------------------------------------------------------------- */
static unsigned part[MAX_CPUS], npart;     /* the CPUs taking part in a case */

static void participants(void)
{
    npart = 0;
    for (unsigned i = 0; i < ncpus; i++) {
        if (cpus[i].state == CPU_ONLINE)
            part[npart++] = i;
    }
}

static bool ipi_hook(struct trap_frame *f)
{
    struct cpu *c = this_cpu();
    uint64_t s = f->vector - VEC_IPI_BASE;

    if (s < MAX_CPUS)
        c->irq_count[s]++;
    else
        c->irq_other++;
    apic_write(APIC_EOI, 0);
    return true;
}

static bool ipi_work(struct test_result *r)
{
    struct cpu *c = this_cpu();
    bool ok = true;

    __asm__ volatile("sti" ::: "memory");
    if (!barrier(0, npart, r))
        goto out;
    for (unsigned k = 0; k < npart && ok; k++) {
        const struct cpu *d = &cpus[part[k]];
        if (d != c && !apic_send_ipi(d->apic_id, ICR_FIXED | (VEC_IPI_BASE + c->idx)))
            ok = test_fail(r, "ICR busy after the IPI to APIC ID %u", d->apic_id);
    }
    for (unsigned k = 0; k < npart && ok; k++) {
        unsigned s = part[k];
        if (s != c->idx && !wait_until(&c->irq_count[s], 1, TIMEOUT_WAIT))
            ok = test_fail(r, "no IPI from cpu %u (vector 0x%x)", s, VEC_IPI_BASE + s);
    }
    if (!ok || !barrier(1, npart, r))
        goto out;
    delay_ticks(TICKS_10MS / 4);                /* time for a duplicate to show */
    __asm__ volatile("cli" ::: "memory");
    for (unsigned s = 0; s < MAX_CPUS; s++) {
        bool from_peer = false;
        for (unsigned k = 0; k < npart; k++)
            from_peer |= part[k] == s && s != c->idx;
        if (c->irq_count[s] != (from_peer ? 1u : 0u))
            return test_fail(r, "vector 0x%x (from cpu %u) received %u times, expected %u",
                             VEC_IPI_BASE + s, s, c->irq_count[s], from_peer ? 1 : 0);
    }
    if (c->irq_other)
        return test_fail(r, "%u interrupts outside the senders' vectors", c->irq_other);
    return test_pass(r, "%u CPUs, %u IPIs each way", npart, npart - 1);
out:
    __asm__ volatile("cli" ::: "memory");
    return false;
}

bool t_ipi_all_pairs(struct test_result *r)
{
    participants();
    barriers_reset();
    for (unsigned i = 0; i < ncpus; i++) {
        memset((void *)cpus[i].irq_count, 0, sizeof cpus[i].irq_count);
        cpus[i].irq_other = 0;
    }
    for (unsigned v = VEC_IPI_BASE; v < VEC_IPI_BASE + 0x20; v++)
        trap_set_hook(v, ipi_hook);
    bool ok = run_on_all(ipi_work, TIMEOUT_WORK, r);
    for (unsigned v = VEC_IPI_BASE; v < VEC_IPI_BASE + 0x20; v++)
        trap_set_hook(v, NULL);
    return ok;
}

/* ---- apic_access_loop -------------------------------------------------------------- */
static bool access_work(struct test_result *r)
{
    const struct cpu *c = this_cpu();
    uint32_t id0 = apic_read(APIC_ID), ver0 = apic_read(APIC_VERSION);

    if (id0 >> 24 != c->apic_id)
        return test_fail(r, "APIC ID register 0x%x, expected ID %u", id0, c->apic_id);
    if (ver0 == 0 || ver0 == 0xffffffffu)
        return test_fail(r, "version register 0x%x", ver0);
    for (unsigned i = 0; i < ACCESS_LOOPS; i++) {
        apic_write(APIC_EOI, 0);            /* nothing in service: no effect */
        uint32_t id = apic_read(APIC_ID);
        if (id != id0)
            return test_fail(r, "read %u: APIC ID register 0x%x, expected 0x%x", i, id, id0);
        if (i % 10 == 0) {
            uint32_t v = apic_read(APIC_VERSION);
            if (v != ver0)
                return test_fail(r, "read %u: version 0x%x, was 0x%x", i, v, ver0);
        }
    }
    return test_pass(r, "%u EOIs, %u ID and %u version reads per CPU (version 0x%x)",
                     ACCESS_LOOPS, ACCESS_LOOPS, ACCESS_LOOPS / 10, ver0);
}

bool t_apic_access_loop(struct test_result *r)
{
    return run_on_all(access_work, TIMEOUT_WORK, r);
}

/* ---- nmi_storm --------------------------------------------------------------------- */
static volatile uint32_t storm_ready, storm_stop;

/* The target: APIC ID reads until told to stop. */
static bool storm_spin(struct test_result *r)
{
    const struct cpu *c = this_cpu();
    uint64_t t0 = rdtsc(), reads = 0;

    __atomic_store_n(&storm_ready, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&storm_stop, __ATOMIC_ACQUIRE)) {
        uint32_t id = apic_read(APIC_ID) >> 24;
        reads++;
        if (id != c->apic_id)
            return test_fail(r, "APIC ID read %u, expected %u", id, c->apic_id);
        if (rdtsc() - t0 > TIMEOUT_WORK)
            return test_fail(r, "never told to stop");
    }
    return test_pass(r, "%lu APIC ID reads", reads);
}

static bool storm_send(struct test_result *r, struct cpu *t)
{
    for (uint32_t k = 1; k <= NMI_COUNT; k++) {
        if (!apic_send_ipi(t->apic_id, ICR_NMI))
            return test_fail(r, "NMI %u: ICR delivery status stayed busy", k);
        uint64_t t0 = rdtsc();
        while (t->nmi_count < k) {
            if (rdtsc() - t0 > TIMEOUT_NMI)
                return test_fail(r, "NMI %u was not received (target counted %u)", k,
                                 t->nmi_count);
            if (t == this_cpu())
                (void)apic_read(APIC_ID);   /* alone: the sender is the spinning target */
            else
                cpu_relax();
        }
        if (t->nmi_count != k)
            return test_fail(r, "after NMI %u the target counted %u", k, t->nmi_count);
    }
    delay_ticks(TICKS_10MS);                /* a late duplicate would show now */
    if (t->nmi_count != NMI_COUNT)
        return test_fail(r, "sent %u NMIs, received %u", NMI_COUNT, t->nmi_count);
    return true;
}

bool t_nmi_storm(struct test_result *r)
{
    struct cpu *t = &cpus[0];
    for (unsigned i = 1; i < ncpus; i++) {
        if (cpus[i].state == CPU_ONLINE)
            t = &cpus[i];
    }
    /* NMIs are counted by smp.c's permanent hook; start from 0. */
    t->nmi_count = 0;
    storm_ready = storm_stop = 0;

    struct test_result sr;
    bool ok;
    if (t == &cpus[0]) {
        ok = storm_send(r, t);
    } else if (!cpu_post(t, storm_spin)) {
        ok = test_fail(r, "cpu %u not online", t->idx);
    } else {
        ok = wait_until(&storm_ready, 1, TIMEOUT_WAIT) ? storm_send(r, t)
             : test_fail(r, "cpu %u did not start spinning", t->idx);
        __atomic_store_n(&storm_stop, 1, __ATOMIC_RELEASE);
        if (!cpu_wait(t, TIMEOUT_WORK, &sr) && ok)
            ok = test_fail(r, "target cpu %u: %s", t->idx, sr.msg);
    }
    if (!ok)
        return false;
    if (t == &cpus[0] && ncpus > 1)
        return test_fail(r, "no AP online (the MADT lists %u CPUs): %u NMIs went to self "
                         "only", ncpus, NMI_COUNT);
    if (t == &cpus[0])
        return test_pass(r, "%u NMIs to self, one at a time (the only CPU)", NMI_COUNT);
    return test_pass(r, "%u NMIs from cpu 0 to cpu %u, received %u; target: %s", NMI_COUNT,
                     t->idx, t->nmi_count, sr.msg);
}

/* ---- apic_fault_movs --------------------------------------------------------------- */
/* Splits the 2 MiB page NP_REGION into 4 KiB pages with NP_PAGE not present. */
static void np_page_setup(void)
{
    uint64_t *pt = (uint64_t *)(uintptr_t)NP_PT_PAGE;
    uint64_t *pd = (uint64_t *)(uintptr_t)(GUEST_PT_BASE + 0x2000);

    for (unsigned i = 0; i < 512; i++)
        pt[i] = (NP_REGION + i * 0x1000ull) | 0x3;      /* P, RW */
    pt[(NP_PAGE - NP_REGION) >> 12] = 0;
    pd[NP_REGION >> 21] = NP_PT_PAGE | 0x3;
}

static void flush_tlb(void)
{
    uint64_t cr3;
    __asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
}

static bool movs_work(struct test_result *r)
{
    const struct cpu *c = this_cpu();
    const uint64_t src = apic_base() + APIC_ID;
    const uint64_t dst = NP_PAGE + 0x100 * c->idx + 4;
    uint64_t out[2], exc0, exc1, e0, e1;
    struct fault_info f;
    bool hv = false;

    flush_tlb();
    if (!stat_get(r, ST_STEP_EXC, &exc0, &hv))
        return false;
    fault_expect((const void *)probe_movs_recover);
    probe_movs(src, dst, out);
    unsigned n = fault_expect_end(&f);
    if (!stat_get(r, ST_STEP_EXC, &exc1, &hv))
        return false;
    if (n != 1)
        return test_fail(r, "%u exceptions, expected one #PF (first %s)", n,
                         n ? trap_name(f.vector) : "none");
    if (f.vector != VEC_PF || f.cr2 != dst || f.error != 0x2 ||
        f.rip != (uint64_t)(uintptr_t)probe_movs_insn)
        return test_fail(r, "%s err=0x%lx rip=0x%lx cr2=0x%lx, expected #PF err=0x2 "
                         "rip=0x%lx cr2=0x%lx", trap_name(f.vector), f.error, f.rip, f.cr2,
                         (uint64_t)(uintptr_t)probe_movs_insn, dst);
    if (out[0] != src || out[1] != dst)
        return test_fail(r, "after the #PF rsi=0x%lx rdi=0x%lx, expected 0x%lx 0x%lx",
                         out[0], out[1], src, dst);

    /* The next APIC access is intercepted again. */
    if (!stat_get(r, intercept_sel(), &e0, &hv))
        return false;
    uint32_t id = apic_read(APIC_ID) >> 24;
    if (!stat_get(r, intercept_sel(), &e1, &hv))
        return false;
    if (id != c->apic_id)
        return test_fail(r, "APIC ID read %u after the fault, expected %u", id, c->apic_id);
    if (!hv)
        return test_pass(r, "one #PF err=0x2 at the MOVS %s", native_note);
    if (exc1 - exc0 < 1)
        return test_fail(r, "STATS 0x201 (steps ended by an exception) went %lu -> %lu",
                         exc0, exc1);
    if (e1 - e0 < 1)
        return test_fail(r, "an APIC read after the fault caused no %s (%lu -> %lu): no "
                         "longer intercepted", intercept_name(), e0, e1);
    return test_pass(r, "one #PF err=0x2 at the MOVS; then one read: %lu %s(s)", e1 - e0,
                     intercept_name());
}

bool t_apic_fault_movs(struct test_result *r)
{
    np_page_setup();
    return run_on_all(movs_work, TIMEOUT_WORK, r);
}

/* ---- apic_guest_tf ----------------------------------------------------------------- */
static bool db_hook(struct trap_frame *f)
{
    struct cpu *c = this_cpu();
    uint64_t dr6;

    __asm__ volatile("mov %%dr6, %0" : "=r"(dr6));
    if (c->db_count++ == 0) {
        c->db_rip = f->rip;
        c->db_dr6 = dr6;
    }
    __asm__ volatile("mov %0, %%dr6" : : "r"(0ull));   /* the handler clears DR6 */
    f->rflags &= ~RFLAGS_TF;
    return true;
}

/* One round: `probe` sets TF (and IF for the second round) over an APIC read; exactly
 * one #DB must follow, after the read. */
static bool tf_round(struct test_result *r, uint32_t (*probe)(uint64_t), void (*after)(void),
                     const char *what)
{
    struct cpu *c = this_cpu();
    const uint64_t want = (uint64_t)(uintptr_t)after;
    uint64_t rflags;

    c->db_count = 0;
    c->db_rip = c->db_dr6 = 0;
    __asm__ volatile("mov %0, %%dr6" : : "r"(0ull));
    uint32_t id = probe(apic_base() + APIC_ID) >> 24;
    __asm__ volatile("pushfq; popq %0" : "=r"(rflags));
    if (c->db_count != 1)
        return test_fail(r, "%s: %u #DB, expected one (first at rip=0x%lx)", what,
                         c->db_count, c->db_rip);
    if (c->db_rip != want)
        return test_fail(r, "%s: #DB at rip=0x%lx, expected 0x%lx (after the APIC read)",
                         what, c->db_rip, want);
    if (!(c->db_dr6 & DR6_BS))
        return test_fail(r, "%s: DR6=0x%lx without BS (bit 14)", what, c->db_dr6);
    if (rflags & RFLAGS_TF)
        return test_fail(r, "%s: TF still set after the handler cleared it", what);
    if (id != c->apic_id)
        return test_fail(r, "%s: the single-stepped read gave APIC ID %u, expected %u", what,
                         id, c->apic_id);
    return true;
}

static bool tf_work(struct test_result *r)
{
    if (!tf_round(r, probe_tf_read, probe_tf_read_after, "IF=0") ||
        !tf_round(r, probe_tf_if_read, probe_tf_if_read_after, "IF=1"))
        return false;
    return test_pass(r, "one #DB after the APIC read, with IF=0 and IF=1, DR6=0x%lx",
                     this_cpu()->db_dr6);
}

bool t_apic_guest_tf(struct test_result *r)
{
    trap_set_hook(VEC_DB, db_hook);
    bool ok = run_on_all(tf_work, TIMEOUT_WORK, r);
    trap_set_hook(VEC_DB, NULL);
    return ok;
}

/* ---- apic_relocate ----------------------------------------------------------------- */
/* Moves this CPU's APIC to APIC_ALT_BASE and back. Every access is made first and
 * judged after the APIC is home again, so that a failed check never leaves it moved. */
static bool relocate_work(struct test_result *r)
{
    struct cpu *c = this_cpu();
    const uint64_t msr = rdmsr(MSR_APIC_BASE), home = msr & APIC_BASE_ADDR;
    const uint64_t alt = APIC_ALT_BASE;
    uint64_t e0, e1, e2, e3;
    bool hv = false;

    if (msr & APIC_BASE_EXTD)
        return test_fail(r, "the APIC is in x2APIC mode (IA32_APIC_BASE 0x%lx)", msr);
    if (home == alt)
        return test_fail(r, "the APIC already is at 0x%lx", alt);
    const uint32_t id_reg = apic_read(APIC_ID), ver_reg = apic_read(APIC_VERSION);
    /* What an address with nothing behind it reads (Bochs: all ones; QEMU: 0), taken at
     * the new base before the move, is what the old base must read after it. */
    const uint32_t alt_before = mmio_read32(alt + APIC_ID);
    const uint32_t alt_ver_before = mmio_read32(alt + APIC_VERSION);

    if (!stat_get(r, intercept_sel(), &e0, &hv))
        return false;
    wrmsr(MSR_APIC_BASE, (msr & ~APIC_BASE_ADDR) | alt);
    c->apic_base = alt;
    const uint32_t id_alt = mmio_read32(alt + APIC_ID);
    const uint32_t ver_alt = mmio_read32(alt + APIC_VERSION);
    (void)stat_get(r, intercept_sel(), &e1, &hv);
    const uint32_t home_moved = mmio_read32(home + APIC_ID);
    const uint32_t home_ver_moved = mmio_read32(home + APIC_VERSION);
    const uint64_t msr_moved = rdmsr(MSR_APIC_BASE);

    wrmsr(MSR_APIC_BASE, msr);
    c->apic_base = home;
    (void)stat_get(r, intercept_sel(), &e2, &hv);
    const uint32_t id_back = mmio_read32(home + APIC_ID);
    if (!stat_get(r, intercept_sel(), &e3, &hv))
        return false;
    const uint32_t alt_after = mmio_read32(alt + APIC_ID);
    const uint64_t msr_after = rdmsr(MSR_APIC_BASE);

    const uint32_t none = alt_before;
    if ((none != 0xffffffffu && none != 0) || alt_ver_before != none)
        return test_fail(r, "0x%lx reads 0x%x (0x%x at +0x30) before the move: something "
                         "is there", alt, alt_before, alt_ver_before);
    if (msr_moved != ((msr & ~APIC_BASE_ADDR) | alt))
        return test_fail(r, "IA32_APIC_BASE reads 0x%lx after writing 0x%lx", msr_moved,
                         (uint64_t)((msr & ~APIC_BASE_ADDR) | alt));
    if (id_alt != id_reg || ver_alt != ver_reg)
        return test_fail(r, "via the new base 0x%lx: ID 0x%x, version 0x%x; expected 0x%x, "
                         "0x%x", alt, id_alt, ver_alt, id_reg, ver_reg);
    if (home_moved != none || home_ver_moved != none)
        return test_fail(r, "the old base 0x%lx reads 0x%x at 0x20 and 0x%x at 0x30 after "
                         "the move, expected 0x%x as at an empty address", home, home_moved,
                         home_ver_moved, none);
    if (msr_after != msr)
        return test_fail(r, "IA32_APIC_BASE 0x%lx after moving back, expected 0x%lx",
                         msr_after, msr);
    if (id_back != id_reg)
        return test_fail(r, "APIC ID via the old base after moving back: 0x%x, expected "
                         "0x%x", id_back, id_reg);
    if (alt_after != none)
        return test_fail(r, "0x%lx reads 0x%x after moving back, expected 0x%x", alt,
                         alt_after, none);
    if (!hv)
        return test_pass(r, "0x%lx -> 0x%lx -> back %s", home, alt, native_note);
    if (e1 - e0 < 1)
        return test_fail(r, "the read via the new base caused no %s (%lu -> %lu): not "
                         "intercepted", intercept_name(), e0, e1);
    if (e3 - e2 < 1)
        return test_fail(r, "the read via the old base after moving back caused no %s "
                         "(%lu -> %lu)", intercept_name(), e2, e3);
    return test_pass(r, "0x%lx -> 0x%lx -> back, reads at each intercepted", home, alt);
}

bool t_apic_relocate(struct test_result *r)
{
    /* Checked natively: QEMU (TCG) keeps the xAPIC at 0xfee00000 whatever
     * IA32_APIC_BASE says, so the case cannot pass there with or without a hypervisor. */
    if (smbios_manufacturer_is("QEMU"))
        return test_pass(r, "(skipped: QEMU does not relocate the xAPIC)");
    for (uint32_t i = 0; i < e820_count; i++) {
        const struct e820_slot *e = &e820_map[i];
        if (e->length && e->base < APIC_ALT_BASE + 0x1000 && e->base + e->length > APIC_ALT_BASE)
            return test_fail(r, "E820 entry %u [0x%lx, +0x%lx) type %u covers 0x%llx", i,
                             e->base, e->length, e->type, APIC_ALT_BASE);
    }
    /* One CPU at a time: the others are idle (no APIC access) meanwhile. */
    unsigned done = 0;
    for (unsigned i = 0; i < ncpus; i++) {
        struct test_result sr;
        if (cpus[i].state != CPU_ONLINE)
            continue;
        if (!run_on(&cpus[i], relocate_work, TIMEOUT_WORK, &sr))
            return test_fail(r, "cpu %u (APIC ID %u): %s", i, cpus[i].apic_id, sr.msg);
        if (i == 0)
            memcpy(r->msg, sr.msg, sizeof r->msg);
        done++;
    }
    if (done < ncpus)
        return test_fail(r, "passed on the %u online CPUs, but the MADT lists %u", done,
                         ncpus);
    return true;
}

/* ---- ap_restart --------------------------------------------------------------------- */
/* INIT to a running AP puts it into wait-for-SIPI; STARTUP restarts it in real mode at
 * CS:IP = vector << 8 : 0 (SDM Vol. 3A, 9.4 "Multiple-Processor (MP) Initialization"
 * and 11.6.1, delivery modes INIT and Start-Up). Two rounds on AP 1. */
#define RESTART_ROUNDS   2u

static volatile uint32_t restart_slot;     /* the restarted AP's job writes its ID */

static bool restart_job(struct test_result *r)
{
    __atomic_store_n(&restart_slot, apic_read(APIC_ID) >> 24, __ATOMIC_RELEASE);
    return test_pass(r, "job ran");
}

static volatile uint16_t *tramp_word(const uint8_t *sym)
{
    return (volatile uint16_t *)(uintptr_t)(AP_TRAMPOLINE + (uintptr_t)(sym - ap_tramp_start));
}

/* True when c's heartbeat (its idle loop in ap_main) moves within the timeout. */
static bool heartbeat_moves(const struct cpu *c, uint64_t timeout)
{
    const uint64_t h0 = c->heartbeat, t0 = rdtsc();
    while (c->heartbeat == h0) {
        if (rdtsc() - t0 > timeout)
            return false;
        cpu_relax();
    }
    return true;
}

/* One round on ap (online, idle): INIT, 10 ms, it must have stopped; STARTUP x2; it
 * must start once, in real mode at the trampoline, report once, do a job and idle
 * again. After a failed check the round parks it (INIT: wait-for-SIPI; CPU_LOST, not
 * used again), so that the cases and the statistics after it cannot hang on it. */
static bool restart_round(struct cpu *ap, struct test_result *r)
{
    volatile uint16_t *seen_cs = tramp_word(ap_tramp_seen_cs);
    volatile uint16_t *seen_msw = tramp_word(ap_tramp_seen_msw);
    volatile uint16_t *entries = tramp_word(ap_tramp_entries);
    const uint32_t want_cs = AP_TRAMPOLINE >> 4;
    struct test_result sr;

    if (ap->state != CPU_ONLINE)
        return test_fail(r, "AP 1 is not online");
    if (!heartbeat_moves(ap, TIMEOUT_WAIT)) {
        test_fail(r, "AP 1's heartbeat stands still before the INIT (not idle in its "
                  "wait loop)");
        goto park;
    }
    const uint32_t reports0 = __atomic_load_n(&ap_report_count, __ATOMIC_ACQUIRE);
    const uint16_t entries0 = *entries;
    *seen_cs = 0;
    *seen_msw = 0xffff;                 /* PE set: what a real-mode start must overwrite */

    /* Idle, no work posted: it may go. ap_main() sets it online again. */
    ap->state = CPU_OFFLINE;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL)) {
        test_fail(r, "INIT to APIC ID %u: delivery status stayed busy", ap->apic_id);
        goto park;
    }
    delay_ticks(TICKS_10MS);
    const uint64_t h1 = ap->heartbeat;
    delay_ticks(TICKS_10MS / 2);
    const uint64_t h2 = ap->heartbeat;
    if (h1 != h2) {
        test_fail(r, "AP 1 still runs its idle loop 10 ms after INIT (heartbeat %lu -> "
                  "%lu)", h1, h2);
        goto park;
    }
    if (ap_report_count != reports0 || *entries != entries0) {
        test_fail(r, "AP 1 restarted after INIT alone, without STARTUP (trampoline "
                  "entries %u -> %u)", entries0, *entries);
        goto park;
    }

    if (!smp_sipi_wait(ap, r->msg, sizeof r->msg))
        return false;                   /* it parked the AP */
    delay_ticks(TICKS_10MS);            /* time for a second, wrong start to show */
    const uint32_t nrep = __atomic_load_n(&ap_report_count, __ATOMIC_ACQUIRE) - reports0;
    const uint16_t nent = (uint16_t)(*entries - entries0);
    if (nent != 1) {
        test_fail(r, "the trampoline was entered %u times after STARTUP x2, expected "
                  "once", nent);
        goto park;
    }
    if (*seen_cs != want_cs || (*seen_msw & 1)) {
        test_fail(r, "the trampoline ran with CS=0x%x MSW=0x%x, expected CS=0x%x in "
                  "real mode (PE clear)", *seen_cs, *seen_msw, want_cs);
        goto park;
    }
    if (nrep != 1 || ap_reports[reports0] != ap->apic_id) {
        test_fail(r, "%u new reports (the first: APIC ID %u), expected one from APIC "
                  "ID %u", nrep, nrep ? ap_reports[reports0] : 0, ap->apic_id);
        goto park;
    }

    restart_slot = 0xffffffffu;
    if (!run_on(ap, restart_job, TIMEOUT_WORK, &sr)) {
        test_fail(r, "the job on the restarted AP: %s", sr.msg);
        goto park;
    }
    if (restart_slot != ap->apic_id) {
        test_fail(r, "the job wrote APIC ID 0x%x, expected %u", restart_slot,
                  ap->apic_id);
        goto park;
    }
    if (!heartbeat_moves(ap, TIMEOUT_WAIT)) {
        test_fail(r, "AP 1's heartbeat did not resume after the job");
        goto park;
    }
    return true;
park:
    apic_send_ipi(ap->apic_id, ICR_INIT | ICR_ASSERT | ICR_LEVEL);
    ap->state = CPU_LOST;
    return false;
}

bool t_ap_restart(struct test_result *r)
{
    if (!madt_ok)
        return test_fail(r, "MADT: %s", madt_why);
    if (ncpus < 2)
        return test_pass(r, "(skipped: needs 2 CPUs)");
    struct cpu *ap = &cpus[1];
    for (unsigned round = 1; round <= RESTART_ROUNDS; round++) {
        struct test_result rr = { "" };
        if (!restart_round(ap, &rr))
            return test_fail(r, "round %u of %u, APIC ID %u: %s", round, RESTART_ROUNDS,
                             ap->apic_id, rr.msg);
    }
    return test_pass(r, "APIC ID %u: %u x (INIT stops it; STARTUP x2 -> one start at "
                     "%04x:0000 in real mode, one report, job done, heartbeat back)",
                     ap->apic_id, RESTART_ROUNDS, AP_TRAMPOLINE >> 4);
}

/* ---- the closing statistics (informational) --------------------------------------- */
static bool stats_work(struct test_result *r)
{
    static const uint64_t sel[4] = { ST_EXITS_TOTAL, ST_EXIT_EPTV, ST_EXIT_MTF,
                                     ST_APIC_STEPS };
    struct cpu *c = this_cpu();
    c->stats_ok = true;
    for (unsigned i = 0; i < 4; i++) {
        if (hv_stat(sel[i], &c->stats[i]) != HV_STAT_OK)
            c->stats_ok = false;
    }
    (void)r;
    return true;
}

void print_hv_stats(void)
{
    if (!hv_present()) {
        con_printf("guest: stats: no hypervisor (VMCALL raised #UD), no exit counts\n");
        return;
    }
    for (unsigned i = 0; i < ncpus; i++) {
        struct test_result sr;
        struct cpu *c = &cpus[i];
        if (c->state != CPU_ONLINE || !run_on(c, stats_work, TIMEOUT_WAIT, &sr)) {
            con_printf("guest: stats cpu %u: not available (cpu not online)\n", i);
            continue;
        }
        if (!c->stats_ok) {
            con_printf("guest: stats cpu %u: the STATS hypercall failed\n", i);
            continue;
        }
        con_printf("guest: stats cpu %u: exits=%lu eptv=%lu mtf=%lu steps=%lu\n", i,
                   c->stats[0], c->stats[1], c->stats[2], c->stats[3]);
    }
}
