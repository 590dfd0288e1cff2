/* Boot command line parser (contract in cmdline.h).
 *
 * Runs before any console exists, so it is strict: a typo must surface as an error the
 * caller can print on the default serial port, never as a silently different setting.
 * No libc: this file is linked into the freestanding init image as well as the host tests. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cmdline.h"

#define UART_CLOCK_BAUD 115200u /* 1.8432 MHz / 16: the 16550 baud-rate generator input */

/* A token of the command line: not NUL-terminated, it points into the caller's string. */
struct span {
    const char *p;
    size_t len;
};

/* --- error messages ----------------------------------------------------------------- */

struct msg {
    char *buf;
    size_t cap; /* bytes available including the NUL; 0 means "no buffer" */
    size_t len;
};

static void msg_put(struct msg *m, const char *s, size_t n)
{
    if (m->cap == 0)
        return;
    for (size_t i = 0; i < n && m->len + 1 < m->cap; i++)
        m->buf[m->len++] = s[i];
    m->buf[m->len] = '\0';
}

static size_t cstr_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

/* Every message has one shape, "<pre>'<token>'<post>", so the user always sees which
 * piece of the command line was rejected. */
static int fail(char *err, size_t errlen, const char *pre, struct span tok, const char *post)
{
    struct msg m = { err, err != NULL ? errlen : 0, 0 };

    msg_put(&m, pre, cstr_len(pre));
    msg_put(&m, "'", 1);
    msg_put(&m, tok.p, tok.len);
    msg_put(&m, "'", 1);
    msg_put(&m, post, cstr_len(post));
    return -1;
}

/* --- small lexical helpers ---------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool span_eq(struct span s, const char *lit)
{
    size_t n = cstr_len(lit);

    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s.p[i] != lit[i])
            return false;
    return true;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "0x" / "0X" followed by at least one hex digit, value <= max. Values are bounded while
 * accumulating so an absurdly long digit string cannot wrap into range. */
static bool parse_hex(struct span s, uint32_t max, uint32_t *out)
{
    uint32_t v = 0;

    if (s.len < 3 || s.p[0] != '0' || (s.p[1] != 'x' && s.p[1] != 'X'))
        return false;
    for (size_t i = 2; i < s.len; i++) {
        int d = hex_digit(s.p[i]);
        if (d < 0)
            return false;
        v = v * 16u + (uint32_t)d;
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* Decimal digits only (no sign), value <= max. */
static bool parse_dec(struct span s, uint32_t max, uint32_t *out)
{
    uint32_t v = 0;

    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++) {
        if (s.p[i] < '0' || s.p[i] > '9')
            return false;
        v = v * 10u + (uint32_t)(s.p[i] - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* Splits off the text before the next ',' (or all of *rest); false when *rest is exhausted. */
static bool next_field(struct span *rest, struct span *field, bool *more)
{
    size_t i = 0;

    if (!*more)
        return false;
    while (i < rest->len && rest->p[i] != ',')
        i++;
    field->p = rest->p;
    field->len = i;
    *more = i < rest->len;
    if (*more) {
        rest->p += i + 1;
        rest->len -= i + 1;
    } else {
        rest->p += i;
        rest->len = 0;
    }
    return true;
}

/* --- options ------------------------------------------------------------------------ */

/* serial=BAUD,8n1,PORT */
static int opt_serial(struct span tok, struct span val, struct xmhf_bootopts *o, char *err,
                      size_t errlen)
{
    struct span rest = val, f_baud, f_fmt, f_port, junk;
    bool more = true;
    uint32_t baud, port;

    if (!next_field(&rest, &f_baud, &more) || !next_field(&rest, &f_fmt, &more) ||
        !next_field(&rest, &f_port, &more))
        return fail(err, errlen, "serial: expected BAUD,8n1,PORT in ", tok, "");
    if (next_field(&rest, &junk, &more))
        return fail(err, errlen, "serial: trailing junk in ", tok, "");

    /* Parsing is capped at one above the clock so "1152000" reads as too big, not as a
     * wrapped number. */
    if (!parse_dec(f_baud, UART_CLOCK_BAUD + 1u, &baud))
        return fail(err, errlen, "serial: baud ", f_baud, " is not a decimal number <= 115200");
    if (baud == 0 || baud > UART_CLOCK_BAUD)
        return fail(err, errlen, "serial: baud ", f_baud, " out of range 1..115200");
    /* The divisor latch holds an integer: any other rate would silently become a
     * different one. 32-bit division only (no libgcc in the -m32 build). */
    if (UART_CLOCK_BAUD % baud != 0)
        return fail(err, errlen, "serial: baud ", f_baud, " does not divide 115200");

    /* Only 8 data bits, no parity, 1 stop bit is programmed by the UART driver. */
    if (!span_eq(f_fmt, "8n1"))
        return fail(err, errlen, "serial: line format ", f_fmt, " is not 8n1");

    if (!parse_hex(f_port, 0xffffu, &port) || port == 0)
        return fail(err, errlen, "serial: port ", f_port, " is not hex 0x1..0xffff");

    o->baud = baud;
    o->serial_port = (uint16_t)port;
    return 0;
}

/* boot_drive=0xNN */
static int opt_boot_drive(struct span tok, struct span val, struct xmhf_bootopts *o,
                          char *err, size_t errlen)
{
    uint32_t drive;

    (void)tok;
    if (!parse_hex(val, 0xffu, &drive))
        return fail(err, errlen, "boot_drive: ", val, " is not hex 0x00..0xff");
    o->boot_drive = (uint8_t)drive;
    return 0;
}

/* selftest=pagefault */
static int opt_selftest(struct span tok, struct span val, struct xmhf_bootopts *o,
                        char *err, size_t errlen)
{
    (void)tok;
    if (!span_eq(val, "pagefault"))
        return fail(err, errlen, "selftest: ", val, " is not 'pagefault'");
    o->selftest = XMHF_SELFTEST_PAGEFAULT;
    return 0;
}

/* apic=step|zeroexit */
static int opt_apic(struct span tok, struct span val, struct xmhf_bootopts *o, char *err,
                    size_t errlen)
{
    (void)tok;
    if (span_eq(val, "step"))
        o->apic_mode = XMHF_APIC_STEP;
    else if (span_eq(val, "zeroexit"))
        o->apic_mode = XMHF_APIC_ZEROEXIT;
    else
        return fail(err, errlen, "apic: ", val, " is not 'step' or 'zeroexit'");
    return 0;
}

/* dmap=on|off */
static int opt_dmap(struct span tok, struct span val, struct xmhf_bootopts *o,
                    char *err, size_t errlen)
{
    (void)tok;
    if (span_eq(val, "on"))
        o->dmap = 1;
    else if (span_eq(val, "off"))
        o->dmap = 0;
    else
        return fail(err, errlen, "dmap: ", val, " is not 'on' or 'off'");
    return 0;
}

typedef int (*opt_fn)(struct span tok, struct span val, struct xmhf_bootopts *o, char *err,
                      size_t errlen);

static const struct {
    const char *key;
    opt_fn fn;
} options[] = {
    { "serial", opt_serial },
    { "boot_drive", opt_boot_drive },
    { "selftest", opt_selftest },
    { "apic", opt_apic },
    { "dmap", opt_dmap },
};

static int apply_token(struct span tok, struct xmhf_bootopts *o, char *err, size_t errlen)
{
    struct span key = { tok.p, 0 }, val;

    while (key.len < tok.len && tok.p[key.len] != '=')
        key.len++;
    if (key.len == tok.len)
        return fail(err, errlen, "missing '=' in ", tok, "");
    val.p = tok.p + key.len + 1;
    val.len = tok.len - key.len - 1;

    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        if (!span_eq(key, options[i].key))
            continue;
        if (val.len == 0)
            return fail(err, errlen, "empty value in ", tok, "");
        return options[i].fn(tok, val, o, err, errlen);
    }
    return fail(err, errlen, "unknown option ", tok, "");
}

int xmhf_parse_cmdline(const char *cmdline, uint16_t default_port,
                       struct xmhf_bootopts *out, char *err, size_t errlen)
{
    /* Options land in a copy so that on error *out still holds the plain defaults: the
     * caller needs a working console to report the error on. */
    struct xmhf_bootopts o = { UART_CLOCK_BAUD, default_port, 0x80, 0, XMHF_APIC_STEP, 1,
                               { 0, 0 } };
    const char *p = cmdline;
    bool first = true;

    out->baud = o.baud;
    out->serial_port = o.serial_port;
    out->boot_drive = o.boot_drive;
    out->selftest = o.selftest;
    out->apic_mode = o.apic_mode;
    out->dmap = o.dmap;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (p == NULL)
        return 0;

    for (;;) {
        struct span tok;
        bool has_eq = false;

        while (is_blank(*p))
            p++;
        if (*p == '\0')
            break;
        tok.p = p;
        while (*p != '\0' && !is_blank(*p)) {
            has_eq = has_eq || *p == '=';
            p++;
        }
        tok.len = (size_t)(p - tok.p);

        /* GRUB's multiboot command line starts with the image path. */
        if (first && !has_eq) {
            first = false;
            continue;
        }
        first = false;
        if (apply_token(tok, &o, err, errlen) != 0)
            return -1;
    }

    out->baud = o.baud;
    out->serial_port = o.serial_port;
    out->boot_drive = o.boot_drive;
    out->selftest = o.selftest;
    out->apic_mode = o.apic_mode;
    out->dmap = o.dmap;
    return 0;
}
