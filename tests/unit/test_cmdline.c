/* Host tests of xmhf_parse_cmdline (xmhf/src/lib/cmdline.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cmdline.h"

#define COM1 0x3f8

struct result {
    int rc;
    struct xmhf_bootopts o;
    char err[128];
};

static struct result parse(const char *cmdline)
{
    struct result r;

    /* Poison both, so a field the parser forgets to set cannot pass by luck. */
    memset(&r, 0xa5, sizeof(r));
    r.rc = xmhf_parse_cmdline(cmdline, COM1, &r.o, r.err, sizeof(r.err));
    return r;
}

static void assert_defaults(const struct xmhf_bootopts *o)
{
    assert_int_equal(o->baud, 115200);
    assert_int_equal(o->serial_port, COM1);
    assert_int_equal(o->boot_drive, 0x80);
    assert_int_equal(o->apic_mode, XMHF_APIC_STEP);
    assert_int_equal(o->dmap, 1);
}

/* Checks rc == -1, that the message names `needle`, and that *out kept the defaults. */
static void assert_rejected(const char *cmdline, const char *needle)
{
    struct result r = parse(cmdline);

    assert_int_equal(r.rc, -1);
    assert_non_null(memchr(r.err, '\0', sizeof(r.err)));
    if (strstr(r.err, needle) == NULL)
        fail_msg("cmdline \"%s\": message \"%s\" does not contain \"%s\"", cmdline, r.err,
                 needle);
    assert_defaults(&r.o);
}

static void test_defaults(void **state)
{
    (void)state;
    const char *lines[] = { "", "   \t ", "/boot/init-x86-amd64.bin",
                            "  /boot/init-x86-amd64.bin  " };

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        struct result r = parse(lines[i]);
        assert_int_equal(r.rc, 0);
        assert_defaults(&r.o);
        assert_string_equal(r.err, "");
    }

    struct result r = parse(NULL);
    assert_int_equal(r.rc, 0);
    assert_defaults(&r.o);

    struct xmhf_bootopts o;
    assert_int_equal(xmhf_parse_cmdline("x", 0x2f8, &o, NULL, 0), 0);
    assert_int_equal(o.serial_port, 0x2f8);
}

static void test_full_line(void **state)
{
    (void)state;
    struct result r = parse("/boot/init-x86-amd64.bin serial=115200,8n1,0x3f8 boot_drive=0x80");

    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.baud, 115200);
    assert_int_equal(r.o.serial_port, 0x3f8);
    assert_int_equal(r.o.boot_drive, 0x80);

    r = parse("/boot/init\tserial=9600,8n1,0x2f8\t\tboot_drive=0x81 ");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.baud, 9600);
    assert_int_equal(r.o.serial_port, 0x2f8);
    assert_int_equal(r.o.boot_drive, 0x81);
}

/* Without an image path the first token is an option like any other. */
static void test_first_token_option(void **state)
{
    (void)state;
    struct result r = parse("boot_drive=0x81");

    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.boot_drive, 0x81);
    assert_int_equal(r.o.baud, 115200);

    /* Only the first token may be a bare word. */
    assert_rejected("/boot/init /boot/other", "'/boot/other'");
    assert_rejected("/boot/init boot_drive=0x81 extra", "missing '=' in 'extra'");
}

static void test_baud_divisors(void **state)
{
    (void)state;
    const uint32_t ok[] = { 115200, 57600, 38400, 28800, 23040, 19200, 14400, 9600, 4800,
                            2400, 1200, 600, 300, 150, 75, 50, 1, 7200, 3 };
    char line[64];

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(line, sizeof(line), "k serial=%u,8n1,0x3f8", (unsigned)ok[i]);
        struct result r = parse(line);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.o.baud, ok[i]);
    }
    /* Leading zeros are still a decimal number. */
    struct result r = parse("k serial=09600,8n1,0x3f8");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.baud, 9600);
}

static void test_port_forms(void **state)
{
    (void)state;
    struct {
        const char *line;
        uint16_t port;
    } cases[] = {
        { "k serial=115200,8n1,0x3F8", 0x3f8 },  { "k serial=115200,8n1,0X2f8", 0x2f8 },
        { "k serial=115200,8n1,0x1", 0x1 },      { "k serial=115200,8n1,0xffff", 0xffff },
        { "k serial=115200,8n1,0xFFFF", 0xffff }, { "k serial=115200,8n1,0x00e8", 0xe8 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct result r = parse(cases[i].line);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.o.serial_port, cases[i].port);
    }
}

static void test_selftest_option(void **state)
{
    (void)state;
    struct result r = parse("k serial=115200,8n1,0x3f8 selftest=pagefault");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.selftest, XMHF_SELFTEST_PAGEFAULT);
    r = parse("k serial=115200,8n1,0x3f8");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.selftest, 0);
    assert_rejected("k selftest=crash", "selftest: 'crash'");
    assert_rejected("k selftest=", "selftest=");
}

static void test_apic_option(void **state)
{
    (void)state;
    struct result r = parse("k apic=zeroexit");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.apic_mode, XMHF_APIC_ZEROEXIT);
    r = parse("k apic=zeroexit apic=step");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.apic_mode, XMHF_APIC_STEP);
    r = parse("k apic=step apic=zeroexit boot_drive=0x81");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.apic_mode, XMHF_APIC_ZEROEXIT);
    assert_int_equal(r.o.boot_drive, 0x81);
    /* Exact words only: a near miss must not fall back to either mode. */
    assert_rejected("k apic=ZEROEXIT", "apic: 'ZEROEXIT'");
    assert_rejected("k apic=zeroexit2", "apic: 'zeroexit2'");
    assert_rejected("k apic=zero", "apic: 'zero'");
    assert_rejected("k apic=steps", "apic: 'steps'");
    assert_rejected("k apic=zeroexit apic=x", "apic: 'x'");
    assert_rejected("k apic=", "apic=");
    assert_rejected("k apic", "apic");
}

static void test_dmap_option(void **state)
{
    (void)state;
    struct result r = parse("k dmap=off");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.dmap, 0);
    assert_int_equal(r.o.boot_drive, 0x80);
    r = parse("k dmap=off dmap=on serial=115200,8n1,0x2f8");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.dmap, 1);
    assert_int_equal(r.o.serial_port, 0x2f8);
    r = parse("k dmap=on dmap=off");
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.dmap, 0);
    /* A rejected line leaves the defaults, dmap on included. */
    assert_rejected("k dmap=no", "dmap: 'no'");
    assert_rejected("k dmap=OFF", "dmap: 'OFF'");
    assert_rejected("k dmap=off dmap=1", "dmap: '1'");
    assert_rejected("k dmap=", "dmap=");
    assert_rejected("k dmap", "dmap");
}

static void test_boot_drive_forms(void **state)
{
    (void)state;
    struct {
        const char *line;
        uint8_t drive;
    } cases[] = {
        { "k boot_drive=0x00", 0x00 }, { "k boot_drive=0x0", 0x00 },
        { "k boot_drive=0xff", 0xff }, { "k boot_drive=0XFE", 0xfe },
        { "k boot_drive=0x9f", 0x9f }, { "k boot_drive=0x000081", 0x81 },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct result r = parse(cases[i].line);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.o.boot_drive, cases[i].drive);
        assert_int_equal(r.o.baud, 115200);
    }
}

static void test_repeated_option_later_wins(void **state)
{
    (void)state;
    struct result r = parse("k boot_drive=0x81 serial=9600,8n1,0x2f8 boot_drive=0x82 "
                            "serial=38400,8n1,0x3e8");

    assert_int_equal(r.rc, 0);
    assert_int_equal(r.o.boot_drive, 0x82);
    assert_int_equal(r.o.baud, 38400);
    assert_int_equal(r.o.serial_port, 0x3e8);
}

static void test_unknown_and_malformed_tokens(void **state)
{
    (void)state;
    assert_rejected("k foo=1", "unknown option 'foo=1'");
    assert_rejected("foo=1", "unknown option 'foo=1'");
    assert_rejected("k Serial=115200,8n1,0x3f8", "unknown option 'Serial=115200,8n1,0x3f8'");
    assert_rejected("k =5", "unknown option '=5'");
    assert_rejected("k serial", "missing '=' in 'serial'");
    assert_rejected("k serial=", "empty value in 'serial='");
    assert_rejected("k boot_drive=", "empty value in 'boot_drive='");
    /* An error later on the line is reported even after good options. */
    assert_rejected("k serial=9600,8n1,0x2f8 bogus=1", "unknown option 'bogus=1'");
}

static void test_bad_baud(void **state)
{
    (void)state;
    assert_rejected("k serial=1234,8n1,0x3f8", "serial: baud '1234' does not divide 115200");
    assert_rejected("k serial=0,8n1,0x3f8", "baud '0'");
    assert_rejected("k serial=115201,8n1,0x3f8", "baud '115201'");
    assert_rejected("k serial=230400,8n1,0x3f8", "baud '230400'");
    assert_rejected("k serial=99999999999999999999,8n1,0x3f8", "baud '99999999999999999999'");
    assert_rejected("k serial=0x9600,8n1,0x3f8", "baud '0x9600'");
    assert_rejected("k serial=-9600,8n1,0x3f8", "baud '-9600'");
    assert_rejected("k serial=96 00,8n1,0x3f8", "serial=96");
    assert_rejected("k serial=,8n1,0x3f8", "baud ''");
}

static void test_bad_format(void **state)
{
    (void)state;
    assert_rejected("k serial=115200,8n2,0x3f8", "'8n2'");
    assert_rejected("k serial=115200,7e1,0x3f8", "'7e1'");
    assert_rejected("k serial=115200,8N1,0x3f8", "'8N1'");
    assert_rejected("k serial=115200,,0x3f8", "''");
    assert_rejected("k serial=115200,8n1", "serial: expected BAUD,8n1,PORT in "
                                           "'serial=115200,8n1'");
    assert_rejected("k serial=115200", "'serial=115200'");
}

static void test_bad_port(void **state)
{
    (void)state;
    assert_rejected("k serial=115200,8n1,0x0", "port '0x0'");
    assert_rejected("k serial=115200,8n1,0x10000", "port '0x10000'");
    assert_rejected("k serial=115200,8n1,0x3g8", "port '0x3g8'");
    assert_rejected("k serial=115200,8n1,1016", "port '1016'");
    assert_rejected("k serial=115200,8n1,0x", "port '0x'");
    assert_rejected("k serial=115200,8n1,", "port ''");
    assert_rejected("k serial=115200,8n1,0xfffffffff3f8", "port '0xfffffffff3f8'");
    assert_rejected("k serial=115200,8n1,0x3f8,", "trailing junk in 'serial=115200,8n1,0x3f8,'");
    assert_rejected("k serial=115200,8n1,0x3f8,1", "trailing junk");
    assert_rejected("k serial=115200,8n1,0x3f8x", "port '0x3f8x'");
}

static void test_bad_boot_drive(void **state)
{
    (void)state;
    assert_rejected("k boot_drive=128", "boot_drive: '128'");
    assert_rejected("k boot_drive=0x100", "'0x100'");
    assert_rejected("k boot_drive=0x", "'0x'");
    assert_rejected("k boot_drive=0x8z", "'0x8z'");
    assert_rejected("k boot_drive=0x80,", "'0x80,'");
    assert_rejected("k boot_drive=x80", "'x80'");
}

/* The message is cut to errlen, always NUL-terminated, and nothing beyond errlen is
 * written. */
static void test_error_truncation(void **state)
{
    (void)state;
    char buf[16];
    struct xmhf_bootopts o;

    for (size_t len = 1; len <= sizeof(buf); len++) {
        memset(buf, 'Z', sizeof(buf));
        assert_int_equal(xmhf_parse_cmdline("k foo=1", COM1, &o, buf, len), -1);
        assert_int_equal(strlen(buf), len - 1);
        assert_memory_equal(buf, "unknown option 'foo=1'", len - 1);
        for (size_t i = len; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'Z');
    }

    /* No buffer at all: still rejected, nothing written. */
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(xmhf_parse_cmdline("k foo=1", COM1, &o, buf, 0), -1);
    assert_int_equal(buf[0], 'Z');
    assert_int_equal(xmhf_parse_cmdline("k foo=1", COM1, &o, NULL, 0), -1);

    /* A clean parse clears a message left over from before. */
    strcpy(buf, "old");
    assert_int_equal(xmhf_parse_cmdline("k", COM1, &o, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_full_line),
        cmocka_unit_test(test_first_token_option),
        cmocka_unit_test(test_baud_divisors),
        cmocka_unit_test(test_port_forms),
        cmocka_unit_test(test_boot_drive_forms),
        cmocka_unit_test(test_selftest_option),
        cmocka_unit_test(test_apic_option),
        cmocka_unit_test(test_dmap_option),
        cmocka_unit_test(test_repeated_option_later_wins),
        cmocka_unit_test(test_unknown_and_malformed_tokens),
        cmocka_unit_test(test_bad_baud),
        cmocka_unit_test(test_bad_format),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_bad_boot_drive),
        cmocka_unit_test(test_error_truncation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
