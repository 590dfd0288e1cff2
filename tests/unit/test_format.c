/* Host tests of the hypervisor's vsnprintk (xmhf/src/lib/format.c): every conversion
 * and flag the hypervisor's messages use, checked against strings written out by hand
 * (C's printf gives the same for these formats). Above all, a format's arguments must
 * stay in step: one the formatter did not know used to shift every later value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

int vsnprintk(char *buf, size_t n, const char *fmt, va_list ap);

static char out[128];

static int fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintk(out, sizeof(out), f, ap);
    va_end(ap);
    return n;
}

static void test_alternate_hex(void **state)
{
    (void)state;
    fmt("%#llx %s", 0x404ull, "next");
    assert_string_equal(out, "0x404 next");
    fmt("%#x|%#X|%#x", 0x1fu, 0xabu, 0u);
    assert_string_equal(out, "0x1f|0XAB|0");
    fmt("%#06x|%#8x|%-#8x|", 0x1fu, 0x1fu, 0x1fu);
    assert_string_equal(out, "0x001f|    0x1f|0x1f    |");
    /* The SVM exit report: code, then three more values that must come out in order. */
    fmt("code %#llx, info1 %llx info2 %llx rip %llx", (unsigned long long)-1, 0x11ull, 0x22ull,
        0x7c00ull);
    assert_string_equal(out, "code 0xffffffffffffffff, info1 11 info2 22 rip 7c00");
}

static void test_conversions(void **state)
{
    (void)state;
    fmt("%u %d %i %x %X %c %s %%", 42u, -5, 7, 0xbeefu, 0xbeefu, 'q', "str");
    assert_string_equal(out, "42 -5 7 beef BEEF q str %");
    fmt("%016llx|%08x|%04x|%02x", 0x1234ull, 0xabcu, 0x7c0u, 5u);
    assert_string_equal(out, "0000000000001234|00000abc|07c0|05");
    fmt("%llu %lld %zu", 18446744073709551615ull, -9223372036854775807ll - 1, (size_t)9);
    assert_string_equal(out, "18446744073709551615 -9223372036854775808 9");
    fmt("%05d|%-5d|%5s|%-5s|", -42, 42, "ab", "ab");
    assert_string_equal(out, "-0042|42   |   ab|ab   |");
    fmt("%p", (void *)0x1000);
    assert_string_equal(out, "0x1000");
    fmt("%s", (const char *)NULL);
    assert_string_equal(out, "(null)");
}

static int fmt_into(char *buf, size_t n, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int r = vsnprintk(buf, n, f, ap);
    va_end(ap);
    return r;
}

/* A short buffer gets the start of the text and its terminator; the return value is
 * the whole length, as snprintf's. */
static void test_truncation(void **state)
{
    (void)state;
    char small[6];
    memset(small, 'x', sizeof(small));
    assert_int_equal(fmt_into(small, sizeof(small), "%#llx!", 0x123456789ull), 12);
    assert_string_equal(small, "0x123");
    assert_int_equal(fmt_into(small, 0, "abc"), 3);
    assert_int_equal(small[0], '0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alternate_hex),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
