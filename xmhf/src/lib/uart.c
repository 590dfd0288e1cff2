/* 16550 UART output for the debug console (PC16550D datasheet: DLAB in LCR bit 7
 * selects the divisor latch; LSR bit 5 = transmit holding register empty). */
#include <stdint.h>
#include "x86.h"
#include "uart.h"

void uart_init(uint16_t port, uint32_t baud)
{
    uint32_t div = 115200u / (baud ? baud : 115200u);
    /* Let bytes still queued by an earlier stage go out first: the FIFO reset below
     * would drop them. LSR bit 6 = transmitter empty. Bounded: the UART may be absent. */
    for (unsigned i = 0; i < 100000u && !(inb(port + 5) & 0x40); i++)
        ;
    outb(port + 1, 0x00);               /* no interrupts: the hypervisor polls */
    outb(port + 3, 0x80);               /* DLAB on */
    outb(port + 0, (uint8_t)div);
    outb(port + 1, (uint8_t)(div >> 8));
    outb(port + 3, 0x03);               /* 8n1, DLAB off: without it some emulators send 5-bit characters */
    outb(port + 2, 0xc7);               /* FIFOs on and cleared */
    outb(port + 4, 0x03);               /* DTR, RTS */
}

void uart_putc(uint16_t port, char c)
{
    /* Bounded wait: a missing UART must not hang the hypervisor. */
    for (unsigned i = 0; i < 100000u && !(inb(port + 5) & 0x20); i++)
        ;
    outb(port, (uint8_t)c);
}
