/* Output on COM1 (0x3f8) and a small printf.
 *
 * The hypervisor has already programmed the UART (115200 8n1, the port it logs to), so
 * the guest only polls LSR.THRE and writes THR. On a machine without the hypervisor
 * (the Bochs self-test) the UART may still be in its reset state (5-bit words, DLAB
 * clear), so serial_init() programs it only when the line control register does not
 * already say "8 data bits, DLAB off". */
#include "guest.h"

#define COM1      0x3f8
#define UART_THR  0     /* transmit holding register (DLAB = 0) */
#define UART_IER  1
#define UART_DLL  0     /* divisor latch, DLAB = 1 */
#define UART_DLM  1
#define UART_FCR  2
#define UART_LCR  3
#define UART_MCR  4
#define UART_LSR  5
#define LCR_8N1   0x03
#define LCR_DLAB  0x80
#define LSR_THRE  0x20    /* transmit holding register empty */
#define LSR_TEMT  0x40    /* transmitter completely idle */

void serial_init(void)
{
    uint8_t lcr = inb(COM1 + UART_LCR);

    if ((lcr & (LCR_DLAB | 0x3)) == LCR_8N1)
        return;                         /* set up by the hypervisor (or the BIOS) */
    outb(COM1 + UART_IER, 0);
    outb(COM1 + UART_LCR, LCR_DLAB);
    outb(COM1 + UART_DLL, 1);           /* 115200 baud */
    outb(COM1 + UART_DLM, 0);
    outb(COM1 + UART_LCR, LCR_8N1);
    outb(COM1 + UART_FCR, 0x07);        /* enable and clear the FIFOs */
    outb(COM1 + UART_MCR, 0x03);        /* DTR, RTS */
}

static void serial_putc(char c)
{
    /* bounded: a missing UART must not hang the guest */
    for (unsigned spin = 0; spin < 1000000; spin++) {
        if (inb(COM1 + UART_LSR) & LSR_THRE)
            break;
    }
    outb(COM1 + UART_THR, (uint8_t)c);
}

void serial_flush(void)
{
    for (unsigned spin = 0; spin < 1000000; spin++) {
        if (inb(COM1 + UART_LSR) & LSR_TEMT)
            break;
    }
}

/* One CPU prints at a time (for the SMP tests to come). The lock is held only while
 * the already formatted text is sent, never while formatting. */
static volatile uint32_t con_lock;

static void serial_write(const char *s, size_t n)
{
    while (__atomic_exchange_n(&con_lock, 1, __ATOMIC_ACQUIRE))
        __asm__ volatile("pause");
    for (size_t i = 0; i < n; i++)
        serial_putc(s[i]);
    __atomic_store_n(&con_lock, 0, __ATOMIC_RELEASE);
}

void con_printf(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = sizeof buf - 1;
    serial_write(buf, (size_t)n);
}

/* ---- formatting ---- */
struct out {
    char *buf;
    size_t size;
    size_t len;         /* characters produced, even past the end of buf */
};

static void out_c(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void out_pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        out_c(o, c);
}

static void out_num(struct out *o, uint64_t v, bool neg, unsigned base, bool upper,
                    int width, bool zero, bool left)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;

    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    int len = n + (neg ? 1 : 0);
    if (!left && !zero)
        out_pad(o, ' ', width - len);
    if (neg)
        out_c(o, '-');
    if (!left && zero)
        out_pad(o, '0', width - len);
    while (n)
        out_c(o, tmp[--n]);
    if (left)
        out_pad(o, ' ', width - len);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    struct out o = { buf, size, 0 };

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            out_c(&o, *fmt);
            continue;
        }
        fmt++;
        bool zero = false, left = false;
        for (;; fmt++) {
            if (*fmt == '0')
                zero = true;
            else if (*fmt == '-')
                left = true;
            else
                break;
        }
        int width = 0;
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        int lng = 0;                    /* 0 int, 1 long, 2 long long, 3 size_t */
        for (;; fmt++) {
            if (*fmt == 'l')
                lng = lng < 2 ? lng + 1 : 2;
            else if (*fmt == 'z')
                lng = 3;
            else
                break;
        }
        uint64_t u;
        int64_t s;
        switch (*fmt) {
        case 'd':
        case 'i':
            switch (lng) {
            case 0:  s = va_arg(ap, int); break;
            case 1:  s = va_arg(ap, long); break;
            case 2:  s = va_arg(ap, long long); break;
            default: s = (int64_t)va_arg(ap, size_t); break;
            }
            u = s < 0 ? -(uint64_t)s : (uint64_t)s;
            out_num(&o, u, s < 0, 10, false, width, zero, left);
            break;
        case 'u':
        case 'x':
        case 'X':
            switch (lng) {
            case 0:  u = va_arg(ap, unsigned int); break;
            case 1:  u = va_arg(ap, unsigned long); break;
            case 2:  u = va_arg(ap, unsigned long long); break;
            default: u = va_arg(ap, size_t); break;
            }
            out_num(&o, u, false, *fmt == 'u' ? 10 : 16, *fmt == 'X', width, zero, left);
            break;
        case 'p':
            out_c(&o, '0');
            out_c(&o, 'x');
            out_num(&o, (uint64_t)(uintptr_t)va_arg(ap, void *), false, 16, false,
                    width, zero, left);
            break;
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            int len = (int)strlen(str);
            if (!left)
                out_pad(&o, ' ', width - len);
            while (*str)
                out_c(&o, *str++);
            if (left)
                out_pad(&o, ' ', width - len);
            break;
        }
        case 'c':
            out_c(&o, (char)va_arg(ap, int));
            break;
        case '%':
            out_c(&o, '%');
            break;
        case '\0':
            fmt--;                      /* a lone '%' at the end */
            break;
        default:                        /* unknown: print it as written */
            out_c(&o, '%');
            out_c(&o, *fmt);
            break;
        }
    }
    if (size)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}
