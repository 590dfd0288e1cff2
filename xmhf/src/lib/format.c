/* A small vsnprintf for the hypervisor (init and runtime): %s %c %d %i %u %x %X %p %%
 * with flags '0' '-' '#' (0x / 0X before a non-zero %x / %X, as C's printf), width, and
 * the l/ll/z length modifiers. An unknown conversion prints as written and takes no
 * argument, so a format must stay within this set (tests/unit/test_format.c). No 64-bit division,
 * so the 32-bit init links without libgcc. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct out {
    char *buf;
    size_t n, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->n)
        o->buf[o->len] = c;
    o->len++;
}

/* Divide by 10 with shifts and subtraction: i386 has no 64-bit divide instruction and
 * the runtime library that would supply one is not linked. */
static uint64_t divmod10(uint64_t v, unsigned *rem)
{
    uint64_t q = 0, r = 0;
    for (int i = 63; i >= 0; i--) {
        r = (r << 1) | ((v >> i) & 1);
        if (r >= 10) {
            r -= 10;
            q |= 1ull << i;
        }
    }
    *rem = (unsigned)r;
    return q;
}

static void put_num(struct out *o, uint64_t v, unsigned base, int upper, int neg,
                    int width, char pad, int left, int alt)
{
    char tmp[26];
    int n = 0;
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        unsigned d;
        if (base == 16) {
            d = (unsigned)(v & 15);
            v >>= 4;
        } else {
            v = divmod10(v, &d);
        }
        tmp[n++] = digits[d];
    } while (v);
    /* The prefix counts in the width and goes before zero padding: "%#06x" of 0x1f is
     * "0x001f". It is stored reversed like the digits. */
    int prefix = alt && base == 16 && n && !(n == 1 && tmp[0] == '0');
    if (neg)
        tmp[n++] = '-';
    if (prefix) {
        tmp[n++] = upper ? 'X' : 'x';
        tmp[n++] = '0';
    }
    int fill = width > n ? width - n : 0;
    if (!left && pad == '0' && prefix) {
        put(o, '0');
        put(o, upper ? 'X' : 'x');
        n -= 2;
    }
    if (!left && pad == '0' && neg) {
        put(o, '-');
        n--;
    }
    for (; !left && fill > 0; fill--)
        put(o, pad);
    while (n > 0)
        put(o, tmp[--n]);
    for (; left && fill > 0; fill--)
        put(o, ' ');
}

int vsnprintk(char *buf, size_t n, const char *fmt, va_list ap)
{
    struct out o = { buf, n, 0 };
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            put(&o, *fmt);
            continue;
        }
        fmt++;
        int left = 0, width = 0, lng = 0, alt = 0;
        char pad = ' ';
        for (; *fmt == '-' || *fmt == '0' || *fmt == '#'; fmt++) {
            if (*fmt == '-')
                left = 1;
            else if (*fmt == '#')
                alt = 1;
            else
                pad = '0';
        }
        for (; *fmt >= '0' && *fmt <= '9'; fmt++)
            width = width * 10 + (*fmt - '0');
        for (; *fmt == 'l' || *fmt == 'z'; fmt++)
            lng++;
        uint64_t u;
        int64_t s;
        switch (*fmt) {
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int len = 0;
            while (str[len])
                len++;
            for (int f = width - len; !left && f > 0; f--)
                put(&o, ' ');
            for (int i = 0; i < len; i++)
                put(&o, str[i]);
            for (int f = width - len; left && f > 0; f--)
                put(&o, ' ');
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd':
        case 'i':
            s = lng >= 2 ? va_arg(ap, long long) : lng ? va_arg(ap, long) : va_arg(ap, int);
            put_num(&o, s < 0 ? 0 - (uint64_t)s : (uint64_t)s, 10, 0, s < 0, width, pad, left, 0);
            break;
        case 'u':
        case 'x':
        case 'X':
            u = lng >= 2 ? va_arg(ap, unsigned long long)
                : lng ? va_arg(ap, unsigned long) : va_arg(ap, unsigned);
            put_num(&o, u, *fmt == 'u' ? 10 : 16, *fmt == 'X', 0, width, pad, left, alt);
            break;
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_num(&o, (uintptr_t)va_arg(ap, void *), 16, 0, 0, width, pad, left, 0);
            break;
        case '%':
            put(&o, '%');
            break;
        case '\0':
            fmt--;
            break;
        default:
            put(&o, '%');
            put(&o, *fmt);
            break;
        }
    }
    if (n)
        buf[o.len < n ? o.len : n - 1] = '\0';
    return (int)o.len;
}
