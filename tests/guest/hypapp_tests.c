/* Cases for the hypapps other than helloworld (hypapps/wprot, hypapps/iomon). The test
 * guest is the same binary under every build: a case whose hypapp is not built in (its
 * probe hypercall answers "unknown") or that runs without a hypervisor says so in a
 * SKIP line (test_skip). */
#include "guest.h"

#define TIMEOUT_HYPAPP (1000000000ull * tick_scale)

/* One hypercall with RBX/RCX arguments; false (with r->msg) when VMCALL faulted. */
static bool hc3(struct test_result *r, uint64_t fn, uint64_t bx, uint64_t cx, struct hc_regs *out)
{
    struct fault_info f;
    *out = (struct hc_regs){ .rax = fn, .rbx = bx, .rcx = cx };
    hc_fill_patterns(out);
    if (!hypercall(out, &f))
        return test_fail(r, "hypercall 0x%lx raised %s at rip=0x%lx", fn, trap_name(f.vector),
                         f.rip);
    const char *bad = hc_clobbered(out);
    if (bad)
        return test_fail(r, "hypercall 0x%lx changed %s", fn, bad);
    return true;
}

/* Whether the hypapp answering `fn` is there: 1 yes, 0 no (skipped; r->msg says why). */
static int hypapp_there(struct test_result *r, uint64_t fn, const char *name)
{
    struct hc_regs h = { .rax = fn };
    struct fault_info f;
    hc_fill_patterns(&h);
    if (!hypercall(&h, &f)) {
        test_skip(r, "no hypervisor (VMCALL raised %s)", trap_name(f.vector));
        return 0;
    }
    if (h.rax == HC_STATUS_UNKNOWN) {
        test_skip(r, "hypapp %s is not built in", name);
        return 0;
    }
    return 1;
}

/* ---- wprot_pages: hypapps/wprot ---------------------------------------------------- */
#define WP_PROTECT     0x100ull
#define WP_UNPROTECT   0x101ull
#define WP_QUERY       0x102ull
#define WP_EINVAL      1ull
#define WP_EPERM       2ull
#define WP_DENY        0
#define WP_WATCH       1
#define WP_NOEXEC      2
#define WP_PAGE        0x600000ul      /* free RAM (guest.h memory map) */
#define WP_CODE_PAGE   0x601000ul

static volatile uint64_t wp_value;  /* what every CPU writes to its slot next */

/* Each CPU's own 8-byte slot in WP_PAGE. */
static uint64_t wp_slot(void)
{
    return WP_PAGE + 8u * this_cpu()->idx;
}

/* Writes wp_value + index to the slot; must complete (also fills this CPU's TLB with a
 * writable translation of the page, which the protection must then take away). */
static bool wp_write_ok(struct test_result *r)
{
    struct fault_info f;
    uint64_t v = wp_value + this_cpu()->idx;
    if (mem_write64_faults(wp_slot(), v, &f) != 0)
        return test_fail(r, "write to 0x%lx raised %s at rip=0x%lx", wp_slot(),
                         trap_name(f.vector), f.rip);
    if (*(volatile uint64_t *)wp_slot() != v)
        return test_fail(r, "slot reads 0x%lx after writing 0x%lx",
                         *(volatile uint64_t *)wp_slot(), v);
    return true;
}

/* The slot is read-only now: a write gives one #GP(0) at the writing instruction and
 * leaves the old value; a read completes. */
static bool wp_write_denied(struct test_result *r)
{
    struct fault_info f;
    uint64_t old = wp_value + this_cpu()->idx, val = 0;
    unsigned n = mem_write64_faults(wp_slot(), 0x5757575757575757ull, &f);
    if (n != 1 || f.vector != VEC_GP || f.error != 0 ||
        f.rip != (uint64_t)(uintptr_t)probe_write64_insn)
        return test_fail(r, "write to the protected slot: %u faults (first %s err=0x%lx "
                         "rip=0x%lx), expected one #GP(0) at 0x%lx", n, trap_name(f.vector),
                         f.error, f.rip, (uint64_t)(uintptr_t)probe_write64_insn);
    if (mem_read64_faults(wp_slot(), &val, &f) != 0 || val != old)
        return test_fail(r, "read of the protected slot: value 0x%lx (expected 0x%lx), "
                         "faults %s", val, old, trap_name(f.vector));
    return true;
}

static bool wp_expect(struct test_result *r, const char *what, uint64_t fn, uint64_t bx,
                      uint64_t cx, uint64_t want)
{
    struct hc_regs h;
    if (!hc3(r, fn, bx, cx, &h))
        return false;
    if (h.rax != want)
        return test_fail(r, "%s: rax=0x%lx, expected 0x%lx", what, h.rax, want);
    return true;
}

static bool wp_query(struct test_result *r, uint64_t page, uint64_t count, uint64_t prot,
                     uint64_t rip)
{
    struct hc_regs h;
    if (!hc3(r, WP_QUERY, page, 0, &h))
        return false;
    if (h.rax != 0 || h.rbx != count || h.rdx != prot || (rip && h.rcx != rip))
        return test_fail(r, "WP_QUERY 0x%lx: rax=0x%lx violations=%lu rip=0x%lx prot=%lu, "
                         "expected 0, %lu, 0x%lx, %lu", page, h.rax, h.rbx, h.rcx, h.rdx,
                         count, rip, prot);
    return true;
}

static bool wp_deny_everywhere(struct test_result *r)
{
    const uint64_t wrip = (uint64_t)(uintptr_t)probe_write64_insn;
    unsigned online = cpus_online();
    wp_value = 0x1111000000000000ull;
    if (!run_on_all(wp_write_ok, TIMEOUT_HYPAPP, r) ||
        !wp_expect(r, "WP_PROTECT deny", WP_PROTECT, WP_PAGE, WP_DENY, 0) ||
        !wp_query(r, WP_PAGE, 0, 5, 0) || !run_on_all(wp_write_denied, TIMEOUT_HYPAPP, r) ||
        !wp_query(r, WP_PAGE, online, 5, wrip) ||
        !wp_expect(r, "WP_UNPROTECT", WP_UNPROTECT, WP_PAGE, 0, 0) ||
        !wp_query(r, WP_PAGE, 0, 7, 0))
        return false;
    wp_value = 0x2222000000000000ull;
    return run_on_all(wp_write_ok, TIMEOUT_HYPAPP, r);
}

static bool wp_watch_once(struct test_result *r)
{
    struct fault_info f;
    const uint64_t wrip = (uint64_t)(uintptr_t)probe_write64_insn;
    if (!wp_expect(r, "WP_PROTECT watch", WP_PROTECT, WP_PAGE, WP_WATCH, 0) ||
        !wp_query(r, WP_PAGE, 0, 5, 0))
        return false;
    for (uint64_t i = 0; i < 3; i++) {
        if (mem_write64_faults(WP_PAGE + 0x800, 0xabc0 + i, &f) != 0 ||
            *(volatile uint64_t *)(WP_PAGE + 0x800) != 0xabc0 + i)
            return test_fail(r, "watched write %lu did not complete (%s)", i,
                             trap_name(f.vector));
    }
    if (!wp_query(r, WP_PAGE, 1, 7, wrip) ||
        !wp_expect(r, "WP_UNPROTECT watch", WP_UNPROTECT, WP_PAGE, 0, 0))
        return false;
    /* Every CPU writes at once: whichever faults first ends the watch, the others'
     * writes complete (retried, not counted). */
    wp_value = 0x3333000000000000ull;
    return wp_expect(r, "WP_PROTECT watch", WP_PROTECT, WP_PAGE, WP_WATCH, 0) &&
           run_on_all(wp_write_ok, TIMEOUT_HYPAPP, r) && wp_query(r, WP_PAGE, 1, 7, wrip) &&
           wp_expect(r, "WP_UNPROTECT watch", WP_UNPROTECT, WP_PAGE, 0, 0);
}

/* mov $0x1234, %eax; ret */
static const uint8_t wp_code[] = { 0xb8, 0x34, 0x12, 0x00, 0x00, 0xc3 };

static bool wp_call_ok(struct test_result *r, const char *when)
{
    struct fault_info f;
    fault_expect((const void *)probe_call_recover);
    uint64_t v = probe_call(WP_CODE_PAGE);
    unsigned n = fault_expect_end(&f);
    if (n != 0 || v != 0x1234)
        return test_fail(r, "%s: call of 0x%lx returned 0x%lx, %u faults (%s rip=0x%lx)",
                         when, WP_CODE_PAGE, v, n, trap_name(f.vector), f.rip);
    return true;
}

static bool wp_noexec(struct test_result *r)
{
    struct fault_info f;
    memcpy((void *)(uintptr_t)WP_CODE_PAGE, wp_code, sizeof wp_code);
    if (!wp_call_ok(r, "unprotected") ||
        !wp_expect(r, "WP_PROTECT noexec", WP_PROTECT, WP_CODE_PAGE, WP_NOEXEC, 0) ||
        !wp_query(r, WP_CODE_PAGE, 0, 3, 0))
        return false;
    fault_expect((const void *)probe_call_recover);
    uint64_t v = probe_call(WP_CODE_PAGE);
    unsigned n = fault_expect_end(&f);
    if (n != 1 || f.vector != VEC_GP || f.error != 0 || f.rip != WP_CODE_PAGE)
        return test_fail(r, "call of a no-execute page: result 0x%lx, %u faults (first %s "
                         "err=0x%lx rip=0x%lx), expected one #GP(0) at 0x%lx", v, n,
                         trap_name(f.vector), f.error, f.rip, WP_CODE_PAGE);
    if (mem_write64_faults(WP_CODE_PAGE + 0x100, 7, &f) != 0 ||
        *(volatile uint8_t *)WP_CODE_PAGE != wp_code[0])
        return test_fail(r, "no-execute page: data access failed (%s)", trap_name(f.vector));
    return wp_query(r, WP_CODE_PAGE, 1, 3, WP_CODE_PAGE) &&
           wp_expect(r, "WP_UNPROTECT noexec", WP_UNPROTECT, WP_CODE_PAGE, 0, 0) &&
           wp_call_ok(r, "unprotected again");
}

/* The APIC page under DENY: each CPU's APIC trap still decides (its private entry), so
 * APIC reads and writes still work on every CPU. */
static bool wp_apic_still_works(struct test_result *r)
{
    uint32_t id = apic_read(APIC_ID);
    apic_write(APIC_EOI, 0);
    if (id >> 24 != this_cpu()->apic_id)
        return test_fail(r, "APIC ID register 0x%x under a protected APIC page", id);
    return true;
}

/* Requests the hypervisor must refuse. */
static bool wp_hostile(struct test_result *r)
{
    struct runtime_info ri;
    if (!get_runtime_info(&ri, r->msg, sizeof r->msg))
        return false;
    return wp_expect(r, "WP_PROTECT of the hypervisor's region", WP_PROTECT, ri.base + 0x2000,
                     WP_DENY, WP_EPERM) &&
           wp_expect(r, "WP_PROTECT beyond the physical address width", WP_PROTECT,
                     1ull << 52, WP_DENY, WP_EINVAL) &&
           wp_expect(r, "WP_PROTECT with mode 9", WP_PROTECT, WP_PAGE, 9, WP_EINVAL) &&
           wp_expect(r, "WP_UNPROTECT of a page never protected", WP_UNPROTECT, WP_PAGE, 0,
                     WP_EINVAL) &&
           wp_expect(r, "WP_PROTECT of the APIC page", WP_PROTECT, APIC_DEFAULT_BASE, WP_DENY,
                     0) &&
           run_on_all(wp_apic_still_works, TIMEOUT_HYPAPP, r) &&
           wp_expect(r, "WP_UNPROTECT of the APIC page", WP_UNPROTECT, APIC_DEFAULT_BASE, 0, 0);
}

bool t_wprot_pages(struct test_result *r)
{
    if (!hypapp_there(r, WP_QUERY, "wprot"))
        return true;
    if (!wp_deny_everywhere(r) || !wp_watch_once(r) || !wp_noexec(r) || !wp_hostile(r))
        return false;
    return test_pass(r, "deny on %u CPU(s), watch, no-execute, refusals", cpus_online());
}

/* ---- wprot_apic_off: hypapps/wprot, a CPU with its local APIC globally disabled ---- */
/* Such a CPU takes no IPI, so no NMI kick makes it flush its nested-paging TLB when a
 * page is protected; the hypervisor's timer must (Intel; README "APIC modes"). AP 1
 * writes the page (a writable translation in its TLB), disables its APIC and spins
 * without an exit (no PAUSE) until the page is protected; its next write must then be
 * refused, and the protection must not have waited for the kick's time-out. Bochs (as
 * the P6) cannot enable an APIC again without a reset, so this runs last and leaves AP 1
 * with its APIC off. */
#define WP_OFF_BOUND ((uint64_t)50000000 * tick_scale)   /* a kick time-out is ~4x this */
static volatile uint32_t wp_off_ready, wp_off_go;

static bool wp_apic_off_job(struct test_result *r)
{
    uint64_t base = rdmsr(MSR_APIC_BASE);
    if (!wp_write_ok(r))
        return false;
    if (base & APIC_BASE_EXTD)
        wrmsr(MSR_APIC_BASE, base & ~(APIC_BASE_ENABLE | APIC_BASE_EXTD));
    else
        wrmsr(MSR_APIC_BASE, base & ~APIC_BASE_ENABLE);
    __atomic_store_n(&wp_off_ready, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&wp_off_go, __ATOMIC_ACQUIRE))
        __asm__ volatile("" ::: "memory");
    return wp_write_denied(r);
}

bool t_wprot_apic_off(struct test_result *r)
{
    struct test_result sr;
    if (!hypapp_there(r, WP_QUERY, "wprot"))
        return true;
    if (cpu_is_amd)
        return test_skip(r, "SVM has no preemption timer: a CPU whose APIC is globally "
                         "disabled gets no flush kick (README)");
    if (ncpus < 2 || cpus[1].state != CPU_ONLINE)
        return test_skip(r, "needs AP 1 online");
    wp_value = 0x4444000000000000ull;
    wp_off_ready = wp_off_go = 0;
    if (!cpu_post(&cpus[1], wp_apic_off_job))
        return test_fail(r, "AP 1 is not online");
    uint64_t t0 = rdtsc();
    while (!__atomic_load_n(&wp_off_ready, __ATOMIC_ACQUIRE) && rdtsc() - t0 < TIMEOUT_HYPAPP)
        cpu_relax();
    uint64_t t1 = rdtsc();
    bool ok = wp_off_ready && wp_expect(r, "WP_PROTECT deny (AP 1's APIC off)", WP_PROTECT,
                                        WP_PAGE, WP_DENY, 0);
    uint64_t took = rdtsc() - t1;
    __atomic_store_n(&wp_off_go, 1, __ATOMIC_RELEASE);
    if (!cpu_wait(&cpus[1], TIMEOUT_HYPAPP, &sr))
        return test_fail(r, "AP 1 with its APIC off: %s", sr.msg);
    if (!ok)
        return wp_off_ready ? false : test_fail(r, "AP 1 did not disable its APIC");
    if (!wp_expect(r, "WP_UNPROTECT", WP_UNPROTECT, WP_PAGE, 0, 0))
        return false;
    if (took > WP_OFF_BOUND)
        return test_fail(r, "WP_PROTECT took %lu ticks with AP 1's APIC off (bound %lu): "
                         "its flush waited for a time-out", took, WP_OFF_BOUND);
    return test_pass(r, "AP 1's APIC off: protection in %lu ticks, its next write refused",
                     took);
}

/* ---- iomon_ports: hypapps/iomon ---------------------------------------------------- */
#define IOMON_STATS     0x200ull
#define IOMON_DEV       0xe0e0u
#define IOMON_SCRATCH   0x3ffu          /* COM1's scratch register: a real, harmless port */
#define MSR_IOMON_TOTAL 0x40000100u
#define MSR_IOMON_AUX   0x40000101u
#define MSR_TSC_AUX     0xc0000103u

static bool io_stats(struct test_result *r, uint16_t port, uint64_t count, uint64_t value,
                     uint64_t flags)
{
    struct hc_regs h;
    if (!hc3(r, IOMON_STATS, port, 0, &h))
        return false;
    if (h.rax != 0 || h.rbx != count || h.rcx != value || h.rdx != flags)
        return test_fail(r, "IOMON_STATS 0x%x: rax=0x%lx count=%lu value=0x%lx flags=0x%lx, "
                         "expected 0, %lu, 0x%lx, 0x%lx", port, h.rax, h.rbx, h.rcx, h.rdx,
                         count, value, flags);
    return true;
}

/* IN of each size into a RAX holding all ones above: AL/AX keep the rest, EAX clears it. */
static uint64_t io_in(unsigned size, uint16_t port)
{
    uint64_t rax = 0x1111111111111111ull;
    if (size == 1)
        __asm__ volatile("inb %w1, %b0" : "+a"(rax) : "Nd"(port));
    else if (size == 2)
        __asm__ volatile("inw %w1, %w0" : "+a"(rax) : "Nd"(port));
    else
        __asm__ volatile("inl %w1, %k0" : "+a"(rax) : "Nd"(port));
    return rax;
}

static bool io_device(struct test_result *r, uint64_t *count)
{
    outl(IOMON_DEV, 0x12345678u);
    uint64_t a = io_in(4, IOMON_DEV);
    __asm__ volatile("outb %b0, %w1" : : "a"(0xabu), "Nd"(IOMON_DEV));
    uint64_t b = io_in(1, IOMON_DEV), c = io_in(2, IOMON_DEV);
    *count += 5;
    if (a != 0x12345678u || b != 0x11111111111111abull || c != 0x11111111111156abull)
        return test_fail(r, "device: IN EAX 0x%lx, AL 0x%lx, AX 0x%lx; expected 0x12345678, "
                         "0x11111111111111ab, 0x11111111111156ab", a, b, c);
    return io_stats(r, IOMON_DEV, *count, 0x56ab, 0x201);
}

static bool io_passthrough(struct test_result *r)
{
    outb(IOMON_SCRATCH, 0x5a);
    uint8_t a = inb(IOMON_SCRATCH);
    outb(IOMON_SCRATCH, 0xa5);
    uint64_t b = io_in(1, IOMON_SCRATCH);
    if (a != 0x5a || b != 0x11111111111111a5ull)
        return test_fail(r, "COM1 scratch: read 0x%x and 0x%lx after writing 0x5a, 0xa5", a, b);
    return io_stats(r, IOMON_SCRATCH, 4, 0xa5, 0x101);
}

/* String forms: counted by iomon, left to the runtime, which refuses them with #GP(0)
 * at the instruction and moves nothing (RSI, RCX, the buffer unchanged). */
static bool io_strings(struct test_result *r, uint64_t *count)
{
    static uint8_t buf[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    struct fault_info f;
    uint64_t src = (uint64_t)(uintptr_t)buf;
    fault_expect((const void *)probe_outsb_recover);
    uint64_t rsi = probe_outsb(IOMON_DEV, src);
    unsigned n = fault_expect_end(&f);
    if (n != 1 || f.vector != VEC_GP || f.error != 0 ||
        f.rip != (uint64_t)(uintptr_t)probe_outsb_insn || rsi != src)
        return test_fail(r, "OUTSB: %u faults (first %s err=0x%lx rip=0x%lx), RSI +%lu; "
                         "expected one #GP(0) at the OUTSB, RSI kept", n, trap_name(f.vector),
                         f.error, f.rip, rsi - src);
    fault_expect((const void *)probe_rep_insb_recover);
    uint64_t rcx = probe_rep_insb(IOMON_DEV, src, 4);
    n = fault_expect_end(&f);
    if (n != 1 || f.vector != VEC_GP || f.rip != (uint64_t)(uintptr_t)probe_rep_insb_insn ||
        rcx != 4 || buf[0] != 1)
        return test_fail(r, "REP INSB: %u faults (first %s rip=0x%lx), RCX %lu, buf[0] %u; "
                         "expected one #GP(0) at the INSB, RCX 4, nothing stored", n,
                         trap_name(f.vector), f.rip, rcx, buf[0]);
    *count += 2;
    return io_stats(r, IOMON_DEV, *count, 0, 0x107);
}

static volatile uint32_t io_dev_bad;

static bool io_on_cpu(struct test_result *r)
{
    (void)r;
    for (unsigned i = 0; i < 10; i++) {
        if ((io_in(4, IOMON_DEV) & 0xffff) != 0x56ab)
            __atomic_add_fetch(&io_dev_bad, 1, __ATOMIC_RELAXED);
    }
    return true;
}

static bool io_cpuid_msr(struct test_result *r)
{
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x40000000u), "c"(0));
    if (a != 0x40000000u || b != 0x46484d58u || c != 0x6e6f6d69u || d != 0x6e)
        return test_fail(r, "CPUID 0x40000000: %x %x %x %x, expected iomon's signature", a, b,
                         c, d);
    uint64_t t = rdmsr(MSR_IOMON_TOTAL);
    wrmsr(MSR_IOMON_TOTAL, 0);
    uint64_t t0 = rdmsr(MSR_IOMON_TOTAL);
    (void)inb(IOMON_SCRATCH);
    uint64_t t1 = rdmsr(MSR_IOMON_TOTAL);
    uint64_t aux0 = rdmsr(MSR_IOMON_AUX);
    wrmsr(MSR_TSC_AUX, 0x77);
    uint64_t v = rdmsr(MSR_TSC_AUX), aux1 = rdmsr(MSR_IOMON_AUX);
    if (t < 17 || t0 != 0 || t1 != 1 || v != 0x77 || aux1 != aux0 + 1)
        return test_fail(r, "MSRs: total %lu then %lu after reset and %lu after one IN "
                         "(expected >= 17, 0, 1); TSC_AUX 0x%lx (0x77), its reads counted "
                         "%lu -> %lu", t, t0, t1, v, aux0, aux1);
    return true;
}

bool t_iomon_ports(struct test_result *r)
{
    uint64_t count = 0;
    if (!hypapp_there(r, IOMON_STATS, "iomon"))
        return true;
    if (!io_device(r, &count) || !io_passthrough(r) || !io_strings(r, &count))
        return false;
    io_dev_bad = 0;
    if (!run_on_all(io_on_cpu, TIMEOUT_HYPAPP, r))
        return false;
    count += 10 * cpus_online();
    if (io_dev_bad || !io_stats(r, IOMON_DEV, count, 0x123456ab, 0x401))
        return io_dev_bad ? test_fail(r, "%u device reads on other CPUs were wrong",
                                      io_dev_bad) : false;
    if (!io_cpuid_msr(r))
        return false;
    return test_pass(r, "device, pass-through, string refusal, %u CPU(s), CPUID and MSRs",
                     cpus_online());
}

/* ---- user_hypercall: hypercalls from CPL 3 ------------------------------------------ */
/* A GDT of the BSP's own for this case: the boot GDT's entries, then user data (0x20,
 * DPL 3), user 64-bit code (0x28, DPL 3) and a TSS (0x30) whose RSP0 is the kernel stack
 * an interrupt from CPL 3 lands on. The first 2 MiB (code, data, the user stack) get U/S
 * in the page tables for the case's duration. */
#define USER_VEC   0x81
#define PTE_US     0x4ull

struct __attribute__((packed)) tss64 {
    uint32_t rsvd0;
    uint64_t rsp0, rsp1, rsp2, rsvd1, ist[7], rsvd2;
    uint16_t rsvd3, iomap;
};
static struct tss64 user_tss;
static uint64_t user_gdt[8] __attribute__((aligned(16)));
static uint8_t user_stack[512] __attribute__((aligned(16)));
static struct jump_buf user_jb;
static volatile uint64_t user_vector, user_rip;
static struct hc_regs user_regs;

static bool user_back(struct trap_frame *f)
{
    user_vector = f->vector;
    user_rip = f->rip;
    guest_longjmp(&user_jb, 1);
}

static void user_setup(bool on)
{
    volatile uint64_t *pml4 = (volatile uint64_t *)(uintptr_t)GUEST_PT_BASE;
    volatile uint64_t *pdpt = pml4 + 512, *pd0 = pml4 + 1024;
    if (on) {
        struct __attribute__((packed)) { uint16_t limit; uint64_t base; } gdtr;
        __asm__ volatile("sgdt %0" : "=m"(gdtr));
        memcpy(user_gdt, (const void *)(uintptr_t)gdtr.base, 4 * 8);
        uint64_t t = (uint64_t)(uintptr_t)&user_tss;
        user_gdt[4] = 0x00cff2000000ffffull;    /* data, DPL 3 */
        user_gdt[5] = 0x00affa000000ffffull;    /* 64-bit code, DPL 3 */
        user_gdt[6] = (sizeof user_tss - 1) | ((t & 0xffffff) << 16) | (0x89ull << 40) |
                      ((t >> 24 & 0xff) << 56);
        user_gdt[7] = t >> 32;
        user_tss.iomap = sizeof user_tss;       /* no I/O bitmap: CPL 3 has no ports */
        gdtr.limit = sizeof user_gdt - 1;
        gdtr.base = (uint64_t)(uintptr_t)user_gdt;
        __asm__ volatile("lgdt %0; ltr %w1" : : "m"(gdtr), "r"(0x30) : "memory");
    }
    for (volatile uint64_t *e = pml4; e; e = e == pml4 ? pdpt : e == pdpt ? pd0 : NULL)
        *e = on ? *e | PTE_US : *e & ~PTE_US;
    __asm__ volatile("mov %%cr3, %%rax; mov %%rax, %%cr3" : : : "rax", "memory");
    idt_set_user(USER_VEC, on);
    trap_set_hook(USER_VEC, on ? user_back : NULL);
    trap_set_hook(VEC_UD, on ? user_back : NULL);
    trap_set_hook(VEC_GP, on ? user_back : NULL);
}

/* One hypercall at CPL 3: the INT 0x81 after it (true, *h = the registers) or the
 * exception it raised (false, user_vector / user_rip). */
static bool user_run(void (*code)(void), uint64_t fn, uint64_t bx, struct hc_regs *h)
{
    user_regs = (struct hc_regs){ .rax = fn, .rbx = bx };
    if (guest_setjmp(&user_jb) == 0) {
        uint64_t rsp;
        __asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
        user_tss.rsp0 = (rsp - 512) & ~0xfull;  /* below everything live on this stack */
        enter_user((uint64_t)(uintptr_t)code,
                   (uint64_t)(uintptr_t)(user_stack + sizeof user_stack),
                   (uint64_t)(uintptr_t)&user_regs);
    }
    *h = user_regs;
    return user_vector == USER_VEC;
}

static bool user_call(uint64_t fn, uint64_t bx, struct hc_regs *h)
{
    return user_run(user_vmcall, fn, bx, h);
}

static bool user_expect_ud(struct test_result *r, const char *what, uint64_t fn)
{
    struct hc_regs h;
    if (user_call(fn, 0, &h) || user_vector != VEC_UD ||
        user_rip != (uint64_t)(uintptr_t)user_vmcall_insn)
        return test_fail(r, "%s at CPL 3: vector %lu at rip 0x%lx (rax=0x%lx), expected #UD "
                         "at the VMCALL", what, user_vector, user_rip, h.rax);
    return true;
}

static bool user_cases(struct test_result *r)
{
    struct hc_regs h, k;
    bool answered = user_call(HC_HELLO, 0, &h);
    if (!answered || h.rax != 0 || h.rbx != HC_HELLO_MAGIC)
        return test_fail(r, "HELLO at CPL 3: %s vector %lu, rax=0x%lx rbx=0x%lx; expected "
                         "an answer", answered ? "answered," : "raised", user_vector, h.rax,
                         h.rbx);
    if (!user_expect_ud(r, "RUNTIME_INFO", HC_RUNTIME_INFO) ||
        !user_expect_ud(r, "STATS", HC_STATS) ||
        !user_expect_ud(r, "unknown hypapp function 0x7777", 0x7777))
        return false;
    /* The processor's I/O permission check (CPL 3 > IOPL 0, no TSS I/O bitmap) comes
     * before the I/O intercept: a hypapp's port never gives user code more. */
    if (user_run(user_inb, 0, 0, &h) || user_vector != VEC_GP ||
        user_rip != (uint64_t)(uintptr_t)user_inb_insn)
        return test_fail(r, "IN from 0xe0e0 at CPL 3: vector %lu at rip 0x%lx, expected "
                         "#GP(0) at the IN", user_vector, user_rip);
    /* wprot, when built in: it refuses protection to user code, answers queries. */
    if (!hc3(r, WP_QUERY, WP_PAGE, 0, &k))
        return false;
    if (k.rax != HC_STATUS_UNKNOWN &&
        (!user_call(WP_PROTECT, WP_PAGE, &h) || h.rax != WP_EPERM ||
         !user_call(WP_QUERY, WP_PAGE, &h) || h.rax != 0))
        return test_fail(r, "wprot at CPL 3: rax=0x%lx (vector %lu), expected EPERM for "
                         "WP_PROTECT and 0 for WP_QUERY", h.rax, user_vector);
    return true;
}

bool t_user_hypercall(struct test_result *r)
{
#ifdef GUEST_FAKE_HV
    return test_skip(r, "fakehv answers VMCALL from its own #UD hook");
#endif
    if (!hv_present())
        return test_skip(r, "no hypervisor");
    user_setup(true);
    struct test_result sub;
    struct guest_test t = { "user", user_cases };
    bool ok = run_case(&t, &sub);
    user_setup(false);
    memcpy(r->msg, sub.msg, sizeof r->msg);
    return ok ? test_pass(r, "HELLO answered at CPL 3; runtime and unknown functions #UD; "
                             "IN denied by IOPL") : false;
}
