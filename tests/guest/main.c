/* The test runner: the table of cases, one line per case, the closing summary, and the
 * shutdown of the emulator. */
#include "guest.h"

/* Run in this order; later cases may rely on what earlier ones did to the hypervisor
 * (e.g. the HELLO count), never on their result. */
static const struct guest_test tests[] = {
    { "boot_state",               t_boot_state },
    { "e820_call",                t_e820_call },
    { "e820_hides_hypervisor",    t_e820_hides_hypervisor },
    { "memsize_calls",            t_memsize_calls },
    { "e820_hook_odd",            t_e820_hook_odd },
    { "hello_hypercall",          t_hello_hypercall },
    { "unknown_hypercall",        t_unknown_hypercall },
    { "hypervisor_write_blocked", t_hypervisor_write_blocked },
    { "runtime_info",             t_runtime_info },
    /* DMA by QEMU's edu device aimed at the hypervisor (dma_tests.c); skipped where
     * there is no edu device or no IOMMU */
    { "dma_protection",           t_dma_protection },
    /* the processor's own machinery as the guest sees it (msr_tests.c) */
    { "virt_hidden",              t_virt_hidden },
    { "mtrr_writes",              t_mtrr_writes },
    { "cr0_writes",               t_cr0_writes },
    { "task_switches",            t_task_switches },   /* BSP in 32-bit protected mode */
    /* not part of the hypervisor contract: the guest's own fault machinery */
    { "fault_recovery",           t_fault_recovery },
    /* guest SMP and xAPIC interception (smp_tests.c); ap_startup brings the APs up
     * for the cases after it, which use whichever CPUs are online */
    { "ap_startup",               t_ap_startup },
    { "ap_starts_ap",             t_ap_starts_ap },
    { "ipi_all_pairs",            t_ipi_all_pairs },
    { "apic_access_loop",         t_apic_access_loop },
    { "nmi_storm",                t_nmi_storm },
    { "apic_fault_movs",          t_apic_fault_movs },
    { "apic_guest_tf",            t_apic_guest_tf },
    { "apic_relocate",            t_apic_relocate },
    /* attacks on the capture of APIC writes (capture_tests.c), on the BSP */
    { "apic_movs_registers",      t_apic_movs_registers },
    { "apic_rep_iteration",       t_apic_rep_iteration },
    { "apic_event_push",          t_apic_event_push },
    { "apic_write_straddle",      t_apic_write_straddle },
    { "apic_base_anywhere",       t_apic_base_anywhere },
    /* hypapps other than helloworld (hypapp_tests.c); skipped when not built in */
    { "wprot_pages",              t_wprot_pages },
    { "iomon_ports",              t_iomon_ports },
    { "user_hypercall",           t_user_hypercall },
    /* INIT/STARTUP semantics (init_tests.c): AP 1 restarted many times, the BSP once;
     * before x2apic_mode, which leaves the BSP's APIC disabled on Bochs */
    { "debug_dr7_exit",           t_debug_dr7_exit },
    { "debug_apic_breakpoint",    t_debug_apic_breakpoint },
    { "debug_apic_tf",            t_debug_apic_tf },
    { "debug_rf_emulated",        t_debug_rf_emulated },
    { "apic_step_interrupts",     t_apic_step_interrupts },
    { "nmi_while_blocked",        t_nmi_while_blocked },
    { "init_self",                t_init_self },
    { "init_state",               t_init_state },
    { "init_starting",            t_init_starting },
    { "init_cross",               t_init_cross },
    { "init_physical",            t_init_physical },
    { "init_bsp",                 t_init_bsp },
    { "init_restart_refused",     t_init_restart_refused },
    /* last: they may leave AP 1 parked (CPU_LOST) when they fail */
    { "ap_restart",               t_ap_restart },
    { "x2apic_mode",              t_x2apic_mode },
    { "wprot_apic_off",           t_wprot_apic_off },    /* leaves AP 1's APIC off */
};

bool test_fail(struct test_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    this_cpu()->case_skipped = false;
    return false;
}

bool test_pass(struct test_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    this_cpu()->case_skipped = false;
    return true;
}

bool test_skip(struct test_result *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof r->msg, fmt, ap);
    va_end(ap);
    this_cpu()->case_skipped = true;
    return true;
}

bool run_case(const struct guest_test *t, struct test_result *r)
{
    /* The enclosing case's abort state (of this CPU), put back afterwards. None of these
     * locals changes after guest_setjmp(), so they are still valid after a longjmp. */
    struct cpu *const c = this_cpu();
    const struct jump_buf outer_jb = c->abort_jb;
    char *const outer_msg = c->abort_msg;
    const size_t outer_size = c->abort_msg_size;
    const bool outer_running = c->test_running;
    bool ok;

    memset(r, 0, sizeof *r);
    c->case_skipped = false;
    c->abort_msg = r->msg;
    c->abort_msg_size = sizeof r->msg;
    if (guest_setjmp(&c->abort_jb) == 0) {
        c->test_running = true;
        ok = t->run(r);
    } else {
        ok = false;     /* an unexpected exception; traps.c wrote r->msg */
    }
    c->test_running = outer_running;
    c->abort_jb = outer_jb;
    c->abort_msg = outer_msg;
    c->abort_msg_size = outer_size;
    return ok;
}

void guest_shutdown(void)
{
    static const char bochs_cmd[] = "Shutdown";

    serial_flush();                     /* or the emulator may cut the last line */
    for (const char *p = bochs_cmd; *p; p++)
        outb(0x8900, (uint8_t)*p);      /* Bochs shutdown port */
    outl(0xf4, 0x31);                   /* QEMU isa-debug-exit */
    for (;;)
        __asm__ volatile("cli; hlt");
}

void guest_main(void)
{
    unsigned passed = 0, failed = 0, skipped = 0;

    percpu_init_bsp();                  /* first: the trap handlers use this_cpu() */
    serial_init();
    trap_init();
    pic_disable();                      /* cases run with interrupts enabled at times */
    apic_sw_enable();
#ifdef GUEST_BENCH
    bench_main();
#endif
    smp_init();
    con_printf("\nguest: test guest started (entry %04x:%04x dl=0x%02x eflags=0x%x), "
               "%zu cases\n", boot_entry_cs, boot_entry_ip, boot_entry_dl,
               boot_entry_eflags, ARRAY_SIZE(tests));
    if (madt_ok)
        con_printf("guest: %u CPU(s) in the ACPI MADT, TSC tick scale %lu\n", ncpus,
                   tick_scale);
    else
        con_printf("guest: MADT not read (%s), TSC tick scale %lu\n", madt_why, tick_scale);
#ifdef GUEST_FAKE_HV
    fakehv_install();
    con_printf("guest: built with the FAKE hypervisor fakehv.c (self-test only)\n");
#endif

    for (size_t i = 0; i < ARRAY_SIZE(tests); i++) {
        const struct guest_test *t = &tests[i];
        struct test_result result;
        bool ok = run_case(t, &result);
        const bool skip = ok && this_cpu()->case_skipped;
        const char *verdict = !ok ? "FAIL" : skip ? "SKIP" : "PASS";
        if (!ok)
            failed++;
        else if (skip)
            skipped++;
        else
            passed++;
        if (result.msg[0])
            con_printf("guest: %s %s: %s\n", verdict, t->name, result.msg);
        else
            con_printf("guest: %s %s\n", verdict, t->name);
    }

    print_hv_stats();
    /* ", S skipped" only when there are any, so the line stays "P passed, F failed". */
    if (skipped)
        con_printf("guest: %u passed, %u failed, %u skipped\n", passed, failed, skipped);
    else
        con_printf("guest: %u passed, %u failed\n", passed, failed);
    guest_shutdown();
}
