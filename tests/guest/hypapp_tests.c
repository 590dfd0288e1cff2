/* Cases for the hypapps other than helloworld (hypapps/wprot, hypapps/iomon). The test
 * guest is the same binary under every build: a case whose hypapp is not built in (its
 * probe hypercall answers "unknown") or that runs without a hypervisor says so in a
 * PASS "skipped" line. */
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

/* Whether the hypapp answering `fn` is there: 1 yes, 0 no (r->msg says why; PASS). */
static int hypapp_there(struct test_result *r, uint64_t fn, const char *name)
{
    struct hc_regs h = { .rax = fn };
    struct fault_info f;
    hc_fill_patterns(&h);
    if (!hypercall(&h, &f)) {
        test_pass(r, "skipped: no hypervisor (VMCALL raised %s)", trap_name(f.vector));
        return 0;
    }
    if (h.rax == HC_STATUS_UNKNOWN) {
        test_pass(r, "skipped: hypapp %s is not built in", name);
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
    return wp_query(r, WP_PAGE, 1, 7, wrip) &&
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
