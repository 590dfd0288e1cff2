#ifndef XMHF_UART_H
#define XMHF_UART_H
#include <stdint.h>
void uart_init(uint16_t port, uint32_t baud);
void uart_putc(uint16_t port, char c);
#endif
