/* The local APIC in xAPIC mode (SDM Vol. 3A, chapter 11 "Advanced Programmable Interrupt
 * Controller (APIC)"), the 8259 PICs (masked) and TSC delays. */
#include "guest.h"

uint64_t tick_scale = 1;

/* TSC ticks in 10 ms of PIT channel 2 (mode 0, count 11932 at 1.193182 MHz; the gate on,
 * the speaker off), or 0 when OUT never went high. */
static uint64_t tsc_per_10ms(void)
{
    uint8_t p61 = inb(0x61);

    outb(0x61, (uint8_t)((p61 & ~0x02) | 0x01));
    outb(0x43, 0xb0);               /* channel 2, lobyte/hibyte, mode 0, binary */
    outb(0x42, 11932 & 0xff);
    outb(0x42, 11932 >> 8);
    uint64_t t0 = rdtsc();
    for (uint32_t spin = 0; !(inb(0x61) & 0x20); spin++) {
        if (spin > 50000000u)
            return 0;
    }
    uint64_t t = rdtsc() - t0;
    outb(0x61, p61);
    return t;
}

void tick_scale_init(void)
{
    uint64_t t = tsc_per_10ms();
    tick_scale = t > 250000 ? t / 250000 : 1;
}

void delay_ticks(uint64_t ticks)
{
    uint64_t t0 = rdtsc();
    while (rdtsc() - t0 < ticks)
        cpu_relax();
}

/* SDM 11.9 "Spurious Interrupt": SVR bit 8 is the APIC software enable; after INIT an
 * AP's APIC is software-disabled (SVR = 0xff) and accepts no fixed interrupts. */
void apic_sw_enable(void)
{
    apic_write(APIC_SVR, (apic_read(APIC_SVR) & ~0x3ffu) | 0x100u | VEC_SPURIOUS);
    apic_write(APIC_TPR, 0);
}

/* SDM 11.6.1 "Interrupt Command Register (ICR)": the write of the low doubleword sends
 * the IPI; bit 12 (delivery status) reads 1 until the APIC has accepted it. Polled after
 * every write, as operating systems do. */
bool apic_send_ipi(uint32_t dest_apic_id, uint32_t icr_lo)
{
    apic_write(APIC_ICR_HI, dest_apic_id << 24);
    apic_write(APIC_ICR_LO, icr_lo);
    uint64_t t0 = rdtsc();
    while (apic_read(APIC_ICR_LO) & ICR_BUSY) {
        if (rdtsc() - t0 > TIMEOUT_ICR)
            return false;
        cpu_relax();
    }
    return true;
}

/* SDM 11.12.9 "ICR Operation in x2APIC Mode": one WRMSR of MSR 0x830 with the
 * destination in bits 63:32 sends the IPI; there is no delivery status to poll (bit 12
 * is reserved there). For a CPU in x2APIC mode only. */
bool x2apic_send_ipi(uint32_t dest_x2apic_id, uint32_t icr_lo)
{
    wrmsr(X2APIC_ICR, ((uint64_t)dest_x2apic_id << 32) | icr_lo);
    return true;
}

/* The 8259s: move their vectors off the exception range (0x20-0x2f; spurious IRQ 7/15
 * would otherwise arrive as exception vectors) and mask every line. The guest takes
 * interrupts only from the local APIC. */
void pic_disable(void)
{
    outb(0x20, 0x11);   /* ICW1: edge, cascade, ICW4 follows */
    outb(0xa0, 0x11);
    outb(0x21, 0x20);   /* ICW2: vector base */
    outb(0xa1, 0x28);
    outb(0x21, 0x04);   /* ICW3: slave on IRQ 2 */
    outb(0xa1, 0x02);
    outb(0x21, 0x01);   /* ICW4: 8086 mode */
    outb(0xa1, 0x01);
    outb(0x21, 0xff);   /* OCW1: mask all */
    outb(0xa1, 0xff);
}
