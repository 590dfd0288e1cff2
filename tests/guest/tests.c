/* The test cases. Each one returns true (PASS) or false with a reason in r->msg. */
#include "guest.h"

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)

/* RDX of the last HELLO answered (0: none yet), to check that the count goes up by 1. */
static uint64_t last_hello_count;

/* ---- 1. boot_state --------------------------------------------------------------- */
bool t_boot_state(struct test_result *r)
{
    if (boot_entry_cs != 0 || boot_entry_ip != 0x7c00)
        return test_fail(r, "entered at %04x:%04x, expected 0000:7c00",
                         boot_entry_cs, boot_entry_ip);
    if (boot_entry_dl != 0x80)
        return test_fail(r, "dl=0x%02x at entry, expected 0x80", boot_entry_dl);
    if (!boot_a20_ok)
        return test_fail(r, "A20 could not be enabled");
    return true;
}

/* ---- 2. e820_call ---------------------------------------------------------------- */
static bool e820_usable(const struct e820_slot *e)
{
    return e->type == E820_RAM && e->length != 0;
}

/* One past the end of an entry, clamped at 2^64 - 1 against overflow. */
static uint64_t e820_end(const struct e820_slot *e)
{
    uint64_t end = e->base + e->length;
    return end < e->base ? ~0ull : end;
}

bool t_e820_call(struct test_result *r)
{
    if (e820_flags & E820F_CF_FIRST)
        return test_fail(r, "the first INT 15h/E820 call returned CF set (eax=0x%x)",
                         e820_first_eax);
    if (e820_flags & E820F_BAD_SIG)
        return test_fail(r, "a call returned eax != 'SMAP' (first call: eax=0x%x)",
                         e820_first_eax);
    if (e820_first_eax != E820_SMAP)
        return test_fail(r, "first call returned eax=0x%x, expected 'SMAP'", e820_first_eax);
    if (e820_count < 2)
        return test_fail(r, "only %u entries", e820_count);
    for (uint32_t i = 0; i < e820_count; i++) {
        if (e820_len[i] < 20)
            return test_fail(r, "entry %u: the call wrote ecx=%u bytes (< 20)",
                             i, e820_len[i]);
    }

    uint64_t above_1m = 0;
    for (uint32_t i = 0; i < e820_count; i++) {
        const struct e820_slot *e = &e820_map[i];
        if (e820_usable(e) && e820_end(e) > MIB) {
            uint64_t lo = e->base > MIB ? e->base : MIB;
            above_1m += e820_end(e) - lo;
        }
    }
    if (above_1m == 0)
        return test_fail(r, "no usable RAM above 1 MiB in %u entries", e820_count);
    return test_pass(r, "%u entries%s, %lu MiB usable above 1 MiB", e820_count,
                     (e820_flags & E820F_TRUNCATED) ? " (truncated)" : "",
                     above_1m / MIB);
}

/* ---- 3. e820_hides_hypervisor ---------------------------------------------------- */
/* Walks from lo towards hi, each step through some non-usable entry containing the
 * current address; returns where it stopped (>= hi: all of [lo, hi) is reserved) and
 * the number of steps in *used. */
static uint64_t e820_reserved_run(uint64_t lo, uint64_t hi, unsigned *used)
{
    uint64_t at = lo;
    *used = 0;
    while (at < hi) {
        uint64_t next = at;
        for (uint32_t i = 0; i < e820_count; i++) {
            const struct e820_slot *e = &e820_map[i];
            if (e->type != E820_RAM && e->base <= at && e820_end(e) > next)
                next = e820_end(e);
        }
        if (next == at)
            break;
        at = next;
        (*used)++;
    }
    return at;
}

bool t_e820_hides_hypervisor(struct test_result *r)
{
    struct runtime_info ri;

    if (!get_runtime_info(&ri, r->msg, sizeof r->msg))
        return false;
    if (ri.size == 0)
        return test_fail(r, "RUNTIME_INFO reports size 0");
    uint64_t lo = ri.base, hi = ri.base + ri.size;

    for (uint32_t i = 0; i < e820_count; i++) {
        const struct e820_slot *e = &e820_map[i];
        if (e820_usable(e) && e->base < hi && e820_end(e) > lo)
            return test_fail(r, "usable entry %u [0x%lx, 0x%lx) overlaps the hypervisor "
                             "[0x%lx, 0x%lx)", i, e->base, e820_end(e), lo, hi);
    }

    unsigned used;
    uint64_t at = e820_reserved_run(lo, hi, &used);
    if (at < hi)
        return test_fail(r, "0x%lx (inside the hypervisor [0x%lx, 0x%lx)) is in no "
                         "reserved E820 entry", at, lo, hi);
    return test_pass(r, "[0x%lx, 0x%lx) reserved (%u entr%s)", lo, hi, used,
                     used == 1 ? "y" : "ies");
}

/* ---- 3b. memsize_calls ------------------------------------------------------------ */
/* The end of the usable RAM that runs on from `from` without a gap (across adjacent or
 * overlapping usable entries, so an unsanitized BIOS map works too); `from` itself when
 * it is not usable RAM. Each step moves to a larger entry end, so it ends. */
static uint64_t e820_usable_run(uint64_t from)
{
    uint64_t at = from;
    for (;;) {
        uint64_t next = at;
        for (uint32_t i = 0; i < e820_count; i++) {
            const struct e820_slot *e = &e820_map[i];
            if (e820_usable(e) && e->base <= at && e820_end(e) > next)
                next = e820_end(e);
        }
        if (next == at)
            return at;
        at = next;
    }
}

/* What INT 15h AX=E801h and AH=88h should answer for the collected E820 map: contiguous
 * usable RAM from 1 MiB (capped at 4 GiB): its KiB below 16 MiB, and its KiB in all (at
 * most 0xffff); if it reaches 16 MiB, the 64 KiB blocks of the run from 16 MiB. */
struct memsize_expect { uint64_t low_kb, blocks, kb88, top; };

static struct memsize_expect memsize_from_e820(void)
{
    const uint64_t mb16 = 16 * MIB, lim = 4 * GIB;
    struct memsize_expect x;
    uint64_t end = e820_usable_run(MIB);
    if (end > lim)
        end = lim;
    x.low_kb = ((end < mb16 ? end : mb16) - MIB) >> 10;
    x.kb88 = (end - MIB) >> 10;
    if (x.kb88 > 0xffff)
        x.kb88 = 0xffff;
    x.top = end >= mb16 ? e820_usable_run(mb16) : mb16;
    if (x.top > lim)
        x.top = lim;
    x.blocks = (x.top - mb16) >> 16;
    return x;
}

bool t_memsize_calls(struct test_result *r)
{
    const uint16_t ax = memsize_e801[0], bx = memsize_e801[1];
    const uint16_t cx = memsize_e801[2], dx = memsize_e801[3];

    if (memsize_e801_flags & 1)
        return test_fail(r, "INT 15h AX=E801h returned CF set (ax=0x%x)", ax);
    if (memsize_88_flags & 1)
        return test_fail(r, "INT 15h AH=88h returned CF set (ax=0x%x)", memsize_88_ax);
    if (ax != cx || bx != dx)
        return test_fail(r, "E801: ax=0x%x cx=0x%x, bx=0x%x dx=0x%x: expected ax=cx, "
                         "bx=dx", ax, cx, bx, dx);

    struct hc_regs h = { .rax = HC_RUNTIME_INFO };
    struct fault_info f;
    bool hv = hypercall(&h, &f);
    if (!hv && f.vector != VEC_UD)
        return test_fail(r, "RUNTIME_INFO VMCALL raised %s at rip=0x%lx",
                         trap_name(f.vector), f.rip);
    if (hv && h.rax != 0)
        return test_fail(r, "RUNTIME_INFO returned rax=0x%lx", h.rax);

    const struct memsize_expect x = memsize_from_e820();
    const uint64_t top = 16 * MIB + ((uint64_t)bx << 16);
    if (hv && top > h.rbx)
        return test_fail(r, "E801 reports RAM up to 0x%lx (bx=0x%x), past the hypervisor "
                         "at 0x%lx", top, bx, h.rbx);
    if (ax != x.low_kb)
        return test_fail(r, "E801: ax=0x%x KiB, E820 gives 0x%lx", ax, x.low_kb);
    /* Natively the Bochs BIOS answers both from the CMOS memory sizes: E801's BX also
     * counts the RAM at the top that its own E820 reserves (the ACPI tables), and 88h
     * stops at 0xfc00 KiB (63 MiB). Accepted there, and only there. */
    unsigned used;
    bool bx_ok = bx == x.blocks, kb88_ok = memsize_88_ax == x.kb88;
    const char *note_bx = "", *note_88 = "";
    if (!hv && !bx_ok && top > x.top && e820_reserved_run(x.top, top, &used) >= top) {
        bx_ok = true;
        note_bx = " (bx also counts the reserved top)";
    }
    if (!hv && !kb88_ok && x.kb88 > 0xfc00 && memsize_88_ax == 0xfc00) {
        kb88_ok = true;
        note_88 = " (BIOS cap 0xfc00)";
    }
    if (!bx_ok)
        return test_fail(r, "E801: bx=0x%x blocks (up to 0x%lx), E820 gives 0x%lx "
                         "(up to 0x%lx)", bx, top, x.blocks, x.top);
    if (!kb88_ok)
        return test_fail(r, "88h: ax=0x%x KiB, E820 gives 0x%lx", memsize_88_ax, x.kb88);
    if (hv)
        return test_pass(r, "E801 ax=0x%x bx=0x%x (RAM to 0x%lx, hypervisor at 0x%lx), "
                         "88h ax=0x%x: as E820", ax, bx, top, h.rbx, memsize_88_ax);
    return test_pass(r, "native: E801 ax=0x%x bx=0x%x%s, 88h ax=0x%x%s: as E820%s", ax, bx,
                     note_bx, memsize_88_ax, note_88,
                     *note_bx || *note_88 ? " but for the BIOS's CMOS-based sizes" : "");
}

/* ---- 4. hello_hypercall ---------------------------------------------------------- */
/* One HELLO with RCX = rcx_in; checks every documented result but the count, which it
 * returns in *count. */
static bool hello_once(struct test_result *r, uint64_t rcx_in, uint64_t *count)
{
    struct hc_regs h = { .rax = HC_HELLO, .rbx = 0x0b0b0b0b0b0b0b0bull, .rcx = rcx_in,
                         .rdx = 0x0d0d0d0d0d0d0d0dull };
    struct fault_info f;

    hc_fill_patterns(&h);
    if (!hypercall(&h, &f))
        return test_fail(r, "HELLO VMCALL raised %s err=0x%lx at rip=0x%lx%s",
                         trap_name(f.vector), f.error, f.rip,
                         f.vector == VEC_UD ? " (no hypervisor?)" : "");
    if (h.rax != 0)
        return test_fail(r, "HELLO: rax=0x%lx expected 0x0", h.rax);
    if (h.rbx != HC_HELLO_MAGIC)
        return test_fail(r, "HELLO: rbx=0x%lx expected 0x%llx", h.rbx, HC_HELLO_MAGIC);
    if (h.rcx != rcx_in + 1)
        return test_fail(r, "HELLO: rcx=0x%lx expected 0x%lx", h.rcx, rcx_in + 1);
    const char *bad = hc_clobbered(&h);
    if (bad)
        return test_fail(r, "HELLO changed %s", bad);
    *count = h.rdx;
    return true;
}

bool t_hello_hypercall(struct test_result *r)
{
    uint64_t n1, n2;

    if (!hello_once(r, 0x1234, &n1))
        return false;
    if (n1 == 0)
        return test_fail(r, "first HELLO: rdx=0, expected the count including this call");
    if (last_hello_count && n1 != last_hello_count + 1)
        return test_fail(r, "first HELLO: rdx=0x%lx expected 0x%lx", n1,
                         last_hello_count + 1);
    last_hello_count = n1;
    if (!hello_once(r, 0xfedcba9876543210ull, &n2))
        return false;
    if (n2 != n1 + 1)
        return test_fail(r, "second HELLO: rdx=0x%lx expected 0x%lx", n2, n1 + 1);
    last_hello_count = n2;
    return test_pass(r, "calls so far %lu", n2);
}

/* ---- 5. unknown_hypercall -------------------------------------------------------- */
bool t_unknown_hypercall(struct test_result *r)
{
    const uint64_t b = 0x1111222233334444ull, c = 0x5555666677778888ull,
                   d = 0x9999aaaabbbbccccull;
    struct hc_regs h = { .rax = 0x7fff0042, .rbx = b, .rcx = c, .rdx = d };
    struct fault_info f;

    hc_fill_patterns(&h);
    if (!hypercall(&h, &f))
        return test_fail(r, "VMCALL raised %s err=0x%lx at rip=0x%lx%s",
                         trap_name(f.vector), f.error, f.rip,
                         f.vector == VEC_UD ? " (no hypervisor?)" : "");
    if (h.rax != HC_STATUS_UNKNOWN)
        return test_fail(r, "rax=0x%lx expected 0x%llx", h.rax, HC_STATUS_UNKNOWN);
    if (h.rbx != b)
        return test_fail(r, "rbx=0x%lx expected 0x%lx (unchanged)", h.rbx, b);
    if (h.rcx != c)
        return test_fail(r, "rcx=0x%lx expected 0x%lx (unchanged)", h.rcx, c);
    if (h.rdx != d)
        return test_fail(r, "rdx=0x%lx expected 0x%lx (unchanged)", h.rdx, d);
    const char *bad = hc_clobbered(&h);
    if (bad)
        return test_fail(r, "unknown hypercall changed %s", bad);
    return true;
}

/* ---- 6. hypervisor_write_blocked ------------------------------------------------- */
static bool check_gp(struct test_result *r, const char *what, unsigned n,
                     const struct fault_info *f, void (*insn)(void))
{
    uint64_t want = (uint64_t)(uintptr_t)insn;

    if (n == 0)
        return test_fail(r, "%s completed without a fault", what);
    if (n != 1)
        return test_fail(r, "%s: %u faults, expected exactly one #GP (first %s)",
                         what, n, trap_name(f->vector));
    if (f->vector != VEC_GP)
        return test_fail(r, "%s: %s err=0x%lx rip=0x%lx cr2=0x%lx, expected #GP", what,
                         trap_name(f->vector), f->error, f->rip, f->cr2);
    if (f->error != 0)
        return test_fail(r, "%s: #GP error code 0x%lx, expected 0", what, f->error);
    if (f->rip != want)
        return test_fail(r, "%s: #GP rip=0x%lx, expected 0x%lx (the access)", what,
                         f->rip, want);
    return true;
}

bool t_hypervisor_write_blocked(struct test_result *r)
{
    struct runtime_info ri;
    struct fault_info f;
    uint64_t val;

    if (!get_runtime_info(&ri, r->msg, sizeof r->msg))
        return false;
    uint64_t addr = ri.base + 0x1000;
    if (ri.size <= 0x1000)
        return test_fail(r, "hypervisor region too small (size 0x%lx)", ri.size);

    unsigned n = mem_write64_faults(addr, 0xdeadbeefcafef00dull, &f);
    if (!check_gp(r, "write", n, &f, probe_write64_insn))
        return false;
    n = mem_read64_faults(addr, &val, &f);
    if (!check_gp(r, "read", n, &f, probe_read64_insn))
        return false;

    uint64_t count;
    if (!hello_once(r, 0x77, &count))
        return false;
    if (last_hello_count && count != last_hello_count + 1)
        return test_fail(r, "HELLO after the faults: rdx=0x%lx expected 0x%lx", count,
                         last_hello_count + 1);
    last_hello_count = count;
    return test_pass(r, "write and read of 0x%lx gave #GP(0)", addr);
}

/* ---- 7. runtime_info ------------------------------------------------------------- */
bool t_runtime_info(struct test_result *r)
{
    struct runtime_info ri;
    const uint64_t align = 2 * MIB;

    if (!get_runtime_info(&ri, r->msg, sizeof r->msg))
        return false;
    if (ri.size == 0)
        return test_fail(r, "size is 0");
    if (ri.base % align || ri.size % align)
        return test_fail(r, "base=0x%lx size=0x%lx not 2 MiB aligned", ri.base, ri.size);
    if (ri.base < MIB)
        return test_fail(r, "base=0x%lx below 1 MiB", ri.base);
    if (ri.base > 4 * GIB || ri.size > 4 * GIB - ri.base)
        return test_fail(r, "base=0x%lx size=0x%lx ends above 4 GiB", ri.base, ri.size);
    if (ri.cpus < 1 || ri.cpus > 1024)
        return test_fail(r, "cpus=%lu, expected 1..1024 (the hypervisor runs up to 1024)", ri.cpus);
    return test_pass(r, "base=0x%lx size=0x%lx cpus=%lu", ri.base, ri.size, ri.cpus);
}

/* ---- 8. fault_recovery ----------------------------------------------------------- */
/* Checks, on any machine, the machinery the other cases rely on: an expected #GP and
 * #PF are recorded with the right vector, error code, RIP and CR2 and execution
 * resumes; an unexpected exception aborts just the case that raised it. */
static bool ud2_case(struct test_result *r)
{
    probe_ud2();
    return test_fail(r, "ud2 did not fault");
}

bool t_fault_recovery(struct test_result *r)
{
    struct fault_info f;
    uint64_t val;
    const uint64_t noncanon = 0x8000000000001000ull;
    const uint64_t unmapped = 4 * GIB + 0x1238;     /* above the identity map */

    unsigned n = mem_write64_faults(noncanon, 1, &f);
    if (!check_gp(r, "non-canonical write", n, &f, probe_write64_insn))
        return false;

    n = mem_read64_faults(unmapped, &val, &f);
    if (n != 1 || f.vector != VEC_PF)
        return test_fail(r, "read of 0x%lx: %u faults, first %s, expected one #PF",
                         unmapped, n, n ? trap_name(f.vector) : "none");
    if (f.cr2 != unmapped || (f.error & 3) != 0 ||
        f.rip != (uint64_t)(uintptr_t)probe_read64_insn)
        return test_fail(r, "#PF recorded as err=0x%lx rip=0x%lx cr2=0x%lx, expected "
                         "err=0x0 rip=0x%lx cr2=0x%lx", f.error, f.rip, f.cr2,
                         (uint64_t)(uintptr_t)probe_read64_insn, unmapped);

    static const struct guest_test sub = { "ud2", ud2_case };
    struct test_result sr;
    char want[64];
    if (run_case(&sub, &sr))
        return test_fail(r, "a case raising #UD passed");
    snprintf(want, sizeof want, "unexpected #UD err=0x0 rip=0x%lx",
             (uint64_t)(uintptr_t)probe_ud2_insn);
    if (memcmp(sr.msg, want, strlen(want)) != 0)
        return test_fail(r, "aborted case reported \"%s\", expected \"%s...\"", sr.msg, want);
    return true;
}
