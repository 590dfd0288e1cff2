/* The debug console: whole lines to the serial port under one named lock, so lines
 * from different CPUs never interleave. */
#include "uart.h"
#include "xmhf.h"

static uint16_t con_port;
static struct spinlock console_lock = SPINLOCK_INIT("console");

void spin_lock(struct spinlock *l)
{
    while (__atomic_exchange_n(&l->held, 1, __ATOMIC_ACQUIRE))
        while (l->held)
            cpu_pause();
}

void spin_unlock(struct spinlock *l)
{
    __atomic_store_n(&l->held, 0, __ATOMIC_RELEASE);
}

void console_init(uint16_t port, uint32_t baud)
{
    con_port = port;
    uart_init(port, baud);
}

static void console_write(const char *buf)
{
    /* A CPU that faults while printing must still get its last words out: after a
     * bounded wait the lock is taken over rather than waited for forever. */
    unsigned spins = 0;
    while (__atomic_exchange_n(&console_lock.held, 1, __ATOMIC_ACQUIRE) && ++spins < 50000000u)
        cpu_pause();
    for (; *buf; buf++) {
        if (*buf == '\n')
            uart_putc(con_port, '\r');
        uart_putc(con_port, *buf);
    }
    spin_unlock(&console_lock);
}

void printk(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    console_write(buf);
}

void panic(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintk(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    printk("xmhf: FATAL: %s\n", buf);
    halt_forever();
}
